"""Batched generation in the transformers backend (a tiny random Llama built from a config, SmolLM2's
real tokenizer): requests that wait while the model is busy share the next generate() call, and each
still gets exactly the reply it would get alone, its own length, stop strings, cancel and seed. Then the
condenser's map step against it: its parallel requests really are batched."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from backends.text.base import GenerationParams, Message, StreamStats
from config import Settings
from core.condenser.service import CondenseOptions, CondenseService
from core.condenser.store import SummaryStore
from core.models.text import ModelManager
from tests.support.paths import CORPUS

GREEDY = GenerationParams(temperature=0.0, max_new_tokens=12)
PROMPTS: list[list[Message]] = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Write a short poem about the sea and the wind over the harbour."}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name three rivers."}],
    [
        {
            "role": "user",
            "content": "Explain, step by step and with care, how a lock keeper fills a lock "
            "chamber before a boat may pass upstream on a busy canal.",
        }
    ],
]


def solo(backend: Any, messages: list[Message], params: GenerationParams) -> tuple[str, StreamStats]:
    stats = StreamStats()
    return "".join(backend.stream_chat(messages, params, threading.Event(), stats)), stats


class Request(threading.Thread):
    """One request on its own thread, as each user's (or each condenser chunk's) would be."""

    def __init__(
        self,
        backend: Any,
        messages: list[Message],
        params: GenerationParams,
        cancel_after: int | None = None,
        close_after: int | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.backend, self.messages, self.params, self.cancel_after = backend, messages, params, cancel_after
        self.close_after = close_after
        self.cancel, self.stats, self.text = threading.Event(), StreamStats(), ""
        self.ended_at = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            stream = self.backend.stream_chat(self.messages, self.params, self.cancel, self.stats)
            for i, delta in enumerate(stream):
                self.text += delta
                if self.cancel_after is not None and i + 1 >= self.cancel_after:
                    self.cancel.set()
                if self.close_after is not None and i + 1 >= self.close_after:
                    stream.close()  # the reader goes away (page closed), without a cancel
                    break
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        self.ended_at = time.monotonic()


def while_busy(backend: Any, requests: list[Request]) -> list[Request]:
    """Start the requests while another request holds the model, so they all queue, then free it:
    the batch they form does not depend on thread timing."""
    blocker = Request(backend, PROMPTS[0], GenerationParams(temperature=0.0, max_new_tokens=100_000))
    blocker.start()
    while not blocker.text and blocker.is_alive():
        time.sleep(0.01)
    for r in requests:
        r.start()
    # Each encodes its prompt and queues (milliseconds when idle; a fixed 0.5 s sleep was too short under load).
    deadline = time.monotonic() + 60
    while backend.queued() < len(requests) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.queued() == len(requests), "the requests did not all queue behind the blocker"
    blocker.cancel.set()
    for r in [blocker, *requests]:
        r.join(120)
        assert not r.is_alive()
    assert all(r.error is None for r in requests), [r.error for r in requests]
    return requests


def new_batches(backend: Any, before: dict[int, int]) -> dict[int, int]:
    after = backend.batch_counts()
    return {n: after[n] - before.get(n, 0) for n in after if after[n] - before.get(n, 0)}


def test_queued_requests_share_one_generate_and_each_gets_its_own_reply(tiny_transformers_backend):
    backend = tiny_transformers_backend
    alone = [solo(backend, p, GREEDY) for p in PROMPTS]
    before = backend.batch_counts()
    batched = while_busy(backend, [Request(backend, p, GREEDY) for p in PROMPTS])
    assert new_batches(backend, before) == {1: 1, 4: 1}  # the blocker, then all four together
    for r, (text, stats) in zip(batched, alone):
        assert text.strip()
        assert r.text == text  # left padding changes nothing a row computes
        assert (r.stats.finish_reason, r.stats.prompt_tokens, r.stats.completion_tokens) == (
            stats.finish_reason,
            stats.prompt_tokens,
            stats.completion_tokens,
        )


def test_each_row_keeps_its_own_length_and_the_short_one_returns_first(tiny_transformers_backend):
    backend = tiny_transformers_backend
    short, long = (
        GenerationParams(temperature=0.0, max_new_tokens=3),
        GenerationParams(temperature=0.0, max_new_tokens=60),
    )
    long_alone, _ = solo(backend, PROMPTS[1], long)
    before = backend.batch_counts()
    a, b = while_busy(backend, [Request(backend, PROMPTS[1], short), Request(backend, PROMPTS[1], long)])
    assert new_batches(backend, before) == {1: 1, 2: 1}
    assert (a.stats.finish_reason, a.stats.completion_tokens) == ("length", 3)
    assert (b.stats.finish_reason, b.stats.completion_tokens) == ("length", 60)
    assert b.text == long_alone and b.text.startswith(a.text)
    assert a.ended_at < b.ended_at  # released as soon as its own row ended, not with the batch


@pytest.mark.parametrize("how", ["cancel_after", "close_after"])  # a stop, or a reader that goes away
def test_a_row_that_quits_leaves_the_others_untouched(tiny_transformers_backend, how):
    backend = tiny_transformers_backend
    params = GenerationParams(temperature=0.0, max_new_tokens=40)
    alone = [solo(backend, p, params)[0] for p in PROMPTS[1:3]]
    before = backend.batch_counts()
    quitter = Request(backend, PROMPTS[3], GenerationParams(temperature=0.0, max_new_tokens=2000), **{how: 2})
    rows = while_busy(backend, [quitter, *(Request(backend, p, params) for p in PROMPTS[1:3])])
    assert new_batches(backend, before) == {1: 1, 3: 1}
    assert quitter.stats.finish_reason == "cancelled" and quitter.stats.completion_tokens < 2000
    # It stops within the step in progress once its consumer is gone (one token from that step, and one the streamer
    # may add while the consumer is leaving). How many it made before that depends on when the consumer thread runs
    # (a token takes about a millisecond here), so that count is not the measure.
    assert quitter.stats.after_stop <= 2, quitter.stats
    assert [r.text for r in rows[1:]] == alone
    assert all(r.stats.finish_reason == "length" for r in rows[1:])


def test_a_stop_string_ends_only_its_own_row(tiny_transformers_backend):
    backend = tiny_transformers_backend
    free = GenerationParams(temperature=0.0, max_new_tokens=30)
    full, _ = solo(backend, PROMPTS[1], free)
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    assert stop.strip()
    stopped = GenerationParams(temperature=0.0, max_new_tokens=30, stop=(stop,))
    a, b = while_busy(backend, [Request(backend, PROMPTS[1], stopped), Request(backend, PROMPTS[1], free)])
    assert a.text == full[: full.index(stop)] and a.stats.finish_reason == "stop"
    assert b.text == full and b.stats.finish_reason == "length"


def test_a_seed_repeats_exactly_whatever_it_is_batched_with(tiny_transformers_backend):
    """Each row samples from its own seeded generator, so batching (which requests share a call, and
    where they sit in it) never changes a seeded reply, and rows sample with their own settings."""
    backend = tiny_transformers_backend
    seeded = GenerationParams(temperature=0.9, max_new_tokens=15, seed=1234)
    other = GenerationParams(temperature=1.3, top_p=0.8, max_new_tokens=15, seed=99)
    alone, _ = solo(backend, PROMPTS[2], seeded)
    other_alone, _ = solo(backend, PROMPTS[1], other)
    greedy_alone, _ = solo(backend, PROMPTS[3], GREEDY)
    before = backend.batch_counts()
    rows = while_busy(
        backend,
        [
            Request(backend, PROMPTS[1], other),
            Request(backend, PROMPTS[2], seeded),
            Request(backend, PROMPTS[3], GREEDY),
            Request(backend, PROMPTS[2], seeded),
        ],
    )
    assert new_batches(backend, before) == {1: 1, 4: 1}
    assert rows[1].text == rows[3].text == alone
    assert rows[0].text == other_alone and rows[2].text == greedy_alone
    unseeded = GenerationParams(temperature=1.0, max_new_tokens=15)
    assert len({solo(backend, PROMPTS[2], unseeded)[0] for _ in range(3)}) > 1  # no seed: fresh draws


def test_a_request_cancelled_while_queued_never_runs(tiny_transformers_backend):
    backend = tiny_transformers_backend
    before = backend.batch_counts()
    queued = Request(backend, PROMPTS[1], GREEDY)
    blocker = Request(backend, PROMPTS[0], GenerationParams(temperature=0.0, max_new_tokens=100_000))
    blocker.start()
    while not blocker.text:
        time.sleep(0.01)
    queued.start()
    time.sleep(0.3)
    queued.cancel.set()
    queued.join(30)
    assert not queued.is_alive() and blocker.is_alive()  # it left the queue; the model is still busy
    assert queued.stats.finish_reason == "cancelled" and queued.text == ""
    blocker.cancel.set()
    blocker.join(30)
    assert new_batches(backend, before) == {1: 1}  # only the blocker's generate() ran


def test_a_temperature_too_small_to_sample_decodes_greedily_beside_normal_rows(tiny_transformers_backend):
    backend = tiny_transformers_backend
    greedy_alone, _ = solo(backend, PROMPTS[1], GenerationParams(temperature=0.0, max_new_tokens=15))
    seeded = GenerationParams(temperature=0.9, max_new_tokens=15, seed=5)
    seeded_alone, _ = solo(backend, PROMPTS[2], seeded)
    tiny, normal = while_busy(
        backend,
        [
            Request(backend, PROMPTS[1], GenerationParams(temperature=1e-39, max_new_tokens=15)),
            Request(backend, PROMPTS[2], seeded),
        ],
    )
    assert tiny.text == greedy_alone  # the limit of a vanishing temperature, not a failed batch
    assert normal.text == seeded_alone and normal.stats.finish_reason == "length"


def test_a_model_failing_inside_generate_fails_its_batch_clearly_and_frees_the_model(
    tiny_hf_model_dir: Path, tmp_path: Path, settings_factory
):
    """A model folder whose embedding table is smaller than its tokenizer (a real mismatch a user can
    make): generate() itself fails, on the worker thread, for every row of the batch."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from backends import create_text_backend
    from backends.text.base import BackendError

    folder = tmp_path / "mismatched"
    tokenizer = AutoTokenizer.from_pretrained(tiny_hf_model_dir)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    backend = create_text_backend(f"hf:{folder}", settings_factory())
    backend.load()
    failing = [Request(backend, p, GREEDY) for p in PROMPTS[:3]]
    for r in failing:
        r.start()
    for r in failing:
        r.join(60)
        assert not r.is_alive()
    assert all(
        isinstance(r.error, BackendError) and "Generation failed in transformers" in str(r.error) for r in failing
    ), [r.error for r in failing]
    assert max(backend.batch_counts()) > 1  # they failed together, as one batch
    with pytest.raises(BackendError):  # the model is free again: the next request runs (and fails) at once
        solo(backend, PROMPTS[0], GREEDY)
    assert not [t for t in threading.enumerate() if t.name.startswith("transformers-generate") and t.is_alive()]


def test_condenser_map_step_is_batched_and_still_covers_everything(tiny_hf_model_dir: Path, tmp_path: Path):
    settings = Settings(text_models=(f"hf:{tiny_hf_model_dir}",), data_dir=tmp_path, n_ctx=512)
    models = ModelManager(settings)
    service = CondenseService(settings, models, SummaryStore(settings.db_path))
    text = (CORPUS / "good-french-moliere-utf8.txt").read_text(encoding="utf-8")[:6000]
    backend = models.get(None)
    backend.load()
    before = backend.batch_counts()
    updates = list(service.condense("ann", [], text, CondenseOptions(length="short", map_max_new_tokens=16)))
    result = updates[-1].result
    assert result is not None and updates[-1].state == "complete"
    report = result.documents[0]
    assert report.chunks >= 5 and report.complete and len(result.chunks) == report.chunks
    batches = new_batches(backend, before)
    assert max(batches) == 4  # the map step's requests shared generate() calls, four at a time
    assert sum(n * calls for n, calls in batches.items()) >= report.chunks
