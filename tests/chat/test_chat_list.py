"""The conversation list's date sections and the export's file name."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from core.chat.export import export_filename
from core.chat.listing import by_date, section_of
from core.chat.store import Conversation
from ui.chat_list import list_html

NOW = datetime(2026, 3, 18, 9, 30).timestamp()  # a Wednesday morning, local time


def at(**ago) -> float:
    return (datetime.fromtimestamp(NOW) - timedelta(**ago)).timestamp()


def conv(title: str, updated: float) -> Conversation:
    return Conversation(id="0123456789abcdef" * 2, user_id="u", title=title, created_at=updated, updated_at=updated)


def test_sections_follow_the_calendar_day_not_24_hour_steps():
    assert section_of(at(hours=9), NOW) == "Today"  # 00:30 today
    assert section_of(at(hours=10), NOW) == "Yesterday"  # 23:30 yesterday, only 10 hours ago
    assert section_of(at(days=1, hours=9), NOW) == "Yesterday"
    assert section_of(at(days=2), NOW) == "Previous 7 days"
    assert section_of(at(days=7, hours=9), NOW) == "Previous 7 days"
    assert section_of(at(days=8, hours=10), NOW) == "Older"
    assert section_of(NOW + 3600, NOW) == "Today"  # a clock that went back


def test_by_date_keeps_the_order_and_leaves_out_empty_sections():
    convs = [conv("a", at(minutes=5)), conv("b", at(hours=2)), conv("c", at(days=30)), conv("d", at(days=400))]
    groups = by_date(convs, NOW)
    assert [(name, [c.title for c in items]) for name, items in groups] == [
        ("Today", ["a", "b"]),
        ("Older", ["c", "d"]),
    ]
    assert by_date([], NOW) == []


def test_export_file_name_is_a_short_title_and_the_date_in_safe_characters():
    day = datetime.fromtimestamp(NOW).strftime("%Y-%m-%d")
    assert export_filename(conv("Plants / light?", NOW), "md") == f"plants-light-{day}.md"
    assert export_filename(conv("Café au lait: über ../../etc", NOW), "json") == f"cafe-au-lait-uber-etc-{day}.json"
    assert export_filename(conv("日本語", NOW), "md") == f"conversation-{day}.md"
    long = export_filename(conv("Could you please explain to me step by step how owls see", NOW), "md")
    slug = long.removesuffix(f"-{day}.md")
    assert len(slug) <= 40 and "could-you-please-explain-to-me-step-by".startswith(slug) and not slug.endswith("-")
    assert re.fullmatch(r"[a-z0-9-]+\.md", long)


def test_the_list_escapes_titles_and_marks_the_open_one():
    convs = [conv('<img src=x onerror="alert(1)"> ${1+1}', NOW)]
    page = list_html(convs, "", convs[0].id, now=NOW)
    assert "<img" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; ${1+1}" in page
    assert 'aria-current="true"' in page and f'data-open="{convs[0].id}"' in page
    assert "data-open" not in list_html(convs, "", None, now=NOW)  # drawn without knowing: the page keeps its mark
    assert "No conversations match '&lt;b&gt;'" in list_html([], "<b>")
    assert "No conversations yet" in list_html([], "")
