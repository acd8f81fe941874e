"""One model download: which files of a hub repo a spec needs (the GGUF file; the pipeline files the diffusers
backend loads; a transformers model's configs, tokenizer and weights; a faster-whisper model's), the disk check before any byte, the
transfer with its progress (bytes, speed, time left), and deleting a download from the hub cache."""

from __future__ import annotations

import fnmatch
import glob
import json
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backends.image.diffusers_weights import SKIPPED_COMPONENTS, select_pipeline_files
from backends.text.hub_gguf import parse_hub_gguf
from config import Settings
from core.models.catalogue import FASTER_WHISPER_PATTERNS, CatalogueModel
from core.models.hub import Hub, ModelDownloadError, RemoteFile, free_bytes, repo_folder

if TYPE_CHECKING:
    from core.models.service import DownloadProgress

# A transformers model: what from_pretrained reads (one weight format: safetensors, else .bin).
TRANSFORMERS_PATTERNS = ("*.json", "*.model", "*.txt", "*.tiktoken", "*.jinja", "tokenizer*")
SPEED_WINDOW_S = 5.0
MAX_INDEX_BYTES = 1 << 20  # a pipeline's model_index.json is a few hundred bytes
MAX_PLAN_FILES = 200  # a model is a few files (a sharded checkpoint some dozens); more is not a model to fetch


@dataclass(frozen=True)
class DownloadPlan:
    repo_id: str
    files: tuple[RemoteFile, ...]

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)


def plan_download(hub: Hub, model: CatalogueModel | None, spec: str) -> DownloadPlan:
    """The files to fetch for `spec` (a catalogue model's own patterns where it has them), with sizes and etags."""
    kind, _, target = spec.partition(":")
    if kind == "gguf":
        parsed = parse_hub_gguf(target)
        if parsed is None:
            raise ModelDownloadError(f"{spec} is a local file; the manager downloads only hub models.")
        repo_id, filename = parsed
        return DownloadPlan(repo_id, (hub.file(repo_id, filename),))
    repo_id = target
    if kind == "faster-whisper":  # a size ("small") names its Systran repo
        from core.models.speech import whisper_repo

        repo_id = whisper_repo(target) or target
    sizes = hub.listing(repo_id)
    if model is not None and model.allow_patterns:
        names = [f for f in sizes if any(fnmatch.fnmatch(f, p) for p in model.allow_patterns)]
    elif kind == "diffusers":
        names = _pipeline_files(hub, repo_id, sizes)
    elif kind == "faster-whisper":
        names = _whisper_files(repo_id, sizes)
    else:
        names = _transformers_files(sizes)
    if not names:
        raise ModelDownloadError(f"{repo_id} on the hub has none of the files this model needs.")
    if len(names) > MAX_PLAN_FILES:  # refused before one request per file
        raise ModelDownloadError(
            f"{repo_id} on the hub would need {len(names)} files fetched; the manager fetches at most {MAX_PLAN_FILES} "
            "for one model."
        )
    return DownloadPlan(repo_id, tuple(hub.file(repo_id, name) for name in sorted(names)))


def _pipeline_files(hub: Hub, repo_id: str, sizes: dict[str, int]) -> list[str]:
    if "model_index.json" not in sizes:
        raise ModelDownloadError(f"{repo_id} on the hub is not a diffusers pipeline (it has no model_index.json).")
    index_file = hub.file(repo_id, "model_index.json")
    if index_file.size > MAX_INDEX_BYTES:  # fetched before the disk check: it must be small
        raise ModelDownloadError(
            f"{repo_id} on the hub has a model_index.json of {format_size(index_file.size)}; refused."
        )
    path = hub.fetch(index_file, lambda n: None, threading.Event())
    try:
        index = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        index = None
    if not isinstance(index, dict):
        raise ModelDownloadError(f"The model_index.json of {repo_id} on the hub is not a diffusers pipeline's.")
    components = [
        k
        for k, v in index.items()
        if not k.startswith("_") and isinstance(v, list) and v and v[0] is not None and k not in SKIPPED_COMPONENTS
    ]
    files, _ = select_pipeline_files(list(sizes), components, "fp16")  # what backends/image/diffusers_weights fetches
    return files


def _transformers_files(sizes: dict[str, int]) -> list[str]:
    names = [f for f in sizes if "/" not in f and any(fnmatch.fnmatch(f, p) for p in TRANSFORMERS_PATTERNS)]
    weights = [f for f in sizes if "/" not in f and f.endswith(".safetensors")]
    weights = weights or [f for f in sizes if "/" not in f and f.endswith(".bin") and "training" not in f]
    if "config.json" not in sizes or not weights:
        raise ModelDownloadError("That hub repository is not a transformers model (no config.json and weights).")
    return sorted(set(names + weights))


def _whisper_files(repo_id: str, sizes: dict[str, int]) -> list[str]:
    names = [f for f in sizes if any(fnmatch.fnmatch(f, p) for p in FASTER_WHISPER_PATTERNS)]
    if "model.bin" not in names or "config.json" not in names:
        raise ModelDownloadError(
            f"{repo_id} on the hub is not a faster-whisper model (it has no CTranslate2 model.bin and config.json)."
        )
    return names


class Transfer:
    """The files of one plan fetched one after another; progress() may be called from another thread."""

    def __init__(self, hub: Hub, plan: DownloadPlan, settings: Settings, cancel: threading.Event) -> None:
        self.hub = hub
        self.plan = plan
        self.settings = settings
        self.cancel = cancel
        self._bytes = {f.filename: hub.have_bytes(f) for f in plan.files}
        self._samples: list[tuple[float, int]] = [(time.monotonic(), self.done_bytes())]

    def done_bytes(self) -> int:
        return sum(self._bytes.values())

    @property
    def reserve(self) -> int:
        return int(self.settings.model_disk_reserve_mb * 2**20)

    def check_disk(self, name: str, coming_elsewhere: int = 0) -> None:
        """Refuse before any byte when what is left to fetch, with what other running downloads still bring
        (`coming_elsewhere`), would eat into the reserve. The message names no server path."""
        needed = self.plan.total - self.done_bytes()
        free = free_bytes(self.settings.hf_cache_dir) - max(0, coming_elsewhere)
        if needed > 0 and free - self.reserve < needed:
            others = " (after the downloads under way)" if coming_elsewhere > 0 else ""
            raise ModelDownloadError(
                f"Not enough disk space for {name}: it needs {format_size(needed)} more, and the model cache has "
                f"{format_size(max(0, free))} free{others}, {format_size(self.reserve)} of which stays free "
                "(STUDIO_MODEL_DISK_RESERVE_MB). Delete a model you do not use, or free some space."
            )

    def run(self) -> None:
        for remote in self.plan.files:
            if self.cancel.is_set():
                break

            def seen(n: int, name: str = remote.filename) -> None:
                self._bytes[name] = n

            self.hub.fetch(remote, seen, self.cancel, keep_free=self.reserve)
            self._bytes[remote.filename] = remote.size
        if self.cancel.is_set() and self.done_bytes() < self.plan.total:
            from core.models.hub import DownloadCancelled

            raise DownloadCancelled(
                f"Cancelled; {format_size(self.done_bytes())} kept, a new download continues there."
            )

    def progress(self, key: str) -> DownloadProgress:
        from core.models.service import DownloadProgress

        now, done, total = time.monotonic(), self.done_bytes(), self.plan.total
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > SPEED_WINDOW_S:
            self._samples.pop(0)
        t0, d0 = self._samples[0]
        speed = (done - d0) / (now - t0) if now > t0 else 0.0
        eta = (total - done) / speed if speed > 0 else None
        parts = [f"{format_size(done)} of {format_size(total)}"]
        if speed > 0:
            parts.append(f"{format_size(speed)}/s")
        if eta is not None:
            parts.append(f"about {_duration(eta)} left")
        return DownloadProgress(key, done, total, speed, eta, " · ".join(parts))


def delete_model(cache_dir: Path, repo_id: str, spec: str) -> int:
    """Remove a model from the hub cache and return the bytes freed: a GGUF file alone (its blob, links and any
    partial download; the repo folder too once nothing else is left in it), any other model's whole repo folder."""
    storage = repo_folder(cache_dir, repo_id)
    if not storage.is_dir():
        return 0
    parsed = parse_hub_gguf(spec.partition(":")[2]) if spec.startswith("gguf:") else None
    if parsed is None:
        return _remove_tree(storage)
    filename = parsed[1]
    freed = 0
    blobs: set[Path] = set()
    inside = storage.resolve()
    for pointer in (storage / "snapshots").glob(f"*/{glob.escape(filename)}"):  # "[ab].gguf" is a name, not a pattern
        target = pointer.resolve()
        if target != pointer and target.is_file() and target.is_relative_to(inside):
            blobs.add(target)
        elif pointer.is_file():
            freed += pointer.stat().st_size  # a copied file (no symlinks on this filesystem)
        pointer.unlink(missing_ok=True)
    for blob in blobs:
        freed += blob.stat().st_size
        blob.unlink()
    for partial in (storage / "blobs").glob("*.incomplete"):
        freed += partial.stat().st_size  # only a download of this repo's GGUF can have left one
        partial.unlink()
    if not any(p.is_file() for p in (storage / "blobs").glob("*")):
        shutil.rmtree(storage, ignore_errors=True)
    return freed


def _remove_tree(folder: Path) -> int:
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    shutil.rmtree(folder)
    return size


def format_size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def _duration(s: float) -> str:
    if s < 90:
        return f"{max(1, round(s))} s"
    if s < 5400:
        return f"{round(s / 60)} min"
    return f"{s / 3600:.1f} h"
