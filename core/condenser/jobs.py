"""The model requests of a condense run: run with the backend's concurrency (lowered to one at a time
when the server cannot keep up), streamed so a cancel stops them within a few tokens, retried when a
server cuts a stream, ended early when the model loops."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from backends.text.base import GenerationParams, Message, StreamCutError, StreamStats, TextBackend, TimeoutFailedError
from core.condenser.points import is_looping
from core.condenser.request import CondenseCancelled

log = logging.getLogger(__name__)

STREAM_CUT_RETRIES = 2  # a server that cuts a stream (llama_cpp.server interrupts on a new request)


@dataclass
class Job:
    label: str
    messages: list[Message]
    params: GenerationParams
    instructions: str = ""  # the request without its data: replies echoing it are not content
    text: str = ""
    finish: str | None = None


class _Slots:
    """How many requests of a run may be in flight; lowered to one when the server cannot keep up."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._busy = 0
        self._cond = threading.Condition()

    def acquire(self, cancel: threading.Event) -> bool:
        with self._cond:
            while self._busy >= self.limit:
                if cancel.is_set():
                    return False
                self._cond.wait(0.05)
            if cancel.is_set():
                return False
            self._busy += 1
            return True

    def release(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def serialise(self) -> None:
        with self._cond:
            self.limit = 1


class JobRunner:
    """Runs a condense run's requests on one backend; `tick_s` as in CondenseService.condense."""

    def __init__(self, backend: TextBackend, cancel: threading.Event, concurrency: int, tick_s: float | None) -> None:
        self.backend, self.cancel, self.tick_s = backend, cancel, tick_s
        self.concurrency = concurrency
        self.slots = _Slots(concurrency)

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise CondenseCancelled("Condensing was cancelled.")

    def run(self, jobs: list[Job]) -> Iterator[tuple[str, int]]:
        """Run the requests with the backend's concurrency (one at a time where it has none), yielding
        ("start", i) and ("done", i), and ("tick", -1) every `tick_s` without news. Stops every
        request when cancelled, when one fails, or when the caller stops iterating."""
        if not jobs:
            return
        events: queue.Queue = queue.Queue()

        def work(i: int) -> None:
            for attempt in range(2):
                if not self.slots.acquire(self.cancel):
                    events.put(("skip", i, None))
                    return
                parallel = self.slots.limit > 1
                try:
                    if attempt == 0:
                        events.put(("start", i, None))
                    jobs[i].text, jobs[i].finish = self.generate(jobs[i])
                    events.put(("done", i, None))
                    return
                except TimeoutFailedError as exc:
                    if not parallel or attempt:
                        events.put(("error", i, exc))
                        return
                    # A server that queues requests (one model, no parallel slots) can leave the last
                    # of them waiting past the timeout: from now on, one request at a time.
                    log.warning("%s timed out with requests in parallel; continuing one at a time", jobs[i].label)
                    self.slots.serialise()
                except BaseException as exc:  # handed to the consumer thread, raised there
                    events.put(("error", i, exc))
                    return
                finally:
                    self.slots.release()

        workers = min(self.concurrency, len(jobs))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="condense")
        futures = [pool.submit(work, i) for i in range(len(jobs))]
        finished = False
        last = time.monotonic()
        try:
            done = 0
            while done < len(jobs):
                try:
                    kind, i, exc = events.get(timeout=0.05)
                except queue.Empty:
                    self.check_cancel()
                    if self.tick_s is not None and time.monotonic() - last >= self.tick_s:
                        last = time.monotonic()
                        yield "tick", -1
                    continue
                last = time.monotonic()
                if kind == "error":
                    raise exc
                if kind == "skip":
                    self.check_cancel()
                if kind in ("done", "skip"):
                    done += 1
                yield kind, i
            finished = True
        finally:
            if not finished:
                self.cancel.set()  # the run is over: stop what is still generating
            for f in futures:
                f.cancel()
            # After a cancel, return at once: a worker still inside a request ends by itself at its
            # next token (an engine cannot be interrupted mid-prompt), and nothing waits for it.
            pool.shutdown(wait=finished)

    def generate(self, job: Job) -> tuple[str, str | None]:
        """One request, streamed so a cancel stops it within a few tokens; ended early when the
        model starts repeating itself."""
        for attempt in range(STREAM_CUT_RETRIES + 1):
            stats = StreamStats()
            parts: list[str] = []
            stream = self.backend.stream_chat(job.messages, job.params, self.cancel, stats)
            looped = False
            try:
                for n, delta in enumerate(stream):
                    parts.append(delta)
                    if n % 8 == 7 and is_looping("".join(parts)):
                        looped = True
                        break
            except StreamCutError:
                if attempt < STREAM_CUT_RETRIES and not self.cancel.is_set():
                    log.info("stream cut on %s; retrying", job.label)
                    continue
                raise
            finally:
                stream.close()
            self.check_cancel()
            log.debug("%s -> %s (%s): %r", job.label, stats.finish_reason, "loop" if looped else "", "".join(parts))
            return "".join(parts), "loop" if looped else stats.finish_reason
        raise AssertionError("unreachable")
