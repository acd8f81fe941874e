"""ChatService with a real backend (the OpenAI-compatible one against a loopback server): history
trimming, saving while streaming, stop, regenerate, faults that keep what was written."""

from __future__ import annotations

import time

import pytest

from config import Settings
from core.chat.service import ChatOptions, ChatService
from core.chat.store import ConversationStore
from core.errors import InputError
from core.models.text import ModelManager
from tests.support.openai_servers import fake_openai_server, fake_reply


def make_service(tmp_path, base_url, **kw) -> ChatService:
    settings = Settings(
        text_models=("openai:fake-model",),
        data_dir=tmp_path,
        openai_base_url=base_url,
        request_timeout=kw.pop("request_timeout", 5.0),
        max_retries=kw.pop("max_retries", 0),
        **kw,
    )
    return ChatService(settings, ConversationStore(settings.db_path), ModelManager(settings))


def run_turn(service, user, cid, text, options=ChatOptions()):
    cid = service.add_user_message(user, cid, text, options)
    updates = list(service.reply(user, cid, options))
    return cid, updates


def test_reply_is_streamed_saved_and_timed(tmp_path):
    with fake_openai_server(reply_words=12) as fake:
        service = make_service(tmp_path, fake.base_url)
        cid, updates = run_turn(service, "u", None, "green tea")
        final = updates[-1]
        assert final.status == "complete" and len(updates) >= 12
        expected, _ = fake_reply([{"role": "user", "content": "green tea"}], 512, reply_words=12)
        assert final.text == expected
        assert final.stats["completion_tokens"] == 12 and final.stats["ttft_s"] is not None
        conv = service.store.get_conversation("u", cid)
        assert [(m.role, m.status) for m in conv.messages] == [("user", "complete"), ("assistant", "complete")]
        assert conv.messages[1].content == expected and conv.messages[1].stats["completion_tokens"] == 12


def test_reply_in_progress_is_on_disk_before_it_ends(tmp_path):
    with fake_openai_server(reply_words=40, chunk_delay=0.05) as fake:
        service = make_service(tmp_path, fake.base_url)
        cid = service.add_user_message("u", None, "slow words", ChatOptions())
        stream = service.reply("u", cid, ChatOptions())
        for i, update in enumerate(stream):
            if i == 20:
                break
        # a fresh store (another process would see the same) already holds part of the reply
        on_disk = ConversationStore(service.settings.db_path).get_conversation("u", cid).messages[-1]
        assert on_disk.status == "streaming" and on_disk.content.startswith("slow0 words1")
        stream.close()
        after = service.store.get_conversation("u", cid).messages[-1]
        assert after.status == "cut" and "interrupted" in after.note and after.content.startswith("slow0")


def test_long_history_is_trimmed_from_the_oldest_turn_with_a_notice(tmp_path):
    with fake_openai_server(reply_words=40, max_model_len=400) as fake:
        service = make_service(tmp_path, fake.base_url)
        options = ChatOptions(max_new_tokens=64)
        cid = None
        for i in range(8):
            cid, updates = run_turn(service, "u", cid, f"question number {i} " + "filler text " * 10, options)
        assert "older messages left out" in updates[-1].notice and "400-token" in updates[-1].notice
        sent = fake.chat_requests[-1].body["messages"]
        assert sent[-1]["content"].startswith("question number 7")
        assert not any("question number 0" in m["content"] for m in sent)
        assert sent[0]["role"] == "user"  # the kept history starts with a user turn
        # nothing is deleted from storage: trimming only shapes what the model sees
        assert len(service.store.get_conversation("u", cid).messages) == 16


def test_stop_cuts_within_a_few_tokens_and_marks_the_reply(tmp_path):
    with fake_openai_server(reply_words=200, chunk_delay=0.02) as fake:
        service = make_service(tmp_path, fake.base_url)
        cid = service.add_user_message("u", None, "stop me", ChatOptions())
        seen = 0
        final = None
        for update in service.reply("u", cid, ChatOptions()):
            if update.status == "streaming":
                seen += 1
                if seen == 5:
                    assert service.stop("u", cid)
            else:
                final = update
        assert final.status == "cut" and final.note == "stopped"
        assert 5 <= len(final.text.split()) <= 8
        stored = service.store.get_conversation("u", cid).messages[-1]
        assert stored.status == "cut" and stored.content == final.text


def test_regenerate_replaces_the_last_reply_and_edit_takes_the_message_back(tmp_path):
    with fake_openai_server(reply_words=6) as fake:
        service = make_service(tmp_path, fake.base_url)
        cid, _ = run_turn(service, "u", None, "first thing")
        service.drop_last_reply("u", cid)
        list(service.reply("u", cid, ChatOptions(temperature=0.0)))
        conv = service.store.get_conversation("u", cid)
        assert [m.role for m in conv.messages] == ["user", "assistant"]
        assert service.take_back_last_user_message("u", cid) == "first thing"
        assert service.store.get_conversation("u", cid).messages == []


def test_a_dropped_stream_keeps_the_partial_reply_marked_as_cut(tmp_path):
    with fake_openai_server(cut_after=4, reply_words=30) as fake:
        service = make_service(tmp_path, fake.base_url)
        cid, updates = run_turn(service, "u", None, "red green blue")
        final = updates[-1]
        assert final.status == "cut" and final.error and final.text.startswith("red0 green1 blue2 red3")
        stored = service.store.get_conversation("u", cid).messages[-1]
        assert stored.status == "cut" and stored.content == final.text and "dropped" in stored.note


def test_wrong_key_keeps_the_users_message_and_says_what_to_fix(tmp_path):
    with fake_openai_server(require_key="good") as fake:
        service = make_service(tmp_path, fake.base_url, openai_api_key="bad-key-xyz")
        cid, updates = run_turn(service, "u", None, "are you there")
        assert "401" in updates[-1].error and "bad-key-xyz" not in updates[-1].error
        conv = service.store.get_conversation("u", cid)
        assert conv.messages[0].content == "are you there"


def test_unreachable_server_errors_within_the_timeout(tmp_path):
    from tests.support.ports import free_port

    service = make_service(tmp_path, f"http://127.0.0.1:{free_port()}/v1", request_timeout=2.0, max_retries=2)
    t = time.monotonic()
    cid, updates = run_turn(service, "u", None, "hello?")
    assert time.monotonic() - t < 2.0 * 1.5 + 1
    assert "reach" in updates[-1].error.lower()


def test_message_too_long_for_the_context_is_refused_before_storing(tmp_path):
    with fake_openai_server(max_model_len=1000) as fake:
        service = make_service(tmp_path, fake.base_url)
        backend = service.models.get(None)
        backend.load()
        with pytest.raises(InputError, match="tokens"):
            service.check_fits(backend, "word " * 5000, ChatOptions())
