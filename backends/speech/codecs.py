"""Audio files: probing and decoding uploads (always in a sandboxed child, backends/speech/codec_worker.py: a hostile
file that crashes, hangs or bloats FFmpeg costs only that process); the writers of our own audio (audio_writer.py)
are re-exported here, so callers import every audio file helper from this module."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from backends.speech import codec_worker
from backends.speech.audio_writer import WRITE_FORMATS, AudioWriter, encode_file, read_wav, wav_bytes
from backends.speech.base import SpeechCancelled
from backends.text.base import BackendError, ModelUnavailableError

log = logging.getLogger(__name__)
__all__ = [
    "ACCEPTED", "WRITE_FORMATS", "AudioFileError", "AudioProbe", "AudioWriter", "decode_to_wav16k", "encode_file",
    "probe", "read_wav", "wav_bytes",
]  # fmt: skip

WORKER = Path(codec_worker.__file__).resolve()
ACCEPTED = "WAV, MP3, OGG/Opus, FLAC, M4A/AAC, WebM, MP4, MOV or MKV"
MEMORY_MB = 512  # address space of the reading child (RLIMIT_AS); PyAV, FFmpeg and numpy decode an hour in 200
_WORKER_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "SYSTEMROOT")


@dataclass(frozen=True)
class AudioProbe:
    """What an audio upload holds. After decode_to_wav16k: `duration` is what was actually decoded and `peak` the
    largest absolute sample (0.0 = digital silence); probe() leaves `peak` None. `notes` are things a person should
    be told although the file was read (a wrong extension, a cut-off ending, damaged parts skipped)."""

    duration: float
    sample_rate: int
    channels: int
    codec: str
    container: str  # "wav", "mp3", "ogg", "flac", "mp4", "matroska", "aac", "aiff"
    has_video: bool
    notes: tuple[str, ...] = ()
    peak: float | None = None


class AudioFileError(Exception):
    """An upload that cannot be used as audio. `code`: "corrupt", "no_audio_track", "mislabelled", "too_long",
    "empty", "unsupported", "timeout" (the reader was stopped), "not_found"; str(exc) is a sentence for a person."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def probe(path: Path, *, max_seconds: float, timeout: float = 30.0, name: str | None = None) -> AudioProbe:
    """What `path` (an upload, opened only by the child) holds; refuses it with AudioFileError when it is not
    usable audio or is declared longer than `max_seconds`. `name` is the name the person gave it (default: the
    path's), checked against the content."""
    request = {"op": "probe", "path": str(path), "name": name or Path(path).name, "max_seconds": float(max_seconds)}
    return _to_probe(_run_child(request, timeout, None, None))


def decode_to_wav16k(
    path: Path,
    out: Path,
    *,
    max_seconds: float,
    timeout: float,
    cancel: threading.Event | None = None,
    progress: Callable[[float], None] | None = None,
    name: str | None = None,
) -> AudioProbe:
    """Decode an upload to a 16 kHz mono 16-bit WAV at `out`, written as it decodes (memory stays flat for any
    length). Refuses past `max_seconds` of decoded audio whatever the header said. `progress` gets 0..1 (of the
    declared length; of max_seconds when the file declares none); `cancel` kills the child (SpeechCancelled).
    Raises AudioFileError (the file's fault), SpeechCancelled, BackendError (the output could not be written) or
    ModelUnavailableError (no PyAV); on any failure `out` is removed."""
    request = {
        "op": "decode",
        "path": str(path),
        "out": str(out),
        "name": name or Path(path).name,
        "max_seconds": float(max_seconds),
    }

    def on_line(message: dict) -> None:
        if progress is not None and "seconds" in message:
            whole = message.get("of") or max_seconds
            progress(min(1.0, float(message["seconds"]) / whole) if whole else 0.0)

    try:
        result = _to_probe(_run_child(request, timeout, cancel, on_line))
    except BaseException:
        with contextlib.suppress(OSError):
            Path(out).unlink()
        raise
    if progress is not None:
        progress(1.0)
    return result


def _to_probe(facts: dict) -> AudioProbe:
    return AudioProbe(
        duration=float(facts["duration"]),
        sample_rate=int(facts["sample_rate"]),
        channels=int(facts["channels"]),
        codec=str(facts["codec"]),
        container=str(facts["container"]),
        has_video=bool(facts["has_video"]),
        notes=tuple(str(n) for n in facts.get("notes", ())),
        peak=float(facts["peak"]) if facts.get("peak") is not None else None,
    )


# --- the child ------------------------------------------------------------------------------------------------------


def _length(seconds: float) -> str:
    if seconds >= 3600:
        hours, minutes = divmod(int(round(seconds / 60)), 60)
        return f"{hours} h {minutes:02d} min"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min" if seconds % 60 < 1 else f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{seconds:.1f} s"


def _failure(reply: dict, name: str) -> AudioFileError:
    code, info, detail = reply.get("code", "corrupt"), reply.get("info") or {}, str(reply.get("detail", ""))
    label = codec_worker.LABELS.get(info.get("family", ""), "")
    quoted = f"“{name}”"
    if code == "mislabelled":
        return AudioFileError(f"This file ({quoted}) is {info.get('what', 'something else')}, not audio.", code)
    if code == "unsupported":
        what = info.get("what")
        if what == "not a regular file":
            return AudioFileError(f"{quoted} is not a regular file.", code)
        start = (
            f"{quoted} is {what}, a kind of file the app does not read."
            if what
            else f"{quoted} is not an audio or video file."
        )
        return AudioFileError(f"{start} Accepted: {ACCEPTED}.", code)
    if code == "no_audio_track":
        if info.get("has_video"):
            return AudioFileError(f"{quoted} is a video without an audio track: there is nothing to listen to.", code)
        return AudioFileError(f"{quoted} holds no audio track.", code)
    if code == "too_long":
        limit = _length(float(info.get("max_seconds") or 0))
        seconds = info.get("seconds")
        if seconds:
            message = f"{quoted} is {_length(float(seconds))} long; the limit is {limit}."
        else:
            message = f"{quoted} runs longer than the limit of {limit} (its header said less)."
        return AudioFileError(message + " Cut it into shorter parts.", code)
    if code == "empty":
        return AudioFileError(f"{quoted} is empty: it holds no audio.", code)
    if code == "not_found":
        return AudioFileError(f"{quoted} is no longer on the server; upload it again.", code)
    if code == "output_failed":  # the server's side, not the file's
        raise BackendError(f"Could not write the decoded audio of {quoted} ({detail}); is the disk full?")
    if code == "missing_av":
        raise ModelUnavailableError(f"PyAV is not installed: pip install av==18.1.0 ({detail})")
    if code == "out_of_memory":
        return AudioFileError(
            f"Reading {quoted} needed more than {MEMORY_MB} MB of memory and was stopped; the file is probably "
            "damaged. Try re-saving it from the program that made it.",
            "corrupt",
        )
    if label:
        return AudioFileError(
            f"{quoted} looks like {label} but is damaged or incomplete, so it cannot be read. "
            "Try re-saving or re-exporting it.",
            "corrupt",
        )
    return AudioFileError(
        f"{quoted} is damaged or not really audio: no audio data could be found in it. Accepted: {ACCEPTED}.", "corrupt"
    )


class _Lines(threading.Thread):
    """Reads the child's stdout into a queue of JSON messages; a line longer than `cap` ends the reading."""

    def __init__(self, pipe: IO[bytes], cap: int = 1 << 20) -> None:
        super().__init__(daemon=True)
        self.pipe, self.cap = pipe, cap
        self.messages: queue.Queue[dict] = queue.Queue()
        self.start()

    def run(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            while line := self.pipe.readline(self.cap):
                try:
                    message = json.loads(line)
                except (UnicodeDecodeError, json.JSONDecodeError):
                    return
                if isinstance(message, dict):
                    self.messages.put(message)


class _Tail(threading.Thread):
    """Drains the child's stderr, keeping the last `cap` bytes for the log."""

    def __init__(self, pipe: IO[bytes], cap: int = 16384) -> None:
        super().__init__(daemon=True)
        self.pipe, self.cap, self.data = pipe, cap, b""
        self.start()

    def run(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            while chunk := self.pipe.read(65536):
                self.data = (self.data + chunk)[-self.cap :]


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _run_child(
    request: dict, timeout: float, cancel: threading.Event | None, on_line: Callable[[dict], None] | None
) -> dict:
    """The child's facts for `request`, or the AudioFileError its reply (or its end) calls for."""
    # Same shape as _run_worker in core/condenser/documents.py (sandboxed child, scrubbed env, own session, killed as a
    # group): kept apart because backends never import core and the two talk differently (JSON lines with progress
    # until a reply here, one reply read at exit there).
    name = _shown(str(request.get("name") or "the file"))
    request["limits"] = {"memory_mb": MEMORY_MB, "cpu_s": int(math.ceil(timeout)) + 5}
    workdir = tempfile.mkdtemp(prefix="studio-audio-")  # the child's cwd and TMPDIR; goes away with it
    env = {key: os.environ[key] for key in _WORKER_ENV if key in os.environ}
    env.update(TMPDIR=workdir, HOME=workdir, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc: subprocess.Popen | None = None
    deadline = time.monotonic() + timeout
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        lines, tail = _Lines(proc.stdout), _Tail(proc.stderr)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(json.dumps(request).encode("utf-8"))
            proc.stdin.close()
        reply: dict | None = None
        while reply is None:
            try:
                message = lines.messages.get(timeout=0.05)
            except queue.Empty:
                message = None
            if message is not None:
                if "ok" in message:
                    reply = message
                elif on_line is not None:
                    on_line(message)
                continue
            if cancel is not None and cancel.is_set():
                _kill_group(proc)
                raise SpeechCancelled(f"Reading “{name}” was cancelled.")
            if time.monotonic() >= deadline:
                _kill_group(proc)
                raise _timeout(name, timeout)
            if proc.poll() is not None and not lines.is_alive() and lines.messages.empty():
                break
        returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        tail.join(timeout=2)
        if reply is not None:
            if reply.get("ok"):
                return dict(reply["probe"])
            log.info("audio reader refused %r: %s %s", name, reply.get("code"), reply.get("detail"))
            raise _failure(reply, name)
        stderr = tail.data.decode("utf-8", "replace")[-2000:]
        log.warning("audio reader for %r ended with status %s; stderr: %s", name, returncode, stderr)
        if returncode == -signal.SIGXCPU:
            raise _timeout(name, timeout)
        if returncode == codec_worker.EXIT_OUT_OF_MEMORY:
            raise _failure({"code": "out_of_memory"}, name)
        why = f"signal {signal.Signals(-returncode).name}" if returncode < 0 else f"exit status {returncode}"
        raise AudioFileError(
            f"The audio reader crashed on “{name}” ({why}); the file is probably damaged. "
            "Try re-saving it from the program that made it.",
            "corrupt",
        )
    except subprocess.TimeoutExpired:
        raise _timeout(name, timeout) from None
    finally:
        if proc is not None:
            if proc.poll() is None:
                _kill_group(proc)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                with contextlib.suppress(OSError):
                    if pipe is not None:
                        pipe.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _shown(name: str) -> str:
    """A person's file name as quoted in a message: one line, no control characters, at most 80 characters."""
    name = "".join(ch if ch.isprintable() else " " for ch in Path(name).name or name).strip() or "the file"
    return name if len(name) <= 80 else name[:79] + "…"


def _timeout(name: str, timeout: float) -> AudioFileError:
    return AudioFileError(
        f"Reading “{name}” took longer than {timeout:g} s and was stopped. The file may be damaged or too "
        "long for this server; try a re-saved or shorter recording.",
        "timeout",
    )
