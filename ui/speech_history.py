"""The Speech tab's History part: what this user made (spoken audio and transcripts, from the tab, the chat, the
writer, the condenser and the API), newest first, kept across restarts by core.speech; play, download, delete, and
open a transcript in the Transcribe part. Components and wiring only."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from core.errors import BackendError, InputError, NotFoundError
from core.registry import ModelLoadError
from core.speech.service import SpeechStudio
from ui.errors import user_error
from ui.identity import _VALID_BROWSER_ID, user_id
from ui.model_pickers import md
from ui.speech_view import duration, item_filename, language_name, served_copy, served_export, transcript_text

PRIVATE = dict(api_visibility="private")
HISTORY_LIMIT = 100
TRANSCRIBE_PART = "speech-transcribe-part"  # the id of the Transcribe part's tab (ui/speech.py)
SOURCES = {"speech": "Speech tab", "chat": "chat", "writer": "writer", "condenser": "condenser", "api": "API"}


def _user(bid: str | None, request: gr.Request) -> str | None:
    if getattr(request, "username", None) or (bid and _VALID_BROWSER_ID.match(bid)):
        return user_id(bid, request)
    return None


@dataclass
class HistoryPart:
    items: gr.Dropdown
    refresh: Callable[..., Any]
    wire_open: Callable[[gr.Textbox, gr.Markdown, gr.Tabs], None]
    choices: Callable[[str], list[tuple[str, str]]]  # the user's items as the dropdown lists them (the Library's Open)


def build_history(speech: SpeechStudio, browser_id: gr.BrowserState, transcript_item: gr.State) -> HistoryPart:
    """Made inside the Speech tab's inner gr.Tabs. `transcript_item` is the Transcribe part's transcript id (Open
    sets it, so export and "Send to…" act on the opened transcript)."""

    def choices(user: str) -> list[tuple[str, str]]:
        out = []
        for item in speech.history(user, limit=HISTORY_LIMIT):
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(item.created))
            kind = "Audio" if item.kind == "speech" else "Transcript"
            title = (item.title or "untitled").replace("\n", " ")[:60]
            out.append((f"{kind} · {title} · {duration(item.duration)} · {when}", item.id))
        return out

    with gr.Tab("History", id="speech-history-part", elem_id="speech-history-part") as part:
        items = gr.Dropdown(choices=[], value=None, label="What you made (newest first)", elem_id="speech-history")
        info = gr.Markdown(elem_id="speech-history-info")
        player = gr.Audio(
            label="Play", type="filepath", interactive=False, visible=False, elem_id="speech-history-player"
        )
        text = gr.Textbox(
            label="Text", interactive=False, lines=6, max_lines=16, visible=False, elem_id="speech-history-text"
        )
        file = gr.File(label="Download", interactive=False, visible=False, elem_id="speech-history-file")
        with gr.Row(elem_id="speech-history-actions"):
            open_btn = gr.Button("Open in Transcribe", size="sm", visible=False, elem_id="speech-history-open")
            delete_btn = gr.Button("Delete", size="sm", variant="stop", visible=False, elem_id="speech-history-delete")
            confirm_btn = gr.Button(
                "Yes, delete it for good", size="sm", variant="stop", visible=False, elem_id="speech-history-confirm"
            )

    def refresh(bid, current, request: gr.Request):
        user = _user(bid, request)
        if user is None:
            return gr.Dropdown()
        found = choices(user)
        keep = current if any(v == current for _, v in found) else None
        hint = f"{len(found)} kept: pick one to play, download or delete." if found else "Nothing made yet."
        return gr.Dropdown(choices=found, value=keep, info=hint)

    part.select(refresh, [browser_id, items], [items], show_progress="hidden", **PRIVATE)

    def nothing() -> tuple:  # updates: made in handlers, never while the page is built (that would add components)
        return (
            "",
            gr.Audio(value=None, visible=False),
            gr.Textbox(value="", visible=False),
            gr.File(value=None, visible=False),
            gr.Button(visible=False),
            gr.Button(visible=False),
            gr.Button(visible=False),
        )

    def show(bid, item_id, request: gr.Request):
        user = _user(bid, request)
        if user is None or not item_id:
            return nothing()
        try:
            item = speech.get(user, item_id)
        except (NotFoundError, InputError):
            return ("That item no longer exists.", *nothing()[1:])
        source = SOURCES.get(item.source, item.source)
        facts = [f"{duration(item.duration)}", f"from the {source}" if item.source != "api" else "from the API"]
        if item.kind == "speech":
            facts[1:1] = [f"{item.fmt.upper()}", f"voice {_voice_label(speech, item)}" if item.voice else ""]
            copy = served_copy(item.path, item_filename(item.title, item.created, item.fmt)) if item.path else None
            shown_text = item.text
            audio = gr.Audio(value=copy, visible=bool(copy))
            download = gr.File(value=copy, visible=bool(copy))
        else:
            facts.insert(1, f"language {language_name(item.language)}" if item.language else "")
            shown_text = transcript_text(item.segments) or item.text
            audio = gr.Audio(value=None, visible=False)
            try:
                path = speech.export(user, item.id, "txt")
                download = gr.File(
                    value=served_export(path, item_filename(item.title, item.created, "txt")), visible=True
                )
            except (NotFoundError, InputError, BackendError):
                download = gr.File(value=None, visible=False)
        if item.stopped:
            facts.append("stopped part-way")
        line = " · ".join(md(f) for f in facts if f)
        return (
            line,
            audio,
            gr.Textbox(value=shown_text, visible=True, label="Spoken text" if item.kind == "speech" else "Transcript"),
            download,
            gr.Button(visible=item.kind == "transcript"),
            gr.Button(visible=True),
            gr.Button(visible=False),
        )

    outputs = [info, player, text, file, open_btn, delete_btn, confirm_btn]
    items.change(show, [browser_id, items], outputs, show_progress="hidden", **PRIVATE)
    delete_btn.click(lambda: gr.Button(visible=True), None, [confirm_btn], queue=False, **PRIVATE)

    def delete(bid, item_id, current_transcript, request: gr.Request):
        if not item_id:
            raise user_error("Pick an item first.", title="Nothing deleted")
        user = user_id(bid, request)
        try:
            speech.delete(user, item_id)
        except (NotFoundError, InputError) as exc:
            raise user_error(str(exc), title="Nothing deleted") from None
        kept = None if current_transcript == item_id else current_transcript
        found = choices(user)
        hint = f"{len(found)} kept: pick one to play, download or delete." if found else "Nothing made yet."
        return gr.Dropdown(choices=found, value=None, info=hint), kept, *nothing()

    confirm_btn.click(delete, [browser_id, items, transcript_item], [items, transcript_item, *outputs], **PRIVATE)

    def wire_open(transcript: gr.Textbox, status: gr.Markdown, parts: gr.Tabs) -> None:
        def open_item(bid, item_id, request: gr.Request):
            if not item_id:
                raise user_error("Pick a transcript first.", title="Nothing opened")
            try:
                item = speech.get(user_id(bid, request), item_id)
            except (NotFoundError, InputError) as exc:
                raise user_error(str(exc), title="Not opened") from None
            lang = f" · Language: {language_name(item.language)}" if item.language else ""
            line = f"Opened from History: **{md(item.title)}** · {duration(item.duration)}{lang}"
            return transcript_text(item.segments) or item.text, item.id, line, gr.Tabs(selected=TRANSCRIBE_PART)

        open_btn.click(open_item, [browser_id, items], [transcript, transcript_item, status, parts], **PRIVATE)

    return HistoryPart(items=items, refresh=refresh, wire_open=wire_open, choices=choices)


def _voice_label(speech: SpeechStudio, item: Any) -> str:
    """The voice's name as the Speak part lists it ('German, espeak-ng'), or its id when its model is gone."""
    try:
        return next((label for label, v in speech.voice_choices(item.model) if v == item.voice), item.voice)
    except (InputError, BackendError, NotFoundError, ModelLoadError):
        return str(item.voice)
