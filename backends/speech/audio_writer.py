"""Writing our own audio (never an upload: those are read by codecs.py's sandboxed child): WAV bytes for a live
player, WAV/MP3/OGG files written piece by piece with flat memory, a WAV re-encoded for a hosted API, and reading back
a small WAV we made (tests, benches)."""

from __future__ import annotations

import contextlib
import io
import wave
from pathlib import Path
from typing import Any

import numpy as np

WRITE_FORMATS = ("wav", "mp3", "ogg")
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def _int16(samples: np.ndarray) -> np.ndarray:
    data = np.asarray(samples, dtype=np.float32).reshape(-1)
    return (np.clip(np.nan_to_num(data), -1.0, 1.0) * 32767.0).astype("<i2")


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """A complete mono 16-bit WAV of float samples in [-1, 1] (out-of-range values are clipped)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(_int16(samples).tobytes())
    return buffer.getvalue()


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Float32 mono samples and the rate of a PCM WAV we made (8/16/24/32-bit; channels averaged). Small files."""
    with wave.open(str(path), "rb") as src:
        width, channels, rate = src.getsampwidth(), src.getnchannels(), src.getframerate()
        raw = src.readframes(src.getnframes())
    return _pcm_to_float(raw, width, channels), rate


def _pcm_to_float(raw: bytes, width: int, channels: int) -> np.ndarray:
    if width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        data = ((b[:, 0] | b[:, 1] << 8 | b[:, 2] << 16) << 8 >> 8).astype(np.float32) / 8388608.0
    elif width in (2, 4):
        data = np.frombuffer(raw, f"<i{width}").astype(np.float32) / float(2 ** (8 * width - 1))
    else:
        raise ValueError(f"{width * 8}-bit WAV is not supported")
    if channels > 1:
        data = data[: len(data) // channels * channels].reshape(-1, channels).mean(axis=1)
    return np.ascontiguousarray(data, dtype=np.float32)


def _nearest_rate(rate: int, allowed: tuple[int, ...]) -> int:
    above = [r for r in allowed if r >= rate]
    return above[0] if above else allowed[-1]


class AudioWriter:
    """A mono WAV (16-bit), MP3 (LAME) or OGG (Opus) file written piece by piece: each write() is encoded and
    muxed at once, so nothing but the encoder's own buffers is held. Pieces at another rate are resampled."""

    def __init__(self, path: Path, fmt: str, sample_rate: int, bitrate: int | None = None) -> None:
        if fmt not in WRITE_FORMATS:
            raise ValueError(f"Unknown audio format {fmt!r}: choose one of {', '.join(WRITE_FORMATS)}.")
        if not 1000 <= int(sample_rate) <= 384000:
            raise ValueError(f"Sample rate {sample_rate} is out of range.")
        import av

        self.path, self.fmt, self.sample_rate = Path(path), fmt, int(sample_rate)
        rate = {"wav": self.sample_rate, "mp3": _nearest_rate(self.sample_rate, _MP3_RATES)}.get(
            fmt, _nearest_rate(self.sample_rate, _OPUS_RATES)
        )
        self.file_rate = rate
        self._container: Any = av.open(str(self.path), "w", format=fmt)
        try:
            codec = {"wav": "pcm_s16le", "mp3": "libmp3lame", "ogg": "libopus"}[fmt]
            self._stream: Any = self._container.add_stream(codec, rate=rate, layout="mono")
            if bitrate and fmt != "wav":
                self._stream.codec_context.bit_rate = int(bitrate)
            elif fmt == "ogg":
                self._stream.codec_context.bit_rate = 48000  # speech: transparent, small
            self._stream.codec_context.thread_count = 1
            self._container.start_encoding()  # the file and its header exist from now on, even if nothing follows
        except BaseException:
            self._container.close()
            raise
        self._resampler: Any = None
        self._in_rate = 0
        self.seconds = 0.0
        self._closed = False

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is None:
            self.close()
            return
        with contextlib.suppress(Exception):  # the error that ended the writing is the one to see
            self.close()

    def _encode(self, frames: list) -> None:
        for frame in frames:
            frame.pts = None
            for packet in self._stream.encode(frame):
                self._container.mux(packet)

    def _flush_resampler(self) -> None:
        if self._resampler is not None:
            self._encode(self._resampler.resample(None))
            self._resampler = None

    def write(self, samples: np.ndarray, sample_rate: int | None = None) -> None:
        """Append mono float32 samples in [-1, 1] at `sample_rate` (default: the writer's)."""
        import av

        if self._closed:
            raise ValueError("AudioWriter is closed")
        rate = int(sample_rate or self.sample_rate)
        if rate != self._in_rate:
            self._flush_resampler()
            target = self._stream.codec_context.format.name
            self._resampler = av.AudioResampler(format=target, layout="mono", rate=self.file_rate)
            self._in_rate = rate
        data = np.clip(np.nan_to_num(np.asarray(samples, dtype=np.float32).reshape(-1)), -1.0, 1.0)
        for start in range(0, len(data), rate):  # at most a second per frame
            chunk = np.ascontiguousarray(data[start : start + rate])
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
            frame.sample_rate = rate
            self._encode(self._resampler.resample(frame))
        self.seconds += len(data) / rate

    def close(self) -> int:
        """Flush and close; the file's size in bytes. Idempotent."""
        if not self._closed:
            self._closed = True
            try:
                self._flush_resampler()
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
            finally:
                self._container.close()
        return self.path.stat().st_size


def encode_file(src_wav: Path, dst: Path, fmt: str, bitrate: int | None = None) -> Path:
    """`src_wav` (a PCM WAV we made) re-encoded as `fmt` at `dst`, a second at a time; returns `dst`."""
    with wave.open(str(src_wav), "rb") as src:
        width, channels, rate = src.getsampwidth(), src.getnchannels(), src.getframerate()
        with AudioWriter(dst, fmt, rate, bitrate) as writer:
            while raw := src.readframes(rate):
                writer.write(_pcm_to_float(raw, width, channels))
    return Path(dst)
