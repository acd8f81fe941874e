"""Error types every capability shares. The UI turns them into messages; core raises them."""

from __future__ import annotations

from backends.text.base import BackendError  # noqa: F401  (re-exported: the UI imports errors from core only)


class InputError(ValueError):
    """Input the user can fix; the message says how."""


class NotFoundError(LookupError):
    """A conversation or draft that does not exist or belongs to someone else (indistinguishable on purpose)."""


class BusyError(RuntimeError):
    """Too much at once from this user (or everyone): try again in `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceededError(InputError):
    """A save that would take the user past their disk quota (STUDIO_USER_QUOTA_MB); nothing was written."""


class StorageFullError(InputError):
    """The server's disk (or its SQLite database) is full. Not the user's doing, but shown the same way: a clear
    message, no traceback; nothing already saved was harmed and no partial item was kept."""


class ModelDownloadError(InputError):
    """A model download that cannot start or did not finish (hub offline, short disk, corrupt file, already
    downloading); the message says why and what to do."""


class ModelPermissionError(InputError):
    """This caller may not download or delete models on this server; the message says who may."""
