"""A conversation that starts from a summary ("Discuss in Chat" on the condenser's result): the summary rides in the
conversation's system prompt, so every reply can use it however long the conversation grows (the context fitting
keeps the system prompt and drops the oldest turns). The wording is prompts/chat_discuss.toml."""

from __future__ import annotations

import functools
import re
import tomllib

from core.chat.service import ChatService
from core.chat.store import Conversation
from core.errors import InputError
from core.prompts import PROMPTS_DIR
from core.quota import reserved

# What of a summary fits beside a conversation: about 3,000 tokens, well inside the default 8,192-token context with
# the reply's room and a few turns; a longer summary is cut at a paragraph and the prompt says so.
MAX_SUMMARY_CHARS = 12_000
MAX_TITLE_CHARS = 120
_SOURCES = re.compile(r"<details>.*?</details>", re.DOTALL)  # the quoted sources: for a reader, not the model


@functools.cache
def _wording() -> dict[str, str]:
    data = tomllib.loads((PROMPTS_DIR / "chat_discuss.toml").read_text(encoding="utf-8"))
    return {k: str(data[k]) for k in ("system", "cut_note", "title")}


def discussion_prompt(title: str, markdown: str, limit: int = MAX_SUMMARY_CHARS) -> tuple[str, str, bool]:
    """(conversation title, system prompt, whether the summary was cut) for a summary's title and Markdown."""
    words = _wording()
    name = " ".join(str(title or "").split())[:MAX_TITLE_CHARS] or "Summary"
    text = re.sub(r"\n{3,}", "\n\n", _SOURCES.sub("", str(markdown or ""))).strip()
    if not text:
        raise InputError("That summary is empty: there is nothing to discuss.")
    cut = len(text) > limit
    if cut:
        head = text[:limit]
        end = head.rfind("\n\n")
        text = (head[:end] if end > limit // 2 else head).rstrip()
    system = words["system"].format(title=name, summary=text, note=words["cut_note"] if cut else "")
    return words["title"].format(title=name)[:200], system, cut


def start_discussion(
    chat: ChatService, user_id: str, title: str, markdown: str, model: str | None = None
) -> Conversation:
    """A new conversation of the user's whose system prompt holds the summary; nothing is sent to a model yet."""
    name, system, _ = discussion_prompt(title, markdown)
    # a user past their quota gets its message (QuotaExceededError, an InputError) rather than one more conversation
    with reserved(chat.store.quota, user_id, len(system.encode("utf-8"))):
        return chat.store.create_conversation(user_id, name, model=model or chat.models.default, system_prompt=system)
