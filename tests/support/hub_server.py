"""A Hugging Face hub on 127.0.0.1 for tests: a real HTTP server (thread) that speaks what huggingface_hub 2.4 uses
to download: model info with siblings (`/api/models/<repo>[/revision/<rev>]`), HEAD and GET of
`/<repo>/resolve/<rev>/<file>` with X-Repo-Commit, ETag/X-Linked-Etag (sha256 for LFS files), X-Linked-Size,
Content-Length and Range/206. It serves real files from folders. Knobs for tests: cut a file's stream after N bytes
(once), serve a file's bytes corrupted (same size, wrong hash), advertise a huge size, throttle, and a log of every
request with its Range header."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

from backends.text.embedded import file_sha256
from tests.support.ports import free_port

LFS_SUFFIXES = (".gguf", ".safetensors", ".bin", ".pt", ".onnx")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class HubFile:
    data_path: Path
    size: int
    sha256: str
    git_sha: str
    lfs: bool


@dataclass
class HubLog:
    """What the server saw: (method, path, Range header or None) in order."""

    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    authorization: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Authorization header)

    def gets(self, filename: str) -> list[str | None]:
        """The Range headers of the GETs of a file (None for a whole-file GET)."""
        return [r for m, p, r in self.requests if m == "GET" and p.endswith("/" + filename)]


class LocalHub:
    """`add_repo(repo_id, folder)` serves every file under `folder` as that repo's `main` revision."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, HubFile]] = {}
        self.commits: dict[str, str] = {}
        self.log = HubLog()
        self.cut_after: dict[str, int] = {}  # filename -> bytes sent before the connection drops (once)
        self.corrupt: set[str] = set()  # filenames served with one byte flipped
        self.advertised_size: dict[str, int] = {}  # filename -> size claimed in headers and model info
        self.bytes_per_s: float | None = None  # throttle every body
        self.cdn_redirect = False  # LFS files answer 302 to http://localhost:<port>/cdn/...: another host, as a CDN
        self._lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-hub", daemon=True)

    def add_repo(self, repo_id: str, folder: Path, only: list[str] | None = None) -> str:
        files: dict[str, HubFile] = {}
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            if not path.is_file() or (only is not None and name not in only):
                continue
            data = path.read_bytes() if path.stat().st_size < (64 << 20) else None
            sha256 = hashlib.sha256(data).hexdigest() if data is not None else file_sha256(path)
            git = hashlib.sha1(b"blob %d\0" % path.stat().st_size + (data or b"")).hexdigest()
            lfs = name.endswith(LFS_SUFFIXES) or path.stat().st_size > 10_000
            files[name] = HubFile(path, path.stat().st_size, sha256, git, lfs)
        self.repos[repo_id] = files
        self.commits[repo_id] = hashlib.sha1(
            (repo_id + "".join(f"{n}:{f.sha256}" for n, f in files.items())).encode()
        ).hexdigest()
        return self.commits[repo_id]

    def start(self) -> LocalHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def take_cut(self, filename: str) -> int | None:
        with self._lock:
            return self.cut_after.pop(filename, None)


@contextmanager
def local_hub() -> Iterator[LocalHub]:
    hub = LocalHub().start()
    try:
        yield hub
    finally:
        hub.stop()


def _handler_for(hub: LocalHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"error": message}).encode()
            self._send(
                status, {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message}, body
            )

        def _serve(self, body: bool) -> None:
            path = unquote(urlparse(self.path).path)
            hub.log.requests.append((self.command, path, self.headers.get("Range")))
            hub.log.authorization.append((path, self.headers.get("Authorization")))
            if path.startswith("/api/models"):
                return self._api(path)
            cdn = re.match(r"^/cdn/([^/]+/[^/]+)/([0-9a-f]{40})/(.+)$", path)
            if cdn is not None and cdn.group(1) in hub.repos and cdn.group(3) in hub.repos[cdn.group(1)]:
                return self._file(cdn.group(1), cdn.group(3), hub.repos[cdn.group(1)][cdn.group(3)], body)
            match = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
            if match is None:
                return self._error(404, "EntryNotFound", f"no route {path}")
            repo_id, revision, filename = match.groups()
            files = hub.repos.get(repo_id)
            if files is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            if revision not in ("main", hub.commits[repo_id]):
                return self._error(404, "RevisionNotFound", f"Revision {revision} not found")
            entry = files.get(filename)
            if entry is None:
                return self._error(404, "EntryNotFound", f"{filename} not found in {repo_id}")
            if hub.cdn_redirect and entry.lfs:
                size = hub.advertised_size.get(filename, entry.size)
                location = f"http://localhost:{hub.port}/cdn/{repo_id}/{hub.commits[repo_id]}/{filename}"
                return self._send(
                    302,
                    {
                        "Location": location,
                        "X-Repo-Commit": hub.commits[repo_id],
                        "X-Linked-Etag": f'"{entry.sha256}"',
                        "X-Linked-Size": str(size),
                        "ETag": f'"{entry.git_sha}"',
                    },
                )
            self._file(repo_id, filename, entry, body)

        def _api(self, path: str) -> None:
            match = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?$", path)
            if match is None:
                return self._send(200, {"Content-Type": "application/json"}, b"[]")  # a listing: the probe
            repo_id = match.group(1)
            files = hub.repos.get(repo_id)
            if files is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            siblings = []
            for name, f in files.items():
                size = hub.advertised_size.get(name, f.size)
                row: dict[str, object] = {"rfilename": name, "size": size, "blobId": f.git_sha}
                if f.lfs:
                    row["lfs"] = {"size": size, "sha256": f.sha256, "pointerSize": 134}
                siblings.append(row)
            info = {
                "id": repo_id,
                "modelId": repo_id,
                "sha": hub.commits[repo_id],
                "siblings": siblings,
                "private": False,
            }
            self._send(200, {"Content-Type": "application/json"}, json.dumps(info).encode())

        def _file(self, repo_id: str, filename: str, entry: HubFile, body: bool) -> None:
            size = hub.advertised_size.get(filename, entry.size)
            headers = {
                "X-Repo-Commit": hub.commits[repo_id],
                "ETag": f'"{entry.sha256 if entry.lfs else entry.git_sha}"',
                "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream",
            }
            if entry.lfs:
                headers["X-Linked-Etag"] = f'"{entry.sha256}"'
                headers["X-Linked-Size"] = str(size)
            start, end, status = 0, size - 1, 200
            wanted = self.headers.get("Range")
            if wanted and (m := _RANGE.match(wanted.strip())):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                if start >= size:
                    headers["Content-Range"] = f"bytes */{size}"
                    return self._send(416, headers)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            length = end - start + 1
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if not body:
                return
            cut = hub.take_cut(filename)
            sent = 0
            with open(entry.data_path, "rb") as fh:
                fh.seek(start)
                while sent < length:
                    chunk = fh.read(min(256 << 10, length - sent))
                    if not chunk:
                        break  # an advertised size larger than the file: the stream ends short
                    if filename in hub.corrupt:
                        chunk = bytes(b ^ 0xFF for b in chunk[:1]) + chunk[1:]
                    if cut is not None and sent + len(chunk) > cut:
                        self.wfile.write(chunk[: max(0, cut - sent)])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)  # the cut: the client sees a body shorter than promised
                        return
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    if hub.bytes_per_s:
                        time.sleep(len(chunk) / hub.bytes_per_s)
            if sent < length:
                self.close_connection = True

    return Handler
