"""The app through gradio_client: the named /chat endpoint streams, takes only the message as
required, refuses bad input with a clear message and keeps serving everyone else."""

from __future__ import annotations

import threading

import pytest

from tests.support.apps import running_app, settings_for
from tests.support.openai_servers import fake_openai_server, fake_reply
from tests.support.paths import ROOT


@pytest.fixture(scope="module")
def fake():
    with fake_openai_server(chunk_delay=0.02, reply_words=30) as server:
        yield server


@pytest.fixture(scope="module")
def app(fake, tmp_path_factory):
    with running_app(settings_for(tmp_path_factory.mktemp("data"), fake.base_url)) as pair:
        yield pair


def error_text(excinfo) -> str:
    return str(excinfo.value)


def test_chat_endpoint_streams_the_reply(app):
    client, _ = app
    job = client.submit("sunny meadow flowers", api_name="/chat")
    partials = [p for p in job]
    expected, _ = fake_reply([{"role": "user", "content": "sunny meadow flowers"}], 512, reply_words=30)
    assert job.result() == expected
    # it streamed: several growing prefixes arrived before the whole reply
    growing = [p for p in partials if p and expected.startswith(p)]
    assert len(set(growing)) >= 3


def test_chat_endpoint_takes_optional_parameters_and_history(app, fake):
    client, _ = app
    history = [{"role": "user", "content": "earlier question"}, {"role": "assistant", "content": "earlier answer"}]
    out = client.predict(
        "zebra", system_prompt="Be terse", temperature=0.0, max_new_tokens=5, seed=7, history=history, api_name="/chat"
    )
    assert out == "zebra0 zebra1 zebra2 zebra3 zebra4"
    sent = fake.chat_requests[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "Be terse"}
    assert [m["content"] for m in sent["messages"][1:]] == ["earlier question", "earlier answer", "zebra"]
    assert sent["max_tokens"] == 5 and sent["seed"] == 7 and sent["temperature"] == 0.0


def test_empty_message_gets_a_clear_error(app):
    from gradio_client.exceptions import AppError

    client, _ = app
    with pytest.raises(AppError) as exc:
        client.predict("   ", api_name="/chat")
    assert "empty message" in error_text(exc)


def test_200k_character_message_gets_a_clear_error_about_the_context(app):
    from gradio_client.exceptions import AppError

    client, _ = app
    with pytest.raises(AppError) as exc:
        client.predict("word " * 40_000, api_name="/chat")
    assert "does not fit" in error_text(exc) and "context" in error_text(exc)


def test_unknown_model_gets_a_clear_error(app):
    from gradio_client.exceptions import AppError

    client, _ = app
    with pytest.raises(AppError) as exc:
        client.predict("hi", model="openai:nope", api_name="/chat")
    assert "Unknown model" in error_text(exc)


def test_concurrent_api_users_get_only_their_own_tokens(app):
    client, _ = app
    results: dict[str, str] = {}

    def run(word):
        results[word] = client.predict(f"{word} {word}", api_name="/chat")

    threads = [threading.Thread(target=run, args=(w,)) for w in ("kiwi", "lemon", "mango")]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    for word, text in results.items():
        others = {"kiwi", "lemon", "mango"} - {word}
        assert text.startswith(f"{word}0") and not any(o in text for o in others)
    assert len(results) == 3


def test_faults_give_clear_errors_and_the_app_keeps_serving(tmp_path):
    from gradio_client.exceptions import AppError

    with fake_openai_server(require_key="right-key") as guarded:
        settings = settings_for(tmp_path, guarded.base_url, openai_api_key="wrong-key-123")
        with running_app(settings) as (client, _):
            with pytest.raises(AppError) as exc:
                client.predict("hello", api_name="/chat")
            assert "401" in error_text(exc) and "OPENAI_API_KEY" in error_text(exc)
            assert "wrong-key-123" not in error_text(exc)
    with fake_openai_server(cut_after=3, reply_words=20) as cutter:
        with running_app(settings_for(tmp_path / "b", cutter.base_url)) as (client, _):
            job = client.submit("one two three four", api_name="/chat")
            with pytest.raises(AppError) as exc:
                job.result()
            assert "broke off" in error_text(exc) and "connection dropped" in error_text(exc)
            assert any(p.startswith("one0 two1") for p in job.outputs())  # what arrived was sent
    with fake_openai_server(server_error_first=1, reply_words=4) as flaky:
        with running_app(settings_for(tmp_path / "c", flaky.base_url, max_retries=2)) as (client, _):
            assert client.predict("retry me", api_name="/chat") == "retry0 me1 retry2 me3"  # 500 retried
            assert client.predict("again", api_name="/chat").startswith("again0")  # still serving


def test_startup_loads_no_model_and_imports_no_engine(tmp_path):
    """The page must be up in seconds: building the app touches no weights and imports neither
    torch nor llama.cpp (checked in a fresh interpreter, free of other tests' imports)."""
    import subprocess
    import sys

    code = (
        "import sys; from config import Settings; from app import build_app; "
        f"build_app(Settings(text_models=('embedded', 'hf:some/model', 'openai:x'), data_dir={str(tmp_path)!r})); "
        "print(sorted(m for m in ('torch', 'llama_cpp', 'transformers', 'openai', 'diffusers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
