"""Uploaded images, opened without trusting them: sizes are checked before any pixel is decoded, only common
formats are decoded at all, and every result comes out as RGB (or an L mask)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
from typing import Any, BinaryIO

from core.images.errors import ImageInputError
from core.security.uploads import UploadError, read_capped

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000  # 40 MP: larger than any camera most people own, ~160 MB as RGBA
MAX_UPLOAD_SIDE = 12_000
MIN_UPLOAD_SIDE = 16  # a 1x1 "image" cannot guide anything; 16 still allows small sketches/icons
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # decoders we let run at all (JPEG covers MPO)


def load_user_image(
    source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Any,
    purpose: str = "image",
    notes: list[str] | None = None,
) -> Any:
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
        data = read_bytes(source, what)
        try:
            # Pillow only warns between 89 and 179 MP; make that a refusal too. (catch_warnings is
            # process-wide, but it only ever turns this one category into an error.)
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _too_large_from_pil(exc, what) from None
        except Image.UnidentifiedImageError:
            raise ImageInputError(
                "not_an_image",
                f"The {what} is not an image this studio can read (use PNG, JPEG, WebP, GIF, BMP or TIFF).",
            ) from None
        except ValueError as exc:  # PNG text/ICC chunks that inflate beyond Pillow's caps
            raise ImageInputError(
                "decompression_bomb",
                f"The {what} carries metadata that expands to an "
                f"absurd size (a decompression bomb); it was refused. ({exc})",
            ) from None
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
            state = "incomplete (the file was cut short)" if code == "truncated" else "damaged"
            raise ImageInputError(
                code, f"The {what} is {state} and cannot be used; upload the full file again ({text})."
            ) from None
        with contextlib.suppress(Exception):  # a broken EXIF block is no reason to refuse the pixels
            image = ImageOps.exif_transpose(image)  # phone photos: stored sideways, shown upright
    return _normalise_mode(image, purpose, what, notes)


def read_bytes(source: Any, what: str) -> bytes:
    """The bytes of an upload (bytes, a file object or a path), at most MAX_UPLOAD_BYTES; refused when empty."""
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
            "too_large",
            f"The {what} is {w}x{h} pixels ({w * h / 1e6:.0f} MP); the limit is "
            f"{MAX_UPLOAD_PIXELS // 1_000_000} MP and {MAX_UPLOAD_SIDE} pixels a side. It was refused "
            "without being decoded: scale it down and upload it again.",
        )
    if min(w, h) < MIN_UPLOAD_SIDE:
        raise ImageInputError(
            "too_small",
            f"The {what} is only {w}x{h} pixels; it needs at least {MIN_UPLOAD_SIDE} pixels a side to be useful.",
        )


def _too_large_from_pil(exc: Exception, what: str) -> ImageInputError:
    m = re.search(r"\((\d+) pixels\)", str(exc))
    size = f" declares {int(m.group(1)) / 1e6:.0f} MP" if m else " is far too large"
    return ImageInputError(
        "too_large",
        f"The {what}{size}; the limit is {MAX_UPLOAD_PIXELS // 1_000_000} MP. It was refused "
        "without being decoded (a tiny file that declares this many pixels is a decompression bomb).",
    )


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


def is_blank(image: Any) -> bool:
    """One colour all over: an empty canvas."""
    low, high = image.convert("L").getextrema()
    return low == high


def merged_mask(source: Any, notes: list[str]) -> Any:
    """One L mask from one upload or several painted layers (white = repaint)."""
    if source is None:
        return None
    sources = source if isinstance(source, (list, tuple)) else [source]
    masks = [load_user_image(s, "mask", notes) for s in sources if s is not None]
    if not masks:
        return None
    from PIL import Image, ImageChops

    merged = masks[0]
    for other in masks[1:]:  # a mask is binary: NEAREST, as every other mask resize
        same = other if other.size == merged.size else other.resize(merged.size, Image.Resampling.NEAREST)
        merged = ImageChops.lighter(merged, same)
    return merged
