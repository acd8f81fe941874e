"""A header image's prompt made from a writer draft ("Make a header image" under the draft): the draft's title and its
main subject, taken from the text without a model (the wording is prompts/header_image.toml).

Made without a model, because the small default model is weak at this: on three real texts as drafts (the ripgrep
guide, the Wikipedia article on Mozilla, a French notice on Molière; bench/header_prompt_bench.py) the embedded
model, asked for a one-sentence visual prompt, looped on "`#` in `#` in ...", copied the article's first paragraph,
and wrote French nonsense ("la religionisme de Luxury"), taking 7-18 s each; the extraction named "command line,
manual filtering, ripgrep, pattern", "open source, web browser, firefox, netscape" and "louis xiv, mort, époque,
vie" in about a millisecond (tests/app/test_flows.py checks the first two). The prompt is a start the person edits."""

from __future__ import annotations

import functools
import re
import tomllib
from collections import Counter
from dataclasses import dataclass

from core.prompts import PROMPTS_DIR

MAX_DRAFT_CHARS = 200_000  # only the head of a longer text is read: the subject is clear long before

# Common English function words; the data file adds words that never name something to show.
_FUNCTION_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between both
    but by can could did do does doing down during each few for from further had has have having he her here hers
    herself him himself his how i if in into is it its itself let me more most my myself no nor not of off on once
    only or other our ours ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves may might must shall can't don't it's
    you're we're they're i'm isn't aren't wasn't weren't won't wouldn't shouldn't couldn't doesn't didn't into onto
    via per upon within without across along among around toward towards whether though although however therefore
    thus yet etc e.g i.e""".split()
    # and the commonest of French, Spanish, German and Italian, so a draft in those languages is not "les, und, que"
    + """le la les un une des du de et est sont dans pour par sur avec sans qui que quoi dont mais ou où ne pas plus
    son sa ses leur leurs ce cette ces il elle ils elles nous vous lui tout tous toute toutes comme été être avait
    avaient fait fut furent était étaient ont
    el los las una unos unas del y en por para con sin que qui es son pero como más su sus este esta estos lo al
    der die das ein eine einen dem den des und ist sind nicht mit für von auf zu im auch sich als wie wird oder aus
    il lo gli uno della delle degli di e è che per con non più sono come anche""".split()
)
_CODE_BLOCK = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.DOTALL)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_INLINE_CODE = re.compile(r"`[^`]*`")
_HTML = re.compile(r"<[^>]+>")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_TITLE_LINE = re.compile(r"^\s*title\s*:\s*(.+)$", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_][\w'’-]*[^\W_]|[^\W\d_]{2}", re.UNICODE)


@dataclass(frozen=True)
class HeaderWording:
    prompt: str
    prompt_no_subject: str
    max_terms: int
    max_title_chars: int
    stopwords: frozenset[str]


@functools.cache
def wording() -> HeaderWording:
    data = tomllib.loads((PROMPTS_DIR / "header_image.toml").read_text(encoding="utf-8"))
    return HeaderWording(
        prompt=str(data["prompt"]),
        prompt_no_subject=str(data["prompt_no_subject"]),
        max_terms=int(data["max_terms"]),
        max_title_chars=int(data["max_title_chars"]),
        stopwords=frozenset(str(w).lower() for w in data.get("stopwords", ())),
    )


def header_image_prompt(text: str, fallback_title: str = "") -> str:
    """The Images prompt for a header image of the draft `text` (Markdown): its title (the first heading, a "Title:"
    line, else `fallback_title`, the brief's topic, else its first words) and up to a few of its most repeated
    content words and word pairs that the title does not already say. Plain text, one line."""
    w = wording()
    body = _plain(str(text or "")[:MAX_DRAFT_CHARS])
    title = _title(body, fallback_title, w.max_title_chars)
    terms = subject_terms(body, title, w)
    if terms:
        return w.prompt.format(title=title, subject=", ".join(terms))
    return w.prompt_no_subject.format(title=title)


def subject_terms(body: str, title: str, w: HeaderWording | None = None) -> list[str]:
    """The draft's most repeated content words and word pairs (each at least twice), most frequent first; a pair
    counts before its words, and a word the title already holds is left out."""
    w = w or wording()
    skip = _FUNCTION_WORDS | w.stopwords
    title_words = {t.lower() for t in _WORD.findall(title)}
    words: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    for line in body.splitlines():
        if _HEADING.match(line):
            continue  # the headings name sections, not what the piece is about
        prev = ""
        for token in _WORD.findall(line):
            word = token.lower().replace("’", "'").strip("'-")
            head, _, tail = word.partition("'")
            if tail and len(head) <= 3:  # French and Italian elision: l'auteur, qu'il, dell'arte
                word = tail
            if len(word) < 3 or word in skip:
                prev = ""
                continue
            words[word] += 1
            if prev:
                pairs[f"{prev} {word}"] += 1
            prev = word
    chosen: list[str] = []
    used: set[str] = set()
    for pair, n in pairs.most_common():
        if n < 2 or len(chosen) >= max(1, w.max_terms // 2):
            break
        first, second = pair.split(" ")
        if {first, second} <= title_words or first == second:
            continue
        chosen.append(pair)
        used |= {first, second}
    for word, n in words.most_common():
        if n < 2 or len(chosen) >= w.max_terms:
            break
        if word in used or word in title_words:
            continue
        chosen.append(word)
    return chosen


def _plain(markdown: str) -> str:
    text = _CODE_BLOCK.sub(" ", markdown)
    text = _LINK.sub(r"\1", text)
    text = _INLINE_CODE.sub(" ", text)
    text = _HTML.sub(" ", text)
    return text.replace("*", "").replace("_", " ")


def _title(body: str, fallback: str, limit: int) -> str:
    title = ""
    for line in body.splitlines():
        if not line.strip():
            continue
        m = _HEADING.match(line) or _TITLE_LINE.match(line)
        if m:
            title = m.group(1)
        break  # only the first line with text can be the title
    title = title or str(fallback or "")
    if not title.strip():
        title = " ".join(body.split()[:10])
    title = " ".join(title.replace('"', "'").split())
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"
