"""The image studio's own errors: a request or upload refused before any model runs, and an image that is not in
the user's gallery. Core raises them; the UI turns them into messages."""

from __future__ import annotations

from core.errors import InputError


class ImageInputError(InputError):
    """A request or upload refused before any model runs. `str(e)` is the message for the user;
    `code` says which rule refused it (tests and the UI rely on it, so codes are stable)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.user_message = message


class ImageNotFoundError(LookupError):
    """No such image for this user (someone else's and missing look the same on purpose)."""
