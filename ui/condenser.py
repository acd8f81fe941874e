"""The condenser tab and the /condense API: components and event wiring only. Everything it does is a
call into core.condenser.service (the pipeline and the kept summaries). The tab's upload stays in its box for
another run (deleted when taken out of the box, or when uploads expire); the API's copies are disposable: deleted as
soon as they are read."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.data_classes import FileData

from core.condenser.ask import AskService
from core.condenser.documents import EXTENSIONS, DocumentError, EncryptedDocument
from core.condenser.service import CondenseCancelled, CondenseOptions, CondenseService, InputFile
from core.condenser.spoken import spoken_summary
from core.condenser.store import SummaryNotFound
from core.errors import BackendError, InputError
from core.safe_html import safe_markdown
from core.security.limits import UserSlots
from core.security.uploads import UploadRegistry
from core.speech.service import SpeechStudio
from ui.condenser_ask import build_ask_section
from ui.condenser_status import (
    HAS_RESULT,
    MAX_PASSWORD_CHARS,
    UI_TICK_S,
    finished_status,
    idle,
    kept_upload,
    notes_so_far,
    password_request,
    running,
    running_status,
)
from ui.downloads import download
from ui.errors import user_error
from ui.flows import discuss_button
from ui.identity import api_user, caller, user_id
from ui.library_open import Opener, register_opener
from ui.model_pickers import ModelPickers
from ui.read_aloud import read_aloud_player
from ui.send_to_speech import SendToSpeech
from ui.server.api_args import api_endpoint

PRIVATE = dict(api_visibility="private")
FAILURES = (InputError, DocumentError, BackendError, KeyError, SummaryNotFound)
SAME_LANGUAGE = "Same as the document"
START_HINT = (
    "*Upload a document or paste text, then press Condense. Every point cites its pages or sections; open "
    "“Sources” for the quoted passages.*"
)
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
    speech: SpeechStudio | None = None,
    asker: AskService | None = None,
) -> SendToSpeech | None:
    """`pickers` makes the model picker: only what runs now, with "Get more models". With `speech`, "Read aloud"
    under a summary reads it (core/condenser/spoken.py: without its citations), and "Send to Speech" (returned: the
    app wires it to the Speech tab) takes that text there."""
    prompts = service.prompts
    ttl_h = service.settings.upload_ttl_hours

    def history_choices(user: str) -> list[tuple[str, str]]:
        return [
            (f"{s.title} · {time.strftime('%Y-%m-%d %H:%M', time.localtime(s.created_at))}", s.id)
            for s in service.history(user)
        ]

    with gr.Tab("Condense", id="condense") as tab:
        summary_id = gr.State(None)
        in_box = gr.State([])  # the checked paths of the uploads now in the box: deleted when taken out of it
        with gr.Row(equal_height=False, elem_id="condense-layout"):
            with gr.Column(scale=2, min_width=300, elem_id="condense-controls"):
                files = gr.File(
                    label="Documents: PDF, Word (.docx), text, Markdown or HTML",
                    file_count="multiple",
                    file_types=sorted(EXTENSIONS),
                    type="filepath",
                    height=150,  # with the options below, Condense fits the first screen of a laptop
                    elem_id="condense-files",
                )
                password = gr.Textbox(
                    label="PDF password",
                    type="password",
                    visible=False,
                    max_length=MAX_PASSWORD_CHARS,
                    elem_id="condense-password",
                )
                text = gr.Textbox(label="…or paste text", lines=3, max_lines=12, elem_id="condense-text")
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
                with gr.Accordion("Focus, audience, language", open=False, elem_id="condense-more"):
                    focus = gr.Textbox(
                        label="Focus question (optional)",
                        placeholder="e.g. What are the risks?",
                        elem_id="condense-focus",
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
                with gr.Row(elem_id="condense-actions"):
                    run_btn = gr.Button("Condense", variant="primary", elem_id="condense-run", scale=2)
                    # Only while a run is going (ui/condenser_status.running, idle)
                    stop_btn = gr.Button("Cancel", variant="stop", visible=False, elem_id="condense-stop", scale=1)
                with gr.Accordion("Earlier summaries · export", open=False):
                    history = gr.Dropdown(choices=[], label="Earlier summaries", elem_id="condense-history")
                    export_btn = gr.Button("Export Markdown", elem_id="condense-export")
                    export_file = gr.File(
                        label="Download", interactive=False, visible=False, elem_id="condense-export-file"
                    )
            with gr.Column(scale=3, elem_id="condense-result"):
                # The one status line (no progress overlay besides it): what runs, elapsed, time left
                status = gr.Markdown(elem_id="condense-status")
                summary = gr.Markdown(elem_id="condense-summary", container=True, value=START_HINT)
                to_speech = _read_aloud(speech, service, browser_id, summary_id) if speech else None
                if asker is not None:  # "Ask these documents" under the summary (ui/condenser_ask.py)
                    build_ask_section(asker, browser_id, summary_id)

        def files_changed(value, before, request: gr.Request):
            """The box's files changed: what was taken out of it is let go of (deleted when nobody else holds
            it); a new file hides the password box until a PDF asks for one."""
            who = caller(request)
            now = []
            for v in value or []:
                with contextlib.suppress(InputError):  # not an upload of this caller's: never kept or deleted
                    now.append(str(uploads.resolve(who, v, "The document")))
            gone = [p for p in before or [] if p not in now]
            service.discard_unused([InputFile(p, Path(p).name, disposable=True, owner=who) for p in gone])
            return now, gr.Textbox(value="", visible=False)

        files.change(files_changed, [files, in_box], [in_box, password], queue=False, show_progress="hidden", **PRIVATE)

        def run(
            file_paths,
            pasted,
            length_v,
            form_v,
            focus_v,
            audience_v,
            language_v,
            model_v,
            password_v,
            bid,
            request: gr.Request,
        ) -> Iterator:
            user = user_id(bid, request)
            who = caller(request)
            inputs = [kept_upload(uploads, who, p, password_v or "", ttl_h) for p in file_paths or []]
            opts = _options(length_v, form_v, focus_v, audience_v, language_v, model_v)
            updates = None
            try:
                updates = service.condense(
                    user, inputs, pasted or "", opts, session=request.session_hash or "", tick_s=UI_TICK_S
                )
                first, last = True, 0.0
                for upd in updates:
                    if upd.result is not None:
                        result = upd.result
                        yield (
                            finished_status(upd),
                            gr.Markdown(safe_markdown(result.markdown), elem_classes=[HAS_RESULT]),
                            result.summary_id or None,
                            gr.Dropdown(choices=history_choices(user), value=result.summary_id or None),
                            gr.update(),
                            *idle(),
                        )
                        return
                    if not first and time.monotonic() - last < UPDATE_INTERVAL_S:
                        continue  # the pipeline goes on at full speed; the page gets a few updates a second
                    last = time.monotonic()
                    notes: Any = gr.update()
                    if first or upd.notes:  # the result area shows the run from the start; Cancel appears
                        notes = gr.Markdown(notes_so_far(upd), elem_classes=[HAS_RESULT])
                    yield running_status(upd), notes, gr.update(), gr.update(), gr.update(), *running()
                    first = False
            except CondenseCancelled:
                hint = gr.Markdown(START_HINT, elem_classes=[])
                yield "**Cancelled.** Nothing was kept.", hint, gr.update(), gr.update(), gr.update(), *idle()
            except EncryptedDocument as exc:
                if not exc.opens_with_password:
                    raise user_error(_message(exc), title="Not condensed") from None
                ask = password_request(exc)
                hint = gr.Markdown(START_HINT, elem_classes=[])  # nothing was made: not the "notes appear here" line
                yield ask, hint, gr.update(), gr.update(), gr.Textbox(value="", visible=True), *idle()
            except FAILURES as exc:
                # said in the status too (it would otherwise still show the step that failed), then as a toast
                failed = safe_markdown(f"**Not condensed.** {_message(exc)}")
                hint = gr.Markdown(START_HINT, elem_classes=[])
                yield failed, hint, gr.update(), gr.update(), gr.update(), *idle()
                raise user_error(_message(exc), title="Not condensed") from None
            finally:
                if updates is not None:
                    updates.close()  # the page went away mid-run: this cancels the run at once

        inputs = [files, text, length, form, focus, audience, language, model, password, browser_id]
        outputs = [status, summary, summary_id, history, password, run_btn, stop_btn]
        for trigger in (run_btn.click, password.submit):  # Enter in the password box condenses, as the button does
            trigger(
                run,
                inputs,
                outputs,
                concurrency_limit=service.settings.concurrency_limit,
                concurrency_id="condense",
                show_progress="hidden",
                **PRIVATE,
            ).then(idle, None, [run_btn, stop_btn], queue=False, show_progress="hidden", **PRIVATE)

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
            shown = gr.Markdown(safe_markdown(item.markdown), elem_classes=[HAS_RESULT])
            return item.id, shown, safe_markdown(item.coverage)

        history.input(open_summary, [browser_id, history], [summary_id, summary, status], **PRIVATE)

        def open_from_library(user: str, sid: str, values: dict) -> dict:
            """The Library's Open (ui/library_open.py): the summary on show with the options it was made with."""
            item = service.summary(user, sid)  # SummaryNotFound for a missing or another user's
            made = item.settings or {}
            spec = made.get("model") or item.model
            return {
                summary_id: item.id,
                summary: gr.Markdown(safe_markdown(item.markdown), elem_classes=[HAS_RESULT]),
                status: safe_markdown(item.coverage),
                history: gr.Dropdown(choices=history_choices(user), value=item.id),
                length: made["length"] if made.get("length") in prompts.lengths else gr.skip(),
                form: made["form"] if made.get("form") in prompts.forms else gr.skip(),
                focus: str(made.get("focus") or ""),
                audience: str(made.get("audience") or ""),
                language: str(made.get("language") or SAME_LANGUAGE),
                model: spec if pickers.offered("text", spec) else gr.skip(),
            }

        register_opener(
            demo,
            ("summary",),
            Opener(
                "condense",
                [summary_id, summary, status, history, length, form, focus, audience, language, model],
                open_from_library,
                missing=(SummaryNotFound,),
            ),
        )

        def export(bid, sid, request: gr.Request):
            if not sid:
                raise user_error("Condense a document (or open an earlier summary) first.", title="Nothing to export")
            try:
                return download(*service.export(user_id(bid, request), sid))
            except SummaryNotFound:
                raise user_error("That summary no longer exists.", title="Not found") from None

        export_btn.click(export, [browser_id, summary_id], [export_file], **PRIVATE)
    return to_speech


def _read_aloud(
    speech: SpeechStudio, service: CondenseService, browser_id: gr.BrowserState, summary_id: gr.State
) -> SendToSpeech:
    """The "Read aloud" and "Send to Speech" buttons under the summary (shown once there is one), and the player."""
    with gr.Row(visible=False, elem_id="condense-speech-actions") as actions:
        read_btn = gr.Button("Read aloud", size="sm", elem_id="condense-read-aloud")
        send_btn = gr.Button("Send to Speech", size="sm", elem_id="condense-send-speech")
        discuss_button()  # a new conversation holding the summary (ui/flows.py)
    reader = read_aloud_player(speech, "condenser", browser_id, "condense")
    summary_id.change(lambda sid: gr.Row(visible=bool(sid)), [summary_id], [actions], queue=False, **PRIVATE)

    def summary_text(user: str, sid: Any) -> str:
        if not sid or not isinstance(sid, str):
            raise user_error("Condense a document (or open an earlier summary) first.", title="Nothing to read")
        try:
            return spoken_summary(service.summary(user, sid).markdown)
        except SummaryNotFound:
            raise user_error("That summary no longer exists.", title="Not found") from None

    reader.wire(read_btn.click, summary_text, [summary_id], browser_id)
    return SendToSpeech(send_btn, summary_id, summary_text)


def add_api_files(inputs: list[InputFile], uploads: UploadRegistry, request: gr.Request, file: Any) -> None:
    """The API's `file` argument (one file, a list, or None) checked as the caller's own uploads and appended to
    `inputs` one by one, so that a caller's `finally` discards those already taken when a later one is refused."""
    items = file if isinstance(file, list) else ([file] if file else [])
    for item in items:
        data: Any = item.model_dump() if isinstance(item, FileData) else item
        name = data.get("orig_name") if isinstance(data, dict) else None
        inputs.append(uploaded(uploads, caller(request), data, name if isinstance(name, str) else None))


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
        inputs: list[InputFile] = []
        try:
            add_api_files(inputs, uploads, request, file)
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
