"""The parts of a chat turn that need no storage: the checked options, the updates a streaming reply sends,
their throttle, and what the model is given of a conversation (roles merged, fitted to the context)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from backends.text.base import ContextOverflowError, GenerationParams, Message, StreamStats
from core import validate
from core.chat.store import Conversation

STREAM_INTERVAL_S = 0.05  # how often a streaming reply is sent to the browser or API client
MAX_NEW_TOKENS = 32768
MAX_SYSTEM_CHARS = 100_000


@dataclass(frozen=True)
class ChatOptions:
    model: str | None = None  # spec; None = default
    system_prompt: str = ""
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 512
    seed: int | None = None

    @classmethod
    def checked(
        cls,
        model: object = None,
        system_prompt: object = "",
        temperature: object = 0.7,
        top_p: object = 0.95,
        max_new_tokens: object = 512,
        seed: object = None,
    ) -> ChatOptions:
        """Options from what a caller sent (the chat tab's controls, the /chat API). A value of the
        wrong type or out of range raises InputError naming it; None takes the default."""
        return cls(
            model=validate.model_spec("model", model),
            system_prompt=validate.text("system_prompt", system_prompt, MAX_SYSTEM_CHARS),
            temperature=validate.number("temperature", temperature, 0.0, 2.0, default=0.7),
            top_p=validate.number("top_p", top_p, 0.0, 1.0, default=0.95),
            max_new_tokens=validate.whole("max_new_tokens", max_new_tokens, 1, MAX_NEW_TOKENS, default=512),
            seed=validate.seed("seed", seed),
        )

    def params(self) -> GenerationParams:
        return GenerationParams(
            temperature=max(0.0, min(2.0, float(self.temperature))),
            top_p=max(0.01, min(1.0, float(self.top_p))),
            max_new_tokens=max(1, min(MAX_NEW_TOKENS, int(self.max_new_tokens))),
            seed=validate.seed("seed", self.seed),
        )


@dataclass
class ReplyUpdate:
    text: str
    status: str = "streaming"  # streaming | complete | cut
    note: str = ""  # why it was cut
    error: str = ""  # a message for the user when a backend failed
    notice: str = ""  # e.g. older turns left out to fit the context
    stats: dict = field(default_factory=dict)


def throttled(updates: Iterator[ReplyUpdate], interval: float = STREAM_INTERVAL_S) -> Iterator[ReplyUpdate]:
    """Pass the first update at once, then at most one every `interval` seconds, and always the
    final one. The engine still decodes at full speed; the UI gets ~20 smooth updates a second
    instead of paying serialisation and a network message for every token."""
    last = 0.0
    pending = None
    try:
        for update in updates:
            now = time.perf_counter()
            if update.status != "streaming" or now - last >= interval:
                yield update
                last, pending = now, None
            else:
                pending = update
    except Exception:
        if pending is not None:
            yield pending  # what arrived before a failure is never held back
        raise
    if pending is not None:
        yield pending


def merge_roles(messages: list[Message]) -> list[Message]:
    """Join consecutive messages of the same role: many chat templates require alternation, and a
    failed reply can leave two user turns in a row."""
    merged: list[Message] = []
    for m in messages:
        if merged and merged[-1]["role"] == m["role"]:
            merged[-1] = {"role": m["role"], "content": merged[-1]["content"] + "\n\n" + m["content"]}
        else:
            merged.append(dict(m))  # type: ignore[arg-type]
    return merged


def fit_to_context(
    system: list[Message], turns: list[Message], count: Callable[[list[Message]], int], budget: int
) -> tuple[list[Message], int]:
    """Drop the oldest turns until system + turns fit in `budget` tokens. Returns (messages, number
    of messages dropped). The newest user message is never dropped: if it alone does not fit, that is
    a ContextOverflowError the user must fix."""
    start = 0
    while True:
        candidate = system + turns[start:]
        if count(candidate) <= budget:
            return candidate, start
        if start >= len(turns) - 1:
            raise ContextOverflowError("too long")
        start += 1
        # Never start the kept history with an assistant reply.
        while start < len(turns) - 1 and turns[start]["role"] == "assistant":
            start += 1


def history_messages(conv: Conversation) -> list[Message]:
    """What the model sees of a stored conversation: user turns and replies with text."""
    return merge_roles(
        [{"role": m.role, "content": m.content} for m in conv.messages if m.content.strip() and m.status != "streaming"]
    )


def reply_stats(stats: StreamStats, t0: float, first: float | None, end: float, model: str, text: str) -> dict:
    tokens = stats.completion_tokens or 0
    decode_s = (end - first) if first is not None else 0.0
    return {
        "model": model,
        "completion_tokens": tokens,
        "prompt_tokens": stats.prompt_tokens,
        "finish_reason": stats.finish_reason,
        "ttft_s": round(first - t0, 4) if first is not None else None,
        "total_s": round(end - t0, 4),
        # Decode rate: tokens after the first over the time after the first token.
        "tokens_per_s": round((tokens - 1) / decode_s, 2) if tokens > 1 and decode_s > 0 else None,
        "chars": len(text),
    }
