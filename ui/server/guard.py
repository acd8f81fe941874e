"""The HTTP edge: one ASGI middleware in front of every Gradio route. It decides who is calling (a
login, an API token, or an address), refuses cross-origin writes, oversized bodies, replayed sessions
and callers over their rate, limits failed logins, records who uploaded which file, and adds the
security headers. What it decides rides on to the handlers in the trusted `x-studio-caller` and
`x-studio-user` headers (any the client sent are dropped first)."""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from core.security.limits import LoginLimiter, RateLimiter, SessionOwners
from core.security.links import PREFIX as LINK_PREFIX
from core.security.links import FileLinks
from core.security.tokens import TokenStore
from core.security.uploads import UploadRegistry
from ui.server.asgi import Receive, Scope, Send, replay, respond
from ui.server.streams import BodyTooLarge, busy_when_full, capped, read_body, record_event, with_headers

log = logging.getLogger(__name__)


API = "/gradio_api"
CALLER_HEADER = b"x-studio-caller"  # the key uploads and sessions are bound to
USER_HEADER = b"x-studio-user"  # the API token's user, when a valid token was sent
# An MCP tool call reaches its endpoint through Gradio's loopback client, which sends the MCP request's headers
# again from 127.0.0.1: this header (with a secret of this process) carries who called the MCP route to it.
RELAY_HEADER = b"x-studio-relay"
MCP = f"{API}/mcp"
_LOOPBACK = ("127.0.0.1", "::1")
# Routes that start work: counted against the caller's rate.
_WORK = re.compile(rf"^{API}/(queue/join|call/|run/|api/|upload$|upload/$|mcp)")
_UPLOAD = re.compile(rf"^{API}/upload/?$")
# Named endpoints called directly (their arguments are the endpoint's, files only as uploads).
_NAMED_CALL = re.compile(rf"^{API}/(call|run|api)/")
# Routes that carry a Gradio session id in a JSON body.
_SESSION_BODY = re.compile(rf"^{API}/(queue/join|call/|run/|api/|cancel)")
# Routes Gradio reads a JSON body from (parsed here first: nesting too deep is a 400, not a 500).
_JSON_BODY = re.compile(rf"^{API}/(queue/join|call/|run/|api/|cancel|stream/|reset)")
# Routes naming an event id, which belongs to the caller that started it: its results
# (GET /call/<name>/<event_id>, also /call/v2/...) and its input stream (POST /stream/<event_id>[/close]).
_EVENT_GET = re.compile(rf"^{API}/call/.+/([^/]+)/?$")
_EVENT_POST = re.compile(rf"^{API}/stream/([^/]+)(?:/close)?/?$")
# Routes whose reply names a new event id ({"event_id": ...}).
_STARTS_EVENT = re.compile(rf"^{API}/(queue/join|call/.+)$")
# Routes anyone may reach before logging in (the login page needs them).
_PUBLIC = re.compile(
    rf"^(/$|/login/?$|/logout/?$|/favicon\.ico$|/manifest\.json$|/robots\.txt$|/theme\.css$|"
    rf"/assets/|/static/|/svelte/|/pwa_icon|{API}/(user|login_check|token|app_id|theme\.css|"
    rf"startup-events|info|config)/?$)"
)
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), geolocation=(), payment=(), usb=()"),
]


@dataclass
class Guard:
    """Everything the middleware decides with; built once in app.py from Settings."""

    tokens: TokenStore
    uploads: UploadRegistry
    auth: bool  # STUDIO_AUTH / STUDIO_AUTH_FILE configured: every API call needs a login or a token
    allowed_origins: frozenset[str] = frozenset()
    frame_ancestors: str = "'none'"
    rate: RateLimiter = field(default_factory=lambda: RateLimiter(120))
    upload_rate: RateLimiter = field(default_factory=lambda: RateLimiter(600))
    logins: LoginLimiter = field(default_factory=LoginLimiter)
    sessions: SessionOwners = field(default_factory=SessionOwners)
    events: SessionOwners = field(default_factory=SessionOwners)  # event id -> the caller that started it
    links: FileLinks = field(default_factory=FileLinks)
    max_upload_bytes: int = 50 * 2**20
    max_body_bytes: int = 8 * 2**20
    _internal_tokens: dict[str, str] = field(default_factory=dict)  # username -> Gradio access token
    relay_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))  # never leaves this process

    def security_headers(self) -> list[tuple[bytes, bytes]]:
        frame = b"SAMEORIGIN" if self.frame_ancestors == "'self'" else b"DENY"
        headers = [*_SECURITY_HEADERS, (b"content-security-policy", f"frame-ancestors {self.frame_ancestors}".encode())]
        if self.frame_ancestors in ("'self'", "'none'"):
            headers.append((b"x-frame-options", frame))
        return headers


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers", [])}


def _cookies(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in raw.decode("latin-1").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            out.setdefault(name, value)
    return out


class StudioGuard:
    """ASGI middleware; `guard` holds the state. Installed through launch(app_kwargs={"middleware": ...})."""

    def __init__(self, app: Callable, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        g = self.guard
        sec = g.security_headers()
        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET")
        headers = _headers(scope)
        # Drop anything the client claims in our trusted headers, before anything reads them.
        scope["headers"] = [
            (k, v) for k, v in scope.get("headers", []) if k.lower() not in (CALLER_HEADER, USER_HEADER, RELAY_HEADER)
        ]
        address = (scope.get("client") or ("unknown", 0))[0]
        relay = self._relayed(headers, address)  # an MCP tool call's loopback request: its caller, decided before

        # -- cross-origin requests: a page on another origin must not upload, start work, or read replies
        # (Gradio's CORS answer reflects any origin, with credentials, on a host that is not localhost) ----
        if (method in _UNSAFE or b"origin" in headers) and not self._same_origin(headers):
            await respond(
                send,
                403,
                "Cross-origin request refused: this origin is not allowed (set STUDIO_ALLOWED_ORIGINS to allow it).",
                sec,
            )
            return

        # -- who is calling ---------------------------------------------------------------------
        gradio_app = scope.get("app")
        login_user = self._login_user(gradio_app, headers) if relay is None else None
        token_user = None
        auth_header = headers.get(b"authorization", b"").decode("latin-1") if relay is None else ""
        if relay is not None:
            caller, token_user, address = relay
            scope["client"] = (address, 0)  # per-address caps count the MCP caller, not the loopback
            if g.auth and caller.startswith("user:"):
                login_user = caller[5:]
                self._as_gradio_login(gradio_app, scope, login_user)
        if auth_header[:7].lower() == "bearer ":
            token_user = g.tokens.resolve(auth_header[7:].strip())
            if token_user is None:
                await respond(send, 401, "Invalid API token.", sec, [(b"www-authenticate", b"Bearer")])
                return
        if token_user and g.auth:  # an explicit token decides, whatever login cookie came along
            if not token_user.startswith("user:"):
                await respond(send, 401, "This token does not belong to a login of this server.", sec)
                return
            login_user = token_user[5:]
            self._as_gradio_login(gradio_app, scope, login_user)
        if relay is not None:
            pass
        elif login_user:
            caller = f"user:{login_user}"
        elif token_user:
            caller = token_user
        else:
            caller = f"ip:{address}"
        scope["headers"].append((CALLER_HEADER, caller.encode()))
        if token_user:
            scope["headers"].append((USER_HEADER, token_user.encode()))
        if path == MCP or path.startswith(f"{MCP}/"):
            relayed = json.dumps([caller, token_user, address])
            scope["headers"].append((RELAY_HEADER, f"{g.relay_secret} {relayed}".encode()))

        if g.auth and not login_user and not _PUBLIC.match(path):
            await respond(
                send,
                401,
                "Not authenticated: log in, or send an API token (Authorization: Bearer ...).",
                sec,
                [(b"www-authenticate", b"Bearer")],
            )
            return

        if path.startswith(f"{API}/dev/") and not getattr(getattr(gradio_app, "blocks", None), "dev_mode", False):
            # Gradio's reload watcher: a stream polling 20 times a second per open connection, for nothing here.
            await respond(send, 404, "Not found.", sec)
            return
        if method in ("GET", "HEAD") and path.startswith(f"{API}/file={LINK_PREFIX}/"):
            await self._serve_link(scope, receive, send, caller, path[len(f"{API}/file=") :], sec)
            return

        # -- sessions and rates -----------------------------------------------------------------
        if method == "GET" and path.startswith(API):
            session = self._query_session(scope, path)
            # The loopback client is one session for every MCP caller; its requests are the caller's by the relay.
            if session is not None and relay is None and not g.sessions.claim(session, caller):
                await respond(send, 403, "This session belongs to someone else.", sec)
                return
        event = _EVENT_GET.match(path) if method == "GET" else _EVENT_POST.match(path) if method == "POST" else None
        if event is not None and not g.events.claim(event.group(1), caller):
            await respond(send, 403, "This event belongs to someone else.", sec)
            return
        if relay is None and (
            (method in _UNSAFE and _WORK.match(path)) or path.startswith(f"{API}/deep_link")
        ):  # deep_link writes a file
            # Uploads have a budget of their own: Gradio's image editor re-uploads its layers on every
            # snapshot (dozens per drawing), and the held-bytes cap already bounds what they cost.
            # A login's rate is its own; anyone else's is their address's: without logins "Create a token" makes a
            # token for any made-up browser id, and a bucket per token would let one address make up its own rate.
            rate_key = caller if caller.startswith("user:") else f"ip:{address}"
            wait = (g.upload_rate if _UPLOAD.match(path) else g.rate).take(rate_key)
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                await respond(
                    send,
                    429,
                    f"Busy: too many requests from you; retry in {seconds} s.",
                    sec,
                    [(b"retry-after", str(seconds).encode())],
                )
                return

        limit = g.max_upload_bytes + 2**20 if path.rstrip("/") == f"{API}/upload" else g.max_body_bytes
        if path.startswith(MCP):  # a tool call carries its files as base64 in the JSON body
            limit = max(limit, g.max_upload_bytes * 4 // 3 + 2**20)
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                too_big = True
            if too_big:
                await respond(send, 413, f"Request too large: the limit is {limit // 2**20} MB.", sec)
                return

        if method == "POST" and (_JSON_BODY.match(path) or path.rstrip("/") == "/login"):
            try:
                body = await read_body(receive, limit)
            except BodyTooLarge:
                await respond(send, 413, f"Request too large: the limit is {limit // 2**20} MB.", sec)
                return
            receive = replay([{"type": "http.request", "body": body, "more_body": False}], receive)
            if path.rstrip("/") == "/login":
                await self._login(scope, receive, send, body, address, sec)
                return
            try:
                data = json.loads(body)
            except RecursionError:
                await respond(send, 400, "The request's JSON is nested too deeply.", sec)
                return
            except ValueError:
                data = None  # not JSON: Gradio answers that itself
            session = _body_session(data)
            if session is not None and relay is None and not g.sessions.claim(session, caller):
                await respond(send, 403, "This session belongs to someone else.", sec)
                return
            event_id = data.get("event_id") if isinstance(data, dict) and path.startswith(f"{API}/cancel") else None
            if isinstance(event_id, str) and not g.events.claim(event_id, caller):
                await respond(send, 403, "This event belongs to someone else.", sec)
                return
            if _NAMED_CALL.match(path) and not self._files_are_uploads(data, caller):
                # Gradio would refuse these too, but with {"error": null}; say what is wrong.
                await respond(
                    send,
                    400,
                    "A file in this request is not a file upload of yours: send the file "
                    "itself (gradio_client: handle_file(path)), not a path on the server.",
                    sec,
                )
                return
        else:
            receive = capped(receive, limit)

        if method == "POST" and path.rstrip("/") == f"{API}/upload":
            held = g.uploads.held_bytes(caller)
            coming = int(length) if length is not None and length.isdigit() else 0
            if held + coming > g.uploads.max_held_bytes:
                await respond(
                    send,
                    429,
                    f"Busy: you have {held / 2**20:.0f} MB of uploads not used yet (the limit is "
                    f"{g.uploads.max_held_bytes / 2**20:.0f} MB); use or wait for them, then retry.",
                    sec,
                    [(b"retry-after", b"60")],
                )
                return
            await self._upload(scope, receive, send, caller, sec)
            return
        started: dict[str, bool] = {}
        if method == "POST" and _WORK.match(path):
            send = busy_when_full(send)
        if method == "POST" and _STARTS_EVENT.match(path):
            send = record_event(send, g.events, caller)
        try:
            await self.app(scope, receive, with_headers(send, sec, started))
        except BodyTooLarge:
            if started:
                raise
            await respond(send, 413, f"Request too large: the limit is {limit // 2**20} MB.", sec)

    # -- helpers ---------------------------------------------------------------------------------
    def _relayed(self, headers: dict[bytes, bytes], address: str) -> tuple[str, str | None, str] | None:
        """(caller, token user, address) an MCP request was decided as, when this request is Gradio's loopback
        call for it: from this machine, with this process's secret. None for every other request."""
        raw = headers.get(RELAY_HEADER)
        if raw is None or address not in _LOOPBACK:
            return None
        secret, _, rest = raw.decode("latin-1").partition(" ")
        if not secrets.compare_digest(secret.encode(), self.guard.relay_secret.encode()):
            return None
        try:
            caller, token_user, origin = json.loads(rest)
        except (ValueError, TypeError):
            return None
        if not isinstance(caller, str) or not isinstance(origin, str) or not isinstance(token_user, str | None):
            return None
        return caller, token_user, origin

    def _files_are_uploads(self, data: Any, caller: str) -> bool:
        """Named endpoints take files only as uploads: every FileData in the body must be the caller's."""
        for item in _filedata_items(data):
            try:
                self.guard.uploads.resolve(caller, item)
            except ValueError:
                return False
        return True

    def _same_origin(self, headers: dict[bytes, bytes]) -> bool:
        origin = headers.get(b"origin", b"").decode("latin-1").strip()
        if not origin:
            # Browsers send Origin on every cross-origin write; only Sec-Fetch-Site can tell otherwise.
            return headers.get(b"sec-fetch-site", b"same-origin") in (b"same-origin", b"none", b"same-site")
        if origin in self.guard.allowed_origins or "*" in self.guard.allowed_origins:
            return True
        # Host only: a browser cannot set it, but a page can add X-Forwarded-Host (Gradio's CORS allows any header).
        host = headers.get(b"host", b"").decode("latin-1").strip()
        parts = urlsplit(origin)
        return bool(parts.netloc) and parts.netloc.lower() == host.lower()

    def _login_user(self, gradio_app: Any, headers: dict[bytes, bytes]) -> str | None:
        if not self.guard.auth or gradio_app is None or b"cookie" not in headers:
            return None
        cookie_id = getattr(gradio_app, "cookie_id", None)
        tokens = getattr(gradio_app, "tokens", None) or {}
        jar = _cookies(headers[b"cookie"])
        token = jar.get(f"access-token-{cookie_id}") or jar.get(f"access-token-unsecure-{cookie_id}")
        user = tokens.get(token) if token else None
        return user if isinstance(user, str) and user else None

    def _as_gradio_login(self, gradio_app: Any, scope: Scope, username: str) -> None:
        """Let Gradio's own login check see an API-token caller as that user: one internal access
        token per user, sent as the login cookie on this request only."""
        if gradio_app is None:
            return
        token = self.guard._internal_tokens.get(username)
        if token is None or gradio_app.tokens.get(token) != username:
            token = self.guard._internal_tokens[username] = secrets.token_urlsafe(32)
            gradio_app.tokens[token] = username
        cookie = f"access-token-unsecure-{gradio_app.cookie_id}={token}".encode()
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"cookie"] + [(b"cookie", cookie)]

    def _query_session(self, scope: Scope, path: str) -> str | None:
        if path.startswith(f"{API}/heartbeat/"):
            return path[len(f"{API}/heartbeat/") :].strip("/") or None
        if path.startswith(f"{API}/stream/") and path.count("/") >= 5:
            return path.split("/")[3]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        values = query.get("session_hash")
        return values[0] if values else None

    async def _login(
        self, scope: Scope, receive: Receive, send: Send, body: bytes, address: str, sec: list[tuple[bytes, bytes]]
    ) -> None:
        form = parse_qs(body.decode("utf-8", "replace"))
        user = (form.get("username") or [""])[0].strip()
        g = self.guard
        wait = g.logins.wait(address, user)
        if wait > 0:
            await respond(
                send,
                429,
                f"Too many failed logins; try again in {int(wait)} s.",
                sec,
                [(b"retry-after", str(int(wait)).encode())],
            )
            return
        status: dict[str, int] = {}

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *sec]}
            await send(message)

        await self.app(scope, receive, watch)
        if status.get("code") == 200:
            g.logins.succeeded(address, user)
        elif status.get("code", 500) < 500:
            g.logins.failed(address, user)

    async def _serve_link(
        self, scope: Scope, receive: Receive, send: Send, caller: str, link: str, sec: list[tuple[bytes, bytes]]
    ) -> None:
        from starlette.responses import FileResponse

        found = self.guard.links.resolve(caller, link)
        if found is None:
            await respond(send, 404, "No such file (links are for the caller they were made for, for a day).", sec)
            return
        await FileResponse(found, headers={k.decode(): v.decode() for k, v in sec})(scope, receive, send)

    async def _upload(
        self, scope: Scope, receive: Receive, send: Send, caller: str, sec: list[tuple[bytes, bytes]]
    ) -> None:
        """Pass the upload through, then record the stored paths it answers with under `caller`."""
        start: dict = {}
        chunks: list[bytes] = []

        async def hold(message: dict) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            if start.get("status") == 200:
                try:
                    paths = json.loads(body)
                except ValueError:
                    paths = []
                if isinstance(paths, list):
                    self.guard.uploads.record(caller, [p for p in paths if isinstance(p, str)])
            await send({**start, "headers": [*start.get("headers", []), *sec]})
            await send({"type": "http.response.body", "body": body})

        try:
            await self.app(scope, receive, hold)
        except BodyTooLarge:
            await respond(send, 413, f"Upload too large: the limit is {self.guard.max_upload_bytes // 2**20} MB.", sec)


def _filedata_items(value: Any, depth: int = 0) -> list[dict]:
    """Every dict in a JSON value that Gradio would treat as a file (meta._type == gradio.FileData)."""
    if depth > 20:
        return []
    if isinstance(value, dict):
        meta = value.get("meta")
        if isinstance(meta, dict) and meta.get("_type") == "gradio.FileData":
            return [value]
        return [f for v in value.values() for f in _filedata_items(v, depth + 1)]
    if isinstance(value, list):
        return [f for v in value for f in _filedata_items(v, depth + 1)]
    return []


def _body_session(data: Any) -> str | None:
    value = data.get("session_hash") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None
