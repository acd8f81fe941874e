"""Image generation: the app's path (request normalised by core/images.py, DiffusersBackend.generate with
its per-step callback, progress and previews, then PNG encoding with the `parameters` chunk) vs the same
diffusers pipeline called directly, in one run, interleaved. Prints both medians and the app's overhead.

    .venv/bin/python bench/image_bench.py [--runs 7] [--size 256] [--steps 4]     # CPU, small random SD
    .venv/bin/python bench/image_bench.py --gpu [--runs 10] [--compile-mode default]   # CUDA only

--gpu builds SD-Turbo's real architecture (configs below, random weights, nothing downloaded) and times
512x512 at 1 and 4 steps: plain (fp32, classic attention) vs optimised (fp16, SDPA, channels-last,
torch.compile), each as a fraction of the GPU's measured fp16/fp32 matmul peak; then the app overhead on
that architecture. --smoke runs the --gpu code path on CPU with small configs, to check the script.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = "a lighthouse on a cliff at dusk, oil painting"

# SD-Turbo (stabilityai/sd-turbo): the SD 2.1 architecture at 512x512, OpenCLIP-H text encoder.
SD_TURBO_UNET = {
    "act_fn": "silu", "attention_head_dim": [5, 10, 20, 20], "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False, "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "dual_cross_attention": False, "flip_sin_to_cos": True, "freq_shift": 0,
    "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
    "norm_num_groups": 32, "num_class_embeds": None, "only_cross_attention": False, "out_channels": 4,
    "sample_size": 64, "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                         "CrossAttnUpBlock2D"],
    "upcast_attention": False, "use_linear_projection": True,
}
SD_TURBO_VAE = {
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3, "latent_channels": 4,
    "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 768,
    "scaling_factor": 0.18215, "up_block_types": ["UpDecoderBlock2D"] * 4,
}
SD_TURBO_TEXT = {
    "hidden_act": "gelu", "hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
    "num_hidden_layers": 23, "projection_dim": 512, "max_position_embeddings": 77, "vocab_size": 49408,
    "layer_norm_eps": 1e-05, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1,
}
SD_TURBO_SCHEDULER = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "steps_offset": 1, "timestep_spacing": "trailing",
}
# Small random SD for the CPU comparison: SD's shape (3 UNet levels with attention, VAE factor 8).
SMALL_UNET = {
    "block_out_channels": [32, 64, 128], "layers_per_block": 1, "attention_head_dim": 8,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 64, "norm_num_groups": 8, "sample_size": 32, "in_channels": 4, "out_channels": 4,
    "use_linear_projection": True,
}
SMALL_VAE = {
    "block_out_channels": [16, 32, 64, 64], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 8,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3, "out_channels": 3, "sample_size": 256,
}
SMALL_TEXT = {
    "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2,
    "vocab_size": 1000, "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1,
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
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=EulerDiscreteScheduler(**SD_TURBO_SCHEDULER), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
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


def app_vs_direct(folder: Path, device: str, size: int, steps: int, runs: int, dtype: Any) -> dict:
    """Both paths on one loaded model each (same weights from `folder`), interleaved so that drift
    (thermal, other processes) hits both alike."""
    import numpy as np
    import torch
    from diffusers import AutoPipelineForText2Image

    from backends.diffusers_backend import DiffusersBackend
    from core.images import encode_png, normalise_request

    backend = DiffusersBackend(str(folder), device=device, dtype=str(dtype).removeprefix("torch."))
    backend.load()
    direct = AutoPipelineForText2Image.from_pretrained(str(folder), dtype=dtype).to(device)
    direct.set_progress_bar_config(disable=True)
    caps = backend.capabilities()
    previews: list = []

    def app_once(seed: int) -> tuple[Any, bytes]:
        request, _ = normalise_request(caps=caps, prompt=PROMPT, negative_prompt="", seed=seed, steps=steps,
                                       guidance=0.0, width=size, height=size, scheduler="", batch_count=1)
        made = backend.generate(request, threading.Event(), lambda s, t, p: previews.append((s, t, p)))[0]
        return made.image, encode_png(made.image, made.parameters)

    def direct_once(seed: int) -> Any:
        generator = torch.Generator(device="cuda" if device.startswith("cuda") else "cpu").manual_seed(seed)
        return direct(PROMPT, num_inference_steps=steps, guidance_scale=0.0, width=size, height=size,
                      generator=generator).images[0]

    for seed in (0, 1):  # warm-up: allocator, kernels, lazy imports
        app_once(seed)
        direct_once(seed)
    app_times, direct_times = [], []
    same = True
    for i in range(runs):
        seed = 100 + i
        first_app = i % 2 == 0  # alternate the order too
        for which in ("app", "direct") if first_app else ("direct", "app"):
            if which == "app":
                t, (image_app, png) = timed(lambda: app_once(seed), device)
                app_times.append(t)
            else:
                t, image_direct = timed(lambda: direct_once(seed), device)
                direct_times.append(t)
        same &= bool(np.array_equal(np.asarray(image_app), np.asarray(image_direct)))
    app, direct_median = statistics.median(app_times), statistics.median(direct_times)
    return {"app_s": app, "direct_s": direct_median, "overhead": app / direct_median - 1.0,
            "identical_pixels": same, "png_bytes": len(png),
            "previews": sum(1 for *_, p in previews if p is not None), "progress_events": len(previews)}


def cpu_mode(args: argparse.Namespace) -> None:
    import torch

    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "small-sd"
        build_pipeline(SMALL_UNET, SMALL_VAE, SMALL_TEXT).save_pretrained(folder)
        result = app_vs_direct(folder, "cpu", args.size, args.steps, args.runs, torch.float32)
    report_app(result, f"small random SD, {args.size}x{args.size}, {args.steps} steps, CPU fp32")


def report_app(r: dict, what: str) -> None:
    print(f"\nApp path vs pipeline called directly ({what}), median of the interleaved runs:")
    print(f"  direct pipeline      {r['direct_s'] * 1000:9.1f} ms/image")
    print(f"  app path (+PNG)      {r['app_s'] * 1000:9.1f} ms/image   ({r['progress_events']} progress events, "
          f"{r['previews']} previews, PNG {r['png_bytes']} bytes)")
    print(f"  overhead             {r['overhead'] * 100:+9.1f} %   (target: under 10 %)")
    print(f"  same pixels as direct: {r['identical_pixels']}")


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
        pipe(PROMPT, num_inference_steps=steps, guidance_scale=0.0, width=size, height=size,
             generator=torch.Generator(device=device).manual_seed(0))
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

    rows = [("plain (fp32, classic attention)", torch.float32, plain),
            (f"{str(half).removeprefix('torch.')} + SDPA", half, half_sdpa),
            ("  + channels-last", half, channels_last)]
    if compile_mode:
        rows.append((f"  + torch.compile ({compile_mode})", half, compiled))
    return rows


def architecture_bench(device: str, unet_cfg: dict, vae_cfg: dict, text_cfg: dict, size: int,
                       steps_list: tuple[int, ...], runs: int, compile_mode: str | None) -> None:
    import gc

    import torch

    peaks = {}
    for dtype in (torch.float32, torch.float16 if device.startswith("cuda") else torch.bfloat16):
        peaks[dtype] = matmul_peak(dtype, device, n=8192 if device.startswith("cuda") else 1024,
                                   repeats=20 if device.startswith("cuda") else 3)
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
                return pipe(PROMPT, num_inference_steps=steps, guidance_scale=0.0, width=size, height=size,
                            generator=torch.Generator(device=device).manual_seed(0))

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
        for steps in (1, 4):
            result = app_vs_direct(folder, "cuda", 512, steps, args.runs, torch.float16)
            report_app(result, f"SD-Turbo architecture, 512x512, {steps} step(s), fp16")


def smoke_mode(args: argparse.Namespace) -> None:
    """The --gpu code path on CPU with small configs (bf16 stands in for fp16)."""
    architecture_bench("cpu", SMALL_UNET, SMALL_VAE, SMALL_TEXT, 128, (1, 2), 2,
                       None if args.compile_mode == "none" else args.compile_mode)


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
    parser.add_argument("--gpu", action="store_true", help="SD-Turbo architecture on CUDA")
    parser.add_argument("--smoke", action="store_true", help="the --gpu code path on CPU, small configs")
    parser.add_argument("--compile-mode", default="default",
                        help="torch.compile mode for the optimised variant ('none' to skip)")
    args = parser.parse_args()
    quiet()
    if args.gpu:
        gpu_mode(args)
    elif args.smoke:
        smoke_mode(args)
    else:
        cpu_mode(args)


if __name__ == "__main__":
    main()
