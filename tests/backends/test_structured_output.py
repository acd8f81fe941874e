"""Structured output on every engine: with GenerationParams.json_schema the reply is JSON of the schema. llama.cpp
(the embedded GGUF, a grammar), transformers (a tiny random Llama: random weights still write valid JSON, which is
what a constraint guarantees; batched rows each with their own schema or none), and OpenAI-compatible servers (the
fake, which honours, refuses or ignores response_format, and the real llama_cpp.server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends.text.base import BackendError, GenerationParams, Message, StreamStats
from backends.text.openai_compat import OpenAIBackend
from config import Settings
from tests.backends.test_transformers_batching import Request, new_batches, while_busy
from tests.support.openai_servers import LlamaCppServer, fake_openai_server, llama_cpp_server

OUTLINE = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 60},
        "points": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 80},
            "minItems": 1,
            "maxItems": 3,
        },
    },
    "required": ["title", "points"],
    "additionalProperties": False,
}
REWRITE = {
    "type": "object",
    "properties": {"rewrite": {"type": "string", "minLength": 1, "maxLength": 120}},
    "required": ["rewrite"],
    "additionalProperties": False,
}
MESSAGES: list[Message] = [
    {"role": "system", "content": "Answer in JSON."},
    {"role": "user", "content": "Outline a short note about rivers: a title and up to three points."},
]


def problems(schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    """What in `value` breaks `schema` (the subset the app uses: objects, arrays, strings, their limits)."""
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where} is not an object"]
        props = schema.get("properties", {})
        found = [f"{where}.{k} is missing" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            found += [f"{where}.{k} is not allowed" for k in value if k not in props]
        for k, sub in props.items():
            if k in value:
                found += problems(sub, value[k], f"{where}.{k}")
        return found
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where} is not an array"]
        found = []
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", 10**9):
            found.append(f"{where} has {len(value)} items")
        for i, item in enumerate(value):
            found += problems(schema.get("items", {}), item, f"{where}[{i}]")
        return found
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where} is not a string"]
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", 10**9):
            return [f"{where} has {len(value)} characters"]
        return []
    raise AssertionError(f"the checker does not know {kind!r}")


def assert_follows(schema: dict[str, Any], text: str) -> Any:
    value = json.loads(text)  # raises on anything that is not JSON
    assert problems(schema, value) == [], text
    return value


def streamed(backend: Any, params: GenerationParams, messages: list[Message] = MESSAGES) -> tuple[str, StreamStats]:
    stats = StreamStats()
    return "".join(backend.stream_chat(messages, params, threading.Event(), stats)), stats


# ---------------------------------------------------------------------- llama.cpp (grammar)


def test_llamacpp_reply_follows_the_schema_streamed_or_not(llamacpp_backend):
    params = GenerationParams(temperature=0.0, max_new_tokens=300, json_schema=OUTLINE)
    # Once first: a prompt llama.cpp has just evaluated is reused from its cache but for the last token, which moves
    # the logits in the last bits, so the very first reply to a prompt can differ from every later one.
    llamacpp_backend.chat(MESSAGES, params)
    reply = llamacpp_backend.chat(MESSAGES, params)
    assert reply.finish_reason == "stop"
    assert_follows(OUTLINE, reply.text)
    text, stats = streamed(llamacpp_backend, params)
    assert text == reply.text and stats.finish_reason == "stop"


# ---------------------------------------------------------------------- transformers (llguidance)


def test_transformers_random_weights_write_valid_json_only_with_the_schema(tiny_transformers_backend):
    backend = tiny_transformers_backend
    free = backend.chat(MESSAGES, GenerationParams(temperature=0.0, max_new_tokens=40))
    with pytest.raises(ValueError):
        json.loads(free.text)  # random weights: without the constraint the reply is noise
    greedy = GenerationParams(temperature=0.0, max_new_tokens=400, json_schema=OUTLINE)
    reply = backend.chat(MESSAGES, greedy)
    assert reply.finish_reason == "stop"  # the JSON closed and the model was made to end its turn
    assert_follows(OUTLINE, reply.text)
    text, stats = streamed(backend, greedy)
    assert text == reply.text and stats.completion_tokens == reply.completion_tokens
    for seed in (1, 2, 3):  # sampling picks only among the allowed tokens too
        sampled = GenerationParams(temperature=1.0, top_p=0.95, seed=seed, max_new_tokens=400, json_schema=OUTLINE)
        first = backend.chat(MESSAGES, sampled)
        assert first.finish_reason == "stop"
        assert_follows(OUTLINE, first.text)
        assert backend.chat(MESSAGES, sampled).text == first.text  # the row's seed still decides


def test_transformers_batched_rows_each_follow_their_own_schema(tiny_transformers_backend):
    backend = tiny_transformers_backend
    params = [
        GenerationParams(temperature=0.0, max_new_tokens=300, json_schema=OUTLINE),
        GenerationParams(temperature=0.0, max_new_tokens=300, json_schema=REWRITE),
        GenerationParams(temperature=0.0, max_new_tokens=30),  # free text beside them
        GenerationParams(temperature=0.8, seed=7, max_new_tokens=300, json_schema=OUTLINE),
    ]
    alone = [backend.chat(MESSAGES, p).text for p in params]
    before = backend.batch_counts()
    rows = while_busy(backend, [Request(backend, MESSAGES, p) for p in params])
    assert new_batches(backend, before) == {1: 1, 4: 1}  # the blocker, then all four in one generate()
    assert [r.text for r in rows] == alone  # a row's matcher and mask touch no other row
    assert_follows(OUTLINE, rows[0].text)
    assert_follows(REWRITE, rows[1].text)
    assert_follows(OUTLINE, rows[3].text)
    with pytest.raises(ValueError):
        json.loads(rows[2].text)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
        {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 1},
        {"type": "string", "pattern": "(?<=a)b"},
    ],
)
def test_transformers_refuses_a_schema_it_cannot_enforce(tiny_transformers_backend, schema):
    with pytest.raises(BackendError, match="cannot enforce this output schema"):
        tiny_transformers_backend.chat(MESSAGES, GenerationParams(temperature=0.0, json_schema=schema))
    # the model is not left in a bad state
    assert_follows(REWRITE, tiny_transformers_backend.chat(MESSAGES, GenerationParams(0.0, json_schema=REWRITE)).text)


def test_a_tokenizer_without_a_rust_backend_is_refused_clearly(tmp_path):
    """llguidance reads fast tokenizers; the few models whose tokenizer is Python-only get a clear error for a
    schema (and free text still works for them)."""
    from transformers import GPTSw3Tokenizer

    from backends.text.json_constraint import SchemaConstraint
    from tests.support.tiny_models import train_tiny_sentencepiece

    tokenizer = GPTSw3Tokenizer(vocab_file=str(train_tiny_sentencepiece(tmp_path / "sp")), name_or_path="gpt-sw3")
    constraint = SchemaConstraint(tokenizer, frozenset({tokenizer.eos_token_id}), len(tokenizer))
    with pytest.raises(BackendError, match="fast .Rust. tokenizer, and this model's is GPTSw3Tokenizer"):
        constraint.grammar(REWRITE)


# ---------------------------------------------------------------------- OpenAI-compatible servers


def openai_backend(base_url: str, model: str = "fake-model") -> OpenAIBackend:
    settings = Settings(openai_base_url=base_url, openai_api_key=None, request_timeout=60.0, max_retries=2)
    return OpenAIBackend(model=model, settings=settings, spec=f"openai:{model}", label=model)


def ask(backend: OpenAIBackend, stream: bool, schema: dict[str, Any] | None = OUTLINE) -> str:
    params = GenerationParams(temperature=0.0, max_new_tokens=200, json_schema=schema)
    return streamed(backend, params)[0] if stream else backend.chat(MESSAGES, params).text


def formats_sent(server: Any) -> list[Any]:
    return [(r.body or {}).get("response_format") for r in server.chat_requests]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_sends_the_schema_as_response_format(stream):
    with fake_openai_server() as server:
        backend = openai_backend(server.base_url)
        assert_follows(OUTLINE, ask(backend, stream))
        assert formats_sent(server) == [
            {"type": "json_schema", "json_schema": {"name": "reply", "schema": OUTLINE, "strict": True}}
        ]
        ask(backend, stream, schema=None)
        assert formats_sent(server)[-1] is None  # free text asks for nothing


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("status", [400, 422, 500])  # 500: what llama_cpp.server answers to a type it lacks
def test_openai_falls_back_to_json_object_once_and_remembers(stream, status):
    with fake_openai_server(response_formats=("json_object",), response_format_refusal=status) as server:
        backend = openai_backend(server.base_url)
        assert_follows(OUTLINE, ask(backend, stream))  # the fake enforces the schema sent beside json_object
        assert [f["type"] for f in formats_sent(server)] == ["json_schema", "json_object"]  # no retries of a 500
        assert formats_sent(server)[1]["schema"] == OUTLINE
        assert_follows(OUTLINE, ask(backend, stream))
        assert [f["type"] for f in formats_sent(server)] == ["json_schema", "json_object", "json_object"]
        assert backend.output_format == "json_object+schema"


@pytest.mark.parametrize("stream", [False, True])
def test_openai_server_without_any_json_mode_gets_free_text(stream):
    with fake_openai_server(response_formats=(), response_format_refusal=422) as server:
        backend = openai_backend(server.base_url)
        text = ask(backend, stream)
        assert text and not text.lstrip().startswith("{")  # the caller still gets the reply, as text
        assert formats_sent(server) == [
            {"type": "json_schema", "json_schema": {"name": "reply", "schema": OUTLINE, "strict": True}},
            {"type": "json_object", "schema": OUTLINE},
            {"type": "json_object"},
            None,
        ]
        assert ask(backend, stream) == text
        assert formats_sent(server)[4:] == [None]  # remembered: one request from now on
        assert backend.output_format == "text"


def test_openai_server_that_ignores_response_format_gets_the_next_weaker_one():
    with fake_openai_server(response_formats=(), response_format_refusal=0) as server:
        backend = openai_backend(server.base_url)
        first = ask(backend, stream=False)
        with pytest.raises(ValueError):
            json.loads(first)  # the server ignored it: text comes back, and is handed on
        assert backend.output_format == "json_object+schema"
        ask(backend, stream=True)
        ask(backend, stream=False)
        assert [f and f["type"] for f in formats_sent(server)] == ["json_schema", "json_object", "json_object"]
        assert backend.output_format == "text"


@pytest.fixture(scope="module")
def llama_server(embedded_gguf: Path) -> Iterator[LlamaCppServer]:
    with llama_cpp_server(embedded_gguf, n_ctx=2048) as server:
        yield server


def test_llama_cpp_server_enforces_the_schema_through_our_fallback(llama_server):
    """llama_cpp.server knows no json_schema type (a 500 naming response_format) but enforces a schema given
    beside json_object: the backend lands there on the first request, and greedy streamed == plain."""
    backend = openai_backend(llama_server.base_url, llama_server.model)
    assert_follows(OUTLINE, ask(backend, stream=False))
    assert backend.output_format == "json_object+schema"
    plain = ask(backend, stream=False)  # the second reply to a prompt: see the llama.cpp test above
    assert_follows(OUTLINE, plain)
    assert ask(backend, stream=True) == plain
