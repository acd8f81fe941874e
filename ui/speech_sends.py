"""The Speech tab's "Send to Writer" and "Send to Condense": a transcript's plain text into the writer's draft or the
condenser's paste box, and that tab selected. Wired once every tab exists (the other tabs' boxes are found by their
element ids). Event wiring only."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.speech.service import SpeechStudio
from ui.errors import user_error
from ui.identity import user_id
from ui.speech import FAILURES, PRIVATE, SpeechTabHandles


def show_box_js(elem_id: str) -> str:
    """Page-side: once the other tab is open, bring the box that got the text into view (on a phone the page keeps
    the scroll of the button's tab, which can leave the box off screen)."""
    return (
        "() => { setTimeout(() => document.getElementById('"
        + elem_id
        + "')?.scrollIntoView({block: 'nearest', behavior: 'smooth'}), 150); }"
    )


def wire_speech_sends(
    demo: gr.Blocks, speech: SpeechStudio, handles: SpeechTabHandles, browser_id: gr.BrowserState, tabs: gr.Tabs
) -> None:
    """ "Send to Writer" / "Send to Condense": the transcript's plain text into the writer's draft (added after what is
    there: nothing typed is lost) or the condenser's paste box (replaced), and that tab selected. Called inside the
    Blocks after every tab is built; the other tabs' boxes are found by their element ids."""
    writer_draft = _by_elem_id(demo, "writer-draft")
    condense_text = _by_elem_id(demo, "condense-text")

    def transcript_of(bid, item_id, request: gr.Request) -> str:
        if not item_id:
            raise user_error("Transcribe a recording (or open one in History) first.", title="Nothing to send")
        try:
            item = speech.get(user_id(bid, request), item_id)
        except FAILURES as exc:
            raise user_error(str(exc), title="Not sent") from None
        return item.text.strip()

    if writer_draft is not None:

        def to_writer(bid, item_id, current, request: gr.Request):
            text = transcript_of(bid, item_id, request)
            before = current if isinstance(current, str) else ""
            joined = f"{before.rstrip()}\n\n{text}" if before.strip() else text
            return joined, gr.Tabs(selected="writer")

        handles.send_to_writer.click(
            to_writer, [browser_id, handles.transcript_item, writer_draft], [writer_draft, tabs], **PRIVATE
        ).success(None, None, None, js=show_box_js("writer-draft"), queue=False, **PRIVATE)
    else:
        handles.send_to_writer.visible = False
    if condense_text is not None:

        def to_condense(bid, item_id, request: gr.Request):
            return transcript_of(bid, item_id, request), gr.Tabs(selected="condense")

        handles.send_to_condense.click(
            to_condense, [browser_id, handles.transcript_item], [condense_text, tabs], **PRIVATE
        ).success(None, None, None, js=show_box_js("condense-text"), queue=False, **PRIVATE)
    else:
        handles.send_to_condense.visible = False


def _by_elem_id(demo: gr.Blocks, elem_id: str) -> Any:
    return next((b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id), None)
