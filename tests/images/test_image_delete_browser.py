"""Deleting from the image gallery in real headless Chromium: Delete only asks; "Keep it" keeps the image;
the confirmation removes it for good (also after a reload)."""

from __future__ import annotations

import pytest

from tests.support.app_process import app_process
from tests.support.browser import open_images_tab, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def gallery_count(page) -> int:
    """Distinct images shown (an open preview repeats the selected one as a thumbnail)."""
    return len(set(page.locator("#image-gallery img").evaluate_all("els => els.map(e => e.src)")))


def test_delete_asks_first_and_keep_it_keeps_the_image(browser, tmp_path):
    with app_process(tmp_path, {"HF_HOME": str(tmp_path / "hf"), "STUDIO_IMAGE_MODEL": "gan:faces"}) as app:
        context = browser.new_context(viewport={"width": 1400, "height": 1800})
        page = context.new_page()
        open_images_tab(page, app.url)
        page.locator("#image-generate").click()
        wait_for(lambda: page.locator("#image-status").inner_text().startswith("Done"), 90, "the face")
        wait_for(lambda: gallery_count(page) == 1, 15, "the face in the gallery")
        confirm = page.locator("#image-delete-confirm")
        assert not confirm.is_visible()

        page.locator("#image-gallery img").first.click()
        wait_for(
            lambda: "Seed:" in page.locator("#image-selected-params textarea").input_value(),
            10,
            "the selected image's parameters",
        )
        page.locator("#image-delete").click()
        wait_for(confirm.is_visible, 10, "the confirmation")
        page.locator("#image-delete-keep").click()
        wait_for(lambda: not confirm.is_visible(), 10, "the confirmation to go")
        page.wait_for_timeout(500)
        assert gallery_count(page) == 1  # asking deleted nothing

        page.locator("#image-delete").click()
        wait_for(confirm.is_visible, 10, "the confirmation")
        confirm.click()
        wait_for(lambda: gallery_count(page) == 0, 15, "the gallery to empty")
        assert not confirm.is_visible()
        page.reload()
        open_images_tab(page, app.url)
        page.wait_for_timeout(500)
        assert gallery_count(page) == 0  # gone for good
        context.close()
