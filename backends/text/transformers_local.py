"""transformers text backend: a hub id, a local model folder, or a .gguf file (de-quantised once and
cached). Owns loading, device/dtype choice, the model's own chat template and each request's stream; the
batching of requests into generate() calls is backends/text/batching.py's. torch and transformers are
imported only inside methods.
"""

from __future__ import annotations

import math
import os
import queue
import shutil
import threading
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends.engine_errors import first_line, is_out_of_memory
from backends.text.base import (
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
    accepts_system_role,
    fold_system_into_user,
)
from backends.text.batching import (
    END,
    WORKER_THREAD_PREFIX,  # noqa: F401  (re-exported for the tests)
    BatchScheduler,
    Row,
)
from backends.text.json_constraint import SchemaConstraint

if TYPE_CHECKING:
    from config import Settings


class TransformersBackend:
    """One causal LM served by transformers. One generate() runs at a time; requests that arrive
    meanwhile are batched into the next one by a BatchScheduler (max_concurrency = the batch size).
    Every request keeps its own row, cancel event, stop event and text queue; nothing per-request
    lives on self."""

    def __init__(self, model_ref: str, settings: Settings, spec: str, label: str) -> None:
        self._model_ref = model_ref
        self._settings = settings
        self.spec = spec
        self.label = label
        self._load_lock = threading.Lock()
        self._scheduler: BatchScheduler | None = None  # made in load(), with the model
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
            self._system_ok = accepts_system_role(
                lambda msgs: tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            )
            self._context_length = self._pick_context_length(model, tokenizer)
            self._eos_ids = frozenset(_as_ids(model.generation_config.eos_token_id) | _as_ids(tokenizer.eos_token_id))
            vocab = int(getattr(model.config.get_text_config(), "vocab_size", 0) or 0)
            self._scheduler = BatchScheduler(
                model,
                tokenizer,
                self._eos_ids,
                self._context_length,
                self._batch_size(model),
                SchemaConstraint(tokenizer, self._eos_ids, vocab),
            )
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
            quantizer: Any = getattr(model, "hf_quantizer", None)
            if quantizer is not None:
                # Older loaders dequantise yet leave the quantizer attached, which blocks saving.
                quantizer.remove_quantization_config(model)
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
            raise ModelUnavailableError(
                f"transformers cannot load '{source}': {first_line(exc).rstrip('. ')}.{_tokenizer_libraries_hint()}"
            ) from exc

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
        msgs: list[Message] = [{"role": m["role"], "content": m["content"]} for m in messages]
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

    def _row(self, messages: list[Message], params: GenerationParams, cancel: threading.Event) -> Row:
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
        grammar = None
        if params.json_schema is not None:
            assert self._scheduler is not None
            grammar = self._scheduler.grammar(params.json_schema)
        return Row(ids, max_new, params, cancel, grammar)

    # ------------------------------------------------------------------ generation

    def chat(self, messages: list[Message], params: GenerationParams) -> Completion:
        stats = StreamStats()
        text = "".join(self.stream_chat(messages, params, threading.Event(), stats))
        return Completion(
            text=text,
            finish_reason=stats.finish_reason or "stop",
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.completion_tokens,
        )

    def stream_chat(
        self,
        messages: list[Message],
        params: GenerationParams,
        cancel: threading.Event,
        stats: StreamStats | None = None,
    ) -> Generator[str, None, None]:
        """Requests that wait while the model is busy are batched into the next generate() call (up
        to the batch size, whatever their sampling settings and seeds): one left-padded forward pass
        serves them all, and each request still streams, samples, stops and cancels on its own row."""
        stats = stats if stats is not None else StreamStats()
        self.load()
        row = self._row(messages, params, cancel)
        stats.prompt_tokens = len(row.prompt)
        assert self._scheduler is not None
        if not self._scheduler.schedule(row):
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
                if delta is END or cancel.is_set():
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
            row.leave()  # generate() drops this row; the last row out waits for generate() to return
            batch = row.batch
            stats.completion_tokens = len(row.tokens)
            stats.after_stop = len(row.tokens) - row.tokens_at_leave
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
                message = (
                    f"{self.label} ran out of memory generating {rows} repl{'ies' if rows > 1 else 'y'} at "
                    f"once ({first_line(error)}). The memory was freed; try again, or lower "
                    "STUDIO_BATCH_SIZE or STUDIO_N_CTX."
                )
            if parts:
                raise StreamCutError(message, partial="".join(parts)) from error
            raise BackendError(message) from error

    def batch_counts(self) -> dict[int, int]:
        """How many generate() calls served how many requests each, since load: {rows: calls}."""
        return self._scheduler.counts() if self._scheduler is not None else {}

    def queued(self) -> int:
        """Requests waiting for the model now (a metric; 0 before load)."""
        return self._scheduler.waiting() if self._scheduler is not None else 0

    def batch_size(self) -> int:
        return self._batch_size(self._model)

    def _batch_size(self, model: Any) -> int:
        if self._settings.batch_size > 0:
            return self._settings.batch_size
        return 8 if model is not None and model.device.type != "cpu" else 4


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
        self.pending = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold], False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def _first_stop(text: str, stops: tuple[str, ...]) -> int:
    found = [text.find(s) for s in stops if s and s in text]
    return min(found) if found else -1


def _tokenizer_libraries_hint() -> str:
    """SentencePiece tokenizers (T5-family, Llama-2-era repos with only a .model file) are converted on load, which
    needs sentencepiece and protobuf; without them transformers fails with an unrelated message (about tiktoken)."""
    import importlib.util

    missing = []
    for module, package in (("sentencepiece", "sentencepiece"), ("google.protobuf", "protobuf")):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a missing parent package, or a module blocked in sys.modules
            found = False
        if not found:
            missing.append(package)
    if not missing:
        return ""
    return (
        f" If its tokenizer is a SentencePiece model (a .model file), it needs {' and '.join(missing)}: "
        "pip install -r requirements.txt."
    )


def _as_ids(value: Any) -> set[int]:
    if value is None:
        return set()
    return {int(v) for v in value} if isinstance(value, (list, tuple, set)) else {int(value)}
