"""/speak and /transcribe through the real app process over HTTP with gradio_client: a decodable file in each format
whose length grows with the text, a recording made by espeak-ng transcribed back to its words, and hostile inputs
refused with a clear reason while the app keeps answering."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.app_process import app_process

SHORT = "Good morning."
LONG = (
    "Good morning. The train to the coast leaves at nine, and the weather should stay dry until the evening. "
    "Bring a coat anyway, because the wind on the pier is always colder than you expect."
)
SENTENCE = "The quick brown fox jumps over the lazy dog."
MAGIC = {"wav": b"RIFF", "ogg": b"OggS"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from gradio_client import Client

    data = tmp_path_factory.mktemp("speech-app")
    env = {"STUDIO_SPEECH_MODEL": "espeak,flite", "STUDIO_TRANSCRIBE_MODEL": "whisper", "STUDIO_TEXT_MODEL": "embedded"}
    with app_process(data, env) as proc:
        yield Client(proc.url, verbose=False), proc


def seconds_of(path: str | Path) -> float:
    """The file's audio length, decoded for real (PyAV), not read from a header."""
    import av

    total = 0
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            total += frame.samples
        rate = stream.rate
    return total / rate


def espeak_wav(folder: Path, text: str, name: str = "spoken.wav") -> Path:
    out = folder / name
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(out), text], check=True, timeout=60)
    return out


def test_endpoints_take_their_first_argument_and_the_rest_optional(app):
    client, _ = app
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    speak = named["/speak"]["parameters"]
    assert [p["parameter_name"] for p in speak] == ["text", "model", "voice", "speed", "format"]
    assert not speak[0]["parameter_has_default"] and all(p["parameter_has_default"] for p in speak[1:])
    hear = named["/transcribe"]["parameters"]
    assert [p["parameter_name"] for p in hear] == ["audio", "language", "model"]
    assert not hear[0]["parameter_has_default"] and all(p["parameter_has_default"] for p in hear[1:])


@pytest.mark.parametrize("fmt", ["wav", "mp3", "ogg"])
def test_speak_returns_a_decodable_file_that_grows_with_the_text(app, fmt):
    client, _ = app
    short, status = client.predict(SHORT, format=fmt, api_name="/speak")
    assert status.startswith("Done") and fmt in status
    long, _ = client.predict(LONG, model="espeak", format=fmt, api_name="/speak")
    assert Path(short).suffix == f".{fmt}" and Path(long).suffix == f".{fmt}"
    head = Path(long).read_bytes()[:4]
    if fmt in MAGIC:
        assert head == MAGIC[fmt]
    else:
        assert head[:3] == b"ID3" or (head[0] == 0xFF and head[1] & 0xE0 == 0xE0)
    a, b = seconds_of(short), seconds_of(long)
    assert 0.4 < a < 5 and b > 4 * a, (a, b)


def test_speak_with_another_engine_voice_and_speed(app):
    client, _ = app
    normal, _ = client.predict(LONG, model="espeak", format="wav", api_name="/speak")
    fast, _ = client.predict(LONG, model="espeak", speed=2.0, format="wav", api_name="/speak")
    assert seconds_of(fast) < 0.75 * seconds_of(normal)
    flite, status = client.predict(SHORT, model="flite", format="wav", api_name="/speak")
    assert status.startswith("Done") and seconds_of(flite) > 0.3


def test_transcribe_a_recording_made_by_espeak(app, tmp_path):
    from gradio_client import handle_file

    client, _ = app
    text, segments, language = client.predict(handle_file(str(espeak_wav(tmp_path, SENTENCE))), api_name="/transcribe")
    words = text.lower()
    for word in ("quick", "brown", "fox", "lazy", "dog"):
        assert word in words, text
    assert language == "en"
    assert segments and all(s["start"] < s["end"] for s in segments)
    assert " ".join(s["text"] for s in segments).strip() == text.strip()
    named, _, lang = client.predict(handle_file(str(espeak_wav(tmp_path, SENTENCE))), "en", api_name="/transcribe")
    assert "fox" in named.lower() and lang == "en"


def test_hostile_inputs_get_clear_errors_and_the_app_keeps_answering(app, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client, _ = app
    refusals = [
        (("   ",), {}, "no text"),
        (("x" * 200_001,), {}, "characters"),
        ((SHORT,), {"format": "flac"}, "format"),
        ((SHORT,), {"voice": "no-such-voice"}, "voice"),
        ((SHORT,), {"model": "no-such-model"}, "model"),
        ((SHORT,), {"speed": 9.0}, "speed"),
        ((SHORT,), {"model": "m" * 5000}, "model"),
    ]
    for args, kwargs, word in refusals:
        with pytest.raises(AppError) as refused:
            client.predict(*args, **kwargs, api_name="/speak")
        assert word in str(refused.value).lower(), (kwargs, str(refused.value))
        assert "Traceback" not in str(refused.value)
    fake = tmp_path / "notes.mp3"
    fake.write_text("this is not audio at all, just a text file named like one\n" * 20)
    with pytest.raises(AppError) as refused:
        client.predict(handle_file(str(fake)), api_name="/transcribe")
    assert "audio" in str(refused.value).lower() and "Traceback" not in str(refused.value)
    with pytest.raises(AppError) as refused:
        client.predict(handle_file(str(espeak_wav(tmp_path, SENTENCE))), "english please", api_name="/transcribe")
    assert "language" in str(refused.value).lower()
    # still serving
    path, status = client.predict(SHORT, format="wav", api_name="/speak")
    assert status.startswith("Done") and seconds_of(path) > 0.3


def test_transcribe_a_videos_sound_track_and_refuse_a_silent_video(app, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client, _ = app
    speech = espeak_wav(tmp_path, SENTENCE)
    video, silent = tmp_path / "clip.mp4", tmp_path / "silent.mp4"
    picture = ["-f", "lavfi", "-i", "color=c=navy:s=64x64:d=4"]
    subprocess.run(
        ["ffmpeg", "-v", "error", *picture, "-i", str(speech), "-shortest", "-c:a", "aac", str(video)],
        check=True,
        timeout=60,
    )
    subprocess.run(["ffmpeg", "-v", "error", *picture, "-an", str(silent)], check=True, timeout=60)
    text, segments, language = client.predict(handle_file(str(video)), api_name="/transcribe")
    assert "fox" in text.lower() and "dog" in text.lower() and language == "en", text
    with pytest.raises(AppError) as refused:
        client.predict(handle_file(str(silent)), api_name="/transcribe")
    assert "audio" in str(refused.value).lower() and "Traceback" not in str(refused.value)
