"""One image model's line of jobs: one job at a time on the model, turns shared fairly between users."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from backends.image.base import ImageCancelled

WAIT_POLL_S = 0.05  # how often a queued job looks at its cancel event


@dataclass(eq=False)
class _Ticket:
    user: str
    order: int  # arrival: a user's jobs go in this order


class ModelQueue:
    """Jobs on one model, one at a time, fair between users. When the model is free, the waiting job whose
    user had it least recently goes next (a user's own jobs in arrival order); between two images a job hands
    the model over when another user is waiting (`Turn.share`), so turns go round-robin across users and one
    user's 16-image batch does not hold everyone else back. A waiting job learns how many jobs are ahead of
    it, and leaves the line as soon as it is cancelled."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._running: _Ticket | None = None
        self._served: dict[str, int] = {}  # user -> when (a count of turns) they last got the model
        self._turns = itertools.count(1)
        self._arrivals = itertools.count()

    def _key(self, ticket: _Ticket) -> tuple[int, int]:
        return self._served.get(ticket.user, 0), ticket.order

    def _acquire(self, ticket: _Ticket, cancel: threading.Event, on_wait: Callable[[int], None] | None) -> bool:
        """With the lock held: wait for this ticket's turn. True when it had to wait."""
        self._waiting.append(ticket)
        waited = False
        try:
            told = None
            while self._running is not None or min(self._waiting, key=self._key) is not ticket:
                waited = True
                mine = self._key(ticket)
                ahead = sum(1 for t in self._waiting if self._key(t) < mine) + (self._running is not None)
                if ahead != told and on_wait is not None:
                    on_wait(ahead)
                    told = ahead
                if cancel.is_set():
                    raise ImageCancelled("Cancelled while waiting for the model.")
                self._cond.wait(WAIT_POLL_S)
            self._waiting.remove(ticket)
            self._running = ticket
            self._served[ticket.user] = next(self._turns)
            return waited
        except BaseException:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
                self._cond.notify_all()
            raise

    def _release(self) -> None:
        self._running = None
        if not self._waiting:
            self._served.clear()  # idle: nobody to be fair to, and the map stays bounded
        self._cond.notify_all()

    @contextmanager
    def slot(
        self, cancel: threading.Event, on_wait: Callable[[int], None] | None = None, user: str = ""
    ) -> Iterator[Turn]:
        ticket = _Ticket(user, next(self._arrivals))
        with self._cond:
            self._acquire(ticket, cancel, on_wait)
        try:
            yield Turn(self, ticket, cancel, on_wait)
        finally:
            with self._cond:
                if self._running is ticket:
                    self._release()

    @property
    def busy(self) -> int:
        """Jobs running or waiting."""
        with self._cond:
            return len(self._waiting) + (self._running is not None)


@dataclass
class Turn:
    """A job's hold on its model (from ModelQueue.slot)."""

    queue: ModelQueue
    ticket: _Ticket
    cancel: threading.Event
    on_wait: Callable[[int], None] | None

    def share(self) -> bool:
        """Between two images: when another user is waiting, let them have the model first, then wait for it
        again. True when the job waited (raises ImageCancelled when cancelled meanwhile)."""
        q = self.queue
        with q._cond:
            if q._running is not self.ticket or not any(t.user != self.ticket.user for t in q._waiting):
                return False
            q._release()
            return q._acquire(self.ticket, self.cancel, self.on_wait)
