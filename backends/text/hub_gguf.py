"""The Ollama-style spec `gguf:hf.co/<owner>/<repo>/<file.gguf>`: a GGUF file named by its hub repository and file,
resolved from the local Hugging Face cache only (never downloaded at load: the Models tab downloads it)."""

from __future__ import annotations

from pathlib import Path

from backends.text.base import ModelUnavailableError

HUB_PREFIX = "hf.co/"


def parse_hub_gguf(target: str) -> tuple[str, str] | None:
    """(repo id, file in the repo) of a `hf.co/<owner>/<repo>/<file.gguf>` target; None for a plain path.
    ValueError for a hub target that names no file or no .gguf."""
    if not target.startswith(HUB_PREFIX):
        return None
    parts = target[len(HUB_PREFIX) :].strip("/").split("/")
    if len(parts) < 3 or not all(parts) or not parts[-1].lower().endswith(".gguf"):
        raise ValueError(f"Write a hub GGUF as gguf:hf.co/<owner>/<repo>/<file.gguf>, not gguf:{target!r}")
    return f"{parts[0]}/{parts[1]}", "/".join(parts[2:])


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
            f"{filename} from {repo_id} is not downloaded yet (looked in {cache_dir}). Download it in the Models "
            "tab, or with `hf download " + f"{repo_id} {filename}`" + "."
        )
    return found
