"""Image-studio core, no gradio and no model: turning raw form values into an ImageRequest, opening
uploaded images safely, the A1111 `parameters` PNG text chunk, and the per-user gallery on disk.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import secrets
import sqlite3
import struct
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from backends.image.base import GeneratedImage, ImageCapabilities, ImageRequest
from core.security.uploads import UploadError, read_capped
from core.db import DISK_FULL_MESSAGE, SQLiteDB, is_disk_full
from core.errors import InputError, StorageFullError
from core.quota import reserved

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

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000  # 40 MP: larger than any camera most people own, ~160 MB as RGBA
MAX_UPLOAD_SIDE = 12_000
MIN_UPLOAD_SIDE = 16  # a 1x1 "image" cannot guide anything; 16 still allows small sketches/icons
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # decoders we let run at all (JPEG covers MPO)

PROMPT_MODES = ("txt2img", "img2img", "sketch", "inpaint")
IMAGE_MODES = ("img2img", "sketch", "inpaint")


class ImageInputError(InputError):
    """A request or upload refused before any model runs. `str(e)` is the message for the user;
    `code` says which rule refused it (tests and the UI rely on it, so codes are stable)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.user_message = message


# -- (a) requests --------------------------------------------------------------------------------
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
        raise ImageInputError("bad_number", f"{name} is far out of range (a number with "
                              f"{len(str(abs(value)))} digits).") from None
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
        seed = secrets.randbelow(RANDOM_SEED_BELOW)
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
        why = (f"the model needs multiples of {multiple}" if low <= asked <= high
               else f"the model allows {low} to {high}")
        notes.append(f"{name} {asked:g} became {size} ({why}).")
    return size


def normalise_request(*, caps: ImageCapabilities, prompt: Any = "", negative_prompt: Any = "",
                      mode: str = "txt2img", seed: Any = -1, steps: Any = 4, guidance: Any = 0.0,
                      width: Any = None, height: Any = None, scheduler: Any = "", batch_count: Any = 1,
                      strength: Any = 0.6, init_image: Any = None, mask_image: Any = None,
                      seed_b: Any = None, interpolation_steps: Any = 0) -> tuple[ImageRequest, list[str]]:
    """Form values (strings, floats, None) -> a concrete ImageRequest plus notes to show the user
    about anything changed. Raises ImageInputError when a request cannot be made sensible; no model
    ever sees such a request. Images must already come from `load_user_image`."""
    notes: list[str] = []
    if mode is not None and not isinstance(mode, str):
        raise ImageInputError("mode_unsupported", f"The mode (mode) must be text, not {type(mode).__name__}.")
    mode = (mode or "txt2img").strip()
    if mode not in caps.modes:
        raise ImageInputError("mode_unsupported",
                              f"This model cannot do {mode[:40]!r}; it can do: {', '.join(caps.modes)}.")
    prompt = _text("The prompt (prompt)", prompt)
    negative_prompt = _text("The negative prompt (negative_prompt)", negative_prompt)
    if mode in PROMPT_MODES and not prompt:
        raise ImageInputError("empty_prompt", "Write a prompt describing the image you want.")
    for name, text in (("The prompt (prompt)", prompt), ("The negative prompt (negative_prompt)", negative_prompt)):
        if len(text) > MAX_PROMPT_CHARS:
            raise ImageInputError("prompt_too_long",
                                  f"{name} is {len(text)} characters; the limit is {MAX_PROMPT_CHARS}.")

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
        raise ImageInputError("unknown_scheduler", f"Unknown sampler {scheduler[:MAX_SCHEDULER_CHARS]!r}; choose one "
                              f"of: {', '.join(caps.schedulers) or '(this model has no sampler choice)'}.")

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
            notes.append(f"Steps {steps_value} became {needed} so that strength {strength_value:g} "
                         "runs at least one step.")
            steps_value = needed

    if mode == "random":
        # The generator's output size is fixed: whatever the form says, record what it makes.
        width_value, height_value = caps.max_width, caps.max_height
        if any(v is not None and _number("Size (width, height)", v) != fixed
               for v, fixed in ((width, width_value), (height, height_value))):
            notes.append(f"Size is fixed at {width_value}x{height_value} for this model.")
    elif mode in IMAGE_MODES:
        # The result has the seed image's shape; only its scale changes (to the model's limits, and MAX_PIXELS).
        w, h = init_image.size
        scale = min(1.0, caps.max_width / w, caps.max_height / h, math.sqrt(MAX_PIXELS / (w * h)))
        width_value = _fit_size("Width", w * scale, caps.size_multiple, caps.max_width, [])
        height_value = _fit_size("Height", h * scale, caps.size_multiple, caps.max_height, [])
        if (width_value, height_value) != (w, h):
            notes.append(f"The image ({w}x{h}) is used at {width_value}x{height_value} "
                         f"(the model's limit and multiples of {caps.size_multiple}).")
    else:
        asked_w = _number("Width (width)", width, 512)
        asked_h = _number("Height (height)", height, 512)
        _refuse_outside("bad_size", "Width (width)", asked_w, MIN_SIZE, MAX_SIDE)
        _refuse_outside("bad_size", "Height (height)", asked_h, MIN_SIZE, MAX_SIDE)
        if asked_w * asked_h > MAX_PIXELS:
            raise ImageInputError("bad_size", f"Width x height ({asked_w:g}x{asked_h:g}) is {asked_w * asked_h:,.0f} "
                                  f"pixels; the limit is {MAX_PIXELS:,} (3840x2160).")
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
        prompt=prompt, negative_prompt=negative_prompt, mode=mode, seed=seed_value,  # type: ignore[arg-type]
        steps=steps_value, guidance=guidance_value, width=width_value, height=height_value,
        scheduler=scheduler, batch_count=1 if frames else batch, strength=strength_value,
        init_image=_fit(init_image, width_value, height_value) if mode in IMAGE_MODES else None,
        mask_image=_fit(mask_image, width_value, height_value, mask=True) if mode == "inpaint" else None,
        seed_b=seed_b_value, interpolation_steps=frames,
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
    params: dict[str, Any] = {"prompt": request.prompt, "negative_prompt": request.negative_prompt,
                              "mode": request.mode, "steps": request.steps, "scheduler": request.scheduler,
                              "guidance": request.guidance, "seed": seed, "width": request.width,
                              "height": request.height, "model": model}
    if request.mode in IMAGE_MODES:
        params["strength"] = request.strength
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None and v != ""}


def request_fields(parameters: dict) -> dict:
    """Parameters (ours, or parsed from any A1111 PNG) -> keyword arguments for
    `normalise_request` ("reuse parameters"); `model` is returned too so the picker can follow."""
    fields: dict[str, Any] = {}
    for key in ("prompt", "negative_prompt", "mode", "seed", "steps", "guidance", "width", "height",
                "scheduler", "strength", "seed_b", "interpolation_steps", "model"):
        if key in parameters:
            fields[key] = parameters[key]
    if "mode" not in fields:
        fields["mode"] = "img2img" if "strength" in parameters else "txt2img"
    return fields


# -- (b) uploaded images -------------------------------------------------------------------------
def load_user_image(source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Any,
                    purpose: str = "image", notes: list[str] | None = None) -> Any:
    """Open an uploaded image without trusting it: the header is checked before any pixel is
    decoded, only common formats are decoded at all, and a damaged file raises instead of giving
    half an image. Returns RGB (alpha composited on white), or L for purpose="mask" (painted =
    white; taken from the alpha channel when there is one). Notes about changes go to `notes`."""
    import warnings

    from PIL import Image, ImageOps

    notes = [] if notes is None else notes
    what = {"mask": "mask", "sketch": "drawing", "init": "seed image"}.get(purpose, "image")
    if isinstance(source, Image.Image):  # already decoded by the caller: still checked and normalised
        image = source
        _check_dimensions(image.size, what)
    else:
        data = _read_bytes(source, what)
        try:
            # Pillow only warns between 89 and 179 MP; make that a refusal too. (catch_warnings is
            # process-wide, but it only ever turns this one category into an error.)
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _too_large_from_pil(exc, what) from None
        except Image.UnidentifiedImageError:
            raise ImageInputError("not_an_image", f"The {what} is not an image this studio can read "
                                  f"(use PNG, JPEG, WebP, GIF, BMP or TIFF).") from None
        except ValueError as exc:  # PNG text/ICC chunks that inflate beyond Pillow's caps
            raise ImageInputError("decompression_bomb", f"The {what} carries metadata that expands to an "
                                  f"absurd size (a decompression bomb); it was refused. ({exc})") from None
        except (OSError, SyntaxError, EOFError, struct.error) as exc:
            raise ImageInputError("corrupt", f"The {what} is damaged and cannot be read ({exc}).") from None
        _check_dimensions(image.size, what)
        frames = getattr(image, "n_frames", 1)
        if frames > 1:
            image.seek(0)
            notes.append(f"The {what} is animated ({frames} frames): only the first frame is used.")
        try:
            image.load()  # decode now, inside the checks, so no half-decoded image escapes
        except (OSError, SyntaxError, EOFError, ValueError, struct.error) as exc:
            text = str(exc)
            code = "truncated" if "truncat" in text.lower() or isinstance(exc, EOFError) else "corrupt"
            raise ImageInputError(code, f"The {what} is {'incomplete (the file was cut short)' if code == 'truncated' else 'damaged'}"
                                  f" and cannot be used; upload the full file again ({text}).") from None
        try:
            image = ImageOps.exif_transpose(image)  # phone photos: stored sideways, shown upright
        except Exception:  # a broken EXIF block is no reason to refuse the pixels
            pass
    return _normalise_mode(image, purpose, what, notes)


def _read_bytes(source: Any, what: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(MAX_UPLOAD_BYTES + 1)
    else:
        # Only a regular file, read with the cap enforced while reading: a FIFO or a device never
        # blocks or streams without bound (the edge has already checked it is the caller's upload).
        try:
            data = read_capped(source, MAX_UPLOAD_BYTES, f"The {what}")
        except UploadError as exc:
            raise ImageInputError({"not_a_file": "not_an_image"}.get(exc.code, exc.code), str(exc)) from None
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageInputError("too_large", f"The {what} file is over {MAX_UPLOAD_BYTES // 2**20} MB.")
    if not data:
        raise ImageInputError("not_an_image", f"The {what} file is empty.")
    return data


def _check_dimensions(size: tuple[int, int], what: str) -> None:
    w, h = size
    if w * h > MAX_UPLOAD_PIXELS or max(w, h) > MAX_UPLOAD_SIDE:
        raise ImageInputError(
            "too_large", f"The {what} is {w}x{h} pixels ({w * h / 1e6:.0f} MP); the limit is "
            f"{MAX_UPLOAD_PIXELS // 1_000_000} MP and {MAX_UPLOAD_SIDE} pixels a side. It was refused "
            "without being decoded: scale it down and upload it again.")
    if min(w, h) < MIN_UPLOAD_SIDE:
        raise ImageInputError("too_small", f"The {what} is only {w}x{h} pixels; it needs at least "
                              f"{MIN_UPLOAD_SIDE} pixels a side to be useful.")


def _too_large_from_pil(exc: Exception, what: str) -> ImageInputError:
    m = re.search(r"\((\d+) pixels\)", str(exc))
    size = f" declares {int(m.group(1)) / 1e6:.0f} MP" if m else " is far too large"
    return ImageInputError(
        "too_large", f"The {what}{size}; the limit is {MAX_UPLOAD_PIXELS // 1_000_000} MP. It was refused "
        "without being decoded (a tiny file that declares this many pixels is a decompression bomb).")


def _normalise_mode(image: Any, purpose: str, what: str, notes: list[str]) -> Any:
    from PIL import Image

    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):  # 16-bit / float scans and PNGs
        import numpy as np

        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0) if mode == "I" else 1.0
        if mode == "F" and arr.size and (arr.max() > 1.0 or arr.min() < 0.0):
            arr = (arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-12)
        image = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
        notes.append(f"The {what} had more than 8 bits per channel; it was reduced to 8.")
        mode = "L"
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if purpose == "mask":
        if has_alpha:
            return image.convert("RGBA").getchannel("A")  # painted strokes are the opaque part
        return image.convert("L")
    if has_alpha:
        rgba = image.convert("RGBA")
        if rgba.getchannel("A").getextrema() != (255, 255):
            notes.append(f"The {what} has transparency: it was placed on a white background.")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        notes.append(f"The {what} was CMYK (print colours): converted to RGB.")
    return image.convert("RGB") if mode != "RGB" else image


# -- (c) PNG parameters in stable-diffusion-webui's format ---------------------------------------
# Our key -> (A1111 label, type). Order follows A1111's create_infotext where it has the field.
_FIELDS: dict[str, tuple[str, type]] = {
    "steps": ("Steps", int),
    "scheduler": ("Sampler", str),
    "guidance": ("CFG scale", float),
    "seed": ("Seed", int),
    "size": ("Size", str),  # width x height
    "model_hash": ("Model hash", str),
    "model": ("Model", str),
    "strength": ("Denoising strength", float),
    "mode": ("Mode", str),
    "seed_b": ("Interpolation seed", int),
    "interpolation_steps": ("Interpolation frames", int),
    "frame": ("Interpolation frame", int),
    "truncation": ("Truncation psi", float),
    "licence": ("Licence", str),
}
_BY_LABEL = {label: (key, kind) for key, (label, kind) in _FIELDS.items()}
# A1111's own pattern (modules/infotext_utils.py): "Key: value" with JSON-quoted values. Unlike A1111's,
# a label has no leading \s* and at most 64 characters: otherwise every start position of a long line
# without pairs scans to its end, and 1 MB of text in a PNG takes hours (quadratic backtracking).
_LABEL = r"\w[\w \-/]{1,63}"
_RE_PARAM = re.compile(r'(' + _LABEL + r'):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_RE_SIZE = re.compile(r"^(\d+)x(\d+)$")
_RE_INT = re.compile(r"^-?\d+$")
_RE_FLOAT = re.compile(r"^-?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$")


def _quote(value: Any) -> str:
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text and not text.startswith('"'):
        return text
    return json.dumps(text, ensure_ascii=False)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _label(key: str) -> str:
    return key.replace("_", " ").capitalize()


# A1111-style names a backend may use for our keys; `canonical_parameters` renames them.
_ALIASES = {"sampler": "scheduler", "cfg_scale": "guidance", "denoising_strength": "strength"}


def canonical_parameters(parameters: dict) -> dict:
    """Our key names (ImageRequest's), whatever names a backend used: sampler -> scheduler,
    cfg_scale -> guidance, denoising_strength -> strength, size "WxH" -> width/height. None and ''
    are dropped (A1111 leaves them out too). This is what `read_png_parameters` gives back."""
    params = {k: v for k, v in parameters.items() if v is not None and v != ""}
    for alias, key in _ALIASES.items():
        if alias in params:
            value = params.pop(alias)
            params.setdefault(key, value)
    size = params.pop("size", None)
    if size is not None and ("width" not in params or "height" not in params):
        m = _RE_SIZE.match(str(size))
        if not m:
            raise ValueError(f"size must look like 512x768, not {size!r}")
        params["width"], params["height"] = int(m.group(1)), int(m.group(2))
    return params


def to_infotext(parameters: dict) -> str:
    """Parameters -> the text A1111 writes: prompt, optional 'Negative prompt:' line, then one line
    of 'Key: value' pairs (values with , : or newlines JSON-quoted). None and '' are left out."""
    params = canonical_parameters(parameters)
    prompt = str(params.pop("prompt", ""))
    negative = str(params.pop("negative_prompt", ""))
    width, height = params.pop("width", None), params.pop("height", None)
    if width is not None and height is not None:
        params["size"] = f"{int(width)}x{int(height)}"
    ordered = [k for k in _FIELDS if k in params] + [k for k in params if k not in _FIELDS]
    pairs = []
    for key in ordered:
        label = _FIELDS[key][0] if key in _FIELDS else _label(key)
        if not re.fullmatch(_LABEL, label):
            raise ValueError(f"Parameter name {key!r} cannot be written in A1111's format")
        value = params[key]
        if key not in _FIELDS and isinstance(value, str) and (_RE_INT.match(value) or _RE_FLOAT.match(value)
                                                              or value in ("True", "False")):
            pairs.append(f"{label}: {json.dumps(value)}")  # quoted, so it is read back as text, not a number
        else:
            pairs.append(f"{label}: {_quote(value)}")
    if len(pairs) < 3:  # A1111 reads a last line with fewer than 3 pairs as more prompt
        raise ValueError("An image's parameters need at least three fields (e.g. seed, size and model)")
    negative_line = f"\nNegative prompt: {negative}" if negative else ""
    return f"{prompt}{negative_line}\n{', '.join(pairs)}".strip()


def _typed(kind: type, text: str) -> Any:
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    return text


def parse_infotext(text: str) -> dict:
    """A1111's `parameters` text -> our parameters dict (the inverse of `to_infotext`). Parsing
    follows A1111's parse_generation_parameters: each prompt line is stripped, a last line with
    fewer than three pairs is prompt. Unknown labels become snake_case keys, with numbers parsed."""
    *lines, last = text.strip().split("\n")
    if len(_RE_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    result: dict[str, Any] = {}
    if any(prompt):
        result["prompt"] = "\n".join(prompt)
    if any(negative):
        result["negative_prompt"] = "\n".join(negative)
    for label, raw in _RE_PARAM.findall(last):
        label = label.strip()
        value = _unquote(raw.strip())
        if label == "Size" and (m := _RE_SIZE.match(value)):
            result["width"], result["height"] = int(m.group(1)), int(m.group(2))
            continue
        key, kind = _BY_LABEL.get(label, (label.lower().replace(" ", "_").replace("-", "_").replace("/", "_"), None))
        try:
            if kind is not None:
                result[key] = _typed(kind, value)
            elif raw.strip().startswith('"'):
                result[key] = value  # quoted: a string, whatever it looks like
            elif _RE_INT.match(value):
                result[key] = int(value)
            elif _RE_FLOAT.match(value):
                result[key] = float(value)
            elif value in ("True", "False"):
                result[key] = value == "True"
            else:
                result[key] = value
        except ValueError:
            result[key] = value  # e.g. "Steps: abc" from a hand-edited file: kept as text
    return result


def encode_png(image: Any, parameters: dict, compress_level: int = 1, threads: int = 1) -> bytes:
    """PNG bytes with the parameters in a `parameters` text chunk, as A1111 writes them (tEXt, or
    iTXt when the text is not Latin-1). Encoding counts against the app's overhead, so 8-bit L/RGB/RGBA
    images are written here directly: the Sub filter in numpy and ISA-L deflate (`isal`) encode a
    1024x1024 face in ~11 ms instead of Pillow's ~80 ms at level 1, for ~4% more bytes; `threads` > 1
    deflates that many slices of the image at once (for when no model is using the cores). Other modes
    go through Pillow."""
    import numpy as np

    text = to_infotext(parameters)
    if image.mode not in ("L", "RGB", "RGBA"):
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", text)
        buffer = io.BytesIO()
        image.save(buffer, "PNG", pnginfo=info, compress_level=compress_level)
        return buffer.getvalue()
    pixels = np.asarray(image, dtype=np.uint8)
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    flat = pixels.reshape(height, width * channels)
    rows = np.empty((height, width * channels + 1), np.uint8)
    rows[:, 0] = 1  # filter type 1 (Sub): each byte minus the same channel of the pixel to its left
    rows[:, 1:1 + channels] = flat[:, :channels]
    np.subtract(flat[:, channels:], flat[:, :-channels], out=rows[:, 1 + channels:])  # uint8 wraps, as PNG wants
    data = _deflate(rows, compress_level, threads)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    try:
        text_chunk = chunk(b"tEXt", b"parameters\0" + text.encode("latin-1"))
    except UnicodeEncodeError:
        text_chunk = chunk(b"iTXt", b"parameters\0\0\0\0\0" + text.encode("utf-8"))
    colour = {1: 0, 3: 2, 4: 6}[channels]  # greyscale, truecolour, truecolour with alpha
    return (_PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
            + text_chunk + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def _deflate(rows: Any, level: int, threads: int) -> bytes:
    """The zlib stream of the filtered rows (a C-contiguous uint8 array). With ISA-L and threads > 1 the rows
    are cut into that many slices deflated at once, as pigz does: each slice a raw deflate stream that ends on
    a byte boundary (sync flush), only the last one final, under one zlib header and the Adler-32 of the
    whole; any inflater reads it as one stream. ISA-L releases the GIL while it compresses."""
    try:
        from isal import isal_zlib
    except ImportError:
        return zlib.compress(rows, level)
    level = min(level, 3)  # ISA-L's levels are 0-3
    pieces = max(1, min(threads, len(rows) // 256))  # small images: one piece; a thread would cost more than it saves
    if pieces == 1:
        return isal_zlib.compress(rows, level)
    import threading

    bounds = [len(rows) * i // pieces for i in range(pieces + 1)]
    out: list[bytes] = [b""] * pieces

    def deflate(i: int) -> None:
        packer = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
        out[i] = packer.compress(rows[bounds[i]:bounds[i + 1]]) + packer.flush(
            isal_zlib.Z_FINISH if i == pieces - 1 else isal_zlib.Z_SYNC_FLUSH)

    helpers = [threading.Thread(target=deflate, args=(i,), name="png-deflate") for i in range(1, pieces)]
    for helper in helpers:
        helper.start()
    deflate(0)
    for helper in helpers:
        helper.join()
    # 0x78 0x01: deflate with a 32 KiB window, no dictionary, "fastest"; the two bytes are a multiple of 31.
    return b"\x78\x01" + b"".join(out) + struct.pack(">I", isal_zlib.adler32(rows))


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_TEXT = 1 << 20  # a prompt plus parameters is never a megabyte


def read_png_text(source: str | os.PathLike | bytes | bytearray) -> str | None:
    """The raw `parameters` text of a PNG, read from its chunks without decoding any pixels (so a
    decompression bomb costs nothing here). None when the PNG has none; ImageInputError if the
    file is not a PNG."""
    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else _read_bytes(source, "image")
    if not data.startswith(_PNG_SIGNATURE):
        raise ImageInputError("not_png", "Only PNG files carry generation parameters here.")
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IEND" or len(body) < length:
            break
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        key, sep, rest = body.partition(b"\0")
        if key != b"parameters" or not sep:
            continue
        try:
            if kind == b"tEXt":
                return rest.decode("latin-1")
            if kind == b"zTXt":
                return _inflate(rest[1:]).decode("latin-1")
            compressed, rest = rest[0], rest[2:]
            _lang, _, rest = rest.partition(b"\0")
            _translated, _, text = rest.partition(b"\0")
            return (_inflate(text) if compressed else text).decode("utf-8")
        except (zlib.error, UnicodeDecodeError, IndexError, ValueError):
            raise ImageInputError("corrupt", "The image's parameters chunk is damaged.") from None
    return None


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, _MAX_TEXT)
    if inflater.unconsumed_tail:
        raise ValueError("parameters text too large")
    return out


def read_png_parameters(source: str | os.PathLike | bytes | bytearray) -> dict:
    """Parameters stored in a PNG by this studio, A1111, Forge, Fooocus (A1111 mode), ... as our
    parameters dict; {} when it has none."""
    text = read_png_text(source)
    return parse_infotext(text) if text else {}


# -- (d) gallery ---------------------------------------------------------------------------------
GALLERY_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    file TEXT NOT NULL,
    parameters TEXT NOT NULL,
    seed INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS images_by_user ON images(user_id, created_at DESC);
"""
ORPHAN_AGE_S = 3600.0  # a file without its row this old is left over from a crash (a save takes well under this)


class ImageNotFoundError(LookupError):
    """No such image for this user (someone else's and missing look the same on purpose)."""


@dataclass(frozen=True)
class GalleryImage:
    id: str
    user_id: str
    path: Path  # the PNG, with its parameters chunk
    parameters: dict
    seed: int
    width: int
    height: int
    model: str
    created_at: float

    @property
    def infotext(self) -> str:
        return to_infotext(self.parameters)


class ImageGallery(SQLiteDB):
    """Every image a user made: PNG files under `<data_dir>/images/<user folder>/` and a row each in
    SQLite. Every query is scoped to the user id; a user's folder name is a hash of the id, so ids
    never become paths. A PNG is complete before its row exists and a row is gone before its file, so a
    crash or a full disk never leaves a row without its image (a file left without a row is swept by
    `clean_orphans`). With a `quota` (core/quota.py) a save that would pass it is refused."""

    def __init__(self, data_dir: Path, db_path: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.images_dir = self.data_dir / "images"
        self.quota: Any = None  # core.quota.StorageQuota, set by StorageQuota.attach
        super().__init__(Path(db_path) if db_path is not None else self.data_dir / "studio.sqlite3",
                         GALLERY_SCHEMA)
        if self._add_column("images", "bytes", "INTEGER NOT NULL DEFAULT 0"):
            self._backfill_sizes()

    def _backfill_sizes(self) -> None:
        """Rows from before sizes were kept: their file sizes, once."""
        rows = self._conn().execute("SELECT id, file FROM images WHERE bytes = 0").fetchall()
        sizes = []
        for row in rows:
            try:
                sizes.append(((self.data_dir / row["file"]).stat().st_size, row["id"]))
            except OSError:
                continue
        with self._tx() as db:
            db.executemany("UPDATE images SET bytes = ? WHERE id = ?", sizes)

    def _user_dir(self, user_id: str) -> Path:
        return self.images_dir / hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:24]

    def _write_file(self, path: Path, data: bytes) -> None:
        """Write `data` to the new file `path`, on disk before this returns (a full disk raises here, not later)."""
        with open(path, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def save(self, user_id: str, generated: GeneratedImage, threads: int = 1) -> GalleryImage:
        """Write the PNG (`threads`: see encode_png) and its row; the job's images are final once this returns.
        Raises QuotaExceededError (nothing written) and StorageFullError (disk full: nothing kept)."""
        params = canonical_parameters(generated.parameters)  # the DB row and the PNG say the same
        params.setdefault("seed", generated.seed)
        params.setdefault("width", generated.image.width)
        params.setdefault("height", generated.image.height)
        params.setdefault("model", "unknown")  # the PNG format needs three fields; never lose an image over it
        png = encode_png(generated.image, params, threads=threads)
        image_id = uuid.uuid4().hex
        folder = self._user_dir(user_id)
        path = folder / f"{image_id}.png"
        partial = folder / f".{image_id}.png.part"  # same folder: os.replace is atomic
        with reserved(self.quota, user_id, len(png)):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                try:
                    self._write_file(partial, png)
                    os.replace(partial, path)  # a crash never leaves a half-written PNG under the real name
                finally:
                    partial.unlink(missing_ok=True)  # a failed write keeps no partial file
            except OSError as exc:
                if is_disk_full(exc):
                    raise StorageFullError(DISK_FULL_MESSAGE) from None
                raise
            record = GalleryImage(image_id, user_id, path, params, int(generated.seed), generated.image.width,
                                  generated.image.height, str(params.get("model", "")), time.time())
            try:
                with self._tx() as db:
                    db.execute("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               (image_id, user_id, str(path.relative_to(self.data_dir)), json.dumps(params),
                                record.seed, record.width, record.height, record.model, record.created_at,
                                len(png)))
            except BaseException:
                path.unlink(missing_ok=True)  # no image without its row
                raise
        return record

    def bytes_used(self, user_id: str) -> int:
        row = self._conn().execute("SELECT COALESCE(SUM(bytes), 0) FROM images WHERE user_id = ?",
                                   (user_id,)).fetchone()
        return int(row[0])

    def delete_older_than(self, cutoff: float, user_id: str | None = None) -> int:
        """Retention: images made before `cutoff` (of one user, or of everyone); rows first, then files."""
        where, args = ("created_at < ? AND user_id = ?", (cutoff, user_id)) if user_id is not None \
            else ("created_at < ?", (cutoff,))
        with self._tx() as db:
            files = [r["file"] for r in db.execute(f"SELECT file FROM images WHERE {where}", args)]
            db.execute(f"DELETE FROM images WHERE {where}", args)
        for file in files:
            (self.data_dir / file).unlink(missing_ok=True)
        return len(files)

    def clean_orphans(self, min_age_s: float = ORPHAN_AGE_S) -> int:
        """Files a crash left behind: partial writes, and PNGs whose row was never written (both older than
        `min_age_s`, so a save in progress is never touched)."""
        if not self.images_dir.is_dir():
            return 0
        known = {r["file"] for r in self._conn().execute("SELECT file FROM images")}
        cutoff = time.time() - min_age_s
        removed = 0
        for path in self.images_dir.glob("*/*"):
            try:
                if not path.is_file() or path.stat().st_mtime >= cutoff:
                    continue
                if path.name.endswith(".part") or (path.suffix == ".png"
                                                   and str(path.relative_to(self.data_dir)) not in known):
                    path.unlink(missing_ok=True)
                    removed += 1
            except OSError:
                continue
        return removed

    def _record(self, row: sqlite3.Row) -> GalleryImage:
        return GalleryImage(row["id"], row["user_id"], self.data_dir / row["file"], json.loads(row["parameters"]),
                            row["seed"], row["width"], row["height"], row["model"], row["created_at"])

    def list(self, user_id: str, limit: int = 200, offset: int = 0) -> list[GalleryImage]:
        """Newest first."""
        rows = self._conn().execute(
            "SELECT * FROM images WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
            (user_id, limit, offset))
        return [self._record(r) for r in rows]

    def get(self, user_id: str, image_id: str) -> GalleryImage:
        row = self._conn().execute("SELECT * FROM images WHERE id = ? AND user_id = ?",
                                   (image_id, user_id)).fetchone()
        if row is None:
            raise ImageNotFoundError("No such image (it may have been deleted)")
        return self._record(row)

    def delete(self, user_id: str, image_id: str) -> None:
        with self._tx() as db:
            row = db.execute("SELECT file FROM images WHERE id = ? AND user_id = ?", (image_id, user_id)).fetchone()
            if row is None:
                raise ImageNotFoundError("No such image (it may have been deleted)")
            db.execute("DELETE FROM images WHERE id = ? AND user_id = ?", (image_id, user_id))
        (self.data_dir / row["file"]).unlink(missing_ok=True)  # after the commit: no row without a file
