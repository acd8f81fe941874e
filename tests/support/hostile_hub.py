"""A hostile Hugging Face hub on 127.0.0.1 for the security tests: a real HTTP server that speaks enough of the hub
for huggingface_hub (model info with siblings, HEAD and GET of `/<repo>/resolve/<rev>/<file>`) and lies on purpose:
an ETag or commit with `../` in it, file names in a listing that climb out of the cache, a size header smaller than
the stream, an endless stream, a redirect to file:// or another host. Every request is logged with its headers."""

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
from urllib.parse import unquote, urlparse

from tests.support.ports import free_port

ENDLESS_CAP = 96 << 20  # what an endless stream sends at most in a test run


@dataclass
class HostileHub:
    """One repo, `repo_id`, whose files are `files` (name -> bytes); the knobs below make the hub lie."""

    repo_id: str = "evil-org/model"
    files: dict[str, bytes] = field(default_factory=dict)
    listed: list[str] = field(default_factory=list)  # extra names in the listing (served with `payload`)
    payload: bytes = b"written by the hostile hub\n"
    etag: str | None = None  # served as every file's ETag / X-Linked-Etag instead of its sha256
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    size: int | None = None  # X-Linked-Size of every file instead of the real one
    endless: bool = False  # GET bodies never end (no Content-Length), a chunk every few ms
    location: str | None = None  # HEAD answers 302 to this URL (a CDN, file://, another host)
    get_location: str | None = None  # GET (not HEAD) answers 302 to this URL: a redirect only the download sees
    delay_s: float = 0.0  # GET waits this long before its body: a download that stays under way
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (method, path, headers)

    def __post_init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.streamed = 0  # bytes sent by endless streams
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="hostile-hub", daemon=True)

    def body(self, name: str) -> bytes:
        return self.files.get(name, self.payload)

    def names(self) -> list[str]:
        return [*self.files, *self.listed]


@contextmanager
def hostile_hub(**knobs: object) -> Iterator[HostileHub]:
    hub = HostileHub(**knobs)  # type: ignore[arg-type]
    hub._thread.start()
    try:
        yield hub
    finally:
        hub._server.shutdown()
        hub._server.server_close()
        hub._thread.join(5)


def _handler_for(hub: HostileHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _json(self, data: object, status: int = 200) -> None:
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(raw)

        def _serve(self, body: bool) -> None:
            path = unquote(urlparse(self.path).path)
            hub.requests.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
            if path.startswith("/api/models/"):
                siblings = [{"rfilename": n, "size": len(hub.body(n))} for n in hub.names()]
                return self._json({"id": hub.repo_id, "sha": hub.commit, "siblings": siblings, "private": False})
            if path.startswith("/api/"):
                return self._json([])  # the probe
            match = re.match(r"^/[^/]+/[^/]+/resolve/[^/]+/(.+)$", path)
            name = match.group(1) if match else path.lstrip("/")
            data = hub.body(name)
            digest = hashlib.sha256(data).hexdigest()
            headers = {
                "X-Repo-Commit": hub.commit,
                "ETag": f'"{hub.etag or digest}"',
                "X-Linked-Etag": f'"{hub.etag or digest}"',
                "X-Linked-Size": str(hub.size if hub.size is not None else len(data)),
                "Accept-Ranges": "bytes",
            }
            if hub.location is not None and self.command == "HEAD":
                self.send_response(302)
                for k, v in {**headers, "Location": hub.location}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if body and hub.get_location is not None:
                self.send_response(302)
                self.send_header("Location", hub.get_location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if body and hub.delay_s:
                time.sleep(hub.delay_s)
            self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            if hub.endless and body:
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                chunk = b"x" * (64 << 10)
                deadline = time.monotonic() + 30  # bounded for the test run; a real attacker would not stop
                try:
                    while time.monotonic() < deadline and hub.streamed < ENDLESS_CAP:
                        self.wfile.write(chunk)
                        hub.streamed += len(chunk)
                except OSError:
                    return  # the client hung up
                return
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler
