"""One transcribe request's run: the upload checked and decoded (in a sandboxed child, backends/speech/codecs.py)
to a temporary 16 kHz mono WAV, recognised segment by segment on the model's fair turn, kept as a transcript; a stop
keeps the segments so far."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path

from backends.speech.base import Segment, SpeechCancelled, TranscribeBackend, TranscriptInfo
from backends.speech.codecs import AudioFileError, AudioProbe, decode_to_wav16k, probe
from core.speech.errors import SpeechInputError
from core.speech.speaking import duration_words
from core.speech.store import SpeechItem, SpeechStore

PROBE_TIMEOUT_S = 30.0
POLL_S = 0.25  # how often decoding says how far it got
NO_SPEECH = (
    "No speech was found in this recording: it may be silent, music only, or too quiet. Try another recording, or "
    "name its language if it is not detected."
)


@dataclass(frozen=True)
class TranscribeUpdate:
    fraction: float
    seconds_done: float
    duration: float
    segments: tuple[Segment, ...]  # all so far
    info: TranscriptInfo | None
    item: SpeechItem | None  # only on the last update
    message: str


@dataclass(frozen=True)
class HearPlan:
    """A checked transcribe request (SpeechStudio.transcribe makes it)."""

    user: str
    spec: str
    backend: TranscribeBackend
    path: Path
    title: str
    language: str | None
    source: str
    max_seconds: float


def input_error(exc: AudioFileError) -> SpeechInputError:
    """A codec refusal as the service's own error ("too_long" is the recording's: "too_long_audio")."""
    code = getattr(exc, "code", "corrupt") or "corrupt"
    return SpeechInputError("too_long_audio" if code == "too_long" else code, str(exc))


def _decode(
    plan: HearPlan, out: Path, duration: float, cancel: threading.Event, decoded: list[AudioProbe]
) -> Iterator[TranscribeUpdate]:
    """Decode on a thread, saying how far it got; what was decoded is appended to `decoded`; raises what decoding
    raised."""
    progress = {"fraction": 0.0}
    outcome: dict[str, BaseException] = {}

    def work() -> None:
        try:
            result = decode_to_wav16k(
                plan.path,
                out,
                max_seconds=plan.max_seconds,
                timeout=60.0 + duration / 2,
                cancel=cancel,
                progress=lambda f: progress.__setitem__("fraction", float(f)),
                name=plan.title,
            )
            decoded.append(result)
        except BaseException as exc:  # raised on the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="speech-decode", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(POLL_S)
        if worker.is_alive():
            if cancel.is_set():  # the child is being killed: wait for it without more updates
                worker.join(30)
                break
            try:
                yield TranscribeUpdate(
                    0.0, 0.0, duration, (), None, None, f"Preparing the audio… {progress['fraction']:.0%}"
                )
            except GeneratorExit:  # the reader went away: the request is over, so stop the child too
                cancel.set()
                worker.join(10)
                raise
    error = outcome.get("error")
    if error is not None:
        raise error


def hear_run(
    plan: HearPlan,
    store: SpeechStore,
    turn: Callable[[], AbstractContextManager[object]],
    cancel: threading.Event,
    load_progress: Callable[[float, str], None] | None,
) -> Iterator[TranscribeUpdate]:
    """The updates of one request (see SpeechStudio.transcribe)."""
    yield TranscribeUpdate(0.0, 0.0, 0.0, (), None, None, "Checking the recording…")
    try:
        probed = probe(plan.path, max_seconds=plan.max_seconds, timeout=PROBE_TIMEOUT_S, name=plan.title)
    except AudioFileError as exc:
        raise input_error(exc) from None
    duration = float(probed.duration)
    folder = Path(tempfile.mkdtemp(prefix="studio-hear-"))
    decoded: list[AudioProbe] = []
    try:
        wav = folder / "audio.wav"
        try:
            yield from _decode(plan, wav, duration, cancel, decoded)
        except SpeechCancelled:
            pass  # said below
        except AudioFileError as exc:
            if not cancel.is_set():
                raise input_error(exc) from None
        if cancel.is_set():
            yield TranscribeUpdate(0.0, 0.0, duration, (), None, None, "Stopped before any speech was recognised.")
            return
        facts = decoded[0] if decoded else probed
        if facts.peak == 0.0:  # digital silence: nothing for the recogniser to find
            raise SpeechInputError("no_speech", NO_SPEECH)
        notes = " ".join(dict.fromkeys((*probed.notes, *facts.notes)))
        for update in _recognise(plan, store, turn, cancel, load_progress, wav, duration):
            yield replace(update, message=f"{update.message} Note: {notes}") if notes else update
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _recognise(
    plan: HearPlan,
    store: SpeechStore,
    turn: Callable[[], AbstractContextManager[object]],
    cancel: threading.Event,
    load_progress: Callable[[float, str], None] | None,
    wav: Path,
    duration: float,
) -> Iterator[TranscribeUpdate]:
    plan.backend.load(load_progress)
    found: list[TranscriptInfo] = []
    segments: list[Segment] = []
    stopped = False
    iterator = iter(plan.backend.transcribe(wav, language=plan.language, cancel=cancel, on_info=found.append))
    try:
        while True:
            if cancel.is_set():
                stopped = True
                break
            try:
                with turn():
                    segment = next(iterator, None)
            except SpeechCancelled:
                stopped = True
                break
            if segment is None:
                break
            segments.append(segment)
            info = found[0] if found else None
            total = info.duration if info is not None and info.duration > 0 else duration
            reached = min(max(segment.end, 0.0), total) if total > 0 else 0.0
            yield TranscribeUpdate(
                reached / total if total > 0 else 0.0,
                reached,
                total,
                tuple(segments),
                info,
                None,
                f"Transcribing… {duration_words(reached)} of {duration_words(total)}",
            )
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
    info = found[0] if found else None
    total = info.duration if info is not None and info.duration > 0 else duration
    if not any(s.text.strip() for s in segments):
        if stopped:
            yield TranscribeUpdate(0.0, 0.0, total, (), info, None, "Stopped before any speech was recognised.")
            return
        raise SpeechInputError("no_speech", NO_SPEECH)
    item = store.add_transcript(
        plan.user,
        title=plan.title,
        segments=tuple(segments),
        source=plan.source,
        model=plan.spec,
        language=info.language if info is not None else (plan.language or ""),
        duration=total,
        stopped=stopped,
    )
    reached = min(segments[-1].end, total) if total > 0 else 0.0
    if stopped:
        message = f"Stopped at {duration_words(reached)} of {duration_words(total)}; the text so far is kept."
    else:
        reached = total
        words = len(item.text.split())
        message = f"Done: {words:,} words from {duration_words(total)} of audio."
    yield TranscribeUpdate(reached / total if total > 0 else 1.0, reached, total, item.segments, info, item, message)
