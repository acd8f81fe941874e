"""What goes into the page's <head> through launch(head=...): the script that mints a fresh browser's id before
Gradio's first event (ui/identity.py, ui/js/browser_id.js) and the repairs of Gradio's own components'
accessibility (ui/js/a11y_repairs.js)."""

from __future__ import annotations

from pathlib import Path

from ui.identity import browser_id_head

_JS = Path(__file__).parent / "js"


def page_head(secret: str) -> str:
    """`secret` is the one gr.BrowserState encrypts the browser id with (ui/identity.browser_state)."""
    repairs = (_JS / "a11y_repairs.js").read_text(encoding="utf-8")
    return browser_id_head(secret) + f"<script>{repairs}</script>"
