"""What the condense tab shows about a run, as text: the one status line (what runs, the elapsed time, the time
left), the notes as they arrive, the request for a PDF's password, and which actions apply (Cancel only while a
run goes). Also the tab's kept upload: the file stays in the box, so it is checked again on every run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gradio as gr

from core.condenser.documents import EncryptedDocument
from core.condenser.service import CondenseUpdate, InputFile
from core.safe_html import safe_markdown
from core.security.uploads import UploadError, UploadRegistry
from ui.errors import user_error

UI_TICK_S = 0.5  # while the model works, the status (elapsed, time left) is repeated this often
HAS_RESULT = "condense-has-result"  # on the summary once it shows a run: on a phone it then comes first (CSS)
MAX_PASSWORD_CHARS = 256


def clock(seconds: float) -> str:
    """0:07, 12:30, 1:02:03."""
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def time_left(eta_s: float | None) -> str:
    if eta_s is None:
        return "estimating time left…"  # nothing has finished yet: any number would be a guess
    if eta_s < 5:
        return "almost done"
    if eta_s < 60:
        return f"about {max(5, 5 * round(eta_s / 5))} s left"
    if eta_s < 3600:
        return f"about {math.ceil(eta_s / 60)} min left"
    return f"about {eta_s / 3600:.1f} h left"


def running_status(upd: CondenseUpdate) -> str:
    """“Summarising chunk 3 of 6 (pp. 5-7)…” and, under it, “40% · 1:12 elapsed · about 2 min left”."""
    line = f"{round(upd.fraction * 100)}% · {clock(upd.elapsed_s)} elapsed · {time_left(upd.eta_s)}"
    return safe_markdown(f"**{upd.status}**") + f"\n\n{line}"


def finished_status(upd: CondenseUpdate) -> str:
    return safe_markdown(f"**Done** in {clock(upd.elapsed_s)}. {upd.status.removeprefix('Done. ')}")


def notes_so_far(upd: CondenseUpdate) -> str:
    """Each chunk's notes as soon as it is done, under the status, until the summary replaces them."""
    if not upd.notes:
        return "*The notes of each part appear here as soon as it is summarised.*"
    return safe_markdown(f"#### Notes so far\n\n{upd.notes}")


def password_request(exc: EncryptedDocument) -> str:
    what = exc.message.removesuffix(".")
    if exc.wrong_password:
        return safe_markdown(f"**{what}.** Type the password again and press Condense; the file stays uploaded.")
    name = what.split(" is password-protected")[0]
    return safe_markdown(
        f"**{name} is password-protected.** Type its password in the box under the file and press Condense."
    )


def running() -> tuple[Any, Any]:
    """(Condense, Cancel) while a run goes: Condense waits, Cancel shows."""
    return gr.Button(interactive=False, value="Condensing…"), gr.Button(visible=True)


def idle() -> tuple[Any, Any]:
    """(Condense, Cancel) with nothing running: Cancel is gone."""
    return gr.Button(interactive=True, value="Condense"), gr.Button(visible=False)


def kept_upload(uploads: UploadRegistry, who: str, value: Any, password: str, ttl_h: float) -> InputFile:
    """A file in the tab's upload box, checked as an upload of this caller's (core/security/uploads.py) on every
    run. It is not disposable: it stays for the next run (other options) until it is taken out of the box or the
    upload expires, when the message says to upload it again."""
    name = Path(str(value.get("path") if isinstance(value, dict) else value)).name
    try:
        path = uploads.resolve(who, value, "The document")
    except UploadError as exc:
        if exc.code == "too_large":
            raise user_error(str(exc), title="Not condensed") from None
        # One answer for an expired upload and for a path that never was one: nothing about the server leaks.
        raise user_error(
            f"“{name}” is no longer uploaded (uploads are kept {ttl_h:g} h). Take it out of the box and upload it "
            "again.",
            title="Upload again",
        ) from None
    return InputFile(str(path), name, disposable=False, owner=who, password=password[:MAX_PASSWORD_CHARS])
