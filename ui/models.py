"""The Models tab: every model the app knows (core.models.service.ModelsService) with its state and why, downloads with
progress, cancel and delete; it also wires the pickers, lines and "Get more models" buttons the other tabs made
(ui/model_pickers.py), so they follow downloads and deletes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from core.models.hub import DownloadCancelled
from core.models.service import DownloadProgress, ModelEntry, ModelsService
from core.safe_html import safe_markdown
from ui.errors import user_error
from ui.identity import ensure_browser_id
from ui.model_pickers import (
    MODEL_ERRORS,
    PRIVATE,
    ModelPickers,
    format_bytes,
    manager_user,
    md,
    progress_line,
    user_or_none,
)

MODELS_TAB = "models"
HEADERS = ["Model", "Kind", "State", "Size", "RAM needed", "Licence", "Good for"]
STATES = {"ready": "ready", "downloadable": "can download", "downloading": "downloading…", "unavailable": "unavailable"}
COLUMN_WIDTHS = ["22%", "10%", "13%", "12%", "8%", "15%", "20%"]  # Kind fits "recogniser" on a phone
KIND_LABELS = {"speech": "voice", "transcribe": "recogniser"}  # text to speech; speech to text


def _kind(entry: ModelEntry) -> str:
    return KIND_LABELS.get(entry.kind, entry.kind)


def _size(entry: ModelEntry) -> str:
    if entry.size_on_disk:
        return f"{format_bytes(entry.size_on_disk)} on disk"
    if entry.download_size:
        # A voice or recogniser that pip or apt brings (its reason says the command) is installed, not downloaded.
        how = "to install" if entry.repo is None and entry.kind in KIND_LABELS else "to download"
        return f"{format_bytes(entry.download_size)} {how}"
    return "—"


def _rows(entries: list[ModelEntry]) -> list[list[str]]:
    return [
        [
            e.name + (" (recommended)" if e.recommended else ""),
            _kind(e),
            STATES.get(e.state, e.state),
            _size(e),
            f"{e.ram_gb:g} GB" if e.ram_gb else "—",
            e.licence or "—",
            e.good_for or "—",
        ]
        for e in entries
    ]


def _details(entry: ModelEntry | None, managing: tuple[bool, str], hub_reason: str) -> str:
    if entry is None:
        return "*Pick a model in the table or the list above to see what it needs and what you can do with it.*"
    lines = [
        f"### {md(entry.name)}",
        f"**{STATES.get(entry.state, entry.state).capitalize()}**" + (f": {md(entry.reason)}" if entry.reason else ""),
        "",
        f"- Kind: {_kind(entry)} · source: {entry.source}",
        f"- Spec: `{entry.spec.replace('`', '')}`",
        f"- Size: {_size(entry)}" + (f" · needs about {entry.ram_gb:g} GB of RAM" if entry.ram_gb else ""),
        f"- Licence: {md(entry.licence or 'not stated')}",
    ]
    if entry.good_for:
        lines.append(f"- Good for: {md(entry.good_for)}")
    allowed, why = managing
    if entry.state in ("downloadable", "downloading") or entry.deletable:
        if not allowed:
            lines.append(f"\n*You cannot download or delete models here: {md(why)}*")
        elif entry.state == "downloadable" and hub_reason:
            lines.append(f"\n*{md(hub_reason)}*")
    return safe_markdown("\n".join(lines))


def build_models_tab(
    demo: gr.Blocks, service: ModelsService, pickers: ModelPickers, browser_id: gr.BrowserState, tabs: gr.Tabs
) -> None:
    """The Models tab; then wires every picker, note and "Get more models" button the other tabs made."""
    with gr.Tab("Models", id=MODELS_TAB):
        gr.Markdown(
            "Every model this app knows: what runs now, what you can download, and why the others are off. "
            "Pick one to download it, cancel a download, or delete a download to free space."
        )
        hub_line = gr.Markdown(elem_id="models-hub")
        keys = gr.State([])
        table = gr.Dataframe(
            value=_rows(service.entries()),
            headers=HEADERS,
            datatype="str",
            interactive=False,
            wrap=True,
            column_widths=COLUMN_WIDTHS,
            label="Models",
            elem_id="models-table",
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=2):
                chosen = gr.Dropdown(
                    choices=[(e.name, e.key) for e in service.entries()],
                    value=None,
                    label="Selected model",
                    elem_id="models-pick",
                )
                details = gr.Markdown(_details(None, (True, ""), ""), elem_id="models-details")
            with gr.Column(scale=1):
                download_btn = gr.Button("Download", variant="primary", interactive=False, elem_id="models-download")
                cancel_btn = gr.Button("Cancel download", interactive=False, elem_id="models-cancel")
                delete_btn = gr.Button("Delete", variant="stop", interactive=False, elem_id="models-delete")
                with gr.Row(visible=False) as confirm_row:
                    confirm_btn = gr.Button("Yes, delete it", variant="stop", size="sm", elem_id="models-delete-yes")
                    keep_btn = gr.Button("Keep it", size="sm", elem_id="models-delete-no")
                refresh_btn = gr.Button("Refresh list", size="sm", elem_id="models-refresh")
        status = gr.Markdown(elem_id="models-status")

    def managing(user: str | None) -> tuple[bool, str]:
        if user is None:
            return False, "reload the page so this browser has an identity."
        return service.can_manage(user)

    def hub_markdown(user: str | None) -> str:
        hub = service.hub()
        allowed, why = managing(user)
        parts = ["Downloads from the Hugging Face hub are on." if hub.online else f"**{md(hub.reason)}**"]
        if not allowed:
            parts.append(f"**You cannot download or delete models here:** {md(why)}")
        return safe_markdown(" ".join(parts))

    def actions(entry: ModelEntry | None, user: str | None) -> list[Any]:
        """download, cancel, delete buttons for `entry` as this user may use them."""
        allowed, _ = managing(user)
        online = service.hub().online
        can_get = bool(entry and allowed and online and entry.state == "downloadable")
        running = bool(entry and pickers.downloading(entry.key))
        size = format_bytes(entry.download_size) if entry and entry.download_size else ""
        label = f"Download ({size})" if size and entry and entry.state != "ready" else "Download"
        return [
            gr.Button(label, interactive=can_get),
            gr.Button(interactive=running and allowed),
            gr.Button(interactive=bool(entry and allowed and entry.deletable and not running)),
        ]

    def view(key: str | None, user: str | None, refresh: bool = False) -> list[Any]:
        """table, keys, chosen, details, hub line, the three buttons, confirm row."""
        entries = service.entries(refresh=refresh)
        entry = next((e for e in entries if e.key == key), None)
        names = [(e.name, e.key) for e in entries]
        return [
            gr.Dataframe(value=_rows(entries), headers=HEADERS, column_widths=COLUMN_WIDTHS),
            [e.key for e in entries],
            gr.Dropdown(choices=names, value=entry.key if entry else None),
            _details(entry, managing(user), service.hub().reason),
            hub_markdown(user),
            *actions(entry, user),
            gr.Row(visible=False),
        ]

    view_outputs = [table, keys, chosen, details, hub_line, download_btn, cancel_btn, delete_btn, confirm_row]
    everything = view_outputs + pickers.components
    current = {browser_id, chosen, *(d for _, d in pickers.pickers)}

    def refreshing(refresh: bool):
        """The list, the selected model and every picker, as they are now (`refresh`: look at the disk again)."""

        def handler(v: dict, request: gr.Request) -> list[Any]:
            user = user_or_none(ensure_browser_id(v[browser_id]), request)  # a first visit sees what it may do
            return [*view(v[chosen], user, refresh=refresh), *pickers.refreshed(v)]

        return handler

    demo.load(refreshing(False), current, everything, show_progress="hidden", **PRIVATE)  # no flicker on every load

    def on_pick(bid, key, request: gr.Request):
        return view(key, user_or_none(bid, request))

    chosen.input(on_pick, [browser_id, chosen], view_outputs, **PRIVATE)

    def on_row(bid, shown_keys, evt: gr.SelectData, request: gr.Request):
        row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        key = shown_keys[row] if isinstance(row, int) and 0 <= row < len(shown_keys) else None
        return view(key, user_or_none(bid, request))

    table.select(on_row, [browser_id, keys], view_outputs, **PRIVATE)

    refresh_btn.click(refreshing(True), current, everything, **PRIVATE)

    def download(bid, key, request: gr.Request, progress=gr.Progress()) -> Iterator[Any]:
        user = manager_user(bid, request)
        if not key:
            raise user_error("Pick a model first.", title="Nothing to download")
        last: DownloadProgress | None = None
        off, on = gr.Button(interactive=False), gr.Button(interactive=True)
        try:
            for last in pickers.download(user, key):
                entry = next((e for e in service.entries() if e.key == key), None)
                details_now = _details(entry, (True, ""), "")
                yield progress_line(last, progress), details_now, off, on, off
        except DownloadCancelled as exc:
            yield f"**{md(str(exc))}**", gr.Markdown(), gr.Button(), off, gr.Button()
            return
        except MODEL_ERRORS as exc:
            raise user_error(str(exc), title="Not downloaded") from None
        name = next((e.name for e in service.entries() if e.key == key), key)
        done = last is not None and last.finished
        line = f"**{md(name)} is ready.**" if done else f"**Download of {md(name)} stopped.**"
        yield line, gr.Markdown(), gr.Button(), off, gr.Button()

    fetching = download_btn.click(
        download,
        [browser_id, chosen],
        [status, details, download_btn, cancel_btn, delete_btn],
        show_progress_on=[status],
        **PRIVATE,
    )
    pickers.changed.append(fetching)

    def cancel(bid, key, request: gr.Request):
        try:
            cancelled = bool(key) and pickers.cancel(manager_user(bid, request), key)
        except MODEL_ERRORS as exc:
            raise user_error(str(exc), title="Not cancelled") from None
        if not cancelled:
            raise user_error("Nothing is downloading for this model.", title="Nothing to cancel")
        return "**Cancelling…** (what was fetched is kept, so a later download continues from there)"

    cancel_btn.click(cancel, [browser_id, chosen], [status], queue=False, **PRIVATE)

    delete_btn.click(lambda: gr.Row(visible=True), None, [confirm_row], **PRIVATE)
    keep_btn.click(lambda: gr.Row(visible=False), None, [confirm_row], **PRIVATE)

    def delete(bid, key, request: gr.Request):
        user = manager_user(bid, request)
        try:
            freed = service.delete(user, key)
        except MODEL_ERRORS as exc:
            raise user_error(str(exc), title="Not deleted") from None
        return f"**Deleted: {format_bytes(freed)} freed.**", gr.Row(visible=False)

    deleting = confirm_btn.click(delete, [browser_id, chosen], [status, confirm_row], **PRIVATE)
    pickers.changed.append(deleting)

    # -- the other tabs: "Get more models" opens this tab; pickers follow downloads and deletes ----------------
    for button in pickers.get_more:
        button.click(lambda: gr.Tabs(selected=MODELS_TAB), None, [tabs], **PRIVATE)
    for event in pickers.changed:
        event.then(refreshing(True), current, everything, show_progress="hidden", **PRIVATE)
    for show, inputs, outputs in pickers.offers:
        demo.load(show, inputs, outputs, show_progress="hidden", **PRIVATE)
        for event in pickers.changed:
            event.then(show, inputs, outputs, show_progress="hidden", **PRIVATE)
