"""Issue 9, finding 2: Gradio sessions are bounded (ui/sessions.py). Over HTTP against the real app
process: API calls leave no session behind and RSS stays flat, and an open browser tab keeps its
session state through a flood of API calls under a tiny cap."""
from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
import urllib.parse
import urllib.request

import psutil
import pytest

from tests.app_process import app_process
from tests.browser_support import wait_for
from tests.openai_servers import fake_openai_server
from tests.rest_client import RestClient

pytestmark = pytest.mark.slow

CHAT_ARGS = ["Say hi.", "", "", 0.7, 0.95, 4, -1, None]


def flood(url: str, calls: int, parallel: int = 4) -> list[str]:
    """`calls` /chat calls over REST, `parallel` clients at once; returns their event ids (which
    are also the session hashes Gradio gave them)."""
    lock, ids, errors = threading.Lock(), [], []
    left = [calls]

    def worker() -> None:
        client = RestClient(url)
        try:
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                outcome = client.call("chat", CHAT_ARGS)
                with lock:
                    if outcome[0] == "complete":
                        ids.append(client.last_event_id)
                    else:
                        errors.append(outcome)
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    return ids


def session_held(url: str, session_hash: str) -> bool:
    """Gradio's deep-link route answers "" for a session it does not hold."""
    query = urllib.parse.urlencode({"session_hash": session_hash})
    with urllib.request.urlopen(f"{url}gradio_api/deep_link?{query}", timeout=30) as r:
        return r.read().strip() not in (b'""', b"")


@pytest.fixture
def chat_app(tmp_path):
    """chat_app(**env) -> the app process, its text model a fast fake OpenAI server."""
    with contextlib.ExitStack() as stack:
        def start(**env):
            fake = stack.enter_context(fake_openai_server(reply_words=3))
            env = {"STUDIO_TEXT_MODEL": "openai:fake-model", "OPENAI_BASE_URL": fake.base_url,
                   # one caller making many calls, a few at once, on purpose
                   "STUDIO_RATE_LIMIT": "0", "STUDIO_USER_TEXT_JOBS": "16", **env}
            return stack.enter_context(app_process(tmp_path, env))

        yield start


def test_api_calls_leave_no_session_behind_and_rss_stays_flat(chat_app):
    app = chat_app()  # STUDIO_MAX_SESSIONS as configured by default
    rss = lambda: psutil.Process(app.proc.pid).memory_info().rss / 2**20  # noqa: E731
    flood(app.url, 300)
    time.sleep(1.5)  # a sweep runs every 0.25 s on sessions idle for 0.5 s
    before = rss()
    ids = flood(app.url, 1000)
    time.sleep(2.5)
    # The calls' sessions were dropped by the sweeps (before the fix Gradio kept up to 10,000). Asked
    # once each: asking touches a session that is still held, which keeps it another second.
    grown = rss() - before
    held = [sid for sid in ids[-10:] + ids[:10] if session_held(app.url, sid)]
    # ~380 KB per call before the fix: 1,000 calls took ~380 MB. Bounded, the residue is allocator noise.
    assert grown < 100, f"RSS grew {grown:.0f} MB over 1,000 API calls ({len(held)} of 20 sessions held)"
    assert not held, f"{len(held)} of 20 API calls' sessions still held"


def stateful_sessions(url: str, count: int) -> list[str]:
    """`count` sessions that hold State and belong to no tab, as any HTTP client can make: the chat
    tab's page-load event (it sets the open conversation's id) joined with a fresh session hash."""
    config = json.loads(urllib.request.urlopen(f"{url}config", timeout=30).read())
    types = {c["id"]: c["type"] for c in config["components"]}
    fn_index = next(d["id"] for d in config["dependencies"]
                    if any(t[1] == "load" for t in d["targets"]) and [types[i] for i in d["inputs"]] == ["browserstate"]
                    and {"state", "chatbot"} <= {types[i] for i in d["outputs"]})
    sessions = []
    for _ in range(count):
        sid = secrets.token_hex(8)
        body = json.dumps({"data": [""], "fn_index": fn_index, "session_hash": sid, "trigger_id": None}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{url}gradio_api/queue/join", data=body,
                               headers={"Content-Type": "application/json"}), timeout=30).read()
        with urllib.request.urlopen(f"{url}gradio_api/queue/data?session_hash={sid}", timeout=30) as r:
            assert b"process_completed" in r.read()
        sessions.append(sid)
    return sessions


@pytest.mark.browser
def test_an_open_tab_keeps_its_state_while_other_sessions_are_dropped(browser, chat_app):
    app = chat_app(STUDIO_MAX_SESSIONS="20")  # Gradio's own LRU cap is 20 sessions, the sweep's 15
    page = browser.new_context().new_page()
    page.goto(app.url)
    box = page.locator("#chat-input textarea")
    box.wait_for()
    page.wait_for_function("() => window.gradio_config !== undefined")
    page.wait_for_timeout(1500)  # the load events: identity, conversations, and the tab's mark
    replies = lambda: page.locator('#chatbot [data-testid="bot"]').all_inner_texts()  # noqa: E731
    box.fill("apple apricot")
    box.press("Enter")
    wait_for(lambda: "tok/s" in page.locator("#chat-stats").inner_text(), 30, "the first reply")
    # Three times the cap of sessions that hold State, and API calls: the tab's session is the
    # oldest by far, so only its mark keeps it.
    others = stateful_sessions(app.url, 60)
    flood(app.url, 60)
    time.sleep(1.0)
    held = [sid for sid in others if session_held(app.url, sid)]
    assert len(held) <= 15, f"{len(held)} of 60 sessions with State held, above the sweep's 15"
    assert held == others[len(others) - len(held):], "the most recently used were not the ones kept"
    # A second message continues the same conversation only if the tab's State (the open
    # conversation's id) survived; a dropped session would start a new conversation.
    box.fill("banana blueberry")
    box.press("Enter")
    wait_for(lambda: replies() and "banana0" in replies()[-1] and "tok/s" in page.locator("#chat-stats").inner_text(),
             30, "the second reply")
    conversations = page.locator("#chat-conversations").inner_text()
    assert "apple apricot" in conversations and "banana blueberry" not in conversations, conversations
    assert len(replies()) == 2 and "apple0" in replies()[0], replies()
    page.context.close()
