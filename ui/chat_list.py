"""The chat tab's conversation list: sections by date (core/chat/listing.py), one button per conversation, and a
line saying so when there are none or a search finds nothing. Rendered here as escaped HTML in one gr.HTML whose
script sends a "pick" event with the clicked conversation's id; ui/chat.py wires it."""

from __future__ import annotations

import html
import re

import gradio as gr

from core.chat.listing import by_date
from core.chat.store import Conversation

# A click (or Enter/Space on the focused button) sends the id and marks the conversation open at once. The server
# draws the list with the open one marked (data-open on the list); a list drawn without knowing which is open (a
# title that arrived in the background) keeps the mark where it was.
LIST_JS = """
let open = null;
const mark = () => {
    const list = element.querySelector('.chat-list');
    if (list && list.hasAttribute('data-open')) open = list.getAttribute('data-open');
    element.querySelectorAll('button[data-conv]').forEach((b) => {
        if (b.dataset.conv === open) b.setAttribute('aria-current', 'true');
        else b.removeAttribute('aria-current');
    });
};
element.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-conv]');
    if (!button) return;
    open = button.dataset.conv;
    element.querySelector('.chat-list')?.removeAttribute('data-open');
    mark();
    trigger('pick', {id: button.dataset.conv});
});
watch('value', mark);
mark();
"""

LIST_CSS = """
.chat-list { max-height: min(60vh, 640px); overflow-y: auto; display: flex; flex-direction: column; gap: 2px; }
.chat-list h3 { font-size: 0.8em; font-weight: 600; margin: 10px 6px 2px; color: var(--body-text-color);
    text-transform: none; letter-spacing: 0.02em; }
.chat-list h3:first-child { margin-top: 0; }
.chat-list ul { list-style: none; margin: 0; padding: 0; }
.chat-list li { margin: 0; padding: 0; }
.chat-list button { display: block; width: 100%; text-align: left; padding: 6px 8px; border: 0;
    border-radius: var(--radius-md); background: transparent; color: var(--body-text-color);
    font-size: var(--text-md); font-weight: 400; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; cursor: pointer; }
.chat-list button:hover { background: var(--background-fill-secondary); }
.chat-list button:focus-visible { outline: 2px solid var(--color-accent); outline-offset: -2px; }
.chat-list button[aria-current='true'] { background: var(--background-fill-secondary); font-weight: 600;
    box-shadow: inset 3px 0 0 var(--color-accent); }
.chat-list-empty { margin: 6px; color: var(--body-text-color); font-size: var(--text-md); }
@media (max-width: 640px) { .chat-list { max-height: 40vh; } }
"""

_CONV_ID = re.compile(r"[0-9a-f]{1,64}")


def list_html(convs: list[Conversation], query: str = "", open_id: str | None = "", now: float | None = None) -> str:
    """The list as HTML, every title and the query escaped, with `open_id` marked open ("": none; None: not
    known here, the page keeps its mark)."""
    query = " ".join((query or "").split())
    opened = "" if open_id is None else f' data-open="{html.escape(open_id)}"'
    head = f'<nav class="chat-list" aria-label="Conversations"{opened}>'
    if not convs:
        if query:
            line = f"No conversations match '{html.escape(query)}'"
            return f'{head}<p class="chat-list-empty" role="status">{line}</p></nav>'
        return f'{head}<p class="chat-list-empty">No conversations yet.</p></nav>'
    parts = [head]
    for n, (section, items) in enumerate(by_date(convs, now)):
        parts.append(f'<h3 id="chat-list-h{n}">{section}</h3><ul aria-labelledby="chat-list-h{n}">')
        for conv in items:
            title = html.escape(conv.title)
            current = ' aria-current="true"' if open_id and conv.id == open_id else ""
            parts.append(
                f'<li><button type="button" data-conv="{html.escape(conv.id)}" title="{title}"{current}>'
                f"{title}</button></li>"
            )
        parts.append("</ul>")
    parts.append("</nav>")
    return "".join(parts)


def conversation_list(elem_id: str = "chat-conversations") -> gr.HTML:
    """The (empty) list component; its "pick" event carries {id}."""
    return gr.HTML(
        value=list_html([]), js_on_load=LIST_JS, css_template=LIST_CSS, elem_id=elem_id, label="Conversations"
    )


def picked_id(evt: gr.EventData) -> str | None:
    """The id a "pick" event carries, checked: what a client sends is not trusted to be one of ours."""
    data = evt._data if isinstance(getattr(evt, "_data", None), dict) else {}
    cid = data.get("id")
    return cid if isinstance(cid, str) and _CONV_ID.fullmatch(cid) else None
