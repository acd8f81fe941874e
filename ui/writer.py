"""The writer tab and the /write API: components and event wiring only. Everything it does is a call
into core.writer.service (briefs, variants, rewrites, analysis), core.writer.store and core.writer.export."""
from __future__ import annotations

import tempfile
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from backends.text.base import BackendError
from core.writer import export as writer_export
from core.chat.service import InputError
from core.chat.store import NotFoundError
from core import validate
from core.safe_html import safe_markdown
from core.writer.service import MAX_VARIANTS, Analysis, WriteOptions, WriterService
from core.writer.brief import TEXT_LIMIT, TEXTAREA_LIMIT
from core.writer.templates import STANDARD_FIELDS, Template
from core.writer.text import reading_time_label
from ui.server.api_args import api_endpoint
from ui.errors import user_error
from core.security.limits import UserSlots
from ui.identity import api_user, user_id

PRIVATE = dict(api_visibility="private")
EXTRA_SLOTS = 4  # template-specific fields beyond the standard brief (facts, platform, brand...)
MAX_DETAILS = 32  # /write: template fields in `details`
MAX_LIST_ITEMS = 100  # /write: keywords given as a list
FAILURES = (InputError, BackendError, NotFoundError, KeyError, IndexError)


# ------------------------------------------------------------------------------------------------------
# pure helpers (no gradio state): brief values in and out of the controls


def collect_brief(template: Template, topic, audience, tone, length, keywords, cta, language,
                  slot_texts: list, slot_choices: list) -> dict[str, Any]:
    """Field name -> value, for the fields the template declares."""
    standard = {"topic": topic, "audience": audience, "tone": tone, "length": length, "keywords": keywords,
                "cta": cta, "language": language}
    values = {f.name: standard[f.name] for f in template.fields if f.name in standard}
    for k, f in enumerate(template.extra_fields[:EXTRA_SLOTS]):
        values[f.name] = slot_choices[k] if f.input == "choice" else slot_texts[k]
    return values


def _shown(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return value


def brief_updates(template: Template, values: dict[str, Any] | None, keep_typed: bool = False) -> list:
    """Updates for [template_info, topic, audience, tone, length, keywords, cta, language,
    *slot_texts, *slot_choices]: labels and visibility from the template, values from `values`
    (a stored brief) or the template's defaults. keep_typed leaves free-text values as they are."""
    values = values or {}
    out: list = [gr.Markdown(f"*{template.description}*" if template.description else "")]
    for name in STANDARD_FIELDS:
        f = template.field(name)
        if f is None:
            out.append(gr.update(visible=False))
            continue
        kw: dict[str, Any] = dict(visible=True, label=f.label + (" *" if f.required else ""),
                                  info=f.help or None)
        if f.placeholder and f.input in ("text", "textarea", "list"):
            kw["placeholder"] = f.placeholder
        if name in values:
            kw["value"] = _shown(values[name])
        elif name == "length" or not keep_typed:  # lengths differ per template; other typed text is kept
            kw["value"] = f.default if f.input in ("number", "choice") else ""
        out.append(gr.update(**kw))
    extras = template.extra_fields[:EXTRA_SLOTS]
    texts, choices = [], []
    for k in range(EXTRA_SLOTS):
        f = extras[k] if k < len(extras) else None
        label = (f.label + (" *" if f.required else "")) if f else ""
        value = _shown(values.get(f.name, f.default)) if f else None
        is_choice = f is not None and f.input == "choice"
        texts.append(gr.update(visible=f is not None and not is_choice, label=label,
                               value=value if f is not None and not is_choice else "",
                               lines=4 if f is not None and f.input == "textarea" else 1,
                               placeholder=f.placeholder if f else ""))
        choices.append(gr.update(visible=is_choice, label=label, choices=list(f.choices) if is_choice else [],
                                 allow_custom_value=bool(f.custom) if is_choice else True,
                                 value=value if is_choice else None))
    return out + texts + choices


def stats_markdown(analysis: Analysis) -> str:
    s = analysis.stats
    if not s.words:
        return ""
    parts = [f"**{s.words:,} words**", f"{reading_time_label(s.reading_minutes)} read"]
    if s.flesch is not None:
        parts.append(f"readability (Flesch) {s.flesch:.0f}: {s.flesch_label}")
    lines = [" · ".join(parts)]
    cov = analysis.coverage
    if cov.counts:
        present = ", ".join(f"✅ {k} ({cov.counts[k]})" for k in cov.present)
        missing = ", ".join(f"❌ {k}" for k in cov.missing)
        lines.append("Keywords: " + " · ".join(p for p in (present, missing) if p))
    for check in analysis.checks:
        lines.append(("✅ " if check.ok else "⚠️ ") + check.message())
    return safe_markdown("\n\n".join(lines))  # keywords are typed text


def status_markdown(notes: list[str], errors: list[str] = (), progress: str = "", done: bool = False) -> str:
    lines = [f"⏳ {progress}…"] if progress and not done else []
    lines += [f"⚠️ {e}" for e in errors] + [f"ℹ️ {n}" for n in notes]
    return safe_markdown("\n\n".join(lines))  # errors may quote a server or the model


def _options(variants, model, temperature, seed) -> WriteOptions:
    """The controls as sent; WriteOptions.checked() (run by the service) names a bad one."""
    return WriteOptions(model=model or None, variants=variants, temperature=temperature, seed=seed)


def _export_path(name: str, data: bytes | str) -> str:
    folder = Path(tempfile.mkdtemp(prefix="studio-writer-"))
    path = folder / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------------------------------------------
# the tab


def build_writer_tab(demo: gr.Blocks, service: WriterService, browser_id: gr.BrowserState) -> None:
    library = service.library
    models = service.models
    store = service.drafts
    common = library.common
    labels = dict((spec, label) for label, spec in models.choices())
    first = "blog_post" if "blog_post" in library.templates else next(iter(library.templates))
    start = library.templates[first]

    def draft_choices(user: str) -> list[tuple[str, str]]:
        names = {t.name: t.label for t in library.templates.values()}
        return [(f"{d.title} · {names.get(d.template, d.template)}", d.id) for d in store.list(user)]

    with gr.Tab("Writer", id="writer") as tab:
        draft_id = gr.State(None)  # the open draft
        job_id = gr.State(None)  # the generation Stop ends
        undo = gr.State([])  # earlier draft texts, newest last
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                template = gr.Dropdown(choices=[(t.label, t.name) for t in library.templates.values()], value=first,
                                       label="Template", elem_id="writer-template")
                template_info = gr.Markdown(f"*{start.description}*")
                topic = gr.Textbox(label="Topic *", lines=2, max_lines=6, elem_id="writer-topic")
                audience = gr.Textbox(label="Audience", elem_id="writer-audience")
                tone = gr.Dropdown(choices=list(common.tones), allow_custom_value=True, label="Tone",
                                   info="A preset, or type your own", elem_id="writer-tone")
                length = gr.Number(precision=0, label="Target length (words)", elem_id="writer-length")
                keywords = gr.Textbox(label="Keywords that must appear", placeholder="comma-separated",
                                      elem_id="writer-keywords")
                cta = gr.Textbox(label="Call to action", elem_id="writer-cta")
                language = gr.Dropdown(choices=list(common.languages), value="English", allow_custom_value=True,
                                       label="Language", elem_id="writer-language")
                slot_texts = [gr.Textbox(visible=False, elem_id=f"writer-extra-{k + 1}") for k in range(EXTRA_SLOTS)]
                slot_choices = [gr.Dropdown(visible=False, allow_custom_value=True, elem_id=f"writer-choice-{k + 1}")
                                for k in range(EXTRA_SLOTS)]
                variants = gr.Slider(1, MAX_VARIANTS, value=1, step=1, label="Variants",
                                     info="Written side by side; pick one", elem_id="writer-variants")
                with gr.Accordion("Model and sampling", open=False):
                    model = gr.Dropdown(choices=[(lbl, s) for s, lbl in labels.items()], value=models.default,
                                        label="Model", elem_id="writer-model")
                    temperature = gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="Temperature",
                                            info="Variants need some randomness (at least 0.3)")
                    seed = gr.Number(value=-1, precision=0, label="Seed", info="-1 = random; variant i uses seed + i")
                with gr.Row():
                    outline_btn = gr.Button("Outline first", visible=start.kind == "long", elem_id="writer-outline-btn")
                    write_btn = gr.Button("Write", variant="primary", elem_id="writer-write")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="writer-stop")
                outline = gr.Textbox(label="Outline: edit it, then Write (empty: one is written first)", lines=8,
                                     max_lines=20, visible=start.kind == "long", elem_id="writer-outline")
                status = gr.Markdown(elem_id="writer-status")
            with gr.Column(scale=5):
                with gr.Row(visible=False) as variant_row:
                    variant_cols, variant_boxes, use_buttons = [], [], []
                    for i in range(MAX_VARIANTS):
                        with gr.Column(min_width=200, visible=i < 2) as col:
                            variant_boxes.append(gr.Textbox(label=f"Variant {i + 1}", lines=12, max_lines=30,
                                                            interactive=False, elem_id=f"writer-variant-{i + 1}"))
                            use_buttons.append(gr.Button(f"Use variant {i + 1}", size="sm",
                                                         elem_id=f"writer-use-{i + 1}"))
                        variant_cols.append(col)
                draft = gr.Textbox(label="Draft (edit freely: kept when you click elsewhere)", lines=16, max_lines=60,
                                   buttons=["copy"], elem_id="writer-draft")
                stats = gr.Markdown(elem_id="writer-stats")
                with gr.Accordion("Rewrite", open=True):
                    with gr.Row():
                        rewrite_op = gr.Dropdown(choices=[(op.label, op.name) for op in library.rewrites.values()],
                                                 value=next(iter(library.rewrites)), label="Rewrite",
                                                 elem_id="writer-rewrite-op", scale=2)
                        rewrite_lang = gr.Dropdown(choices=list(common.languages), value="Spanish",
                                                   allow_custom_value=True, label="Into (translate)", scale=2)
                        rewrite_btn = gr.Button("Rewrite", scale=1, elem_id="writer-rewrite")
                        undo_btn = gr.Button("Undo", scale=1, elem_id="writer-undo")
                    selection = gr.Textbox(label="Selection (select text in the draft, or paste it; empty = "
                                                 "the whole draft)", lines=2, max_lines=8, elem_id="writer-selection")
                with gr.Row():
                    md_btn = gr.Button("Export Markdown", size="sm")
                    html_btn = gr.Button("Export HTML", size="sm")
                    docx_btn = gr.Button("Export DOCX", size="sm")
                export_file = gr.File(label="Download", interactive=False, visible=False)
                with gr.Accordion("Drafts", open=False):
                    drafts = gr.Dropdown(choices=[], label="Your drafts (newest first)", elem_id="writer-drafts")
                    with gr.Row():
                        new_btn = gr.Button("New draft", size="sm")
                        save_btn = gr.Button("Save", size="sm", elem_id="writer-save")
                        delete_btn = gr.Button("Delete draft", variant="stop", size="sm")

        brief_controls = [topic, audience, tone, length, keywords, cta, language, *slot_texts, *slot_choices]
        brief_outputs = [template_info, *brief_controls]
        option_controls = [variants, model, temperature, seed]

        def brief_from(tpl, topic_v, audience_v, tone_v, length_v, keywords_v, cta_v, language_v, *slots):
            template_obj = service.template(tpl)
            return template_obj, collect_brief(template_obj, topic_v, audience_v, tone_v, length_v, keywords_v,
                                               cta_v, language_v, list(slots[:EXTRA_SLOTS]),
                                               list(slots[EXTRA_SLOTS:]))

        # -- template choice -------------------------------------------------------------------------
        def on_template(tpl):
            t = library.templates.get(tpl, start)
            long = t.kind == "long"
            return [*brief_updates(t, None, keep_typed=True), gr.update(visible=long), gr.update(visible=long)]

        template.input(on_template, [template], [*brief_outputs, outline_btn, outline], **PRIVATE)
        demo.load(lambda: brief_updates(start, None), None, brief_outputs, **PRIVATE)

        def refresh_drafts(bid, did, request: gr.Request):
            try:
                return gr.Dropdown(choices=draft_choices(user_id(bid, request)), value=did)
            except gr.Error:
                return gr.Dropdown()

        tab.select(refresh_drafts, [browser_id, draft_id], [drafts], **PRIVATE)

        # -- writing ------------------------------------------------------------------------------------
        def accept_write(bid, did, current_text, history, tpl, topic_v, audience_v, tone_v, length_v, keywords_v, cta_v,
                         language_v, x1, x2, x3, x4, c1, c2, c3, c4, n, model_v, temp, seed_v, outline_v,
                         request: gr.Request, progress=gr.Progress()):
            """Check the brief, load the model, store a new draft. On a problem nothing in the form
            changes (gr.Error leaves the outputs alone)."""
            user = user_id(bid, request)
            try:
                template_obj, fields = brief_from(tpl, topic_v, audience_v, tone_v, length_v, keywords_v, cta_v,
                                                  language_v, x1, x2, x3, x4, c1, c2, c3, c4)
                brief = service.prepare(template_obj.name, fields)
                options, _ = _options(n, model_v, temp, seed_v).checked()
                service.backend(options.model, lambda f, d: progress(f, desc=d))
                if did and current_text is not None:
                    _keep_text(user, did, current_text)
                outline_text = outline_v if template_obj.kind == "long" else ""
                new = service.start_draft(user, brief, options, outline_text or "")
            except FAILURES as exc:
                raise user_error(_message(exc), title="Nothing written") from None
            n_shown = options.variants
            if (current_text or "").strip() and (not history or history[-1] != current_text):
                history = (history + [current_text])[-20:]  # Undo brings back what the new piece replaces
            return (new.id, new.id, history, gr.update(visible=n_shown > 1),
                    *[gr.update(visible=i < n_shown) for i in range(MAX_VARIANTS)],
                    *[gr.update(value="") for _ in range(MAX_VARIANTS)], "", "",
                    status_markdown(brief.notes, progress="Starting"))

        def stream_write(bid, did, request: gr.Request, progress=gr.Progress()) -> Iterator:
            user = user_id(bid, request)
            update = None
            try:
                for update in service.write_draft(user, did):
                    if update.total_steps:
                        progress((min(update.done_steps, update.total_steps), update.total_steps),
                                 desc=update.progress or "Writing", unit="parts")
                    n = len(update.texts)
                    single = n == 1
                    done = update.status != "streaming"
                    texts = update.texts + [""] * (MAX_VARIANTS - n)
                    draft_text = update.texts[0] if (single or done) else gr.skip()
                    stats_md = stats_markdown(service.analyse(update.texts[0], _keywords_of(user, did),
                                                              _template_of(user, did))) if done else gr.skip()
                    yield (update.outline if update.outline else gr.skip(),
                           status_markdown(update.notes, update.errors,
                                           update.progress or ("Writing the outline" if update.phase == "outline"
                                                               else "Writing"), done),
                           *[gr.skip() if single else t for t in texts], draft_text, stats_md)
            except FAILURES as exc:
                raise user_error(_message(exc), title="Writing stopped") from None
            if update is not None and update.status != "streaming":
                if update.errors and not any(t.strip() for t in update.texts):
                    raise user_error(update.errors[0], title="Nothing written")
                if not any(t.strip() for t in update.texts) and update.status == "complete":
                    raise user_error("The model returned no text. Your brief is unchanged: try again, raise the "
                                     "temperature, or pick another model.", title="Nothing written")
                if update.errors:
                    gr.Warning(update.errors[0], title="Writing was cut")
                elif update.warnings:
                    gr.Warning(update.warnings[0], title="Check the result")

        def _keywords_of(user: str, did: str) -> Any:
            try:
                return store.get(user, did).brief.get("keywords")
            except NotFoundError:
                return None

        def _template_of(user: str, did: str) -> str | None:
            try:
                return store.get(user, did).template
            except NotFoundError:
                return None

        def _keep_text(user: str, did: str, text: str) -> None:
            try:
                if store.get(user, did).text != text:
                    store.save_text(user, did, text)
            except NotFoundError:
                pass

        write_inputs = [browser_id, draft_id, draft, undo, template, *brief_controls, *option_controls, outline]
        write_outputs = [draft_id, job_id, undo, variant_row, *variant_cols, *variant_boxes, draft, stats, status]
        stream_outputs = [outline, status, *variant_boxes, draft, stats]
        gen_kwargs = dict(concurrency_limit=service.settings.concurrency_limit, concurrency_id="writer-generate",
                          **PRIVATE)
        write_btn.click(accept_write, write_inputs, write_outputs, **PRIVATE) \
            .success(stream_write, [browser_id, draft_id], stream_outputs, **gen_kwargs) \
            .then(refresh_drafts, [browser_id, draft_id], [drafts], **PRIVATE)

        # outline only (long pieces): streams into the editable outline box; nothing is stored
        def accept_outline(bid, tpl, topic_v, audience_v, tone_v, length_v, keywords_v, cta_v, language_v,
                           x1, x2, x3, x4, c1, c2, c3, c4, n, model_v, temp, seed_v,
                           request: gr.Request, progress=gr.Progress()):
            user_id(bid, request)
            try:
                template_obj, fields = brief_from(tpl, topic_v, audience_v, tone_v, length_v, keywords_v, cta_v,
                                                  language_v, x1, x2, x3, x4, c1, c2, c3, c4)
                brief = service.prepare(template_obj.name, fields)
                if template_obj.kind != "long":
                    raise InputError(f"{template_obj.label} is a short piece: press Write.")
                options, _ = _options(n, model_v, temp, seed_v).checked()
                service.backend(options.model, lambda f, d: progress(f, desc=d))
            except FAILURES as exc:
                raise user_error(_message(exc), title="No outline") from None
            return uuid.uuid4().hex, status_markdown(brief.notes, progress="Writing the outline")

        def stream_outline(bid, job, tpl, topic_v, audience_v, tone_v, length_v, keywords_v, cta_v, language_v,
                           x1, x2, x3, x4, c1, c2, c3, c4, n, model_v, temp, seed_v, request: gr.Request):
            user = user_id(bid, request)
            try:
                template_obj, fields = brief_from(tpl, topic_v, audience_v, tone_v, length_v, keywords_v, cta_v,
                                                  language_v, x1, x2, x3, x4, c1, c2, c3, c4)
                brief = service.prepare(template_obj.name, fields)
                options = _options(n, model_v, temp, seed_v)
                text = ""
                for text in service.job(user, job, lambda cancel: service.stream_outline(brief, options, cancel)):
                    yield text, gr.skip()
                outline_obj, notes = service.resolve_outline(brief, text)
                yield outline_obj.as_text(), status_markdown(
                    brief.notes + notes + ["Edit the outline if you like, then press Write."])
            except FAILURES as exc:
                raise user_error(_message(exc), title="No outline") from None

        outline_inputs = [template, *brief_controls, *option_controls]
        outline_btn.click(accept_outline, [browser_id, *outline_inputs], [job_id, status], **PRIVATE) \
            .success(stream_outline, [browser_id, job_id, *outline_inputs], [outline, status], **gen_kwargs)

        def stop(bid, job, request: gr.Request):
            service.stop(user_id(bid, request), job)

        stop_btn.click(stop, [browser_id, job_id], None, queue=False, **PRIVATE)

        # -- picking, editing, saving ---------------------------------------------------------------------
        def picker(index: int):
            def pick(bid, did, current_text, history, keywords_v, tpl, request: gr.Request):
                user = user_id(bid, request)
                if not did:
                    raise user_error("Write something first.", title="Nothing to pick")
                try:
                    chosen = store.pick(user, did, index)
                except FAILURES as exc:
                    raise user_error(_message(exc), title="Not picked") from None
                history = (history + [current_text])[-20:] if current_text else history
                return chosen.text, history, stats_markdown(service.analyse(chosen.text, keywords_v, tpl))
            return pick

        for i, button in enumerate(use_buttons):
            button.click(picker(i), [browser_id, draft_id, draft, undo, keywords, template], [draft, undo, stats],
                         **PRIVATE)

        def on_edit(text, keywords_v, tpl):
            return stats_markdown(service.analyse(text, keywords_v, tpl))

        draft.input(on_edit, [draft, keywords, template], [stats], queue=False, **PRIVATE)
        keywords.blur(on_edit, [draft, keywords, template], [stats], queue=False, **PRIVATE)

        def save(bid, did, text, tpl, topic_v, audience_v, tone_v, length_v, keywords_v, cta_v, language_v,
                 x1, x2, x3, x4, c1, c2, c3, c4, n, model_v, temp, seed_v, request: gr.Request):
            """Keep the draft text; with no draft open, store a new one with the current brief."""
            user = user_id(bid, request)
            if did:
                _keep_text(user, did, text or "")
                return did, gr.skip()
            if not (text or "").strip():
                return did, gr.skip()
            try:
                template_obj, fields = brief_from(tpl, topic_v, audience_v, tone_v, length_v, keywords_v, cta_v,
                                                  language_v, x1, x2, x3, x4, c1, c2, c3, c4)
                options, _ = _options(n, model_v, temp, seed_v).checked()
            except FAILURES as exc:
                raise user_error(_message(exc), title="Not saved") from None
            title = str(fields.get("topic") or "").strip() or text.strip().splitlines()[0][:80]
            new = store.create(user, title, template_obj.name, fields, asdict(options), text=text)
            return new.id, gr.Dropdown(choices=draft_choices(user), value=new.id)

        save_inputs = [browser_id, draft_id, draft, template, *brief_controls, *option_controls]
        draft.blur(save, save_inputs, [draft_id, drafts], **PRIVATE)
        save_btn.click(save, save_inputs, [draft_id, drafts], **PRIVATE)

        def on_select(evt: gr.SelectData):
            return evt.value if isinstance(evt.value, str) and evt.value.strip() else gr.skip()

        draft.select(on_select, None, [selection], queue=False, **PRIVATE)

        # -- rewriting ------------------------------------------------------------------------------------
        def accept_rewrite(bid, text, sel, op, lang, history, model_v, request: gr.Request, progress=gr.Progress()):
            """Check the request and load the model; keep the current text for Undo."""
            user_id(bid, request)
            try:
                service.check_rewrite(text or "", sel or "", op, lang)
                service.backend(model_v or None, lambda f, d: progress(f, desc=d))
            except FAILURES as exc:
                raise user_error(_message(exc), title="Not rewritten") from None
            return uuid.uuid4().hex, (history + [text])[-20:]

        def stream_rewrite(bid, did, job, text, sel, op, lang, model_v, temp, seed_v, keywords_v, tpl,
                           request: gr.Request):
            user = user_id(bid, request)
            options = _options(1, model_v, temp, seed_v)
            update = None
            try:
                run = service.job(user, job, lambda cancel: service.rewrite(text, sel or "", op, lang, options, cancel))
                for update in run:
                    yield update.text, gr.skip(), status_markdown(update.notes, [update.error] if update.error else [],
                                                                  "Rewriting", update.done)
            except FAILURES as exc:
                raise user_error(_message(exc), title="Not rewritten") from None
            if update is not None:
                if did:
                    _keep_text(user, did, update.text)
                yield update.text, stats_markdown(service.analyse(update.text, keywords_v, tpl)), \
                    status_markdown(update.notes, [update.error] if update.error else [], done=True)
                if update.error:
                    gr.Warning(update.error, title="Rewrite cut")

        rewrite_btn.click(accept_rewrite, [browser_id, draft, selection, rewrite_op, rewrite_lang, undo, model],
                          [job_id, undo], **PRIVATE) \
            .success(stream_rewrite, [browser_id, draft_id, job_id, draft, selection, rewrite_op, rewrite_lang, model,
                                      temperature, seed, keywords, template], [draft, stats, status], **gen_kwargs)

        def undo_last(bid, did, history, keywords_v, tpl, request: gr.Request):
            user = user_id(bid, request)
            if not history:
                raise user_error("There is nothing to undo.", title="Nothing to undo")
            text = history[-1]
            if did:
                _keep_text(user, did, text)
            return text, history[:-1], stats_markdown(service.analyse(text, keywords_v, tpl))

        undo_btn.click(undo_last, [browser_id, draft_id, undo, keywords, template], [draft, undo, stats], **PRIVATE)

        # -- export ----------------------------------------------------------------------------------------
        def exporter(ext: str):
            def run(bid, did, text, topic_v, language_v, request: gr.Request):
                user = user_id(bid, request)
                if not (text or "").strip():
                    raise user_error("The draft is empty: there is nothing to export.", title="Nothing to export")
                title = (topic_v or "").strip() or "Draft"
                if did:
                    try:
                        title = store.get(user, did).title
                    except NotFoundError:
                        pass
                name = writer_export.export_filename(title, did or "", ext)
                if ext == "md":
                    data: bytes | str = writer_export.to_markdown(text)
                elif ext == "html":
                    data = writer_export.to_html(text, title, _lang_code(language_v))
                else:
                    data = writer_export.to_docx(text, title)
                return gr.File(value=_export_path(name, data), visible=True)
            return run

        export_inputs = [browser_id, draft_id, draft, topic, language]
        md_btn.click(exporter("md"), export_inputs, [export_file], **PRIVATE)
        html_btn.click(exporter("html"), export_inputs, [export_file], **PRIVATE)
        docx_btn.click(exporter("docx"), export_inputs, [export_file], **PRIVATE)

        # -- drafts ----------------------------------------------------------------------------------------
        def open_draft(bid, did, request: gr.Request):
            user = user_id(bid, request)
            try:
                d = store.get(user, did)
            except NotFoundError:
                raise user_error("That draft no longer exists.", title="Not found") from None
            t = library.templates.get(d.template, start)
            n = max(1, len(d.variants))
            opts = d.options
            notes = [f"Cut: {d.note}"] if d.status == "cut" and d.note else []
            variant_texts = d.variants + [""] * (MAX_VARIANTS - len(d.variants))
            return (d.id, d.template, *brief_updates(t, d.brief), gr.update(visible=t.kind == "long"),
                    gr.update(visible=t.kind == "long", value=d.outline),
                    int(opts.get("variants") or 1), opts.get("model") if opts.get("model") in labels else models.default,
                    float(opts.get("temperature", 0.7)), -1 if opts.get("seed") is None else int(opts["seed"]),
                    gr.update(visible=n > 1), *[gr.update(visible=i < n) for i in range(MAX_VARIANTS)],
                    *variant_texts[:MAX_VARIANTS], d.text,
                    stats_markdown(service.analyse(d.text, d.brief.get("keywords"), d.template)),
                    status_markdown(notes), [])

        drafts.input(open_draft, [browser_id, drafts],
                     [draft_id, template, *brief_outputs, outline_btn, outline, *option_controls, variant_row,
                      *variant_cols, *variant_boxes, draft, stats, status, undo], **PRIVATE)

        def new_draft(bid, request: gr.Request):
            user = user_id(bid, request)
            return (None, gr.Dropdown(choices=draft_choices(user), value=None), gr.update(visible=False),
                    *[gr.update(value="") for _ in range(MAX_VARIANTS)], "", "", "", "", [])

        new_btn.click(new_draft, [browser_id],
                      [draft_id, drafts, variant_row, *variant_boxes, draft, stats, status, outline, undo], **PRIVATE)

        def delete_draft(bid, did, request: gr.Request):
            user = user_id(bid, request)
            if not did:
                raise user_error("Open a draft to delete it.", title="Nothing to delete")
            service.stop(user, did)
            try:
                store.delete(user, did)
            except NotFoundError:
                pass
            return new_draft(bid, request)

        delete_btn.click(delete_draft, [browser_id, draft_id],
                         [draft_id, drafts, variant_row, *variant_boxes, draft, stats, status, outline, undo],
                         **PRIVATE)


def _message(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


_LANG_CODES = {"english": "en", "spanish": "es", "french": "fr", "german": "de", "italian": "it",
               "portuguese": "pt", "dutch": "nl", "polish": "pl", "swedish": "sv", "japanese": "ja",
               "chinese": "zh", "korean": "ko", "arabic": "ar", "hindi": "hi", "turkish": "tr"}


def _lang_code(language: str | None) -> str:
    return _LANG_CODES.get((language or "").strip().lower(), "en")


# ------------------------------------------------------------------------------------------------------
# the named API endpoint


def build_writer_api(service: WriterService, jobs: UserSlots) -> None:
    def write(topic: str, template: str = "blog_post", audience: str = "", tone: str = "", length: int = 0,
              keywords: str | list | None = None, cta: str = "", language: str = "", details: dict | None = None,
              outline: str = "", model: str = "", temperature: float = 0.7, top_p: float = 0.95,
              seed: int = -1, request: gr.Request = None) -> Iterator[str]:  # type: ignore[assignment]
        """Write a piece from a brief, streaming the text as it grows. Nothing is stored.

        Args:
            topic: what the piece is about (the product, the news...).
            template: a template name, e.g. blog_post, product_description, ad_aida, ad_pas, social_x,
                social_linkedin, social_instagram, email_newsletter, press_release, landing_hero, seo_meta.
            audience: who it is for.
            tone: a preset (Professional, Friendly, Persuasive...) or free text.
            length: target length in words; 0 for the template's default (clamped to its range).
            keywords: keywords that must appear, comma-separated or a list.
            cta: the call to action.
            language: output language (default English).
            details: the template's other fields by name, e.g. {"features": "..."} or {"channel": "Search ad"}.
            outline: for long templates, an outline to write from (Title: line, then one heading per line).
            model: a configured model spec; empty for the default.
            temperature: sampling temperature.
            top_p: nucleus sampling.
            seed: -1 for random.
        """
        text, final = "", None
        try:
            if isinstance(keywords, list):
                keywords = validate.texts("keywords", keywords, max_items=MAX_LIST_ITEMS, max_chars=TEXT_LIMIT)
            extra = validate.fields("details", details, max_items=MAX_DETAILS, max_chars=TEXTAREA_LIMIT)
            fields: dict[str, Any] = {"topic": topic, "audience": audience, "tone": tone, "length": length or None,
                                      "keywords": keywords, "cta": cta, "language": language, **extra}
            options, _ = WriteOptions(model=model or None, variants=1, temperature=temperature, top_p=top_p,
                                      seed=seed).checked()
            brief = service.prepare(template, fields)
            for note in brief.notes:
                gr.Warning(note)
            with jobs.hold(api_user(request)):  # a few at once per user; more get "busy"
                for final in service.write(brief, options, outline or ""):
                    if final.phase != "outline" and final.texts[0] != text:
                        text = final.texts[0]
                        yield text
        except FAILURES as exc:
            raise user_error(_message(exc), title="Nothing written") from None
        if final is not None:
            for warning in final.warnings:
                gr.Warning(warning)
            if final.errors:
                raise user_error(final.errors[0], title="Writing was cut")
            if not text.strip():
                raise user_error("The model returned no text; try again, raise the temperature, or pick another model.",
                                 title="Nothing written")

    gr.api(api_endpoint(write, title="Nothing written"), api_name="write",
           concurrency_limit=service.settings.concurrency_limit, concurrency_id="writer-generate")
