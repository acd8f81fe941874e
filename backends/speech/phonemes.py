"""Text to IPA phonemes with the espeak-ng binary (for Kokoro), and the shared pieces every command-line voice needs:
finding a binary, running it safely (argument lists, text never on the command line, a timeout, stdin closed),
the text-file-in, WAV-file-out run (festival, flite), reading the WAV it writes, and telling text worth speaking
from punctuation."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
import threading
import unicodedata
import wave
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from backends.speech.base import AudioPiece, SpeechCancelled
from backends.text.base import BackendError, ModelUnavailableError, TimeoutFailedError

ESPEAK_INSTALL = "espeak-ng is not installed: apt-get install espeak-ng"

# A clause ends at punctuation followed by a space or the end (so "3.5" and "1,200" stay whole). The mark is kept:
# Kokoro reads it (a comma pauses, a question rises); espeak-ng --ipa drops it.
_CLAUSE = re.compile(r"(.+?)([.,;:!?…—]+[\"”’')\]]*|$)(?:\s+|$)", re.S)
_SPEAKABLE = re.compile(r"\w", re.UNICODE)


def speakable(text: str) -> bool:
    """Whether `text` has anything to say (a letter or a digit), not only punctuation, symbols or spaces."""
    return bool(_SPEAKABLE.search(text))


def require_binary(name: str, install: str) -> str:
    """The binary's path, or ModelUnavailableError saying what to install (`install` is the whole message)."""
    path = shutil.which(name)
    if path is None:
        raise ModelUnavailableError(install)
    return path


def latin1_text(text: str) -> str:
    """Text for festival and flite, which are Latin-1 era tools: accents are taken off (NFKD) and what has no ASCII
    form (emoji, CJK, curly quotes' odd cousins) is dropped rather than read as garbage or failing the run."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = text.replace("\u2014", ", ").replace("\u2013", "-").replace("\u2026", "...")
    return " ".join(unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").split())


def latin1_speakable(text: str, cancel: threading.Event) -> str | None:
    """What festival or flite is given of `text` (latin1_text), or None when nothing worth speaking is left (emoji,
    punctuation: the engine then returns an empty piece). SpeechCancelled if `cancel` is set."""
    check_cancel(cancel)
    ascii_text = latin1_text(text)
    return ascii_text if speakable(ascii_text) else None


def timeout_for(text: str, per_char: float = 0.05, floor: float = 20.0) -> float:
    """Seconds a tool may take for `text`: generous (a loaded 2-core machine), proportional to its length."""
    return floor + per_char * len(text)


def run_tool(args: Sequence[str], *, timeout: float, stdin: bytes | None = None, what: str) -> bytes:
    """Run a command (argument list, never a shell) and return its stdout. A non-zero exit -> BackendError with the
    last line of its stderr; a timeout -> TimeoutFailedError."""
    try:
        done = subprocess.run(
            list(args),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TimeoutFailedError(f"{what} took longer than {timeout:.0f} s and was stopped") from exc
    except OSError as exc:  # vanished between the check and the run, or not executable
        raise ModelUnavailableError(f"{what} could not be started: {exc.strerror or exc}") from exc
    if done.returncode != 0:
        lines = [ln.strip() for ln in done.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        raise BackendError(f"{what} failed (exit {done.returncode}): {lines[-1] if lines else 'no message'}")
    return done.stdout


def run_through_files(
    ascii_text: str,
    command: Callable[[Path, Path], Sequence[str]],
    *,
    timeout: float,
    what: str,
    cancel: threading.Event,
    prefix: str,
) -> AudioPiece:
    """Run a tool that reads its text from a file and writes a WAV file: `ascii_text` (plus a newline) goes into a
    temporary text file, `command(text_file, wav_file)` gives the arguments, and the WAV it wrote is read back.
    SpeechCancelled if `cancel` was set meanwhile; BackendError when it wrote no audio."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        source, target = Path(tmp) / "text.txt", Path(tmp) / "speech.wav"
        source.write_text(ascii_text + "\n", encoding="ascii")
        run_tool(command(source, target), timeout=timeout, what=what)
        check_cancel(cancel)
        if not target.is_file():
            raise BackendError(f"{what} wrote no audio")
        return decode_wav(target.read_bytes(), what)


def decode_wav(data: bytes, what: str) -> AudioPiece:
    """float32 mono samples of a PCM WAV (8/16/32-bit, any channels: averaged). espeak-ng writes its WAV to a pipe
    with unknown lengths in the header, so the frames are whatever follows the header."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            frames = w.readframes(2**31 - 1)
    except (wave.Error, EOFError) as exc:
        raise BackendError(f"{what} wrote audio that could not be read: {exc}") from exc
    if width == 2:
        samples = np.frombuffer(frames[: len(frames) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    elif width == 1:
        samples = (np.frombuffer(frames, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 4:
        samples = np.frombuffer(frames[: len(frames) // 4 * 4], dtype="<i4").astype(np.float32) / 2147483648.0
    else:
        raise BackendError(f"{what} wrote {width * 8}-bit audio, which is not supported")
    if channels > 1:
        samples = samples[: len(samples) // channels * channels].reshape(-1, channels).mean(axis=1)
    return AudioPiece(np.ascontiguousarray(samples, dtype=np.float32), rate)


def empty_piece(sample_rate: int) -> AudioPiece:
    return AudioPiece(np.zeros(0, dtype=np.float32), sample_rate)


def check_cancel(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise SpeechCancelled()


# -- espeak-ng IPA for Kokoro ----------------------------------------------------------------------------------------


def split_clauses(text: str) -> list[tuple[str, str]]:
    """(words, punctuation) clauses of `text`; the punctuation is '' for the last clause when the text has none."""
    out: list[tuple[str, str]] = []
    for m in _CLAUSE.finditer(" ".join(text.split())):
        words, mark = m.group(1).strip(), m.group(2) or ""
        if words or mark:
            out.append((words, mark))
    return out


def espeak_ipa(lines: Sequence[str], voice: str = "en-us", *, timeout: float | None = None) -> list[str]:
    """IPA of each line (`espeak-ng --ipa -q --tie=^`; multi-letter phonemes joined by '^'). All lines go through
    one process on stdin, one output line each; when espeak-ng splits a line itself (it breaks very long clauses),
    the lines are done one process each so every result still lines up with its input."""
    binary = require_binary("espeak-ng", ESPEAK_INSTALL)
    clean = [ln.replace("\n", " ").strip() for ln in lines]
    args = [binary, "--ipa", "-q", "--tie=^", "-v", voice]
    total = timeout if timeout is not None else timeout_for("".join(clean), per_char=0.01)
    if not clean:
        return []
    # Without --stdin espeak-ng reads line by line and ends a clause at each line's end: one output line per line.
    raw = run_tool(args, stdin=("\n".join(clean) + "\n").encode("utf-8"), timeout=total, what="espeak-ng")
    out = raw.decode("utf-8", "replace").splitlines()
    if len(out) == len(clean):
        return [o.strip() for o in out]
    results = []
    for line in clean:
        one = run_tool(args, stdin=(line + "\n").encode("utf-8"), timeout=total, what="espeak-ng")
        results.append(" ".join(one.decode("utf-8", "replace").split()))
    return results


# espeak-ng IPA -> the phoneme alphabet Kokoro v1.0 was trained on (misaki, American English): diphthongs are one
# letter (eɪ=A, aɪ=I, aʊ=W, ɔɪ=Y, oʊ=O), syllabic consonants take a ᵊ, length marks go. Longest first.
_E2M = sorted(
    {
        "ʔˌn\u0329": "tᵊn",
        "ʔn\u0329": "tᵊn",
        "ʔn": "tᵊn",
        "ʔ": "t",
        "a^ɪ": "I",
        "a^ʊ": "W",
        "d^ʒ": "ʤ",
        "e": "A",
        "e^ɪ": "A",
        "r": "ɹ",
        "t^ʃ": "ʧ",
        "x": "k",
        "ç": "k",
        "ɐ": "ə",
        "ɔ^ɪ": "Y",
        "ə^l": "ᵊl",
        "ɚ": "əɹ",
        "ɬ": "l",
        "ʲ": "",
    }.items(),
    key=lambda kv: -len(kv[0]),
)


def to_kokoro(ipa: str) -> str:
    """misaki-style phonemes (American English) from espeak-ng's IPA with '^' ties."""
    for old, new in _E2M:
        ipa = ipa.replace(old, new)
    ipa = re.sub(r"(\S)\u0329", r"ᵊ\1", ipa).replace("\u0329", "")
    ipa = ipa.replace("o^ʊ", "O").replace("ɜːɹ", "ɜɹ").replace("ɜː", "ɜɹ").replace("ɪ^ə", "iə").replace("ɪə", "iə")
    ipa = ipa.replace("ː", "").replace("o", "ɔ")  # espeak-ng < 1.52 writes a bare o where misaki has ɔ
    return ipa.replace("^", "")


def phonemize_en(text: str, *, timeout: float | None = None) -> str:
    """Kokoro phonemes of English `text`, clause punctuation kept in place."""
    clauses = [(words, mark) for words, mark in split_clauses(text) if speakable(words)]
    ipas = espeak_ipa([words for words, _ in clauses], "en-us", timeout=timeout)
    parts = []
    for (_, mark), ipa in zip(clauses, ipas, strict=True):
        ps = to_kokoro(ipa).strip()
        if ps:
            parts.append(ps + _kokoro_mark(mark))
    return " ".join(parts)


def _kokoro_mark(mark: str) -> str:
    """The punctuation Kokoro knows (its vocabulary has ; : , . ! ? — … and quotes), at most two marks."""
    kept = "".join(c for c in mark.replace("...", "…") if c in ";:,.!?—…")
    return kept[:2]
