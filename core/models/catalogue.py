"""The catalogue of recommended models (prompts/model_catalogue.toml, or STUDIO_MODEL_CATALOGUE): read and checked
once, each entry turned into the spec a registry runs: a hub download (text, image, transcribe), or an engine that
pip or apt installs (speech voices, the embedded recogniser), named by its spec and described for the Models tab."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from backends.registry import parse_speech_spec, parse_transcribe_spec
from backends.text.hub_gguf import hub_gguf_spec
from core.prompts import PROMPTS_DIR

CATALOGUE_FILE = PROMPTS_DIR / "model_catalogue.toml"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
CatalogueKind = Literal["text", "image", "speech", "transcribe"]
CATALOGUE_KINDS: tuple[CatalogueKind, ...] = ("text", "image", "speech", "transcribe")
# A faster-whisper (CTranslate2) model: what faster_whisper.utils.download_model fetches.
FASTER_WHISPER_PATTERNS = ("config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*")


class CatalogueError(ValueError):
    """The catalogue file is malformed; the message names the entry and the field."""


@dataclass(frozen=True)
class CatalogueModel:
    id: str
    name: str
    kind: CatalogueKind
    repo: str | None  # the hub repository a download fetches; None for an engine installed by pip or apt
    file: str | None  # text: the GGUF file in the repo
    allow_patterns: tuple[str, ...]  # image: the files to fetch; () = chosen from the repo like the backend does
    size_bytes: int | None
    ram_gb: float | None
    licence: str
    good_for: str
    recommended: bool
    engine: str | None = None  # speech/transcribe: the spec of an engine that needs no download ("kokoro", "whisper")

    @property
    def spec(self) -> str:
        if self.engine is not None:
            return self.engine
        assert self.repo is not None
        if self.kind == "text":
            assert self.file is not None
            return hub_gguf_spec(self.repo, self.file)
        if self.kind == "transcribe":
            return f"faster-whisper:{self.repo}"
        return f"diffusers:{self.repo}"


def _field(raw: dict[str, Any], key: str, where: str, kind: type, required: bool = True) -> Any:
    value = raw.get(key)
    if value is None:
        if required:
            raise CatalogueError(f"{where}: '{key}' is missing")
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise CatalogueError(f"{where}: '{key}' must be {kind.__name__}, got {type(value).__name__}")
    return value


def _entry(raw: dict[str, Any], index: int) -> CatalogueModel:
    where = f"model #{index + 1}"
    model_id = _field(raw, "id", where, str)
    if not _ID.match(model_id):
        raise CatalogueError(f"{where}: id {model_id!r} may hold only letters, digits, '.', '_' and '-'")
    where = f"model {model_id!r}"
    kind = _field(raw, "kind", where, str)
    if kind not in CATALOGUE_KINDS:
        raise CatalogueError(f"{where}: kind must be one of {', '.join(CATALOGUE_KINDS)}, not {kind!r}")
    engine = _engine(raw, kind, where)
    repo = _field(raw, "repo", where, str, required=engine is None)
    if engine is not None and repo is not None:
        raise CatalogueError(f"{where}: give 'repo' (a hub download) or 'spec' (an installed engine), not both")
    if repo is not None and not _REPO.match(repo):
        raise CatalogueError(f"{where}: repo must be <owner>/<name>, not {repo!r}")
    file = _field(raw, "file", where, str, required=kind == "text")
    if file is not None and (kind != "text" or not file.lower().endswith(".gguf") or ".." in file.split("/")):
        raise CatalogueError(f"{where}: 'file' is a .gguf file in the repo, and only for text models")
    patterns = _field(raw, "allow_patterns", where, list, required=False) or []
    if not all(isinstance(p, str) and p for p in patterns):
        raise CatalogueError(f"{where}: allow_patterns must be a list of file patterns")
    size_mb = _field(raw, "size_mb", where, float, required=False)
    return CatalogueModel(
        id=model_id,
        name=_field(raw, "name", where, str),
        kind=kind,
        repo=repo,
        file=file,
        allow_patterns=tuple(patterns),
        size_bytes=int(size_mb * 2**20) if size_mb is not None else None,
        ram_gb=_field(raw, "ram_gb", where, float, required=False),
        licence=_field(raw, "licence", where, str, required=False) or "",
        good_for=_field(raw, "good_for", where, str, required=False) or "",
        recommended=bool(_field(raw, "recommended", where, bool, required=False)),
        engine=engine,
    )


def _engine(raw: dict[str, Any], kind: str, where: str) -> str | None:
    """The `spec` of a speech voice or recogniser that pip or apt installs (speech rows must have one)."""
    spec = _field(raw, "spec", where, str, required=kind == "speech")
    if spec is None:
        return None
    if kind not in ("speech", "transcribe"):
        raise CatalogueError(f"{where}: 'spec' is only for speech and transcribe models; give 'repo'")
    try:
        (parse_speech_spec if kind == "speech" else parse_transcribe_spec)(spec)
    except ValueError as exc:
        raise CatalogueError(f"{where}: {exc}") from None
    return spec.strip()


def load_catalogue(path: Path | None = None) -> tuple[CatalogueModel, ...]:
    """The catalogue's models in file order; CatalogueError for a malformed file, duplicate ids or specs."""
    path = path or CATALOGUE_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogueError(f"Cannot read the model catalogue {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"The model catalogue {path} is not valid TOML: {exc}") from None
    rows = data.get("model", [])
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise CatalogueError(f"The model catalogue {path} must hold [[model]] tables")
    models = tuple(_entry(raw, i) for i, raw in enumerate(rows))
    for attr in ("id", "spec"):
        seen: set[str] = set()
        for m in models:
            value = getattr(m, attr)
            if value in seen:
                raise CatalogueError(f"The model catalogue {path} lists {attr} {value!r} twice")
            seen.add(value)
    return models
