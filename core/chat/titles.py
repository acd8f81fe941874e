"""Conversation titles: a short one at once from the first message (a few words on one line, cut at a word), and
one the chat model may write in the background after the first reply, checked before it replaces the short one.
A user's rename always wins: the model's title lands only while the short title is still there."""

from __future__ import annotations

import logging
import re
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.text.base import GenerationParams, Message
from core.cancel import CancelRegistry
from core.chat.store import Conversation
from core.errors import NotFoundError
from core.prompts import PROMPTS_DIR

log = logging.getLogger(__name__)

TITLE_CHARS = 40  # the list shows a title on one line of the sidebar
MODEL_TITLE_TOKENS = 24  # a title is a few words; a model that rambles is cut here and refused below
MODEL_TITLE_MAX_WORDS = 10
MODEL_TITLE_MAX_CHARS = 80
MESSAGE_CHARS = 1000  # how much of the first message and reply the model is shown
REPLY_CHARS = 400
TURN_WAIT_S = 60.0  # titles are written one at a time for the whole app; one that waits longer is given up

_MARKUP = re.compile(r"```+|`|\*\*|__|^\s{0,3}(?:#{1,6}|>|[-*+]\s|\d+[.)]\s)", re.MULTILINE)
_LABEL = re.compile(r"^(?:conversation\s+)?(?:title|topic|subject|name|heading)\s*[:：\-–—]\s*", re.IGNORECASE)
_ROLE = re.compile(r"^(?:user|assistant|system|human|ai|bot|message|reply)\s*:", re.IGNORECASE)
_QUOTES = "\"'“”‘’«»„「」『』"
_FORBIDDEN = set('"“”«»„「」『』`{}<>[]|\\')  # left inside a title: quoting, markup or a template
_EMPTY_TITLES = {"untitled", "new chat", "none", "n/a", "title", "no title", "conversation"}
# An answer rather than a title: a model that starts to talk ("Sure, ...", "The answer to your question is").
_PREAMBLE = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|here is|here's|the answer|the title|this conversation|this is|"
    r"in this conversation|the user|i|i'm|i am|as an ai|you)\b",
    re.IGNORECASE,
)
# What a small model says before the topic, kept as a title without it ("This conversation is about owls." -> "Owls").
_ABOUT = re.compile(r"^(?:(?:this|the) conversation is (?:about|on)|this is about|it is about|topic is)\s+", re.I)
# A title does not stop on a word that needs another after it: that is a sentence cut off.
_DANGLING = {
    "a", "an", "the", "to", "of", "and", "or", "but", "is", "are", "was", "were", "be", "for", "with", "in", "on",
    "at", "by", "from", "your", "my", "our", "their", "its", "his", "her", "that", "which", "who", "as", "than",
}  # fmt: skip


def _one_line(text: str) -> str:
    return " ".join(_MARKUP.sub(" ", text).split())


def short_title(text: str, limit: int = TITLE_CHARS) -> str:
    """At most `limit` characters on one line from a message: markdown marks dropped, whitespace collapsed, cut
    at a word (a single long word is cut inside) with an ellipsis. Empty when the message has no words."""
    line = _one_line(text)
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 3:  # cut at a word unless that leaves too little
        cut = cut[:space]
    return cut.rstrip(" ,;:.-–—") + "…"


def is_whole(text: str) -> bool:
    """Whether the short title of `text` is all of it (nothing left for a model to summarise)."""
    return short_title(text) == _one_line(text)


@dataclass(frozen=True)
class TitlePrompt:
    """prompts/chat_title.toml: the system prompt and the user message template ({message}, {reply})."""

    system: str
    user: str

    def messages(self, message: str, reply: str) -> list[Message]:
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user.format(message=message[:MESSAGE_CHARS], reply=reply[:REPLY_CHARS])},
        ]

    def instruction_words(self) -> set[str]:
        """The words of the instructions themselves (not the conversation): a title made only of them is an echo."""
        text = self.system + " " + self.user.replace("{message}", " ").replace("{reply}", " ")
        return set(re.findall(r"\w+", text.casefold()))


def load_title_prompt(path: Path | None = None) -> TitlePrompt:
    """Read and check the prompt file at startup, so a malformed file fails then, not in a user's request."""
    path = path or PROMPTS_DIR / "chat_title.toml"
    data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    system, user = data.get("system"), data.get("user")
    if not isinstance(system, str) or not isinstance(user, str) or not system.strip() or not user.strip():
        raise ValueError(f"{path}: needs non-empty 'system' and 'user' strings")
    if "{message}" not in user:
        raise ValueError(f"{path}: 'user' must contain {{message}}")
    try:
        user.format(message="", reply="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"{path}: 'user' may use only {{message}} and {{reply}} ({exc})") from None
    return TitlePrompt(system.strip(), user.strip())


def checked_model_title(raw: str, prompt: TitlePrompt) -> str | None:
    """The model's reply as a title, or None when it is not one: empty, a role or instruction echo, quoted or
    labelled beyond repair, markup or a template, too long (a rambling answer), an answer's opening ("Sure, ...",
    "The answer to your question is") or a sentence cut off on a word like "the" or "is"."""
    lines = [line.strip() for line in (raw or "").splitlines() if line.strip()]
    if not lines:
        return None
    title = lines[0]
    if _ROLE.match(title):
        return None
    title = re.split(r"(?<=[.!?])\s", _one_line(title), maxsplit=1)[0]  # the first sentence
    about = _ABOUT.match(title)
    if about:
        title = title[about.end() :]
        title = title[:1].upper() + title[1:]
    for _ in range(3):  # 'Title: "Owls"', '**Title:** Owls', '"Owls."'
        before = title
        title = _LABEL.sub("", title).strip().strip(_QUOTES).strip().rstrip(".:;,!").strip()
        title = title.strip("*_# ").strip()
        if title == before:
            break
    if not title or not re.search(r"\w", title) or any(c in _FORBIDDEN for c in title):
        return None
    words = re.findall(r"\w+", title.casefold())
    if len(words) > MODEL_TITLE_MAX_WORDS or len(title) > MODEL_TITLE_MAX_CHARS:
        return None
    if title.casefold() in _EMPTY_TITLES or set(words) <= prompt.instruction_words():
        return None
    if _PREAMBLE.match(title) or words[-1] in _DANGLING:
        return None
    return short_title(title)


class TitleWriter:
    """Asks the model for a title off the request's thread, after a conversation's first reply and only when the
    first message was too long to be its own title. One title is written at a time for the whole app; each has
    its own cancel (a rename, a delete or a new reply of the same user stops it), and any failure keeps the short
    title."""

    def __init__(self, store: Any, models: Any, prompt: TitlePrompt | None = None, enabled: bool = True) -> None:
        self.store = store  # core.chat.store.ConversationStore
        self.models = models  # core.models.text.ModelManager
        self.prompt = prompt or load_title_prompt()
        self.enabled = enabled
        self.active = CancelRegistry()
        self._turn = threading.Semaphore(1)

    @staticmethod
    def replaceable(conv: Conversation) -> str | None:
        """The short title a model title may replace, or None: not right after the first reply (complete or cut), the
        title already changed (renamed, or written), or the first message is its own title."""
        users = [m for m in conv.messages if m.role == "user"]
        replies = [m for m in conv.messages if m.role == "assistant"]
        if len(users) != 1 or not replies or replies[-1].status == "streaming" or not replies[-1].content.strip():
            return None
        first = users[0].content
        if conv.title != short_title(first) or is_whole(first):
            return None
        return conv.title

    def start(
        self, user_id: str, conversation_id: str, model: str | None, busy: Callable[[], bool] | None = None
    ) -> threading.Thread | None:
        """Begin writing a title in a background thread (returned, for tests to join), or None when none is
        wanted. `busy()` true means the user started another reply: the title gives way to it."""
        if not self.enabled:
            return None
        try:
            conv = self.store.get_conversation(user_id, conversation_id)
        except NotFoundError:
            return None
        expected = self.replaceable(conv)
        if expected is None:
            return None
        cancel = self.active.start(user_id, conversation_id, supersede=True)
        thread = threading.Thread(
            target=self._run,
            args=(user_id, conv, model, expected, cancel, busy),
            name=f"chat-title-{conversation_id[:8]}",
            daemon=True,
        )
        thread.start()
        return thread

    def cancel(self, user_id: str, conversation_id: str) -> None:
        self.active.stop(user_id, conversation_id)

    def _run(
        self,
        user_id: str,
        conv: Conversation,
        model: str | None,
        expected: str,
        cancel: threading.Event,
        busy: Callable[[], bool] | None,
    ) -> None:
        try:
            if not self._turn.acquire(timeout=TURN_WAIT_S):
                return
            try:
                title = None if cancel.is_set() else self.write(conv, model, cancel, busy)
            finally:
                self._turn.release()
            if title and not cancel.is_set() and title != expected:
                self.store.set_title_if(user_id, conv.id, title, expected)
        except Exception as exc:  # a failing model (or one gone meanwhile) leaves the short title
            log.info("no model title for a conversation: %s: %s", type(exc).__name__, exc)
        finally:
            self.active.finish(user_id, conv.id, cancel)

    def write(
        self, conv: Conversation, model: str | None, cancel: threading.Event, busy: Callable[[], bool] | None = None
    ) -> str | None:
        """The model's checked title for `conv`, or None (refused, cancelled, or the user is waiting on a reply)."""
        first = next(m.content for m in conv.messages if m.role == "user")
        reply = next(m.content for m in conv.messages if m.role == "assistant")
        if busy is not None and busy():
            return None
        backend = self.models.get(model)
        backend.load(None)
        params = GenerationParams(temperature=0.0, max_new_tokens=MODEL_TITLE_TOKENS, seed=0)
        text = ""
        stream = backend.stream_chat(self.prompt.messages(first, reply), params, cancel)
        try:
            for delta in stream:
                if cancel.is_set() or (busy is not None and busy()):
                    cancel.set()
                    return None
                text += delta
        finally:
            stream.close()
        return None if cancel.is_set() else checked_model_title(text, self.prompt)
