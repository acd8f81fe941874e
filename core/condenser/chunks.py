"""Cutting documents into chunks the active model can read: counted with the model's own tokenizer
(backend.count_tokens), cut at segment boundaries where possible, each chunk knowing the pages or
sections it holds, with a little overlap from the previous chunk as context. Nothing is dropped:
`account` checks that every character of every segment landed in exactly one chunk."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from backends.text.base import Message, TextBackend
from core.condenser.cite import Source
from core.condenser.documents import ExtractedDocument

_SPLITTERS = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"(?<=[.!?…;:])\s+"), re.compile(r"\s+"))


class TokenCounter:
    """Tokens of a stretch of text as the model counts it (inside a user turn, template excluded)."""

    def __init__(self, backend: TextBackend) -> None:
        self._count = backend.count_tokens
        self._base = backend.count_tokens([{"role": "user", "content": ""}])

    def __call__(self, text: str) -> int:
        return max(1, self._count([{"role": "user", "content": text}]) - self._base) if text else 0

    def messages(self, messages: list[Message]) -> int:
        return self._count(messages)


@dataclass(frozen=True)
class Piece:
    """A stretch of one segment: the unit chunks are packed from."""

    source: Source
    segment: int  # index of the segment in its document
    text: str
    tokens: int


@dataclass
class Chunk:
    index: int  # over the whole run, from 0
    doc: int
    pieces: list[Piece]
    context: str = ""  # the end of the previous chunk, given for continuity only (not cited)
    number: int = 0  # 1-based within its document
    of: int = 0  # chunks in its document

    @property
    def text(self) -> str:
        out: list[str] = []
        for i, p in enumerate(self.pieces):
            # Pieces of one segment were cut at whitespace; pieces of different segments are paragraphs.
            if i and p.segment == self.pieces[i - 1].segment:
                out.append(" " + p.text)
            else:
                out.append(("\n\n" if out else "") + p.text)
        return "".join(out)

    @property
    def tokens(self) -> int:
        return sum(p.tokens for p in self.pieces)

    @property
    def sources(self) -> tuple[Source, ...]:
        return tuple(dict.fromkeys(p.source for p in self.pieces))

    def passages(self) -> list[tuple[tuple[Source], str]]:
        """(source, text) per piece: what a point from this chunk is matched against."""
        return [((p.source,), p.text) for p in self.pieces]


@dataclass
class Accounting:
    """Proof that nothing was left out: characters of the document vs characters in chunks."""

    chars: int = 0
    chunked_chars: int = 0
    segments: int = 0
    missing: list[str] = field(default_factory=list)  # locators whose text is not fully in chunks

    @property
    def complete(self) -> bool:
        return not self.missing and self.chars == self.chunked_chars


def split_text(text: str, limit: int, count: Callable[[str], int]) -> list[tuple[str, int]]:
    """(part, tokens) pairs of at most `limit` tokens, cut at the coarsest boundary that works:
    paragraphs, lines, sentences, words, and as a last resort characters."""
    tokens = count(text)
    if tokens <= limit:
        return [(text, tokens)]
    for splitter in _SPLITTERS:
        parts = [p for p in splitter.split(text) if p.strip()]
        if len(parts) < 2:
            continue
        out: list[tuple[str, int]] = []
        group: list[str] = []
        group_tokens = 0
        sep = " " if splitter.pattern in (r"(?<=[.!?…;:])\s+", r"\s+") else "\n"
        sep_tokens = count(sep)
        for part in parts:
            for sub, sub_tokens in split_text(part, limit, count):
                if group and (
                    group_tokens + sub_tokens > limit
                    or (
                        # the separators joining the group may cost tokens too: count exactly near the limit
                        group_tokens + sub_tokens + sep_tokens * len(group) > limit
                        and count(sep.join([*group, sub])) > limit
                    )
                ):
                    joined = sep.join(group)
                    out.append((joined, count(joined)))
                    group, group_tokens = [], 0
                group.append(sub)
                group_tokens += sub_tokens
        if group:
            joined = sep.join(group)
            out.append((joined, count(joined)))
        return out
    # One unbroken run of characters (a long URL, base64...): cut by the average characters a token.
    # Where the run is denser than average (a URL's tail of emoji), a cut is cut again, down to single
    # characters: an average alone let a piece reach several times the limit.
    step = max(1, len(text) * limit // max(tokens, 1))
    out = []
    for i in range(0, len(text), step):
        part = text[i : i + step]
        n = count(part)
        out += split_text(part, limit, count) if n > limit and 1 < len(part) < len(text) else [(part, n)]
    return out


def pieces_of(doc: ExtractedDocument, doc_index: int, count: Callable[[str], int], max_piece: int) -> list[Piece]:
    pieces = []
    for s_index, segment in enumerate(doc.segments):
        source = Source(doc_index, doc.locator(segment))
        for text, tokens in split_text(segment.text, max_piece, count):
            if text.strip():
                pieces.append(Piece(source, s_index, text.strip(), tokens))
    return pieces


def pack(pieces: Sequence[Piece], budget: int) -> list[list[Piece]]:
    """Consecutive pieces into groups of at most `budget` tokens. A segment that fits a chunk of its
    own is not split across two when the current chunk is already half full: pages stay whole."""
    segment_tokens: dict[int, int] = {}
    for p in pieces:
        segment_tokens[p.segment] = segment_tokens.get(p.segment, 0) + p.tokens
    groups: list[list[Piece]] = []
    current: list[Piece] = []
    used = 0
    for p in pieces:
        starts_segment = not current or current[-1].segment != p.segment
        if (
            current
            and used + p.tokens > budget
            or (
                current
                and starts_segment
                and used + segment_tokens[p.segment] > budget
                and segment_tokens[p.segment] <= budget
                and used >= budget // 2
            )
        ):
            groups.append(current)
            current, used = [], 0
        current.append(p)
        used += p.tokens
    if current:
        groups.append(current)
    return groups


def tail(text: str, tokens: int, count: Callable[[str], int]) -> str:
    """The end of `text`, at most `tokens` tokens of it, starting at a word boundary where it can."""
    if tokens <= 0 or not text:
        return ""
    out = text
    # Cut where the average density puts `tokens` from the end, at a word boundary; where the end is
    # denser than the average (short words after long ones) cut again, so the overlap never takes more
    # than its share of the chunk's budget.
    while (total := count(out)) > tokens:
        cut = len(out) - len(out) * tokens // total  # >= 1, since total > tokens
        space = out.find(" ", cut)
        out = out[space + 1 :] if 0 <= space < len(out) - 1 else out[cut:]
    return out


def chunk_documents(
    docs: Sequence[ExtractedDocument],
    count: Callable[[str], int],
    budget: int,
    overlap: int,
    fits: Callable[[Chunk], bool] | None = None,
) -> list[Chunk]:
    """Every document cut into chunks of at most `budget` tokens (overlap context included). `fits`
    checks the real prompt; a chunk that does not fit is halved until it does."""
    overlap = max(0, min(overlap, budget // 4))
    room = budget - overlap
    max_piece = max(16, min(512, room // 2))
    chunks: list[Chunk] = []
    for d, doc in enumerate(docs):
        groups = pack(pieces_of(doc, d, count, max_piece), room)
        mine: list[Chunk] = []
        queue = list(groups)
        previous = ""
        while queue:
            group = queue.pop(0)
            chunk = Chunk(len(chunks) + len(mine), d, group, context=tail(previous, overlap, count))
            if fits is not None and not fits(chunk):
                if len(group) > 1:
                    half = len(group) // 2
                    queue[:0] = [group[:half], group[half:]]
                    continue
                chunk.context = ""  # a single piece always fits without the overlap (budget math)
            mine.append(chunk)
            previous = chunk.text
        for i, chunk in enumerate(mine):
            chunk.number, chunk.of = i + 1, len(mine)
        chunks += mine
    return chunks


def account(docs: Sequence[ExtractedDocument], chunks: Sequence[Chunk]) -> list[Accounting]:
    """Per document: did every non-space character of every segment reach a chunk, exactly once?"""
    out = []
    for d, doc in enumerate(docs):
        acc = Accounting(segments=len(doc.segments))
        chunked: dict[int, int] = {}
        for chunk in chunks:
            if chunk.doc == d:
                for p in chunk.pieces:
                    chunked[p.segment] = chunked.get(p.segment, 0) + _ink(p.text)
        for s_index, segment in enumerate(doc.segments):
            ink = _ink(segment.text)
            acc.chars += ink
            acc.chunked_chars += chunked.get(s_index, 0)
            if chunked.get(s_index, 0) != ink:
                acc.missing.append(doc.locator(segment))
        out.append(acc)
    return out


def _ink(text: str) -> int:
    return len(re.sub(r"\s+", "", text))
