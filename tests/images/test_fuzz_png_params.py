"""Property tests for PNG parameter text (stable-diffusion-webui's format): to_infotext/parse_infotext
round-trip any parameters we write, and the PNG chunk reader takes any bytes (arbitrary, or a real PNG
mutated) with only its documented error and within a bounded time."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.images.errors import ImageInputError
from core.images.png import encode_png, parse_infotext, read_png_parameters, read_png_text, to_infotext

FUZZ = settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])

# Prompt text as people write it (any unicode, commas, colons, quotes, braces, several lines). Each
# prompt line is stripped by A1111's parser, and a line that starts with "Negative prompt:" starts the
# negative prompt there: both are properties of the format, so such lines are not generated.
LINE = (
    st.text(
        st.characters(exclude_categories=("Cs",), exclude_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
        max_size=40,
    )
    .map(str.strip)
    .filter(lambda s: not s.startswith("Negative prompt:"))
)
PROMPT = st.lists(LINE, min_size=1, max_size=3).map("\n".join).map(str.strip)
# Values of the parameter line: text with the characters the format quotes (, : " \ newlines).
VALUE_TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30).filter(
    lambda s: s.strip() == s and s.strip()
)
SEED = st.integers(min_value=0, max_value=2**63 - 1)
EXTRA_KEY = st.from_regex(r"[a-z][a-z0-9]{1,8}(_[a-z0-9]{1,6}){0,2}", fullmatch=True).filter(
    lambda k: (
        k
        not in {
            "prompt",
            "negative_prompt",
            "width",
            "height",
            "size",
            "sampler",
            "cfg_scale",
            "denoising_strength",
            "steps",
            "scheduler",
            "guidance",
            "seed",
            "model_hash",
            "model",
            "strength",
            "mode",
            "seed_b",
            "interpolation_steps",
            "frame",
            "truncation",
            "licence",
        }
    )
)


@st.composite
def parameters(draw):
    params = {
        "prompt": draw(PROMPT),
        "negative_prompt": draw(st.one_of(st.just(""), PROMPT)),
        "mode": draw(st.sampled_from(["txt2img", "img2img", "sketch", "inpaint", "random"])),
        "steps": draw(st.integers(1, 150)),
        "scheduler": draw(st.one_of(st.just(""), VALUE_TEXT)),
        "guidance": draw(st.floats(0, 30, allow_nan=False)),
        "seed": draw(SEED),
        "width": draw(st.integers(1, 4096)),
        "height": draw(st.integers(1, 4096)),
        "model": draw(VALUE_TEXT),
    }
    if draw(st.booleans()):
        params["strength"] = draw(st.floats(0.01, 1, allow_nan=False))
    if draw(st.booleans()):
        params["seed_b"], params["interpolation_steps"] = draw(SEED), draw(st.integers(2, 120))
    if draw(st.booleans()):
        params["model_hash"] = draw(st.from_regex(r"[0-9a-f]{10}", fullmatch=True))
    for key in draw(st.lists(EXTRA_KEY, max_size=3, unique=True)):
        params[key] = draw(
            st.one_of(
                VALUE_TEXT,
                st.integers(-(10**12), 10**12),
                st.floats(allow_nan=False, allow_infinity=False),
                st.booleans(),
            )
        )
    return {k: v for k, v in params.items() if v != ""}


def same(a, b) -> bool:
    return a == b and type(a) is type(b)


@FUZZ
@given(parameters())
@example(
    {
        "prompt": "a cat",
        "mode": "txt2img",
        "steps": 4,
        "seed": 1,
        "width": 64,
        "height": 64,
        "model": 'say "hi", then: go',
        "guidance": 0.0,
    }
)
@example(
    {
        "prompt": "a cat",
        "mode": "txt2img",
        "steps": 4,
        "seed": 1,
        "width": 64,
        "height": 64,
        "model": "m",
        "guidance": 0.0,
        "note": "True",
    }
)
def test_infotext_round_trip(params):
    """What we write is what we read back: same keys, same values, same types."""
    back = parse_infotext(to_infotext(params))
    assert set(back) == set(params), sorted(set(back) ^ set(params))
    for key, value in params.items():
        if key in ("prompt", "negative_prompt"):
            assert back[key] == value
        elif isinstance(value, str):
            assert back[key] == value, key
        else:
            assert same(back[key], value) or (isinstance(value, bool) and back[key] == value), (key, value, back[key])


@FUZZ
@given(parameters())
def test_png_round_trip_through_the_chunk_reader(params):
    """encode_png -> read_png_parameters gives the parameters back (tEXt or iTXt, whichever the text needs)."""
    png = encode_png(Image.new("RGB", (2, 2), "white"), params)
    assert read_png_parameters(png) == parse_infotext(to_infotext(params))
    Image.open(io.BytesIO(png)).verify()  # and it is a valid PNG


@FUZZ
@given(st.text(max_size=300))
@example('Steps: 1, Seed: x, Size: 0x0\nSteps: abc, Sampler: "unterminated, Seed: 1')
@example("a\nNegative prompt:\nSteps: 4, Seed: 9999999999999999999999999, CFG scale: 1e999")
def test_parse_infotext_takes_any_text(text):
    """Hand-edited or foreign text never raises: unparseable numbers are kept as text."""
    result = parse_infotext(text)
    assert isinstance(result, dict)
    assert all(isinstance(k, str) and k for k in result)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


SIGNATURE = b"\x89PNG\r\n\x1a\n"
BASE_PNG = encode_png(
    Image.new("RGB", (4, 4), "white"),
    {"prompt": "a lighthouse, dawn", "seed": 7, "width": 4, "height": 4, "model": "m"},
)


@st.composite
def png_bytes(draw):
    """A real PNG with some of: byte flips, truncation, extra text chunks (tEXt, zTXt, iTXt; compressed
    or not; lying lengths), repeated chunks; or plain random bytes after the signature."""
    if draw(st.booleans()):
        return SIGNATURE + draw(st.binary(max_size=200))
    data = bytearray(BASE_PNG)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"IDAT", b"IEND", b"abcd"]))
        text = draw(st.binary(max_size=60))
        body = draw(
            st.sampled_from(
                [
                    b"parameters\0" + text,
                    b"parameters\0\0" + zlib.compress(text),
                    b"parameters\0\x01\0\0\0" + zlib.compress(text),
                    b"parameters\0\x01\0" + text,
                    b"parameters",
                    text,
                ]
            )
        )
        at = draw(st.integers(8, len(data)))
        data[at:at] = chunk(kind, body)
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(8, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(8, len(data)))]
    if draw(st.booleans()):
        # A length field that claims up to 4 GB.
        data[8:12] = struct.pack(">I", draw(st.integers(0, 2**32 - 1)))
    return bytes(data)


@FUZZ
@given(png_bytes())
@example(SIGNATURE + chunk(b"iTXt", b"parameters\0\x01\0"))  # compressed flag and nothing after it
@example(SIGNATURE + chunk(b"zTXt", b"parameters\0\0" + zlib.compress(b"\0" * (4 << 20))))  # a text bomb
@example(SIGNATURE + b"\xff\xff\xff\xfftEXtparameters\0x")
def test_png_text_reader_takes_any_bytes(data):
    """Any bytes after a PNG signature: text or None, or ImageInputError (damaged chunk); nothing else,
    and never more than the 1 MB text cap inflated."""
    try:
        text = read_png_text(data)
    except ImageInputError as exc:
        assert exc.code == "corrupt"
        return
    assert text is None or (isinstance(text, str) and len(text) <= 1 << 20)
    try:
        read_png_parameters(data)
    except ImageInputError as exc:
        assert exc.code == "corrupt"


@FUZZ
@given(st.binary(max_size=64).filter(lambda b: not b.startswith(SIGNATURE)))
def test_anything_else_is_not_a_png(data):
    with pytest.raises(ImageInputError) as info:
        read_png_text(data)
    assert info.value.code == "not_png"


@pytest.mark.timeout(60)
def test_a_long_parameter_line_parses_in_linear_time():
    """A PNG may carry up to 1 MB of text. A last line of ~50 KB with no 'Key: value' pairs once made the
    pair regex backtrack quadratically (hours for 1 MB); it must parse at once."""
    line = "word " * 10_000
    result = parse_infotext(f"a prompt\n{line}")
    assert result["prompt"].endswith("word")
