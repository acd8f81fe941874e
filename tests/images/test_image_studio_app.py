"""The image studio through the app: the named /generate_image endpoint via gradio_client (files whose PNG
chunk holds the parameters, only the prompt required, bad input refused with its reason while the app keeps
serving), and, in a real app process with the hub offline, the diffusers model's message while the GAN works."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from config import Settings
from core.images.png import read_png_parameters
from tests.support.app_process import app_process
from tests.support.apps import running_app
from tests.support.paths import ROOT
from tests.support.tiny_models import build_tiny_pipeline
from ui.identity import ANONYMOUS_API_USER

GAN = "gan:faces"


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tiny-sd") / "tiny-sd"
    build_tiny_pipeline(folder)
    return f"diffusers:{folder}"


@pytest.fixture(scope="module")
def app(tiny_spec, tmp_path_factory):
    settings = Settings(
        text_models=("embedded",), image_models=(GAN, tiny_spec), data_dir=tmp_path_factory.mktemp("data")
    )
    with running_app(settings) as (client, demo):
        yield client, demo


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def picture_file(folder, name="seed.png", size=(64, 64)) -> str:
    image = Image.new("RGB", size, (30, 90, 200))
    ImageDraw.Draw(image).ellipse((8, 8, size[0] - 8, size[1] - 8), fill=(250, 200, 20))
    path = folder / name
    image.save(path)
    return str(path)


def test_endpoint_signature_prompt_first_seed_named_the_rest_optional(app):
    client, _ = app
    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate_image"]
    params = info["parameters"]
    assert params[0]["parameter_name"] == "prompt" and not params[0]["parameter_has_default"]
    assert params[1]["parameter_name"] == "seed" and params[1]["parameter_default"] == -1
    assert all(p["parameter_has_default"] for p in params[1:])
    assert len(info["returns"]) == 2  # the files, and their parameters


def test_gan_files_carry_their_parameters_and_the_same_seed_gives_the_same_pixels(app):
    client, demo = app
    files, params = client.predict("", seed=42, model=GAN, batch_count=2, api_name="/generate_image")
    assert len(files) == 2 and [p["seed"] for p in params] == [42, 43]
    for path, expected in zip(files, params):
        assert read_png_parameters(path) == expected  # the PNG itself says how it was made
        assert expected["model"] == GAN and "non-commercial" in expected["licence"]
        assert Image.open(path).size == (1024, 1024)
    again, _ = client.predict("", seed=43, model=GAN, api_name="/generate_image")
    assert np.array_equal(pixels(again[0]), pixels(files[1]))
    # kept in the gallery of the anonymous API identity (no token was sent)
    assert {g.seed for g in demo.image_studio.images(ANONYMOUS_API_USER)} >= {42, 43}


def test_only_the_prompt_is_needed(app, tiny_spec):
    client, _ = app
    files, params = client.predict("a lighthouse at dusk", api_name="/generate_image")  # default model: the GAN
    assert len(files) == 1 and read_png_parameters(files[0]) == params[0]
    assert params[0]["mode"] == "random" and 0 <= params[0]["seed"] < 2**32  # a random seed, recorded
    files, params = client.predict(
        "a lighthouse at dusk", model=tiny_spec, width=64, height=64, api_name="/generate_image"
    )
    parameters = read_png_parameters(files[0])
    assert parameters == params[0] and parameters["prompt"] == "a lighthouse at dusk"
    assert (parameters["mode"], parameters["steps"], parameters["guidance"]) == ("txt2img", 4, 0.0)
    assert Image.open(files[0]).size == (64, 64)


def test_image_to_image_and_inpaint_take_uploaded_files(app, tiny_spec, tmp_path):
    from gradio_client import handle_file

    client, _ = app
    seed_image = picture_file(tmp_path, size=(96, 64))
    files, params = client.predict(
        "a sunflower",
        seed=3,
        model=tiny_spec,
        init_image=handle_file(seed_image),
        strength=0.5,
        steps=4,
        api_name="/generate_image",
    )
    assert params[0]["mode"] == "img2img" and params[0]["strength"] == 0.5
    assert Image.open(files[0]).size == (96, 64)  # the seed image's shape
    mask = Image.new("L", (96, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 47, 63), fill=255)
    mask.save(tmp_path / "mask.png")
    files, params = client.predict(
        "a door",
        seed=3,
        model=tiny_spec,
        init_image=handle_file(seed_image),
        strength=1.0,
        steps=2,
        mask_image=handle_file(str(tmp_path / "mask.png")),
        api_name="/generate_image",
    )
    assert params[0]["mode"] == "inpaint"
    out, original = pixels(files[0]).astype(int), pixels(seed_image).astype(int)
    assert np.array_equal(out[:, 48:], original[:, 48:])  # only the masked half was repainted
    assert not np.array_equal(out[:, :48], original[:, :48])


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(prompt="x", model="diffusers:not/configured"), "Unknown image model"),
        (dict(prompt="a cat", model=GAN, mode="txt2img"), "cannot do 'txt2img'"),
        (dict(prompt="x", seed=-7), "Seed (seed) must be -1"),
        (dict(prompt="x", mode="inpaint"), "needs an image to paint on"),
        (dict(prompt="  "), "Write a prompt"),
    ],
)
def test_bad_requests_get_their_reason_and_the_app_keeps_serving(app, tiny_spec, kwargs, words):
    from gradio_client.exceptions import AppError

    client, _ = app
    kwargs = kwargs if "model" in kwargs or kwargs.get("mode") == "txt2img" else dict(kwargs, model=tiny_spec)
    with pytest.raises(AppError) as refused:
        client.predict(**kwargs, api_name="/generate_image")
    assert words in str(refused.value)
    assert client.predict("", seed=1, model=GAN, api_name="/generate_image")[1][0]["seed"] == 1


def test_a_decompression_bomb_upload_is_refused_before_decoding(app, tiny_spec, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from tests.support.pictures import declared_png

    client, _ = app
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(declared_png(100_000, 100_000))
    truncated = tmp_path / "cut.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), (200, 10, 10)).save(buffer, "JPEG")
    truncated.write_bytes(buffer.getvalue()[:300])
    for path, words in ((bomb, "decompression bomb"), (truncated, "seed image")):
        with pytest.raises(AppError) as refused:
            client.predict("x", model=tiny_spec, init_image=handle_file(str(path)), api_name="/generate_image")
        assert words in str(refused.value)


def test_offline_hub_the_diffusers_model_says_so_and_the_gan_still_works(tmp_path):
    """A real app process with its default models (SD-Turbo from the hub, then the GAN), HF_HUB_OFFLINE=1
    and an empty Hugging Face cache."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    with app_process(tmp_path, {"HF_HOME": str(tmp_path / "hf"), "STUDIO_IMAGE_MODEL": ""}) as server:
        client = Client(server.url, verbose=False)
        with pytest.raises(AppError) as offline:  # named explicitly: it is configured, but cannot run
            client.predict("a cat", seed=1, model="diffusers:stabilityai/sd-turbo", api_name="/generate_image")
        message = str(offline.value)
        assert "could not be reached" in message and "HF_HUB_OFFLINE=1" in message
        assert "'stabilityai/sd-turbo' is not in the local cache" in message and "gan:faces" in message
        # A call that names no model gets the first one that runs (issue 11): never a failing default.
        files, params = client.predict("", seed=7, api_name="/generate_image")
        assert read_png_parameters(files[0])["seed"] == 7 and params[0]["model"] == GAN


def test_building_the_app_loads_no_image_model(tmp_path):
    """The tab is built from capabilities alone: no torch, diffusers or OpenVINO is imported (fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys; from config import Settings; from app import build_app; "
        f"build_app(Settings(image_models=('diffusers:stabilityai/sd-turbo', 'gan:faces', 'openai:dall-e-3'), "
        f"data_dir={str(tmp_path)!r})); "
        "print(sorted(m for m in ('torch', 'diffusers', 'openvino', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_plain_rest_call_gets_urls_of_the_pngs(app):
    """Without gradio_client (curl and friends): POST the call, read its event stream, GET each PNG by its url."""
    import json

    import httpx

    client, _ = app
    base = client.src.rstrip("/")
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate_image"]["parameters"]
    values = {"prompt": "", "seed": 11, "model": GAN}
    body = {"data": [values.get(p["parameter_name"], p["parameter_default"]) for p in params]}
    event_id = httpx.post(f"{base}/gradio_api/call/generate_image", json=body).json()["event_id"]
    lines = httpx.get(f"{base}/gradio_api/call/generate_image/{event_id}", timeout=60).text.splitlines()
    files, parameters = json.loads(lines[lines.index("event: complete") + 1].removeprefix("data:"))
    png = httpx.get(base + files[0]["url"]).content
    assert read_png_parameters(png) == parameters[0] and parameters[0]["seed"] == 11
