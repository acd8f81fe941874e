"""Text analysis for the writer, with no model involved: word count, reading time, Flesch reading
ease (syllable heuristic), keyword coverage, outline parsing, output clean-up and length checks."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from core.writer.templates import Check

READING_WPM = 238  # average adult silent reading speed for non-fiction (Brysbaert, 2019)
MAX_SECTIONS = 8

_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
_SENTENCE_END = re.compile(r"[.!?…]+(?=[\s\"'”’)\]]|$)")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")


# --------------------------------------------------------------------------------------------------
# plain text, words, syllables, readability


def plain_text(markdown: str) -> str:
    """Markdown reduced to the words a reader reads (headings, emphasis, bullets, links, code marks
    removed; line structure kept)."""
    text = re.sub(r"```.*?```", " ", markdown or "", flags=re.S)
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"(?m)^\s{0,3}(?:#{1,6}\s+|>\s?|[-*+•]\s+|\d+[.)]\s+)", "", text)
    text = re.sub(r"(\*\*|__|\*|`|~~)", "", text)
    return text


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def count_syllables(word: str) -> int:
    """English syllables by heuristic: vowel groups, minus a silent final -e / -es / -ed.
    Numbers and non-Latin words count as one."""
    w = re.sub(r"[^a-z]", "", word.lower())
    if not w:
        return 1 if any(ch.isalnum() for ch in word) else 0
    if len(w) <= 3:
        return 1
    w = w[1:] if w.startswith("y") else w  # initial y is a consonant ("yellow")
    count = len(_VOWEL_GROUPS.findall(w))
    if count > 1:
        if w.endswith("e") and not re.search(r"(?:[^aeiouy]le|[aeiouy]e)$", w):
            count -= 1  # make, stone (but table, free, movie)
        elif w.endswith("es") and not re.search(r"(?:[sxzcg]|ch|sh|[^aeiouy]l|[aeiouy])es$", w):
            count -= 1  # makes, likes (but boxes, places, tables)
        elif w.endswith("ed") and not re.search(r"(?:[td]|[aeiouy])ed$", w):
            count -= 1  # jumped, called (but wanted, needed)
    return max(1, count)


def sentence_count(text: str) -> int:
    """Sentences end with . ! ? … or at a line break (headings and bullets are sentences too)."""
    count = 0
    for line in text.splitlines():
        if not words(line):
            continue
        pieces = [p for p in _SENTENCE_END.split(line) if words(p)]
        count += max(1, len(pieces))
    return count


def flesch_reading_ease(text: str) -> float | None:
    """206.835 - 1.015 (words / sentences) - 84.6 (syllables / words); None for text without words.
    Defined for English: higher is easier (60-70 is plain English)."""
    ws = words(text)
    if not ws:
        return None
    sentences = max(1, sentence_count(text))
    syllables = sum(count_syllables(w) for w in ws)
    return 206.835 - 1.015 * (len(ws) / sentences) - 84.6 * (syllables / len(ws))


def flesch_label(score: float | None) -> str:
    if score is None:
        return ""
    for floor, label in (
        (90, "very easy"),
        (80, "easy"),
        (70, "fairly easy"),
        (60, "plain English"),
        (50, "fairly difficult"),
        (30, "difficult"),
    ):
        if score >= floor:
            return label
    return "very difficult"


@dataclass
class TextStats:
    words: int
    characters: int
    sentences: int
    reading_minutes: float
    flesch: float | None
    flesch_label: str


def text_stats(markdown: str) -> TextStats:
    text = plain_text(markdown)
    n = len(words(text))
    score = flesch_reading_ease(text)
    return TextStats(
        words=n,
        characters=len((markdown or "").strip()),
        sentences=sentence_count(text),
        reading_minutes=n / READING_WPM,
        flesch=None if score is None else round(score, 1),
        flesch_label=flesch_label(score),
    )


def reading_time_label(minutes: float) -> str:
    if minutes <= 0:
        return "0 min"
    return "under 1 min" if minutes < 1 else f"{math.ceil(minutes)} min"


# --------------------------------------------------------------------------------------------------
# keywords


def parse_keywords(raw: str | Sequence[str] | None) -> list[str]:
    """Keywords from a comma / semicolon / line separated string or a list; trimmed, de-duplicated
    case-insensitively, order kept."""
    if raw is None:
        return []
    items = re.split(r"[,;\n]", raw) if isinstance(raw, str) else [str(x) for x in raw]
    seen, out = set(), []
    for item in items:
        kw = " ".join(item.strip().strip("\"'“”‘’").split())
        if kw and kw.lower() not in seen:
            seen.add(kw.lower())
            out.append(kw)
    return out


def _token_pattern(token: str) -> str:
    """One keyword word, allowing light inflection: -s/-es/-'s, -ed, -ing, y->ies/ied, a dropped
    final e (make -> making) and a doubled final consonant (run -> running)."""
    t = token.lower()
    if not re.fullmatch(r"[a-z]+", t) or len(t) < 3:
        return re.escape(t) + (r"(?:'s|’s|s)?" if t.isalpha() else "")
    if t.endswith("y") and t[-2] not in "aeiou":
        return re.escape(t[:-1]) + r"(?:y|ies|ied|ying|y's|y’s)"
    if t.endswith("e") and t[-2] not in "aeiou":
        return re.escape(t[:-1]) + r"(?:e|es|ed|ing|e's|e’s)"
    if re.search(r"[^aeiou][aeiou][bdgklmnprt]$", t):
        return re.escape(t) + rf"(?:s|es|'s|’s|{t[-1]}?ed|{t[-1]}?ing)?"
    return re.escape(t) + r"(?:s|es|'s|’s|ed|ing)?"


def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """Case-insensitive, whole words, words of a multi-word keyword separated by spaces or hyphens."""
    tokens = [t for t in re.split(r"[\s\-–]+", keyword.strip()) if t]
    body = r"[\s\-–]+".join(_token_pattern(t) for t in tokens)
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


@dataclass
class KeywordCoverage:
    counts: dict[str, int] = field(default_factory=dict)  # keyword -> occurrences, in the given order

    @property
    def present(self) -> list[str]:
        return [k for k, n in self.counts.items() if n > 0]

    @property
    def missing(self) -> list[str]:
        return [k for k, n in self.counts.items() if n == 0]


def keyword_coverage(markdown: str, keywords: Iterable[str]) -> KeywordCoverage:
    text = plain_text(markdown)
    return KeywordCoverage({kw: len(keyword_pattern(kw).findall(text)) for kw in keywords if kw.strip()})


# --------------------------------------------------------------------------------------------------
# outlines and long pieces


@dataclass
class Outline:
    title: str
    sections: list[str]
    truncated: int = 0  # sections beyond MAX_SECTIONS that were left out

    def as_text(self) -> str:
        lines = [f"Title: {self.title}"] if self.title else []
        return "\n".join(lines + [f"{i}. {s}" for i, s in enumerate(self.sections, 1)])


_TITLE_LINE = re.compile(r"^(?:#+\s*)?[*_]*\s*(?:title|headline|subject(?: line)?)\s*[*_]*\s*[:\-–]\s*(.+)$", re.I)
_ITEM_LINE = re.compile(r"^(?:#{2,6}\s+|\d+[.)]\s+|[-*•]\s+|(?:section|part|block)\s+\d+\s*[:.\-–]\s*)(.+)$", re.I)


def _clean_heading(text: str) -> str:
    text = re.sub(r"[*_`#]+", "", text).strip().strip("\"'“”").rstrip(":").strip()
    # "Heading: what it covers" / "Heading - notes": keep the heading when the rest is a note
    for sep in (" — ", " – ", " - ", ": "):
        head, found, _ = text.partition(sep)
        if found and 1 <= len(head.split()) <= 10 and len(text.split()) > 10:
            return head.strip()
    return text[:120]


def parse_outline(text: str, max_sections: int = MAX_SECTIONS) -> Outline:
    """Title and section headings from a model-written or hand-edited outline. Indented lines are
    notes under a heading; two or more short plain lines are read as headings."""
    title = ""
    items: list[str] = []
    plain: list[str] = []
    for raw in (text or "").splitlines():
        if not raw.strip() or (raw[:1] in " \t" and items):
            continue
        line = raw.strip()
        m = _TITLE_LINE.match(line)
        if m and not title and not items:
            title = _clean_heading(m.group(1))
            continue
        if line.startswith("# ") and not title and not items:
            title = _clean_heading(line[2:])
            continue
        m = _ITEM_LINE.match(line)
        if m:
            heading = _clean_heading(m.group(1))
            if heading:
                items.append(heading)
        elif words(line):
            plain.append(_clean_heading(line))
    # Plain lines count as headings only when they look like headings (a paragraph is not an outline).
    sections = items or (plain if len(plain) >= 2 and all(len(p.split()) <= 14 for p in plain) else [])
    return Outline(title=title, sections=sections[:max_sections], truncated=max(0, len(sections) - max_sections))


def assemble(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """A long piece as Markdown: '# title' then '## heading' and text for each section so far."""
    parts = [f"# {title}"] if title else []
    for heading, body in sections:
        parts.append(f"## {heading}\n\n{body.strip()}" if body.strip() else f"## {heading}")
    return "\n\n".join(parts)


def tail_words(text: str, n: int = 40) -> str:
    ws = plain_text(text).split()
    return ("…" if len(ws) > n else "") + " ".join(ws[-n:])


_PREAMBLE = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|absolutely|great|here(?:'s| is| are)|below is)\b"
    r"[^\n]{0,160}?[:!.]\s*\n",
    re.I,
)


_LOOP = re.compile(r"(\S.{0,39}?)(?:[\s,;]*\1){4,}")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")


def trim_repetition(text: str) -> str:
    """Remove the loops small models fall into: a phrase repeated five or more times in a row is
    kept once, and a sentence or line (four words or more) that repeats an earlier one is dropped."""
    text = _LOOP.sub(r"\1", text)
    seen: set[str] = set()
    out: list[str] = []
    for line in text.split("\n"):
        kept = []
        for sentence in _SENTENCE_SPLIT.split(line):
            key = " ".join(w.lower() for w in words(sentence))
            if len(key.split()) >= 4:
                if key in seen:
                    continue
                seen.add(key)
            kept.append(sentence)
        new = " ".join(kept)
        if line.strip() and not new.strip():
            continue  # the whole line was a repeat
        out.append(new)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def clean_output(text: str, heading: str = "") -> str:
    """Strip what small models wrap around the text: a chatty first line, a code fence, quotes
    around the whole text, (for a section) its heading repeated at the top, and repetition loops."""
    out = trim_repetition((text or "").strip())
    fenced = re.fullmatch(r"```[\w-]*\n(.*?)\n?```", out, flags=re.S)
    if fenced:
        out = fenced.group(1).strip()
    if _PREAMBLE.match(out + "\n") and len(out.splitlines()) > 1:
        out = _PREAMBLE.sub("", out + "\n", count=1).strip()
    if heading:
        first, _, rest = out.partition("\n")
        norm = lambda s: re.sub(r"\W+", " ", s).strip().lower()  # noqa: E731
        if first and norm(_clean_heading(re.sub(r"^\s*(?:#+|\d+[.)])\s*", "", first))) == norm(heading):
            out = rest.strip()
    if len(out) > 2 and out[0] in '"“' and out[-1] in '"”' and out.count('"') + out.count("“") + out.count("”") == 2:
        out = out[1:-1].strip()
    return out


# --------------------------------------------------------------------------------------------------
# length checks declared by templates


@dataclass
class CheckResult:
    label: str
    chars: int | None  # None: the labelled line was not found
    max_chars: int | None
    min_chars: int | None

    @property
    def ok(self) -> bool:
        if self.chars is None:
            return False
        return (self.max_chars is None or self.chars <= self.max_chars) and (
            self.min_chars is None or self.chars >= self.min_chars
        )

    def message(self) -> str:
        if self.chars is None:
            return f"{self.label}: not found (expected a line starting with '{self.label}:')"
        limits = [f"max {self.max_chars}"] if self.max_chars is not None else []
        limits += [f"min {self.min_chars}"] if self.min_chars is not None else []
        verdict = "ok"
        if self.max_chars is not None and self.chars > self.max_chars:
            verdict = f"{self.chars - self.max_chars} too many"
        elif self.min_chars is not None and self.chars < self.min_chars:
            verdict = f"{self.min_chars - self.chars} too few"
        return f"{self.label}: {self.chars} characters ({', '.join(limits)}): {verdict}"


def run_checks(text: str, checks: Sequence[Check]) -> list[CheckResult]:
    results = []
    for check in checks:
        if check.pattern:
            m = re.search(check.pattern, text or "")
            chars = len(m.group(1).strip()) if m else None
        else:
            chars = len((text or "").strip())
        results.append(CheckResult(check.label, chars, check.max_chars, check.min_chars))
    return results
