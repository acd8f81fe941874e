"""The studio as an MCP server (launch(mcp_server=True): Gradio mounts it at /gradio_api/mcp, streamable HTTP, and
/gradio_api/mcp/sse). Gradio turns every named API endpoint into a tool; `McpTools` (ASGI, behind the HTTP guard)
narrows that to the studio's API (`TOOLS`), adds the fixed values and bounds to the tools' input schemas, takes
files only as data: URIs (a URL would make the server fetch it, a path would read the server's disk), and hands
files back as the caller's own links plus their bytes (an image or audio content item).

Calls reach the endpoints through Gradio's loopback client with the MCP request's headers; the guard passes the
caller along with them (ui/server/guard.py, the relay header), so a tool call acts for the token's user (or the
caller's address) and meets the same caps and quotas as a REST call."""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import logging
import mimetypes
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ui.server.asgi import Receive, Scope, Send

log = logging.getLogger(__name__)

MCP_PATH = "/gradio_api/mcp"
RELAY = "x-studio-relay"  # ui/server/guard.py RELAY_HEADER
# The named endpoints that are tools (a tool's name is its endpoint's); UI events never are.
TOOLS = ("chat", "write", "condense", "ask", "generate_image", "speak", "transcribe")


def _refinements() -> dict[str, dict[str, dict[str, Any]]]:
    """Fixed values and bounds the endpoints check (from core, so they cannot drift), stated in the schema so an
    agent sends what works."""
    from core.chat.turns import MAX_NEW_TOKENS
    from core.condenser.prompts import load_condense_prompts
    from core.images.request import MAX_BATCH, MIN_STRENGTH
    from core.speech.service import MAX_SPEED, MIN_SPEED
    from core.speech.store import AUDIO_FORMATS

    condense = load_condense_prompts()
    sampling = {"temperature": {"minimum": 0, "maximum": 2}, "top_p": {"minimum": 0, "maximum": 1}}
    return {
        "chat": {**sampling, "message": {"minLength": 1}, "max_new_tokens": {"minimum": 1, "maximum": MAX_NEW_TOKENS}},
        "write": {**sampling, "topic": {"minLength": 1}, "length": {"minimum": 0}},
        "condense": {"length": {"enum": list(condense.lengths)}, "form": {"enum": list(condense.forms)}},
        "ask": {"question": {"minLength": 1}},
        "generate_image": {
            "mode": {"enum": ["", "txt2img", "img2img", "sketch", "inpaint", "random"]},
            "batch_count": {"minimum": 1, "maximum": MAX_BATCH},
            "strength": {"minimum": MIN_STRENGTH, "maximum": 1},
        },
        "speak": {
            "text": {"minLength": 1},
            "speed": {"minimum": MIN_SPEED, "maximum": MAX_SPEED},
            "format": {"enum": list(AUDIO_FORMATS)},
        },
        "transcribe": {},
    }


_FILE_FORMAT = "a file as a data: URI (data:<mime type>;base64,<bytes>)"
_FILE_NOTE = (
    " Files go in as data: URIs (data:<mime type>;base64,<the file's bytes>); URLs and paths are refused."
    " Files come back as links only this caller can fetch, with an image's or audio's bytes alongside."
)
# What mimetypes does not know (or names otherwise): the suffix the document and audio readers expect.
_SUFFIXES = {
    "audio/wav": ".wav",
    "audio/wave": ".wav",
    "audio/ogg": ".ogg",
    "audio/mp3": ".mp3",
    "text/markdown": ".md",
}
_TEMP_TTL_S = 900.0  # a decoded input file is uploaded at once; older ones left behind are swept


class ToolInputError(ValueError):
    """A tool argument refused before any call: MCP reports it to the client as the tool's error."""


_HANDLE_FILE = re.compile(r",? ?(sent with gradio_client\.handle_file\(path\)|\(handle_file\(path\)\))")


def docstring(fn: Any) -> tuple[str, dict[str, str]]:
    """(the summary, each argument's description) from a Google-style docstring, continuation lines included
    (Gradio's own reader keeps only an argument's first line)."""
    text = inspect.getdoc(fn) or ""
    summary, params, section, current = [], {}, "", None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Returns:", "Raises:", "Yields:"):
            section, current = stripped, None
            continue
        if section == "Args:":
            found = re.match(r"^(\w+)(?: \([^)]*\))?: (.*)$", stripped)
            if found and not line.startswith("        "):
                current = found.group(1)
                params[current] = found.group(2)
            elif current and stripped:
                params[current] += " " + stripped
        elif section == "Returns:":
            if stripped:
                summary.append(("Returns: " if not summary or not summary[-1].startswith("Returns") else "") + stripped)
        elif stripped or summary:
            summary.append(stripped)
    body = " ".join(s for s in summary if s).replace(" Returns: ", "\nReturns: ")
    return body, {k: _HANDLE_FILE.sub(" as a data: URI", v).strip() for k, v in params.items()}


def _refined(tool: str, schema: dict[str, Any], refinements: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    props = schema.get("properties", {})
    for prop in props.values():
        _plain_file(prop)
    for name, extra in refinements.get(tool, {}).items():
        if name in props and isinstance(props[name], dict):
            props[name] = {**props[name], **extra}
    for prop in props.values():
        if isinstance(prop, dict) and "Gradio File Input" in str(prop.get("format", "")):
            prop["format"] = _FILE_FORMAT
        elif isinstance(prop, dict):  # a list of files: the items are the files
            for arm in prop.get("anyOf", []) or []:
                items = arm.get("items") if isinstance(arm, dict) else None
                if isinstance(items, dict) and "Gradio File Input" in str(items.get("format", "")):
                    items["format"] = _FILE_FORMAT
                if isinstance(arm, dict) and "Gradio File Input" in str(arm.get("format", "")):
                    arm["format"] = _FILE_FORMAT
    return schema


def _plain_file(node: Any) -> None:
    """A file parameter is a string (a data: URI): drop the FileData fields Gradio leaves in its schema."""
    if isinstance(node, dict):
        if "Gradio File Input" in str(node.get("format", "")):
            node.pop("required", None)
        for value in node.values():
            _plain_file(value)
    elif isinstance(node, list):
        for value in node:
            _plain_file(value)


def _decoded_file(value: str, folder: Path, max_bytes: int) -> str:
    """A data: URI written to a private temporary file; its path (the loopback client uploads it as the caller's)."""
    if not value.startswith("data:"):
        what = "a URL" if value.startswith(("http://", "https://", "ftp://", "file:")) else "a path or text"
        raise ToolInputError(
            f"A file argument must be the file itself as a data: URI (data:<mime type>;base64,<bytes>), not {what}: "
            "the server does not fetch URLs or read its own files for you."
        )
    head, sep, payload = value.partition(",")
    if not sep or not head.endswith(";base64"):
        raise ToolInputError("A file's data: URI must be base64 (data:<mime type>;base64,<bytes>).")
    if len(payload) > max_bytes * 4 // 3 + 8:
        raise ToolInputError(f"A file is too large: the limit is {max_bytes // 2**20} MB.")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ToolInputError("A file's data: URI is not valid base64.") from None
    if not data:
        raise ToolInputError("A file's data: URI holds no bytes.")
    mime = head[5:-7].split(";")[0].strip().lower()
    suffix = _SUFFIXES.get(mime) or mimetypes.guess_extension(mime) or ".bin"
    if not suffix.replace(".", "").isalnum():
        suffix = ".bin"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = time.time()
    for old in folder.iterdir():
        try:
            if now - old.stat().st_mtime > _TEMP_TTL_S:
                old.unlink()
        except OSError:
            pass
    fd, path = tempfile.mkstemp(prefix="input-", suffix=suffix, dir=folder)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path


def _files_in(value: Any, positions: list[list[str | int]], folder: Path, max_bytes: int) -> Any:
    """Gradio's convert_strings_to_filedata, with data: URIs only (never a URL or a server path). A file parameter
    (a position in its schema, `[name]` or `[name, "anyOf", ...]`) takes one data: URI or a list of them."""
    from gradio_client import handle_file

    out = dict(value or {})
    for name in {p[0] for p in positions if p} & set(out):
        node = out[name]
        if isinstance(node, str):
            out[name] = handle_file(_decoded_file(node, folder, max_bytes))
        elif isinstance(node, list):
            out[name] = [handle_file(_decoded_file(v, folder, max_bytes)) if isinstance(v, str) else v for v in node]
    return out


def _is_file(value: Any) -> bool:
    meta = value.get("meta") if isinstance(value, dict) else None
    return isinstance(meta, dict) and meta.get("_type") == "gradio.FileData" and isinstance(value.get("path"), str)


def _files_out(server: Any, links: Any, data: Any, root_url: str) -> list:
    """Every result as text (JSON where it is not a string, files as their links), then each file's bytes as an
    image or audio content item: read through the caller's own link, never from a path the reply names."""
    types = server.types
    request = server.mcp_server.request_context.request
    who = request.headers.get("x-studio-caller", "") if request is not None else ""
    files: list[dict] = []

    def plain(node: Any) -> Any:
        if _is_file(node):
            files.append(node)
            url = node.get("url") or ""
            return url if url.startswith("http") else f"{root_url}{url}" if url else node["path"]
        if isinstance(node, dict):
            return {k: plain(v) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [plain(v) for v in node]
        return node

    out: list = []
    for value in data:
        shown = plain(value)
        out.append(types.TextContent(type="text", text=shown if isinstance(shown, str) else json.dumps(shown)))
    for item in files:
        path = links.resolve(who, item["path"]) if who else None
        if path is None:
            continue
        mime = item.get("mime_type") or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        blob = base64.b64encode(path.read_bytes()).decode("ascii")
        if mime.startswith("image/"):
            out.append(types.ImageContent(type="image", data=blob, mimeType=mime))
        elif mime.startswith("audio/"):
            out.append(types.AudioContent(type="audio", data=blob, mimeType=mime))
    return out


class LoopbackClients:
    """One gradio_client per MCP caller, for Gradio's loopback calls. Gradio keeps one client for every caller, made
    without their headers, and that client's own requests (its config, uploads, the queue's stream) would go as
    nobody's: refused under logins, and an upload recorded for the loopback address instead of the caller. Each
    client here sends the caller's relay header (ui/server/guard.py) on every request; idle ones are closed."""

    def __init__(self, max_clients: int = 32, idle_s: float = 600.0) -> None:
        self.max_clients, self.idle_s = max_clients, idle_s
        self._clients: dict[str, tuple[Any, float]] = {}
        self._lock = threading.Lock()

    def get(self, url: str, relay: str) -> Any:
        from gradio_client import Client

        now = time.monotonic()
        with self._lock:
            found = self._clients.get(relay)
            if found is not None:
                self._clients[relay] = (found[0], now)
                return found[0]
        client = Client(
            url,
            download_files=False,
            verbose=False,
            analytics_enabled=False,
            ssl_verify=False,
            _skip_components=False,
            headers={RELAY: relay, "x-gradio-user": "mcp"},
        )
        closing = []
        with self._lock:
            self._clients[relay] = (client, now)
            for key, (old, used) in sorted(self._clients.items(), key=lambda kv: kv[1][1]):
                if key != relay and (now - used > self.idle_s or len(self._clients) > self.max_clients):
                    closing.append(old)
                    del self._clients[key]
        for old in closing:
            old.close()
        return client


def prepare(blocks: Any, links: Any, max_file_bytes: int, folder: Path) -> None:
    """Narrow and harden Gradio's MCP server for this app, once (before its first request)."""
    server = getattr(blocks, "mcp_server_obj", None)
    if server is None or getattr(server, "studio_ready", False):
        return
    # A tool is a gr.api endpoint (wrapped by api_endpoint) of one of these names, whatever its REST name became.
    server.tool_to_endpoint = {
        name: endpoint
        for name, endpoint in server.tool_to_endpoint.items()
        if name in TOOLS
        and hasattr(getattr(server.get_block_fn_from_endpoint_name(endpoint), "fn", None), "api_parameters")
    }
    refinements = _refinements()
    schema_of: Callable = server.get_input_schema
    description_of: Callable = server.get_fn_description

    def input_schema(tool: str, parameters: dict | None = None) -> tuple[dict, list]:
        schema, positions = schema_of(tool, parameters)
        return _refined(tool, schema, refinements), positions

    def fn_description(block_fn: Any, tool: str) -> tuple[str, dict]:
        description, parameters = docstring(block_fn.fn)
        if not description:
            description, parameters = description_of(block_fn, tool)
            description = description.replace(server._file_data_tool_description, "")
        if schema_of(tool, parameters)[1] or tool in ("generate_image", "speak"):
            description += _FILE_NOTE
        return description, parameters

    server.get_input_schema = input_schema
    server.get_fn_description = fn_description
    server.convert_strings_to_filedata = lambda value, positions: _files_in(value, positions, folder, max_file_bytes)
    server.postprocess_output_data = lambda data, root_url: _files_out(server, links, data, root_url)
    clients = LoopbackClients()
    shared: Callable = server._get_or_create_client

    def loopback_client() -> Any:
        request = server.mcp_server.request_context.request
        relay = request.headers.get(RELAY) if request is not None else None
        if not relay or not server.local_url:
            return shared()
        return clients.get(server.local_url, relay)

    server._get_or_create_client = loopback_client
    server.studio_ready = True


class McpTools:
    """ASGI middleware after the HTTP guard: prepares the MCP server before its first request reaches Gradio."""

    def __init__(self, app: Callable, links: Any, max_file_bytes: int) -> None:
        self.app = app
        self.links = links
        self.max_file_bytes = max_file_bytes
        self.folder = Path(tempfile.gettempdir()) / f"studio-mcp-{os.getpid()}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(MCP_PATH):
            get = getattr(scope.get("app"), "get_blocks", None)
            if get is not None:
                prepare(get(), self.links, self.max_file_bytes, self.folder)
        await self.app(scope, receive, send)
