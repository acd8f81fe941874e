"""“Ask these documents” in real headless Chromium against the real app process: hidden until a summary is made,
then a question answered in the thread with its section and the quoted passage, a question the document does not
touch answered "The documents do not answer this", and an empty question a toast that keeps the box as it was."""

from __future__ import annotations

import pytest

from tests.support.app_process import app_process
from tests.support.browser import wait_for
from tests.support.openai_servers import fake_openai_server
from tests.support.paths import CORPUS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ESSAY = "good-essay-assignment-headings.docx"
REPLY = (
    "The essay has to be at least 1200 words long.\n"
    "QUOTE: The essay should be at least 1200 words with fully-developed ideas and details."
)


def test_ask_the_documents_of_a_summary_in_the_page(browser, tmp_path):
    with fake_openai_server(reply_text=REPLY) as fake:
        env = {"STUDIO_TEXT_MODEL": "openai:fake-model", "OPENAI_BASE_URL": fake.base_url}
        (tmp_path / "data").mkdir()
        with app_process(tmp_path / "data", env) as app:
            context = browser.new_context()
            page = context.new_page()
            page.goto(app.url)
            page.locator("#chat-input textarea").wait_for()
            page.wait_for_function("() => window.gradio_config !== undefined")
            page.wait_for_timeout(500)  # the load event sets the browser's identity
            page.get_by_role("tab", name="Condense").click()
            assert not page.locator("#condense-ask-question").is_visible()  # nothing to ask about yet
            page.locator("#condense-files input[type=file]").set_input_files(str(CORPUS / ESSAY))
            wait_for(lambda: ESSAY in page.locator("#condense-files").inner_text(), 60, "the upload to show")
            page.locator("#condense-run").click()
            wait_for(lambda: "read" in page.locator("#condense-status").inner_text(), 90, "the summary")

            box = page.locator("#condense-ask-question textarea")
            box.wait_for(state="visible", timeout=15_000)
            box.fill("How long does the essay have to be?")
            page.locator("#condense-ask-run").click()
            thread = page.locator("#condense-ask-thread")
            wait_for(lambda: "[§ Basics]" in thread.inner_text(), 60, "the cited answer")
            text = thread.inner_text()
            assert "How long does the essay have to be?" in text and "at least 1200 words" in text
            assert box.input_value() == ""  # the question moved into the thread

            box.fill("What is the boiling point of mercury?")
            box.press("Enter")
            wait_for(lambda: "do not answer this" in thread.inner_text(), 60, "the plain 'not answered'")
            assert "[§ Basics]" in thread.inner_text()  # the earlier answer stays in the thread

            box.fill("   ")
            page.locator("#condense-ask-run").click()
            toast = page.locator(".toast-body")
            wait_for(lambda: "Type a question" in (toast.first.inner_text() if toast.count() else ""), 30, "toast")
            context.close()
