"""What the writer tab does, with no UI: check a brief against its template, write 1-4 variants
(outline then sections for long pieces; concurrently when the backend can), rewrite a draft or a
selection, keep drafts in storage, and stop a generation on request."""
from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from backends.text.base import BackendError, GenerationParams, Message, StreamStats, TextBackend
from config import Settings
from core.cancel import CancelRegistry
from core.errors import InputError, NotFoundError
from core.writer.export import export_filename, exported
from core.writer.store import Draft, DraftStore
from core.models import ModelManager
from core.writer.brief import MAX_VARIANTS, Brief, WriteOptions, prepare_brief
from core.writer.run import Event, find_selection, merge_variants, split_for_rewrite
from core.writer.templates import STAGE_BUILTINS, RewriteOp, Template, TemplateError, TemplateLibrary, render
from core.writer.text import (MAX_SECTIONS, CheckResult, KeywordCoverage, Outline, TextStats, assemble,
                              clean_output, keyword_coverage, parse_keywords, parse_outline, plain_text,
                              run_checks, tail_words, text_stats, words)

__all__ = ["MAX_VARIANTS", "Brief", "WriteOptions", "WriteUpdate", "RewriteUpdate", "Analysis", "WriterService",
           "find_selection", "split_for_rewrite"]

log = logging.getLogger(__name__)

SAVE_INTERVAL_S = 0.5  # how often streaming variants are written to SQLite
OUTLINE_LIMIT = 4_000  # characters in an (edited) outline
TOKENS_PER_WORD = 1.7  # English prose is ~1.3; other languages and Markdown take more
EARLY_STOP_FRACTION = 0.4  # a piece this far short of its target length "stopped early"


@dataclass
class WriteUpdate:
    phase: str  # outline | writing | done
    texts: list[str]
    outline: str = ""
    done_steps: int = 0
    total_steps: int = 0
    progress: str = ""  # e.g. "Variant 2: section 3 of 5"
    notes: list[str] = field(default_factory=list)  # adjustments and per-variant warnings
    errors: list[str] = field(default_factory=list)  # backend failures (partial text kept)
    warnings: list[str] = field(default_factory=list)  # the model stopped early / returned nothing (also in notes)
    status: str = "streaming"  # streaming | complete | cut
    stats: dict = field(default_factory=dict)


@dataclass
class RewriteUpdate:
    text: str  # the whole draft with the rewritten part spliced in
    done: bool = False
    notes: list[str] = field(default_factory=list)
    error: str = ""
    status: str = "streaming"


@dataclass
class Analysis:
    stats: TextStats
    coverage: KeywordCoverage
    checks: list[CheckResult]


class WriterService:
    def __init__(self, settings: Settings, models: ModelManager, drafts: DraftStore,
                 library: TemplateLibrary) -> None:
        self.settings = settings
        self.models = models
        self.drafts = drafts
        self.library = library
        self.active = CancelRegistry()
        recovered = drafts.mark_interrupted()
        if recovered:
            log.info("kept %d draft(s) cut short by the last shutdown", recovered)

    # -- briefs -----------------------------------------------------------------------------------
    def template(self, name: str | None) -> Template:
        try:
            return self.library.get(name)
        except KeyError as exc:
            raise InputError(str(exc.args[0])) from None

    def prepare(self, template_name: str | None, fields: Mapping[str, Any]) -> Brief:
        """Check every value against the template's declared fields (InputError, nothing changed);
        adjustments the person should know about go to Brief.notes."""
        return prepare_brief(self.template(template_name), fields, self.library.common.tones)

    # -- prompts ----------------------------------------------------------------------------------
    def _messages(self, template: Template, user_text: str) -> list[Message]:
        return [{"role": "system", "content": template.system}, {"role": "user", "content": user_text}]

    def _render(self, brief: Brief, text: str, stage: str, extra: Mapping[str, Any] | None = None) -> str:
        values = {**brief.values, **(extra or {})}
        required = {f.name for f in brief.template.fields if f.required}
        try:
            return render(text, values, set(brief.template.field_names) | STAGE_BUILTINS[stage], required)
        except TemplateError as exc:  # a template bug, not the user's: load-time checks should catch it
            raise InputError(f"The {brief.template.label} template could not be filled in: {exc}") from None

    def _with_angle(self, user_text: str, variant: int, n: int) -> str:
        if n <= 1:
            return user_text
        angles = self.library.common.angles
        return f"{user_text}\n\nFor this version: {angles[variant % len(angles)]}"

    def short_prompt(self, brief: Brief, variant: int = 0, n: int = 1) -> list[Message]:
        return self._messages(brief.template,
                              self._with_angle(self._render(brief, brief.template.prompt, "prompt"), variant, n))

    def section_count(self, brief: Brief) -> int:
        length = brief.length or 600
        return max(2, min(MAX_SECTIONS, round(length / max(50, brief.template.words_per_section))))

    def outline_prompt(self, brief: Brief) -> list[Message]:
        return self._messages(brief.template, self._render(brief, brief.template.outline_prompt, "outline",
                                                           {"sections": self.section_count(brief)}))

    def section_prompt(self, brief: Brief, outline: Outline, index: int, previous: str, variant: int,
                       n: int) -> list[Message]:
        t = brief.template
        count = len(outline.sections)
        role = "first" if index == 0 else "last" if index == count - 1 else "middle"
        note = self._render(brief, t.section_notes.get(role, ""), "note") if t.section_notes.get(role) else ""
        extra = {
            "outline": outline.as_text(), "section_title": outline.sections[index],
            "section_number": index + 1, "section_count": count,
            "section_words": max(40, (brief.length or 600) // count),
            "section_note": " ".join(note.split("\n")), "previous_text": tail_words(previous, 40) if previous else "",
        }
        return self._messages(t, self._with_angle(self._render(brief, t.section_prompt, "section", extra), variant, n))

    def max_tokens(self, brief: Brief, words_target: int | None = None) -> int:
        target = words_target or brief.length
        if target is None:
            return brief.template.max_tokens
        return min(4096, int(target * TOKENS_PER_WORD) + 64)

    def _fit(self, backend: TextBackend, messages: list[Message], max_new: int) -> int:
        """The reply budget that fits the model's context; InputError when the brief itself leaves
        too little room."""
        context = backend.capabilities().context_length
        room = context - backend.count_tokens(messages)
        if room < min(64, max_new):
            raise InputError(f"The brief is too long for {backend.label}'s {context:,}-token context. "
                             "Shorten the longer fields (facts, features, outline).")
        return min(max_new, room)

    # -- writing ------------------------------------------------------------------------------------
    def backend(self, model: str | None, load_progress: Callable[[float, str], None] | None = None) -> TextBackend:
        try:
            backend = self.models.get(model)
        except KeyError as exc:
            raise InputError(str(exc.args[0])) from None
        backend.load(load_progress)
        return backend

    def stream_outline(self, brief: Brief, options: WriteOptions,
                       cancel: threading.Event | None = None) -> Iterator[str]:
        """The outline of a long piece, as it grows (cumulative text)."""
        if brief.template.kind != "long":
            raise InputError(f"{brief.template.label} is a short piece: it is written directly, with no outline.")
        options, _ = options.checked()
        backend = self.backend(options.model)
        messages = self.outline_prompt(brief)
        params = options.params(0, self._fit(backend, messages, 80 + 30 * self.section_count(brief)))
        text = ""
        stream = backend.stream_chat(messages, params, cancel or threading.Event(), StreamStats())
        try:
            for delta in stream:
                text += delta
                yield text
        finally:
            stream.close()

    def resolve_outline(self, brief: Brief, outline_text: str) -> tuple[Outline, list[str]]:
        """The outline to write from: the (edited) text parsed, or the template's default sections
        when it has no usable headings."""
        notes = []
        if len(outline_text or "") > OUTLINE_LIMIT:
            raise InputError(f"The outline is {len(outline_text):,} characters; the limit is {OUTLINE_LIMIT:,}. "
                             "Keep it to a title and a heading per line.")
        outline = parse_outline(outline_text or "")
        if outline.truncated:
            notes.append(f"The outline has {len(outline.sections) + outline.truncated} sections; the first "
                         f"{MAX_SECTIONS} are written.")
        if len(outline.sections) < 1:
            outline = Outline(outline.title, list(brief.template.default_sections))
            if (outline_text or "").strip():
                notes.append("The outline had no headings I could read (one per line, e.g. '1. Heading'); "
                             "the template's default sections were used.")
        if not outline.title:
            outline.title = brief.title
        return outline, notes

    def write(self, brief: Brief, options: WriteOptions, outline_text: str | None = None,
              cancel: threading.Event | None = None, parallel: int | None = None) -> Iterator[WriteUpdate]:
        """Write 1-4 variants, streaming every variant's text. A long piece without an outline gets
        one first (phase 'outline'). Ends with an update whose status is 'complete' or 'cut'.
        Variants run concurrently up to the backend's max_concurrency (`parallel` overrides it, for
        benchmarks)."""
        cancel = cancel or threading.Event()
        options, option_notes = options.checked()
        notes = list(brief.notes) + option_notes
        backend = self.backend(options.model)
        n = options.variants
        outline: Outline | None = None
        outline_text = outline_text or ""
        if brief.template.kind == "long":
            if not outline_text.strip():
                for outline_text in self.stream_outline(brief, options, cancel):
                    yield WriteUpdate("outline", [""] * n, outline=outline_text, progress="Writing the outline",
                                      notes=notes)
                if cancel.is_set():
                    yield WriteUpdate("done", [""] * n, outline=outline_text, notes=notes, status="cut")
                    return
            outline, outline_notes = self.resolve_outline(brief, outline_text)
            notes += outline_notes
            outline_text = outline.as_text()  # what is written from: the title and headings as read
            jobs = [self._long_variant(backend, brief, outline, options, i, n, cancel) for i in range(n)]
            total = n * len(outline.sections)
        else:
            self._fit(backend, self.short_prompt(brief, 0, n), self.max_tokens(brief))  # refuse before streaming
            jobs = [self._short_variant(backend, brief, options, i, n, cancel) for i in range(n)]
            total = n
        parallel = max(1, min(n, parallel or backend.capabilities().max_concurrency))
        texts, errors, finishes = [""] * n, [""] * n, [None] * n
        done_steps, progress = 0, ""
        t0 = time.perf_counter()
        for i, event in merge_variants(jobs, parallel, cancel):
            if event.kind == "text":
                texts[i] = event.text
            elif event.kind == "step":
                done_steps += 1
                progress = event.step
            elif event.kind == "done":
                texts[i], finishes[i] = event.text, event.finish
                done_steps += 0 if brief.template.kind == "long" else 1
            elif event.kind == "error":
                errors[i] = f"Variant {i + 1}: {event.error}" if n > 1 else event.error
                texts[i] = event.text or texts[i]
            yield WriteUpdate("writing", list(texts), outline=outline_text, done_steps=done_steps,
                              total_steps=total, progress=progress, notes=notes)
        cut = cancel.is_set() or any(errors)
        warnings = self._result_notes(brief, texts, finishes, errors, cancel.is_set())
        final_notes = notes + warnings
        if cancel.is_set():
            final_notes.append("Stopped: what was written so far is kept.")
        stats = {"seconds": round(time.perf_counter() - t0, 2), "variants": n, "parallel": parallel,
                 "model": options.model or self.models.default}
        yield WriteUpdate("done", list(texts), outline=outline_text, done_steps=total, total_steps=total,
                          notes=final_notes, errors=[e for e in errors if e], warnings=warnings,
                          status="cut" if cut else "complete",
                          stats=stats)

    def _result_notes(self, brief: Brief, texts: list[str], finishes: list, errors: list[str],
                      stopped: bool) -> list[str]:
        notes = []
        n = len(texts)
        name = (lambda i: f"Variant {i + 1}") if n > 1 else (lambda i: "The piece")
        for i, text in enumerate(texts):
            if errors[i]:
                continue
            count = len(words(plain_text(text)))
            if not text.strip():
                if not stopped:
                    notes.append(f"{name(i)}: the model returned nothing. Generate again, raise the "
                                 "temperature, or pick another model.")
            elif stopped:
                continue
            elif finishes[i] == "length":
                notes.append(f"{name(i)} reached the length limit and may end mid-sentence.")
            elif brief.length and brief.length >= 60 and count < EARLY_STOP_FRACTION * brief.length:
                notes.append(f"{name(i)} is {count} words, well short of the {brief.length} asked for: the model "
                             "stopped early. Generate again, or pick a stronger model.")
        seen: dict[str, int] = {}
        for i, text in enumerate(texts):
            if text.strip() and text in seen:
                notes.append(f"Variants {seen[text] + 1} and {i + 1} came out the same; raise the temperature.")
            seen.setdefault(text, i)
        return notes

    def _stream_piece(self, backend: TextBackend, messages: list[Message], params: GenerationParams,
                      cancel: threading.Event, whole: Callable[[str], str], got: list[str]) -> Iterator[Event]:
        """Stream one model reply as text events; whole() turns the reply so far into the variant's
        whole text. `got[0]` holds the reply so far (kept when the stream fails); returns the
        finish reason."""
        stats = StreamStats()
        got[:] = [""]
        stream = backend.stream_chat(messages, params, cancel, stats)
        try:
            for delta in stream:
                got[0] += delta
                yield Event("text", whole(got[0]))
        finally:
            stream.close()
        return stats.finish_reason

    def _short_variant(self, backend: TextBackend, brief: Brief, options: WriteOptions, i: int, n: int,
                       cancel: threading.Event) -> Iterator[Event]:
        messages = self.short_prompt(brief, i, n)
        params = options.params(i, self._fit(backend, messages, self.max_tokens(brief)), brief.template.stop)
        got = [""]
        try:
            finish = yield from self._stream_piece(backend, messages, params, cancel, lambda r: r, got)
        except BackendError as exc:
            yield Event("error", clean_output(got[0] or getattr(exc, "partial", "")), error=str(exc))
            return
        yield Event("done", clean_output(got[0]), finish=finish)

    def _long_variant(self, backend: TextBackend, brief: Brief, outline: Outline, options: WriteOptions, i: int,
                      n: int, cancel: threading.Event) -> Iterator[Event]:
        done: list[tuple[str, str]] = []
        count = len(outline.sections)
        section_words = max(40, (brief.length or 600) // count)
        finish = None
        for k, heading in enumerate(outline.sections):
            if cancel.is_set():
                break
            yield Event("step", step=(f"Variant {i + 1}: " if n > 1 else "") + f"section {k + 1} of {count}")
            previous = done[-1][1] if done else ""
            messages = self.section_prompt(brief, outline, k, previous, i, n)
            params = options.params(i * 100 + k, self._fit(backend, messages, self.max_tokens(brief, section_words)))
            got = [""]
            try:
                finish = yield from self._stream_piece(
                    backend, messages, params, cancel, lambda r: assemble(outline.title, done + [(heading, r)]), got)
            except BackendError as exc:
                done.append((heading, clean_output(got[0] or getattr(exc, "partial", ""), heading)))
                yield Event("error", assemble(outline.title, done),
                             error=f"{exc} (stopped at section {k + 1} of {count})")
                return
            done.append((heading, clean_output(got[0], heading)))
        yield Event("done", assemble(outline.title, done), finish=finish)

    # -- drafts (the tab) ---------------------------------------------------------------------------
    def start_draft(self, user_id: str, brief: Brief, options: WriteOptions, outline: str = "") -> Draft:
        return self.drafts.create(user_id, brief.title or brief.template.label, brief.template.name, brief.raw,
                                  asdict(options), outline=outline, status="streaming")

    def brief_of(self, draft: Draft) -> tuple[Brief, WriteOptions]:
        brief = self.prepare(draft.template, draft.brief)
        known = {k: v for k, v in draft.options.items() if k in WriteOptions.__dataclass_fields__}
        return brief, WriteOptions(**known)

    def write_draft(self, user_id: str, draft_id: str) -> Iterator[WriteUpdate]:
        """Write the variants of a stored draft, saving them as they stream (throttled) and at the
        end; a stop request for (user, draft) ends it with what was written kept."""
        draft = self.drafts.get(user_id, draft_id)
        cancel = self.active.start(user_id, draft_id, supersede=True)
        last_save = 0.0
        update: WriteUpdate | None = None
        try:
            brief, options = self.brief_of(draft)
            for update in self.write(brief, options, draft.outline, cancel):
                now = time.perf_counter()
                if update.status == "streaming" and now - last_save >= SAVE_INTERVAL_S:
                    self.drafts.save_generation(user_id, draft_id, variants=update.texts, outline=update.outline)
                    last_save = now
                if update.status != "streaming":
                    title = _title_from(update.texts[0]) if brief.template.kind == "long" else None
                    self.drafts.save_generation(user_id, draft_id, variants=update.texts, outline=update.outline,
                                                status=update.status, note="; ".join(update.errors)[:500],
                                                title=title)
                yield update
        except GeneratorExit:
            cancel.set()
            if update is not None:
                self.drafts.save_generation(user_id, draft_id, variants=update.texts, outline=update.outline,
                                            status="cut", note="interrupted: the page stopped reading")
            raise
        except BaseException:
            self.drafts.save_generation(user_id, draft_id, variants=update.texts if update else [],
                                        outline=update.outline if update else None, status="cut", note="error")
            raise
        finally:
            self.active.finish(user_id, draft_id, cancel)

    def check_brief(self, template_name: str | None, fields: Mapping[str, Any], options: WriteOptions,
                    load_progress: Callable[[float, str], None] | None = None,
                    outline: bool = False) -> tuple[Brief, WriteOptions]:
        """Before writing (or, with `outline`, outlining) from the tab: the brief and options checked
        and the model loaded, so a problem is an InputError (or BackendError) before anything starts."""
        brief = self.prepare(template_name, fields)
        if outline and brief.template.kind != "long":
            raise InputError(f"{brief.template.label} is a short piece: press Write.")
        options, _ = options.checked()
        self.backend(options.model, load_progress)
        return brief, options

    def begin_draft(self, user_id: str, brief: Brief, options: WriteOptions, outline: str | None = "") -> Draft:
        """A new draft to write into; an outline is kept only for long pieces."""
        return self.start_draft(user_id, brief, options, (outline or "") if brief.template.kind == "long" else "")

    def draft_choices(self, user_id: str) -> list[tuple[str, str]]:
        """(label, id) of the user's drafts, newest first: the title and the template's name."""
        names = {t.name: t.label for t in self.library.templates.values()}
        return [(f"{d.title} · {names.get(d.template, d.template)}", d.id) for d in self.drafts.list(user_id)]

    def open_draft(self, user_id: str, draft_id: str) -> Draft:
        """NotFoundError when it does not exist or is someone else's."""
        return self.drafts.get(user_id, draft_id)

    def keep_text(self, user_id: str, draft_id: str, text: str) -> None:
        """Save an edited draft text (if it changed); a draft deleted meanwhile is not an error."""
        try:
            if self.drafts.get(user_id, draft_id).text != text:
                self.drafts.save_text(user_id, draft_id, text)
        except NotFoundError:
            pass

    def save_new_draft(self, user_id: str, text: str, template_name: str | None, fields: Mapping[str, Any],
                       options: WriteOptions) -> Draft:
        """Keep text typed with no draft open, with the current brief; titled by its topic or first line."""
        template = self.template(template_name)
        checked, _ = options.checked()
        title = str(fields.get("topic") or "").strip() or text.strip().splitlines()[0][:80]
        return self.drafts.create(user_id, title, template.name, dict(fields), asdict(checked), text=text)

    def pick(self, user_id: str, draft_id: str, index: int) -> Draft:
        """Make variant `index` the draft's text."""
        return self.drafts.pick(user_id, draft_id, index)

    def delete_draft(self, user_id: str, draft_id: str) -> None:
        """Stop its generation and delete it; one already gone is not an error."""
        self.stop(user_id, draft_id)
        try:
            self.drafts.delete(user_id, draft_id)
        except NotFoundError:
            pass

    def export(self, user_id: str, draft_id: str | None, text: str, topic: str | None, language: str | None,
               fmt: str) -> tuple[str, bytes | str]:
        """(file name, data) of the draft text as Markdown, HTML or DOCX, titled by the stored draft's
        title, else the topic, else "Draft"."""
        if not (text or "").strip():
            raise InputError("The draft is empty: there is nothing to export.")
        title = (topic or "").strip() or "Draft"
        if draft_id:
            try:
                title = self.drafts.get(user_id, draft_id).title
            except NotFoundError:
                pass
        return export_filename(title, draft_id or "", fmt), exported(text, title, fmt, language)

    def job(self, user_id: str, job_id: str, run: Callable[[threading.Event], Iterator[Any]]) -> Iterator[Any]:
        """Run a generation (an outline, a rewrite) that stop(user_id, job_id) can end."""
        cancel = self.active.start(user_id, job_id, supersede=True)
        try:
            yield from run(cancel)
        finally:
            self.active.finish(user_id, job_id, cancel)

    def stop(self, user_id: str, job_id: str | None) -> bool:
        return self.active.stop(user_id, job_id or "") > 0

    # -- analysis -------------------------------------------------------------------------------------
    def analyse_draft(self, user_id: str, draft_id: str | None, text: str) -> Analysis:
        """analyse() with the stored draft's keywords and template (none when it is gone)."""
        try:
            draft = self.drafts.get(user_id, draft_id or "")
        except NotFoundError:
            return self.analyse(text, None, None)
        return self.analyse(text, draft.brief.get("keywords"), draft.template)

    def analyse(self, text: str, keywords: Any = None, template_name: str | None = None) -> Analysis:
        """Stats of a draft, its keyword coverage, and the template's length checks."""
        template = self.library.templates.get(template_name or "")
        return Analysis(stats=text_stats(text or ""),
                        coverage=keyword_coverage(text or "", parse_keywords(keywords)),
                        checks=run_checks(text or "", template.checks) if template and (text or "").strip() else [])

    # -- rewriting ------------------------------------------------------------------------------------
    def check_rewrite(self, text: str, selection: str, op_name: str, language: str = "") -> tuple[RewriteOp, int, int]:
        """The rewrite operation and the (start, end) of the part to rewrite; InputError if the
        request cannot be done (empty draft, unknown operation, no language, selection not found)."""
        if not (text or "").strip():
            raise InputError("The draft is empty: write or paste some text first.")
        op = self.library.rewrites.get(op_name or "")
        if op is None:
            raise InputError(f"Unknown rewrite {op_name!r}; choose one of: {', '.join(self.library.rewrites)}.")
        if op.needs_language and not (language or "").strip():
            raise InputError(f"Choose the language to {op.label.lower()} into.")
        if len(text) > self.settings.max_input_chars:
            raise InputError(f"The draft is {len(text):,} characters; the limit is {self.settings.max_input_chars:,}.")
        start, end = find_selection(text, selection or "")
        return op, start, end

    def rewrite(self, text: str, selection: str, op_name: str, language: str = "",
                options: WriteOptions | None = None, cancel: threading.Event | None = None) -> Iterator[RewriteUpdate]:
        """Rewrite `selection` inside `text` (or all of `text` when the selection is empty), a section
        at a time for long text, streaming the whole text with the new part spliced in."""
        cancel = cancel or threading.Event()
        options = (options or WriteOptions()).checked()[0]
        op, start, end = self.check_rewrite(text, selection, op_name, language)
        language = (language or "").strip()
        before, target, after = text[:start], text[start:end], text[end:]
        backend = self.backend(options.model)
        chunks = split_for_rewrite(target)
        done: list[str] = []
        notes: list[str] = []
        joiner = "\n\n"
        lead = target[: len(target) - len(target.lstrip())]
        trail = target[len(target.rstrip()):]

        def whole(parts: Sequence[str]) -> str:
            return before + lead + joiner.join(p.strip() for p in parts) + trail + after

        for k, chunk in enumerate(chunks):
            if cancel.is_set():
                break
            values = {"text": chunk, "words": len(words(plain_text(chunk))), "language": language}
            user = render(op.instruction, values, STAGE_BUILTINS["rewrite"])
            messages: list[Message] = [{"role": "system", "content": self.library.common.rewrite_system},
                                       {"role": "user", "content": user}]
            chunk_tokens = backend.count_tokens([{"role": "user", "content": chunk}])
            params = options.params(k, self._fit(backend, messages, int(chunk_tokens * op.length_factor) + 64))
            got = [""]
            events = self._stream_piece(backend, messages, params, cancel,
                                        lambda r: whole(done + [r] + chunks[k + 1:]), got)
            try:
                for event in events:
                    yield RewriteUpdate(event.text, notes=notes)
            except BackendError as exc:
                done.append(clean_output(got[0] or getattr(exc, "partial", "")) or chunk)
                yield RewriteUpdate(whole(done + chunks[k + 1:]), done=True, notes=notes, error=str(exc),
                                    status="cut")
                return
            finally:
                events.close()
            cleaned = clean_output(got[0])
            if not cleaned:
                notes.append(f"The model returned nothing for part {k + 1} of {len(chunks)}; the original was kept.")
                cleaned = chunk
            done.append(cleaned)
        status = "cut" if cancel.is_set() else "complete"
        yield RewriteUpdate(whole(done + chunks[len(done):]), done=True, notes=notes, status=status)


# ------------------------------------------------------------------------------------------------------
# helpers


def _title_from(markdown: str) -> str | None:
    m = re.match(r"\s*#\s+(.+)", markdown or "")
    return m.group(1).strip() if m else None


