"""The messages the writer sends: a brief rendered into its short, outline or section prompt (with a
different angle per variant), how many tokens a reply may take, and the budget that fits a context."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from backends.text.base import Message, TextBackend
from core.errors import InputError
from core.writer.brief import Brief
from core.writer.templates import STAGE_BUILTINS, Template, TemplateError, render
from core.writer.text import MAX_SECTIONS, Outline, tail_words, words

TOKENS_PER_WORD = 1.7  # English prose is ~1.3; other languages and Markdown take more


def _messages(template: Template, user_text: str) -> list[Message]:
    return [{"role": "system", "content": template.system}, {"role": "user", "content": user_text}]


def _render(brief: Brief, text: str, stage: str, extra: Mapping[str, Any] | None = None) -> str:
    values = {**brief.values, **(extra or {})}
    required = {f.name for f in brief.template.fields if f.required}
    try:
        return render(text, values, set(brief.template.field_names) | STAGE_BUILTINS[stage], required)
    except TemplateError as exc:  # a template bug, not the user's: load-time checks should catch it
        raise InputError(f"The {brief.template.label} template could not be filled in: {exc}") from None


def _with_angle(user_text: str, variant: int, n: int, angles: Sequence[str]) -> str:
    if n <= 1:
        return user_text
    return f"{user_text}\n\nFor this version: {angles[variant % len(angles)]}"


def short_prompt(brief: Brief, angles: Sequence[str], variant: int = 0, n: int = 1) -> list[Message]:
    return _messages(brief.template, _with_angle(_render(brief, brief.template.prompt, "prompt"), variant, n, angles))


def section_count(brief: Brief) -> int:
    length = brief.length or 600
    return max(2, min(MAX_SECTIONS, round(length / max(50, brief.template.words_per_section))))


def outline_prompt(brief: Brief) -> list[Message]:
    return _messages(
        brief.template, _render(brief, brief.template.outline_prompt, "outline", {"sections": section_count(brief)})
    )


def section_words(brief: Brief, outline: Outline) -> int:
    """Each section's share of the asked length, the title and headings' words taken off first."""
    heading_words = len(words(outline.title)) + sum(len(words(h)) for h in outline.sections)
    return max(40, ((brief.length or 600) - heading_words) // max(1, len(outline.sections)))


def plan_keywords(keywords: Sequence[str], headings: Sequence[str]) -> list[list[str]]:
    """Which keywords each section must carry: every keyword once, in the section whose heading shares
    a word with it where one does, else in the section with the fewest so far (earliest first)."""
    plan: list[list[str]] = [[] for _ in headings]
    if not plan:
        return plan
    heading_words = [{w.lower() for w in words(h) if len(w) > 3} for h in headings]
    for keyword in keywords:
        mine = {w.lower() for w in words(keyword) if len(w) > 3}
        matching = [k for k, hw in enumerate(heading_words) if hw & mine]
        pool = matching or list(range(len(plan)))
        plan[min(pool, key=lambda k: (len(plan[k]), k))].append(keyword)
    return plan


def section_prompt(
    brief: Brief,
    outline: Outline,
    index: int,
    previous: str,
    variant: int,
    n: int,
    angles: Sequence[str],
    keywords: Sequence[str] | None = None,
) -> list[Message]:
    """The prompt for section `index`; `keywords` are the ones planned for it (all of the brief's
    when None)."""
    t = brief.template
    count = len(outline.sections)
    role = "first" if index == 0 else "last" if index == count - 1 else "middle"
    note = _render(brief, t.section_notes.get(role, ""), "note") if t.section_notes.get(role) else ""
    extra = {
        "outline": outline.as_text(),
        "section_title": outline.sections[index],
        "section_number": index + 1,
        "section_count": count,
        "section_words": section_words(brief, outline),
        "section_note": " ".join(note.split("\n")),
        "previous_text": tail_words(previous, 40) if previous else "",
    }
    if keywords is not None:
        extra["keywords"] = list(keywords)
    return _messages(t, _with_angle(_render(brief, t.section_prompt, "section", extra), variant, n, angles))


def max_tokens(brief: Brief, words_target: int | None = None) -> int:
    target = words_target or brief.length
    if target is None:
        return brief.template.max_tokens
    return min(4096, int(target * TOKENS_PER_WORD) + 64)


def fit(backend: TextBackend, messages: list[Message], max_new: int) -> int:
    """The reply budget that fits the model's context; InputError when the brief itself leaves
    too little room."""
    context = backend.capabilities().context_length
    room = context - backend.count_tokens(messages)
    if room < min(64, max_new):
        raise InputError(
            f"The brief is too long for {backend.label}'s {context:,}-token context. "
            "Shorten the longer fields (facts, features, outline)."
        )
    return min(max_new, room)
