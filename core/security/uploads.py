"""Files a caller may hand to the app: only what that caller uploaded through the upload route,
checked before anything opens it, and read with the size cap enforced while reading.

The HTTP edge records each upload under the caller that sent it; every file input of every endpoint
(images, masks, documents, and any added later) resolves its value here. A server path, a file of
someone else's, a link, a folder, a FIFO or a device never gets past `UploadRegistry.resolve`."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from core.errors import InputError


class UploadError(InputError):
    """An input file that is not an upload of this caller's (or is gone, or too big). `code` says which:
    "refused", "not_found", "not_a_file", "too_large"."""

    def __init__(self, message: str, code: str = "refused") -> None:
        super().__init__(message)
        self.code = code


def _path_of(value: Any, what: str) -> str:
    """The path string in what a client sends for a file: a FileData dict/object or a plain string."""
    path = value.get("path") if isinstance(value, dict) else getattr(value, "path", value)
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or not path.strip():
        raise UploadError(f"{what} must be a file upload of yours (gradio_client: handle_file(path)).")
    if "\0" in path or len(path) > 4096:
        raise UploadError(f"{what} must be a file upload of yours (gradio_client: handle_file(path)).")
    return path


class UploadRegistry:
    """Which caller uploaded which file, for `ttl_s` seconds (the upload cache is cleaned on the same
    clock). Bounded: the oldest records go first."""

    def __init__(
        self,
        root: Path,
        max_bytes: int,
        ttl_s: float = 24 * 3600.0,
        max_records: int = 200_000,
        max_held_bytes: int | None = None,
    ) -> None:
        self.root = Path(os.path.realpath(root))
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        # What one caller may have waiting in the upload folder at once (used files are released).
        self.max_held_bytes = max_held_bytes if max_held_bytes is not None else 10 * max_bytes
        # (caller, path) -> (when, size, uploads not yet used): the same caller may upload equal content
        # again while a run of the earlier copy is still finishing; that run's release must not take it.
        self._records: OrderedDict[tuple[str, str], tuple[float, int, int]] = OrderedDict()
        self._holders: dict[str, set[str]] = {}  # path -> callers holding it
        self._max = max_records
        self._lock = threading.Lock()

    def _drop(self, key: tuple[str, str]) -> None:
        if self._records.pop(key, None) is not None:
            holders = self._holders.get(key[1])
            if holders is not None:
                holders.discard(key[0])
                if not holders:
                    del self._holders[key[1]]

    def record(self, caller: str, paths: Iterable[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for path in paths:
                if isinstance(path, str):
                    real = os.path.realpath(path)
                    try:
                        size = os.lstat(real).st_size
                    except OSError:
                        continue
                    key = (caller, real)
                    old = self._records.get(key)
                    live = old[2] if old is not None and now - old[0] < self.ttl_s else 0
                    self._drop(key)
                    self._records[key] = (now, size, live + 1)
                    self._holders.setdefault(real, set()).add(caller)
            while len(self._records) > self._max:
                self._drop(next(iter(self._records)))

    def held_bytes(self, caller: str) -> int:
        """Bytes of uploads `caller` has waiting (recorded, not yet used or expired)."""
        now = time.monotonic()
        with self._lock:
            return sum(
                size for (who, _), (when, size, _) in self._records.items() if who == caller and now - when < self.ttl_s
            )

    def adopt(self, caller: str, source: Path) -> Path:
        """A private copy of one of the caller's own stored files (a gallery image sent back to an input)
        in the upload folder, recorded as theirs: inputs only ever take uploads."""
        import secrets
        import shutil

        self._sweep_copies()
        folder = self.root / f"studio-{secrets.token_hex(12)}"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / Path(source).name
        shutil.copyfile(source, target)
        self.record(caller, [str(target)])
        return target

    def _sweep_copies(self) -> None:
        """Delete adopted copies older than the upload lifetime (Gradio's cache cleaning never saw them)."""
        import shutil

        cutoff = time.time() - self.ttl_s
        for folder in self.root.glob("studio-*"):
            try:
                if folder.is_dir() and not folder.is_symlink() and folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                continue

    def release(self, caller: str, path: str) -> bool:
        """`caller` is done with `path`. True when no other caller holds it either (so it may be
        deleted): equal files uploaded by two people share one stored path, and one person's finished
        run must not take the other's file away."""
        real = os.path.realpath(path)
        now = time.monotonic()
        with self._lock:
            entry = self._records.get((caller, real))
            if entry is not None and entry[2] > 1:
                self._records[(caller, real)] = (entry[0], entry[1], entry[2] - 1)
            else:
                self._drop((caller, real))
            return not any(now - self._records[(other, real)][0] < self.ttl_s for other in self._holders.get(real, ()))

    def _owns(self, caller: str, real: str) -> bool:
        with self._lock:
            entry = self._records.get((caller, real))
        return entry is not None and time.monotonic() - entry[0] < self.ttl_s

    def resolve(self, caller: str, value: Any, what: str = "The file") -> Path:
        """The checked path of an upload `caller` made. Nothing is opened here; only `lstat` is asked."""
        raw = _path_of(value, what)
        real = os.path.realpath(raw)
        refused = UploadError(
            f"{what} must be a file upload of yours (gradio_client: handle_file(path)), not a path on the server."
        )
        if not Path(real).is_relative_to(self.root) or not self._owns(caller, real):
            raise refused  # one answer whatever the path is: nothing about the server leaks
        try:
            info = os.lstat(real)
        except OSError:
            raise UploadError(
                f"{what} is no longer on the server (uploads are kept {self.ttl_s / 3600:g} h); upload it again.",
                "not_found",
            ) from None
        if not stat.S_ISREG(info.st_mode):
            raise refused
        if info.st_size > self.max_bytes:
            raise UploadError(
                f"{what} is {info.st_size / 1e6:.1f} MB; the limit is {self.max_bytes / 1e6:.0f} MB.", "too_large"
            )
        return Path(real)


def read_capped(path: str | os.PathLike, max_bytes: int, what: str = "The file") -> bytes:
    """Read a regular file, never more than `max_bytes` (+1 to tell): a FIFO or a device is refused
    without blocking, and a file that grows while read is cut off at the cap."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise UploadError(f"{what} was not found (upload it again).", "not_found") from None
    except OSError:
        raise UploadError(f"{what} could not be read; upload it again.", "not_a_file") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UploadError(f"{what} is not a regular file.", "not_a_file")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise UploadError(f"{what} is larger than the limit of {max_bytes / 1e6:.0f} MB.", "too_large")
        return b"".join(chunks)
    finally:
        os.close(fd)
