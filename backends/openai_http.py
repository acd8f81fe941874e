"""Helpers shared by the backends that talk HTTP to OpenAI-compatible servers (text and images):
what to show of a URL, how to read Retry-After, and how to phrase retries in an error message."""
from __future__ import annotations

import email.utils
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit


def tries(retries: int) -> str:
    return "" if retries == 0 else f", still after {retries} {'retry' if retries == 1 else 'retries'}"


def server_said(detail: str) -> str:
    return f" Server said: {detail}" if detail else ""


def retry_after(headers: Any) -> float | None:
    """Seconds from retry-after-ms (OpenAI) or Retry-After (seconds or an HTTP date)."""
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return float(ms) / 1000.0
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def display_url(url: str) -> str:
    """The URL as safe to show: no credentials, query or fragment."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "the configured OPENAI_BASE_URL"


def display_host(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port}" if parts.port else (parts.hostname or display_url(url))
    except ValueError:
        return "the configured OPENAI_BASE_URL"
