"""One lazy registry for every kind of model (text, image, ...): the configured specs, each one's object created on
first use under a lock and then shared (weights are read-only; per-request state lives in each call)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from backends.text.base import BackendError

LOAD_POLL_S = 0.5  # how often a model's load says how far it got


class Model(Protocol):
    """What the registry needs of a text or image backend."""

    @property
    def label(self) -> str: ...

    def load(self, progress: Callable[[float, str], None] | None = None) -> None: ...


T = TypeVar("T", bound=Model)


class ModelLoadError(RuntimeError):
    """A model failed to load for a reason its backend did not foresee (a BackendError says why and is raised as
    it is)."""


@dataclass(frozen=True)
class LoadUpdate:
    """How far a model's load has got; the last one of a load has `ready`."""

    text: str
    fraction: float = 0.0
    ready: bool = False


def checked_specs(raw_specs: Iterable[str], parse: Callable[[str], object]) -> tuple[str, ...]:
    """The specs of a setting (STUDIO_IMAGE_MODEL, STUDIO_SPEECH_MODEL, ...), surrounding spaces off, each parsed
    first so that a mistyped one fails at startup (`parse` raises)."""
    raw = tuple(raw_specs)
    for spec in raw:
        parse(spec)
    return tuple(spec.strip() for spec in raw)


class LazyRegistry(Generic[T]):
    """`create(spec)` makes the object for a configured spec the first time it is asked for; `unknown(spec,
    specs)` is the error raised for a spec that is not configured (each capability raises its own type)."""

    def __init__(
        self,
        specs: Iterable[str],
        create: Callable[[str], T],
        unknown: Callable[[str, tuple[str, ...]], Exception],
        ready: Mapping[str, T] | None = None,
    ) -> None:
        """`ready`: objects already made for some specs (tests and benchmarks hand in their own); their specs are
        added after the configured ones."""
        self._create = create
        self._unknown = unknown
        self._items: dict[str, T] = dict(ready or {})
        configured = tuple(specs)
        self.specs: tuple[str, ...] = configured + tuple(s for s in self._items if s not in configured)
        self._lock = threading.Lock()
        # The spec to use when a caller names none, where the first configured one may not run (the model manager
        # sets it: the first model that runs now); None or a spec not listed here falls back to the first.
        self.preferred: Callable[[], str | None] | None = None

    @property
    def default(self) -> str:
        if self.preferred is not None:
            chosen = self.preferred()
            if chosen in self.specs:
                return chosen
        return self.specs[0]

    def add(self, spec: str) -> None:
        """Offer one more spec (a model just downloaded); nothing is created until it is asked for."""
        with self._lock:
            if spec not in self.specs:
                self.specs = (*self.specs, spec)

    def remove(self, spec: str) -> None:
        """Stop offering a spec (a model deleted) and drop its object; the last spec stays."""
        with self._lock:
            if spec in self.specs and len(self.specs) > 1:
                self.specs = tuple(s for s in self.specs if s != spec)
                self._items.pop(spec, None)

    def resolve(self, spec: str | None) -> str:
        """The configured spec that `spec` asks for (None or "" for the default)."""
        return spec or self.default

    def get(self, spec: str | None) -> T:
        key = self.resolve(spec)
        if key not in self.specs:
            raise self._unknown(key, self.specs)
        with self._lock:
            item = self._items.get(key)
            if item is None:
                item = self._items[key] = self._create(key)
            return item

    def choices(self) -> list[tuple[str, str]]:
        """(label, spec) pairs for a picker; creating a backend loads nothing, and labels never include secrets."""
        return [(self.get(s).label, s) for s in self.specs]

    def load(self, spec: str | None, poll_s: float = LOAD_POLL_S) -> Iterator[LoadUpdate]:
        """Load a model on its own thread (a first use may download it), saying how far it got every `poll_s`;
        the last update says it is ready. Raises the backend's BackendError, or ModelLoadError for anything else."""
        item = self.get(spec)
        latest = LoadUpdate(f"Loading {item.label}…")
        outcome: dict[str, BaseException] = {}

        def progress(fraction: float, text: str) -> None:
            nonlocal latest
            latest = LoadUpdate(text, fraction)

        def work() -> None:
            try:
                item.load(progress)
            except BaseException as exc:  # raised on the caller's thread below
                outcome["error"] = exc

        worker = threading.Thread(target=work, name="model-load", daemon=True)
        worker.start()
        while worker.is_alive():
            yield latest
            worker.join(poll_s)
        error = outcome.get("error")
        if isinstance(error, BackendError):
            raise error
        if error is not None:
            raise ModelLoadError(f"{item.label} failed to load ({type(error).__name__}).") from error
        yield LoadUpdate(f"{item.label} is ready.", 1.0, ready=True)
