"""How a stored conversation is shown: chat bubbles with cut replies marked, Markdown made safe to render
(the stored text is untouched)."""

from __future__ import annotations

from core.chat.store import Conversation, StoredMessage
from core.safe_html import safe_markdown


def display_messages(conv: Conversation) -> list[dict]:
    """The conversation as chat-bubble dicts ({role, content}) with cut replies marked."""
    out = []
    for m in conv.messages:
        out.append({"role": m.role, "content": display_text(m)})
    return out


def display_text(m: StoredMessage) -> str:
    """A stored message as shown: its Markdown made safe to render (the stored text is untouched)."""
    if m.role != "assistant":
        return safe_markdown(m.content)
    return reply_bubble(m.content, m.status, m.note or "incomplete")


def reply_bubble(text: str, status: str, note: str = "") -> str:
    """A reply as shown while it streams ('▌'), once complete, or cut (with why). HTML in it shows as
    text, except a few formatting tags (core.safe_html)."""
    if status == "streaming":
        text += " ▌"
    elif status != "complete":
        mark = f"*[reply cut: {note}]*"
        text = f"{text}\n\n{mark}" if text else mark
    return safe_markdown(text)
