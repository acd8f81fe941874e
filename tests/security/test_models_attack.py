"""An attacker's look at the model manager through the app over HTTP: Gradio's queue routes with the private events'
fn_index, the REST route by function name, logins, API tokens, odd payloads, against the local hub; and a delete while
another user's reply streams. Each test is an attack that once worked or an edge that must hold. The hostile hub's
attacks on the downloads are in test_models_hostile_hub.py."""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from core.images.models import ImageModelManager
from core.models.service import ModelsService
from core.models.text import ModelManager
from core.security.tokens import TokenStore
from tests.models.test_models_ui import Page, login_cookie
from tests.support.hub_server import LocalHub
from tests.support.paths import ROOT

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LOGINS: dict[str, Any] = dict(auth=(("ann", "ann-pw"), ("bob", "bob-pw")), model_admins=("ann",))
API_REFUSAL = "not through the API"


def _gguf_fetched(hub: LocalHub) -> list[str | None]:
    return hub.log.gets(GGUF)


def _token_page(page: Page, user: str) -> Page:
    """A scripted client of the same app holding `user`'s API token (sent instead of any login cookie)."""
    token = TokenStore(page.demo.models_service.settings.db_path).create(user)  # type: ignore[attr-defined]
    client = Page(page.url, page.headers.get("Cookie"))  # reads the page's config as a browser would
    client.headers = {"Authorization": f"Bearer {token}"}
    return client


def test_a_model_admins_api_token_cannot_download_or_delete(open_page, hub: LocalHub) -> None:
    ann = open_page(login=("ann", "ann-pw"), **LOGINS)
    script = _token_page(ann, "user:ann")
    script.set("models-pick", "smol")
    refused = script.trigger("models-download")
    assert not refused["success"] and API_REFUSAL in (refused["error"] or ""), refused
    offer = script.trigger("chat-get-recommended")  # the chat's one-click download: the same rule
    assert not offer["success"] and API_REFUSAL in (offer["error"] or ""), offer
    assert not _gguf_fetched(hub), "an API call downloaded a model"

    ann.set("models-pick", "smol")
    assert ann.trigger("models-download")["success"]  # the admin in the page may
    script.set("models-pick", "smol")
    deleted = script.trigger("models-delete-yes")
    assert not deleted["success"] and API_REFUSAL in (deleted["error"] or ""), deleted
    assert any(e.key == "smol" and e.state == "ready" for e in ann.demo.models_service.entries(refresh=True))


def test_without_logins_an_api_token_caller_cannot_download(open_page, hub: LocalHub) -> None:
    page = open_page()
    script = _token_page(page, "api:script")
    script.set("models-pick", "smol")
    refused = script.trigger("models-download")
    assert not refused["success"] and API_REFUSAL in (refused["error"] or ""), refused
    assert not _gguf_fetched(hub)


def test_only_a_model_admin_may_cancel_a_download(open_page, hub: LocalHub) -> None:
    hub.bytes_per_s = 6e6  # about 15 s
    ann = open_page(login=("ann", "ann-pw"), **LOGINS)
    ann.set("models-pick", "smol")
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(ann.trigger("models-download")))
    worker.start()
    service: ModelsService = ann.demo.models_service
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(e.state == "downloading" for e in service.entries()):
        time.sleep(0.1)
    try:
        bob = Page(ann.url, login_cookie(ann.url, "bob", "bob-pw"))
        bob.set("models-pick", "smol")
        refused = bob.trigger("models-cancel")
        assert not refused["success"] and "STUDIO_MODEL_ADMINS" in (refused["error"] or ""), refused
        script = _token_page(ann, "user:ann")
        script.set("models-pick", "smol")
        assert not script.trigger("models-cancel")["success"]
        time.sleep(1.0)
        assert worker.is_alive() and any(e.state == "downloading" for e in service.entries()), "a refusal cancelled"
    finally:
        admin = Page(ann.url, ann.headers["Cookie"])  # a second tab of the admin: she may
        admin.set("models-pick", "smol")
        assert admin.trigger("models-cancel")["success"]
        worker.join(30)
    assert outcome["success"] and "cancel" in ann.value("models-status").lower(), outcome


def test_deleting_a_model_mid_reply_lets_the_reply_finish_and_later_calls_get_a_clear_error(
    manager_settings: Any, hub: LocalHub
) -> None:
    from backends.text.base import GenerationParams

    settings = manager_settings()
    text = ModelManager(settings)
    service = ModelsService(settings, text, ImageModelManager(settings))
    assert list(service.download("browser:admin", "smol", threading.Event()))[-1].finished
    spec = next(e.spec for e in service.entries() if e.key == "smol")
    backend = text.get(spec)  # another user's chat, already answering
    params = GenerationParams(temperature=0.0, max_new_tokens=24, seed=1)
    stream = backend.stream_chat([{"role": "user", "content": "Count from one to ten."}], params, threading.Event())
    first = next(stream)
    assert service.delete("browser:admin", "smol") > 0
    reply = first + "".join(stream)
    assert len(reply) > len(first)
    with pytest.raises(KeyError, match="Unknown model"):
        text.get(spec)
    assert spec not in [s for _, s in service.choices("text")]


@pytest.mark.parametrize("key", ["../../../../etc/passwd", "x" * 200_000, "gguf:hf.co/a/b/../../x.gguf", 7, ["smol"]])
def test_an_odd_key_sent_to_the_models_events_gets_a_message(open_page, hub: LocalHub, key: Any) -> None:
    page = open_page()
    server_paths = (str(ROOT), str(page.demo.models_service.settings.hf_cache_dir.parent))  # type: ignore[attr-defined]
    for event in ("models-download", "models-delete-yes", "models-cancel"):
        page.set("models-pick", key)
        try:
            result = page.trigger(event)
        except urllib.error.HTTPError as exc:  # refused at the door
            assert 400 <= exc.code < 500, exc
            result = {"success": False, "error": exc.read().decode(errors="replace")}
        error = result["error"] or ""
        assert not result["success"] and error and "Traceback" not in error, (event, error[:300])
        assert not [p for p in server_paths if p in error], (event, error[:300])
    assert not hub.log.gets(GGUF)


def _post_call(call: str, data: list) -> str:
    import json

    request = urllib.request.Request(
        call, data=json.dumps({"data": data}).encode(), headers={"Content-Type": "application/json"}
    )
    return json.loads(urllib.request.urlopen(request, timeout=30).read())["event_id"]


def test_the_model_events_are_not_listed_and_a_bare_rest_call_changes_nothing(open_page, hub: LocalHub) -> None:
    """Gradio still answers /gradio_api/call/<function name> for private events (SECURITY.md: every UI event is an
    endpoint): without a browser's identity such a call is refused before any byte; under logins it needs a login
    (401) and a token is an API caller (test above)."""
    import json

    page = open_page()
    info = json.loads(urllib.request.urlopen(page.url + "gradio_api/info", timeout=30).read())
    named = " ".join(info.get("named_endpoints", {}))
    assert named and not [w for w in ("download", "delete", "cancel", "fetch") if w in named], named
    for name in ("download", "delete", "cancel", "fetch"):
        # Gradio resolves a name to the first event whose function has it (another tab's `delete` may answer):
        # when the argument check refuses the count, the call is sent again with the count it asks for, so the
        # function that answers to the name is reached and must refuse the caller itself.
        call = page.url + f"gradio_api/call/{name}"
        data: list = [None, "smol"] if name != "fetch" else [None]
        try:
            event_id = _post_call(call, data)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode()
            wanted = re.search(r"takes (\d+) values", detail)
            assert exc.code == 422 and wanted, (name, exc.code, detail)
            event_id = _post_call(call, (data + [None] * int(wanted.group(1)))[: int(wanted.group(1))])
        answer = urllib.request.urlopen(f"{call}/{event_id}", timeout=60).read().decode()
        assert "event: error" in answer and "Traceback" not in answer, (name, answer)
    assert not hub.log.gets(GGUF)
    assert not any(e.state == "downloading" for e in page.demo.models_service.entries())  # type: ignore[attr-defined]
