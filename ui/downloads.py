"""Files handed to the browser for download: what a core service exported, written to a fresh temporary
folder so Gradio can serve it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr


def download(name: str, data: bytes | str, visible: bool | str = True) -> gr.File:
    """A download of `data` (text is written as UTF-8) under the file name `name`, visible unless told
    ("hidden": in the page but not shown, for a script that starts the download itself)."""
    path = Path(tempfile.mkdtemp(prefix="studio-export-")) / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return gr.File(value=str(path), visible=visible)
