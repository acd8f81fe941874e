"""The Speech tab: Speak (text -> a voice, heard while it is made, kept as WAV/MP3/OGG), Transcribe (a recording or a
video's sound -> timed text, exported as TXT/SRT/WebVTT or sent to the writer or condenser) and History. Components
and event wiring only: everything is a call into core.speech.service.SpeechStudio. The /speak and /transcribe
endpoints are ui/speech_api.py; the history part is ui/speech_history.py; Send to Writer/Condense ui/speech_sends.py."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from core.cancel import CancelRegistry
from core.errors import BackendError, BusyError, InputError, NotFoundError
from core.models.service import KINDS
from core.registry import ModelLoadError
from core.security.uploads import UploadRegistry
from core.speech.errors import LanguageMismatchError
from core.speech.service import SpeechStudio
from ui.errors import user_error
from ui.identity import _VALID_BROWSER_ID, caller, limit_key, user_id
from ui.images_uploads import owned_upload
from ui.library_open import Opener, register_opener
from ui.model_pickers import ModelPickers, md
from ui.speech_history import build_history
from ui.speech_view import (
    FORMATS,
    LANGUAGES,
    UPLOAD_TYPES,
    char_count,
    char_count_js,
    duration,
    item_filename,
    language_name,
    served_copy,
    served_export,
    speak_status,
    transcript_text,
    upload_limits,
)

PRIVATE = dict(api_visibility="private")
FAILURES = (InputError, BackendError, BusyError, NotFoundError, ModelLoadError)
SPEECH_TAB = "speech"
HISTORY_PART = "speech-history-part"  # the History part's tab id (ui/speech_history.py)
# The longest stretch of audio the live player gets in one run (Gradio holds a run's stream in memory, about 1 MB a
# minute, until the run ends); a longer text keeps being made into its file.
LIVE_MAX_S = 20 * 60.0
UI_TICK_S = 0.1  # the transcript view redraws at most this often (every spoken piece is sent: the player needs it)
# On a phone the status and the player sit below the form a person has scrolled through: Speak / Transcribe bring
# the status into view (a wide screen shows it beside the form).
SHOW_STATUS = """(target) => {
  if (window.matchMedia('(max-width: 640px)').matches) {
    document.getElementById(target)?.scrollIntoView({behavior: 'smooth', block: 'start'});
  }
}"""
NO_FFMPEG = (
    "Live playback needs the ffmpeg program, which is not installed on this server: the audio plays when it is "
    "finished (apt-get install ffmpeg)."
)


@dataclass(frozen=True)
class SpeechTabHandles:
    """What other tabs fill: "Send to Speech" sets `text` and selects the tab (`tabs` = gr.Tabs(selected=tab_id))."""

    tab_id: str
    tab: gr.Tab
    text: gr.Textbox
    transcript_item: gr.State  # the id of the transcript on show (None before one is made or opened)
    send_to_writer: gr.Button
    send_to_condense: gr.Button
    parts: gr.Tabs  # the tab's own Speak / Transcribe / History bar: gr.Tabs(selected=speak_part) shows Speak
    speak_part: str = "speech-speak-part"


def streams_live() -> bool:
    """Gradio encodes a streamed player's chunks with the ffmpeg program; without it the file plays at the end."""
    return shutil.which("ffmpeg") is not None


def user_or_none(browser_id: str | None, request: gr.Request) -> str | None:
    """The user, or None on a first visit whose browser id has not arrived yet."""
    if getattr(request, "username", None) or (browser_id and _VALID_BROWSER_ID.match(browser_id)):
        return user_id(browser_id, request)
    return None


def model_picker(
    pickers: ModelPickers, kind: str, choices: list[tuple[str, str]], elem_id: str, label: str
) -> gr.Dropdown:
    """The model manager's picker when it knows this kind (only what runs now, refreshed after downloads); else
    the configured models."""
    if kind in KINDS:
        return pickers.picker(kind, elem_id=elem_id, label=label)
    return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label=label, elem_id=elem_id)


def build_speech_tab(
    demo: gr.Blocks,
    speech: SpeechStudio,
    browser_id: gr.BrowserState,
    uploads: UploadRegistry,
    pickers: ModelPickers,
    tabs: gr.Tabs | None = None,
) -> SpeechTabHandles:
    limit = speech.settings.max_speech_chars
    live = streams_live()
    cancels = CancelRegistry()  # this tab's runs, per user and browser tab: Stop reaches only its own run

    with gr.Tab("Speech", id=SPEECH_TAB, elem_id="speech-tab") as tab, gr.Tabs(elem_id="speech-parts") as parts:
        with (
            gr.Tab("Speak", id="speech-speak-part", elem_id="speech-speak-part"),
            gr.Row(equal_height=False, elem_id="speech-speak-layout"),
        ):
            with gr.Column(scale=3, min_width=300):
                text = gr.Textbox(
                    label="Text to speak",
                    placeholder="Type or paste text: a sentence, a draft, a whole report.",
                    lines=9,
                    max_lines=24,
                    elem_id="speech-text",
                )
                count = gr.Markdown(char_count("", limit), elem_id="speech-count")
            with gr.Column(scale=2, min_width=280, elem_id="speech-speak-controls"):
                model = model_picker(pickers, "speech", speech.model_choices(), "speech-model", "Voice model")
                voices = _voices(speech, model.value)
                voice = gr.Dropdown(
                    choices=voices, value=voices[0][1] if voices else None, label="Voice", elem_id="speech-voice"
                )
                speed = gr.Slider(0.5, 2.0, value=1.0, step=0.05, label="Speed", elem_id="speech-speed")
                fmt = gr.Radio(FORMATS, value="mp3", label="File format", elem_id="speech-format")
                with gr.Row(elem_id="speech-actions"):
                    speak_btn = gr.Button("Speak", variant="primary", elem_id="speech-run", scale=2, min_width=90)
                    stop_btn = gr.Button(
                        "Stop", variant="stop", visible=False, elem_id="speech-stop", scale=1, min_width=90
                    )
                status = gr.Markdown(elem_id="speech-status")
                suggestion = gr.State(None)  # (model spec, voice id) a language mismatch offered
                use_btn = gr.Button("Use the suggested voice", visible=False, elem_id="speech-use-voice")
                player = gr.Audio(
                    label="Listen", streaming=live, autoplay=True, interactive=False, elem_id="speech-player"
                )
                gr.Markdown(NO_FFMPEG, visible=not live, elem_id="speech-no-live")
                result_file = gr.File(label="Download", interactive=False, visible=False, elem_id="speech-file")
        with (
            gr.Tab("Transcribe", id="speech-transcribe-part", elem_id="speech-transcribe-part"),
            gr.Row(equal_height=False, elem_id="speech-transcribe-layout"),
        ):
            with gr.Column(scale=2, min_width=280, elem_id="speech-transcribe-controls"):
                recording = gr.File(
                    label="Recording or video (WAV, MP3, OGG, FLAC, M4A, MP4, WebM, MKV…)",
                    file_types=UPLOAD_TYPES,
                    type="filepath",
                    height=130,
                    elem_id="speech-upload",
                )
                gr.Markdown(
                    upload_limits(speech.settings.max_upload_mb, speech.settings.max_audio_minutes),
                    elem_id="speech-upload-limits",
                )
                language = gr.Dropdown(LANGUAGES, value="", label="Language", elem_id="speech-language")
                recogniser = model_picker(
                    pickers, "transcribe", speech.recognisers.choices(), "speech-recogniser", "Recognition model"
                )
                with gr.Row(elem_id="speech-transcribe-actions"):
                    transcribe_btn = gr.Button(
                        "Transcribe", variant="primary", elem_id="speech-transcribe", scale=2, min_width=90
                    )
                    t_stop_btn = gr.Button(
                        "Stop", variant="stop", visible=False, elem_id="speech-transcribe-stop", scale=1, min_width=90
                    )
            with gr.Column(scale=3, elem_id="speech-transcript-col"):
                t_status = gr.Markdown(elem_id="speech-transcribe-status")
                transcript = gr.Textbox(
                    label="Transcript (with timestamps)",
                    placeholder="The text appears here as it is recognised.",
                    lines=10,
                    max_lines=30,
                    interactive=False,
                    elem_id="speech-transcript",
                )
                t_item = gr.State(None)
                with gr.Row(elem_id="speech-exports"):
                    export_btns = {
                        "txt": gr.Button("Export TXT", size="sm", elem_id="speech-export-txt"),
                        "srt": gr.Button("Export SRT", size="sm", elem_id="speech-export-srt"),
                        "vtt": gr.Button("Export WebVTT", size="sm", elem_id="speech-export-vtt"),
                    }
                export_file = gr.File(label="Download", interactive=False, visible=False, elem_id="speech-export-file")
                with gr.Row(elem_id="speech-sends"):
                    to_writer = gr.Button("Send to Writer", size="sm", elem_id="speech-send-writer")
                    to_condense = gr.Button("Send to Condense", size="sm", elem_id="speech-send-condense")
        history = build_history(speech, browser_id, t_item)

    # -- Speak ------------------------------------------------------------------------------------------------
    # counted in the page (typing, pasting, or another tab's "Send to Speech"): no server call per key
    text.change(None, [text], [count], js=char_count_js(limit), queue=False, show_progress="hidden", **PRIVATE)

    def reload_voices(spec, current):
        """The model's voices; the voice chosen stays when the new model has it (Use <voice> sets both)."""
        choices = _voices(speech, spec)
        keep = current if any(v == current for _, v in choices) else (choices[0][1] if choices else None)
        return gr.Dropdown(choices=choices, value=keep)

    model.change(reload_voices, [model, voice], [voice], show_progress="hidden", **PRIVATE)

    def run_speak(text_v, model_v, voice_v, speed_v, fmt_v, bid, request: gr.Request) -> Iterator[tuple]:
        user = user_id(bid, request)
        key = f"speak:{request.session_hash or ''}"
        cancel = cancels.start(user, key, supersede=True)
        updates = None
        try:
            updates = speech.speak(
                user,
                text_v if isinstance(text_v, str) else "",
                model=model_v or None,
                voice=voice_v or None,
                speed=float(speed_v if speed_v is not None else 1.0),
                fmt=fmt_v or "mp3",
                cancel=cancel,
                source="speech",
                caller=limit_key(request),
            )
            # the file of an earlier run goes; the player is cleared (a non-streaming one shows the file at the end)
            yield "**Starting…**", (gr.skip() if live else None), gr.File(value=None, visible=False), None, _hidden()
            for upd in updates:
                # Gradio keeps a run's streamed audio in memory until the run ends: past LIVE_MAX_S the player gets
                # no more, and the whole text is in the file at the end.
                streaming = live and upd.audio_seconds <= LIVE_MAX_S
                chunk = upd.chunk if streaming and upd.chunk else gr.skip()
                if upd.item is None:
                    line = speak_status(upd.message, upd.audio_seconds)
                    if live and not streaming:
                        line += f" · live playback covers the first {duration(LIVE_MAX_S)}; all of it is in the file"
                    yield line, chunk, gr.skip(), gr.skip(), gr.skip()
                    continue
                item = upd.item
                copy = served_copy(item.path, item_filename(item.title, item.created, item.fmt)) if item.path else None
                if item.stopped:
                    line = f"**Stopped.** Kept the first {duration(item.duration)} of audio (also in History)."
                else:
                    line = f"**Done.** {duration(item.duration)} of audio, {item.fmt.upper()} (also in History)."
                yield (
                    line,
                    chunk if live else (copy or gr.skip()),
                    gr.File(value=copy, visible=bool(copy)),
                    gr.skip(),
                    gr.skip(),
                )
        except LanguageMismatchError as exc:
            offer = tuple(exc.suggestion) if exc.suggestion else None
            use = _hidden()
            if offer:
                use = gr.Button(f"Use {_voice_label(speech, offer[0], offer[1])}", visible=True)
            yield f"**Not spoken.** {md(str(exc))}", gr.skip(), gr.skip(), offer, use
        except FAILURES as exc:
            yield f"**Not spoken.** {md(str(exc))}", gr.skip(), gr.skip(), None, _hidden()
            raise user_error(str(exc), title="Not spoken") from None
        finally:
            cancel.set()  # a page that went away mid-run stops the work; after the run it changes nothing
            if updates is not None:
                updates.close()
            cancels.finish(user, key, cancel)

    speak_inputs = [text, model, voice, speed, fmt, browser_id]
    speak_outputs = [status, player, result_file, suggestion, use_btn]
    for trigger in (speak_btn.click,):
        speaking = trigger(
            lambda: gr.Button(visible=True), None, [stop_btn], queue=False, js=_scroll_to("speech-status"), **PRIVATE
        ).then(
            run_speak,
            speak_inputs,
            speak_outputs,
            concurrency_limit=speech.settings.concurrency_limit,
            concurrency_id="speech-speak",
            show_progress="hidden",
            **PRIVATE,
        )
        speaking.then(lambda: gr.Button(visible=False), None, [stop_btn], queue=False, **PRIVATE).then(
            history.refresh, [browser_id, history.items], [history.items], **PRIVATE
        )
        # Gradio's page runs only .failure() listeners after an event that raised (not .then()): Stop goes there too
        speaking.failure(lambda: gr.Button(visible=False), None, [stop_btn], queue=False, **PRIVATE)

    def stop_speak(bid, request: gr.Request):
        """The status says Stopping… at once (a voice still loading stops when it is ready, which can take seconds)."""
        user = user_or_none(bid, request)
        if user and cancels.stop(user, f"speak:{request.session_hash or ''}"):
            return "**Stopping…**"
        return gr.skip()

    stop_btn.click(stop_speak, [browser_id], [status], queue=False, show_progress="hidden", **PRIVATE)

    def use_suggestion(offer):
        if not offer:
            return gr.skip(), gr.skip(), _hidden(), gr.skip()
        spec, voice_id = offer
        choices = _voices(speech, spec)
        return (
            gr.Dropdown(value=spec),
            gr.Dropdown(choices=choices, value=voice_id),
            _hidden(),
            f"Voice set to **{md(_voice_label(speech, spec, voice_id))}**: press Speak.",
        )

    use_btn.click(use_suggestion, [suggestion], [model, voice, use_btn, status], **PRIVATE)

    # -- Transcribe -------------------------------------------------------------------------------------------
    def run_transcribe(file_v, language_v, model_v, bid, request: gr.Request) -> Iterator[tuple]:
        user = user_id(bid, request)
        key = f"transcribe:{request.session_hash or ''}"
        updates = None
        cancel = cancels.start(user, key, supersede=True)
        try:
            path = owned_upload(uploads, caller(request), file_v, "The recording")
            if path is None:
                raise InputError("Upload a recording (or a video) first.")
            updates = speech.transcribe(
                user,
                Path(path),
                model=model_v or None,
                language=language_v or None,
                cancel=cancel,
                source="speech",
                caller=limit_key(request),
            )
            yield "**Reading the recording…**", "", None
            last = 0.0
            for upd in updates:
                if upd.item is None:
                    if time.monotonic() - last < UI_TICK_S:
                        continue
                    last = time.monotonic()
                    yield f"**{md(upd.message)}**", transcript_text(upd.segments), gr.skip()
                    continue
                item = upd.item
                n = len(item.segments)
                parts = [f"{duration(item.duration)} of audio", f"{n} segment{'' if n == 1 else 's'}"]
                if item.language:
                    parts.append(f"language: {language_name(item.language)}")
                head = "**Stopped.** Kept what was recognised so far:" if item.stopped else "**Done.**"
                yield f"{head} {' · '.join(parts)}", transcript_text(item.segments), item.id
        except FAILURES as exc:
            yield f"**Not transcribed.** {md(str(exc))}", gr.skip(), gr.skip()
            raise user_error(str(exc), title="Not transcribed") from None
        finally:
            cancel.set()
            if updates is not None:
                updates.close()
            cancels.finish(user, key, cancel)

    transcribing = transcribe_btn.click(
        lambda: gr.Button(visible=True),
        None,
        [t_stop_btn],
        queue=False,
        js=_scroll_to("speech-transcribe-status"),
        **PRIVATE,
    ).then(
        run_transcribe,
        [recording, language, recogniser, browser_id],
        [t_status, transcript, t_item],
        concurrency_limit=speech.settings.concurrency_limit,
        concurrency_id="speech-transcribe",
        show_progress="hidden",
        **PRIVATE,
    )
    transcribing.then(lambda: gr.Button(visible=False), None, [t_stop_btn], queue=False, **PRIVATE).then(
        history.refresh, [browser_id, history.items], [history.items], **PRIVATE
    )
    transcribing.failure(lambda: gr.Button(visible=False), None, [t_stop_btn], queue=False, **PRIVATE)

    def stop_transcribe(bid, request: gr.Request):
        user = user_or_none(bid, request)
        if user and cancels.stop(user, f"transcribe:{request.session_hash or ''}"):
            return "**Stopping…**"
        return gr.skip()

    t_stop_btn.click(stop_transcribe, [browser_id], [t_status], queue=False, show_progress="hidden", **PRIVATE)

    def exporter(fmt_name: str):
        def export(bid, item_id, request: gr.Request):
            if not item_id:
                raise user_error("Transcribe a recording (or open one in History) first.", title="Nothing to export")
            user = user_id(bid, request)
            try:
                item = speech.get(user, item_id)
                path = speech.export(user, item_id, fmt_name)
            except FAILURES as exc:
                raise user_error(str(exc), title="Not exported") from None
            return gr.File(value=served_export(path, item_filename(item.title, item.created, fmt_name)), visible=True)

        return export

    for fmt_name, button in export_btns.items():
        button.click(exporter(fmt_name), [browser_id, t_item], [export_file], **PRIVATE)

    history.wire_open(transcript, t_status, parts)

    def open_from_library(user: str, item_id: str, values: dict) -> dict:
        """The Library's Open (ui/library_open.py): the item picked in History (which shows, plays and offers it)."""
        speech.get(user, item_id)  # NotFoundError for a missing or another user's
        found = history.choices(user)
        if not any(v == item_id for _, v in found):  # older than the list's newest HISTORY_LIMIT
            found.insert(0, ("(opened from the Library)", item_id))
        return {history.items: gr.Dropdown(choices=found, value=item_id), parts: gr.Tabs(selected=HISTORY_PART)}

    register_opener(
        demo,
        ("audio", "transcript"),
        Opener(SPEECH_TAB, [history.items, parts], open_from_library, missing=(NotFoundError, InputError)),
    )
    tab.select(history.refresh, [browser_id, history.items], [history.items], show_progress="hidden", **PRIVATE)
    return SpeechTabHandles(SPEECH_TAB, tab, text, t_item, to_writer, to_condense, parts)


def _scroll_to(elem_id: str) -> str:
    return f"() => {{ ({SHOW_STATUS})('{elem_id}'); }}"


def _hidden() -> Any:
    return gr.Button(visible=False)  # an update: made in a handler, never while the page is being built


def _voices(speech: SpeechStudio, spec: str | None) -> list[tuple[str, str]]:
    try:
        return speech.voice_choices(spec or None)
    except FAILURES:
        return []


def _voice_label(speech: SpeechStudio, spec: str, voice_id: str) -> str:
    return next((label for label, v in _voices(speech, spec) if v == voice_id), voice_id)
