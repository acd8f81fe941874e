"""The chat tab: components and event wiring only. Everything it does is a call into core.chat.service."""

from __future__ import annotations

import gradio as gr

from core.chat.display import display_messages
from core.chat.service import ChatService
from core.errors import NotFoundError
from core.security.uploads import UploadRegistry
from core.speech.service import SpeechStudio
from ui.chat_list import conversation_list, list_html, picked_id
from ui.chat_turns import TurnParts, wire_turns
from ui.chat_voice import microphone, wire_microphone, wire_read_aloud
from ui.downloads import download
from ui.errors import user_error
from ui.flows import chat_send_controls
from ui.identity import ensure_browser_id, user_id
from ui.library_open import Opener, register_opener
from ui.model_pickers import ModelPickers

PRIVATE = dict(api_visibility="private")
MAX_QUERY_CHARS = 200  # a search longer than any title is cut, not refused
TITLE_WAIT_S = 20.0  # how long the list waits for a model's title after the first reply
# Starts the download of the file just made, under its own name (the exported gr.File's value: url, orig_name).
DOWNLOAD_JS = """(file) => {
    if (!file || !file.url) return;
    const link = document.createElement('a');
    link.href = file.url;
    link.download = file.orig_name || '';
    document.body.appendChild(link);
    link.click();
    link.remove();
}"""


def build_chat_tab(
    demo: gr.Blocks,
    service: ChatService,
    presets: dict[str, str],
    browser_id: gr.BrowserState,
    pickers: ModelPickers,
    speech: SpeechStudio | None = None,
    uploads: UploadRegistry | None = None,
) -> None:
    """`pickers` makes the model picker (only what runs now) and the line above the chat that says which model
    answers and offers the recommended download. With `speech` (and `uploads`, where recordings arrive): a
    microphone beside the message box and "Read aloud" on every reply (ui/chat_voice.py)."""
    default_preset = next(iter(presets))

    def list_of(user: str, cid: str | None, query: str = ""):
        """The conversation list (matching `query`) with `cid` marked open."""
        return list_html(service.conversations(user, query), query, cid or "")

    with gr.Tab("Chat", id="chat"):
        conv_id = gr.State(None)
        with gr.Row(equal_height=False):
            # The list: open beside the chat on a wide screen; on a phone under the chat and its input, folded
            # (the page script in ui/chat_turns.py folds it at load there).
            with (
                gr.Column(scale=1, min_width=240, elem_id="chat-sidebar"),
                gr.Accordion("Conversations", open=True, elem_id="chat-list-panel"),
            ):
                new_btn = gr.Button("+ New chat", variant="secondary")
                search = gr.Textbox(
                    placeholder="Search conversations…",
                    label="Search conversations",
                    show_label=False,
                    elem_id="chat-search",
                )
                conv_list = conversation_list("chat-conversations")
                with gr.Accordion("Rename · delete · export", open=False):
                    rename_box = gr.Textbox(label="Title", elem_id="chat-title")
                    rename_btn = gr.Button("Rename", size="sm")
                    with gr.Row():
                        md_btn = gr.Button("Export Markdown", size="sm", min_width=100)
                        json_btn = gr.Button("Export JSON", size="sm", min_width=100)
                    delete_btn = gr.Button("Delete conversation", variant="stop", size="sm")
                    export_file = gr.File(
                        label="Exported conversation", interactive=False, visible="hidden", elem_id="chat-export-file"
                    )
            with gr.Column(scale=4, elem_id="chat-main"):
                with gr.Row(equal_height=False):
                    model = pickers.picker("text", elem_id="chat-model", scale=4)
                    pickers.get_more_button(elem_id="chat-get-more")
                pickers.offer("text", model, browser_id, elem_prefix="chat")
                chatbot = gr.Chatbot(
                    label="Conversation",
                    height=520,
                    elem_id="chatbot",
                    buttons=["copy"],
                    editable="user",  # each message of the user's has an Edit button: editing branches from it
                    placeholder="Ask anything. Replies stream in; conversations are kept across restarts.",
                )
                stats = gr.Markdown(elem_id="chat-stats")
                if speech:  # the player row "Read aloud" on a reply opens (hidden until then)
                    wire_read_aloud(demo, speech, service, browser_id, conv_id)
                chat_send_controls(demo)  # a reply's "Send to Writer" / "Send to Speech" (ui/flows.py)
                with gr.Row(elem_id="chat-compose"):
                    msg = gr.Textbox(
                        placeholder="Message (Enter to send, Shift+Enter for a new line)",
                        label="Message",
                        show_label=False,
                        lines=1,
                        max_lines=12,
                        scale=8,
                        elem_id="chat-input",
                    )
                    mic = microphone() if speech and uploads else None
                    # Send is the one main action; while a reply runs, Stop takes its place.
                    send_btn = gr.Button("Send", variant="primary", scale=1, min_width=90, elem_id="chat-send")
                    stop_btn = gr.Button("Stop", scale=1, min_width=90, visible=False, elem_id="chat-stop")
                # Shown only where they apply: a new chat has nothing to regenerate, edit or clear.
                with gr.Row(elem_id="chat-actions"):
                    continue_btn = gr.Button("Continue reply", size="sm", visible=False, elem_id="chat-continue")
                    regen_btn = gr.Button("Regenerate", size="sm", visible=False, elem_id="chat-regenerate")
                    edit_btn = gr.Button("Edit last message", size="sm", visible=False, elem_id="chat-edit")
                    clear_btn = gr.Button("Clear conversation", size="sm", visible=False, elem_id="chat-clear")
                # The "‹ 2/3 ›" controls in the bubbles click this (the page script below says which message).
                version_btn = gr.Button("Show version", visible="hidden", elem_id="chat-version-go")
                with gr.Accordion("System prompt and sampling", open=False):
                    preset = gr.Dropdown(choices=list(presets), value=default_preset, label="Preset")
                    system_prompt = gr.Textbox(value=presets[default_preset], label="System prompt", lines=3)
                    with gr.Row():
                        temperature = gr.Slider(
                            0.0, 2.0, value=0.7, step=0.05, label="Temperature", info="0 = greedy (deterministic)"
                        )
                        top_p = gr.Slider(0.05, 1.0, value=0.95, step=0.05, label="Top-p")
                    with gr.Row():
                        max_new = gr.Slider(
                            16, 4096, value=512, step=16, label="Max new tokens", elem_id="chat-max-new"
                        )
                        seed = gr.Number(value=-1, precision=0, label="Seed", info="-1 = random")

        gen_inputs = [model, system_prompt, temperature, top_p, max_new, seed]
        # a recording, transcribed into the box, is sent from here as a typed message is (ui/chat_turns.py)
        spoken = wire_microphone(speech, uploads, browser_id, mic, msg, stats) if speech and uploads and mic else None

        # -- helpers -------------------------------------------------------------------------
        def load_conversation(user: str, cid: str | None):
            if not cid:
                return [], ""
            try:
                conv = service.conversation(user, cid)
            except NotFoundError:
                return [], ""
            return display_messages(conv), conv.title

        # -- page load: identity and the most recent conversation ----------------------------
        def on_load(bid, request: gr.Request):
            bid = ensure_browser_id(bid)
            user = user_id(bid, request)
            convs = service.conversations(user)
            cid = convs[0].id if convs else None
            history, title = load_conversation(user, cid)
            return (bid, cid, list_html(convs, "", cid or ""), history, title)

        demo.load(on_load, [browser_id], [browser_id, conv_id, conv_list, chatbot, rename_box], **PRIVATE)

        # -- turns: send, stream, stop, regenerate, edit, continue, versions (ui/chat_turns.py) ------------
        turns = wire_turns(
            demo,
            service,
            pickers,
            TurnParts(
                browser_id=browser_id,
                conv_id=conv_id,
                msg=msg,
                chatbot=chatbot,
                stats=stats,
                conv_list=conv_list,
                rename_box=rename_box,
                send_btn=send_btn,
                stop_btn=stop_btn,
                continue_btn=continue_btn,
                regen_btn=regen_btn,
                edit_btn=edit_btn,
                clear_btn=clear_btn,
                version_btn=version_btn,
                gen_inputs=gen_inputs,
                list_update=list_of,
                spoken=spoken,
            ),
        )
        quiet = dict(show_progress_on=[stats], **PRIVATE)

        # -- conversations -----------------------------------------------------------------------
        def query_of(query) -> str:
            return query[:MAX_QUERY_CHARS] if isinstance(query, str) else ""

        def new_chat(bid, query, request: gr.Request):
            user = user_id(bid, request)
            return None, [], "", list_of(user, None, query_of(query)), ""

        new_btn.click(new_chat, [browser_id, search], [conv_id, chatbot, stats, conv_list, rename_box], **PRIVATE)

        def switch(bid, evt: gr.EventData, request: gr.Request):
            user = user_id(bid, request)
            cid = picked_id(evt)
            try:
                if cid is None:
                    raise NotFoundError("not a conversation id")
                conv = service.conversation(user, cid)
            except NotFoundError:
                raise user_error("That conversation no longer exists.", title="Not found") from None
            model_value = conv.model if pickers.offered("text", conv.model) else gr.Dropdown()
            return (
                cid,
                display_messages(conv),
                "",
                conv.title,
                model_value,
                conv.system_prompt if conv.system_prompt else gr.Textbox(),
            )

        conv_list.pick(  # a custom event, sent by the list's script (ui/chat_list.py)
            switch, [browser_id], [conv_id, chatbot, stats, rename_box, model, system_prompt], **quiet
        )

        def open_from_library(user: str, cid: str, values: dict) -> dict:
            """The Library's Open (ui/library_open.py): the conversation shown with its model and system prompt,
            and marked open in the list."""
            conv = service.conversation(user, cid)  # NotFoundError for a missing or another user's
            return {
                conv_id: cid,
                chatbot: display_messages(conv),
                stats: "",
                rename_box: conv.title,
                model: conv.model if pickers.offered("text", conv.model) else gr.skip(),
                system_prompt: conv.system_prompt or "",
                search: "",
                conv_list: list_of(user, cid),
            }

        register_opener(
            demo,
            ("chat",),
            Opener(
                "chat",
                [conv_id, chatbot, stats, rename_box, model, system_prompt, search, conv_list],
                open_from_library,
                missing=(NotFoundError,),
            ),
        )

        def do_search(bid, query, cid, request: gr.Request):
            return list_of(user_id(bid, request), cid, query_of(query))

        search.change(do_search, [browser_id, search, conv_id], [conv_list], show_progress="hidden", **PRIVATE)

        def rename(bid, cid, title, query, request: gr.Request):
            user = user_id(bid, request)
            if not cid:
                raise user_error("Open a conversation to rename it.", title="Nothing to rename")
            try:
                service.rename(user, cid, title or "")
            except (ValueError, NotFoundError) as exc:
                raise user_error(str(exc), title="Not renamed") from None
            return list_of(user, cid, query_of(query))

        rename_btn.click(
            rename, [browser_id, conv_id, rename_box, search], [conv_list], show_progress_on=[rename_box], **PRIVATE
        )

        def delete(bid, cid, query, request: gr.Request):
            user = user_id(bid, request)
            service.delete(user, cid)
            return None, [], "", list_of(user, None, query_of(query)), ""

        delete_btn.click(
            delete, [browser_id, conv_id, search], [conv_id, chatbot, stats, conv_list, rename_box], **PRIVATE
        )

        def exporter(ext: str):
            def run(bid, cid, request: gr.Request):
                user = user_id(bid, request)
                if not cid:
                    raise user_error("Open a conversation to export it.", title="Nothing to export")
                try:
                    return download(*service.export(user, cid, ext), visible="hidden")
                except NotFoundError:
                    raise user_error("That conversation no longer exists.", title="Nothing to export") from None

            return run

        # One click: the file is made, then the page downloads it under its name (no second link to click).
        for button, ext in ((md_btn, "md"), (json_btn, "json")):
            button.click(exporter(ext), [browser_id, conv_id], [export_file], **quiet).success(
                None, [export_file], None, js=DOWNLOAD_JS, **PRIVATE
            )

        def after_reply(bid, cid, model_spec, query, request: gr.Request):
            """The model may name the conversation after its first reply (core/chat/titles.py): the list shows the
            new title when it lands, within TITLE_WAIT_S (else at its next refresh). The open mark is left alone:
            the user may have opened another conversation meanwhile."""
            user = user_id(bid, request)
            thread = service.write_title(user, cid, model_spec if isinstance(model_spec, str) else None)
            if thread is None:
                return gr.skip()
            thread.join(TITLE_WAIT_S)
            return list_html(service.conversations(user, query_of(query)), query_of(query), open_id=None)

        for turn in turns:
            turn.then(
                after_reply,
                [browser_id, conv_id, model, search],
                [conv_list],
                show_progress="hidden",
                concurrency_limit=8,
                concurrency_id="chat-title",
                **PRIVATE,
            )
        preset.input(lambda name: presets.get(name, ""), [preset], [system_prompt], **PRIVATE)
