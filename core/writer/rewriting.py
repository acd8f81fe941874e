"""Rewriting part of a draft with one loaded model: a section at a time, each reply constrained to
JSON {"text": ...}, checked (not empty, not the instruction or a label, really changed, shorter or
longer when asked) and tried again with another seed when it fails; what the person gets is never the
instruction: at worst an extract (Shorter) or the original part, with a note saying so."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from backends.text.base import BackendError, GenerationParams, Message, StreamStats, TextBackend
from core.writer.brief import WriteOptions
from core.writer.checks import block_labels, drop_near_duplicates, json_field, prompt_runs, strip_prompt, trim_to_words
from core.writer.prompts import fit
from core.writer.repair import app_repair_prompts, continuation, make_goal
from core.writer.run import split_for_rewrite
from core.writer.store import DraftStatus
from core.writer.templates import STAGE_BUILTINS, RewriteOp, render
from core.writer.text import clean_output, plain_text, words

REWRITE_TRIES = 5  # a small model often copies the text at first; each retry is hotter (RETRY_WARMER)
SHORTER_MAX = 0.85  # Shorter: at most this fraction of the words (else trimmed to SHORTER_TRIM)
SHORTER_TRIM = 0.6
LONGER_MIN = 1.1  # Longer: at least this fraction
RETRY_WARMER = 0.2  # each retry samples this much hotter


@dataclass
class RewriteUpdate:
    text: str  # the whole draft with the rewritten part spliced in
    done: bool = False
    notes: list[str] = field(default_factory=list)
    error: str = ""
    status: DraftStatus = "streaming"


def _count(text: str) -> int:
    return len(words(plain_text(text)))


def _norm(text: str) -> str:
    return " ".join(w.lower() for w in words(text))


def rewrite_schema(chunk: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": max(1, min(40, len(chunk.strip()) // 3))}},
        "required": ["text"],
    }


def clean_rewrite(reply: str, runs: Sequence[str], labels: Any) -> str:
    """The rewritten text out of a reply: the JSON read leniently, wrapping and loops removed, and
    anything that came from the instruction (a sentence of it, a label, a placeholder) cut out."""
    out, _ = strip_prompt(clean_output(json_field(reply, "text")), runs, labels)
    return drop_near_duplicates(out)


def judge(op: RewriteOp, chunk: str, out: str) -> str:
    """Why `out` is not a rewrite of `chunk` by `op` ("" when it is)."""
    before, after = _count(chunk), _count(out)
    if not out.strip() or after == 0:
        return "empty"
    if _norm(out) == _norm(chunk) and op.name != "grammar":
        return "unchanged"
    if op.name == "shorter" and after > SHORTER_MAX * before:
        return "not shorter"
    if op.name == "longer" and after < LONGER_MIN * before:
        return "not longer"
    if op.name != "shorter" and after < 0.4 * before:
        return "most of the text lost"
    return ""


def _shape(op: RewriteOp, chunk: str, out: str) -> str:
    """A Shorter reply that kept nearly every word is trimmed at a sentence boundary (only a reply
    that changed the text: an unchanged one is refused by judge())."""
    if op.name == "shorter" and out.strip() and _norm(out) != _norm(chunk):
        before = _count(chunk)
        if _count(out) > SHORTER_MAX * before:
            return trim_to_words(out, max(5, int(SHORTER_TRIM * before)))
    return out


def _fallback(op: RewriteOp, chunk: str, tries: list[str], part: str) -> tuple[str, str]:
    """The result when no try passed, and the note that says so."""
    if op.name == "shorter":
        short = trim_to_words(chunk, max(5, int(SHORTER_TRIM * _count(chunk))))
        if _count(short) < _count(chunk):
            return short, f"The model could not shorten {part}; its last sentences were cut instead."
    usable = [t for t in tries if t.strip() and judge(op, chunk, t) in ("not longer", "not shorter")]
    if usable:
        return max(usable, key=_count), f"The model's {op.label.lower()} version of {part} is about as long as before."
    return chunk, f"The model gave no usable {op.label.lower()} version of {part}; the original was kept."


def _lengthen(
    backend: TextBackend,
    chunk: str,
    tries: list[str],
    options: WriteOptions,
    k: int,
    language: str,
    cancel: threading.Event,
) -> str:
    """Longer, when no try came out longer: the best try (or the text) with a paragraph of new detail
    added (repair.continuation); "" when that fails too."""
    base = max([t for t in tries if t.strip() and _count(t) >= 0.8 * _count(chunk)] or [chunk], key=_count)
    first = " ".join(chunk.split(".")[0].split()[:20])
    goal = make_goal(
        words=None,
        keywords=(),
        cta="",
        what="text",
        topic=first,
        language=language,
        system="You are a careful editor.",
        prompt_texts=[],
        repair_prompts=app_repair_prompts(),
        aspects=["a concrete example", "why it matters to the reader"],
    )

    def params(attempt: int, max_new: int, schema: dict[str, Any] | None) -> GenerationParams:
        return dataclasses.replace(options.params(k + 1000 * (REWRITE_TRIES + attempt), max_new), json_schema=schema)

    for attempt in range(2):
        added = continuation(backend, goal, base, max(30, _count(chunk) // 2), params, attempt, cancel)
        longer = drop_near_duplicates(f"{base}\n\n{added}") if added else base
        if _count(longer) >= LONGER_MIN * _count(chunk):
            return longer
    return ""


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
    runs = prompt_runs([op.instruction, system])
    labels = block_labels([op.instruction])

    def whole(parts: Sequence[str]) -> str:
        return before + lead + joiner.join(p.strip() for p in parts) + trail + after

    for k, chunk in enumerate(chunks):
        if cancel.is_set():
            break
        part = f"part {k + 1} of {len(chunks)}" if len(chunks) > 1 else "the text"
        values = {"text": chunk, "words": len(words(plain_text(chunk))), "language": language}
        user = render(op.instruction, values, STAGE_BUILTINS["rewrite"])
        messages: list[Message] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        chunk_tokens = backend.count_tokens([{"role": "user", "content": chunk}])
        budget = fit(backend, messages, int(chunk_tokens * op.length_factor) + 64)
        tries: list[str] = []
        result = ""
        for attempt in range(REWRITE_TRIES):
            if cancel.is_set():
                break
            params = dataclasses.replace(
                options.params(k + 1000 * attempt, budget),
                json_schema=rewrite_schema(chunk),
                # a small model that copied the text (or the instruction) is pushed further from it on a retry
                temperature=min(1.3, options.temperature + RETRY_WARMER * attempt),
            )
            reply = ""
            stream = backend.stream_chat(messages, params, cancel, StreamStats())
            try:
                for delta in stream:
                    reply += delta
                    yield RewriteUpdate(whole(done + [json_field(reply, "text")] + chunks[k + 1 :]), notes=notes)
            except BackendError as exc:
                partial = clean_rewrite(reply or getattr(exc, "partial", ""), runs, labels)
                done.append(partial if not judge(op, chunk, partial) else chunk)
                yield RewriteUpdate(whole(done + chunks[k + 1 :]), done=True, notes=notes, error=str(exc), status="cut")
                return
            finally:
                stream.close()
            out = _shape(op, chunk, clean_rewrite(reply, runs, labels))
            if not judge(op, chunk, out):
                result = out
                break
            tries.append(out)
        if cancel.is_set() and not result:
            break
        if not result and op.name == "longer" and not cancel.is_set():
            result = _lengthen(backend, chunk, tries, options, k, language, cancel)
        if not result:
            result, note = _fallback(op, chunk, tries, part)
            notes.append(note)
        done.append(result)
        yield RewriteUpdate(whole(done + chunks[k + 1 :]), notes=notes)
    status: DraftStatus = "cut" if cancel.is_set() else "complete"
    yield RewriteUpdate(whole(done + chunks[len(done) :]), done=True, notes=notes, status=status)
