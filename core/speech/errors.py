"""The speech service's own errors: a request refused before (or while) any voice or recogniser runs. Core raises
them; the UI turns them into messages (`str(e)`) and may offer `LanguageMismatchError.suggestion` as a button."""

from __future__ import annotations

from core.errors import InputError


class SpeechInputError(InputError):
    """A request the user can fix. `code` says which rule refused it (stable: tests and the UI rely on it):
    "empty", "too_long", "unknown_voice", "unknown_model", "bad_speed", "bad_format", "bad_language", "no_file",
    "no_speech", "too_long_audio", "no_audio_track", "corrupt", "mislabelled", "unsupported", "not_transcript"."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.user_message = message


class LanguageMismatchError(SpeechInputError):
    """The text looks like a language the chosen voice cannot speak. `language`: its ISO 639-1 code;
    `suggestion`: (model spec, voice id) of a configured voice that speaks it, or None when none is configured."""

    def __init__(self, message: str, language: str, suggestion: tuple[str, str] | None) -> None:
        super().__init__("language_mismatch", message)
        self.language = language
        self.suggestion = suggestion
