"""The writer tab's components: the brief form and the output panel as small dataclasses, and the pure
helpers that move a brief in and out of the controls (no handlers here; ui/writer.py wires them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from core.errors import BackendError, InputError, NotFoundError
from core.safe_html import safe_markdown
from core.writer.service import MAX_VARIANTS, Analysis, WriteOptions, WriterService
from core.writer.templates import STANDARD_FIELDS, Template
from core.writer.text import reading_time_label
from ui.model_pickers import ModelPickers

EXTRA_SLOTS = 4  # template-specific fields beyond the standard brief (facts, platform, brand...)
PRIVATE = dict(api_visibility="private")
# Copy runs in the browser only: the draft as shown, to the clipboard, and the button says so for a moment.
COPY_JS = """
() => {
    const ta = document.querySelector('#writer-draft textarea');
    const button = document.getElementById('writer-copy');
    if (!ta) return;
    navigator.clipboard.writeText(ta.value).then(() => {
        if (!button) return;
        button.textContent = 'Copied';
        setTimeout(() => { button.textContent = 'Copy'; }, 1500);
    }).catch(() => { ta.select(); });
}
"""
FAILURES = (InputError, BackendError, NotFoundError, KeyError, IndexError)  # what a handler turns into a message


def error_message(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


# ------------------------------------------------------------------------------------------------------
# pure helpers (no gradio state): brief values in and out of the controls


def collect_brief(
    template: Template, topic, audience, tone, length, keywords, cta, language, slot_texts: list, slot_choices: list
) -> dict[str, Any]:
    """Field name -> value, for the fields the template declares."""
    standard = {
        "topic": topic,
        "audience": audience,
        "tone": tone,
        "length": length,
        "keywords": keywords,
        "cta": cta,
        "language": language,
    }
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
        kw: dict[str, Any] = dict(visible=True, label=f.label + (" *" if f.required else ""), info=f.help or None)
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
        texts.append(
            gr.update(
                visible=f is not None and not is_choice,
                label=label,
                value=value if f is not None and not is_choice else "",
                lines=4 if f is not None and f.input == "textarea" else 1,
                placeholder=f.placeholder if f else "",
            )
        )
        choices.append(
            gr.update(
                visible=is_choice,
                label=label,
                choices=list(f.choices) if is_choice else [],
                allow_custom_value=bool(f.custom) if is_choice else True,
                value=value if is_choice else None,
            )
        )
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
    if cov.counts:  # words, not symbols: an emoji the font lacks is an empty box, and says nothing to a reader
        present = "present: " + ", ".join(f"{k} ({cov.counts[k]})" for k in cov.present) if cov.present else ""
        missing = "missing: " + ", ".join(cov.missing) if cov.missing else ""
        lines.append("Keywords " + " · ".join(p for p in (present, missing) if p))
    for check in analysis.checks:
        lines.append(("OK: " if check.ok else "Check: ") + check.message())
    return safe_markdown("\n\n".join(lines))  # keywords are typed text


def status_markdown(notes: list[str], errors: list[str] = (), progress: str = "", done: bool = False) -> str:
    lines = [f"Working: {progress}…"] if progress and not done else []
    lines += [f"Problem: {e}" for e in errors] + [f"Note: {n}" for n in notes]
    return safe_markdown("\n\n".join(lines))  # errors may quote a server or the model


# ------------------------------------------------------------------------------------------------------
# the components, in small builders


@dataclass
class BriefForm:
    """The left column: template, brief fields, options, the outline and the buttons that start work."""

    template: gr.Dropdown
    info: gr.Markdown
    topic: gr.Textbox
    audience: gr.Textbox
    tone: gr.Dropdown
    length: gr.Number
    keywords: gr.Textbox
    cta: gr.Textbox
    language: gr.Dropdown
    slot_texts: list[gr.Textbox]
    slot_choices: list[gr.Dropdown]
    variants: gr.Slider
    model: gr.Dropdown
    temperature: gr.Slider
    seed: gr.Number
    outline_btn: gr.Button
    write_btn: gr.Button
    stop_btn: gr.Button
    outline: gr.Textbox
    status: gr.Markdown

    @property
    def controls(self) -> list[gr.components.Component]:
        """The brief's inputs, in the order brief_updates() fills them."""
        return [
            self.topic,
            self.audience,
            self.tone,
            self.length,
            self.keywords,
            self.cta,
            self.language,
            *self.slot_texts,
            *self.slot_choices,
        ]

    @property
    def options(self) -> list[gr.components.Component]:
        return [self.variants, self.model, self.temperature, self.seed]

    def inputs(self) -> set[gr.components.Component]:
        """Everything read() needs."""
        return {self.template, *self.controls, *self.options}

    def read(self, v: dict) -> tuple[str, dict[str, Any], WriteOptions]:
        """(template name, brief fields, options as sent) from a set-form handler's values."""
        return v[self.template], self.fields(v), self.write_options(v)

    def fields(self, v: dict) -> dict[str, Any]:
        """Brief fields for the template chosen (an unknown one is the service's InputError)."""
        return collect_brief(
            self._template(v[self.template]),
            v[self.topic],
            v[self.audience],
            v[self.tone],
            v[self.length],
            v[self.keywords],
            v[self.cta],
            v[self.language],
            [v[c] for c in self.slot_texts],
            [v[c] for c in self.slot_choices],
        )

    def write_options(self, v: dict, variants: int | None = None) -> WriteOptions:
        """The options as sent; WriteOptions.checked() (run by the service) names a bad one."""
        return WriteOptions(
            model=v[self.model] or None,
            variants=v[self.variants] if variants is None else variants,
            temperature=v[self.temperature],
            seed=v[self.seed],
        )

    _template: Any = None  # service.template, set by the builder


@dataclass
class OutputPanel:
    """The right column (first on a phone): status, variants side by side, the draft and its stats, a rewrite
    under review, rewrite tools, export, drafts."""

    variant_row: gr.Row
    variant_cols: list[gr.Column]
    variant_boxes: list[gr.Textbox]
    use_buttons: list[gr.Button]
    draft: gr.Textbox
    stats: gr.Markdown
    review: gr.Column  # the rewrite beside the original, with Accept / Discard
    diff: gr.HTML
    accept_btn: gr.Button
    discard_btn: gr.Button
    rewrite_op: gr.Dropdown
    rewrite_lang: gr.Dropdown
    rewrite_btn: gr.Button
    undo_btn: gr.Button
    sel_range: gr.Textbox  # "start:end" of the text selected in the draft, filled in by the browser (SELECTION_JS)
    export_buttons: dict[str, gr.Button]
    export_file: gr.File
    drafts: gr.Dropdown
    new_btn: gr.Button
    save_btn: gr.Button
    delete_btn: gr.Button


def brief_form(service: WriterService, start: Template, first: str, pickers: ModelPickers) -> BriefForm:
    library, common = service.library, service.library.common
    # the brief scrolls in its own box on a wide screen, so Write under it is always in sight (writer.css)
    with gr.Column(elem_id="writer-brief-fields"):
        template = gr.Dropdown(
            choices=[(t.label, t.name) for t in library.templates.values()],
            value=first,
            label="Template",
            elem_id="writer-template",
        )
        info = gr.Markdown(f"*{start.description}*")
        topic = gr.Textbox(label="Topic *", lines=2, max_lines=6, elem_id="writer-topic")
        audience = gr.Textbox(label="Audience", elem_id="writer-audience")
        tone = gr.Dropdown(
            choices=list(common.tones),
            allow_custom_value=True,
            label="Tone",
            info="A preset, or type your own",
            elem_id="writer-tone",
        )
        length = gr.Number(precision=0, label="Target length (words)", elem_id="writer-length")
        keywords = gr.Textbox(
            label="Keywords that must appear", placeholder="comma-separated", elem_id="writer-keywords"
        )
        cta = gr.Textbox(label="Call to action", elem_id="writer-cta")
        language = gr.Dropdown(
            choices=list(common.languages),
            value="English",
            allow_custom_value=True,
            label="Language",
            elem_id="writer-language",
        )
        slot_texts = [gr.Textbox(visible=False, elem_id=f"writer-extra-{k + 1}") for k in range(EXTRA_SLOTS)]
        slot_choices = [
            gr.Dropdown(visible=False, allow_custom_value=True, elem_id=f"writer-choice-{k + 1}")
            for k in range(EXTRA_SLOTS)
        ]
        variants = gr.Slider(
            1,
            MAX_VARIANTS,
            value=1,
            step=1,
            label="Variants",
            info="Written side by side; pick one",
            elem_id="writer-variants",
        )
        with gr.Accordion("Model and sampling", open=False):
            with gr.Row(equal_height=False):
                model = pickers.picker("text", elem_id="writer-model", scale=4)
                pickers.get_more_button(elem_id="writer-get-more")
            temperature = gr.Slider(
                0.0, 1.5, value=0.7, step=0.05, label="Temperature", info="Variants need some randomness (at least 0.3)"
            )
            seed = gr.Number(value=-1, precision=0, label="Seed", info="-1 = random; variant i uses seed + i")
        outline = gr.Textbox(
            label="Outline: edit it, then Write (empty: one is written first)",
            lines=8,
            max_lines=20,
            visible=start.kind == "long",
            elem_id="writer-outline",
        )
    with gr.Row(elem_id="writer-actions"):  # on a phone: a bar fixed at the bottom (writer.css)
        outline_btn = gr.Button("Outline first", visible=start.kind == "long", elem_id="writer-outline-btn")
        write_btn = gr.Button("Write", variant="primary", elem_id="writer-write")
        stop_btn = gr.Button("Stop", visible=False, elem_id="writer-stop")  # shown only while something runs
    status = gr.Markdown(elem_id="writer-status", render=False)  # shown above the draft (output_panel)
    form = BriefForm(
        template,
        info,
        topic,
        audience,
        tone,
        length,
        keywords,
        cta,
        language,
        slot_texts,
        slot_choices,
        variants,
        model,
        temperature,
        seed,
        outline_btn,
        write_btn,
        stop_btn,
        outline,
        status,
    )
    form._template = service.template
    return form


def _variants_row() -> tuple[gr.Row, list[gr.Column], list[gr.Textbox], list[gr.Button]]:
    with gr.Row(visible=False) as row:
        cols, boxes, buttons = [], [], []
        for i in range(MAX_VARIANTS):
            with gr.Column(min_width=200, visible=i < 2) as col:
                boxes.append(
                    gr.Textbox(
                        label=f"Variant {i + 1}",
                        lines=12,
                        max_lines=30,
                        interactive=False,
                        elem_id=f"writer-variant-{i + 1}",
                    )
                )
                buttons.append(
                    gr.Button(f"Use variant {i + 1}", size="sm", interactive=False, elem_id=f"writer-use-{i + 1}")
                )
            cols.append(col)
    return row, cols, boxes, buttons


def output_panel(service: WriterService, status: gr.Markdown) -> OutputPanel:
    library, common = service.library, service.library.common
    status.render()
    row, cols, boxes, buttons = _variants_row()
    draft = gr.Textbox(
        label="Draft",
        info="Edit freely: kept when you click elsewhere. Select a part to rewrite only that part.",
        placeholder="Your piece appears here. Fill in the brief and press Write, or type or paste text.",
        lines=16,
        max_lines=60,
        # no copy icon inside the box: Gradio puts it inside the <label>, which then names the icon instead of the
        # text area (the draft had no accessible name); a Copy button sits under the draft instead
        elem_id="writer-draft",
    )
    stats = gr.Markdown(elem_id="writer-stats")
    with gr.Column(visible=False, elem_id="writer-review") as review:
        diff = gr.HTML(elem_id="writer-diff")
        with gr.Row():
            accept_btn = gr.Button("Accept rewrite", size="sm", elem_id="writer-accept")
            discard_btn = gr.Button("Discard", size="sm", elem_id="writer-discard")
    with gr.Accordion("Rewrite", open=True, elem_classes=["writer-needs-draft"]):
        with gr.Row():
            first_op = next(iter(library.rewrites.values()))
            rewrite_op = gr.Dropdown(
                choices=[(op.label, op.name) for op in library.rewrites.values()],
                value=first_op.name,
                label="Rewrite",
                info="The selected part of the draft, or all of it",
                elem_id="writer-rewrite-op",
                scale=2,
            )
            rewrite_lang = gr.Dropdown(
                choices=list(common.languages),
                value="Spanish",
                allow_custom_value=True,
                label="Into (translate)",
                visible=first_op.needs_language,
                elem_id="writer-rewrite-lang",
                scale=2,
            )
            rewrite_btn = gr.Button("Rewrite", scale=1, elem_id="writer-rewrite")
        sel_range = gr.Textbox(visible=False, elem_id="writer-sel-range")
    with gr.Row(elem_id="writer-draft-tools"):
        undo_btn = gr.Button("Undo", size="sm", visible=False, elem_id="writer-undo")  # once there is something
        needs = ["writer-needs-draft"]  # hidden while the draft is empty (writer.css)
        gr.Button("Copy", size="sm", elem_id="writer-copy", elem_classes=needs).click(
            None, None, None, js=COPY_JS, **PRIVATE
        )
        export_buttons = {
            "md": gr.Button("Export Markdown", size="sm", elem_id="writer-export-md", elem_classes=needs),
            "html": gr.Button("Export HTML", size="sm", elem_id="writer-export-html", elem_classes=needs),
            "docx": gr.Button("Export DOCX", size="sm", elem_id="writer-export-docx", elem_classes=needs),
        }
    export_file = gr.File(label="Download", interactive=False, visible=False)
    with gr.Accordion("Drafts", open=False):
        drafts = gr.Dropdown(choices=[], label="Your drafts (newest first)", elem_id="writer-drafts")
        with gr.Row():
            new_btn = gr.Button("New draft", size="sm", elem_id="writer-new")
            save_btn = gr.Button("Save", size="sm", elem_id="writer-save")
            delete_btn = gr.Button("Delete draft", size="sm", elem_id="writer-delete")
    return OutputPanel(
        row,
        cols,
        boxes,
        buttons,
        draft,
        stats,
        review,
        diff,
        accept_btn,
        discard_btn,
        rewrite_op,
        rewrite_lang,
        rewrite_btn,
        undo_btn,
        sel_range,
        export_buttons,
        export_file,
        drafts,
        new_btn,
        save_btn,
        delete_btn,
    )
