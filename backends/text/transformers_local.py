"""transformers text backend: a hub id, a local model folder, or a .gguf file (de-quantised once and
cached). Owns device/dtype choice, the model's own chat template, and a generate() worker thread per
streamed request that always ends. torch and transformers are imported only inside methods.
"""
from __future__ import annotations

import functools
import itertools
import math
import os
import queue
import shutil
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from backends.engine_errors import first_line, is_out_of_memory
from backends.text.base import (
    fold_system_into_user,
    BackendError,
    Capabilities,
    Completion,
    ContextOverflowError,
    GenerationParams,
    Message,
    ModelUnavailableError,
    ProgressFn,
    StreamCutError,
    StreamStats,
)

if TYPE_CHECKING:
    from config import Settings

_SYSTEM_PROBE = "SYSTEM-ROLE-PROBE-7f3a"
WORKER_THREAD_PREFIX = "transformers-generate"  # tests look for leftover workers by this name
_worker_ids = itertools.count(1)


class TransformersBackend:
    """One causal LM served by transformers. One generate() runs at a time; requests that arrive
    meanwhile are batched into the next one (max_concurrency = the batch size). Every request keeps
    its own row, cancel event, stop event and text queue; nothing per-request lives on self."""

    def __init__(self, model_ref: str, settings: "Settings", spec: str, label: str) -> None:
        self._model_ref = model_ref
        self._settings = settings
        self.spec = spec
        self.label = label
        self._load_lock = threading.Lock()
        self._gen_lock = threading.Lock()  # held while a generate() runs (released by its worker)
        self._queue = threading.Condition()  # guards _pending
        self._pending: list[_Row] = []  # requests waiting for the model
        self._batches: Counter[int] = Counter()  # generate() calls by rows served: a metric
        self._model: Any = None  # set last in load(), so "not None" means everything is ready
        self._tokenizer: Any = None
        self._context_length = 0
        self._system_ok = True
        self._eos_ids: frozenset[int] = frozenset()

    # ------------------------------------------------------------------ loading

    def load(self, progress: ProgressFn | None = None) -> None:
        if self._model is not None:
            return
        with self._load_lock:
            if self._model is not None:
                return
            report = progress or (lambda fraction, text: None)
            report(0.0, f"Loading {self.label}")
            import torch

            if torch.cuda.is_available():
                dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
                # accelerate spreads a model larger than one device over all of them (and CPU).
                placement: dict[str, Any] = {"dtype": dtype, "device_map": "auto"}
            else:
                placement = {"dtype": torch.float32}

            source, hub = self._source(report)
            report(0.6, "Loading tokenizer and weights")
            tokenizer, model = self._from_pretrained(source, hub, placement)
            model.eval()
            if not getattr(tokenizer, "chat_template", None):
                raise ModelUnavailableError(
                    f"{self._model_ref} has no chat template in its tokenizer files, so it cannot be "
                    "used for chat (it is probably a base model); use its instruction-tuned variant."
                )
            self._tokenizer = tokenizer
            self._system_ok = self._accepts_system_role(tokenizer)
            self._context_length = self._pick_context_length(model, tokenizer)
            self._eos_ids = frozenset(_as_ids(model.generation_config.eos_token_id) | _as_ids(tokenizer.eos_token_id))
            self._model = model
            report(1.0, f"{self.label} ready on {model.device} ({self._context_length}-token context)")

    def _source(self, report: ProgressFn) -> tuple[Path | str, bool]:
        """Where from_pretrained reads from, and whether that is the hub."""
        ref = self._model_ref
        path = Path(ref).expanduser()
        if ref.lower().endswith(".gguf"):
            if not path.is_file():
                raise ModelUnavailableError(f"GGUF file not found: {path}")
            return self._gguf_cache(path, report), False
        if path.is_dir():
            return path, False
        if ref.startswith(("/", "./", "../", "~")):
            raise ModelUnavailableError(f"Model folder not found: {path}")
        return ref, True

    def _gguf_cache(self, gguf: Path, report: ProgressFn) -> Path:
        """De-quantising a GGUF is slow, so the converted model is saved once and reused."""
        cache = self._settings.data_dir / "cache" / "transformers-from-gguf" / f"{gguf.stem}-{gguf.stat().st_size}"
        if (cache / "config.json").is_file():
            return cache
        report(0.1, f"Converting {gguf.name} for transformers (once; cached in {cache})")
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            # Dense weights are what can be saved and then loaded with any dtype/device_map.
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
            )
            if getattr(model, "hf_quantizer", None) is not None:
                # Older loaders dequantise yet leave the quantizer attached, which blocks saving.
                model.hf_quantizer.remove_quantization_config(model)
        except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
            raise ModelUnavailableError(
                f"transformers could not read {gguf.name}: {first_line(exc)}. Not every GGUF "
                "architecture/quantisation is supported by transformers; use gguf:<file> (llama.cpp)."
            ) from exc
        # Write beside the target and rename, so a half-written folder is never taken for a cache.
        tmp = cache.with_name(f"{cache.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            del model
            try:
                os.replace(tmp, cache)
            except OSError:
                if not (cache / "config.json").is_file():  # not merely lost a race to another process
                    raise
        except OSError as exc:
            raise ModelUnavailableError(
                f"Could not write the converted model to {cache}: {exc.strerror or exc}. Free disk "
                "space or set STUDIO_DATA_DIR to a writable folder."
            ) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cache

    def _from_pretrained(self, source: Path | str, hub: bool, placement: dict[str, Any]) -> tuple[Any, Any]:
        from huggingface_hub import constants as hub_constants
        from transformers import AutoModelForCausalLM, AutoTokenizer

        def attempt(local_only: bool) -> tuple[Any, Any]:
            tok = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
            mdl = AutoModelForCausalLM.from_pretrained(source, local_files_only=local_only, **placement)
            return tok, mdl

        try:
            if not hub:
                return attempt(True)
            try:  # the local cache first: no network round-trips when the model is already there
                return attempt(True)
            except OSError:
                if hub_constants.HF_HUB_OFFLINE:
                    raise
                return attempt(False)
        except OSError as exc:
            if not hub:
                raise ModelUnavailableError(
                    f"{source} is not a complete transformers model folder: {first_line(exc)}"
                ) from exc
            offline = " (offline mode: HF_HUB_OFFLINE is set)" if hub_constants.HF_HUB_OFFLINE else ""
            raise ModelUnavailableError(
                f"Could not load '{source}' from the Hugging Face hub: it is not in the local cache "
                f"({hub_constants.HF_HUB_CACHE}) and the hub could not be reached{offline}. Download it "
                f"on a machine with internet access (`hf download {source}`) and copy the cache here or "
                "set HF_HOME to a folder that holds it, or use a local model folder (hf:/path/to/model)."
            ) from exc
        except (ValueError, KeyError, ImportError) as exc:
            raise ModelUnavailableError(f"transformers cannot load '{source}': {first_line(exc)}") from exc

    def _accepts_system_role(self, tokenizer: Any) -> bool:
        """A template may reject a system message (raise) or silently drop it; both mean no."""
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "system", "content": _SYSTEM_PROBE}, {"role": "user", "content": "hi"}],
                tokenize=False, add_generation_prompt=True,
            )
        except Exception:
            return False
        return _SYSTEM_PROBE in text

    def _pick_context_length(self, model: Any, tokenizer: Any) -> int:
        config = model.config.get_text_config()
        limit = getattr(config, "max_position_embeddings", None) or 0
        if not limit and 0 < (tokenizer.model_max_length or 0) < 10_000_000:  # unset = 1e30
            limit = tokenizer.model_max_length
        # Long contexts cost memory the machine may not have: STUDIO_N_CTX caps every local engine.
        return min(limit or 2048, self._settings.n_ctx)

    def capabilities(self) -> Capabilities:
        self.load()
        return Capabilities(
            context_length=self._context_length,
            streaming=True,
            system_prompt=self._system_ok,
            max_concurrency=self.batch_size(),
            exact_token_count=True,
        )

    # ------------------------------------------------------------------ prompts

    def _encode(self, messages: list[Message]) -> Any:
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        if not self._system_ok:
            msgs = fold_system_into_user(msgs)
        try:
            return self._tokenizer.apply_chat_template(
                msgs, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
            )
        except Exception as exc:  # jinja2 errors and the template's own raise_exception
            raise BackendError(f"{self.label}'s chat template rejected these messages: {exc}") from exc

    def count_tokens(self, messages: list[Message]) -> int:
        self.load()
        return int(self._encode(messages)["input_ids"].shape[1])

    def _row(self, messages: list[Message], params: GenerationParams, cancel: threading.Event) -> "_Row":
        # Checked here, not in generate(): a bad row would otherwise fail every request batched with it.
        if not math.isfinite(params.temperature) or params.temperature < 0:
            raise BackendError(f"The temperature must be a number of 0 or more, not {params.temperature}.")
        if not 0 < params.top_p <= 1:
            raise BackendError(f"top_p must be above 0 and at most 1, not {params.top_p}.")
        ids = self._encode(messages)["input_ids"][0].tolist()
        room = self._context_length - len(ids)
        if room <= 0:
            raise ContextOverflowError(
                f"The conversation is {len(ids)} tokens but {self.label} holds {self._context_length}; "
                "shorten it or start a new chat."
            )
        max_new = min(params.max_new_tokens, room) if params.max_new_tokens > 0 else room
        return _Row(ids, max_new, params, cancel)

    # ------------------------------------------------------------------ generation

    def chat(self, messages: list[Message], params: GenerationParams) -> Completion:
        stats = StreamStats()
        text = "".join(self.stream_chat(messages, params, threading.Event(), stats))
        return Completion(text=text, finish_reason=stats.finish_reason or "stop",
                          prompt_tokens=stats.prompt_tokens, completion_tokens=stats.completion_tokens)

    def stream_chat(
        self,
        messages: list[Message],
        params: GenerationParams,
        cancel: threading.Event,
        stats: StreamStats | None = None,
    ) -> Iterator[str]:
        """Requests that wait while the model is busy are batched into the next generate() call (up
        to the batch size, whatever their sampling settings and seeds): one left-padded forward pass
        serves them all, and each request still streams, samples, stops and cancels on its own row."""
        stats = stats if stats is not None else StreamStats()
        self.load()
        row = self._row(messages, params, cancel)
        stats.prompt_tokens = len(row.prompt)
        if not self._schedule(row):
            stats.finish_reason = "cancelled"
            return
        trimmer = _StopTrimmer(params.stop)
        parts: list[str] = []
        hit_stop = abandoned = False
        try:
            while True:
                try:
                    delta = row.deltas.get(timeout=0.05)
                except queue.Empty:
                    if cancel.is_set():
                        break
                    continue
                if delta is _END or cancel.is_set():
                    break
                out, hit_stop = trimmer.feed(delta)
                if out:
                    parts.append(out)
                    yield out
                if hit_stop:
                    break
            if not hit_stop and not cancel.is_set():
                tail = trimmer.flush()
                if tail:
                    parts.append(tail)
                    yield tail
        except GeneratorExit:
            abandoned = True
            raise
        finally:
            row.stop.set()  # generate() drops this row after the token in progress
            row.released.wait()
            batch = row.batch
            if batch is not None and batch.open_rows() == 0 and batch.worker is not None:
                batch.worker.join()  # the last row out waits for generate() to return
            stats.completion_tokens = len(row.tokens)
            if cancel.is_set() or abandoned:
                stats.finish_reason = "cancelled"
            elif hit_stop:
                stats.finish_reason = "stop"
            else:
                stats.finish_reason = row.finish or "stop"  # type: ignore[assignment]
        error = row.error
        if error is not None:
            stats.finish_reason = None
            message = f"Generation failed in transformers: {first_line(error)}"
            if is_out_of_memory(error):
                rows = len(batch.rows) if batch is not None else 1
                message = (f"{self.label} ran out of memory generating {rows} repl{'ies' if rows > 1 else 'y'} at "
                           f"once ({first_line(error)}). The memory was freed; try again, or lower "
                           "STUDIO_BATCH_SIZE or STUDIO_N_CTX.")
            if parts:
                raise StreamCutError(message, partial="".join(parts)) from error
            raise BackendError(message) from error

    def batch_counts(self) -> dict[int, int]:
        """How many generate() calls served how many requests each, since load: {rows: calls}."""
        with self._queue:
            return dict(self._batches)

    def batch_size(self) -> int:
        if self._settings.batch_size > 0:
            return self._settings.batch_size
        return 8 if self._model is not None and self._model.device.type != "cpu" else 4

    def _schedule(self, row: "_Row") -> bool:
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

    def _gather(self) -> list["_Row"]:
        """With the model and the queue held: the oldest live request plus the next queued ones that
        fit beside it. Requests a run sends together arrive within milliseconds, so a batch waits that
        long to fill (the queue is released while it waits, so the choice is made again after)."""
        limit = self.batch_size()
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
        batch = _Batch(rows)
        self._batches[len(rows)] += 1
        for r in rows:  # chosen and removed without letting go of the queue in between
            self._pending.remove(r)
            r.batch = batch
        return rows

    def _fit(self, live: list["_Row"], limit: int) -> list["_Row"]:
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

    def _start(self, rows: list["_Row"]) -> None:
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

    def _batch_kwargs(self, rows: list["_Row"]) -> dict[str, Any]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        pad = self._tokenizer.pad_token_id
        if pad is None:
            pad = next(iter(self._eos_ids), 0)
        width = max(len(r.prompt) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # left padding: every row's next token goes in the same column
            ids[i, width - len(r.prompt):] = torch.tensor(r.prompt, dtype=torch.long)
            mask[i, width - len(r.prompt):] = 1
        device = self._model.device
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
            "logits_processor": LogitsProcessorList([_row_sampler()(rows, device)]),
            # None clears sampling values a model's generation_config may carry.
            "do_sample": False, "temperature": None, "top_p": None, "top_k": None,
        }
        return kwargs


_END = object()  # a row's stream is over
GATHER_S = 0.02  # how long a starting batch waits for requests sent alongside the first


class _Row:
    """One request inside a batched generate(): its prompt, limits, own cancel and stop events, and
    the queue its text arrives on."""

    def __init__(self, prompt: list[int], max_new: int, params: GenerationParams, cancel: threading.Event) -> None:
        self.prompt, self.max_new, self.params, self.cancel = prompt, max_new, params, cancel
        self.stop = threading.Event()  # the consumer is done with this row (stop string, gone)
        self.released = threading.Event()  # generate() no longer works for this row
        self.deltas: queue.SimpleQueue = queue.SimpleQueue()
        self.tokens: list[int] = []
        self.finish: str | None = None  # "stop" (end of turn) or "length", set by the streamer
        self.batch: _Batch | None = None
        self.error: BaseException | None = None  # the batch's failure, if it failed while this row ran

    def wants_stop(self) -> bool:
        return self.finish is not None or self.stop.is_set() or self.cancel.is_set()


class _Batch:
    """The rows of one generate() call. Rows are released only on its worker thread (or before that
    thread starts, when the batch fails to), so releasing needs no lock."""

    def __init__(self, rows: list[_Row]) -> None:
        self.rows = rows
        self.worker: threading.Thread | None = None
        self.error: BaseException | None = None

    def release(self, row: _Row) -> None:
        if not row.released.is_set():
            row.error = self.error  # a failure after a row ended is not that row's
            row.deltas.put(_END)
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

    def __init__(self, tokenizer: Any, rows: list[_Row], eos_ids: frozenset[int]) -> None:
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
        new = text[self.sent[i]:]
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

        def __init__(self, rows: list[_Row]) -> None:
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

        def __init__(self, rows: list[_Row], device: Any) -> None:
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
            self.temperature = torch.tensor([r.params.temperature if s else 1.0 for r, s in zip(rows, self.sampled)],
                                            device=device).unsqueeze(1)
            self.top_p = torch.tensor([r.params.top_p if s else 1.0 for r, s in zip(rows, self.sampled)],
                                      device=device).unsqueeze(1)

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


class _StopTrimmer:
    """Cuts streamed text at the first stop string, holding back a tail that may start one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, delta: str) -> tuple[str, bool]:
        if not self.stops:
            return delta, False
        text = self.pending + delta
        cut = _first_stop(text, tuple(self.stops))
        if cut >= 0:
            self.pending = ""
            return text[:cut], True
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(text)), hold, -1):
                if text.endswith(stop[:k]):
                    hold = k
                    break
        self.pending = text[len(text) - hold:] if hold else ""
        return text[: len(text) - hold], False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def _first_stop(text: str, stops: tuple[str, ...]) -> int:
    found = [text.find(s) for s in stops if s and s in text]
    return min(found) if found else -1


def _as_ids(value: Any) -> set[int]:
    if value is None:
        return set()
    return {int(v) for v in value} if isinstance(value, (list, tuple, set)) else {int(value)}

