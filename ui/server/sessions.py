"""Bounds what Gradio keeps per session (issue 9, finding 2). Gradio builds a `SessionState` for every
new session hash (each `/gradio_api/call/*` without one gets its own), holding a per-session copy of
the whole app's config, ~380 KB here, and keeps up to 10,000 of them. A sweeper on the server's event
loop drops the ones nobody needs, and the rest are capped at `STUDIO_MAX_SESSIONS`.

What a sweep drops, never touching a session with an event queued or running:
- a session that holds nothing (no State value, no component update: rebuilding it gives the same
  thing) once idle for `grace_s`: every API call's, and a browser's before it has stored anything;
- a session that holds something but belongs to no open tab (a closed tab, a raw API caller that sent
  its own session hash) once idle for `idle_ttl_s`, the hour Gradio keeps a closed tab's State;
- when the sessions held pass 3/4 of the cap, those same sessions, least recently used first.
Open tabs are never dropped by a sweep: a tab marks its session on page load (a private load event),
and while its heartbeat stays connected the sweep moves it to the young end of Gradio's LRU order, so
Gradio's own cap (`state_session_capacity`, the hard bound) takes API sessions first. Only more open
tabs than the cap can push an open tab out (then logged); that tab then starts from its defaults.

The sweep reads Gradio's stable per-session records (`App.state_holder.session_data`/`time_last_used`
with its lock, `SessionState.state_data`/`blocks_config`/`is_closed`, the queue's
`event_ids_to_events`, `pending_event_ids_session`, `pending_messages_per_session`) and runs on the
server's loop, started from the FastAPI lifespan that `launch(app_kwargs=...)` accepts, so it never
races the request handlers that use them. gradio==6.31 is pinned; tests/security/test_session_memory.py
checks these records still behave as relied on here.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

log = logging.getLogger(__name__)

GRACE_S = 0.5  # an untouched session this idle is dropped (covers a short non-queued call in flight)
IDLE_TTL_S = 3600.0  # a session with state and no open tab, this idle, is dropped (Gradio's closed-tab TTL)
SWEEP_S = 0.25  # between two sweeps, a burst of cap/4 new sessions reaches Gradio's LRU cap


@dataclass
class SweepStats:
    held: int = 0  # sessions Gradio holds after the sweep
    open_tabs: int = 0
    dropped_untouched: int = 0
    dropped_idle: int = 0
    dropped_over_cap: int = 0


class SessionReaper:
    """One per served app: `mark_tabs(demo)` while building it, `add_launch_options(options)` before
    `demo.launch(**options)` (app.py does both through the functions at the end)."""

    def __init__(
        self,
        max_sessions: int,
        *,
        grace_s: float = GRACE_S,
        idle_ttl_s: float = IDLE_TTL_S,
        interval_s: float = SWEEP_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.max_sessions = max_sessions
        self.grace_s, self.idle_ttl_s, self.interval_s = grace_s, idle_ttl_s, interval_s
        self._clock = clock
        # Tabs that marked their session on page load: session hash -> when it was marked (monotonic).
        self._tabs: dict[str, float] = {}
        self._warned_at = -1e9
        self.last = SweepStats()

    # -- wiring --------------------------------------------------------------------------------
    def mark_tabs(self, demo: gr.Blocks) -> None:
        """Register the page-load marker; call inside `demo`'s Blocks context (events can only be
        added there, and re-entering a built Blocks would attach its load events twice)."""
        demo.load(self._mark_tab, None, None, queue=False, api_visibility="private", show_progress="hidden")

    def add_launch_options(self, options: dict[str, Any]) -> None:
        """Put the cap and the sweeper into `options` (keyword arguments for `demo.launch`),
        keeping any lifespan already there."""
        options["state_session_capacity"] = self.max_sessions
        app_kwargs = dict(options.get("app_kwargs") or {})
        app_kwargs["lifespan"] = self._lifespan(app_kwargs.get("lifespan"))
        options["app_kwargs"] = app_kwargs

    async def _mark_tab(self, request: gr.Request) -> None:
        # Runs on the event loop (async), like the sweep: no lock needed for _tabs.
        if request is not None and request.session_hash:
            self._tabs[request.session_hash] = self._clock()

    def _lifespan(self, inner: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[Any]:
            task = asyncio.create_task(self._run(app), name="studio-session-reaper")
            try:
                if inner is None:
                    yield None
                else:
                    async with inner(app) as state:
                        yield state
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        return lifespan

    async def _run(self, app: Any) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(self.interval_s)
            rounds += 1
            try:
                self.sweep(app)
                if rounds % 40 == 0:
                    sweep_deep_links(Path(app.uploaded_file_dir))
            except Exception:  # a sweep that fails must not stop the next ones
                log.exception("session sweep failed")

    # -- the sweep -----------------------------------------------------------------------------
    def sweep(self, app: Any) -> SweepStats:
        holder = app.state_holder
        blocks = app.get_blocks()
        queue = blocks._queue
        defaults = blocks.default_config
        now = self._clock()
        wall_now = datetime.datetime.now()
        busy = {event.session_hash for event in list(queue.event_ids_to_events.values())}
        stats = SweepStats()
        spare: list[tuple[datetime.datetime, str]] = []  # droppable when over the soft cap
        open_tabs: list[str] = []
        for sid, session in list(holder.session_data.items()):
            if sid in busy:
                continue
            if sid in self._tabs and not session.is_closed:
                open_tabs.append(sid)
                continue
            last_used = holder.time_last_used.get(sid, wall_now)
            idle = (wall_now - last_used).total_seconds()
            if idle >= self.grace_s and _untouched(session, defaults):
                self._drop(holder, sid)
                stats.dropped_untouched += 1
            elif idle >= self.idle_ttl_s:
                self._drop(holder, sid)
                stats.dropped_idle += 1
            else:
                spare.append((last_used, sid))
        soft_cap = max(1, self.max_sessions * 3 // 4)
        excess = len(holder.session_data) - soft_cap
        if excess > 0:
            for _, sid in sorted(spare)[:excess]:
                self._drop(holder, sid)
                stats.dropped_over_cap += 1
        with holder.lock:  # open tabs go to the young end: Gradio's LRU cap takes others first
            for sid in open_tabs:
                if sid in holder.session_data:
                    holder.session_data.move_to_end(sid)
        if len(open_tabs) > self.max_sessions and now - self._warned_at > 600:
            self._warned_at = now
            log.warning(
                "%d tabs are open but STUDIO_MAX_SESSIONS is %d: the least recently used lose "
                "their session state; raise STUDIO_MAX_SESSIONS",
                len(open_tabs),
                self.max_sessions,
            )
        self._forget(holder, queue, now)
        stats.held, stats.open_tabs = len(holder.session_data), len(open_tabs)
        self.last = stats
        return stats

    def _drop(self, holder: Any, sid: str) -> None:
        holder.delete_state(sid)  # State delete callbacks, as Gradio's own expiry runs them
        with holder.lock:
            holder.session_data.pop(sid, None)
            holder.time_last_used.pop(sid, None)

    def _forget(self, holder: Any, queue: Any, now: float) -> None:
        """Drop marks of sessions Gradio no longer holds (after a grace: the mark can run before a
        sweep sees the session), and the queue's leftovers of sessions that are gone: an empty set
        of event ids (Gradio never removes it: ~400 B per API call, unbounded) and an empty message
        queue. Only when both are empty, so no result waits there and no stream reads them."""
        for sid, marked in list(self._tabs.items()):
            if sid not in holder.session_data and now - marked > 60:
                del self._tabs[sid]
        for sid, ids in list(queue.pending_event_ids_session.items()):
            if ids or sid in holder.session_data:
                continue
            messages = queue.pending_messages_per_session.get(sid)
            if messages is None or messages.empty():
                queue.pending_event_ids_session.pop(sid, None)
                queue.pending_messages_per_session.pop(sid, None)


DEEP_LINK_TTL_S = 60.0


def sweep_deep_links(upload_dir: Path, ttl_s: float = DEEP_LINK_TTL_S) -> int:
    """Gradio's /gradio_api/deep_link writes the session's whole config (~300 KB) under the upload
    folder on every GET and never deletes it; the app offers no deep links, so none is kept long."""
    import shutil

    cutoff, removed = time.time() - ttl_s, 0
    for folder in (upload_dir / "deep_links").glob("*"):
        try:
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed


def _untouched(session: Any, defaults: Any) -> bool:
    """True when the session holds nothing a fresh one would not: no State value and the app's own
    block and function objects (an event that updates a component stores a new object)."""
    if session.state_data:
        return False
    config = session.blocks_config
    if len(config.blocks) != len(defaults.blocks) or len(config.fns) != len(defaults.fns):
        return False
    blocks, fns = defaults.blocks, defaults.fns
    return all(block is blocks.get(key) for key, block in config.blocks.items()) and all(
        fn is fns.get(key) for key, fn in config.fns.items()
    )


def session_reaper(demo: gr.Blocks, max_sessions: int) -> SessionReaper | None:
    """In build_app, inside the Blocks context: the reaper for `demo`, its tab marker registered
    (None when `max_sessions` is 0: Gradio's default, 10,000 kept with no sweep)."""
    if max_sessions <= 0:
        return None
    reaper = SessionReaper(max_sessions)
    reaper.mark_tabs(demo)
    return reaper


def install_session_bounds(demo: gr.Blocks, options: dict[str, Any]) -> None:
    """In launch: add the cap and the sweeper of `demo.session_reaper` (if any) to `options`."""
    reaper = getattr(demo, "session_reaper", None)
    if reaper is not None:
        reaper.add_launch_options(options)
