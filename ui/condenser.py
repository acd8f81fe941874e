"""The condenser tab and the /condense API: components and event wiring only. Everything it does is a
call into core.condenser.service (the pipeline and the kept summaries). Gradio's uploaded copies are handed to the
core as disposable: deleted as soon as they are read."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.data_classes import FileData

from core.condenser.documents import EXTENSIONS, DocumentError
from core.condenser.service import CondenseCancelled, CondenseOptions, CondenseService, InputFile
from core.condenser.store import SummaryNotFound
from core.errors import BackendError, InputError
from core.safe_html import safe_markdown
from core.security.limits import UserSlots
from core.security.uploads import UploadRegistry
from ui.downloads import download
from ui.errors import user_error
from ui.identity import api_user, caller, user_id
from ui.model_pickers import ModelPickers
from ui.server.api_args import api_endpoint

PRIVATE = dict(api_visibility="private")
FAILURES = (InputError, DocumentError, BackendError, KeyError, SummaryNotFound)
SAME_LANGUAGE = "Same as the document"
UPDATE_INTERVAL_S = 0.1


def uploaded(uploads: UploadRegistry, who: str, value: Any, name: str | None = None) -> InputFile:
    """A file this caller uploaded, as a disposable input. Anything else (a server path, someone
    else's upload, a folder or device) is refused before it is opened (core/security/uploads.py)."""
    if not value:
        raise InputError("The upload is empty; send the file again.")
    path = uploads.resolve(who, value, "The document")
    shown = Path(name).name if name else path.name
    return InputFile(str(path), shown, disposable=True, owner=who)


def _options(length, form, focus, audience, language, model) -> CondenseOptions:
    language = "" if not language or language == SAME_LANGUAGE else str(language)
    return CondenseOptions(
        length=length or "short",
        form=form or "bullets",
        focus=focus or "",
        audience=audience or "",
        language=language,
        model=model or None,
    )


def _message(exc: Exception) -> str:
    return exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)


def build_condenser_tab(
    demo: gr.Blocks,
    service: CondenseService,
    browser_id: gr.BrowserState,
    uploads: UploadRegistry,
    pickers: ModelPickers,
) -> None:
    """`pickers` makes the model picker: only what runs now, with "Get more models"."""
    prompts = service.prompts

    def history_choices(user: str) -> list[tuple[str, str]]:
        return [
            (f"{s.title} · {time.strftime('%Y-%m-%d %H:%M', time.localtime(s.created_at))}", s.id)
            for s in service.history(user)
        ]

    with gr.Tab("Condense", id="condense") as tab:
        summary_id = gr.State(None)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                files = gr.File(
                    label="Documents: PDF, Word (.docx), text, Markdown or HTML",
                    file_count="multiple",
                    file_types=sorted(EXTENSIONS),
                    type="filepath",
                    elem_id="condense-files",
                )
                text = gr.Textbox(label="…or paste text", lines=5, max_lines=12, elem_id="condense-text")
                with gr.Row():
                    length = gr.Radio(
                        [(length.label, k) for k, length in prompts.lengths.items()],
                        value="short",
                        label="Length",
                        elem_id="condense-length",
                    )
                    form = gr.Dropdown(
                        [(f.label, k) for k, f in prompts.forms.items()],
                        value="bullets",
                        label="Form",
                        elem_id="condense-form",
                    )
                focus = gr.Textbox(
                    label="Focus question (optional)", placeholder="e.g. What are the risks?", elem_id="condense-focus"
                )
                with gr.Row():
                    audience = gr.Textbox(label="Audience (optional)", placeholder="e.g. a new team member")
                    language = gr.Dropdown(
                        list(prompts.languages) or [SAME_LANGUAGE],
                        value=SAME_LANGUAGE,
                        allow_custom_value=True,
                        label="Output language",
                    )
                with gr.Row(equal_height=False):
                    model = pickers.picker("text", elem_id="condense-model", scale=4)
                    pickers.get_more_button(elem_id="condense-get-more")
                with gr.Row():
                    run_btn = gr.Button("Condense", variant="primary", elem_id="condense-run")
                    stop_btn = gr.Button("Cancel", variant="stop", elem_id="condense-stop")
                with gr.Accordion("Earlier summaries · export", open=False):
                    history = gr.Dropdown(choices=[], label="Earlier summaries", elem_id="condense-history")
                    export_btn = gr.Button("Export Markdown", elem_id="condense-export")
                    export_file = gr.File(label="Download", interactive=False, visible=False)
            with gr.Column(scale=3):
                status = gr.Markdown(elem_id="condense-status")
                summary = gr.Markdown(
                    elem_id="condense-summary",
                    container=True,
                    value="*Upload a document or paste text, then press Condense. Every "
                    "point cites its pages or sections; open “Sources” for the "
                    "quoted passages.*",
                )

        def run(
            file_paths,
            pasted,
            length_v,
            form_v,
            focus_v,
            audience_v,
            language_v,
            model_v,
            bid,
            request: gr.Request,
            progress=gr.Progress(),
        ) -> Iterator:
            user = user_id(bid, request)
            inputs: list[InputFile] = []
            updates = None
            try:
                for p in file_paths or []:
                    inputs.append(uploaded(uploads, caller(request), p))
                opts = _options(length_v, form_v, focus_v, audience_v, language_v, model_v)
                updates = service.condense(
                    user,
                    inputs,
                    pasted or "",
                    opts,
                    load_progress=lambda f, d: progress(f, desc=d),
                    session=request.session_hash or "",
                )
                first, last = True, 0.0
                for upd in updates:
                    if upd.result is None and not first and time.monotonic() - last < UPDATE_INTERVAL_S:
                        continue  # the pipeline goes on at full speed; the page gets ~10 updates a second
                    last = time.monotonic()
                    progress(upd.fraction, desc=upd.status)
                    if upd.result is not None:
                        result = upd.result
                        # the status says so when a full library kept the summary out of the history
                        yield (
                            safe_markdown(f"**Done.** {upd.status.removeprefix('Done. ')}"),
                            safe_markdown(result.markdown),
                            None,
                            result.summary_id or None,
                            gr.Dropdown(choices=history_choices(user), value=result.summary_id or None),
                        )
                        return
                    preview = safe_markdown(f"#### Notes so far\n\n{upd.notes}") if upd.notes else gr.update()
                    # The upload box is emptied at once: its files are deleted once read.
                    yield (safe_markdown(upd.status), preview, None if first else gr.update(), gr.update(), gr.update())
                    first = False
            except CondenseCancelled:
                yield "**Cancelled.** Nothing was kept.", "", None, gr.update(), gr.update()
            except FAILURES as exc:
                raise user_error(_message(exc), title="Not condensed") from None
            finally:
                if updates is not None:
                    updates.close()  # the page went away mid-run: this cancels the run at once
                service.discard_unused(inputs)  # refused before its run began: still deleted

        inputs = [files, text, length, form, focus, audience, language, model, browser_id]
        outputs = [status, summary, files, summary_id, history]
        run_btn.click(
            run,
            inputs,
            outputs,
            concurrency_limit=service.settings.concurrency_limit,
            concurrency_id="condense",
            show_progress_on=[status],
            **PRIVATE,
        )

        def stop(bid, request: gr.Request):
            service.stop(user_id(bid, request), request.session_hash or "")  # this tab's run only

        stop_btn.click(stop, [browser_id], None, queue=False, **PRIVATE)

        def refresh(bid, sid, request: gr.Request):
            try:
                user = user_id(bid, request)
            except gr.Error:  # the tab was opened before the page's identity arrived: nothing to list yet
                return gr.Dropdown()
            return gr.Dropdown(choices=history_choices(user), value=sid)

        tab.select(refresh, [browser_id, summary_id], [history], **PRIVATE)

        def open_summary(bid, sid, request: gr.Request):
            try:
                item = service.summary(user_id(bid, request), sid)
            except SummaryNotFound:
                raise user_error("That summary no longer exists.", title="Not found") from None
            return item.id, safe_markdown(item.markdown), safe_markdown(item.coverage)

        history.input(open_summary, [browser_id, history], [summary_id, summary, status], **PRIVATE)

        def export(bid, sid, request: gr.Request):
            if not sid:
                raise user_error("Condense a document (or open an earlier summary) first.", title="Nothing to export")
            try:
                return download(*service.export(user_id(bid, request), sid))
            except SummaryNotFound:
                raise user_error("That summary no longer exists.", title="Not found") from None

        export_btn.click(export, [browser_id, summary_id], [export_file], **PRIVATE)


API_TICK_S = 0.25  # while the model works, /condense repeats its status at least this often


def build_condenser_api(service: CondenseService, uploads: UploadRegistry, jobs: UserSlots) -> None:
    def condense(
        file: FileData | list[FileData] | None,
        text: str = "",
        length: str = "short",
        form: str = "bullets",
        focus: str = "",
        audience: str = "",
        language: str = "",
        model: str = "",
        request: gr.Request = None,
    ) -> Iterator[dict]:  # type: ignore[assignment]
        """Condense a document (or several, or pasted text): every point cites its pages or sections.
        Streams progress; the last value holds the summary.

        Args:
            file: the document, sent with gradio_client.handle_file(path) (PDF, DOCX, TXT, MD, HTML); a list for several; None with `text`.
            text: pasted text to condense (instead of, or besides, files).
            length: tldr, short or detailed.
            form: bullets, prose, executive, takeaways or actions.
            focus: an optional question the summary should answer.
            audience: who the summary is for.
            language: output language; empty for the document's own.
            model: a configured model spec; empty for the default.
        Returns:
            {"status", "summary" (Markdown with citations and quoted sources), "coverage", "id"}.
        """
        items = file if isinstance(file, list) else ([file] if file else [])
        inputs: list[InputFile] = []
        try:
            for item in items:
                data: Any = item.model_dump() if isinstance(item, FileData) else item
                name = data.get("orig_name") if isinstance(data, dict) else None
                inputs.append(uploaded(uploads, caller(request), data, name if isinstance(name, str) else None))
            opts = _options(length, form, focus, audience, language, model)
            # A key of its own: one API caller's runs never stop each other. Ticks let Gradio close
            # this generator (so job.cancel() stops the run) while a request is running.
            with jobs.hold(api_user(request)):  # a few at once per user; more get "busy"
                for upd in service.condense(
                    api_user(request), inputs, text or "", opts, session=uuid.uuid4().hex, tick_s=API_TICK_S
                ):
                    if upd.result is not None:
                        yield {
                            "status": "complete",
                            "summary": upd.result.markdown,
                            "coverage": upd.result.coverage,
                            "id": upd.result.summary_id,
                        }
                        return
                    yield {"status": upd.status, "summary": "", "coverage": "", "id": ""}
        except CondenseCancelled:
            raise user_error("Condensing was cancelled.", title="Not condensed") from None
        except FAILURES as exc:
            raise user_error(_message(exc), title="Not condensed") from None
        finally:
            service.discard_unused(inputs)

    gr.api(
        api_endpoint(condense, title="Not condensed"),
        api_name="condense",
        concurrency_limit=service.settings.concurrency_limit,
        concurrency_id="condense",
    )
