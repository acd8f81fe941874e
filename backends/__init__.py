"""Registry: turns a model spec string into a text backend. Engine modules are imported only when a
spec that needs them is used, so the app starts without torch or llama.cpp being imported."""
from __future__ import annotations

from typing import TYPE_CHECKING

from backends.base import ModelSpec, TextBackend

if TYPE_CHECKING:
    from config import Settings


def create_text_backend(raw_spec: str, settings: "Settings") -> TextBackend:
    spec = ModelSpec.parse(raw_spec)
    if spec.kind == "embedded":
        from backends.embedded import EMBEDDED_LABEL, embedded_gguf_path, EMBEDDED_SHA256
        from backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(
            model_path=embedded_gguf_path, settings=settings, spec=spec.raw,
            label=EMBEDDED_LABEL, expected_sha256=EMBEDDED_SHA256,
        )
    if spec.kind == "gguf":
        from backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(model_path=spec.target, settings=settings, spec=spec.raw,
                               label=f"{spec.target.rsplit('/', 1)[-1]} (llama.cpp)")
    if spec.kind == "hf":
        from backends.transformers_backend import TransformersBackend

        return TransformersBackend(model_ref=spec.target, settings=settings, spec=spec.raw,
                                   label=f"{spec.target} (transformers)")
    from backends.openai_compat import OpenAIBackend

    return OpenAIBackend(model=spec.target, settings=settings, spec=spec.raw,
                         label=f"{spec.target} (OpenAI-compatible API)")
