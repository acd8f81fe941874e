"""What the Speech tab shows, as text and files: status lines, durations, the transcript with its timestamps, the
languages offered for transcription, and copies of kept audio handed to the browser. No service calls here."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from backends.speech.base import Segment
from ui.model_pickers import md

_COPY_KEY = secrets.token_bytes(32)  # names the copies handed to pages (served_copy)
FORMATS = [("WAV", "wav"), ("MP3", "mp3"), ("OGG", "ogg")]
# Whisper's common languages (ISO 639-1); "" detects the language. Any code the recogniser knows is accepted by the
# API; the picker offers the common ones.
LANGUAGES: list[tuple[str, str]] = [
    ("Detect automatically", ""),
    ("English", "en"),
    ("German", "de"),
    ("French", "fr"),
    ("Spanish", "es"),
    ("Italian", "it"),
    ("Portuguese", "pt"),
    ("Dutch", "nl"),
    ("Polish", "pl"),
    ("Czech", "cs"),
    ("Swedish", "sv"),
    ("Danish", "da"),
    ("Finnish", "fi"),
    ("Greek", "el"),
    ("Russian", "ru"),
    ("Ukrainian", "uk"),
    ("Turkish", "tr"),
    ("Arabic", "ar"),
    ("Hebrew", "he"),
    ("Hindi", "hi"),
    ("Chinese", "zh"),
    ("Japanese", "ja"),
    ("Korean", "ko"),
    ("Vietnamese", "vi"),
    ("Indonesian", "id"),
]
LANGUAGE_NAMES = {code: name for name, code in LANGUAGES if code}
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
# Audio and video an upload may be (the service checks what the file really is).
UPLOAD_TYPES = [
    "audio",
    "video",
    ".wav",
    ".mp3",
    ".ogg",
    ".oga",
    ".opus",
    ".flac",
    ".m4a",
    ".aac",
    ".webm",
    ".mp4",
    ".mov",
    ".mkv",
]


def duration(seconds: float) -> str:
    """'4.2 s', '1 min 20 s', '1 h 02 min'."""
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def clock(seconds: float) -> str:
    """A timestamp for the transcript view: 01:02.3, or 1:02:03.4 past an hour."""
    seconds = max(0.0, float(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h)}:{int(m):02d}:{s:04.1f}" if h else f"{int(m):02d}:{s:04.1f}"


def transcript_text(segments: Iterable[Segment]) -> str:
    """One segment a line, each with its start and end."""
    return "\n".join(f"[{clock(s.start)} → {clock(s.end)}] {s.text.strip()}" for s in segments)


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code or "unknown")


def speak_status(message: str, audio_seconds: float, *, done: bool = False) -> str:
    """The Speak status line: the service's message and how much audio there is so far."""
    line = md(message.strip())
    if audio_seconds > 0 and "of audio" not in message:
        line += f" · {duration(audio_seconds)} of audio"
    return f"**{line}**" if not done else line


def upload_limits(max_mb: int, max_minutes: float) -> str:
    """What one recording may be, said before the person picks a file: the size cap is every upload's, so a long
    recording fits compressed (at 64 kb/s a megabyte holds about two minutes) and not as WAV."""
    compressed = int(max_mb * 8 * 1000 / 64 / 60)
    return (
        f"Up to {max_mb:,} MB and {max_minutes:g} minutes a file: as MP3, M4A or OGG at 64 kb/s that is about "
        f"{min(compressed, int(max_minutes)):,} minutes; a WAV of the same length is far larger."
    )


def char_count_js(limit: int) -> str:
    """A page-side function for the character count under the text box (no server round trip per key)."""
    return (
        "(t) => { const n = (t || '').length; const l = "
        + str(int(limit))
        + "; return n.toLocaleString('en') + ' of ' + l.toLocaleString('en') + ' characters'"
        + " + (n > l ? ' - too long: split it into parts' : ''); }"
    )


def char_count(text: str | None, limit: int) -> str:
    n = len(text or "")
    extra = " - too long: split it into parts" if n > limit else ""
    return f"{n:,} of {limit:,} characters{extra}"


def served_copy(path: Path, name: str, identity: bytes | None = None) -> str:
    """A copy of a kept file under a friendly name, for Gradio to serve (the kept file stays where the store keeps it;
    its server path never reaches the page). Made inside Gradio's cache folder: Gradio serves it from there without
    copying it again, and its delete_cache sweep (app.py) removes it, so an hour of audio opened twice does not
    stay on disk twice."""
    from gradio.utils import get_upload_folder

    source = Path(path)
    safe = "".join(c for c in name if c.isalnum() or c in "._- ")[:80].strip() or source.name
    cache = Path(get_upload_folder())
    cache.mkdir(parents=True, exist_ok=True)
    # One copy per kept file and name, reused until the sweep takes it: a page (or a script calling History's
    # events) opening the same hours-long WAV again and again must not fill the disk. The folder's name is keyed
    # with a secret of this process, so nobody can tell another user's copy from its file's name.
    facts = source.stat()
    what = identity if identity is not None else f"{source.resolve()}\0{facts.st_size}\0{facts.st_ino}".encode()
    key = what + b"\0" + safe.encode()
    folder = cache / f"studio-speech-{hmac.new(_COPY_KEY, key, hashlib.sha256).hexdigest()[:32]}"
    out = folder / safe
    try:
        if out.stat().st_size == facts.st_size:
            os.utime(out)  # Gradio's sweep goes by the file's age (ctime): it starts again
            return str(out)
    except FileNotFoundError:
        pass
    folder.mkdir(exist_ok=True)
    part = folder / f".{secrets.token_hex(8)}.part"
    try:
        try:
            os.link(source, part)  # on the same disk a second name costs nothing (a kept file never changes)
        except OSError:
            shutil.copyfile(source, part)
        os.replace(part, out)  # two callers copying at once: one copy wins, whole
    finally:
        part.unlink(missing_ok=True)
    return str(out)


def item_filename(title: str, created: float, ext: str) -> str:
    """'speech-2026-12-01-0614-Hello-world.mp3'."""
    import time

    stamp = time.strftime("%Y-%m-%d-%H%M", time.localtime(created))
    words = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-")[:40] or "speech"
    return f"{stamp}-{words}.{ext}"


def served_export(path: Path, name: str) -> str:
    """served_copy of a file the service exported into a temporary folder of its own, which goes once copied. Each
    export is a new file, so the copy is known by its content: the same transcript exported again reuses it."""
    copy = served_copy(path, name, identity=hashlib.sha256(Path(path).read_bytes()).digest())
    folder = Path(path).parent
    if folder.name.startswith("studio-export-") and Path(tempfile.gettempdir()) in folder.parents:
        shutil.rmtree(folder, ignore_errors=True)
    return copy
