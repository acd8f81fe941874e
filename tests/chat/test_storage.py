"""Conversation storage: users are isolated, replies in progress survive a crash, search works."""

import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from core.chat.store import ConversationStore
from core.errors import NotFoundError
from core.security.secrets import persistent_secret


@pytest.fixture
def store(tmp_path):
    return ConversationStore(tmp_path / "db.sqlite3")


def test_conversation_round_trip_and_order(store):
    a = store.create_conversation("u1", "First")
    b = store.create_conversation("u1", "Second")
    store.add_message("u1", a.id, "user", "hello")
    mid = store.add_message("u1", a.id, "assistant", "", status="streaming")
    store.update_message("u1", a.id, mid, content="hi there", status="complete", stats={"tokens_per_s": 5})
    conv = store.get_conversation("u1", a.id)
    assert [(m.role, m.content, m.status) for m in conv.messages] == [
        ("user", "hello", "complete"),
        ("assistant", "hi there", "complete"),
    ]
    assert conv.messages[1].stats == {"tokens_per_s": 5}
    # a conversation with new messages moves to the top
    assert [c.id for c in store.list_conversations("u1")] == [a.id, b.id]


def test_users_never_see_each_other(store):
    mine = store.create_conversation("alice", "secret plans")
    store.add_message("alice", mine.id, "user", "the password is swordfish")
    assert store.list_conversations("bob") == []
    assert store.list_conversations("bob", "swordfish") == []
    for attempt in (
        lambda: store.get_conversation("bob", mine.id),
        lambda: store.add_message("bob", mine.id, "user", "x"),
        lambda: store.rename_conversation("bob", mine.id, "pwned"),
        lambda: store.delete_conversation("bob", mine.id),
        lambda: store.clear_messages("bob", mine.id),
        lambda: store.update_message("bob", mine.id, 1, content="x", status="complete"),
    ):
        with pytest.raises(NotFoundError):
            attempt()
    conv = store.get_conversation("alice", mine.id)
    assert conv.title == "secret plans" and conv.messages[0].content == "the password is swordfish"


def test_search_matches_titles_and_messages_and_escapes_wildcards(store):
    a = store.create_conversation("u", "Holiday in Lisbon")
    b = store.create_conversation("u", "Taxes")
    store.add_message("u", b.id, "user", "what is 100% deductible?")
    assert [c.id for c in store.list_conversations("u", "lisbon")] == [a.id]
    assert [c.id for c in store.list_conversations("u", "100%")] == [b.id]
    assert [c.id for c in store.list_conversations("u", "%")] == [b.id]  # a literal %, not "anything"
    assert store.list_conversations("u", "_") == []


def test_rename_delete_and_truncate(store):
    c = store.create_conversation("u", "Old")
    store.rename_conversation("u", c.id, "  New   name ")
    assert store.get_conversation("u", c.id).title == "New name"
    with pytest.raises(ValueError):
        store.rename_conversation("u", c.id, "   ")
    ids = [store.add_message("u", c.id, r, t) for r, t in [("user", "1"), ("assistant", "2"), ("user", "3")]]
    store.delete_messages_from("u", c.id, ids[1])
    assert [m.content for m in store.get_conversation("u", c.id).messages] == ["1"]
    store.delete_conversation("u", c.id)
    with pytest.raises(NotFoundError):
        store.get_conversation("u", c.id)
    # messages went with it (foreign key cascade)
    with sqlite3.connect(store.db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0


def test_streaming_reply_survives_kill_9_and_is_marked_cut(tmp_path):
    """A process writing a reply is killed with SIGKILL mid-stream; what it had saved is there,
    and the next start marks it as cut rather than losing it or leaving it 'streaming'."""
    db = tmp_path / "db.sqlite3"
    child = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.getcwd()!r})
        from core.chat.store import ConversationStore
        s = ConversationStore({str(db)!r})
        c = s.create_conversation("u", "t")
        s.add_message("u", c.id, "user", "tell me a story")
        m = s.add_message("u", c.id, "assistant", "", status="streaming")
        s.update_message("u", c.id, m, content="Once upon a time", status="streaming")
        print(c.id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert proc.returncode == -9
    cid = proc.stdout.strip()
    store = ConversationStore(db)
    assert store.get_conversation("u", cid).messages[-1].status == "streaming"
    assert store.mark_interrupted() == 1
    last = store.get_conversation("u", cid).messages[-1]
    assert (last.content, last.status) == ("Once upon a time", "cut")
    assert "interrupted" in last.note


def test_persistent_secret_is_stable_and_private(tmp_path):
    p = tmp_path / "s" / "secret"
    first = persistent_secret(p)
    assert persistent_secret(p) == first and len(first) >= 32
    assert oct(p.stat().st_mode & 0o777) == "0o600"
    assert persistent_secret(tmp_path / "other") != first
