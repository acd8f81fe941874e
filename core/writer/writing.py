"""Writing with one loaded model, no storage: the outline of a long piece, 1-4 variants (short, or a
section at a time) merged into one stream with notes on how each came out, and a rewrite of part of
a draft a section at a time. WriterService picks the model and keeps the drafts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from backends.text.base import BackendError, GenerationParams, Message, StreamStats, TextBackend
from core.errors import InputError
from core.writer.brief import Brief, WriteOptions
from core.writer.prompts import fit, max_tokens, outline_prompt, section_count, section_prompt, short_prompt
from core.writer.run import Event, merge_variants, split_for_rewrite
from core.writer.store import DraftStatus
from core.writer.templates import STAGE_BUILTINS, RewriteOp, render
from core.writer.text import MAX_SECTIONS, Outline, assemble, clean_output, parse_outline, plain_text, words

OUTLINE_LIMIT = 4_000  # characters in an (edited) outline
EARLY_STOP_FRACTION = 0.4  # a piece this far short of its target length "stopped early"


@dataclass
class WriteUpdate:
    phase: str  # outline | writing | done
    texts: list[str]
    outline: str = ""
    done_steps: int = 0
    total_steps: int = 0
    progress: str = ""  # e.g. "Variant 2: section 3 of 5"
    notes: list[str] = field(default_factory=list)  # adjustments and per-variant warnings
    errors: list[str] = field(default_factory=list)  # backend failures (partial text kept)
    warnings: list[str] = field(default_factory=list)  # the model stopped early / returned nothing (also in notes)
    status: DraftStatus = "streaming"  # streaming | complete | cut
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class RewriteUpdate:
    text: str  # the whole draft with the rewritten part spliced in
    done: bool = False
    notes: list[str] = field(default_factory=list)
    error: str = ""
    status: DraftStatus = "streaming"


def stream_outline(backend: TextBackend, brief: Brief, options: WriteOptions, cancel: threading.Event) -> Iterator[str]:
    """The outline of a long piece, as it grows (cumulative text); `options` already checked."""
    messages = outline_prompt(brief)
    params = options.params(0, fit(backend, messages, 80 + 30 * section_count(brief)))
    text = ""
    stream = backend.stream_chat(messages, params, cancel, StreamStats())
    try:
        for delta in stream:
            text += delta
            yield text
    finally:
        stream.close()


def resolve_outline(brief: Brief, outline_text: str) -> tuple[Outline, list[str]]:
    """The outline to write from: the (edited) text parsed, or the template's default sections
    when it has no usable headings."""
    notes = []
    if len(outline_text or "") > OUTLINE_LIMIT:
        raise InputError(
            f"The outline is {len(outline_text):,} characters; the limit is {OUTLINE_LIMIT:,}. "
            "Keep it to a title and a heading per line."
        )
    outline = parse_outline(outline_text or "")
    if outline.truncated:
        notes.append(
            f"The outline has {len(outline.sections) + outline.truncated} sections; the first "
            f"{MAX_SECTIONS} are written."
        )
    if len(outline.sections) < 1:
        outline = Outline(outline.title, list(brief.template.default_sections))
        if (outline_text or "").strip():
            notes.append(
                "The outline had no headings I could read (one per line, e.g. '1. Heading'); "
                "the template's default sections were used."
            )
    if not outline.title:
        outline.title = brief.title
    return outline, notes


def write(
    backend: TextBackend,
    brief: Brief,
    options: WriteOptions,
    cancel: threading.Event,
    *,
    notes: list[str],
    angles: Sequence[str],
    model: str,
    outline_text: str | None = None,
    parallel: int | None = None,
) -> Iterator[WriteUpdate]:
    """Write options.variants variants (`options` already checked, `notes` the adjustments so far),
    streaming every variant's text. A long piece without an outline gets one first (phase 'outline').
    Ends with an update whose status is 'complete' or 'cut'. Variants run concurrently up to the
    backend's max_concurrency (`parallel` overrides it, for benchmarks); `model` names it in the stats."""
    n = options.variants
    outline: Outline | None = None
    outline_text = outline_text or ""
    jobs: list[Generator[Event, None, None]]
    if brief.template.kind == "long":
        if not outline_text.strip():
            for outline_text in stream_outline(backend, brief, options, cancel):
                yield WriteUpdate(
                    "outline", [""] * n, outline=outline_text, progress="Writing the outline", notes=notes
                )
            if cancel.is_set():
                yield WriteUpdate("done", [""] * n, outline=outline_text, notes=notes, status="cut")
                return
        outline, outline_notes = resolve_outline(brief, outline_text)
        notes += outline_notes
        outline_text = outline.as_text()  # what is written from: the title and headings as read
        jobs = [_long_variant(backend, brief, outline, options, angles, i, n, cancel) for i in range(n)]
        total = n * len(outline.sections)
    else:
        fit(backend, short_prompt(brief, angles, 0, n), max_tokens(brief))  # refuse before streaming
        jobs = [_short_variant(backend, brief, options, angles, i, n, cancel) for i in range(n)]
        total = n
    parallel = max(1, min(n, parallel or backend.capabilities().max_concurrency))
    texts, errors = [""] * n, [""] * n
    finishes: list[str | None] = [None] * n
    done_steps, progress = 0, ""
    t0 = time.perf_counter()
    for i, event in merge_variants(jobs, parallel, cancel):
        if event.kind == "text":
            texts[i] = event.text
        elif event.kind == "step":
            done_steps += 1
            progress = event.step
        elif event.kind == "done":
            texts[i], finishes[i] = event.text, event.finish
            done_steps += 0 if brief.template.kind == "long" else 1
        elif event.kind == "error":
            errors[i] = f"Variant {i + 1}: {event.error}" if n > 1 else event.error
            texts[i] = event.text or texts[i]
        yield WriteUpdate(
            "writing",
            list(texts),
            outline=outline_text,
            done_steps=done_steps,
            total_steps=total,
            progress=progress,
            notes=notes,
        )
    cut = cancel.is_set() or any(errors)
    warnings = _result_notes(brief, texts, finishes, errors, cancel.is_set())
    final_notes = notes + warnings
    if cancel.is_set():
        final_notes.append("Stopped: what was written so far is kept.")
    stats = {"seconds": round(time.perf_counter() - t0, 2), "variants": n, "parallel": parallel, "model": model}
    yield WriteUpdate(
        "done",
        list(texts),
        outline=outline_text,
        done_steps=total,
        total_steps=total,
        notes=final_notes,
        errors=[e for e in errors if e],
        warnings=warnings,
        status="cut" if cut else "complete",
        stats=stats,
    )


def _result_notes(
    brief: Brief, texts: list[str], finishes: Sequence[str | None], errors: list[str], stopped: bool
) -> list[str]:
    notes = []
    n = len(texts)
    name = (lambda i: f"Variant {i + 1}") if n > 1 else (lambda i: "The piece")
    for i, text in enumerate(texts):
        if errors[i]:
            continue
        count = len(words(plain_text(text)))
        if not text.strip():
            if not stopped:
                notes.append(
                    f"{name(i)}: the model returned nothing. Generate again, raise the "
                    "temperature, or pick another model."
                )
        elif stopped:
            continue
        elif finishes[i] == "length":
            notes.append(f"{name(i)} reached the length limit and may end mid-sentence.")
        elif brief.length and brief.length >= 60 and count < EARLY_STOP_FRACTION * brief.length:
            notes.append(
                f"{name(i)} is {count} words, well short of the {brief.length} asked for: the model "
                "stopped early. Generate again, or pick a stronger model."
            )
    seen: dict[str, int] = {}
    for i, text in enumerate(texts):
        if text.strip() and text in seen:
            notes.append(f"Variants {seen[text] + 1} and {i + 1} came out the same; raise the temperature.")
        seen.setdefault(text, i)
    return notes


def _stream_piece(
    backend: TextBackend,
    messages: list[Message],
    params: GenerationParams,
    cancel: threading.Event,
    whole: Callable[[str], str],
    got: list[str],
) -> Generator[Event, None, str | None]:
    """Stream one model reply as text events; whole() turns the reply so far into the variant's
    whole text. `got[0]` holds the reply so far (kept when the stream fails); returns the
    finish reason."""
    stats = StreamStats()
    got[:] = [""]
    stream = backend.stream_chat(messages, params, cancel, stats)
    try:
        for delta in stream:
            got[0] += delta
            yield Event("text", whole(got[0]))
    finally:
        stream.close()
    return stats.finish_reason


def _short_variant(
    backend: TextBackend,
    brief: Brief,
    options: WriteOptions,
    angles: Sequence[str],
    i: int,
    n: int,
    cancel: threading.Event,
) -> Generator[Event, None, None]:
    messages = short_prompt(brief, angles, i, n)
    params = options.params(i, fit(backend, messages, max_tokens(brief)), brief.template.stop)
    got = [""]
    try:
        finish = yield from _stream_piece(backend, messages, params, cancel, lambda r: r, got)
    except BackendError as exc:
        yield Event("error", clean_output(got[0] or getattr(exc, "partial", "")), error=str(exc))
        return
    yield Event("done", clean_output(got[0]), finish=finish)


def _long_variant(
    backend: TextBackend,
    brief: Brief,
    outline: Outline,
    options: WriteOptions,
    angles: Sequence[str],
    i: int,
    n: int,
    cancel: threading.Event,
) -> Generator[Event, None, None]:
    done: list[tuple[str, str]] = []
    count = len(outline.sections)
    section_words = max(40, (brief.length or 600) // count)
    finish = None
    for k, heading in enumerate(outline.sections):
        if cancel.is_set():
            break
        yield Event("step", step=(f"Variant {i + 1}: " if n > 1 else "") + f"section {k + 1} of {count}")
        previous = done[-1][1] if done else ""
        messages = section_prompt(brief, outline, k, previous, i, n, angles)
        params = options.params(i * 100 + k, fit(backend, messages, max_tokens(brief, section_words)))
        got = [""]
        try:
            finish = yield from _stream_piece(
                backend,
                messages,
                params,
                cancel,
                lambda r: assemble(outline.title, done + [(heading, r)]),  # noqa: B023 - called within this iteration
                got,
            )
        except BackendError as exc:
            done.append((heading, clean_output(got[0] or getattr(exc, "partial", ""), heading)))
            yield Event("error", assemble(outline.title, done), error=f"{exc} (stopped at section {k + 1} of {count})")
            return
        done.append((heading, clean_output(got[0], heading)))
    yield Event("done", assemble(outline.title, done), finish=finish)


def rewrite(
    backend: TextBackend,
    text: str,
    start: int,
    end: int,
    op: RewriteOp,
    language: str,
    options: WriteOptions,
    system: str,
    cancel: threading.Event,
) -> Iterator[RewriteUpdate]:
    """Rewrite text[start:end] with `op` (`options` already checked, `system` the rewrite system
    prompt), a section at a time for long text, streaming the whole text with the new part spliced in."""
    before, target, after = text[:start], text[start:end], text[end:]
    chunks = split_for_rewrite(target)
    done: list[str] = []
    notes: list[str] = []
    joiner = "\n\n"
    lead = target[: len(target) - len(target.lstrip())]
    trail = target[len(target.rstrip()) :]

    def whole(parts: Sequence[str]) -> str:
        return before + lead + joiner.join(p.strip() for p in parts) + trail + after

    for k, chunk in enumerate(chunks):
        if cancel.is_set():
            break
        values = {"text": chunk, "words": len(words(plain_text(chunk))), "language": language}
        user = render(op.instruction, values, STAGE_BUILTINS["rewrite"])
        messages: list[Message] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        chunk_tokens = backend.count_tokens([{"role": "user", "content": chunk}])
        params = options.params(k, fit(backend, messages, int(chunk_tokens * op.length_factor) + 64))
        got = [""]
        events = _stream_piece(backend, messages, params, cancel, lambda r: whole(done + [r] + chunks[k + 1 :]), got)  # noqa: B023 - same iteration
        try:
            for event in events:
                yield RewriteUpdate(event.text, notes=notes)
        except BackendError as exc:
            done.append(clean_output(got[0] or getattr(exc, "partial", "")) or chunk)
            yield RewriteUpdate(whole(done + chunks[k + 1 :]), done=True, notes=notes, error=str(exc), status="cut")
            return
        finally:
            events.close()
        cleaned = clean_output(got[0])
        if not cleaned:
            notes.append(f"The model returned nothing for part {k + 1} of {len(chunks)}; the original was kept.")
            cleaned = chunk
        done.append(cleaned)
    status: DraftStatus = "cut" if cancel.is_set() else "complete"
    yield RewriteUpdate(whole(done + chunks[len(done) :]), done=True, notes=notes, status=status)
