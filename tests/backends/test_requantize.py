"""The Q8_0 copy of a Q4_1 GGUF (backends/text/requantize.py) on the embedded model: made once and reused, the same
model to within a small perplexity change, never in the way (a damaged copy or an unknown file falls back to the
original), and off when the setting says so."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from backends import create_text_backend
from backends.text.base import GenerationParams
from backends.text.requantize import cached_copy_name, fast_weights, weights_type
from config import Settings

TEXT = (
    "Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do: once "
    "or twice she had peeped into the book her sister was reading, but it had no pictures or conversations in it, "
    "'and what is the use of a book,' thought Alice 'without pictures or conversations?' So she was considering in "
    "her own mind, as well as she could, for the hot day made her feel very sleepy and stupid, whether the pleasure "
    "of making a daisy-chain would be worth the trouble of getting up and picking the daisies."
)


def perplexity(path: Path, text: str) -> float:
    import llama_cpp

    from backends.text.llamacpp import engine_model_params

    with engine_model_params(amx=False):  # as the app opens it
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, logits_all=True, verbose=False, n_threads=1)
    try:
        tokens = llm.tokenize(text.encode())
        llm.eval(tokens)
        logits = np.array(llm.scores[: len(tokens) - 1], dtype=np.float64)
    finally:
        llm.close()
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(np.exp(-logp[np.arange(len(tokens) - 1), tokens[1:]].mean()))


@pytest.fixture(scope="module")
def q8_copy(embedded_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fast_weights(embedded_gguf, tmp_path_factory.mktemp("cache"))


def test_a_q4_1_model_gets_one_q8_0_copy_that_is_reused(embedded_gguf: Path, q8_copy: Path) -> None:
    assert weights_type(embedded_gguf) == "Q4_1"
    assert q8_copy != embedded_gguf and q8_copy.name == cached_copy_name(embedded_gguf)
    assert weights_type(q8_copy) == "Q8_0"
    made = q8_copy.stat().st_mtime_ns
    assert fast_weights(embedded_gguf, q8_copy.parent) == q8_copy
    assert q8_copy.stat().st_mtime_ns == made  # not written again
    assert [p.name for p in q8_copy.parent.iterdir()] == [q8_copy.name]  # no partial files left behind
    # A file that is already fast (the copy itself) is loaded as it is.
    assert fast_weights(q8_copy, q8_copy.parent / "again") == q8_copy


def test_the_copy_is_the_same_model_to_within_one_percent_perplexity(embedded_gguf: Path, q8_copy: Path) -> None:
    original, copy = perplexity(embedded_gguf, TEXT), perplexity(q8_copy, TEXT)
    assert abs(copy / original - 1) < 0.01, (original, copy)


def test_a_changed_source_gets_a_new_copy(embedded_gguf: Path, tmp_path: Path) -> None:
    source = tmp_path / "model.gguf"
    shutil.copyfile(embedded_gguf, source)
    first = fast_weights(source, tmp_path / "cache")
    source.touch()  # a newer file of the same name
    second = fast_weights(source, tmp_path / "cache")
    assert first != second and first.is_file() and second.is_file()


def test_an_unreadable_file_or_cache_leaves_the_original(embedded_gguf: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all" * 100)
    assert fast_weights(junk, tmp_path / "cache") == junk
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    assert fast_weights(embedded_gguf, blocked / "cache") == embedded_gguf


def test_a_damaged_cached_copy_is_discarded_and_the_original_loads(
    settings_factory: Callable[..., Settings], embedded_gguf: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    (cache / "llama").mkdir(parents=True)
    damaged = cache / "llama" / cached_copy_name(embedded_gguf)
    damaged.write_bytes(b"GGUF" + b"\0" * 4096)
    backend = create_text_backend("embedded", settings_factory(n_ctx=1024, cache_dir=cache))
    backend.load()
    assert backend.weights_path == embedded_gguf
    assert not damaged.exists()
    params = GenerationParams(temperature=0.0, max_new_tokens=8)
    assert backend.chat([{"role": "user", "content": "Say hello."}], params).text.strip()
    # The next load makes a good copy and uses it.
    again = create_text_backend("embedded", settings_factory(n_ctx=1024, cache_dir=cache))
    again.load()
    assert again.weights_path == damaged and weights_type(damaged) == "Q8_0"


def test_the_setting_turns_it_off(
    settings_factory: Callable[..., Settings], embedded_gguf: Path, tmp_path: Path
) -> None:
    backend = create_text_backend(
        "embedded", settings_factory(n_ctx=1024, cache_dir=tmp_path / "cache", gguf_requantize=False)
    )
    backend.load()
    assert backend.weights_path == embedded_gguf
    assert not (tmp_path / "cache").exists()
    assert Settings.from_env({"STUDIO_GGUF_REQUANTIZE": "off"}).gguf_requantize is False
    assert Settings.from_env({}).gguf_requantize is True
