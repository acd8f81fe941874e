"""Flows across tabs (core/flows.py does the work): a chat reply's "Send to Writer" and "Send to Speech" (controls
in the reply bubble), the writer's "Make a header image" (a prompt made from the draft, into Images) and the
condenser's "Discuss in Chat" (a new conversation holding the summary). Each tab makes its controls while it is
built; `wire_flows` wires them once every tab exists, opening the result through the tab's own Opener
(ui/library_open.py). Event wiring only."""

from __future__ import annotations

import threading
import time
from typing import Any

import gradio as gr

from core.errors import BackendError, InputError, NotFoundError
from core.flows import SPOKEN, Flows, Pending
from ui.errors import user_error
from ui.identity import user_id
from ui.library_open import Opener, openers
from ui.send_to_speech import SendToSpeech

PRIVATE = dict(api_visibility="private")
FAILURES = (InputError, NotFoundError, BackendError, LookupError)

# Runs once in the page: a click on a reply's "Send to Writer" / "Send to Speech" (core/chat/display.py) names the
# message and clicks the hidden button of that flow.
PAGE_JS = """() => {
  if (window.studioChatSends) return;
  window.studioChatSends = true;
  document.addEventListener("click", (event) => {
    const send = event.target.closest && event.target.closest("#chatbot button.chat-send-to");
    if (!send) return;
    event.preventDefault();
    event.stopPropagation();
    const which = /chat-s([ws])-(\\d+)/.exec(send.className);
    if (!which) return;
    window.studioChatSend = which[2];
    const go = document.querySelector(which[1] === "w" ? "#chat-to-writer-go" : "#chat-to-speech-go");
    if (go) go.click();
  }, true);
}"""
# Asks before a prompt made from the draft replaces one already in the Images prompt box (the answer rides in the
# last input: a hidden checkbox).
ASK_REPLACE_JS = """(...args) => {
  const box = document.querySelector("#image-prompt textarea");
  const held = box ? box.value.trim() : "";
  args[args.length - 1] = !held || window.confirm(
    "The Images prompt already holds a prompt. Replace it with one made from this draft?");
  return args;
}"""
WITH_MESSAGE_JS = "(bid, cid, which, ...rest) => [bid, cid, window.studioChatSend || '', ...rest]"
# A reply sent to Speech: the message it names, and whether it may replace other text in the Speech box (asked).
TO_SPEECH_JS = """(bid, cid, which, ok) => {
  const box = document.querySelector("#speech-text textarea");
  const held = box ? box.value.trim() : "";
  return [bid, cid, window.studioChatSend || "", !held || window.confirm(
    "The Speech box already holds text. Replace it with this reply?")];
}"""


def show_js(elem_id: str) -> str:
    """Once the other tab is open, bring `elem_id` into view (on a phone the page keeps the old tab's scroll); on a
    phone to the middle of the screen, clear of the bar of main actions fixed at its bottom."""
    return (
        "() => { setTimeout(() => document.getElementById('"
        + elem_id
        + "')?.scrollIntoView({block: window.matchMedia('(max-width: 640px)').matches ? 'center' : 'nearest', "
        "behavior: 'smooth'}), 150); }"
    )


# -- controls each tab makes while it is built -----------------------------------------------------------------


def chat_send_controls(demo: gr.Blocks) -> None:
    """Inside the chat tab: the hidden buttons the bubbles' "Send to" controls click, and the message they name."""
    gr.Button("Send the reply to Writer", visible="hidden", elem_id="chat-to-writer-go")
    gr.Button("Send the reply to Speech", visible="hidden", elem_id="chat-to-speech-go")
    gr.Textbox(visible="hidden", elem_id="chat-send-request")
    gr.Checkbox(visible="hidden", elem_id="chat-send-replace")  # the answer to "replace the Speech box's text?"
    demo.load(None, None, None, js=PAGE_JS, **PRIVATE)


def header_image_button() -> None:
    """Inside the writer's draft tools: "Make a header image", and the hidden answer to "replace the prompt?"."""
    gr.Button("Make a header image", size="sm", elem_id="writer-header-image", elem_classes=["writer-needs-draft"])
    gr.Checkbox(visible="hidden", elem_id="writer-header-replace")


def discuss_button() -> None:
    """Under the condenser's summary: "Discuss in Chat"."""
    gr.Button("Discuss in Chat", size="sm", elem_id="condense-discuss")


# -- the wiring, once every tab exists -------------------------------------------------------------------------


def wire_flows(
    demo: gr.Blocks,
    flows: Flows,
    tabs: gr.Tabs,
    browser_id: gr.BrowserState,
    speech_tab: Any = None,
    sends: tuple[SendToSpeech | None, ...] = (),
) -> None:
    """`speech_tab`: ui/speech.py SpeechTabHandles; `sends`: the writer's and condenser's "Send to Speech" (their
    audio is linked to the draft or summary it came from)."""
    found = openers(demo)
    chat, writer, summary = found.get("chat"), found.get("draft"), found.get("summary")
    conv_id = chat.outputs[0] if chat else None
    draft_id = writer.outputs[0] if writer else None
    summary_id = summary.outputs[0] if summary else None
    which = _by_elem_id(demo, "chat-send-request")
    draft_box = _by_elem_id(demo, "writer-draft")

    if chat and writer and which is not None and draft_box is not None:
        _wire_reply_to_writer(demo, flows, tabs, browser_id, conv_id, which, writer, draft_id, draft_box)
    if writer and draft_box is not None:
        _wire_header_image(demo, flows, tabs, browser_id, draft_id, draft_box)
    if chat and summary:
        _wire_discuss(demo, flows, tabs, browser_id, summary_id, chat)
    if speech_tab is not None:
        _wire_speech_links(demo, flows, tabs, browser_id, speech_tab, conv_id, which, draft_id, summary_id, sends)


def _wire_reply_to_writer(
    demo, flows: Flows, tabs, browser_id, conv_id, which, writer: Opener, draft_id, draft_box
) -> None:
    go = _by_elem_id(demo, "chat-to-writer-go")

    def to_writer(bid, cid, message, did, text, request: gr.Request):
        user = user_id(bid, request)
        try:
            draft = flows.reply_to_writer(user, cid, message, text if isinstance(text, str) else "", did)
            filled = writer.fill(user, draft.id, {})
        except FAILURES as exc:
            raise user_error(_message(exc), title="Not sent to Writer") from None
        filled[tabs] = gr.Tabs(selected=writer.tab)
        return filled

    go.click(
        to_writer,
        [browser_id, conv_id, which, draft_id, draft_box],
        [*writer.outputs, tabs],
        js=WITH_MESSAGE_JS,
        **PRIVATE,
    ).success(None, None, None, js=show_js("writer-draft"), queue=False, **PRIVATE)


def _wire_header_image(demo, flows: Flows, tabs, browser_id, draft_id, draft_box) -> None:
    button = _by_elem_id(demo, "writer-header-image")
    replace = _by_elem_id(demo, "writer-header-replace")
    topic = _by_elem_id(demo, "writer-topic")
    prompt = _by_elem_id(demo, "image-prompt")
    gallery = _by_elem_id(demo, "image-gallery")
    if button is None or replace is None or prompt is None or topic is None:
        return
    pending = gr.State(None)  # Pending: the draft the next images are made for

    def header_prompt(bid, did, text, topic_v, ok, request: gr.Request):
        user = user_id(bid, request)
        if not ok:  # the person kept the prompt that was there
            return gr.skip(), gr.skip(), gr.skip()
        try:
            line = flows.header_prompt(user, did, text, topic_v)
        except FAILURES as exc:
            raise user_error(_message(exc), title="No prompt made") from None
        made_for = Pending(("draft", did), time.time()) if did else None
        return line, gr.Tabs(selected="images"), made_for

    button.click(
        header_prompt,
        [browser_id, draft_id, draft_box, topic, replace],
        [prompt, tabs, pending],
        js=ASK_REPLACE_JS,
        **PRIVATE,
    ).success(None, None, None, js=show_js("image-prompt"), queue=False, **PRIVATE)
    if gallery is not None:
        gallery.change(_linker(flows, "image"), [browser_id, pending], [pending], show_progress="hidden", **PRIVATE)


def _wire_discuss(demo, flows: Flows, tabs, browser_id, summary_id, chat: Opener) -> None:
    button = _by_elem_id(demo, "condense-discuss")
    stats = _by_elem_id(demo, "chat-stats")
    if button is None:
        return

    def discuss(bid, sid, request: gr.Request):
        user = user_id(bid, request)
        try:
            conv = flows.summary_to_chat(user, sid)
            filled = chat.fill(user, conv.id, {})
        except FAILURES as exc:
            raise user_error(_message(exc), title="Not sent to Chat") from None
        if stats is not None:
            filled[stats] = (
                "This conversation starts from the summary: it is in the system prompt (under "
                "*System prompt and sampling*), so every reply can use it. Ask your question below."
            )
        filled[tabs] = gr.Tabs(selected=chat.tab)
        return filled

    outputs = [*chat.outputs, *([stats] if stats is not None and stats not in chat.outputs else []), tabs]
    button.click(discuss, [browser_id, summary_id], outputs, **PRIVATE).success(
        None, None, None, js=show_js("chat-input"), queue=False, **PRIVATE
    )


class Waiting:
    """What a page's next audio will be made from, kept on the server per (user, page, slot). A gr.State set by one
    listener of a click is not what the change events of another listener of that same click read (seen in this
    Gradio: they read the value from before the click), so "Send to Speech" keeps it here."""

    LIMIT = 10_000  # pages remembered at once; the oldest half is forgotten past it (a link missed, nothing else)

    def __init__(self) -> None:
        self._items: dict[tuple[str, str, str], Pending] = {}
        self._lock = threading.Lock()

    def put(self, key: tuple[str, str, str], pending: Pending | None) -> None:
        with self._lock:
            self._items.pop(key, None)
            if pending is None:
                return
            if len(self._items) >= self.LIMIT:
                for old in list(self._items)[: self.LIMIT // 2]:
                    del self._items[old]
            self._items[key] = pending

    def get(self, key: tuple[str, str, str]) -> Pending | None:
        with self._lock:
            return self._items.get(key)

    def done(self, key: tuple[str, str, str], pending: Pending) -> None:
        with self._lock:
            if self._items.get(key) == pending:
                del self._items[key]


def _wire_speech_links(
    demo, flows: Flows, tabs, browser_id, handles, conv_id, which, draft_id, summary_id, sends
) -> None:
    """A chat reply's "Send to Speech", and the link from what is spoken next in the Speech tab to the reply, draft or
    summary sent. ("Read aloud" is not linked: its remembering listener ran after the reading it shares a click
    with, so the reading was older than what it waited for.)"""
    waiting = Waiting()

    def key(bid, request: gr.Request, slot: str) -> tuple[str, str, str]:
        return user_id(bid, request), request.session_hash or "", slot

    go = _by_elem_id(demo, "chat-to-speech-go")
    replace = _by_elem_id(demo, "chat-send-replace")
    if go is not None and conv_id is not None and which is not None and replace is not None:

        def reply_to_speech(bid, cid, message, ok, request: gr.Request):
            user = user_id(bid, request)
            if not ok:  # the person kept the text that was there
                return gr.skip(), gr.skip(), gr.skip()
            try:
                text = flows.reply_text(user, cid, message)
            except FAILURES as exc:
                raise user_error(_message(exc), title="Not sent to Speech") from None
            waiting.put(key(bid, request, "speech"), Pending(("chat", cid), time.time()))
            return text, gr.Tabs(selected=handles.tab_id), gr.Tabs(selected=handles.speak_part)

        go.click(
            reply_to_speech,
            [browser_id, conv_id, which, replace],
            [handles.text, tabs, handles.parts],
            js=TO_SPEECH_JS,
            **PRIVATE,
        ).success(None, None, None, js=show_js("speech-text"), queue=False, **PRIVATE)

    def remembering(slot: str, kind: str):
        def remember(bid, ref_id, request: gr.Request) -> None:
            made_from = Pending((kind, ref_id), time.time()) if isinstance(ref_id, str) and ref_id else None
            waiting.put(key(bid, request, slot), made_from)

        return remember

    def linking(slot: str, relation: str):
        def link(bid, request: gr.Request) -> None:
            where = key(bid, request, slot)
            pending = waiting.get(where)
            if pending is not None and flows.link_made(where[0], pending, "audio", relation):
                waiting.done(where, pending)  # linked once: what is made later came from elsewhere

        return link

    for send, kind, source in zip(sends, ("draft", "summary"), (draft_id, summary_id), strict=False):
        if send is not None and source is not None:
            send.button.click(remembering("speech", kind), [browser_id, source], None, **PRIVATE)
    spoken = _by_elem_id(demo, "speech-file")
    if spoken is not None:
        spoken.change(linking("speech", SPOKEN), [browser_id], None, show_progress="hidden", **PRIVATE)


def _linker(flows: Flows, kind: str, relation: str = ""):
    def link(bid, waiting, request: gr.Request):
        if not isinstance(waiting, Pending):
            return gr.skip()
        made = flows.link_made(user_id(bid, request), waiting, kind, relation)
        return None if made else gr.skip()  # linked once: what is made later came from elsewhere

    return link


def _message(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError | LookupError) and exc.args else str(exc)


def _by_elem_id(demo: gr.Blocks, elem_id: str) -> Any:
    return next((b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id), None)
