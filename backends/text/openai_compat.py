"""OpenAI-compatible hosted text backend (OpenAI, vLLM, TGI, Ollama, llama.cpp server) via the `openai`
SDK. Owns the chat requests, streaming and the context-length probe; retries and the mapping of HTTP failures
are backends/openai_http.py's. The API key stays inside the SDK client and is scrubbed from anything a server
echoes."""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from backends.openai_http import (
    DEFAULT_BASE_URL,
    PLACEHOLDER_KEY,
    OpenAIHttp,
    RequestCancelled,
    missing_model,
    server_said,
)
from backends.text.base import (
    BackendError,
    Capabilities,
    Completion,
    ContextOverflowError,
    GenerationParams,
    Message,
    ModelUnavailableError,
    ProgressFn,
    ServerFailedError,
    StreamCutError,
    StreamStats,
)

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0  # the /models look-up for the context length is best-effort
PROBE_RETRY_S = 60.0  # after an unreachable server, wait this long before probing again
# Keys under which servers report the context window on a /v1/models entry (vLLM: max_model_len).
CONTEXT_KEYS = ("max_model_len", "context_length", "max_context_length", "context_window")
# How a reply is held to GenerationParams.json_schema, strongest first: OpenAI's json_schema; json_object with the
# schema beside it (llama_cpp.server and Anyscale-style servers enforce it, others ignore the extra key); any JSON;
# free text (the pipelines parse leniently). A server that refuses or ignores one gets the next, and keeps it.
FORMATS = ("json_schema", "json_object+schema", "json_object", "text")
TEXT_ONLY = len(FORMATS) - 1


class _FormatRefused(Exception):
    """The server rejected the request's response_format (raised inside an attempt, so it is never retried)."""


class OpenAIBackend:
    """Chat completions against one model on one OpenAI-compatible server. Thread-safe: the SDK
    client is shared, every request has its own deadline, stream and cancel event."""

    def __init__(self, model: str, settings: Settings, spec: str = "", label: str = "") -> None:
        self.model = model
        self.spec = spec or f"openai:{model}"
        self.label = label or f"{model} (OpenAI-compatible API)"
        self._settings = settings
        self._base_url = (settings.openai_base_url or DEFAULT_BASE_URL).rstrip("/")
        self._http = OpenAIHttp(
            self._base_url,
            settings.openai_api_key,
            settings.request_timeout,
            no_answer="gave no answer",
            client_error=self._client_error,
        )
        self._where = self._http.where  # no user:password@, no query
        self._host = self._http.host
        self._lock = threading.Lock()
        self._client: Any = None  # openai.OpenAI, made in load()
        self._probe_lock = threading.Lock()
        self._server_context: int | None = None
        self._probed = False
        self._probe_failed_at: float | None = None
        self._format_level = 0  # index into FORMATS: the strongest this server has not refused or ignored

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={self._where!r})"

    # -- TextBackend ----------------------------------------------------------------------------

    def load(self, progress: ProgressFn | None = None) -> None:
        """Make the SDK client (no network). The SDK's own retries are off (max_retries=0): its loop
        has no overall deadline, so OpenAIHttp.with_retries does backoff, Retry-After and the deadline."""
        with self._lock:
            if self._client is not None:
                return
            s = self._settings
            if not s.openai_api_key and not s.openai_base_url:
                raise ModelUnavailableError(
                    f"No OpenAI-compatible server is configured for '{self.model}': set OPENAI_API_KEY "
                    "(for api.openai.com) or OPENAI_BASE_URL (for a vLLM, TGI, Ollama or llama.cpp server)."
                )
            parts = urlsplit(self._base_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ModelUnavailableError(f"OPENAI_BASE_URL must look like http://host:port/v1, got {self._where!r}.")
            import openai

            # base_url and api_key are always passed: given None the SDK would read the environment.
            self._client = openai.OpenAI(
                api_key=s.openai_api_key or PLACEHOLDER_KEY,
                base_url=self._base_url,
                timeout=self._http.timeout(s.request_timeout),
                max_retries=0,
            )
        if progress is not None:
            progress(1.0, f"Using {self.model} at {self._where}")

    def capabilities(self) -> Capabilities:
        self.load()
        return Capabilities(
            context_length=self._server_context_length() or self._settings.openai_context_length,
            streaming=True,
            system_prompt=True,
            max_concurrency=max(1, self._settings.openai_concurrency),
            exact_token_count=False,
        )

    def count_tokens(self, messages: list[Message]) -> int:
        """No tokenizer for a remote model: about 3 characters a token (conservative for English
        prose, which averages ~4; long digit runs can exceed it) plus a generous allowance for the
        chat template's tokens per message and for the assistant prefix."""
        return 3 + sum(6 + math.ceil(len(m["content"]) / 3) for m in messages)

    def chat(self, messages: list[Message], params: GenerationParams) -> Completion:
        self.load()
        level = self._format_level if params.json_schema is not None else TEXT_ONLY
        while True:
            kwargs = self._request_kwargs(messages, params, level)
            try:
                response = self._http.with_retries(functools.partial(self._create, kwargs), self._settings.max_retries)
                break
            except _FormatRefused as exc:
                level = self._lower_format(level, str(exc))
        if not hasattr(response, "choices"):  # the SDK hands back text when the body is not JSON
            raise ServerFailedError(self._not_openai())
        if not response.choices:
            raise ServerFailedError(f"The server at {self._host} answered without a reply; try again.")
        choice = response.choices[0]
        usage = response.usage
        text = (choice.message.content if choice.message else None) or ""
        finish = _finish(choice.finish_reason) or "stop"
        self._check_format(level, text, finish)
        return Completion(
            text=text,
            finish_reason=finish,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
        )

    def stream_chat(
        self,
        messages: list[Message],
        params: GenerationParams,
        cancel: threading.Event,
        stats: StreamStats | None = None,
    ) -> Generator[str, None, None]:
        """Deltas as the server sends them. Retries happen only before the first byte of the reply;
        once text has arrived a failure raises StreamCutError carrying that text. Cancelling (or
        abandoning the iterator) closes the HTTP response so the server stops generating."""
        import openai

        stats = stats if stats is not None else StreamStats()
        self.load()
        if cancel.is_set():
            stats.finish_reason = "cancelled"
            return
        level = self._format_level if params.json_schema is not None else TEXT_ONLY
        while True:
            kwargs = self._request_kwargs(messages, params, level)
            try:
                stream = self._http.with_retries(
                    functools.partial(self._create, kwargs, stream=True, stream_options={"include_usage": True}),
                    self._settings.max_retries,
                    cancel=cancel,
                )
                break
            except _FormatRefused as exc:
                level = self._lower_format(level, str(exc))
            except RequestCancelled:  # cancelled while waiting to retry
                stats.finish_reason = "cancelled"
                return
        self._set_stall_limit(stream)
        parts: list[str] = []
        chunks = 0
        finish: Literal["stop", "length"] | None = None
        usage = None
        cut: str | None = None
        try:
            try:
                for chunk in stream:
                    chunks += 1
                    if getattr(chunk, "usage", None):
                        usage = chunk.usage
                    for choice in chunk.choices or ():
                        if choice.index != 0:
                            continue
                        delta = choice.delta.content if choice.delta else None
                        if delta:
                            parts.append(delta)
                            stats.completion_tokens = len(parts)
                            yield delta
                        finish = _finish(choice.finish_reason) or finish
                    if cancel.is_set():
                        stats.finish_reason = "cancelled"
                        return
            except openai.APITimeoutError:
                cut = f"the server sent nothing for {self._settings.request_timeout:g} s"
            except openai.APIConnectionError:
                cut = "the connection dropped"
            except openai.APIError as exc:  # an error event inside the stream
                cut = f"the server reported an error: {self._http.server_message(exc)}"
            except (ValueError, AttributeError, TypeError):  # an event that is not a JSON chunk
                cut = "the server sent something that is not an OpenAI chat chunk"
        finally:
            stream.close()  # closes the socket: the server sees the disconnect and stops
        partial = "".join(parts)
        if chunks == 0 and cut is None:
            raise StreamCutError(self._not_openai(), partial="")
        if cut is None and finish is None:
            cut = "the stream ended without a finish reason"
        if cut is not None and finish is None:
            raise StreamCutError(
                f"The reply from {self._host} broke off after {len(partial)} characters ({cut}); "
                "the partial reply is kept. Try again.",
                partial=partial,
            )
        stats.finish_reason = finish
        self._check_format(level, partial, finish)
        if usage is not None:
            stats.prompt_tokens = usage.prompt_tokens
            stats.completion_tokens = usage.completion_tokens or len(parts)

    # -- requests -------------------------------------------------------------------------------

    def _request_kwargs(self, messages: list[Message], params: GenerationParams, level: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "temperature": max(0.0, params.temperature),
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,  # max_completion_tokens is OpenAI-only
        }
        if params.seed is not None:
            kwargs["seed"] = params.seed
        if params.stop:
            kwargs["stop"] = list(params.stop)
        if params.json_schema is not None and level < TEXT_ONLY:
            kwargs["response_format"] = _response_format(params.json_schema, FORMATS[level])
        return kwargs

    # -- structured output ----------------------------------------------------------------------

    @property
    def output_format(self) -> str:
        """How a reply with a JSON schema is asked for now: one of FORMATS (lowered as the server refuses some)."""
        return FORMATS[self._format_level]

    def _create(self, kwargs: dict[str, Any], left: float, **extra: Any) -> Any:
        """One chat request; a refusal of its response_format becomes _FormatRefused. Servers say so with a 400 or
        422 (OpenAI, vLLM, FastAPI validation), or a 500 (llama_cpp.server's validation error); the text names
        response_format or json_schema either way."""
        import openai

        try:
            return self._client.chat.completions.create(**kwargs, **extra, timeout=self._http.timeout(left))
        except openai.APIStatusError as exc:
            if "response_format" in kwargs and exc.status_code in (400, 422, 500) and _names_format(exc):
                raise _FormatRefused(self._http.server_message(exc) or f"HTTP {exc.status_code}") from None
            raise

    def _lower_format(self, level: int, why: str) -> int:
        """The next weaker format after `level`, remembered for this backend (never raised again)."""
        with self._lock:
            self._format_level = max(self._format_level, level + 1)
        if level + 1 <= TEXT_ONLY:
            log.info(
                "%s refused response_format %s (%s); using %s from now on",
                self._where,
                FORMATS[level],
                why,
                FORMATS[level + 1],
            )
        return min(level + 1, TEXT_ONLY)

    def _check_format(self, level: int, text: str, finish: str | None) -> None:
        """A complete reply that is not JSON although a JSON format was asked for: the server ignores that format,
        so the next request asks for the next one. (A reply cut at its length is JSON cut short, and proves
        nothing.)"""
        if level >= TEXT_ONLY or finish != "stop":
            return
        try:
            json.loads(text)
        except ValueError:
            self._lower_format(level, "the reply was not JSON")

    def _set_stall_limit(self, stream: Any) -> None:
        """Once the headers are in, a chunk may take up to request_timeout however much of the
        deadline the retries used. httpcore reads the read timeout from the request's extensions
        when the body starts to be read, so this takes effect for the whole body."""
        try:
            timeouts = stream.response.request.extensions["timeout"]
            timeouts["read"] = self._settings.request_timeout
        except (AttributeError, KeyError, TypeError):
            pass  # then chunks get what was left of the deadline: still bounded, just tighter

    # -- error mapping (the rest is OpenAIHttp's) ---------------------------------------------------------

    def _client_error(self, status: int, detail: str, exc: Any) -> BackendError | None:
        if status == 404:
            return missing_model(self._where, self.model, detail, kind="", endpoint="chat", setting="STUDIO_TEXT_MODEL")
        lowered = detail.lower()
        if status in (400, 413, 422) and (
            "context" in lowered or "too long" in lowered or "maximum" in lowered and "token" in lowered
        ):
            return ContextOverflowError(
                f"The conversation is too long for '{self.model}' (HTTP {status}). Shorten it or start a new one."
                f"{server_said(detail)}"
            )
        return None

    def _not_openai(self) -> str:
        return (
            f"The server at {self._where} did not answer like an OpenAI-compatible API. Check "
            "OPENAI_BASE_URL (it usually ends in /v1)."
        )

    # -- context length from the server ---------------------------------------------------------

    def _server_context_length(self) -> int | None:
        """The context window the server reports for this model on GET /models (vLLM and others),
        looked up once; None when it reports none or cannot be asked."""
        import openai

        with self._probe_lock:
            if self._probed:
                return self._server_context
            if self._probe_failed_at is not None and time.monotonic() - self._probe_failed_at < PROBE_RETRY_S:
                return None
            try:
                timeout = self._http.timeout(min(self._settings.request_timeout, PROBE_TIMEOUT_S))
                page = self._client.models.list(timeout=timeout)
                for entry in page.data:
                    if getattr(entry, "id", None) == self.model:
                        self._server_context = _context_from_entry(entry)
                        break
                self._probed = True
            except openai.APIStatusError:
                self._probed = True  # the server answered; it just does not list models
            except (openai.APIError, ValueError, TypeError, AttributeError) as exc:
                log.info(
                    "Could not ask %s for the context length of %s (%s)", self._where, self.model, type(exc).__name__
                )
                self._probe_failed_at = time.monotonic()
            return self._server_context


def _response_format(schema: dict[str, Any], kind: str) -> dict[str, Any]:
    if kind == "json_schema":
        title = schema.get("title")
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", title)[:64] if isinstance(title, str) and title.strip() else "reply"
        return {"type": "json_schema", "json_schema": {"name": name or "reply", "schema": schema, "strict": True}}
    if kind == "json_object+schema":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_object"}


def _names_format(exc: Any) -> bool:
    """Whether an error response is about the response_format (its message, or a validation error's location)."""
    body = getattr(exc, "body", None)
    try:
        text = json.dumps(body) if body is not None else ""
    except (TypeError, ValueError):
        text = str(body)
    text = f"{text} {getattr(exc, 'message', '')}".lower()
    return "response_format" in text or "json_schema" in text or "response format" in text


def _context_from_entry(entry: Any) -> int | None:
    for key in CONTEXT_KEYS:
        value = getattr(entry, key, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return int(value)
    return None


def _finish(reason: str | None) -> Literal["stop", "length"] | None:
    if not reason:
        return None
    return "length" if reason == "length" else "stop"  # content_filter, tool_calls...: it stopped
