"""Which of the image form's inputs apply to a model in a mode, read from the capabilities its backend declares:
the tab shows only these (the request checks in core.images.request still refuse what a model cannot do)."""

from __future__ import annotations

from dataclasses import dataclass

from backends.image.base import ImageCapabilities
from core.images.request import IMAGE_MODES

MODE_ORDER = ("txt2img", "img2img", "sketch", "inpaint", "random")


@dataclass(frozen=True)
class Applicable:
    """What a person can set for one model in one mode. `modes`: the model's modes, in the form's order."""

    mode: str
    modes: tuple[str, ...]
    prompt: bool  # prompt and negative prompt
    init_image: bool  # the seed image (image to image)
    sketch: bool
    inpaint: bool
    strength: bool  # denoising strength: a diffusion model repainting a given picture
    interpolation: bool  # second seed and frames (the GAN)
    steps: bool  # steps and guidance
    sampler: bool
    size: bool
    send_to: tuple[str, ...]  # the gallery's "Send to" targets: modes that take a picture as their input


def choose_mode(caps: ImageCapabilities, wanted: str | None) -> str:
    """`wanted` when the model can do it, else its first mode in the form's order (text to image when it has it)."""
    if wanted in caps.modes:
        return str(wanted)
    return next(m for m in MODE_ORDER + tuple(caps.modes) if m in caps.modes)


def applicable(caps: ImageCapabilities, wanted_mode: str | None) -> Applicable:
    mode = choose_mode(caps, wanted_mode)
    stepped = mode != "random" and caps.max_steps > 1  # a hosted API or the GAN has no steps to set
    return Applicable(
        mode=mode,
        modes=tuple(m for m in MODE_ORDER if m in caps.modes),
        prompt=mode != "random",
        init_image=mode == "img2img",
        sketch=mode == "sketch",
        inpaint=mode == "inpaint",
        strength=mode in IMAGE_MODES and stepped,
        interpolation=mode == "random",
        steps=stepped,
        sampler=stepped and bool(caps.schedulers),
        # one fixed size (the GAN's 1024 x 1024) leaves nothing to choose; other modes take the picture's size
        size=mode == "txt2img" and (caps.max_width > caps.size_multiple or caps.max_height > caps.size_multiple),
        send_to=tuple(m for m in ("img2img", "inpaint") if m in caps.modes),
    )
