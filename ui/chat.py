"""The chat tab: components and event wiring only. Everything it does is a call into core.chat.service."""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

from core.chat.display import display_messages, reply_bubble
from core.chat.service import ChatOptions, ChatService, throttled
from core.errors import BackendError, InputError, NotFoundError
from ui.downloads import download
from ui.errors import user_error
from ui.identity import ensure_browser_id, user_id
from ui.model_pickers import ModelPickers

PRIVATE = dict(api_visibility="private")


def _options(model, system_prompt, temperature, top_p, max_new_tokens, seed) -> ChatOptions:
    """The sampling controls, checked as the /chat API's are (InputError names a bad one)."""
    return ChatOptions.checked(
        model=model,
        system_prompt=system_prompt,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        seed=seed,
    )


def _stats_markdown(stats: dict, label: str, notice: str = "", note: str = "") -> str:
    parts = []
    if stats:
        parts.append(f"{stats.get('completion_tokens') or 0} tokens")
        if stats.get("tokens_per_s"):
            parts.append(f"{stats['tokens_per_s']:.1f} tok/s")
        if stats.get("ttft_s") is not None:
            parts.append(f"first token {stats['ttft_s']:.2f} s")
        parts.append(label)
    line = " · ".join(parts)
    if note:
        line += f" · **cut: {note}**"
    if notice:
        line = f"ℹ️ {notice}\n\n{line}"
    return line


def build_chat_tab(
    demo: gr.Blocks, service: ChatService, presets: dict[str, str], browser_id: gr.BrowserState, pickers: ModelPickers
) -> None:
    """`pickers` makes the model picker (only what runs now) and the line above the chat that says which model
    answers and offers the recommended download."""
    models = service.models
    default_preset = next(iter(presets))

    def conv_choices(user: str, query: str = "") -> list[tuple[str, str]]:
        return [(c.title, c.id) for c in service.conversations(user, query)]

    with gr.Tab("Chat", id="chat"):
        conv_id = gr.State(None)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=240):
                new_btn = gr.Button("+ New chat", variant="secondary")
                search = gr.Textbox(placeholder="Search conversations…", show_label=False, elem_id="chat-search")
                conv_list = gr.Radio(choices=[], label="Conversations", elem_id="chat-conversations")
                with gr.Accordion("Rename · delete · export", open=False):
                    rename_box = gr.Textbox(label="Title", elem_id="chat-title")
                    rename_btn = gr.Button("Rename")
                    delete_btn = gr.Button("Delete conversation", variant="stop")
                    with gr.Row():
                        md_btn = gr.Button("Export Markdown")
                        json_btn = gr.Button("Export JSON")
                    export_file = gr.File(label="Download", interactive=False, visible=False)
            with gr.Column(scale=4):
                with gr.Row(equal_height=False):
                    model = pickers.picker("text", elem_id="chat-model", scale=4)
                    pickers.get_more_button(elem_id="chat-get-more")
                pickers.offer("text", model, browser_id, elem_prefix="chat")
                chatbot = gr.Chatbot(
                    label="Conversation",
                    height=520,
                    elem_id="chatbot",
                    buttons=["copy"],
                    placeholder="Ask anything. Replies stream in; conversations are kept across restarts.",
                )
                stats = gr.Markdown(elem_id="chat-stats")
                with gr.Row():
                    msg = gr.Textbox(
                        placeholder="Message (Enter to send, Shift+Enter for a new line)",
                        show_label=False,
                        lines=1,
                        max_lines=12,
                        scale=8,
                        elem_id="chat-input",
                    )
                    send_btn = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
                    stop_btn = gr.Button("Stop", variant="stop", scale=1, elem_id="chat-stop")
                with gr.Row():
                    regen_btn = gr.Button("⟳ Regenerate", size="sm", elem_id="chat-regenerate")
                    edit_btn = gr.Button("✎ Edit last message", size="sm", elem_id="chat-edit")
                    clear_btn = gr.Button("Clear conversation", size="sm", elem_id="chat-clear")
                with gr.Accordion("System prompt and sampling", open=False):
                    preset = gr.Dropdown(choices=list(presets), value=default_preset, label="Preset")
                    system_prompt = gr.Textbox(value=presets[default_preset], label="System prompt", lines=3)
                    with gr.Row():
                        temperature = gr.Slider(
                            0.0, 2.0, value=0.7, step=0.05, label="Temperature", info="0 = greedy (deterministic)"
                        )
                        top_p = gr.Slider(0.05, 1.0, value=0.95, step=0.05, label="Top-p")
                    with gr.Row():
                        max_new = gr.Slider(16, 4096, value=512, step=16, label="Max new tokens")
                        seed = gr.Number(value=-1, precision=0, label="Seed", info="-1 = random")

        gen_inputs = [model, system_prompt, temperature, top_p, max_new, seed]

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
            return (bid, cid, gr.Radio(choices=[(c.title, c.id) for c in convs], value=cid), history, title)

        demo.load(on_load, [browser_id], [browser_id, conv_id, conv_list, chatbot, rename_box], **PRIVATE)

        # -- sending and streaming -------------------------------------------------------------
        def accept(
            text,
            bid,
            cid,
            model_spec,
            system,
            temp,
            topp,
            max_tokens,
            seed_value,
            request: gr.Request,
            progress=gr.Progress(),
        ):
            """Check the message, load the model if needed, store the message. On any problem the
            text stays in the box (outputs are not touched when gr.Error is raised)."""
            user = user_id(bid, request)
            try:
                opts = _options(model_spec, system, temp, topp, max_tokens, seed_value)
                cid = service.send(user, cid, text, opts, load_progress=lambda f, d: progress(f, desc=d))
            except (InputError, BackendError, KeyError) as exc:
                raise user_error(str(exc), title="Message not sent") from None
            history, title = load_conversation(user, cid)
            return (
                "",
                cid,
                history + [{"role": "assistant", "content": "…"}],
                gr.Radio(choices=conv_choices(user), value=cid),
                title,
            )

        def respond(
            bid,
            cid,
            model_spec,
            system,
            temp,
            topp,
            max_tokens,
            seed_value,
            request: gr.Request,
            progress=gr.Progress(),
        ) -> Iterator:
            user = user_id(bid, request)
            try:
                opts = _options(model_spec, system, temp, topp, max_tokens, seed_value)
            except InputError as exc:
                raise user_error(str(exc), title="No reply") from None
            history, _ = load_conversation(user, cid)
            label = pickers.label("text", opts.model or models.default)
            try:
                updates = service.reply(user, cid, opts, load_progress=lambda f, d: progress(f, desc=d))
                for upd in throttled(updates):
                    bubble = reply_bubble(upd.text, upd.status, upd.note)
                    yield (
                        history + [{"role": "assistant", "content": bubble}],
                        _stats_markdown(upd.stats, label, upd.notice, upd.note if upd.status == "cut" else ""),
                    )
                    if upd.error:
                        raise user_error(upd.error, title="The reply was cut")
            except (InputError, BackendError, NotFoundError, KeyError) as exc:
                raise user_error(str(exc), title="No reply") from None

        accept_outputs = [msg, conv_id, chatbot, conv_list, rename_box]
        # Progress and error badges go on the stats line only: an error must never cover the
        # conversation (Gradio marks every output of a failed event).
        quiet = dict(show_progress_on=[stats], **PRIVATE)
        respond_kwargs = dict(
            concurrency_limit=service.settings.concurrency_limit, concurrency_id="chat-generate", **quiet
        )
        for trigger in (msg.submit, send_btn.click):
            trigger(accept, [msg, browser_id, conv_id, *gen_inputs], accept_outputs, **quiet).success(
                respond, [browser_id, conv_id, *gen_inputs], [chatbot, stats], **respond_kwargs
            )

        def stop(bid, cid, request: gr.Request):
            service.stop(user_id(bid, request), cid)

        stop_btn.click(stop, [browser_id, conv_id], None, queue=False, **PRIVATE)

        def prepare_regenerate(bid, cid, request: gr.Request):
            user = user_id(bid, request)
            if not cid:
                raise user_error("Start a conversation first.", title="Nothing to regenerate")
            try:
                service.drop_last_reply(user, cid)
            except (InputError, NotFoundError) as exc:
                raise user_error(str(exc), title="Nothing to regenerate") from None
            history, _ = load_conversation(user, cid)
            return history + [{"role": "assistant", "content": "…"}]

        regen_btn.click(prepare_regenerate, [browser_id, conv_id], [chatbot], **quiet).success(
            respond, [browser_id, conv_id, *gen_inputs], [chatbot, stats], **respond_kwargs
        )

        def edit_last(bid, cid, current_text, request: gr.Request):
            user = user_id(bid, request)
            if not cid:
                raise user_error("There is no message to edit yet.", title="Nothing to edit")
            if current_text and current_text.strip():
                raise user_error(
                    "The message box is not empty; send or clear it first so nothing you typed is overwritten.",
                    title="Nothing changed",
                )
            try:
                text = service.take_back_last_user_message(user, cid)
            except (InputError, NotFoundError) as exc:
                raise user_error(str(exc), title="Nothing to edit") from None
            history, _ = load_conversation(user, cid)
            return text, history

        edit_btn.click(edit_last, [browser_id, conv_id, msg], [msg, chatbot], **quiet)

        def clear(bid, cid, request: gr.Request):
            service.clear(user_id(bid, request), cid)
            return [], ""

        clear_btn.click(clear, [browser_id, conv_id], [chatbot, stats], **PRIVATE)
        chatbot.clear(clear, [browser_id, conv_id], [chatbot, stats], **PRIVATE)  # its own trash icon

        # -- conversations -----------------------------------------------------------------------
        def new_chat(bid, request: gr.Request):
            user = user_id(bid, request)
            return None, [], "", gr.Radio(choices=conv_choices(user), value=None), ""

        new_btn.click(new_chat, [browser_id], [conv_id, chatbot, stats, conv_list, rename_box], **PRIVATE)

        def switch(bid, cid, request: gr.Request):
            user = user_id(bid, request)
            try:
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

        conv_list.input(
            switch, [browser_id, conv_list], [conv_id, chatbot, stats, rename_box, model, system_prompt], **quiet
        )

        def do_search(bid, query, cid, request: gr.Request):
            return gr.Radio(choices=conv_choices(user_id(bid, request), query or ""), value=cid)

        search.change(do_search, [browser_id, search, conv_id], [conv_list], **PRIVATE)

        def rename(bid, cid, title, query, request: gr.Request):
            user = user_id(bid, request)
            if not cid:
                raise user_error("Open a conversation to rename it.", title="Nothing to rename")
            try:
                service.rename(user, cid, title or "")
            except (ValueError, NotFoundError) as exc:
                raise user_error(str(exc), title="Not renamed") from None
            return gr.Radio(choices=conv_choices(user, query or ""), value=cid)

        rename_btn.click(
            rename, [browser_id, conv_id, rename_box, search], [conv_list], show_progress_on=[rename_box], **PRIVATE
        )

        def delete(bid, cid, request: gr.Request):
            user = user_id(bid, request)
            service.delete(user, cid)
            return None, [], "", gr.Radio(choices=conv_choices(user), value=None), ""

        delete_btn.click(delete, [browser_id, conv_id], [conv_id, chatbot, stats, conv_list, rename_box], **PRIVATE)

        def exporter(ext: str):
            def run(bid, cid, request: gr.Request):
                user = user_id(bid, request)
                if not cid:
                    raise user_error("Open a conversation to export it.", title="Nothing to export")
                return download(*service.export(user, cid, ext))

            return run

        md_btn.click(exporter("md"), [browser_id, conv_id], [export_file], **quiet)
        json_btn.click(exporter("json"), [browser_id, conv_id], [export_file], **quiet)
        preset.input(lambda name: presets.get(name, ""), [preset], [system_prompt], **PRIVATE)
