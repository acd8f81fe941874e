"""The steps of a diffusers run: the schedulers offered (stable-diffusion-webui names) and a fresh one per image,
and the per-step callback that reports progress, draws cheap latent previews and stops on cancel. torch and
diffusers only inside functions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backends.image.base import ImageProgressFn

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
# Latent -> RGB linear maps for cheap previews (the "Approx cheap" coefficients of stable-diffusion-webui).
SD_LATENT_RGB = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))
SDXL_LATENT_RGB = (
    (0.3448, 0.4168, 0.4395),
    (-0.1953, -0.0290, 0.0250),
    (0.1074, 0.0886, -0.0163),
    (-0.3730, -0.2499, -0.2088),
)
MAX_PREVIEWS = 8  # per image


class StepCancelled(Exception):
    """Raised inside the step callback to leave the pipeline loop when the request is cancelled."""


@dataclass
class Job:
    """Per-call state the step callback needs (never stored on the backend)."""

    cancel: threading.Event
    progress: ImageProgressFn | None
    width: int
    height: int
    done_before: int  # steps of earlier images in this batch
    batch_count: int
    per_image: int = 0  # steps in this image, known once the pipeline has set its timesteps


def step_callback(job: Job, coeffs: tuple | None) -> Callable[..., dict]:
    """diffusers' callback_on_step_end for one image: progress, a preview every few steps when `coeffs` (from
    latent_rgb) maps the latents to RGB, and StepCancelled once the job's cancel event is set."""

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
            raise StepCancelled()
        return {}

    return on_step_end


def latent_rgb(pipe: Any) -> tuple | None:
    """Linear latent->RGB map for 4-channel Stable Diffusion latents; None (no previews) for other
    latent spaces (SD3, Flux, ...) where a VAE decode per preview would cost as much as a step."""
    unet = getattr(pipe, "unet", None)
    if unet is None or getattr(unet.config, "in_channels", 0) not in (4, 9) or unet.config.out_channels != 4:
        return None
    return SDXL_LATENT_RGB if "XL" in type(pipe).__name__ else SD_LATENT_RGB


def new_scheduler(scheduler_class: Any, scheduler_config: Any, name: str) -> Any:
    """A fresh scheduler per image (`name` "": the model's own): no step index or model outputs carried over from
    the last run."""
    import diffusers

    if not name:
        return scheduler_class.from_config(scheduler_config)
    class_name, overrides = SCHEDULERS[name]
    return getattr(diffusers, class_name).from_config(scheduler_config, **overrides)


def scheduler_name(scheduler: Any) -> str:
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
        linear = torch.einsum("chw,cr->hwr", latents[0].float(), weights)
        rgb = ((linear + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
    preview = Image.fromarray(rgb, "RGB")
    return preview.resize((max(8, width // 2), max(8, height // 2)), Image.Resampling.BILINEAR)
