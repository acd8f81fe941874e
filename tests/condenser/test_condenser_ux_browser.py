"""The condense tab as a person uses it, in real headless Chromium against the real app process and a slow fake
model server: one status line with the elapsed time and the time left, each chunk's notes before the end, the file
kept in its box and named in the summary, a second run with other options without a new upload, an encrypted PDF
opened with its password, Cancel only while a run goes, the result first on a phone with Condense in reach, and no
serious or critical axe-core finding in the tab. Set STUDIO_TEST_SHOTS to a folder to keep screenshots."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from tests.support.app_process import app_process
from tests.support.axe import blocking, describe
from tests.support.browser import wait_for
from tests.support.openai_servers import fake_openai_server
from tests.support.paths import CORPUS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PDF = "good-paper-tracemonkey-2col.pdf"  # 14 pages
PASSWORD = "open-sesame-7"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TAB = "#condense-layout"


def tab_findings(page) -> list[dict]:
    """Serious and critical axe findings in the tab, once the buttons' transitions (Condense fading back from
    "Condensing…") have ended: axe measures colours as drawn. Gradio's File box holding files draws a button inside
    a button; ui/js/a11y_repairs.js repairs it, so it counts here like any other finding."""
    page.wait_for_function("() => document.getAnimations().every(a => a.playState !== 'running')", timeout=5000)
    return blocking(page, TAB)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app with a fake model of about 1 s a request (60 words), small context: a PDF takes several chunks."""
    root = tmp_path_factory.mktemp("condense-ux")
    uploads = root / "uploads"
    uploads.mkdir()
    (root / "data").mkdir()
    with fake_openai_server(reply_words=60, chunk_delay=0.017, max_model_len=1024) as fake:
        env = {
            "STUDIO_TEXT_MODEL": "openai:fake-model",
            "OPENAI_BASE_URL": fake.base_url,
            "GRADIO_TEMP_DIR": str(uploads),
        }
        with app_process(root / "data", env) as app:
            yield app, fake, uploads


def stored(folder: Path, name: str) -> list[str]:
    """Copies of `name` in Gradio's upload folder (os.walk: folders may go while it looks)."""
    return [os.path.join(d, name) for d, _, names in os.walk(folder) if name in names]


def shot(page, name: str) -> None:
    folder = os.environ.get("STUDIO_TEST_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=False)


def open_tab(browser, url: str, viewport: dict):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("() => window.gradio_config !== undefined")
    page.get_by_role("tab", name="Condense").click()
    page.locator("#condense-run").wait_for()
    return context, page, errors


def upload(page, path: Path) -> None:
    page.locator("#condense-files input[type=file]").set_input_files(str(path))
    wait_for(lambda: path.name in in_box(page), 15, "the upload to show")


def in_box(page) -> str:
    """The upload box's text, the file names whole (it shows a name's extension on a line of its own)."""
    return page.locator("#condense-files").inner_text().replace("\n.", ".")


def status_text(page) -> str:
    return page.locator("#condense-status").inner_text()


def wait_done(page, timeout: float = 120) -> str:
    return wait_for(lambda: "Done" in (t := status_text(page)) and t, timeout, "the summary to finish")


def encrypted_pdf() -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(CORPUS / "good-form-irs-1040-2010.pdf"))
    writer.encrypt(PASSWORD, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_progress_notes_file_kept_and_named_then_a_second_run_without_a_new_upload(browser, served):
    app, fake, uploads = served
    context, page, errors = open_tab(browser, app.url, DESKTOP)
    run, stop = page.locator("#condense-run"), page.locator("#condense-stop")
    assert run.is_visible() and not stop.is_visible()  # nothing runs: no Cancel
    assert not (v := tab_findings(page)), describe(v)
    shot(page, "desktop-empty")
    upload(page, CORPUS / PDF)
    run.click()

    seen: list[str] = []
    notes_before_end = False
    overlays = 0
    status_lines = 0

    def watch() -> bool:
        nonlocal notes_before_end, overlays, status_lines
        text = status_text(page)
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        if "Done" in text:
            return True
        if "Notes so far" in page.locator("#condense-summary").inner_text() and "chunk" in text:
            notes_before_end = True
            if len(seen) > 3:
                shot(page, "desktop-running")
        # one status: no Gradio progress overlay (its own "chunk 1 of 6 - 5%" and timer) beside the status line
        overlays += page.locator(f"{TAB} .progress-text, {TAB} .eta-bar, {TAB} .meta-text").count()
        status_lines = max(status_lines, page.get_by_text("elapsed ·").count())
        return False

    wait_for(lambda: stop.is_visible(), 10, "Cancel to show while the run goes")
    assert not run.is_enabled()  # Condense waits for this run
    wait_for(watch, 120, "the summary to finish")
    assert any("estimating time left" in s for s in seen), seen  # before the first chunk is done: no number
    assert any(" left" in s and "estimating" not in s for s in seen), seen  # then an estimate
    assert any("elapsed" in s for s in seen) and notes_before_end
    assert overlays == 0 and status_lines == 1, (overlays, status_lines)

    summary = page.locator("#condense-summary").inner_text()
    assert f"{PDF} · 14 pages" in summary  # the heading names the file and its pages
    assert "14 of 14 pages read" in status_text(page)
    wait_for(lambda: not stop.is_visible() and run.is_enabled(), 10, "Cancel to go and Condense to return")
    assert PDF in in_box(page)  # the file stays in its box
    assert stored(uploads, PDF)  # and on the server, for the next run
    assert not (v := tab_findings(page)), describe(v)
    shot(page, "desktop-done")

    # Again with another length: no new upload
    before = len(fake.chat_requests)
    page.locator("#condense-length").get_by_text("Detailed").click()
    run.click()
    wait_for(lambda: "Done" not in status_text(page), 10, "the second run to start")
    wait_done(page)
    assert len(fake.chat_requests) > before and f"{PDF} · 14 pages" in page.locator("#condense-summary").inner_text()
    page.get_by_text("Earlier summaries · export").click()
    page.locator("#condense-export").click()
    link = page.locator("#condense-export-file a[download]").first
    link.wait_for(timeout=10000)
    exported = page.request.get(link.get_attribute("href")).text()
    assert exported.startswith(f"# {PDF}") and "length: detailed" in exported  # the second run's options

    # Taking the file out of the box deletes the server's copy
    page.locator("#condense-files").get_by_role("button", name="Clear").first.click()
    wait_for(lambda: not stored(uploads, PDF), 10, "the uploaded copy to be deleted")
    assert errors == [], errors
    context.close()


def test_an_encrypted_pdf_asks_for_its_password_and_a_wrong_one_keeps_the_file(browser, served, tmp_path):
    app, _, _ = served
    protected = tmp_path / "protected-form.pdf"
    protected.write_bytes(encrypted_pdf())
    context, page, errors = open_tab(browser, app.url, DESKTOP)
    password = page.locator("#condense-password")
    assert not password.is_visible()
    upload(page, protected)
    page.locator("#condense-run").click()
    wait_for(lambda: "password-protected" in status_text(page), 30, "the request for a password")
    assert password.is_visible() and protected.name in in_box(page)
    shot(page, "desktop-password")
    box = password.locator("input")
    box.fill("not-the-password")
    page.locator("#condense-run").click()
    wait_for(lambda: "Wrong password" in status_text(page), 30, "the wrong password to be said")
    assert protected.name in in_box(page) and password.is_visible()
    box.fill(PASSWORD)
    box.press("Enter")  # Enter in the password box condenses too
    text = wait_done(page)
    assert "2 of 2 pages read" in text
    assert f"{protected.name} · 2 pages" in page.locator("#condense-summary").inner_text()
    assert PASSWORD not in app.log() and "not-the-password" not in app.log()  # never logged
    assert errors == [], errors
    context.close()


def test_on_a_phone_the_result_comes_first_and_condense_stays_in_reach(browser, served):
    app, _, _ = served
    context, page, errors = open_tab(browser, app.url, PHONE)
    run = page.locator("#condense-run")

    def in_view(locator) -> bool:
        box = locator.bounding_box()
        return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"]

    controls, result = page.locator("#condense-controls"), page.locator("#condense-result")
    assert controls.bounding_box()["y"] < result.bounding_box()["y"]  # nothing made yet: the upload box first
    assert in_view(run)
    assert not (v := tab_findings(page)), describe(v)
    shot(page, "phone-empty")
    page.locator("#condense-text textarea").fill(
        " ".join(f"Paragraph {i}: the harbour ferry leaves at noon and tickets cost five euros." for i in range(80))
    )
    assert in_view(run)  # typing further down the page: still in reach
    stop = page.locator("#condense-stop")
    run.click()
    wait_for(lambda: result.bounding_box()["y"] < controls.bounding_box()["y"], 15, "the result to move first")
    wait_for(lambda: stop.is_visible(), 10, "Cancel to show")
    assert in_view(stop)  # beside Condense on the bar
    stop.click()
    wait_for(lambda: "Cancelled" in status_text(page), 15, "the run to stop")
    wait_for(lambda: not stop.is_visible() and run.is_enabled(), 10, "Cancel to go")
    run.click()
    wait_for(lambda: result.bounding_box()["y"] < controls.bounding_box()["y"], 15, "the result to move first")
    wait_done(page)
    page.evaluate("window.scrollTo(0, 0)")
    assert result.bounding_box()["y"] < controls.bounding_box()["y"]
    assert in_view(page.locator("#condense-summary")) and in_view(run)
    shot(page, "phone-done")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    assert in_view(run)
    assert not (v := tab_findings(page)), describe(v)
    assert errors == [], errors
    context.close()
