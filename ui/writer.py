"""The writer tab: components and event wiring only (the /write API in writer_api.py, rewrites in
writer_rewrite.py, drafts in writer_drafts.py). Everything it does is a call into core.writer.service
(briefs, variants, analysis, export)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from core.errors import InputError
from core.speech.service import SpeechStudio
from core.writer.service import MAX_VARIANTS, WriterService
from ui.downloads import download
from ui.errors import user_error
from ui.flows import header_image_button
from ui.identity import user_id
from ui.model_pickers import ModelPickers
from ui.read_aloud import read_aloud_player
from ui.send_to_speech import SendToSpeech
from ui.writer_api import build_writer_api
from ui.writer_drafts import wire_drafts
from ui.writer_form import (
    FAILURES,
    BriefForm,
    OutputPanel,
    brief_form,
    brief_updates,
    output_panel,
    stats_markdown,
    status_markdown,
)
from ui.writer_form import error_message as _message
from ui.writer_rewrite import wire_rewrite

PRIVATE = dict(api_visibility="private")
# On a phone the brief sits under the draft: pressing Write brings the draft (where the piece appears) into view.
SHOW_DRAFT_JS = """
(...args) => {
    if (window.matchMedia('(max-width: 768px)').matches) {
        document.getElementById('writer-output')?.scrollIntoView({block: 'start'});
    }
    return args;
}
"""


# ------------------------------------------------------------------------------------------------------
# the tab: handlers read their inputs by component (Gradio's set form, a dict), not by position


@dataclass
class _Tab:
    """What every group of handlers shares."""

    service: WriterService
    browser_id: gr.BrowserState
    form: BriefForm
    out: OutputPanel
    draft_id: gr.State  # the open draft
    job_id: gr.State  # the generation Stop ends
    undo: gr.State  # earlier draft texts, newest last
    gen_kwargs: dict[str, Any]
    failures: tuple[type[BaseException], ...] = ()

    @staticmethod
    def message(exc: BaseException) -> str:
        return _message(exc)

    @staticmethod
    def stopped():
        """After a generation (done, stopped or failed): Stop goes away again."""
        return gr.update(visible=False)

    def analysed(self, text: str, keywords: Any, template: str | None) -> str:
        return stats_markdown(self.service.analyse(text, keywords, template))

    def refresh_drafts(self, bid, did, request: gr.Request):
        try:
            return gr.Dropdown(choices=self.service.draft_choices(user_id(bid, request)), value=did)
        except gr.Error:
            return gr.Dropdown()


def build_writer_tab(
    demo: gr.Blocks,
    service: WriterService,
    browser_id: gr.BrowserState,
    pickers: ModelPickers,
    speech: SpeechStudio | None = None,
) -> SendToSpeech | None:
    """`pickers` makes the model picker: only what runs now, with "Get more models". With `speech`, "Read aloud"
    reads the draft as it stands, and "Send to Speech" (returned: the app wires it to the Speech tab) takes it there."""
    library = service.library
    first = "blog_post" if "blog_post" in library.templates else next(iter(library.templates))
    start = library.templates[first]

    with gr.Tab("Writer", id="writer", elem_id="writer-tab") as tab:
        draft_id, job_id, undo = gr.State(None), gr.State(None), gr.State([])
        with gr.Row(equal_height=False, elem_id="writer-layout"):
            with gr.Column(scale=2, min_width=320, elem_id="writer-brief"):
                form = brief_form(service, start, first, pickers)
            with gr.Column(scale=5, elem_id="writer-output"):  # first on a phone (writer.css)
                out = output_panel(service, form.status)
                to_speech = _read_aloud(speech, browser_id, out) if speech else None
                tools = out.export_buttons["md"].parent
                with tools if isinstance(tools, gr.Row) else gr.Row():
                    header_image_button()  # a header image's prompt from the draft, into Images (ui/flows.py)

        gen_kwargs = dict(
            concurrency_limit=service.settings.concurrency_limit, concurrency_id="writer-generate", **PRIVATE
        )
        t = _Tab(service, browser_id, form, out, draft_id, job_id, undo, gen_kwargs, FAILURES)

        def on_template(tpl):
            chosen = library.templates.get(tpl, start)
            long = chosen.kind == "long"
            return [*brief_updates(chosen, None, keep_typed=True), gr.update(visible=long), gr.update(visible=long)]

        form.template.input(
            on_template, [form.template], [form.info, *form.controls, form.outline_btn, form.outline], **PRIVATE
        )
        tab.select(t.refresh_drafts, [browser_id, draft_id], [out.drafts], **PRIVATE)

        _wire_writing(t)
        _wire_outline(t)
        _wire_editing(t)
        wire_rewrite(t)
        _wire_export(t)
        wire_drafts(t, demo, start, pickers)
    return to_speech


def _read_aloud(speech: SpeechStudio, browser_id: gr.BrowserState, out: OutputPanel) -> SendToSpeech:
    """The "Read aloud" button beside Copy and Export under the draft (that row is entered again: it holds the
    draft's tools), and its player row at the end of the column. It reads the draft's current text, saved or not."""
    tools = out.export_buttons["md"].parent
    with tools if isinstance(tools, gr.Row) else gr.Row():
        needs = ["writer-needs-draft"]
        read_btn = gr.Button("Read aloud", size="sm", elem_id="writer-read-aloud", elem_classes=needs)
        send_btn = gr.Button("Send to Speech", size="sm", elem_id="writer-send-speech", elem_classes=needs)
    reader = read_aloud_player(speech, "writer", browser_id, "writer")

    def draft_text(user: str, text: Any) -> str:
        if not isinstance(text, str) or not text.strip():
            raise user_error("Write or paste a draft first: the draft is empty.", title="Nothing to read")
        return text

    reader.wire(read_btn.click, draft_text, [out.draft], browser_id)
    return SendToSpeech(send_btn, out.draft, draft_text)


def _wire_writing(t: _Tab) -> None:
    service, form, out = t.service, t.form, t.out

    def accept_write(v: dict, request: gr.Request, progress=gr.Progress()):
        """Check the brief, load the model, store a new draft. On a problem nothing in the form
        changes (gr.Error leaves the outputs alone)."""
        user = user_id(v[t.browser_id], request)
        did, current_text, history = v[t.draft_id], v[out.draft], v[t.undo]
        try:
            template, fields, options = form.read(v)
            brief, options = service.check_brief(template, fields, options, lambda f, d: progress(f, desc=d))
            if did and current_text is not None:
                service.keep_text(user, did, current_text)
            new = service.begin_draft(user, brief, options, v[form.outline])
        except FAILURES as exc:
            raise user_error(_message(exc), title="Nothing written") from None
        n_shown = options.variants
        if (current_text or "").strip() and (not history or history[-1] != current_text):
            history = (history + [current_text])[-20:]  # Undo brings back what the new piece replaces
        return (
            new.id,
            new.id,
            history,
            gr.update(visible=n_shown > 1),
            *[gr.update(visible=i < n_shown) for i in range(MAX_VARIANTS)],
            *[gr.update(value="") for _ in range(MAX_VARIANTS)],
            *[gr.update(interactive=False) for _ in range(MAX_VARIANTS)],  # a variant is picked once written
            "",
            "",
            status_markdown(brief.notes, progress="Starting"),
            gr.update(visible=True),
        )

    def stream_write(bid, did, request: gr.Request, progress=gr.Progress()) -> Iterator:
        user = user_id(bid, request)
        update = None
        try:
            for update in service.write_draft(user, did):
                if update.total_steps:
                    progress(
                        (min(update.done_steps, update.total_steps), update.total_steps),
                        desc=update.progress or "Writing",
                        unit="parts",
                    )
                n = len(update.texts)
                single = n == 1
                done = update.status != "streaming"
                texts = update.texts + [""] * (MAX_VARIANTS - n)
                # one piece streams into the draft; variants stream side by side and the draft waits for a pick
                draft_text = update.texts[0] if single else gr.skip()
                stats_md = (
                    stats_markdown(service.analyse_draft(user, did, update.texts[0])) if done and single else gr.skip()
                )
                notes = update.notes + (
                    ["Pick the variant you like: its Use button puts it in the draft."] if done and not single else []
                )
                yield (
                    update.outline if update.outline else gr.skip(),
                    status_markdown(
                        notes,
                        update.errors,
                        update.progress or ("Writing the outline" if update.phase == "outline" else "Writing"),
                        done,
                    ),
                    *[gr.skip() if single else x for x in texts],
                    *[gr.update(interactive=i < n) if done else gr.skip() for i in range(MAX_VARIANTS)],
                    draft_text,
                    stats_md,
                )
        except FAILURES as exc:
            raise user_error(_message(exc), title="Writing stopped") from None
        if update is not None and update.status != "streaming":
            if update.errors and not any(x.strip() for x in update.texts):
                raise user_error(update.errors[0], title="Nothing written")
            if not any(x.strip() for x in update.texts) and update.status == "complete":
                raise user_error(
                    "The model returned no text. Your brief is unchanged: try again, raise the "
                    "temperature, or pick another model.",
                    title="Nothing written",
                )
            if update.errors:
                gr.Warning(update.errors[0], title="Writing was cut")
            elif update.warnings:
                gr.Warning(update.warnings[0], title="Check the result")

    write_inputs = {t.browser_id, t.draft_id, out.draft, t.undo, form.outline, *form.inputs()}
    write_outputs = [
        t.draft_id,
        t.job_id,
        t.undo,
        out.variant_row,
        *out.variant_cols,
        *out.variant_boxes,
        *out.use_buttons,
        out.draft,
        out.stats,
        form.status,
        form.stop_btn,
    ]
    stream_outputs = [form.outline, form.status, *out.variant_boxes, *out.use_buttons, out.draft, out.stats]
    # no loading overlay over the draft or the variants: the status line above them says what is happening
    form.write_btn.click(
        accept_write, write_inputs, write_outputs, show_progress_on=[form.status], js=SHOW_DRAFT_JS, **PRIVATE
    ).success(stream_write, [t.browser_id, t.draft_id], stream_outputs, show_progress="hidden", **t.gen_kwargs).then(
        t.refresh_drafts, [t.browser_id, t.draft_id], [out.drafts], **PRIVATE
    ).then(t.stopped, None, [form.stop_btn], **PRIVATE)

    def stop(bid, job, request: gr.Request):
        service.stop(user_id(bid, request), job)

    form.stop_btn.click(stop, [t.browser_id, t.job_id], None, queue=False, **PRIVATE)


def _wire_outline(t: _Tab) -> None:
    """Outline only (long pieces): streams into the editable outline box; nothing is stored."""
    service, form = t.service, t.form

    def accept_outline(v: dict, request: gr.Request, progress=gr.Progress()):
        user_id(v[t.browser_id], request)
        try:
            template, fields, options = form.read(v)
            brief, _ = service.check_brief(template, fields, options, lambda f, d: progress(f, desc=d), outline=True)
        except FAILURES as exc:
            raise user_error(_message(exc), title="No outline") from None
        return uuid.uuid4().hex, status_markdown(brief.notes, progress="Writing the outline"), gr.update(visible=True)

    def stream_outline(v: dict, request: gr.Request):
        user = user_id(v[t.browser_id], request)
        try:
            template, fields, options = form.read(v)
            brief = service.prepare(template, fields)
            text = ""
            for text in service.job(user, v[t.job_id], lambda cancel: service.stream_outline(brief, options, cancel)):
                yield text, gr.skip()
            outline, notes = service.resolve_outline(brief, text)
            yield (
                outline.as_text(),
                status_markdown(brief.notes + notes + ["Edit the outline if you like, then press Write."]),
            )
        except FAILURES as exc:
            raise user_error(_message(exc), title="No outline") from None

    form.outline_btn.click(
        accept_outline,
        {t.browser_id, *form.inputs()},
        [t.job_id, form.status, form.stop_btn],
        show_progress_on=[form.status],
        **PRIVATE,
    ).success(
        stream_outline,
        {t.browser_id, t.job_id, *form.inputs()},
        [form.outline, form.status],
        show_progress="hidden",
        **t.gen_kwargs,
    ).then(t.stopped, None, [form.stop_btn], **PRIVATE)


def _wire_editing(t: _Tab) -> None:
    """Picking a variant, editing the draft (stats follow), saving."""
    service, form, out = t.service, t.form, t.out

    def picker(index: int):
        def pick(bid, did, current_text, history, keywords_v, tpl, request: gr.Request):
            user = user_id(bid, request)
            if not did:
                raise user_error("Write something first.", title="Nothing to pick")
            try:
                chosen = service.pick(user, did, index)
            except FAILURES as exc:
                raise user_error(_message(exc), title="Not picked") from None
            history = (history + [current_text])[-20:] if current_text else history
            return chosen.text, history, t.analysed(chosen.text, keywords_v, tpl)

        return pick

    for i, button in enumerate(out.use_buttons):
        button.click(
            picker(i),
            [t.browser_id, t.draft_id, out.draft, t.undo, form.keywords, form.template],
            [out.draft, t.undo, out.stats],
            **PRIVATE,
        )

    def on_edit(text, keywords_v, tpl):
        return t.analysed(text, keywords_v, tpl)

    out.draft.input(on_edit, [out.draft, form.keywords, form.template], [out.stats], queue=False, **PRIVATE)
    form.keywords.blur(on_edit, [out.draft, form.keywords, form.template], [out.stats], queue=False, **PRIVATE)

    def save(v: dict, request: gr.Request):
        """Keep the draft text; with no draft open, store a new one with the current brief."""
        user = user_id(v[t.browser_id], request)
        did, text = v[t.draft_id], v[out.draft]
        if did:
            service.keep_text(user, did, text or "")
            return did, gr.skip()
        if not (text or "").strip():
            return did, gr.skip()
        try:
            template, fields, options = form.read(v)
            new = service.save_new_draft(user, text, template, fields, options)
        except FAILURES as exc:
            raise user_error(_message(exc), title="Not saved") from None
        return new.id, gr.Dropdown(choices=service.draft_choices(user), value=new.id)

    save_inputs = {t.browser_id, t.draft_id, out.draft, *form.inputs()}
    out.draft.blur(save, save_inputs, [t.draft_id, out.drafts], **PRIVATE)
    out.save_btn.click(save, save_inputs, [t.draft_id, out.drafts], **PRIVATE)


def _wire_export(t: _Tab) -> None:
    def exporter(fmt: str):
        def run(bid, did, text, topic_v, language_v, request: gr.Request):
            user = user_id(bid, request)
            try:
                return download(*t.service.export(user, did, text, topic_v, language_v, fmt))
            except InputError as exc:
                raise user_error(str(exc), title="Nothing to export") from None

        return run

    inputs = [t.browser_id, t.draft_id, t.out.draft, t.form.topic, t.form.language]
    for fmt, button in t.out.export_buttons.items():
        button.click(exporter(fmt), inputs, [t.out.export_file], **PRIVATE)


__all__ = ["build_writer_api", "build_writer_tab"]
