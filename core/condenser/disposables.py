"""The upload copies a condense run reads: held while runs use them, deleted (with the folder an
upload put each one in) when the last run lets go, or at once when no run ever took them."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from core.condenser.request import InputFile

log = logging.getLogger(__name__)


class Disposables:
    """Disposable inputs held by runs in progress. Gradio stores equal uploads at one path (named by
    their content), so two runs may share a file: it is deleted when the last of them lets go."""

    def __init__(self, release: Callable[[str, str], bool] | None = None) -> None:
        self._uses: dict[str, int] = {}
        self._lock = threading.Lock()
        # release(owner, path) -> True when no other uploader holds the file (core/security/uploads.py).
        self._release = release

    def _unheld(self, files: Sequence[InputFile]) -> list[InputFile]:
        return [f for f in files if self._release is None or self._release(f.owner, f.path)]

    def hold(self, files: Sequence[InputFile]) -> None:
        with self._lock:
            for f in files:
                self._uses[f.path] = self._uses.get(f.path, 0) + 1

    def release(self, files: Sequence[InputFile]) -> None:
        with self._lock:
            gone = []
            for f in files:
                self._uses[f.path] -= 1
                if self._uses[f.path] <= 0:
                    del self._uses[f.path]
                    gone.append(f)
        discard(self._unheld(gone))

    def discard_unused(self, files: Sequence[InputFile]) -> None:
        """Delete disposable files no run holds (a request refused before its run began)."""
        with self._lock:
            free = [f for f in files if f.path not in self._uses]
        discard(self._unheld(free))


def discard(files: Sequence[InputFile]) -> None:
    """Delete disposable inputs and the folder an upload put each one in, if it is left empty."""
    for f in files:
        if not f.disposable:
            continue
        try:
            os.unlink(f.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not delete the uploaded copy %s: %s", f.path, exc)
        with contextlib.suppress(OSError):
            Path(f.path).parent.rmdir()  # only succeeds when empty: never takes anything else
