"""llama.cpp text backend (llama-cpp-python): any GGUF chat model, the embedded one included.

Owns loading (checksum, context size), the model's own chat template, token counting, and
serialised, cancellable streaming. llama_cpp is imported only inside methods.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends.text.base import (
    BackendError,
    Capabilities,
    Completion,
    ContextOverflowError,
    GenerationParams,
    Message,
    ModelUnavailableError,
    ProgressFn,
    StreamStats,
    accepts_system_role,
    fold_system_into_user,
)
from backends.text.embedded import verify_sha256
from backends.text.hardware import ThreadPlan, cpu_topology, plan_threads
from backends.text.requantize import discard, fast_weights

if TYPE_CHECKING:
    from config import Settings


@dataclass(frozen=True)
class EngineCounters:
    prompt_tokens: int  # prompt tokens evaluated (prompt processing)
    decode_tokens: int  # generated tokens evaluated, one at a time (decoding)
    prompt_ms: float
    decode_ms: float

    @property
    def evaluated(self) -> int:
        return self.prompt_tokens + self.decode_tokens


class LlamaCppBackend:
    """One GGUF file served by llama.cpp. A Llama object is not thread-safe, so generation is
    serialised behind a lock (max_concurrency=1); loading is lazy, once, behind another lock."""

    def __init__(
        self,
        model_path: Path | str | Callable[[], Path],
        settings: Settings,
        spec: str,
        label: str,
        expected_sha256: str | None = None,
    ) -> None:
        # A callable is resolved at load time so a missing package is reported then, not at startup.
        self._model_path = model_path
        self._settings = settings
        self.spec = spec
        self.label = label
        self._expected_sha256 = expected_sha256
        self._load_lock = threading.Lock()
        self._gen_lock = threading.Lock()
        self._llm: Any = None  # llama_cpp.Llama once loaded; set last, so "not None" means ready
        self._formatter: Any = None  # Jinja2ChatFormatter built from the GGUF's own template
        self._n_ctx = 0
        self._system_ok = True
        self.threads: ThreadPlan | None = None  # chosen at load
        self.weights_path: Path | None = None  # the file loaded: the model itself or its faster copy
        # Prompt tokens evaluated one at a time (see _stage_prompt): llama.cpp counts those as decoded.
        self._lone_prompt_tokens = 0

    # ------------------------------------------------------------------ loading

    def load(self, progress: ProgressFn | None = None) -> None:
        if self._llm is not None:
            return
        with self._load_lock:
            if self._llm is not None:
                return
            report = progress or (lambda fraction, text: None)
            path = self._resolve_path()
            if self._expected_sha256:
                report(0.05, f"Verifying {path.name}")
                verify_sha256(path, self._expected_sha256)
            threads = plan_threads(cpu_topology(), self._settings.n_threads, self._settings.n_threads_batch)
            weights = path
            if self._settings.gguf_requantize:
                report(0.2, f"Preparing {path.name} for this CPU")
                weights = fast_weights(path, self._settings.cache_dir / "llama", threads.n_threads_batch)
            report(0.4, f"Loading {path.name} with llama.cpp")
            try:
                llm = _open_llama(weights, self._settings.n_ctx, threads, self._settings.llama_amx)
            except ModelUnavailableError:
                if weights == path:
                    raise
                discard(weights, path)  # a damaged cached copy: use the original, and make a new copy next time
                weights = path
                llm = _open_llama(path, self._settings.n_ctx, threads, self._settings.llama_amx)
            trained = _trained_context(llm)
            if trained and trained < llm.n_ctx():
                # Beyond the trained context the model degrades; reopen with its own size
                # (cheap: weights are memory-mapped and already in the page cache).
                llm.close()
                llm = _open_llama(weights, trained, threads, self._settings.llama_amx)
            try:
                formatter = _own_chat_formatter(llm, path)
            except BaseException:
                llm.close()
                raise
            # Route create_chat_completion through the same formatter count_tokens uses, so the
            # count is exactly what is sent (llama-cpp-python would otherwise swap a template that
            # happens to equal a built-in one for its hand-written format).
            llm.chat_handler = formatter.to_chat_handler()
            self._formatter = formatter
            self._system_ok = accepts_system_role(lambda msgs: formatter(messages=msgs).prompt)
            self._n_ctx = llm.n_ctx()
            self.threads = threads
            self.weights_path = weights
            self._llm = llm
            report(1.0, f"{self.label} ready ({self._n_ctx}-token context)")

    def _resolve_path(self) -> Path:
        raw = self._model_path() if callable(self._model_path) else self._model_path
        path = Path(raw).expanduser()
        if not path.is_file():
            raise ModelUnavailableError(
                f"Model file not found: {path}. Check the gguf:<path> entry in STUDIO_TEXT_MODEL."
            )
        return path

    def capabilities(self) -> Capabilities:
        self.load()
        return Capabilities(
            context_length=self._n_ctx,
            streaming=True,
            system_prompt=self._system_ok,
            max_concurrency=1,
            exact_token_count=True,
        )

    def engine_counters(self) -> EngineCounters:
        """llama.cpp's own counters since load (cumulative): a prompt prefix reused from the previous request's
        KV cache shows as prompt tokens sent but not evaluated. llama.cpp counts every one-token evaluation as
        decoding; the prompt tokens this backend evaluates alone are moved back to the prompt's count."""
        self.load()
        import llama_cpp

        with self._gen_lock:
            data = llama_cpp.llama_perf_context(self._llm.ctx)
            lone = self._lone_prompt_tokens
        # llama.cpp reports a count of 0 as 1 (max(1, n)); no time spent means nothing was evaluated.
        batched = data.n_p_eval if data.t_p_eval_ms > 0 else 0
        single = data.n_eval if data.t_eval_ms > 0 else 0
        return EngineCounters(batched + lone, max(0, single - lone), data.t_p_eval_ms, data.t_eval_ms)

    # ------------------------------------------------------------------ prompts

    def _prepare(self, messages: list[Message]) -> list[Message]:
        msgs: list[Message] = [{"role": m["role"], "content": m["content"]} for m in messages]
        return msgs if self._system_ok else fold_system_into_user(msgs)

    def _prompt_tokens(self, prepared: list[Message]) -> list[int]:
        try:
            rendered = self._formatter(messages=prepared)
        except Exception as exc:  # jinja2 errors and the template's own raise_exception
            raise BackendError(f"{self.label}'s chat template rejected these messages: {exc}") from exc
        # Same tokenisation as llama-cpp-python's chat handler (the template adds special tokens).
        return self._llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)

    def count_tokens(self, messages: list[Message]) -> int:
        self.load()
        return len(self._prompt_tokens(self._prepare(messages)))

    def _budget(self, prompt_len: int, params: GenerationParams) -> int:
        room = self._n_ctx - prompt_len
        if room <= 0:
            raise ContextOverflowError(
                f"The conversation is {prompt_len} tokens but {self.label} holds {self._n_ctx}; "
                "shorten it or start a new chat."
            )
        return min(params.max_new_tokens, room) if params.max_new_tokens > 0 else room

    def _sampling(self, params: GenerationParams, max_tokens: int) -> dict[str, Any]:
        greedy = params.greedy
        return {
            # llama.cpp samples greedily at exactly 0.0.
            "temperature": 0.0 if greedy else params.temperature,
            "top_p": params.top_p,
            "max_tokens": max_tokens,
            # llama-cpp-python derives the next seed from the previous one when given None, so
            # "random" must be chosen here.
            "seed": params.seed if params.seed is not None else random.randrange(2**31),
            "stop": list(params.stop),
            "grammar": _grammar(params.json_schema) if params.json_schema is not None else None,
        }

    def _stage_prompt(self, tokens: list[int]) -> None:
        """Under the generation lock, before generate(): leave in the KV cache every prompt token but the last, so
        that llama-cpp-python's generate() always evaluates the last one alone.

        Why: llama.cpp's next-token logits after a one-token evaluation differ (in low bits, enough to change a greedy
        or seeded choice on a small model) from those after a batch that ends with the same token. generate()
        evaluates a fully cached prompt's last token alone but a new prompt in one batch, so the same request gave
        another reply the second time (regenerate with its seed, the writer's variants, stream vs plain). With the
        last token always alone, a request answers as it did just before, and a prompt whose cached prefix was
        evaluated as a prompt (the condenser's shared instructions) answers as on a fresh engine
        (tests/backends/test_llamacpp_speed.py). A reused prefix that was generated (the previous reply in a chat)
        was evaluated a token at a time and may differ in the last bits from a fresh batch: accepted, so that a
        chat's next turn does not evaluate the reply again."""
        llm = self._llm
        n = len(tokens)
        if n < 2 or getattr(llm, "_is_recurrent", False) or getattr(llm, "_is_hybrid", False):
            return  # recurrent state cannot be cut back: generate() evaluates those prompts whole every time
        head = tokens[: n - 1]
        common = int(llm.longest_token_prefix(head, llm.input_ids[: min(llm.n_tokens, n - 1)]))
        if common < n - 1:
            if common and not llm._ctx.kv_cache_seq_rm(-1, common, -1):
                common = 0
            if common == 0:
                llm.reset()
            llm.n_tokens = common
            llm.eval(head[common:])
            # llama.cpp adds up the tokens decoded between two synchronisations as one evaluation in its counters.
            import llama_cpp

            llama_cpp.llama_synchronize(llm.ctx)
            if n - 1 - common == 1:
                self._lone_prompt_tokens += 1
        exact_hit = llm.n_tokens == n and int(llm.input_ids[n - 1]) == tokens[-1]
        if not (exact_hit and not getattr(llm, "_requires_eval", True)):
            self._lone_prompt_tokens += 1  # generate() evaluates the last prompt token alone

    # ------------------------------------------------------------------ generation

    def chat(self, messages: list[Message], params: GenerationParams) -> Completion:
        self.load()
        prepared = self._prepare(messages)
        tokens = self._prompt_tokens(prepared)
        prompt_len = len(tokens)
        max_tokens = self._budget(prompt_len, params)
        with self._gen_lock:
            try:
                self._stage_prompt(tokens)
                result = self._llm.create_chat_completion(
                    messages=prepared, stream=False, **self._sampling(params, max_tokens)
                )
            except (ValueError, RuntimeError) as exc:
                raise BackendError(f"llama.cpp failed to generate: {exc}") from exc
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            prompt_tokens=usage.get("prompt_tokens", prompt_len),
            completion_tokens=usage.get("completion_tokens"),
        )

    def stream_chat(
        self,
        messages: list[Message],
        params: GenerationParams,
        cancel: threading.Event,
        stats: StreamStats | None = None,
    ) -> Generator[str, None, None]:
        stats = stats if stats is not None else StreamStats()
        self.load()
        prepared = self._prepare(messages)
        tokens = self._prompt_tokens(prepared)
        prompt_len = len(tokens)
        stats.prompt_tokens = prompt_len
        max_tokens = self._budget(prompt_len, params)
        if not _acquire(self._gen_lock, cancel):
            stats.finish_reason = "cancelled"
            return
        chunks: Any = None
        parts: list[str] = []
        finish: str | None = None
        failed = False
        try:
            if cancel.is_set():
                finish = "cancelled"
                return
            try:
                self._stage_prompt(tokens)
                chunks = self._llm.create_chat_completion(
                    messages=prepared, stream=True, **self._sampling(params, max_tokens)
                )
                # Decoding happens lazily inside this iterator: each chunk is about one token.
                for chunk in chunks:
                    if cancel.is_set():
                        finish = "cancelled"
                        break
                    choice = chunk["choices"][0]
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                    delta = choice["delta"].get("content") or ""
                    if delta:
                        parts.append(delta)
                        yield delta
                if cancel.is_set():
                    finish = "cancelled"
            except (ValueError, RuntimeError) as exc:
                failed = True
                raise BackendError(f"llama.cpp failed to generate: {exc}") from exc
        finally:
            # Closing the generator chain ends decoding now, whether we stopped on cancel, the
            # consumer abandoned us (GeneratorExit at the yield) or an error was raised.
            if chunks is not None:
                chunks.close()
            self._gen_lock.release()
            if failed:
                stats.finish_reason = None
            else:
                stats.finish_reason = "stop" if finish == "stop" else "length" if finish == "length" else "cancelled"
            if stats.finish_reason == "length":
                stats.completion_tokens = max_tokens
            elif parts:
                # The stream does not report usage; re-tokenising the reply is exact for almost
                # all text (the end-of-turn token is not counted, as in non-streamed usage).
                stats.completion_tokens = len(
                    self._llm.tokenize("".join(parts).encode("utf-8"), add_bos=False, special=False)
                )


# ---------------------------------------------------------------------- helpers


def _acquire(lock: threading.Lock, cancel: threading.Event) -> bool:
    """Wait for the generation lock, giving up if the request is cancelled while queued."""
    while not lock.acquire(timeout=0.05):
        if cancel.is_set():
            return False
    return True


def _open_llama(path: Path, n_ctx: int, threads: ThreadPlan, amx: bool = False) -> Any:
    import llama_cpp

    try:
        with engine_model_params(amx):
            return llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=threads.n_threads,
                n_threads_batch=threads.n_threads_batch,
                # Off, though it measured decode +8-14% and prompts +6-8% on one core (bench/decode_bench.py): with it,
                # a prompt evaluated after a cached prefix gives different logits than evaluated whole, so one greedy
                # request's reply would depend on what the previous request left in the cache (seen on condenser
                # chunks).
                flash_attn=False,
                verbose=False,
            )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelUnavailableError(
            f"llama.cpp (llama-cpp-python {llama_cpp.__version__}) could not load {path}: {exc}. "
            "Is it a complete GGUF model file of an architecture this version supports?"
        ) from exc


def amx_built() -> bool:
    """Whether this llama.cpp build has Intel AMX kernels: a source build (PyPI has no other) compiles them in with
    -march=native on any CPU that lists AMX, whether or not the machine can run them."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    return "AMX_INT8 = 1" in (info.decode(errors="replace") if isinstance(info, bytes) else str(info))


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def engine_model_params(amx: bool) -> Iterator[None]:
    """A llama_cpp.Llama opened inside this block uses llama.cpp's extra weight buffers (AMX, and the CPU repacks
    that come with them) only when the build has no AMX kernels or `amx` is True (Settings.llama_amx).

    Why AMX is off unless asked for: on a virtual machine whose CPU lists AMX but whose hypervisor does not run it
    (seen on a CI machine of this project: a Xeon under a Firecracker guest kernel), the first prompt kills the whole
    process with SIGILL on `tilezero`, so the app dies on the embedded model. llama-cpp-python 0.3.36 has no Llama()
    argument for llama_model_params.use_extra_bufts, so the default model params are amended while the model opens,
    under a lock, for every thread of this process that opens one here."""
    import llama_cpp.llama_cpp as ll

    if amx or not amx_built():
        yield
        return
    with _PARAMS_LOCK:
        default = ll.llama_model_default_params

        def without_extra_buffers() -> Any:
            params = default()
            params.use_extra_bufts = False
            return params

        ll.llama_model_default_params = without_extra_buffers
        try:
            yield
        finally:
            ll.llama_model_default_params = default


@functools.lru_cache(maxsize=64)
def _gbnf(schema_json: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(schema_json)


def _grammar(schema: dict[str, Any]) -> Any:
    """A llama.cpp grammar that only lets the model write JSON of `schema` (a fresh object per request: the grammar
    sampler keeps per-generation state). Unlike llama-cpp-python's response_format, an unsupported schema is an error
    here, never a silent fallback to any JSON."""
    from llama_cpp.llama_grammar import LlamaGrammar

    try:
        return LlamaGrammar.from_string(_gbnf(json.dumps(schema, sort_keys=True)), verbose=False)
    except Exception as exc:  # the converter raises ValueError/NotImplementedError/KeyError on what it cannot do
        raise BackendError(f"llama.cpp cannot enforce this output schema: {exc}") from exc


def _trained_context(llm: Any) -> int:
    meta = llm.metadata or {}
    arch = meta.get("general.architecture", "")
    try:
        return int(meta.get(f"{arch}.context_length", 0))
    except ValueError:
        return 0


def _own_chat_formatter(llm: Any, path: Path) -> Any:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = (llm.metadata or {}).get("tokenizer.chat_template")
    if not template:
        raise ModelUnavailableError(
            f"{path.name} has no chat template (tokenizer.chat_template) in its metadata, so it "
            "cannot be used for chat; use an instruction-tuned (chat) GGUF of the model."
        )
    # The same construction llama-cpp-python uses for "chat_template.default".
    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    eos = llm.detokenize([eos_id], special=True).decode("utf-8", "ignore") if eos_id != -1 else ""
    bos = llm.detokenize([bos_id], special=True).decode("utf-8", "ignore") if bos_id != -1 else ""
    try:
        return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos, stop_token_ids=[eos_id])
    except Exception as exc:  # jinja2.TemplateSyntaxError
        raise ModelUnavailableError(f"The chat template in {path.name} does not parse: {exc}") from exc
