"""Real OpenAI-compatible servers on loopback for tests: a scriptable fake (faults on demand) and a
llama.cpp server subprocess. Both are context managers that yield an object with `.base_url`.

Stable API (tests/backends/test_backend_contract.py relies on it):
    fake_openai_server(**options) -> FakeOpenAIServer      (see FakeOptions for every option)
    llama_cpp_server(model_path, n_ctx=2048, ...) -> LlamaCppServer
    fake_reply(messages, max_tokens=None, stop=(), reply_words=8) -> (text, finish_reason)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.support.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def readable(sock: socket.socket, timeout: float) -> bool:
    """Whether `sock` has data (or EOF) to read within `timeout` seconds. poll(), not select(): select() refuses a
    descriptor numbered 1024 or more, which a long test session reaches (seen in CI: the fake then died mid-stream)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(max(0, int(timeout * 1000))))


__all__ = [
    "readable",
    "FakeOptions",
    "FakeOpenAIServer",
    "RecordedRequest",
    "fake_openai_server",
    "fake_reply",
    "schema_instance",
    "LlamaCppServer",
    "llama_cpp_server",
]


# --------------------------------------------------------------------------------------------------
# The fake server
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeOptions:
    """What the fake does. Faults act on /v1/chat/completions, streamed or not; request numbers
    count chat requests from 0."""

    model: str = "fake-model"
    reply_words: int = 8  # natural reply length in words (one word per streamed chunk)
    chunk_delay: float = 0.0  # seconds before each content chunk
    require_key: str | None = None  # 401 on every endpoint unless "Bearer <require_key>" is sent;
    # the 401 body quotes the key that was sent, as OpenAI's does
    rate_limit_first: int = 0  # answer 429 to the first N chat requests
    retry_after: float | None = 0.05  # Retry-After header on 429 (seconds), None: no header
    server_error_first: float = 0  # answer `server_error_status` to the first N (math.inf: always)
    server_error_status: int = 500
    slow: float = 0.0  # sleep this long before sending any header
    cut_after: int | None = None  # stream: close the socket after k content chunks, no [DONE];
    # non-streamed: close the socket half-way through the JSON body
    stall_after: int | None = None  # stream: go silent after k content chunks (socket kept open);
    # non-streamed: go silent half-way through the JSON body
    stall_seconds: float = 30.0  # how long a stall lasts (ends early when the client hangs up)
    omit_finish_reason: bool = False  # stream: send [DONE] without any finish_reason
    max_model_len: int | None = None  # reported on /v1/models entries, as vLLM does
    usage: bool = True  # send usage (non-streamed; streamed when stream_options.include_usage)
    html_instead: bool = False  # answer chat requests with a 200 web page, as a wrong base URL does
    reply_text: str | None = None  # reply with exactly this text (streamed a word at a time)
    serial: bool = False  # one chat reply at a time, the rest wait unanswered (one model, no parallel
    # slots, as llama_cpp.server); a waiting request whose client hangs up leaves the queue
    response_formats: tuple[str, ...] = ("json_schema", "json_object")  # response_format types it honours:
    # the reply is then JSON (an instance of the schema sent, or {"reply": text}); "text" is always fine
    response_format_refusal: int = 400  # the status for a type it does not honour (0: ignore it, reply text)
    # The audio routes (/v1/audio/speech, /v1/audio/transcriptions) get the same faults (rate_limit_first,
    # server_error_first, slow, require_key), their requests counted apart from chat's.
    speech_seconds_per_char: float = 0.06  # /v1/audio/speech: a 440 Hz tone this long per input character / speed
    speech_sample_rate: int = 24000  # its WAV (16-bit mono, sizes 0xFFFFFFFF as OpenAI streams them)
    transcript: str = "Hello from the fake server. It heard you clearly."  # /v1/audio/transcriptions, one
    # segment per sentence spread over the upload's length (of a WAV; 1 s otherwise)
    transcript_language: str = "english"  # as OpenAI names it
    transcript_text_only: bool = False  # answer {"text": ...} whatever response_format asked (gpt-4o-transcribe)
    refuse_verbose_json: bool = False  # answer 400 to response_format=verbose_json
    redirect_audio_to: str | None = None  # answer audio requests with a 307 to this base URL (same path below /v1)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None


def fake_reply(
    messages: Sequence[dict], max_tokens: int | None = None, stop: Sequence[str] | str | None = (), reply_words: int = 8
) -> tuple[str, str]:
    """The reply the fake gives: words of the last user message numbered in turn ("hello0 world1
    hello2 ..."), `reply_words` of them or `max_tokens` if fewer, cut at the first stop string."""
    last = next((m.get("content") or "" for m in reversed(list(messages)) if m.get("role") == "user"), "")
    if not isinstance(last, str):  # content parts
        last = " ".join(p.get("text", "") for p in last if isinstance(p, dict))
    words = re.findall(r"\w+", last.lower()) or ["empty"]
    n = reply_words if max_tokens is None else max(0, min(reply_words, int(max_tokens)))
    text = " ".join(f"{words[i % len(words)]}{i}" for i in range(n))
    finish = "length" if max_tokens is not None and max_tokens < reply_words else "stop"
    stops = [stop] if isinstance(stop, str) else list(stop or ())
    cuts = [text.index(s) for s in stops if s and s in text]
    if cuts:
        text, finish = text[: min(cuts)], "stop"
    return text, finish


def schema_instance(schema: Any, words: Sequence[str]) -> Any:
    """A value of the JSON schema `schema` made of `words` (objects, arrays, strings with their length and count
    limits, enum, numbers, booleans): what the fake replies when it honours a response_format."""
    if not isinstance(schema, dict):
        return " ".join(words)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if kind == "object":
        return {
            k: schema_instance(v, words[i:] or words) for i, (k, v) in enumerate(schema.get("properties", {}).items())
        }
    if kind == "array":
        n = min(max(int(schema.get("minItems", 0)), 2), int(schema.get("maxItems", 2)))
        return [schema_instance(schema.get("items", {}), words[i:] or words) for i in range(n)]
    if kind in ("integer", "number"):
        return len(words)
    if kind == "boolean":
        return True
    text = " ".join(words) or "empty"
    text = text.ljust(int(schema.get("minLength", 0)), ".")
    return text[: int(schema["maxLength"])] if "maxLength" in schema else text


class FakeOpenAIServer:
    """Handle on a running fake; `base_url` is "http://127.0.0.1:PORT/v1"."""

    def __init__(self, options: FakeOptions) -> None:
        self.options = options
        self.requests: list[RecordedRequest] = []
        self.chunks_sent = 0  # content chunks written, over all streams
        self.disconnected = threading.Event()  # the client hung up before the reply was complete
        self.base_url = ""
        self._lock = threading.Lock()
        self._chat_count = 0
        self._audio_count = 0
        self._stopping = threading.Event()
        self._serial = threading.Lock()

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def audio_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if "/audio/" in r.path]

    @property
    def port(self) -> int:
        return int(urlsplit(self.base_url).port or 0)

    def _record(self, req: RecordedRequest) -> int:
        """Store the request; returns its number among chat requests, or among audio requests (-1 for others)."""
        with self._lock:
            self.requests.append(req)
            if req.path.endswith("/chat/completions"):
                self._chat_count += 1
                return self._chat_count - 1
            if "/audio/" in req.path:
                self._audio_count += 1
                return self._audio_count - 1
            return -1

    def _count_chunk(self) -> None:
        with self._lock:
            self.chunks_sent += 1


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeOpenAIServer) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up on an idle keep-alive connection is normal: no traceback on stderr."""
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class _ClientGone(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked SSE, so a cut is a protocol error, as with uvicorn
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def fake(self) -> FakeOpenAIServer:
        return self.server.fake

    def _peer_gone(self) -> bool:
        """True once the client closed its end (the socket reads EOF or errors)."""
        try:
            if not readable(self.connection, 0):
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _wait(self, seconds: float) -> None:
        """Sleep, but notice a client that hangs up meanwhile (raises _ClientGone)."""
        end = time.monotonic() + seconds
        while True:
            if self._peer_gone():
                raise _ClientGone
            left = end - time.monotonic()
            if left <= 0 or self.fake._stopping.is_set():
                return
            time.sleep(min(0.02, left))

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError as exc:  # BrokenPipe / ConnectionReset: the client is gone
            raise _ClientGone from exc

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self._write(body)

    def _error(
        self, status: int, message: str, type_: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self._send_json(status, {"error": {"message": message, "type": type_, "param": None, "code": code}}, headers)

    def _hang_up(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _record(self, body: Any) -> int:
        path = urlsplit(self.path).path
        headers = {k.lower(): v for k, v in self.headers.items()}
        return self.fake._record(RecordedRequest(self.command, path, headers, body))

    def _auth_ok(self) -> bool:
        want = self.fake.options.require_key
        if want is None:
            return True
        sent = self.headers.get("Authorization", "")
        if sent == f"Bearer {want}":
            return True
        key = sent.removeprefix("Bearer ").strip()
        # OpenAI quotes (part of) the key it rejected; quote all of it so a leak is easy to catch.
        self._error(
            401,
            f"Incorrect API key provided: {key}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )
        return False

    # -- endpoints ----------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        try:
            self._record(None)
            if not self._auth_ok():
                return
            path = urlsplit(self.path).path.rstrip("/")
            opts = self.fake.options
            entry: dict[str, Any] = {"id": opts.model, "object": "model", "created": 0, "owned_by": "fake"}
            if opts.max_model_len is not None:
                entry["max_model_len"] = opts.max_model_len
            if path == "/v1/models":
                self._send_json(200, {"object": "list", "data": [entry]})
            elif path.startswith("/v1/models/") and unquote(path[len("/v1/models/") :]) == opts.model:
                self._send_json(200, entry)
            else:
                self._error(404, f"Not found: {path}", "invalid_request_error", "not_found")
        except _ClientGone:
            self.close_connection = True

    def do_POST(self) -> None:  # noqa: N802
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if "multipart/form-data" in self.headers.get("Content-Type", ""):
                body: Any = _multipart_fields(self.headers.get("Content-Type", ""), raw)
            else:
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
            n = self._record(body)
            if not self._auth_ok():
                return
            route = urlsplit(self.path).path.rstrip("/")
            if route.endswith(("/v1/audio/speech", "/v1/audio/transcriptions")):
                self._audio(route, body, n)
                return
            if not urlsplit(self.path).path.rstrip("/").endswith("/v1/chat/completions"):
                self._error(404, "Not found", "invalid_request_error", "not_found")
                return
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                self._error(400, "'messages' is required", "invalid_request_error")
                return
            self._chat(body, n)
        except _ClientGone:
            self.fake.disconnected.set()
            self.close_connection = True

    def _audio(self, route: str, body: Any, n: int) -> None:
        opts = self.fake.options
        if opts.redirect_audio_to:
            self.send_response(307)
            self.send_header("Location", opts.redirect_audio_to.rstrip("/") + route[route.index("/v1") + 3 :])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if not self._faults(n):
            return
        if route.endswith("/speech"):
            if not isinstance(body, dict) or not isinstance(body.get("input"), str) or not body.get("voice"):
                self._error(400, "'input' and 'voice' are required", "invalid_request_error")
                return
            speed = float(body.get("speed") or 1.0)
            seconds = len(body["input"]) * opts.speech_seconds_per_char / speed
            self._send_bytes(_tone_wav(seconds, opts.speech_sample_rate), "audio/wav")
            return
        fields = body if isinstance(body, dict) else {}
        upload = fields.get("file")
        if not isinstance(upload, dict) or not upload.get("size"):
            self._error(400, "Audio file is required and must not be empty.", "invalid_request_error")
            return
        fmt = fields.get("response_format", "json")
        if fmt == "verbose_json" and opts.refuse_verbose_json:
            msg = "response_format 'verbose_json' is not compatible with this model; use 'json' or 'text'."
            self._error(400, msg, "invalid_request_error", "unsupported_value")
            return
        text = opts.transcript
        if fmt == "text":
            self._send_bytes(text.encode(), "text/plain")
            return
        if fmt != "verbose_json" or opts.transcript_text_only:
            self._send_json(200, {"text": text})
            return
        duration = upload.get("seconds") or 1.0
        sentences = [x for x in re.split(r"(?<=[.!?])\s+", text.strip()) if x] or [text]
        step = duration / len(sentences)
        segments = [
            {
                "id": i,
                "seek": 0,
                "start": round(i * step, 2),
                "end": round((i + 1) * step, 2),
                "text": " " + x,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": -0.2,
                "compression_ratio": 1.0,
                "no_speech_prob": 0.01,
            }
            for i, x in enumerate(sentences)
        ]
        payload = {
            "task": "transcribe",
            "language": opts.transcript_language,
            "duration": duration,
            "text": text,
            "segments": segments,
        }
        self._send_json(200, payload)

    def _send_bytes(self, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self._write(data)

    def _faults(self, n: int) -> bool:
        """The audio routes' share of the faults: False when the request was answered with one."""
        opts = self.fake.options
        if n < opts.rate_limit_first:
            headers = {} if opts.retry_after is None else {"Retry-After": f"{opts.retry_after:g}"}
            self._error(429, "Rate limit reached for requests.", "requests", "rate_limit_exceeded", headers)
            return False
        if n < opts.server_error_first:
            self._error(opts.server_error_status, "The server had an error processing your request.", "server_error")
            return False
        if opts.slow:
            self._wait(opts.slow)
        return True

    def _chat(self, body: dict, n: int) -> None:
        opts = self.fake.options
        if n < opts.rate_limit_first:
            headers = {} if opts.retry_after is None else {"Retry-After": f"{opts.retry_after:g}"}
            self._error(
                429,
                "Rate limit reached for requests. Please try again later.",
                "requests",
                "rate_limit_exceeded",
                headers,
            )
            return
        if n < opts.server_error_first:
            self._error(
                opts.server_error_status, "The server had an error while processing your request.", "server_error"
            )
            return
        if opts.slow:
            self._wait(opts.slow)  # raises _ClientGone when the client gave up meanwhile
        if opts.html_instead:
            page = b"<!doctype html><html><body>Welcome to nginx!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self._write(page)
            return
        text, finish = fake_reply(
            body["messages"],
            body.get("max_tokens", body.get("max_completion_tokens")),
            body.get("stop"),
            opts.reply_words,
        )
        if opts.reply_text is not None:
            text, finish = opts.reply_text, "stop"
        fmt = body.get("response_format")
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind not in (None, "text"):
            assert isinstance(fmt, dict)
            if kind in opts.response_formats:
                spec = fmt.get("json_schema") if kind == "json_schema" else fmt
                schema = spec.get("schema") if isinstance(spec, dict) else None
                value = schema_instance(schema, text.split()) if isinstance(schema, dict) else {"reply": text}
                text, finish = json.dumps(value), "stop"
            elif opts.response_format_refusal:
                self._error(
                    opts.response_format_refusal,
                    f"response_format type '{kind}' is not supported by this server",
                    "invalid_request_error",
                )
                return
        if opts.serial:
            while not self.fake._serial.acquire(timeout=0.02):
                if self._peer_gone() or self.fake._stopping.is_set():
                    raise _ClientGone
        try:
            if body.get("stream"):
                self._stream(body, text, finish)
            else:
                self._complete(body, text, finish)
        finally:
            if opts.serial:
                self.fake._serial.release()

    def _usage(self, body: dict, text: str) -> dict[str, int]:
        prompt = sum(len(str(m.get("content") or "").split()) + 3 for m in body["messages"])
        completion = len(text.split())
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _complete(self, body: dict, text: str, finish: str) -> None:
        opts = self.fake.options
        payload: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": opts.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        }
        if opts.usage:
            payload["usage"] = self._usage(body, text)
        data = json.dumps(payload).encode()
        if opts.cut_after is None and opts.stall_after is None:
            self._send_json(200, payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self._write(data[: len(data) // 2])
        if opts.stall_after is not None:
            self._wait(opts.stall_seconds)
        self._hang_up()

    def _stream(self, body: dict, text: str, finish: str) -> None:
        opts = self.fake.options
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": opts.model,
        }

        def event(payload: Any) -> None:
            data = b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n\n"
            self._write(b"%x\r\n%s\r\n" % (len(data), data))

        def choice(delta: dict, finish_reason: str | None) -> dict:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

        event(choice({"role": "assistant", "content": ""}, None))
        pieces = re.findall(r"\s*\S+", text)
        if text[len("".join(pieces)) :]:  # trailing spaces left by a stop string
            pieces.append(text[len("".join(pieces)) :])
        for i, piece in enumerate(pieces):
            if opts.cut_after is not None and i >= opts.cut_after:
                self._hang_up()
                return
            if opts.stall_after is not None and i >= opts.stall_after:
                self._wait(opts.stall_seconds)
                self._hang_up()
                return
            if opts.chunk_delay:
                self._wait(opts.chunk_delay)
            elif self._peer_gone():
                raise _ClientGone
            event(choice({"content": piece}, None))
            self.fake._count_chunk()
        if not opts.omit_finish_reason:
            event(choice({}, finish))
        stream_options = body.get("stream_options") or {}
        if opts.usage and stream_options.get("include_usage"):
            event({**base, "choices": [], "usage": self._usage(body, text)})
        event(b"[DONE]")
        self._write(b"0\r\n\r\n")


def _tone_wav(seconds: float, rate: int) -> bytes:
    """A 440 Hz tone as a 16-bit mono WAV whose RIFF and data sizes are 0xFFFFFFFF, as OpenAI's streamed WAVs."""
    import struct

    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 440.0 * t) * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return b"RIFF\xff\xff\xff\xffWAVEfmt " + struct.pack("<I", 16) + fmt + b"data\xff\xff\xff\xff" + pcm


def _media_seconds(data: bytes) -> float | None:
    """The length of an encoded upload (Ogg, MP3), as a real server would measure it; None when unreadable."""
    import io

    try:
        import av

        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.audio[0]
            last = 0.0
            for packet in container.demux(stream):
                if packet.pts is not None and packet.duration is not None and stream.time_base is not None:
                    last = max(last, float((packet.pts + packet.duration) * stream.time_base))
            return last or None
    except Exception:  # any decoding failure: the fake then says 1 s
        return None


def _multipart_fields(content_type: str, raw: bytes) -> dict[str, Any]:
    """The fields of a multipart/form-data body; the file becomes {"filename", "content_type", "size", "head" (its
    first 4 bytes), "seconds" (None when unreadable)}. A repeated name (timestamp_granularities[]) keeps a list."""
    import email.parser
    import email.policy
    import io
    import wave

    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            seconds = None
            try:
                with wave.open(io.BytesIO(data), "rb") as w:
                    seconds = w.getnframes() / w.getframerate()
            except (wave.Error, EOFError):
                seconds = _media_seconds(data)
            value: Any = {
                "filename": filename,
                "content_type": part.get_content_type(),
                "size": len(data),
                "seconds": seconds,
                "head": data[:4],
            }
        else:
            value = data.decode("utf-8", "replace")
        name = str(name or "").removesuffix("[]")
        if name in fields:
            fields[name] = [*([fields[name]] if not isinstance(fields[name], list) else fields[name]), value]
        else:
            fields[name] = value
    return fields


@contextlib.contextmanager
def fake_openai_server(**options: Any) -> Iterator[FakeOpenAIServer]:
    """Start a fake OpenAI-compatible server on 127.0.0.1 (ephemeral port) in a daemon thread.
    Keyword options are the fields of FakeOptions, e.g. `fake_openai_server(rate_limit_first=2)`."""
    fake = FakeOpenAIServer(FakeOptions(**options))
    httpd = _HTTPServer(fake)
    fake.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai-server", daemon=True
    )
    thread.start()
    try:
        yield fake
    finally:
        fake._stopping.set()  # ends slow/stall waits so handler threads finish
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------------------------------
# llama.cpp's own server (llama-cpp-python[server]) as a subprocess
# --------------------------------------------------------------------------------------------------


@dataclass
class LlamaCppServer:
    base_url: str  # "http://127.0.0.1:PORT/v1"
    model: str  # the id the server reports on /v1/models (the alias given)
    process: subprocess.Popen
    log_path: Path
    extra: dict = field(default_factory=dict)

    def log_text(self, limit: int = 4000) -> str:
        """The tail of the server's stdout+stderr."""
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""


@contextlib.contextmanager
def llama_cpp_server(
    model_path: str | os.PathLike[str],
    n_ctx: int = 2048,
    *,
    model_alias: str = "local-gguf",
    n_threads: int | None = None,
    startup_timeout: float = 120.0,
    extra_args: Sequence[str] = (),
) -> Iterator[LlamaCppServer]:
    """Run llama_cpp.server (through tests/support/llama_server.py) on a free loopback port serving `model_path`; yields once
    /v1/models answers, and terminates (then kills) the process on exit. Raises RuntimeError with
    the server's output if it dies or does not answer within `startup_timeout` seconds."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "tests.support.llama_server",
        "--model",
        str(model_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--model_alias",
        model_alias,
        *extra_args,
    ]
    if n_threads is not None:
        cmd += ["--n_threads", str(n_threads)]
    log_dir = Path(tempfile.mkdtemp(prefix="llama-cpp-server-"))
    log_path = log_dir / "server.log"
    base_url = f"http://127.0.0.1:{port}/v1"
    with open(log_path, "wb") as log:  # a file, not a pipe: a full pipe would block the server
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)},
            cwd=REPO_ROOT,
        )
    server = LlamaCppServer(base_url=base_url, model=model_alias, process=proc, log_path=log_path)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with code {proc.returncode}:\n{server.log_text()}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as resp:
                    listing = json.load(resp)
                ids = [m.get("id") for m in listing.get("data", [])]
                if ids:
                    server.model = ids[0] if model_alias not in ids else model_alias
                server.extra["models"] = listing
                break
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"llama_cpp.server did not answer on {base_url} within {startup_timeout:g} s:\n{server.log_text()}"
                )
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        with contextlib.suppress(OSError):
            log_path.unlink()
            log_dir.rmdir()
