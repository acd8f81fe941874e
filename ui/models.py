"""The Models tab (every model the app knows, downloads with progress, cancel, delete) and the model pickers of the
other tabs: ModelPickers makes each tab's picker and "Get more models" button, and the Models tab refreshes them after
a download or a delete and on page load. Everything is a call into core.models.service.ModelsService."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import gradio as gr

from core.errors import BackendError, InputError, NotFoundError
from core.models.hub import DownloadCancelled
from core.models.service import DownloadProgress, ModelEntry, ModelsService
from core.safe_html import safe_markdown
from ui.errors import user_error
from ui.identity import ensure_browser_id, user_id

PRIVATE = dict(api_visibility="private")
MODELS_TAB = "models"
HEADERS = ["Model", "Kind", "State", "Size", "RAM needed", "Licence", "Good for"]
STATES = {"ready": "ready", "downloadable": "can download", "downloading": "downloading…", "unavailable": "unavailable"}
MD_SPECIAL = re.compile(r"[\\`*_\[\]<>#|~]")
COLUMN_WIDTHS = ["24%", "6%", "11%", "13%", "8%", "16%", "22%"]
STARTER_SPEC = "embedded"  # the small built-in model: it answers, but writes rough drafts
MODEL_ERRORS: tuple[type[Exception], ...] = (InputError, NotFoundError, BackendError)  # incl. ModelDownloadError


def md(text: str) -> str:
    """Plain text (a model's name, a reason, a licence) shown as itself inside Markdown: HF_HUB_OFFLINE keeps its
    underscores, a name with * or [ ] makes no markup."""
    return MD_SPECIAL.sub(r"\\\g<0>", text)


def format_bytes(n: float | None) -> str:
    if not n:
        return "—"
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("bytes", "KB") else f"{n:.1f} {unit}"
        n /= 1000
    return ""  # unreachable


def _size(entry: ModelEntry) -> str:
    if entry.size_on_disk:
        return f"{format_bytes(entry.size_on_disk)} on disk"
    if entry.download_size:
        return f"{format_bytes(entry.download_size)} to download"
    return "—"


def _rows(entries: list[ModelEntry]) -> list[list[str]]:
    return [
        [
            e.name + (" (recommended)" if e.recommended else ""),
            e.kind,
            STATES.get(e.state, e.state),
            _size(e),
            f"{e.ram_gb:g} GB" if e.ram_gb else "—",
            e.licence or "—",
            e.good_for or "—",
        ]
        for e in entries
    ]


def progress_line(p: DownloadProgress, progress: Any) -> str:
    """The status line while a download runs. With a size known, gr.Progress draws the bar and its text over the
    line (which stays empty so the two never overlap); otherwise the line says how far it got."""
    if p.total_bytes:
        progress(min(1.0, p.done_bytes / p.total_bytes), desc=p.text)
        return ""
    return f"**{md(p.text)}**"


class ModelPickers:
    """The model pickers of every tab (each shows only what runs now) and their "Get more models" buttons; the
    Models tab wires them once everything is built (wire()). Also holds the cancel event of each download this server
    runs (one per model: the service refuses a second)."""

    def __init__(self, service: ModelsService) -> None:
        self.service = service
        self.pickers: list[tuple[str, gr.Dropdown]] = []
        self.get_more: list[gr.Button] = []
        self.notes: list[tuple[str, gr.Markdown]] = []
        self.changed: list[Any] = []  # events after which the pickers refresh (downloads, deletes)
        self.offers: list[tuple[Any, list[Any], list[Any]]] = []  # offer() lines: (handler, inputs, outputs)
        self._cancels: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    # -- building ---------------------------------------------------------------------------------------------
    def picker(self, kind: str, elem_id: str, label: str = "Model", **kwargs: Any) -> gr.Dropdown:
        dropdown = gr.Dropdown(
            choices=self.service.choices(kind), value=self.service.default(kind), label=label, elem_id=elem_id, **kwargs
        )
        self.pickers.append((kind, dropdown))
        return dropdown

    def get_more_button(self, elem_id: str) -> gr.Button:
        button = gr.Button("Get more models", size="sm", variant="secondary", elem_id=elem_id, scale=0, min_width=130)
        self.get_more.append(button)
        return button

    def note(self, kind: str, elem_id: str) -> gr.Markdown:
        """One line above a picker when this kind has no good model ready (how to get one); hidden otherwise."""
        text = self.note_text(kind)
        markdown = gr.Markdown(text, elem_id=elem_id, visible=bool(text))
        self.notes.append((kind, markdown))
        return markdown

    def note_text(self, kind: str) -> str:
        """Images with no diffusion model ready (only the GAN runs): how to get one."""
        if kind != "image" or any(s.startswith("diffusers:") for _, s in self.service.choices(kind)):
            return ""
        rec = self.service.recommended(kind)
        size = f" ({format_bytes(rec.download_size)})" if rec and rec.download_size else ""
        get = f"get {md(rec.name)}{size} in the Models tab" if rec else "download one in the Models tab"
        return safe_markdown(
            f"No diffusion model is on this machine yet: {get}, "
            "or set `STUDIO_IMAGE_MODEL=diffusers:/path/to/a/diffusers/folder`."
        )

    # -- reading ----------------------------------------------------------------------------------------------
    def label(self, kind: str, spec: str | None) -> str:
        """What a person reads for `spec` (the spec itself when it is not offered)."""
        spec = spec or self.service.default(kind) or ""
        return next((label for label, s in self.service.choices(kind) if s == spec), spec)

    def offered(self, kind: str, spec: str | None) -> bool:
        return any(s == spec for _, s in self.service.choices(kind))

    def entry_for(self, spec: str) -> ModelEntry | None:
        return next((e for e in self.service.entries() if e.spec == spec), None)

    # -- refreshing -------------------------------------------------------------------------------------------
    @property
    def components(self) -> list[Any]:
        return [d for _, d in self.pickers] + [m for _, m in self.notes]

    def refreshed(self, values: dict[Any, Any]) -> list[Any]:
        """Updates for `components` (`values`: each picker's current value): each picker offers what runs now and
        keeps its value while that is still offered (else the default)."""
        updates: list[Any] = []
        for kind, dropdown in self.pickers:
            choices = self.service.choices(kind)
            value = values.get(dropdown)
            keep = value if any(s == value for _, s in choices) else self.service.default(kind)
            updates.append(gr.Dropdown(choices=choices, value=keep))
        for kind, _ in self.notes:
            text = self.note_text(kind)
            updates.append(gr.Markdown(text, visible=bool(text)))
        return updates

    # -- downloads --------------------------------------------------------------------------------------------
    def download(self, user: str, key: str) -> Iterator[DownloadProgress]:
        """The service's download of `key` with a cancel event that cancel(key) sets."""
        cancel = threading.Event()
        with self._lock:
            if key in self._cancels:
                raise user_error("This model is already downloading; its progress shows where it was started.")
            self._cancels[key] = cancel
        try:
            yield from self.service.download(user, key, cancel)
        finally:
            cancel.set()  # a closed page ends its download: nothing keeps fetching for nobody
            with self._lock:
                self._cancels.pop(key, None)

    def cancel(self, key: str) -> bool:
        with self._lock:
            event = self._cancels.get(key)
        if event is None:
            return False
        event.set()
        return True

    def downloading(self, key: str) -> bool:
        with self._lock:
            return key in self._cancels

    # -- the first-run offer ----------------------------------------------------------------------------------
    def offer(self, kind: str, picker: gr.Dropdown, browser_id: gr.BrowserState, elem_prefix: str) -> None:
        """A line saying which model answers; on the small built-in model, that it writes rough drafts and a
        one-click download of the recommended model (with progress, then selected); offline, that button is off
        and the line says why."""
        text, button_update = self.offer_view(kind, picker.value, None)
        with gr.Row(equal_height=True):
            line = gr.Markdown(text, elem_id=f"{elem_prefix}-model-note")
            button = gr.Button(
                size="sm", scale=0, min_width=220, elem_id=f"{elem_prefix}-get-recommended", **button_update
            )
        status = gr.Markdown(elem_id=f"{elem_prefix}-get-status")

        def show(bid, spec, request: gr.Request):
            text, update = self.offer_view(kind, spec, _user_or_none(bid, request))
            return text, gr.Button(**update)

        picker.change(show, [browser_id, picker], [line, button], **PRIVATE)

        def fetch(bid, request: gr.Request, progress=gr.Progress()) -> Iterator[Any]:
            user = user_id(bid, request)
            rec = self.service.recommended(kind)
            if rec is None:
                raise user_error("There is no recommended model to download.", title="Nothing to download")
            last: DownloadProgress | None = None
            try:
                for last in self.download(user, rec.key):
                    yield progress_line(last, progress), gr.Button(interactive=False)
            except MODEL_ERRORS as exc:
                raise user_error(str(exc), title="Not downloaded") from None
            done = last is not None and last.finished
            yield (
                (f"**{md(rec.name)} is ready and selected.**" if done else f"**Download of {md(rec.name)} stopped.**"),
                gr.Button(),
            )

        def select(spec):
            rec = self.service.recommended(kind)
            specs = [s for _, s in self.service.choices(kind)]
            keep = (
                rec.spec
                if rec is not None and rec.spec in specs
                else spec
                if spec in specs
                else self.service.default(kind)
            )
            return gr.Dropdown(choices=self.service.choices(kind), value=keep)

        fetching = button.click(fetch, [browser_id], [status, button], show_progress_on=[status], **PRIVATE)
        fetching.then(select, [picker], [picker], **PRIVATE).then(show, [browser_id, picker], [line, button], **PRIVATE)
        self.changed.append(fetching)
        self.offers.append((show, [browser_id, picker], [line, button]))

    def offer_view(self, kind: str, spec: str | None, user: str | None) -> tuple[str, dict[str, Any]]:
        """(the line, the button's settings) for `spec` answering."""
        spec = spec or self.service.default(kind)
        text = f"Answering: **{md(self.label(kind, spec))}**"
        starter = spec == STARTER_SPEC
        rec = self.service.recommended(kind)
        hidden: dict[str, Any] = dict(value="Get the recommended model", visible=False, interactive=False)
        if not starter:
            return safe_markdown(text + "."), hidden
        text += ", a very small model that writes rough drafts."
        if rec is None:
            return safe_markdown(text), hidden
        if rec.state == "ready":
            return safe_markdown(text + f" {md(rec.name)} is on this machine: pick it in the Model list."), hidden
        size = f" ({format_bytes(rec.download_size)})" if rec.download_size else ""
        button = dict(value=f"Get {rec.name}{size}", visible=True, interactive=False)
        hub = self.service.hub()
        allowed, why = self.service.can_manage(user) if user else (True, "")
        if not hub.online:
            text += f" {md(hub.reason)}"
        elif not allowed:
            text += f" Only an administrator can download models: {md(why)}"
        elif rec.state == "downloading" or self.downloading(rec.key):
            text += f" {md(rec.name)} is downloading (see the Models tab)."
        elif rec.state == "downloadable":
            text += f" For better answers, get {md(rec.name)}" + (f": {md(rec.good_for)}" if rec.good_for else "") + "."
            button["interactive"] = True
        else:
            text += f" {md(rec.name)}: {md(rec.reason)}"
        return safe_markdown(text), button


def _user_or_none(bid: str | None, request: gr.Request) -> str | None:
    """The caller, or None on a first visit whose browser id the chat tab's load has not stored yet."""
    try:
        return user_id(bid, request)
    except gr.Error:
        return None


def _details(entry: ModelEntry | None, managing: tuple[bool, str], hub_reason: str) -> str:
    if entry is None:
        return "*Pick a model in the table or the list above to see what it needs and what you can do with it.*"
    lines = [
        f"### {md(entry.name)}",
        f"**{STATES.get(entry.state, entry.state).capitalize()}**" + (f": {md(entry.reason)}" if entry.reason else ""),
        "",
        f"- Kind: {entry.kind} · source: {entry.source}",
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
            user = _user_or_none(ensure_browser_id(v[browser_id]), request)  # a first visit sees what it may do
            return [*view(v[chosen], user, refresh=refresh), *pickers.refreshed(v)]

        return handler

    demo.load(refreshing(False), current, everything, show_progress="hidden", **PRIVATE)  # no flicker on every load

    def on_pick(bid, key, request: gr.Request):
        return view(key, _user_or_none(bid, request))

    chosen.input(on_pick, [browser_id, chosen], view_outputs, **PRIVATE)

    def on_row(bid, shown_keys, evt: gr.SelectData, request: gr.Request):
        row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        key = shown_keys[row] if isinstance(row, int) and 0 <= row < len(shown_keys) else None
        return view(key, _user_or_none(bid, request))

    table.select(on_row, [browser_id, keys], view_outputs, **PRIVATE)

    refresh_btn.click(refreshing(True), current, everything, **PRIVATE)

    def download(bid, key, request: gr.Request, progress=gr.Progress()) -> Iterator[Any]:
        user = user_id(bid, request)
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

    def cancel(key):
        if not key or not pickers.cancel(key):
            raise user_error("Nothing is downloading for this model.", title="Nothing to cancel")
        return "**Cancelling…** (what was fetched is kept, so a later download continues from there)"

    cancel_btn.click(cancel, [chosen], [status], queue=False, **PRIVATE)

    delete_btn.click(lambda: gr.Row(visible=True), None, [confirm_row], **PRIVATE)
    keep_btn.click(lambda: gr.Row(visible=False), None, [confirm_row], **PRIVATE)

    def delete(bid, key, request: gr.Request):
        user = user_id(bid, request)
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
