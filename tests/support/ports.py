"""Loopback ports for servers the tests start in another process: picked where the kernel never hands out
ports on its own, and waited for until a killed server's port can be bound again."""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 20000  # below the usual ephemeral range (32768-60999), above well-known and registered dev ports


def ephemeral_range() -> tuple[int, int] | None:
    """The ports Linux gives to outgoing connections (connect() without bind), or None where unknown."""
    try:
        low, high = (int(n) for n in PORT_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


def can_bind(port: int, reuse: bool = False) -> bool:
    """Whether 127.0.0.1:port can be bound now. `reuse=True` binds as Gradio's port check and uvicorn do
    (SO_REUSEADDR: a dead server's TIME_WAIT connections do not count); without it, nothing may be there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is bound to, for a server that binds it itself a moment later.

    Chosen below the ephemeral range where the kernel says what that is: a port from bind(port 0) lies inside
    it, and in the seconds before the server binds it (or after a killed server left it, before a restart
    binds it again) any outgoing connection on the machine may be given that same port as its local end;
    that connection, or its TIME_WAIT for 60 s after, then refuses the server's bind even with SO_REUSEADDR
    ("Cannot find empty port"). Outside the range only an explicit bind can take it."""
    span = ephemeral_range()
    if span is not None and span[0] - LOWEST >= 1000:
        rng = random.SystemRandom()
        for _ in range(200):
            port = rng.randrange(LOWEST, span[0])
            if can_bind(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_bindable(port: int, timeout: float = 70.0) -> None:
    """Block until 127.0.0.1:port can be bound as the server will bind it (SO_REUSEADDR), for a restart on the
    port of a server just killed. The bound covers a TIME_WAIT someone else's connection left there (60 s)."""
    deadline = time.monotonic() + timeout
    while not can_bind(port, reuse=True):
        if time.monotonic() > deadline:
            raise TimeoutError(f"127.0.0.1:{port} still held after {timeout}s (see `ss -tanp | grep :{port}`)")
        time.sleep(0.1)
