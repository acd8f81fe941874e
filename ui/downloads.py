"""Files handed to the browser for download: what a core service exported, written to a fresh temporary
folder so Gradio can serve it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr


def download(name: str, data: bytes | str) -> gr.File:
    """A visible download of `data` (text is written as UTF-8) under the file name `name`."""
    path = Path(tempfile.mkdtemp(prefix="studio-export-")) / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return gr.File(value=str(path), visible=True)
