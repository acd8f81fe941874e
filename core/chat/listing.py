"""The conversation list's sections by date, as chat apps show them: Today, Yesterday, Previous 7 days, Older
(by when a conversation last changed, in the server's local time)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from core.chat.store import Conversation

SECTIONS = ("Today", "Yesterday", "Previous 7 days", "Older")


def section_of(updated_at: float, now: float) -> str:
    midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    when = datetime.fromtimestamp(updated_at)
    if when >= midnight:
        return "Today"  # also a clock that moved back: never "in the future"
    if when >= midnight - timedelta(days=1):
        return "Yesterday"
    if when >= midnight - timedelta(days=7):
        return "Previous 7 days"
    return "Older"


def by_date(convs: Sequence[Conversation], now: float | None = None) -> list[tuple[str, list[Conversation]]]:
    """The non-empty sections in order, each with its conversations in the order given (newest first)."""
    now = time.time() if now is None else now
    groups: dict[str, list[Conversation]] = {name: [] for name in SECTIONS}
    for conv in convs:
        groups[section_of(conv.updated_at, now)].append(conv)
    return [(name, items) for name, items in groups.items() if items]
