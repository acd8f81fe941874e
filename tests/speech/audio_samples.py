"""Good and bad audio files made on the fly for the codec and upload tests: real WAV/MP3/OGG/FLAC/M4A/WebM/MKV/MP4
written with PyAV, videos with and without sound, and the hostile kinds (truncated, mislabelled, not audio at all,
headers that lie about their length or size, a real two-hour recording made cheaply)."""

from __future__ import annotations

import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# name suffix -> (PyAV container format, audio codec, codec sample rate)
CONTAINERS = {
    "wav": ("wav", "pcm_s16le", 22050),
    "mp3": ("mp3", "libmp3lame", 24000),
    "ogg": ("ogg", "libopus", 48000),
    "opus": ("ogg", "libopus", 24000),
    "flac": ("flac", "flac", 44100),
    "m4a": ("mp4", "aac", 44100),
    "webm": ("webm", "libopus", 48000),
    "mkv": ("matroska", "libopus", 48000),
    "mp4": ("mp4", "aac", 32000),
    "mov": ("mov", "aac", 16000),
}
VIDEO_CODECS = {"mp4": "mpeg4", "mov": "mpeg4", "webm": "libvpx", "mkv": "mpeg4"}


def tone(seconds: float, rate: int, freq: float = 440.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * rate)), dtype=np.float64) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_media(
    path: Path,
    seconds: float,
    *,
    kind: str | None = None,
    audio: bool = True,
    video: bool = False,
    channels: int = 1,
    silent: bool = False,
) -> Path:
    """A real file of `seconds` (tone or silence) in the container its suffix (or `kind`) names."""
    import av

    kind = kind or path.suffix.lstrip(".")
    fmt, codec, rate = CONTAINERS[kind]
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w", format=fmt) as container:
        astream = container.add_stream(codec, rate=rate, layout=layout) if audio else None
        vstream = None
        if video:
            vstream = container.add_stream(VIDEO_CODECS[kind], rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
        if astream is not None:
            samples = np.zeros(int(seconds * rate), np.float32) if silent else tone(seconds, rate)
            resampler = av.AudioResampler(format=astream.codec_context.format.name, layout=layout, rate=rate)
            for start in range(0, len(samples), rate):
                chunk = np.ascontiguousarray(samples[start : start + rate])
                frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                frame.sample_rate = rate
                for out in resampler.resample(frame):
                    out.pts = None
                    for packet in astream.encode(out):
                        container.mux(packet)
            for packet in astream.encode(None):
                container.mux(packet)
        if vstream is not None:
            for i in range(int(seconds * 10)):
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i % 255, np.uint8), format="rgb24")
                frame.pts = i
                for packet in vstream.encode(frame):
                    container.mux(packet)
            for packet in vstream.encode(None):
                container.mux(packet)
    return path


def write_pcm_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def wav_header(*, channels: int, rate: int, bits: int, data_bytes: int) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    return (
        b"RIFF"
        + struct.pack("<I", (36 + data_bytes) & 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes & 0xFFFFFFFF)
    )


def long_real_wav(path: Path, seconds: float, rate: int = 1000) -> Path:
    """A genuine recording of `seconds` of silence, made cheaply: 8-bit mono at `rate` (2 h = 7.2 MB)."""
    n = int(seconds * rate)
    with path.open("wb") as fh:
        fh.write(wav_header(channels=1, rate=rate, bits=8, data_bytes=n))
        block = b"\x80" * rate * 60
        for _ in range(n // len(block)):
            fh.write(block)
        fh.write(b"\x80" * (n % len(block)))
    return path


def matroska_duration_lie(path: Path, real_seconds: float, claimed_seconds: float) -> Path:
    """A WebM/MKV of `real_seconds` whose Segment Info says it lasts `claimed_seconds`."""
    write_media(path, real_seconds, kind="mkv")
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89")  # the Duration element, in TimecodeScale units (1 ms)
    size = data[at + 2] & 0x7F
    assert at > 0 and size in (4, 8), "no Duration element"
    data[at + 3 : at + 3 + size] = struct.pack(">d" if size == 8 else ">f", claimed_seconds * 1000.0)
    path.write_bytes(bytes(data))
    return path


def flac_length_claim(path: Path, seconds: float = 1.0) -> Path:
    """A real FLAC of `seconds` whose STREAMINFO claims the most samples it can hold (2^36 - 1: 432 h at 44.1 kHz)."""
    write_media(path, seconds, kind="flac")
    data = bytearray(path.read_bytes())
    fields = int.from_bytes(data[18:26], "big")  # rate (20 bits), channels (3), bits (5), total samples (36)
    data[18:26] = (fields | (2**36 - 1)).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


@dataclass(frozen=True)
class Bad:
    """A file that must be refused with `code`, and a fragment its message must contain."""

    path: Path
    code: str
    says: str


def bad_files(folder: Path) -> list[Bad]:
    folder.mkdir(parents=True, exist_ok=True)
    good_wav = write_media(folder / "source.wav", 2.0)
    good_mp4 = write_media(folder / "source.mp4", 2.0, video=True)
    out: list[Bad] = []

    def add(name: str, data: bytes, code: str, says: str) -> None:
        (folder / name).write_bytes(data)
        out.append(Bad(folder / name, code, says))

    add("empty.wav", b"", "empty", "is empty")
    add("header_only.wav", wav_header(channels=1, rate=16000, bits=16, data_bytes=0), "empty", "is empty")
    add("cut_header.wav", good_wav.read_bytes()[:20], "corrupt", "looks like WAV but is damaged")
    add("cut_moov.mp4", good_mp4.read_bytes()[: good_mp4.stat().st_size // 2], "corrupt", "damaged or incomplete")
    add("doc.mp3", b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" * 20, "mislabelled", "is a PDF document")
    add("notes.mp3", b"Dear diary,\nthis is not a song at all.\n" * 50, "mislabelled", "is a text file, not audio")
    add("list.wav", b"#EXTM3U\n#EXTINF:10,\n/etc/passwd\nfile:///etc/shadow\n", "mislabelled", "playlist (M3U)")
    add("photo.ogg", b"\x89PNG\r\n\x1a\n" + bytes(200), "mislabelled", "is a PNG image, not audio")
    add("archive.flac", b"PK\x03\x04" + bytes(300), "mislabelled", "ZIP archive")
    add("report.pdf", b"%PDF-1.4\n" + bytes(100), "unsupported", "a PDF document, a kind of file the app does not read")
    add("clip.avi", b"RIFF\x00\x10\x00\x00AVI LIST" + bytes(200), "unsupported", "an AVI video, a kind of file")
    rng = np.random.default_rng(7)
    noise = rng.integers(1, 255, 20000, dtype=np.uint8).tobytes().replace(b"\xff", b"\x01")
    add("noise.bin", noise, "unsupported", "not an audio or video file")
    add("noise.mp3", noise, "corrupt", "no audio data could be found")
    # Header claims: 65535 channels at 4 GHz, and a 16-bit file announcing about 37 hours in 4 GB.
    huge = wav_header(channels=65535, rate=4_000_000_000, bits=16, data_bytes=8) + bytes(8)
    add("channels.wav", huge, "corrupt", "damaged")
    write_media(folder / "mute.mp4", 2.0, audio=False, video=True)
    out.append(Bad(folder / "mute.mp4", "no_audio_track", "video without an audio track"))
    flac_length_claim(folder / "claims_432h.flac")
    out.append(Bad(folder / "claims_432h.flac", "too_long", "is 432 h 51 min long"))
    long_real_wav(folder / "two_hours.wav", 7200.0)
    out.append(Bad(folder / "two_hours.wav", "too_long", "is 2 h 00 min long; the limit is 1 h 30 min"))
    return out


def lying_files(folder: Path) -> list[tuple[Path, float, str]]:
    """Readable files whose name or header lies: (path, seconds really in it, a fragment of the note it gets)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    mp3 = write_media(folder / "song.mp3", 2.0)
    (folder / "really_mp3.wav").write_bytes(mp3.read_bytes())
    out.append((folder / "really_mp3.wav", 2.0, "named .wav but holds MP3 audio"))
    webm = write_media(folder / "talk.webm", 2.0)
    (folder / "talk.m4a").write_bytes(webm.read_bytes())
    out.append((folder / "talk.m4a", 2.0, "named .m4a but holds WebM/Matroska audio"))
    # A 16-bit WAV whose header announces about 37 hours in 4 GB but holds one second: FFmpeg trusts the size.
    claims = wav_header(channels=1, rate=16000, bits=16, data_bytes=0xFFFFFF00) + bytes(32000)
    (folder / "claims_4gb.wav").write_bytes(claims)
    out.append((folder / "claims_4gb.wav", 1.0, ""))
    return out
