"""What the condenser tab does, with no UI: read the documents, cut them into chunks the model can
read, summarise every chunk (map, in parallel where the backend can), combine the notes level by level
until they fit the context (reduce), and hand back a summary whose every point cites real pages or
sections, with a coverage line that proves nothing was left out. Cancellable at any moment."""
from __future__ import annotations

import logging
import os
import queue
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Generator, Iterator, Literal, Sequence

from backends.text.base import (GenerationParams, Message, StreamCutError, StreamStats, TextBackend,
                           TimeoutFailedError)
from config import Settings
from core import validate
from core.errors import QuotaExceededError, StorageFullError
from core.cancel import CancelRegistry
from core.chat.service import InputError
from core.condenser.chunks import Chunk, TokenCounter, account, chunk_documents
from core.condenser.cite import (Catalog, Point, Source, attribute, is_looping, md_text, merge_duplicates,
                                model_cited, note_numbers, parse_points, rank, sentences)
from core.condenser.prompts import CondensePrompts, load_condense_prompts
from core.condenser.report import (ChunkRecord, DocumentReport, attach_quotes, combined_coverage,
                                  document_report, render_markdown)
from core.condenser.documents import (ExtractedDocument, ExtractionCancelled, ExtractionLimits, extract_document,
                            extract_text)
from core.models import ModelManager
from core.condenser.store import SummaryStore

log = logging.getLogger(__name__)

DEFAULT_CHUNK_TOKENS = 2048  # small models summarise a couple of pages far better than a whole book
DEFAULT_OVERLAP_TOKENS = 128
MAX_REDUCE_LEVELS = 8
MAX_FOCUS_CHARS = 500
MAX_FILES = 10  # documents in one run: each gets its own summary, then one combined
STREAM_CUT_RETRIES = 2  # a server that cuts a stream (llama_cpp.server interrupts on a new request)
_ACTIVE_KEY = "condense"


class CondenseCancelled(Exception):
    """The user stopped the run; nothing is kept."""


@dataclass(frozen=True)
class CondenseOptions:
    length: str = "short"  # tldr | short | detailed (prompts/condense_prompts.toml [length.*])
    form: str = "bullets"  # bullets | prose | executive | takeaways | actions ([form.*])
    focus: str = ""  # an optional question the summary should answer
    audience: str = ""
    language: str = ""  # "" or "Same as the document": the document's own language
    model: str | None = None  # spec; None = the default model
    allow_links: bool = False  # keep http(s) links the model writes (never images or HTML)
    chunk_tokens: int = 0  # 0: DEFAULT_CHUNK_TOKENS; always capped by what fits the context
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS
    map_max_new_tokens: int = 0  # 0: from the length preset
    temperature: float = 0.2
    seed: int | None = 0
    parallel: int = 0  # requests at once: 0 = as many as the backend takes; 1 = one at a time

    def described(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class InputFile:
    path: str
    name: str  # what the user called it: decides the expected type
    disposable: bool = False  # an upload's temporary copy: deleted once read, whatever happens
    owner: str = ""  # who uploaded it: the file goes only when no other uploader still holds it


@dataclass
class CondenseResult:
    title: str
    markdown: str
    coverage: str
    documents: list[DocumentReport]
    summaries: list[list[Point]]  # per document
    combined: list[Point] | None  # several documents: the summary of all of them
    chunks: list[ChunkRecord]
    timings: dict[str, float]
    model: str
    summary_id: str = ""
    catalog: Catalog | None = field(default=None, repr=False)


@dataclass
class CondenseUpdate:
    status: str  # "Summarising chunk 7 of 23 (pp. 14-16)"
    fraction: float  # 0..1
    notes: str = ""  # notes so far, as Markdown (they stream in while chunks finish)
    result: CondenseResult | None = None
    state: Literal["running", "complete"] = "running"


@dataclass
class _Job:
    label: str
    messages: list[Message]
    params: GenerationParams
    instructions: str = ""  # the request without its data: replies echoing it are not content
    text: str = ""
    finish: str | None = None


class _Slots:
    """How many requests of a run may be in flight; lowered to one when the server cannot keep up."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._busy = 0
        self._cond = threading.Condition()

    def acquire(self, cancel: threading.Event) -> bool:
        with self._cond:
            while self._busy >= self.limit:
                if cancel.is_set():
                    return False
                self._cond.wait(0.05)
            if cancel.is_set():
                return False
            self._busy += 1
            return True

    def release(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def serialise(self) -> None:
        with self._cond:
            self.limit = 1


class _Disposables:
    """Disposable inputs held by runs in progress. Gradio stores equal uploads at one path (named by
    their content), so two runs may share a file: it is deleted when the last of them lets go."""

    def __init__(self, release: Callable[[str, str], bool] | None = None) -> None:
        self._uses: dict[str, int] = {}
        self._lock = threading.Lock()
        # release(owner, path) -> True when no other uploader holds the file (core/security/uploads.py).
        self._release = release

    def _unheld(self, files: Sequence[InputFile]) -> list[InputFile]:
        return [f for f in files if self._release is None or self._release(f.owner, f.path)]

    def hold(self, files: Sequence[InputFile]) -> None:
        with self._lock:
            for f in files:
                self._uses[f.path] = self._uses.get(f.path, 0) + 1

    def release(self, files: Sequence[InputFile]) -> None:
        with self._lock:
            gone = []
            for f in files:
                self._uses[f.path] -= 1
                if self._uses[f.path] <= 0:
                    del self._uses[f.path]
                    gone.append(f)
        discard(self._unheld(gone))

    def discard_unused(self, files: Sequence[InputFile]) -> None:
        """Delete disposable files no run holds (a request refused before its run began)."""
        with self._lock:
            free = [f for f in files if f.path not in self._uses]
        discard(self._unheld(free))


def discard(files: Sequence[InputFile]) -> None:
    """Delete disposable inputs and the folder an upload put each one in, if it is left empty."""
    for f in files:
        if not f.disposable:
            continue
        try:
            os.unlink(f.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not delete the uploaded copy %s: %s", f.path, exc)
        try:
            Path(f.path).parent.rmdir()  # only succeeds when empty: never takes anything else
        except OSError:
            pass


class CondenseService:
    def __init__(self, settings: Settings, models: ModelManager, store: SummaryStore,
                 prompts: CondensePrompts | None = None, limits: ExtractionLimits = ExtractionLimits(),
                 release_upload: Callable[[str, str], bool] | None = None) -> None:
        self.settings = settings
        self.models = models
        self.store = store
        self.prompts = prompts or load_condense_prompts()
        self.limits = limits
        self.active = CancelRegistry()
        self.uploads = _Disposables(release_upload)

    # -- input ---------------------------------------------------------------------------------------
    def check(self, files: Sequence[InputFile], text: str, options: CondenseOptions) -> CondenseOptions:
        """The options with every value a caller sets checked by name (InputError says what is allowed;
        None or "" takes the default), and the free texts with their whitespace tidied."""
        if text is not None and not isinstance(text, str):
            raise InputError(f"text must be text (a string), got {validate.shown(text)}.")
        if not files and not (text or "").strip():
            raise InputError("Upload a document or paste some text to condense.")
        if len(files) > MAX_FILES:
            raise InputError(f"{len(files)} documents is too many for one run; condense at most {MAX_FILES} at once.")
        length = validate.choice("length", options.length, self.prompts.lengths, default="short")
        form = validate.choice("form", options.form, self.prompts.forms, default="bullets")
        focus = validate.text("focus", options.focus, MAX_FOCUS_CHARS)
        audience = validate.text("audience", options.audience, 200)
        language = validate.text("language", options.language, 40)
        if (text or "") and len(text) > self.settings.max_input_chars:
            raise InputError(f"The pasted text is {len(text):,} characters; up to "
                             f"{self.settings.max_input_chars:,} can be pasted. Upload it as a file instead.")
        model = validate.model_spec("model", options.model)
        if model and model not in self.models.specs:
            raise InputError(f"Unknown model {model!r}; configured: {', '.join(self.models.specs)}")
        return replace(options, length=length, form=form, model=model, focus=" ".join(focus.split()),
                       audience=" ".join(audience.split()), language=" ".join(language.split()))

    # -- the run -------------------------------------------------------------------------------------
    def condense(self, user_id: str, files: Sequence[InputFile] = (), text: str = "",
                 options: CondenseOptions = CondenseOptions(), *, save: bool = True,
                 load_progress: Callable[[float, str], None] | None = None, session: str = "",
                 tick_s: float | None = None) -> Iterator[CondenseUpdate]:
        """Stream progress; the last update carries the result (state "complete"). Raises InputError,
        DocumentError (a file that cannot be read), BackendError or CondenseCancelled. Disposable
        input files are deleted as soon as they are read, and in any case before this ends.

        `session` scopes `stop` (one browser tab; a caller with its own key is never stopped by
        another). With `tick_s`, the last update is repeated at least that often while the model
        works: a caller that can only stop the run between updates (Gradio closing an endpoint's
        generator) is never kept waiting for a whole request. Closing the iterator cancels the run."""
        files = list({f.path: f for f in files}.values())  # the same upload twice is one document
        disposable = [f for f in files if f.disposable]
        self.uploads.hold(disposable)
        run: _Run | None = None
        key = f"{_ACTIVE_KEY}:{session}"
        cancel = self.active.start(user_id, key, supersede=True)  # a new run in a tab replaces its old one
        try:
            options = self.check(files, text, options)
            run = _Run(self, user_id, files, text, options, cancel, save, load_progress, tick_s)
            yield from run.run()
        finally:
            self.active.finish(user_id, key, cancel)
            released = run.released if run is not None else set()
            self.uploads.release([f for f in disposable if f.path not in released])

    def discard_unused(self, files: Sequence[InputFile]) -> None:
        """Delete disposable files that no run holds: for a request refused before it started."""
        self.uploads.discard_unused(files)

    def stop(self, user_id: str, session: str = "") -> bool:
        return self.active.stop(user_id, f"{_ACTIVE_KEY}:{session}") > 0


class _Run:
    """One condense request: all per-request state lives here, never on the service."""

    def __init__(self, service: CondenseService, user_id: str, files: list[InputFile], text: str,
                 options: CondenseOptions, cancel: threading.Event, save: bool,
                 load_progress: Callable[[float, str], None] | None, tick_s: float | None = None) -> None:
        self.s, self.user_id, self.files, self.text = service, user_id, files, text
        self.options, self.cancel, self.save, self.load_progress = options, cancel, save, load_progress
        self.tick_s = tick_s  # see CondenseService.condense
        self.prompts = service.prompts
        self.length = self.prompts.lengths[options.length]
        self.form = self.prompts.forms[options.form]
        nonce = secrets.token_hex(6)  # unguessable: text inside a document cannot close the data block
        self.markers = {"doc": (f"<document-{nonce}>", f"</document-{nonce}>"),
                        "notes": (f"<notes-{nonce}>", f"</notes-{nonce}>")}
        self.nonce = nonce
        self.timings = {"extract_s": 0.0, "map_s": 0.0, "reduce_s": 0.0}
        self.notes_md: list[str] = []
        self.fraction = 0.0
        self.released: set[str] = set()  # disposable inputs already let go of
        self.last = CondenseUpdate("Starting…", 0.0, "")

    # -- helpers ---------------------------------------------------------------------------------
    def update(self, status: str, fraction: float | None = None) -> CondenseUpdate:
        if fraction is not None:
            self.fraction = max(self.fraction, min(1.0, fraction))
        self.last = CondenseUpdate(status, self.fraction, "\n".join(self.notes_md))
        return self.last

    def ticking(self, work: Callable[[], Any]) -> Generator[CondenseUpdate, None, Any]:
        """Run a blocking step (reading a file, loading the model) and return its result; with `tick_s`,
        on a thread, repeating the last update meanwhile. Closing the run cancels the step (the parser
        is killed) and waits for it to end."""
        if self.tick_s is None:
            return work()
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = work()
            except BaseException as exc:  # raised again on the run's own thread
                box["error"] = exc

        worker = threading.Thread(target=target, name="condense-step", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(self.tick_s)
                if worker.is_alive():
                    yield self.last
        finally:
            if worker.is_alive():
                self.cancel.set()
                worker.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise CondenseCancelled("Condensing was cancelled.")

    def rules(self) -> dict[str, str]:
        o = self.options
        language = o.language if o.language and o.language.lower() != "same as the document" else ""
        return {
            "language_rule": f"Write in {language}." if language else "Write in the same language as the document.",
            "audience_rule": f"Write for this audience: {o.audience}." if o.audience else "",
            "focus_rule": f"Give most weight to what answers this question: {o.focus}" if o.focus else "",
        }

    def job(self, label: str, stage: str, text: str, points: str, max_new: int, position: str = "") -> _Job:
        bare = self.messages(stage, "", points, position)
        return _Job(label, self.messages(stage, text, points, position), self.params(max_new),
                    "\n".join(m["content"] for m in bare))

    def messages(self, stage: str, text: str, points: str, position: str = "") -> list[Message]:
        begin, end = self.markers["notes" if stage in ("merge", "final") else "doc"]
        text = text.replace(self.nonce, "")
        values = {"begin": begin, "end": end, "points": points, "form_rule": self.form.rule, **self.rules()}
        system = self.prompts.render(stage, "system", **values)
        user = self.prompts.render(stage, "user", text=text, position=position, **values)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def params(self, max_new: int) -> GenerationParams:
        return GenerationParams(temperature=max(0.0, self.options.temperature), top_p=0.9,
                                max_new_tokens=max(16, max_new), seed=self.options.seed)

    def all_markers(self) -> list[str]:
        return [*self.markers["doc"], *self.markers["notes"], self.nonce]

    # -- steps -----------------------------------------------------------------------------------
    def run(self) -> Iterator[CondenseUpdate]:
        o = self.options
        backend = self.s.models.get(o.model)
        docs = yield from self.read()  # first: a file that cannot be read fails before any model loads
        yield self.update(f"Loading {backend.label}…", 0.03)
        yield from self.ticking(lambda: backend.load(self.load_progress))
        self.check_cancel()
        catalog = Catalog(docs)
        caps = backend.capabilities()
        counter = TokenCounter(backend)
        self.ctx = caps.context_length
        self.margin = max(16, self.ctx // 50)
        chunks, direct = self.plan(docs, counter)
        accounting = account(docs, chunks)
        self.backend, self.counter, self.catalog = backend, counter, catalog
        self.concurrency = max(1, min(caps.max_concurrency, o.parallel) if o.parallel > 0 else caps.max_concurrency)
        self.slots = _Slots(self.concurrency)

        t0 = time.perf_counter()
        notes_by_chunk, per_doc, records = yield from self.map(docs, chunks, direct)
        self.timings["map_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        for d in range(len(docs)):
            if d not in direct:
                notes = [n for c in chunks if c.doc == d for n in notes_by_chunk[c.index]]
                per_doc[d] = yield from self.reduce(notes, f"“{docs[d].name}”")
        combined = None
        if len(docs) > 1:
            everything = [p for d in range(len(docs)) for p in per_doc[d]]
            combined = yield from self.reduce(everything, "all documents")
        self.timings["reduce_s"] = time.perf_counter() - t0

        reports = [document_report(doc, accounting[d], [r for r in records if r.doc == d])
                   for d, doc in enumerate(docs)]
        summaries = [per_doc[d] for d in range(len(docs))]
        for points in summaries + ([combined] if combined else []):
            attach_quotes(points, catalog)
        title = docs[0].name if len(docs) == 1 else f"{docs[0].name} and {len(docs) - 1} more"
        markdown = render_markdown(catalog, reports, summaries, combined)
        result = CondenseResult(title, markdown, combined_coverage(reports), reports, summaries, combined,
                                records, {k: round(v, 3) for k, v in self.timings.items()}, backend.spec,
                                catalog=catalog)
        kept = ""
        if self.save:
            try:
                result.summary_id = self.store(result, backend).id
            except (QuotaExceededError, StorageFullError) as exc:  # shown all the same: never lose what was made
                kept = f" Not kept in your history: {exc}"
        yield CondenseUpdate("Done. " + result.coverage + kept, 1.0, "\n".join(self.notes_md), result, "complete")

    def read(self) -> Generator[CondenseUpdate, None, list[ExtractedDocument]]:
        t0 = time.perf_counter()
        docs: list[ExtractedDocument] = []
        total = len(self.files) + (1 if self.text.strip() else 0)
        try:
            for i, f in enumerate(self.files):
                yield self.update(f"Reading “{f.name}” (file {i + 1} of {total})…", 0.01)
                try:
                    docs.append((yield from self.ticking(
                        lambda f=f: extract_document(f.path, f.name, self.s.limits, cancel=self.cancel))))
                finally:
                    if f.disposable:  # the upload's copy goes as soon as it is read (or refused)
                        self.released.add(f.path)
                        self.s.uploads.release([f])
            if self.text.strip():
                docs.append(extract_text(self.text, "Pasted text", max_chars=self.s.limits.max_chars))
        except ExtractionCancelled:
            raise CondenseCancelled("Condensing was cancelled.") from None
        self.timings["extract_s"] = time.perf_counter() - t0
        self.check_cancel()
        return docs

    def plan(self, docs: list[ExtractedDocument], counter: TokenCounter) -> tuple[list[Chunk], set[int]]:
        """Chunks for every document, and which documents are short enough to summarise directly."""
        o = self.options
        self.map_new = o.map_max_new_tokens or self.length.map_max_new_tokens
        self.final_new = min(self.length.max_new_tokens, max(64, self.ctx // 3))
        probe = self.messages("map", "", self.length.map_points, self.position(docs[0], 999, 999))
        overhead = counter.messages(probe)
        room = self.ctx - self.map_new - overhead - self.margin
        budget = min(o.chunk_tokens or DEFAULT_CHUNK_TOKENS, room)
        if budget < 48:
            raise InputError(f"The model's context ({self.ctx:,} tokens) is too small to summarise in chunks; "
                             "pick a model with a longer context.")
        limit = self.ctx - self.map_new - self.margin

        def fits(chunk: Chunk) -> bool:
            return counter.messages(self.map_messages(chunk, docs)) <= limit

        chunks = chunk_documents(docs, counter, budget, o.overlap_tokens, fits)
        direct = set()
        for d, doc in enumerate(docs):
            mine = [c for c in chunks if c.doc == d]
            if len(mine) == 1:
                needed = counter.messages(self.direct_messages(mine[0], doc))
                if needed + self.final_new + self.margin <= self.ctx:
                    direct.add(d)
        return chunks, direct

    def position(self, doc: ExtractedDocument, number: int, of: int) -> str:
        return f"part {number} of {of} of “{doc.name}”" if of > 1 else f"“{doc.name}”"

    def map_text(self, chunk: Chunk) -> str:
        return f"…{chunk.context}\n\n{chunk.text}" if chunk.context else chunk.text

    def map_messages(self, chunk: Chunk, docs: Sequence[ExtractedDocument]) -> list[Message]:
        return self.messages("map", self.map_text(chunk), self.length.map_points,
                             self.position(docs[chunk.doc], chunk.number, chunk.of))

    def direct_messages(self, chunk: Chunk, doc: ExtractedDocument) -> list[Message]:
        return self.messages("direct", chunk.text, self.length.points, self.position(doc, 1, 1))

    def map(self, docs: list[ExtractedDocument], chunks: list[Chunk], direct: set[int]):
        """Every chunk summarised: notes per chunk (or, for a one-chunk document, its summary)."""
        jobs = []
        multi = len(docs) > 1
        for c in chunks:
            label = f"chunk {c.index + 1} of {len(chunks)} {self.catalog.cite(c.sources, multi)}"
            position = self.position(docs[c.doc], c.number, c.of)
            if c.doc in direct:
                jobs.append(self.job(label, "direct", c.text, self.length.points, self.final_new, position))
            else:
                jobs.append(self.job(label, "map", self.map_text(c), self.length.map_points, self.map_new, position))
        total = len(jobs)
        done = 0
        notes_by_chunk: dict[int, list[Point]] = {}
        per_doc: dict[int, list[Point]] = {}
        records: list[ChunkRecord] = []
        for event, i in self.run_jobs(jobs):
            if event == "tick":
                yield self.last
                continue
            c = chunks[i]
            if event == "start":
                yield self.update(f"Summarising {jobs[i].label}…", 0.05 + 0.75 * done / total)
                continue
            done += 1
            if c.doc in direct:
                points = self.points_from_text(jobs[i], c)
                per_doc[c.doc] = points
            else:
                points = self.notes_from(jobs[i], c)
                notes_by_chunk[c.index] = points
            quoted = any(p.quoted for p in points)
            records.append(ChunkRecord(c.doc, c.number, c.of, self.catalog.cite(c.sources), c.tokens,
                                       "quoted" if quoted else "summarised", len(points)))
            self.notes_md.append("\n".join([f"**{jobs[i].label}**"] + [
                f"- {md_text(p.text)} {self.catalog.cite(p.sources, multi)}" for p in points]))
            yield self.update(f"{done} of {total} chunk{'s' if total != 1 else ''} summarised", 0.05 + 0.75 * done / total)
        records.sort(key=lambda r: (r.doc, r.number))
        return notes_by_chunk, per_doc, records

    def notes_from(self, job: _Job, chunk: Chunk) -> list[Point]:
        """A chunk's notes, each attributed to the pieces of that chunk it matches (the chunk as a
        whole when none matches well): sources can only ever be places this chunk holds."""
        notes = []
        for point, cites in self.parse(job, split_paragraphs=True):
            own = self.cited_in_chunk(cites, chunk, point.text)
            sources = own or attribute(point.text, chunk.passages(), chunk.sources, limit=2)
            notes.append(replace(point, sources=sources))
        notes = merge_duplicates(notes)
        return notes or [self.quoted(chunk)]

    def points_from_text(self, job: _Job, chunk: Chunk) -> list[Point]:
        """A one-chunk document's summary: its points attributed to the chunk's pieces."""
        points = []
        for point, cites in self.parse_final(job):
            own = self.cited_in_chunk(cites, chunk, point.text)
            sources = own or attribute(point.text, chunk.passages(), chunk.sources, limit=3)
            points.append(replace(point, sources=self.catalog.ordered(sources),
                                  kind=point.kind if self.form.bullets else "paragraph"))
        points = merge_duplicates(points)
        return self.shape(points) if points else [self.quoted(chunk)]

    def parse(self, job: _Job, split_paragraphs: bool = False) -> list[tuple[Point, list[str]]]:
        """A reply's points, cleaned; sentences that only echo the request's own instructions (small
        models do) are dropped."""
        return parse_points(job.text, markers=self.all_markers(), allow_links=self.options.allow_links,
                            complete=job.finish == "stop", split_paragraphs=split_paragraphs,
                            instructions=job.instructions)

    def parse_final(self, job: _Job) -> list[tuple[Point, list[str]]]:
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
            return [replace(first, kind="paragraph",
                            sources=self.catalog.ordered(s for p in points[:1] for s in p.sources))]
        return points

    # -- reduce ----------------------------------------------------------------------------------
    def note_lines(self, notes: Sequence[Point]) -> list[str]:
        return [f"N{i + 1}. {n.text}" for i, n in enumerate(notes)]

    def reduce(self, notes: list[Point], scope: str) -> Generator[CondenseUpdate, None, list[Point]]:
        """Notes -> the final points, merging groups of notes level by level until all of them fit one
        request. Every note goes into some group; a group the model returns nothing for is carried
        up unchanged, so nothing is lost on the way."""
        if not notes:
            return []
        level = 0
        while True:
            self.check_cancel()
            final = self.messages("final", "\n".join(self.note_lines(notes)), self.length.points)
            if self.counter.messages(final) + self.final_new + self.margin <= self.ctx:
                break
            groups = self.group(notes)
            if level >= MAX_REDUCE_LEVELS or all(len(g) == 1 for g in groups):
                log.warning("reduce for %s did not converge; keeping %d notes as they are", scope, len(notes))
                return self.shape(notes) if self.options.length == "tldr" else notes
            level += 1
            jobs = [self.job(f"group {k + 1} of {len(groups)} (level {level}) of {scope}", "merge",
                             "\n".join(self.note_lines(g)), self.length.merge_points, self.merge_new)
                    for k, g in enumerate(groups)]
            merged: list[list[Point]] = [[] for _ in groups]
            for event, k in self.run_jobs(jobs):
                if event == "tick":
                    yield self.last
                    continue
                if event == "start":
                    yield self.update(f"Combining notes: {jobs[k].label}…", 0.8 + 0.15 * (1 - 1 / (level + 1)))
                    continue
                merged[k] = self.points_from_notes(jobs[k], groups[k], final=False) or groups[k]
            new_notes = [p for group in merged for p in group]
            if len(new_notes) >= len(notes) and level > 1:
                log.warning("reduce for %s is not shrinking at level %d", scope, level)
            notes = new_notes
        job = self.job(f"final summary of {scope}", "final", "\n".join(self.note_lines(notes)), self.length.points,
                       self.final_new)
        for event, _ in self.run_jobs([job]):
            if event == "tick":
                yield self.last
            elif event == "start":
                yield self.update(f"Writing the summary of {scope}…", 0.95)
        points = self.points_from_notes(job, notes, final=True)
        if not points:  # the model gave nothing: the notes themselves are the summary
            return notes
        return self.shape(points)

    @property
    def merge_new(self) -> int:
        return max(64, min(self.length.max_new_tokens, 400, (self.ctx - self.margin) // 4))

    def group(self, notes: list[Point]) -> list[list[Point]]:
        """Consecutive notes in groups that fit one merge request (at least two per group)."""
        probe = self.counter.messages(self.messages("merge", "", self.length.merge_points))
        room = max(64, self.ctx - probe - self.merge_new - self.margin)
        groups: list[list[Point]] = []
        current: list[Point] = []
        used = 0
        for n in notes:
            tokens = self.counter(f"N{len(current) + 1}. {n.text}\n")
            if current and used + tokens > room and len(current) >= 2:
                groups.append(current)
                current, used = [], 0
            current.append(n)
            used += tokens
        if current:
            if len(current) == 1 and groups:
                groups[-1].append(current[0])
            else:
                groups.append(current)
        return groups

    def points_from_notes(self, job: _Job, notes: Sequence[Point], final: bool) -> list[Point]:
        """Points written from numbered notes, each carrying the sources of the notes it rests on:
        the note numbers the model wrote when the note really shares words with the point, else the
        notes it matches best, else every note of the request."""
        everything = tuple(s for n in notes for s in n.sources)
        candidates = [(n.sources, n.text) for n in notes]
        out = []
        parsed = self.parse_final(job) if final else self.parse(job, split_paragraphs=True)
        for point, cites in parsed:
            numbers = [k for k in note_numbers(cites) if 1 <= k <= len(notes)]
            named = [notes[k - 1] for k in dict.fromkeys(numbers)]
            if named:
                scores = rank([n.text for n in named], point.text)
                named = [named[i] for i, score, shared in scores if shared >= 1]
            if named:
                sources = tuple(s for n in named for s in n.sources)
            else:
                sources = attribute(point.text, candidates, everything)
            out.append(replace(point, sources=self.catalog.ordered(sources),
                               kind="paragraph" if final and not self.form.bullets else point.kind))
        return merge_duplicates(out)

    # -- generation --------------------------------------------------------------------------------
    def run_jobs(self, jobs: list[_Job]) -> Iterator[tuple[str, int]]:
        """Run the requests with the backend's concurrency (one at a time where it has none), yielding
        ("start", i) and ("done", i), and ("tick", -1) every `tick_s` without news. Stops every
        request when cancelled, when one fails, or when the caller stops iterating."""
        if not jobs:
            return
        events: queue.Queue = queue.Queue()

        def work(i: int) -> None:
            for attempt in range(2):
                if not self.slots.acquire(self.cancel):
                    events.put(("skip", i, None))
                    return
                parallel = self.slots.limit > 1
                try:
                    if attempt == 0:
                        events.put(("start", i, None))
                    jobs[i].text, jobs[i].finish = self.generate(jobs[i])
                    events.put(("done", i, None))
                    return
                except TimeoutFailedError as exc:
                    if not parallel or attempt:
                        events.put(("error", i, exc))
                        return
                    # A server that queues requests (one model, no parallel slots) can leave the last
                    # of them waiting past the timeout: from now on, one request at a time.
                    log.warning("%s timed out with requests in parallel; continuing one at a time", jobs[i].label)
                    self.slots.serialise()
                except BaseException as exc:  # handed to the consumer thread, raised there
                    events.put(("error", i, exc))
                    return
                finally:
                    self.slots.release()

        workers = min(self.concurrency, len(jobs))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="condense")
        futures = [pool.submit(work, i) for i in range(len(jobs))]
        finished = False
        last = time.monotonic()
        try:
            done = 0
            while done < len(jobs):
                try:
                    kind, i, exc = events.get(timeout=0.05)
                except queue.Empty:
                    self.check_cancel()
                    if self.tick_s is not None and time.monotonic() - last >= self.tick_s:
                        last = time.monotonic()
                        yield "tick", -1
                    continue
                last = time.monotonic()
                if kind == "error":
                    raise exc
                if kind == "skip":
                    self.check_cancel()
                if kind in ("done", "skip"):
                    done += 1
                yield kind, i
            finished = True
        finally:
            if not finished:
                self.cancel.set()  # the run is over: stop what is still generating
            for f in futures:
                f.cancel()
            # After a cancel, return at once: a worker still inside a request ends by itself at its
            # next token (an engine cannot be interrupted mid-prompt), and nothing waits for it.
            pool.shutdown(wait=finished)

    def generate(self, job: _Job) -> tuple[str, str | None]:
        """One request, streamed so a cancel stops it within a few tokens; ended early when the
        model starts repeating itself."""
        for attempt in range(STREAM_CUT_RETRIES + 1):
            stats = StreamStats()
            parts: list[str] = []
            stream = self.backend.stream_chat(job.messages, job.params, self.cancel, stats)
            looped = False
            try:
                for n, delta in enumerate(stream):
                    parts.append(delta)
                    if n % 8 == 7 and is_looping("".join(parts)):
                        looped = True
                        break
            except StreamCutError:
                if attempt < STREAM_CUT_RETRIES and not self.cancel.is_set():
                    log.info("stream cut on %s; retrying", job.label)
                    continue
                raise
            finally:
                stream.close()
            self.check_cancel()
            log.debug("%s -> %s (%s): %r", job.label, stats.finish_reason, "loop" if looped else "", "".join(parts))
            return "".join(parts), "loop" if looped else stats.finish_reason
        raise AssertionError("unreachable")

    # -- storage -----------------------------------------------------------------------------------
    def store(self, result: CondenseResult, backend: TextBackend):
        catalog = result.catalog
        assert catalog is not None

        def points(ps: Sequence[Point]) -> list[dict]:
            return [{"text": p.text, "kind": p.kind, "quoted": p.quoted, "citation": catalog.cite(p.sources),
                     "sources": [{"doc": s.doc, "locator": s.locator} for s in p.sources],
                     "quotes": [{"locator": s.locator, "doc": s.doc, "passage": q} for s, q in p.quotes]}
                    for p in ps]

        details = {"summaries": [points(ps) for ps in result.summaries],
                   "combined": points(result.combined) if result.combined else None,
                   "chunks": [asdict(r) for r in result.chunks], "timings": result.timings}
        settings = {**self.options.described(), "model": backend.spec, "model_label": backend.label}
        return self.s.store.save(self.user_id, result.title, result.markdown, model=backend.spec,
                                 settings=settings, sources=[asdict(r) for r in result.documents],
                                 coverage=result.coverage, details=details)
