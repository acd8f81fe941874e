"""The condenser tab in real headless Chromium against the real app process: upload a PDF, watch the
progress, get the summary with citations and the quoted passage behind them, export it; the uploaded
copy stays in its box for another run and is gone from the server once taken out; a bad file gets its own message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.app_process import app_process
from tests.support.browser import wait_for
from tests.support.openai_servers import fake_openai_server
from tests.support.paths import CORPUS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PDF = "good-paper-tracemonkey-2col.pdf"


def stored(folder: Path, name: str) -> list[str]:
    """Copies of `name` in Gradio's upload folder (os.walk: folders may go while it looks)."""
    return [os.path.join(d, name) for d, _, names in os.walk(folder) if name in names]


def test_upload_watch_progress_and_read_the_cited_summary(browser, tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    # slow enough (about 1 s a request) that the progress is on screen for a few seconds; the fake replies with the
    # words of its request in turn: enough of them to pass the map request's opening instructions and reach the chunk
    with fake_openai_server(reply_words=60, chunk_delay=0.017, max_model_len=1024) as fake:
        env = {
            "STUDIO_TEXT_MODEL": "openai:fake-model",
            "OPENAI_BASE_URL": fake.base_url,
            "GRADIO_TEMP_DIR": str(uploads),
        }
        (tmp_path / "data").mkdir()
        with app_process(tmp_path / "data", env) as app:
            context = browser.new_context()
            page = context.new_page()
            page.goto(app.url)
            page.locator("#chat-input textarea").wait_for()
            page.wait_for_function("() => window.gradio_config !== undefined")
            page.wait_for_timeout(500)  # the load event sets the browser's identity
            page.get_by_role("tab", name="Condense").click()
            page.locator("#condense-files input[type=file]").set_input_files(str(CORPUS / PDF))
            wait_for(lambda: PDF in page.locator("#condense-files").inner_text(), 15, "the upload to show")
            page.locator("#condense-run").click()

            status = page.locator("#condense-status")
            seen: list[str] = []

            def done() -> bool:
                text = status.inner_text()
                if text and (not seen or seen[-1] != text):
                    seen.append(text)
                return "pages read" in text

            wait_for(done, 90, "the summary to finish")
            assert any("chunk" in s and " of " in s for s in seen), seen  # "Summarising chunk 7 of 23"
            summary = page.locator("#condense-summary")
            text = summary.inner_text()
            assert "14 of 14 pages read, nothing truncated" in status.inner_text()
            assert "[p. " in text or "[pp. " in text
            page.get_by_text("Sources: the passage behind each citation").click()
            passages = summary.locator("details li")
            wait_for(lambda: passages.count() > 0 and passages.first.is_visible(), 10, "the quoted passages")
            assert "“" in passages.first.inner_text()
            # the upload box keeps the file for another run (tests/condenser/test_condenser_ux_browser.py)
            assert PDF in page.locator("#condense-files").inner_text().replace("\n.", ".")

            page.get_by_text("Earlier summaries · export").click()
            page.locator("#condense-export").click()
            link = page.locator("#condense-export-file a[download]").first  # the upload box has its own link
            link.wait_for(timeout=10000)
            exported = page.request.get(link.get_attribute("href")).text()
            assert exported.startswith(f"# {PDF}") and "pages read" in exported

            # taken out of the box, the server no longer holds the uploaded copy
            page.locator("#condense-files").get_by_role("button", name="Clear").first.click()
            wait_for(lambda: not stored(uploads, PDF), 10, "the uploaded copy to be deleted")

            # a bad file: its own message as a toast, nothing kept, and the page still works
            bad = "bad-truncated-federal-register.pdf"
            page.locator("#condense-files input[type=file]").set_input_files(str(CORPUS / bad))
            wait_for(lambda: bad in page.locator("#condense-files").inner_text().replace("\n.", "."), 15, "the upload")
            page.locator("#condense-run").click()
            toast = page.locator(".toast-body")
            wait_for(lambda: toast.count() and "damaged or incomplete" in toast.first.inner_text(), 30, "the toast")
            assert bad in toast.first.inner_text() and "Traceback" not in toast.first.inner_text()
            assert "damaged or incomplete" in page.locator("#condense-status").inner_text()
            context.close()
