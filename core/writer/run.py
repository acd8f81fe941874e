"""Running generations for the writer: variants merged into one stream (in a thread pool when the
backend can serve several at once, else one after another), and the pieces a rewrite works on."""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from core.errors import InputError

log = logging.getLogger(__name__)

REWRITE_CHUNK_WORDS = 350  # a long draft is rewritten a section at a time (small models, short context)


@dataclass
class Event:
    kind: str  # text | step | done | error
    text: str = ""
    step: str = ""
    finish: str | None = None
    error: str = ""


def find_selection(text: str, selection: str) -> tuple[int, int]:
    """(start, end) of `selection` in `text`; the whole text when the selection is empty. Pasted
    text may differ in whitespace. InputError when it is not there."""
    if not selection.strip():
        return 0, len(text)
    i = text.find(selection)
    if i >= 0:
        return i, i + len(selection)
    pattern = r"\s+".join(re.escape(w) for w in selection.split())
    m = re.search(pattern, text)
    if m is None:
        raise InputError(
            "The selected text is not in the draft (it may have been edited since). Select it again, "
            "or clear the selection box to rewrite the whole draft."
        )
    return m.start(), m.end()


def split_for_rewrite(text: str, max_words: int = REWRITE_CHUNK_WORDS) -> list[str]:
    """Sections (split before Markdown headings), merged up to `max_words`; a long section is split
    between paragraphs. Short text is one chunk."""
    if len(text.split()) <= max_words:
        return [text.strip()]
    sections = [s.strip() for s in re.split(r"(?m)^(?=#{1,6}\s)", text) if s.strip()]
    pieces: list[str] = []
    for section in sections:
        if len(section.split()) <= max_words:
            pieces.append(section)
            continue
        current: list[str] = []
        for para in re.split(r"\n\s*\n", section):
            if current and len(" ".join(current + [para]).split()) > max_words:
                pieces.append("\n\n".join(current))
                current = []
            current.append(para.strip())
        if current:
            pieces.append("\n\n".join(current))
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len((chunks[-1] + " " + piece).split()) <= max_words:
            chunks[-1] = chunks[-1] + "\n\n" + piece
        else:
            chunks.append(piece)
    return chunks


_DONE = object()


def merge_variants(
    jobs: Sequence[Generator[Event, None, None]], parallel: int, cancel: threading.Event
) -> Iterator[tuple[int, Event]]:
    """Events of several variant generators, tagged with their index, run by a pool of `parallel`
    threads: 1 runs them one after another in order; more run that many at once (each variant makes
    its own requests; the backend said it can serve that many). Generation never runs in the
    consumer's thread, so a slow consumer (saving to SQLite, sending to a browser) never stalls
    decoding. Unexpected engine errors become error events: one variant failing loses no other."""

    def guarded(job: Generator[Event, None, None]) -> Iterator[Event]:
        try:
            yield from job
        except InputError as exc:
            yield Event("error", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - an engine bug must not take the other variants down
            log.exception("variant failed")
            yield Event("error", error=f"The model failed unexpectedly ({type(exc).__name__}). Try again.")
        finally:
            job.close()

    events: queue.Queue = queue.Queue()

    def run(i: int, job: Generator[Event, None, None]) -> None:
        try:
            for event in guarded(job):
                events.put((i, event))
        finally:
            events.put((i, _DONE))

    pool = ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="writer-variant")
    remaining = len(jobs)
    try:
        for i, job in enumerate(jobs):
            pool.submit(run, i, job)
        while remaining:
            i, event = events.get()
            if event is _DONE:
                remaining -= 1
            else:
                yield i, event
    finally:
        if remaining:  # the consumer left early: stop every variant before waiting for them
            cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
