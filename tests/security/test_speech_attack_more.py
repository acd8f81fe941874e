"""More of the attacker's look at speech, sent over HTTP to a real app process: the Speech tab's private events called
bare through Gradio's queue with browser ids the caller made up, and /speak with a token made for each such id. A
browser id is whatever the caller sends (and without logins "Create a token" makes a token for any of them), so the
per-user job cap alone let one address start a long job under each new id and take every speech worker; now one
address (without logins) gets at most half of them, and someone else is still served at once."""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from core.security.tokens import TokenStore
from tests.support.app_process import app_process

BOB = "browser:bob-browser-id-00000000000"
LONG = "Hello there, my friend.\n\n" * 3000  # 3,000 pieces: minutes of work for espeak-ng


def _speak_event(base: str) -> int:
    """fn_index of the Speak button's work (text, model, voice, speed, format, browser id)."""
    config = httpx.get(f"{base}config", timeout=30).json()
    elem = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    for dep in config["dependencies"]:
        inputs = [elem.get(i) for i in dep["inputs"]]
        if inputs[:1] == ["speech-text"] and len(inputs) == 6:
            return dep["id"]
    raise AssertionError("no Speak event")


def _api_speak(base: str, token: str, outcome: dict, key: int, wait_s: float) -> None:
    """/speak with a made-up id's token, read until it ends or `wait_s` passes."""
    headers = {"Authorization": f"Bearer {token}"}
    r = httpx.post(f"{base}gradio_api/call/speak", json={"data": [LONG, "", "", 0.5, "wav"]}, headers=headers)
    if r.status_code != 200:
        outcome[key] = ("refused", r.text)
        return
    outcome[key] = ("running", "")
    url = f"{base}gradio_api/call/speak/{r.json()['event_id']}"
    try:
        with httpx.stream("GET", url, headers=headers, timeout=wait_s) as stream:
            event = ""
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    outcome[key] = ("done" if event == "complete" else "error", line[5:])
                    return
    except (httpx.TimeoutException, httpx.TransportError):
        return


def _join_and_read(base: str, fn_index: int, data: list, outcome: dict, key: int, wait_s: float) -> None:
    """Join the queue as the page does and read the event stream until the run ends or `wait_s` passes."""
    session = uuid.uuid4().hex
    body = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    r = httpx.post(f"{base}gradio_api/queue/join", json=body, timeout=30)
    if r.status_code != 200:
        outcome[key] = ("refused", r.text)
        return
    outcome[key] = ("running", "")
    try:
        with httpx.stream("GET", f"{base}gradio_api/queue/data?session_hash={session}", timeout=wait_s) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    output = msg.get("output") or {}
                    outcome[key] = ("done" if msg.get("success") else "error", json.dumps(output))
                    return
    except (httpx.TimeoutException, httpx.TransportError):
        return  # still running when the test stopped looking (or the app was stopped)


@pytest.fixture
def served(tmp_path):
    tokens = TokenStore(tmp_path / "studio.sqlite3")
    bob = tokens.create(BOB)
    made_up = [tokens.create(f"browser:{secrets.token_urlsafe(18)}") for _ in range(2)]  # as "Create a token" would
    env = {
        "STUDIO_SPEECH_MODEL": "espeak",
        "STUDIO_TRANSCRIBE_MODEL": "whisper",
        "STUDIO_TEXT_MODEL": "embedded",
        "STUDIO_RATE_LIMIT": "600",
        "STUDIO_CONCURRENCY": "4",  # four speech workers; one caller may hold two
        "STUDIO_USER_JOBS": "1",
        "GRADIO_TEMP_DIR": str(tmp_path / "uploads"),
    }
    with app_process(tmp_path, env) as app:  # stopping the app ends the long runs
        yield app.url, {"Authorization": f"Bearer {bob}"}, made_up, tmp_path


def test_made_up_browser_ids_and_their_tokens_do_not_take_every_speech_worker(served):
    base, bob, made_up, data = served
    fn_index = _speak_event(base)
    outcome: dict[int, tuple[str, str]] = {}
    threads = [
        threading.Thread(
            target=_join_and_read,
            args=(base, fn_index, [LONG, "espeak", "en-us", 0.5, "wav", secrets.token_urlsafe(18)], outcome, i, 60),
            daemon=True,
        )
        for i in range(2)
    ] + [
        threading.Thread(target=_api_speak, args=(base, token, outcome, 2 + i, 60), daemon=True)
        for i, token in enumerate(made_up)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sum(1 for k, _ in outcome.values() if k == "error") < 2:
        time.sleep(0.2)
    refused = [text for kind, text in outcome.values() if kind == "error"]
    assert len(refused) == 2, outcome  # two of the four runs (two ids in the tab, two tokens) refused at once...
    assert all("already running from where you are" in text for text in refused), refused
    assert "Traceback" not in "".join(refused) and "/tmp/" not in "".join(refused)
    # ...and two run. A run opens its file after its admission, checks and first piece, so on a busy machine the
    # refusals can come first: wait for the files rather than look once.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list((Path(data) / "speech").glob("*/.*.part.wav"))) < 2:
        time.sleep(0.2)
    partial = list((Path(data) / "speech").glob("*/.*.part.wav"))
    assert len(partial) == 2, (partial, outcome)

    # Someone else (Bob, with his token, from another address) is served at once, between the long runs' pieces.
    started = time.monotonic()
    elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=elsewhere, headers=bob, timeout=30) as client:
        r = client.post(f"{base}gradio_api/call/speak", json={"data": ["Hello from Bob.", "", "", 1.0, "wav"]})
        assert r.status_code == 200, r.text
        stream = client.get(f"{base}gradio_api/call/speak/{r.json()['event_id']}").text
    assert "event: complete" in stream and "Done:" in stream, stream[-400:]
    assert time.monotonic() - started < 20


def _event(base: str, elem_id: str, trigger: str, size: int) -> int:
    config = httpx.get(f"{base}config", timeout=30).json()
    target = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    for dep in config["dependencies"]:
        if [target, trigger] in [list(t) for t in dep["targets"]] and len(dep["inputs"]) == size:
            return dep["id"]
    raise AssertionError(f"no {trigger} event on {elem_id}")


def test_opening_a_kept_recording_again_and_again_does_not_fill_the_disk(served):
    """History's "show" hands the page a copy of the kept audio in Gradio's cache (swept after hours): one copy per
    item, reused, not one per call (a long WAV is hundreds of MB; 120 calls a minute filled a disk in seconds)."""
    base, _, made_up, data = served
    bid = secrets.token_urlsafe(18)
    token = TokenStore(Path(data) / "studio.sqlite3").create(f"browser:{bid}")  # the same user as the browser id
    headers = {"Authorization": f"Bearer {token}"}
    r = httpx.post(
        f"{base}gradio_api/call/speak",
        json={"data": ["The quick brown fox jumps over the lazy dog. " * 20, "", "", 1.0, "wav"]},
        headers=headers,
    )
    stream = httpx.get(f"{base}gradio_api/call/speak/{r.json()['event_id']}", headers=headers, timeout=60).text
    assert ", id " in stream, stream[-400:]
    item_id = stream.rsplit(", id ", 1)[1].split('"')[0]
    kept_file = next((Path(data) / "speech").glob(f"*/{item_id}.wav"))
    kept = kept_file.stat().st_size
    refresh = _event(base, "speech-history-part", "select", 2)  # fills the list, as opening History does
    show = _event(base, "speech-history", "change", 2)
    cache = Path(data) / "uploads"
    session = uuid.uuid4().hex
    for fn_index, value in [(refresh, None)] + [(show, item_id)] * 6:
        body = {"data": [bid, value], "fn_index": fn_index, "session_hash": session, "event_data": None}
        assert httpx.post(f"{base}gradio_api/queue/join", json=body, timeout=30).status_code == 200
        shown = httpx.get(f"{base}gradio_api/queue/data?session_hash={session}", timeout=60).text
        assert '"success":true' in shown, shown[-400:]
    assert ".wav" in shown
    copies = [p for p in cache.rglob("*.wav") if p.is_file()]
    assert 0 < sum(p.stat().st_size for p in copies) <= kept, [(p.name, p.stat().st_size) for p in copies]
    assert copies[0].stat().st_ino == kept_file.stat().st_ino  # on the same disk: a second name, no second copy

    # A transcript's show exports its text afresh each time: the copy handed out is still one.
    wav = Path(data) / "fox.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "The quick brown fox jumps over the lazy dog."], check=True)
    up = httpx.post(f"{base}gradio_api/upload", files={"files": ("fox.wav", wav.read_bytes())}, headers=headers)
    audio = {"path": up.json()[0], "meta": {"_type": "gradio.FileData"}}
    r = httpx.post(f"{base}gradio_api/call/transcribe", json={"data": [audio, "en", ""]}, headers=headers)
    assert (
        "fox"
        in httpx.get(
            f"{base}gradio_api/call/transcribe/{r.json()['event_id']}", headers=headers, timeout=120
        ).text.lower()
    )
    transcript = next(i for i in _ids(base, refresh, bid) if i != item_id)
    for fn_index, value in [(refresh, None)] + [(show, transcript)] * 6:
        body = {"data": [bid, value], "fn_index": fn_index, "session_hash": session, "event_data": None}
        assert httpx.post(f"{base}gradio_api/queue/join", json=body, timeout=30).status_code == 200
        shown = httpx.get(f"{base}gradio_api/queue/data?session_hash={session}", timeout=60).text
        assert '"success":true' in shown, shown[-400:]
    assert len([p for p in cache.rglob("*.txt") if p.is_file()]) == 1


def _ids(base: str, refresh: int, bid: str) -> list[str]:
    """The item ids History lists for a browser id."""
    session = uuid.uuid4().hex
    body = {"data": [bid, None], "fn_index": refresh, "session_hash": session, "event_data": None}
    assert httpx.post(f"{base}gradio_api/queue/join", json=body, timeout=30).status_code == 200
    for line in httpx.get(f"{base}gradio_api/queue/data?session_hash={session}", timeout=60).text.splitlines():
        if '"process_completed"' in line:
            update = json.loads(line[5:])["output"]["data"][0]
            return [value for _, value in update["choices"]]
    raise AssertionError("no list")


def test_anothers_item_id_in_historys_events_shows_and_deletes_nothing(served):
    """Bob knows Alice's item id (it was in her /speak status) and sends it to History's show, open and delete from
    his own page: each is refused, nothing of hers reaches him, and her recording stays."""
    base, _, _, data = served
    store = TokenStore(Path(data) / "studio.sqlite3")
    alice_bid, bob_bid = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    alice = {"Authorization": f"Bearer {store.create(f'browser:{alice_bid}')}"}
    r = httpx.post(
        f"{base}gradio_api/call/speak", json={"data": ["A private note for Alice.", "", "", 1.0, "wav"]}, headers=alice
    )
    stream = httpx.get(f"{base}gradio_api/call/speak/{r.json()['event_id']}", headers=alice, timeout=60).text
    item_id = stream.rsplit(", id ", 1)[1].split('"')[0]
    kept = next((Path(data) / "speech").glob(f"*/{item_id}.wav"))
    refresh = _event(base, "speech-history-part", "select", 2)
    show = _event(base, "speech-history", "change", 2)
    open_ = _event(base, "speech-history-open", "click", 2)
    delete = _event(base, "speech-history-confirm", "click", 3)
    session = uuid.uuid4().hex
    for fn_index, data_ in [
        (refresh, [bob_bid, None]),
        (show, [bob_bid, item_id]),
        (open_, [bob_bid, item_id]),
        (delete, [bob_bid, item_id, None]),
    ]:
        body = {"data": data_, "fn_index": fn_index, "session_hash": session, "event_data": None}
        r = httpx.post(f"{base}gradio_api/queue/join", json=body, timeout=30)
        answer = r.text if r.status_code != 200 else ""
        if r.status_code == 200:
            answer = httpx.get(f"{base}gradio_api/queue/data?session_hash={session}", timeout=60).text
        if fn_index != refresh:
            assert '"success":true' not in answer, answer[-400:]
            assert "Alice" not in answer and ".wav" not in answer and "/tmp/" not in answer, answer[-400:]
    assert kept.is_file()
    assert item_id in _ids(base, refresh, alice_bid) and item_id not in _ids(base, refresh, bob_bid)


def test_read_aloud_streams_at_most_the_live_limit_of_a_long_text(monkeypatch):
    """Read aloud takes any text a script sends (the writer's draft is a box value): the player gets the first
    LIVE_MAX_S of audio only, as the Speech tab's does, since Gradio holds a run's stream in memory until it ends."""
    import ui.read_aloud as read_aloud
    from core.speech.speaking import SpeakUpdate

    monkeypatch.setattr(read_aloud, "LIVE_MAX_S", 10.0)
    reader = read_aloud.ReadAloud(None, "writer", None, None, None, None, live=True)  # type: ignore[arg-type]
    updates = [SpeakUpdate(i, 20, 4.0 * (i + 1), b"RIFF-piece", None, "Speaking…") for i in range(6)]
    shown = list(reader._updates(iter(updates), ""))
    sent = [player for _, player, _, _ in shown if player == b"RIFF-piece"]
    assert len(sent) == 2  # 4 s and 8 s of audio; 12 s and on are only in the file
    assert "the player has the first" in shown[-1][2] and "the player has the first" not in shown[0][2]
