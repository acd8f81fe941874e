"""What is on this machine: for each model spec, whether it runs from local files alone (and if not, what it needs),
and the models in the Hugging Face cache (`scan_cache_dir`) with their size on disk. No network."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path

from backends import parse_image_spec
from backends.image.diffusers_weights import SINGLE_FILE_SUFFIXES, has_variant
from backends.text.base import ModelSpec, ModelUnavailableError
from backends.text.hub_gguf import cached_hub_gguf, hub_gguf_spec, parse_hub_gguf
from config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedRepo:
    """One model repository in the hub cache: its size on disk and the files of its newest revision."""

    repo_id: str
    size_on_disk: int
    files: dict[str, int] = field(default_factory=dict)  # path in the repo -> bytes


@dataclass(frozen=True)
class LocalState:
    """`ready`: runs from local files. Otherwise `hub_repo` is set when a download would fix it (`reason` says
    what is missing), or unset when nothing the manager can do helps (`reason` says what to do)."""

    ready: bool
    reason: str = ""
    size_on_disk: int = 0
    hub_repo: str | None = None
    deletable: bool = False  # a hub download the manager may remove


def scan_cache(cache_dir: Path) -> dict[str, CachedRepo]:
    """The model repositories in the hub cache by repo id; {} when there is no cache yet."""
    if not cache_dir.is_dir():
        return {}
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except (CacheNotFound, OSError) as exc:
        log.warning("Cannot read the Hugging Face cache %s: %s", cache_dir, exc)
        return {}
    repos: dict[str, CachedRepo] = {}
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        newest = max(repo.revisions, key=lambda r: r.last_modified, default=None)
        files = (
            {str(f.file_path.relative_to(newest.snapshot_path)): f.size_on_disk for f in newest.files} if newest else {}
        )
        repos[repo.repo_id] = CachedRepo(repo.repo_id, repo.size_on_disk, files)
    return repos


def _is_local_path(target: str) -> bool:
    return target.startswith(("/", "./", "../", "~")) or Path(target).expanduser().exists()


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _hub_state(repo_id: str, ready: bool, cached: dict[str, CachedRepo], missing: str) -> LocalState:
    repo = cached.get(repo_id)
    size = repo.size_on_disk if repo else 0
    if ready:
        return LocalState(True, size_on_disk=size, hub_repo=repo_id, deletable=True)
    return LocalState(False, missing, size_on_disk=size, hub_repo=repo_id, deletable=repo is not None)


def text_state(spec: str, settings: Settings, cached: dict[str, CachedRepo]) -> LocalState:
    parsed = ModelSpec.parse(spec)
    target = parsed.target
    if parsed.kind == "embedded":
        from backends.text.embedded import embedded_gguf_path

        try:
            return LocalState(True, size_on_disk=_file_size(embedded_gguf_path()))
        except ModelUnavailableError as exc:
            return LocalState(False, str(exc))
    if parsed.kind == "gguf":
        hub = parse_hub_gguf(target)
        if hub is None:
            path = Path(target).expanduser()
            if path.is_file():
                return LocalState(True, size_on_disk=_file_size(path))
            return LocalState(False, f"The file {path} does not exist; check the gguf: entry in STUDIO_TEXT_MODEL.")
        repo_id, filename = hub
        found = cached_hub_gguf(repo_id, filename, settings.hf_cache_dir)
        state = _hub_state(repo_id, found is not None, cached, f"{filename} is not downloaded yet.")
        return LocalState(state.ready, state.reason, _file_size(found) if found else 0, repo_id, state.deletable)
    if parsed.kind == "hf":
        if _is_local_path(target):
            path = Path(target).expanduser()
            if (path / "config.json").is_file():
                return LocalState(True, size_on_disk=sum(_file_size(p) for p in path.rglob("*") if p.is_file()))
            return LocalState(False, f"{path} is not a transformers model folder (it has no config.json).")
        repo = cached.get(target)
        ready = (
            repo is not None
            and "config.json" in repo.files
            and any(f.endswith((".safetensors", ".bin")) for f in repo.files)
        )
        return _hub_state(target, ready, cached, f"{target} is not downloaded yet.")
    if parsed.kind == "openai":
        return _openai_state(settings)
    return LocalState(False, f"Unknown kind of text model: {spec}")


def image_state(spec: str, settings: Settings, cached: dict[str, CachedRepo]) -> LocalState:
    kind, target = parse_image_spec(spec)
    if kind == "gan":
        return _gan_state()
    if kind == "openai":
        return _openai_state(settings)
    path = Path(target).expanduser()
    if target.lower().endswith(SINGLE_FILE_SUFFIXES):
        if path.is_file():
            return LocalState(True, size_on_disk=_file_size(path))
        return LocalState(False, f"The file {path} does not exist; check the diffusers: entry in STUDIO_IMAGE_MODEL.")
    if _is_local_path(target):
        if (path / "model_index.json").is_file():
            return LocalState(True, size_on_disk=sum(_file_size(p) for p in path.rglob("*") if p.is_file()))
        return LocalState(False, f"{path} is not a diffusers model folder (it has no model_index.json).")
    return _hub_state(
        target, diffusers_cached(target, settings.hf_cache_dir), cached, f"{target} is not downloaded yet."
    )


def diffusers_cached(repo_id: str, cache_dir: Path) -> bool:
    """Whether the hub cache holds the pipeline with weights for every component (fp16 or plain)."""
    from huggingface_hub import try_to_load_from_cache

    index = try_to_load_from_cache(repo_id, "model_index.json", cache_dir=str(cache_dir))
    if not isinstance(index, str):
        return False
    folder = Path(index).parent
    return has_variant(folder, "fp16") or has_variant(folder, None)


def _openai_state(settings: Settings) -> LocalState:
    if settings.openai_base_url or settings.openai_api_key:
        return LocalState(True)
    return LocalState(
        False, "No server is configured: set OPENAI_API_KEY (api.openai.com) or OPENAI_BASE_URL (a compatible server)."
    )


def _gan_state() -> LocalState:
    from backends.image.gan_faces import INSTALL_COMMAND, locate_data_dir

    try:
        data = locate_data_dir()
    except ModelUnavailableError as exc:
        return LocalState(False, str(exc))
    if importlib.util.find_spec("openvino") is None:
        return LocalState(False, f"The face generator needs OpenVINO, which is not installed: {INSTALL_COMMAND}")
    size = sum(_file_size(p) for p in data.glob("*") if p.is_file())
    return LocalState(True, size_on_disk=size)


def is_faster_whisper(files: dict[str, int]) -> bool:
    """Whether a cached repo's files are a CTranslate2 Whisper model (its model.bin is no transformers checkpoint)."""
    return (
        "model.bin" in files
        and "config.json" in files
        and ("tokenizer.json" in files or any(f.startswith("vocabulary.") for f in files))
    )


def found_on_disk(cached: dict[str, CachedRepo]) -> list[tuple[str, str, int]]:
    """(kind, spec, bytes) of the runnable models in the hub cache: each GGUF file, each diffusers pipeline, each
    transformers model with weights, each faster-whisper (CTranslate2) recogniser."""
    found: list[tuple[str, str, int]] = []
    for repo in cached.values():
        files = repo.files
        if "model_index.json" in files:
            found.append(("image", f"diffusers:{repo.repo_id}", repo.size_on_disk))
            continue
        if is_faster_whisper(files):
            found.append(("transcribe", f"faster-whisper:{repo.repo_id}", repo.size_on_disk))
            continue
        ggufs = [f for f in files if f.lower().endswith(".gguf")]
        for name in sorted(ggufs):
            found.append(("text", hub_gguf_spec(repo.repo_id, name), files[name]))
        if not ggufs and "config.json" in files and any(f.endswith((".safetensors", ".bin")) for f in files):
            found.append(("text", f"hf:{repo.repo_id}", repo.size_on_disk))
    return found
