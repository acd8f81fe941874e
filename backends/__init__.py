"""Registry: turns a model spec string into a text backend. Engine modules are imported only when a
spec that needs them is used, so the app starts without torch or llama.cpp being imported."""
from __future__ import annotations

from typing import TYPE_CHECKING

from backends.text.base import ModelSpec, TextBackend
from backends.image.base import ImageBackend

if TYPE_CHECKING:
    from config import Settings


def create_text_backend(raw_spec: str, settings: "Settings") -> TextBackend:
    spec = ModelSpec.parse(raw_spec)
    if spec.kind == "embedded":
        from backends.text.embedded import EMBEDDED_LABEL, embedded_gguf_path, EMBEDDED_SHA256
        from backends.text.llamacpp import LlamaCppBackend

        return LlamaCppBackend(
            model_path=embedded_gguf_path, settings=settings, spec=spec.raw,
            label=EMBEDDED_LABEL, expected_sha256=EMBEDDED_SHA256,
        )
    if spec.kind == "gguf":
        from backends.text.llamacpp import LlamaCppBackend

        return LlamaCppBackend(model_path=spec.target, settings=settings, spec=spec.raw,
                               label=f"{spec.target.rsplit('/', 1)[-1]} (llama.cpp)")
    if spec.kind == "hf":
        from backends.text.transformers_local import TransformersBackend

        return TransformersBackend(model_ref=spec.target, settings=settings, spec=spec.raw,
                                   label=f"{spec.target} (transformers)")
    from backends.text.openai_compat import OpenAIBackend

    return OpenAIBackend(model=spec.target, settings=settings, spec=spec.raw,
                         label=f"{spec.target} (OpenAI-compatible API)")


IMAGE_KINDS = ("diffusers", "openai", "gan")


def parse_image_spec(raw: str) -> tuple[str, str]:
    kind, sep, target = raw.strip().partition(":")
    if not sep or kind not in IMAGE_KINDS or not target.strip():
        raise ValueError(f"Unknown image model {raw!r}: use 'diffusers:<hub id, folder or .safetensors>', "
                         "'openai:<model name>' or 'gan:faces'")
    if kind == "gan" and target.strip() != "faces":
        raise ValueError(f"Unknown GAN {target!r}: the only one is 'gan:faces'")
    return kind, target.strip()


def create_image_backend(raw_spec: str, settings: "Settings") -> ImageBackend:
    kind, target = parse_image_spec(raw_spec)
    if kind == "gan":
        from backends.image.gan_faces import GanFacesBackend

        return GanFacesBackend(spec=raw_spec.strip())  # its data_dir is the IR folder: the wheel's by default
    if kind == "openai":
        from backends.image.openai_images import OpenAIImagesBackend

        return OpenAIImagesBackend(model=target, base_url=settings.openai_base_url,
                                   api_key=settings.openai_api_key, timeout=settings.image_request_timeout,
                                   max_retries=settings.max_retries, spec=raw_spec.strip())
    from backends.image.diffusers_local import DiffusersBackend

    return DiffusersBackend(model_ref=target, spec=raw_spec.strip(), data_dir=settings.data_dir,
                            device=settings.image_device, dtype=settings.image_dtype,
                            config=settings.image_model_config)
