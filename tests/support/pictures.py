"""Pictures the image tests build: PNG bytes written chunk by chunk (a header may claim any size), an image
of noise that does not compress, and the count of PNGs left in a folder."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from backends.image.base import GeneratedImage


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def declared_png(width: int, height: int, body: bytes = b"\0" * 64) -> bytes:
    """A PNG header that claims width x height RGB pixels, followed by a tiny compressed body."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(body, 9))
        + png_chunk(b"IEND", b"")
    )


def noise_image(seed: int, side: int = 256, prompt: str = "x") -> GeneratedImage:
    """An image that does not compress: its PNG is about side*side*3 bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return GeneratedImage(Image.fromarray(pixels, "RGB"), seed, {"seed": seed, "model": "noise", "prompt": prompt})


def pngs(folder: Path) -> int:
    """How many .png files lie anywhere under folder."""
    return sum(1 for _ in folder.rglob("*.png"))
