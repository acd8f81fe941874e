"""What the speech studio does, with no UI: speak text (checked, cleaned, its language matched to the voice, streamed
piece by piece into a kept audio file) and transcribe recordings (checked, decoded, recognised into a kept
transcript), fair turns on each model between users, a cap on each user's jobs, exports, and each user's history."""

from __future__ import annotations

import math
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from backends.speech.base import SpeechBackend, SpeechCancelled, Voice
from config import Settings
from core.errors import BusyError
from core.images.model_queue import ModelQueue
from core.security.limits import UserSlots
from core.speech.errors import LanguageMismatchError, SpeechInputError
from core.speech.hearing import HearPlan, TranscribeUpdate, hear_run
from core.speech.language import code_for, detect_language, language_name, preload, speaks
from core.speech.models import SpeechModels, TranscribeModels
from core.speech.speaking import SpeakPlan, SpeakUpdate, speak_run
from core.speech.store import AUDIO_FORMATS, SpeechItem, SpeechStore
from core.speech.subtitles import to_srt, to_txt, to_vtt
from core.speech.text import CODE_BLOCK, clean_for_speech, has_words, split_head

__all__ = ["SpeakUpdate", "SpeechStudio", "TooManyCallerSpeechJobsError", "TooManySpeechJobsError", "TranscribeUpdate"]

MIN_SPEED, MAX_SPEED = 0.5, 2.0
SOURCES = ("speech", "chat", "writer", "condenser", "api")
EXPORT_FORMATS = ("txt", "srt", "vtt")
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$")


class TooManySpeechJobsError(BusyError):
    """The user already has STUDIO_USER_JOBS speech or transcription jobs running; nothing was started."""

    def __init__(self, running: int) -> None:
        super().__init__(
            f"You already have {running} speech job{'s' if running != 1 else ''} running; wait for one to finish "
            "or stop one, then try again.",
            retry_after=10.0,
        )
        self.running = running


class TooManyCallerSpeechJobsError(BusyError):
    """Where the caller runs (its address without logins) already has its share of the speech jobs running, however
    many browser ids it presents; nothing was started."""

    def __init__(self, running: int) -> None:
        super().__init__(
            f"{running} speech jobs are already running from where you are; wait for one to finish or stop one, "
            "then try again.",
            retry_after=10.0,
        )
        self.running = running


class SpeechStudio:
    def __init__(
        self, settings: Settings, voices: SpeechModels, recognisers: TranscribeModels, store: SpeechStore
    ) -> None:
        self.settings = settings
        self.voices = voices
        self.recognisers = recognisers
        self.store = store
        self._queues: dict[str, ModelQueue] = {}
        self._queues_lock = threading.Lock()
        self._jobs = UserSlots(settings.user_jobs, "speech jobs", TooManySpeechJobsError)
        # Without logins a browser id is whatever the caller sends, so one address could mint ids and take every
        # worker for hours (a 100,000-character text, a 90-minute recording): per caller (a login, else the address)
        # at most half the workers, never fewer than a user's own jobs.
        self._callers = UserSlots(
            max(settings.user_jobs, settings.concurrency_limit // 2), "speech jobs", TooManyCallerSpeechJobsError
        )
        preload()  # the language profiles, so the first text spoken does not wait for them

    # -- choices -------------------------------------------------------------------------------------------------
    def model_choices(self) -> list[tuple[str, str]]:
        """(label, spec) of the speech models, the default first as configured."""
        return self.voices.choices()

    def voice_choices(self, model: str | None) -> list[tuple[str, str]]:
        """(label, voice id) of a model's voices, its default first."""
        return [(v.label, v.id) for v in self.voices.get(model).voices()]

    # -- speaking ------------------------------------------------------------------------------------------------
    def speak(
        self,
        user: str,
        text: str,
        *,
        model: str | None = None,
        voice: str | None = None,
        speed: float = 1.0,
        fmt: str = "wav",
        cancel: threading.Event,
        source: str = "speech",
        load_progress: Callable[[float, str], None] | None = None,
        caller: str | None = None,
    ) -> Iterator[SpeakUpdate]:
        """Check the request at once (SpeechInputError, LanguageMismatchError: nothing ran), then return the run's
        updates: a chunk of audio per piece, the last with the kept item (stopped=True when `cancel` was set).
        Iterating raises TooManySpeechJobsError (TooManyCallerSpeechJobsError for `caller`, whom the caller cap counts:
        ui.identity.limit_key), QuotaExceededError or a BackendError."""
        plan = self.plan_speech(user, text, model=model, voice=voice, speed=speed, fmt=fmt, source=source)
        turn = self._turn(plan.spec, user, cancel)
        return self._guarded(user, lambda: speak_run(plan, self.store, turn, cancel, load_progress), caller)

    def plan_speech(
        self,
        user: str,
        text: Any,
        *,
        model: str | None = None,
        voice: str | None = None,
        speed: Any = 1.0,
        fmt: Any = "wav",
        source: str = "speech",
    ) -> SpeakPlan:
        """A speak request checked and its text cleaned; raises SpeechInputError (or LanguageMismatchError)."""
        if not isinstance(text, str):
            raise SpeechInputError("empty", f"The text must be text, not {type(text).__name__}.")
        raw = text.strip()
        limit = self.settings.max_speech_chars
        if len(raw) > limit:
            raise SpeechInputError(
                "too_long",
                f"This text has {len(raw):,} characters; one request may speak at most {limit:,}. Split it into "
                f"{math.ceil(len(raw) / limit)} parts and speak them one after another.",
            )
        # Only the head is cleaned now (checks and language need no more); the rest is cleaned once the first piece
        # is spoken, so a long text's first audio does not wait for all of it. Where the head says nothing (only
        # code, say), the whole is cleaned at once.
        head, rest = split_head(raw)
        cleaned = clean_for_speech(head)
        if rest and not has_words(cleaned.replace(CODE_BLOCK, "")):
            cleaned, rest = clean_for_speech(raw), ""
        if not has_words(cleaned):
            raise SpeechInputError("empty", "There is no text to speak: type or paste some words first.")
        if not has_words(cleaned.replace(CODE_BLOCK, "")):
            raise SpeechInputError("empty", "There is nothing to read aloud here: the text is only code blocks.")
        spec = self.voices.resolve(model)
        backend = self.voices.get(spec)
        chosen = self._voice(backend, voice)
        if isinstance(speed, bool) or not isinstance(speed, int | float) or not math.isfinite(speed):
            raise SpeechInputError("bad_speed", f"The speed must be a number from {MIN_SPEED} to {MAX_SPEED}.")
        if not MIN_SPEED <= float(speed) <= MAX_SPEED:
            raise SpeechInputError(
                "bad_speed", f"The speed must be from {MIN_SPEED} to {MAX_SPEED} (1.0 is normal), not {speed:g}."
            )
        form = fmt.strip().lower() if isinstance(fmt, str) else ""
        if form not in AUDIO_FORMATS:
            raise SpeechInputError("bad_format", f"The format must be one of {', '.join(AUDIO_FORMATS)}.")
        language = self._check_language(cleaned, spec, backend, chosen)
        origin = source if source in SOURCES else "speech"
        reserve = int(max(0.0, self.settings.disk_reserve_mb) * 2**20)
        return SpeakPlan(user, spec, backend, chosen, cleaned, float(speed), form, origin, language, reserve, rest)

    def _voice(self, backend: SpeechBackend, voice: str | None) -> Voice:
        voices = backend.voices()
        if voice is None or (isinstance(voice, str) and not voice.strip()):
            return voices[0]
        if isinstance(voice, str):
            wanted = voice.strip()
            for candidate in voices:
                if candidate.id == wanted:
                    return candidate
            shown = ", ".join(v.id for v in voices[:12]) + (", …" if len(voices) > 12 else "")
            raise SpeechInputError(
                "unknown_voice", f"{backend.label} has no voice {wanted[:40]!r}; its voices: {shown}."
            )
        raise SpeechInputError("unknown_voice", f"The voice must be text, not {type(voice).__name__}.")

    def _check_language(self, text: str, spec: str, backend: SpeechBackend, voice: Voice) -> str:
        """The text's language when the voice speaks it (or when too little text to tell: the voice's first);
        LanguageMismatchError offering a configured voice that does speak it."""
        found = detect_language(text)
        if found is None or speaks(voice.languages, found):
            return found or (voice.languages[0] if voice.languages else "")
        name = language_name(found)
        speaks_now = " and ".join(language_name(code) for code in voice.languages[:3])
        suggestion = self.voice_for(found, prefer=spec)
        message = f"This text seems to be in {name}; the voice “{voice.label}” speaks {speaks_now}."
        if suggestion is not None:
            other = self.voices.get(suggestion[0])
            label = next((v.label for v in other.voices() if v.id == suggestion[1]), suggestion[1])
            message += f" Try the voice “{label}”, which speaks {name}."
        else:
            message += f" No voice configured here speaks {name}."
        raise LanguageMismatchError(message, found, suggestion)

    def voice_for(self, language: str, prefer: str | None = None) -> tuple[str, str] | None:
        """(model spec, voice id) of a configured voice that speaks `language` (in `prefer` first), or None. A
        voice that lists no languages is not offered (it may speak anything, or nothing)."""
        specs = [s for s in self.voices.specs if s == prefer] + [s for s in self.voices.specs if s != prefer]
        for spec in specs:
            try:
                voices = self.voices.get(spec).voices()
            except Exception:  # an engine not installed here offers nothing
                continue
            for voice in voices:
                if voice.languages and speaks(voice.languages, language):
                    return spec, voice.id
        return None

    # -- transcribing --------------------------------------------------------------------------------------------
    def transcribe(
        self,
        user: str,
        path: Path,
        *,
        model: str | None = None,
        language: str | None = None,
        cancel: threading.Event,
        source: str = "speech",
        load_progress: Callable[[float, str], None] | None = None,
        title: str | None = None,
        caller: str | None = None,
    ) -> Iterator[TranscribeUpdate]:
        """Check the arguments at once (SpeechInputError), then return the run's updates; iterating checks the
        recording itself (SpeechInputError "corrupt", "no_audio_track", "too_long_audio", "mislabelled", ...; and
        "no_speech" for a silent one), then yields the segments as they are recognised, the last update with the
        kept transcript. `title`: what to call it (the upload's original name), else the file's name; `caller` as
        for speak."""
        if not isinstance(path, str | Path) or not str(path).strip():
            raise SpeechInputError("no_file", "Choose a recording (an audio or video file) to transcribe.")
        file = Path(path)
        if not file.is_file():
            raise SpeechInputError("no_file", "The recording was not found; upload it again.")
        spec = self.recognisers.resolve(model)
        backend = self.recognisers.get(spec)
        plan = HearPlan(
            user,
            spec,
            backend,
            file,
            (title if isinstance(title, str) and title.strip() else file.name),
            self._language(language),
            source if source in SOURCES else "speech",
            self.settings.max_audio_minutes * 60.0,
        )
        turn = self._turn(spec, user, cancel)
        return self._guarded(user, lambda: hear_run(plan, self.store, turn, cancel, load_progress), caller)

    def _language(self, language: Any) -> str | None:
        if language is None:
            return None
        if not isinstance(language, str):
            raise SpeechInputError("bad_language", f"The language must be text, not {type(language).__name__}.")
        code = language.strip().lower().replace("_", "-")
        if code in ("", "auto", "detect"):
            return None
        code = code_for(code) or code  # "German" -> "de"
        if not _LANGUAGE_CODE.match(code):
            raise SpeechInputError(
                "bad_language", f"Unknown language {language[:20]!r}: use a code such as en, de or fr, or Auto."
            )
        return code.split("-")[0]

    # -- jobs ----------------------------------------------------------------------------------------------------
    def _guarded(self, user: str, run: Callable[[], Iterator[Any]], caller: str | None = None) -> Iterator[Any]:
        """`run()`'s updates while the user holds one of their job slots, and the caller one of theirs (taken when
        iteration starts)."""
        with self._callers.hold(caller) if caller else nullcontext(), self._jobs.hold(user):
            if self.store.quota is not None:
                self.store.quota.check(user, 1)  # already full: say so before any work
            yield from run()

    def jobs(self, user: str) -> int:
        """The user's speech and transcription jobs running now."""
        return self._jobs.running(user)

    def _turn(self, spec: str, user: str, cancel: threading.Event) -> Callable[[], AbstractContextManager[object]]:
        """A model's turn for one piece or segment: one at a time per model, fair between users."""
        with self._queues_lock:
            line = self._queues.setdefault(spec, ModelQueue())

        @contextmanager
        def turn() -> Iterator[object]:
            from backends.image.base import ImageCancelled  # what ModelQueue raises while waiting

            entered = False
            try:
                with line.slot(cancel, user=user) as held:
                    entered = True
                    yield held
            except ImageCancelled:
                if entered:
                    raise
                raise SpeechCancelled("Cancelled while waiting for the model.") from None

        return turn

    # -- kept items ----------------------------------------------------------------------------------------------
    def history(self, user: str, kind: str | None = None, limit: int = 50) -> list[SpeechItem]:
        """The user's items, newest first (`kind` "speech" or "transcript" for one kind)."""
        if kind not in (None, "", "speech", "transcript"):
            raise SpeechInputError("bad_format", "The kind must be speech or transcript.")
        try:
            count = max(1, min(int(limit), 500))
        except (TypeError, ValueError):
            count = 50
        return self.store.list(user, kind or None, count)

    def get(self, user: str, item_id: str) -> SpeechItem:
        """The user's item; NotFoundError for another user's or none."""
        return self.store.get(user, str(item_id))

    def delete(self, user: str, item_id: str) -> None:
        self.store.delete(user, str(item_id))

    def export(self, user: str, item_id: str, fmt: str) -> Path:
        """A transcript as a TXT, SRT or WebVTT file (in a fresh temporary folder, named after its title)."""
        item = self.get(user, item_id)
        form = fmt.strip().lower() if isinstance(fmt, str) else ""
        if form not in EXPORT_FORMATS:
            raise SpeechInputError("bad_format", "Export as txt, srt or vtt.")
        if item.kind != "transcript":
            raise SpeechInputError("not_transcript", "Only a transcript can be exported as text or subtitles.")
        body = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt}[form](item.segments)
        stem = re.sub(r"[^\w.-]+", "-", Path(item.title).stem, flags=re.ASCII).strip("-.")[:60] or "transcript"
        path = Path(tempfile.mkdtemp(prefix="studio-export-")) / f"{stem}.{form}"
        path.write_text(body, encoding="utf-8")
        return path
