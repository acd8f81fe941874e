"""What the browser tests share: Debian's Chromium with the flags this closed network needs, polling, and opening
the Images tab (two image test modules start there)."""

from __future__ import annotations

import shutil
import time

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def open_images_tab(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("() => window.gradio_config !== undefined")
    page.get_by_role("tab", name="Images").click()
    page.locator("#image-generate").wait_for()
    page.wait_for_timeout(500)  # the load event fills in this browser's gallery
