"""The all-tab accessibility audit: every tab, opened as a new visitor opens it, at desktop (1280x900) and phone
(390x844) sizes in light and dark mode, has no serious or critical axe-core violation on the page and logs no
console error. Plus the repairs of Gradio's own components (ui/js/a11y_repairs.js) as they render."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.support.app_process import app_process
from tests.support.axe import blocking, describe

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TABS = ("Chat", "Writer", "Condense", "Images", "Speech", "Library", "Models")
SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with app_process(tmp_path_factory.mktemp("a11y")) as running:
        yield running


def open_page(browser, app, viewport, scheme="light"):
    context = browser.new_context(viewport=viewport, color_scheme=scheme)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(app.url)
    page.locator("#chat-input textarea").wait_for()
    page.wait_for_timeout(800)  # the load events fill in lists and pickers
    return context, page, errors


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", list(SIZES))
def test_every_tab_has_no_serious_axe_violation_and_no_console_error(browser, app, size, scheme):
    context, page, errors = open_page(browser, app, SIZES[size], scheme)
    found = {}
    for name in TABS:
        page.get_by_role("tab", name=name).click()
        page.wait_for_timeout(700)  # the tab's own load/select events render
        violations = blocking(page)
        if violations:
            found[name] = describe(violations)
    context.close()
    assert not found, "\n".join(f"[{size} {scheme}] {tab}:\n{text}" for tab, text in found.items())
    assert not errors, errors


def test_gradio_upload_box_and_empty_placeholders_are_repaired_as_they_render(browser, app):
    """The upload box's name is its visible text (no aria-label that says something else); every empty
    placeholder's label sits on an element whose role allows one, including placeholders rendered after load."""
    context, page, errors = open_page(browser, app, SIZES["desktop"])
    page.get_by_role("tab", name="Condense").click()
    upload = page.locator("button.upload-container").first
    upload.wait_for()
    page.wait_for_timeout(300)
    assert upload.get_attribute("aria-label") is None
    assert "Upload" in upload.inner_text()
    # holding a file, the box draws its "add more" button around the upload button (a button in a button)
    held = Path(tempfile.mkdtemp()) / "held.txt"
    held.write_text("Some words to hold in the box.\n", encoding="utf-8")
    page.locator("#condense-files input[type=file]").set_input_files(str(held))
    outer = page.locator("#condense-files button.icon-button:has(button.upload-container)").first
    outer.wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#condense-files button.icon-button')].every(b => "
        "!b.querySelector('button') || b.getAttribute('role') === 'group')",
        timeout=2000,
    )
    assert outer.get_attribute("aria-label") == "Add more files" and outer.get_attribute("tabindex") == "-1"
    assert not (found := [v for v in blocking(page, "#condense-files") if v["id"] == "nested-interactive"]), found
    with page.expect_file_chooser(timeout=5000):  # the inner upload button still opens the file chooser
        outer.locator("button.upload-container").click()
    page.get_by_role("tab", name="Images").click()
    empty = page.locator("div.empty[aria-label]")
    empty.first.wait_for(state="attached")  # the tab may keep a placeholder hidden until it applies
    page.wait_for_timeout(300)
    assert empty.count() and all(empty.nth(i).get_attribute("role") == "img" for i in range(empty.count()))
    # a placeholder Gradio renders later (here: one added by script, as a component re-rendering would) is repaired
    page.evaluate(
        """() => { const d = document.createElement('div'); d.className = 'empty'; d.id = 'late-empty';
                   d.setAttribute('aria-label', 'Empty value'); document.querySelector('.gradio-container').appendChild(d); }"""
    )
    page.wait_for_function("() => document.getElementById('late-empty').getAttribute('role') === 'img'", timeout=2000)
    context.close()
    assert not errors, errors
