"""The configured image models (STUDIO_IMAGE_MODEL): the shared lazy registry with the image studio's own error for
an unknown model, and the lookup from a PNG's `Model:` field back to a configured spec."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from backends import create_image_backend, parse_image_spec
from backends.image.base import ImageBackend
from config import Settings
from core.images.errors import ImageInputError
from core.registry import LazyRegistry, checked_specs


def _unknown(spec: str, specs: tuple[str, ...]) -> ImageInputError:
    return ImageInputError("unknown_model", f"Unknown image model {spec[:80]!r}; configured: {', '.join(specs)}.")


class ImageModelManager(LazyRegistry[ImageBackend]):
    """The image models of STUDIO_IMAGE_MODEL. Specs are checked at startup; each backend is created on first
    use and shared (weights are read-only; backends keep nothing per request)."""

    def __init__(self, settings: Settings, backends: Mapping[str, ImageBackend] | None = None) -> None:
        """`backends`: ready-made backends for some specs (tests and benchmarks hand in their own instances)."""
        self.settings = settings
        super().__init__(
            checked_specs(settings.image_models, parse_image_spec),  # a mistyped STUDIO_IMAGE_MODEL fails at startup
            lambda spec: create_image_backend(spec, settings),
            _unknown,
            ready=backends,
        )

    def resolve(self, spec: str | None) -> str:
        """A spec as a form or API caller sends it: text, surrounding spaces ignored."""
        if spec is not None and not isinstance(spec, str):
            raise ImageInputError("unknown_model", f"The model (model) must be text, not {type(spec).__name__}.")
        return (spec or self.default).strip()

    def spec_for(self, model_name: str) -> str | None:
        """The configured spec that a PNG's `Model:` field names (a spec, a hub id, a folder or file name,
        an API model name), or None when none matches."""
        name = str(model_name or "").strip()
        if not name:
            return None
        for spec in self.specs:
            kind, target = parse_image_spec(spec)
            path = Path(target)
            if name in (spec, target, path.name, path.stem):
                return spec
        return None
