"""The writer tab's rewrites: the part selected in the draft itself (read by the browser when Rewrite is
pressed), the rewrite streamed beside the original with the changes marked, then Accept (spliced into the
draft and kept) or Discard (the draft untouched); and Undo. Every step is a call into core.writer.service."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import gradio as gr

from core.writer import review
from ui.errors import user_error
from ui.identity import user_id
from ui.writer_form import status_markdown

if TYPE_CHECKING:
    from ui.writer import _Tab

PRIVATE = dict(api_visibility="private")

# Before the rewrite starts, in the browser: the selection in the draft's textarea as "start:end" in
# characters (code points, as Python counts them: an emoji is two UTF-16 units in JavaScript), and the text
# the selection is in. No selection (or a caret only) sends "": the whole draft.
SELECTION_JS = """
(bid, text, range, ...rest) => {
    const ta = document.querySelector('#writer-draft textarea');
    if (!ta) return [bid, text, '', ...rest];
    const s = ta.selectionStart, e = ta.selectionEnd;
    const points = (i) => Array.from(ta.value.slice(0, i)).length;
    return [bid, ta.value, e > s ? points(s) + ':' + points(e) : '', ...rest];
}
"""


def wire_rewrite(t: _Tab) -> None:
    service, form, out = t.service, t.form, t.out
    library = service.library
    request_state = gr.State(None)  # {"text", "span"}: what the rewrite running now works on
    proposal_state = gr.State(None)  # review.Proposal.as_state() of the rewrite under review

    def on_op(op):
        chosen = library.rewrites.get(op)
        return gr.update(visible=bool(chosen and chosen.needs_language))

    out.rewrite_op.change(on_op, [out.rewrite_op], [out.rewrite_lang], queue=False, **PRIVATE)

    def begin(bid, text, sel, op, lang, model_v, request: gr.Request, progress=gr.Progress()):
        """Check the request and load the model; show the review panel with the part to rewrite."""
        user_id(bid, request)
        text = text or ""
        try:
            span = review.span_of(text, sel or "")
            _, start, end = service.check_rewrite(text, "", op, lang, span)
            service.backend(model_v or None, lambda f, d: progress(f, desc=d))
        except t.failures as exc:
            raise user_error(t.message(exc), title="Not rewritten") from None
        return (
            uuid.uuid4().hex,
            {"text": text, "span": [start, end]},
            None,
            gr.update(visible=True),
            review.diff_html(text[start:end], "", done=False),
            gr.update(visible=True),
            status_markdown([], progress="Rewriting"),
        )

    def stream(v: dict, request: gr.Request):
        user = user_id(v[t.browser_id], request)
        req = v[request_state] or {}
        text, span = req.get("text", ""), tuple(req.get("span") or (0, 0))
        options = form.write_options(v, variants=1)
        update = proposal = None
        try:
            run = service.job(
                user,
                v[t.job_id],
                lambda cancel: service.propose_rewrite(
                    text, span, v[out.rewrite_op], v[out.rewrite_lang], options, cancel
                ),
            )
            for update, proposal in run:
                yield (
                    review.diff_html(proposal.original, proposal.rewritten, done=update.done),
                    status_markdown(update.notes, [update.error] if update.error else [], "Rewriting", update.done),
                    proposal.as_state() if update.done else gr.skip(),
                )
        except t.failures as exc:
            raise user_error(t.message(exc), title="Not rewritten") from None
        if update is not None and proposal is not None:
            if not update.done:  # stopped before the first part was finished: what came so far is offered
                yield review.diff_html(proposal.original, proposal.rewritten), gr.skip(), proposal.as_state()
            if update.error:
                gr.Warning(update.error, title="Rewrite cut")

    out.rewrite_btn.click(
        begin,
        [t.browser_id, out.draft, out.sel_range, out.rewrite_op, out.rewrite_lang, form.model],
        [t.job_id, request_state, proposal_state, out.review, out.diff, form.stop_btn, form.status],
        js=SELECTION_JS,
        show_progress_on=[form.status],
        **PRIVATE,
    ).success(
        stream,
        {
            t.browser_id,
            t.job_id,
            request_state,
            out.rewrite_op,
            out.rewrite_lang,
            form.model,
            form.temperature,
            form.seed,
        },
        [out.diff, form.status, proposal_state],
        show_progress="hidden",
        **t.gen_kwargs,
    ).then(t.stopped, None, [form.stop_btn], **PRIVATE)

    def accept(bid, did, current, proposal, history, keywords_v, tpl, request: gr.Request):
        user = user_id(bid, request)
        if proposal is None:
            raise user_error("Wait for the rewrite to finish, or discard it.", title="Not accepted")
        try:
            text = service.accept_rewrite(user, did, current or "", proposal)
        except t.failures as exc:
            raise user_error(t.message(exc), title="Not accepted") from None
        history = (history + [current])[-20:] if current else history
        return text, history, t.analysed(text, keywords_v, tpl), gr.update(visible=False), None, ""

    out.accept_btn.click(
        accept,
        [t.browser_id, t.draft_id, out.draft, proposal_state, t.undo, form.keywords, form.template],
        [out.draft, t.undo, out.stats, out.review, proposal_state, out.diff],
        **PRIVATE,
    )

    def discard(bid, job, request: gr.Request):
        service.stop(user_id(bid, request), job)  # a rewrite still running is not wanted either
        return gr.update(visible=False), None, ""

    out.discard_btn.click(discard, [t.browser_id, t.job_id], [out.review, proposal_state, out.diff], **PRIVATE)

    def undo_last(bid, did, history, keywords_v, tpl, request: gr.Request):
        user = user_id(bid, request)
        if not history:
            raise user_error("There is nothing to undo.", title="Nothing to undo")
        text = history[-1]
        if did:
            service.keep_text(user, did, text)
        return text, history[:-1], t.analysed(text, keywords_v, tpl)

    t.undo.change(lambda h: gr.update(visible=bool(h)), [t.undo], [out.undo_btn], queue=False, **PRIVATE)
    out.undo_btn.click(
        undo_last,
        [t.browser_id, t.draft_id, t.undo, form.keywords, form.template],
        [out.draft, t.undo, out.stats],
        **PRIVATE,
    )
