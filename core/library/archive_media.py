"""The files of a library archive from outside, checked to be what they claim before anything is kept: a PNG is
decoded by Pillow under the gallery's pixel cap (and must be the size the manifest says); audio starts the way its
format does and is probed by the sandboxed audio reader (backends/speech/codecs.py)."""

from __future__ import annotations

import io
import logging
import struct
import warnings
from pathlib import Path
from typing import Any

from backends.speech import codecs
from backends.text.base import BackendError
from core.errors import InputError
from core.images.request import MAX_PIXELS, MAX_SIDE

log = logging.getLogger(__name__)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_CONTAINERS = {"wav": "wav", "mp3": "mp3", "ogg": "ogg"}


def _looks_like(data: bytes) -> str:
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<script", b"<svg", b"<?xml", b"<")):
        return " (it is HTML or XML)"
    if head.startswith(b"%pdf"):
        return " (it is a PDF)"
    return ""


def decode_png(label: str, data: bytes, width: int, height: int) -> Any:
    """The PNG in `data` as a Pillow image (L, RGB or RGBA), fully decoded; InputError when it is not a PNG,
    is damaged, is larger than the gallery keeps or is not `width`×`height`."""
    from PIL import Image

    if not data.startswith(PNG_MAGIC) or data[12:16] != b"IHDR":
        raise InputError(f"{label}: its file is not a PNG image{_looks_like(data)}. Nothing was imported.")
    w, h = struct.unpack(">II", data[16:24])  # the header's claim, checked before Pillow sees the file
    if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        raise InputError(
            f"{label}: its PNG is {w:,}×{h:,} pixels; the most the gallery keeps is {MAX_PIXELS:,} pixels "
            f"({MAX_SIDE:,} a side). Nothing was imported."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Any = Image.open(io.BytesIO(data), formats=["PNG"])
            image.load()
    except Exception as exc:  # Pillow raises many kinds (OSError, SyntaxError, ValueError, zlib.error...) on bad data
        raise InputError(
            f"{label}: its PNG is damaged and cannot be read ({str(exc)[:120]}). Nothing was imported."
        ) from None
    if image.size != (width, height):
        raise InputError(
            f"{label}: its PNG is {w}×{h} pixels, but the archive says {width}×{height}. Nothing was imported."
        )
    if image.mode not in ("L", "RGB", "RGBA"):
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    return image


def _magic_ok(fmt: str, head: bytes) -> bool:
    if fmt == "wav":
        return head[:4] == b"RIFF" and head[8:12] == b"WAVE"
    if fmt == "ogg":
        return head[:4] == b"OggS"
    return head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def check_audio(label: str, path: Path, fmt: str) -> None:
    """InputError unless the file at `path` is `fmt` audio (WAV, MP3 or OGG) that the audio reader can open."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not _magic_ok(fmt, head):
        raise InputError(f"{label}: its file is not {fmt.upper()} audio{_looks_like(head)}. Nothing was imported.")
    try:
        found = codecs.probe(path, max_seconds=24 * 3600.0, name=f"audio.{fmt}")
    except codecs.AudioFileError as exc:
        raise InputError(f"{label}: {exc} Nothing was imported.") from None
    except BackendError as exc:  # no PyAV on this server: the format's own header was checked above
        log.warning("library import: audio not probed (%s)", exc)
        return
    if found.container != _CONTAINERS[fmt] or found.has_video:
        raise InputError(
            f"{label}: its file is {found.container} {'video' if found.has_video else 'audio'}, "
            f"not {fmt.upper()} audio. Nothing was imported."
        )
