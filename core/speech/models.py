"""The configured speech models: voices (STUDIO_SPEECH_MODEL) and recognisers (STUDIO_TRANSCRIBE_MODEL), each the
shared lazy registry with the speech service's own error for an unknown model; specs are checked at startup."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from backends import create_speech_backend, create_transcribe_backend, parse_speech_spec, parse_transcribe_spec
from backends.speech.base import SpeechBackend, TranscribeBackend
from config import Settings
from core.registry import LazyRegistry, T, checked_specs
from core.speech.errors import SpeechInputError


class _SpeechRegistry(LazyRegistry[T]):
    """One setting's specs (checked at startup: a mistyped one fails then), each backend made by `create(spec,
    settings)` on first use; `what` names the kind in the errors ("speech", "transcription")."""

    def __init__(
        self,
        settings: Settings,
        raw_specs: tuple[str, ...],
        parse: Callable[[str], object],
        create: Callable[[str, Settings], T],
        what: str,
        backends: Mapping[str, T] | None,
    ) -> None:
        self.settings = settings
        self.what = what
        super().__init__(
            checked_specs(raw_specs, parse), lambda spec: create(spec, settings), self._unknown_model, ready=backends
        )

    def _unknown_model(self, spec: str, specs: tuple[str, ...]) -> SpeechInputError:
        return SpeechInputError(
            "unknown_model", f"Unknown {self.what} model {spec[:80]!r}; configured: {', '.join(specs)}."
        )

    def resolve(self, spec: str | None) -> str:
        # Same shape as ImageModelManager.resolve (core/images/models.py), kept apart: there spaces alone are refused
        # as an unknown model, here they mean the default, and each raises its own service's error.
        if spec is not None and not isinstance(spec, str):
            raise SpeechInputError("unknown_model", f"The {self.what} model must be text, not {type(spec).__name__}.")
        return (spec or "").strip() or self.default


class SpeechModels(_SpeechRegistry[SpeechBackend]):
    """The voices' engines of STUDIO_SPEECH_MODEL, first is the default. `backends`: ready-made ones for some specs
    (tests and benchmarks hand in their own)."""

    def __init__(self, settings: Settings, backends: Mapping[str, SpeechBackend] | None = None) -> None:
        super().__init__(settings, settings.speech_models, parse_speech_spec, create_speech_backend, "speech", backends)


class TranscribeModels(_SpeechRegistry[TranscribeBackend]):
    """The recognisers of STUDIO_TRANSCRIBE_MODEL, first is the default (the embedded Whisper base)."""

    def __init__(self, settings: Settings, backends: Mapping[str, TranscribeBackend] | None = None) -> None:
        super().__init__(
            settings,
            settings.transcribe_models,
            parse_transcribe_spec,
            create_transcribe_backend,
            "transcription",
            backends,
        )
