"""The writer tab's drafts: the last one reopened with its brief when the page loads (as the chat reopens the
last conversation), opening another from the list, New and Delete. Every step is a call into
core.writer.service; this module only fills the tab's controls from a stored draft."""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

from core import validate
from core.errors import NotFoundError
from core.writer.service import MAX_VARIANTS
from core.writer.store import Draft
from core.writer.templates import Template
from ui.errors import user_error
from ui.identity import user_id
from ui.library_open import Opener, register_opener
from ui.model_pickers import ModelPickers
from ui.writer_form import brief_updates, stats_markdown, status_markdown

if TYPE_CHECKING:
    from ui.writer import _Tab

PRIVATE = dict(api_visibility="private")


def _typed(now: object, sent: object, default: object) -> bool:
    """Text in a brief field that was neither there when the page sent the load event nor the field's default.
    Only text counts (choices and numbers are not typed work), and a field not yet drawn when the load event left
    sends None, so None reads as empty."""
    return isinstance(now, str) and bool(now.strip()) and now != (sent or "") and now != (default or "")


def wire_drafts(t: _Tab, demo: gr.Blocks, start: Template, pickers: ModelPickers) -> None:
    service, form, out = t.service, t.form, t.out

    def view(d: Draft) -> tuple:
        """Every control filled from a stored draft: its brief, options, variants and text."""
        template = service.library.templates.get(d.template, start)
        n = len(d.variants)
        opts = d.options
        seed = validate.seed("seed", opts.get("seed"))
        notes = [f"Cut: {d.note}"] if d.status == "cut" and d.note else []
        if n > 1 and not d.text.strip():
            notes.append("Pick the variant you like: its Use button puts it in the draft.")
        variant_texts = d.variants + [""] * (MAX_VARIANTS - n)
        return (
            d.id,
            d.template,
            *brief_updates(template, d.brief),
            gr.update(visible=template.kind == "long"),
            gr.update(visible=template.kind == "long", value=d.outline),
            int(opts.get("variants") or 1),
            opts.get("model") if pickers.offered("text", opts.get("model")) else pickers.service.default("text"),
            float(opts.get("temperature", 0.7)),
            -1 if seed is None else seed,
            gr.update(visible=n > 1),
            *[gr.update(visible=i < max(1, n)) for i in range(MAX_VARIANTS)],
            *variant_texts[:MAX_VARIANTS],
            *[gr.update(interactive=i < n) for i in range(MAX_VARIANTS)],
            d.text,
            stats_markdown(service.analyse(d.text, d.brief.get("keywords"), d.template)),
            status_markdown(notes),
            [],
        )

    shown = [
        t.draft_id,
        form.template,
        form.info,
        *form.controls,
        form.outline_btn,
        form.outline,
        *form.options,
        out.variant_row,
        *out.variant_cols,
        *out.variant_boxes,
        *out.use_buttons,
        out.draft,
        out.stats,
        form.status,
        t.undo,
    ]

    def open_draft(bid, did, request: gr.Request):
        user = user_id(bid, request)
        try:
            return view(service.open_draft(user, did))
        except NotFoundError:
            raise user_error("That draft no longer exists.", title="Not found") from None

    out.drafts.input(open_draft, [t.browser_id, out.drafts], shown, **PRIVATE)

    def open_from_library(user: str, did: str, values: dict) -> dict:
        """The Library's Open (ui/library_open.py): the draft with its brief, template, options and text."""
        d = service.open_draft(user, did)  # NotFoundError for a missing or another user's
        filled = dict(zip(shown, view(d), strict=True))
        filled[out.drafts] = gr.Dropdown(choices=service.draft_choices(user), value=d.id)
        return filled

    register_opener(
        demo, ("draft",), Opener("writer", [*shown, out.drafts], open_from_library, missing=(NotFoundError,))
    )

    reopened = gr.State(None)  # what the load found and the brief as the page sent it, kept on the server

    def find_last(user: str) -> tuple:
        """(the tab's updates, the drafts list) for the newest draft; the default template when there is none."""
        blank = (None, gr.skip(), *brief_updates(start, None), *[gr.skip()] * (len(shown) - 2 - 1 - len(form.controls)))
        choices = service.draft_choices(user)
        if not choices:
            return blank, gr.Dropdown(choices=[])
        try:
            d = service.open_draft(user, choices[0][1])
        except NotFoundError:
            return blank, gr.Dropdown(choices=choices)
        return view(d), gr.Dropdown(choices=choices, value=d.id)

    def on_load(values: dict, request: gr.Request):
        """The newest draft, reopened where the person left it, to be applied by the next step (below)."""
        sent = [values[c] for c in form.controls]
        try:
            user = user_id(values[t.browser_id], request)
        except gr.Error:  # no identity yet (a first visit): nothing to reopen
            return None, gr.Dropdown()
        found, listing = find_last(user)
        return (found, sent), listing

    def apply(values: dict):
        """Fill the tab with what the load found, unless the person has typed since the page sent its brief with
        the load event (the page is usable at once): a step of its own, so it sees the page as it is now."""
        kept = values[reopened]
        if kept is None:
            return [gr.skip()] * len(shown)
        found, sent = kept
        typed = bool((values[out.draft] or "").strip()) or any(
            _typed(values[c], v, c.value) for c, v in zip(form.controls, sent, strict=True)
        )
        return [gr.skip()] * len(shown) if typed else list(found)

    demo.load(on_load, {t.browser_id, *form.controls}, [reopened, out.drafts], show_progress="hidden", **PRIVATE).then(
        apply, {reopened, out.draft, *form.controls}, shown, show_progress="hidden", **PRIVATE
    )

    def new_draft(bid, request: gr.Request):
        user = user_id(bid, request)
        return (
            None,
            gr.Dropdown(choices=service.draft_choices(user), value=None),
            gr.update(visible=False),
            *[gr.update(value="") for _ in range(MAX_VARIANTS)],
            "",
            "",
            "",
            "",
            [],
            gr.update(visible=False),
            None,
        )

    cleared = [
        t.draft_id,
        out.drafts,
        out.variant_row,
        *out.variant_boxes,
        out.draft,
        out.stats,
        form.status,
        form.outline,
        t.undo,
        out.review,
        out.diff,
    ]
    out.new_btn.click(new_draft, [t.browser_id], cleared, **PRIVATE)

    def delete_draft(bid, did, request: gr.Request):
        user = user_id(bid, request)
        if not did:
            raise user_error("Open a draft to delete it.", title="Nothing to delete")
        service.delete_draft(user, did)
        return new_draft(bid, request)

    out.delete_btn.click(delete_draft, [t.browser_id, t.draft_id], cleared, **PRIVATE)
