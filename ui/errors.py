"""How problems reach the user: a clear gr.Error toast, never a traceback."""

from __future__ import annotations

import html

import gradio as gr


def user_error(message: str, title: str = "Error") -> gr.Error:
    """An expected, user-fixable problem: shown as a toast, not logged as a server fault. Toasts
    render HTML, so the text is escaped: "<a local folder>" must show, and a model's or a file's
    text must never become markup."""
    return gr.Error(html.escape(str(message).strip("'\""), quote=False), title=title, print_exception=False)
