"""The configured text models: parsed once at startup, each backend created on first use and shared
(weights are read-only; per-request state lives in each call, never on the backend)."""
from __future__ import annotations

import threading

from backends import create_text_backend
from backends.text.base import ModelSpec, TextBackend
from config import Settings


class ModelManager:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        for raw in settings.text_models:
            ModelSpec.parse(raw)  # fail fast on a mistyped STUDIO_TEXT_MODEL
        self.specs: tuple[str, ...] = settings.text_models
        self._backends: dict[str, TextBackend] = {}
        self._lock = threading.Lock()

    @property
    def default(self) -> str:
        return self.specs[0]

    def get(self, spec: str | None) -> TextBackend:
        spec = spec or self.default
        if spec not in self.specs:
            raise KeyError(f"Unknown model {spec!r}; configured: {', '.join(self.specs)}")
        with self._lock:
            backend = self._backends.get(spec)
            if backend is None:
                backend = self._backends[spec] = create_text_backend(spec, self.settings)
            return backend

    def choices(self) -> list[tuple[str, str]]:
        """(label, spec) pairs for the picker; labels never include secrets."""
        return [(self.get(s).label, s) for s in self.specs]
