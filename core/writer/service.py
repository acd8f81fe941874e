"""What the writer tab does, with no UI: check a brief against its template, write 1-4 variants
(outline then sections for long pieces; concurrently when the backend can), rewrite a draft or a
selection, keep drafts in storage, and stop a generation on request. Prompts live in prompts.py, the
generation in writing.py, outlining.py and rewriting.py (checked and repaired by checks.py and repair.py);
this is the facade the tab and the API call."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from backends.text.base import Message, TextBackend
from config import Settings
from core.cancel import CancelRegistry
from core.errors import InputError, NotFoundError
from core.models.text import ModelManager
from core.writer import outlining, prompts, review, rewriting, writing
from core.writer.brief import MAX_VARIANTS, Brief, WriteOptions, prepare_brief
from core.writer.export import export_filename, exported
from core.writer.rewriting import RewriteUpdate
from core.writer.run import find_selection, split_for_rewrite
from core.writer.store import Draft, DraftStore
from core.writer.templates import RewriteOp, Template, TemplateLibrary
from core.writer.text import (
    CheckResult,
    KeywordCoverage,
    Outline,
    TextStats,
    keyword_coverage,
    parse_keywords,
    run_checks,
    text_stats,
)
from core.writer.writing import WriteUpdate

__all__ = [
    "MAX_VARIANTS",
    "Brief",
    "WriteOptions",
    "WriteUpdate",
    "RewriteUpdate",
    "Analysis",
    "WriterService",
    "find_selection",
    "split_for_rewrite",
]

log = logging.getLogger(__name__)

SAVE_INTERVAL_S = 0.5  # how often streaming variants are written to SQLite


@dataclass
class Analysis:
    stats: TextStats
    coverage: KeywordCoverage
    checks: list[CheckResult]


class WriterService:
    def __init__(self, settings: Settings, models: ModelManager, drafts: DraftStore, library: TemplateLibrary) -> None:
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

    def short_prompt(self, brief: Brief, variant: int = 0, n: int = 1) -> list[Message]:
        """The messages for a short piece (variant `variant` of `n`)."""
        return prompts.short_prompt(brief, self.library.common.angles, variant, n)

    # -- writing ------------------------------------------------------------------------------------
    def backend(self, model: str | None, load_progress: Callable[[float, str], None] | None = None) -> TextBackend:
        try:
            backend = self.models.get(model)
        except KeyError as exc:
            raise InputError(str(exc.args[0])) from None
        backend.load(load_progress)
        return backend

    def stream_outline(
        self, brief: Brief, options: WriteOptions, cancel: threading.Event | None = None
    ) -> Iterator[str]:
        """The outline of a long piece, as it grows (cumulative text)."""
        if brief.template.kind != "long":
            raise InputError(f"{brief.template.label} is a short piece: it is written directly, with no outline.")
        options, _ = options.checked()
        backend = self.backend(options.model)
        yield from outlining.stream_outline(backend, brief, options, cancel or threading.Event())

    def resolve_outline(self, brief: Brief, outline_text: str) -> tuple[Outline, list[str]]:
        """The outline to write from: the (edited) text parsed, or the template's default sections
        when it has no usable headings."""
        return outlining.resolve_outline(brief, outline_text)

    def write(
        self,
        brief: Brief,
        options: WriteOptions,
        outline_text: str | None = None,
        cancel: threading.Event | None = None,
        parallel: int | None = None,
    ) -> Iterator[WriteUpdate]:
        """Write 1-4 variants, streaming every variant's text. A long piece without an outline gets
        one first (phase 'outline'). Ends with an update whose status is 'complete' or 'cut'.
        Variants run concurrently up to the backend's max_concurrency (`parallel` overrides it, for
        benchmarks)."""
        cancel = cancel or threading.Event()
        options, option_notes = options.checked()
        notes = list(brief.notes) + option_notes
        backend = self.backend(options.model)
        yield from writing.write(
            backend,
            brief,
            options,
            cancel,
            notes=notes,
            angles=self.library.common.angles,
            model=options.model or self.models.default,
            repair=self.library.common.repair,
            outline_text=outline_text,
            parallel=parallel,
        )

    # -- drafts (the tab) ---------------------------------------------------------------------------
    def start_draft(self, user_id: str, brief: Brief, options: WriteOptions, outline: str = "") -> Draft:
        return self.drafts.create(
            user_id,
            brief.title or brief.template.label,
            brief.template.name,
            brief.raw,
            asdict(options),
            outline=outline,
            status="streaming",
        )

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
                follow = len(update.texts) <= 1  # with variants, the draft's text waits for the person's pick
                if update.status == "streaming" and now - last_save >= SAVE_INTERVAL_S:
                    self.drafts.save_generation(
                        user_id, draft_id, variants=update.texts, outline=update.outline, follow=follow
                    )
                    last_save = now
                if update.status != "streaming":
                    title = _title_from(update.texts[0]) if brief.template.kind == "long" else None
                    self.drafts.save_generation(
                        user_id,
                        draft_id,
                        variants=update.texts,
                        outline=update.outline,
                        status=update.status,
                        note="; ".join(update.errors)[:500],
                        title=title,
                        follow=follow,
                    )
                yield update
        except GeneratorExit:
            cancel.set()
            if update is not None:
                self.drafts.save_generation(
                    user_id,
                    draft_id,
                    variants=update.texts,
                    outline=update.outline,
                    status="cut",
                    note="interrupted: the page stopped reading",
                    follow=len(update.texts) <= 1,
                )
            raise
        except BaseException:
            self.drafts.save_generation(
                user_id,
                draft_id,
                variants=update.texts if update else [],
                outline=update.outline if update else None,
                status="cut",
                note="error",
                follow=update is None or len(update.texts) <= 1,
            )
            raise
        finally:
            self.active.finish(user_id, draft_id, cancel)

    def check_brief(
        self,
        template_name: str | None,
        fields: Mapping[str, Any],
        options: WriteOptions,
        load_progress: Callable[[float, str], None] | None = None,
        outline: bool = False,
    ) -> tuple[Brief, WriteOptions]:
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

    def save_new_draft(
        self, user_id: str, text: str, template_name: str | None, fields: Mapping[str, Any], options: WriteOptions
    ) -> Draft:
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
        with contextlib.suppress(NotFoundError):
            self.drafts.delete(user_id, draft_id)

    def export(
        self, user_id: str, draft_id: str | None, text: str, topic: str | None, language: str | None, fmt: str
    ) -> tuple[str, bytes | str]:
        """(file name, data) of the draft text as Markdown, HTML or DOCX, titled by the stored draft's
        title, else the topic, else "Draft"."""
        if not (text or "").strip():
            raise InputError("The draft is empty: there is nothing to export.")
        title = (topic or "").strip() or "Draft"
        if draft_id:
            with contextlib.suppress(NotFoundError):
                title = self.drafts.get(user_id, draft_id).title
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
        return Analysis(
            stats=text_stats(text or ""),
            coverage=keyword_coverage(text or "", parse_keywords(keywords)),
            checks=run_checks(text or "", template.checks) if template and (text or "").strip() else [],
        )

    # -- rewriting ------------------------------------------------------------------------------------
    def check_rewrite(
        self, text: str, selection: str, op_name: str, language: str = "", span: tuple[int, int] | None = None
    ) -> tuple[RewriteOp, int, int]:
        """The rewrite operation and the (start, end) of the part to rewrite: `span` (characters picked in
        the draft, review.span_of), else where `selection` is found, else the whole text. InputError if the
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
        if span is not None:
            start, end = span
            if not 0 <= start < end <= len(text):
                raise InputError("The selection is outside the draft (it may have been edited since); select it again.")
            return op, start, end
        start, end = find_selection(text, selection or "")
        return op, start, end

    def rewrite(
        self,
        text: str,
        selection: str,
        op_name: str,
        language: str = "",
        options: WriteOptions | None = None,
        cancel: threading.Event | None = None,
        span: tuple[int, int] | None = None,
    ) -> Iterator[RewriteUpdate]:
        """Rewrite `span` (or `selection`) inside `text` (all of `text` when neither is given), a section
        at a time for long text, streaming the whole text with the new part spliced in."""
        cancel = cancel or threading.Event()
        options = (options or WriteOptions()).checked()[0]
        op, start, end = self.check_rewrite(text, selection, op_name, language, span)
        language = (language or "").strip()
        backend = self.backend(options.model)
        yield from rewriting.rewrite(
            backend, text, start, end, op, language, options, self.library.common.rewrite_system, cancel
        )

    def propose_rewrite(
        self,
        text: str,
        span: tuple[int, int] | None,
        op_name: str,
        language: str,
        options: WriteOptions,
        cancel: threading.Event | None = None,
    ) -> Iterator[tuple[RewriteUpdate, review.Proposal]]:
        """rewrite() of `span` (None: the whole text), each update with the proposal it makes so far:
        the part and its rewrite, for the person to accept or discard (nothing is stored)."""
        _, start, end = self.check_rewrite(text, "", op_name, language, span)
        for update in self.rewrite(text, "", op_name, language, options, cancel, span=(start, end)):
            yield update, review.proposal_from(text, start, end, update.text)

    def accept_rewrite(self, user_id: str, draft_id: str | None, current: str, proposal: Any) -> str:
        """The draft with an accepted rewrite spliced in (where its part is now), kept in the stored draft."""
        text = review.splice(current or "", review.Proposal.from_state(proposal))
        if draft_id:
            self.keep_text(user_id, draft_id, text)
        return text


# ------------------------------------------------------------------------------------------------------
# helpers


def _title_from(markdown: str) -> str | None:
    m = re.match(r"\s*#\s+(.+)", markdown or "")
    return m.group(1).strip() if m else None
