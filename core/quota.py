"""What each user may keep on disk, and for how long: a per-user quota over every store that keeps a user's
items (gallery PNGs, condensed summaries, writer drafts, chat messages), checked before each save, and a
retention sweep that deletes items older than STUDIO_RETENTION_DAYS (and anonymous API callers' items after
STUDIO_ANON_RETENTION_HOURS) at startup and once an hour."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

from config import Settings
from core.errors import QuotaExceededError

log = logging.getLogger(__name__)

ANONYMOUS_API_USER = "api:anonymous"  # the identity of API calls without a token (ui/identity.py uses it)
SWEEP_INTERVAL_S = 3600.0
MB = 2**20


class UserStore(Protocol):
    """A store of per-user items that counts toward the quota and obeys retention."""

    quota: StorageQuota | None

    def bytes_used(self, user_id: str) -> int: ...

    def delete_older_than(self, cutoff: float, user_id: str | None = None) -> int:
        """Delete items last changed before `cutoff` (epoch seconds), of one user or (None) of everyone."""
        ...


class StorageQuota:
    """`limit_bytes` per user across `stores` (0 or less: no limit). A store calls `reserve(user, n)` around a
    write that adds n bytes: it refuses with QuotaExceededError when the user's items would pass the limit,
    and holds a per-user lock meanwhile, so two saves of one user cannot both squeeze under it."""

    def __init__(self, limit_bytes: float, stores: Sequence[UserStore] = ()) -> None:
        self.limit_bytes = int(limit_bytes)
        self.stores: list[UserStore] = list(stores)
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()

    def attach(self, *stores: UserStore) -> None:
        for store in stores:
            if store not in self.stores:
                self.stores.append(store)
            store.quota = self

    def used(self, user_id: str) -> int:
        return sum(int(store.bytes_used(user_id)) for store in self.stores)

    def _lock(self, user_id: str) -> threading.RLock:
        with self._locks_guard:
            lock = self._locks.get(user_id)
            if lock is None:
                if len(self._locks) > 10_000:  # forget idle users' locks (a held one is kept alive by its holder)
                    self._locks.clear()
                lock = self._locks[user_id] = threading.RLock()
            return lock

    def check(self, user_id: str, adding: int) -> None:
        """Raise QuotaExceededError when `adding` more bytes would take the user past the limit."""
        if self.limit_bytes <= 0 or adding <= 0:
            return
        used = self.used(user_id)
        if used + adding > self.limit_bytes:
            limit = self.limit_bytes / MB
            raise QuotaExceededError(
                f"Your library is full: {used / MB:,.1f} of {limit:,.{1 if limit < 10 else 0}f} MB used, and this "
                f"needs {max(adding / MB, 0.1):,.1f} MB more. Delete some images, summaries or drafts you no longer "
                "need, then try again."
            )

    @contextmanager
    def reserve(self, user_id: str, adding: int) -> Iterator[None]:
        with self._lock(user_id):
            self.check(user_id, adding)
            yield


@contextmanager
def reserved(quota: StorageQuota | None, user_id: str, adding: int) -> Iterator[None]:
    """`quota.reserve(...)`, or nothing when a store has no quota."""
    if quota is None:
        yield
    else:
        with quota.reserve(user_id, adding):
            yield


class Retention:
    """Deletes stored items past their age: everyone's after `days` (0: kept), anonymous API callers' after
    `anon_hours` (0: kept like everyone's). `start` sweeps at once on its own thread, then every
    `interval_s`; `sweep` does one pass (tests call it with a `now`)."""

    def __init__(
        self,
        stores: Sequence[UserStore],
        days: float = 0.0,
        anon_hours: float = 24.0,
        interval_s: float = SWEEP_INTERVAL_S,
    ) -> None:
        self.stores = list(stores)
        self.days, self.anon_hours, self.interval_s = float(days), float(anon_hours), float(interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        deleted = 0
        for store in self.stores:
            try:
                if self.days > 0:
                    deleted += store.delete_older_than(now - self.days * 86400)
                if self.anon_hours > 0:
                    deleted += store.delete_older_than(now - self.anon_hours * 3600, ANONYMOUS_API_USER)
                clean = getattr(store, "clean_orphans", None)
                if clean is not None:
                    deleted += clean()
            except Exception:  # a locked or full database: try again at the next sweep
                log.exception("retention sweep of %s failed", type(store).__name__)
        if deleted:
            log.info("retention: deleted %d stored item(s)", deleted)
        return deleted

    def start(self) -> Retention:
        if self._thread is None and (self.days > 0 or self.anon_hours > 0 or self.stores):
            self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            self.sweep()
            if self._stop.wait(self.interval_s):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


def attach_storage(settings: Settings, *stores: UserStore) -> tuple[StorageQuota, Retention]:
    """Put `stores` under the user quota and retention of `settings`; the retention thread is started."""
    quota = StorageQuota(settings.user_quota_mb * MB)
    quota.attach(*stores)
    retention = Retention(stores, settings.retention_days, settings.anon_retention_hours).start()
    return quota, retention
