"""From a model's reply to points: the reply cleaned (its own citations, links, images, HTML and
loops removed) and split into bullets and paragraphs, and, for one run, each point given the sources
it rests on (the places its chunk holds, or the notes it was written from)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from core.condenser.cite import WORD, Catalog, Point, Source, attribute, model_cited, rank, sentences, terms
from core.condenser.usable import MIN_SHARED_TERMS, own_words, word_ngrams

if TYPE_CHECKING:  # annotations only: jobs.py and (through report.py) request.py import this module
    from core.condenser.chunks import Chunk
    from core.condenser.jobs import Job
    from core.condenser.prompts import Form
    from core.condenser.request import CondenseOptions


# --- model output -> points --------------------------------------------------------------------------

# Citations a model writes itself. They are taken out of the text: the code writes every citation.
_MODEL_CITE = re.compile(
    r"\s*[\[(]\s*(?:"
    r"(?:p|pp|pg|pgs|page|pages|s|seite|seiten)\.?\s*\d+(?:\s*(?:[-–,]|and|und)\s*\d+)*"
    r"|§[^\])\n]{0,80}"
    r"|lines?\s+\d+(?:\s*[-–]\s*\d+)?"
    r"|(?:notes?\s*)?N\s*\d+(?:\s*[,;/&]\s*(?:N\s*)?\d+)*"
    r")\s*[\])]",
    re.IGNORECASE,
)
_NOTE_REF = re.compile(r"\d+")
_IMAGE = re.compile(r"!\[[^\]\n]*\]\([^)\n]*\)|!\[[^\]\n]*\]\[[^\]\n]*\]")
_LINK = re.compile(r"\[([^\]\n]*)\]\(([^)\n]*)\)")
_REF_LINK = re.compile(r"\[([^\]\n]+)\]\[[^\]\n]*\]")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*\S.*$", re.MULTILINE)
_AUTOLINK = re.compile(r"<(?:https?|ftp|mailto|data|javascript):[^>\s]*>", re.IGNORECASE)
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_URL = re.compile(r"\b(?:(?:https?|ftp)://|www\.|(?:data|javascript|mailto):)[^\s<>()\[\]]*", re.IGNORECASE)
_MARKER_REMNANT = re.compile(
    r"^[ \t]*(?:<+[ \t]*(?:END OF )?(?:DOCUMENT|NOTES)?|(?:END OF )?(?:DOCUMENT|NOTES))"
    r"[ \t>]*$\n?",
    re.MULTILINE,
)
_BULLET = re.compile(r"^\s*(?:[-*•·‣▪+–]|\d{1,3}[.)])\s+")
_NOTE_LINE = re.compile(r"^(?:[-*•]\s*)?N(\d{1,4})[.:)]\s+")
_HEADING = re.compile(r"^\s*#{1,6}\s*")
_EMPHASIS_ONLY = re.compile(r"^\s*(\*\*|__)(.+?)\1\s*:?\s*$")


def clean_model_text(text: str, *, allow_links: bool = False, markers: Sequence[str] = ()) -> str:
    """Model output made safe to render: no images, no HTML, and no links or URLs unless they were
    asked for. Runs before citations are added, so nothing the code writes is touched."""
    for marker in markers:  # the model echoing the data markers (or their random tag)
        if marker:
            pattern = re.escape(marker) if " " in marker else rf"\S*{re.escape(marker)}\S*"
            text = re.sub(pattern, " ", text)
    if markers:
        text = _MARKER_REMNANT.sub("", text)
    text = _IMAGE.sub("", text)
    text = _HTML_COMMENT.sub("", text)
    if not allow_links:
        text = _LINK.sub(lambda m: m.group(1), text)
        text = _REF_LINK.sub(lambda m: m.group(1), text)
        text = _REF_DEF.sub("", text)
        text = _AUTOLINK.sub("", text)
        text = _URL.sub("", text)
    else:
        text = _LINK.sub(lambda m: m.group(0) if re.match(r"https?://", m.group(2).strip()) else m.group(1), text)
    return _HTML_TAG.sub("", text)


def md_text(text: str) -> str:
    """Cleaned model text for Markdown: angle brackets and ampersands stay text, never markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_MD_SPECIAL = re.compile(r"([\\`*_\[\]()!#|~])")


def md_quote(text: str) -> str:
    """A passage of the document shown verbatim: Markdown syntax in it is escaped, and a URL in it is
    shown as code (readable, never a clickable link)."""
    out, last = [], 0
    for m in _URL.finditer(text):
        out.append(md_text(_MD_SPECIAL.sub(r"\\\1", text[last : m.start()])))
        out.append(f"`{m.group(0).replace('`', '')}`")
        last = m.end()
    out.append(md_text(_MD_SPECIAL.sub(r"\\\1", text[last:])))
    return "".join(out)


def strip_model_citations(text: str) -> tuple[str, list[str]]:
    """Remove citations the model wrote; return the text and what they said (e.g. "p. 3", "N2, N5")."""
    found: list[str] = []

    def take(m: re.Match) -> str:
        found.append(m.group(0).strip(" \t[]()"))
        return ""

    return _MODEL_CITE.sub(take, text).strip(), found


def note_numbers(citations: Sequence[str]) -> list[int]:
    """Note numbers from citations such as "N2, N5" or "notes N3 & 4"."""
    out = []
    for c in citations:
        if re.match(r"(?:notes?\s*)?N\s*\d", c, re.IGNORECASE):
            out += [int(n) for n in _NOTE_REF.findall(c)]
    return out


def split_blocks(text: str) -> list[tuple[Literal["bullet", "paragraph"], str]]:
    """Bullets (one per marker, with continuation lines) and paragraphs (blank-line separated).
    Headings and label lines ("Summary:", "**Key points**") are dropped: structure is the code's."""
    blocks: list[tuple[Literal["bullet", "paragraph"], str]] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            blocks.append(("paragraph", " ".join(para)))
            para.clear()

    for raw in text.replace("\r", "").split("\n"):
        line = raw.strip()
        if not line:
            flush()
            continue
        if _HEADING.match(line) or _EMPHASIS_ONLY.match(line) or _is_label(line):
            flush()
            continue
        note = _NOTE_LINE.match(line)
        if note:  # "N3. text": the model rewrote note 3; keep that as its citation
            flush()
            blocks.append(("bullet", f"{line[note.end() :].strip()} [N{note.group(1)}]"))
        elif _BULLET.match(raw):
            flush()
            blocks.append(("bullet", _BULLET.sub("", raw, count=1).strip()))
        elif blocks and blocks[-1][0] == "bullet" and not para and raw[:1] in (" ", "\t"):
            blocks[-1] = ("bullet", f"{blocks[-1][1]} {line}")
        else:
            para.append(line)
    flush()
    return [(k, t) for k, t in blocks if t.strip()]


def _is_label(line: str) -> bool:
    """A short line ending in a colon ("Here are the key points:") introduces, it says nothing."""
    return line.endswith(":") and len(line.split()) <= 10


def parse_points(
    raw: str,
    *,
    allow_links: bool = False,
    markers: Sequence[str] = (),
    split_paragraphs: bool = False,
    complete: bool = True,
    instructions: str = "",
) -> list[tuple[Point, list[str]]]:
    """Raw model output -> (point, the model's own citations) pairs; sources are attached later.
    Repetition (small models loop) is removed; `split_paragraphs` turns long paragraphs into one
    point per sentence (notes are cited sentence by sentence). `complete=False` (output cut at its
    token limit) drops the unfinished last sentence. A point made only of the words of
    `instructions` (the request itself, echoed back) is dropped."""
    echo = terms(instructions)
    text = clean_model_text(raw, allow_links=allow_links, markers=markers)
    if not complete:
        text = _drop_unfinished(text)
    out: list[tuple[Point, list[str]]] = []
    seen: list[set[str]] = []
    for kind, block in split_blocks(text):
        pieces = sentences(block) if split_paragraphs and kind == "paragraph" else [block]
        for piece in pieces:
            body, cites = strip_model_citations(piece)
            body = _dedupe_sentences(trim_repetition(body), seen)
            body = body.strip(" \t-*•").strip()
            if not WORD.findall(body) or (kind == "paragraph" and _is_title(body)) or _echoes(body, echo):
                continue
            out.append((Point(body, (), "bullet" if split_paragraphs else kind), cites))
    return out


def _echoes(text: str, instructions: set[str]) -> bool:
    own = terms(text)
    return bool(instructions) and len(own) >= 2 and len(own & instructions) >= 0.75 * len(own)


def _drop_unfinished(text: str) -> str:
    stripped = text.rstrip()
    if not stripped or stripped[-1] in '.!?…)"”»]':
        return text
    cut = max(stripped.rfind(c) for c in ".!?…\n")
    return stripped[: cut + 1] if cut > 0 else text


def _is_title(text: str) -> bool:
    """A heading echoed as a line of its own: a few words, no sentence punctuation."""
    return len(text.split()) <= 6 and text.rstrip()[-1:] not in ".!?…"


def _key(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def similar(a: set[str], b: set[str]) -> bool:
    """Near-duplicates: the same content words, give or take a few (small models rephrase loops)."""
    if not a or not b:
        return a == b
    return len(a & b) / len(a | b) >= 0.7


def _dedupe_sentences(text: str, seen: list[set[str]]) -> str:
    kept = []
    for s in sentences(text) or [text]:
        key = terms(s) or {_key(s)}
        if any(similar(key, other) for other in seen):
            continue
        seen.append(key)
        kept.append(s)
    return " ".join(kept)


def merge_duplicates(points: list[Point]) -> list[Point]:
    """Points saying the same thing become one, carrying the sources of both."""
    out: list[Point] = []
    keys: list[str] = []
    for p in points:
        key = _key(p.text)
        for i, k in enumerate(keys):
            if key == k or (len(key) > 40 and (key in k or k in key)):
                out[i] = replace(out[i], sources=tuple(dict.fromkeys(out[i].sources + p.sources)))
                break
        else:
            out.append(p)
            keys.append(key)
    return out


def is_looping(text: str) -> bool:
    """True once the model repeats itself (a sentence or line, or a close rephrasing of it, for the
    third time): small models do, and generating more of it only costs time."""
    units = [terms(s) for s in re.split(r"(?<=[.!?])\s+|\n+", text[-3000:]) if len(s.strip()) >= 8]
    units = [u for u in units[:-1] if u]  # the last one may still be growing
    if len(units) >= 3 and sum(1 for u in units[:-1] if similar(u, units[-1])) >= 2:
        return True
    return _repeated_run(text.split()[-80:]) is not None


def _repeated_run(words: Sequence[str], times: int = 3) -> int | None:
    """Index where a phrase of 2-12 words starts repeating back to back `times` times, if any
    ("le début de l'épée, le début de l'épée, le début de l'épée...")."""
    low = [re.sub(r"[\d\W_]+", "", w.lower()) for w in words]  # "2.1. RÄUME", "3.1. RÄUME" repeat too
    for size in range(2, 13):
        for start in range(0, len(low) - size * times + 1):
            phrase = low[start : start + size]
            if any(phrase) and all(low[start + k * size : start + (k + 1) * size] == phrase for k in range(1, times)):
                return start
    return None


def trim_repetition(text: str) -> str:
    """Cut a phrase looping back to back after its first occurrence."""
    words = text.split()
    start = _repeated_run(words)
    if start is None:
        return text
    low = [re.sub(r"[\d\W_]+", "", w.lower()) for w in words]
    size = next(
        n
        for n in range(2, 13)
        if any(low[start : start + n]) and low[start + n : start + 2 * n] == low[start : start + n]
    )
    return " ".join(words[: start + size]).rstrip(",;:") + "…"


# --- one run's replies -> cited points ---------------------------------------------------------------


class ReplyPoints:
    """The points of one run's replies, each carrying sources among the places the model was shown."""

    def __init__(self, catalog: Catalog, options: CondenseOptions, form: Form, markers: Sequence[str]) -> None:
        self.catalog, self.options, self.form, self.markers = catalog, options, form, list(markers)

    def notes_from(self, job: Job, chunk: Chunk) -> list[Point]:
        """A chunk's notes, or its opening quoted when the reply gave none usable."""
        return self.usable_notes(job, chunk) or [self.quoted(chunk)]

    def usable_notes(self, job: Job, chunk: Chunk) -> list[Point]:
        """A chunk's usable notes (none when the reply had none), each attributed to the pieces of that chunk
        it matches (the chunk as a whole when none matches well): sources can only ever be places this chunk
        holds. A sentence that copies the chunk is not a note (see `own_words`)."""
        notes = []
        shown = f"{chunk.context}\n{chunk.text}"  # all it was shown, the overlap included
        grams, words = word_ngrams(shown), terms(shown)
        for point, cites in self.parse(job, split_paragraphs=True):
            if not own_words(point.text, grams) or not self.about(point.text, words):
                continue
            own = self.cited_in_chunk(cites, chunk, point.text)
            sources = own or attribute(point.text, chunk.passages(), chunk.sources, limit=2)
            notes.append(replace(point, sources=sources))
        return merge_duplicates(notes)

    def points_from_text(self, job: Job, chunk: Chunk) -> list[Point]:
        """A one-chunk document's summary, or its opening quoted when the reply gave nothing usable."""
        return self.usable_summary(job, chunk) or [self.quoted(chunk)]

    def usable_summary(self, job: Job, chunk: Chunk) -> list[Point]:
        """A one-chunk document's summary: its points attributed to the chunk's pieces; none when the reply
        had nothing usable."""
        points = []
        grams, words = word_ngrams(chunk.text), terms(chunk.text)
        for point, cites in self.parse_final(job):
            if not own_words(point.text, grams) or not self.about(point.text, words):
                continue
            own = self.cited_in_chunk(cites, chunk, point.text)
            sources = own or attribute(point.text, chunk.passages(), chunk.sources, limit=3)
            points.append(
                replace(
                    point, sources=self.catalog.ordered(sources), kind=point.kind if self.form.bullets else "paragraph"
                )
            )
        points = merge_duplicates(points)
        return self.shape(points) if points else []

    def about(self, text: str, shown: set[str]) -> bool:
        """Whether a point is about the text it summarises: it shares a few content words with it. A point that
        shares none ("The document is a collection of humorous messages", "The text is written in German") is
        the model talking about the request, or making things up. Not judged where the summary is asked for in
        another language than the document's (its words need not be the document's)."""
        return bool(self.options.target_language) or len(terms(text) & shown) >= MIN_SHARED_TERMS

    def parse(self, job: Job, split_paragraphs: bool = False) -> list[tuple[Point, list[str]]]:
        """A reply's points, cleaned; sentences that only echo the request's own instructions (small
        models do) are dropped."""
        return parse_points(
            job.text,
            markers=self.markers,
            allow_links=self.options.allow_links,
            complete=job.finish == "stop",
            split_paragraphs=split_paragraphs,
            instructions=job.instructions,
        )

    def parse_final(self, job: Job) -> list[tuple[Point, list[str]]]:
        """A summary's points; for a bulleted form written as plain paragraphs, one bullet a sentence."""
        parsed = self.parse(job)
        if self.form.bullets and self.options.length != "tldr" and not any(p.kind == "bullet" for p, _ in parsed):
            parsed = self.parse(job, split_paragraphs=True)
        return parsed

    def quoted(self, chunk: Chunk) -> Point:
        first = chunk.pieces[0]
        opening = " ".join(" ".join(sentences(first.text)[:2]).split()) or " ".join(first.text.split())
        return Point(opening[:400], (first.source,), "bullet", quoted=True)

    def cited_in_chunk(self, cites: list[str], chunk: Chunk, text: str) -> tuple[Source, ...]:
        return model_cited(cites, [(p.source, p.text) for p in chunk.pieces], text)

    def shape(self, points: list[Point]) -> list[Point]:
        """A TL;DR is one point, whatever the model wrote."""
        if self.options.length == "tldr" and points:
            first = points[0]
            return [
                replace(first, kind="paragraph", sources=self.catalog.ordered(s for p in points[:1] for s in p.sources))
            ]
        return points

    def points_from_notes(self, job: Job, notes: Sequence[Point], final: bool) -> list[Point]:
        """Points written from numbered notes, each carrying the sources of the notes it rests on:
        the note numbers the model wrote when the note really shares words with the point, else the
        notes it matches best, else every note of the request."""
        everything = tuple(s for n in notes for s in n.sources)
        candidates = [(n.sources, n.text) for n in notes]
        out = []
        parsed = self.parse_final(job) if final else self.parse(job, split_paragraphs=True)
        shown = terms("\n".join(n.text for n in notes))
        for point, cites in parsed:
            if not self.about(point.text, shown):
                continue
            numbers = [k for k in note_numbers(cites) if 1 <= k <= len(notes)]
            named = [notes[k - 1] for k in dict.fromkeys(numbers)]
            if named:
                scores = rank([n.text for n in named], point.text)
                named = [named[i] for i, score, shared in scores if shared >= 1]
            if named:
                sources = tuple(s for n in named for s in n.sources)
            else:
                sources = attribute(point.text, candidates, everything)
            out.append(
                replace(
                    point,
                    sources=self.catalog.ordered(sources),
                    kind="paragraph" if final and not self.form.bullets else point.kind,
                )
            )
        return merge_duplicates(out)
