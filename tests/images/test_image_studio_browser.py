"""The image studio tab in real headless Chromium against the real app process, with its default models and
the hub offline: the GAN makes a face that lands in the gallery and is still there after a reload, "Reuse
parameters" puts its seed back, and picking the uncached diffusers model says why it cannot load."""

from __future__ import annotations

import re

import pytest

from tests.support.app_process import app_process
from tests.support.browser import open_images_tab, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def pick_model(page, label: str) -> None:
    page.locator("#image-model input").click()
    page.get_by_role("option", name=label).click()


def gallery_count(page) -> int:
    return page.locator("#image-gallery img").count()


def test_gan_face_lands_in_the_gallery_survives_reload_and_reuse_restores_the_seed(browser, tmp_path):
    with app_process(tmp_path, {"HF_HOME": str(tmp_path / "hf"), "STUDIO_IMAGE_MODEL": ""}) as app:
        context = browser.new_context(viewport={"width": 1400, "height": 1800})
        page = context.new_page()
        open_images_tab(page, app.url)
        assert gallery_count(page) == 0

        pick_model(page, "Random faces (MobileStyleGAN, non-commercial)")
        wait_for(lambda: "non-commercial" in page.locator("#image-licence").inner_text(), 30, "the licence note")
        wait_for(lambda: "ready" in page.locator("#image-status").inner_text(), 60, "the GAN to load")
        assert page.locator("#image-mode input[value=random]").is_checked()

        page.locator("#image-generate").click()  # seed -1: a random one, shown when done
        status = wait_for(
            lambda: (t := page.locator("#image-status").inner_text()).startswith("Done") and t, 60, "the face"
        )
        seed = int(re.search(r"seed (\d+)", status).group(1))
        assert f"Seed: {seed}" in page.locator("#image-result-params textarea").input_value()
        wait_for(lambda: gallery_count(page) == 1, 15, "the face in the gallery")

        # SD-Turbo is configured but not cached and the hub is offline: it is not offered (issue 11), and the
        # line above the picker says how to get a diffusion model, shown as written.
        page.locator("#image-model input").click()
        options = page.get_by_role("option").all_inner_texts()
        page.keyboard.press("Escape")
        assert any("Random faces" in o for o in options) and not any("sd-turbo" in o.lower() for o in options)
        note = page.locator("#image-model-note").inner_text()
        assert "Models tab" in note and "STUDIO_IMAGE_MODEL=diffusers:/path/to/a/diffusers/folder" in note

        page.reload()
        page.get_by_role("tab", name="Images").click()
        wait_for(lambda: gallery_count(page) == 1, 15, "the gallery after the reload")
        page.locator("#image-seed input").fill("5")
        page.locator("#image-gallery img").first.click()
        wait_for(
            lambda: f"Seed: {seed}" in page.locator("#image-selected-params textarea").input_value(),
            10,
            "the selected image's parameters",
        )
        page.locator("#image-reuse").click()
        wait_for(lambda: page.locator("#image-seed input").input_value() == str(seed), 10, "the seed restored")
        assert page.locator("#image-mode input[value=random]").is_checked()
        assert "Random faces" in page.locator("#image-model input").input_value()
        context.close()
