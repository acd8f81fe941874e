"""/speak and /transcribe tried as an attacker would, with plain HTTP against a real app process: a server path or
another caller's upload as the recording, another caller's audio link, arguments of the wrong type, NaN and infinite
speeds, huge strings, a text file dressed as audio. Each is refused with a clear message naming what is wrong, no
server path or traceback leaks, and the app answers the next honest call."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from core.security.tokens import TokenStore
from tests.support.app_process import app_process
from tests.support.rest_client import final_event

ALICE = "browser:alice-browser-id-000000000"
BOB = "browser:bob-browser-id-00000000000"


def filedata(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def call(client: httpx.Client, base: str, name: str, body: bytes | list, headers: dict | None = None):
    """("complete" | "error", payload) of a call, or ("refused", (status, text)) when the POST is refused."""
    if isinstance(body, list):
        r = client.post(f"{base}gradio_api/call/{name}", json={"data": body}, headers=headers or {})
    else:
        r = client.post(
            f"{base}gradio_api/call/{name}",
            content=body,
            headers={"content-type": "application/json", **(headers or {})},
        )
    if r.status_code != 200:
        return "refused", (r.status_code, r.text)
    stream = client.get(f"{base}gradio_api/call/{name}/{r.json()['event_id']}", headers=headers or {}, timeout=120)
    return final_event(stream.text) or ("none", stream.text[-300:])


def upload(client: httpx.Client, base: str, name: str, data: bytes, headers: dict) -> str:
    r = client.post(
        f"{base}gradio_api/upload", files={"files": (name, data, "application/octet-stream")}, headers=headers
    )
    assert r.status_code == 200, r.text
    return r.json()[0]


def refused(outcome, *words: str) -> str:
    kind, payload = outcome
    assert kind in ("error", "refused"), outcome
    text = str(payload)
    assert "Traceback" not in text and "/tmp/" not in text and "/work/" not in text, text
    for word in words:
        assert word.lower() in text.lower(), (word, text)
    return text


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("speech-attack")
    tokens = TokenStore(data / "studio.sqlite3")
    alice, bob = tokens.create(ALICE), tokens.create(BOB)
    env = {
        "STUDIO_SPEECH_MODEL": "espeak",
        "STUDIO_TRANSCRIBE_MODEL": "whisper",
        "STUDIO_TEXT_MODEL": "embedded",
        "STUDIO_RATE_LIMIT": "600",
        "GRADIO_TEMP_DIR": str(data / "uploads"),
    }
    with app_process(data, env) as app, httpx.Client(timeout=60) as client:
        yield (client, app.url, {"Authorization": f"Bearer {alice}"}, {"Authorization": f"Bearer {bob}"}, data)


@pytest.fixture(scope="module")
def spoken_wav(tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("wav") / "fox.wav"
    subprocess.run(["espeak-ng", "-w", str(out), "The quick brown fox jumps over the lazy dog."], check=True)
    return out.read_bytes()


def test_a_server_path_or_another_callers_upload_is_not_a_recording(served, spoken_wav):
    client, base, alice, bob, data = served
    mine = upload(client, base, "fox.wav", spoken_wav, alice)
    for path in ("/etc/passwd", "/proc/self/environ", str(data / "studio.sqlite3"), "../../etc/hostname", mine):
        outcome = call(client, base, "transcribe", [filedata(path), "", ""], bob)
        refused(outcome, "upload of yours")
    kind, payload = call(client, base, "transcribe", [filedata(mine), "", ""], alice)  # the owner may
    assert kind == "complete" and "fox" in payload[0].lower(), payload


def test_another_callers_audio_link_is_not_served(served):
    client, base, alice, bob, _ = served
    kind, payload = call(client, base, "speak", ["A private note for Alice.", "", "", 1.0, "wav"], alice)
    assert kind == "complete", payload
    link = payload[0]["path"]
    assert link.startswith("studio-files/") and "/tmp" not in link
    assert client.get(f"{base}gradio_api/file={link}", headers=alice).content[:4] == b"RIFF"
    stolen = client.get(f"{base}gradio_api/file={link}", headers=bob)
    assert stolen.status_code == 404 and b"RIFF" not in stolen.content
    assert client.get(f"{base}gradio_api/file={link}").status_code == 404  # nor to an anonymous caller


@pytest.mark.parametrize(
    "args, words",
    [
        ([["a", "list"], "", "", 1.0, "wav"], ["text"]),
        ([{"text": "hi"}, "", "", 1.0, "wav"], ["text"]),
        ([12345, "", "", 1.0, "wav"], ["text"]),
        (["Hello.", "", "", "fast", "wav"], ["speed"]),
        (["Hello.", "", "", True, "wav"], ["speed"]),
        (["Hello.", "", "", 0.1, "wav"], ["speed"]),
        (["Hello.", "", "", 1.0, 5], ["format"]),
        (["Hello.", "", "", 1.0, "exe"], ["format"]),
        (["Hello.", "", "../../etc/passwd", 1.0, "wav"], ["voice"]),
        (["Hello.", "x" * 100_000, "", 1.0, "wav"], ["model"]),
        (["Hello.", "", "v" * 100_000, 1.0, "wav"], ["voice"]),
        (["<script>alert(1)</script>" * 10_000, "", "", 1.0, "wav"], ["characters"]),
        (["", "", "", 1.0, "wav"], ["no text"]),
    ],
)
def test_hostile_speak_arguments_are_refused_clearly(served, args, words):
    client, base, alice, _, _ = served
    refused(call(client, base, "speak", args, alice), *words)


def test_nan_and_infinite_speed_in_the_raw_body_are_refused(served):
    client, base, alice, _, _ = served
    for literal in ("NaN", "Infinity", "-Infinity", "1e999"):
        body = ('{"data": ["Hello.", "", "", %s, "wav"]}' % literal).encode()
        refused(call(client, base, "speak", body, alice), "speed")


def test_hostile_transcribe_arguments_are_refused_clearly(served, spoken_wav):
    client, base, alice, _, _ = served
    text_file = upload(client, base, "notes.mp3", b"just some words, not audio\n" * 50, alice)
    refused(call(client, base, "transcribe", [filedata(text_file), "", ""], alice), "audio")
    fox = upload(client, base, "fox.wav", spoken_wav, alice)
    refused(call(client, base, "transcribe", [filedata(fox), "../../x", ""], alice), "language")
    refused(call(client, base, "transcribe", [filedata(fox), "e" * 100_000, ""], alice), "language")
    refused(call(client, base, "transcribe", [filedata(fox), "", "m" * 100_000], alice), "model")
    refused(call(client, base, "transcribe", [filedata(fox), "", "no-such-recogniser"], alice), "no-such-recogniser")
    refused(call(client, base, "transcribe", ["just a string", "", ""], alice), "audio")
    refused(call(client, base, "transcribe", [None, "", ""], alice), "audio")
    refused(call(client, base, "transcribe", [filedata(fox), 7, ""], alice), "language")


def test_the_app_still_answers_after_the_attacks(served):
    client, base, alice, _, _ = served
    kind, payload = call(client, base, "speak", ["Still here.", "", "", 1.0, "wav"], alice)
    assert kind == "complete" and payload[1].startswith("Done"), payload
    assert Path(payload[0]["path"]).suffix == ".wav"
