"""The MCP server's parts without a server: the docstring reader, the data: URI decoder, the guard's relay check;
and, against a real app process, the HTTP edge's caps on the MCP route (rate limit, body size)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from core.security.tokens import TokenStore
from core.security.uploads import UploadRegistry
from tests.support.app_process import app_process
from ui.mcp import ToolInputError, _decoded_file, _files_in, docstring
from ui.server.guard import RELAY_HEADER, Guard, StudioGuard


def test_the_docstring_reader_keeps_continuation_lines_and_the_returns():
    def speak(text: str, model: str = "") -> str:
        """Speak `text` aloud.
        Streams a status.

        Args:
            text: what to say.
            model: a configured voice model ("kokoro", "espeak"); empty for the
                default.
        Returns:
            (the audio file, a short status).
        """
        return text

    summary, params = docstring(speak)
    assert summary == "Speak `text` aloud. Streams a status.\nReturns: (the audio file, a short status)."
    assert params == {
        "text": "what to say.",
        "model": 'a configured voice model ("kokoro", "espeak"); empty for the default.',
    }


def test_a_data_uri_becomes_a_private_file_and_nothing_else_does(tmp_path):
    folder = tmp_path / "in"
    path = Path(_decoded_file("data:audio/wav;base64," + base64.b64encode(b"RIFF1234").decode(), folder, 1000))
    assert path.read_bytes() == b"RIFF1234" and path.parent == folder and path.suffix == ".wav"
    assert folder.stat().st_mode & 0o777 == 0o700
    for value, says in [
        ("http://169.254.169.254/latest/meta-data", "not a URL"),
        ("file:///etc/passwd", "not a URL"),
        ("/etc/passwd", "not a path"),
        ("../../studio.sqlite3", "not a path"),
        ("data:text/plain,hello", "must be base64"),
        ("data:audio/wav;base64,@@@@", "not valid base64"),
        ("data:audio/wav;base64,", "holds no bytes"),
        ("data:audio/wav;base64," + "A" * 2000, "too large"),
    ]:
        with pytest.raises(ToolInputError, match=says):
            _decoded_file(value, folder, 1000)
    assert [p.name for p in folder.iterdir()] == [path.name]  # nothing written for a refused one


def test_file_parameters_take_one_data_uri_or_a_list(tmp_path):
    uri = "data:text/plain;base64," + base64.b64encode(b"hello").decode()
    positions = [["file", "anyOf", 0], ["file", "anyOf", 1, "items"]]
    out = _files_in({"file": [uri, uri], "text": uri}, positions, tmp_path, 1000)
    assert out["text"] == uri  # not a file parameter: passed on as text
    assert [Path(f["path"]).read_bytes() for f in out["file"]] == [b"hello", b"hello"]
    with pytest.raises(ToolInputError):
        _files_in({"file": ["https://example.com/a.pdf"]}, positions, tmp_path, 1000)


def test_the_relay_is_believed_only_from_this_machine_with_this_processs_secret(tmp_path):
    guard = Guard(tokens=TokenStore(tmp_path / "t.sqlite3"), uploads=UploadRegistry(tmp_path / "up", 2**20), auth=True)
    edge = StudioGuard(lambda *a: None, guard)
    who = json.dumps(["user:ann", "user:ann", "203.0.113.9"])

    def relayed(value: str, address: str):
        return edge._relayed({RELAY_HEADER: value.encode()}, address)

    assert relayed(f"{guard.relay_secret} {who}", "127.0.0.1") == ("user:ann", "user:ann", "203.0.113.9")
    assert relayed(f"{guard.relay_secret} {who}", "203.0.113.9") is None  # not from this machine
    assert relayed(f"{guard.relay_secret[:-1]}x {who}", "127.0.0.1") is None  # a guessed secret
    assert relayed(f"{guard.relay_secret} not json", "127.0.0.1") is None
    assert relayed(f"{guard.relay_secret} [1, 2, 3]", "127.0.0.1") is None
    assert edge._relayed({}, "127.0.0.1") is None


def test_the_mcp_route_meets_the_rate_limit_and_the_body_cap(tmp_path):
    with app_process(tmp_path, {"STUDIO_RATE_LIMIT": "6", "STUDIO_MAX_UPLOAD_MB": "1"}) as proc:
        url = f"http://127.0.0.1:{proc.port}/gradio_api/mcp/"
        head = {"accept": "application/json, text/event-stream"}
        with httpx.Client(timeout=30) as http:
            # a body past the cap (the larger of 8 MB and a file's base64 at the upload limit) is refused before Gradio
            big = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"x": "A" * (9 * 2**20)}}
            assert http.post(url, json=big, headers=head).status_code == 413
            listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
            codes = [http.post(url, json=listing, headers=head).status_code for _ in range(10)]
        assert codes[0] == 200 and 429 in codes  # six a minute, then "Busy" with Retry-After
