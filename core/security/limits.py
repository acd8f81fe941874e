"""Request and login limits, kept in memory per caller: a token bucket for requests (answered with
"busy, retry in N s") and a failure counter for logins. Both forget idle callers, so memory is bounded."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    """`rate` requests a minute per key, with bursts up to `burst`. `take(key)` returns 0 when the
    request may go, else the seconds to wait."""

    def __init__(
        self,
        per_minute: float,
        burst: float | None = None,
        max_keys: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else per_minute)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        return wait


class LoginLimiter:
    """At most `attempts` failed logins per (address, user) and `attempts * 4` per address within
    `window_s`; then that pair (or address) waits until its oldest failure leaves the window."""

    def __init__(
        self,
        attempts: int = 5,
        window_s: float = 300.0,
        max_keys: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.attempts, self.window_s = attempts, window_s
        self._fails: OrderedDict[str, list[float]] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()

    def _keys(self, address: str, user: str) -> list[tuple[str, int]]:
        return [(f"{address}\0{user.lower()}", self.attempts), (address, self.attempts * 4)]

    def wait(self, address: str, user: str) -> float:
        """Seconds before this address may try this user again; 0 when it may now."""
        now = self._clock()
        worst = 0.0
        with self._lock:
            for key, limit in self._keys(address, user):
                times = [t for t in self._fails.get(key, []) if now - t < self.window_s]
                if len(times) >= limit:
                    worst = max(worst, times[-limit] + self.window_s - now)
        return math.ceil(worst) if worst > 0 else 0.0

    def failed(self, address: str, user: str) -> None:
        now = self._clock()
        with self._lock:
            for key, limit in self._keys(address, user):
                times = [t for t in self._fails.pop(key, []) if now - t < self.window_s]
                times.append(now)
                self._fails[key] = times[-limit:]
            while len(self._fails) > self._max_keys:
                self._fails.popitem(last=False)

    def succeeded(self, address: str, user: str) -> None:
        with self._lock:
            self._fails.pop(f"{address}\0{user.lower()}", None)


class SessionOwners:
    """Which caller a Gradio session id belongs to: the first to use it. Another caller presenting the
    same id is refused, so a replayed session never reaches someone else's state or results."""

    def __init__(self, max_sessions: int = 100_000) -> None:
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._max = max_sessions
        self._lock = threading.Lock()

    def claim(self, session: str, caller: str) -> bool:
        with self._lock:
            owner = self._owners.get(session)
            if owner is None:
                self._owners[session] = caller
                while len(self._owners) > self._max:
                    self._owners.popitem(last=False)
                return True
            self._owners.move_to_end(session)
            return owner == caller


class UserSlots:
    """At most `limit` requests of one kind running at once per user; one more is refused at once
    with a BusyError ("you already have N running") instead of queueing behind its own siblings."""

    def __init__(self, limit: int, what: str = "requests", refuse: Callable[[int], Exception] | None = None) -> None:
        """`refuse(running)` makes the error for one too many (a BusyError saying so by default)."""
        self.limit, self.what = max(1, limit), what
        self._refuse = refuse or self._busy
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    def _busy(self, running: int) -> Exception:
        from core.errors import BusyError

        return BusyError(
            f"Busy: you already have {running} {self.what} running; wait for one to finish or stop it, then retry.",
            retry_after=5,
        )

    def hold(self, user: str) -> _Held:
        with self._lock:
            running = self._running.get(user, 0)
            if running >= self.limit:
                raise self._refuse(running)
            self._running[user] = running + 1
        return _Held(self, user)

    def _release(self, user: str) -> None:
        with self._lock:
            left = self._running.get(user, 1) - 1
            if left > 0:
                self._running[user] = left
            else:
                self._running.pop(user, None)

    def running(self, user: str) -> int:
        with self._lock:
            return self._running.get(user, 0)


class _Held:
    def __init__(self, slots: UserSlots, user: str) -> None:
        self._slots, self._user, self._done = slots, user, False

    def __enter__(self) -> _Held:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self._done = True
            self._slots._release(self._user)
