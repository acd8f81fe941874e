"""The Models tab and the pickers through the app over HTTP, as the browser drives them (Gradio's queue routes, the
events' `.then` chains run like the frontend runs them), against a local hub: the list, a download with progress, the
pickers of every tab refreshed, the chat's one-click offer, delete, and the offline state."""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from app import build_app, launch
from config import Settings
from tests.models.conftest import GGUF_REPO
from tests.support.hub_server import LocalHub
from tests.support.ports import free_port

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SPEC = f"gguf:hf.co/{GGUF_REPO}/{GGUF}"
PICKERS = ("chat-model", "writer-model", "condense-model")


class Page:
    """One open tab of the app: its components' values, kept as the frontend keeps them, and events run through
    /gradio_api/queue/join with their .then/.success follow-ups."""

    def __init__(self, url: str, cookie: str | None = None) -> None:
        self.url = url
        self.headers = {"Cookie": cookie} if cookie else {}  # a login's cookies
        self.config = json.loads(self._open(url + "config").read())
        self.components = {c["id"]: c for c in self.config["components"]}
        self.values: dict[int, Any] = {i: c.get("props", {}).get("value") for i, c in self.components.items()}
        self.props: dict[int, dict[str, Any]] = {i: dict(c.get("props", {})) for i, c in self.components.items()}
        self.session = secrets.token_hex(8)
        for i, c in self.components.items():
            if c["type"] == "browserstate":
                self.values[i] = secrets.token_urlsafe(24)  # this browser's id, as the chat tab's load stores it

    def id(self, elem_id: str) -> int:
        return next(i for i, c in self.components.items() if c.get("props", {}).get("elem_id") == elem_id)

    def value(self, elem_id: str) -> Any:
        return self.values[self.id(elem_id)]

    def prop(self, elem_id: str, name: str) -> Any:
        return self.props[self.id(elem_id)].get(name)

    def load(self) -> None:
        for dep in self.config["dependencies"]:
            if any(t[1] == "load" for t in dep["targets"]):
                self._run_chain(dep)

    def trigger(self, elem_id: str, event: str = "click") -> dict[str, Any]:
        target = self.id(elem_id)
        dep = next(d for d in self.config["dependencies"] if [target, event] in [list(t) for t in d["targets"]])
        return self._run_chain(dep)

    def set(self, elem_id: str, value: Any) -> None:
        self.values[self.id(elem_id)] = value

    def _run_chain(self, dep: dict[str, Any]) -> dict[str, Any]:
        result = self._run(dep)
        for follow in self.config["dependencies"]:
            if follow.get("trigger_after") == dep["id"] and (
                result["success"] or not follow["trigger_only_on_success"]
            ):
                self._run_chain(follow)
        return result

    def _run(self, dep: dict[str, Any]) -> dict[str, Any]:
        data = [None if self.components[i]["type"] == "state" else self.values[i] for i in dep["inputs"]]
        body = {"data": data, "fn_index": dep["id"], "session_hash": self.session, "trigger_id": None}
        joined = self._open(self.url + "gradio_api/queue/join", json.dumps(body).encode())
        event_id = json.loads(joined.read())["event_id"]
        progress: list[dict[str, Any]] = []  # every progress message
        streamed: list[list[Any]] = []  # every intermediate output
        pending: list[Any] | None = None
        stream = self._open(f"{self.url}gradio_api/queue/data?session_hash={self.session}")
        with stream:
            for raw in stream:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") != event_id:
                    continue
                if msg["msg"] == "progress":
                    progress.extend(msg.get("progress_data") or [])
                elif msg["msg"] == "process_generating":
                    out = msg["output"]["data"]
                    if pending is None:
                        pending = list(out)
                    else:
                        from gradio_client.utils import apply_diff

                        pending = [apply_diff(p, d) for p, d in zip(pending, out, strict=False)]
                    streamed.append(pending)
                    self._apply(dep, pending)
                elif msg["msg"] == "process_completed":
                    output = msg.get("output") or {}
                    if msg.get("success") and pending is None and output.get("data") is not None:
                        self._apply(dep, output["data"])
                    return {
                        "success": bool(msg.get("success")),
                        "error": output.get("error"),
                        "progress": progress,
                        "streamed": streamed,
                    }
        raise AssertionError("the event's stream ended without process_completed")

    def _open(self, url: str, body: bytes | None = None) -> Any:
        headers = {**self.headers, **({"Content-Type": "application/json"} if body is not None else {})}
        return urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=120)

    def _apply(self, dep: dict[str, Any], data: list[Any]) -> None:
        for i, value in zip(dep["outputs"], data, strict=False):
            if isinstance(value, dict) and value.get("__type__") == "update":
                for key, v in value.items():
                    if key == "value":
                        self.values[i] = v
                    elif key != "__type__":
                        self.props[i][key] = v
            elif self.components[i]["type"] != "state":
                self.values[i] = value


def table_rows(page: Page) -> list[list[str]]:
    table = page.value("models-table")
    return table["data"] if isinstance(table, dict) else table


def row(page: Page, name: str) -> list[str]:
    return next(r for r in table_rows(page) if r[0].startswith(name))


def picker_specs(page: Page, elem_id: str) -> list[str]:
    return [choice[1] for choice in page.prop(elem_id, "choices")]


@pytest.fixture
def open_page(manager_settings: Callable[..., Settings]):
    """open_page(login=None, **settings) -> a Page on a fresh app (built and launched as users meet it)."""
    started = []

    def start(login: tuple[str, str] | None = None, **overrides: Any) -> Page:
        settings = manager_settings(**overrides)
        demo = build_app(settings)
        started.append(demo)
        launch(demo, settings, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
        page = Page(demo.local_url, login_cookie(demo.local_url, *login) if login else None)
        page.demo = demo  # type: ignore[attr-defined]
        page.load()
        return page

    yield start
    for demo in started:
        demo.close()


def test_models_tab_lists_downloads_with_progress_and_every_picker_follows(open_page, hub: LocalHub) -> None:
    hub.bytes_per_s = 50e6  # about 2 s: several progress events
    page = open_page()
    assert "Downloads from the Hugging Face hub are on" in page.value("models-hub")
    smol = row(page, "SmolLM2 from the local hub")
    assert smol[1:3] == ["text", "can download"] and "to download" in smol[3]
    assert row(page, "SmolLM2-135M-Instruct (embedded)")[2] == "ready"
    for picker in PICKERS:  # only what runs now
        assert picker_specs(page, picker) == ["embedded"], picker
    assert picker_specs(page, "image-model") == ["gan:faces"]

    tabs = next(i for i, c in page.components.items() if c["type"] == "tabs")
    for button in ("chat-get-more", "writer-get-more", "condense-get-more", "image-get-more"):
        page.props[tabs]["selected"] = "chat"
        page.trigger(button)
        assert page.props[tabs]["selected"] == "models", button

    page.set("models-pick", "smol")
    page.trigger("models-pick", "input")
    assert "SmolLM2 from the local hub" in page.value("models-details")
    assert page.prop("models-download", "interactive") is True
    assert page.prop("models-delete", "interactive") is False  # nothing to delete yet

    result = page.trigger("models-download")
    assert result["success"], result
    fractions = [p["progress"] for p in result["progress"] if p.get("progress") is not None]
    assert fractions == sorted(fractions) and len([f for f in fractions if 0 < f < 1]) >= 3, fractions
    descs = [p.get("desc") or "" for p in result["progress"]]  # the text under the bar: bytes, speed, time left
    assert any(re.search(r"MB of [\d.]+ MB · [\d.]+ MB/s · about \d+ s left", d) for d in descs), descs
    assert any("Downloading" in out[1] for out in result["streamed"])  # the details follow the download
    assert result["streamed"][-1][0].startswith("**SmolLM2 from the local hub is ready")

    # the .then after the download: the list and every picker refreshed
    assert row(page, "SmolLM2 from the local hub")[2] == "ready"
    for picker in PICKERS:
        assert picker_specs(page, picker) == ["embedded", SPEC], picker
        assert page.value(picker) == "embedded"  # a picker keeps what its user chose
    assert page.prop("models-delete", "interactive") is True

    # another browser opening the app later sees the new model at once
    other = Page(page.url)
    other.load()
    assert SPEC in picker_specs(other, "chat-model")

    page.trigger("models-delete")
    page.trigger("models-delete-yes")
    assert "freed" in page.value("models-status")
    assert row(page, "SmolLM2 from the local hub")[2] == "can download"
    for picker in PICKERS:
        assert picker_specs(page, picker) == ["embedded"], picker


def test_chat_offer_downloads_the_recommended_model_and_selects_it(open_page, hub: LocalHub) -> None:
    page = open_page()
    note = page.value("chat-model-note")
    assert "SmolLM2-135M-Instruct (embedded)" in note and "rough drafts" in note
    assert page.prop("chat-get-recommended", "visible") is True
    assert page.prop("chat-get-recommended", "interactive") is True
    assert page.props[page.id("chat-get-recommended")]["value"].startswith("Get SmolLM2 from the local hub (")

    result = page.trigger("chat-get-recommended")
    assert result["success"], result
    assert page.value("chat-model") == SPEC  # selected
    assert SPEC in picker_specs(page, "writer-model")  # and offered everywhere
    assert "is ready and selected" in page.value("chat-get-status")
    assert page.prop("chat-get-recommended", "visible") is False  # nothing left to offer
    note = page.value("chat-model-note")
    assert note.startswith("Answering: **") and "rough drafts" not in note and "(embedded)" not in note, note


def test_offline_the_downloads_are_off_and_say_why(open_page) -> None:
    page = open_page(hf_offline=True, image_models=("diffusers:stabilityai/sd-turbo", "gan:faces"))  # the defaults
    assert "HF\\_HUB\\_OFFLINE" in page.value("models-hub")
    assert row(page, "SmolLM2 from the local hub")[2] == "unavailable"
    page.set("models-pick", "smol")
    page.trigger("models-pick", "input")
    assert page.prop("models-download", "interactive") is False
    assert "HF\\_HUB\\_OFFLINE" in page.value("models-details")
    # the chat's offer is shown, switched off, with the reason
    assert page.prop("chat-get-recommended", "visible") is True
    assert page.prop("chat-get-recommended", "interactive") is False
    assert "Downloads are off" in page.value("chat-model-note")
    # a download asked for anyway is refused with a message, not a traceback
    result = page.trigger("models-download")
    assert not result["success"] and "Downloads are off" in (result["error"] or ""), result
    # images open on what runs, and say how to get a diffusion model
    assert page.value("image-model") == "gan:faces"
    assert picker_specs(page, "image-model") == ["gan:faces"]  # SD-Turbo is configured but cannot run: not offered
    assert "Models tab" in page.value("image-model-note") and page.prop("image-model-note", "visible") is not False
    # a mode only a model that is not here can do: it says so and stays on what runs
    page.set("image-mode", "txt2img")
    page.trigger("image-mode", "input")
    assert page.value("image-model") == "gan:faces" and page.value("image-mode") == "random"


def test_cancel_stops_a_download_and_a_second_download_finishes_it(open_page, hub: LocalHub) -> None:
    hub.bytes_per_s = 8e6  # about 12 s: time to cancel mid-way
    page = open_page()
    page.set("models-pick", "smol")
    page.trigger("models-pick", "input")
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(page.trigger("models-download")))
    worker.start()
    service = page.demo.models_service  # type: ignore[attr-defined]
    partial = lambda: sum(p.stat().st_size for p in service.settings.hf_cache_dir.rglob("*.incomplete"))  # noqa: E731
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and partial() < 4e6:  # some megabytes arrived
        time.sleep(0.1)
    assert any(e.state == "downloading" for e in service.entries())
    other = Page(page.url)  # a second tab: the Cancel button works from any page of someone who may manage
    other.load()
    other.set("models-pick", "smol")
    started = time.monotonic()
    cancelled = other.trigger("models-cancel")
    worker.join(30)
    assert cancelled["success"] and not worker.is_alive()
    assert time.monotonic() - started < 5, "the download did not stop soon after Cancel"
    assert outcome["success"], outcome  # a cancel is not an error toast
    assert "cancel" in page.value("models-status").lower(), page.value("models-status")
    assert row(page, "SmolLM2 from the local hub")[2] == "can download"
    assert picker_specs(page, "chat-model") == ["embedded"]

    hub.bytes_per_s = None
    again = page.trigger("models-download")
    assert again["success"] and "is ready" in page.value("models-status")
    assert [r for r in hub.log.gets(GGUF) if r and r != "bytes=0-"], hub.log.gets(GGUF)
    assert row(page, "SmolLM2 from the local hub")[2] == "ready"
    assert SPEC in picker_specs(page, "chat-model")


def login_cookie(url: str, user: str, password: str) -> str:
    """The Cookie header of a browser logged in as `user` (Gradio's login cookies are marked secure, so they are
    sent by hand over plain loopback HTTP)."""
    import http.cookiejar
    import urllib.parse

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = urllib.parse.urlencode({"username": user, "password": password}).encode()
    opener.open(urllib.request.Request(url + "login", data=form), timeout=30).read()
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def test_with_logins_only_the_model_admins_may_download(open_page, hub: LocalHub) -> None:
    logins = dict(auth=(("ann", "ann-pw"), ("bob", "bob-pw")), model_admins=("ann",))
    bob = open_page(login=("bob", "bob-pw"), **logins)
    assert "You cannot download or delete models here" in bob.value("models-hub")
    assert "STUDIO\\_MODEL\\_ADMINS" in bob.value("models-hub")  # who may, in words
    bob.set("models-pick", "smol")
    bob.trigger("models-pick", "input")
    assert bob.prop("models-download", "interactive") is False
    assert bob.prop("chat-get-recommended", "interactive") is False
    assert "Only an administrator" in bob.value("chat-model-note")
    refused = bob.trigger("models-download")  # asked for anyway: refused by the service, with the reason
    assert not refused["success"] and "STUDIO_MODEL_ADMINS" in (refused["error"] or ""), refused
    assert not [r for r in hub.log.requests if r[1].endswith(GGUF)], "a refused download fetched bytes"

    ann = Page(bob.url, login_cookie(bob.url, "ann", "ann-pw"))
    ann.load()
    assert "You cannot" not in ann.value("models-hub")
    ann.set("models-pick", "smol")
    ann.trigger("models-pick", "input")
    assert ann.prop("models-download", "interactive") is True
    assert ann.trigger("models-download")["success"] and "is ready" in ann.value("models-status")
