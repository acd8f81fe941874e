"""The A1111 `parameters` text that stable-diffusion-webui, Forge and Fooocus write into a PNG, and our PNG
encoder: a parameters dict to infotext and back, written into the PNG and read from its chunks without decoding."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import zlib
from typing import Any

from core.images.errors import ImageInputError
from core.images.inputs import read_bytes

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
_RE_PARAM = re.compile(r"(" + _LABEL + r'):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
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
        if (
            key not in _FIELDS
            and isinstance(value, str)
            and (_RE_INT.match(value) or _RE_FLOAT.match(value) or value in ("True", "False"))
        ):
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
            line = line[len("Negative prompt:") :].strip()
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
    rows[:, 1 : 1 + channels] = flat[:, :channels]
    np.subtract(flat[:, channels:], flat[:, :-channels], out=rows[:, 1 + channels :])  # uint8 wraps, as PNG wants
    data = _deflate(rows, compress_level, threads)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    try:
        text_chunk = chunk(b"tEXt", b"parameters\0" + text.encode("latin-1"))
    except UnicodeEncodeError:
        text_chunk = chunk(b"iTXt", b"parameters\0\0\0\0\0" + text.encode("utf-8"))
    colour = {1: 0, 3: 2, 4: 6}[channels]  # greyscale, truecolour, truecolour with alpha
    return (
        _PNG_SIGNATURE
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
        + text_chunk
        + chunk(b"IDAT", data)
        + chunk(b"IEND", b"")
    )


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
        out[i] = packer.compress(rows[bounds[i] : bounds[i + 1]]) + packer.flush(
            isal_zlib.Z_FINISH if i == pieces - 1 else isal_zlib.Z_SYNC_FLUSH
        )

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
    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else read_bytes(source, "image")
    if not data.startswith(_PNG_SIGNATURE):
        raise ImageInputError("not_png", "Only PNG files carry generation parameters here.")
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
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
