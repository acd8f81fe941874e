"""Conversations as Markdown and JSON files a person can keep or share."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, datetime

from core.chat.store import Conversation


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def to_markdown(conv: Conversation) -> str:
    lines = [f"# {conv.title}", "", f"*Model: {conv.model or 'default'} · started {_iso(conv.created_at)}*", ""]
    if conv.system_prompt:
        lines += ["**System prompt:**", "", "> " + conv.system_prompt.replace("\n", "\n> "), ""]
    for m in conv.messages:
        who = "You" if m.role == "user" else "Assistant"
        lines += [f"### {who}", "", m.content or "", ""]
        if m.role == "assistant" and m.status != "complete":
            lines += [f"*[reply cut: {m.note or 'incomplete'}]*", ""]
    return "\n".join(lines).rstrip() + "\n"


def to_json(conv: Conversation) -> str:
    return json.dumps(
        {
            "id": conv.id,
            "title": conv.title,
            "model": conv.model,
            "system_prompt": conv.system_prompt,
            "created_at": _iso(conv.created_at),
            "updated_at": _iso(conv.updated_at),
            "messages": [
                {
                    "role": m.role,
                    "content": m.content,
                    "status": m.status,
                    "note": m.note,
                    "model": m.model,
                    "stats": m.stats,
                    "created_at": _iso(m.created_at),
                }
                for m in conv.messages
            ],
        },
        ensure_ascii=False,
        indent=2,
    )


SLUG_CHARS = 40


def export_filename(conv: Conversation, ext: str) -> str:
    """ "<short-title>-<YYYY-MM-DD>.<ext>" (the day it last changed, local time): ASCII letters, digits and
    hyphens only (accents dropped, everything else a hyphen), cut at a word, "conversation" when nothing is left."""
    ascii_title = unicodedata.normalize("NFKD", conv.title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", ascii_title).strip("-").lower()
    if len(slug) > SLUG_CHARS:
        cut = slug[: SLUG_CHARS + 1]
        slug = cut[: cut.rfind("-")] if "-" in cut[SLUG_CHARS // 3 :] else slug[:SLUG_CHARS]
    day = datetime.fromtimestamp(conv.updated_at or conv.created_at).strftime("%Y-%m-%d")
    return f"{slug.strip('-') or 'conversation'}-{day}.{ext}"
