"""How the image tab shows things: mode names, the one-line licence with its link, the status line with its
progress bar, gallery values and preview thumbnails. No events here (ui/images.py wires them)."""

from __future__ import annotations

import html
import re
from typing import Any

from backends.image.base import ImageCapabilities
from core.images.service import JobUpdate
from core.images.store import GalleryImage
from core.safe_html import safe_markdown

MODE_LABELS = {
    "txt2img": "Text to image",
    "img2img": "Image to image",
    "sketch": "Sketch to image",
    "inpaint": "Inpaint",
    "random": "Random faces",
}
PREVIEW_SIDE = 384  # previews are shown small: the browser gets a cheap thumbnail, not a full-size image
PROGRESS_CELLS = 20
_URL = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)]")


def _link(url: str, text: str) -> str:
    return (
        f'<a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener noreferrer" '
        f'aria-label="{html.escape(text, quote=True)} (opens in a new tab)">{html.escape(text)}</a>'
    )


def licence_html(caps: ImageCapabilities) -> str:
    """The model's terms in one line: its note, each address in it as a link, and a link to the full terms when
    the backend names them. Every link opens in a new tab and says so to a screen reader."""
    note = caps.licence_note.strip()
    if not note:
        return ""
    parts, last = [], 0
    for match in _URL.finditer(note):
        parts += [html.escape(note[last : match.start()]), _link(match.group(), match.group().split("://", 1)[1])]
        last = match.end()
    parts.append(html.escape(note[last:]))
    if caps.licence_url:
        parts.append(" " + _link(caps.licence_url, "Read the terms"))
    return f'<p class="image-licence-line">{"".join(parts)}</p>'


def mode_choices(modes: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(MODE_LABELS.get(m, m), m) for m in modes]


def gallery_pictures(images: list[GalleryImage]) -> list[str]:
    """A gallery's value: pictures without captions. A caption is text inside the button Gradio names "Thumbnail k
    of n", which axe reports as a name that hides what it shows; the seed and the other parameters show in the
    text boxes beside the galleries and in the status line."""
    return [str(g.path) for g in images]


def bar(step: int, total: int) -> str:
    if total <= 0:
        return ""
    filled = round(PROGRESS_CELLS * min(step, total) / total)
    return "▰" * filled + "▱" * (PROGRESS_CELLS - filled) + " "


def status_line(update: JobUpdate) -> str:
    lines = [f"{bar(update.step, update.total) if update.stage in ('running', 'loading') else ''}**{update.text}**"]
    lines += [f"Note: {note}" for note in update.notes]
    return safe_markdown("\n\n".join(lines))  # notes can quote a file name or a server


def thumbnail(image: Any) -> Any:
    small = image.copy()
    small.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    return small
