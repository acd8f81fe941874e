"""flite (Debian package flite): CMU's small US English voices (rms, slt, awb), very fast. The text goes
in through a temporary file (-f), never as an argument, and the WAV comes back through another (-o): both are
phonemes.run_through_files'."""

from __future__ import annotations

import threading
from collections.abc import Callable

from backends.speech.base import AudioPiece, Voice
from backends.speech.phonemes import empty_piece, latin1_speakable, require_binary, run_through_files, timeout_for
from backends.text.base import BackendError

FLITE_INSTALL = "flite is not installed: apt-get install flite"
SAMPLE_RATE = 16_000

# Ordered by faster-whisper base's word error rate on 12 fixed sentences (145 words), measured here: rms 1.4%,
# slt 2.1%, awb 3.4%; on 24 others (305 words) heard as one clip: rms 1.0%, awb 2.6%, slt 4.6%. The first is the
# default. Not offered: the old diphone voices, misheard too often: kal (11.7% on the 12; 6.2% on the 24 as one clip,
# 11.5% heard one by one) and kal16 (4.1%; 5.6%, 6.9%; 8.7% on the round-trip test's ten).
VOICES: tuple[Voice, ...] = (
    Voice("rms", "RMS (male, US English, flite)", ("en",)),
    Voice("slt", "SLT (female, US English, flite)", ("en",)),
    Voice("awb", "AWB (male, Scottish English, flite)", ("en",)),
)


class FliteBackend:
    label = "flite (offline, US English)"
    max_piece_chars = 400

    def __init__(self, spec: str = "flite") -> None:
        self.spec = spec

    def voices(self) -> tuple[Voice, ...]:
        return VOICES

    def load(self, progress: Callable[[float, str], None] | None = None) -> None:
        require_binary("flite", FLITE_INSTALL)
        if progress:
            progress(1.0, "flite is ready")

    def synthesize(self, text: str, *, voice: str, speed: float, cancel: threading.Event) -> AudioPiece:
        # flite reads bytes as Latin-1 era text: accents are stripped and what has no ASCII form is dropped.
        ascii_text = latin1_speakable(text, cancel)
        if ascii_text is None:
            return empty_piece(SAMPLE_RATE)
        binary = require_binary("flite", FLITE_INSTALL)
        if voice not in {v.id for v in VOICES}:
            raise BackendError(f"flite has no voice {voice!r}: choose one of {', '.join(v.id for v in VOICES)}")
        stretch = f"{1.0 / max(0.5, min(2.0, float(speed))):.3f}"
        options = ["-voice", voice, "--setf", f"duration_stretch={stretch}"]
        return run_through_files(
            ascii_text,
            lambda source, target: [binary, *options, "-f", str(source), "-o", str(target)],
            timeout=timeout_for(text),
            what="flite",
            cancel=cancel,
            prefix="studio-flite-",
        )
