"""The text-backend contract, run over every backend the app ships: llama.cpp with the embedded
model, transformers (a tiny model built from a config, and the embedded GGUF), and the
OpenAI-compatible backend against a loopback server and against llama_cpp.server (a real peer)."""

from __future__ import annotations

import threading
import time

import pytest

from backends.text.base import Capabilities, GenerationParams, StreamStats, TextBackend
from backends.text.openai_compat import OpenAIBackend

LOCAL = [
    "llamacpp_backend",
    "tiny_transformers_backend",
    pytest.param("gguf_transformers_backend", marks=pytest.mark.slow),
]
HOSTED = ["openai_fake_backend", pytest.param("openai_llamacpp_server_backend", marks=pytest.mark.slow)]
MESSAGES = [
    {"role": "system", "content": "You are concise."},
    {"role": "user", "content": "List three colours of the rainbow."},
]


@pytest.fixture(scope="module")
def openai_fake_backend(settings_factory):
    from backends.text.openai_compat import OpenAIBackend
    from tests.support.openai_servers import fake_openai_server

    with fake_openai_server(reply_words=64, chunk_delay=0.01) as fake:
        settings = settings_factory(openai_base_url=fake.base_url, request_timeout=10.0)
        backend = OpenAIBackend(model="fake-model", settings=settings, spec="openai:fake-model", label="fake")
        backend.load()
        yield backend


@pytest.fixture(scope="module")
def openai_llamacpp_server_backend(settings_factory, embedded_gguf):
    from backends.text.openai_compat import OpenAIBackend
    from tests.support.openai_servers import llama_cpp_server

    with llama_cpp_server(embedded_gguf, n_ctx=2048) as server:
        settings = settings_factory(openai_base_url=server.base_url, request_timeout=60.0)
        backend = OpenAIBackend(
            model=server.model, settings=settings, spec=f"openai:{server.model}", label="llama_cpp.server"
        )
        backend.load()
        yield backend


@pytest.fixture(params=LOCAL + HOSTED)
def backend(request) -> TextBackend:
    return request.getfixturevalue(request.param)


def greedy(n: int) -> GenerationParams:
    return GenerationParams(temperature=0.0, max_new_tokens=n, seed=0)


def test_declares_its_capabilities(backend):
    assert isinstance(backend, TextBackend)
    caps = backend.capabilities()
    assert isinstance(caps, Capabilities)
    assert caps.context_length >= 512 and caps.max_concurrency >= 1 and caps.streaming
    assert backend.label and backend.spec


def test_greedy_streamed_text_equals_non_streamed_text(backend):
    if isinstance(backend, OpenAIBackend):
        # The server's own prompt cache, not the client: llama-cpp-python's server evaluates a prompt it has cached
        # by its last token alone, which rounds differently from the whole prompt in one batch, so the same greedy
        # request can change its reply once. A first request primes the cache; both compared ones then take the
        # same path. (Our llama.cpp backend evaluates the last token alone every time: test_llamacpp_speed.py.)
        backend.chat(MESSAGES, greedy(24))
    stats = StreamStats()
    deltas = list(backend.stream_chat(MESSAGES, greedy(24), threading.Event(), stats))
    whole = backend.chat(MESSAGES, greedy(24))
    assert "".join(deltas) == whole.text
    assert whole.text.strip(), "greedy decoding produced no text"
    assert len(deltas) > 1, "the reply arrived in one piece: not streamed"
    assert stats.finish_reason in ("stop", "length") and stats.completion_tokens > 0


def test_cancel_stops_within_a_few_tokens(backend):
    cancel, stats = threading.Event(), StreamStats()
    threads_before = threading.active_count()
    after_cancel = 0
    for i, _ in enumerate(backend.stream_chat(MESSAGES, greedy(200), cancel, stats)):
        if cancel.is_set():
            after_cancel += 1
        if i == 2:
            cancel.set()
    assert after_cancel <= 3
    assert stats.finish_reason == "cancelled"
    time.sleep(0.2)
    assert threading.active_count() <= threads_before, "a generation thread outlived the request"


def test_abandoned_stream_frees_the_backend_for_the_next_request(backend):
    stream = backend.stream_chat(MESSAGES, greedy(200), threading.Event())
    next(stream), next(stream)
    stream.close()
    t = time.monotonic()
    assert backend.chat(MESSAGES, greedy(4)).text.strip()
    assert time.monotonic() - t < 30


def test_max_new_tokens_bounds_the_reply(backend):
    stats = StreamStats()
    text = "".join(backend.stream_chat(MESSAGES, greedy(4), threading.Event(), stats))
    assert text and stats.completion_tokens <= 4 and stats.finish_reason == "length"


def test_token_count_grows_with_the_conversation(backend):
    short = backend.count_tokens(MESSAGES)
    longer = backend.count_tokens(
        MESSAGES
        + [
            {"role": "assistant", "content": "Red, green, blue."},
            {"role": "user", "content": "And three more, please?"},
        ]
    )
    assert 0 < short < longer


CONTRACT_SCHEMA = {
    "type": "object",
    "properties": {
        "colours": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 30}, "maxItems": 3}
    },
    "required": ["colours"],
    "additionalProperties": False,
}


def test_a_reply_with_a_json_schema_is_json_of_it(backend):
    """Every engine enforces GenerationParams.json_schema (a grammar, a logits processor, response_format)."""
    import json

    params = GenerationParams(temperature=0.0, max_new_tokens=200, seed=0, json_schema=CONTRACT_SCHEMA)
    backend.chat(MESSAGES, params)  # once first: llama.cpp's first reply to a prompt can differ from later ones
    plain = backend.chat(MESSAGES, params)
    value = json.loads(plain.text)
    assert set(value) == {"colours"} and len(value["colours"]) <= 3
    assert all(isinstance(c, str) and 1 <= len(c) <= 30 for c in value["colours"])
    stats = StreamStats()
    assert "".join(backend.stream_chat(MESSAGES, params, threading.Event(), stats)) == plain.text
    assert stats.finish_reason == plain.finish_reason == "stop"
