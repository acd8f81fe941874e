"""One condense run, start to end: read the documents, plan the chunks, summarise every chunk (map),
combine the notes level by level until they fit the context (reduce), turn the replies into points
that cite real pages or sections, and keep the result. All per-request state lives here."""

from __future__ import annotations

import functools
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from backends.text.base import GenerationParams, Message, TextBackend
from core.condenser.chunks import Chunk, TokenCounter, account, chunk_documents
from core.condenser.cite import Catalog, Point
from core.condenser.documents import ExtractedDocument, ExtractionCancelled, extract_document, extract_text
from core.condenser.estimate import Estimate
from core.condenser.jobs import Job, JobRunner
from core.condenser.points import ReplyPoints, md_text
from core.condenser.report import ChunkRecord, attach_quotes, combined_coverage, document_report, render_markdown
from core.condenser.request import (
    DEFAULT_CHUNK_TOKENS,
    CondenseCancelled,
    CondenseOptions,
    CondenseResult,
    CondenseUpdate,
    InputFile,
)
from core.errors import InputError, QuotaExceededError, StorageFullError

if TYPE_CHECKING:
    from core.condenser.service import CondenseService

log = logging.getLogger(__name__)

MAX_REDUCE_LEVELS = 8
RETRY_TEMPERATURE = 0.6
# Asked in turn of a chunk whose reply gave nothing usable, before its opening is quoted (prompts/condense_prompts.toml)
RETRY_STAGES = ("retry", "topic", "subject")


class Run:
    """One condense request: all per-request state lives here, never on the service."""

    def __init__(
        self,
        service: CondenseService,
        user_id: str,
        files: list[InputFile],
        text: str,
        options: CondenseOptions,
        cancel: threading.Event,
        save: bool,
        load_progress: Callable[[float, str], None] | None,
        tick_s: float | None = None,
    ) -> None:
        self.s, self.user_id, self.files, self.text = service, user_id, files, text
        self.options, self.cancel, self.save, self.load_progress = options, cancel, save, load_progress
        self.tick_s = tick_s  # see CondenseService.condense
        self.prompts = service.prompts
        self.length = self.prompts.lengths[options.length]
        self.form = self.prompts.forms[options.form]
        nonce = secrets.token_hex(6)  # unguessable: text inside a document cannot close the data block
        self.markers = {
            "doc": (f"<document-{nonce}>", f"</document-{nonce}>"),
            "notes": (f"<notes-{nonce}>", f"</notes-{nonce}>"),
        }
        self.nonce = nonce
        self.timings = {"extract_s": 0.0, "map_s": 0.0, "reduce_s": 0.0}
        self.notes_md: dict[int, str] = {}  # chunk index -> its notes as Markdown, shown in the document's order
        self.fraction = 0.0
        self.released: set[str] = set()  # disposable inputs already let go of
        self.last = CondenseUpdate("Starting…", 0.0, "")
        self.started = time.monotonic()
        self.eta = Estimate()
        self.summaries_left = 0  # requests still to come after the map: one final summary per document (and all)
        self.concurrency = 1
        self.note_tokens: dict[int, int] = {}  # document -> tokens of its chunks' notes so far (the reduce's input)
        self.chunks_done: dict[int, int] = {}
        self.reduce_room: tuple[int, int] | None = None

    # -- helpers ---------------------------------------------------------------------------------
    def update(self, status: str, fraction: float | None = None) -> CondenseUpdate:
        if fraction is not None:
            self.fraction = max(self.fraction, min(1.0, fraction))
        self.last = CondenseUpdate(status, self.fraction, self.notes())
        return self.tick()

    def notes(self) -> str:
        """The notes of every chunk done so far, in the document's order, a paragraph per chunk."""
        return "\n\n".join(self.notes_md[i] for i in sorted(self.notes_md))

    def tick(self) -> CondenseUpdate:
        """The last update with the elapsed time and the time left as of now (repeated while the model works)."""
        now = time.monotonic()
        return replace(self.last, elapsed_s=now - self.started, eta_s=self.eta.left(now))

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
                    yield self.tick()
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
        language = o.target_language
        return {
            "language_rule": f"Write in {language}." if language else "Write in the same language as the document.",
            "audience_rule": f"Write for this audience: {o.audience}." if o.audience else "",
            "focus_rule": f"Give most weight to what answers this question: {o.focus}" if o.focus else "",
        }

    def job(self, label: str, stage: str, text: str, points: str, max_new: int, position: str = "") -> Job:
        bare = self.messages(stage, "", points, position)
        return Job(
            label,
            self.messages(stage, text, points, position),
            self.params(max_new),
            "\n".join(m["content"] for m in bare),
        )

    def messages(self, stage: str, text: str, points: str, position: str = "") -> list[Message]:
        begin, end = self.markers["notes" if stage in ("merge", "final") else "doc"]
        text = text.replace(self.nonce, "")
        values = {"begin": begin, "end": end, "points": points, "form_rule": self.form.rule, **self.rules()}
        system = self.prompts.render(stage, "system", **values)
        user = self.prompts.render(stage, "user", text=text, position=position, **values)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def retry_job(self, chunk: Chunk, label: str, direct: bool, attempt: int) -> Job:
        """A further request for a chunk whose replies gave nothing usable: RETRY_STAGES[attempt - 1] (a simpler
        request each time) with another seed and a little more temperature, so the model does not walk the same
        path again."""
        text = chunk.text if direct else self.map_text(chunk)
        job = self.job(label, RETRY_STAGES[attempt - 1], text, "", self.final_new if direct else self.map_new)
        seed = None if job.params.seed is None else job.params.seed + attempt
        job.params = replace(job.params, seed=seed, temperature=max(RETRY_TEMPERATURE, job.params.temperature))
        return job

    def params(self, max_new: int) -> GenerationParams:
        return GenerationParams(
            temperature=max(0.0, self.options.temperature),
            top_p=0.9,
            max_new_tokens=max(16, max_new),
            seed=self.options.seed,
        )

    def all_markers(self) -> list[str]:
        return [*self.markers["doc"], *self.markers["notes"], self.nonce]

    # -- steps -----------------------------------------------------------------------------------
    def run(self) -> Iterator[CondenseUpdate]:
        docs, chunks, direct = yield from self.prepare()
        backend, catalog = self.backend, self.catalog
        accounting = account(docs, chunks)

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

        reports = [
            document_report(doc, accounting[d], [r for r in records if r.doc == d]) for d, doc in enumerate(docs)
        ]
        summaries = [per_doc[d] for d in range(len(docs))]
        for points in summaries + ([combined] if combined else []):
            attach_quotes(points, catalog)
        title = docs[0].name if len(docs) == 1 else f"{docs[0].name} and {len(docs) - 1} more"
        markdown = render_markdown(catalog, reports, summaries, combined)
        result = CondenseResult(
            title,
            markdown,
            combined_coverage(reports),
            reports,
            summaries,
            combined,
            records,
            {k: round(v, 3) for k, v in self.timings.items()},
            backend.spec,
            catalog=catalog,
        )
        kept = ""
        if self.save:
            try:
                result.summary_id = self.store(result, backend).id
            except (QuotaExceededError, StorageFullError) as exc:  # shown all the same: never lose what was made
                kept = f" Not kept in your history: {exc}"
        if result.summary_id and self.s.passages is not None:  # its documents, for questions (core/condenser/ask.py)
            try:
                self.s.passages.save(self.user_id, result.summary_id, docs)
            except (QuotaExceededError, StorageFullError) as exc:
                kept = f" Its documents were not kept for questions: {exc}"
        elapsed = time.monotonic() - self.started
        done = "Done. " + result.coverage + kept
        yield CondenseUpdate(done, 1.0, self.notes(), result, "complete", elapsed_s=elapsed, eta_s=0.0)

    def prepare(self) -> Generator[CondenseUpdate, None, tuple[list[ExtractedDocument], list[Chunk], set[int]]]:
        """Read the documents, load the model and plan the chunks: the documents, their chunks, and which
        documents are summarised directly (bench/quality_condenser.py maps a sample of the chunks)."""
        o = self.options
        backend = self.s.models.get(o.model)
        docs = yield from self.read()  # first: a file that cannot be read fails before any model loads
        yield self.update(f"Loading {backend.label}…", 0.03)

        def loading(fraction: float, desc: str) -> None:  # on the loading thread: ticks show it
            self.update(desc or f"Loading {backend.label}…", 0.03 + 0.02 * max(0.0, min(1.0, fraction)))
            if self.load_progress is not None:
                self.load_progress(fraction, desc)

        yield from self.ticking(lambda: backend.load(loading))
        self.check_cancel()
        caps = backend.capabilities()
        counter = TokenCounter(backend)
        self.ctx = caps.context_length
        self.margin = max(16, self.ctx // 50)
        self.backend, self.counter, self.catalog = backend, counter, Catalog(docs)
        chunks, direct = self.plan(docs, counter)
        self.replies = ReplyPoints(self.catalog, o, self.form, self.all_markers())
        concurrency = max(1, min(caps.max_concurrency, o.parallel) if o.parallel > 0 else caps.max_concurrency)
        self.concurrency = concurrency
        self.run_jobs = JobRunner(backend, self.cancel, concurrency, self.tick_s).run
        return docs, chunks, direct

    def read(self) -> Generator[CondenseUpdate, None, list[ExtractedDocument]]:
        t0 = time.perf_counter()
        docs: list[ExtractedDocument] = []
        total = len(self.files) + (1 if self.text.strip() else 0)
        try:
            for i, f in enumerate(self.files):
                yield self.update(f"Reading “{f.name}” (file {i + 1} of {total})…", 0.01)
                try:
                    docs.append(
                        (
                            yield from self.ticking(
                                functools.partial(
                                    extract_document,
                                    f.path,
                                    f.name,
                                    self.s.limits,
                                    password=f.password or None,
                                    cancel=self.cancel,
                                )
                            )
                        )
                    )
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
            raise InputError(
                f"The model's context ({self.ctx:,} tokens) is too small to summarise in chunks; "
                "pick a model with a longer context."
            )
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
        return self.messages(
            "map", self.map_text(chunk), self.length.map_points, self.position(docs[chunk.doc], chunk.number, chunk.of)
        )

    def direct_messages(self, chunk: Chunk, doc: ExtractedDocument) -> list[Message]:
        return self.messages("direct", chunk.text, self.length.points, self.position(doc, 1, 1))

    def map(self, docs: list[ExtractedDocument], chunks: list[Chunk], direct: set[int]):
        """Every chunk summarised: notes per chunk (or, for a one-chunk document, its summary). A chunk whose
        reply gives nothing usable is asked again (RETRY_STAGES: simpler requests, each sampled differently)
        before its opening is quoted instead."""
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

        def finish(c: Chunk, job: Job, last: bool) -> bool:
            """Take a chunk's reply; False when it gave nothing usable and the chunk is to be asked again."""
            usable = self.replies.usable_summary if c.doc in direct else self.replies.usable_notes
            points = usable(job, c)
            if not points and not last:
                return False
            points = points or [self.replies.quoted(c)]
            if c.doc in direct:
                per_doc[c.doc] = points
            else:
                notes_by_chunk[c.index] = points
            records.append(
                ChunkRecord(
                    c.doc,
                    c.number,
                    c.of,
                    self.catalog.cite(c.sources),
                    c.tokens,
                    "quoted" if any(p.quoted for p in points) else "summarised",
                    len(points),
                )
            )
            if c.doc not in direct:
                self.note_tokens[c.doc] = self.note_tokens.get(c.doc, 0) + sum(
                    self.counter(f"N{k + 1}. {p.text}\n") for k, p in enumerate(points)
                )
                self.chunks_done[c.doc] = self.chunks_done.get(c.doc, 0) + 1
            self.notes_md[c.index] = "\n".join(
                [f"**{job.label}**"] + [f"- {md_text(p.text)} {self.catalog.cite(p.sources, multi)}" for p in points]
            )
            return True

        again: list[int] = []
        self.summaries_left = len([d for d in range(len(docs)) if d not in direct]) + (1 if multi else 0)
        per_doc_total = {d: sum(1 for c in chunks if c.doc == d) for d in range(len(docs)) if d not in direct}
        for event, i in self.run_jobs(jobs):
            if event == "tick":
                yield self.tick()
                continue
            if event == "start":
                self.eta.started(("map", i))
                yield self.update(f"Summarising {jobs[i].label}…", 0.05 + 0.75 * done / total)
                continue
            self.eta.finished(("map", i))
            usable = finish(chunks[i], jobs[i], last=False)
            self.eta.map_progress(total - done - (1 if usable else 0), self.rounds_after_map(per_doc_total))
            if not usable:
                again.append(i)
                continue
            done += 1
            yield self.update(
                f"{done} of {total} chunk{'s' if total != 1 else ''} summarised", 0.05 + 0.75 * done / total
            )
        for attempt in range(1, len(RETRY_STAGES) + 1):
            retries = [self.retry_job(chunks[i], jobs[i].label, chunks[i].doc in direct, attempt) for i in again]
            pending, again = again, []
            for event, k in self.run_jobs(retries):
                if event == "tick":
                    yield self.tick()
                elif event == "start":
                    self.eta.started(("retry", attempt, k))
                    yield self.update(f"Asking again for {retries[k].label}…", 0.05 + 0.75 * done / total)
                elif not finish(chunks[pending[k]], retries[k], last=attempt == len(RETRY_STAGES)):
                    self.eta.finished(("retry", attempt, k))
                    self.eta.map_progress(total - done, self.rounds_after_map(per_doc_total))
                    again.append(pending[k])
                else:
                    self.eta.finished(("retry", attempt, k))
                    self.eta.map_progress(total - done - 1, self.rounds_after_map(per_doc_total))
                    done += 1
                    yield self.update(
                        f"{done} of {total} chunk{'s' if total != 1 else ''} summarised", 0.05 + 0.75 * done / total
                    )
        records.sort(key=lambda r: (r.doc, r.number))
        return notes_by_chunk, per_doc, records

    def rounds_after_map(self, chunks_of: dict[int, int]) -> int:
        """Rounds of requests expected after the map (for the time left): per document summarised in chunks, the
        merges its notes will need, projected from the notes so far (each level about halves the groups), and its
        final summary; then the summary of all documents."""
        if self.reduce_room is None:  # (merge group, final request): the same all run long
            merge = self.ctx - self.counter.messages(self.messages("merge", "", self.length.merge_points))
            final = self.ctx - self.counter.messages(self.messages("final", "", self.length.points))
            self.reduce_room = (max(64, merge - self.merge_new - self.margin), final - self.final_new - self.margin)
        room, fits = self.reduce_room
        rounds = self.summaries_left
        for d, total in chunks_of.items():
            projected = self.note_tokens.get(d, 0) * total / max(1, self.chunks_done.get(d, 0))
            if projected > fits:
                groups = max(2, math.ceil(projected / room))
                rounds += math.ceil((2 * groups - 1) / self.concurrency)
        return rounds

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
                return self.replies.shape(notes) if self.options.length == "tldr" else notes
            level += 1
            jobs = [
                self.job(
                    f"group {k + 1} of {len(groups)} (level {level}) of {scope}",
                    "merge",
                    "\n".join(self.note_lines(g)),
                    self.length.merge_points,
                    self.merge_new,
                )
                for k, g in enumerate(groups)
            ]
            merged: list[list[Point]] = [[] for _ in groups]
            # the levels after this one merge about half as many groups each: about len(jobs) - 1 requests in all
            later = math.ceil((len(jobs) - 1) / self.concurrency) + self.summaries_left
            self.eta.requests_ahead(len(jobs), self.concurrency, later)
            for event, k in self.run_jobs(jobs):
                if event == "tick":
                    yield self.tick()
                    continue
                if event == "start":
                    self.eta.started(("merge", level, k))
                    yield self.update(f"Combining notes: {jobs[k].label}…", 0.8 + 0.15 * (1 - 1 / (level + 1)))
                    continue
                self.eta.finished(("merge", level, k))
                merged[k] = self.replies.points_from_notes(jobs[k], groups[k], final=False) or groups[k]
            new_notes = [p for group in merged for p in group]
            if len(new_notes) >= len(notes) and level > 1:
                log.warning("reduce for %s is not shrinking at level %d", scope, level)
            notes = new_notes
        job = self.job(
            f"final summary of {scope}", "final", "\n".join(self.note_lines(notes)), self.length.points, self.final_new
        )
        self.summaries_left = max(0, self.summaries_left - 1)
        self.eta.requests_ahead(1, 1, self.summaries_left)
        for event, _ in self.run_jobs([job]):
            if event == "tick":
                yield self.tick()
            elif event == "start":
                self.eta.started(("final", scope))
                yield self.update(f"Writing the summary of {scope}…", 0.95)
            elif event == "done":
                self.eta.finished(("final", scope))
        points = self.replies.points_from_notes(job, notes, final=True)
        if not points:  # the model gave nothing: the notes themselves are the summary
            return notes
        return self.replies.shape(points)

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
            last = groups[-1] if groups else []
            if (
                len(current) == 1
                and last
                and sum(self.counter(f"N{i + 1}. {n.text}\n") for i, n in enumerate(last)) + used <= room
            ):
                last.append(current[0])  # a lone last note joins the group before it, where it still fits
            else:
                groups.append(current)
        return groups

    # -- storage -----------------------------------------------------------------------------------
    def store(self, result: CondenseResult, backend: TextBackend):
        catalog = result.catalog
        assert catalog is not None

        def points(ps: Sequence[Point]) -> list[dict]:
            return [
                {
                    "text": p.text,
                    "kind": p.kind,
                    "quoted": p.quoted,
                    "citation": catalog.cite(p.sources),
                    "sources": [{"doc": s.doc, "locator": s.locator} for s in p.sources],
                    "quotes": [{"locator": s.locator, "doc": s.doc, "passage": q} for s, q in p.quotes],
                }
                for p in ps
            ]

        details = {
            "summaries": [points(ps) for ps in result.summaries],
            "combined": points(result.combined) if result.combined else None,
            "chunks": [asdict(r) for r in result.chunks],
            "timings": result.timings,
        }
        settings = {**self.options.described(), "model": backend.spec, "model_label": backend.label}
        return self.s.store.save(
            self.user_id,
            result.title,
            result.markdown,
            model=backend.spec,
            settings=settings,
            sources=[asdict(r) for r in result.documents],
            coverage=result.coverage,
            details=details,
        )
