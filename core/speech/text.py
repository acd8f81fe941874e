"""Text rules for speaking: Markdown and other written-only marks turned into words a voice can read, and the
split into pieces a voice takes one at a time (sentences, then clauses, then words), the first piece short."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from urllib.parse import urlsplit

CODE_BLOCK = "Code block."  # what is said for a fenced code block
FIRST_PIECE_CHARS = 160  # the first piece is one sentence at most this long, so audio starts fast

# Every pattern runs in linear time on hostile input (a 100,000-character line of "**a ", "![", "<http://", "....",
# spaces): character classes exclude the mark that opens the next match, runs are matched possessively and only from
# their first character, and nothing is anchored to a line end after an unbounded run.
_FENCE = re.compile(r"^\s{0,3}(```+|~~~+)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}(?:\s+|$)")
_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*+\1){2,}+\s*$")
_BULLET = re.compile(r"^\s*+(?:[-*+•]|\d{1,9}[.)])\s+(?:\[[ xX]\]\s+)?")
_QUOTE = re.compile(r"^\s*+(?:>\s?)+")
_TABLE_RULE = re.compile(r"^\|?[ \t]*+:?-{2,}+:?[ \t]*+(?:\|[ \t]*+:?-{2,}+:?[ \t]*+)*+\|?$")
_IMAGE = re.compile(r"!\[([^\[\]\n]*)\]\([^()\n]*\)")
_LINK = re.compile(r"\[([^\[\]\n]+)\]\([^()\n]*\)")
_REF_LINK = re.compile(r"\[([^\[\]\n]+)\]\[[^\[\]\n]*\]")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\[\]\n]+\]:\s+\S")
_AUTOLINK = re.compile(r"<((?:https?|ftp)://[^<>\s]++|[^<>\s@]++@[^<>\s]++)>")
_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>()\"']++|\bwww\.[^\s<>()\"']++", re.IGNORECASE)
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*+(?:\s[^<>]*+)?/?>")
_STRONG = re.compile(r"\*{2,}+|_{2,}+|~{2,}+")  # bold and strike-through marks (their words stay)
_STAR = re.compile(r"(?<![\s\d])\*(?![\w])|(?<![\w])\*(?![\s\d])")  # an emphasis star, not "2 * 3" or "2*3"
_UNDERSCORE = re.compile(r"(?<!\w)_|_(?!\w)")  # an emphasis underscore, not snake_case
_SPACES = re.compile(r"[^\S\n]+")
_ENDS_SENTENCE = re.compile(r"[.!?…:;。！？]['\"”’)\]]*$")
# A sentence ends at . ! ? … (and CJK stops), after any closing quotes or brackets, before a space.
_SENTENCE_END = re.compile(r"(?<![.!?…])[.!?…]++['\"”’)\]]*+\s+|(?<![。！？])[。！？]++['\"”’)\]]*+\s*|(?<!\n)\n++")
_CLAUSE_END = re.compile(r"(?<![,;:—–])[,;:—–]++['\"”’)\]]*+\s+|(?<!\s)\s++[—–-]\s+")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs e.g i.e cf fig vol approx dept corp jan feb apr jun jul aug sep sept oct nov "
    "dec".split()
)


def _host(url: str) -> str:
    """A URL as it is read aloud: its host without "www." ("https://www.example.org/a?b" -> "example.org")."""
    target = url if "://" in url else "http://" + url
    try:
        host = urlsplit(target).hostname or ""
    except ValueError:
        host = ""
    host = host.removeprefix("www.")
    return host or "a link"


def _sentence(text: str) -> str:
    """`text` as a sentence of its own: a full stop added when it ends without punctuation."""
    text = text.strip()
    if text and not _ENDS_SENTENCE.search(text):
        text += "."
    return text


def _inline(line: str) -> str:
    line = _IMAGE.sub(lambda m: m.group(1), line)
    line = _LINK.sub(lambda m: m.group(1), line)
    line = _REF_LINK.sub(lambda m: m.group(1), line)
    line = _AUTOLINK.sub(lambda m: _host(m.group(1)) if "://" in m.group(1) else m.group(1), line)
    line = _URL.sub(lambda m: _host(m.group(0).rstrip(".,;:!?")) + _trailing(m.group(0)), line)
    line = _HTML_TAG.sub("", line)
    line = line.replace("`", "")  # inline code: its words are read
    line = _STRONG.sub("", line)
    line = _STAR.sub("", line)
    return _UNDERSCORE.sub("", line)


def _trailing(url: str) -> str:
    """The sentence punctuation a bare URL swallowed ("see example.org." keeps its full stop)."""
    return url[len(url.rstrip(".,;:!?")) :]


_SUSPECT = re.compile(r"[^\x20-\x7e\n]")  # anything but printable ASCII and newlines: looked at one by one
_REMOVED = ("Cc", "Cf", "Co", "Cs", "Cn")


def _keep(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in "\t\v\f\x85":
        return " "
    return "" if unicodedata.category(ch) in _REMOVED else ch


def _printable(text: str) -> str:
    """Control, format, private-use and unpaired surrogate characters removed; tabs and odd breaks -> spaces. Only
    characters outside printable ASCII are looked up (a 60,000-character English text took 13 ms a character at a
    time, under 1 ms this way)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n\n")
    return _SUSPECT.sub(_keep, text)


def clean_for_speech(text: str) -> str:
    """What a voice should read of `text`: Markdown turned into plain sentences (headings, list items and table
    rows each a sentence; emphasis, links and images -> their text; a fenced code block -> "Code block."), URLs
    shortened to their host, control characters removed. Paragraphs are separated by a blank line."""
    paragraphs: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            joined = _SPACES.sub(" ", " ".join(current)).strip()
            if joined:
                paragraphs.append(joined)
            current.clear()

    fence: str | None = None
    for raw in _printable(text).split("\n"):
        if fence is not None:
            if raw.strip().startswith(fence):
                fence = None
            continue
        opened = _FENCE.match(raw)
        if opened:
            flush()
            fence = opened.group(1)[:3]
            paragraphs.append(CODE_BLOCK)
            continue
        line = raw.rstrip()
        if not line.strip():
            flush()
            continue
        if _RULE.match(line) or _TABLE_RULE.match(line.strip()) or _REF_DEF.match(line):
            flush()
            continue
        if _SETEXT.match(line) and current:  # "Title\n=====": the line before was a heading
            current[-1] = _sentence(current[-1])
            flush()
            continue
        heading = _HEADING.match(line)
        if heading:
            flush()
            title = line[heading.end() :].rstrip()
            closed = title.rstrip("#")
            if closed != title and (not closed or closed[-1] in " \t"):  # "## Title ##": the closing marks go
                title = closed
            paragraphs.append(_sentence(_inline(title)))
            continue
        line = _QUOTE.sub("", line)
        if line.lstrip().startswith("|") or line.count("|") >= 2:  # a table row: its cells, as a list
            cells = [c.strip() for c in _inline(line).strip().strip("|").split("|")]
            current.append(_sentence(", ".join(c for c in cells if c)))
            continue
        bullet = _BULLET.match(line)
        if bullet:
            flush()
            current.append(_sentence(_inline(line[bullet.end() :])))
            flush()
            continue
        current.append(_inline(line.strip()))
    flush()
    return "\n\n".join(p for p in paragraphs if p.strip(".").strip())


HEAD_CHARS = 4000  # what is cleaned before the first audio; the rest is cleaned once the first piece is spoken


def split_head(text: str, min_chars: int = HEAD_CHARS) -> tuple[str, str]:
    """`text` cut at its first blank line outside a code fence at or after `min_chars`: (head, rest), with
    clean_for_speech(head) and clean_for_speech(rest) joined by a blank line the same as cleaning it whole (a blank
    line outside a fence ends every paragraph, list item and heading). ("text", "") when there is no such line. Both
    parts come back with line breaks and control characters already as cleaning sees them."""
    if len(text) <= min_chars:
        return text, ""
    printable = _printable(text)
    fence: str | None = None
    offset = 0
    for line in printable.split("\n"):
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
        else:
            opened = _FENCE.match(line)
            if opened:
                fence = opened.group(1)[:3]
            elif not line.strip() and offset >= min_chars:
                return printable[:offset], printable[offset + len(line) + 1 :]
        offset += len(line) + 1
    return text, ""


def has_words(text: str) -> bool:
    """True when `text` has something to say: a letter or a digit, not only punctuation and spaces."""
    return any(ch.isalnum() for ch in text)


def _is_abbreviation(text: str, end: int) -> bool:
    """True when the full stop before `end` closes an abbreviation ("Dr.", "e.g.") or an initial ("J.")."""
    start = end
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    word = text[start:end].strip().rstrip(".").lstrip("(\"'“‘")
    return word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isupper())


def sentences(text: str) -> Iterator[tuple[str, int, bool]]:
    """The sentences of `text` lazily: (sentence, the offset just after it, whether a paragraph ends there).
    Line breaks end a sentence too; a full stop after an abbreviation or an initial does not."""
    start = 0
    for match in _SENTENCE_END.finditer(text):
        mark = match.group(0)
        if mark[0] == "." and mark[:2] != ".." and "\n" not in mark and _is_abbreviation(text, match.start()):
            continue
        sentence = text[start : match.start() + len(mark.rstrip())].strip()
        start = match.end()
        if sentence:
            yield sentence, start, "\n\n" in mark
    tail = text[start:].strip()
    if tail:
        yield tail, len(text), True


def _split_long(sentence: str, limit: int) -> Iterator[str]:
    """A sentence longer than `limit` in pieces: at clause marks (commas, semicolons, dashes), then at spaces, and
    a single word longer than `limit` cut (there is nothing better to do with it)."""
    clauses: list[str] = []
    start = 0
    for match in _CLAUSE_END.finditer(sentence):
        clauses.append(sentence[start : match.end()].strip())
        start = match.end()
    clauses.append(sentence[start:].strip())
    words: list[str] = []
    for clause in clauses:
        if len(clause) <= limit:
            words.append(clause)
            continue
        for word in clause.split():
            while len(word) > limit:
                words.append(word[:limit])
                word = word[limit:]
            if word:
                words.append(word)
    piece = ""
    for part in words:
        if not part:
            continue
        if piece and len(piece) + 1 + len(part) > limit:
            yield piece
            piece = part
        else:
            piece = f"{piece} {part}" if piece else part
    if piece:
        yield piece


_STOPS = (".", "!", "?", ":", ";", "…", "。", "！", "？")
HEADING_CHARS = 12  # a paragraph without a stop this long or longer is a heading that keeps its pause


def _wants_own_pause(sentence: str) -> bool:
    """A paragraph's last sentence with no stop of its own, long enough to be a heading rather than a fragment."""
    tail = sentence.rstrip("\"'”’)]» ")
    return not tail.endswith(_STOPS) and len(sentence) >= HEADING_CHARS


def split_pieces(text: str, max_chars: int, first_chars: int = FIRST_PIECE_CHARS) -> Iterator[tuple[str, int]]:
    """Pieces of at most `max_chars` for a voice, lazily, each with how far into `text` it reaches: whole
    sentences packed together, a long sentence split at clauses, then words. A paragraph that ends without a stop (a
    plain heading) ends its piece, so the voice pauses after it; paragraphs that end with one are packed like
    sentences (one call per line of "a\n\n" * 30,000 would cost the engines' start-up 30,000 times). The first piece
    is one sentence (at most `first_chars`), so the first audio comes after little work."""
    limit = max(1, int(max_chars))
    first = max(1, min(limit, int(first_chars)))
    piece, reached, count, paragraph_end, previous = "", 0, 0, False, ""
    for sentence, end, breaks in sentences(text):
        cap = limit if count else first
        if piece and ((paragraph_end and _wants_own_pause(previous)) or len(piece) + 1 + len(sentence) > cap):
            yield piece, reached
            piece, count = "", count + 1
            cap = limit
        if len(sentence) > cap:
            if piece:
                yield piece, reached
                piece, count = "", count + 1
            parts = list(_split_long(sentence, cap))
            begin, done = reached, 0
            for i, part in enumerate(parts):
                done += len(part) + 1
                last = i == len(parts) - 1
                yield part, end if last else min(end, begin + round((end - begin) * done / (len(sentence) + 1)))
                count += 1
        else:
            piece = f"{piece} {sentence}" if piece else sentence
        reached, paragraph_end, previous = end, breaks, sentence
        if piece and count == 0:  # the first sentence alone
            yield piece, reached
            piece, count = "", 1
    if piece:
        yield piece, reached
