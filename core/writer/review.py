"""A rewrite shown before it is kept: which part of the draft a selection names, the word-level difference
between that part and its rewrite as inert HTML (every character of draft and model text escaped; removals in
<del>, additions in <ins>, each with words a screen reader reads), and splicing an accepted rewrite back in."""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import asdict, dataclass
from typing import Any

from core.errors import InputError

_TOKENS = re.compile(r"^\s+|\w+\s*|[^\w\s]\s*")  # words with the spaces after them: a change is whole words
_SR = '<span class="writer-sr">{}</span>'
MAX_STATE_CHARS = 2_000_000  # a proposal held by the page comes back from the browser: bounded


@dataclass(frozen=True)
class Proposal:
    """The rewrite of text[start:end]: `original` is that part as it was when the rewrite began."""

    start: int
    end: int
    original: str
    rewritten: str

    def as_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, value: Any) -> Proposal:
        """A proposal held by the page, checked (InputError when it is not one)."""
        if not isinstance(value, dict):
            raise InputError("There is no rewrite to accept: rewrite first.")
        start, end, original, rewritten = (value.get(k) for k in ("start", "end", "original", "rewritten"))
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end):
            raise InputError("There is no rewrite to accept: rewrite first.")
        if not (isinstance(original, str) and isinstance(rewritten, str)):
            raise InputError("There is no rewrite to accept: rewrite first.")
        if len(original) + len(rewritten) > MAX_STATE_CHARS or end - start != len(original):
            raise InputError("There is no rewrite to accept: rewrite first.")
        return cls(start, end, original, rewritten)


def span_of(text: str, selection: object) -> tuple[int, int] | None:
    """(start, end) from a "start:end" range of characters picked in the draft; None for no selection
    (an empty or blank one: the whole draft is rewritten). InputError for a range outside the text, or anything
    but a string (the range comes from the browser, and an API caller can send any type)."""
    if selection is None:
        return None
    if not isinstance(selection, str):
        raise InputError("The selection could not be read; select the text in the draft again.")
    selection = selection.strip()
    if not selection:
        return None
    m = re.fullmatch(r"(\d{1,9}):(\d{1,9})", selection)
    if m is None:
        raise InputError("The selection could not be read; select the text in the draft again.")
    start, end = int(m.group(1)), int(m.group(2))
    if not start <= end <= len(text):
        raise InputError("The selection is outside the draft (it may have been edited since); select it again.")
    if not text[start:end].strip():
        return None
    return start, end


def proposal_from(text: str, start: int, end: int, result: str) -> Proposal:
    """The proposal out of a rewrite's `result` (the whole text with the new part spliced in)."""
    tail = len(text) - end
    return Proposal(start, end, text[start:end], result[start : len(result) - tail])


def splice(current: str, proposal: Proposal) -> str:
    """`current` (the draft now: it may have been edited while the rewrite ran) with the rewritten part
    put where the original part is. InputError when that part is no longer in the draft, or is there twice."""
    if current[proposal.start : proposal.end] == proposal.original:
        return current[: proposal.start] + proposal.rewritten + current[proposal.end :]
    if proposal.original and current.count(proposal.original) == 1:
        i = current.index(proposal.original)
        return current[:i] + proposal.rewritten + current[i + len(proposal.original) :]
    raise InputError("The draft changed where the rewrite goes; discard it and rewrite again.")


def _tokens(text: str) -> list[str]:
    return _TOKENS.findall(text)


def _words(tokens: list[str]) -> int:
    return sum(1 for t in tokens if re.match(r"\w", t))


def _changes(old: list[str], new: list[str]) -> list[tuple[str, list[str], list[str]]]:
    """difflib's opcodes as (op, old tokens, new tokens), where a short stretch left equal between two changes
    (a comma, one word) joins them: a reader sees one changed phrase, not a comb of single words."""
    merged: list[tuple[str, list[str], list[str]]] = []
    keys = lambda tokens: [t.strip() or t for t in tokens]  # noqa: E731 - "day" matches "day " (spacing apart)
    ops = difflib.SequenceMatcher(None, keys(old), keys(new), autojunk=False).get_opcodes()
    for k, (op, i1, i2, j1, j2) in enumerate(ops):
        a, b = old[i1:i2], new[j1:j2]
        between = 0 < k < len(ops) - 1 and op == "equal" and _words(a) <= 1 and len(a) <= 2
        if op != "equal" or between:
            if merged and merged[-1][0] == "change":
                merged[-1] = ("change", merged[-1][1] + a, merged[-1][2] + b)
            else:
                merged.append(("change", list(a), list(b)))
        else:
            merged.append(("equal", list(a), list(b)))
    return merged


def _marked(part: str, tag: str, what: str) -> str:
    """`part` escaped, its words (not the spaces around them) inside <tag> with words for screen readers."""
    core = part.strip()
    if not core:
        return html.escape(part)
    lead, trail = part[: len(part) - len(part.lstrip())], part[len(part.rstrip()) :]
    end = _SR.format(f" (end of {'removal' if tag == 'del' else 'addition'})")
    return f"{html.escape(lead)}<{tag}>{_SR.format(what + ': ')}{html.escape(core)}{end}</{tag}>{html.escape(trail)}"


def diff_html(original: str, rewritten: str, done: bool = True) -> str:
    """The original and its rewrite side by side. Once done, the words removed are struck through in the
    original and the words added underlined in the rewrite (not by colour alone), each announced to screen
    readers ("removed:", "added:"); while streaming, the rewrite is shown as it grows."""
    esc = html.escape
    old, new = _tokens(original), _tokens(rewritten)
    left: list[str] = []
    right: list[str] = []
    removed = added = 0
    if done:
        for op, a_tokens, b_tokens in _changes(old, new):
            a, b = "".join(a_tokens), "".join(b_tokens)
            if op == "equal":
                left.append(esc(a))
                right.append(esc(b))
                continue
            removed += _words(a_tokens)
            added += _words(b_tokens)
            left.append(_marked(a, "del", "removed"))
            right.append(_marked(b, "ins", "added"))
        summary = (
            "No words changed."
            if not (removed or added)
            else f"{removed} word{'s' * (removed != 1)} removed, {added} word{'s' * (added != 1)} added."
        )
    else:
        left.append(esc(original))
        right.append(esc(rewritten))
        summary = "Rewriting…"
    return (
        '<div class="writer-diff">'
        f'<p class="writer-diff-summary" role="status">{summary}</p>'
        '<div class="writer-diff-sides">'
        '<section class="writer-diff-side" aria-label="Original">'
        f'<p class="writer-diff-title">Original</p><div class="writer-diff-text">{"".join(left)}</div></section>'
        '<section class="writer-diff-side" aria-label="Rewrite">'
        f'<p class="writer-diff-title">Rewrite</p><div class="writer-diff-text">{"".join(right)}</div></section>'
        "</div></div>"
    )
