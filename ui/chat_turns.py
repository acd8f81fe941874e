"""The chat tab's turns: send, the reply streaming in, Stop, Regenerate, edit in place, Continue, the "‹ 2/3 ›"
version controls, and which of those actions show. Event wiring only: what a turn may do is core.chat's."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from core.chat.display import TurnActions, display_messages, reply_bubble, turn_actions, without_controls
from core.chat.service import ChatOptions, ChatService, Mode, throttled
from core.errors import BackendError, InputError, NotFoundError
from core.safe_html import safe_markdown
from ui.errors import user_error
from ui.identity import user_id
from ui.model_pickers import ModelPickers

PRIVATE = dict(api_visibility="private")
PENDING = "…"

# Runs once in the page: a click on a bubble's version control (core/chat/display.py) names the message and step,
# then clicks the hidden version button; an Edit box opened on a message with controls (versions, Read aloud) gets
# the text without them.
PAGE_JS = """() => {
  if (window.studioChatTurns) return;
  window.studioChatTurns = true;
  const controls = /\\s*<span class="chat-(versions|read)"[^>]*>[\\s\\S]*?<\\/span><!--\\/\\1-->/g;
  document.addEventListener("click", (event) => {
    const step = event.target.closest && event.target.closest("#chatbot button.chat-version-step");
    if (step) {
      event.preventDefault();
      event.stopPropagation();
      const which = /chat-v-(\\d+)-(prev|next)/.exec(step.className);
      if (step.disabled || !which) return;
      window.studioChatVersion = which[1] + ":" + (which[2] === "prev" ? "-1" : "1");
      const go = document.querySelector("#chat-version-go");
      if (go) go.click();
      return;
    }
    if (event.target.closest && event.target.closest("#chatbot")) {
      setTimeout(() => {
        document.querySelectorAll("#chatbot textarea").forEach((box) => {
          const clean = box.value.replace(controls, "");
          if (clean !== box.value) {
            box.value = clean;
            box.dispatchEvent(new Event("input", { bubbles: true }));
          }
        });
      }, 30);
    }
  }, true);
  // On a phone the conversation list comes after the chat and its input, folded (ui/chat.py, chat.css).
  if (window.matchMedia("(max-width: 640px)").matches) {
    let tries = 0;
    const fold = () => {
      const head = document.querySelector("#chat-list-panel > button, #chat-list-panel .label-wrap");
      if (head) {
        if (head.classList.contains("open")) head.click();
      } else if (tries++ < 100) setTimeout(fold, 50);
    };
    fold();
  }
  // Gradio names each bubble after its content ("bot's message: ..."): the controls' markup is no part of it.
  const tidy = (el) => {
    const label = el.getAttribute("aria-label");
    if (!label || !/class="chat-(versions|read)"/.test(label)) return;
    const clean = label.replace(controls, "");
    if (clean !== label) el.setAttribute("aria-label", clean); // only when changed: each set wakes the observer again
  };
  new MutationObserver((changes) => {
    for (const change of changes) {
      if (change.type === "attributes") tidy(change.target);
      else change.target.querySelectorAll && change.target.querySelectorAll("[aria-label]").forEach(tidy);
    }
  }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["aria-label"] });
}"""

# Edit last message: opens the chatbot's own Edit box on the last message of the user's.
EDIT_LAST_JS = """() => {
  const edits = document.querySelectorAll('#chatbot button[aria-label="Edit"]');
  if (edits.length) edits[edits.length - 1].click();
}"""


def options_from(model, system_prompt, temperature, top_p, max_new_tokens, seed) -> ChatOptions:
    """The sampling controls, checked as the /chat API's are (InputError names a bad one)."""
    return ChatOptions.checked(
        model=model,
        system_prompt=system_prompt,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        seed=seed,
    )


def stats_markdown(stats: dict, label: str, notice: str = "", note: str = "") -> str:
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
        if note == "length":
            line += " (the token limit: Continue writes the rest)"
    if notice:
        line = f"Note: {notice}\n\n{line}"
    return line


@dataclass
class TurnParts:
    """The chat tab's components a turn reads or changes."""

    browser_id: Any
    conv_id: Any
    msg: Any
    chatbot: Any
    stats: Any
    conv_list: Any
    rename_box: Any
    send_btn: Any
    stop_btn: Any
    continue_btn: Any
    regen_btn: Any
    edit_btn: Any
    clear_btn: Any
    version_btn: Any
    gen_inputs: list
    list_update: Callable[[str, str | None], Any]  # the conversation list with this one open (ui/chat_list.py)
    spoken: Any = None  # the event that put a spoken message in the box (ui/chat_voice.py): sent from its success


def wire_turns(demo: gr.Blocks, service: ChatService, pickers: ModelPickers, p: TurnParts) -> list:
    models = service.models
    action_outputs = [p.send_btn, p.stop_btn, p.continue_btn, p.regen_btn, p.edit_btn, p.clear_btn]
    outputs = [p.msg, p.conv_id, p.chatbot, p.stats, p.conv_list, p.rename_box, *action_outputs]

    def actions(acts: TurnActions, running: bool) -> dict:
        """Which actions show: Stop only while a reply runs (Send otherwise), the rest where they apply."""
        return {
            p.send_btn: gr.update(visible=not running),
            p.stop_btn: gr.update(visible=running),
            p.continue_btn: gr.update(visible=acts.can_continue and not running),
            p.regen_btn: gr.update(visible=acts.can_regenerate and not running),
            p.edit_btn: gr.update(visible=acts.can_regenerate and not running),
            p.clear_btn: gr.update(visible=acts.has_messages and not running),
        }

    def shown(user: str, cid: str | None):
        """(bubbles, conversation) of the open conversation; ([], None) for none or one gone."""
        if not cid:
            return [], None
        try:
            conv = service.conversation(user, cid)
        except NotFoundError:
            return [], None
        return display_messages(conv), conv

    @contextlib.contextmanager
    def one_turn(user: str, request: gr.Request, cid: str | None, title: str) -> Iterator[None]:
        """This tab's one turn; a second one meanwhile is refused with a message (its text stays in the box)."""
        try:
            guard = service.turn(user, request.session_hash or "", cid)
            guard.__enter__()
        except InputError as exc:
            raise user_error(str(exc), title=title) from None
        try:
            yield
        finally:
            guard.__exit__(None, None, None)

    def stream(user: str, cid: str, opts: ChatOptions, mode: Mode, base: list[dict], progress) -> Iterator[dict]:
        """The reply streaming in under `base` (the bubbles above it), then the conversation as stored, with the
        actions that now apply. A failure says why after the partial reply is shown."""
        label = pickers.label("text", opts.model or models.default)
        error = ""
        try:
            updates = service.reply(user, cid, opts, load_progress=lambda f, d: progress(f, desc=d), mode=mode)
            for upd in throttled(updates):
                bubble = reply_bubble(upd.text, upd.status, upd.note)
                yield {
                    p.chatbot: base + [{"role": "assistant", "content": bubble}],
                    p.stats: stats_markdown(upd.stats, label, upd.notice, upd.note if upd.status == "cut" else ""),
                }
                error = error or upd.error
        except (InputError, BackendError, NotFoundError, KeyError) as exc:
            error = str(exc)
        bubbles, conv = shown(user, cid)
        yield {p.chatbot: bubbles, **actions(turn_actions(conv), running=False)}
        if error:
            raise user_error(error, title="The reply was cut" if conv and conv.messages else "No reply")

    def send(
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
    ) -> Iterator[dict]:
        """The message shows at once; the model loads (with progress) and the reply streams. A message that
        cannot be taken is refused with its text back in the box, and the conversation as it was."""
        user = user_id(bid, request)
        try:
            opts = options_from(model_spec, system, temp, topp, max_tokens, seed_value)
            text = service.validate(text)
        except InputError as exc:
            raise user_error(str(exc), title="Message not sent") from None
        with one_turn(user, request, cid, "Message not sent"):
            before, conv = shown(user, cid)
            mine = {"role": "user", "content": safe_markdown(text)}
            yield {
                p.msg: "",
                p.chatbot: before + [mine, {"role": "assistant", "content": PENDING}],
                p.stats: "",
                **actions(turn_actions(conv), running=True),
            }
            try:
                cid = service.send(user, cid, text, opts, load_progress=lambda f, d: progress(f, desc=d))
            except (InputError, BackendError, KeyError) as exc:
                yield {p.msg: text, p.chatbot: before, **actions(turn_actions(conv), running=False)}
                raise user_error(str(exc), title="Message not sent") from None
            bubbles, conv = shown(user, cid)
            yield {
                p.conv_id: cid,
                p.chatbot: bubbles + [{"role": "assistant", "content": PENDING}],
                p.conv_list: p.list_update(user, cid),
                p.rename_box: conv.title if conv else "",
            }
            yield from stream(user, cid, opts, "next", bubbles, progress)

    def regenerate(
        bid, cid, model_spec, system, temp, topp, max_tokens, seed_value, request: gr.Request, progress=gr.Progress()
    ) -> Iterator[dict]:
        """A new version of the last reply (the old one stays, a click away)."""
        user = user_id(bid, request)
        try:
            opts = options_from(model_spec, system, temp, topp, max_tokens, seed_value)
        except InputError as exc:
            raise user_error(str(exc), title="Nothing regenerated") from None
        with one_turn(user, request, cid, "Nothing regenerated"):
            bubbles, conv = shown(user, cid)
            if not turn_actions(conv).can_regenerate:
                raise user_error("There is no message to regenerate a reply for.", title="Nothing regenerated")
            assert conv is not None
            base = bubbles[:-1] if conv.messages[-1].role == "assistant" else bubbles
            yield {
                p.chatbot: base + [{"role": "assistant", "content": PENDING}],
                p.stats: "",
                **actions(turn_actions(conv), running=True),
            }
            yield from stream(user, cid, opts, "regenerate", base, progress)

    def cont(
        bid, cid, model_spec, system, temp, topp, max_tokens, seed_value, request: gr.Request, progress=gr.Progress()
    ) -> Iterator[dict]:
        """The last reply, cut by the token limit, goes on where it stopped."""
        user = user_id(bid, request)
        try:
            opts = options_from(model_spec, system, temp, topp, max_tokens, seed_value)
        except InputError as exc:
            raise user_error(str(exc), title="Not continued") from None
        with one_turn(user, request, cid, "Not continued"):
            bubbles, conv = shown(user, cid)
            if not turn_actions(conv).can_continue:
                raise user_error("The last reply was not cut by the token limit.", title="Not continued")
            yield {p.stats: "", **actions(turn_actions(conv), running=True)}
            yield from stream(user, cid, opts, "continue", bubbles[:-1], progress)

    def edit(
        bid,
        cid,
        model_spec,
        system,
        temp,
        topp,
        max_tokens,
        seed_value,
        data: gr.EditData,
        request: gr.Request,
        progress=gr.Progress(),
    ) -> Iterator[dict]:
        """A message of the user's edited in place: the conversation branches there (the old branch is kept)."""
        user = user_id(bid, request)
        index = data.index if isinstance(data.index, int) else data.index[0]
        text = without_controls(data.value if isinstance(data.value, str) else str(data.value or ""))
        bubbles, conv = shown(user, cid)
        try:
            opts = options_from(model_spec, system, temp, topp, max_tokens, seed_value)
            if not cid:
                raise InputError("There is no message to edit yet.")
            with one_turn(user, request, cid, "Not edited"):
                yield {
                    p.chatbot: bubbles[:index]
                    + [{"role": "user", "content": safe_markdown(text)}, {"role": "assistant", "content": PENDING}],
                    p.stats: "",
                    **actions(turn_actions(conv), running=True),
                }
                try:
                    service.edit(user, cid, index, text, opts, load_progress=lambda f, d: progress(f, desc=d))
                except (InputError, BackendError, KeyError) as exc:
                    yield {p.chatbot: bubbles, **actions(turn_actions(conv), running=False)}
                    raise user_error(str(exc), title="Not edited") from None
                base, _ = shown(user, cid)
                yield from stream(user, cid, opts, "next", base, progress)
        except InputError as exc:
            yield {p.chatbot: bubbles}
            raise user_error(str(exc), title="Not edited") from None

    def flip(bid, cid, wanted: str, req: gr.Request):
        """Show another version of a reply (or branch of an edited message)."""
        user = user_id(bid, req)
        try:
            message_id, step = (int(x) for x in str(wanted or "").split(":"))
            if not cid or service.busy(user, req.session_hash or ""):
                raise InputError("Wait for the reply to finish before showing another version.")
            conv = service.show_version(user, cid, message_id, step)
        except (ValueError, InputError, NotFoundError) as exc:
            message = str(exc) if not isinstance(exc, ValueError) else "That version control is out of date."
            raise user_error(message, title="Version not shown") from None
        return {p.chatbot: display_messages(conv), p.stats: "", **actions(turn_actions(conv), running=False)}

    def refresh(bid, cid, req: gr.Request):
        """The actions that apply to the conversation now open (after a switch, a new chat, a delete)."""
        user = user_id(bid, req)
        _, conv = shown(user, cid)
        return actions(turn_actions(conv), running=service.busy(user, req.session_hash or ""))

    def stop(bid, cid, request: gr.Request):
        service.stop(user_id(bid, request), cid)

    def clear(bid, cid, request: gr.Request):
        service.clear(user_id(bid, request), cid)
        return {p.chatbot: [], p.stats: "", **actions(TurnActions(), running=False)}

    ins = [p.browser_id, p.conv_id, *p.gen_inputs]
    # Progress and error badges go on the stats line only: an error must never cover the conversation.
    quiet = dict(show_progress_on=[p.stats], **PRIVATE)
    # "multiple": a second Enter while a reply runs reaches the server, which says why it is not sent.
    turn_kwargs = dict(
        concurrency_limit=service.settings.concurrency_limit,
        concurrency_id="chat-generate",
        trigger_mode="multiple",
        **quiet,
    )
    # The turns that end with a reply: returned, so the conversation list can follow each (titles, ui/chat.py).
    turns = [trigger(send, [p.msg, *ins], outputs, **turn_kwargs) for trigger in (p.msg.submit, p.send_btn.click)]
    if p.spoken is not None:  # a transcribed recording: the same send, the same checks as a typed message
        turns.append(p.spoken.success(send, [p.msg, *ins], outputs, **turn_kwargs))
    turns.append(p.regen_btn.click(regenerate, ins, outputs, **turn_kwargs))
    turns.append(p.continue_btn.click(cont, ins, outputs, **turn_kwargs))
    turns.append(p.chatbot.edit(edit, ins, outputs, **turn_kwargs))
    p.edit_btn.click(None, None, None, js=EDIT_LAST_JS, **PRIVATE)
    version_box = gr.Textbox(visible="hidden", elem_id="chat-version-request")
    p.version_btn.click(
        flip,
        [p.browser_id, p.conv_id, version_box],
        outputs,
        js="(bid, cid, wanted) => [bid, cid, window.studioChatVersion || '']",
        **quiet,
    )
    p.stop_btn.click(stop, [p.browser_id, p.conv_id], None, queue=False, **PRIVATE)
    p.clear_btn.click(clear, [p.browser_id, p.conv_id], outputs, **PRIVATE)
    p.chatbot.clear(clear, [p.browser_id, p.conv_id], outputs, **PRIVATE)  # its own trash icon
    p.conv_id.change(refresh, [p.browser_id, p.conv_id], action_outputs, **PRIVATE)
    demo.load(None, None, None, js=PAGE_JS, **PRIVATE)
    return turns
