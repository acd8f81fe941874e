"""Gradio's documented REST API as a plain HTTP client uses it, over one kept-alive connection:
POST /gradio_api/call/<name> {"data": [...]} for an event id, then GET /gradio_api/call/<name>/<id>
and read the server-sent events to the end. For tests and benchmarks that make many calls."""
from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit


class RestClient:
    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port, self.timeout = parts.hostname or "127.0.0.1", parts.port or 80, timeout
        self._conn: http.client.HTTPConnection | None = None
        self.last_event_id: str | None = None  # also the session hash Gradio gave that call

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        for attempt in (0, 1):  # a kept-alive connection the server closed is reopened once
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                self._conn.request(method, path, body=body, headers=headers)
                response = self._conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def call(self, name: str, data: list[Any]) -> tuple[str, Any]:
        """("complete", outputs) or ("error", payload) from the stream, or ("refused", {"status",
        "body"}) when the POST itself is refused."""
        status, raw = self._request("POST", f"/gradio_api/call/{name}", json.dumps({"data": data}).encode())
        if status != 200:
            return "refused", {"status": status, "body": raw.decode(errors="replace")}
        event_id = self.last_event_id = json.loads(raw)["event_id"]
        status, raw = self._request("GET", f"/gradio_api/call/{name}/{event_id}")
        final: tuple[str, Any] = ("none", raw.decode(errors="replace")[-500:])
        event = ""
        for line in raw.decode(errors="replace").splitlines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                final = (event, json.loads(line[5:]))
        return final

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
