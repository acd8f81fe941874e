"""The image-backend protocol: what every image engine (diffusers, OpenAI images API, GAN) provides.

Like text backends: no knowledge of tabs or users, lazy loading behind a lock, heavy imports inside
methods, and a fresh cancel event per request. One job at a time per loaded pipeline (diffusers
schedulers are not thread-safe), enforced inside the backend.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, runtime_checkable

Mode = Literal["txt2img", "img2img", "sketch", "inpaint", "random"]


@dataclass(frozen=True)
class ImageRequest:
    """Everything that determines an image. Same request + same model + same machine = same pixels."""

    prompt: str = ""
    negative_prompt: str = ""
    mode: Mode = "txt2img"
    seed: int = 0  # always concrete: the core picks one when the user asks for random
    steps: int = 4
    guidance: float = 0.0
    width: int = 512
    height: int = 512
    scheduler: str = ""  # "" = the model's default
    batch_count: int = 1  # images made one after another, seeds seed, seed+1, ...
    strength: float = 0.6  # img2img / sketch / inpaint
    init_image: object | None = field(default=None, compare=False, repr=False)  # PIL.Image (RGB)
    mask_image: object | None = field(default=None, compare=False, repr=False)  # PIL.Image (L), white = repaint
    # GAN only: interpolate from `seed` to `seed_b` in `interpolation_steps` frames.
    seed_b: int | None = None
    interpolation_steps: int = 0

    def with_seed(self, seed: int) -> ImageRequest:
        return replace(self, seed=seed)


@dataclass
class GeneratedImage:
    image: object  # PIL.Image.Image
    seed: int
    parameters: dict  # what reproduces it: prompt, seed, steps, guidance, size, model, sampler, ...


@dataclass(frozen=True)
class ImageCapabilities:
    modes: tuple[Mode, ...]
    schedulers: tuple[str, ...] = ()
    max_width: int = 2048
    max_height: int = 2048
    size_multiple: int = 8
    max_steps: int = 150
    previews: bool = False  # intermediate previews during generation
    licence_note: str = ""  # shown in the UI, e.g. non-commercial terms
    licence_url: str = ""  # where the full terms are (the UI links to it from the one-line note)


# progress(step, total, preview PIL image or None)
ImageProgressFn = Callable[[int, int, object | None], None]


class ImageCancelled(Exception):
    """Raised when a request's cancel event was set; memory has been released."""


@runtime_checkable
class ImageBackend(Protocol):
    spec: str  # e.g. "diffusers:stabilityai/sd-turbo", "gan:faces", "openai:gpt-image-1"
    label: str

    def capabilities(self) -> ImageCapabilities: ...

    def load(self, progress: Callable[[float, str], None] | None = None) -> None:
        """Idempotent, thread-safe, lazy. Hub unreachable and nothing cached ->
        backends.text.base.ModelUnavailableError saying exactly that and how to fix it."""
        ...

    def generate(
        self, request: ImageRequest, cancel: threading.Event, progress: ImageProgressFn | None = None
    ) -> list[GeneratedImage]:
        """batch_count images (or interpolation frames). Raises ImageCancelled, or a
        backends.text.base.BackendError subclass with a message the user can act on (out of memory
        included: memory is released before raising)."""
        ...
