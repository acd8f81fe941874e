"""Issue 9's findings, tried from the outside as an attacker would: plain HTTP against a real app
process (python app.py). Each test sends the kind of request that got through before the HTTP guard
(ui/server/guard.py) and the upload registry (core/security/uploads.py) existed."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx
import pytest

from core.images.store import ImageGallery
from core.security.passwords import hash_password
from core.security.tokens import TokenStore
from tests.support.app_process import app_process
from tests.support.openai_servers import fake_openai_server
from tests.support.paths import CORPUS
from tests.support.rest_client import final_event

GAN = "gan:faces"
TEXT = CORPUS / "good-french-moliere-utf8.txt"


def _image_args(init=None, mask=None, **kw) -> list:
    """/generate_image's 16 arguments in order (prompt, seed, negative, model, mode, steps, guidance, width,
    height, scheduler, batch_count, strength, init_image, mask_image, seed_b, interpolation_steps)."""
    args = ["", kw.get("seed", 1), "", GAN, kw.get("mode", ""), None, None, None, None, "", 1, 0.6, init, mask, None, 0]
    return args


def _filedata(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def call(client: httpx.Client, base: str, name: str, data: list, headers: dict | None = None) -> tuple[str, object]:
    """POST /gradio_api/call/<name> then read the event stream: ("complete"|"error", payload), or
    ("refused", (status, body)) when the POST itself is refused."""
    r = client.post(f"{base}gradio_api/call/{name}", json={"data": data}, headers=headers or {})
    if r.status_code != 200:
        return "refused", (r.status_code, r.text)
    event_id = r.json()["event_id"]
    text = client.get(f"{base}gradio_api/call/{name}/{event_id}", headers=headers or {}, timeout=120).text
    return final_event(text) or ("none", text[-300:])


def upload(client: httpx.Client, base: str, name: str, data: bytes, headers: dict | None = None) -> httpx.Response:
    return client.post(
        f"{base}gradio_api/upload", files={"files": (name, data, "application/octet-stream")}, headers=headers or {}
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An open app (no login) with two API tokens made beforehand, like a team's scripts would have."""
    data = tmp_path_factory.mktemp("data")
    tokens = TokenStore(data / "studio.sqlite3")
    alice, bob = (
        tokens.create("browser:alice-browser-id-000000000"),
        tokens.create("browser:bob-browser-id-00000000000"),
    )
    with (
        fake_openai_server(reply_words=8, chunk_delay=0.1) as fake,
        app_process(
            data,
            {
                "STUDIO_TEXT_MODEL": "openai:fake-model",
                "OPENAI_BASE_URL": fake.base_url,
                "STUDIO_IMAGE_MODEL": GAN,
                "HF_HOME": str(data / "hf"),
                "STUDIO_MAX_UPLOAD_MB": "1",
                "STUDIO_RATE_LIMIT": "600",
                "STUDIO_USER_TEXT_JOBS": "1",
                "GRADIO_TEMP_DIR": str(data / "uploads"),
            },
        ) as app,
        httpx.Client(timeout=60) as client,
    ):
        yield (
            app,
            client,
            {"alice": {"Authorization": f"Bearer {alice}"}, "bob": {"Authorization": f"Bearer {bob}"}},
            data,
        )


# -- 1. server paths as inputs -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        "/etc/passwd",
        "/root",
        "/nonexistent/x.png",
        "../../../../etc/passwd",
        {"path": "/etc/passwd"},
        {"path": "/etc/hostname", "orig_name": "x.png"},
        42,
        ["/etc/passwd"],
    ],
)
@pytest.mark.parametrize("field", ["init", "mask"])
def test_a_server_path_is_never_opened_as_an_image_input(served, value, field):
    app, client, who, _ = served
    args = _image_args(init=value) if field == "init" else _image_args(init=None, mask=value, mode="random")
    outcome, payload = call(client, app.url, "generate_image", args, who["alice"])
    assert outcome == "error", payload
    message = str(payload)
    assert "file upload of yours" in message or "must be" in message, message
    # the answer says nothing about what is at that path (it may repeat what was sent)
    for leak in ("not an image", "is a folder", "not found", "no longer on the server", "root:x", "damaged"):
        assert leak not in message.lower()


def test_a_fifo_in_the_upload_folder_is_refused_without_blocking(served):
    app, client, who, data = served
    r = upload(client, app.url, "pipe.png", b"\x89PNG\r\n\x1a\n", who["alice"])
    assert r.status_code == 200
    stored = Path(r.json()[0])
    stored.unlink()
    os.mkfifo(stored)  # the same path, now a FIFO: a plain read would block forever
    outcome, payload = call(client, app.url, "generate_image", _image_args(init=_filedata(str(stored))), who["alice"])
    assert outcome in ("error", "refused") and "file upload of yours" in str(payload)


def test_another_callers_upload_is_refused_and_your_own_is_taken(served):
    app, client, who, _ = served
    png = _tiny_png()
    mine = upload(client, app.url, "mine.png", png, who["alice"]).json()[0]
    outcome, payload = call(client, app.url, "generate_image", _image_args(init=_filedata(mine)), who["bob"])
    assert outcome in ("error", "refused") and "file upload of yours" in str(payload)
    outcome, payload = call(client, app.url, "condense", [_filedata(mine)], who["bob"])
    assert outcome in ("error", "refused") and "file upload of yours" in str(payload)
    # alice's own upload gets past the file check (the GAN then says it cannot do img2img)
    outcome, payload = call(client, app.url, "generate_image", _image_args(init=_filedata(mine)), who["alice"])
    assert outcome == "error" and "img2img" in str(payload), payload


def test_condense_refuses_server_paths_and_takes_the_callers_upload(served):
    app, client, who, _ = served
    for value in ["/etc/passwd", _filedata("/etc/passwd"), {"path": str(TEXT)}, _filedata(str(TEXT))]:
        outcome, payload = call(client, app.url, "condense", [value], who["alice"])
        assert outcome in ("error", "refused") and "upload" in str(payload), payload
    stored = upload(client, app.url, TEXT.name, TEXT.read_bytes(), who["alice"]).json()[0]
    outcome, payload = call(
        client,
        app.url,
        "condense",
        [{"path": stored, "orig_name": TEXT.name, "meta": {"_type": "gradio.FileData"}}],
        who["alice"],
    )
    assert outcome == "complete", payload


def test_two_callers_with_the_same_file_never_break_each_others_runs(served):
    """Equal uploads share one stored path; the first run to finish must not take the second's file."""
    app, client, who, _ = served
    body = TEXT.read_bytes()
    a = upload(client, app.url, TEXT.name, body, who["alice"]).json()[0]
    b = upload(client, app.url, TEXT.name, body, who["bob"]).json()[0]
    assert a == b  # Gradio names uploads by their content
    fd = {"path": a, "orig_name": TEXT.name, "meta": {"_type": "gradio.FileData"}}
    assert call(client, app.url, "condense", [fd], who["alice"])[0] == "complete"
    outcome, payload = call(client, app.url, "condense", [fd], who["bob"])
    assert outcome == "complete", payload


# -- 3. uploads: size, origin -------------------------------------------------------------------------------
def test_an_upload_over_the_limit_is_refused(served):
    app, client, who, _ = served
    r = upload(client, app.url, "big.bin", b"\0" * (3 * 2**20), who["alice"])  # STUDIO_MAX_UPLOAD_MB=1
    assert r.status_code == 413


@pytest.mark.parametrize("path", ["gradio_api/upload", "gradio_api/call/chat", "gradio_api/queue/join"])
def test_cross_origin_writes_are_refused(served, path):
    app, client, _, _ = served
    headers = {"Origin": "http://evil.example"}
    if path.endswith("upload"):
        r = client.post(app.url + path, files={"files": ("a.txt", b"x", "text/plain")}, headers=headers)
    else:
        r = client.post(app.url + path, json={"data": ["hi"]}, headers=headers)
    assert r.status_code == 403 and "Cross-origin" in r.text
    same = client.post(
        app.url + "gradio_api/upload",
        files={"files": ("a.txt", b"x", "text/plain")},
        headers={"Origin": app.url.rstrip("/")},
    )
    assert same.status_code == 200


# -- 4. identity, paths in replies --------------------------------------------------------------------------
def test_image_replies_carry_links_not_server_paths_and_land_in_the_token_owners_gallery(served):
    app, client, who, data = served
    outcome, payload = call(client, app.url, "generate_image", _image_args(seed=5), who["alice"])
    assert outcome == "complete", payload
    files, params = payload
    text = json.dumps(payload)
    assert str(data) not in text and "/tmp" not in text and not files[0]["path"].startswith("/")
    link = app.url + files[0]["url"].lstrip("/")
    assert client.get(link, headers=who["alice"]).status_code == 200
    assert client.get(link, headers=who["bob"]).status_code == 404  # a link is its caller's only
    gallery = ImageGallery(data)
    assert [g.seed for g in gallery.list("browser:alice-browser-id-000000000")] == [5]


def test_a_bad_token_is_refused(served):
    app, client, _, _ = served
    r = client.post(
        app.url + "gradio_api/call/chat", json={"data": ["hi"]}, headers={"Authorization": "Bearer gs_not-a-token"}
    )
    assert r.status_code == 401


# -- 7, 8. sessions and headers -----------------------------------------------------------------------------
def test_a_session_id_belongs_to_its_first_caller(served):
    app, client, who, _ = served
    body = {"data": ["hello"], "session_hash": "replayed-session-0001", "fn_index": _fn_index(client, app.url, "chat")}
    assert client.post(app.url + "gradio_api/queue/join", json=body, headers=who["alice"]).status_code == 200
    r = client.post(app.url + "gradio_api/queue/join", json=body, headers=who["bob"])
    assert r.status_code == 403 and "alice" not in r.text
    r = client.get(
        app.url + "gradio_api/queue/data", params={"session_hash": "replayed-session-0001"}, headers=who["bob"]
    )
    assert r.status_code == 403
    r = client.post(
        app.url + "gradio_api/cancel",
        json={"session_hash": "replayed-session-0001", "fn_index": 0, "event_id": "x"},
        headers=who["bob"],
    )
    assert r.status_code == 403


@pytest.mark.parametrize("path", ["", "gradio_api/info", "gradio_api/call/chat"])
def test_every_answer_carries_the_security_headers(served, path):
    app, client, _, _ = served
    r = client.post(app.url + path, json={"data": ["hi"]}) if path.endswith("chat") else client.get(app.url + path)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"] == "same-origin"


# -- under a login: tokens, hashed passwords, failed logins, rates ----------------------------------------------
@pytest.fixture(scope="module")
def team(tmp_path_factory):
    data = tmp_path_factory.mktemp("team")
    users = data / "users.txt"
    users.write_text(f"# made with python -m core.security.passwords\nalice:{hash_password('correct horse 1')}\n")
    token = TokenStore(data / "studio.sqlite3").create("user:alice")
    with (
        fake_openai_server(reply_words=8) as fake,
        app_process(
            data,
            {
                "STUDIO_TEXT_MODEL": "openai:fake-model",
                "OPENAI_BASE_URL": fake.base_url,
                "STUDIO_IMAGE_MODEL": GAN,
                "HF_HOME": str(data / "hf"),
                "STUDIO_AUTH_FILE": str(users),
                "STUDIO_AUTH": "bob:plain-password-2",
                "STUDIO_RATE_LIMIT": "20",
                "STUDIO_UPLOAD_TTL_HOURS": "0.001",  # uploads live 3.6 s here
            },
        ) as app,
        httpx.Client(timeout=60) as client,
    ):
        yield app, client, {"Authorization": f"Bearer {token}"}


def test_under_a_login_an_api_call_needs_a_valid_token(team):
    app, client, token = team
    for path in ("gradio_api/call/chat", "gradio_api/queue/join", "gradio_api/upload"):
        assert client.post(app.url + path, json={"data": ["hi"]}).status_code == 401
    outcome, payload = call(client, app.url, "chat", ["Say hi."], token)
    assert outcome == "complete" and payload[0].strip(), payload


def test_passwords_from_the_users_file_and_the_env_both_log_in(team):
    app, _, _ = team
    client = httpx.Client(timeout=60)  # its own cookie jar
    assert client.post(app.url + "login", data={"username": "alice", "password": "correct horse 1"}).status_code == 200
    assert client.post(app.url + "login", data={"username": "bob", "password": "plain-password-2"}).status_code == 200
    assert client.post(app.url + "login", data={"username": "alice", "password": "wrong"}).status_code == 400


def test_failed_logins_are_limited(team):
    app, client, _ = team
    codes = [
        client.post(app.url + "login", data={"username": "carol", "password": f"guess{i}"}).status_code
        for i in range(7)
    ]
    assert codes[:5] == [400] * 5 and codes[5:] == [429, 429]
    r = client.post(app.url + "login", data={"username": "carol", "password": "guess"})
    assert int(r.headers["retry-after"]) > 0


def test_a_caller_over_the_rate_gets_429_with_retry_after(team):
    app, client, token = team
    codes = []
    for _ in range(30):
        r = client.post(app.url + "gradio_api/call/chat", json={"data": ["hi"]}, headers=token)
        codes.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1 and "retry in" in r.json()["error"]
            break
    assert 429 in codes and 500 not in codes


def _fn_index(client: httpx.Client, base: str, api_name: str) -> int:
    config = client.get(base + "config").json()
    for i, dep in enumerate(config["dependencies"]):
        if dep.get("api_name") == api_name:
            return dep.get("id", i)
    raise AssertionError(f"no endpoint {api_name}")


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, format="PNG")
    return out.getvalue()


def test_no_reply_names_a_server_path(served):
    """Errors too: whatever a bad request says back, it never shows where the server keeps things."""
    app, client, who, data = served
    bad = [["x", 1, "", "no-such-model"], _image_args(init=_filedata(str(data / "studio.sqlite3")))]
    for args in bad:
        outcome, payload = call(client, app.url, "generate_image", args, who["alice"])
        assert outcome in ("error", "refused") and not re.search(r"/(tmp|root|home|etc)/", json.dumps(payload)), payload


def test_one_user_over_their_text_jobs_is_told_busy_and_others_are_served(served):
    """STUDIO_USER_TEXT_JOBS=1 here: alice's second reply at once is "busy"; bob is served meanwhile."""
    import concurrent.futures

    app, _, who, _ = served

    def chat(user: str) -> tuple[str, object]:
        with httpx.Client(timeout=60) as own:
            return call(own, app.url, "chat", ["Say hi."], who[user])

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(chat, ["alice", "alice", "bob"]))
    alice = [r for r in results[:2]]
    assert sorted(o for o, _ in alice) == ["complete", "error"], alice
    busy = next(p for o, p in alice if o == "error")
    assert "Busy: you already have 1 text requests running" in str(busy)
    assert results[2][0] == "complete"


def test_condense_takes_at_most_ten_documents_a_run(served):
    app, client, who, _ = served
    files = []
    for i in range(11):
        stored = upload(client, app.url, f"note{i}.txt", f"Note number {i}.".encode(), who["alice"]).json()[0]
        files.append({"path": stored, "orig_name": f"note{i}.txt", "meta": {"_type": "gradio.FileData"}})
    outcome, payload = call(client, app.url, "condense", [files], who["alice"])
    assert outcome == "error" and "at most 10" in str(payload), payload


def test_uploads_waiting_per_caller_are_capped(served):
    """STUDIO_MAX_UPLOAD_MB=1 here, so a caller may have 10 MB of unused uploads waiting."""
    app, client, who, _ = served
    codes = [upload(client, app.url, f"fill{i}.bin", os.urandom(900_000), who["bob"]).status_code for i in range(14)]
    assert 429 in codes and set(codes) <= {200, 429}
    assert upload(client, app.url, "other.bin", b"ok", who["alice"]).status_code == 200  # others are not affected


def test_uploads_are_deleted_after_their_lifetime(team):
    import time

    app, _, _ = team
    with httpx.Client(timeout=60) as bob:  # logged in with the cookie, as a browser is
        assert bob.post(app.url + "login", data={"username": "bob", "password": "plain-password-2"}).status_code == 200
        r = upload(bob, app.url, "old.txt", b"kept only briefly")
    assert r.status_code == 200, r.text
    stored = Path(r.json()[0])
    assert stored.is_file()
    deadline = time.monotonic() + 30
    while stored.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not stored.exists()


def test_a_full_queue_answers_busy_with_retry_after(tmp_path):
    """Past STUDIO_MAX_QUEUE waiting requests the server says "Busy ... retry in N s" (429 + Retry-After),
    every other request is served, and nothing is a 5xx error of ours."""
    import concurrent.futures

    tokens = TokenStore(tmp_path / "studio.sqlite3")
    keys = [{"Authorization": f"Bearer {tokens.create(f'user:u{i}')}"} for i in range(8)]
    with (
        fake_openai_server(reply_words=10, chunk_delay=0.3) as fake,
        app_process(
            tmp_path,
            {
                "STUDIO_TEXT_MODEL": "openai:fake-model",
                "OPENAI_BASE_URL": fake.base_url,
                "STUDIO_IMAGE_MODEL": GAN,
                "HF_HOME": str(tmp_path / "hf"),
                "STUDIO_CONCURRENCY": "1",
                "STUDIO_MAX_QUEUE": "2",
            },
        ) as app,
    ):

        def chat(headers: dict) -> tuple[str, object]:
            with httpx.Client(timeout=120) as own:
                return call(own, app.url, "chat", ["Say hi."], headers)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(chat, keys))
    refused = [p for o, p in results if o == "refused"]
    assert refused and all(status == 429 and "Busy" in body and "retry in" in body for status, body in refused)
    assert sum(o == "complete" for o, _ in results) >= 2
    assert all(o in ("complete", "refused") for o, _ in results), results


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"data": ["hi"]}, "Unknown argument 'data'"),
        (["hi"], "JSON object"),
        ({"mesage": "hi"}, "Unknown argument 'mesage'"),
    ],
)
def test_call_v2_with_unknown_arguments_names_them_instead_of_failing(served, body, expected):
    app, client, who, _ = served
    r = client.post(app.url + "gradio_api/call/v2/chat", json=body, headers=who["alice"])
    assert r.status_code == 422 and expected in r.text and "message" in r.text


def test_call_v2_by_name_works(served):
    app, client, who, _ = served
    r = client.post(
        app.url + "gradio_api/call/v2/chat", json={"message": "hi", "temperature": 0.1}, headers=who["alice"]
    )
    assert r.status_code == 200 and r.json()["event_id"]
