"""How long a condense run has left, from the model requests it has finished so far: the chunks still to
summarise at the pace measured so far, then the requests that combine the notes at the measured length of one
request. Nothing is guessed before the first request has finished (the caller says "estimating")."""

from __future__ import annotations

import math
import time


class Estimate:
    """The expected end of a run, updated as its requests start and finish."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.at: float | None = None  # when the run should end, on `clock`; None: not known yet
        self.durations: list[float] = []  # of every finished request
        self._started: dict[object, float] = {}
        self._map_start: float | None = None
        self._map_finished = 0  # map requests finished, usable or not

    def left(self, now: float | None = None) -> float | None:
        """Seconds left (0 once the estimate has passed), or None before any request has finished."""
        if self.at is None:
            return None
        return max(0.0, self.at - (self.clock() if now is None else now))

    @property
    def per_request(self) -> float | None:
        return sum(self.durations) / len(self.durations) if self.durations else None

    def started(self, key: object) -> None:
        now = self.clock()
        self._started[key] = now
        if self._map_start is None:
            self._map_start = now

    def finished(self, key: object) -> None:
        begun = self._started.pop(key, None)
        if begun is not None:
            self.durations.append(self.clock() - begun)

    def map_progress(self, chunks_left: int, later_requests: int) -> None:
        """A map request finished: `chunks_left` chunks still to summarise at the pace so far (requests in
        parallel included), then `later_requests` requests one after another (the final summaries)."""
        self._map_finished += 1
        now = self.clock()
        if self._map_start is None or self.per_request is None:
            return
        pace = (now - self._map_start) / self._map_finished
        self.at = now + chunks_left * pace + later_requests * self.per_request

    def requests_ahead(self, batch: int, concurrency: int, later_requests: int) -> None:
        """A batch of `batch` requests (run `concurrency` at a time) starts, `later_requests` to follow it."""
        if self.per_request is None:
            return
        rounds = math.ceil(batch / max(1, concurrency)) + later_requests
        self.at = self.clock() + rounds * self.per_request
