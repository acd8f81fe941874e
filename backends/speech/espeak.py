"""espeak-ng (Debian package espeak-ng): a formant synthesiser, robotic but instant and about a hundred languages.
Voices are read from `espeak-ng --voices`; the text goes in on stdin, the WAV comes back on stdout."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from backends.speech.base import AudioPiece, Voice
from backends.speech.phonemes import (
    ESPEAK_INSTALL,
    check_cancel,
    decode_wav,
    empty_piece,
    require_binary,
    run_tool,
    speakable,
    timeout_for,
)
from backends.text.base import BackendError

SAMPLE_RATE = 22_050
DEFAULT_VOICE = "en-us"
_LANG = re.compile(r"^[a-z]{2,3}$")
# English accents not offered: faster-whisper base misheard too many of their words. Word error rates on 24 varied
# sentences (305 words) heard as one clip per voice, and [heard one by one]: kept en-us 4.3% [7.2%], en-gb 3.9%
# [7.2%], en-gb-x-rp 5.6% [6.6%]; left out West Midlands 13.8%, Caribbean 10.8%, Scotland 8.8%, New York City 6.9%
# (10.2% at speed 0.85: speaking slower helped none of them), Lancaster 5.2% [16.1%].
UNCLEAR = frozenset({"en-gb-x-gbcwmd", "en-029", "en-gb-scotland", "en-us-nyc", "en-gb-x-gbclan"})


def parse_voices(listing: str) -> tuple[Voice, ...]:
    """Voices of an `espeak-ng --voices` listing (columns: Pty, Language, Age/Gender, VoiceName, File, Other
    Languages). The id is the language code espeak-ng's -v takes ("en-us", "fr-fr"); a code listed twice keeps its
    first voice. languages = the code's ISO 639-1 part ("en"), else a two-letter code among its other languages
    ("cmn" lists "zh"), else the code itself. en-us comes first (the default), the rest in listing order; the UNCLEAR
    accents are left out."""
    voices: dict[str, Voice] = {}
    for line in listing.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 4 or not cols[0].isdigit():
            continue
        code, name = cols[1], cols[3]
        if code in voices or code in UNCLEAR or not re.fullmatch(r"[A-Za-z0-9-]+", code):
            continue
        base = code.split("-")[0].lower()
        others = [o.split("-")[0].lower() for o in re.findall(r"\(([A-Za-z-]+) \d+\)", line)]
        two = [c for c in [base, *others] if len(c) == 2]
        lang = two[0] if two else base
        if not _LANG.match(lang):
            continue
        label = f"{name.replace('_', ' ')}, espeak-ng"
        voices[code] = Voice(code, label, (lang,))
    first = [voices[DEFAULT_VOICE]] if DEFAULT_VOICE in voices else []
    return tuple(first + [v for k, v in voices.items() if k != DEFAULT_VOICE])


class EspeakBackend:
    label = "espeak-ng (offline, many languages)"
    max_piece_chars = 400

    def __init__(self, spec: str = "espeak") -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._voices: tuple[Voice, ...] | None = None

    def voices(self) -> tuple[Voice, ...]:
        if self._voices is None:
            with self._lock:
                if self._voices is None:
                    binary = require_binary("espeak-ng", ESPEAK_INSTALL)
                    listing = run_tool([binary, "--voices"], timeout=20, what="espeak-ng --voices")
                    voices = parse_voices(listing.decode("utf-8", "replace"))
                    if not voices:
                        raise BackendError("espeak-ng lists no voices: reinstall it (apt-get install espeak-ng)")
                    self._voices = voices
        return self._voices

    def load(self, progress: Callable[[float, str], None] | None = None) -> None:
        require_binary("espeak-ng", ESPEAK_INSTALL)
        self.voices()
        if progress:
            progress(1.0, "espeak-ng is ready")

    def synthesize(self, text: str, *, voice: str, speed: float, cancel: threading.Event) -> AudioPiece:
        check_cancel(cancel)
        if not speakable(text):
            return empty_piece(SAMPLE_RATE)
        binary = require_binary("espeak-ng", ESPEAK_INSTALL)
        if voice not in {v.id for v in self.voices()}:
            raise BackendError(f"espeak-ng has no voice {voice!r}")
        wpm = str(round(175 * max(0.5, min(2.0, float(speed)))))
        # --stdin: the whole text at once from stdin, so nothing in it is ever read as an option.
        wav = run_tool(
            [binary, "--stdin", "--stdout", "-v", voice, "-s", wpm],
            stdin=text.encode("utf-8"),
            timeout=timeout_for(text),
            what="espeak-ng",
        )
        check_cancel(cancel)
        return decode_wav(wav, "espeak-ng")
