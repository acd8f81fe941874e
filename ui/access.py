"""The "API access" panel: make a personal API token (shown once), see and revoke yours. Calls that
send it act as you, so what they make shows in your tabs."""

from __future__ import annotations

import gradio as gr

from core.security.tokens import ApiAccess
from ui.identity import ensure_browser_id, user_id

PRIVATE = dict(api_visibility="private")


def build_access_panel(demo: gr.Blocks, access: ApiAccess, browser_id: gr.BrowserState) -> None:
    with gr.Accordion("API access", open=False, elem_id="api-access"):
        gr.Markdown(
            "Scripts and agents call this app's API with a personal token: "
            '`Client(url, headers={"Authorization": "Bearer <token>"})`. What they make is kept '
            "under your name. A token is shown once; keep it like a password."
        )
        listing = gr.Markdown(elem_id="api-tokens")
        shown = gr.Textbox(
            label="Your new token (copy it now: it is not shown again)",
            visible=False,
            interactive=False,
            buttons=["copy"],
            elem_id="api-new-token",
        )
        with gr.Row():
            make_btn = gr.Button("Create a token", size="sm")
            revoke_btn = gr.Button("Revoke all my tokens", size="sm", variant="stop")

    def on_open(bid, request: gr.Request):
        return access.describe(user_id(ensure_browser_id(bid), request))

    def make(bid, request: gr.Request):
        user = user_id(bid, request)
        token = access.issue(user)
        return gr.Textbox(value=token, visible=True), access.describe(user)

    def revoke(bid, request: gr.Request):
        user = user_id(bid, request)
        count = access.revoke_all(user)
        gr.Info(f"Revoked {count} token(s).")
        return gr.Textbox(value="", visible=False), access.describe(user)

    demo.load(on_open, [browser_id], [listing], **PRIVATE)
    make_btn.click(make, [browser_id], [shown, listing], **PRIVATE)
    revoke_btn.click(revoke, [browser_id], [shown, listing], **PRIVATE)
