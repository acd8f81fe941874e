"""The Speech tab in real headless Chromium against the real app process: a paragraph spoken by Kokoro starts playing
in the live player before the status says it is done, Stop keeps what was made as a file; espeak speaks to the end and
the file downloads; an uploaded WAV is transcribed, its SRT export downloads, and Send to Condense fills that tab;
History lists both. No console errors and no serious or critical axe findings in the tab at desktop and phone size."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.app_process import app_process
from tests.support.axe import blocking, describe
from tests.support.browser import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PARAGRAPH = (
    "The lighthouse keeper climbed the stairs every evening. He lit the lamp and watched the ships pass. "
    "Some nights the fog came in from the sea and he rang the bell. In the morning he wrote down the weather. "
    "He had kept the light for thirty years, and he knew every rock along the coast. "
    "When the storms came he stayed awake until dawn. The village trusted him, and the sailors did too. "
    "One winter a small boat lost its way, and his light brought it home."
)
SENTENCE = "The quick brown fox jumps over the lazy dog."
GERMAN = "Guten Morgen. Heute ist ein schöner Tag, und wir gehen zusammen in den Park spazieren."
# When the live player first played (its <audio> not paused, or its time moving) and when the status first said
# "Done." or "Stopped.": milliseconds since the page loaded.
WATCH = """
window.__speech = {played: null, done: null, toasts: []};
setInterval(() => {
  const s = window.__speech, now = performance.now();
  const audio = document.querySelector('#speech-player audio');
  if (s.played === null && audio && audio.src && (!audio.paused || audio.currentTime > 0)) s.played = now;
  const status = document.querySelector('#speech-status')?.innerText || '';
  if (s.done === null && /^(Done|Stopped)\\./.test(status.trim())) s.done = now;
  for (const el of document.querySelectorAll('.toast-body')) {
    if (!el.dataset.seen) { el.dataset.seen = '1'; s.toasts.push(el.innerText); }
  }
}, 25);
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    data = tmp_path_factory.mktemp("speech-browser")
    env = {
        "STUDIO_SPEECH_MODEL": "kokoro,espeak",
        "STUDIO_TRANSCRIBE_MODEL": "whisper",
        "STUDIO_TEXT_MODEL": "embedded",
    }
    with app_process(data, env) as proc:
        yield proc


@pytest.fixture
def wav(tmp_path):
    out = tmp_path / "fox.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(out), SENTENCE], check=True, timeout=60)
    return out


def open_speech(browser, url: str, viewport: dict):
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    context.add_init_script(WATCH)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    page.wait_for_function("() => window.gradio_config !== undefined")
    tab = page.get_by_role("tab", name="Speech", exact=True)
    more = page.get_by_role("button", name="More tabs")
    wait_for(lambda: tab.is_visible() or more.is_visible(), 15, "the tab bar")
    if not tab.is_visible():
        more.click()
        tab = page.locator(".overflow-dropdown button", has_text="Speech")
    tab.click()
    page.locator("#speech-run").wait_for()
    page.wait_for_timeout(300)
    return context, page, errors


def status(page, elem: str = "#speech-status") -> str:
    return page.locator(elem).inner_text().strip()


def choose(page, elem_id: str, label: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=label).click()


def test_speak_plays_before_done_stop_keeps_a_file_and_espeak_downloads(browser, app):
    context, page, errors = open_speech(browser, app.url, DESKTOP)
    try:
        assert "0 of 100,000 characters" in page.locator("#speech-count").inner_text()
        page.locator("#speech-text textarea").fill(PARAGRAPH)
        wait_for(lambda: f"{len(PARAGRAPH):,} of" in page.locator("#speech-count").inner_text(), 5, "the count")
        assert not page.locator("#speech-stop").is_visible()  # Stop shows only while speaking
        page.locator("#speech-run").click()
        wait_for(lambda: page.locator("#speech-stop").is_visible(), 10, "Stop")
        wait_for(lambda: page.evaluate("() => window.__speech.played !== null"), 120, "the live player to play")
        state = page.evaluate("() => window.__speech")
        assert state["done"] is None, f"the status said done before anything played: {state}"
        assert "Speaking" in status(page) or "Starting" in status(page), status(page)
        page.locator("#speech-stop").click()
        wait_for(lambda: status(page).startswith(("Stopped.", "Done.")), 60, "the run to stop")
        assert status(page).startswith("Stopped."), status(page)  # a paragraph takes Kokoro far longer than this
        wait_for(lambda: not page.locator("#speech-stop").is_visible(), 10, "Stop to go")
        file = page.locator("#speech-file")
        wait_for(lambda: file.is_visible() and ".mp3" in file.inner_text(), 10, "the kept file")

        # espeak, to the end, as WAV: the file downloads and is a WAV
        choose(page, "speech-model", "eSpeak NG")
        page.get_by_label("WAV").check()
        page.locator("#speech-text textarea").fill(SENTENCE)
        page.locator("#speech-run").click()
        wait_for(lambda: status(page).startswith("Done."), 60, "espeak to finish")
        wait_for(lambda: ".wav" in file.inner_text(), 10, "the WAV file")
        with page.expect_download() as got:
            file.locator("a").first.click()
        body = Path(got.value.path()).read_bytes()
        assert body[:4] == b"RIFF" and len(body) > 20_000
        assert not [t for t in page.evaluate("() => window.__speech.toasts") if "rror" in t]

        # German text for an English voice: the status says so and offers a voice; one click sets it, and it speaks
        page.locator("#speech-text textarea").fill(GERMAN)
        page.locator("#speech-run").click()
        use = page.locator("#speech-use-voice")
        wait_for(lambda: use.is_visible(), 30, "the offered voice")
        assert "German" in status(page) and "German" in use.inner_text()
        use.click()
        voice = page.locator("#speech-voice input")
        wait_for(lambda: "German" in voice.input_value(), 10, "the German voice to be chosen")
        page.wait_for_timeout(1000)  # the model's change event reloads the voices: the German one must stay
        assert "German" in voice.input_value()
        assert page.locator("#speech-text textarea").input_value() == GERMAN  # the text stays
        page.locator("#speech-run").click()
        wait_for(lambda: status(page).startswith("Done."), 60, "the German text spoken")
        assert not errors, errors
    finally:
        context.close()


def test_transcribe_an_upload_export_srt_and_send_to_condense(browser, app, wav):
    context, page, errors = open_speech(browser, app.url, DESKTOP)
    try:
        page.get_by_role("tab", name="Transcribe", exact=True).click()
        page.locator("#speech-upload input[type=file]").set_input_files(str(wav))
        wait_for(lambda: "fox.wav" in page.locator("#speech-upload").inner_text(), 20, "the upload")
        page.locator("#speech-transcribe").click()
        wait_for(lambda: status(page, "#speech-transcribe-status").startswith("Done."), 120, "the transcript")
        text = page.locator("#speech-transcript textarea").input_value()
        assert "fox" in text.lower() and "lazy" in text.lower() and "[00:0" in text, text
        assert "English" in status(page, "#speech-transcribe-status")
        page.locator("#speech-export-srt").click()
        out = page.locator("#speech-export-file")
        wait_for(lambda: out.is_visible() and ".srt" in out.inner_text(), 20, "the SRT file")
        with page.expect_download() as got:
            out.locator("a").first.click()
        srt = Path(got.value.path()).read_text(encoding="utf-8")
        assert srt.startswith("1\n00:00:0") and " --> " in srt and "fox" in srt.lower(), srt
        page.locator("#speech-send-condense").click()
        wait_for(lambda: page.locator("#condense-text textarea").is_visible(), 10, "the Condense tab")
        assert "fox" in page.locator("#condense-text textarea").input_value().lower()
        # History lists the transcript; opening it shows its text
        page.get_by_role("tab", name="Speech", exact=True).click()
        page.get_by_role("tab", name="History", exact=True).click()
        wait_for(lambda: "1 kept" in page.locator("#speech-history").inner_text(), 20, "the history")
        page.locator("#speech-history input").click()
        page.get_by_role("option").first.click()
        wait_for(lambda: "fox" in page.locator("#speech-history-text textarea").input_value().lower(), 10, "the text")
        assert not errors, errors
    finally:
        context.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_tab_has_no_serious_accessibility_findings(browser, app, viewport):
    context, page, errors = open_speech(browser, app.url, viewport)
    try:
        for part in ("Speak", "Transcribe", "History"):
            page.get_by_role("tab", name=part, exact=True).click()
            page.wait_for_timeout(400)
            assert not (v := blocking(page, "#speech-tab")), f"{part}: {describe(v)}"
            button = {"Speak": "#speech-run", "Transcribe": "#speech-transcribe"}.get(part)
            if button:  # in reach without scrolling, whatever the screen
                box = page.locator(button).bounding_box()
                assert box and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], (part, box)
                if viewport == PHONE:
                    assert box["y"] + box["height"] <= viewport["height"], (part, box)
        assert not errors, errors
    finally:
        context.close()


def test_stop_keeps_the_transcript_so_far(browser, app, tmp_path):
    long = tmp_path / "long.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(long), PARAGRAPH * 3], check=True, timeout=60)
    context, page, errors = open_speech(browser, app.url, DESKTOP)
    try:
        page.get_by_role("tab", name="Transcribe", exact=True).click()
        page.locator("#speech-upload input[type=file]").set_input_files(str(long))
        wait_for(lambda: "long.wav" in page.locator("#speech-upload").inner_text(), 20, "the upload")
        page.locator("#speech-transcribe").click()
        box = page.locator("#speech-transcript textarea")
        wait_for(lambda: "lighthouse" in box.input_value().lower(), 120, "the first segments")
        assert not status(page, "#speech-transcribe-status").startswith("Done."), "too short to stop"
        page.locator("#speech-transcribe-stop").click()
        wait_for(lambda: status(page, "#speech-transcribe-status").startswith("Stopped."), 60, "the stop")
        kept = box.input_value()
        assert "lighthouse" in kept.lower() and kept.count("\n") < 40, kept  # some segments, not the whole minute
        wait_for(lambda: not page.locator("#speech-transcribe-stop").is_visible(), 10, "Stop to go")
        page.locator("#speech-export-txt").click()
        out = page.locator("#speech-export-file")
        wait_for(lambda: out.is_visible() and ".txt" in out.inner_text(), 20, "the TXT file")
        assert not errors, errors
    finally:
        context.close()
