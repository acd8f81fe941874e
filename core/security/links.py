"""Files handed back to API callers without naming a server path: each file gets an unguessable link
`studio-files/<token>/<name>`, valid for its caller only and for a while. The HTTP edge serves it."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path

PREFIX = "studio-files"


class FileLinks:
    def __init__(self, ttl_s: float = 24 * 3600.0, max_links: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self._links: OrderedDict[str, tuple[str, Path, float]] = OrderedDict()
        self._max = max_links
        self._lock = threading.Lock()

    def link(self, caller: str, path: Path, name: str | None = None) -> str:
        """A relative link (no server path in it) for `caller` to fetch `path`."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._links[token] = (caller, Path(path), time.monotonic())
            while len(self._links) > self._max:
                self._links.popitem(last=False)
        shown = "".join(c for c in (name or Path(path).name) if c.isalnum() or c in "._-") or "file"
        return f"{PREFIX}/{token}/{shown}"

    def resolve(self, caller: str, link: str) -> Path | None:
        """The file behind `link` when it is this caller's and not expired; None otherwise."""
        parts = link.split("/")
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        with self._lock:
            entry = self._links.get(parts[1])
        if entry is None:
            return None
        owner, path, made = entry
        if owner != caller or time.monotonic() - made > self.ttl_s or not path.is_file():
            return None
        return path
