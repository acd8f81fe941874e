"""Replies have versions and edited messages branch (core/chat/store.py's message tree), a reply cut by the
token limit is marked 'length' and can be continued, one turn at a time per tab, and a file made before
messages had parents still opens: each against the real OpenAI-compatible backend on a loopback fake."""

from __future__ import annotations

import sqlite3

import pytest

from core.chat.display import display_messages, turn_actions, without_controls
from core.chat.service import ChatOptions
from core.chat.store import ConversationStore
from core.errors import InputError
from tests.chat.test_chat_service import make_service, run_turn
from tests.support.openai_servers import fake_openai_server

OLD_SCHEMA = """
CREATE TABLE conversations (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, title TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '', system_prompt TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL,
    updated_at REAL NOT NULL);
CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')), content TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'complete' CHECK (status IN ('complete', 'streaming', 'cut')),
    note TEXT NOT NULL DEFAULT '', model TEXT NOT NULL DEFAULT '', stats TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL);
"""


def texts(service, cid) -> list[str]:
    return [m.content for m in service.store.get_conversation("u", cid).messages]


def test_a_file_from_before_branches_opens_with_its_messages_in_order(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        for cid in ("a", "b"):
            db.execute("INSERT INTO conversations VALUES (?, 'u', ?, '', '', 0, 0)", (cid, f"conv {cid}"))
        # interleaved ids across two conversations, as two users typing at once leave them
        for cid, role, text in [("a", "user", "a1"), ("b", "user", "b1"), ("a", "assistant", "a2"),
                                ("b", "assistant", "b2"), ("a", "user", "a3")]:  # fmt: skip
            db.execute(
                "INSERT INTO messages (conversation_id, role, content, created_at) VALUES (?, ?, ?, 0)",
                (cid, role, text),
            )
    store = ConversationStore(path)
    assert [m.content for m in store.get_conversation("u", "a").messages] == ["a1", "a2", "a3"]
    assert [m.content for m in store.get_conversation("u", "b").messages] == ["b1", "b2"]
    store.add_message("u", "a", "assistant", "a4")  # continues the old conversation where it ended
    assert [m.content for m in ConversationStore(path).get_conversation("u", "a").messages] == ["a1", "a2", "a3", "a4"]


def test_regenerate_keeps_every_version_and_the_conversation_follows_the_shown_one(tmp_path):
    with fake_openai_server(reply_words=4) as fake:
        service = make_service(tmp_path, fake.base_url)
        cid, _ = run_turn(service, "u", None, "apple")
        list(service.reply("u", cid, ChatOptions(), mode="regenerate"))
        list(service.reply("u", cid, ChatOptions(), mode="regenerate"))
        conv = service.store.get_conversation("u", cid)
        assert [(m.role, m.version, m.versions) for m in conv.messages] == [("user", 1, 1), ("assistant", 3, 3)]
        third = conv.messages[1]
        # the regenerations answered the same message, with nothing of the old replies in the request
        assert all(r.body["messages"][-1] == {"role": "user", "content": "apple"} for r in fake.chat_requests)
        conv = service.show_version("u", cid, third.id, -1)
        second = conv.messages[1]
        assert (second.version, second.versions) == (2, 3) and second.id != third.id
        # persisted: a fresh store shows version 2, and the next message follows it
        assert ConversationStore(service.settings.db_path).get_conversation("u", cid).messages[1].id == second.id
        run_turn(service, "u", cid, "banana")
        conv = service.store.get_conversation("u", cid)
        assert [m.id for m in conv.messages[:2]] == [conv.messages[0].id, second.id] and len(conv.messages) == 4
        # flipping back to version 3 shows its own (empty) continuation: the banana turn belongs to version 2
        conv = service.show_version("u", cid, second.id, 1)
        assert [m.id for m in conv.messages] == [conv.messages[0].id, third.id]
        assert service.show_version("u", cid, third.id, 1).messages[1].id == third.id  # no version 4: unchanged
        with pytest.raises(InputError):
            service.show_version("u", cid, third.id, 5)
        # the bubbles say which version is shown and offer the others
        bubble = display_messages(service.store.get_conversation("u", cid))[1]["content"]
        assert "3/3" in bubble and f"chat-v-{third.id}-prev" in bubble and "Previous version</span>" in bubble
        assert without_controls(bubble) == display_messages(conv)[1]["content"].split("\n\n<span")[0]


def test_editing_an_earlier_message_branches_and_keeps_the_old_continuation(tmp_path):
    with fake_openai_server(reply_words=3) as fake:
        service = make_service(tmp_path, fake.base_url)
        cid, _ = run_turn(service, "u", None, "cats")
        run_turn(service, "u", cid, "dogs")
        before = service.store.get_conversation("u", cid).messages
        assert len(before) == 4
        service.edit("u", cid, 0, "birds", ChatOptions())  # the first message, not the last
        list(service.reply("u", cid, ChatOptions()))
        assert texts(service, cid) == ["birds", "birds0 birds1 birds2"]
        conv = service.store.get_conversation("u", cid)
        assert (conv.messages[0].version, conv.messages[0].versions) == (2, 2)
        assert fake.chat_requests[-1].body["messages"] == [{"role": "user", "content": "birds"}]
        conv = service.show_version("u", cid, conv.messages[0].id, -1)  # the old branch, whole
        assert [m.id for m in conv.messages] == [m.id for m in before]
        with pytest.raises(InputError, match="Only your own messages"):
            service.edit("u", cid, 1, "not mine", ChatOptions())
        with pytest.raises(InputError, match="empty"):
            service.edit("u", cid, 0, "   ", ChatOptions())
        assert len(service.store.get_conversation("u", cid).messages) == 4  # nothing stored by the refusals


def test_a_reply_cut_by_the_token_limit_is_marked_and_continue_appends_to_it(tmp_path):
    with fake_openai_server(reply_words=40) as fake:
        service = make_service(tmp_path, fake.base_url)
        options = ChatOptions(max_new_tokens=16)
        cid, updates = run_turn(service, "u", None, "stars", options)
        first = updates[-1]
        assert (first.status, first.note) == ("cut", "length") and len(first.text.split()) == 16
        conv = service.store.get_conversation("u", cid)
        assert turn_actions(conv).can_continue and "reply cut: length" in display_messages(conv)[1]["content"]
        updates = list(service.reply("u", cid, options, mode="continue"))
        final = updates[-1]
        assert final.text.startswith(first.text) and len(final.text) > len(first.text)
        assert (final.status, final.note) == ("cut", "length")  # still more to say
        conv = service.store.get_conversation("u", cid)
        assert len(conv.messages) == 2 and conv.messages[1].content == final.text  # the same reply, longer
        sent = fake.chat_requests[-1].body["messages"]
        assert sent[-2] == {"role": "assistant", "content": first.text} and sent[-1]["role"] == "user"
        assert "Continue" in sent[-1]["content"]
        # a reply that ended by itself is complete and offers no Continue
        cid2, updates = run_turn(service, "u", None, "moon", ChatOptions(max_new_tokens=64))
        assert updates[-1].status == "complete"
        assert not turn_actions(service.store.get_conversation("u", cid2)).can_continue


def test_one_turn_at_a_time_per_tab_and_per_conversation(tmp_path):
    with fake_openai_server(reply_words=3) as fake:
        service = make_service(tmp_path, fake.base_url)
        with service.turn("u", "tab-1"):
            assert service.busy("u", "tab-1")
            with pytest.raises(InputError, match="still in the box"), service.turn("u", "tab-1"):
                pass
            with service.turn("u", "tab-2"), service.turn("v", "tab-1"):  # other tabs and users are free
                pass
        assert not service.busy("u", "tab-1")
        cid, _ = run_turn(service, "u", None, "one")
        cancel = service.active.start("u", cid)  # a reply in progress in this conversation, from another tab
        with pytest.raises(InputError), service.turn("u", "tab-3", cid):
            pass
        service.active.finish("u", cid, cancel)
        with service.turn("u", "tab-3", cid):
            pass
