"""Batched generation for the transformers backend: requests that arrive while generate() runs wait in a queue
and share the next call, one left-padded row each, with its own sampling, seed, length, stop, cancel and JSON schema
(backends/text/json_constraint.py), on a worker thread that always ends. torch and transformers are imported only
inside functions."""

from __future__ import annotations

import functools
import itertools
import queue
import threading
import time
from collections import Counter
from typing import Any

from backends.engine_errors import is_out_of_memory
from backends.text.base import BackendError, GenerationParams
from backends.text.json_constraint import SchemaConstraint, row_constraint

WORKER_THREAD_PREFIX = "transformers-generate"  # tests look for leftover workers by this name
END = object()  # a row's stream is over
GATHER_S = 0.02  # how long a starting batch waits for requests sent alongside the first
_worker_ids = itertools.count(1)


class BatchScheduler:
    """The queue in front of one loaded model. One generate() runs at a time; requests that arrive meanwhile
    are batched into the next one (at most `batch_size` rows, sharing one padded length that fits the context).
    Every request keeps its own Row; nothing per-request lives on the scheduler."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        eos_ids: frozenset[int],
        context_length: int,
        batch_size: int,
        constraint: SchemaConstraint | None = None,
    ) -> None:
        self._model = model
        self._constraint = constraint  # makes the matchers of rows with a JSON schema
        self._tokenizer = tokenizer
        self._eos_ids = eos_ids
        self._context_length = context_length
        self._limit = batch_size
        self._gen_lock = threading.Lock()  # held while a generate() runs (released by its worker)
        self._queue = threading.Condition()  # guards _pending
        self._pending: list[Row] = []  # requests waiting for the model
        self._batches: Counter[int] = Counter()  # generate() calls by rows served: a metric

    def counts(self) -> dict[int, int]:
        """How many generate() calls served how many requests each: {rows: calls}."""
        with self._queue:
            return dict(self._batches)

    def waiting(self) -> int:
        """Requests queued for the model now (not cancelled): a metric."""
        with self._queue:
            return sum(1 for r in self._pending if not r.cancel.is_set())

    def grammar(self, schema: dict[str, Any]) -> str:
        """The compiled grammar of a row's JSON schema; BackendError when it cannot be enforced."""
        if self._constraint is None:
            raise BackendError("This model was loaded without structured-output support.")
        return self._constraint.grammar(schema)

    def schedule(self, row: Row) -> bool:
        """Queue the row and wait until a batch takes it. Whoever gets the free model starts the
        next batch, oldest request first, so none starves. False if cancelled while queued."""
        with self._queue:
            self._pending.append(row)
            self._queue.notify_all()
        while True:
            if self._gen_lock.acquire(timeout=0.05):
                try:
                    with self._queue:
                        rows = self._gather() if row.batch is None else []
                except BaseException:
                    self._gen_lock.release()
                    raise
                if rows:
                    self._start(rows)  # its worker releases the lock when generate() returns
                else:
                    self._gen_lock.release()
            with self._queue:
                if row.batch is not None:
                    return True
                if row.cancel.is_set():
                    self._pending.remove(row)  # still queued: only a batch (setting .batch) takes it out
                    return False

    def _gather(self) -> list[Row]:
        """With the model and the queue held: the oldest live request plus the next queued ones that
        fit beside it. Requests a run sends together arrive within milliseconds, so a batch waits that
        long to fill (the queue is released while it waits, so the choice is made again after)."""
        limit = self._limit
        deadline = time.monotonic() + (GATHER_S if limit > 1 else 0.0)
        while True:
            live = [r for r in self._pending if not r.cancel.is_set()]
            if not live:
                return []
            rows = self._fit(live, limit)
            left = deadline - time.monotonic()
            if len(rows) >= limit or left <= 0:
                break
            self._queue.wait(left)
        batch = Batch(rows)
        self._batches[len(rows)] += 1
        for r in rows:  # chosen and removed without letting go of the queue in between
            self._pending.remove(r)
            r.batch = batch
        return rows

    def _fit(self, live: list[Row], limit: int) -> list[Row]:
        """Rows share one padded length: the longest prompt plus the longest reply must still fit the
        context (positions past it are what the model never learnt, and memory STUDIO_N_CTX caps)."""
        rows = [live[0]]
        width, new = len(live[0].prompt), live[0].max_new
        for r in live[1:]:
            if len(rows) >= limit:
                break
            w, n = max(width, len(r.prompt)), max(new, r.max_new)
            if w + n <= self._context_length:
                rows.append(r)
                width, new = w, n
        return rows

    def _start(self, rows: list[Row]) -> None:
        batch = rows[0].batch
        assert batch is not None
        try:
            import torch

            kwargs = self._batch_kwargs(rows)
        except Exception as exc:  # reaches each row's consumer, which raises it as a BackendError
            batch.fail(exc)
            self._gen_lock.release()
            return

        def work() -> None:
            try:
                with torch.inference_mode():
                    self._model.generate(**kwargs)
            except BaseException as exc:  # handed to every row's consumer, which re-raises it
                batch.error = exc
                if is_out_of_memory(exc):
                    exc.with_traceback(None)  # its frames hold the batch's tensors
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()  # the next request starts from where memory was
            finally:
                batch.close()
                self._gen_lock.release()

        batch.worker = threading.Thread(target=work, name=f"{WORKER_THREAD_PREFIX}-{next(_worker_ids)}", daemon=True)
        try:
            batch.worker.start()
        except RuntimeError as exc:  # "can't start new thread"
            batch.worker = None
            batch.fail(exc)
            self._gen_lock.release()

    def _batch_kwargs(self, rows: list[Row]) -> dict[str, Any]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        pad = self._tokenizer.pad_token_id
        if pad is None:
            pad = next(iter(self._eos_ids), 0)
        width = max(len(r.prompt) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # left padding: every row's next token goes in the same column
            ids[i, width - len(r.prompt) :] = torch.tensor(r.prompt, dtype=torch.long)
            mask[i, width - len(r.prompt) :] = 1
        device = self._model.device
        processors: list[Any] = []
        if any(r.grammar is not None for r in rows):
            assert self._constraint is not None, "a row with a grammar needs the model's SchemaConstraint"
            constraint = self._constraint
            matchers = [constraint.matcher(r.grammar) if r.grammar is not None else None for r in rows]
            # Before the sampler, which then picks each row's token from what its schema allows.
            processors.append(row_constraint()(rows, matchers, constraint))
        processors.append(_row_sampler()(rows, device))
        kwargs: dict[str, Any] = {
            "input_ids": ids.to(device),
            "attention_mask": mask.to(device),
            "max_new_tokens": max(r.max_new for r in rows),
            "pad_token_id": pad,
            "streamer": _RowStreamer(self._tokenizer, rows, self._eos_ids),
            "stopping_criteria": StoppingCriteriaList([_row_stopping_criteria()(rows)]),
            # Each row samples with its own settings and its own seeded generator, so its draws do not
            # depend on what it is batched with (in fp32 on CPU the text is identical; in half precision
            # on a GPU padded batches can move logits in the last bits, and rarely a token with them);
            # generate() then only takes the chosen token.
            "logits_processor": LogitsProcessorList(processors),
            # None clears sampling values a model's generation_config may carry.
            "do_sample": False,
            "temperature": None,
            "top_p": None,
            "top_k": None,
        }
        return kwargs


class Row:
    """One request inside a batched generate(): its prompt, limits, own cancel and stop events, and
    the queue its text arrives on."""

    def __init__(
        self,
        prompt: list[int],
        max_new: int,
        params: GenerationParams,
        cancel: threading.Event,
        grammar: str | None = None,
    ) -> None:
        self.prompt, self.max_new, self.params, self.cancel = prompt, max_new, params, cancel
        self.grammar = grammar  # llguidance grammar of params.json_schema (compiled before the row is queued)
        self.stop = threading.Event()  # the consumer is done with this row (stop string, gone)
        self.released = threading.Event()  # generate() no longer works for this row
        self.deltas: queue.SimpleQueue = queue.SimpleQueue()
        self.tokens: list[int] = []
        self.finish: str | None = None  # "stop" (end of turn) or "length", set by the streamer
        self.batch: Batch | None = None
        self.error: BaseException | None = None  # the batch's failure, if it failed while this row ran
        self.tokens_at_leave = 0  # len(tokens) when the consumer left: a metric of how promptly a row stops

    def wants_stop(self) -> bool:
        return self.finish is not None or self.stop.is_set() or self.cancel.is_set()

    def leave(self) -> None:
        """The consumer is done: generate() drops this row after the token in progress, and the last
        row out of a batch waits for generate() to return."""
        self.tokens_at_leave = len(self.tokens)
        self.stop.set()
        self.released.wait()
        batch = self.batch
        if batch is not None and batch.open_rows() == 0 and batch.worker is not None:
            batch.worker.join()


class Batch:
    """The rows of one generate() call. Rows are released only on its worker thread (or before that
    thread starts, when the batch fails to), so releasing needs no lock."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self.worker: threading.Thread | None = None
        self.error: BaseException | None = None

    def release(self, row: Row) -> None:
        if not row.released.is_set():
            row.error = self.error  # a failure after a row ended is not that row's
            row.deltas.put(END)
            row.released.set()

    def open_rows(self) -> int:
        return sum(not r.released.is_set() for r in self.rows)

    def close(self) -> None:
        for r in self.rows:
            self.release(r)

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.close()


class _RowStreamer:
    """generate()'s streamer for a batch: routes each row's new token to that row, decoding text
    incrementally (held back while a multi-byte character is incomplete)."""

    def __init__(self, tokenizer: Any, rows: list[Row], eos_ids: frozenset[int]) -> None:
        self.tokenizer, self.rows, self.eos_ids = tokenizer, rows, eos_ids
        self.prompt_seen = False
        self.cache: list[list[int]] = [[] for _ in rows]
        self.sent = [0] * len(rows)

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # the first call carries the prompts
            self.prompt_seen = True
            return
        tokens = value.reshape(-1).tolist()
        for i, (row, token) in enumerate(zip(self.rows, tokens)):
            if row.finish is not None or row.released.is_set():
                continue  # padding after the row ended
            if token in self.eos_ids:
                row.finish = "stop"
                self._flush(i, final=True)
                continue
            row.tokens.append(token)
            self.cache[i].append(token)
            self._flush(i, final=False)
            if len(row.tokens) >= row.max_new:
                row.finish = "length"
                self._flush(i, final=True)

    def _flush(self, i: int, final: bool) -> None:
        text = self.tokenizer.decode(self.cache[i], skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):
            return  # part of a character: wait for the rest of its bytes
        new = text[self.sent[i] :]
        if new:
            self.rows[i].deltas.put(new)
        if text.endswith("\n") or final:  # a finished line never changes: decode from here on
            self.cache[i], self.sent[i] = [], 0
        else:
            self.sent[i] = len(text)

    def end(self) -> None:
        for i, row in enumerate(self.rows):
            if row.finish is None and not row.released.is_set():
                self._flush(i, final=True)


# ---------------------------------------------------------------------- helpers


@functools.cache
def _row_stopping_criteria() -> type:
    """Built on first use so that importing this module does not import transformers."""
    import torch
    from transformers import StoppingCriteria

    class RowStoppingCriteria(StoppingCriteria):
        """Per row: done once it ended, reached its own length, or its consumer stopped or cancelled.
        A row found done is released: its consumer may return while the others go on."""

        def __init__(self, rows: list[Row]) -> None:
            self.rows = rows
            self.batch = rows[0].batch

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            done = [r.wants_stop() for r in self.rows]
            for r, d in zip(self.rows, done):
                if d and self.batch is not None:
                    self.batch.release(r)
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return RowStoppingCriteria


@functools.cache
def _row_sampler() -> type:
    import torch
    from transformers import LogitsProcessor

    class RowSampler(LogitsProcessor):
        """Picks each row's next token (greedy, or temperature + nucleus sampling from the row's own
        generator) and leaves only that token possible, for generate()'s greedy step to take."""

        def __init__(self, rows: list[Row], device: Any) -> None:
            self.rows = rows
            self.generators = []
            for r in rows:
                g = torch.Generator(device=device)
                if r.params.seed is not None:
                    g.manual_seed(r.params.seed)
                else:
                    g.seed()  # a fresh non-deterministic seed
                self.generators.append(g)
            self.sampled = [not r.params.greedy for r in rows]
            self.temperature = torch.tensor(
                [r.params.temperature if s else 1.0 for r, s in zip(rows, self.sampled)], device=device
            ).unsqueeze(1)
            self.top_p = torch.tensor(
                [r.params.top_p if s else 1.0 for r, s in zip(rows, self.sampled)], device=device
            ).unsqueeze(1)

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            chosen = scores.argmax(dim=-1)
            if any(self.sampled):
                logits = scores.float() / self.temperature
                ordered, order = logits.sort(dim=-1)  # ascending, as transformers' own top-p does
                tail = ordered.softmax(dim=-1).cumsum(dim=-1) <= (1 - self.top_p)
                tail[:, -1] = False  # the likeliest token always stays
                probs = logits.masked_fill(tail.scatter(1, order, tail), float("-inf")).softmax(dim=-1)
                # A temperature so small that the scaled logits overflow has greedy decoding as its limit.
                valid = torch.isfinite(probs).all(dim=-1).tolist()
                for i, sampled in enumerate(self.sampled):
                    if sampled and valid[i] and not self.rows[i].released.is_set():
                        chosen[i] = torch.multinomial(probs[i], 1, generator=self.generators[i])[0]
            out = torch.full_like(scores, float("-inf"))
            out.scatter_(1, chosen.unsqueeze(1), 0.0)
            return out

    return RowSampler
