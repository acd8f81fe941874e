"""The configured text models: parsed once at startup, each backend created on first use and shared
(weights are read-only; per-request state lives in each call, never on the backend)."""

from __future__ import annotations

from backends import create_text_backend
from backends.text.base import ModelSpec, TextBackend
from config import Settings
from core.registry import LazyRegistry


def _unknown(spec: str, specs: tuple[str, ...]) -> KeyError:
    return KeyError(f"Unknown model {spec!r}; configured: {', '.join(specs)}")


class ModelManager(LazyRegistry[TextBackend]):
    """The text models of STUDIO_TEXT_MODEL (specs, default, get, choices: see core/registry.py)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        for raw in settings.text_models:
            ModelSpec.parse(raw)  # fail fast on a mistyped STUDIO_TEXT_MODEL
        super().__init__(settings.text_models, lambda spec: create_text_backend(spec, settings), _unknown)
