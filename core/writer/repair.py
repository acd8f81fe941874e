"""The writer's check-and-repair loop with a model: a reply cleaned of what came from the prompt, then
checked against its goal (words, keywords, call to action) and repaired: continued when short, a
sentence asked for that carries a missing keyword (constrained to JSON, forced to start with the
keyword on the last try), trimmed at a sentence boundary when long. Every step is bounded."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backends.text.base import BackendError, GenerationParams, Message, StreamStats, TextBackend
from core.writer.brief import Brief
from core.writer.checks import (
    block_labels,
    drop_near_duplicates,
    insert_sentence,
    is_echo,
    json_field,
    missing_keywords,
    prompt_runs,
    strip_prompt,
    trim_to_words,
    word_count,
)
from core.writer.run import Event
from core.writer.templates import COMMON_FILE, STAGE_BUILTINS, WRITER_DIR, load_common, render
from core.writer.text import clean_output, keyword_pattern, tail_words, words

SHORT = 0.8  # below this fraction of the asked words, the text is continued
LONG = 1.2  # above this fraction, it is trimmed back to the asked length
MAX_CONTINUATIONS = 3
TRIES_PER_KEYWORD = 3  # the last one forced to start with the keyword where the engine can
MAX_KEYWORD_TRIES = 12
SENTENCE_TOKENS = 70


@dataclass(frozen=True)
class Goal:
    """What a piece (or one section of it) must be: words asked (None: no length goal), keywords it
    must carry, its closing call to action, and what the prompts said (never to be repeated)."""

    words: int | None
    keywords: tuple[str, ...]
    cta: str
    what: str  # "product description"
    topic: str
    language: str
    system: str
    runs: tuple[str, ...]
    labels: re.Pattern[str]
    prompts: Mapping[str, str]  # the [repair] prompts
    aspects: tuple[str, ...] = ()  # what an added paragraph may be about, in order


def make_goal(
    *,
    words: int | None,
    keywords: Sequence[str],
    cta: str,
    what: str,
    topic: str,
    language: str,
    system: str,
    prompt_texts: Sequence[str],
    repair_prompts: Mapping[str, str],
    aspects: Sequence[str] = (),
) -> Goal:
    texts = [system, *prompt_texts, *repair_prompts.values()]
    return Goal(
        words,
        tuple(keywords),
        cta.strip(),
        what,
        " ".join(topic.split())[:300],
        language or "English",
        system,
        tuple(prompt_runs(texts)),
        block_labels(texts),
        repair_prompts,
        tuple(a for a in aspects if a.strip()) or ("a concrete example of it in use",),
    )


def generate(backend: TextBackend, messages: list[Message], params: GenerationParams, cancel: threading.Event) -> str:
    """One reply, whole (a BackendError propagates; a cut stream's partial text is dropped)."""
    out = []
    stream = backend.stream_chat(messages, params, cancel, StreamStats())
    try:
        for delta in stream:
            out.append(delta)
    finally:
        stream.close()
    return "".join(out)


def clean(text: str, goal: Goal, heading: str = "") -> str:
    """A reply as copy: wrapping stripped (clean_output), prompt echoes, labels and placeholders
    removed, near-duplicate sentences dropped."""
    out, _ = strip_prompt(clean_output(text, heading), goal.runs, goal.labels)
    return drop_near_duplicates(out)


def _schema(key: str, min_chars: int, starts_with: str = "") -> dict[str, Any]:
    prop: dict[str, Any] = {"type": "string", "minLength": min_chars}
    if starts_with:
        prop = {"type": "string", "pattern": "^" + _literal(starts_with) + '[^"\\\\\\n]{12,}$'}
    return {"type": "object", "properties": {key: prop}, "required": [key]}


def _literal(text: str) -> str:
    """`text` as a regular expression that matches it literally (characters outside [A-Za-z0-9 ] as
    one-character classes, which every JSON-schema-to-grammar converter reads)."""
    return "".join(c if c.isalnum() or c == " " else "\\" + c if c in "\\^]-" else f"[{c}]" for c in text)


def _ask(
    backend: TextBackend,
    goal: Goal,
    prompt: str,
    values: Mapping[str, Any],
    params: GenerationParams,
    cancel: threading.Event,
) -> str:
    allowed = STAGE_BUILTINS["repair"]
    base = {"what": goal.what, "topic": goal.topic, "language": goal.language}
    base |= {"keywords": "", "text": "", "words": "", "aspect": ""}
    user = render(goal.prompts[prompt], {**base, **values}, allowed)
    messages: list[Message] = [{"role": "system", "content": goal.system}, {"role": "user", "content": user}]
    try:
        return generate(backend, messages, params, cancel)
    except BackendError as exc:
        if params.json_schema is not None and "schema" in str(exc):
            return ""  # this engine cannot enforce that schema: the try is spent
        raise


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    m = re.search(r"^.*?\w\w[.!?](?=\s+[A-Z\"“]|$)", text)
    sentence = m.group(0) if m else text
    if sentence and sentence[-1] not in ".!?":
        sentence = re.sub(r"[,;:\-–—\s]+$", "", sentence) + "."
    return sentence


def keyword_sentence(
    backend: TextBackend,
    goal: Goal,
    keywords: Sequence[str],
    params: Callable[[int, int, dict[str, Any] | None], GenerationParams],
    attempt: int,
    forced: bool,
    cancel: threading.Event,
) -> str:
    """One sentence carrying at least one of `keywords`, or "" when this try failed. A forced try asks
    the engine to start the sentence with the first keyword (a JSON-schema pattern)."""
    starts = keywords[0][:1].upper() + keywords[0][1:] if forced else ""
    schema = _schema("sentence", 20, starts)
    reply = _ask(
        backend,
        goal,
        "keyword_sentence",
        {"keywords": ", ".join(f'"{k}"' for k in keywords)},
        params(attempt, SENTENCE_TOKENS, schema),
        cancel,
    )
    sentence = _first_sentence(clean(json_field(reply, "sentence"), goal))
    plain = " ".join(words(sentence))
    ok = (
        4 <= len(plain.split()) <= 45
        and any(keyword_pattern(k).search(sentence) for k in keywords)
        and not is_echo(sentence, goal.runs)
    )
    return sentence if ok else ""


def continuation(
    backend: TextBackend,
    goal: Goal,
    text: str,
    add_words: int,
    params: Callable[[int, int, dict[str, Any] | None], GenerationParams],
    attempt: int,
    cancel: threading.Event,
) -> str:
    reply = _ask(
        backend,
        goal,
        "continue_text",
        {"text": tail_words(text, 80), "words": str(add_words), "aspect": goal.aspects[attempt % len(goal.aspects)]},
        params(attempt, int(add_words * 1.7) + 40, _schema("paragraph", 60)),
        cancel,
    )
    return clean(json_field(reply, "paragraph"), goal)


def polish(
    backend: TextBackend,
    goal: Goal,
    text: str,
    params: Callable[[int, int, dict[str, Any] | None], GenerationParams],
    cancel: threading.Event,
    show: Callable[[str], str],
    label: str = "",
) -> Generator[Event, None, str]:
    """Check `text` against `goal` and repair it; yields status and text events (the text through
    `show`, e.g. spliced into the whole piece) and returns the repaired text. `params(attempt, max_new,
    schema)` gives each model call its own seed. `label` prefixes progress ("Variant 2: ")."""
    keep = [*goal.keywords, goal.cta]
    attempt = 0
    if goal.words:
        for _ in range(MAX_CONTINUATIONS + len(goal.aspects)):
            have = word_count(text)
            if cancel.is_set() or have >= SHORT * goal.words or attempt >= MAX_CONTINUATIONS + 2:
                break
            yield Event("status", step=f"{label}continuing ({have} of {goal.words} words)")
            attempt += 1
            added = continuation(backend, goal, text, max(30, min(120, goal.words - have)), params, attempt, cancel)
            longer = drop_near_duplicates(f"{text}\n\n{added}" if text.strip() else added)
            if word_count(longer) >= have + 5:  # a paragraph that only repeats the text is not kept
                text = longer
                yield Event("text", show(text))
        if word_count(text) > LONG * goal.words:
            text = trim_to_words(text, goal.words, keep)
            yield Event("text", show(text))
    missing = missing_keywords(text, goal.keywords)
    tries: dict[str, int] = {}
    while missing and not cancel.is_set() and sum(tries.values()) < MAX_KEYWORD_TRIES:
        group = missing[:2]
        first = group[0]
        tries[first] = tries.get(first, 0) + 1
        forced = tries[first] >= TRIES_PER_KEYWORD
        yield Event("status", step=f"{label}adding the keyword “{first}”")
        attempt += 1
        sentence = keyword_sentence(backend, goal, [first] if forced else group, params, attempt, forced, cancel)
        if sentence:
            text = insert_sentence(text, sentence, goal.cta)
            yield Event("text", show(text))
        missing = [k for k in missing_keywords(text, goal.keywords) if tries.get(k, 0) < TRIES_PER_KEYWORD]
    if goal.cta and goal.words and not keyword_pattern(goal.cta).search(text):
        close = goal.cta if goal.cta[-1] in ".!?" else goal.cta + "."
        text = f"{text}\n\n{close}".strip()
        yield Event("text", show(text))
    if goal.words and word_count(text) > LONG * goal.words:
        text = trim_to_words(text, int(goal.words * 1.1), keep, drop_kept=False)  # keywords before length
        yield Event("text", show(text))
    return text


# ------------------------------------------------------------------------------------------------
# goals from briefs


@functools.lru_cache(maxsize=1)
def app_repair_prompts() -> Mapping[str, str]:
    return load_common(WRITER_DIR / COMMON_FILE).repair


def goal_for(brief: Brief, repair: Mapping[str, str], prompts: Sequence[str], **kw: Any) -> Goal:
    t = brief.template
    values = brief.values
    args: dict[str, Any] = {
        "words": brief.length,
        "keywords": brief.keywords,
        "cta": str(values.get("cta") or ""),
        "what": t.label.lower(),
        "topic": str(values.get("topic") or ""),
        "language": str(values.get("language") or "English"),
        "system": t.system,
        "prompt_texts": [*prompts, *t.section_notes.values()],
        "repair_prompts": repair,
        "aspects": aspects(brief),
    }
    return make_goal(**{**args, **kw})


def aspects(brief: Brief) -> list[str]:
    """What a paragraph added to a short piece may be about: the facts and features the person gave,
    then why it matters to the audience, then an example."""
    out: list[str] = []
    for f in brief.template.fields:
        value = brief.values.get(f.name)
        if f.name in ("topic", "tone", "language", "keywords", "cta", "length") or not isinstance(value, str):
            continue
        if f.name == "audience":
            continue
        out += [line.strip(" -•*") for line in value.splitlines() if len(line.split()) >= 2]
    audience = str(brief.values.get("audience") or "").strip()
    if audience:
        out.append(f"why it matters to {audience}")
    return out + ["a concrete example of it in use"]
