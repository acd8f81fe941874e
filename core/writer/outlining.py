"""Outlines of long pieces: written by the model as JSON (a title and exactly the planned number of
headings) and streamed as the editable 'Title: ...' / '1. heading' text, tidied (no generic, echoed or
repeated headings); an edited outline resolved into the sections to write."""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterator
from typing import Any

from backends.text.base import StreamStats, TextBackend
from core.errors import InputError
from core.writer.brief import Brief, WriteOptions
from core.writer.checks import is_echo, json_field, json_strings
from core.writer.prompts import fit, outline_prompt, section_count
from core.writer.repair import Goal, app_repair_prompts, goal_for
from core.writer.text import MAX_SECTIONS, Outline, parse_outline, words

OUTLINE_LIMIT = 4_000  # characters in an (edited) outline


def stream_outline(backend: TextBackend, brief: Brief, options: WriteOptions, cancel: threading.Event) -> Iterator[str]:
    """The outline of a long piece, as it grows (cumulative text in the 'Title: ...' / '1. heading' form
    a person edits); `options` already checked. The reply is constrained to JSON (a title and exactly
    the planned number of headings) and tidied: no repeated, generic or echoed headings."""
    count = section_count(brief)
    messages = outline_prompt(brief)
    params = dataclasses.replace(
        options.params(0, fit(backend, messages, 80 + 30 * count)), json_schema=outline_schema(count)
    )
    reply, shown = "", ""
    stream = backend.stream_chat(messages, params, cancel, StreamStats())
    try:
        for delta in stream:
            reply += delta
            text = _outline_of(reply).as_text() if reply.lstrip().startswith("{") else reply
            if text != shown:
                shown = text
                yield text
    finally:
        stream.close()
    if reply.lstrip().startswith("{"):  # plain text (an engine that ignored the schema) is read by resolve_outline
        goal = goal_for(brief, app_repair_prompts(), [brief.template.outline_prompt])
        yield tidy_outline(_outline_of(reply), brief, goal).as_text()


def outline_schema(count: int) -> dict[str, Any]:
    heading = {"type": "string", "minLength": 3, "maxLength": 80}
    return {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 5, "maxLength": 100},
            "sections": {"type": "array", "items": heading, "minItems": count, "maxItems": count},
        },
        "required": ["title", "sections"],
    }


def _outline_of(reply: str) -> Outline:
    """An outline from a JSON reply (partial while streaming)."""
    title = json_field(reply, "title") if '"sections"' in reply else ""
    return Outline(" ".join(title.split()), [" ".join(h.split()) for h in json_strings(reply, "sections")])


_GENERIC_HEADING = re.compile(
    r"^\W*(?:titles?|headings?|sections?|parts?|subheadings?|headlines?|introduction to)?\W*\d*\W*$", re.I
)


def tidy_outline(outline: Outline, brief: Brief, goal: Goal) -> Outline:
    """A model's outline without empty, generic ('Title', 'Section 2'), echoed or repeated headings,
    topped up from the template's default sections to the planned count; the brief's topic as the
    title when the model's is unusable."""
    headings: list[str] = []
    for h in outline.sections:
        h = " ".join(re.sub(r"^(?:title|heading|section \d+)\s*:\s*", "", h, flags=re.I).split()[:12]).strip(" .:-")
        if not h or _GENERIC_HEADING.match(h) or is_echo(h, goal.runs) or h.lower() in {x.lower() for x in headings}:
            continue
        headings.append(h)
    want = section_count(brief)
    for default in brief.template.default_sections:
        if len(headings) >= want:
            break
        if default.lower() not in {x.lower() for x in headings}:
            headings.append(default)
    title = re.sub(r"^(?:title|headline)\s*:\s*", "", outline.title, flags=re.I).strip()
    if not words(title) or _GENERIC_HEADING.match(title) or is_echo(title, goal.runs):
        title = brief.title
    return Outline(title, headings[:want])


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
