"""What the speech tests share: a spoken clip made ready for Chromium's fake microphone, Chromium with that
microphone, the app's page opened with its console errors recorded, and the embedded Whisper base loaded."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support.browser import ARGS, CHROMIUM


def microphone_wav(said: Path, out: Path, pad_s: float) -> Path:
    """`said` as the 16-bit 16 kHz mono WAV Chromium's fake microphone (and an upload) take, 0.3 s of silence before
    and `pad_s` after (Chromium loops the file; the pause keeps one recording to one hearing)."""
    # FFmpeg, which `make test` installs (sox is not on a fresh machine): 0.3 s of silence before, pad_s after.
    pad = f"adelay=300:all=1,apad=pad_dur={pad_s}"
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(said), "-af", pad]
    subprocess.run([*cmd, "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", str(out)], check=True, timeout=60)
    return out


@contextlib.contextmanager
def microphone_browser(wav: Path) -> Iterator:
    """Chromium whose microphone plays `wav`, with the permission prompt answered yes."""
    from playwright.sync_api import sync_playwright

    args = [
        *ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield browser
        finally:
            browser.close()


def console_errors(page) -> list[str]:
    """The list the page's console errors and uncaught exceptions are appended to from now on."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


@contextlib.contextmanager
def app_page(browser, url: str, viewport: dict | None = None, permissions: tuple[str, ...] = (), settle_ms: int = 800):
    """(page, console errors) of the app at `url` in a fresh browser context, once the page has loaded and
    `settle_ms` more have passed (the load event sets the browser's identity); the context is closed after."""
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900}, permissions=list(permissions))
    page = context.new_page()
    errors = console_errors(page)
    page.goto(url)
    page.locator("#chat-input textarea").wait_for()
    page.wait_for_function("() => window.gradio_config !== undefined")
    page.wait_for_timeout(settle_ms)
    try:
        yield page, errors
    finally:
        context.close()


def loaded_whisper(cache: Path):
    """The embedded Whisper base, joined into `cache` and loaded."""
    from backends.speech.faster_whisper_local import WhisperBackend
    from config import Settings

    backend = WhisperBackend(None, "whisper", Settings(cache_dir=cache))
    backend.load()
    return backend
