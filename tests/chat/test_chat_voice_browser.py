"""Talking to the chat in real headless Chromium, against the real app with the embedded model and the embedded
Whisper: a fake microphone plays a question festival said (a WAV made here), the mic button records and stops, the
transcribed question is sent as the user's message and answered; "Read aloud" on the reply plays it and keeps it in
that user's speech history; axe on the chat with the new controls at both sizes; no console errors."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.support.app_process import app_process
from tests.support.axe import blocking, describe
from tests.support.browser import wait_for
from tests.support.openai_servers import fake_openai_server
from tests.support.speech import app_page, microphone_browser, microphone_wav

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
QUESTION = "What is the capital of France?"
SHOTS = Path("/tmp/shots_D2")


def spoken_question(folder: Path) -> Path:
    """The question said by festival, then 6 s of silence (Chromium loops the file; one recording hears it once),
    as the 16-bit PCM WAV Chromium's fake microphone wants."""
    said, padded = folder / "said.wav", folder / "question.wav"
    subprocess.run(["text2wave", "-o", str(said)], input=QUESTION.encode(), check=True, timeout=60)
    return microphone_wav(said, padded, 6)


@pytest.fixture(scope="module")
def voice_browser(tmp_path_factory):
    """Chromium whose microphone is the WAV above, with the permission prompt answered yes."""
    with microphone_browser(spoken_question(tmp_path_factory.mktemp("mic"))) as b:
        yield b


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    with app_process(data, {"STUDIO_SPEECH_MODEL": "espeak,kokoro"}) as running:
        running.data_dir = data
        yield running


@contextlib.contextmanager
def chat_page(browser, url: str, viewport=DESKTOP):
    with app_page(browser, url, viewport, ("microphone", "clipboard-read", "clipboard-write")) as opened:
        yield opened


def users(page) -> list[str]:
    return [t.strip() for t in page.locator('#chatbot [data-testid="user"]').all_inner_texts()]


def bots(page) -> list[str]:
    return [t.strip() for t in page.locator('#chatbot [data-testid="bot"]').all_inner_texts()]


def set_max_new_tokens(page, n: int) -> None:
    page.get_by_text("System prompt and sampling").click()
    box = page.locator("#chat-max-new input[type=number]")
    box.wait_for(state="visible")

    def typed() -> bool:
        if box.input_value() != str(n):
            box.fill(str(n))
            box.press("Enter")
        return box.input_value() == str(n)

    wait_for(typed, 10, "the token limit")


def speak_into_mic(page, seconds: float = 3.5) -> None:
    record = page.get_by_role("button", name="Record: speak a message")
    record.click()
    stop = page.get_by_role("button", name="Stop and send the message")
    stop.wait_for(state="visible", timeout=10000)
    page.wait_for_timeout(int(seconds * 1000))
    stop.click()


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def db_rows(app, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(app.data_dir / "studio.sqlite3")) as db:
        return db.execute(sql).fetchall()


def test_a_spoken_question_is_transcribed_sent_and_answered_then_read_aloud(voice_browser, app):
    with chat_page(voice_browser, app.url) as (page, errors):
        set_max_new_tokens(page, 24)  # the embedded model: a short answer is enough
        mic = page.locator("#chat-mic")
        assert mic.is_visible() and page.locator("#chat-read").is_hidden()  # the player shows only when reading
        speak_into_mic(page)
        # "Transcribing…" on the stats line, then the question as the user's message; the box is free again
        wait_for(lambda: users(page), 60, "the transcribed question to be sent")
        assert words(users(page)[0])[:6] == words(QUESTION), users(page)
        assert page.locator("#chat-input textarea").input_value() == ""
        wait_for(lambda: "tok/s" in page.locator("#chat-stats").inner_text(), 120, "the reply")
        reply = bots(page)[0]
        assert reply and reply != "…", reply
        # the recorder is ready for the next message
        page.get_by_role("button", name="Record: speak a message").wait_for(timeout=10000)

        # the reply's own control: named "Read aloud", no text of its own in the bubble or its name
        read = page.locator("#chatbot").get_by_role("button", name="Read aloud")
        assert read.count() == 1
        label = page.locator('#chatbot [data-testid="bot"]').first.get_attribute("aria-label") or ""
        assert "chat-read" not in label and "Read aloud" not in reply
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "chat_voice_desktop.png"))
        # the reply's Copy button copies the reply, not our control's markup
        page.locator('#chatbot [data-testid="bot"]').first.hover()
        page.locator("#chatbot").get_by_role(
            "button", name="Copy message"
        ).last.click()  # the reply's (the question's is first)
        copied = wait_for(lambda: page.evaluate("() => navigator.clipboard.readText()"), 5, "the copied reply")
        assert "chat-read" not in copied and "<" not in copied and words(copied) == words(reply), copied

        read.click()
        page.locator("#chat-read").wait_for(state="visible", timeout=10000)
        # the live player plays: not paused, and its clock moves
        playing = """() => { const a = document.querySelector('#chat-read-player audio');
                             return a && !a.paused && a.currentTime > 0.2 ? a.currentTime : 0; }"""
        first = wait_for(lambda: page.evaluate(playing), 60, "the reply to play")
        wait_for(lambda: page.evaluate(playing) > first, 10, "the player's clock to advance")
        wait_for(lambda: "Read aloud:" in page.locator("#chat-read-status").inner_text(), 60, "the reading to end")
        page.screenshot(path=str(SHOTS / "chat_voice_reading_desktop.png"))

        # kept for this user: the spoken reply (source chat) and the transcript of the question
        (user,) = {row[0] for row in db_rows(app, "SELECT user_id FROM conversations")}
        items = db_rows(app, f"SELECT kind, source, text FROM speech_items WHERE user_id = '{user}'")
        kinds = {(kind, source) for kind, source, _ in items}
        assert kinds == {("speech", "chat"), ("transcript", "chat")}, items
        spoken = next(text for kind, _, text in items if kind == "speech")
        assert words(spoken)[:3] == words(reply)[:3], (spoken, reply)
        assert not errors, errors


def test_a_recording_with_no_speech_sends_nothing_and_says_so(voice_browser, app):
    with chat_page(voice_browser, app.url) as (page, errors):
        before = db_rows(app, "SELECT id FROM conversations")
        page.locator("#chat-input textarea").fill("typed first")
        speak_into_mic(page, seconds=0.1)  # inside the silence before the question: no word to hear
        page.get_by_text("nothing was sent", exact=False).first.wait_for(timeout=60000)
        assert page.locator("#chat-input textarea").input_value() == "typed first"  # kept, not sent
        assert db_rows(app, "SELECT id FROM conversations") == before
        page.get_by_role("button", name="Record: speak a message").wait_for(timeout=10000)  # ready again
        assert not errors, errors


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_axe_on_the_chat_with_the_microphone_and_a_read_aloud_control(voice_browser, app, viewport):
    with chat_page(voice_browser, app.url, viewport) as (page, errors):
        set_max_new_tokens(page, 12)
        page.get_by_text("System prompt and sampling").click()  # folded again
        page.locator("#chat-input textarea").fill("Say hello.")
        page.locator("#chat-input textarea").press("Enter")
        wait_for(lambda: "tok/s" in page.locator("#chat-stats").inner_text(), 120, "the reply")
        page.locator("#chatbot").get_by_role("button", name="Read aloud").first.wait_for()
        assert page.get_by_role("button", name="Record: speak a message").is_visible()
        name = "desktop" if viewport is DESKTOP else "phone"
        page.screenshot(path=str(SHOTS / f"chat_voice_{name}_axe.png"))
        assert not (v := blocking(page)), describe(v)
        assert not errors, errors


def test_a_spoken_message_while_a_reply_runs_is_refused_and_stays_in_the_box(voice_browser, tmp_path):
    """The same checks as a typed message: one turn at a time (the transcript waits in the box, then goes with Send)."""
    # The reply is slow enough (20 s) that recording (3.5 s) and transcribing finish while it still runs, even on a
    # busy machine; at 6 s the two raced.
    with fake_openai_server(slow=20.0, reply_words=5) as fake:
        env = {
            "STUDIO_TEXT_MODEL": "openai:fake-model",
            "OPENAI_BASE_URL": fake.base_url,
            "STUDIO_SPEECH_MODEL": "espeak",
        }
        with app_process(tmp_path, env) as app, chat_page(voice_browser, app.url) as (page, errors):
            box = page.locator("#chat-input textarea")
            box.fill("first question")
            box.press("Enter")
            wait_for(lambda: page.locator("#chat-stop").is_visible(), 10, "the first turn to run")
            speak_into_mic(page)
            page.get_by_text("A reply is still being written").first.wait_for(timeout=60000)
            assert words(box.input_value())[:6] == words(QUESTION), box.input_value()  # kept, not lost
            assert users(page) == ["first question"]
            wait_for(lambda: page.locator("#chat-send").is_visible(), 60, "the first reply to end")
            page.locator("#chat-send").click()  # now it goes, as typed
            wait_for(lambda: len(users(page)) == 2, 30, "the spoken question to be sent")
            assert words(users(page)[1])[:6] == words(QUESTION)
            wait_for(lambda: len(fake.chat_requests) == 2, 30, "the second request")
            assert not errors, errors
