"""How problems reach the user: a clear gr.Error toast, never a traceback."""
from __future__ import annotations

import gradio as gr


def user_error(message: str, title: str = "Error") -> gr.Error:
    """An expected, user-fixable problem: shown as a toast, not logged as a server fault."""
    return gr.Error(str(message).strip("'\""), title=title, print_exception=False)
