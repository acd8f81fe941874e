"""The text-backend protocol: what every engine (llama.cpp, transformers, OpenAI-compatible) provides.

Backends know nothing about tabs or users. Each call takes its own cancel event; nothing per-request
is stored on the backend object, so one loaded backend serves every user.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable


class Message(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


def fold_system_into_user(messages: list[Message]) -> list[Message]:
    """For chat templates without a system role: prepend the instructions to the first user turn."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system:
        return rest  # type: ignore[return-value]
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{system}\n\n{m['content']}"
            return rest  # type: ignore[return-value]
    return [{"role": "user", "content": system}, *rest]  # type: ignore[list-item]


_SYSTEM_PROBE = "SYSTEM-ROLE-PROBE-7f3a"


def accepts_system_role(render: Callable[[list[Message]], str]) -> bool:
    """Whether a chat template keeps a system message: `render` formats messages with it. A template may
    reject one (raise) or silently drop it; both mean no."""
    try:
        text = render([{"role": "system", "content": _SYSTEM_PROBE}, {"role": "user", "content": "hi"}])
    except Exception:
        return False
    return _SYSTEM_PROBE in text


@dataclass(frozen=True)
class GenerationParams:
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 512
    seed: int | None = None  # None: random
    stop: tuple[str, ...] = ()
    # A JSON schema the reply must follow, where a step needs structure (writer outlines, condenser notes). Each
    # engine enforces it its own way (llama.cpp grammar, transformers logits processor, response_format); the
    # reply is then the JSON text. None: free text.
    json_schema: dict[str, Any] | None = field(default=None, hash=False)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True)
class Capabilities:
    context_length: int  # tokens, prompt + reply
    streaming: bool = True
    system_prompt: bool = True
    # How many requests the engine can usefully run at once: parallel slots of a server, the batch
    # size of a batching engine (1: callers are serialised).
    max_concurrency: int = 1
    exact_token_count: bool = True  # False when count_tokens is an estimate (hosted APIs)


@dataclass
class Completion:
    text: str
    finish_reason: Literal["stop", "length", "cancelled"]
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class StreamStats:
    """Filled in by `stream_chat` as it goes; read by the caller once the iterator is exhausted."""

    finish_reason: Literal["stop", "length", "cancelled"] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int = 0
    # Tokens the engine made for this request after its caller stopped reading or cancelled (wasted work; filled
    # by backends that can tell, such as the batched transformers one, where it is at most the step in progress).
    after_stop: int = 0


ProgressFn = Callable[[float, str], None]  # fraction in [0, 1], description


class BackendError(Exception):
    """A failure the user can act on; the message is safe to show (never contains a key)."""

    kind = "error"


class ModelUnavailableError(BackendError):
    kind = "unavailable"  # weights missing, checksum wrong, hub unreachable


class ConnectionFailedError(BackendError):
    kind = "connection"


class TimeoutFailedError(BackendError):
    kind = "timeout"


class AuthFailedError(BackendError):
    kind = "auth"  # HTTP 401/403


class RateLimitedError(BackendError):
    kind = "rate_limit"  # HTTP 429 after retries


class ServerFailedError(BackendError):
    kind = "server"  # HTTP 5xx after retries


class StreamCutError(BackendError):
    """The stream broke mid-reply. `partial` holds what arrived so the caller can keep it."""

    kind = "stream_cut"

    def __init__(self, message: str, partial: str = "") -> None:
        super().__init__(message)
        self.partial = partial


class ContextOverflowError(BackendError):
    kind = "context"


@runtime_checkable
class TextBackend(Protocol):
    """One loaded (or loadable) text model. Implementations: backends/text/llamacpp.py,
    backends/text/transformers_local.py, backends/text/openai_compat.py."""

    spec: str  # the spec it was made from, e.g. "embedded", "hf:Qwen/Qwen2.5-0.5B-Instruct"
    label: str  # what the picker shows

    def capabilities(self) -> Capabilities:
        """May load the model (context length comes from it)."""
        ...

    def load(self, progress: ProgressFn | None = None) -> None:
        """Idempotent and thread-safe; heavy imports happen here, never at module import."""
        ...

    def count_tokens(self, messages: list[Message]) -> int:
        """Prompt tokens for these messages with the model's chat template (an estimate where
        capabilities().exact_token_count is False)."""
        ...

    def chat(self, messages: list[Message], params: GenerationParams) -> Completion:
        """Non-streamed reply."""
        ...

    def stream_chat(
        self,
        messages: list[Message],
        params: GenerationParams,
        cancel: threading.Event,
        stats: StreamStats | None = None,
    ) -> Generator[str, None, None]:
        """Yield text deltas. Stops within a few tokens of `cancel` being set, with the engine's
        work for this request ended before the iterator finishes (a worker thread that batches
        several requests goes on for the others, and ends with the last). Raises BackendError
        subclasses."""
        ...


@dataclass
class ModelSpec:
    """A parsed STUDIO_TEXT_MODEL entry."""

    kind: str  # a key of backends.registry.TEXT_ENGINES: "embedded", "hf", "gguf", "openai"
    target: str = ""
    raw: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str) -> ModelSpec:
        """ValueError listing every way to write a spec when `raw` is none of them."""
        from backends.registry import parse_text_spec  # imported here: the registry imports this module

        kind, target = parse_text_spec(raw)
        return cls(kind, target, raw.strip())
