"""The model manager in real headless Chromium against the real app process: the Models tab downloads a model from a
local hub on 127.0.0.1 (the embedded GGUF served under another repo name), with progress on screen, until it is
ready; then the Chat tab offers it, and it answers with a streamed reply."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.models.conftest import CATALOGUE
from tests.support.app_process import app_process
from tests.support.browser import wait_for
from tests.support.hub_server import LocalHub

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NAME = "SmolLM2 from the local hub"
SHOTS = Path("/tmp")


def test_download_a_model_in_the_models_tab_then_chat_with_it(browser, tmp_path: Path, hub: LocalHub) -> None:
    hub.bytes_per_s = 25e6  # about 4 s for the 98 MB file: progress stays on screen long enough to see
    catalogue = tmp_path / "catalogue.toml"
    catalogue.write_text(CATALOGUE)
    env = {
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": hub.url,
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
        "STUDIO_MODEL_CATALOGUE": str(catalogue),
        "STUDIO_MODEL_DISK_RESERVE_MB": "0",
        "STUDIO_IMAGE_MODEL": "gan:faces",
    }
    (tmp_path / "data").mkdir()
    with app_process(tmp_path / "data", env) as app:
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.goto(app.url)
        page.wait_for_function("() => window.gradio_config !== undefined")
        page.locator("#chat-input textarea").wait_for()
        # first run: the chat says which model answers and offers the recommended download
        note = page.locator("#chat-model-note")
        wait_for(lambda: "rough drafts" in note.inner_text(), 15, "the first-run line above the chat")
        assert page.locator("#chat-get-recommended").is_enabled()
        page.screenshot(path=str(SHOTS / "models_chat_first_run.png"))

        page.locator("#chat-get-more").click()  # "Get more models" opens the Models tab
        table = page.locator("#models-table")
        table.wait_for()
        wait_for(lambda: NAME in table.inner_text(), 15, "the catalogue model listed")
        assert "can download" in table.inner_text()
        page.locator("#models-table").get_by_text(NAME, exact=False).first.click()  # select its row
        details = page.locator("#models-details")
        wait_for(lambda: NAME in details.inner_text(), 10, "the model's details")
        download = page.locator("#models-download")
        wait_for(download.is_enabled, 10, "the Download button to turn on")
        assert re.search(r"Download \(\d", download.inner_text()), download.inner_text()

        ready_before = _ready_count(page)
        download.click()
        status = page.locator("#models-status")
        seen = wait_for(lambda: re.search(r"MB of [\d.]+ MB · [\d.]+ MB/s", status.inner_text()), 30, "progress")
        assert seen
        page.screenshot(path=str(SHOTS / "models_tab_downloading.png"), full_page=True)
        wait_for(lambda: "is ready" in status.inner_text(), 60, "the download to finish")
        wait_for(lambda: _ready_count(page) == ready_before + 1, 15, "its row to say ready")
        wait_for(lambda: page.locator("#models-delete").is_enabled(), 10, "Delete to turn on")
        assert not page.locator("#models-cancel").is_enabled() and not download.is_enabled()
        assert "Ready" in details.inner_text()
        page.screenshot(path=str(SHOTS / "models_tab_ready.png"), full_page=True)

        # the Chat tab's picker now offers it; pick it and get a streamed reply
        page.get_by_role("tab", name="Chat").click()
        page.locator("#chat-model input").click()
        page.get_by_role("option", name=NAME).click()
        wait_for(
            lambda: "rough drafts" not in note.inner_text() and NAME in note.inner_text(), 10, "the line to follow"
        )
        box = page.locator("#chat-input textarea")
        box.fill("Tell me a short story about a lighthouse keeper and a lost cat.")  # long enough to watch stream
        box.press("Enter")
        replies: list[str] = []

        def finished() -> str | bool:
            texts = page.locator('#chatbot [data-testid="bot"]').all_inner_texts()
            if texts and texts[-1].strip() not in ("", "…") and (not replies or replies[-1] != texts[-1]):
                replies.append(texts[-1])
            stats = page.locator("#chat-stats").inner_text()
            return "tok/s" in stats and stats

        stats = wait_for(finished, 120, "the reply (first use loads the model)")
        assert NAME in stats, stats  # the downloaded model answered
        final = page.locator('#chatbot [data-testid="bot"]').all_inner_texts()[-1].strip()
        # it ended by itself or at the token limit (then it says so, and the stats line says why); never stopped
        # or broken off for another reason
        assert final and ("reply cut" not in final or final.endswith("[reply cut: length]"))
        assert ("cut: length" in stats) == final.endswith("[reply cut: length]")
        assert len([r for r in replies if final.startswith(r.rstrip(" ▌").strip())]) >= 2, replies  # it streamed
        page.screenshot(path=str(SHOTS / "models_chat_reply.png"), full_page=True)
        page.context.close()


def _ready_count(page) -> int:
    """How many rows of the models table say ready."""
    return len(re.findall(r"\bready\b", page.locator("#models-table").inner_text()))
