"""Image requests, with no gradio and no model: the limits of every count and size, and raw form values (or an
image's parameters) turned into a checked ImageRequest plus notes saying what was changed."""

from __future__ import annotations

import math
import re
import secrets
from typing import Any

from backends.image.base import ImageCapabilities, ImageRequest
from core.images.errors import ImageInputError

# -- limits ------------------------------------------------------------------------------------
# Every count and size an image request may ask for, in one place. Outside these ranges a request is
# refused with a message naming the parameter and its range (an API caller never sees notes, so nothing
# out of range is quietly changed); inside them, a model's own narrower limits (its size multiple, its
# most steps, its largest side) are applied with a note.
MAX_PROMPT_CHARS = 10_000  # prompt and negative prompt, each
MAX_SCHEDULER_CHARS = 64
MAX_BATCH = 16  # images per job
MAX_FRAMES = 60  # interpolation frames per job: ~80 s of GAN work and ~90 MB of PNGs on 2 cores (120 was 161 s)
MAX_STEPS = 150  # denoising steps, whatever the model
MAX_GUIDANCE = 30.0
MIN_STRENGTH = 0.01
MIN_SIZE = 64  # generated images: smaller is useless and breaks VAEs
MAX_SIDE = 3840  # the largest side any backend makes (OpenAI-compatible images servers)
MAX_PIXELS = 3840 * 2160  # width x height: a 4K frame
MAX_SEED = 2**63 - 1  # fits SQLite's INTEGER and torch.Generator.manual_seed
RANDOM_SEED_BELOW = 2**32  # seeds we pick: short enough to read out and type back

PROMPT_MODES = ("txt2img", "img2img", "sketch", "inpaint")
IMAGE_MODES = ("img2img", "sketch", "inpaint")


def random_seed() -> int:
    """A seed picked for the user (for -1, and the form's dice): below RANDOM_SEED_BELOW, so easy to read and retype."""
    return secrets.randbelow(RANDOM_SEED_BELOW)


# -- form values -> ImageRequest ----------------------------------------------------------------
def _number(name: str, value: Any, default: float | None = None) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is None:
            raise ImageInputError("bad_number", f"{name} is missing.")
        return float(default)
    if isinstance(value, bool):
        raise ImageInputError("bad_number", f"{name} must be a number, not {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ImageInputError("bad_number", f"{name} must be a number, not {str(value)[:40]!r}.") from None
    except OverflowError:  # an integer too large for a float: JSON allows any number of digits
        raise ImageInputError(
            "bad_number", f"{name} is far out of range (a number with {len(str(abs(value)))} digits)."
        ) from None
    if not math.isfinite(number):
        raise ImageInputError("bad_number", f"{name} must be a finite number, not {value!r}.")
    return number


def _whole(name: str, value: Any, default: int | None = None) -> int:
    number = _number(name, value, default)
    if abs(number) > 2**63:  # int(1e308) works but means nothing
        raise ImageInputError("bad_number", f"{name} {str(value)[:40]!r} is far out of range.")
    if number != int(number):
        raise ImageInputError("bad_number", f"{name} must be a whole number, not {number:g}.")
    return int(number)


def _refuse_outside(code: str, name: str, value: float, low: float, high: float) -> None:
    """`name` is how the form labels it and how the API calls it, e.g. "Batch count (batch_count)"."""
    if not low <= value <= high:
        got = f"{int(value)}" if value == int(value) else f"{value:g}"
        raise ImageInputError(code, f"{name} must be from {low:g} to {high:g}; got {got}.")


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _text(name: str, value: Any) -> str:
    """A prompt-like field: text (a number is taken as its digits), without control characters (they would
    end up in the PNG's text chunk, where NUL ends the text)."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ImageInputError("bad_text", f"{name} must be text, not {type(value).__name__}.")
    text = str(value).strip()
    if _CONTROL.search(text):
        raise ImageInputError("bad_text", f"{name} contains control characters (such as NUL); remove them.")
    return text


def _seed(name: str, value: Any, notes: list[str]) -> int:
    seed = _whole(name, value, -1)
    if seed == -1:
        seed = random_seed()
        notes.append(f"{name}: random, picked {seed} (use it again to get the same image).")
    elif not 0 <= seed <= MAX_SEED:
        raise ImageInputError("bad_seed", f"{name} must be -1 (random) or between 0 and {MAX_SEED}; got {seed}.")
    return seed


def _size(name: str, value: Any, multiple: int, limit: int, notes: list[str]) -> int:
    asked = _number(name, value, 512)
    return _fit_size(name, asked, multiple, limit, notes)


def _fit_size(name: str, asked: float, multiple: int, limit: int, notes: list[str]) -> int:
    multiple = max(1, multiple)
    low = min(limit, max(multiple, math.ceil(MIN_SIZE / multiple) * multiple))
    high = max(low, limit // multiple * multiple)
    size = min(high, max(low, int(round(asked / multiple)) * multiple))
    if size != asked:
        why = (
            f"the model needs multiples of {multiple}" if low <= asked <= high else f"the model allows {low} to {high}"
        )
        notes.append(f"{name} {asked:g} became {size} ({why}).")
    return size


def normalise_request(
    *,
    caps: ImageCapabilities,
    prompt: Any = "",
    negative_prompt: Any = "",
    mode: str = "txt2img",
    seed: Any = -1,
    steps: Any = 4,
    guidance: Any = 0.0,
    width: Any = None,
    height: Any = None,
    scheduler: Any = "",
    batch_count: Any = 1,
    strength: Any = 0.6,
    init_image: Any = None,
    mask_image: Any = None,
    seed_b: Any = None,
    interpolation_steps: Any = 0,
) -> tuple[ImageRequest, list[str]]:
    """Form values (strings, floats, None) -> a concrete ImageRequest plus notes to show the user
    about anything changed. Raises ImageInputError when a request cannot be made sensible; no model
    ever sees such a request. Images must already come from `load_user_image`."""
    notes: list[str] = []
    if mode is not None and not isinstance(mode, str):
        raise ImageInputError("mode_unsupported", f"The mode (mode) must be text, not {type(mode).__name__}.")
    mode = (mode or "txt2img").strip()
    if mode not in caps.modes:
        raise ImageInputError(
            "mode_unsupported", f"This model cannot do {mode[:40]!r}; it can do: {', '.join(caps.modes)}."
        )
    prompt = _text("The prompt (prompt)", prompt)
    negative_prompt = _text("The negative prompt (negative_prompt)", negative_prompt)
    if mode in PROMPT_MODES and not prompt:
        raise ImageInputError("empty_prompt", "Write a prompt describing the image you want.")
    for name, text in (("The prompt (prompt)", prompt), ("The negative prompt (negative_prompt)", negative_prompt)):
        if len(text) > MAX_PROMPT_CHARS:
            raise ImageInputError(
                "prompt_too_long", f"{name} is {len(text)} characters; the limit is {MAX_PROMPT_CHARS}."
            )

    if mode == "random" and (prompt or negative_prompt):
        notes.append("This model makes random images: the prompt is not used.")
        prompt = negative_prompt = ""

    seed_value = _seed("Seed (seed)", seed, notes)

    steps_value, guidance_value = 1, 0.0  # a GAN has no steps and no guidance
    if mode != "random":
        steps_value = _whole("Steps (steps)", steps, 4)
        _refuse_outside("bad_steps", "Steps (steps)", steps_value, 1, MAX_STEPS)
        if steps_value > caps.max_steps:
            notes.append(f"Steps {steps_value} became {caps.max_steps}, the most this model allows.")
            steps_value = caps.max_steps
        guidance_value = _number("Guidance (guidance)", guidance, 0.0)
        _refuse_outside("bad_guidance", "Guidance (guidance)", guidance_value, 0.0, MAX_GUIDANCE)

    batch = _whole("Batch count (batch_count)", batch_count, 1)
    _refuse_outside("bad_batch", "Batch count (batch_count)", batch, 1, MAX_BATCH)

    scheduler = _text("The sampler (scheduler)", scheduler)
    if len(scheduler) > MAX_SCHEDULER_CHARS or (scheduler and caps.schedulers and scheduler not in caps.schedulers):
        raise ImageInputError(
            "unknown_scheduler",
            f"Unknown sampler {scheduler[:MAX_SCHEDULER_CHARS]!r}; choose one "
            f"of: {', '.join(caps.schedulers) or '(this model has no sampler choice)'}.",
        )

    strength_value = 0.6
    if mode in IMAGE_MODES:
        if init_image is None:
            what = {"img2img": "a seed image", "sketch": "a drawing", "inpaint": "an image to paint on"}[mode]
            raise ImageInputError("missing_image", f"This mode needs {what}: upload or draw one first.")
        if mode == "inpaint" and mask_image is None:
            raise ImageInputError("missing_mask", "Inpainting needs a mask: paint over the part to change.")
        strength_value = _number("Strength (strength)", strength, 0.6)
        _refuse_outside("bad_strength", "Strength (strength)", strength_value, MIN_STRENGTH, 1.0)
        if int(steps_value * strength_value) < 1:
            # diffusers runs int(steps * strength) steps and fails on zero.
            needed = min(caps.max_steps, math.ceil(1 / strength_value))
            notes.append(
                f"Steps {steps_value} became {needed} so that strength {strength_value:g} runs at least one step."
            )
            steps_value = needed

    if mode == "random":
        # The generator's output size is fixed: whatever the form says, record what it makes.
        width_value, height_value = caps.max_width, caps.max_height
        if any(
            v is not None and _number("Size (width, height)", v) != fixed
            for v, fixed in ((width, width_value), (height, height_value))
        ):
            notes.append(f"Size is fixed at {width_value}x{height_value} for this model.")
    elif mode in IMAGE_MODES:
        # The result has the seed image's shape; only its scale changes (to the model's limits, and MAX_PIXELS).
        w, h = init_image.size
        scale = min(1.0, caps.max_width / w, caps.max_height / h, math.sqrt(MAX_PIXELS / (w * h)))
        width_value = _fit_size("Width", w * scale, caps.size_multiple, caps.max_width, [])
        height_value = _fit_size("Height", h * scale, caps.size_multiple, caps.max_height, [])
        if (width_value, height_value) != (w, h):
            notes.append(
                f"The image ({w}x{h}) is used at {width_value}x{height_value} "
                f"(the model's limit and multiples of {caps.size_multiple})."
            )
    else:
        asked_w = _number("Width (width)", width, 512)
        asked_h = _number("Height (height)", height, 512)
        _refuse_outside("bad_size", "Width (width)", asked_w, MIN_SIZE, MAX_SIDE)
        _refuse_outside("bad_size", "Height (height)", asked_h, MIN_SIZE, MAX_SIDE)
        if asked_w * asked_h > MAX_PIXELS:
            raise ImageInputError(
                "bad_size",
                f"Width x height ({asked_w:g}x{asked_h:g}) is {asked_w * asked_h:,.0f} "
                f"pixels; the limit is {MAX_PIXELS:,} (3840x2160).",
            )
        width_value = _fit_size("Width", asked_w, caps.size_multiple, caps.max_width, notes)
        height_value = _fit_size("Height", asked_h, caps.size_multiple, caps.max_height, notes)

    seed_b_value: int | None = None
    frames = 0
    if mode == "random":
        frames = _whole("Interpolation frames (interpolation_steps)", interpolation_steps, 0)
        _refuse_outside("bad_frames", "Interpolation frames (interpolation_steps)", frames, 0, MAX_FRAMES)
        if frames:
            if frames == 1:
                notes.append("Interpolation frames 1 became 2 (a morph needs its two end faces).")
                frames = 2
            seed_b_value = _seed("Second seed (seed_b)", seed_b, notes)

    request = ImageRequest(
        prompt=prompt,
        negative_prompt=negative_prompt,
        mode=mode,
        seed=seed_value,
        steps=steps_value,
        guidance=guidance_value,
        width=width_value,
        height=height_value,
        scheduler=scheduler,
        batch_count=1 if frames else batch,
        strength=strength_value,
        init_image=_fit(init_image, width_value, height_value) if mode in IMAGE_MODES else None,
        mask_image=_fit(mask_image, width_value, height_value, mask=True) if mode == "inpaint" else None,
        seed_b=seed_b_value,
        interpolation_steps=frames,
    )
    return request, notes


def _fit(image: Any, width: int, height: int, mask: bool = False) -> Any:
    from PIL import Image

    if mask:
        image = image.convert("L")
        # Nearest keeps a painted mask hard-edged (no half-masked grey rim).
        return image if image.size == (width, height) else image.resize((width, height), Image.Resampling.NEAREST)
    image = image.convert("RGB")
    return image if image.size == (width, height) else image.resize((width, height), Image.Resampling.LANCZOS)


def parameters_for(request: ImageRequest, *, seed: int, model: str, **extra: Any) -> dict:
    """The canonical `parameters` dict for one image of `request` (what a backend puts in
    GeneratedImage.parameters). Keys are ImageRequest field names plus model/model_hash and any
    extras (e.g. truncation, licence); `encode_png` turns it into A1111's text format."""
    params: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "mode": request.mode,
        "steps": request.steps,
        "scheduler": request.scheduler,
        "guidance": request.guidance,
        "seed": seed,
        "width": request.width,
        "height": request.height,
        "model": model,
    }
    if request.mode in IMAGE_MODES:
        params["strength"] = request.strength
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None and v != ""}


# The form fields of an image request, as the tab, the API and stored parameters name them.
FORM_KEYS = (
    "prompt",
    "negative_prompt",
    "mode",
    "seed",
    "steps",
    "guidance",
    "width",
    "height",
    "scheduler",
    "batch_count",
    "strength",
    "seed_b",
    "interpolation_steps",
)


def request_fields(parameters: dict) -> dict:
    """Parameters (ours, or parsed from any A1111 PNG) -> keyword arguments for
    `normalise_request` ("reuse parameters"); `model` is returned too so the picker can follow."""
    fields: dict[str, Any] = {}
    for key in (*(k for k in FORM_KEYS if k != "batch_count"), "model"):  # a reused picture is one picture
        if key in parameters:
            fields[key] = parameters[key]
    if "mode" not in fields:
        fields["mode"] = "img2img" if "strength" in parameters else "txt2img"
    return fields


def api_mode(mode: str, init_image: object, mask_image: object) -> str:
    """The mode of an API call: as given, else inpaint with an image and a mask, img2img with only an image,
    else empty (the model's default)."""
    return mode or ("inpaint" if init_image and mask_image else "img2img" if init_image else "")
