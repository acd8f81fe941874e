"""Talking to the Hugging Face hub (or HF_ENDPOINT's mirror) for the model manager: is it reachable, what a repo
holds, and one file's download into the standard hub cache: resumable (the bytes of a cut or cancelled download
stay in `<blob>.incomplete` and a later download continues them with a Range request), verified (size, and SHA-256
against the hub's LFS etag), then placed as blob + snapshot link so huggingface_hub and scan_cache_dir find it."""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from backends.text.embedded import file_sha256
from backends.text.hub_gguf import is_repo_file, is_repo_id
from core.errors import ModelDownloadError

log = logging.getLogger(__name__)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# What the hub sends names files in the cache (blobs/<etag>, snapshots/<commit>/): a hostile or broken hub must not
# name a path. Real etags are a sha256 or a git blob id, commits a git sha1.
_ETAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
DISK_CHECK_BYTES = 16 << 20  # how often (in bytes written) a download looks at the free space again
PROBE_TIMEOUT_S = 3.0
HASH_CHUNK = 8 << 20


class DownloadCancelled(ModelDownloadError):
    """The person cancelled; what arrived is kept and a later download continues from there."""


@dataclass(frozen=True)
class RemoteFile:
    repo_id: str
    filename: str
    size: int
    etag: str  # the LFS file's sha256, or the git blob id of a small file
    commit: str
    url: str  # where the bytes are (the hub's resolve URL, or the CDN it redirects to)
    revision: str = "main"
    send_token: bool = True  # False for a CDN on another host: the token never follows a redirect off the hub

    @property
    def sha256(self) -> str | None:
        return self.etag if _SHA256.match(self.etag) else None


def repo_folder(cache_dir: Path, repo_id: str) -> Path:
    """The repo's folder in the hub cache (huggingface_hub's layout: models--owner--name)."""
    return cache_dir / ("models--" + repo_id.replace("/", "--"))


class Hub:
    """One hub endpoint with its token and cache folder (from Settings: HF_ENDPOINT, HF_TOKEN, HF_HOME)."""

    def __init__(self, endpoint: str, token: str | None, cache_dir: Path) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self.cache_dir = cache_dir

    @property
    def shown_endpoint(self) -> str:
        """The endpoint as messages name it: without any user name or password in it."""
        parts = urlparse(self.endpoint)
        return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl() if "@" in parts.netloc else self.endpoint

    def probe(self, timeout: float = PROBE_TIMEOUT_S) -> str | None:
        """None when the hub answers HTTP at all (any status), else why it cannot be reached."""
        request = urllib.request.Request(f"{self.endpoint}/api/models?limit=1", method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 (the configured hub URL)
                return None
        except urllib.error.HTTPError:
            return None  # it answered
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            return f"the hub is unreachable at {self.shown_endpoint} ({reason})"

    def _headers(self, send_token: bool = True) -> dict[str, str]:
        from huggingface_hub.utils import build_hf_headers

        # None: huggingface_hub's own token (HF_TOKEN, `hf auth login`); False: none at all, for a host off the hub
        return build_hf_headers(token=(self.token or None) if send_token else False)

    def file(self, repo_id: str, filename: str, revision: str = "main") -> RemoteFile:
        """A file's size, etag, commit and download URL (one HEAD request)."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        if not is_repo_id(repo_id) or not is_repo_file(filename):
            raise ModelDownloadError(f"{filename[:200]!r} in {repo_id[:200]!r} is not a file name the manager fetches.")
        url = hf_hub_url(repo_id, filename, revision=revision, endpoint=self.endpoint)
        try:
            meta = get_hf_file_metadata(url, token=self.token or None, endpoint=self.endpoint)
        except Exception as exc:
            raise ModelDownloadError(_hub_error(exc, repo_id, filename)) from None
        if not meta.commit_hash or not meta.etag or meta.size is None:
            raise ModelDownloadError(f"The hub gave no size or version for {filename} in {repo_id}; try again later.")
        if not _ETAG.match(meta.etag) or not _COMMIT.match(meta.commit_hash) or meta.size < 0:
            raise ModelDownloadError(
                f"The hub answered for {filename} in {repo_id} with a version or checksum that is not one "
                "(it may be broken or not a Hugging Face hub); nothing was downloaded."
            )
        # As hf_hub_download does: Xet-backed files are fetched through the resolve URL (it redirects), others from
        # the location the HEAD named; the token goes only to the hub's own host.
        where = url if meta.xet_file_data is not None else meta.location
        same_host = urlparse(where).netloc == urlparse(self.endpoint).netloc
        return RemoteFile(repo_id, filename, meta.size, meta.etag, meta.commit_hash, where, revision, same_host)

    def listing(self, repo_id: str, revision: str = "main") -> dict[str, int]:
        """The repo's files and their sizes."""
        from huggingface_hub import HfApi

        try:
            info = HfApi(endpoint=self.endpoint, token=self.token or None).model_info(
                repo_id, revision=revision, files_metadata=True
            )
        except Exception as exc:
            raise ModelDownloadError(_hub_error(exc, repo_id, None)) from None
        files = {s.rfilename: int(s.size or 0) for s in info.siblings or ()}
        unsafe = [name for name in files if not is_repo_file(name)]
        if unsafe:  # names that would leave the cache: never planned, never fetched
            log.warning("The hub listed %d file names in %s that are not plain paths; skipped", len(unsafe), repo_id)
        return {name: size for name, size in files.items() if name not in unsafe}

    # -- files in the cache ----------------------------------------------------------------------------------

    def blob_path(self, remote: RemoteFile) -> Path:
        return repo_folder(self.cache_dir, remote.repo_id) / "blobs" / remote.etag

    def snapshot_path(self, remote: RemoteFile) -> Path:
        return repo_folder(self.cache_dir, remote.repo_id) / "snapshots" / remote.commit / remote.filename

    def have_bytes(self, remote: RemoteFile) -> int:
        """Bytes of `remote` already here: all of it when its blob is in place, else what a cut download left."""
        blob = self.blob_path(remote)
        if blob.is_file():
            return remote.size
        partial = blob.with_name(blob.name + ".incomplete")
        return min(partial.stat().st_size, remote.size) if partial.is_file() else 0

    def fetch(
        self, remote: RemoteFile, on_bytes: Callable[[int], None], cancel: threading.Event, keep_free: int = 0
    ) -> Path:
        """_fetch, with a cache folder that cannot be written (a full disk, permissions, a file where a folder should
        be) said in words that name no server path."""
        try:
            return self._fetch(remote, on_bytes, cancel, keep_free)
        except OSError as exc:
            raise ModelDownloadError(
                f"{remote.filename} could not be saved in the model cache ({exc.strerror or type(exc).__name__}); "
                "check its disk (HF_HOME), then download again."
            ) from None

    def _fetch(
        self, remote: RemoteFile, on_bytes: Callable[[int], None], cancel: threading.Event, keep_free: int = 0
    ) -> Path:
        """Download `remote` into the cache (continuing a partial file), verify it and link it into its snapshot.
        `on_bytes(n)` gets the bytes of this file on disk as they arrive. Raises DownloadCancelled when `cancel` is
        set (the partial file stays), ModelDownloadError when the bytes are wrong (the partial file is removed), the
        hub sends more than it announced (removed), or the disk is down to `keep_free` bytes (kept)."""
        from huggingface_hub.file_download import http_get

        blob = self.blob_path(remote)
        pointer = self.snapshot_path(remote)
        storage = repo_folder(self.cache_dir, remote.repo_id)
        if not (
            blob.resolve().is_relative_to(storage.resolve()) and pointer.resolve().is_relative_to(storage.resolve())
        ):
            raise ModelDownloadError(f"{remote.filename[:200]!r} would be saved outside the model cache; refused.")
        if not blob.is_file():
            blob.parent.mkdir(parents=True, exist_ok=True)
            partial = blob.with_name(blob.name + ".incomplete")
            if partial.is_file() and partial.stat().st_size > remote.size:
                partial.unlink()  # longer than the file: not ours to continue
            with open(partial, "ab") as raw:
                sink = _CountingSink(raw, on_bytes, cancel, remote.size, lambda: free_bytes(self.cache_dir) < keep_free)
                on_bytes(sink.position)
                try:
                    if sink.position < remote.size:
                        http_get(
                            remote.url,
                            sink,  # type: ignore[arg-type]
                            resume_size=sink.position,
                            headers=self._headers(remote.send_token),
                            expected_size=remote.size,
                            tqdm_class=_Silent,
                        )
                except _TooLong:
                    raw.close()
                    partial.unlink(missing_ok=True)
                    raise ModelDownloadError(
                        f"The hub sent more of {remote.filename} than the {remote.size} bytes it announced; the file "
                        "was deleted and the download stopped. Try again later."
                    ) from None
                except _DiskLow:
                    raise ModelDownloadError(
                        f"The download of {remote.filename} stopped: the disk is down to the space that stays free "
                        f"(STUDIO_MODEL_DISK_RESERVE_MB); {_mb(sink.position)} kept. Free some space, then download "
                        "again to continue."
                    ) from None
                except _Cancelled:
                    raise DownloadCancelled(
                        f"Cancelled; {_mb(sink.position)} of {remote.filename} kept, a new download continues there."
                    ) from None
                except OSError as exc:  # the size check of http_get, a full disk, a dead connection
                    raise ModelDownloadError(
                        f"The download of {remote.filename} stopped ({_first_line(exc)}); "
                        f"{_mb(sink.position)} kept, download again to continue."
                    ) from None
                except Exception as exc:  # the connection failed again and again: keep what came
                    raise ModelDownloadError(
                        f"{_hub_error(exc, remote.repo_id, remote.filename)} {_mb(sink.position)} kept, download "
                        "again to continue."
                    ) from None
            _verify(partial, remote)
            os.replace(partial, blob)
        _link(blob, pointer)
        _write_ref(repo_folder(self.cache_dir, remote.repo_id), remote.revision, remote.commit)
        return pointer


def free_bytes(folder: Path) -> int:
    """Free space on the disk that holds `folder` (or its nearest existing parent)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _verify(path: Path, remote: RemoteFile) -> None:
    size = path.stat().st_size
    if size != remote.size:
        path.unlink(missing_ok=True)
        raise ModelDownloadError(
            f"{remote.filename} arrived with {size} bytes instead of {remote.size}; it was deleted, download again."
        )
    expected = remote.sha256
    if expected is None:
        return  # a small git file: the hub gives no sha256 for it, its size was checked
    actual = file_sha256(path, HASH_CHUNK)
    if actual != expected:
        path.unlink(missing_ok=True)
        raise ModelDownloadError(
            f"{remote.filename} from {remote.repo_id} is corrupt: its SHA-256 is {actual[:12]}…, the hub "
            f"says {expected[:12]}…. The file was deleted; download it again."
        )


def _link(blob: Path, pointer: Path) -> None:
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_file():
        return
    pointer.unlink(missing_ok=True)  # a dangling link
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), pointer)
    except OSError:  # no symlinks on this filesystem: huggingface_hub copies too
        shutil.copyfile(blob, pointer)


def _write_ref(storage: Path, revision: str, commit: str) -> None:
    if revision == commit:
        return
    ref = storage / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    if not ref.is_file() or ref.read_text().strip() != commit:
        ref.write_text(commit)


class _Cancelled(Exception):
    """Raised from inside http_get's loop to stop it; not a network error, so it does not retry."""


class _TooLong(Exception):
    """The server sent more than the size it announced (an endless stream): stop before writing it."""


class _DiskLow(Exception):
    """The disk is down to its reserve (other downloads, other programs): stop before filling it."""


class _CountingSink:
    """The file http_get writes to: counts the bytes on disk, reports them, and stops when cancelled, when the
    server sends more than `limit` bytes, or when `disk_low()` says so (asked every DISK_CHECK_BYTES). The chunk in
    hand is not written after a stop, so the file always ends on a chunk boundary the server sent."""

    def __init__(
        self,
        raw: Any,
        on_bytes: Callable[[int], None],
        cancel: threading.Event,
        limit: int,
        disk_low: Callable[[], bool],
    ) -> None:
        self._raw = raw
        self._on_bytes = on_bytes
        self._cancel = cancel
        self._limit = limit
        self._disk_low = disk_low
        self.position = raw.tell()
        self._checked_at = self.position

    def write(self, chunk: bytes) -> int:
        if self._cancel.is_set():
            raise _Cancelled()
        if self.position + len(chunk) > self._limit:
            raise _TooLong()
        if self.position - self._checked_at >= DISK_CHECK_BYTES:
            self._checked_at = self.position
            if self._disk_low():
                raise _DiskLow()
        written = self._raw.write(chunk)
        self.position += written
        self._on_bytes(self.position)
        return int(written)

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        if self._cancel.is_set():  # a cancelled transfer still in http_get's retries: the file is no longer its own
            raise _Cancelled()
        self.position = self._raw.seek(offset, whence)
        return self.position

    def truncate(self, size: int | None = None) -> int:
        # A server that ignored our Range: http_get starts the file over.
        if self._cancel.is_set():
            raise _Cancelled()
        self._raw.truncate(self.position if size is None else size)
        self._raw.seek(0, os.SEEK_END)
        self.position = self._raw.tell()
        self._on_bytes(self.position)
        return self.position

    def flush(self) -> None:
        self._raw.flush()


class _Silent:
    """A tqdm stand-in that draws nothing (progress comes from the sink)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.n = kwargs.get("initial", 0)

    def update(self, n: float | None = 1) -> None:
        self.n += n or 0

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _hub_error(exc: BaseException, repo_id: str, filename: str | None) -> str:
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    what = f"{filename} in {repo_id}" if filename else repo_id
    if isinstance(exc, GatedRepoError):
        return f"{repo_id} is gated: accept its terms on its hub page, then set HF_TOKEN."
    if isinstance(exc, RepositoryNotFoundError):
        return f"The hub has no model {repo_id} (or it is private: set HF_TOKEN)."
    if isinstance(exc, EntryNotFoundError):
        return f"The hub has no file {what}."
    if isinstance(exc, OfflineModeIsEnabled):
        return "Downloads are off: HF_HUB_OFFLINE is set."
    if isinstance(exc, HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        if status == 401:
            return f"The hub refused the token for {repo_id} (HTTP 401): check HF_TOKEN."
        return f"The hub answered HTTP {status} for {what}; try again later."
    return f"The hub could not be reached for {what} ({_first_line(exc)}); check the connection and try again."
