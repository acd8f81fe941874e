"""The chat's voice: the microphone beside the message box (a recording is transcribed, put in the box and sent as a
typed message is) and "Read aloud" on every reply (the bubble's control, core/chat/display.py, clicked in the page).
Event wiring only: transcription and speech are core.speech's, the reply's text core.chat's."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from core.cancel import CancelRegistry
from core.chat.display import spoken_reply
from core.chat.service import ChatService
from core.errors import BackendError, BusyError, InputError, NotFoundError
from core.registry import ModelLoadError
from core.security.uploads import UploadRegistry
from core.speech.service import SpeechStudio
from ui.errors import user_error
from ui.identity import caller, limit_key, user_id
from ui.images_uploads import owned_upload
from ui.read_aloud import ReadAloud, read_aloud_player

PRIVATE = dict(api_visibility="private")
FAILURES = (InputError, BackendError, BusyError, NotFoundError, ModelLoadError)
NOTHING_HEARD = (
    "No speech was heard in the recording, so nothing was sent. Try again, a little closer to the microphone."
)

# Runs once in the page: a click on a reply's "Read aloud" control names its message and clicks the hidden button;
# what a bubble's Copy button copies leaves our controls' markup out (the chatbot copies the message as sent to it).
PAGE_JS = """() => {
  if (window.studioChatVoice) return;
  window.studioChatVoice = true;
  document.addEventListener("click", (event) => {
    const say = event.target.closest && event.target.closest("#chatbot button.chat-read-aloud");
    if (!say) return;
    event.preventDefault();
    event.stopPropagation();
    const which = /chat-r-(\\d+)/.exec(say.className);
    if (!which) return;
    window.studioChatRead = which[1];
    const go = document.querySelector("#chat-read-go");
    if (go) go.click();
    // the player row (status, Stop reading) opens under the conversation: bring it into view once shown (on a phone
    // it was below the screen, behind the message bar)
    let tries = 0;
    const reveal = () => {
      const row = document.querySelector("#chat-read");
      if (row && row.offsetParent !== null) {
        const phone = window.matchMedia("(max-width: 640px)").matches;
        row.scrollIntoView({ block: phone ? "center" : "nearest", behavior: "smooth" });
      } else if (tries++ < 40) {
        setTimeout(reveal, 100);
      }
    };
    setTimeout(reveal, 100);
  }, true);
  // The recorder's buttons say what they do here (Gradio names them "Record" and "Stop"); redrawn after each use.
  const label = () => {
    const rec = document.querySelector("#chat-mic button.record-button");
    if (rec && rec.getAttribute("aria-label") !== "Record: speak a message") {
      rec.setAttribute("aria-label", "Record: speak a message");
      rec.title = "Speak a message: press, speak, then press Stop to send it";
    }
    const stop = document.querySelector("#chat-mic button.stop-button");
    if (stop && stop.getAttribute("aria-label") !== "Stop and send the message") {
      stop.setAttribute("aria-label", "Stop and send the message");
      stop.title = "Stop recording: the message is transcribed and sent";
    }
  };
  new MutationObserver(label).observe(document.body, { subtree: true, childList: true });
  label();
  const controls = /\\s*<span class="chat-(versions|read)"[^>]*>[\\s\\S]*?<\\/span><!--\\/\\1-->/g;
  const clip = navigator.clipboard;
  if (clip && clip.writeText) {
    const write = clip.writeText.bind(clip);
    clip.writeText = (text) => write(typeof text === "string" ? text.replace(controls, "") : text);
  }
}"""


def microphone() -> gr.Audio:
    """The compact recorder beside the message box (chat.css draws it as one button)."""
    return gr.Audio(
        sources=["microphone"],
        type="filepath",
        label="Speak a message",
        show_label=False,
        editable=False,
        buttons=[],
        waveform_options=gr.WaveformOptions(show_recording_waveform=False),
        min_width=56,
        scale=0,
        elem_id="chat-mic",
    )


def wire_microphone(
    speech: SpeechStudio, uploads: UploadRegistry, browser_id: Any, mic: gr.Audio, msg: gr.Textbox, stats: gr.Markdown
) -> Any:
    """When a recording stops: it is transcribed ("Transcribing…" on the stats line) and its text put in the message
    box (after anything typed there). Returns the event: the chat sends the box from its `.success` exactly as a
    typed message (ui/chat_turns.py), with the same checks. The recording itself is deleted once heard; the
    transcript is kept in the Speech tab's history like any other."""
    cancels = CancelRegistry()

    def hear(recording, typed, bid, request: gr.Request) -> Iterator[dict]:
        if not recording:  # the recorder was cleared
            raise user_error(
                "Nothing was recorded, so nothing was sent: press Record, speak, then Stop.", title="Not sent"
            )
        user = user_id(bid, request)
        who = caller(request)
        try:
            path = owned_upload(uploads, who, recording, "The recording")
        except InputError as exc:
            raise user_error(str(exc), title="Not sent") from None
        assert path is not None
        key = f"mic:{request.session_hash or ''}"
        cancel = cancels.start(user, key, supersede=True)
        updates = None
        try:
            yield {stats: "Transcribing your message…"}
            text = ""
            updates = speech.transcribe(user, Path(path), cancel=cancel, source="chat", caller=limit_key(request))
            for upd in updates:
                if upd.item is not None:
                    text = upd.item.text.strip()
            if not text:
                raise InputError(NOTHING_HEARD)
            before = typed.rstrip() if isinstance(typed, str) else ""
            yield {msg: f"{before} {text}" if before else text, stats: "", mic: None}
        except FAILURES as exc:
            message = NOTHING_HEARD if getattr(exc, "code", "") == "no_speech" else str(exc)
            yield {stats: "", mic: None}
            raise user_error(message, title="Not sent") from None
        finally:
            cancel.set()
            if updates is not None and hasattr(updates, "close"):
                updates.close()
            cancels.finish(user, key, cancel)
            if uploads.release(who, path):  # nobody else holds this upload: the recording goes
                with contextlib.suppress(OSError):
                    os.unlink(path)

    return mic.stop_recording(
        hear,
        [mic, msg, browser_id],
        [msg, stats, mic],
        concurrency_limit=speech.settings.concurrency_limit,
        concurrency_id="chat-voice",
        show_progress_on=[stats],
        **PRIVATE,
    )


def wire_read_aloud(
    demo: gr.Blocks, speech: SpeechStudio, chat: ChatService, browser_id: Any, conv_id: gr.State
) -> ReadAloud:
    """The player row (made where this is called) and the bubbles' "Read aloud": the hidden button the page script
    clicks reads the stored text of the reply it names."""
    reader = read_aloud_player(speech, "chat", browser_id, "chat")
    go = gr.Button("Read the reply aloud", visible="hidden", elem_id="chat-read-go")
    wanted = gr.Textbox(visible="hidden", elem_id="chat-read-request")

    def reply_text(user: str, cid: str | None, which: str | None) -> str:
        try:
            message_id = int(str(which or ""))
            if not cid:
                raise NotFoundError("no conversation open")
            return spoken_reply(chat.conversation(user, cid), message_id)
        except ValueError:
            raise user_error(
                "That Read aloud control is out of date; reload the page.", title="Not read aloud"
            ) from None
        except NotFoundError:
            raise user_error(
                "That reply is no longer shown here; open its conversation again.", title="Not read aloud"
            ) from None

    reader.wire(
        go.click,
        reply_text,
        [conv_id, wanted],
        browser_id,
        js="(bid, cid, w) => [bid, cid, window.studioChatRead || '']",
    )
    demo.load(None, None, None, js=PAGE_JS, **PRIVATE)
    return reader
