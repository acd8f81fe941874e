"""What the condenser tab does, with no UI: check a request, run it (core/condenser/run.py: read the
documents, summarise every chunk, combine the notes until they fit, cite real pages or sections), keep
the result, stop a run on request, and hand back kept summaries. Cancellable at any moment."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from config import Settings
from core import validate
from core.cancel import CancelRegistry
from core.condenser.disposables import Disposables
from core.condenser.documents import ExtractionLimits
from core.condenser.passages import PassageStore
from core.condenser.prompts import CondensePrompts, load_condense_prompts
from core.condenser.report import export_markdown
from core.condenser.request import CondenseCancelled, CondenseOptions, CondenseResult, CondenseUpdate, InputFile  # noqa: F401
from core.condenser.run import Run
from core.condenser.store import StoredSummary, SummaryStore
from core.errors import InputError
from core.models.text import ModelManager

__all__ = ["CondenseCancelled", "CondenseOptions", "CondenseResult", "CondenseService", "CondenseUpdate", "InputFile"]

MAX_FOCUS_CHARS = 500
MAX_FILES = 10  # documents in one run: each gets its own summary, then one combined
_ACTIVE_KEY = "condense"


class CondenseService:
    def __init__(
        self,
        settings: Settings,
        models: ModelManager,
        store: SummaryStore,
        prompts: CondensePrompts | None = None,
        limits: ExtractionLimits = ExtractionLimits(),
        release_upload: Callable[[str, str], bool] | None = None,
        passages: PassageStore | None = None,
    ) -> None:
        self.settings = settings
        self.models = models
        self.store = store
        self.prompts = prompts or load_condense_prompts()
        self.limits = limits
        self.active = CancelRegistry()
        self.uploads = Disposables(release_upload)
        self.passages = passages  # with it, a kept summary's documents are kept for questions (core/condenser/ask.py)

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
            raise InputError(
                f"The pasted text is {len(text):,} characters; up to "
                f"{self.settings.max_input_chars:,} can be pasted. Upload it as a file instead."
            )
        model = validate.model_spec("model", options.model)
        if model and model not in self.models.specs:
            raise InputError(f"Unknown model {model!r}; configured: {', '.join(self.models.specs)}")
        return replace(
            options,
            length=length,
            form=form,
            model=model,
            focus=" ".join(focus.split()),
            audience=" ".join(audience.split()),
            language=" ".join(language.split()),
        )

    # -- the run -------------------------------------------------------------------------------------
    def condense(
        self,
        user_id: str,
        files: Sequence[InputFile] = (),
        text: str = "",
        options: CondenseOptions = CondenseOptions(),
        *,
        save: bool = True,
        load_progress: Callable[[float, str], None] | None = None,
        session: str = "",
        tick_s: float | None = None,
    ) -> Iterator[CondenseUpdate]:
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
        run: Run | None = None
        key = f"{_ACTIVE_KEY}:{session}"
        cancel = self.active.start(user_id, key, supersede=True)  # a new run in a tab replaces its old one
        try:
            options = self.check(files, text, options)
            run = Run(self, user_id, files, text, options, cancel, save, load_progress, tick_s)
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

    # -- kept summaries (the tab's history and export) ----------------------------------------------
    def history(self, user_id: str) -> list[StoredSummary]:
        return self.store.list(user_id)

    def summary(self, user_id: str, summary_id: str) -> StoredSummary:
        """SummaryNotFound when it does not exist or is someone else's."""
        return self.store.get(user_id, summary_id)

    def export(self, user_id: str, summary_id: str) -> tuple[str, str]:
        """(file name, Markdown text) of a kept summary."""
        item = self.store.get(user_id, summary_id)
        stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(item.title).stem)[:60] or "summary"
        return f"summary-{stem}.md", export_markdown(item.title, item.markdown, item.settings, item.created_at)
