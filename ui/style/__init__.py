"""The page's CSS: one file per tab (chat.css, writer.css, condenser.css, images.css, speech.css, library.css,
models.css), voice.css for "Read aloud" outside the Speech tab, plus base.css for what every tab shares, joined in
that order into the one stylesheet Gradio serves."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent
ORDER = ("base", "chat", "writer", "condenser", "images", "speech", "voice", "library", "models")


def page_css() -> str:
    parts = []
    for name in ORDER:
        path = _HERE / f"{name}.css"
        if path.is_file():
            parts.append(f"/* {name}.css */\n" + path.read_text(encoding="utf-8"))
    return "\n".join(parts)
