"""SentencePiece tokenizers through hf: (T5-family and Llama-2-era models ship only a .model file): a model trained
here, a tiny Llama-2-style model whose folder has only tokenizer.model, and a T5 tokenizer from a unigram one. Loading
them converts the SentencePiece model, which needs sentencepiece and protobuf: the last test shows the load fails,
with a message naming them, when sentencepiece is missing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from backends import create_text_backend
from backends.text.base import GenerationParams, Message, StreamStats
from tests.support.paths import ROOT
from tests.support.tiny_models import build_tiny_sentencepiece_llama, build_tiny_t5_tokenizer, train_tiny_sentencepiece

MESSAGES: list[Message] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "The boat waits at the lock by the bridge."},
]


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_sentencepiece(tmp_path_factory.mktemp("spm") / "tiny")


@pytest.fixture(scope="module")
def sp_llama(tmp_path_factory: pytest.TempPathFactory, sp_model: Path) -> Path:
    folder = tmp_path_factory.mktemp("sp-llama") / "llama2-tiny"
    build_tiny_sentencepiece_llama(folder, sp_model)
    assert not (folder / "tokenizer.json").exists()  # only the SentencePiece file: loading must convert it
    return folder


@pytest.fixture(scope="module")
def sp_backend(sp_llama: Path, settings_factory):
    backend = create_text_backend(f"hf:{sp_llama}", settings_factory())
    backend.load()
    return backend


def test_hf_tokenizes_with_the_trained_sentencepiece_model(sp_backend, sp_llama, sp_model):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    tokenizer = AutoTokenizer.from_pretrained(sp_llama)  # the conversion the backend's load did
    text = "Be brief.\n\nThe boat waits at the lock by the bridge."
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == sp.encode(text)  # the very pieces trained
    turn = [{"role": "user", "content": text}]
    ids = tokenizer.apply_chat_template(turn, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert ids[0] == sp.bos_id() and sp.decode(ids) == f"[INST] {text} [/INST]"
    # No system role in a Llama-2 template: the backend folds it into the user turn, as `text` is written.
    assert not sp_backend.capabilities().system_prompt
    assert sp_backend.count_tokens(MESSAGES) == len(ids)


def test_hf_sentencepiece_model_replies_greedy_streamed_equals_plain(sp_backend):
    params = GenerationParams(temperature=0.0, max_new_tokens=6)
    plain = sp_backend.chat(MESSAGES, params)
    stats = StreamStats()
    text = "".join(sp_backend.stream_chat(MESSAGES, params, threading.Event(), stats))
    assert text == plain.text and stats.completion_tokens == plain.completion_tokens
    assert 0 < plain.completion_tokens <= 6
    assert plain.finish_reason in ("stop", "length")


def test_hf_sentencepiece_model_writes_schema_json(sp_backend):
    """llguidance reads a converted SentencePiece vocabulary too (byte-fallback pieces, more logits than tokens)."""
    schema = {
        "type": "object",
        "properties": {"words": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 2}},
        "required": ["words"],
        "additionalProperties": False,
    }
    reply = sp_backend.chat(MESSAGES, GenerationParams(temperature=0.0, max_new_tokens=200, json_schema=schema))
    assert reply.finish_reason == "stop"
    value = json.loads(reply.text)
    assert set(value) == {"words"} and len(value["words"]) <= 2
    assert all(isinstance(w, str) and len(w) <= 20 for w in value["words"])


def test_t5_tokenizer_from_a_sentencepiece_file(tmp_path):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    sp_model = train_tiny_sentencepiece(tmp_path / "unigram", vocab_size=300, model_type="unigram")  # T5's kind
    folder = tmp_path / "t5-tiny"
    build_tiny_t5_tokenizer(folder, sp_model)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert type(tokenizer).__name__ == "T5Tokenizer"
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    text = "The river runs under the stone bridge."
    ids = tokenizer(text)["input_ids"]
    assert ids == [*sp.encode(text), tokenizer.eos_token_id]  # T5 appends </s>
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_without_sentencepiece_the_load_fails_and_says_what_is_missing(sp_llama, tmp_path):
    """The same folder in a Python where `import sentencepiece` fails: the tests above really needed it."""
    script = f"""
import sys
sys.modules["sentencepiece"] = None  # as if it were not installed
from backends import create_text_backend
from backends.text.base import ModelUnavailableError
from config import Settings
try:
    create_text_backend({f"hf:{sp_llama}"!r}, Settings(data_dir={str(tmp_path)!r})).load()
except ModelUnavailableError as exc:
    print("REFUSED:", exc)
else:
    print("LOADED")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert "REFUSED:" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "sentencepiece" in done.stdout.split("REFUSED:", 1)[1]
