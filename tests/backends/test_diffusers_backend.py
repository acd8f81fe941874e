"""DiffusersBackend against a tiny, randomly initialised Stable Diffusion pipeline built here from configs
(the way diffusers' own tests build theirs; tokenizer included, no hub): shapes, seeds, batch, cancel,
progress, schedulers, inpainting, single-file loading, and the hub-unreachable message."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from backends.image.base import ImageCancelled, ImageRequest
from backends.image.diffusers_local import DiffusersBackend, select_pipeline_files
from backends.text.base import BackendError, ModelUnavailableError
from tests.support.paths import ROOT
from tests.support.tiny_models import UNET_LAYERS, UNET_LEVELS, VAE_LEVELS


@pytest.fixture(scope="module")
def backend(tiny_folder, tmp_path_factory) -> DiffusersBackend:
    b = DiffusersBackend(
        str(tiny_folder),
        spec=f"diffusers:{tiny_folder}",
        label="tiny",
        data_dir=tmp_path_factory.mktemp("data"),
        device="cpu",
    )
    b.load()
    return b


def run(backend: DiffusersBackend, **kw) -> list:
    base = dict(prompt="a red fox in the snow", steps=2, guidance=0.0, width=32, height=32, seed=7)
    base.update(kw)
    return backend.generate(ImageRequest(**base), threading.Event())


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def seed_image(size=(40, 24)) -> Image.Image:
    image = Image.new("RGB", size, (30, 90, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse((4, 4, size[0] - 4, size[1] - 4), fill=(250, 200, 20))
    return image


# -- text-to-image ---------------------------------------------------------------------------------


def test_txt2img_size_seed_and_parameters(backend):
    first = run(backend, width=48, height=32, seed=123)
    again = run(backend, width=48, height=32, seed=123)
    other = run(backend, width=48, height=32, seed=124)
    assert first[0].image.size == (48, 32)
    assert np.array_equal(pixels(first[0].image), pixels(again[0].image))
    assert not np.array_equal(pixels(first[0].image), pixels(other[0].image))
    p = first[0].parameters
    assert first[0].seed == p["seed"] == 123
    assert (p["steps"], p["guidance"], p["width"], p["height"], p["mode"], p["scheduler"]) == (
        2,
        0.0,
        48,
        32,
        "txt2img",
        "Euler",
    )
    assert p["model"] == "tiny-sd" and len(p["model_hash"]) == 10
    assert "strength" not in p


def test_batch_uses_consecutive_seeds_and_matches_single_runs(backend):
    batch = run(backend, seed=40, batch_count=3)
    assert [g.seed for g in batch] == [40, 41, 42]
    single = run(backend, seed=41)
    assert np.array_equal(pixels(batch[1].image), pixels(single[0].image))
    assert not np.array_equal(pixels(batch[0].image), pixels(batch[1].image))


def test_negative_prompt_and_guidance_change_the_image(backend):
    plain = run(backend, guidance=3.0)
    negative = run(backend, guidance=3.0, negative_prompt="blurry, low quality")
    assert negative[0].parameters["negative_prompt"] == "blurry, low quality"
    assert not np.array_equal(pixels(plain[0].image), pixels(negative[0].image))


@pytest.mark.parametrize("name", ["Euler a", "Euler", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC", "LCM"])
def test_each_scheduler_runs_and_is_deterministic(backend, name):
    assert name in backend.capabilities().schedulers
    a = run(backend, scheduler=name, steps=3, seed=5)
    b = run(backend, scheduler=name, steps=3, seed=5)
    assert a[0].parameters["scheduler"] == name
    assert np.array_equal(pixels(a[0].image), pixels(b[0].image))


def test_scheduler_choice_does_not_leak_into_the_next_request(backend):
    default_before = run(backend, seed=9)
    run(backend, seed=9, scheduler="Euler a")
    default_after = run(backend, seed=9)
    assert np.array_equal(pixels(default_before[0].image), pixels(default_after[0].image))


# -- image-to-image, sketch, inpaint -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["img2img", "sketch"])
def test_image_to_image_modes(backend, mode):
    start = seed_image()  # a different size from the request: the backend fits it
    a = run(backend, mode=mode, init_image=start, strength=0.5, steps=4, width=32, height=48, seed=3)
    b = run(backend, mode=mode, init_image=start, strength=0.5, steps=4, width=32, height=48, seed=3)
    c = run(backend, mode=mode, init_image=start, strength=0.5, steps=4, width=32, height=48, seed=4)
    assert a[0].image.size == (32, 48)
    assert np.array_equal(pixels(a[0].image), pixels(b[0].image))
    assert not np.array_equal(pixels(a[0].image), pixels(c[0].image))
    assert a[0].parameters["strength"] == 0.5 and a[0].parameters["mode"] == mode


def test_strength_is_used(backend):
    """Random weights make pixel distances to the seed image meaningless (the VAE itself is random), so
    this checks that strength changes the result; the progress test checks it sets the steps that run."""
    start = seed_image((32, 32))
    low = run(backend, mode="img2img", init_image=start, strength=0.25, steps=8)[0]
    high = run(backend, mode="img2img", init_image=start, strength=1.0, steps=8)[0]
    assert not np.array_equal(pixels(low.image), pixels(high.image))
    assert (low.parameters["strength"], high.parameters["strength"]) == (0.25, 1.0)


def test_inpaint_repaints_only_the_mask(backend):
    start = seed_image((48, 32))
    mask = Image.new("L", (48, 32), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 23, 31), fill=255)  # repaint the left half
    a = run(backend, mode="inpaint", init_image=start, mask_image=mask, strength=1.0, width=48, height=32, seed=2)
    b = run(backend, mode="inpaint", init_image=start, mask_image=mask, strength=1.0, width=48, height=32, seed=2)
    out = pixels(a[0].image)
    assert a[0].image.size == (48, 32)
    assert np.array_equal(out, pixels(b[0].image))
    assert np.array_equal(out[:, 24:], pixels(start)[:, 24:])  # untouched half is exactly the original
    assert not np.array_equal(out[:, :24], pixels(start)[:, :24])
    assert a[0].parameters["mode"] == "inpaint"


# -- progress and cancel ----------------------------------------------------------------------------


def test_progress_reports_every_step_with_previews(backend):
    events = []
    request = ImageRequest(prompt="x", steps=4, width=32, height=48, seed=1, batch_count=2)
    backend.generate(request, threading.Event(), lambda s, t, p: events.append((s, t, p)))
    assert [(s, t) for s, t, _ in events] == [(i, 8) for i in range(1, 9)]
    previews = [p for _, _, p in events if p is not None]
    assert previews and all(p.size == (16, 24) and p.mode == "RGB" for p in previews)


def test_img2img_progress_counts_the_steps_that_run(backend):
    events = []
    request = ImageRequest(
        prompt="x", mode="img2img", init_image=seed_image(), strength=0.5, steps=6, width=32, height=32
    )
    backend.generate(request, threading.Event(), lambda s, t, p: events.append((s, t)))
    assert events == [(1, 3), (2, 3), (3, 3)]


def test_cancel_stops_within_a_step_and_the_next_request_is_unaffected(backend):
    expected = run(backend, steps=30, seed=11)
    cancel = threading.Event()
    seen = []

    def progress(step, total, preview):
        seen.append(step)
        if step == 1:
            cancel.set()  # as the Stop button would, between steps

    start = time.perf_counter()
    with pytest.raises(ImageCancelled):
        backend.generate(
            ImageRequest(prompt="a red fox in the snow", steps=30, width=32, height=32, seed=11, batch_count=3),
            cancel,
            progress,
        )
    assert seen == [1]
    assert time.perf_counter() - start < 5
    assert np.array_equal(pixels(run(backend, steps=30, seed=11)[0].image), pixels(expected[0].image))


def test_cancel_from_another_thread_while_waiting_for_the_lock(backend):
    started, release = threading.Event(), threading.Event()

    def slow_progress(step, total, preview):
        started.set()
        release.wait(10)

    worker = threading.Thread(
        target=backend.generate,
        args=(ImageRequest(prompt="x", steps=2, width=32, height=32), threading.Event(), slow_progress),
    )
    worker.start()
    assert started.wait(30)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ImageCancelled):  # queued behind the running job, cancelled before it starts
        backend.generate(ImageRequest(prompt="y", steps=2, width=32, height=32), cancel)
    release.set()
    worker.join(30)


def test_concurrent_requests_get_their_own_images(backend):
    expected = {seed: pixels(run(backend, seed=seed, steps=3)[0].image) for seed in (100, 200)}
    results = {}

    def job(seed):
        results[seed] = pixels(run(backend, seed=seed, steps=3)[0].image)

    threads = [threading.Thread(target=job, args=(s,)) for s in (100, 200, 100, 200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(results) == {100, 200}
    assert all(np.array_equal(results[s], expected[s]) for s in results)


# -- bad requests and memory savers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(mode="img2img"), "starting image"),
        (dict(mode="inpaint", init_image=Image.new("RGB", (32, 32))), "mask"),
        (dict(width=30), "multiples of 8"),
        (dict(steps=0), "Steps"),
        (dict(steps=1000), "Steps"),
        (dict(mode="img2img", init_image=Image.new("RGB", (32, 32)), steps=2, strength=0.3), "steps × strength"),
        (dict(scheduler="Nonsense"), "Scheduler"),
    ],
)
def test_bad_requests_are_refused_with_a_message(backend, kwargs, words):
    with pytest.raises(BackendError, match=words):
        run(backend, **kwargs)


def test_memory_savers_still_make_the_requested_image(tiny_folder):
    b = DiffusersBackend(str(tiny_folder), device="cpu")
    b.load()
    plain = run(b, width=64, height=64)[0].image
    assert b._raise_memory_level()  # what an out-of-memory error triggers: attention slicing + VAE tiling
    saved = run(b, width=64, height=64)[0].image
    assert saved.size == plain.size == (64, 64)
    assert np.isfinite(pixels(saved)).all()
    assert not b._raise_memory_level()  # on CPU there is no further level: the next OOM is reported


# -- loading paths ---------------------------------------------------------------------------------


def to_ldm_checkpoint(folder: Path) -> dict:
    """The tiny pipeline's weights renamed to the original Stable Diffusion (LDM) single-file layout that
    A1111/Civitai checkpoints use; diffusers' from_single_file converts them back."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder)
    L = UNET_LAYERS
    unet_map = [
        ("time_embedding.linear_1.", "time_embed.0."),
        ("time_embedding.linear_2.", "time_embed.2."),
        ("conv_in.", "input_blocks.0.0."),
        ("conv_norm_out.", "out.0."),
        ("conv_out.", "out.2."),
        ("mid_block.resnets.0.", "middle_block.0."),
        ("mid_block.attentions.0.", "middle_block.1."),
        ("mid_block.resnets.1.", "middle_block.2."),
    ]
    for i in range(UNET_LEVELS):
        for j in range(L):
            unet_map.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{(L + 1) * i + j + 1}.0."))
            unet_map.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{(L + 1) * i + j + 1}.1."))
        for j in range(L + 1):
            unet_map.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{(L + 1) * i + j}.0."))
            unet_map.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{(L + 1) * i + j}.1."))
        if i < UNET_LEVELS - 1:
            unet_map.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(L + 1) * (i + 1)}.0.op."))
            has_attention = any(k.startswith(f"up_blocks.{i}.attentions.") for k in pipe.unet.state_dict())
            unet_map.append(
                (f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{(L + 1) * i + L}.{2 if has_attention else 1}.")
            )
    resnet = [
        ("norm1", "in_layers.0"),
        ("conv1", "in_layers.2"),
        ("norm2", "out_layers.0"),
        ("conv2", "out_layers.3"),
        ("time_emb_proj", "emb_layers.1"),
        ("conv_shortcut", "skip_connection"),
    ]
    out = {}
    for key, value in pipe.unet.state_dict().items():
        new = key
        if "resnets" in new:
            for a, b in resnet:
                new = new.replace(a, b)
        for a, b in unet_map:
            new = new.replace(a, b)
        out["model.diffusion_model." + new] = value
    vae_map = [
        ("conv_shortcut", "nin_shortcut"),
        ("conv_norm_out", "norm_out"),
        ("mid_block.attentions.0.", "mid.attn_1."),
    ]
    for i in range(VAE_LEVELS):
        top = VAE_LEVELS - 1 - i
        vae_map += [
            (f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block."),
            (f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{top}.block."),
            (f"down_blocks.{i}.downsamplers.0.", f"down.{i}.downsample."),
            (f"up_blocks.{i}.upsamplers.0.", f"up.{top}.upsample."),
        ]
    vae_map += [("mid_block.resnets.0.", "mid.block_1."), ("mid_block.resnets.1.", "mid.block_2.")]
    attention = [
        ("group_norm.", "norm."),
        ("to_q.", "q."),
        ("to_k.", "k."),
        ("to_v.", "v."),
        ("to_out.0.", "proj_out."),
    ]
    for key, value in pipe.vae.state_dict().items():
        new = key
        for a, b in vae_map:
            new = new.replace(a, b)
        if "attn_1" in new:
            for a, b in attention:
                new = new.replace(a, b)
            if new.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")):
                value = value.reshape(*value.shape, 1, 1)  # linear -> 1x1 conv, as in the original VAE
        out["first_stage_model." + new] = value
    for key, value in pipe.text_encoder.state_dict().items():
        key = key if key.startswith("text_model.") else "text_model." + key  # transformers 5 flattened CLIPTextModel
        out["cond_stage_model.transformer." + key] = value
    return {k: v.contiguous() for k, v in out.items()}


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_folder, tmp_path_factory) -> Path:
    from safetensors.torch import save_file

    checkpoint = tmp_path_factory.mktemp("single") / "tiny-sd.safetensors"
    save_file(to_ldm_checkpoint(tiny_folder), str(checkpoint))
    return checkpoint


def test_single_safetensors_file_gives_the_same_images_as_the_folder(backend, tiny_folder, tiny_checkpoint, tmp_path):
    checkpoint = tiny_checkpoint
    single = DiffusersBackend(str(checkpoint), device="cpu", config=str(tiny_folder), data_dir=tmp_path)
    single.load()
    for kwargs in (dict(seed=21), dict(mode="img2img", init_image=seed_image(), strength=0.5, steps=4)):
        assert np.array_equal(pixels(run(single, **kwargs)[0].image), pixels(run(backend, **kwargs)[0].image))
    params = run(single)[0].parameters
    assert params["model"] == "tiny-sd"
    assert params["model_hash"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:10]  # webui's AutoV2
    assert json.loads((tmp_path / "model_hashes.json").read_text())  # cached for the next start


def test_missing_paths_say_what_is_wrong(tmp_path):
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        DiffusersBackend(str(tmp_path / "nope.safetensors"), device="cpu").load()
    with pytest.raises(ModelUnavailableError, match="model_index.json"):
        DiffusersBackend(str(tmp_path), device="cpu").load()


def _load_in_subprocess(model_ref: str, env: dict) -> subprocess.CompletedProcess:
    """Load in a fresh interpreter: huggingface_hub reads HF_HUB_OFFLINE / HF_ENDPOINT / HF_HOME at import."""
    code = (
        "import sys\n"
        "from backends.image.diffusers_local import DiffusersBackend\n"
        "from backends.text.base import ModelUnavailableError\n"
        f"b = DiffusersBackend({model_ref!r}, device='cpu')\n"
        "try:\n"
        "    b.load()\n"
        "    print('LOADED', b.capabilities().modes)\n"
        "except ModelUnavailableError as exc:\n"
        "    print('UNAVAILABLE', exc)\n"
    )
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    full_env.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=180, cwd=ROOT
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


@pytest.mark.parametrize(
    "env, reason",
    [
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE=1"),
        ({"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}, "no connection"),
    ],
)
def test_hub_unreachable_and_not_cached_says_so_and_how_to_fix(tmp_path, env, reason):
    result = _load_in_subprocess("someone/not-cached-model", {"HF_HOME": str(tmp_path / "hf"), **env})
    out = result.stdout
    assert out.startswith("UNAVAILABLE"), result.stdout + result.stderr
    assert "could not be reached" in out and reason in out
    assert "'someone/not-cached-model' is not in the local cache" in out and str(tmp_path / "hf") in out
    assert "HF_HOME" in out and ".safetensors" in out and "gan:faces" in out


def test_single_file_without_config_and_no_hub_says_what_it_needs(tiny_checkpoint, tmp_path):
    result = _load_in_subprocess(str(tiny_checkpoint), {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    assert result.stdout.startswith("UNAVAILABLE"), result.stdout + result.stderr
    assert "configuration files of its base architecture" in result.stdout
    assert "STUDIO_IMAGE_MODEL_CONFIG" in result.stdout


def test_hub_unreachable_but_cached_loads_from_the_cache(tiny_folder, tmp_path):
    """A pipeline in the standard hub cache layout (models--org--name/refs/main -> snapshots/<commit>)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--someone--tiny-sd"
    shutil.copytree(tiny_folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    result = _load_in_subprocess("someone/tiny-sd", {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    assert result.stdout.startswith("LOADED"), result.stdout + result.stderr


def test_hub_file_selection_takes_one_weight_set():
    files = [
        "model_index.json",
        "sd_turbo.safetensors",
        "README.md",
        "scheduler/scheduler_config.json",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "text_encoder/model.fp16.safetensors",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.bin",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors",
        "safety_checker/model.safetensors",
    ]
    components = ["scheduler", "tokenizer", "text_encoder", "unet", "vae"]
    half, variant = select_pipeline_files(files, components, "fp16")
    assert variant == "fp16"
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in half and "tokenizer/merges.txt" in half
    assert not {
        "sd_turbo.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.bin",
        "safety_checker/model.safetensors",
    } & set(half)
    full, variant = select_pipeline_files(files, components, None)
    assert variant is None and "unet/diffusion_pytorch_model.safetensors" in full
    assert not any(".fp16." in f for f in full)
    no_vae_fp16 = [f for f in files if f != "vae/diffusion_pytorch_model.fp16.safetensors"]
    mixed, variant = select_pipeline_files(no_vae_fp16, components, "fp16")
    assert variant is None and "vae/diffusion_pytorch_model.safetensors" in mixed  # one variant for all


def test_capabilities_do_not_load_the_model(tiny_folder):
    b = DiffusersBackend(str(tiny_folder), device="cpu")
    caps = b.capabilities()
    assert b._pipe is None
    assert set(caps.modes) == {"txt2img", "img2img", "sketch", "inpaint"} and caps.previews


def test_reused_parameters_from_the_png_give_the_same_pixels(backend):
    """The whole round trip a person relies on: image -> PNG `parameters` chunk -> "reuse parameters"
    -> a new request -> the same pixels (core/images/request.py does the PNG and request side)."""
    from core.images.png import encode_png, read_png_parameters
    from core.images.request import normalise_request, request_fields

    first, notes = normalise_request(
        caps=backend.capabilities(),
        prompt="a red fox, in snow: 1",
        width=64,
        height=64,
        negative_prompt="blurry",
        seed=31337,
        steps=3,
        guidance=1.5,
        scheduler="Euler a",
    )
    assert not notes
    made = backend.generate(first, threading.Event())[0]
    fields = request_fields(read_png_parameters(encode_png(made.image, made.parameters)))
    assert fields.pop("model") == "tiny-sd"
    again, _ = normalise_request(caps=backend.capabilities(), **fields)
    assert again == first
    assert np.array_equal(pixels(backend.generate(again, threading.Event())[0].image), pixels(made.image))


def test_folder_with_only_fp16_weights_loads_in_fp32_on_cpu(tiny_folder, tmp_path):
    """Hub downloads fetch only the fp16 files; on a CPU they are upcast to fp32 when loaded."""
    from diffusers import StableDiffusionPipeline

    half = tmp_path / "fp16-only"
    StableDiffusionPipeline.from_pretrained(tiny_folder).save_pretrained(half, variant="fp16")
    assert (half / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    assert not (half / "unet" / "diffusion_pytorch_model.safetensors").exists()
    b = DiffusersBackend(str(half), device="cpu")
    out = run(b)[0]
    assert out.image.size == (32, 32) and out.parameters["dtype"] == "float32"
    assert str(b._pipe.unet.dtype) == "torch.float32"
