"""What the chat tab does, with no UI: validate a message, keep the conversation in storage, fit the
history to the model's context, stream a reply while saving it, and stop it on request."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Literal

from backends.text.base import BackendError, ContextOverflowError, Message, StreamCutError, StreamStats, TextBackend
from config import Settings
from core import validate
from core.cancel import CancelRegistry
from core.chat import export
from core.chat.store import Conversation, ConversationStore, Status
from core.chat.titles import TitleWriter, short_title
from core.chat.turns import (  # noqa: F401 - re-exported: the tab and the /chat API import them from here
    MAX_NEW_TOKENS,
    STREAM_INTERVAL_S,
    ChatOptions,
    ReplyUpdate,
    fit_to_context,
    history_messages,
    merge_roles,
    reply_stats,
    throttled,
)
from core.errors import InputError, NotFoundError
from core.models.text import ModelManager
from core.prompts import PROMPTS_DIR

log = logging.getLogger(__name__)

SAVE_INTERVAL_S = 0.25  # how often a streaming reply is written to SQLite
MAX_HISTORY_ITEMS = 1_000
BUSY_MESSAGE = (
    "A reply is still being written. Wait for it to finish or press Stop, then send again; "
    "your message is still in the box."
)

Mode = Literal["next", "regenerate", "continue"]


@functools.cache
def continue_instruction() -> str:
    """What is asked of the model to continue a reply cut by the token limit (prompts/chat_turns.toml)."""
    data = tomllib.loads((PROMPTS_DIR / "chat_turns.toml").read_text(encoding="utf-8"))
    return str(data["continue"]).strip()


def title_from(text: str) -> str:
    """A new conversation's title: a few words of its first message (core/chat/titles.py)."""
    return short_title(text)


class ChatService:
    def __init__(self, settings: Settings, store: ConversationStore, models: ModelManager) -> None:
        self.settings = settings
        self.store = store
        self.models = models
        self.active = CancelRegistry()
        self._lanes: set[tuple[str, str]] = set()  # (user, lane) with a turn in progress
        self._lanes_lock = threading.Lock()
        self.titles = TitleWriter(store, models, enabled=settings.chat_model_titles)

    # -- input ---------------------------------------------------------------------------------
    def validate(self, text: str | None) -> str:
        if text is not None and not isinstance(text, str):
            raise InputError(f"message must be text (a string), got {validate.shown(text)}.")
        if text is None or not text.strip():
            raise InputError("Type a message first: an empty message was not sent.")
        if len(text) > self.settings.max_input_chars:
            raise InputError(
                f"Your message is {len(text):,} characters; the limit is "
                f"{self.settings.max_input_chars:,}. Shorten it or attach it in parts. "
                "Nothing was sent, and your text is still in the box."
            )
        return text

    @contextlib.contextmanager
    def turn(self, user_id: str, lane: str, conversation_id: str | None = None) -> Iterator[None]:
        """One turn at a time per lane (a browser tab: its message, the model loading, the reply) and per
        conversation: another message, regenerate or edit meanwhile raises InputError (BUSY_MESSAGE) and
        nothing of it is stored, so it is never lost or answered out of order."""
        key = (user_id, lane)
        with self._lanes_lock:
            if key in self._lanes or (conversation_id and self.active.running(user_id, conversation_id)):
                raise InputError(BUSY_MESSAGE)
            self._lanes.add(key)
        try:
            yield
        finally:
            with self._lanes_lock:
                self._lanes.discard(key)

    def busy(self, user_id: str, lane: str) -> bool:
        with self._lanes_lock:
            return (user_id, lane) in self._lanes

    def check_history(self, history: object) -> list[Message]:
        """Earlier turns sent by an API caller: a list of {role: user|assistant|system, content: text},
        at most MAX_HISTORY_ITEMS of them and 10 messages' worth of characters."""
        return validate.history(
            "history",
            history,
            max_items=MAX_HISTORY_ITEMS,  # type: ignore[return-value]
            max_chars=10 * self.settings.max_input_chars,
        )

    def check_fits(self, backend: TextBackend, text: str, options: ChatOptions) -> None:
        """Refuse, before anything is stored, a message that cannot fit the model's context."""
        caps = backend.capabilities()
        budget = caps.context_length - options.params().max_new_tokens
        system: list[Message] = [{"role": "system", "content": options.system_prompt}] if options.system_prompt else []
        needed = backend.count_tokens([*system, {"role": "user", "content": text}])
        if needed > budget:
            raise InputError(
                f"Your message needs about {needed:,} tokens, but {backend.label} has room for "
                f"{max(budget, 0):,} (context {caps.context_length:,} minus "
                f"{options.params().max_new_tokens:,} for the reply). Shorten it, lower "
                "'Max new tokens', or pick a model with a longer context. Your text is still in the box."
            )

    # -- conversations (what the tab lists, opens, renames, deletes, exports) ----------------------
    def conversations(self, user_id: str, query: str = "") -> list[Conversation]:
        return self.store.list_conversations(user_id, query)

    def conversation(self, user_id: str, conversation_id: str) -> Conversation:
        """NotFoundError when it does not exist or is someone else's."""
        return self.store.get_conversation(user_id, conversation_id)

    def rename(self, user_id: str, conversation_id: str, title: str) -> None:
        """The user's title; it always wins over a model title still being written."""
        self.titles.cancel(user_id, conversation_id)
        self.store.rename_conversation(user_id, conversation_id, title)

    def clear(self, user_id: str, conversation_id: str | None) -> None:
        """Stop any reply and remove every message; the conversation stays."""
        if conversation_id:
            self.stop(user_id, conversation_id)
            self.store.clear_messages(user_id, conversation_id)

    def delete(self, user_id: str, conversation_id: str | None) -> None:
        """Stop any reply and delete the conversation; one already gone is not an error."""
        if conversation_id:
            self.stop(user_id, conversation_id)
            self.titles.cancel(user_id, conversation_id)
            with contextlib.suppress(NotFoundError):
                self.store.delete_conversation(user_id, conversation_id)

    def export(self, user_id: str, conversation_id: str, fmt: str) -> tuple[str, str]:
        """(file name, text) of the conversation as Markdown ("md") or JSON (anything else)."""
        conv = self.store.get_conversation(user_id, conversation_id)
        text = export.to_markdown(conv) if fmt == "md" else export.to_json(conv)
        return export.export_filename(conv, fmt), text

    # -- turns ---------------------------------------------------------------------------------
    def send(
        self,
        user_id: str,
        conversation_id: str | None,
        text: str | None,
        options: ChatOptions,
        load_progress: Callable[[float, str], None] | None = None,
    ) -> str:
        """Accept a message from the tab: check it, load the model (reporting progress), refuse one
        that cannot fit the context, then store it. Returns the conversation id. Nothing is stored
        when it raises (InputError, BackendError, KeyError for an unknown model)."""
        text = self.validate(text)
        backend = self.models.get(options.model)
        backend.load(load_progress)
        self.check_fits(backend, text, options)
        return self.add_user_message(user_id, conversation_id, text, options)

    def add_user_message(self, user_id: str, conversation_id: str | None, text: str, options: ChatOptions) -> str:
        """Store the user's message (creating the conversation if needed); return its id."""
        text = self.validate(text)
        created = not conversation_id
        if not conversation_id:
            conv = self.store.create_conversation(
                user_id,
                title_from(text),
                model=options.model or self.models.default,
                system_prompt=options.system_prompt,
            )
            conversation_id = conv.id
        try:
            self.store.add_message(user_id, conversation_id, "user", text)
        except InputError:  # a full library: no empty conversation is left behind either
            if created:
                self.store.delete_conversation(user_id, conversation_id)
            raise
        return conversation_id

    def drop_last_reply(self, user_id: str, conversation_id: str) -> None:
        """Before regenerating: remove the trailing reply so a new one takes its place."""
        conv = self.store.get_conversation(user_id, conversation_id)
        if not conv.messages or not any(m.role == "user" for m in conv.messages):
            raise InputError("There is no message to regenerate a reply for.")
        last = conv.messages[-1]
        if last.role == "assistant":
            self.store.delete_messages_from(user_id, conversation_id, last.id)

    def take_back_last_user_message(self, user_id: str, conversation_id: str) -> str:
        """For edit-and-resend: remove the last user message and what followed; return its text."""
        conv = self.store.get_conversation(user_id, conversation_id)
        users = [m for m in conv.messages if m.role == "user"]
        if not users:
            raise InputError("There is no message of yours to edit yet.")
        self.store.delete_messages_from(user_id, conversation_id, users[-1].id)
        return users[-1].content

    def edit(
        self,
        user_id: str,
        conversation_id: str,
        index: int,
        text: str | None,
        options: ChatOptions,
        load_progress: Callable[[float, str], None] | None = None,
    ) -> None:
        """Branch the conversation at the user's message shown at `index`: the new text follows what that
        message followed and is shown from now on; the old message and its continuation stay as the other
        branch. Checked as a new message is (InputError, BackendError, KeyError; nothing stored then)."""
        text = self.validate(text)
        conv = self.store.get_conversation(user_id, conversation_id)
        if not 0 <= index < len(conv.messages) or conv.messages[index].role != "user":
            raise InputError("Only your own messages can be edited; that one is no longer shown.")
        backend = self.models.get(options.model)
        backend.load(load_progress)
        self.check_fits(backend, text, options)
        self.store.add_message(user_id, conversation_id, "user", text, parent_id=conv.messages[index].parent_id)

    def show_version(self, user_id: str, conversation_id: str, message_id: int, step: int) -> Conversation:
        """Show another version of a reply (or branch of an edited message), `step` places away; the
        conversation continues from what is shown. Returns the conversation as it now reads."""
        if step not in (-1, 1):
            raise InputError("A version step is -1 or 1.")
        self.store.show_sibling(user_id, conversation_id, message_id, step)
        return self.store.get_conversation(user_id, conversation_id)

    def reply(
        self,
        user_id: str,
        conversation_id: str,
        options: ChatOptions,
        load_progress: Callable[[float, str], None] | None = None,
        mode: Mode = "next",
    ) -> Iterator[ReplyUpdate]:
        """Stream a reply, saving it as it grows: to the conversation's last user message ("next"), as a new
        version of the last reply ("regenerate": the old one is kept), or appended to the last reply, cut by
        the token limit ("continue"). Ends with a final update whose status is 'complete' or 'cut' (note
        'length' when the token limit cut it). Backend errors end the stream with update.error set; the
        partial text is kept."""
        cancel = self.active.start(user_id, conversation_id, supersede=True)  # a new reply replaces the old
        try:
            yield from self._reply(user_id, conversation_id, options, cancel, load_progress, mode)
        finally:
            self.active.finish(user_id, conversation_id, cancel)

    def _reply(
        self,
        user_id: str,
        conversation_id: str,
        options: ChatOptions,
        cancel: threading.Event,
        load_progress,
        mode: Mode = "next",
    ) -> Iterator[ReplyUpdate]:
        backend = self.models.get(options.model)
        params = options.params()
        backend.load(load_progress)
        conv = self.store.get_conversation(user_id, conversation_id)
        last = conv.messages[-1] if conv.messages else None
        spec = options.model or self.models.default
        prefix = ""
        if mode == "continue":
            if last is None or last.role != "assistant" or not last.content.strip():
                raise InputError("There is no reply to continue.")
            turns = merge_roles([*history_messages(conv), {"role": "user", "content": continue_instruction()}])
            msg_id, prefix = last.id, last.content
        else:
            if mode == "regenerate" and last is not None and last.role == "assistant":
                conv.messages = conv.messages[:-1]  # the new version answers what the old one answered
            turns = history_messages(conv)
            if not turns or turns[-1]["role"] != "user":
                raise InputError("There is no message waiting for a reply.")
            msg_id = 0
        messages, notice = self._fit(backend, turns, options)
        if not msg_id:
            parent = conv.messages[-1].id
            msg_id = self.store.add_message(user_id, conversation_id, "assistant", "", "streaming", spec, parent)
        else:
            self.store.update_message(user_id, conversation_id, msg_id, content=prefix, status="streaming")
        text, stats = prefix, StreamStats()
        t0 = time.perf_counter()
        first = None
        last_save = t0
        status: Status = "complete"
        note, error = "", ""
        stream = backend.stream_chat(messages, params, cancel, stats)
        try:
            for delta in stream:
                if first is None:
                    first = time.perf_counter()
                text += delta
                now = time.perf_counter()
                if now - last_save >= SAVE_INTERVAL_S:
                    self.store.update_message(user_id, conversation_id, msg_id, content=text, status="streaming")
                    last_save = now
                yield ReplyUpdate(text, notice=notice)
            if cancel.is_set() or stats.finish_reason == "cancelled":
                status, note = "cut", "stopped"
            elif stats.finish_reason == "length":
                status, note = "cut", "length"  # the token limit: the reply can be continued
        except StreamCutError as exc:
            text = text or exc.partial
            status, note, error = "cut", "the connection dropped mid-reply", str(exc)
        except BackendError as exc:
            status, note, error = "cut", "error", str(exc)
        except GeneratorExit:
            # The consumer went away (page closed, request cancelled): keep what was written.
            cancel.set()
            self.store.update_message(
                user_id,
                conversation_id,
                msg_id,
                content=text,
                status="cut",
                note="interrupted: the reply stopped being read",
            )
            raise
        except Exception as exc:  # an engine bug must not leave the reply 'streaming' forever
            log.exception("reply failed")
            status, note, error = (
                "cut",
                "error",
                f"The model failed unexpectedly ({type(exc).__name__}). Try again or pick another model.",
            )
        finally:
            stream.close()  # ends the engine's worker promptly, whatever happened above
        end = time.perf_counter()
        final_stats = reply_stats(stats, t0, first, end, spec, text)
        self.store.update_message(
            user_id, conversation_id, msg_id, content=text, status=status, note=note, stats=final_stats
        )
        yield ReplyUpdate(text, status=status, note=note, error=error, notice=notice, stats=final_stats)

    def _fit(self, backend: TextBackend, turns: list[Message], options: ChatOptions) -> tuple[list[Message], str]:
        """System prompt + as many of the newest turns as fit the context, with a notice when older
        turns were left out."""
        caps = backend.capabilities()
        params = options.params()
        # Backends whose template has no system role fold it into the first user turn themselves.
        system: list[Message] = (
            [{"role": "system", "content": options.system_prompt.strip()}] if options.system_prompt.strip() else []
        )
        budget = caps.context_length - params.max_new_tokens
        try:
            messages, dropped = fit_to_context(system, turns, backend.count_tokens, budget)
        except ContextOverflowError:
            raise InputError(
                f"The last message does not fit {backend.label}'s context of {caps.context_length:,} "
                "tokens with room for the reply. Shorten it or lower 'Max new tokens'."
            ) from None
        notice = ""
        if dropped:
            notice = (
                f"{dropped} older message{'s' if dropped != 1 else ''} left out so the "
                f"conversation fits the model's {caps.context_length:,}-token context."
            )
        return messages, notice

    def stream_once(
        self, history: list[Message], text: str, options: ChatOptions, cancel: threading.Event | None = None
    ) -> Iterator[ReplyUpdate]:
        """A reply to `history` + `text` with nothing stored (the /chat API). Backend errors are
        raised; the caller has the partial text it already received."""
        text = self.validate(text)
        items = self.check_history(history)
        system = [m["content"].strip() for m in items if m["role"] == "system" and m["content"].strip()]
        if system:  # system turns in the history join the system prompt, in order
            options = replace(
                options, system_prompt="\n\n".join(p for p in (options.system_prompt.strip(), *system) if p)
            )
        backend = self.models.get(options.model)
        backend.load(None)
        turns = merge_roles(
            [m for m in items if m["role"] != "system" and m["content"].strip()] + [{"role": "user", "content": text}]
        )
        messages, notice = self._fit(backend, turns, options)
        cancel = cancel or threading.Event()
        stats, out = StreamStats(), ""
        t0, first = time.perf_counter(), None
        stream = backend.stream_chat(messages, options.params(), cancel, stats)
        try:
            for delta in stream:
                first = first or time.perf_counter()
                out += delta
                yield ReplyUpdate(out, notice=notice)
        finally:
            stream.close()
        final = reply_stats(stats, t0, first, time.perf_counter(), options.model or self.models.default, out)
        yield ReplyUpdate(
            out,
            status="cut" if cancel.is_set() else "complete",
            note="stopped" if cancel.is_set() else "",
            notice=notice,
            stats=final,
        )

    def stop(self, user_id: str, conversation_id: str | None) -> bool:
        return self.active.stop(user_id, conversation_id or "") > 0

    # -- titles (core/chat/titles.py) ------------------------------------------------------------
    def write_title(self, user_id: str, conversation_id: str | None, model: str | None) -> threading.Thread | None:
        """After a reply: let the model write the conversation's title in the background (the returned thread),
        when the first reply has just finished and the first message was too long to be its own title. It gives
        way as soon as the user starts another reply; the short title stays on any failure."""
        if not conversation_id:
            return None
        return self.titles.start(
            user_id, conversation_id, model or self.models.default, busy=lambda: self.active.running(user_id) > 0
        )
