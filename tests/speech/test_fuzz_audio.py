"""Hostile uploads, fuzzed: random bytes and real files with mutated headers or cut short, under every name. probe()
and decode_to_wav16k() (real FFmpeg in the real sandboxed child) answer an AudioProbe or an AudioFileError with a
sentence, never another exception, never a hang past their timeout; a decode that succeeds wrote a valid WAV."""

from __future__ import annotations

import tempfile
import time
import wave
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.speech import codecs
from backends.speech.codecs import AudioFileError, AudioProbe
from tests.speech import audio_samples as samples

TIMEOUT = 10.0
CODES = {"corrupt", "no_audio_track", "mislabelled", "too_long", "empty", "unsupported", "timeout"}
NAMES = ["x.wav", "x.mp3", "x.ogg", "x.flac", "x.m4a", "x.webm", "x.mp4", "x.bin", "x", "x.txt", "x.MP3"]
SEEDS = ["wav", "mp3", "ogg", "flac", "m4a", "webm", "mp4", "mkv"]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@cache
def seed(kind: str) -> bytes:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-seeds-"))
    return samples.write_media(folder / f"seed.{kind}", 1.0, video=kind in ("webm", "mp4")).read_bytes()


def _check(data: bytes, name: str, decode: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        out = Path(folder) / "out.wav"
        started = time.monotonic()
        try:
            if decode:
                result = codecs.decode_to_wav16k(path, out, max_seconds=60, timeout=TIMEOUT, name=name)
            else:
                result = codecs.probe(path, max_seconds=60, timeout=TIMEOUT, name=name)
        except AudioFileError as exc:
            assert exc.code in CODES, exc.code
            message = str(exc)
            assert message.endswith(".") and "Traceback" not in message and name in message, message
            assert not out.exists()
        else:
            assert isinstance(result, AudioProbe)
            assert 0 <= result.duration <= 60 and result.sample_rate > 0 and result.channels > 0
            if decode:
                with wave.open(str(out), "rb") as w:
                    assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
                    assert abs(w.getnframes() / 16000 - result.duration) < 1e-3
        assert time.monotonic() - started < TIMEOUT + 3


@FUZZ
@given(data=st.binary(min_size=0, max_size=4096), name=st.sampled_from(NAMES))
def test_random_bytes(data: bytes, name: str) -> None:
    _check(data, name, decode=False)


@FUZZ
@given(
    prefix=st.sampled_from([b"RIFF\x00\x00\x00\x00WAVE", b"OggS", b"fLaC", b"ID3\x03\x00\x00", b"\x1a\x45\xdf\xa3",
                            b"\x00\x00\x00\x18ftypmp42", b"\xff\xfb\x90\x00", b"\xff\xf1", b"FORM\x00\x00\x00\x00AIFF"]),
    rest=st.binary(min_size=0, max_size=2048),
    name=st.sampled_from(NAMES),
)  # fmt: skip
def test_real_magic_then_garbage(prefix: bytes, rest: bytes, name: str) -> None:
    _check(prefix + rest, name, decode=False)


def _mutate(data: bytes, edits: list[tuple[int, int]], keep: float, span: int) -> bytes:
    buf = bytearray(data)
    for offset, value in edits:
        buf[offset % min(len(buf), span)] = value
    return bytes(buf[: max(1, int(len(buf) * keep))])


MUTATIONS = {
    "kind": st.sampled_from(SEEDS),
    "edits": st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=12),
    "keep": st.sampled_from([1.0, 1.0, 0.9, 0.5, 0.1]),
    "span": st.sampled_from([64, 512, 10**9]),
    "name": st.sampled_from(NAMES),
}


@FUZZ
@given(**MUTATIONS)
def test_mutated_real_files_probe(kind: str, edits: list[tuple[int, int]], keep: float, span: int, name: str) -> None:
    _check(_mutate(seed(kind), edits, keep, span), name, decode=False)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(**MUTATIONS)
def test_mutated_real_files_decode(kind: str, edits: list[tuple[int, int]], keep: float, span: int, name: str) -> None:
    _check(_mutate(seed(kind), edits, keep, span), name, decode=True)
