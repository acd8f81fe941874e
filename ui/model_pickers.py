"""The model pickers of every tab (ModelPickers): each offers only what runs now (core.models.service.ModelsService),
has a "Get more models" button into the Models tab (ui/models.py, which refreshes them after a download or a delete
and on page load), and the chat's first-run line with its one-click download of the recommended model."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import gradio as gr

from core.errors import BackendError, InputError, NotFoundError
from core.models.downloads import format_size
from core.models.service import DownloadProgress, ModelEntry, ModelsService
from core.safe_html import safe_markdown
from ui.errors import user_error
from ui.identity import user_id

PRIVATE = dict(api_visibility="private")
API_USER_HEADER = "x-studio-user"  # ui/server/guard.py's USER_HEADER: the API token's user
MD_SPECIAL = re.compile(r"[\\`*_\[\]<>#|~]")
MODEL_ERRORS: tuple[type[Exception], ...] = (InputError, NotFoundError, BackendError)  # incl. ModelDownloadError


def md(text: str) -> str:
    """Plain text (a model's name, a reason, a licence) shown as itself inside Markdown: HF_HUB_OFFLINE keeps its
    underscores, a name with * or [ ] makes no markup."""
    return MD_SPECIAL.sub(r"\\\g<0>", text)


def format_bytes(n: float | None) -> str:
    return format_size(n) if n else "—"


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
        """The service's note for this kind (how to get a better model), as Markdown that shows it as written."""
        text = self.service.note(kind)
        return safe_markdown(md(text)) if text else ""

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
        """The service's download of `key` (which refuses a second one of the same model)."""
        cancel = threading.Event()
        try:
            yield from self.service.download(user, key, cancel)
        finally:
            cancel.set()  # a closed page ends its download: nothing keeps fetching for nobody

    def cancel(self, user: str, key: str) -> bool:
        """The service's cancel: only someone who may manage models may (ModelPermissionError otherwise)."""
        return self.service.cancel(user, key)

    def downloading(self, key: str) -> bool:
        return any(e.key == key and e.state == "downloading" for e in self.service.entries())

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
            text, update = self.offer_view(kind, spec, user_or_none(bid, request))
            return text, gr.Button(**update)

        picker.change(show, [browser_id, picker], [line, button], **PRIVATE)

        def fetch(bid, request: gr.Request, progress=gr.Progress()) -> Iterator[Any]:
            user = manager_user(bid, request)
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
        entry = self.entry_for(spec) if spec else None
        starter = bool(entry and entry.starter)
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


def manager_user(bid: str | None, request: gr.Request) -> str:
    """Who asks to change the models: a call with an API token is an API caller ("api:<its user>", which the service
    never lets manage models), whoever the token belongs to; otherwise the login or this browser. The guard sets
    x-studio-user only for a valid token and drops any the client sent."""
    headers = getattr(request, "headers", None)
    token_user = headers.get(API_USER_HEADER) if headers is not None else None
    if isinstance(token_user, str) and token_user:
        return f"api:{token_user}"
    return user_id(bid, request)


def user_or_none(bid: str | None, request: gr.Request) -> str | None:
    """The caller as manager_user says, or None on a first visit whose browser id the chat tab's load has not stored
    yet."""
    try:
        return manager_user(bid, request)
    except gr.Error:
        return None
