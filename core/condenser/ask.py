"""Questions about the documents of a summary (or files sent with the question): the passages that best match the
question (BM25 over the documents' passages, core/condenser/passages.py), an answer from the model written only
from them, and the answer's citation checked by the code, never taken on trust: the quote the model gives must be
in a passage, or the answer's own words must be; otherwise the answer is plainly "The documents do not answer
this". Citations and quoted passages are made by the condenser's Catalog, exactly as a summary's are."""

from __future__ import annotations

import re
import secrets
import string
import threading
import tomllib
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backends.text.base import GenerationParams, Message, StreamStats
from core.cancel import CancelRegistry
from core.condenser.cite import Catalog, Source, _clip, _windows, rank, sentences
from core.condenser.documents import ExtractedDocument, ExtractionCancelled, Segment, extract_document
from core.condenser.passages import (
    DocumentInfo,
    Passage,
    PassageStore,
    bm25_rank,
    content_words,
    coverage,
    documents_of,
    split_passages,
)
from core.condenser.points import clean_model_text, md_quote, md_text, strip_model_citations, trim_repetition
from core.condenser.request import InputFile
from core.condenser.service import MAX_FILES, CondenseService
from core.errors import InputError
from core.prompts import PROMPTS_DIR

MAX_QUESTION_CHARS = 1000
TOP_K = 4  # passages shown to the model (fewer when the context is short)
ANSWER_TOKENS = 200
MAX_ANSWER_SENTENCES = 3  # asked for one or two; a small model that goes on repeats itself
NOT_ANSWERED = "The documents do not answer this."
NONE_MARK = "NOT IN THE DOCUMENTS"
# The best passage must hold this share of the question's content words (weighted by rarity) before the model is
# asked at all: bench/ask_bench.py separates the corpus questions with an answer from those without one with it.
MIN_COVERAGE = 0.3
QUOTE_MIN_WORDS = 3
QUOTE_WINDOW = 6  # a quote counts as found when most of its runs of this many words are in one passage
PROMPTS_FILE = PROMPTS_DIR / "ask_prompts.toml"
_ALLOWED = {"system": {"begin", "end", "none"}, "user": {"begin", "end", "none", "passages", "question"}}
_REFUSAL = re.compile(
    r"\b(?:not in the (?:documents?|passages?|text)|(?:does|do|did)\s*(?:not|n't)\s+(?:contain|answer|mention|say|"
    r"provide|include|specify|state)|no (?:information|mention)|not (?:mentioned|stated|specified|provided))\b",
    re.IGNORECASE,
)
_PASSAGE_REF = re.compile(r"\s*\[\s*\d{1,2}(?:\s*,\s*\d{1,2})*\s*\]")
_WORDS = re.compile(r"\w+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

Retriever = Callable[[Sequence[Passage], str, int], list[int]]


class AskCancelled(Exception):
    """The user stopped the question."""


@dataclass(frozen=True)
class Citation:
    cite: str  # "[p. 3]", "[§ Usage]", "[report.pdf, p. 3]" with several documents
    document: str
    quote: str  # the passage of the document behind it, verbatim


@dataclass
class Answer:
    question: str
    text: str  # the model's answer, cleaned (or NOT_ANSWERED)
    answered: bool
    citations: list[Citation] = field(default_factory=list)
    reason: str = ""  # why it is not answered, in words

    def markdown(self) -> str:
        """The answer as the thread shows it: the question, the answer with its citation, the quoted passage."""
        lines = [f"**Q:** {md_text(self.question)}", ""]
        if not self.answered:
            lines.append(f"**{NOT_ANSWERED}**" + (f" *{md_text(self.reason)}*" if self.reason else ""))
            return "\n".join(lines)
        cites = " ".join(c.cite for c in self.citations)
        lines.append(f"{md_text(self.text)} {md_text(cites)}".rstrip())
        for c in self.citations:
            lines += ["", f"> **{md_text(c.cite)}** “{md_quote(c.quote)}”"]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "question": self.question,
            "answered": self.answered,
            "answer": self.text,
            "citations": [{"cite": c.cite, "document": c.document, "quote": c.quote} for c in self.citations],
            "reason": self.reason,
            "markdown": self.markdown(),
        }


@dataclass
class AskUpdate:
    status: str
    fraction: float
    partial: str = ""  # the model's reply so far (unchecked: shown as "writing…" only)
    answer: Answer | None = None


@dataclass(frozen=True)
class AskPrompts:
    system: str
    user: str


def load_ask_prompts(path: Path | None = None) -> AskPrompts:
    path = path or PROMPTS_FILE
    section = tomllib.loads(path.read_text(encoding="utf-8")).get("answer")
    if not isinstance(section, dict):
        raise ValueError(f"{path}: missing [answer]")
    parts = {}
    for part, allowed in _ALLOWED.items():
        text = section.get(part)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{path}: [answer] needs a non-empty '{part}'")
        used = {name for _, name, _, _ in string.Formatter().parse(text) if name}
        if used - allowed:
            raise ValueError(f"{path}: [answer] {part} uses undeclared placeholders {sorted(used - allowed)}")
        parts[part] = text.strip()
    if "{passages}" not in parts["user"] or "{question}" not in parts["user"]:
        raise ValueError(f"{path}: [answer] user needs {{passages}} and {{question}}")
    return AskPrompts(parts["system"], parts["user"])


def bm25_retriever(passages: Sequence[Passage], question: str, k: int) -> list[int]:
    return [i for i, _ in bm25_rank(passages, question, k)]


def check_question(question: object) -> str:
    """The question, tidied; InputError when it is missing, too long or holds control characters."""
    if question is None or (isinstance(question, str) and not question.strip()):
        raise InputError("Type a question about the documents.")
    if not isinstance(question, str):
        raise InputError("question must be text (a string).")
    if len(question) > MAX_QUESTION_CHARS:
        raise InputError(f"The question is {len(question):,} characters; ask in at most {MAX_QUESTION_CHARS:,}.")
    if any(ord(c) < 32 and c not in "\t\n\r" or ord(c) == 127 for c in question):
        raise InputError("The question holds control characters (such as NUL); type it again as plain text.")
    return " ".join(question.split())


class AskService:
    """Answers questions from documents; uses the condenser's models, reader limits, uploads and summaries."""

    def __init__(
        self,
        condense: CondenseService,
        passages: PassageStore,
        prompts: AskPrompts | None = None,
        retriever: Retriever = bm25_retriever,
        top_k: int = TOP_K,
    ) -> None:
        self.condense, self.passages = condense, passages
        self.prompts = prompts or load_ask_prompts()
        self.retriever, self.top_k = retriever, top_k
        self.active = CancelRegistry()

    # -- the question --------------------------------------------------------------------------------------------
    def ask(
        self,
        user_id: str,
        question: object,
        summary_id: str = "",
        files: Sequence[InputFile] = (),
        model: object = None,
        *,
        session: str = "",
    ) -> Iterator[AskUpdate]:
        """Stream progress; the last update carries the answer. The documents: a kept summary's (the caller's own;
        SummaryNotFound otherwise) or `files` (read in the sandboxed reader, as /condense reads them; disposable
        ones deleted once read). Raises InputError, DocumentError, BackendError, PassagesNotKept, AskCancelled."""
        files = list({f.path: f for f in files}.values())
        self.condense.uploads.hold([f for f in files if f.disposable])
        released: set[str] = set()  # disposable inputs already let go of (once read)
        key = f"ask:{session}"
        cancel = self.active.start(user_id, key, supersede=True)
        try:
            question = check_question(question)
            spec = self._model(model)
            if not isinstance(summary_id, str) or len(summary_id) > 64:
                raise InputError("summary_id must be the id of one of your summaries (text).")
            if summary_id and files:
                raise InputError("Ask about a summary's documents or about files, not both at once.")
            if summary_id:
                self.condense.summary(user_id, summary_id)  # SummaryNotFound for anyone else's (or none)
                infos, passages = self.passages.load(user_id, summary_id)
            elif files:
                if len(files) > MAX_FILES:
                    raise InputError(f"{len(files)} documents is too many; ask about at most {MAX_FILES} at once.")
                docs = yield from self._read(files, cancel, released)
                infos = [DocumentInfo(d.name, d.kind) for d in docs]
                passages = split_passages(docs)
            else:
                raise InputError("Condense a document first, or send the files to ask about.")
            yield from self.answer(question, infos, passages, spec, cancel)
        finally:
            self.active.finish(user_id, key, cancel)
            self.condense.uploads.release([f for f in files if f.disposable and f.path not in released])

    def stop(self, user_id: str, session: str = "") -> bool:
        return self.active.stop(user_id, f"ask:{session}") > 0

    def _model(self, model: object) -> str | None:
        if model is not None and not isinstance(model, str):
            raise InputError("model must be a configured model spec (text).")
        spec = (model or "").strip() or None
        if spec and spec not in self.condense.models.specs:
            raise InputError(f"Unknown model {spec!r}; configured: {', '.join(self.condense.models.specs)}")
        return spec

    def _read(
        self, files: Sequence[InputFile], cancel: threading.Event, released: set[str]
    ) -> Generator[AskUpdate, None, list[ExtractedDocument]]:
        docs: list[ExtractedDocument] = []
        for i, f in enumerate(files):
            yield AskUpdate(f"Reading “{f.name}” (file {i + 1} of {len(files)})…", 0.05)
            try:
                docs.append(
                    extract_document(f.path, f.name, self.condense.limits, password=f.password or None, cancel=cancel)
                )
            except ExtractionCancelled:
                raise AskCancelled("The question was cancelled.") from None
            finally:
                if f.disposable:  # the upload's copy goes as soon as it is read (or refused)
                    released.add(f.path)
                    self.condense.uploads.release([f])
        return docs

    # -- retrieval, the model, the check --------------------------------------------------------------------------
    def answer(
        self,
        question: str,
        infos: Sequence[DocumentInfo],
        passages: Sequence[Passage],
        model: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[AskUpdate]:
        """The answer to a checked question from these passages (the bench calls this directly)."""
        cancel = cancel or threading.Event()
        yield AskUpdate("Finding the passages that match…", 0.1)
        found = self.retriever(passages, question, self.top_k)
        if not found or max(coverage(passages, question, found)) < MIN_COVERAGE:
            reason = "No passage of the documents mentions what the question asks about."
            yield AskUpdate("Done.", 1.0, answer=Answer(question, NOT_ANSWERED, False, reason=reason))
            return
        backend = self.condense.models.get(model)
        yield AskUpdate(f"Loading {backend.label}…", 0.2)
        backend.load()
        self._check_cancel(cancel)
        shown = [passages[i] for i in found]
        catalog = Catalog(documents_of(infos, passages))
        multi = len(infos) > 1
        sources = [_source(infos, p) for p in shown]
        nonce = secrets.token_hex(6)
        ctx = backend.capabilities().context_length
        while True:
            messages = self._messages(question, shown, catalog, sources, multi, nonce)
            if len(shown) == 1 or backend.count_tokens(messages) + ANSWER_TOKENS + 16 <= ctx:
                break
            shown, sources = shown[:-1], sources[:-1]
        params = GenerationParams(temperature=0.0, top_p=1.0, max_new_tokens=ANSWER_TOKENS, seed=0)
        reply = ""
        stats = StreamStats()
        yield AskUpdate("Writing the answer…", 0.3)
        stream = backend.stream_chat(messages, params, cancel, stats)
        try:
            for delta in stream:
                reply += delta
                yield AskUpdate("Writing the answer…", 0.3 + 0.6 * min(1.0, len(reply) / 600), partial=reply)
        finally:
            stream.close()
        self._check_cancel(cancel)
        result = verify(question, reply, shown, sources, catalog, multi, infos, markers=(nonce,))
        yield AskUpdate("Done.", 1.0, answer=result)

    def _messages(
        self,
        question: str,
        shown: Sequence[Passage],
        catalog: Catalog,
        sources: Sequence[Source],
        multi: bool,
        nonce: str,
    ) -> list[Message]:
        begin, end = f"<passages-{nonce}>", f"</passages-{nonce}>"
        numbered = "\n\n".join(
            f"[{i + 1}] ({catalog.cite([s], multi).strip('[]')}) {p.text.replace(nonce, '')}"
            for i, (p, s) in enumerate(zip(shown, sources))
        )
        values = {"begin": begin, "end": end, "none": NONE_MARK}
        system = self.prompts.system.format_map(values)
        # The passages and the question are data: put in last, so braces in them are never read as placeholders.
        user = self.prompts.user.format_map({**values, "passages": "\x00P\x00", "question": "\x00Q\x00"})
        user = user.replace("\x00Q\x00", question.replace(nonce, "")).replace("\x00P\x00", numbered)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    @staticmethod
    def _check_cancel(cancel: threading.Event) -> None:
        if cancel.is_set():
            raise AskCancelled("The question was cancelled.")


def _source(infos: Sequence[DocumentInfo], p: Passage) -> Source:
    doc = ExtractedDocument(infos[p.doc].name, infos[p.doc].kind, [])  # type: ignore[arg-type]
    return Source(p.doc, doc.locator(Segment(p.text, p.page, p.section)))


def _norm_words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def quote_support(quote: str, shown: Sequence[Passage]) -> int | None:
    """The passage (index into `shown`) that holds the model's quote: all of a short quote, or most of the runs of
    QUOTE_WINDOW words of a longer one (a model copies with a slip now and then). None when no passage does."""
    words = _norm_words(quote)
    if len(words) < QUOTE_MIN_WORDS:
        return None
    size = min(QUOTE_WINDOW, len(words))
    runs = [" ".join(words[i : i + size]) for i in range(len(words) - size + 1)]
    best, best_share = None, 0.0
    for i, p in enumerate(shown):
        text = " " + " ".join(_norm_words(p.text)) + " "
        share = sum(1 for r in runs if f" {r} " in text) / len(runs)
        if share > best_share:
            best, best_share = i, share
    return best if best_share >= 0.5 else None


def words_support(answer: str, question: str, shown: Sequence[Passage]) -> int | None:
    """The passage holding most of what the answer adds to the question (its content words that the question does
    not already have, and every number it adds); None when it adds nothing, or no passage holds half of it."""
    new = content_words(answer) - content_words(question)
    if not new:
        return None
    numbers = set(_NUMBER.findall(answer)) - set(_NUMBER.findall(question))
    best, best_hits = None, 0
    for i, p in enumerate(shown):
        if not numbers <= set(_NUMBER.findall(p.text)):  # a number the passage does not have is made up
            continue
        hits = len(new & content_words(p.text))
        if hits > best_hits:
            best, best_hits = i, hits
    return best if best_hits >= max(1, (len(new) + 1) // 2) else None


def split_reply(reply: str, markers: Sequence[str] = ()) -> tuple[str, str]:
    """(answer, quote) from a reply such as "ANSWER: ... QUOTE: ...", cleaned of links, HTML and the model's
    own citations."""
    text = clean_model_text(reply, markers=markers)
    parts = re.split(r"(?im)^\W*quote\W*:?", text, maxsplit=1)
    if len(parts) == 1:
        parts = re.split(r"(?i)\bquote\s*:", text, maxsplit=1)
    answer = parts[0]
    quote = parts[1] if len(parts) > 1 else ""
    labelled = re.split(r"(?i)\banswer\s*:", answer, maxsplit=1)  # "Question: ... Answer: ...": what follows
    answer = labelled[1] if len(labelled) > 1 else answer
    answer, _ = strip_model_citations(_PASSAGE_REF.sub("", answer))
    quote = _PASSAGE_REF.sub("", quote).strip().split("\n\n")[0]
    quote = quote.strip(" \t\n\"'“”‘’«»")
    answer = trim_repetition(" ".join(answer.split()))
    return " ".join(sentences(answer)[:MAX_ANSWER_SENTENCES]) or answer, " ".join(quote.split())


def verify(
    question: str,
    reply: str,
    shown: Sequence[Passage],
    sources: Sequence[Source],
    catalog: Catalog,
    multi: bool,
    infos: Sequence[DocumentInfo],
    markers: Sequence[str] = (),
) -> Answer:
    """The model's reply as an answer whose citation is checked, or NOT_ANSWERED with the reason."""
    answer, quote = split_reply(reply, markers)
    if NONE_MARK.lower() in reply.lower() or (_REFUSAL.search(answer) and len(answer.split()) <= 25):
        return Answer(question, NOT_ANSWERED, False, reason="The passages that match the question do not say.")
    quoted = len(_norm_words(quote)) >= QUOTE_MIN_WORDS
    # A quote the passages do not hold is a made-up source: refused, whatever the answer's words. Without a quote,
    # the answer's own words must be in a passage.
    index = quote_support(quote, shown) if quoted else words_support(answer, question, shown)
    backing = quote if quoted else answer
    if index is None or not (answer or quote):
        return Answer(
            question,
            NOT_ANSWERED,
            False,
            reason="The model's answer could not be found in the passages that match the question.",
        )
    source = sources[index]
    passage = _quote(shown[index].text, backing) or catalog.quote(backing, source)
    cite = catalog.cite([source], multi)
    text = answer or quote
    return Answer(question, text, True, [Citation(cite, infos[source.doc].name, passage)])


def _quote(text: str, backing: str) -> str:
    """The sentence (or pair) of the cited passage that best matches what backs the answer: the passage's own
    words, as cite.Catalog.quote picks them for a summary's point (the same windows and ranking)."""
    windows = _windows(text)
    if not windows:
        return ""
    best = rank(windows, backing)[0]
    return _clip(windows[best[0]]) if best[1] > 0 else _clip(windows[0])
