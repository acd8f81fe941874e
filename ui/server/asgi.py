"""What the two ASGI middlewares in front of Gradio (ui/server/guard.py, ui/server/api_args.py) share: the
types, a JSON error answer, and handing on a request body that was already read."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


async def respond(
    send: Send,
    status: int,
    message: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A JSON answer {"error", "detail"} (Gradio's page shows `detail` in its toast)."""
    body = json.dumps({"error": message, "detail": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(extra or []),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def replay(messages: list[dict], rest: Receive) -> Receive:
    """A receive that gives back the messages already read, then goes on with the request's own (a
    disconnect, for streaming responses)."""
    pending = list(messages)

    async def receive() -> dict:
        if pending:
            return pending.pop(0)
        return await rest()

    return receive
