"""The model manager: every model the app knows (configured, catalogue, found in the hub cache), whether each runs
now and why not, what the pickers may offer, and hub downloads (progress, cancel, resume, verify) and deletes.
Registries learn of a new download (`LazyRegistry.add`) and fall back to a model that runs (`preferred`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

from config import Settings
from core.errors import InputError, ModelDownloadError, ModelPermissionError, NotFoundError
from core.images.models import ImageModelManager
from core.models.catalogue import CatalogueModel, load_catalogue
from core.models.downloads import Transfer, delete_model, format_size, plan_download
from core.models.hub import DownloadCancelled, Hub
from core.models.local import LocalState, found_on_disk, image_state, scan_cache, text_state
from core.models.speech import speech_state, transcribe_state
from core.models.text import ModelManager
from core.registry import LazyRegistry

Kind = Literal["text", "image", "speech", "transcribe"]  # speech: voices (text to speech); transcribe: recognisers
Source = Literal["configured", "catalogue", "on disk"]
KINDS: tuple[Kind, ...] = ("text", "image", "speech", "transcribe")
ENTRIES_TTL_S = 3.0
API_REFUSAL = "Models are downloaded and deleted in the Models tab, not through the API."
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
STARTER_SPEC = "embedded"  # the built-in model: runs with nothing downloaded, writes rough drafts
HUB_TTL_S = 30.0
PROGRESS_POLL_S = 0.25
CANCEL_GRACE_S = 2.0  # how long a cancel waits for the transfer to end before answering anyway


@dataclass(frozen=True)
class ModelEntry:
    """One row of the manager."""

    key: str  # stable id: the catalogue id, else the spec
    kind: Kind
    name: str
    spec: str  # what pickers and registries use
    source: Literal["configured", "catalogue", "on disk"]
    state: Literal["ready", "downloadable", "downloading", "unavailable"]
    reason: str  # why it is not ready and what to do ("" when ready)
    size_on_disk: int
    download_size: int | None
    ram_gb: float | None
    licence: str
    good_for: str
    recommended: bool
    deletable: bool
    repo: str | None = None  # the hub repository a download fetches from
    starter: bool = False  # the small built-in model: it answers with no download, but writes rough drafts


@dataclass(frozen=True)
class DownloadProgress:
    key: str
    done_bytes: int
    total_bytes: int
    speed_bps: float
    eta_s: float | None
    text: str  # "412 MB of 1.1 GB · 23 MB/s · about 31 s left"
    finished: bool = False


@dataclass(frozen=True)
class HubStatus:
    online: bool
    reason: str  # why downloads are off ("" when online)


class ModelsService:
    def __init__(
        self,
        settings: Settings,
        text: ModelManager,
        images: ImageModelManager,
        *,
        voices: LazyRegistry | None = None,
        recognisers: LazyRegistry | None = None,
    ) -> None:
        """`voices`/`recognisers`: the speech registries (core.speech.models); a kind left out is not listed."""
        self.settings = settings
        self.catalogue: tuple[CatalogueModel, ...] = load_catalogue(settings.model_catalogue)
        self.hub_client = Hub(settings.hf_endpoint, settings.hf_token, settings.hf_cache_dir)
        given: dict[Kind, LazyRegistry | None] = {
            "text": text,
            "image": images,
            "speech": voices,
            "transcribe": recognisers,
        }
        self._registries: dict[Kind, LazyRegistry] = {k: r for k, r in given.items() if r is not None}
        self._configured: dict[Kind, tuple[str, ...]] = {k: tuple(r.specs) for k, r in self._registries.items()}
        self._lock = threading.Lock()
        self._entries: list[ModelEntry] | None = None
        self._entries_at = 0.0
        self._hub: HubStatus | None = None
        self._hub_at = 0.0
        self._active: dict[str, DownloadProgress] = {}  # key -> latest progress of a running download
        self._cancels: dict[str, threading.Event] = {}  # key -> the cancel event of its running download
        for kind, registry in self._registries.items():
            registry.preferred = lambda kind=kind: self.default(kind)

    # -- what there is ---------------------------------------------------------------------------------------

    def hub(self) -> HubStatus:
        """Whether downloads can work now: HF_HUB_OFFLINE, else a short probe of HF_ENDPOINT, cached ~30 s."""
        if self.settings.hf_offline:
            return HubStatus(False, "Downloads are off: HF_HUB_OFFLINE is set, so only models on this machine run.")
        now = time.monotonic()
        with self._lock:
            if self._hub is not None and now - self._hub_at < HUB_TTL_S:
                return self._hub
        problem = self.hub_client.probe()
        status = HubStatus(True, "") if problem is None else HubStatus(False, f"Downloads are off: {problem}.")
        with self._lock:
            self._hub, self._hub_at = status, time.monotonic()
        return status

    def entries(self, refresh: bool = False) -> list[ModelEntry]:
        """Every model, configured ones first (in their order), then the catalogue, then others on disk."""
        now = time.monotonic()
        with self._lock:
            if not refresh and self._entries is not None and now - self._entries_at < ENTRIES_TTL_S:
                return self._with_active(self._entries)
        entries = self._build()
        self._sync_registries(entries)
        with self._lock:
            self._entries, self._entries_at = entries, time.monotonic()
            return self._with_active(entries)

    def entry(self, key: str) -> ModelEntry:
        if not isinstance(key, str) or not key:  # a caller's payload may hold anything
            raise InputError("Pick a model first.")
        for e in self.entries():
            if e.key == key:
                return e
        raise NotFoundError(f"No model {key[:80]!r} in the manager; reload the list.")

    def choices(self, kind: str) -> list[tuple[str, str]]:
        """(label, spec) of the models of `kind` that run now, for a picker; the registry's order."""
        ready = {e.spec: e.name for e in self.entries() if e.kind == kind and e.state == "ready"}
        registry = self._registries.get(kind)  # type: ignore[call-overload]
        if registry is None:
            return []
        return [(ready[s], s) for s in registry.specs if s in ready]

    def default(self, kind: str) -> str | None:
        found = self.choices(kind)
        return found[0][1] if found else None

    def recommended(self, kind: str) -> ModelEntry | None:
        return next((e for e in self.entries() if e.kind == kind and e.recommended), None)

    def note(self, kind: str) -> str:
        """One plain sentence for above a tab's picker when its kind has no good model ready, saying how to get one
        ("" when there is one): images with only the GAN (no diffusion model) on this machine."""
        if kind != "image" or any(s.startswith("diffusers:") for _, s in self.choices(kind)):
            return ""
        rec = self.recommended(kind)
        size = f" ({format_size(rec.download_size)})" if rec and rec.download_size else ""
        get = f"get {rec.name}{size} in the Models tab" if rec else "download one in the Models tab"
        return (
            f"No diffusion model is on this machine yet, so only the GAN runs: {get}, "
            "or set STUDIO_IMAGE_MODEL=diffusers:/path/to/a/diffusers/folder."
        )

    def can_manage(self, user_id: str) -> tuple[bool, str]:
        """Downloads write the server's disk for everyone: a local app's browser user may; with logins, only
        STUDIO_MODEL_ADMINS; API callers ("api:...", whoever their token belongs to) never."""
        if user_id.startswith("api:"):
            return False, API_REFUSAL
        logins = bool(self.settings.auth or self.settings.auth_file)
        if not logins:
            if not user_id.startswith("browser:"):
                return False, API_REFUSAL
            # Without logins a browser id is whatever a client sends, so only a loopback-only app trusts it.
            if self.settings.server_name.strip("[]") not in LOOPBACK_HOSTS:
                return False, (
                    "This app is served on the network without logins, so nobody may download or delete models: "
                    "set STUDIO_AUTH_FILE and STUDIO_MODEL_ADMINS."
                )
            return True, ""
        name = user_id.removeprefix("user:") if user_id.startswith("user:") else None
        if name is not None and name in self.settings.model_admins:
            return True, ""
        if not self.settings.model_admins:
            return False, "Downloads change the server for everyone: set STUDIO_MODEL_ADMINS to the logins who may."
        return False, "Only the model admins of this server (STUDIO_MODEL_ADMINS) may download or delete models."

    # -- changing what there is ------------------------------------------------------------------------------

    def download(self, user_id: str, key: str, cancel: threading.Event) -> Iterator[DownloadProgress]:
        """Download a model, yielding progress about 4 times a second; the last one is `finished`. Setting `cancel`
        (or closing the iterator) stops it and keeps what arrived for a later download to continue; so does
        cancel(key) by someone who may manage models."""
        allowed, why = self.can_manage(user_id)
        if not allowed:
            raise ModelPermissionError(why)
        entry = self.entry(key)
        if entry.state == "ready":
            yield DownloadProgress(
                key, entry.size_on_disk, entry.size_on_disk, 0.0, 0.0, "Already on this machine.", True
            )
            return
        if entry.repo is None:
            raise ModelDownloadError(entry.reason or f"{entry.name} is not something the manager can download.")
        hub = self.hub()
        if not hub.online:
            raise ModelDownloadError(hub.reason)
        with self._lock:
            if key in self._active:
                raise ModelDownloadError(f"{entry.name} is already downloading.")
            self._active[key] = DownloadProgress(key, 0, entry.download_size or 0, 0.0, None, "Starting…")
            self._cancels[key] = cancel
        try:
            plan = plan_download(self.hub_client, self._catalogue_model(key), entry.spec)
            transfer = Transfer(self.hub_client, plan, self.settings, cancel)
            transfer.check_disk(entry.name, self._coming(but=key))
            with self._lock:  # its size now counts in the disk check of a download that starts next
                self._active[key] = transfer.progress(key)
            yield from self._run(key, transfer, cancel)
        finally:
            with self._lock:
                self._active.pop(key, None)
                self._cancels.pop(key, None)
                self._entries = None
        registry = self._registries[entry.kind]
        registry.add(entry.spec)
        done = transfer.done_bytes()
        yield DownloadProgress(key, done, done, 0.0, 0.0, f"{entry.name} is ready ({format_size(done)}).", True)

    def cancel(self, user_id: str, key: str) -> bool:
        """Stop the running download of `key` (what arrived is kept); False when none runs. Only someone who may
        download may cancel: a cancel throws away the time someone else's download has run."""
        allowed, why = self.can_manage(user_id)
        if not allowed:
            raise ModelPermissionError(why)
        with self._lock:
            event = self._cancels.get(key)
        if event is None:
            return False
        event.set()
        return True

    def _coming(self, but: str) -> int:
        """Bytes the other running downloads still bring to the disk."""
        with self._lock:
            return sum(max(0, p.total_bytes - p.done_bytes) for k, p in self._active.items() if k != but)

    def _run(self, key: str, transfer: Transfer, cancel: threading.Event) -> Iterator[DownloadProgress]:
        outcome: dict[str, BaseException] = {}

        def work() -> None:
            try:
                transfer.run()
            except BaseException as exc:  # raised on the caller's thread below
                outcome["error"] = exc

        worker = threading.Thread(target=work, name=f"download-{key}", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                if cancel.is_set():
                    # A hub that sends nothing holds the worker in a read (and http_get's retries) for a minute; once
                    # cancelled its sink writes nothing more, so the caller need not wait for it.
                    worker.join(CANCEL_GRACE_S)
                    if worker.is_alive():
                        raise DownloadCancelled(
                            f"Cancelled; {format_size(transfer.done_bytes())} kept, a new download continues there."
                        )
                    break
                progress = transfer.progress(key)
                with self._lock:
                    self._active[key] = progress
                yield progress
                worker.join(PROGRESS_POLL_S)
        finally:
            if worker.is_alive():  # the caller stopped listening: stop the download
                cancel.set()
                worker.join(CANCEL_GRACE_S)
        error = outcome.get("error")
        if error is not None:
            raise error

    def delete(self, user_id: str, key: str) -> int:
        """Remove a downloaded model's files from the hub cache; the bytes freed."""
        allowed, why = self.can_manage(user_id)
        if not allowed:
            raise ModelPermissionError(why)
        entry = self.entry(key)
        if not entry.deletable or entry.repo is None:
            raise InputError(f"{entry.name} is not a download the manager can delete.")
        if entry.state == "downloading":
            raise InputError(f"{entry.name} is downloading; cancel it first.")
        sharing = [e.name for e in self.entries() if e.state == "downloading" and e.repo == entry.repo]
        if sharing:  # its files (partial ones too) live in the same cache folder
            raise InputError(f"{sharing[0]} is downloading from the same repository; delete {entry.name} after it.")
        freed = delete_model(self.settings.hf_cache_dir, entry.repo, entry.spec)
        if entry.spec not in self._configured[entry.kind]:
            self._registries[entry.kind].remove(entry.spec)
        with self._lock:
            self._entries = None
        return freed

    # -- building the list -----------------------------------------------------------------------------------

    def _catalogue_model(self, key: str) -> CatalogueModel | None:
        return next((m for m in self.catalogue if m.id == key), None)

    def _build(self) -> list[ModelEntry]:
        cached = scan_cache(self.settings.hf_cache_dir)
        by_spec = {(m.kind, m.spec): m for m in self.catalogue}
        hub: HubStatus | None = None

        def hub_status() -> HubStatus:
            nonlocal hub
            hub = hub or self.hub()
            return hub

        rows: list[ModelEntry] = []
        seen: set[tuple[Kind, str]] = set()  # "openai:<model>" may be both a voice and a text model
        candidates: list[tuple[Kind, str, Source, int | None]] = []
        for kind in KINDS:
            candidates += [(kind, s, "configured", None) for s in self._configured.get(kind, ())]
        candidates += [(m.kind, m.spec, "catalogue", None) for m in self.catalogue]
        candidates += [(_kind(k), s, "on disk", size) for k, s, size in found_on_disk(cached)]
        for kind, spec, source, size in candidates:
            if (kind, spec) in seen or kind not in self._registries:  # a kind this app was not given
                continue
            seen.add((kind, spec))
            local = self._state(kind, spec, cached)
            if size is not None and local.ready:
                local = replace(local, size_on_disk=size)
            rows.append(self._row(kind, spec, source, local, by_spec.get((kind, spec)), hub_status))
        return rows

    def _state(self, kind: Kind, spec: str, cached: dict) -> LocalState:
        if kind == "text":
            return text_state(spec, self.settings, cached)
        if kind == "image":
            return image_state(spec, self.settings, cached)
        if kind == "speech":
            return speech_state(spec, self.settings)
        return transcribe_state(spec, self.settings, cached)

    def _row(
        self,
        kind: Kind,
        spec: str,
        source: Source,
        local: LocalState,
        model: CatalogueModel | None,
        hub_status: Callable[[], HubStatus],
    ) -> ModelEntry:
        if local.ready:
            state, reason = "ready", ""
            if not local.size_on_disk and local.hub_repo is None and model and model.size_bytes:
                local = replace(local, size_on_disk=model.size_bytes)  # an apt package: the catalogue's size
        elif local.hub_repo is None:
            state, reason = "unavailable", local.reason
        else:
            status = hub_status()
            size = f" ({format_size(model.size_bytes)})" if model and model.size_bytes else ""
            if status.online:
                state, reason = "downloadable", f"Not on this machine yet{size}: download it here."
            else:
                state, reason = "unavailable", f"Not on this machine, and {status.reason[0].lower()}{status.reason[1:]}"
        return ModelEntry(
            key=model.id if model else (spec if kind in ("text", "image") else f"{kind}:{spec}"),
            kind=kind,
            name=model.name if model else self._name(kind, spec),
            spec=spec,
            source=source,
            state=state,  # type: ignore[arg-type]
            reason=reason,
            size_on_disk=local.size_on_disk,
            download_size=model.size_bytes if model else None,
            ram_gb=model.ram_gb if model else None,
            licence=model.licence if model else "",
            good_for=model.good_for if model else "",
            recommended=bool(model and model.recommended),
            deletable=local.deletable,
            repo=local.hub_repo,
            starter=kind == "text" and spec.strip() == STARTER_SPEC,
        )

    def _name(self, kind: Kind, spec: str) -> str:
        registry = self._registries[kind]
        if spec in registry.specs:
            try:
                return str(registry.get(spec).label)
            except Exception:  # a backend that cannot even be created: its spec still names it
                return spec
        _, _, target = spec.partition(":")
        return target.removeprefix("hf.co/") or spec

    def _sync_registries(self, entries: list[ModelEntry]) -> None:
        """A model that became ready outside a download (a restart, another process) joins its picker."""
        for e in entries:
            registry = self._registries[e.kind]
            if e.state == "ready" and e.spec not in registry.specs:
                registry.add(e.spec)

    def _with_active(self, entries: list[ModelEntry]) -> list[ModelEntry]:
        if not self._active:
            return list(entries)
        return [
            replace(e, state="downloading", reason=self._active[e.key].text) if e.key in self._active else e
            for e in entries
        ]


def _kind(kind: str) -> Kind:
    return kind if kind in KINDS else "text"
