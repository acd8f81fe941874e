"""The "Send to Speech" buttons of the writer and the condenser: the text goes into the Speech tab's text box and
that tab opens, where a voice, speed and format can be chosen before speaking. Each tab makes its button
(`SendToSpeech`); the app wires them once the Speech tab exists (`wire_send_to_speech`). Event wiring only."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from ui.identity import user_id

PRIVATE = dict(api_visibility="private")
# Once the Speech tab is open, its text box is brought into view: on a phone the page keeps the scroll of the button's
# tab, which can leave the box (and the Speak bar's context) off screen.
SHOW_TEXT_BOX = (
    "() => { setTimeout(() => document.getElementById('speech-text')"
    "?.scrollIntoView({block: 'nearest', behavior: 'smooth'}), 150); }"
)


@dataclass(frozen=True)
class SendToSpeech:
    button: gr.Button
    source: Any  # the component `text_of` reads
    text_of: Callable[[str, Any], str]  # (user, its value) -> the text; raises user_error when there is none


def wire_send_to_speech(
    sends: Iterable[SendToSpeech | None], handles: Any, tabs: gr.Tabs, browser_id: gr.BrowserState
) -> None:
    """`handles`: the Speech tab's (ui/speech.py SpeechTabHandles: `text`, `tab_id`). The text replaces what the
    Speech box held (it is a place to speak one text, not a document)."""
    for send in sends:
        if send is None:
            continue

        def move(bid, value, request: gr.Request, *, _send: SendToSpeech = send):
            text = _send.text_of(user_id(bid, request), value)
            return text, gr.Tabs(selected=handles.tab_id), gr.Tabs(selected=handles.speak_part)

        # the tab opens on its Speak part, where the text box is (Transcribe or History may have been open)
        send.button.click(move, [browser_id, send.source], [handles.text, tabs, handles.parts], **PRIVATE).success(
            None, None, None, js=SHOW_TEXT_BOX, queue=False, **PRIVATE
        )
