"""Cancel events of work in progress, per user and key (a conversation, a draft, a browser tab, one API
call): the one registry every tab's service uses, so a stop only ever reaches the user's own work."""

from __future__ import annotations

import threading


class CancelRegistry:
    """`start` hands out a fresh event for one piece of work; `stop` sets the events under a key (or under
    all the user's keys); `finish` forgets an event once its work ended. Several pieces of work may share a
    key (two jobs from one tab); with `supersede`, a new one stops those already there (a new reply in a
    conversation replaces the one still streaming)."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], set[threading.Event]] = {}
        self._lock = threading.Lock()

    def start(self, user_id: str, key: str = "", *, supersede: bool = False) -> threading.Event:
        event = threading.Event()
        with self._lock:
            events = self._events.setdefault((user_id, key), set())
            if supersede:
                for old in events:
                    old.set()
                events.clear()
            events.add(event)
        return event

    def finish(self, user_id: str, key: str, event: threading.Event) -> None:
        with self._lock:
            events = self._events.get((user_id, key))
            if events is not None:
                events.discard(event)
                if not events:
                    del self._events[(user_id, key)]

    def stop(self, user_id: str, key: str | None = "") -> int:
        """Set the events of the user's work under `key` (None: under every key). Returns how many."""
        with self._lock:
            keys = [k for k in self._events if k[0] == user_id and (key is None or k[1] == key)]
            events = [e for k in keys for e in self._events[k]]
        for event in events:
            event.set()
        return len(events)

    def running(self, user_id: str, key: str | None = None) -> int:
        with self._lock:
            return sum(len(v) for k, v in self._events.items() if k[0] == user_id and (key is None or k[1] == key))
