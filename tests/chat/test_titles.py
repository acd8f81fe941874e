"""Conversation titles: the short title made at once from the first message, and the model's title written in the
background after the first reply (a real OpenAI-compatible server on loopback), checked, and never over a rename."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import pytest

from core.chat.service import ChatOptions
from core.chat.titles import MODEL_TITLE_TOKENS, TITLE_CHARS, checked_model_title, load_title_prompt, short_title
from tests.chat.test_chat_service import make_service, run_turn
from tests.support.openai_servers import fake_openai_server

LONG = "Could you please explain to me, step by step, how owls manage to see so well in the dark at night?"
PROMPT = load_title_prompt()


def test_short_title_is_one_line_of_a_few_words_cut_at_a_word():
    title = short_title(LONG)
    assert len(title) <= TITLE_CHARS and "\n" not in title and title.endswith("…")
    kept = title[:-1].split()
    assert kept == LONG.split()[: len(kept)]  # whole words of the message, in order
    assert short_title("## Owls\n\n**Why** do `owls`\n   hoot?") == "Owls Why do owls hoot?"
    assert short_title("short one") == "short one"
    assert len(short_title("x" * 500)) == TITLE_CHARS  # one endless word is cut inside it
    assert short_title(" \n ``` ") == ""


@pytest.mark.parametrize(
    ("raw", "title"),
    [
        ("Owl night vision", "Owl night vision"),
        ('Title: "Owl Night Vision"', "Owl Night Vision"),
        ("**Title:** Owl night vision.\n\nThis title sums up the question.", "Owl night vision"),
        ("“How owls see at night”", "How owls see at night"),
        ("Owls' eyes", "Owls' eyes"),
        ("This conversation is about a brave little robot named Akira. Akira is", "A brave little robot named Akira"),
    ],
)
def test_a_model_title_is_cleaned_of_labels_quotes_and_full_stops(raw, title):
    assert checked_model_title(raw, PROMPT) == title


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   \n ",
        "Name this conversation.",  # the instruction echoed
        "Title",
        "Message: Could you please explain",  # a label of the prompt's own
        'Reply: "owls"',
        "The owl's eye has many rods, which is why it sees so well at night even with little light",  # rambles
        'He said "owls" and "bats"',  # quotes left inside
        "{message}",
        "<b>Owls</b>",
        "...",
        "The answer to your question is",  # an answer's opening, cut off
        "Sure, here is a title",
        "Planning a trip to",  # a sentence cut off
        "Baking sourdough bread at home",  # the prompt's own example
    ],
)
def test_echoes_and_garbage_are_refused(raw):
    assert checked_model_title(raw, PROMPT) is None


def test_the_prompt_file_is_checked_at_load(tmp_path):
    assert "{message}" in PROMPT.user and PROMPT.system
    bad = tmp_path / "t.toml"
    bad.write_text('system = "x"\nuser = "no variable"\n')
    with pytest.raises(ValueError, match="message"):
        load_title_prompt(bad)
    bad.write_text('system = "x"\nuser = "{message} {other}"\n')
    with pytest.raises(ValueError, match="only"):
        load_title_prompt(bad)


def title_of(service, cid: str) -> str:
    return service.store.get_conversation("u", cid).title


def test_short_title_at_once_then_the_models_title_after_the_first_reply(tmp_path):
    with fake_openai_server(reply_text="Owls see in the dark") as fake:
        service = make_service(tmp_path, fake.base_url)
        cid, updates = run_turn(service, "u", None, LONG)
        assert updates[-1].status == "complete"
        assert title_of(service, cid) == short_title(LONG)  # before any model title
        requests_before = len(fake.chat_requests)
        thread = service.write_title("u", cid, None)
        assert thread is not None
        thread.join(10)
        assert not thread.is_alive()
        assert title_of(service, cid) == "Owls see in the dark"
        sent = fake.chat_requests[requests_before].body
        assert sent["messages"][0] == {"role": "system", "content": PROMPT.system}
        assert LONG in sent["messages"][1]["content"]
        assert (sent.get("max_tokens") or sent.get("max_completion_tokens")) <= MODEL_TITLE_TOKENS
        assert sent.get("temperature") == 0.0
        # only once: the second reply does not rename the conversation again
        fake.options = replace(fake.options, reply_text="Something else entirely")
        run_turn(service, "u", cid, "and bats?")
        assert service.write_title("u", cid, None) is None
        assert title_of(service, cid) == "Owls see in the dark"


def test_a_message_short_enough_to_be_its_own_title_is_not_renamed(tmp_path):
    with fake_openai_server(reply_text="A Model Title") as fake:
        service = make_service(tmp_path, fake.base_url)
        cid, _ = run_turn(service, "u", None, "owl eyes at night")
        count = len(fake.chat_requests)
        assert service.write_title("u", cid, None) is None
        assert len(fake.chat_requests) == count and title_of(service, cid) == "owl eyes at night"


@pytest.mark.parametrize("reply", ["Name this conversation.", "User: explain owls", '"""'])
def test_an_echo_or_garbage_from_the_model_keeps_the_short_title(tmp_path, reply):
    with fake_openai_server(reply_text=reply) as fake:
        service = make_service(tmp_path, fake.base_url)
        cid, _ = run_turn(service, "u", None, LONG)
        thread = service.write_title("u", cid, None)
        assert thread is not None
        thread.join(10)
        assert len(fake.chat_requests) == 2  # the model was asked, and its answer refused
        assert title_of(service, cid) == short_title(LONG)


def test_a_failing_model_keeps_the_short_title(tmp_path):
    with fake_openai_server(reply_text="Owls") as fake:
        service = make_service(tmp_path, fake.base_url)
        cid, _ = run_turn(service, "u", None, LONG)
        fake.options = replace(fake.options, server_error_first=math.inf)
        thread = service.write_title("u", cid, None)
        assert thread is not None
        thread.join(10)
        assert not thread.is_alive() and title_of(service, cid) == short_title(LONG)


def test_a_rename_wins_over_a_title_being_written(tmp_path):
    with fake_openai_server(reply_text="Owls see in the dark") as fake:
        service = make_service(tmp_path, fake.base_url)
        cid, _ = run_turn(service, "u", None, LONG)
        fake.options = replace(fake.options, chunk_delay=0.3)  # the title takes ~1.5 s
        thread = service.write_title("u", cid, None)
        assert thread is not None
        time.sleep(0.4)
        service.rename("u", cid, "My owl question")
        thread.join(10)
        assert title_of(service, cid) == "My owl question"
        # and even a title that arrives after a rename does not replace it
        assert not service.store.set_title_if("u", cid, "Owls", short_title(LONG))
        assert title_of(service, cid) == "My owl question"


def test_the_title_gives_way_to_the_users_next_reply(tmp_path):
    with fake_openai_server(reply_text="Owls see in the dark tonight") as fake:
        service = make_service(tmp_path, fake.base_url)
        cid, _ = run_turn(service, "u", None, LONG)
        fake.options = replace(fake.options, chunk_delay=0.5)
        thread = service.write_title("u", cid, None)
        assert thread is not None
        time.sleep(0.7)  # the title has started to stream
        event = service.active.start("u", cid)  # what service.reply does when the user sends again
        t0 = time.perf_counter()
        thread.join(5)
        assert not thread.is_alive() and time.perf_counter() - t0 < 1.5
        service.active.finish("u", cid, event)
        assert title_of(service, cid) == short_title(LONG)


def test_model_titles_can_be_turned_off(tmp_path):
    with fake_openai_server(reply_text="Owls") as fake:
        service = make_service(tmp_path, fake.base_url, chat_model_titles=False)
        cid, _ = run_turn(service, "u", None, LONG)
        assert service.write_title("u", cid, None) is None
        assert title_of(service, cid) == short_title(LONG)


def test_an_unfinished_first_reply_gets_no_model_title(tmp_path):
    with fake_openai_server(reply_text="Owls") as fake:
        service = make_service(tmp_path, fake.base_url)
        cid = service.add_user_message("u", None, LONG, ChatOptions())
        assert service.write_title("u", cid, None) is None  # no reply yet
        assert service.write_title("u", None, None) is None
        assert len(fake.chat_requests) == 0
