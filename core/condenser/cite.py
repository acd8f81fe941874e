"""Where each point of a summary came from. A `Source` is one real place in one document (a page or a
section, exactly as ExtractedDocument.locator names it); the pipeline attaches sources to every point
itself, so a citation never depends on the model citing correctly. Also: writing citations
([p. 3], [pp. 3-4], [§ Name], [lines 5-94]), matching a point to the passages it rests on (and checking
the model's own citations), and choosing the quoted passage behind a citation. Replies become points
in points.py."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from core.condenser.documents import ExtractedDocument

MAX_SECTIONS_SHOWN = 4  # a citation naming more sections lists this many and counts the rest
QUOTE_CHARS = 320
START_LABEL = "start"  # text before a document's first heading


@dataclass(frozen=True, order=True)
class Source:
    doc: int  # index of the document in the run
    locator: str  # one of that document's locators()


@dataclass
class Point:
    """One bullet or paragraph of a summary (or a note in between) and the places it rests on."""

    text: str
    sources: tuple[Source, ...] = ()
    kind: Literal["bullet", "paragraph"] = "bullet"
    quoted: bool = False  # the document's own words (its chunk got no usable reply from the model)
    quotes: list[tuple[Source, str]] = field(default_factory=list)  # filled for final points


# --- the documents of a run ------------------------------------------------------------------------


class Catalog:
    """The documents of one run: which sources exist, their text, and how to cite them."""

    def __init__(self, docs: Sequence[ExtractedDocument]) -> None:
        self.docs = list(docs)
        self._text: list[dict[str, str]] = []
        self._rank: list[dict[str, int]] = []
        self._page: list[dict[str, int]] = []
        self._lines: list[dict[str, tuple[int, int]]] = []
        self._start: list[set[str]] = []
        for doc in self.docs:
            texts: dict[str, list[str]] = {}
            page, lines, start = {}, {}, set()
            for segment in doc.segments:
                loc = doc.locator(segment)
                texts.setdefault(loc, []).append(segment.text)
                if segment.page is not None:
                    page[loc] = segment.page
                elif segment.section is None:
                    start.add(loc)
                elif doc.kind == "txt":
                    m = re.fullmatch(r"lines? (\d+)(?:-(\d+))?", segment.section)
                    if m:
                        lines[loc] = (int(m.group(1)), int(m.group(2) or m.group(1)))
            self._text.append({k: "\n\n".join(v) for k, v in texts.items()})
            self._rank.append({loc: i for i, loc in enumerate(texts)})
            self._page.append(page)
            self._lines.append(lines)
            self._start.append(start)

    def valid(self, source: Source) -> bool:
        return 0 <= source.doc < len(self.docs) and source.locator in self._rank[source.doc]

    def text(self, source: Source) -> str:
        return self._text[source.doc][source.locator]

    def sources(self, doc: int) -> list[Source]:
        return [Source(doc, loc) for loc in self._rank[doc]]

    def page(self, source: Source) -> int | None:
        return self._page[source.doc].get(source.locator)

    def ordered(self, sources: Iterable[Source]) -> tuple[Source, ...]:
        """Valid sources only, once each, in document order."""
        unique = {s for s in sources if self.valid(s)}
        return tuple(sorted(unique, key=lambda s: (s.doc, self._rank[s.doc][s.locator])))

    def label(self, source: Source) -> str:
        """How one source is written inside a citation."""
        page = self.page(source)
        if page is not None:
            return f"p. {page}"
        if source.locator in self._lines[source.doc]:
            return source.locator
        if source.locator in self._start[source.doc]:
            return f"§ {START_LABEL}"
        return f"§ {_bracket_safe(source.locator)}"

    def cite(self, sources: Iterable[Source], with_names: bool = False) -> str:
        """The citation for a set of sources: "[pp. 3-5, 9]", "[§ Intro; § Usage]", and with
        names (several documents) "[a.pdf, p. 3; b.docx, § Intro]". Empty when there are none."""
        ordered = self.ordered(sources)
        parts = []
        for doc in sorted({s.doc for s in ordered}):
            mine = [s for s in ordered if s.doc == doc]
            text = "; ".join(self._doc_parts(doc, mine))
            parts.append(f"{_bracket_safe(self.docs[doc].name)}, {text}" if with_names else text)
        return f"[{'; '.join(parts)}]" if parts else ""

    def _doc_parts(self, doc: int, sources: list[Source]) -> list[str]:
        pages = sorted(p for s in sources if (p := self.page(s)) is not None)
        spans = sorted(self._lines[doc][s.locator] for s in sources if s.locator in self._lines[doc])
        sections = [s for s in sources if self.page(s) is None and s.locator not in self._lines[doc]]
        out = []
        if pages:
            out.append(page_ranges(pages))
        if spans:
            out.append(line_ranges(spans))
        out += [self.label(s) for s in sections[:MAX_SECTIONS_SHOWN]]
        if len(sections) > MAX_SECTIONS_SHOWN:
            out.append(f"{len(sections) - MAX_SECTIONS_SHOWN} more sections")
        return out

    def quote(self, text: str, source: Source) -> str:
        return self.quote_scored(text, source)[0]

    def quote_scored(self, text: str, source: Source) -> tuple[str, float]:
        """The passage of `source` that best supports `text` (its opening when none matches), and
        how well it matches."""
        windows = _windows(self.text(source))
        if not windows:
            return "", 0.0
        scored = rank(windows, text)
        score = scored[0][1]
        index = min((i for i, sc, _ in scored if sc == score), key=lambda i: len(windows[i]))  # tightest
        if score <= 0:  # nothing matches: the opening of the place, skipping a bare heading
            index = next((i for i, w in enumerate(windows) if len(w.split()) >= 6), 0)
        return _clip(windows[index]), score


def page_ranges(pages: Sequence[int]) -> str:
    """[3] -> "p. 3"; [3, 4, 5, 9] -> "pp. 3-5, 9"."""
    numbers = sorted(set(pages))
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)
    return f"p. {text}" if len(numbers) == 1 else f"pp. {text}"


def line_ranges(spans: Sequence[tuple[int, int]]) -> str:
    """Neighbouring line ranges merge (plain-text segments are separated by blank lines)."""
    merged: list[list[int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1] + 2:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in merged)
    return f"line {text}" if len(merged) == 1 and merged[0][0] == merged[0][1] else f"lines {text}"


def _bracket_safe(text: str) -> str:
    text = " ".join(text.split()).replace("[", "(").replace("]", ")")
    return text if len(text) <= 80 else text[:79] + "…"


# --- matching a point to the text it came from -------------------------------------------------------

_STOP = frozenset(
    """
the and for are was were with that this from have has had not but they their them its his her she
you your our which who whom what when where will would can could should into than then there these
those been being also such about more most other some any each all only very over after before between
under while during through one two may might must shall how why yes does did done out off its it's
der die das und ist nicht mit von den dem des ein eine einer eines auf für sich auch als wie bei oder
aus nach wird werden sind war zum zur sie wir ihr ihre sein seine kann können durch über unter
les des une est pas pour dans que qui sur par avec son ses aux ont été amp quot
""".split()
)
WORD = re.compile(r"[^\W\d_]{3,}|\d{2,}")


def terms(text: str) -> set[str]:
    """Content words, crudely stemmed (first 7 letters), so "summarised" meets "summary"."""
    return {w[:7] for w in (m.lower() for m in WORD.findall(text)) if w not in _STOP}


def rank(passages: Sequence[str], text: str) -> list[tuple[int, float, int]]:
    """(index, score, shared terms) for each passage, best first. Score: the share of the text's
    content words (weighted by rarity among the passages) that the passage contains."""
    wanted = terms(text)
    sets = [terms(p) for p in passages]
    if not wanted or not sets:
        return [(i, 0.0, 0) for i in range(len(passages))]
    df = Counter(t for s in sets for t in s & wanted)
    n = len(sets)
    weight = {t: math.log(1.0 + (n + 1) / (1 + df[t])) for t in wanted}
    total = sum(weight.values())
    scored = []
    for i, s in enumerate(sets):
        shared = s & wanted
        scored.append((i, sum(weight[t] for t in shared) / total, len(shared)))
    scored.sort(key=lambda x: (-x[1], x[0]))
    return scored


MATCH_SCORE = 0.3  # below this a passage is not taken as the point's support
MATCH_TERMS = 2


def attribute(
    text: str, candidates: Sequence[tuple[Sequence[Source], str]], fallback: Sequence[Source], limit: int = 3
) -> tuple[Source, ...]:
    """The sources of the candidates (passages or notes, each with its own sources) that `text`
    rests on: the best match and any nearly as good, up to `limit`; `fallback` (the whole input
    the model saw) when nothing matches well enough. Always a subset of what the model was given."""
    if candidates:
        scored = rank([c[1] for c in candidates], text)
        best_score = scored[0][1]
        if best_score >= MATCH_SCORE and scored[0][2] >= MATCH_TERMS:
            chosen: list[Source] = []
            for index, score, shared in scored[:limit]:
                if score >= 0.75 * best_score and shared >= MATCH_TERMS:
                    chosen.extend(candidates[index][0])
            return tuple(dict.fromkeys(chosen))
    return tuple(dict.fromkeys(fallback))


def model_cited(cites: Sequence[str], candidates: Sequence[tuple[Source, str]], text: str) -> tuple[Source, ...]:
    """Pages or sections the model cited itself ("p. 4", "pp. 3-4", "§ Usage"), kept only when they
    are among the places it was shown and their text shares words with the point: a page that does
    not exist, was not in the request, or is about something else is never cited."""
    shown: dict[Source, list[str]] = {}
    for source, passage in candidates:
        shown.setdefault(source, []).append(passage)
    if not shown:
        return ()
    doc = next(iter(shown)).doc
    named: list[Source] = []
    for cite in cites:
        low = cite.lower()
        if low.startswith("§"):
            named.append(Source(doc, cite[1:].strip()))
        elif low.startswith(("p", "s")):
            for a, b in re.findall(r"(\d+)(?:\s*[-–]\s*(\d+))?", cite):
                lo, hi = int(a), int(b or a)
                named += [Source(doc, f"p. {n}") for n in range(lo, min(hi, lo + 50) + 1)]
    kept = [s for s in dict.fromkeys(named) if s in shown]
    return tuple(s for s in kept if rank([" ".join(shown[s])], text)[0][2] >= MATCH_TERMS)


_SENTENCE_END = re.compile(r"(?<=[.!?…:;])\s+(?=[\"“'(\[]?[A-ZÄÖÜÀ-Þ0-9])|\n{2,}|\n(?=\s*[-*•])")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _windows(text: str) -> list[str]:
    """Passages to quote: single sentences, and pairs where a sentence is short."""
    parts = [" ".join(s.split()) for s in sentences(text)]
    out = []
    for i, s in enumerate(parts):
        out.append(s)
        if len(s) < QUOTE_CHARS // 2 and i + 1 < len(parts):
            out.append(f"{s} {parts[i + 1]}")
    return out


def _clip(text: str, limit: int = QUOTE_CHARS) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit - 1)
    return text[: cut if cut > limit // 2 else limit - 1] + "…"
