"""What the backends that talk HTTP to OpenAI-compatible servers (text, images, speech) share: the SDK client, the
retry loop (backoff, Retry-After, overall deadline, cancel), a request cancellable in flight, the mapping of HTTP,
timeout and connection failures to BackendError subclasses with messages safe to show, and what to show of a URL."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from backends.text.base import (
    AuthFailedError,
    BackendError,
    ConnectionFailedError,
    ModelUnavailableError,
    ProgressFn,
    RateLimitedError,
    ServerFailedError,
    TimeoutFailedError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "not-needed"  # local servers ignore the key, but the SDK insists on one
BACKOFF_BASE_S = 0.5  # first retry waits this long, then doubles
RETRY_AFTER_CAP_S = 20.0  # a server asking for a longer pause than this gets this
CONNECT_TIMEOUT_CAP_S = 10.0

# (HTTP status, what the server said, the SDK error) -> the error for a status the shared mapping leaves to
# the backend (404, and 4xx it recognises), or None for the generic "rejected the request".
ClientErrorFn = Callable[[int, str, Any], "BackendError | None"]


class RequestCancelled(Exception):
    """The caller's cancel event was set while a retry was pending (or, where the caller watches it, while
    the request was in flight)."""


@dataclass(frozen=True)
class HttpFailure:
    """One failed attempt, already turned into the error the user would see if it is the last."""

    error: BackendError
    retryable: bool
    wait: float | None = None  # what the server asked for (Retry-After), seconds


def tries(retries: int) -> str:
    return "" if retries == 0 else f", still after {retries} {'retry' if retries == 1 else 'retries'}"


def server_said(detail: str) -> str:
    return f" Server said: {detail}" if detail else ""


def retry_after(headers: Any) -> float | None:
    """Seconds from retry-after-ms (OpenAI) or Retry-After (seconds or an HTTP date)."""
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return float(ms) / 1000.0
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def display_url(url: str) -> str:
    """The URL as safe to show: no credentials, query or fragment."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "the configured OPENAI_BASE_URL"


def display_host(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port}" if parts.port else (parts.hostname or display_url(url))
    except ValueError:
        return "the configured OPENAI_BASE_URL"


def missing_model(
    where: str, model: str, detail: str, *, kind: str, endpoint: str, setting: str
) -> ModelUnavailableError:
    """A 404: the server has no such model or no such endpoint. `kind` ("speech", or "" for none) qualifies the model,
    `endpoint` names the API ("audio/speech"), `setting` the variable that names the model (STUDIO_SPEECH_MODEL)."""
    return ModelUnavailableError(
        f"The server at {where} has no {kind + ' ' if kind else ''}model '{model}' or no {endpoint} endpoint "
        f"(HTTP 404). Check the name after 'openai:' in {setting} and OPENAI_BASE_URL (usually ending in /v1)."
        f"{server_said(detail)}"
    )


def error_code(exc: Any) -> str:
    """The `code` of an OpenAI error body ("content_policy_violation", ...), or ""."""
    body = getattr(exc, "body", None)
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else ""


def run_cancellable(
    make_client: Callable[[], Any], call: Callable[[Any], Any], cancel: threading.Event, name: str = "openai"
) -> Any:
    """Await `call(async_client)` on a private event loop in a worker thread, watching `cancel`. The async client
    is used because cancelling an asyncio task really closes its connection (the server sees the hang-up and can
    stop); a blocked read of the sync client cannot be interrupted. The worker thread keeps this usable from any
    caller, including one inside a running event loop. RequestCancelled when `cancel` was set."""
    box: dict[str, Any] = {}

    async def main() -> Any:
        async with make_client() as client:
            task = asyncio.ensure_future(call(client))
            while not task.done():
                await asyncio.wait({task}, timeout=0.05)
                if cancel.is_set() and not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    raise RequestCancelled()
            return task.result()

    def work() -> None:
        try:
            box["value"] = asyncio.run(main())
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    worker.join()
    if "error" in box:
        raise box.pop("error")
    return box["value"]


class OpenAIHttp:
    """One OpenAI-compatible server as a backend talks to it: timeouts, the retry loop and the failure
    messages. `timeout_s` bounds a whole request, retries included; `no_answer` says what did not arrive
    in time ("gave no answer", "sent no image"). The key is kept only to scrub it from what a server or
    library echoes; it never appears in this object's repr."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout_s: float,
        *,
        no_answer: str = "gave no answer",
        client_error: ClientErrorFn | None = None,
    ) -> None:
        self.base_url = base_url
        self.where = display_url(base_url)  # no user:password@, no query
        self.host = display_host(base_url)
        self.timeout_s = float(timeout_s)
        self._api_key = api_key
        self._no_answer = no_answer
        self._client_error = client_error

    def __repr__(self) -> str:
        return f"OpenAIHttp(base_url={self.where!r})"

    def timeout(self, seconds: float) -> Any:
        """An httpx2 timeout (the HTTP library of openai 3.x): `seconds` for reads, writes and the pool, and a
        shorter connect timeout so a dead host fails fast enough to retry."""
        import httpx2

        seconds = max(0.01, seconds)
        return httpx2.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT_CAP_S, max(1.0, self.timeout_s / 3)))

    def async_client(self) -> Any:
        """A fresh openai.AsyncOpenAI for this server (one per request, so that cancelling closes its connection).
        base_url and api_key always passed: given None the SDK would read the environment. The SDK's own retries
        are off; with_retries does backoff, Retry-After and the overall deadline."""
        import openai

        return openai.AsyncOpenAI(
            api_key=self._api_key or PLACEHOLDER_KEY,
            base_url=self.base_url,
            timeout=self.timeout(self.timeout_s),
            max_retries=0,
        )

    def with_retries(self, attempt: Callable[[float], T], max_retries: int, cancel: threading.Event | None = None) -> T:
        """Run `attempt(seconds left)` until it succeeds, retrying 429, 5xx and connection failures with
        exponential backoff (or the server's Retry-After, capped) at most `max_retries` times, all within
        timeout_s. RequestCancelled if `cancel` is set while waiting to retry. Errors are raised outside the
        `except` blocks so the SDK error (whose request headers, and for a 401 a body, may quote the key) is
        not chained onto ours."""
        import openai

        deadline = time.monotonic() + self.timeout_s
        retries = 0
        while True:
            failure: HttpFailure | None = None
            try:
                return attempt(deadline - time.monotonic())
            except openai.APIStatusError as exc:
                failure = self.status_failure(exc, retries)
            except openai.APITimeoutError as exc:
                failure = self.timeout_failure(exc, retries)
            except openai.APIConnectionError as exc:
                failure = self.connection_failure(exc, retries)
            assert failure is not None
            if not failure.retryable or retries >= max_retries:
                raise failure.error
            wait = BACKOFF_BASE_S * 2**retries * random.uniform(1.0, 1.25)
            if failure.wait is not None:
                wait = min(max(failure.wait, 0.0), RETRY_AFTER_CAP_S)
            if time.monotonic() + wait >= deadline:
                raise failure.error  # no time left for another attempt
            log.warning("%s; retry %d of %d in %.1f s", failure.error, retries + 1, max_retries, wait)
            if cancel is not None:
                if cancel.wait(wait):
                    raise RequestCancelled()
            else:
                time.sleep(wait)
            retries += 1

    # -- failure mapping ----------------------------------------------------------------------------------

    def status_failure(self, exc: Any, retries: int) -> HttpFailure:
        status = int(exc.status_code)
        tried = tries(retries)
        if status in (401, 403):
            # Never the body: OpenAI quotes the rejected key in it.
            verb = "rejected the API key" if status == 401 else "refused access with this API key"
            return HttpFailure(
                AuthFailedError(f"The server at {self.host} {verb} (HTTP {status}). Check OPENAI_API_KEY."), False
            )
        detail = self.server_message(exc)
        if status == 429:
            return HttpFailure(
                RateLimitedError(
                    f"The server at {self.host} is limiting requests (HTTP 429){tried}. Wait a minute and "
                    f"try again, or check the plan's rate limits.{server_said(detail)}"
                ),
                True,
                retry_after(exc.response.headers),
            )
        if status >= 500 or status in (408, 409):
            return HttpFailure(
                ServerFailedError(
                    f"The server at {self.host} failed (HTTP {status}){tried}. Try again later.{server_said(detail)}"
                ),
                True,
                retry_after(exc.response.headers),
            )
        error = self._client_error(status, detail, exc) if self._client_error is not None else None
        if error is None:
            error = BackendError(
                f"The server at {self.host} rejected the request (HTTP {status}).{server_said(detail)}"
            )
        return HttpFailure(error, False)

    def timeout_failure(self, exc: Any, retries: int) -> HttpFailure:
        import httpx2

        if isinstance(exc.__cause__, httpx2.ConnectTimeout):
            return HttpFailure(
                ConnectionFailedError(
                    f"Could not reach {self.where} (no connection within the connect timeout){tries(retries)}. "
                    "Check OPENAI_BASE_URL and that the server is running."
                ),
                True,
            )
        return HttpFailure(
            TimeoutFailedError(
                f"The server at {self.host} {self._no_answer} within {self.timeout_s:g} s{tries(retries)}. It may "
                "be overloaded; try again, or raise STUDIO_REQUEST_TIMEOUT."
            ),
            True,
        )

    def connection_failure(self, exc: Any, retries: int) -> HttpFailure:
        import httpx2

        cause = exc.__cause__
        if cause is None:
            reason = "connection failed"
        else:
            reason = self.scrub(str(cause))[:200] if str(cause) else type(cause).__name__
        if cause is None or isinstance(cause, httpx2.ConnectError):
            return HttpFailure(
                ConnectionFailedError(
                    f"Could not reach {self.where} ({reason}){tries(retries)}. "
                    "Check OPENAI_BASE_URL and that the server is running."
                ),
                True,
            )
        return HttpFailure(
            ConnectionFailedError(  # connected, then lost it before the answer was in
                f"The connection to {self.where} broke before the answer arrived ({reason}){tries(retries)}. Try again."
            ),
            True,
        )

    def server_message(self, exc: Any) -> str:
        """The message of an OpenAI error body, whitespace folded, key scrubbed, at most 300 characters."""
        body = getattr(exc, "body", None)
        message = body.get("message") if isinstance(body, dict) else body if isinstance(body, str) else None
        return self.scrub(" ".join(message.split()))[:300] if isinstance(message, str) else ""

    def scrub(self, text: str) -> str:
        """Remove the key from text a server or library produced (belt and braces)."""
        if self._api_key and len(self._api_key) >= 4:
            text = text.replace(self._api_key, "***")
        return text


class OpenAIModelBackend:
    """What a backend for one model on one OpenAI-compatible server keeps and does alike (images, speech,
    transcription; the text backend reads Settings and has its own): the model and its spec and label, the server
    (`_http`: OpenAIHttp with the subclass's `_client_error`), the retry count, the repr and `load`, which checks
    that a server is configured. A subclass names its kind of server (`server_kind`: "speech" reads "No speech
    server is configured"), its API for the default label (`api_name`) and what a timed-out request did not get
    (`no_answer`: "sent no audio")."""

    server_kind = "OpenAI-compatible"
    api_name = "OpenAI-compatible API"
    no_answer = "gave no answer"

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        spec: str = "",
        label: str = "",
    ) -> None:
        self.model = model
        self.spec = spec or f"openai:{model}"
        self.label = label or f"{model} ({self.api_name})"
        self._base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._configured = bool(base_url or api_key)
        self._api_key = api_key
        self._timeout_s = float(timeout)
        self._max_retries = max(0, int(max_retries))
        self._http = OpenAIHttp(
            self._base_url, api_key, self._timeout_s, no_answer=self.no_answer, client_error=self._client_error
        )
        self._where = self._http.where
        self._host = self._http.host

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, base_url={self._where!r})"

    def load(self, progress: ProgressFn | None = None) -> None:
        """Nothing to load; checks that a server is configured (no network)."""
        if not self._configured:
            raise ModelUnavailableError(
                f"No {self.server_kind} server is configured for '{self.model}': set OPENAI_API_KEY (for "
                f"api.openai.com) or OPENAI_BASE_URL (for an OpenAI-compatible {self.server_kind} server)."
            )
        if progress is not None:
            progress(1.0, f"Using {self.model} at {self._where}")

    def _client_error(self, status: int, detail: str, exc: Any) -> BackendError | None:
        """The error for a 404 or another 4xx this backend recognises (see ClientErrorFn); None: the generic one."""
        return None
