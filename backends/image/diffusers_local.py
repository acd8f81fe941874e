"""Local image generation with diffusers: one pipeline loaded from a hub id, a diffusers folder or a single
.safetensors/.ckpt file, serving text-to-image, image-to-image, sketch and inpainting. Owns model download
(with progress), device and precision, scheduler choice, seeding, cancel/progress, and out-of-memory fallback."""
from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from backends.engine_errors import first_line, is_out_of_memory
from backends.text.base import BackendError, ModelUnavailableError, ProgressFn
from backends.image.base import (
    GeneratedImage,
    ImageCancelled,
    ImageCapabilities,
    ImageProgressFn,
    ImageRequest,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "stabilityai/sd-turbo"  # 1-4 steps at guidance 0; ~2.6 GB in fp16
MODES = ("txt2img", "img2img", "sketch", "inpaint")
# Display name -> (diffusers class, config overrides). Names follow stable-diffusion-webui so that its
# "Sampler:" field round-trips. Overrides are explicit both ways, so switching from a Karras-based default
# to plain "DPM++ 2M" really turns Karras off.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": False, "algorithm_type": "dpmsolver++"}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True, "algorithm_type": "dpmsolver++"}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx", ".onnx_data", ".pb", ".h5")
# Components we neither download nor load: the SD1 NSFW filter (1.2 GB; blacks out images, the most common
# complaint about it) and its feature extractor. stable-diffusion-webui and Fooocus do the same.
SKIPPED_COMPONENTS = ("safety_checker", "feature_extractor")
# Transformer-based pipelines are published and tested in bf16; fp16 overflows in them.
BF16_PIPELINES = ("Flux", "StableDiffusion3", "Sana", "PixArt", "Lumina", "HunyuanDiT", "AuraFlow", "Chroma",
                  "QwenImage", "CogView")
# Latent -> RGB linear maps for cheap previews (the "Approx cheap" coefficients of stable-diffusion-webui).
SD_LATENT_RGB = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))
SDXL_LATENT_RGB = ((0.3448, 0.4168, 0.4395), (-0.1953, -0.0290, 0.0250), (0.1074, 0.0886, -0.0163),
                   (-0.3730, -0.2499, -0.2088))
MAX_PREVIEWS = 8  # per image
MEMORY_LEVELS = ("none", "attention slicing + VAE tiling", "model CPU offload")
HASH_CHUNK = 8 << 20


class _Stop(Exception):
    """Raised inside the step callback to leave the pipeline loop when the request is cancelled."""


@dataclass
class _Job:
    """Per-call state the step callback needs (never stored on the backend)."""

    cancel: threading.Event
    progress: ImageProgressFn | None
    width: int
    height: int
    done_before: int  # steps of earlier images in this batch
    batch_count: int
    per_image: int = 0  # steps in this image, known once the pipeline has set its timesteps


class DiffusersBackend:
    """One diffusers pipeline, loaded lazily and once; jobs run one at a time (schedulers keep per-run state
    and are not thread-safe, diffusers #3672), each with a fresh scheduler and its own generators."""

    def __init__(self, model_ref: str = DEFAULT_MODEL, spec: str = "", label: str = "",
                 data_dir: Path | None = None, device: str | None = None, *,
                 dtype: str | None = None, config: str | None = None) -> None:
        """`model_ref`: hub id, diffusers folder, or .safetensors/.ckpt file. `dtype`: "float16", "bfloat16" or
        "float32" (default: half precision on CUDA, float32 on CPU). `config`: for a single file, a diffusers
        folder or hub id describing its architecture (default: diffusers infers it and fetches the configs)."""
        self.model_ref = model_ref.strip()
        self.spec = spec or f"diffusers:{self.model_ref}"
        self.label = label or f"{_short_name(self.model_ref)} (diffusers)"
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._device_wanted = device
        self._dtype_wanted = dtype
        self._config = config
        self._load_lock = threading.Lock()
        self._job_lock = threading.Lock()
        self._pipe: Any = None  # the text-to-image pipeline; others share its modules
        self._derived: dict[str, Any] = {}  # "img2img" / "inpaint" -> pipeline built with from_pipe
        self._scheduler_config: Any = None
        self._scheduler_class: Any = None  # the model's own; pipelines get a fresh scheduler per job
        self._default_scheduler = ""
        self._device = "cpu"
        self._dtype_name = "float32"
        self._model_hash = ""
        self._licence = ""
        self._memory_level = 0
        self._offload_owner: Any = None  # the pipeline whose CPU-offload hooks are installed

    def __repr__(self) -> str:
        return f"DiffusersBackend(model_ref={self.model_ref!r})"

    # -- ImageBackend ---------------------------------------------------------------------------------

    def capabilities(self) -> ImageCapabilities:
        """Does not load the model; once it is loaded, schedulers are narrowed to the compatible ones."""
        schedulers = tuple(SCHEDULERS)
        previews = True
        if self._pipe is not None:
            compatible = {c.__name__ for c in self._scheduler_class._get_compatibles()}
            if "DDIMScheduler" in compatible:  # any discrete-time model runs LCM (e.g. with an LCM-LoRA)
                compatible.add("LCMScheduler")
            schedulers = tuple(n for n, (cls, _) in SCHEDULERS.items() if cls in compatible)
            previews = self._latent_rgb() is not None
        return ImageCapabilities(modes=MODES, schedulers=schedulers, max_width=2048, max_height=2048,
                                 size_multiple=8, max_steps=150, previews=previews, licence_note=self._licence)

    def load(self, progress: ProgressFn | None = None) -> None:
        with self._load_lock:
            if self._pipe is not None:
                return
            report = progress or (lambda fraction, text: None)
            import torch

            self._device = self._device_wanted or ("cuda" if torch.cuda.is_available() else "cpu")
            self._dtype_name = self._dtype_wanted or ("float16" if self._device.startswith("cuda") else "float32")
            path = Path(self.model_ref).expanduser()
            if self.model_ref.lower().endswith(SINGLE_FILE_SUFFIXES):
                if not path.is_file():
                    raise ModelUnavailableError(f"The model file {path} does not exist. Check the path after "
                                                "'diffusers:' in STUDIO_IMAGE_MODEL.")
                pipe = self._load_single_file(path, report)
                hash_files = [path]
            elif path.is_dir() or self.model_ref.startswith(("/", "./", "../", "~")):
                if not (path / "model_index.json").is_file():
                    raise ModelUnavailableError(
                        f"{path} is not a diffusers model folder (it has no model_index.json). Use a folder saved "
                        "with save_pretrained, a hub id, or a single .safetensors file.")
                pipe = self._load_folder(path, report)
                hash_files = _denoiser_files(path)
            else:
                folder = self._fetch_from_hub(report)
                pipe = self._load_folder(folder, report)
                hash_files = _denoiser_files(folder)
            report(0.95, "Hashing the model weights (once; cached)")
            self._model_hash = self._hash_files(hash_files)
            pipe.set_progress_bar_config(disable=True)
            self._scheduler_config = pipe.scheduler.config
            self._scheduler_class = type(pipe.scheduler)
            self._default_scheduler = _scheduler_name(pipe.scheduler)
            self._pipe = pipe
        report(1.0, f"Loaded {self.label} on {self._device} ({self._dtype_name})")

    def generate(self, request: ImageRequest, cancel: threading.Event,
                 progress: ImageProgressFn | None = None) -> list[GeneratedImage]:
        self._check(request)
        self.load()
        self._check_scheduler(request.scheduler)
        while not self._job_lock.acquire(timeout=0.05):
            if cancel.is_set():
                raise ImageCancelled("Cancelled while waiting for the previous image to finish.")
        try:
            results = []
            done = 0
            for i in range(request.batch_count):
                seed = request.seed + i
                job = _Job(cancel, progress, request.width, request.height, done, request.batch_count)
                image = self._run_with_fallback(request, seed, job)
                done += job.per_image
                results.append(GeneratedImage(image=image, seed=seed, parameters=self._parameters(request, seed)))
            return results
        finally:
            self._job_lock.release()

    # -- loading --------------------------------------------------------------------------------------

    def _torch_dtype(self) -> Any:
        import torch

        name = self._dtype_name
        if name not in ("float16", "bfloat16", "float32"):
            raise ModelUnavailableError(f"Unknown precision {name!r}: use float16, bfloat16 or float32.")
        return getattr(torch, name)

    def _pick_dtype_for(self, class_name: str) -> None:
        """Half precision on CUDA: bf16 for transformer pipelines (fp16 overflows there), fp16 otherwise."""
        if self._dtype_wanted or not self._device.startswith("cuda"):
            return
        import torch

        if any(class_name.startswith(p) for p in BF16_PIPELINES) and torch.cuda.is_bf16_supported():
            self._dtype_name = "bfloat16"

    def _load_folder(self, folder: Path, report: ProgressFn) -> Any:
        import diffusers

        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        class_name = index.get("_class_name", "") if isinstance(index.get("_class_name"), str) else ""
        self._pick_dtype_for(class_name)
        # fp16 files when running in half precision, and also in fp32 when they are all there is (hub
        # downloads fetch only them: half the bytes, upcast on load).
        variant = None
        if _has_variant(folder, "fp16") and (self._dtype_name != "float32" or not _has_variant(folder, None)):
            variant = "fp16"
        kwargs: dict[str, Any] = {"dtype": self._torch_dtype(), "variant": variant}
        for name in SKIPPED_COMPONENTS:
            if isinstance(index.get(name), list) and index[name][0] is not None:
                kwargs[name] = None
        if "safety_checker" in kwargs:
            kwargs["requires_safety_checker"] = False
        report(0.85, f"Loading {self.label} into memory")
        try:
            try:
                pipe = diffusers.AutoPipelineForText2Image.from_pretrained(str(folder), **kwargs)
            except ValueError as exc:
                if "AutoPipeline" not in str(exc):
                    raise
                pipe = diffusers.DiffusionPipeline.from_pretrained(str(folder), **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(
                f"Could not load the diffusers model in {folder}: {first_line(exc)}. If it was downloaded, the "
                "download may be incomplete: delete that folder from the cache and load it again.") from None
        return self._to_device(pipe)

    def _load_single_file(self, path: Path, report: ProgressFn) -> Any:
        import diffusers

        if self._config and Path(self._config).expanduser().is_dir():
            index = json.loads((Path(self._config).expanduser() / "model_index.json").read_text(encoding="utf-8"))
            class_name = index.get("_class_name", "StableDiffusionPipeline")
        else:
            class_name = _single_file_pipeline(path)
        self._pick_dtype_for(class_name)
        pipeline_class = getattr(diffusers, class_name, None)
        if pipeline_class is None or not hasattr(pipeline_class, "from_single_file"):
            raise ModelUnavailableError(f"{path.name} is a {class_name} checkpoint, which diffusers cannot load from "
                                        "a single file. Use its diffusers-format folder or hub id instead.")
        report(0.3, f"Loading {path.name}")
        kwargs: dict[str, Any] = {"dtype": self._torch_dtype()}
        if self._config:
            kwargs["config"] = str(Path(self._config).expanduser()) if Path(self._config).expanduser().is_dir() \
                else self._config
        if "safety_checker" in pipeline_class._optional_components:
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        try:
            pipe = pipeline_class.from_single_file(str(path), **kwargs)
        except Exception as exc:  # diffusers raises OSError, ValueError, its own errors, httpx errors...
            message = first_line(exc)
            if _looks_offline(exc):
                raise ModelUnavailableError(
                    f"{path.name} needs the configuration files of its base architecture from the Hugging Face hub, "
                    "which could not be reached, and they are not in the local cache. Load this file once on a "
                    "machine with internet (the configs are a few kB and are then cached), or set "
                    "STUDIO_IMAGE_MODEL_CONFIG to a diffusers folder of the same architecture.") from None
            raise ModelUnavailableError(f"Could not load {path.name} as a {class_name}: {message}") from None
        return self._to_device(pipe)

    def _to_device(self, pipe: Any) -> Any:
        if self._device != "cpu":
            pipe.to(self._device)
        return pipe

    def _fetch_from_hub(self, report: ProgressFn) -> Path:
        """The pipeline's folder in the Hugging Face cache, downloading what is missing. Only the files the
        pipeline loads are fetched (one weight format, the fp16 variant where every component has one), with
        byte progress through a tqdm-compatible hook passed to snapshot_download."""
        from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download, try_to_load_from_cache
        from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

        ref = self.model_ref
        report(0.0, f"Looking up {ref} on the Hugging Face hub")
        try:
            info = HfApi().model_info(ref, files_metadata=True)
        except GatedRepoError:
            raise ModelUnavailableError(
                f"{ref} is gated on the Hugging Face hub: accept its terms on huggingface.co/{ref}, then log in "
                "with `hf auth login` or set HF_TOKEN.") from None
        except RepositoryNotFoundError:
            raise ModelUnavailableError(
                f"The Hugging Face hub has no model '{ref}' (or it is private: log in with `hf auth login`). "
                "Check the id after 'diffusers:' in STUDIO_IMAGE_MODEL.") from None
        except Exception as exc:  # offline mode, DNS, refused, timeout, proxy, 5xx: use the cache if we can
            if isinstance(exc, HfHubHTTPError) and getattr(exc.response, "status_code", 0) == 401:
                raise ModelUnavailableError(f"The Hugging Face hub refused the token for {ref} (HTTP 401): "
                                            "check HF_TOKEN or log in again with `hf auth login`.") from None
            reason = _offline_reason(exc)
            cached = try_to_load_from_cache(ref, "model_index.json")
            if isinstance(cached, str):
                log.warning("Hub unreachable (%s); using the cached copy of %s", reason, ref)
                return Path(cached).parent
            raise ModelUnavailableError(
                f"The Hugging Face hub could not be reached ({reason}) and the model '{ref}' is not in the local "
                f"cache ({constants.HF_HUB_CACHE}). To fix it: start the studio once on a machine with internet "
                "(it downloads the model) and copy that Hugging Face cache here, pointing HF_HOME at it; or set "
                "STUDIO_IMAGE_MODEL to diffusers:<a local diffusers folder> or diffusers:<a .safetensors file>. "
                "The GAN face generator (gan:faces) works without the hub.") from None
        sizes = {s.rfilename: (s.size or 0) for s in info.siblings or ()}
        if "model_index.json" not in sizes:
            raise ModelUnavailableError(
                f"{ref} on the hub is not a diffusers pipeline (it has no model_index.json). Use a diffusers "
                "repository, or download its .safetensors file and set STUDIO_IMAGE_MODEL=diffusers:<that file>.")
        licence = getattr(info.card_data, "license", None)
        self._licence = (f"Model licence: {licence}; read https://huggingface.co/{ref} before commercial use."
                         if licence else f"Read the licence on https://huggingface.co/{ref} before commercial use.")
        index_path = hf_hub_download(ref, "model_index.json", revision=info.sha)
        index = json.loads(Path(index_path).read_text(encoding="utf-8"))
        components = [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list)
                      and v and v[0] is not None and k not in SKIPPED_COMPONENTS]
        # The fp16 files whatever the device: half the download, and a CPU upcasts them to fp32 on load.
        files, _ = select_pipeline_files(list(sizes), components, "fp16")
        total = sum(sizes[f] for f in files)
        report(0.01, f"Downloading {ref} ({_gb(total)}) into {constants.HF_HUB_CACHE}")
        folder = snapshot_download(ref, revision=info.sha, allow_patterns=files,
                                   tqdm_class=_download_bar(ref, total, report))
        return Path(folder)

    # -- hashing --------------------------------------------------------------------------------------

    def _hash_files(self, files: list[Path]) -> str:
        """First 10 hex digits of the SHA-256 of the weights (the single file: the same "Model hash" as
        stable-diffusion-webui's AutoV2; a folder: its UNet/transformer files in order). Cached in
        data_dir/model_hashes.json by path, size and mtime, since hashing gigabytes takes seconds."""
        if not files:
            return ""
        cache_path = self._data_dir / "model_hashes.json" if self._data_dir else None
        cache: dict[str, str] = {}
        if cache_path is not None and cache_path.is_file():
            try:
                cache = json.loads(cache_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                cache = {}
        key = "|".join(f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
        if key in cache:
            return cache[key]
        digest = hashlib.sha256()
        for f in files:
            with open(f, "rb") as handle:
                while chunk := handle.read(HASH_CHUNK):
                    digest.update(chunk)
        value = digest.hexdigest()[:10]
        if cache_path is not None:
            try:
                cache[key] = value
                cache_path.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(cache, indent=1), encoding="utf-8")
                tmp.replace(cache_path)
            except OSError as exc:
                log.info("Could not cache the model hash in %s: %s", cache_path, exc)
        return value

    # -- requests -------------------------------------------------------------------------------------

    def _check(self, r: ImageRequest) -> None:
        """Defensive checks; core/images/request.py normalises requests before they get here."""
        if r.mode not in MODES:
            raise BackendError(f"The diffusers backend does not do '{r.mode}'; it does {', '.join(MODES)}.")
        if r.width % 8 or r.height % 8 or not (8 <= r.width <= 2048 and 8 <= r.height <= 2048):
            raise BackendError(f"Image size {r.width}x{r.height} must be multiples of 8 between 8 and 2048.")
        if not 1 <= r.steps <= 150:
            raise BackendError(f"Steps must be between 1 and 150, not {r.steps}.")
        if r.batch_count < 1:
            raise BackendError("Batch count must be at least 1.")
        if r.mode != "txt2img":
            if r.init_image is None:
                raise BackendError(f"'{r.mode}' needs a starting image.")
            if not 0.0 < r.strength <= 1.0:
                raise BackendError(f"Denoising strength must be above 0 and at most 1, not {r.strength}.")
            if int(r.steps * r.strength) < 1:
                raise BackendError(f"{r.steps} steps at strength {r.strength:g} leave no step to run: "
                                   "steps × strength must be at least 1.")
        if r.mode == "inpaint" and r.mask_image is None:
            raise BackendError("Inpainting needs a mask: paint the area to repaint.")

    def _check_scheduler(self, name: str) -> None:
        if name and name not in self.capabilities().schedulers:
            offered = ", ".join(self.capabilities().schedulers) or "only the model's own"
            raise BackendError(f"Scheduler '{name}' does not work with this model; choose one of: {offered}.")

    def _pipeline_for(self, mode: str) -> Any:
        import diffusers

        if mode == "txt2img":
            return self._pipe
        key = "inpaint" if mode == "inpaint" else "img2img"
        if key not in self._derived:
            auto = diffusers.AutoPipelineForInpainting if key == "inpaint" else diffusers.AutoPipelineForImage2Image
            try:
                # dtype must be passed: from_pipe casts the shared modules to it (default float32).
                pipe = auto.from_pipe(self._pipe, dtype=self._pipe.dtype)
            except ValueError:
                what = "inpainting" if key == "inpaint" else "image-to-image"
                raise BackendError(f"This model ({type(self._pipe).__name__}) has no {what} pipeline in "
                                   "diffusers.") from None
            pipe.set_progress_bar_config(disable=True)
            self._derived[key] = pipe
        return self._derived[key]

    def _run_with_fallback(self, request: ImageRequest, seed: int, job: _Job) -> Any:
        """Run one image; on out-of-memory free everything, step up the memory savers, retry once per level.
        Exceptions are handled outside their `except` blocks so their tracebacks (which hold the pipeline's
        frames, and through them latents and embeddings) are gone before the cache is emptied."""
        while True:
            if job.cancel.is_set():
                raise ImageCancelled("Cancelled.")
            pipe = self._pipeline_for(request.mode)
            outcome = ""
            error = ""
            try:
                return self._run_once(pipe, request, seed, job)
            except _Stop:
                outcome = "cancelled"
            except (RuntimeError, MemoryError) as exc:
                if not is_out_of_memory(exc):
                    raise
                outcome, error = "oom", first_line(exc)
            except ValueError as exc:  # the pipeline's own input checks
                outcome, error = "rejected", first_line(exc)
            self._free_memory(pipe)
            if outcome == "cancelled":
                raise ImageCancelled("Cancelled; memory released.")
            if outcome == "rejected":
                raise BackendError(f"The pipeline rejected the request: {error}")
            log.warning("Out of memory at memory level '%s' (%s)", MEMORY_LEVELS[self._memory_level], error)
            if not self._raise_memory_level():
                raise BackendError(
                    f"Out of memory making a {request.width}x{request.height} image, even with "
                    f"{MEMORY_LEVELS[self._memory_level]}. Memory has been released. Try a smaller size, fewer "
                    "images per batch, or close other programs using the GPU.")

    def _run_once(self, pipe: Any, request: ImageRequest, seed: int, job: _Job) -> Any:
        import torch

        self._prepare_offload(pipe)
        pipe.scheduler = self._new_scheduler(request.scheduler)
        generator = torch.Generator(device=self._generator_device()).manual_seed(seed)
        kwargs: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or None,
            "num_inference_steps": request.steps,
            "guidance_scale": request.guidance,
            "generator": generator,
            "output_type": "pil",
            "callback_on_step_end": self._step_callback(job),
            "callback_on_step_end_tensor_inputs": ["latents"],
        }
        size = (request.width, request.height)
        if request.mode == "txt2img":
            kwargs.update(width=request.width, height=request.height)
        else:
            init = _fit(request.init_image, size, "RGB")
            kwargs.update(image=init, strength=request.strength)
            if request.mode == "inpaint":
                mask = _fit(request.mask_image, size, "L")
                kwargs.update(mask_image=mask, width=request.width, height=request.height)
        image = pipe(**kwargs).images[0]
        if request.mode == "inpaint":
            # Unmasked pixels come back exactly as they were (the VAE round trip would blur them).
            image = pipe.image_processor.apply_overlay(kwargs["mask_image"], kwargs["image"], image)
        return image

    def _step_callback(self, job: _Job) -> Callable[..., dict]:
        coeffs = self._latent_rgb()

        def on_step_end(pipe: Any, index: int, timestep: Any, tensors: dict) -> dict:
            if not job.per_image:
                job.per_image = int(getattr(pipe, "_num_timesteps", 0) or 0) or index + 1
            step = index + 1
            if job.progress is not None:
                total = job.per_image * job.batch_count
                preview = None
                every = max(1, job.per_image // MAX_PREVIEWS)
                if coeffs is not None and step < job.per_image and step % every == 0:
                    preview = _latent_preview(tensors.get("latents"), coeffs, job.width, job.height)
                job.progress(job.done_before + step, total, preview)
            if job.cancel.is_set():
                raise _Stop()
            return {}

        return on_step_end

    def _latent_rgb(self) -> tuple | None:
        """Linear latent->RGB map for 4-channel Stable Diffusion latents; None (no previews) for other
        latent spaces (SD3, Flux, ...) where a VAE decode per preview would cost as much as a step."""
        pipe = self._pipe
        unet = getattr(pipe, "unet", None)
        if unet is None or getattr(unet.config, "in_channels", 0) not in (4, 9) or unet.config.out_channels != 4:
            return None
        return SDXL_LATENT_RGB if "XL" in type(pipe).__name__ else SD_LATENT_RGB

    def _new_scheduler(self, name: str) -> Any:
        """A fresh scheduler per image: no step index or model outputs carried over from the last run."""
        import diffusers

        if not name:
            return self._scheduler_class.from_config(self._scheduler_config)
        class_name, overrides = SCHEDULERS[name]
        return getattr(diffusers, class_name).from_config(self._scheduler_config, **overrides)

    def _generator_device(self) -> str:
        return self._device if self._device.startswith("cuda") else "cpu"

    def _parameters(self, r: ImageRequest, seed: int) -> dict:
        """Keys as core/images/request.py's canonical parameters (ImageRequest field names), which it writes in
        stable-diffusion-webui's text format. Device and precision are recorded because they change pixels."""
        scheduler = r.scheduler or (self._default_scheduler if self._default_scheduler in SCHEDULERS else "")
        parameters = {
            "prompt": r.prompt,
            "negative_prompt": r.negative_prompt,
            "mode": r.mode,
            "steps": r.steps,
            "scheduler": scheduler,
            "guidance": r.guidance,
            "seed": seed,
            "width": r.width,
            "height": r.height,
            "model": _short_name(self.model_ref),
            "model_hash": self._model_hash,
            "backend": "diffusers",
            "device": self._device.split(":")[0],
            "dtype": self._dtype_name,
        }
        if r.mode != "txt2img":
            parameters["strength"] = r.strength
        return parameters

    # -- memory ---------------------------------------------------------------------------------------

    def _raise_memory_level(self) -> bool:
        """Turn on the next memory saver; False when none is left. Sticky: later jobs keep it."""
        cuda = self._device.startswith("cuda")
        if self._memory_level == 0:
            self._pipe.enable_attention_slicing()
            vae = getattr(self._pipe, "vae", None)
            if vae is not None and hasattr(vae, "enable_tiling"):
                vae.enable_tiling()
            self._memory_level = 1
            return True
        if self._memory_level == 1 and cuda and importlib.util.find_spec("accelerate") is not None:
            self._memory_level = 2  # model CPU offload (needs accelerate)
            return True
        return False

    def _prepare_offload(self, pipe: Any) -> None:
        """With model CPU offload, accelerate hooks live on the shared modules; they are (re)installed for
        the pipeline about to run, since each pipeline object tracks its own hook chain."""
        if self._memory_level < 2 or self._offload_owner is pipe:
            return
        if self._offload_owner is not None:
            self._offload_owner.remove_all_hooks()
        pipe.enable_model_cpu_offload(device=self._device)
        self._offload_owner = pipe

    def _free_memory(self, pipe: Any) -> None:
        import torch

        if self._memory_level >= 2:
            try:
                pipe.maybe_free_model_hooks()  # offloads whatever the failed run left on the GPU
            except Exception as exc:  # best effort: never mask the original failure
                log.info("Could not re-offload after a failed run: %s", exc)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            log.info("GPU memory after release: %.0f MB allocated", torch.cuda.memory_allocated() / 2**20)


# -- helpers (module level so tests can call them directly) ---------------------------------------------


def select_pipeline_files(filenames: list[str], components: list[str],
                          variant: str | None) -> tuple[list[str], str | None]:
    """The repository files a diffusers pipeline needs: model_index.json, each component folder's configs
    and tokenizer files, and one set of weights per component (safetensors over .bin; the `variant` files,
    e.g. fp16, only when every weighted component has them, since from_pretrained takes one variant).
    Returns (files, variant used)."""
    chosen = ["model_index.json"]
    per_component: dict[str, tuple[list[str], list[str]]] = {}
    for component in components:
        inside = [f for f in filenames if f.startswith(component + "/") and f.count("/") == 1]
        chosen += [f for f in inside if not f.endswith(WEIGHT_SUFFIXES)]
        weights = [f for f in inside if f.endswith(".safetensors")] or [f for f in inside if f.endswith(".bin")]
        plain = [f for f in weights if _weight_variant(f) is None]
        varied = [f for f in weights if variant is not None and _weight_variant(f) == variant]
        if weights:
            per_component[component] = (plain, varied)
    use_variant = variant is not None and bool(per_component) and all(v for _, v in per_component.values())
    for plain, varied in per_component.values():
        chosen += varied if use_variant else plain
    return sorted(set(chosen)), variant if use_variant else None


def _weight_variant(filename: str) -> str | None:
    """'diffusion_pytorch_model.fp16.safetensors' -> 'fp16'; sharded 'model.fp16-00001-of-00002...' too."""
    stem = filename.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", stem)
    return stem.split(".", 1)[1] if "." in stem else None


def _has_variant(folder: Path, variant: str | None) -> bool:
    """True when every weighted component folder holds `variant` weights (None: plain ones); from_pretrained
    takes one variant for all components."""
    found = False
    for sub in folder.iterdir():
        weights = [p.name for p in sub.glob("*") if p.name.endswith((".safetensors", ".bin"))] if sub.is_dir() else []
        if not weights:
            continue
        if not any(_weight_variant(w) == variant for w in weights):
            return False
        found = True
    return found


def _denoiser_files(folder: Path) -> list[Path]:
    for sub in ("unet", "transformer", "prior", "decoder"):
        files = sorted((folder / sub).glob("*.safetensors")) or sorted((folder / sub).glob("*.bin"))
        if files:
            return files
    return []


def _single_file_pipeline(path: Path) -> str:
    """Which pipeline class a single checkpoint is, from its tensor names and shapes. For .safetensors
    only the header is read (shapes become meta tensors); a .ckpt has to be unpickled."""
    import torch
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                checkpoint = {k: torch.empty(handle.get_slice(k).get_shape(), device="meta") for k in handle.keys()}
        else:
            try:
                checkpoint = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:  # pre-2020 (non-zip) files cannot be memory-mapped
                if "mmap" not in str(exc):
                    raise
                checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
            while isinstance(checkpoint, dict) and "state_dict" in checkpoint:
                checkpoint = checkpoint["state_dict"]
    except Exception as exc:  # truncated file, not a checkpoint, pickled code refused by weights_only
        raise ModelUnavailableError(f"Could not read {path.name} as a model checkpoint: {first_line(exc)}. "
                                    "Prefer .safetensors files; re-download it if it may be damaged.") from None
    try:
        model_type = infer_diffusers_model_type(checkpoint)
    except Exception:
        model_type = "v1"
    if model_type in ("xl_base", "playground-v2-5"):
        return "StableDiffusionXLPipeline"
    if model_type.startswith(("sd3", "sd35")):
        return "StableDiffusion3Pipeline"
    if model_type in ("flux-dev", "flux-schnell"):
        return "FluxPipeline"
    if model_type in ("v1", "v2"):
        return "StableDiffusionPipeline"
    return f"'{model_type}'"


def _scheduler_name(scheduler: Any) -> str:
    """The webui-style name of a scheduler instance, or its class name."""
    class_name = type(scheduler).__name__
    karras = bool(getattr(scheduler.config, "use_karras_sigmas", False))
    for name, (cls, overrides) in SCHEDULERS.items():
        if cls == class_name and overrides.get("use_karras_sigmas", karras) == karras:
            return name
    return class_name


def _latent_preview(latents: Any, coeffs: tuple, width: int, height: int) -> Any:
    """Latents (B, 4, h, w) -> a small RGB PIL image through a fixed linear map; no VAE involved."""
    import torch
    from PIL import Image

    if latents is None or latents.ndim != 4 or latents.shape[1] != 4:
        return None
    with torch.no_grad():
        weights = torch.tensor(coeffs, dtype=torch.float32, device=latents.device)
        rgb = torch.einsum("chw,cr->hwr", latents[0].float(), weights)
        rgb = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
    preview = Image.fromarray(rgb, "RGB")
    return preview.resize((max(8, width // 2), max(8, height // 2)), Image.BILINEAR)


def _fit(image: Any, size: tuple[int, int], mode: str) -> Any:
    from PIL import Image

    image = image.convert(mode)
    if image.size != size:
        # A mask ("L") is binary: NEAREST, as in core, so resizing never invents half-repainted pixels.
        image = image.resize(size, Image.Resampling.LANCZOS if mode == "RGB" else Image.Resampling.NEAREST)
    return image


def _looks_offline(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        name = type(exc).__name__
        if name in ("LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectError", "ConnectTimeout",
                    "ConnectionError", "IncompleteSnapshotError"):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def _offline_reason(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "OfflineModeIsEnabled":
        return "offline mode is on: HF_HUB_OFFLINE=1"
    if "Timeout" in name:
        return "the connection timed out"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status:
        return f"it answered HTTP {status}"
    return "no connection"


def _download_bar(ref: str, total: int, report: ProgressFn) -> type:
    """A tqdm stand-in class for snapshot_download: it draws nothing and forwards bytes written to `report`
    (throttled). huggingface_hub makes one bar for network bytes, one for bytes written ("Reconstructing")
    and one counting files; we follow the bytes written, against the total of the files we asked for."""
    lock = threading.Lock()
    state = {"bytes": 0, "files": 0, "last": 0.0}

    class _Bar:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.desc = str(kwargs.get("desc") or "")
            self.total = kwargs.get("total") or 0
            self.n = kwargs.get("initial") or 0
            self.unit = kwargs.get("unit", "it")
            self.format_dict: dict = {"rate": None}

        def update(self, n: int | float | None = 1) -> None:
            n = int(n or 0)
            self.n += n
            with lock:
                if self.desc.startswith("Reconstruct"):
                    state["bytes"] += n
                elif self.desc.startswith("Fetching"):
                    state["files"] += n
                now = time.monotonic()
                if now - state["last"] < 0.25:
                    return
                state["last"] = now
                done = state["bytes"]
            fraction = 0.01 + 0.83 * min(1.0, done / total) if total else 0.01
            report(fraction, f"Downloading {ref}: {_gb(done)} of {_gb(total)}")

        def close(self) -> None:
            pass

        def refresh(self, *args: Any, **kwargs: Any) -> None:
            pass

        def set_description(self, desc: str = "", refresh: bool = True) -> None:
            self.desc = desc or self.desc

        set_description_str = set_description

        def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __enter__(self) -> "_Bar":
            return self

        def __exit__(self, *exc: Any) -> None:
            pass

    return _Bar


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _short_name(ref: str) -> str:
    path = Path(ref)
    if ref.lower().endswith(SINGLE_FILE_SUFFIXES):
        return path.stem
    if ref.startswith(("/", "./", "../", "~")) or os.sep in ref and path.exists():
        return path.name
    return ref
