"""Who is asking: the Gradio login name when credentials are configured, otherwise a random id kept
in the browser's localStorage (so a reload keeps your conversations, and nobody else sees them)."""

from __future__ import annotations

import re
import secrets

import gradio as gr

from core.quota import ANONYMOUS_API_USER

BROWSER_ID_KEY = "genai-studio-browser-id"
_VALID_BROWSER_ID = re.compile(r"^[A-Za-z0-9_-]{22,64}$")


def browser_state(secret: str) -> gr.BrowserState:
    """`secret` must outlive the process: Gradio encrypts the stored value with it, and a new one
    at each start would make every browser a stranger after a restart."""
    return gr.BrowserState("", storage_key=BROWSER_ID_KEY, secret=secret)


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


def api_user(request: gr.Request | None) -> str:
    """Who an API call acts for: the login, else the API token's user (so what the call keeps shows in
    that person's tabs), else one anonymous identity whose items are kept only briefly."""
    return _login(request) or _header(request, "x-studio-user") or ANONYMOUS_API_USER
