"""One speak request's run: the cleaned text split into pieces lazily, each piece spoken on the model's fair turn,
encoded into the output file as it comes and handed on as a small WAV for a live player; a stop keeps what was made."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backends.speech.base import SpeechBackend, SpeechCancelled, Voice
from backends.speech.codecs import AudioWriter, wav_bytes
from backends.text.base import BackendError
from core.db import DISK_FULL_MESSAGE, is_disk_full
from core.errors import StorageFullError
from core.speech.errors import SpeechInputError
from core.speech.store import SpeechItem, SpeechStore
from core.speech.text import clean_for_speech, split_pieces

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeakUpdate:
    chars_done: int
    chars_total: int
    audio_seconds: float
    chunk: bytes | None  # a complete 16-bit WAV of the newest piece, for a live player; None otherwise
    item: SpeechItem | None  # only on the last update: the whole file in the chosen format, kept in the store
    message: str  # a one-line status, e.g. "Speaking… 1,240 of 9,800 characters · 20 s of audio"

    @property
    def fraction(self) -> float:
        return min(1.0, self.chars_done / self.chars_total) if self.chars_total > 0 else 0.0


@dataclass(frozen=True)
class SpeakPlan:
    """A checked speak request (SpeechStudio.speak makes it)."""

    user: str
    spec: str
    backend: SpeechBackend
    voice: Voice
    text: str  # cleaned for speech
    speed: float
    fmt: str
    source: str
    language: str  # detected, or the voice's first language when too little text to tell
    reserve_bytes: int = 0  # free disk the data folder keeps (STUDIO_DISK_RESERVE_MB): speaking stops before it
    rest: str = ""  # the text after `text`, not yet cleaned (text.split_head): cleaned after the first piece


@dataclass
class _Whole:
    """The text being spoken, cleaned: the head until the rest is cleaned (`known`)."""

    text: str
    known: bool


def _pieces(plan: SpeakPlan, max_chars: int, whole: _Whole) -> Iterator[tuple[str, int]]:
    """The plan's pieces: the first from its cleaned head, then (the rest cleaned: `whole.text` is the full
    cleaned text and `whole.known` True) every later piece of the whole. The first piece of the whole is the
    head's first piece: the head ends at a paragraph, after the first sentence."""
    head = split_pieces(plan.text, max_chars)
    first = next(head, None)
    if first is None:
        return
    yield first
    if not plan.rest:
        yield from head
        return
    rest = clean_for_speech(plan.rest)
    whole.text, whole.known = (f"{plan.text}\n\n{rest}" if rest else plan.text), True
    later = split_pieces(whole.text, max_chars)
    next(later, None)
    yield from later


LOW_DISK_MESSAGE = (
    "The server's disk is nearly full, so speaking stopped; tell whoever runs this server to free some space."
)


def free_bytes(folder: Path) -> int:
    """Free space where the audio is written (a seam the tests use to fill a disk safely)."""
    return shutil.disk_usage(folder).free


def duration_words(seconds: float) -> str:
    """ "1 h 2 min", "1 min 20 s", "12 s", "0.4 s"."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def speak_run(
    plan: SpeakPlan,
    store: SpeechStore,
    turn: Callable[[], AbstractContextManager[object]],
    cancel: threading.Event,
    load_progress: Callable[[float, str], None] | None,
) -> Iterator[SpeakUpdate]:
    """The updates of one request (see SpeechStudio.speak). `turn()` holds the model for one piece; it raises
    SpeechCancelled when the request is cancelled while waiting for it."""
    backend = plan.backend
    whole = _Whole(plan.text, known=not plan.rest)
    total = len(plan.text) + len(plan.rest)  # until then, the head's length and the rest's before cleaning
    yield SpeakUpdate(0, total, 0.0, None, None, f"Starting {backend.label}…")
    backend.load(load_progress)
    item_id, partial = store.partial_path(plan.user, plan.fmt)
    writer: AudioWriter | None = None
    done, seconds, stopped, kept = 0, 0.0, False, False

    def keep() -> SpeechItem:
        nonlocal kept
        assert writer is not None
        writer.close()
        kept = True
        return store.add_speech(
            plan.user, item_id, partial, text=whole.text[:done] if stopped else whole.text, source=plan.source,
            model=plan.spec, voice=plan.voice.id, language=plan.language, fmt=plan.fmt, duration=seconds,
            stopped=stopped,
        )  # fmt: skip

    def stop_keeping(reason: str) -> SpeakUpdate:
        """The last update of a run stopped early for `reason`, with the audio made so far kept."""
        nonlocal stopped
        stopped = True
        item = keep()
        return SpeakUpdate(
            done, total, seconds, None, item, f"{reason}; the {duration_words(seconds)} of audio made so far is kept."
        )

    try:
        for piece, reached in _pieces(plan, backend.max_piece_chars, whole):
            if whole.known:
                total = len(whole.text)
            if cancel.is_set():
                stopped = True
                break
            if plan.reserve_bytes and free_bytes(partial.parent) < plan.reserve_bytes:
                # One caller's hours of WAV must not fill the disk that every user's work is kept on.
                if writer is None:
                    raise StorageFullError(LOW_DISK_MESSAGE)
                yield stop_keeping(f"{LOW_DISK_MESSAGE} Stopped at {done:,} of {total:,} characters")
                return
            try:
                with turn():
                    audio = backend.synthesize(piece, voice=plan.voice.id, speed=plan.speed, cancel=cancel)
            except SpeechCancelled:
                stopped = True
                break
            except BackendError as exc:
                if writer is None:
                    raise
                # The voice failed part-way (a hosted server gone, a tool crashed): what was spoken is kept.
                yield stop_keeping(f"The voice failed at {done:,} of {total:,} characters ({exc})")
                return
            samples = np.asarray(audio.samples, dtype=np.float32).reshape(-1)
            done = reached
            if samples.size == 0:  # only punctuation in this piece
                continue
            if writer is None:
                writer = AudioWriter(partial, plan.fmt, audio.sample_rate)
            writer.write(samples, audio.sample_rate)
            seconds += audio.seconds
            yield SpeakUpdate(
                done,
                total,
                seconds,
                wav_bytes(samples, audio.sample_rate),
                None,
                f"Speaking… {done:,} of {total:,} characters · {duration_words(seconds)} of audio",
            )
        if writer is None:
            if stopped:
                yield SpeakUpdate(done, total, 0.0, None, None, "Stopped before any audio was made.")
                return
            raise SpeechInputError("empty", "There is nothing in this text that the voice can read aloud.")
        item = keep()
        if stopped:
            message = (
                f"Stopped at {done:,} of {total:,} characters; the {duration_words(seconds)} of audio made so far "
                "is kept."
            )
        else:
            done = total
            message = f"Done: {total:,} characters, {duration_words(seconds)} of audio ({plan.fmt.upper()})."
        yield SpeakUpdate(done, total, seconds, None, item, message)
    except OSError as exc:  # writing the audio (PyAV raises OSError subclasses with the errno)
        if is_disk_full(exc):
            raise StorageFullError(DISK_FULL_MESSAGE) from None
        raise
    except GeneratorExit:  # the reader went away (page closed, API call dropped): keep what was made
        if writer is not None and not kept:
            stopped = True
            try:
                keep()
            except Exception:
                log.exception("keeping a stopped speech item failed")
        raise
    finally:
        if not kept:
            if writer is not None:
                try:
                    writer.close()
                except Exception:
                    log.debug("closing an abandoned audio writer failed", exc_info=True)
            partial.unlink(missing_ok=True)
