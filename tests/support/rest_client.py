"""Gradio's documented REST API as a plain HTTP client uses it: POST /gradio_api/call/<name> {"data": [...]} for an
event id, then GET /gradio_api/call/<name>/<id> and read the server-sent events to the end. RestClient does it over
one kept-alive connection (for tests and benchmarks that make many calls); call_by_name fills in the parameters."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

import httpx


def final_event(stream: str) -> tuple[str, Any] | None:
    """The last "complete" or "error" event of a call's server-sent event stream with its JSON data, or None."""
    final: tuple[str, Any] | None = None
    event = ""
    for line in stream.splitlines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:") and event in ("complete", "error"):
            data = line[5:].strip()
            final = (event, json.loads(data) if data else None)
    return final


def call_by_name(base_url: str, name: str, values: dict[str, Any], timeout: float = 300.0) -> tuple[str, Any]:
    """Call endpoint `name` with every parameter in the order /gradio_api/info lists them (the value in `values`
    under the parameter's name, else its default): ("complete" | "error", data) of the stream's end."""
    base = base_url.rstrip("/")
    info = httpx.get(f"{base}/gradio_api/info", timeout=30).json()["named_endpoints"][f"/{name}"]
    body = {"data": [values.get(p["parameter_name"], p.get("parameter_default")) for p in info["parameters"]]}
    answer = httpx.post(f"{base}/gradio_api/call/{name}", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    stream = httpx.get(f"{base}/gradio_api/call/{name}/{answer.json()['event_id']}", timeout=timeout).text
    final = final_event(stream)
    assert final is not None, stream[-500:]
    return final


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
        stream = raw.decode(errors="replace")
        return final_event(stream) or ("none", stream[-500:])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
