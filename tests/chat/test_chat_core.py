"""Pure chat logic: context fitting, role merging, stop registry, input checks, export."""

import json

import pytest

from backends.text.base import ContextOverflowError
from config import Settings
from core.cancel import CancelRegistry
from core.chat.export import export_filename, to_json, to_markdown
from core.chat.presets import load_chat_presets
from core.chat.service import ChatOptions, ChatService, fit_to_context, merge_roles, title_from
from core.chat.store import ConversationStore
from core.errors import InputError
from core.models.text import ModelManager


def words(messages):  # a token counter for tests: one token per word plus 3 per message
    return sum(len(m["content"].split()) + 3 for m in messages)


def turns(n):
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "w " * 8} for i in range(n)]


def test_fit_keeps_everything_when_it_fits():
    msgs, dropped = fit_to_context([], turns(5), words, budget=10_000)
    assert dropped == 0 and len(msgs) == 5


def test_fit_drops_oldest_first_and_keeps_system_and_last_message():
    system = [{"role": "system", "content": "be brief"}]
    t = turns(9)  # each turn is 13 "tokens"
    msgs, dropped = fit_to_context(system, t, words, budget=5 + 13 * 3)
    assert msgs[0] == system[0]
    assert msgs[-1] == t[-1]
    assert dropped > 0 and msgs[1:] == t[dropped:]
    assert msgs[1]["role"] == "user"  # kept history never opens with a reply
    assert words(msgs) <= 5 + 13 * 3


def test_fit_refuses_a_last_message_that_alone_is_too_long():
    with pytest.raises(ContextOverflowError):
        fit_to_context([], [{"role": "user", "content": "w " * 100}], words, budget=50)


def test_merge_roles_joins_consecutive_same_role_messages():
    merged = merge_roles(
        [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]
    )
    assert merged == [{"role": "user", "content": "a\n\nb"}, {"role": "assistant", "content": "c"}]


def test_stop_reaches_only_the_owners_reply():
    active = CancelRegistry()
    alice = active.start("alice", "c1")
    bob = active.start("bob", "c2")
    assert not active.stop("bob", "c1")  # bob cannot stop alice's reply by naming its id
    assert active.stop("alice", "c1") == 1
    assert alice.is_set() and not bob.is_set()
    active.finish("alice", "c1", alice)
    assert not active.stop("alice", "c1")


def test_new_reply_in_same_conversation_cancels_the_old_one():
    active = CancelRegistry()
    first = active.start("u", "c", supersede=True)
    second = active.start("u", "c", supersede=True)
    assert first.is_set() and not second.is_set()


def test_jobs_sharing_a_key_run_side_by_side_and_stop_together_or_by_key():
    active = CancelRegistry()
    a, b = active.start("u", "tab-1"), active.start("u", "tab-1")  # two jobs from one tab
    c = active.start("u", "tab-2")
    assert not (a.is_set() or b.is_set()) and active.running("u") == 3
    assert active.stop("u", "tab-1") == 2 and a.is_set() and b.is_set() and not c.is_set()
    assert active.stop("u", None) == 3 and c.is_set()  # None: every key of the user
    for key, event in (("tab-1", a), ("tab-1", b), ("tab-2", c)):
        active.finish("u", key, event)
    assert active.running("u") == 0 and active.stop("u", None) == 0


@pytest.fixture
def service(tmp_path):
    settings = Settings(data_dir=tmp_path, max_input_chars=1000)
    return ChatService(settings, ConversationStore(settings.db_path), ModelManager(settings))


@pytest.mark.parametrize("bad", ["", "   \n\t ", None])
def test_empty_message_is_refused(service, bad):
    with pytest.raises(InputError, match="empty"):
        service.validate(bad)


def test_oversized_message_is_refused_with_sizes(service):
    with pytest.raises(InputError, match="1,001 characters.*1,000"):
        service.validate("x" * 1001)


def test_user_message_creates_titled_conversation_and_edit_takes_it_back(service):
    cid = service.add_user_message("u", None, "How do plants make food from sunlight?", ChatOptions())
    conv = service.store.get_conversation("u", cid)
    assert conv.title == "How do plants make food from sunlight?"
    assert service.take_back_last_user_message("u", cid) == "How do plants make food from sunlight?"
    assert service.store.get_conversation("u", cid).messages == []
    with pytest.raises(InputError):
        service.take_back_last_user_message("u", cid)


def test_title_is_one_line_and_bounded():
    assert title_from("a\nb   c") == "a b c"
    assert len(title_from("x" * 500)) == 40  # a short title (issue 12): core/chat/titles.py TITLE_CHARS


def test_options_clamp_absurd_values():
    p = ChatOptions(temperature=99, top_p=-1, max_new_tokens=10**9, seed=-5).params()
    assert (p.temperature, p.top_p, p.max_new_tokens, p.seed) == (2.0, 0.01, 32768, None)


def test_unknown_model_spec_fails_at_startup(tmp_path):
    with pytest.raises(ValueError, match="Unknown text model"):
        ModelManager(Settings(text_models=("gpt4",), data_dir=tmp_path))


def test_settings_from_env_reads_everything_in_one_place(tmp_path):
    s = Settings.from_env(
        {
            "STUDIO_TEXT_MODEL": "embedded, openai:gpt-4o-mini",
            "STUDIO_DATA_DIR": str(tmp_path),
            "GRADIO_SERVER_PORT": "9999",
            "OPENAI_API_KEY": "sk-secret-123",
            "STUDIO_AUTH": "ann:pw1,bob:pw2",
            "STUDIO_BATCH_SIZE": "6",
            "STUDIO_OPENAI_CONCURRENCY": "3",
        }
    )
    assert s.text_models == ("embedded", "openai:gpt-4o-mini")
    assert (s.batch_size, s.openai_concurrency) == (6, 3)
    assert s.server_port == 9999 and s.data_dir == tmp_path
    assert s.auth == (("ann", "pw1"), ("bob", "pw2"))
    assert "sk-secret-123" not in repr(s) and "pw1" not in repr(s)
    with pytest.raises(ValueError, match="STUDIO_AUTH"):
        Settings.from_env({"STUDIO_AUTH": "nopassword"})


def test_export_markdown_and_json_hold_the_conversation(service):
    store = service.store
    c = store.create_conversation("u", "Plants / light?", system_prompt="Be kind")
    store.add_message("u", c.id, "user", "How?")
    mid = store.add_message("u", c.id, "assistant", "", status="streaming")
    store.update_message("u", c.id, mid, content="Photosynthesis", status="cut", note="stopped")
    conv = store.get_conversation("u", c.id)
    md = to_markdown(conv)
    assert "# Plants / light?" in md and "> Be kind" in md and "How?" in md
    assert "Photosynthesis" in md and "reply cut: stopped" in md
    data = json.loads(to_json(conv))
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert data["messages"][1]["status"] == "cut"
    assert export_filename(conv, "md").startswith("plants-light-")


def test_presets_load_from_data_file_and_reject_bad_files(tmp_path):
    presets = load_chat_presets()
    assert "Helpful assistant" in presets and all(isinstance(v, str) for v in presets.values())
    bad = tmp_path / "p.toml"
    bad.write_text('[[preset]]\nname = "x"\nprompt = "a"\n[[preset]]\nname = "x"\nprompt = "b"\n')
    with pytest.raises(ValueError, match="twice"):
        load_chat_presets(bad)


def test_throttled_passes_first_and_final_and_thins_the_middle():
    import time as _time

    from core.chat.service import ReplyUpdate, throttled

    def updates():
        for i in range(50):
            yield ReplyUpdate("x" * (i + 1))
            _time.sleep(0.002)
        yield ReplyUpdate("x" * 50, status="complete")

    out = list(throttled(updates(), interval=0.03))
    assert out[0].text == "x" and out[-1].status == "complete" and out[-1].text == "x" * 50
    assert 2 < len(out) < 20
    assert [len(u.text) for u in out] == sorted(len(u.text) for u in out)


def test_throttled_delivers_held_back_text_before_an_error():
    from core.chat.service import ReplyUpdate, throttled

    def updates():
        yield ReplyUpdate("a")
        yield ReplyUpdate("a b")  # held back: arrives within the interval
        raise RuntimeError("stream broke")

    got = []
    with pytest.raises(RuntimeError):
        for u in throttled(updates(), interval=10):
            got.append(u.text)
    assert got == ["a", "a b"]
