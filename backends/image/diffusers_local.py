"""Local image generation with diffusers: one pipeline, loaded lazily from a hub id, a diffusers folder or a single
.safetensors/.ckpt file, serving text-to-image, image-to-image, sketch and inpainting. Owns the jobs (one at a
time, seeded, with the derived pipelines) and the out-of-memory ladder. Building the pipeline is
diffusers_loading.py's, finding and hashing the weights diffusers_weights.py's, and the scheduler, progress,
previews and cancel of each step diffusers_steps.py's."""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
import threading
from pathlib import Path
from typing import Any

from backends.engine_errors import first_line, is_out_of_memory
from backends.image.base import GeneratedImage, ImageCancelled, ImageCapabilities, ImageProgressFn, ImageRequest, Mode
from backends.image.diffusers_loading import PipelineLoader
from backends.image.diffusers_steps import (
    SCHEDULERS,
    Job,
    StepCancelled,
    latent_rgb,
    new_scheduler,
    scheduler_name,
    step_callback,
)
from backends.image.diffusers_weights import (
    SINGLE_FILE_SUFFIXES,
    select_pipeline_files,  # noqa: F401  (re-exported for the tests)
)
from backends.text.base import BackendError, ProgressFn

log = logging.getLogger(__name__)

DEFAULT_MODEL = "stabilityai/sd-turbo"  # 1-4 steps at guidance 0; ~2.6 GB in fp16
MODES: tuple[Mode, ...] = ("txt2img", "img2img", "sketch", "inpaint")
MEMORY_LEVELS = ("none", "attention slicing + VAE tiling", "model CPU offload")


class DiffusersBackend:
    """One diffusers pipeline, loaded lazily and once; jobs run one at a time (schedulers keep per-run state
    and are not thread-safe, diffusers #3672), each with a fresh scheduler and its own generators."""

    def __init__(
        self,
        model_ref: str = DEFAULT_MODEL,
        spec: str = "",
        label: str = "",
        data_dir: Path | None = None,
        device: str | None = None,
        *,
        dtype: str | None = None,
        config: str | None = None,
    ) -> None:
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
            previews = latent_rgb(self._pipe) is not None
        return ImageCapabilities(
            modes=MODES,
            schedulers=schedulers,
            max_width=2048,
            max_height=2048,
            size_multiple=8,
            max_steps=150,
            previews=previews,
            licence_note=self._licence,
        )

    def load(self, progress: ProgressFn | None = None) -> None:
        with self._load_lock:
            if self._pipe is not None:
                return
            report = progress or (lambda fraction, text: None)
            loader = PipelineLoader(
                self.model_ref,
                self.label,
                device=self._device_wanted,
                dtype=self._dtype_wanted,
                config=self._config,
                data_dir=self._data_dir,
            )
            pipe = loader.load(report)
            self._device, self._dtype_name = loader.device, loader.dtype_name
            self._model_hash, self._licence = loader.model_hash, loader.licence
            pipe.set_progress_bar_config(disable=True)
            self._scheduler_config = pipe.scheduler.config
            self._scheduler_class = type(pipe.scheduler)
            self._default_scheduler = scheduler_name(pipe.scheduler)
            self._pipe = pipe
        report(1.0, f"Loaded {self.label} on {self._device} ({self._dtype_name})")

    def generate(
        self, request: ImageRequest, cancel: threading.Event, progress: ImageProgressFn | None = None
    ) -> list[GeneratedImage]:
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
                job = Job(cancel, progress, request.width, request.height, done, request.batch_count)
                image = self._run_with_fallback(request, seed, job)
                done += job.per_image
                results.append(GeneratedImage(image=image, seed=seed, parameters=self._parameters(request, seed)))
            return results
        finally:
            self._job_lock.release()

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
                raise BackendError(
                    f"{r.steps} steps at strength {r.strength:g} leave no step to run: "
                    "steps × strength must be at least 1."
                )
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
                raise BackendError(
                    f"This model ({type(self._pipe).__name__}) has no {what} pipeline in diffusers."
                ) from None
            pipe.set_progress_bar_config(disable=True)
            self._derived[key] = pipe
        return self._derived[key]

    def _run_with_fallback(self, request: ImageRequest, seed: int, job: Job) -> Any:
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
            except StepCancelled:
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
                    "images per batch, or close other programs using the GPU."
                )

    def _run_once(self, pipe: Any, request: ImageRequest, seed: int, job: Job) -> Any:
        import torch

        self._prepare_offload(pipe)
        pipe.scheduler = new_scheduler(self._scheduler_class, self._scheduler_config, request.scheduler)
        generator = torch.Generator(device=self._generator_device()).manual_seed(seed)
        kwargs: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or None,
            "num_inference_steps": request.steps,
            "guidance_scale": request.guidance,
            "generator": generator,
            "output_type": "pil",
            "callback_on_step_end": step_callback(job, latent_rgb(self._pipe)),
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


def _fit(image: Any, size: tuple[int, int], mode: str) -> Any:
    from PIL import Image

    image = image.convert(mode)
    if image.size != size:
        # A mask ("L") is binary: NEAREST, as in core, so resizing never invents half-repainted pixels.
        image = image.resize(size, Image.Resampling.LANCZOS if mode == "RGB" else Image.Resampling.NEAREST)
    return image


def _short_name(ref: str) -> str:
    path = Path(ref)
    if ref.lower().endswith(SINGLE_FILE_SUFFIXES):
        return path.stem
    if ref.startswith(("/", "./", "../", "~")) or os.sep in ref and path.exists():
        return path.name
    return ref
