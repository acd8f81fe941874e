"""Deterministic checks and fixes on model output, no model involved: what in a reply came from the
prompt (an instruction echoed, a prompt label, a template placeholder) and its removal, near-duplicate
sentences, trimming to a word budget at a sentence boundary, and placing an added sentence."""

from __future__ import annotations

import contextlib
import difflib
import json
import re
from collections.abc import Iterable, Sequence

from core.writer.text import keyword_pattern, plain_text, words

# Labels of a prompt's brief and instruction blocks; a reply line that starts with one is the prompt talking.
_BLOCK_LABELS = (
    "brief|instructions?|rules|text|notes?|keywords?|tone|audience|length|word count|language|call to action|"
    "cta|topic|outline|output|rewritten text|translation|section \\d+|variant \\d+|for this version"
)
_PLACEHOLDER = re.compile(
    r"\{[^{}\n]{0,40}\}|\[(?:your|insert|add|company|product|brand|name|link|date|phone|email|website|"
    r"url|location|address|price|number|city|contact)\b[^\]\n]{0,40}\](?!\()|<(?:your|insert)[^>\n]{0,40}>",
    re.I,
)
# A model talking about its reply instead of writing it ("I added a paragraph...", "Here is the text").
_META = re.compile(
    r"^\W*(?:I(?:'ve| have)?(?: also)? (?:added|included|used|wrote|written|made|rewrote|changed|kept|removed|hope|tried)\b|"
    r"here(?:'s| is| are)\b|(?:this|the) (?:paragraph|sentence|text|post|version|rewrite|rewritten text|translation)"
    r" (?:is|has|was|includes|contains|uses)\b|note\b|please (?:note|let me know|include)\b|let me know\b)",
    re.I,
)
# ...or about the writing task anywhere in a sentence ("This is the opening section", "use the word 'worm'").
_TASK_TALK = re.compile(
    r"\b(?:(?:this|the|next|previous|first|last|opening|closing) (?:section|paragraph|sentence|heading|post|blog post|"
    r"outline|intro|introduction|draft|brief|prompt)|the (?:title|reader|keywords?|words?|word count|call to action)\b|"
    r"keywords?\b|(?:use|used|using) (?:the|these|those) words?)",
    re.I,
)
_SENTENCE_GAP = re.compile(r"(?<=[.!?…])\s+|(?<=[.!?…][\"'”’)\]])\s+")  # "3.5" and "p.m.," stay whole
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")


def _norm(text: str) -> str:
    return " ".join(w.lower() for w in words(text))


def prompt_runs(prompt_texts: Iterable[str], min_words: int = 4) -> list[str]:
    """The fixed wording of prompts (placeholders cut out) as normalised runs of `min_words`+ words:
    what a reply must not repeat."""
    runs = []
    for text in prompt_texts:
        for line in (text or "").splitlines():
            for piece in re.split(r"\{[^}]*\}", line):
                norm = _norm(piece)
                if len(norm.split()) >= min_words:
                    runs.append(norm)
    return runs


def block_labels(prompt_texts: Iterable[str]) -> re.Pattern[str]:
    """A line-start label the reply must not carry: the generic block labels plus every label the
    prompts put in front of a value ('- Product: {topic}'). Format labels a prompt asks the reply to
    use ('Headline: (under 10 words)') are not among them."""
    names = set()
    for text in prompt_texts:
        for m in re.finditer(r"(?m)^\s*(?:[-*]\s+)?([A-Za-z][A-Za-z ]{1,30}?)\s*:\s*(\{[^}]*\}.*)?$", text or ""):
            if m.group(2) is not None or not text[m.end() :].startswith(" ("):
                names.add(re.escape(m.group(1).strip().lower()))
    body = "|".join(sorted(names, key=len, reverse=True) + [_BLOCK_LABELS])
    return re.compile(rf"^\W{{0,4}}(?:{body})\s*[:：]\s*", re.I)


SHINGLE = 6  # a reply that shares this many words in a row with the prompt's wording repeats it


def is_echo(sentence: str, runs: Sequence[str]) -> bool:
    """Whether `sentence` repeats the prompt's wording: a whole run of it, six words of it in a row, or
    (a part before or after a colon) nearly the same words as a run."""
    norm = _norm(sentence)
    if len(norm.split()) < 4:
        return False
    padded = f" {norm} "
    parts = [_norm(p) for p in sentence.split(":") if len(words(p)) >= 4] if ":" in sentence else [norm]
    for run in runs:
        if f" {run} " in padded or norm in run:
            return True
        run_words = run.split()
        for i in range(len(run_words) - SHINGLE + 1):
            if f" {' '.join(run_words[i : i + SHINGLE])} " in padded:
                return True
        if any(difflib.SequenceMatcher(None, part, run, autojunk=False).ratio() >= 0.8 for part in parts):
            return True
    return False


def units(text: str) -> list[str]:
    """The sentences of a paragraph (a list item or a heading is one unit)."""
    if _LIST_ITEM.match(text) or re.match(r"\s*#{1,6}\s", text):
        return [text.strip()]
    return [s.strip() for s in _SENTENCE_GAP.split(text.strip()) if s.strip()]


def _number_salad(sentence: str) -> bool:
    """A run of numbers a small model loops into ('3.5, 2, 1, 1, 2')."""
    tokens = words(sentence)
    return len(tokens) >= 6 and sum(t[:1].isdigit() for t in tokens) > 0.4 * len(tokens)


def strip_prompt(text: str, runs: Sequence[str], labels: re.Pattern[str]) -> tuple[str, list[str]]:
    """`text` without what came from the prompt: a line led by a prompt label (the label cut when a
    real sentence follows it), a sentence with a placeholder or that repeats the prompt's wording.
    Returns the text and what was removed."""
    removed: list[str] = []
    out_lines: list[str] = []
    for line in (text or "").split("\n"):
        if line.strip() and not words(line):
            continue  # stray braces, punctuation
        m = labels.match(line)
        if m:
            rest = line[m.end() :].strip()
            removed.append(line.strip()[:80])
            if len(words(rest)) < 8 or is_echo(rest, runs):
                continue
            line = rest
        kept = []
        for sentence in units(line) if line.strip() else []:
            if (
                _PLACEHOLDER.search(sentence)
                or _META.match(sentence)
                or _TASK_TALK.search(sentence)
                or _number_salad(sentence)
                or not words(sentence)
                or is_echo(sentence, runs)
            ):
                removed.append(sentence[:80])
                continue
            kept.append(sentence)
        if line.strip() and not kept:
            continue
        lead = re.match(r"\s*", line).group(0) if kept else ""  # type: ignore[union-attr]
        out_lines.append(lead + " ".join(kept))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out_lines)).strip(), removed


def drop_near_duplicates(text: str, threshold: float = 0.7) -> str:
    """Sentences (5+ words) whose words mostly repeat an earlier sentence's are dropped: the loops a
    small model falls into with a word or two changed."""
    seen: list[set[str]] = []
    out_lines = []
    for line in text.split("\n"):
        kept = []
        for sentence in units(line) if line.strip() else []:
            bag = {w.lower() for w in words(sentence)}
            if len(bag) >= 5 and any(len(bag & s) / len(bag | s) >= threshold for s in seen):
                continue
            if len(bag) >= 5:
                seen.append(bag)
            kept.append(sentence)
        if line.strip() and not kept:
            continue
        out_lines.append(" ".join(kept) if not _LIST_ITEM.match(line) else line.strip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out_lines)).strip()


def word_count(markdown: str) -> int:
    return len(words(plain_text(markdown)))


def missing_keywords(text: str, keywords: Sequence[str]) -> list[str]:
    plain = plain_text(text)
    return [k for k in keywords if not keyword_pattern(k).search(plain)]


def _paragraphs(text: str) -> list[list[str]]:
    return [units(p) for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def _join(paragraphs: list[list[str]]) -> str:
    out = []
    for para in paragraphs:
        if not para:
            continue
        lines = all(_LIST_ITEM.match(u) or u.startswith("#") for u in para)
        out.append(("\n" if lines else " ").join(para))
    return "\n\n".join(out)


def trim_to_words(text: str, max_words: int, keep: Sequence[str] = (), drop_kept: bool = True) -> str:
    """Whole sentences (or list items) dropped from the end until the text has at most `max_words`
    words; a sentence that alone carries one of `keep` (keywords, the call to action) is dropped last, or
    never with `drop_kept` False (the text may then stay over the budget).
    A first sentence longer than the budget is cut at a word and closed with a full stop."""
    paragraphs = _paragraphs(text)
    if word_count(text) <= max_words:
        return text.strip()

    def carries(i: int, j: int) -> bool:
        sentence = plain_text(paragraphs[i][j])
        others = plain_text(
            _join([[u for jj, u in enumerate(p) if (ii, jj) != (i, j)] for ii, p in enumerate(paragraphs)])
        )
        return any(keyword_pattern(k).search(sentence) and not keyword_pattern(k).search(others) for k in keep if k)

    for protect in (True, False) if drop_kept else (True,):
        order = [(i, j) for i in range(len(paragraphs)) for j in range(len(paragraphs[i]))][::-1]
        for i, j in order:
            if word_count(_join(paragraphs)) <= max_words:
                break
            if sum(len(p) for p in paragraphs) <= 1:
                break
            if j >= len(paragraphs[i]) or (protect and carries(i, j)):
                continue
            del paragraphs[i][j]
    out = _join(paragraphs)
    if word_count(out) > max_words:  # one sentence longer than the budget
        ws = out.split()
        out = " ".join(ws[:max_words]).rstrip(",;:—-") + "."
    return out


def insert_sentence(text: str, sentence: str, cta: str = "") -> str:
    """Add `sentence` to the copy: at the end of the last prose paragraph that is not the call to
    action (a closing call to action stays last)."""
    sentence = sentence.strip()
    paragraphs = _paragraphs(text)
    if not paragraphs:
        return sentence
    cta_re = keyword_pattern(cta) if cta.strip() else None

    def prose(p: list[str]) -> bool:
        return bool(p) and not any(_LIST_ITEM.match(u) or u.startswith("#") for u in p)

    for i in range(len(paragraphs) - 1, -1, -1):
        p = paragraphs[i]
        if not prose(p):
            continue
        if cta_re is not None and any(cta_re.search(u) for u in p):
            j = next(j for j, u in enumerate(p) if cta_re.search(u))
            if j > 0:
                p.insert(j, sentence)
                return _join(paragraphs)
            continue
        p.append(sentence)
        return _join(paragraphs)
    paragraphs.insert(max(0, len(paragraphs) - 1), [sentence])
    return _join(paragraphs)


def json_field(reply: str, key: str) -> str:
    """The string `key` of a JSON object reply, read leniently: a complete object, an object cut off
    mid-string (streaming, or the token budget ran out), or, from a server that ignored the schema,
    the reply itself."""
    text = (reply or "").strip()
    try:
        value = json.loads(text)
        if isinstance(value, dict) and isinstance(value.get(key), str):
            return value[key]
    except ValueError:
        pass
    m = re.search(r'\{\s*"' + re.escape(key) + r'"\s*:\s*"', text)
    if m is None:
        return "" if text.startswith("{") else text
    body, out, i = text[m.end() :], [], 0
    while i < len(body):
        ch = body[i]
        if ch == '"':
            break
        if ch == "\\":
            if i + 1 >= len(body):
                break
            nxt = body[i + 1]
            if nxt == "u":
                if i + 6 > len(body):
                    break
                with contextlib.suppress(ValueError):
                    out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append({"n": "\n", "t": "\t", "r": "", "b": "", "f": ""}.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def drop_fragments(text: str, keep: Sequence[str] = (), headings: bool = False) -> str:
    """Prose without the debris of a small model: lines and list items of one or two words with no
    full stop ('10. Brand', 'Customer Service'), and Markdown headings unless `headings`. A line with
    a hashtag or one of `keep` (keywords, the call to action) stays."""
    out = []
    for line in text.split("\n"):
        body = _LIST_ITEM.sub("", line).strip()
        if not body:
            out.append(line)
            continue
        if body.startswith("#") and not body.startswith("# ") and not body.startswith("##"):
            out.append(line)  # hashtags
            continue
        if body.startswith("#"):
            if headings:
                out.append(line)
            continue
        if (
            len(words(body)) <= 2
            and body[-1] not in ".!?"
            and not any(keyword_pattern(k).search(body) for k in keep if k)
        ):
            continue
        out.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def drop_unfinished(text: str) -> str:
    """Text cut off by the token budget ends mid-sentence: that last sentence goes (when there is
    more than it)."""
    paragraphs = _paragraphs(text)
    if not paragraphs:
        return text
    last = paragraphs[-1]
    tail = last[-1] if last else ""
    if not tail or tail[-1] in ".!?…\"'”’)" or _LIST_ITEM.match(tail) or tail.startswith("#"):
        return text.strip()
    if sum(len(p) for p in paragraphs) <= 1:
        return text.strip()
    last.pop()
    return _join(paragraphs)


def json_strings(reply: str, key: str) -> list[str]:
    """The complete strings of the array `key` in a JSON object reply, read leniently (the reply may
    be cut off mid-array while streaming)."""
    text = reply or ""
    try:
        value = json.loads(text)
        if isinstance(value, dict) and isinstance(value.get(key), list):
            return [str(v) for v in value[key] if isinstance(v, (str, int, float))]
    except ValueError:
        pass
    m = re.search(r'"' + re.escape(key) + r'"\s*:\s*\[', text)
    if m is None:
        return []
    out = []
    for s in re.finditer(r'"((?:[^"\\]|\\.)*)"', text[m.end() :]):
        try:
            out.append(json.loads(f'"{s.group(1)}"'))
        except ValueError:
            continue
    return out
