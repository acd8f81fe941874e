"""The child-process side of audio reading: caps its own memory and CPU, sniffs one untrusted upload, opens it with
PyAV under a demuxer chosen from its content (never FFmpeg's own guess), and probes it or decodes it to a 16 kHz mono
16-bit WAV as it goes. Run as `python -I backends/speech/codec_worker.py` with a JSON request on stdin; it imports
nothing from this project, and writes JSON lines (progress, then one reply) to stdout."""

from __future__ import annotations

import json
import os
import stat
import sys
import time

EXIT_OUT_OF_MEMORY = 3
OUT_RATE = 16000
HEAD_BYTES = 65536

# What a file's name says it is -> the family its content should be.
EXTENSIONS = {
    ".wav": "wav", ".mp3": "mp3", ".ogg": "ogg", ".oga": "ogg", ".opus": "ogg", ".flac": "flac",
    ".m4a": "mp4", ".mp4": "mp4", ".m4v": "mp4", ".mov": "mp4", ".3gp": "mp4", ".aac": "aac", ".webm": "matroska",
    ".mkv": "matroska", ".mka": "matroska", ".aif": "aiff", ".aiff": "aiff", ".aifc": "aiff",
}  # fmt: skip
# Family -> FFmpeg demuxer (forced: FFmpeg never probes its other ~400 formats, HLS and concat included).
DEMUXERS = {
    "wav": "wav", "mp3": "mp3", "ogg": "ogg", "flac": "flac", "mp4": "mov", "matroska": "matroska", "aac": "aac",
    "aiff": "aiff",
}  # fmt: skip
LABELS = {
    "wav": "WAV", "mp3": "MP3", "ogg": "Ogg", "flac": "FLAC", "mp4": "MP4/M4A/MOV", "matroska": "WebM/Matroska",
    "aac": "AAC", "aiff": "AIFF",
}  # fmt: skip
# Content that is plainly something else (prefix -> what it is).
NOT_AUDIO = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x7fELF", "a program"),
    (b"MZ", "a Windows program"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an XZ archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office document"),
    (b"{\\rtf", "an RTF document"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_MP3_BITRATES = {  # (version bit, layer) -> kbit/s by index
    (1, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (0, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


class Failure(Exception):
    """A verdict on the file, sent to the parent as a code plus facts it turns into a message."""

    def __init__(self, code: str, detail: str = "", **info: object) -> None:
        super().__init__(detail or code)
        self.code, self.detail, self.info = code, detail, info


# --- sniffing -------------------------------------------------------------------------------------------------------


def _mp3_frame_len(b: bytes, i: int) -> int:
    """Length of the MPEG-1/2/2.5 layer III frame whose header starts at b[i], or 0 when it is no header."""
    if i + 4 > len(b) or b[i] != 0xFF or (b[i + 1] & 0xE0) != 0xE0:
        return 0
    version, layer = (b[i + 1] >> 3) & 3, (b[i + 1] >> 1) & 3
    bitrate_index, rate_index, padding = b[i + 2] >> 4, (b[i + 2] >> 2) & 3, (b[i + 2] >> 1) & 1
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return 0
    kbps = _MP3_BITRATES[(1 if version == 3 else 0, 3)][bitrate_index]
    rate = _MP3_RATES[version][rate_index]
    return (144 if version == 3 else 72) * kbps * 1000 // rate + padding


def _find_mp3(b: bytes) -> bool:
    """Three MPEG audio frames in a row somewhere in `b` (an MP3 may start with junk or a damaged frame)."""
    start = b.find(b"\xff")
    while 0 <= start < len(b) - 4:
        i, chained = start, 0
        while chained < 3 and (n := _mp3_frame_len(b, i)):
            i, chained = i + n, chained + 1
        if chained == 3 or (chained and i >= len(b) - 4 and len(b) < HEAD_BYTES):
            return True
        start = b.find(b"\xff", start + 1)
    return False


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    text = head.decode("utf-8", "ignore")
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * len(text) and len(text) >= 0.9 * len(head) - 4


def sniff(fh) -> tuple[str, str]:
    """("audio", family) for a container we read, ("other", what it is) for a known non-audio file, ("unknown", "")."""
    head = fh.read(HEAD_BYTES)
    if head.startswith(b"ID3") and len(head) >= 10:
        size = 10 + ((head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F))
        size += 10 if head[5] & 0x10 else 0
        fh.seek(size)
        after = fh.read(HEAD_BYTES)
        return ("audio", "flac") if after.startswith(b"fLaC") else ("audio", "mp3")
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "audio", "wav"
    if head[:4] == b"RIFF":
        what = {b"AVI ": "an AVI video", b"WEBP": "a WebP image"}.get(head[8:12], "a RIFF file that is not WAV")
        return "other", what
    if head.startswith(b"OggS"):
        return "audio", "ogg"
    if head.startswith(b"fLaC"):
        return "audio", "flac"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio", "aiff"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "audio", "matroska"
    if head[4:8] == b"ftyp":
        if head[8:12] in (b"heic", b"heix", b"avif", b"mif1", b"msf1"):
            return "other", "a HEIF/AVIF image"
        return "audio", "mp4"
    if head[4:8] in (b"moov", b"mdat", b"free", b"wide", b"skip") and head[:4] != b"\x00\x00\x00\x00":
        return "audio", "mp4"
    for prefix, what in NOT_AUDIO:
        if head.startswith(prefix):
            return "other", what
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0 and (head[2] >> 2) & 0xF < 13:
        return "audio", "aac"
    if _find_mp3(head):
        return "audio", "mp3"
    if _looks_like_text(head):
        stripped = head.lstrip(b"\xef\xbb\xbf \r\n\t").lower()
        if stripped.startswith(b"#extm3u"):
            return "other", "a playlist (M3U)"
        if stripped.startswith((b"<!doctype", b"<html", b"<?xml", b"<svg")):
            return "other", "an HTML or XML document"
        return "other", "a text file"
    return "unknown", ""


# --- reading --------------------------------------------------------------------------------------------------------


def _open_regular(path: str):
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise Failure("not_found", path) from None
    except OSError as exc:
        raise Failure("unsupported", f"cannot open: {exc}", what="not a regular file") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Failure("unsupported", "not a regular file", what="not a regular file")
    return os.fdopen(fd, "rb")


def _inspect(fh, request: dict):
    """(container, audio stream, facts) for the upload in `fh`; raises Failure for every way it is not usable."""
    kind, found = sniff(fh)
    name = request.get("name") or ""
    ext = os.path.splitext(name)[1].lower()
    claimed = EXTENSIONS.get(ext)
    if kind == "other":
        raise Failure("mislabelled" if claimed else "unsupported", found, what=found, ext=ext)
    if os.fstat(fh.fileno()).st_size == 0:
        raise Failure("empty", "zero bytes")
    if kind == "unknown":
        raise Failure("corrupt" if claimed else "unsupported", "no known audio signature", ext=ext)
    import av

    fh.seek(0)
    try:
        container = av.open(fh, mode="r", format=DEMUXERS[found], options={"enable_drefs": "0"})
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        raise Failure("corrupt", f"{LABELS[found]}: {exc}"[:300], family=found) from None
    facts: dict = {"container": found, "notes": []}
    if claimed and claimed != found and not (claimed == "mp4" and found == "aac"):
        facts["notes"].append(
            f"The file is named {ext} but holds {LABELS[found]} audio; it was read as {LABELS[found]}."
        )
    attached = int(av.stream.Disposition.attached_pic)
    facts["has_video"] = any(not (int(s.disposition) & attached) for s in container.streams.video)
    audio = [s for s in container.streams.audio if s.codec_context is not None]
    if not audio:
        container.close()
        raise Failure("no_audio_track", "no audio stream", has_video=facts["has_video"], family=found)
    stream = audio[0]
    ctx = stream.codec_context
    facts.update(codec=ctx.name or "unknown", sample_rate=int(ctx.sample_rate or 0), channels=int(ctx.channels or 0))
    if not facts["sample_rate"] or not facts["channels"]:
        container.close()
        raise Failure("corrupt", f"audio stream without a sample rate or channels ({facts['codec']})")
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        facts["duration"] = float(stream.duration * stream.time_base)
    elif container.duration is not None and container.duration > 0:
        facts["duration"] = container.duration / 1_000_000
    else:
        facts["duration"] = None
    return container, stream, facts


def _scan_duration(container, stream, max_seconds: float) -> float:
    """Seconds of audio by reading packet timestamps (no decoding), for containers that do not say."""
    end = 0.0
    for packet in container.demux(stream):
        if packet.pts is None or packet.time_base is None:
            continue
        end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
        if end > max_seconds:
            break
    container.seek(0)
    return end


def probe(request: dict, emit) -> dict:
    with _open_regular(request["path"]) as fh:
        container, stream, facts = _inspect(fh, request)
        with container:
            if facts["duration"] is None:
                facts["duration"] = _scan_duration(container, stream, request["max_seconds"])
            if facts["duration"] <= 0:
                raise Failure("empty", "no audio in the container")
            _check_length(facts["duration"], request)
        return facts


def _check_length(seconds: float, request: dict) -> None:
    if seconds > request["max_seconds"]:
        raise Failure("too_long", f"{seconds:.1f} s", seconds=seconds, max_seconds=request["max_seconds"])


def decode(request: dict, emit) -> dict:
    import wave

    import av
    import numpy as np

    limit = int(request["max_seconds"] * OUT_RATE)
    with _open_regular(request["path"]) as fh:
        container, stream, facts = _inspect(fh, request)
        declared = facts["duration"]
        if declared is not None and declared > request["max_seconds"]:
            container.close()
            _check_length(declared, request)
        try:
            target = open(request["out"], "wb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            container.close()
            raise Failure("output_failed", f"{type(exc).__name__}: {exc.strerror or exc}") from None
        with container, target, wave.open(target, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(OUT_RATE)
            stream.codec_context.thread_count = 1
            resampler = av.AudioResampler(format="s16", layout="mono", rate=OUT_RATE)
            written, peak, damaged, last = 0, 0, 0, time.monotonic()

            def put(frames) -> None:
                nonlocal written, peak
                for frame in frames:
                    data = frame.to_ndarray().reshape(-1)[: frame.samples]
                    if written + len(data) > limit:
                        raise Failure("too_long", "decoded past the limit", seconds=None, max_seconds=limit / OUT_RATE)
                    if len(data):
                        peak = max(peak, int(np.abs(data.astype(np.int32)).max()))
                    try:
                        out.writeframesraw(data.astype("<i2").tobytes())
                    except OSError as exc:
                        raise Failure("output_failed", f"{type(exc).__name__}: {exc.strerror or exc}") from None
                    written += len(data)

            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except (av.FFmpegError, ValueError) as exc:
                    damaged += 1
                    if damaged > 50 and written == 0:
                        raise Failure("corrupt", f"no packet decodes: {exc}"[:300]) from None
                    continue
                for frame in frames:
                    frame.pts = None  # timestamps of a damaged file may jump; the resampler only needs samples
                    try:
                        put(resampler.resample(frame))
                    except ValueError:  # the stream changed rate or layout mid-way: a fresh resampler
                        put(resampler.resample(None))
                        resampler = av.AudioResampler(format="s16", layout="mono", rate=OUT_RATE)
                        put(resampler.resample(frame))
                if time.monotonic() - last > 0.25:
                    last = time.monotonic()
                    emit({"seconds": written / OUT_RATE, "of": declared})
            put(resampler.resample(None))
    if written == 0:
        raise Failure("empty", "no audio samples", damaged=damaged)
    seconds = written / OUT_RATE
    if damaged:
        facts["notes"].append(f"{damaged} damaged part{'s' if damaged > 1 else ''} of the file could not be read.")
    if declared and declared - seconds > max(0.5, 0.05 * declared):
        facts["notes"].append(
            f"The file seems cut off: it announces {declared:.1f} s but {seconds:.1f} s could be read."
        )
    facts.update(duration=seconds, peak=peak / 32768, samples=written)
    return facts


# --- entry point ----------------------------------------------------------------------------------------------------


def _limit_resources(limits: dict) -> None:
    import resource

    memory = int(limits["memory_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not leave a core file behind
    cpu = int(limits["cpu_s"])  # backstop should the parent die before it can kill us
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))


def main() -> int:
    import faulthandler

    faulthandler.enable()  # a segfault leaves a traceback on stderr for the parent's log
    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    _limit_resources(request["limits"])
    # Libraries print; the replies get a private copy of stdout and everything else goes to stderr.
    reply = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)

    def emit(message: dict) -> None:
        reply.write(json.dumps(message).encode("utf-8") + b"\n")

    try:
        facts = (decode if request["op"] == "decode" else probe)(request, emit)
        answer = {"ok": True, "probe": facts}
    except Failure as failure:
        answer = {"ok": False, "code": failure.code, "detail": failure.detail, "info": failure.info}
    except ModuleNotFoundError as exc:
        answer = {"ok": False, "code": "missing_av", "detail": str(exc), "info": {}}
    except ImportError as exc:  # a library that cannot be mapped under the memory cap
        answer = {"ok": False, "code": "out_of_memory", "detail": str(exc)[-300:], "info": {}}
    except MemoryError:
        answer = {"ok": False, "code": "out_of_memory", "detail": "MemoryError", "info": {}}
    except RecursionError:
        answer = {"ok": False, "code": "corrupt", "detail": "structure nested too deeply", "info": {}}
    except Exception as exc:  # FFmpeg and PyAV raise anything on malformed input; the file is the cause
        answer = {"ok": False, "code": "corrupt", "detail": f"{type(exc).__name__}: {exc}"[:500], "info": {}}
    try:
        emit(answer)
    except MemoryError:
        return EXIT_OUT_OF_MEMORY
    return 0


if __name__ == "__main__":
    sys.exit(main())
