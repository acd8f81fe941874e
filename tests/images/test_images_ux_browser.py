"""The image tab as a person meets it (issue 12), in real headless Chromium against the real app process with the GAN
and a tiny random Stable Diffusion folder: the controls follow the chosen model at load and after switching, the
licence is one line with a link to its terms, step previews show before the finished image, Stop shows only while
a job runs, the gallery's actions only once an image is selected, and on a phone the result comes first with
Generate in reach. No console errors and no serious or critical axe findings from the tab's own markup."""

from __future__ import annotations

import pytest

from tests.support.app_process import app_process
from tests.support.axe import blocking, describe
from tests.support.browser import open_images_tab, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TINY = "tiny-sd (diffusers)"
GAN = "Random faces (MobileStyleGAN, non-commercial)"
# What the result gallery shows, in order, kept after the gallery moves on: "preview" for a step's preview (an
# image Gradio encodes, .webp), "image" for a saved picture (served as its PNG); and every toast.
RESULT_LOG = """
window.__shown = [];
window.__toasts = [];
setInterval(() => {
  for (const el of document.querySelectorAll('.toast-body')) {
    if (!el.dataset.seen) { el.dataset.seen = '1'; window.__toasts.push(el.innerText); }
  }
  const shown = [...document.querySelectorAll('#image-result img')]
    .map(i => i.src.split('?')[0].endsWith('.png') ? 'image' : 'preview').join(' | ');
  const log = window.__shown;
  if (shown && log[log.length - 1] !== shown) log.push(shown);
}, 30);
"""

BUTTON_TOPS = """() => {
  const stop = document.querySelector('#image-stop'), generate = document.querySelector('#image-generate');
  return stop && stop.offsetParent ? [stop.getBoundingClientRect().top, generate.getBoundingClientRect().top] : null;
}"""


def no_errors_shown(page, console: list[str]) -> None:
    """Nothing went wrong where a person would see it: no error toast, no component left showing "Error", no
    console error."""
    toasts = page.evaluate("() => window.__toasts")
    assert not [t for t in toasts if "rror" in t], toasts
    assert page.locator("#images-tab").get_by_text("Error", exact=True).count() == 0  # Gradio's badge on a control
    assert not console, console


def own_violations(page) -> list[dict]:
    """Every serious or critical axe finding in the tab (Gradio's own markup included: the theme and
    ui/js/a11y_repairs.js answer for it)."""
    return blocking(page, "#images-tab")


def new_page(browser, viewport: dict):
    context = browser.new_context(viewport=viewport)
    context.add_init_script(RESULT_LOG)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return context, page, errors


def open_on_phone(page, url: str) -> None:
    """Gradio shows as many tabs as fit and puts the rest behind "More tabs"."""
    page.goto(url)
    page.wait_for_function("() => window.gradio_config !== undefined")
    tab = page.get_by_role("tab", name="Images")
    more = page.get_by_role("button", name="More tabs")
    wait_for(lambda: tab.is_visible() or more.is_visible(), 15, "the tab bar")  # it measures what fits
    if not tab.is_visible():
        more.click()
        tab = page.locator(".overflow-dropdown button", has_text="Images")
    tab.click()
    page.locator("#image-generate").wait_for()
    page.wait_for_timeout(500)


def gallery_count(page) -> int:
    """Distinct pictures in "Your images" (a selected one also shows large, as a second <img>)."""
    return page.evaluate("() => new Set([...document.querySelectorAll('#image-gallery img')].map(i => i.src)).size")


def pick_model(page, label: str) -> None:
    page.locator("#image-model input").click()
    page.get_by_role("option", name=label).click()
    wait_for(lambda: label in page.locator("#image-model input").input_value(), 10, f"{label} picked")


def shown(page, elem_id: str) -> bool:
    return page.locator(f"#{elem_id}").first.is_visible()


def mode_options(page) -> list[str]:
    return page.locator("#image-mode input[type=radio]").evaluate_all("els => els.map(e => e.value)")


def expect_diffusion_controls(page) -> None:
    wait_for(lambda: shown(page, "image-steps") and shown(page, "image-prompt"), 15, "the diffusion model's controls")
    assert shown(page, "image-mode") and mode_options(page) == ["txt2img", "img2img", "sketch", "inpaint"]
    for elem_id in ("image-guidance", "image-scheduler", "image-width", "image-negative"):
        assert shown(page, elem_id), elem_id
    for elem_id in ("image-seed-b", "image-frames", "image-licence"):  # a local folder declares no licence
        assert not shown(page, elem_id), elem_id


def expect_gan_controls(page) -> None:
    wait_for(lambda: shown(page, "image-frames") and not shown(page, "image-steps"), 15, "the GAN's controls")
    # one mode: nothing to choose (the radio stays in the page, unseen, so its value is still sent)
    assert not shown(page, "image-mode") and mode_options(page) == ["random"]
    assert page.locator("#image-mode input[value=random]").is_checked()
    for elem_id in ("image-prompt", "image-negative", "image-guidance", "image-scheduler", "image-width"):
        assert not shown(page, elem_id), elem_id
    assert shown(page, "image-seed") and shown(page, "image-seed-b") and shown(page, "image-batch")


def expect_one_line_licence(page) -> None:
    licence = page.locator("#image-licence")
    wait_for(lambda: licence.is_visible() and "non-commercial" in licence.inner_text(), 15, "the licence line")
    text = page.locator("#image-licence .image-licence-line")
    line_height = text.evaluate("e => parseFloat(getComputedStyle(e).lineHeight)")
    assert text.bounding_box()["height"] < 1.6 * line_height, licence.inner_text()  # one line, not a paragraph
    link = licence.get_by_role("link")
    assert link.count() == 1
    assert link.get_attribute("href").startswith("https://") and link.get_attribute("target") == "_blank"
    assert "noopener" in link.get_attribute("rel")
    name = link.evaluate("e => e.getAttribute('aria-label') || e.innerText")
    assert "terms" in name.lower() and "new tab" in name.lower()


def test_gan_first_controls_licence_and_the_phone_layout(browser, tmp_path, tiny_folder):
    env = {"HF_HOME": str(tmp_path / "hf"), "STUDIO_IMAGE_MODEL": f"gan:faces,diffusers:{tiny_folder}"}
    with app_process(tmp_path, env) as app:
        context, page, errors = new_page(browser, DESKTOP)
        open_images_tab(page, app.url)
        assert GAN in page.locator("#image-model input").input_value()
        expect_gan_controls(page)  # at load, before any pick
        expect_one_line_licence(page)
        assert not shown(page, "image-stop")  # nothing runs
        dice = page.locator("#image-dice")
        assert dice.evaluate("e => e.getAttribute('aria-label') || e.innerText").strip() == "Random seed"
        dice.click()
        wait_for(lambda: page.locator("#image-seed input").input_value() not in ("", "-1"), 10, "a random seed")
        assert not (v := own_violations(page)), describe(v)
        page.screenshot(path=str(tmp_path / "gan-desktop.png"))
        no_errors_shown(page, errors)
        context.close()

        context, page, errors = new_page(browser, PHONE)
        open_on_phone(page, app.url)
        expect_gan_controls(page)
        result = page.locator("#image-result").bounding_box()
        seed = page.locator("#image-seed").bounding_box()
        generate = page.locator("#image-generate").bounding_box()
        assert result["y"] < seed["y"], (result, seed)  # the thing being made comes first
        assert result["y"] < PHONE["height"] / 3, result
        assert generate["y"] + generate["height"] <= PHONE["height"], generate  # in reach without scrolling
        assert not (v := own_violations(page)), describe(v)

        # Down in the form, Generate is still in reach, and it brings the result into view
        page.locator("#image-batch").scroll_into_view_if_needed()
        assert page.locator("#image-result").bounding_box()["y"] < 0  # scrolled past it
        generate = page.locator("#image-generate").bounding_box()
        assert generate["y"] >= 0 and generate["y"] + generate["height"] <= PHONE["height"], generate
        page.locator("#image-generate").click()
        tops = wait_for(lambda: page.evaluate(BUTTON_TOPS), 30, "Stop while the face is made")
        assert abs(tops[0] - tops[1]) < 5, tops  # Stop beside Generate, not on a line of its own
        wait_for(lambda: page.locator("#image-status").inner_text().startswith("Done"), 120, "the face")
        wait_for(lambda: page.locator("#image-result img").count() > 0, 10, "the face in the result")
        result = page.locator("#image-result").bounding_box()
        assert -1 <= result["y"] < PHONE["height"] / 2, result
        assert not (v := own_violations(page)), describe(v)  # with a picture in the result
        page.screenshot(path=str(tmp_path / "gan-phone.png"))
        no_errors_shown(page, errors)
        context.close()


def test_diffusion_controls_previews_stop_and_the_selection_actions(browser, tmp_path, tiny_folder):
    env = {"HF_HOME": str(tmp_path / "hf"), "STUDIO_IMAGE_MODEL": f"diffusers:{tiny_folder},gan:faces"}
    with app_process(tmp_path, env) as app:
        context, page, errors = new_page(browser, DESKTOP)
        open_images_tab(page, app.url)
        assert TINY in page.locator("#image-model input").input_value()
        expect_diffusion_controls(page)  # at load
        pick_model(page, GAN)
        expect_gan_controls(page)
        expect_one_line_licence(page)
        pick_model(page, TINY)
        expect_diffusion_controls(page)
        wait_for(lambda: "ready" in page.locator("#image-status").inner_text().lower(), 60, "the model loaded")

        # A stepped model shows its steps as they happen, then the image; Stop only meanwhile.
        page.locator("#image-mode input[value=img2img]").check()
        wait_for(lambda: shown(page, "image-init") and shown(page, "image-strength"), 10, "the seed image input")
        page.locator("#image-mode input[value=txt2img]").check()
        wait_for(lambda: shown(page, "image-width") and not shown(page, "image-init"), 10, "text to image")
        for elem_id, value in (("image-steps", "8"), ("image-width", "128"), ("image-height", "128")):
            box = page.locator(f"#{elem_id} input[type=number]")
            box.fill(value)
            box.press("Enter")
        page.locator("#image-prompt textarea").fill("a lighthouse")
        for elem_id in ("image-reuse", "image-send-img2img", "image-send-inpaint", "image-delete", "image-stop"):
            assert not shown(page, elem_id), elem_id  # no image selected, nothing running
        page.locator("#image-generate").click()
        wait_for(lambda: shown(page, "image-stop"), 10, "Stop while the job runs")
        assert shown(page, "image-result")  # the result stays in view beside the long form (sticky column)
        box = page.locator("#image-result").bounding_box()
        assert box["y"] + box["height"] / 2 < DESKTOP["height"], box
        wait_for(lambda: page.locator("#image-status").inner_text().startswith("Done"), 300, "the image")
        wait_for(lambda: not shown(page, "image-stop"), 10, "Stop gone once the job ended")
        shown_log = page.evaluate("() => window.__shown")
        previews = [i for i, c in enumerate(shown_log) if c == "preview"]
        finals = [i for i, c in enumerate(shown_log) if c == "image"]
        assert previews and finals and previews[0] < finals[0], shown_log

        # The gallery's actions show once an image is selected; Send to only where the model can take it.
        for elem_id in ("image-reuse", "image-send-img2img", "image-send-inpaint", "image-delete"):
            assert not shown(page, elem_id), elem_id
        page.locator("#image-gallery img").first.click()
        wait_for(lambda: shown(page, "image-delete"), 10, "the actions for the selected image")
        for elem_id in ("image-reuse", "image-send-img2img", "image-send-inpaint"):
            assert shown(page, elem_id), elem_id
        pick_model(page, GAN)  # the GAN takes no picture to start from
        wait_for(lambda: not shown(page, "image-send-img2img"), 10, "Send to gone with the GAN")
        assert not shown(page, "image-send-inpaint") and shown(page, "image-reuse") and shown(page, "image-delete")
        page.locator("#image-reuse").click()  # back to the model and settings that made it
        wait_for(lambda: TINY in page.locator("#image-model input").input_value(), 10, "the tiny model back")
        expect_diffusion_controls(page)
        wait_for(lambda: shown(page, "image-send-img2img"), 10, "Send to back with the diffusion model")
        assert page.locator("#image-steps input[type=number]").input_value() == "8"

        # An image-to-image picture brought back from the GAN by Reuse comes back in its mode: the picker's change
        # event (which carries the mode from before) must not put text to image back.
        page.locator("#image-send-img2img").click()
        wait_for(lambda: page.locator("#image-mode input[value=img2img]").is_checked(), 10, "image to image")
        page.locator("#image-init img").wait_for()
        page.locator("#image-generate").click()
        wait_for(lambda: gallery_count(page) == 2, 300, "the image-to-image picture")
        wait_for(lambda: not shown(page, "image-stop"), 10, "the job ended")
        page.locator("#image-gallery img").first.click()  # newest first
        wait_for(
            lambda: "Mode: img2img" in page.locator("#image-selected-params textarea").input_value(), 10, "selected"
        )
        pick_model(page, GAN)
        expect_gan_controls(page)
        page.locator("#image-reuse").click()
        wait_for(lambda: TINY in page.locator("#image-model input").input_value(), 10, "the tiny model back")
        wait_for(lambda: shown(page, "image-init") and shown(page, "image-strength"), 10, "image to image back")
        page.wait_for_timeout(1000)  # the picker's change event has run
        assert page.locator("#image-mode input[value=img2img]").is_checked()
        assert shown(page, "image-init") and not shown(page, "image-width")
        assert not (v := own_violations(page)), describe(v)
        page.screenshot(path=str(tmp_path / "tiny-desktop.png"), full_page=True)
        no_errors_shown(page, errors)
        context.close()
