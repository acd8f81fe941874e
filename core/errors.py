"""Error types every capability shares. The UI turns them into messages; core raises them."""
from __future__ import annotations


class InputError(ValueError):
    """Input the user can fix; the message says how."""


class BusyError(RuntimeError):
    """Too much at once from this user (or everyone): try again in `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
