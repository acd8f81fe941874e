"""The two speech protocols: speech out (`SpeechBackend`: text -> audio) and speech in (`TranscribeBackend`: audio
file -> timed text). Like text and image backends: no knowledge of tabs or users, lazy loading behind a lock, heavy
imports inside methods, a fresh cancel event per request, `BackendError` with a message the user can act on."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Voice:
    """One voice an engine offers. `languages` are lower-case ISO 639-1 codes ("en", "de"); the core checks a
    text's language against them and offers another voice when it cannot speak it."""

    id: str  # the engine's own name: "jf_alpha", "en-us", "slt", "alloy"
    label: str  # shown to people: "Alpha (female, Kokoro)"
    languages: tuple[str, ...]


@dataclass(frozen=True)
class AudioPiece:
    """Audio of one piece of text: mono float32 samples in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0


class SpeechCancelled(Exception):
    """The request's cancel event was set."""


@runtime_checkable
class SpeechBackend(Protocol):
    spec: str  # "kokoro", "espeak", "flite", "festival", "openai:tts-1"
    label: str
    # The longest text one synthesize() call takes; the core splits longer text at sentences, then words.
    max_piece_chars: int

    def voices(self) -> tuple[Voice, ...]:
        """Every voice, first is the default. Must not need the model loaded (a list, a binary's --voices)."""
        ...

    def load(self, progress: Callable[[float, str], None] | None = None) -> None:
        """Idempotent, thread-safe, lazy. A missing system package or model file -> ModelUnavailableError naming
        what to install."""
        ...

    def synthesize(self, text: str, *, voice: str, speed: float, cancel: threading.Event) -> AudioPiece:
        """Audio of `text` (at most max_piece_chars, already cleaned by the core). `speed` is 0.5-2.0, 1.0 normal.
        Raises SpeechCancelled, or a BackendError subclass."""
        ...


@dataclass(frozen=True)
class Segment:
    """One stretch of recognised speech, in seconds from the start of the recording."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class TranscriptInfo:
    language: str  # ISO 639-1, detected unless the caller named one
    language_probability: float  # 1.0 when the caller named it
    duration: float  # seconds of audio


@runtime_checkable
class TranscribeBackend(Protocol):
    spec: str  # "whisper", "whisper:<size, hub id or folder>", "openai:whisper-1"
    label: str

    def load(self, progress: Callable[[float, str], None] | None = None) -> None: ...

    def transcribe(
        self,
        path: Path,
        *,
        language: str | None,
        cancel: threading.Event,
        on_info: Callable[[TranscriptInfo], None] | None = None,
    ) -> Iterator[Segment]:
        """Segments of `path` (a 16 kHz mono 16-bit WAV the core made from the upload) in order, as they are
        recognised; `on_info` is called once, before the first segment, with the language and duration. Checks
        `cancel` between segments (raises SpeechCancelled). `language` None = detect."""
        ...
