"""What a person sees around speech, in real headless Chromium against the real app (espeak voices, the embedded
Whisper and text model): Stop goes away after a run that failed, and the message keeps the text; a one-segment
transcript says "1 segment"; Send to Writer on a phone brings the draft that got the transcript into view; the chat's
recorder, while recording on a phone, keeps Send on screen (no Pause glyph filling the row); a reply's Read aloud
brings the player row with Stop reading into view. No console errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.app_process import app_process
from tests.support.browser import wait_for
from tests.support.speech import app_page, microphone_browser, microphone_wav

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SENTENCE = "Good morning. We agreed to ship the release on Friday."


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    """espeak's sentence, then silence, as the 16-bit 16 kHz WAV Chromium's fake microphone (and the upload) take."""
    folder = tmp_path_factory.mktemp("ux-audio")
    said, out = folder / "said.wav", folder / "sentence.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(said), SENTENCE], check=True, timeout=60)
    return microphone_wav(said, out, 4)


@pytest.fixture(scope="module")
def mic_browser(wav):
    with microphone_browser(wav) as b:
        yield b


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    data = tmp_path_factory.mktemp("speech-ux")
    with app_process(data, {"STUDIO_SPEECH_MODEL": "espeak", "STUDIO_TRANSCRIBE_MODEL": "whisper"}) as proc:
        yield proc


def open_tab(page, name: str) -> None:
    tab = page.get_by_role("tab", name=name, exact=True)
    if not tab.is_visible():
        page.get_by_role("button", name="More tabs").click()
        tab = page.locator(".overflow-dropdown button", has_text=name)
    tab.click()
    page.wait_for_timeout(400)


def in_view(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return bool(box and size and box["y"] >= 0 and box["y"] + box["height"] <= size["height"])


def text_of(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def test_stop_goes_after_a_failed_run_and_a_short_transcript_says_one_segment(mic_browser, app, wav):
    with app_page(mic_browser, app.url, DESKTOP, ("microphone",), settle_ms=500) as (page, errors):
        open_tab(page, "Speech")
        page.locator("#speech-run").click()  # nothing typed: refused
        wait_for(lambda: "no text to speak" in text_of(page, "#speech-status"), 30, "the refusal")
        wait_for(lambda: not page.locator("#speech-stop").is_visible(), 10, "Stop to go after the failed run")
        page.locator("#speech-text textarea").fill("Hello there.")
        page.locator("#speech-run").click()
        wait_for(lambda: text_of(page, "#speech-status").startswith("Done."), 60, "the text spoken")
        wait_for(lambda: not page.locator("#speech-stop").is_visible(), 10, "Stop to go after the run")

        page.get_by_role("tab", name="Transcribe").click()
        page.locator("#speech-transcribe").click()  # no file yet: refused, and Stop goes
        wait_for(lambda: "Upload a recording" in text_of(page, "#speech-transcribe-status"), 30, "the refusal")
        wait_for(lambda: not page.locator("#speech-transcribe-stop").is_visible(), 10, "Stop to go")
        page.locator("#speech-upload input[type=file]").set_input_files(str(wav))
        page.wait_for_timeout(1000)
        page.locator("#speech-transcribe").click()
        wait_for(lambda: text_of(page, "#speech-transcribe-status").startswith("Done."), 120, "the transcript")
        line = text_of(page, "#speech-transcribe-status")
        assert " · 1 segment · " in line and "segments" not in line, line
        assert "release" in page.locator("#speech-transcript textarea").input_value().lower()
        assert not errors, errors


def test_send_to_writer_on_a_phone_shows_the_draft(mic_browser, app, wav):
    with app_page(mic_browser, app.url, PHONE, ("microphone",), settle_ms=500) as (page, errors):
        open_tab(page, "Speech")
        page.get_by_role("tab", name="Transcribe").click()
        page.locator("#speech-upload input[type=file]").set_input_files(str(wav))
        page.wait_for_timeout(1000)
        page.locator("#speech-transcribe").click()
        wait_for(lambda: text_of(page, "#speech-transcribe-status").startswith("Done."), 120, "the transcript")
        page.locator("#speech-send-writer").scroll_into_view_if_needed()
        page.locator("#speech-send-writer").click()
        draft = page.locator("#writer-draft textarea")
        wait_for(lambda: "release" in draft.input_value().lower(), 15, "the transcript in the draft")
        wait_for(lambda: in_view(page, "#writer-draft textarea"), 10, "the draft on screen")
        assert not errors, errors


def test_on_a_phone_the_recorder_keeps_send_on_screen_and_read_aloud_shows_its_row(mic_browser, app):
    with app_page(mic_browser, app.url, PHONE, ("microphone",), settle_ms=500) as (page, errors):
        page.get_by_role("button", name="Record: speak a message").click()
        stop = page.get_by_role("button", name="Stop and send the message")
        stop.wait_for(state="visible", timeout=10000)
        page.wait_for_timeout(800)
        width = page.viewport_size["width"]
        for selector in ("#chat-send", "#chat-mic .stop-button", "#chat-input textarea"):
            box = page.locator(selector).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, (selector, box)
        assert box["height"] < 200, box  # the bar stays a bar
        assert not page.locator("#chat-mic .pause-button").is_visible()
        page.wait_for_timeout(3000)
        stop.click()  # transcribed and sent, then answered by the embedded model
        wait_for(lambda: page.locator("#chatbot button.chat-read-aloud").count() > 0, 180, "the reply")
        page.locator("#chatbot button.chat-read-aloud").last.click()
        wait_for(
            lambda: page.locator("#chat-read-stop").is_visible() or "Read aloud:" in text_of(page, "#chat-read-status"),
            30,
            "the player row",
        )
        wait_for(lambda: in_view(page, "#chat-read-status"), 10, "the player row's status on screen")
        assert not errors, errors
