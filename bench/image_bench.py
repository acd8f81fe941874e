"""Image generation through the app vs the pipeline called directly, in one run, interleaved: the service
layer (core/images/service.py: checks, per-model queue, progress and previews, PNG encoding with the `parameters`
chunk, gallery write) and Gradio's HTTP API (/generate_image by plain REST calls and by gradio_client, PNG
download included), for the GAN faces (OpenVINO networks called directly) and a small random diffusers
pipeline. Prints medians and fastest runs and the app's overhead (target: under 10 %).

    .venv/bin/python bench/image_bench.py [--runs 7] [--size 256] [--steps 4] [--batch 4] [--threads N]  # CPU
    .venv/bin/python bench/image_bench.py --gpu [--runs 10] [--compile-mode default]   # CUDA only

--gpu builds SD-Turbo's real architecture (configs below, random weights, nothing downloaded) and times
512x512 at 1 and 4 steps: plain (fp32, classic attention) vs optimised (fp16, SDPA, channels-last,
torch.compile), each as a fraction of the GPU's measured fp16/fp32 matmul peak; then the app overhead on
that architecture. --smoke runs the --gpu code path on CPU with small configs, to check the script.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = "a lighthouse on a cliff at dusk, oil painting"

# SD-Turbo (stabilityai/sd-turbo): the SD 2.1 architecture at 512x512, OpenCLIP-H text encoder.
SD_TURBO_UNET = {
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "upcast_attention": False,
    "use_linear_projection": True,
}
SD_TURBO_VAE = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 768,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
SD_TURBO_TEXT = {
    "hidden_act": "gelu",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "projection_dim": 512,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "layer_norm_eps": 1e-05,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "pad_token_id": 1,
}
SD_TURBO_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "trailing",
}
# Small random SD for the CPU comparison: SD's shape (3 UNet levels with attention, VAE factor 8).
SMALL_UNET = {
    "block_out_channels": [32, 64, 128],
    "layers_per_block": 1,
    "attention_head_dim": 8,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 64,
    "norm_num_groups": 8,
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "use_linear_projection": True,
}
SMALL_VAE = {
    "block_out_channels": [16, 32, 64, 64],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "sample_size": 256,
}
SMALL_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "vocab_size": 1000,
    "max_position_embeddings": 77,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "pad_token_id": 1,
}


def build_pipeline(unet_cfg: dict, vae_cfg: dict, text_cfg: dict, device: str = "cpu", dtype: Any = None) -> Any:
    """A StableDiffusionPipeline with random weights from configs and a locally built tokenizer."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    torch.manual_seed(0)
    with torch.device(device):  # initialise on the target device: SD-Turbo's 1.3B weights are slow on CPU
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**vae_cfg)
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in bytes_to_unicode().values():
            vocab.setdefault(char + suffix, len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=EulerDiscreteScheduler(**SD_TURBO_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if dtype is not None:
        pipe.to(dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


# -- app path vs direct ---------------------------------------------------------------------------------


@contextlib.contextmanager
def running_app(image_models: tuple[str, ...], data_dir: Path, **settings: Any) -> Iterator[tuple[Any, Any]]:
    """The real app (build_app) on a loopback port: (its ImageStudio, a gradio_client for /generate_image)."""
    from gradio_client import Client

    from app import build_app, launch
    from config import Settings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app_settings = Settings(image_models=image_models, data_dir=data_dir, **settings)
    demo = build_app(app_settings)
    import gradio as gr

    def bench_noop(prompt: str) -> list[str]:
        """Answers at once: Gradio's own cost of a REST call (queue, event stream), nothing of ours."""
        return [prompt]

    with demo:  # this bench's app only: a reference endpoint beside /generate_image
        gr.api(bench_noop, api_name="bench_noop")
    launch(demo, app_settings, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield demo.image_studio, Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def studio_vs_direct(
    studio: Any,
    client: Any,
    spec: str,
    form: Callable[[int], dict],
    direct: Callable[[int], list],
    device: str,
    runs: int,
) -> dict:
    """Per image request, interleaved (the order rotates every run, so drift hits all paths alike):
    direct  - the pipeline / networks called directly, PIL images out;
    service - ImageStudio.generate: checks, the per-model queue, progress, PNG encoding and the gallery write;
    rest    - the same through Gradio's HTTP API with plain httpx (POST, event stream, GET of the PNGs);
    http    - the same through gradio_client (what the tests use), which adds ~70 ms of its own per call."""
    import httpx
    import numpy as np

    from core.images.png import encode_png

    def service(seed: int) -> list:
        final = list(studio.generate("bench", spec, form(seed)))[-1]
        return [g.path for g in final.images]

    def http(seed: int) -> list:
        files, _ = client.predict(**{"prompt": "", **form(seed)}, model=spec, api_name="/generate_image")
        return files

    endpoint = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate_image"]
    names = [(p["parameter_name"], p["parameter_default"]) for p in endpoint["parameters"]]
    base = client.src.rstrip("/")
    rest_client = httpx.Client(timeout=600)

    def rest(seed: int) -> list:
        """Gradio's REST API without the client library: POST the call, read its event stream, GET the PNGs."""
        values = {"prompt": "", **form(seed), "model": spec}
        event = rest_client.post(
            f"{base}/gradio_api/call/generate_image",
            json={"data": [values.get(name, default) for name, default in names]},
        )
        data = None
        with rest_client.stream("GET", f"{base}/gradio_api/call/generate_image/{event.json()['event_id']}") as sse:
            kind = ""
            for line in sse.iter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    data = json.loads(line[5:])
        if not data or kind != "complete":
            raise RuntimeError(f"/generate_image failed: {data}")
        paths = []
        for file in data[0]:
            url = file.get("url") or f"/gradio_api/file={file['path']}"  # the REST route leaves url empty
            url = url if url.startswith("http") else base + url
            target = Path(tempfile.mkdtemp(prefix="bench-rest-")) / "image.png"
            target.write_bytes(rest_client.get(url).content)
            paths.append(target)
        return paths

    def direct_on_a_thread(seed: int) -> list:
        # Each studio job runs on a fresh thread; direct calls do too. (torch on this process's main thread,
        # with the HTTP server up, ran 3-6x slower here: an artefact that is not what is being compared.)
        box: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: box.update(out=direct(seed)))
        worker.start()
        worker.join()
        return box["out"]

    paths = {"direct": direct_on_a_thread, "service": service, "rest": rest, "http": http}
    for seed in (0, 1):  # warm-up: allocator, kernels, lazy imports, the HTTP connection
        for fn in paths.values():
            fn(seed)
    times: dict[str, list[float]] = {name: [] for name in paths}
    same = True
    png_bytes = 0
    for i in range(runs):
        seed = 100 + i
        order = list(paths)[i % len(paths) :] + list(paths)[: i % len(paths)]
        out = {}
        for name in order:
            t, out[name] = timed(functools.partial(paths[name], seed), device)
            times[name].append(t)
        reference = [np.asarray(image) for image in out["direct"]]
        for name in ("service", "rest", "http"):
            stored = [np.asarray(Image_open(path)) for path in out[name]]
            same &= len(stored) == len(reference) and all(np.array_equal(a, b) for a, b in zip(stored, reference))
        png_bytes = sum(Path(p).stat().st_size for p in out["http"])
    images = out["direct"]
    served = [f"{client.src.rstrip('/')}/gradio_api/file={path}" for path in out["service"]]

    def download() -> None:
        for url in served:
            with urllib.request.urlopen(url) as response:
                response.read()

    transfer = statistics.median(timed(download, "cpu")[0] for _ in range(max(3, runs)))

    def noop() -> None:
        event = rest_client.post(f"{base}/gradio_api/call/bench_noop", json={"data": ["x"]})
        with rest_client.stream("GET", f"{base}/gradio_api/call/bench_noop/{event.json()['event_id']}") as sse:
            for _ in sse.iter_lines():
                pass

    floor = statistics.median(timed(noop, "cpu")[0] for _ in range(max(5, 2 * runs)))
    encode = statistics.median(
        timed(lambda: [encode_png(im, {"seed": 1, "model": "x", "steps": 1}) for im in images], "cpu")[0]
        for _ in range(max(3, runs))
    )
    med = {name: statistics.median(ts) for name, ts in times.items()}
    low = {name: min(ts) for name, ts in times.items()}  # on a shared machine noise only adds: the floor is steadier
    rest_client.close()
    return {
        "direct_s": med["direct"],
        "service_s": med["service"],
        "http_s": med["http"],
        "encode_s": encode,
        "rest_s": med["rest"],
        "rest_overhead": med["rest"] / med["direct"] - 1.0,
        "transfer_s": transfer,
        "floor_s": floor,
        "min": low,
        "service_overhead": med["service"] / med["direct"] - 1.0,
        "http_overhead": med["http"] / med["direct"] - 1.0,
        "identical_pixels": same,
        "png_bytes": png_bytes,
        "images": len(images),
        "runs": runs,
    }


def Image_open(path: Any) -> Any:
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def report_studio(r: dict, what: str) -> None:
    n = r["images"]
    print(f"\n{what}: {n} image{'s' if n > 1 else ''} per request, median of {r['runs']} interleaved runs")
    low = r["min"]
    print(f"  {'':40s} {'median':>9s}    {'overhead':>8s}   {'fastest':>9s}   {'overhead':>8s}")
    print(
        f"  direct (pipeline called directly)        {r['direct_s'] * 1000:9.1f} ms {'':10s}"
        f"  {low['direct'] * 1000:9.1f} ms"
    )
    print(
        f"  service (ImageStudio: checks, queue,     {r['service_s'] * 1000:9.1f} ms {r['service_overhead'] * 100:+7.1f} %"
        f"  {low['service'] * 1000:9.1f} ms {(low['service'] / low['direct'] - 1) * 100:+7.1f} %"
    )
    print("           progress, PNG + gallery write)")
    print(
        f"  REST (/gradio_api/call/generate_image,   {r['rest_s'] * 1000:9.1f} ms {r['rest_overhead'] * 100:+7.1f} %"
        f"  {low['rest'] * 1000:9.1f} ms {(low['rest'] / low['direct'] - 1) * 100:+7.1f} %"
    )
    print("        httpx: POST, event stream, GET PNG)")
    ours = r["rest_s"] - r["direct_s"] - r["floor_s"] - r["transfer_s"]
    print(
        f"        of which Gradio's own per-call cost (a no-op endpoint, same app): {r['floor_s'] * 1000:.1f} ms, "
        f"fetching the PNG{'s' if n > 1 else ''}: {r['transfer_s'] * 1000:.1f} ms; the rest "
        f"{ours * 1000:+.1f} ms ({ours / r['direct_s'] * 100:+.1f} % of direct)"
    )
    print(
        f"  HTTP (/generate_image, gradio_client,    {r['http_s'] * 1000:9.1f} ms {r['http_overhead'] * 100:+7.1f} %"
        f"  {low['http'] * 1000:9.1f} ms {(low['http'] / low['direct'] - 1) * 100:+7.1f} %"
    )
    print(
        f"        {r['png_bytes'] / 1e6:.2f} MB of PNG downloaded)      of which fetching the PNG"
        f"{'s' if n > 1 else ''} alone (HTTP GET): {r['transfer_s'] * 1000:.1f} ms"
    )
    print(
        f"  PNG encoding (core.images.png.encode_png, level 1, one thread): {r['encode_s'] * 1000:.1f} ms "
        f"({r['encode_s'] / r['direct_s'] * 100:.1f} % of direct); the service encodes image k while image k+1 "
        "is made, and what is left after the model is done on all cores"
    )
    print(f"  same pixels in the stored PNGs as direct: {r['identical_pixels']}   (target: overhead under 10 %)")


def direct_gan(psi: float) -> Callable[[int], list]:
    """The MobileStyleGAN networks called directly with OpenVINO (the IR files of the random-face wheel), the
    same maths as the backend: z from the seed, mapping, truncation towards the mean w, synthesis."""
    import numpy as np
    import openvino as ov
    from PIL import Image

    from backends.image.gan_faces import LATENT_DIM, W_MEAN_SAMPLES, W_MEAN_SEED, locate_data_dir

    folder = locate_data_dir()
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    mapping = core.compile_model(core.read_model(folder / "MappingNetwork.xml"), "CPU", config)
    synthesis = core.compile_model(core.read_model(folder / "SynthesisNetwork.xml"), "CPU", config)
    batched = core.read_model(folder / "MappingNetwork.xml")
    batched.reshape({"var": [W_MEAN_SAMPLES, LATENT_DIM]})
    z = np.random.default_rng(W_MEAN_SEED).standard_normal((W_MEAN_SAMPLES, LATENT_DIM)).astype(np.float32)
    w_all = core.compile_model(batched, "CPU", config)({"var": z})["style"]
    w_mean = np.asarray(w_all, dtype=np.float64).mean(axis=0, keepdims=True).astype(np.float32)

    def make(seed: int) -> list:
        z = np.random.default_rng(seed).standard_normal((1, LATENT_DIM)).astype(np.float32)
        w = mapping({"var": z})["style"]
        w = (w_mean + psi * (w - w_mean)).astype(np.float32)
        img = synthesis({"style": w})["img"][0]
        pixels = np.clip((img.transpose(1, 2, 0) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
        return [Image.fromarray(pixels, "RGB")]

    return make


def direct_diffusers(folder: Path, device: str, dtype: Any, size: int, steps: int) -> Callable[[int], list]:
    import torch
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(str(folder), dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)

    def make(seed: int) -> list:
        generator = torch.Generator(device="cuda" if device.startswith("cuda") else "cpu").manual_seed(seed)
        return pipe(
            PROMPT, num_inference_steps=steps, guidance_scale=0.0, width=size, height=size, generator=generator
        ).images

    return make


def sd_form(size: int, steps: int) -> Callable[[int], dict]:
    return lambda seed: dict(prompt=PROMPT, seed=seed, steps=steps, guidance=0.0, width=size, height=size)


def cpu_mode(args: argparse.Namespace) -> None:
    import torch

    from backends.image.gan_faces import DEFAULT_TRUNCATION

    print(
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "small-sd"
        build_pipeline(SMALL_UNET, SMALL_VAE, SMALL_TEXT).save_pretrained(folder)
        sd_spec = f"diffusers:{folder}"
        with running_app((sd_spec, "gan:faces"), Path(tmp) / "data", image_device="cpu") as (studio, client):
            if "gan" in args.only or "gan-batch" in args.only:
                gan = direct_gan(DEFAULT_TRUNCATION)
            if "gan" in args.only:
                report_studio(
                    studio_vs_direct(studio, client, "gan:faces", lambda seed: dict(seed=seed), gan, "cpu", args.runs),
                    "GAN faces (MobileStyleGAN, OpenVINO), 1024x1024",
                )
            if "gan-batch" in args.only:
                report_studio(
                    studio_vs_direct(
                        studio,
                        client,
                        "gan:faces",
                        lambda seed: dict(seed=seed, batch_count=args.batch),
                        lambda seed: [im for i in range(args.batch) for im in gan(seed + i)],
                        "cpu",
                        args.runs,
                    ),
                    f"GAN faces, batch of {args.batch}",
                )
            if "sd" in args.only:
                sd = direct_diffusers(folder, "cpu", torch.float32, args.size, args.steps)
                report_studio(
                    studio_vs_direct(studio, client, sd_spec, sd_form(args.size, args.steps), sd, "cpu", args.runs),
                    f"small random SD (diffusers), {args.size}x{args.size}, {args.steps} steps, CPU fp32",
                )


# -- GPU: plain vs optimised -------------------------------------------------------------------------


def matmul_peak(dtype: Any, device: str, n: int = 8192, repeats: int = 20) -> float:
    """Measured dense matmul throughput in FLOP/s (best of `repeats`), the ceiling we compare against."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t, _ = timed(lambda: a @ b, device)
        best = min(best, t)
    return 2 * n**3 / best


def count_flops(pipe: Any, steps: int, size: int, device: str) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        pipe(
            PROMPT,
            num_inference_steps=steps,
            guidance_scale=0.0,
            width=size,
            height=size,
            generator=torch.Generator(device=device).manual_seed(0),
        )
    return counter.get_total_flops()


def variants(device: str, unet_cfg: dict, vae_cfg: dict, text_cfg: dict, compile_mode: str | None) -> list:
    import torch
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    half = torch.float16 if device.startswith("cuda") else torch.bfloat16

    def plain() -> Any:
        pipe = build_pipeline(unet_cfg, vae_cfg, text_cfg, device)
        pipe.unet.set_attn_processor(AttnProcessor())  # classic softmax(QK^T)V, as before SDPA
        pipe.vae.set_attn_processor(AttnProcessor())
        return pipe

    def half_sdpa() -> Any:
        pipe = build_pipeline(unet_cfg, vae_cfg, text_cfg, device, half)
        pipe.unet.set_attn_processor(AttnProcessor2_0())
        pipe.vae.set_attn_processor(AttnProcessor2_0())
        return pipe

    def channels_last() -> Any:
        pipe = half_sdpa()
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
        return pipe

    def compiled() -> Any:
        pipe = channels_last()
        pipe.unet = torch.compile(pipe.unet, mode=compile_mode, fullgraph=True)
        pipe.vae.decode = torch.compile(pipe.vae.decode, mode=compile_mode, fullgraph=True)
        return pipe

    rows = [
        ("plain (fp32, classic attention)", torch.float32, plain),
        (f"{str(half).removeprefix('torch.')} + SDPA", half, half_sdpa),
        ("  + channels-last", half, channels_last),
    ]
    if compile_mode:
        rows.append((f"  + torch.compile ({compile_mode})", half, compiled))
    return rows


def architecture_bench(
    device: str,
    unet_cfg: dict,
    vae_cfg: dict,
    text_cfg: dict,
    size: int,
    steps_list: tuple[int, ...],
    runs: int,
    compile_mode: str | None,
) -> None:
    import gc

    import torch

    peaks = {}
    for dtype in (torch.float32, torch.float16 if device.startswith("cuda") else torch.bfloat16):
        peaks[dtype] = matmul_peak(
            dtype, device, n=8192 if device.startswith("cuda") else 1024, repeats=20 if device.startswith("cuda") else 3
        )
        print(f"measured matmul peak, {str(dtype).removeprefix('torch.')}: {peaks[dtype] / 1e12:.3g} TFLOP/s")
    flops: dict[int, int] = {}
    print(f"\n{size}x{size}, guidance 0 (no CFG), median of {runs} after warm-up")
    print(f"{'variant':42s} " + "  ".join(f"{s} step{'s' if s > 1 else ' '}: ms   TFLOP/s  %peak" for s in steps_list))
    for name, dtype, make in variants(device, unet_cfg, vae_cfg, text_cfg, compile_mode):
        pipe = make()
        cells = []
        for steps in steps_list:
            if steps not in flops:  # the same work for every variant: counted once, on the first (eager)
                flops[steps] = count_flops(pipe, steps, size, device)

            def run(pipe: Any = pipe, steps: int = steps) -> Any:
                return pipe(
                    PROMPT,
                    num_inference_steps=steps,
                    guidance_scale=0.0,
                    width=size,
                    height=size,
                    generator=torch.Generator(device=device).manual_seed(0),
                )

            for _ in range(3 if "compile" in name else 2):
                run()
            times = [timed(run, device)[0] for _ in range(runs)]
            t = statistics.median(times)
            achieved = flops[steps] / t
            cells.append(f"{t * 1000:8.1f} {achieved / 1e12:8.3g} {100 * achieved / peaks[dtype]:6.1f}%")
        print(f"{name:42s} " + "  ".join(cells))
        del pipe
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    for steps, n in flops.items():
        print(f"work per image at {steps} step(s): {n / 1e12:.3g} TFLOP (text encoder + UNet x steps + VAE decode)")


def gpu_mode(args: argparse.Namespace) -> None:
    import torch

    if not torch.cuda.is_available():
        sys.exit("--gpu needs CUDA; none found. Run without --gpu for the CPU comparison.")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (peak measured the same way)
    torch.backends.cudnn.allow_tf32 = False
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    compile_mode = None if args.compile_mode == "none" else args.compile_mode
    architecture_bench("cuda", SD_TURBO_UNET, SD_TURBO_VAE, SD_TURBO_TEXT, 512, (1, 4), args.runs, compile_mode)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "sd-turbo-random"
        build_pipeline(SD_TURBO_UNET, SD_TURBO_VAE, SD_TURBO_TEXT, "cuda", torch.float16).save_pretrained(folder)
        torch.cuda.empty_cache()
        spec = f"diffusers:{folder}"
        with running_app((spec,), Path(tmp) / "data", image_device="cuda", image_dtype="float16") as (studio, client):
            for steps in (1, 4):
                direct = direct_diffusers(folder, "cuda", torch.float16, 512, steps)
                report_studio(
                    studio_vs_direct(studio, client, spec, sd_form(512, steps), direct, "cuda", args.runs),
                    f"SD-Turbo architecture, 512x512, {steps} step(s), fp16",
                )


def smoke_mode(args: argparse.Namespace) -> None:
    """The --gpu code path on CPU with small configs (bf16 stands in for fp16)."""
    architecture_bench(
        "cpu",
        SMALL_UNET,
        SMALL_VAE,
        SMALL_TEXT,
        128,
        (1, 2),
        2,
        None if args.compile_mode == "none" else args.compile_mode,
    )


def quiet() -> None:
    """Loading bars and warnings from the libraries would bury the numbers."""
    import warnings

    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--size", type=int, default=256, help="CPU mode: image side in pixels")
    parser.add_argument("--steps", type=int, default=4, help="CPU mode: denoising steps")
    parser.add_argument("--batch", type=int, default=4, help="CPU mode: faces per request in the batch row")
    parser.add_argument(
        "--only",
        nargs="+",
        default=["gan", "gan-batch", "sd"],
        choices=["gan", "gan-batch", "sd"],
        help="CPU mode: which comparisons to run",
    )
    parser.add_argument("--gpu", action="store_true", help="SD-Turbo architecture on CUDA")
    parser.add_argument("--smoke", action="store_true", help="the --gpu code path on CPU, small configs")
    parser.add_argument(
        "--compile-mode", default="default", help="torch.compile mode for the optimised variant ('none' to skip)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for torch (OMP_NUM_THREADS); 0 = the library default. On a shared "
        "machine 1 avoids the OpenMP barrier stalls that make timings swing 3-6x",
    )
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch is first imported (inside functions)
    quiet()
    if args.gpu:
        gpu_mode(args)
    elif args.smoke:
        smoke_mode(args)
    else:
        cpu_mode(args)


if __name__ == "__main__":
    main()
