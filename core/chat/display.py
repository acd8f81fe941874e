"""How a stored conversation is shown: chat bubbles with cut replies marked, a "Read aloud" control on each reply and
"‹ 2/3 ›" controls on messages that have other versions, Markdown made safe to render (the stored text is untouched),
and which of the chat's actions apply to it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.chat.store import Conversation, StoredMessage
from core.errors import NotFoundError
from core.safe_html import safe_markdown

# The controls are our own markup, added after the text was made safe; the page's script (ui/chat_turns.py) turns a
# click on data-chat-version="<message id>:<step>" into the chat's version event.
# A click on a reply's "Read aloud" control (class chat-r-<message id>) plays that reply's stored text (ui/chat_voice.py);
# "Send to Writer" / "Send to Speech" (chat-sw-<id>, chat-ss-<id>) carry it to that tab (ui/flows.py).
_CONTROLS = re.compile(r'\s*<span class="chat-(versions|read)"[^>]*>.*?</span><!--/\1-->', re.DOTALL)


@dataclass(frozen=True)
class TurnActions:
    """Which actions apply to the conversation as shown (the tab shows only those)."""

    has_messages: bool = False
    can_regenerate: bool = False  # there is a message of the user's to (re)answer
    can_continue: bool = False  # the last reply was cut by the token limit


def turn_actions(conv: Conversation | None) -> TurnActions:
    messages = conv.messages if conv else []
    if not messages:
        return TurnActions()
    last = messages[-1]
    return TurnActions(
        has_messages=True,
        can_regenerate=any(m.role == "user" for m in messages) and last.status != "streaming",
        can_continue=last.role == "assistant" and last.status == "cut" and last.note == "length",
    )


def display_messages(conv: Conversation) -> list[dict]:
    """The conversation as chat-bubble dicts ({role, content}) with cut replies marked and version controls."""
    return [{"role": m.role, "content": display_text(m) + controls(m)} for m in conv.messages]


def controls(m: StoredMessage) -> str:
    """What follows a message's text, on one line: "Read aloud" (a reply with text), then "‹ 2/3 ›" (other versions)."""
    parts = [read_control(m), version_controls(m).strip()]
    shown = " ".join(p for p in parts if p)
    return f"\n\n{shown}" if shown else ""


def read_control(m: StoredMessage) -> str:
    """The "Read aloud" button of a finished (or cut) reply with text, else "". Like the version controls it is our
    own markup added after the text was made safe: the message id rides in the class (chat-r-<id>), the glyph is
    drawn by chat.css, and the title names the button (no text inside: the bubble's text stays the reply's)."""
    if m.role != "assistant" or m.status == "streaming" or not m.content.strip():
        return ""
    return (
        f'<span class="chat-read"><button type="button" class="chat-read-aloud chat-r-{m.id}" '
        'title="Read aloud"></button>'
        # the reply carried to another tab (ui/flows.py): glyphs named by their titles, like Read aloud
        f'<button type="button" class="chat-send-to chat-to-writer chat-sw-{m.id}" title="Send to Writer"></button>'
        f'<button type="button" class="chat-send-to chat-to-speech chat-ss-{m.id}" title="Send to Speech"></button>'
        "</span><!--/read-->"
    )


def display_text(m: StoredMessage) -> str:
    """A stored message as shown: its Markdown made safe to render (the stored text is untouched)."""
    if m.role != "assistant":
        return safe_markdown(m.content)
    return reply_bubble(m.content, m.status, m.note or "incomplete")


def version_controls(m: StoredMessage) -> str:
    """The "‹ 2/3 ›" controls for a message with other versions (a reply regenerated, a message edited), else "". The chatbot's
    sanitiser keeps only class, title and disabled: the message and step ride in the class (chat-v-<id>-prev),
    the glyphs are drawn by chat.css, and each button's name is its text ("Previous version")."""
    if m.versions <= 1:
        return ""
    what = "version" if m.role == "assistant" else "edit"

    def step(way: str, label: str, enabled: bool) -> str:
        off = "" if enabled else " disabled"
        return (
            f'<button type="button" class="chat-version-step chat-version-{way} chat-v-{m.id}-{way}" '
            f'title="{label} {what}"{off}><span class="chat-sr-only">{label} {what}</span></button>'
        )

    return (
        '\n\n<span class="chat-versions" role="group">'
        f"{step('prev', 'Previous', m.version > 1)}"
        f'<span class="chat-version-count"><span class="chat-sr-only">{what.capitalize()} </span>'
        f"{m.version}/{m.versions}</span>"
        f"{step('next', 'Next', m.version < m.versions)}</span><!--/versions-->"
    )


def without_controls(text: str) -> str:
    """An edited message's text as the user meant it: the controls shown with it taken out."""
    return _CONTROLS.sub("", text or "")


def reply_bubble(text: str, status: str, note: str = "") -> str:
    """A reply as shown while it streams ('▌'), once complete, or cut (with why). HTML in it shows as
    text, except a few formatting tags (core.safe_html)."""
    if status == "streaming":
        text += " ▌"
    elif status != "complete":
        mark = f"*[reply cut: {note}]*"
        text = f"{text}\n\n{mark}" if text else mark
    return safe_markdown(text)


def spoken_reply(conv: Conversation, message_id: int) -> str:
    """The stored text of the reply `message_id` of the conversation as shown (what "Read aloud" reads: the model's
    Markdown, not the bubble's HTML). NotFoundError when it is not a reply shown there (switched away, deleted)."""
    for m in conv.messages:
        if m.id == message_id and m.role == "assistant":
            return m.content
    raise NotFoundError("That reply is no longer shown here; open its conversation again.")
