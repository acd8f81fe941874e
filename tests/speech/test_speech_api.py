"""Who the speech endpoints act for, and the Speech tab's events driven as a page drives them (no browser): anonymous
API callers' items go to the anonymous identity, an API token's to its user (so they show in that person's History);
a language mismatch offers a voice that one click sets; a transcript sent to the Writer is added after the draft
there (nothing typed is lost) and selects that tab; without the ffmpeg program the tab does not stream and says so."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid

import pytest

from config import Settings
from core.quota import ANONYMOUS_API_USER
from core.security.tokens import TokenStore
from tests.models.test_models_ui import Page
from tests.support.apps import running_app

SENTENCE = "The quick brown fox jumps over the lazy dog."
GERMAN = "Guten Morgen. Heute ist ein schöner Tag, und wir gehen zusammen in den Park spazieren."


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    data = tmp_path_factory.mktemp("speech-api")
    settings = Settings(
        text_models=("embedded",), speech_models=("espeak",), transcribe_models=("whisper",), data_dir=data
    )
    with running_app(settings) as (client, demo):
        yield client, demo


def espeak_wav(folder, text: str = SENTENCE) -> bytes:
    out = folder / "fox.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(out), text], check=True, timeout=60)
    return out.read_bytes()


def test_anonymous_api_items_are_the_anonymous_identitys_and_a_tokens_its_users(app):
    from gradio_client import Client

    client, demo = app
    speech = demo.speech_studio
    _, status = client.predict("An anonymous note.", format="wav", api_name="/speak")
    item_id = status.rsplit("id ", 1)[1]
    item = speech.get(ANONYMOUS_API_USER, item_id)
    assert item.source == "api" and item.kind == "speech" and item.fmt == "wav"
    user = "browser:" + "t" * 30
    token = TokenStore(demo.speech_studio.settings.db_path).create(user)
    with_token = Client(client.src, headers={"Authorization": f"Bearer {token}"}, verbose=False)
    _, status = with_token.predict("A note for my history.", format="ogg", api_name="/speak")
    mine = speech.get(user, status.rsplit("id ", 1)[1])
    assert mine.title.startswith("A note for my history") and mine.fmt == "ogg"
    assert all(i.id != mine.id for i in speech.history(ANONYMOUS_API_USER))


def test_a_language_mismatch_offers_a_voice_that_one_click_sets(app):
    client, _ = app
    page = Page(client.src)
    page.set("speech-text", "   ")
    page.trigger("speech-run")  # (the run is a follow-up of the click: its message is in the status line)
    assert page.value("speech-status").startswith("**Not spoken.**") and "no text" in page.value("speech-status")
    long = "word " * 25_000  # 125,000 characters: past the 100,000 limit, which the message names
    page.set("speech-text", long)
    page.trigger("speech-run")
    assert "100,000" in page.value("speech-status") and "Split" in page.value("speech-status")
    assert page.value("speech-text") == long  # the text stays in its box
    page.set("speech-text", GERMAN)
    result = page.trigger("speech-run")
    assert result["success"], result
    assert page.value("speech-status").startswith("**Not spoken.**") and "German" in page.value("speech-status")
    assert page.prop("speech-use-voice", "visible") and "German" in page.value("speech-use-voice")
    assert page.value("speech-text") == GERMAN  # the text stays
    assert page.trigger("speech-use-voice")["success"]
    assert page.value("speech-model") == "espeak" and page.value("speech-voice").startswith("de")
    assert not page.prop("speech-use-voice", "visible")
    assert page.trigger("speech-run")["success"]
    assert page.value("speech-status").startswith("**Done.**"), page.value("speech-status")


def test_a_transcript_sent_to_the_writer_is_added_after_the_draft(app, tmp_path):
    client, _ = app
    page = Page(client.src)
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="fox.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + espeak_wav(tmp_path)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        client.src + "gradio_api/upload",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        path = json.loads(answer.read())[0]
    page.set("speech-upload", {"path": path, "orig_name": "fox.wav", "meta": {"_type": "gradio.FileData"}})
    nothing = page.trigger("speech-send-writer")
    assert not nothing["success"] and "Transcribe" in (nothing["error"] or "")
    assert page.trigger("speech-transcribe")["success"]
    assert page.value("speech-transcribe-status").startswith("**Done.**"), page.value("speech-transcribe-status")
    assert "fox" in page.value("speech-transcript").lower()
    page.set("writer-draft", "My own opening paragraph.")
    assert page.trigger("speech-send-writer")["success"]
    draft = page.value("writer-draft")
    assert draft.startswith("My own opening paragraph.\n\n") and "fox" in draft.lower()
    tabs = next(i for i, c in page.components.items() if c["type"] == "tabs" and page.props[i].get("selected"))
    assert page.props[tabs]["selected"] == "writer"
    assert page.trigger("speech-send-condense")["success"]
    assert "fox" in page.value("condense-text").lower()
    assert page.trigger("speech-export-vtt")["success"]
    assert page.value("speech-export-file")["orig_name"].endswith(".vtt")


def test_without_ffmpeg_the_tab_plays_the_file_at_the_end_and_says_so(tmp_path, monkeypatch):
    import gradio as gr

    import ui.speech
    from app import build_app

    real = ui.speech.shutil.which
    monkeypatch.setattr(ui.speech.shutil, "which", lambda name: None if name == "ffmpeg" else real(name))
    demo = build_app(Settings(text_models=("embedded",), speech_models=("espeak",), data_dir=tmp_path))
    blocks = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    player, note = blocks["speech-player"], blocks["speech-no-live"]
    assert isinstance(player, gr.Audio) and not player.streaming
    assert note.visible and "ffmpeg" in note.value
    monkeypatch.undo()
    demo = build_app(Settings(text_models=("embedded",), speech_models=("espeak",), data_dir=tmp_path / "b"))
    blocks = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    assert blocks["speech-player"].streaming and not blocks["speech-no-live"].visible


def test_a_cancelled_speak_call_stops_the_work_and_keeps_what_was_made(app):
    client, demo = app
    speech = demo.speech_studio
    before = {i.id for i in speech.history(ANONYMOUS_API_USER)}
    text = " ".join(f"Sentence number {n} of a very long reading that nobody will wait for." for n in range(1000))
    job = client.submit(text, "espeak", "", 1.0, "wav", api_name="/speak")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("Speaking" in (s or "") for _, s in job.outputs()):
        time.sleep(0.1)
    assert any("Speaking" in (s or "") for _, s in job.outputs()), job.outputs()
    job.cancel()
    deadline = time.monotonic() + 60
    stopped = []
    while time.monotonic() < deadline and not stopped:
        stopped = [i for i in speech.history(ANONYMOUS_API_USER) if i.id not in before and i.stopped]
        time.sleep(0.2)
    assert stopped, "the cancelled call kept no stopped item"
    assert stopped[0].duration > 0 and len(stopped[0].text) < len(text)
    assert speech.jobs(ANONYMOUS_API_USER) == 0  # its job slot is free again


def test_history_deletes_an_item_and_its_file(app):
    client, demo = app
    page = Page(client.src)
    page.set("speech-text", "Something to delete later.")
    assert page.trigger("speech-run")["success"]
    browser_id = next(i for i, c in page.components.items() if c["type"] == "browserstate")
    user = f"browser:{page.values[browser_id]}"  # this page's identity
    item = demo.speech_studio.history(user)[0]
    assert item.path is not None and item.path.is_file()
    page.set("speech-history", item.id)
    assert page.trigger("speech-history", "change")["success"]
    assert page.prop("speech-history-delete", "visible") and "Something to delete" in page.value("speech-history-text")
    assert page.trigger("speech-history-delete")["success"] and page.prop("speech-history-confirm", "visible")
    assert page.trigger("speech-history-confirm")["success"]
    assert demo.speech_studio.history(user) == [] and not item.path.exists()


def test_live_playback_stops_past_its_limit_and_the_file_has_it_all(app, monkeypatch):
    import ui.speech

    client, _ = app
    monkeypatch.setattr(ui.speech, "LIVE_MAX_S", 3.0)
    page = Page(client.src)
    status, player = page.id("speech-status"), page.id("speech-player")
    run = next(
        d
        for d in page.config["dependencies"]
        if status in d["outputs"] and player in d["outputs"] and page.id("speech-text") in d["inputs"]
    )
    text = " ".join(f"This is sentence number {n} of a text longer than the live player takes." for n in range(12))
    page.set("speech-text", text)
    page.set("speech-format", "wav")
    result = page._run(run)
    assert result["success"], result
    lines = [out[run["outputs"].index(status)] for out in result["streamed"]]
    lines = [v.get("value") if isinstance(v, dict) else v for v in lines]
    assert any("live playback covers the first 3.0 s" in (v or "") for v in lines), lines
    assert (page.value("speech-status") or "").startswith("**Done.**")
    kept = page.value("speech-file")
    assert kept and kept["orig_name"].endswith(".wav") and kept["size"] > 16000 * 2 * 10  # well past 3 s of audio
