"""The image tab's file inputs as the browser sends them: every upload is checked to be the caller's own
(core.security.uploads) before anything opens it; the editors' values taken apart; the blank sketch canvas."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from core.security.uploads import UploadRegistry

SKETCH_CANVAS = (512, 512)


def files_as_sent(handler, inputs: list, files: list):
    """`handler` for an event with preprocess=False: every input but `files` still goes through its component's
    own preprocess; the file inputs arrive as the browser sent them (upload references, checked by `owned_upload`).
    Gradio's own preprocessing would open an image, and the image editor's decode and re-save it under a new
    server path, before any check of whose upload it is (and the re-saved path is nobody's upload)."""
    plain = [(i, c) for i, c in enumerate(inputs) if not any(c is f for f in files)]

    def prepared(args: tuple) -> list:
        values = list(args)
        for i, component in plain:
            values[i] = component.preprocess(values[i])
        return values

    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def run_stream(*args, **kwargs):
            yield from handler(*prepared(args), **kwargs)

        return run_stream

    @functools.wraps(handler)
    def run(*args, **kwargs):
        return handler(*prepared(args), **kwargs)

    return run


def editor_paths(value: Any) -> tuple[Any, list]:
    """(background or composite, painted layers) of an ImageEditor value as sent (upload references)."""
    if not isinstance(value, dict):
        return None, []
    layers = [p for p in value.get("layers") or [] if p]
    return value.get("background") or value.get("composite"), layers


def blank_canvas() -> dict:
    from PIL import Image

    return {"background": Image.new("RGB", SKETCH_CANVAS, "white"), "layers": [], "composite": None}


def sketch_path(value: Any) -> Any:
    return value.get("composite") or value.get("background") if isinstance(value, dict) else None


def owned_upload(uploads: UploadRegistry, who: str, value: Any, what: str) -> str | None:
    """The checked path of a file input (None when none was given): only the caller's own uploads."""
    if value is None or value == "":
        return None
    return str(uploads.resolve(who, value, what))
