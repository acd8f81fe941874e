"""Writing with one loaded model, no storage: 1-4 variants (short, or a section at a time from the
outline, outlining.py) merged into one stream, each checked and repaired (repair.py), with notes on how
each came out. Rewrites are in rewriting.py. WriterService picks the model and keeps the drafts."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from backends.text.base import BackendError, GenerationParams, Message, StreamStats, TextBackend
from core.writer.brief import Brief, WriteOptions
from core.writer.checks import drop_fragments, drop_unfinished, missing_keywords
from core.writer.outlining import resolve_outline, stream_outline
from core.writer.prompts import fit, max_tokens, plan_keywords, section_prompt, section_words, short_prompt
from core.writer.repair import app_repair_prompts, aspects, clean, goal_for, polish
from core.writer.run import Event, merge_variants
from core.writer.store import DraftStatus
from core.writer.text import Outline, assemble, clean_output, plain_text, words

EARLY_STOP_FRACTION = 0.4  # a piece this far short of its target length "stopped early"
FORMAT_TRIES = 3  # a piece with a fixed format (no length) is written again, best of these, when it misses keywords


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
    repair: Mapping[str, str] | None = None,
) -> Iterator[WriteUpdate]:
    """Write options.variants variants (`options` already checked, `notes` the adjustments so far),
    streaming every variant's text. A long piece without an outline gets one first (phase 'outline').
    Ends with an update whose status is 'complete' or 'cut'. Variants run concurrently up to the
    backend's max_concurrency (`parallel` overrides it, for benchmarks); `model` names it in the stats.
    Every variant is checked and repaired (repair.py) with the `repair` prompts (the app's by default)."""
    n = options.variants
    repair = repair or app_repair_prompts()
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
        jobs = [_long_variant(backend, brief, outline, options, angles, i, n, cancel, repair) for i in range(n)]
        total = n * len(outline.sections)
    else:
        fit(backend, short_prompt(brief, angles, 0, n), max_tokens(brief))  # refuse before streaming
        jobs = [_short_variant(backend, brief, options, angles, i, n, cancel, repair) for i in range(n)]
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
        elif event.kind == "status":  # a repair step: shown, not counted
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


def _repair_params(options: WriteOptions, base: int) -> Callable[[int, int, dict[str, Any] | None], GenerationParams]:
    """Params for repair call `attempt` of one variant: its own seed, budget and output schema."""

    def params(attempt: int, max_new: int, schema: dict[str, Any] | None) -> GenerationParams:
        return dataclasses.replace(options.params(base + 7919 * attempt, max_new), json_schema=schema)

    return params


def _short_variant(
    backend: TextBackend,
    brief: Brief,
    options: WriteOptions,
    angles: Sequence[str],
    i: int,
    n: int,
    cancel: threading.Event,
    repair: Mapping[str, str],
) -> Generator[Event, None, None]:
    """One short piece: streamed, then checked and repaired. A piece with a length is polished
    (continued, keyword sentences, trimmed); a fixed-format piece (no length: a post, a meta
    description) is written again, best of FORMAT_TRIES, while it misses keywords."""
    goal = goal_for(brief, repair, [brief.template.prompt, *angles])
    best, best_missing, finish = "", None, None
    tries = FORMAT_TRIES if brief.length is None and brief.keywords else 1
    for attempt in range(tries):
        messages = short_prompt(brief, angles, i, n)
        params = options.params(i + 1000 * attempt, fit(backend, messages, max_tokens(brief)), brief.template.stop)
        got = [""]
        try:
            finish = yield from _stream_piece(backend, messages, params, cancel, lambda r: r, got)
        except BackendError as exc:
            yield Event("error", clean(got[0] or getattr(exc, "partial", ""), goal) or best, error=str(exc))
            return
        text = clean(got[0], goal)
        if brief.length is not None:  # prose: no debris, no title, no sentence cut off by the budget
            text = drop_fragments(text, [*goal.keywords, goal.cta])
            text = drop_unfinished(text) if finish == "length" else text
        missing = len(missing_keywords(text, goal.keywords))
        if best_missing is None or (text and missing < best_missing):
            best, best_missing = text, missing
        if not best_missing or cancel.is_set():
            break
        yield Event("status", step=(f"Variant {i + 1}: " if n > 1 else "") + "writing again for the missing keywords")
    text = best
    if brief.length is not None and text and not cancel.is_set():
        label = f"Variant {i + 1}: " if n > 1 else ""
        try:
            text = yield from polish(
                backend, goal, text, _repair_params(options, i * 100 + 50), cancel, lambda t: t, label
            )
        except BackendError as exc:
            yield Event("error", text, error=str(exc))
            return
    yield Event("done", text, finish=finish)


def _long_variant(
    backend: TextBackend,
    brief: Brief,
    outline: Outline,
    options: WriteOptions,
    angles: Sequence[str],
    i: int,
    n: int,
    cancel: threading.Event,
    repair: Mapping[str, str],
) -> Generator[Event, None, None]:
    """A long piece a section at a time: each section carries its share of the keywords and its share
    of the words, and is checked and repaired before the next one starts."""
    done: list[tuple[str, str]] = []
    count = len(outline.sections)
    share = section_words(brief, outline)
    plan = plan_keywords(brief.keywords, outline.sections)
    label = f"Variant {i + 1}: " if n > 1 else ""
    finish = None
    for k, heading in enumerate(outline.sections):
        if cancel.is_set():
            break
        yield Event("step", step=f"{label}section {k + 1} of {count}")
        previous = done[-1][1] if done else ""
        messages = section_prompt(brief, outline, k, previous, i, n, angles, plan[k])
        params = options.params(i * 100 + k, fit(backend, messages, max_tokens(brief, share)))
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
        last = k == count - 1
        goal = goal_for(
            brief,
            repair,
            [brief.template.section_prompt, brief.template.outline_prompt, *angles],
            aspects=[heading, *aspects(brief)],
            words=share,
            keywords=plan[k],
            cta=str(brief.values.get("cta") or "") if last else "",
        )
        text = drop_fragments(clean(got[0], goal, heading), [*goal.keywords, goal.cta], headings=True)
        text = drop_unfinished(text) if finish == "length" else text
        if not cancel.is_set():
            try:
                text = yield from polish(
                    backend,
                    goal,
                    text,
                    _repair_params(options, i * 100 + k + 50),
                    cancel,
                    lambda t: assemble(outline.title, done + [(heading, t)]),  # noqa: B023 - called within this iteration
                    f"{label}section {k + 1}: ",
                )
            except BackendError as exc:
                done.append((heading, text))
                yield Event(
                    "error", assemble(outline.title, done), error=f"{exc} (stopped at section {k + 1} of {count})"
                )
                return
        done.append((heading, text))
    yield Event("done", assemble(outline.title, done), finish=finish)
