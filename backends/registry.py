"""The registry: every kind of model spec (STUDIO_TEXT_MODEL, STUDIO_IMAGE_MODEL), how it is written, and a factory
that imports its engine only when a spec of that kind is used, so the app starts without torch or llama.cpp.
The only place the kinds are listed: adding an engine is its module plus one row here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from backends.image.base import ImageBackend
from backends.speech.base import SpeechBackend, TranscribeBackend
from backends.text.base import ModelSpec, TextBackend

if TYPE_CHECKING:
    from config import Settings

B = TypeVar("B")


@dataclass(frozen=True)
class Engine(Generic[B]):
    """One kind of spec: `<kind>:<target>`, or the bare kind when `takes_target` is False."""

    usage: str  # how a spec of this kind is written, listed in the error for a mistyped one
    create: Callable[[str, str, Settings], B]  # (target, whole spec, settings) -> backend; imports the engine
    takes_target: bool = True
    check: Callable[[str], None] | None = None  # refuses a target the engine cannot have (ValueError)


# -- text ----------------------------------------------------------------------------------------------------


def _embedded(target: str, spec: str, settings: Settings) -> TextBackend:
    from backends.text.embedded import EMBEDDED_LABEL, EMBEDDED_SHA256, embedded_gguf_path
    from backends.text.llamacpp import LlamaCppBackend

    return LlamaCppBackend(
        model_path=embedded_gguf_path,
        settings=settings,
        spec=spec,
        label=EMBEDDED_LABEL,
        expected_sha256=EMBEDDED_SHA256,
    )


def _gguf(target: str, spec: str, settings: Settings) -> TextBackend:
    from backends.text.hub_gguf import parse_hub_gguf, resolve_hub_gguf
    from backends.text.llamacpp import LlamaCppBackend

    hub = parse_hub_gguf(target)
    if hub is None:
        return LlamaCppBackend(
            model_path=target, settings=settings, spec=spec, label=f"{target.rsplit('/', 1)[-1]} (llama.cpp)"
        )
    # gguf:hf.co/<owner>/<repo>/<file>: from the hub cache only, found at load (the Models tab downloads it).
    return LlamaCppBackend(
        model_path=lambda: resolve_hub_gguf(target, settings.hf_cache_dir),
        settings=settings,
        spec=spec,
        label=f"{hub[1].rsplit('/', 1)[-1]} (llama.cpp)",
    )


def _check_gguf(target: str) -> None:
    from backends.text.hub_gguf import parse_hub_gguf

    parse_hub_gguf(target)  # ValueError for a malformed hf.co/ target


def _hf(target: str, spec: str, settings: Settings) -> TextBackend:
    from backends.text.transformers_local import TransformersBackend

    return TransformersBackend(model_ref=target, settings=settings, spec=spec, label=f"{target} (transformers)")


def _openai_text(target: str, spec: str, settings: Settings) -> TextBackend:
    from backends.text.openai_compat import OpenAIBackend

    return OpenAIBackend(model=target, settings=settings, spec=spec, label=f"{target} (OpenAI-compatible API)")


TEXT_ENGINES: Mapping[str, Engine[TextBackend]] = {
    "embedded": Engine("'embedded'", _embedded, takes_target=False),
    "hf": Engine("'hf:<hub id or folder>'", _hf),
    "gguf": Engine("'gguf:<path to .gguf>', 'gguf:hf.co/<owner>/<repo>/<file.gguf>'", _gguf, check=_check_gguf),
    "openai": Engine("'openai:<model name>'", _openai_text),
}


# -- image ---------------------------------------------------------------------------------------------------


def _diffusers(target: str, spec: str, settings: Settings) -> ImageBackend:
    from backends.image.diffusers_local import DiffusersBackend

    return DiffusersBackend(
        model_ref=target,
        spec=spec,
        data_dir=settings.data_dir,
        device=settings.image_device,
        dtype=settings.image_dtype,
        config=settings.image_model_config,
    )


def _openai_images(target: str, spec: str, settings: Settings) -> ImageBackend:
    from backends.image.openai_images import OpenAIImagesBackend

    return OpenAIImagesBackend(
        model=target,
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        timeout=settings.image_request_timeout,
        max_retries=settings.max_retries,
        spec=spec,
    )


def _gan(target: str, spec: str, settings: Settings) -> ImageBackend:
    from backends.image.gan_faces import GanFacesBackend

    return GanFacesBackend(spec=spec)  # its data_dir is the IR folder: the wheel's by default


def _only_faces(target: str) -> None:
    if target != "faces":
        raise ValueError(f"Unknown GAN {target!r}: the only one is 'gan:faces'")


IMAGE_ENGINES: Mapping[str, Engine[ImageBackend]] = {
    "diffusers": Engine("'diffusers:<hub id, folder or .safetensors>'", _diffusers),
    "openai": Engine("'openai:<model name>'", _openai_images),
    "gan": Engine("'gan:faces'", _gan, check=_only_faces),
}


# -- speech out ----------------------------------------------------------------------------------------------


def _kokoro(target: str, spec: str, settings: Settings) -> SpeechBackend:
    from backends.speech.kokoro_onnx import KokoroBackend

    return KokoroBackend(spec=spec, cache_dir=settings.cache_dir)


def _espeak(target: str, spec: str, settings: Settings) -> SpeechBackend:
    from backends.speech.espeak import EspeakBackend

    return EspeakBackend(spec=spec)


def _flite(target: str, spec: str, settings: Settings) -> SpeechBackend:
    from backends.speech.flite import FliteBackend

    return FliteBackend(spec=spec)


def _festival(target: str, spec: str, settings: Settings) -> SpeechBackend:
    from backends.speech.festival import FestivalBackend

    return FestivalBackend(spec=spec)


def _hosted_audio(settings: Settings) -> dict[str, Any]:
    """What both OpenAI-compatible audio backends (speech out and in) take from Settings."""
    return {
        "base_url": settings.openai_base_url,
        "api_key": settings.openai_api_key,
        "timeout": settings.request_timeout,
        "max_retries": settings.max_retries,
    }


def _openai_speech(target: str, spec: str, settings: Settings) -> SpeechBackend:
    from backends.speech.openai_speech import OpenAISpeechBackend

    return OpenAISpeechBackend(model=target, spec=spec, **_hosted_audio(settings))


SPEECH_ENGINES: Mapping[str, Engine[SpeechBackend]] = {
    "kokoro": Engine("'kokoro'", _kokoro, takes_target=False),
    "festival": Engine("'festival'", _festival, takes_target=False),
    "flite": Engine("'flite'", _flite, takes_target=False),
    "espeak": Engine("'espeak'", _espeak, takes_target=False),
    "openai": Engine("'openai:<model name>'", _openai_speech),
}


# -- speech in -----------------------------------------------------------------------------------------------


def _whisper(target: str, spec: str, settings: Settings) -> TranscribeBackend:
    from backends.speech.faster_whisper_local import WhisperBackend

    return WhisperBackend(model_ref=target or None, spec=spec, settings=settings)


def _openai_transcribe(target: str, spec: str, settings: Settings) -> TranscribeBackend:
    from backends.speech.openai_transcribe import OpenAITranscribeBackend

    return OpenAITranscribeBackend(model=target, spec=spec, **_hosted_audio(settings))


TRANSCRIBE_ENGINES: Mapping[str, Engine[TranscribeBackend]] = {
    "whisper": Engine("'whisper'", _whisper, takes_target=False),
    "faster-whisper": Engine("'faster-whisper:<size, hub id or folder>'", _whisper),
    "openai": Engine("'openai:<model name>'", _openai_transcribe),
}


# -- parsing and creating ------------------------------------------------------------------------------------


def parse_spec(raw: str, engines: Mapping[str, Engine[B]], what: str) -> tuple[str, str]:
    """(kind, target) of a spec, surrounding spaces ignored; ValueError listing every way to write one."""
    raw = raw.strip()
    bare = engines.get(raw)
    if bare is not None and not bare.takes_target:
        return raw, ""
    kind, sep, target = raw.partition(":")
    engine = engines.get(kind)
    if not sep or engine is None or not engine.takes_target or not target.strip():
        usages = [e.usage for e in engines.values()]
        raise ValueError(f"Unknown {what} model {raw!r}: use {', '.join(usages[:-1])} or {usages[-1]}")
    if engine.check is not None:
        engine.check(target.strip())
    return kind, target.strip()


def parse_text_spec(raw: str) -> tuple[str, str]:
    return parse_spec(raw, TEXT_ENGINES, "text")


def parse_image_spec(raw: str) -> tuple[str, str]:
    return parse_spec(raw, IMAGE_ENGINES, "image")


def parse_speech_spec(raw: str) -> tuple[str, str]:
    return parse_spec(raw, SPEECH_ENGINES, "speech")


def parse_transcribe_spec(raw: str) -> tuple[str, str]:
    return parse_spec(raw, TRANSCRIBE_ENGINES, "transcription")


def create_text_backend(raw_spec: str, settings: Settings) -> TextBackend:
    spec = ModelSpec.parse(raw_spec)
    return TEXT_ENGINES[spec.kind].create(spec.target, spec.raw, settings)


def create_image_backend(raw_spec: str, settings: Settings) -> ImageBackend:
    kind, target = parse_image_spec(raw_spec)
    return IMAGE_ENGINES[kind].create(target, raw_spec.strip(), settings)


def create_speech_backend(raw_spec: str, settings: Settings) -> SpeechBackend:
    kind, target = parse_speech_spec(raw_spec)
    return SPEECH_ENGINES[kind].create(target, raw_spec.strip(), settings)


def create_transcribe_backend(raw_spec: str, settings: Settings) -> TranscribeBackend:
    kind, target = parse_transcribe_spec(raw_spec)
    return TRANSCRIBE_ENGINES[kind].create(target, raw_spec.strip(), settings)
