"""What the chat tab does, with no UI: validate a message, keep the conversation in storage, fit the
history to the model's context, stream a reply while saving it, and stop it on request."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from backends.text.base import (
    BackendError,
    ContextOverflowError,
    GenerationParams,
    Message,
    StreamCutError,
    StreamStats,
    TextBackend,
)
from config import Settings
from core import validate
from core.cancel import CancelRegistry
from core.chat import export
from core.chat.store import Conversation, ConversationStore, Status
from core.chat.titles import TitleWriter, short_title
from core.errors import InputError, NotFoundError
from core.models.text import ModelManager

log = logging.getLogger(__name__)

SAVE_INTERVAL_S = 0.25  # how often a streaming reply is written to SQLite
STREAM_INTERVAL_S = 0.05  # how often a streaming reply is sent to the browser or API client
MAX_NEW_TOKENS = 32768
MAX_SYSTEM_CHARS = 100_000
MAX_HISTORY_ITEMS = 1_000


@dataclass(frozen=True)
class ChatOptions:
    model: str | None = None  # spec; None = default
    system_prompt: str = ""
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 512
    seed: int | None = None

    @classmethod
    def checked(
        cls,
        model: object = None,
        system_prompt: object = "",
        temperature: object = 0.7,
        top_p: object = 0.95,
        max_new_tokens: object = 512,
        seed: object = None,
    ) -> ChatOptions:
        """Options from what a caller sent (the chat tab's controls, the /chat API). A value of the
        wrong type or out of range raises InputError naming it; None takes the default."""
        return cls(
            model=validate.model_spec("model", model),
            system_prompt=validate.text("system_prompt", system_prompt, MAX_SYSTEM_CHARS),
            temperature=validate.number("temperature", temperature, 0.0, 2.0, default=0.7),
            top_p=validate.number("top_p", top_p, 0.0, 1.0, default=0.95),
            max_new_tokens=validate.whole("max_new_tokens", max_new_tokens, 1, MAX_NEW_TOKENS, default=512),
            seed=validate.seed("seed", seed),
        )

    def params(self) -> GenerationParams:
        return GenerationParams(
            temperature=max(0.0, min(2.0, float(self.temperature))),
            top_p=max(0.01, min(1.0, float(self.top_p))),
            max_new_tokens=max(1, min(MAX_NEW_TOKENS, int(self.max_new_tokens))),
            seed=validate.seed("seed", self.seed),
        )


@dataclass
class ReplyUpdate:
    text: str
    status: str = "streaming"  # streaming | complete | cut
    note: str = ""  # why it was cut
    error: str = ""  # a message for the user when a backend failed
    notice: str = ""  # e.g. older turns left out to fit the context
    stats: dict = field(default_factory=dict)


def throttled(updates: Iterator[ReplyUpdate], interval: float = STREAM_INTERVAL_S) -> Iterator[ReplyUpdate]:
    """Pass the first update at once, then at most one every `interval` seconds, and always the
    final one. The engine still decodes at full speed; the UI gets ~20 smooth updates a second
    instead of paying serialisation and a network message for every token."""
    last = 0.0
    pending = None
    try:
        for update in updates:
            now = time.perf_counter()
            if update.status != "streaming" or now - last >= interval:
                yield update
                last, pending = now, None
            else:
                pending = update
    except Exception:
        if pending is not None:
            yield pending  # what arrived before a failure is never held back
        raise
    if pending is not None:
        yield pending


def merge_roles(messages: list[Message]) -> list[Message]:
    """Join consecutive messages of the same role: many chat templates require alternation, and a
    failed reply can leave two user turns in a row."""
    merged: list[Message] = []
    for m in messages:
        if merged and merged[-1]["role"] == m["role"]:
            merged[-1] = {"role": m["role"], "content": merged[-1]["content"] + "\n\n" + m["content"]}
        else:
            merged.append(dict(m))  # type: ignore[arg-type]
    return merged


def fit_to_context(
    system: list[Message], turns: list[Message], count: Callable[[list[Message]], int], budget: int
) -> tuple[list[Message], int]:
    """Drop the oldest turns until system + turns fit in `budget` tokens. Returns (messages, number
    of messages dropped). The newest user message is never dropped: if it alone does not fit, that is
    a ContextOverflowError the user must fix."""
    start = 0
    while True:
        candidate = system + turns[start:]
        if count(candidate) <= budget:
            return candidate, start
        if start >= len(turns) - 1:
            raise ContextOverflowError("too long")
        start += 1
        # Never start the kept history with an assistant reply.
        while start < len(turns) - 1 and turns[start]["role"] == "assistant":
            start += 1


def history_messages(conv: Conversation) -> list[Message]:
    """What the model sees of a stored conversation: user turns and replies with text."""
    return merge_roles(
        [{"role": m.role, "content": m.content} for m in conv.messages if m.content.strip() and m.status != "streaming"]
    )


def title_from(text: str) -> str:
    """A new conversation's title: a few words of its first message (core/chat/titles.py)."""
    return short_title(text)


class ChatService:
    def __init__(self, settings: Settings, store: ConversationStore, models: ModelManager) -> None:
        self.settings = settings
        self.store = store
        self.models = models
        self.active = CancelRegistry()
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

    def reply(
        self,
        user_id: str,
        conversation_id: str,
        options: ChatOptions,
        load_progress: Callable[[float, str], None] | None = None,
    ) -> Iterator[ReplyUpdate]:
        """Stream a reply to the conversation's last user message, saving it as it grows. Ends with
        a final update whose status is 'complete' or 'cut'. Backend errors end the stream with
        update.error set; the partial text is kept."""
        cancel = self.active.start(user_id, conversation_id, supersede=True)  # a new reply replaces the old
        try:
            yield from self._reply(user_id, conversation_id, options, cancel, load_progress)
        finally:
            self.active.finish(user_id, conversation_id, cancel)

    def _reply(
        self, user_id: str, conversation_id: str, options: ChatOptions, cancel: threading.Event, load_progress
    ) -> Iterator[ReplyUpdate]:
        backend = self.models.get(options.model)
        params = options.params()
        backend.load(load_progress)
        conv = self.store.get_conversation(user_id, conversation_id)
        turns = history_messages(conv)
        if not turns or turns[-1]["role"] != "user":
            raise InputError("There is no message waiting for a reply.")
        messages, notice = self._fit(backend, turns, options)
        spec = options.model or self.models.default
        msg_id = self.store.add_message(user_id, conversation_id, "assistant", "", "streaming", spec)
        text, stats = "", StreamStats()
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


def reply_stats(stats: StreamStats, t0: float, first: float | None, end: float, model: str, text: str) -> dict:
    tokens = stats.completion_tokens or 0
    decode_s = (end - first) if first is not None else 0.0
    return {
        "model": model,
        "completion_tokens": tokens,
        "prompt_tokens": stats.prompt_tokens,
        "finish_reason": stats.finish_reason,
        "ttft_s": round(first - t0, 4) if first is not None else None,
        "total_s": round(end - t0, 4),
        # Decode rate: tokens after the first over the time after the first token.
        "tokens_per_s": round((tokens - 1) / decode_s, 2) if tokens > 1 and decode_s > 0 else None,
        "chars": len(text),
    }
