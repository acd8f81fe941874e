"""A second attacker's look at the HTTP edge (ui/server/guard.py), after issue 9's fixes: plain HTTP against a
real app process with logins (STUDIO_AUTH=alice,bob). Each test is a request that got through before its fix:

- a web page on another origin forging `X-Forwarded-Host` passed the origin check, and Gradio's CORS answer
  let it read the reply: it made an API token for the logged-in user and read it back;
- a cross-origin `GET /gradio_api/token` read the user's login token (Gradio reflects any origin, with
  credentials, on a host that is not localhost);
- another user's event id read that user's results (`GET /gradio_api/call/<name>/<event_id>`) and
  cancelled their job (`POST /gradio_api/cancel`);
- deeply nested JSON answered 500 with a RecursionError traceback in the log.
"""

from __future__ import annotations

import json

import httpx
import pytest

from core.security.tokens import TokenStore
from tests.support.app_process import app_process
from tests.support.openai_servers import fake_openai_server

EVIL = "https://evil.example"
HOST = "studio.example.com"  # a team server's name: Gradio's CORS reflects any origin for such hosts


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    tokens = TokenStore(data / "studio.sqlite3")
    alice, bob = tokens.create("user:alice"), tokens.create("user:bob")
    with (
        fake_openai_server(reply_words=12, chunk_delay=0.15) as fake,
        app_process(
            data,
            {
                "STUDIO_TEXT_MODEL": "openai:fake-model",
                "OPENAI_BASE_URL": fake.base_url,
                "STUDIO_IMAGE_MODEL": "gan:faces",
                "HF_HOME": str(data / "hf"),
                "GRADIO_TEMP_DIR": str(data / "uploads"),
                "STUDIO_RATE_LIMIT": "600",
                "STUDIO_AUTH": "alice:alice-pw,bob:bob-pw",
            },
        ) as app,
        httpx.Client(timeout=60) as client,
    ):
        yield (
            app,
            client,
            tokens,
            {"alice": {"Authorization": f"Bearer {alice}"}, "bob": {"Authorization": f"Bearer {bob}"}},
        )


def _login_cookie(client: httpx.Client, base: str, user: str, password: str) -> str:
    """The `Cookie` header a browser logged in as `user` sends over HTTPS (both of Gradio's login cookies)."""
    r = client.post(f"{base}login", data={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return "; ".join(f"{c.name}={c.value}" for c in r.cookies.jar)


def _fn_index(client: httpx.Client, base: str, cookie: str, api_name: str) -> int:
    config = client.get(f"{base}config", headers={"Cookie": cookie}).json()
    return next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == api_name)


def test_a_forged_x_forwarded_host_does_not_pass_the_origin_check(served):
    """evil.example's page, visited by logged-in alice, asks for a token in her name: the browser sends her
    cookie and the page's own Origin; a preflight lets the page add X-Forwarded-Host: evil.example."""
    app, client, tokens, _ = served
    cookie = _login_cookie(client, app.url, "alice", "alice-pw")
    make = _fn_index(client, app.url, cookie, "make")
    before = len(tokens.list("user:alice"))
    forged = {"Cookie": cookie, "Host": HOST, "Origin": EVIL, "X-Forwarded-Host": "evil.example"}
    r = client.post(
        f"{app.url}gradio_api/queue/join",
        headers=forged,
        json={
            "data": [""],
            "fn_index": make,
            "session_hash": "evil-page-session-1",
            "event_data": None,
            "trigger_id": None,
        },
    )
    assert r.status_code == 403, r.text
    assert len(tokens.list("user:alice")) == before
    # alice's own page (same origin, no X-Forwarded-Host) still works
    own = {"Cookie": cookie, "Host": HOST, "Origin": f"http://{HOST}"}
    r = client.post(
        f"{app.url}gradio_api/queue/join",
        headers=own,
        json={
            "data": [""],
            "fn_index": make,
            "session_hash": "alice-own-session-1",
            "event_data": None,
            "trigger_id": None,
        },
    )
    assert r.status_code == 200, r.text


def test_another_origin_cannot_read_the_login_token(served):
    app, client, _, _ = served
    cookie = _login_cookie(client, app.url, "alice", "alice-pw")
    token = cookie.split("=", 1)[1].split(";")[0]
    r = client.get(f"{app.url}gradio_api/token", headers={"Cookie": cookie, "Host": HOST, "Origin": EVIL})
    assert token not in r.text
    assert r.status_code == 403, r.text
    # the same request from the app's own origin is answered
    r = client.get(f"{app.url}gradio_api/token", headers={"Cookie": cookie, "Host": HOST, "Origin": f"http://{HOST}"})
    assert r.status_code == 200 and r.json()["user"] == "alice", r.text


def _events(text: str) -> list[tuple[str, object]]:
    out, event = [], ""
    for line in text.splitlines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            out.append((event, json.loads(line[5:])))
    return out


def test_another_users_event_id_reads_nothing_and_cancels_nothing(served):
    app, client, _, users = served
    r = client.post(
        f"{app.url}gradio_api/call/chat", json={"data": ["alice's private question"]}, headers=users["alice"]
    )
    assert r.status_code == 200, r.text
    event_id = r.json()["event_id"]
    r = client.get(f"{app.url}gradio_api/call/chat/{event_id}", headers=users["bob"])
    assert r.status_code == 403, r.text[:300]
    assert "private" not in r.text
    r = client.post(
        f"{app.url}gradio_api/cancel",
        headers=users["bob"],
        json={"session_hash": "bob-session-1", "fn_index": 0, "event_id": event_id},
    )
    assert r.status_code == 403, r.text
    r = client.post(f"{app.url}gradio_api/stream/{event_id}/close", headers=users["bob"])
    assert r.status_code == 403, r.text
    # alice still gets her whole reply
    text = client.get(f"{app.url}gradio_api/call/chat/{event_id}", headers=users["alice"]).text
    events = _events(text)
    assert events and events[-1][0] == "complete", text[-500:]
    assert "private" in json.dumps(events[-1][1])


@pytest.mark.parametrize(
    "route",
    [
        "gradio_api/queue/join",
        "gradio_api/call/chat",
        "gradio_api/run/chat",
        "gradio_api/cancel",
        "gradio_api/stream/abc",
    ],
)
def test_deeply_nested_json_is_refused_not_a_server_error(served, route):
    app, client, _, users = served
    body = b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b', "fn_index": 0, "session_hash": "deep-1"}'
    r = client.post(f"{app.url}{route}", content=body, headers={**users["alice"], "Content-Type": "application/json"})
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert "nested" in r.text
    assert "RecursionError" not in app.log()


def test_the_reload_watcher_of_gradios_dev_mode_is_not_served(served):
    """GET /gradio_api/dev/reload is a stream that polls 20 times a second for as long as it is held open
    (300 held connections took ~15% of a core); the app never runs in Gradio's reload mode."""
    app, client, _, users = served
    with client.stream("GET", f"{app.url}gradio_api/dev/reload", headers=users["alice"], timeout=10) as r:
        assert r.status_code == 404
        assert "text/event-stream" not in r.headers.get("content-type", "")
