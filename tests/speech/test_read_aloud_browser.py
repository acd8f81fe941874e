""" "Read aloud" and "Send to Speech" in the writer and the condenser, in real headless Chromium against the real app
(espeak voices; a fake OpenAI-compatible server writes the summary): the player row appears, plays (not paused, its
clock moving), ends with what was kept; the summary is read without its citations; Send to Speech fills the Speech
tab's text box and opens it; the spoken items are kept for that user with their source; axe with the player open."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

from tests.support.app_process import app_process
from tests.support.axe import blocking, describe
from tests.support.browser import wait_for
from tests.support.openai_servers import fake_openai_server
from tests.support.speech import app_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DRAFT = (
    "Our garden grew well this summer. The tomatoes ripened early, and the beans climbed higher than the fence. "
    "Next year we will plant more herbs near the kitchen door."
)
REPORT = "\n\n".join(
    [
        "The harbour project finished two months early and under budget. The new quay opened in May.",
        "Ferry traffic rose by a third after the opening, and local shops reported more visitors.",
        "The council plans a second phase that adds a cycle path along the water.",
    ]
)
PLAYING = """(sel) => { const a = document.querySelector(sel + ' audio');
                        return a && !a.paused && a.currentTime > 0.2 ? a.currentTime : 0; }"""


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    with fake_openai_server(reply_words=40, chunk_delay=0.002) as fake:
        env = {
            "STUDIO_TEXT_MODEL": "openai:fake-model",
            "OPENAI_BASE_URL": fake.base_url,
            "STUDIO_SPEECH_MODEL": "espeak",
        }
        with app_process(data, env) as running:
            running.data_dir = data
            yield running


@contextlib.contextmanager
def opened(browser, url: str, tab: str, viewport=None):
    with app_page(browser, url, viewport) as (page, errors):
        page.get_by_role("tab", name=tab).click()
        yield page, errors


def plays(page, player: str, status: str) -> None:
    """The player row shows, its audio plays and its clock moves, and the status says what was kept."""
    page.locator(player).wait_for(state="visible", timeout=10000)
    first = wait_for(lambda: page.evaluate(PLAYING, player), 60, "the reading to play")
    wait_for(lambda: page.evaluate(PLAYING, player) > first, 10, "the player's clock to advance")
    wait_for(lambda: "Read aloud:" in page.locator(status).inner_text(), 60, "the reading to end")


def spoken_items(app, source: str) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(app.data_dir / "studio.sqlite3")) as db:
        sql = "SELECT user_id, text FROM speech_items WHERE kind = 'speech' AND source = ?"
        return db.execute(sql, (source,)).fetchall()


def test_the_writer_reads_its_draft_aloud_and_sends_it_to_speech(browser, app):
    with opened(browser, app.url, "Writer") as (page, errors):
        read = page.locator("#writer-read-aloud")
        assert read.is_hidden()  # nothing to read while the draft is empty
        draft = page.locator("#writer-draft textarea")
        draft.fill(DRAFT)
        draft.blur()
        read.click()
        plays(page, "#writer-read-player", "#writer-read-status")
        (user, text), *more = spoken_items(app, "writer")
        assert not more and "tomatoes ripened early" in text and "kitchen door" in text
        assert page.locator("#writer-read-stop").is_hidden()  # Stop only while the voice works
        page.screenshot(path="/tmp/shots_D2/writer_read_aloud.png")
        assert not (v := blocking(page)), describe(v)

        page.locator("#writer-send-speech").click()
        box = page.locator("#speech-text textarea")
        box.wait_for(state="visible", timeout=10000)
        wait_for(lambda: box.input_value() == DRAFT, 10, "the draft in the Speech tab")
        assert not errors, errors


def test_the_condenser_reads_its_summary_without_citations(browser, app):
    with opened(browser, app.url, "Speech") as (page, errors):
        page.get_by_role("tab", name="Transcribe").click()  # Send to Speech must bring back the Speak part
        page.get_by_role("tab", name="Condense").click()
        assert page.locator("#condense-read-aloud").is_hidden()  # no summary yet
        page.locator("#condense-text textarea").fill(REPORT)
        page.locator("#condense-run").click()
        wait_for(lambda: "read" in page.locator("#condense-status").inner_text(), 90, "the summary")
        shown = page.locator("#condense-summary").inner_text()
        assert "[" in shown  # the summary on screen cites its lines
        page.locator("#condense-read-aloud").click()
        plays(page, "#condense-read-player", "#condense-read-status")
        ((user, text),) = spoken_items(app, "condenser")
        assert text and "[" not in text and "pages read" not in text and "sections read" not in text, text
        page.screenshot(path="/tmp/shots_D2/condense_read_aloud.png")
        assert not (v := blocking(page)), describe(v)

        page.locator("#condense-send-speech").click()
        box = page.locator("#speech-text textarea")
        box.wait_for(state="visible", timeout=10000)
        wait_for(lambda: box.input_value().strip() != "", 10, "the summary in the Speech tab")
        assert "[" not in box.input_value()
        assert not errors, errors


def test_stop_ends_a_long_reading_and_keeps_what_was_spoken(browser, app):
    with opened(browser, app.url, "Writer", {"width": 390, "height": 844}) as (page, errors):
        draft = page.locator("#writer-draft textarea")
        draft.fill(" ".join([DRAFT] * 40))  # about 6,000 characters: minutes of speech
        draft.blur()
        page.locator("#writer-read-aloud").click()
        stop = page.locator("#writer-read-stop")
        wait_for(lambda: page.evaluate(PLAYING, "#writer-read-player"), 60, "the reading to play")
        stop.click()
        status = page.locator("#writer-read-status")
        wait_for(lambda: "Stopped" in status.inner_text(), 30, "the reading to stop")
        # silent at once: the player is paused and stays so (the audio already sent does not play on)
        paused = "() => document.querySelector('#writer-read-player audio').paused"
        assert page.evaluate(paused)
        page.wait_for_timeout(1500)
        assert page.evaluate(paused)
        assert stop.is_hidden()
        page.screenshot(path="/tmp/shots_D2/writer_read_aloud_phone.png")
        assert not (v := blocking(page)), describe(v)
        assert not errors, errors
