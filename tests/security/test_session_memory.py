"""Issue 9, finding 2: Gradio sessions are bounded (ui/server/sessions.py). Over HTTP against the real app
process: API calls leave no session behind and RSS stays flat, and an open browser tab keeps its
session state while sessions past a tiny cap are dropped. And a sweep on Gradio's own objects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
import urllib.parse
import urllib.request

import gradio as gr
import psutil
import pytest
from gradio.state_holder import StateHolder

from tests.support.app_process import app_process
from tests.support.browser import wait_for
from tests.support.openai_servers import fake_openai_server
from tests.support.rest_client import RestClient
from ui.server.sessions import SessionReaper

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
            env = {
                "STUDIO_TEXT_MODEL": "openai:fake-model",
                "OPENAI_BASE_URL": fake.base_url,
                # one caller making many calls, a few at once, on purpose
                "STUDIO_RATE_LIMIT": "0",
                "STUDIO_USER_TEXT_JOBS": "16",
                **env,
            }
            return stack.enter_context(app_process(tmp_path, env))

        yield start


@pytest.mark.slow
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
    fn_index = next(
        d["id"]
        for d in config["dependencies"]
        if any(t[1] == "load" for t in d["targets"])
        and [types[i] for i in d["inputs"]] == ["browserstate"]
        and {"state", "chatbot"} <= {types[i] for i in d["outputs"]}
    )
    sessions = []
    for _ in range(count):
        sid = secrets.token_hex(8)
        body = json.dumps({"data": [""], "fn_index": fn_index, "session_hash": sid, "trigger_id": None}).encode()
        urllib.request.urlopen(
            urllib.request.Request(
                f"{url}gradio_api/queue/join", data=body, headers={"Content-Type": "application/json"}
            ),
            timeout=30,
        ).read()
        with urllib.request.urlopen(f"{url}gradio_api/queue/data?session_hash={sid}", timeout=30) as r:
            assert b"process_completed" in r.read()
        sessions.append(sid)
    return sessions


@pytest.mark.slow
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
    assert held == others[len(others) - len(held) :], "the most recently used were not the ones kept"
    # A second message continues the same conversation only if the tab's State (the open
    # conversation's id) survived; a dropped session would start a new conversation.
    box.fill("banana blueberry")
    box.press("Enter")
    wait_for(
        lambda: replies() and "banana0" in replies()[-1] and "tok/s" in page.locator("#chat-stats").inner_text(),
        30,
        "the second reply",
    )
    conversations = page.locator("#chat-conversations").inner_text()
    assert "apple apricot" in conversations and "banana blueberry" not in conversations, conversations
    assert len(replies()) == 2 and "apple0" in replies()[0], replies()
    page.context.close()


def run_async(coro):
    """asyncio.run on a thread of its own (Playwright's sync API keeps a loop running on this one)."""
    result = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(coro)))
    thread.start()
    thread.join()
    assert result, "the coroutine raised (see the thread's traceback above)"
    return result[0]


class ServedApp:
    """What the sweep reads of Gradio's App: its StateHolder and the Blocks (with their queue)."""

    def __init__(self, demo: gr.Blocks) -> None:
        self.demo, self.state_holder = demo, StateHolder()
        self.state_holder.set_blocks(demo)

    def get_blocks(self) -> gr.Blocks:
        return self.demo


def test_a_sweep_drops_what_nobody_needs_and_keeps_open_tabs():
    with gr.Blocks() as demo:
        state = gr.State(None)
        gr.Textbox()
    app = ServedApp(demo)
    holder, queue = app.state_holder, demo._queue
    reaper = SessionReaper(8, grace_s=0.0)  # the sweep's own cap: 6
    for sid in ("tab", "closed-tab"):  # the oldest two, both holding State
        holder[sid][state._id] = f"{sid} conversation"
        run_async(reaper._mark_tab(gr.Request(session_hash=sid)))
    holder.session_data["closed-tab"].is_closed = True  # Gradio sets it when the heartbeat drops
    holder["api-1"], holder["api-2"]  # two API calls' sessions: nothing stored
    queue.pending_event_ids_session["api-1"] = set()  # what Gradio leaves once a result is read
    queue.pending_messages_per_session["api-1"] = asyncio.Queue()
    for i in range(10):
        holder[f"state-{i}"][state._id] = i
    stats = reaper.sweep(app)
    held = list(holder.session_data)
    assert "api-1" not in held and "api-2" not in held and stats.dropped_untouched == 2
    assert "api-1" not in queue.pending_event_ids_session and "api-1" not in queue.pending_messages_per_session
    assert len(held) == 6 and held[-1] == "tab" and holder["tab"][state._id] == "tab conversation"
    assert held[:-1] == [f"state-{i}" for i in range(5, 10)], held  # least recently used went first
    assert stats.open_tabs == 1 and stats.dropped_over_cap == 6  # closed-tab and state-0..4


def test_launch_options_keep_a_lifespan_already_there_and_run_the_sweep():
    with gr.Blocks() as demo:
        gr.Textbox()
    app = ServedApp(demo)
    app.state_holder["api"]
    entered: list[str] = []

    @contextlib.asynccontextmanager
    async def inner(served):
        entered.append("in")
        yield {"from": "inner"}
        entered.append("out")

    reaper = SessionReaper(8, grace_s=0.0, interval_s=0.01)
    options = {"app_kwargs": {"middleware": ["guard"], "lifespan": inner}}
    reaper.add_launch_options(options)
    assert options["state_session_capacity"] == 8 and options["app_kwargs"]["middleware"] == ["guard"]

    async def serve():
        async with options["app_kwargs"]["lifespan"](app) as state:
            assert state == {"from": "inner"}
            await asyncio.sleep(0.2)

    run_async(serve())
    assert entered == ["in", "out"]
    assert "api" not in app.state_holder.session_data  # the sweep ran while the app was up
