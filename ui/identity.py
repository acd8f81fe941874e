"""Who is asking: the Gradio login name when credentials are configured, otherwise a random id kept
in the browser's localStorage (so a reload keeps your conversations, and nobody else sees them)."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from pathlib import Path

import gradio as gr

from core.quota import ANONYMOUS_API_USER

BROWSER_ID_KEY = "genai-studio-browser-id"
_VALID_BROWSER_ID = re.compile(r"^[A-Za-z0-9_-]{22,64}$")


def browser_state(secret: str) -> gr.BrowserState:
    """`secret` must outlive the process: Gradio encrypts the stored value with it, and a new one
    at each start would make every browser a stranger after a restart."""
    return gr.BrowserState("", storage_key=BROWSER_ID_KEY, secret=secret)


def _cryptojs_key(passphrase: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """OpenSSL's EVP_BytesToKey (MD5, one round): the AES-256 key and iv CryptoJS.AES.encrypt(text, passphrase)
    derives, as gr.BrowserState's frontend calls it."""
    derived, block = b"", b""
    while len(derived) < 48:
        block = hashlib.md5(block + passphrase + salt, usedforsecurity=False).digest()
        derived += block
    return derived[:32], derived[32:48]


def browser_id_head(secret: str, *, test: bool = False) -> str:
    """A <script> for launch(head=...) that mints a fresh visitor's id in the browser before Gradio's first event
    (ui/js/browser_id.js), stored where and how `browser_state(secret)` reads it. Without it the id came from a load
    event, and whatever a person sent before that returned failed with "This page lost its identity".

    The id is 18 bytes from crypto.getRandomValues (unguessable, as secrets.token_urlsafe(18)); the server still
    accepts only well-formed ids. The key this embeds is no secret: Gradio sends `secret` itself to every browser
    (its frontend encrypts), so the encryption never protected an id from its own browser; what keeps one browser
    out of another's data is that nobody can guess an id. `test` returns the script as a function call that
    returns {id, stored} instead of storing (tests check the cipher against Python's)."""
    passphrase = hashlib.sha256(secret.encode()).hexdigest().encode()  # the frontend: CryptoJS.SHA256(secret)
    salt = secrets.token_bytes(8)
    key, iv = _cryptojs_key(passphrase, salt)
    config = {"storage_key": BROWSER_ID_KEY, "key": key.hex(), "iv": iv.hex(), "salt": salt.hex(), "test": test}
    script = (Path(__file__).parent / "js" / "browser_id.js").read_text(encoding="utf-8")
    call = f"({script.strip()})({json.dumps(config)});"
    return call if test else f"<script>{call}</script>"


def ensure_browser_id(browser_id: str | None) -> str:
    """Keep a well-formed id; mint a new unguessable one otherwise."""
    if browser_id and _VALID_BROWSER_ID.match(browser_id):
        return browser_id
    return secrets.token_urlsafe(24)


def _login(request: gr.Request | None) -> str | None:
    """The Gradio login as a user id ("user:<name>"), the one identity that wins everywhere."""
    username = getattr(request, "username", None) if request is not None else None
    return f"user:{username}" if username else None


def user_id(browser_id: str | None, request: gr.Request | None) -> str:
    login = _login(request)
    if login:
        return login
    if browser_id and _VALID_BROWSER_ID.match(browser_id):
        return f"browser:{browser_id}"
    raise gr.Error("This page lost its identity; reload it to continue. Nothing was lost.")


def _header(request: gr.Request | None, name: str) -> str | None:
    headers = getattr(request, "headers", None) if request is not None else None
    value = headers.get(name) if headers is not None else None
    return value if isinstance(value, str) and value else None


def caller(request: gr.Request | None) -> str:
    """The key uploads and sessions are bound to, as the HTTP guard decided it (ui/server/guard.py):
    a login, an API token's user, or the client's address."""
    found = _header(request, "x-studio-caller")
    if found:
        return found
    client = getattr(request, "client", None) if request is not None else None
    return f"ip:{getattr(client, 'host', None) or 'unknown'}"


def limit_key(request: gr.Request | None) -> str:
    """Whom a per-caller cap counts: a login (or a token of one); else the client's address, since without logins
    anyone can make up browser ids, and a token for each, as fast as they like."""
    found = caller(request)
    if found.startswith("user:"):
        return found
    client = getattr(request, "client", None) if request is not None else None
    return f"ip:{getattr(client, 'host', None) or 'unknown'}"


def api_user(request: gr.Request | None) -> str:
    """Who an API call acts for: the login, else the API token's user (so what the call keeps shows in
    that person's tabs), else one anonymous identity whose items are kept only briefly."""
    return _login(request) or _header(request, "x-studio-user") or ANONYMOUS_API_USER
