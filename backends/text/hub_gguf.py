"""The Ollama-style spec `gguf:hf.co/<owner>/<repo>/<file.gguf>`: a GGUF file named by its hub repository and file,
resolved from the local Hugging Face cache only (never downloaded at load: the Models tab downloads it)."""

from __future__ import annotations

import re
from pathlib import Path

from backends.text.base import ModelUnavailableError

HUB_PREFIX = "hf.co/"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")  # an owner or a repository name on the hub
_PART = re.compile(r"^[^\x00-\x1f\x7f\\/:*?\"<>|#%]{1,255}$")  # one folder or file name inside a repository
MAX_REPO_PATH = 1024


def is_repo_id(repo_id: str) -> bool:
    """`<owner>/<name>` as the hub spells them: never a path that leaves the cache."""
    owner, _, name = repo_id.partition("/")
    return bool(_NAME.match(owner) and _NAME.match(name)) and ".." not in repo_id


def is_repo_file(filename: str) -> bool:
    """A file inside a repository: relative, '/'-separated, with no '.', '..' or empty part, no backslash, drive,
    query or control character, so that joined under a snapshot folder it stays inside it."""
    if not filename or len(filename) > MAX_REPO_PATH:
        return False
    return all(_PART.match(part) and part not in (".", "..") for part in filename.split("/"))


def parse_hub_gguf(target: str) -> tuple[str, str] | None:
    """(repo id, file in the repo) of a `hf.co/<owner>/<repo>/<file.gguf>` target; None for a plain path.
    ValueError for a hub target that names no file or no .gguf, or a repository or file that is not a plain name."""
    if not target.startswith(HUB_PREFIX):
        return None
    parts = target[len(HUB_PREFIX) :].strip("/").split("/")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    if (
        len(parts) < 3
        or not is_repo_id(repo_id)
        or not is_repo_file(filename)
        or not filename.lower().endswith(".gguf")
    ):
        raise ValueError(f"Write a hub GGUF as gguf:hf.co/<owner>/<repo>/<file.gguf>, not gguf:{target[:200]!r}")
    return repo_id, filename


def hub_gguf_spec(repo_id: str, filename: str) -> str:
    return f"gguf:{HUB_PREFIX}{repo_id}/{filename}"


def cached_hub_gguf(repo_id: str, filename: str, cache_dir: Path) -> Path | None:
    """The file in the hub cache (the revision `main` points at), or None when it is not there."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=str(cache_dir))
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def resolve_hub_gguf(target: str, cache_dir: Path) -> Path:
    """The local file of a hub GGUF target; ModelUnavailableError saying how to get it when it is not cached."""
    parsed = parse_hub_gguf(target)
    if parsed is None:
        return Path(target).expanduser()
    repo_id, filename = parsed
    found = cached_hub_gguf(repo_id, filename, cache_dir)
    if found is None:
        raise ModelUnavailableError(
            f"{filename} from {repo_id} is not downloaded yet (looked in the Hugging Face cache, HF_HOME). Download "
            f"it in the Models tab, or with `hf download {repo_id} {filename}`."
        )
    return found
