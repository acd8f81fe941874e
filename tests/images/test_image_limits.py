"""Every count and size of an image request is capped (core/images/request.py limits): out of range is refused with
a message naming the parameter (form label and API name) and its range, never passed on or quietly changed;
inside the range, a model's own narrower limits apply with a note. Checked in core and over plain HTTP
against a real app process (the finding: interpolation_steps=1,000,000 was 161 s of work and 120 PNGs)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from backends.image.base import ImageCapabilities
from config import Settings
from core.images.errors import ImageInputError
from core.images.models import ImageModelManager
from core.images.request import (
    MAX_BATCH,
    MAX_FRAMES,
    MAX_GUIDANCE,
    MAX_PIXELS,
    MAX_PROMPT_CHARS,
    MAX_SIDE,
    MAX_STEPS,
    normalise_request,
)
from tests.support.app_process import app_process
from tests.support.pictures import pngs
from tests.support.rest_client import call_by_name

SD = ImageCapabilities(
    modes=("txt2img", "img2img", "sketch", "inpaint"),
    schedulers=("Euler", "DPM++ 2M"),
    max_width=1024,
    max_height=1024,
    size_multiple=8,
    max_steps=50,
)
GAN = ImageCapabilities(modes=("random",), max_width=1024, max_height=1024, size_multiple=1024, max_steps=1)
BIG = ImageCapabilities(modes=("txt2img", "img2img"), max_width=3840, max_height=3840, size_multiple=16, max_steps=1)


def refused(caps, **fields) -> ImageInputError:
    base = dict(prompt="a cat", seed=1) if caps is not GAN else dict(mode="random", seed=1)
    with pytest.raises(ImageInputError) as info:
        normalise_request(caps=caps, **{**base, **fields})
    return info.value


@pytest.mark.parametrize(
    "caps,fields,code,names",
    [
        (SD, dict(steps=0), "bad_steps", ("steps", f"1 to {MAX_STEPS}")),
        (SD, dict(steps=MAX_STEPS + 1), "bad_steps", ("steps", f"1 to {MAX_STEPS}")),
        (SD, dict(steps=10**9), "bad_steps", ("steps", "1000000000")),
        (SD, dict(steps=2.5), "bad_number", ("steps", "whole")),
        (SD, dict(guidance=-1), "bad_guidance", ("guidance", f"0 to {MAX_GUIDANCE:g}")),
        (SD, dict(guidance=1e6), "bad_guidance", ("guidance", f"0 to {MAX_GUIDANCE:g}")),
        (SD, dict(batch_count=0), "bad_batch", ("batch_count", f"1 to {MAX_BATCH}")),
        (SD, dict(batch_count=MAX_BATCH + 1), "bad_batch", ("batch_count", f"1 to {MAX_BATCH}")),
        (SD, dict(batch_count=10**6), "bad_batch", ("batch_count", "1000000")),
        (GAN, dict(batch_count=10**6), "bad_batch", ("batch_count", f"1 to {MAX_BATCH}")),
        (GAN, dict(interpolation_steps=10**6, seed_b=2), "bad_frames", ("interpolation_steps", f"0 to {MAX_FRAMES}")),
        (GAN, dict(interpolation_steps=MAX_FRAMES + 1, seed_b=2), "bad_frames", ("interpolation_steps",)),
        (GAN, dict(interpolation_steps=-1), "bad_frames", ("interpolation_steps",)),
        (SD, dict(width=-1), "bad_size", ("width", f"64 to {MAX_SIDE}")),
        (SD, dict(width=10), "bad_size", ("width", f"64 to {MAX_SIDE}")),
        (SD, dict(height=100_000), "bad_size", ("height", f"64 to {MAX_SIDE}")),
        (BIG, dict(width=3840, height=3840), "bad_size", ("Width x height", f"{MAX_PIXELS:,}")),
        (SD, dict(prompt="x" * (MAX_PROMPT_CHARS + 1)), "prompt_too_long", ("prompt", str(MAX_PROMPT_CHARS))),
        (SD, dict(negative_prompt="x" * (MAX_PROMPT_CHARS + 1)), "prompt_too_long", ("negative_prompt",)),
        (SD, dict(prompt="a cat\x00Steps: 1"), "bad_text", ("prompt", "control characters")),
        (SD, dict(prompt={"text": "a cat"}), "bad_text", ("prompt", "text")),
        (SD, dict(negative_prompt=["x"]), "bad_text", ("negative_prompt",)),
        (SD, dict(scheduler="Euler" * 1000), "unknown_scheduler", ("sampler",)),
        (SD, dict(scheduler=7), "unknown_scheduler", ("sampler",)),
        (SD, dict(seed=-2), "bad_seed", ("seed",)),
        (SD, dict(seed=2**64), "bad_number", ("seed",)),
        (GAN, dict(interpolation_steps=4, seed_b=-9), "bad_seed", ("seed_b",)),
        (SD, dict(mode=123), "mode_unsupported", ("mode",)),
    ],
)
def test_out_of_range_is_refused_naming_the_parameter_and_its_range(caps, fields, code, names):
    error = refused(caps, **fields)
    assert error.code == code, str(error)
    for name in names:
        assert name in str(error), (name, str(error))


def test_strength_range_is_refused_for_image_modes():
    seed_image = Image.new("RGB", (64, 64), "white")
    for strength in (0, -0.5, 1.5, 100):
        error = refused(SD, mode="img2img", init_image=seed_image, strength=strength)
        assert error.code == "bad_strength" and "strength" in str(error) and "0.01 to 1" in str(error)


def test_inside_the_ranges_a_models_own_limits_apply_with_a_note():
    request, notes = normalise_request(
        caps=SD,
        prompt="a cat",
        seed=1,
        steps=MAX_STEPS,
        width=2000,
        height=64,
        batch_count=MAX_BATCH,
        guidance=MAX_GUIDANCE,
    )
    assert (request.steps, request.width, request.batch_count, request.guidance) == (50, 1024, MAX_BATCH, 30.0)
    assert any("Steps 150 became 50" in n for n in notes) and any("Width 2000 became 1024" in n for n in notes)
    request, notes = normalise_request(caps=GAN, mode="random", seed=1, seed_b=2, interpolation_steps=MAX_FRAMES)
    assert request.interpolation_steps == MAX_FRAMES


def test_a_huge_seed_image_is_scaled_under_the_pixel_cap():
    request, notes = normalise_request(
        caps=BIG,
        mode="img2img",
        prompt="a cat",
        seed=1,
        strength=0.5,
        init_image=Image.new("RGB", (3840, 3840), "white"),
    )
    assert request.width * request.height <= MAX_PIXELS and request.width == request.height
    assert request.init_image.size == (request.width, request.height)
    assert any("3840x3840" in n for n in notes)


def test_a_model_that_is_not_text_is_refused_by_name(tmp_path):
    models = ImageModelManager(Settings(image_models=("gan:faces",), data_dir=tmp_path))
    for bad in (123, ["gan:faces"], {"spec": "gan:faces"}):
        with pytest.raises(ImageInputError) as info:
            models.get(bad)
        assert info.value.code == "unknown_model" and "model" in str(info.value)
    with pytest.raises(ImageInputError) as info:
        models.get("diffusers:" + "x" * 10_000)
    assert len(str(info.value)) < 300  # the message does not echo a megabyte back


# -- over HTTP, against a real app process -------------------------------------------------------------
@pytest.fixture(scope="module")
def app(tmp_path_factory):
    data = tmp_path_factory.mktemp("limits")
    with app_process(data, {"STUDIO_IMAGE_MODEL": "diffusers:stabilityai/sd-turbo,gan:faces"}) as proc:
        yield proc, data


def call(base: str, **values) -> tuple[str, object]:
    """POST /gradio_api/call/generate_image with every parameter by name order; (event, data) of its end."""
    return call_by_name(base, "generate_image", values, timeout=120)


@pytest.mark.parametrize(
    "values,names",
    [
        (
            dict(prompt="", model="gan:faces", seed=1, seed_b=2, interpolation_steps=1_000_000),
            ("interpolation_steps", f"0 to {MAX_FRAMES}"),
        ),
        (dict(prompt="", model="gan:faces", seed=1, batch_count=1000), ("batch_count", f"1 to {MAX_BATCH}")),
        (dict(prompt="a cat", model="diffusers:stabilityai/sd-turbo", width=100_000), ("width", str(MAX_SIDE))),
        (dict(prompt="a cat", model="diffusers:stabilityai/sd-turbo", steps=100_000), ("steps", str(MAX_STEPS))),
        (dict(prompt="a cat", model="diffusers:stabilityai/sd-turbo", guidance=-5), ("guidance",)),
        (dict(prompt="x" * (MAX_PROMPT_CHARS + 1), model="diffusers:stabilityai/sd-turbo"), ("prompt",)),
    ],
)
def test_http_out_of_range_counts_are_refused_before_any_work(app, values, names):
    proc, data = app
    event, payload = call(proc.url.rstrip("/"), **values)
    assert event == "error", payload
    message = json.dumps(payload)
    for name in names:
        assert name in message, (name, message)
    assert pngs(data) == 0  # nothing was made or stored


def test_http_a_request_at_the_limits_still_works(app):
    proc, data = app
    event, payload = call(proc.url.rstrip("/"), prompt="", model="gan:faces", seed=3, seed_b=4, interpolation_steps=2)
    assert event == "complete", payload
    files, parameters = payload
    assert [p["frame"] for p in parameters] == [0, 1] and pngs(data) == 2
