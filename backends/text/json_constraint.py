"""JSON-schema constrained decoding for the transformers backend, with llguidance: a schema becomes a grammar once,
each row of a batch gets its own matcher, and a logits processor leaves every constrained row only the tokens that
keep its reply valid JSON of its schema. llguidance, numpy and torch are imported only inside functions."""

from __future__ import annotations

import functools
import json
import threading
from typing import Any

from backends.text.base import BackendError

# Fixed separators and no free whitespace: a model with weak weights cannot pad a reply with blanks until it runs
# out of tokens, and ", " / ": " are what models write anyway.
_JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class SchemaConstraint:
    """One per loaded model: the llguidance view of its tokenizer (built on first use, about half a second) and
    the grammars compiled from the schemas seen so far. Thread-safe; matchers are per row, never shared."""

    def __init__(self, tokenizer: Any, eos_ids: frozenset[int], vocab_size: int) -> None:
        self._tokenizer = tokenizer
        self.eos_ids = sorted(eos_ids)
        # The mask covers every logit: models often have more rows in their output layer than the tokenizer has
        # tokens (padded for speed); those ids have no text, so llguidance never allows them.
        self.n_vocab = max(vocab_size, len(tokenizer))
        self._lock = threading.Lock()
        self._ll_tokenizer: Any = None
        self._grammars: dict[str, str] = {}

    def grammar(self, schema: dict[str, Any]) -> str:
        """The grammar for `schema`, checked against the tokenizer: BackendError when llguidance cannot enforce it
        (an unsupported schema is an error, never a silent fallback to free text)."""
        try:
            import llguidance
        except ImportError as exc:
            raise BackendError(
                "Structured output on transformers needs llguidance (pip install -r requirements.txt)."
            ) from exc

        try:
            key = json.dumps(schema, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise BackendError(f"The output schema is not JSON: {exc}") from exc
        with self._lock:
            if key in self._grammars:
                return self._grammars[key]
        tokenizer = self._llg_tokenizer()
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(key, overrides=_JSON_OPTIONS)  # type: ignore[arg-type]
            failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, tokenizer)
        except (ValueError, TypeError) as exc:
            raise BackendError(f"transformers cannot enforce this output schema: {exc}") from exc
        if failed:
            raise BackendError(f"transformers cannot enforce this output schema: {messages[0] if messages else '?'}")
        with self._lock:
            self._grammars[key] = grammar
        return grammar

    def matcher(self, grammar: str) -> Any:
        """A fresh matcher (its own parse state) for one row."""
        import llguidance

        return llguidance.LLMatcher(self._llg_tokenizer(), grammar, log_level=0)

    def _llg_tokenizer(self) -> Any:
        with self._lock:
            if self._ll_tokenizer is None:
                self._ll_tokenizer = _make_llg_tokenizer(self._tokenizer, self.eos_ids, self.n_vocab)
            return self._ll_tokenizer


def _make_llg_tokenizer(tokenizer: Any, eos_ids: list[int], n_vocab: int) -> Any:
    import llguidance.hf

    eos: Any = eos_ids or tokenizer.eos_token_id
    try:
        return llguidance.hf.from_tokenizer(tokenizer, n_vocab=n_vocab, eos_token=eos)
    except ValueError as exc:  # "Only fast tokenizers are supported": a few exotic models have no Rust tokenizer
        raise BackendError(
            f"Structured output needs a fast (Rust) tokenizer, and this model's is {type(tokenizer).__name__}: {exc}"
        ) from exc


@functools.cache
def row_constraint() -> type:
    """Built on first use so that importing this module does not import transformers."""
    import numpy as np
    import torch
    from transformers import LogitsProcessor

    class RowConstraint(LogitsProcessor):
        """Per row of a batch: its matcher (None: free text) takes the token the row chose last, then every token
        that would break the row's JSON gets -inf, before the row's own sampler picks. A row that ended (its end of
        turn, its length, released) is left alone: generate() only pads it from then on."""

        def __init__(self, rows: list[Any], matchers: list[Any], constraint: SchemaConstraint) -> None:
            self.rows, self.matchers = rows, matchers
            self.started = False
            self.words = -(-constraint.n_vocab // 32)
            self.mask = np.zeros((len(rows), self.words), dtype=np.int32)
            self.end_only = np.zeros(self.words, dtype=np.int32)  # only the end-of-turn tokens
            for eos in constraint.eos_ids:
                self.end_only.view(np.uint32)[eos // 32] |= np.uint32(1 << (eos % 32))

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            last = input_ids[:, -1].tolist() if self.started else None
            self.started = True
            live = []
            for i, (row, matcher) in enumerate(zip(self.rows, self.matchers)):
                if matcher is None or row.finish is not None or row.released.is_set():
                    continue
                if last is not None:
                    matcher.consume_token(last[i])
                if matcher.is_error():  # cannot happen with the mask applied; end the row rather than write junk
                    self.mask[i] = self.end_only
                else:
                    matcher.unsafe_compute_mask_ptr(self.mask[i].ctypes.data, self.words * 4)
                live.append(i)
            if not live:
                return scores
            banned = np.unpackbits(self.mask[live].view(np.uint8), axis=1, bitorder="little") == 0
            width = min(banned.shape[1], scores.shape[1])
            if scores.device.type == "cpu" and scores.dtype == torch.float32 and scores.is_contiguous():
                # In place through numpy: one thread, no torch op per row (each costs more than the masking).
                view = scores.numpy()
                for k, i in enumerate(live):
                    view[i, :width][banned[k, :width]] = -np.inf
                    view[i, width:] = -np.inf
            else:
                bias = np.full((len(live), scores.shape[1]), -np.inf, dtype=np.float32)
                bias[:, :width] = np.where(banned[:, :width], -np.inf, 0.0)
                index = torch.tensor(live, device=scores.device)
                scores[index] += torch.from_numpy(bias).to(device=scores.device, dtype=scores.dtype)
            return scores

    return RowConstraint
