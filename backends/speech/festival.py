"""Festival (Debian packages festival + festvox-us-slt-hts) with the CMU SLT HTS voice: a clear US English female
voice. `text2wave` reads the text from a temporary file and writes the WAV to another (phonemes.run_through_files)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from backends.speech.base import AudioPiece, Voice
from backends.speech.phonemes import empty_piece, latin1_speakable, require_binary, run_through_files, timeout_for
from backends.text.base import BackendError, ModelUnavailableError

FESTIVAL_INSTALL = "festival is not installed: apt-get install festival festvox-us-slt-hts"
VOICE_DIR = Path("/usr/share/festival/voices/us/cmu_us_slt_arctic_hts")
SAMPLE_RATE = 32_000  # what the HTS voice writes (the WAV header is read either way)

VOICES: tuple[Voice, ...] = (Voice("slt", "SLT (female, US English, Festival HTS)", ("en",)),)
_SELECT = {"slt": "(voice_cmu_us_slt_arctic_hts)"}


class FestivalBackend:
    label = "Festival (offline, US English)"
    max_piece_chars = 400

    def __init__(self, spec: str = "festival", voice_dir: Path = VOICE_DIR) -> None:
        self.spec = spec
        self.voice_dir = voice_dir

    def voices(self) -> tuple[Voice, ...]:
        return VOICES

    def load(self, progress: Callable[[float, str], None] | None = None) -> None:
        require_binary("text2wave", FESTIVAL_INSTALL)
        if not self.voice_dir.is_dir():
            raise ModelUnavailableError("Festival's SLT voice is not installed: apt-get install festvox-us-slt-hts")
        if progress:
            progress(1.0, "Festival is ready")

    def synthesize(self, text: str, *, voice: str, speed: float, cancel: threading.Event) -> AudioPiece:
        # Festival reads bytes as Latin-1 era text: accents are stripped and what has no ASCII form is dropped.
        ascii_text = latin1_speakable(text, cancel)
        if ascii_text is None:
            return empty_piece(SAMPLE_RATE)
        self.load()
        select = _SELECT.get(voice)
        if select is None:
            raise BackendError(f"Festival has no voice {voice!r}: choose one of {', '.join(_SELECT)}")
        rate = max(0.5, min(2.0, float(speed)))
        # The HTS engine ignores Duration_Stretch; its own "-r" parameter is the speaking rate (2.0 = twice as fast).
        speed_eval = f'(set! hts_engine_params (cons (list "-r" {rate:.3f}) hts_engine_params))'
        stretch_eval = f"(Parameter.set 'Duration_Stretch {1.0 / rate:.3f})"  # for non-HTS voices
        evals = ["-eval", select, "-eval", speed_eval, "-eval", stretch_eval]
        binary = require_binary("text2wave", FESTIVAL_INSTALL)
        return run_through_files(
            ascii_text,
            lambda source, target: [binary, *evals, "-o", str(target), str(source)],
            timeout=timeout_for(text, per_char=0.1),
            what="festival (text2wave)",
            cancel=cancel,
            prefix="studio-festival-",
        )
