"""A real HTTP server on 127.0.0.1 speaking the OpenAI images API (POST /v1/images/generations with JSON,
POST /v1/images/edits with multipart form data), answering deterministic base64 PNGs, with faults on demand.

    with images_server(require_key=KEY) as server:  # server.base_url, server.requests, server.options
        ...

Generations: a solid image of the requested size whose colour is `colour_for(prompt, seed)`.
Edits: the uploaded image, with the pixels the mask leaves transparent painted that colour (no mask: all).
"""

from __future__ import annotations

import base64
import contextlib
import email.parser
import email.policy
import hashlib
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image


@dataclass
class ImagesOptions:
    require_key: str | None = None  # 401 (quoting the key sent, as OpenAI does) unless it is sent
    fail_first: int = 0  # answer `fail_status` to the first N image requests
    fail_status: int = 500
    retry_after_ms: int | None = 20  # retry-after-ms header on 429/5xx
    slow: float = 0.0  # seconds before answering (the server notices a hang-up and stops)
    answer_url: bool = False  # answer {"url": ...} pointing at this server instead of b64_json
    error_body: dict | None = None  # with fail_first: the JSON error body to send


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    fields: dict[str, Any]  # JSON body, or form fields (str) and files (bytes)


@dataclass
class ImagesServer:
    base_url: str
    options: ImagesOptions
    requests: list[Recorded] = field(default_factory=list)
    hangups: int = 0  # slow requests the client abandoned


def colour_for(prompt: str, seed: Any) -> tuple[int, int, int]:
    digest = hashlib.sha256(f"{prompt}|{seed}".encode()).digest()
    return digest[0], digest[1], digest[2]


def _png_b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        fields[name] = payload if part.get_filename() else payload.decode()
    return fields


@contextlib.contextmanager
def images_server(**options: Any) -> Iterator[ImagesServer]:
    opts = ImagesOptions(**options)
    state = {"image_requests": 0}
    files: dict[str, bytes] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(
            self,
            status: int,
            payload: Any,
            headers: dict[str, str] | None = None,
            content_type: str = "application/json",
        ) -> None:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            with lock:
                server.requests.append(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, {}))
            name = self.path.rsplit("/", 1)[-1]
            if self.path.startswith("/files/") and name in files:
                self._send(200, files[name], content_type="image/png")
            else:
                self._send(404, {"error": {"message": "no such file"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            ctype = self.headers.get("Content-Type", "")
            fields = _parse_multipart(ctype, body) if ctype.startswith("multipart/") else json.loads(body or b"{}")
            with lock:
                server.requests.append(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, fields))
                number = state["image_requests"]
                state["image_requests"] += 1
            sent_key = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if opts.require_key is not None and sent_key != opts.require_key:
                self._send(
                    401,
                    {
                        "error": {
                            "message": f"Incorrect API key provided: {sent_key}.",
                            "type": "invalid_request_error",
                            "code": "invalid_api_key",
                        }
                    },
                )
                return
            if number < opts.fail_first:
                headers = {"retry-after-ms": str(opts.retry_after_ms)} if opts.retry_after_ms is not None else {}
                self._send(
                    opts.fail_status, opts.error_body or {"error": {"message": f"fault {opts.fail_status}"}}, headers
                )
                return
            if opts.slow and self._hung_up_within(opts.slow):
                server.hangups += 1
                return
            if self.path.endswith("/images/generations"):
                image = self._generation(fields)
            elif self.path.endswith("/images/edits"):
                image = self._edit(fields)
            else:
                self._send(404, {"error": {"message": "unknown endpoint"}})
                return
            if isinstance(image, str):
                self._send(400, {"error": {"message": image}})
                return
            if opts.answer_url:
                name = f"{number}.png"
                files[name] = base64.b64decode(_png_b64(image))
                item = {"url": f"{server.base_url.removesuffix('/v1')}/files/{name}"}
            else:
                item = {"b64_json": _png_b64(image)}
            self._send(200, {"created": int(time.time()), "data": [item]})

        def _hung_up_within(self, seconds: float) -> bool:
            """Wait `seconds`, returning early (True) if the client closes the connection."""
            from tests.support.openai_servers import readable

            end = time.monotonic() + seconds
            while time.monotonic() < end:
                if readable(self.connection, 0.02) and not self.connection.recv(1, 2):  # MSG_PEEK: b"" means closed
                    return True
            return False

        @staticmethod
        def _size(fields: dict) -> tuple[int, int]:
            width, height = str(fields.get("size", "64x64")).split("x")
            return int(width), int(height)

        def _generation(self, fields: dict) -> Image.Image | str:
            if not fields.get("prompt"):
                return "prompt is required"
            return Image.new("RGB", self._size(fields), colour_for(fields["prompt"], fields.get("seed")))

        def _edit(self, fields: dict) -> Image.Image | str:
            if "image" not in fields:
                return "image is required"
            source = Image.open(io.BytesIO(fields["image"])).convert("RGB")
            if source.size != self._size(fields):
                return f"image is {source.size}, size says {fields.get('size')}"
            paint = Image.new("RGB", source.size, colour_for(fields["prompt"], fields.get("seed")))
            if "mask" not in fields:
                return paint
            mask = Image.open(io.BytesIO(fields["mask"]))
            if mask.mode != "RGBA" or mask.size != source.size:
                return "mask must be an RGBA PNG the size of the image"
            transparent = mask.getchannel("A").point(lambda a: 255 if a == 0 else 0)
            source.paste(paint, mask=transparent)
            return source

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server = ImagesServer(base_url=f"http://127.0.0.1:{httpd.server_address[1]}/v1", options=opts)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
