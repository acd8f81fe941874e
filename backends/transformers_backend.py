"""transformers text backend: a hub id, a local model folder, or a .gguf file (de-quantised once and
cached). Owns device/dtype choice, the model's own chat template, and a generate() worker thread per
streamed request that always ends. torch and transformers are imported only inside methods.
"""
from __future__ import annotations

import functools
import itertools
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from backends.base import (
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
    """One causal LM served by transformers. generate() on one model is serialised behind a lock
    (max_concurrency=1); every call gets its own streamer, stop event and stopping criteria."""

    def __init__(self, model_ref: str, settings: "Settings", spec: str, label: str) -> None:
        self._model_ref = model_ref
        self._settings = settings
        self.spec = spec
        self.label = label
        self._load_lock = threading.Lock()
        self._gen_lock = threading.Lock()
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
                f"transformers could not read {gguf.name}: {_first_line(exc)}. Not every GGUF "
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
                    f"{source} is not a complete transformers model folder: {_first_line(exc)}"
                ) from exc
            offline = " (offline mode: HF_HUB_OFFLINE is set)" if hub_constants.HF_HUB_OFFLINE else ""
            raise ModelUnavailableError(
                f"Could not load '{source}' from the Hugging Face hub: it is not in the local cache "
                f"({hub_constants.HF_HUB_CACHE}) and the hub could not be reached{offline}. Download it "
                f"on a machine with internet access (`hf download {source}`) and copy the cache here or "
                "set HF_HOME to a folder that holds it, or use a local model folder (hf:/path/to/model)."
            ) from exc
        except (ValueError, KeyError, ImportError) as exc:
            raise ModelUnavailableError(f"transformers cannot load '{source}': {_first_line(exc)}") from exc

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
            max_concurrency=1,
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

    def _generate_kwargs(self, messages: list[Message], params: GenerationParams) -> tuple[dict[str, Any], int, int]:
        enc = self._encode(messages)
        prompt_len = int(enc["input_ids"].shape[1])
        room = self._context_length - prompt_len
        if room <= 0:
            raise ContextOverflowError(
                f"The conversation is {prompt_len} tokens but {self.label} holds {self._context_length}; "
                "shorten it or start a new chat."
            )
        max_new = min(params.max_new_tokens, room) if params.max_new_tokens > 0 else room
        device = self._model.device
        kwargs: dict[str, Any] = {
            "input_ids": enc["input_ids"].to(device),
            "attention_mask": enc["attention_mask"].to(device),
            "max_new_tokens": max_new,
            "pad_token_id": self._tokenizer.pad_token_id
            if self._tokenizer.pad_token_id is not None
            else next(iter(self._eos_ids), None),
        }
        if params.greedy:
            # None clears sampling values a model's generation_config may carry.
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=None)
        return kwargs, prompt_len, max_new

    def _finish(self, sequences: Any, prompt_len: int, max_new: int) -> tuple[int, str]:
        """(completion tokens without a trailing end-of-turn token, 'stop' or 'length')."""
        new = sequences[0, prompt_len:].tolist() if sequences is not None else []
        if new and new[-1] in self._eos_ids:
            return len(new) - 1, "stop"
        return len(new), "length" if len(new) >= max_new else "stop"

    # ------------------------------------------------------------------ generation

    def chat(self, messages: list[Message], params: GenerationParams) -> Completion:
        self.load()
        import torch

        kwargs, prompt_len, max_new = self._generate_kwargs(messages, params)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self._tokenizer)
        with self._gen_lock:
            if params.seed is not None:
                torch.manual_seed(params.seed)
            try:
                with torch.inference_mode():
                    sequences = self._model.generate(**kwargs)
            except Exception as exc:
                raise BackendError(f"Generation failed in transformers: {_first_line(exc)}") from exc
        n_new, finish = self._finish(sequences, prompt_len, max_new)
        text = self._tokenizer.decode(sequences[0, prompt_len:], skip_special_tokens=True)
        cut = _first_stop(text, params.stop)
        if cut >= 0:
            text, finish = text[:cut], "stop"
        return Completion(text=text, finish_reason=finish, prompt_tokens=prompt_len, completion_tokens=n_new)

    def stream_chat(
        self,
        messages: list[Message],
        params: GenerationParams,
        cancel: threading.Event,
        stats: StreamStats | None = None,
    ) -> Iterator[str]:
        stats = stats if stats is not None else StreamStats()
        self.load()
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        kwargs, prompt_len, max_new = self._generate_kwargs(messages, params)
        stats.prompt_tokens = prompt_len
        # Per call, never on self: the streamer, the event that ends this generate(), its criteria.
        done = threading.Event()
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs.update(
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_event_stopping_criteria()(cancel, done)]),
        )
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                with torch.inference_mode():
                    outcome["sequences"] = self._model.generate(**kwargs)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                outcome["error"] = exc
                streamer.text_queue.put(streamer.stop_signal)  # unblock the consumer

        worker = threading.Thread(target=work, name=f"{WORKER_THREAD_PREFIX}-{next(_worker_ids)}", daemon=True)
        trimmer = _StopTrimmer(params.stop)
        parts: list[str] = []
        hit_stop = abandoned = False
        if not _acquire(self._gen_lock, cancel):
            stats.finish_reason = "cancelled"
            return
        try:
            if params.seed is not None:
                torch.manual_seed(params.seed)  # inside the lock: no other generate() draws meanwhile
            worker.start()
            for delta in streamer:
                if cancel.is_set():
                    break
                out, hit_stop = trimmer.feed(delta)
                if out:
                    parts.append(out)
                    yield out
                if hit_stop:
                    break
            else:
                tail = trimmer.flush()
                if tail and not cancel.is_set():
                    parts.append(tail)
                    yield tail
        except GeneratorExit:
            abandoned = True
            raise
        finally:
            done.set()  # generate() returns after the token in progress
            if worker.ident is not None:
                worker.join()
            self._gen_lock.release()
            n_new, finish = self._finish(outcome.get("sequences"), prompt_len, max_new)
            stats.completion_tokens = n_new
            if cancel.is_set() or abandoned:
                stats.finish_reason = "cancelled"
            elif hit_stop:
                stats.finish_reason = "stop"
            else:
                stats.finish_reason = finish  # type: ignore[assignment]
        error = outcome.get("error")
        if error is not None:
            stats.finish_reason = None
            message = f"Generation failed in transformers: {_first_line(error)}"
            if parts:
                raise StreamCutError(message, partial="".join(parts)) from error
            raise BackendError(message) from error


# ---------------------------------------------------------------------- helpers


@functools.cache
def _event_stopping_criteria() -> type:
    """Built on first use so that importing this module does not import transformers."""
    import torch
    from transformers import StoppingCriteria

    class EventStoppingCriteria(StoppingCriteria):
        """Ends generate() once any of its events is set (cancel, consumer gone, stop string)."""

        def __init__(self, *events: threading.Event) -> None:
            self.events = events

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            stop = any(e.is_set() for e in self.events)
            return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

    return EventStoppingCriteria


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


def _acquire(lock: threading.Lock, cancel: threading.Event) -> bool:
    """Wait for the generation lock, giving up if the request is cancelled while queued."""
    while not lock.acquire(timeout=0.05):
        if cancel.is_set():
            return False
    return True


def _as_ids(value: Any) -> set[int]:
    if value is None:
        return set()
    return {int(v) for v in value} if isinstance(value, (list, tuple, set)) else {int(value)}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]

