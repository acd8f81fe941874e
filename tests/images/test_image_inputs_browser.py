"""The image tab's file inputs in real headless Chromium against the real app process (HTTP guard on, a tiny
random Stable Diffusion folder): every file input only takes the caller's own uploads, and a person using the
page still gets through. A non-image seed file is refused at once by name; an uploaded seed image, a gallery
image sent to image-to-image, a stroke on the server-made blank canvas and a gallery image sent to inpaint
with a painted mask each make an image that lands in the gallery, with no refusal on the way."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from tests.support.app_process import app_process
from tests.support.browser import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Every toast the page shows, kept after it closes (they time out while the test does other things).
TOAST_LOG = """
window.__toasts = [];
setInterval(() => {
  for (const el of document.querySelectorAll('.toast-body')) {
    if (!el.dataset.seen) { el.dataset.seen = '1'; window.__toasts.push(el.innerText); }
  }
}, 50);
"""


def seed_png(path: Path) -> Path:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 48), (30, 90, 200))
    ImageDraw.Draw(image).ellipse((8, 8, 56, 40), fill=(250, 200, 20))
    image.save(path)
    return path


def toasts(page) -> list[str]:
    return page.evaluate("() => window.__toasts")


def gallery_count(page) -> int:
    """Distinct pictures in "Your images" (a selected one is also shown large, as a second <img>)."""
    return page.evaluate("() => new Set([...document.querySelectorAll('#image-gallery img')].map(i => i.src)).size")


def set_number(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(value)
    box.press("Enter")
    wait_for(lambda: box.input_value() == value, 5, f"{elem_id} = {value}")


def generate(page, before: int) -> str:
    """Click Generate and wait for the new image in the gallery; returns the status line."""
    started = time.monotonic()
    page.locator("#image-generate").click()
    try:
        wait_for(
            lambda: gallery_count(page) > before or any("rror" in t or "No image" in t for t in toasts(page)),
            300,
            "a new image in the gallery (or an error)",
        )  # a 512x512 sketch: 10-25 s idle, minutes on a busy machine
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; toasts: {toasts(page)}; status: {page.locator('#image-status').inner_text()}"
        ) from None
    refused = [t for t in toasts(page) if "No image made" in t or "upload" in t.lower() or "Error" in t]
    assert not refused, refused
    assert gallery_count(page) == before + 1
    status = page.locator("#image-status").inner_text()
    assert status.startswith("Done"), status
    params = page.locator("#image-result-params textarea").input_value()
    print(f"{time.monotonic() - started:.1f} s: {params.splitlines()[-1][:100]}")  # a measure, not a check
    return status


def canvas_pixels(page, elem_id: str):
    """What the editor's canvas shows now, as the person sees it."""
    from PIL import Image

    return Image.open(io.BytesIO(page.locator(f"#{elem_id} canvas").first.screenshot())).convert("RGB")


def changed_pixels(a, b) -> int:
    from PIL import ImageChops

    return sum(1 for p in ImageChops.difference(a, b).convert("L").getdata() if p > 40)


def wait_until_settled(page, elem_id: str) -> None:
    """Wait until the component shows no progress overlay, as a person waits for the spinner to go. While the
    event that filled it is still running, Gradio's overlay covers the editor: a stroke then draws nothing,
    and the spinner's own animation would pass for a stroke in `changed_pixels`."""
    tracker = page.locator(f"#{elem_id} [data-testid=status-tracker]").first
    wait_for(
        lambda: tracker.count() == 0 or "hide" in (tracker.get_attribute("class") or "").split(),
        60,
        f"{elem_id} to finish loading",
    )


def stroke(page, elem_id: str) -> None:
    """Pick the brush and drag the mouse across the middle of the editor's canvas, as a person draws; the
    stroke must show on the canvas (a stroke drawn before the editor is ready would be lost)."""
    wait_until_settled(page, elem_id)
    editor = page.locator(f"#{elem_id}")
    editor.get_by_role("button", name="Brush", exact=True).click()
    page.wait_for_timeout(300)
    page.mouse.move(0, 0)  # the brush cursor off the canvas, so only the stroke differs
    before = canvas_pixels(page, elem_id)
    box = editor.locator("canvas").first.bounding_box()
    assert box is not None
    x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(x0 + box["width"] * 0.04 * i, y0 + box["height"] * 0.02 * i, steps=2)
    page.mouse.up()
    page.mouse.move(0, 0)
    wait_for(lambda: changed_pixels(before, canvas_pixels(page, elem_id)) > 500, 10, "the stroke on the canvas")


def select_gallery_image(page, index: int) -> None:
    assert page.locator("#image-selected-params textarea").input_value() == ""  # Generate cleared the selection
    page.locator("#image-gallery img").nth(index if index >= 0 else gallery_count(page) + index).click()
    wait_for(
        lambda: "Seed:" in page.locator("#image-selected-params textarea").input_value(),
        10,
        "the selected image's parameters",
    )


def test_seed_upload_send_to_sketch_and_inpaint_work_through_the_upload_checks(browser, tmp_path, tiny_folder):
    seed = seed_png(tmp_path / "seed.png")
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("these are meeting notes, not a picture\n" * 20)
    env = {
        "HF_HOME": str(tmp_path / "hf"),
        "STUDIO_IMAGE_MODEL": f"diffusers:{tiny_folder},gan:faces",
        # Gradio's image editor uploads its background, layers and composite again each time the page
        # snapshots it (every Generate, every mode switch, several times while a job streams): ~250 uploads
        # in this test. With the default rate limits a person drawing must never be told "busy".
        "GRADIO_TEMP_DIR": str(tmp_path / "gradio-uploads"),
    }
    with app_process(tmp_path, env) as app:
        context = browser.new_context(viewport={"width": 1400, "height": 1800})
        context.add_init_script(TOAST_LOG)
        page = context.new_page()
        refused_uploads: list[str] = []  # an editor layer whose upload is refused is silently left out of its value
        page.on(
            "response",
            lambda r: (
                refused_uploads.append(f"{r.status} {r.url}")
                if "/gradio_api/upload" in r.url and r.status != 200
                else None
            ),
        )
        try:
            page.goto(app.url)
            page.wait_for_function("() => window.gradio_config !== undefined")
            page.get_by_role("tab", name="Images").click()
            page.locator("#image-generate").wait_for()
            page.wait_for_timeout(500)
            assert "tiny-sd" in page.locator("#image-model input").input_value()
            set_number(page, "image-steps", "2")
            page.locator("#image-prompt textarea").fill("a lighthouse")

            # (0) a file that is not an image is refused as soon as it is uploaded, saying why
            page.locator("#image-mode input[value=img2img]").check()
            page.locator("#image-init input[type=file]").set_input_files(str(not_an_image))
            wait_for(lambda: any("not an image" in t for t in toasts(page)), 30, "the not-an-image toast")
            bad = next(t for t in toasts(page) if "not an image" in t)
            assert "seed image" in bad and "Traceback" not in bad and "must be a file upload" not in bad
            page.locator("#image-init").get_by_role("button", name="Clear").click()
            page.evaluate("() => { window.__toasts = []; }")

            # (1) image to image from an uploaded seed image
            page.locator("#image-init input[type=file]").set_input_files(str(seed))
            page.locator("#image-init img").wait_for()
            page.wait_for_timeout(500)  # the .upload check runs: no toast
            generate(page, 0)

            # (2) a gallery image sent to image-to-image
            select_gallery_image(page, 0)
            page.locator("#image-send-img2img").click()
            wait_for(lambda: page.locator("#image-mode input[value=img2img]").is_checked(), 10, "img2img mode")
            page.locator("#image-init img").wait_for()
            generate(page, 1)

            # (3) a stroke on the server-made blank canvas
            page.locator("#image-mode input[value=sketch]").check()
            page.locator("#image-sketch canvas").first.wait_for()
            page.wait_for_timeout(500)
            stroke(page, "image-sketch")
            generate(page, 2)
            assert "Mode: sketch" in page.locator("#image-result-params textarea").input_value()

            # (4) a gallery image sent to inpaint (the oldest: small, quick to repaint), with a painted mask
            select_gallery_image(page, -1)
            page.locator("#image-send-inpaint").click()
            wait_for(lambda: page.locator("#image-mode input[value=inpaint]").is_checked(), 10, "inpaint mode")
            page.locator("#image-inpaint canvas").first.wait_for()
            # the sent picture (random noise: many colours) is drawn before the person paints on it
            wait_for(
                lambda: len(set(canvas_pixels(page, "image-inpaint").getdata())) > 200,
                15,
                "the sent image in the inpaint editor",
            )
            stroke(page, "image-inpaint")
            generate(page, 3)
            assert "Mode: inpaint" in page.locator("#image-result-params textarea").input_value()
        except AssertionError as exc:
            raise AssertionError(f"{exc}; refused uploads: {refused_uploads[:5]}") from None
        finally:
            page.screenshot(path=str(tmp_path / "image-inputs.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'image-inputs.png'}")
            context.close()
