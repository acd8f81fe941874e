"""Conversations as Markdown and JSON files a person can keep or share."""

from __future__ import annotations

import json
import re
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


def export_filename(conv: Conversation, ext: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", conv.title).strip("-").lower()[:40] or "conversation"
    return f"{slug}-{conv.id[:8]}.{ext}"
