"""The send and receive wrappers the HTTP edge (ui/server/guard.py) puts around Gradio: a body read or
streamed under a size cap, headers added to every answer, a full queue answered as "busy", and the
event ids a reply names recorded for their caller."""

from __future__ import annotations

import json

from core.security.limits import SessionOwners
from ui.server.asgi import Receive, Send


class BodyTooLarge(Exception):
    """The request body went past the route's limit (the guard answers 413)."""


QUEUE_RETRY_S = 10


def busy_when_full(send: Send) -> Send:
    """Gradio answers a full queue with 503 "Queue is full. Max size is N..."; say it as a person would,
    as the same "busy" answer the rate limit gives (429 with Retry-After), so clients back off and retry
    instead of counting a server error."""
    held: dict = {}

    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start" and message["status"] == 503:
            held["start"] = message
            return
        if "start" in held and message["type"] == "http.response.body":
            body = message.get("body", b"")
            if b"Queue is full" in body:
                text = f"Busy: the server has all the work it can queue right now; retry in {QUEUE_RETRY_S} s."
                body = json.dumps({"error": text, "detail": text}).encode()
                start = held.pop("start")
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                await send(
                    {
                        **start,
                        "status": 429,
                        "headers": [
                            *headers,
                            (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(QUEUE_RETRY_S).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
            await send(held.pop("start"))
        await send(message)

    return wrapped


def record_event(send: Send, events: SessionOwners, caller: str) -> Send:
    """Record the event id a reply names under `caller` before the client can see it."""

    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.body" and b'"event_id"' in message.get("body", b"")[:64]:
            try:
                reply = json.loads(message["body"])
            except ValueError:
                reply = None
            event_id = reply.get("event_id") if isinstance(reply, dict) else None
            if isinstance(event_id, str):
                events.claim(event_id, caller)
        await send(message)

    return wrapped


def with_headers(send: Send, extra: list[tuple[bytes, bytes]], started: dict[str, bool] | None = None) -> Send:
    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            if started is not None:
                started["yes"] = True
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks, total = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def capped(receive: Receive, limit: int) -> Receive:
    total = 0

    async def wrapped() -> dict:
        nonlocal total
        message = await receive()
        if message["type"] == "http.request":
            total += len(message.get("body", b""))
            if total > limit:
                raise BodyTooLarge()
        return message

    return wrapped
