"""What the Library tab shows, as escaped HTML: the list of items (kind, title, date, the one-line detail and the
snippet with the search hit marked), an item's details and its links. A row's button sends a "pick" event with the
item's ref ("kind:id"), its checkbox a "check" event with every ticked ref; ui/library.py wires them. No gradio
state here, only text."""

from __future__ import annotations

import html
import re
import time
from typing import Any

from core.library.items import KIND_LABELS, KINDS, ItemRef

PAGE = 50  # rows per page; "Show more" adds another page
MAX_TICKED = 500  # the most refs a "check" event may carry (more are ignored)
_ID = re.compile(r"[A-Za-z0-9_.-]{1,100}")
PLURALS = {
    "chat": "conversations",
    "draft": "drafts",
    "summary": "summaries",
    "image": "images",
    "audio": "audio",
    "transcript": "transcripts",
}
_HIT = re.compile(r"«([^«»]*)»")

LIST_JS = """
element.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-ref]');
    if (!button) return;
    element.querySelectorAll('button[data-ref][aria-current]').forEach((b) => b.removeAttribute('aria-current'));
    if (button.classList.contains('lib-open')) button.setAttribute('aria-current', 'true');
    trigger('pick', {ref: button.dataset.ref});
});
element.addEventListener('change', (event) => {
    if (!event.target.matches('input[type=checkbox][data-ref]')) return;
    const refs = [...element.querySelectorAll('input[type=checkbox][data-ref]:checked')].map((b) => b.dataset.ref);
    trigger('check', {refs});
});
"""


def ref_text(ref: ItemRef) -> str:
    return f"{ref.kind}:{ref.id}"


def parse_ref(value: Any) -> ItemRef | None:
    """A ref from the page ("kind:id"), checked: a kind of ours and an id of safe characters; None otherwise."""
    if not isinstance(value, str) or ":" not in value or len(value) > 120:
        return None
    kind, _, item_id = value.partition(":")
    if kind not in KINDS or not _ID.fullmatch(item_id):
        return None
    return ItemRef(kind, item_id)


def picked_refs(data: Any) -> list[ItemRef]:
    """The ticked refs a "check" event carries, each checked, duplicates and junk dropped."""
    refs = data.get("refs") if isinstance(data, dict) else None
    out: list[ItemRef] = []
    for value in refs if isinstance(refs, list) else []:
        ref = parse_ref(value)
        if ref is not None and ref not in out:
            out.append(ref)
        if len(out) >= MAX_TICKED:
            break
    return out


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""


def snippet_html(text: str) -> str:
    """The snippet escaped, with the search hit (marked «…» by the library) as <mark>."""
    escaped = html.escape(text or "", quote=False)
    return _HIT.sub(r"<mark>\1</mark>", escaped).replace("«", "").replace("»", "")


def empty_html(kind: str | None, query: str) -> str:
    if query:
        label = f" among your {PLURALS.get(kind, kind)}" if kind else ""
        line = f"Nothing{label} matches '{html.escape(query)}'. Try fewer or other words."
        return f'<div class="lib-list"><p class="lib-empty" role="status">{line}</p></div>'
    if kind:
        line = f"No {html.escape(PLURALS.get(kind, kind))} yet."
    else:
        line = (
            "Nothing here yet. Everything you make appears here, newest first: conversations from Chat, drafts "
            "from Writer, summaries from Condense, images, and audio and transcripts from Speech."
        )
    return f'<div class="lib-list"><p class="lib-empty">{line}</p></div>'


def list_html(page: Any, kind: str | None, query: str, ticked: list[ItemRef], open_ref: ItemRef | None) -> str:
    """The rows of `page` (a LibraryPage), escaped; `ticked` checked, `open_ref` marked current."""
    if not page.items:
        return empty_html(kind, query)
    shown = len(page.items)
    total = page.total
    count = f"{total} item{'s' if total != 1 else ''}" + (f" · showing {shown}" if shown < total else "")
    if query:
        count += f" matching '{html.escape(query)}'"
    parts = [f'<div class="lib-list"><p class="lib-count" role="status">{count}</p><ul aria-label="Your items">']
    for item in page.items:
        ref = ref_text(item.ref)
        title = html.escape(item.title or "Untitled")
        label = html.escape(KIND_LABELS.get(item.ref.kind, item.ref.kind))
        tick = " checked" if item.ref in ticked else ""
        current = ' aria-current="true"' if open_ref == item.ref else ""
        detail = html.escape(item.detail or "")
        snippet = snippet_html(item.snippet)
        parts.append(
            f'<li class="lib-row"><input type="checkbox" data-ref="{html.escape(ref)}"{tick} '
            f'aria-label="Select {title}">'
            f'<button type="button" class="lib-open" data-ref="{html.escape(ref)}"{current}>'
            f'<span class="lib-line"><span class="lib-kind lib-kind-{html.escape(item.ref.kind)}">{label}</span>'
            f'<span class="lib-title">{title}</span><span class="lib-when">{when(item.updated_at)}</span></span>'
            + (f'<span class="lib-detail">{detail}</span>' if detail else "")
            + (f'<span class="lib-snippet">{snippet}</span>' if snippet else "")
            + "</button></li>"
        )
    parts.append("</ul></div>")
    return "".join(parts)


def details_html(item: Any, links: Any) -> str:
    """One item's facts and its links; a linked item still here is a button that selects it."""
    facts = [KIND_LABELS.get(item.ref.kind, item.ref.kind), item.detail]
    if item.model:
        facts.append(f"model {item.model}")
    facts.append(f"made {when(item.created_at)}")
    if item.updated_at and abs(item.updated_at - item.created_at) > 60:
        facts.append(f"changed {when(item.updated_at)}")
    if item.size:
        facts.append(_size(item.size))
    line = " · ".join(html.escape(f) for f in facts if f)
    parts = [f'<div class="lib-details"><h3>{html.escape(item.title or "Untitled")}</h3><p>{line}</p>']
    for heading, found in (("Came from", links.came_from), ("Made from it", links.made_from_it)):
        if not found:
            continue
        parts.append(f'<h4>{heading}</h4><ul class="lib-links" aria-label="{heading}">')
        for link in found:
            relation = f' <span class="lib-relation">({html.escape(link.relation)})</span>' if link.relation else ""
            label = html.escape(link.label or "Untitled")
            if link.ref is not None:
                kind = html.escape(KIND_LABELS.get(link.ref.kind, link.ref.kind))
                parts.append(
                    f'<li><button type="button" class="lib-link" data-ref="{html.escape(ref_text(link.ref))}">'
                    f"{kind}: {label}</button>{relation}</li>"
                )
            else:
                parts.append(f"<li>{label}{relation}</li>")
        parts.append("</ul>")
    if not links.came_from and not links.made_from_it:
        parts.append('<p class="lib-nolinks">No links: it was not made from another item, nor anything from it.</p>')
    parts.append("</div>")
    return "".join(parts)


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return ""
