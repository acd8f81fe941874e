"""The hosted speech paths (OpenAISpeechBackend, OpenAITranscribeBackend) against a real HTTP server on loopback that
speaks the audio API (tests/support/openai_servers.py): audio of the right length, segments and language, the
upload as sent, faults (401, 429, 500, timeouts, cancel) and where the key may go."""

from __future__ import annotations

import struct
import threading
import time
import traceback
import wave
from pathlib import Path

import numpy as np
import pytest

from backends.speech.base import SpeechBackend, SpeechCancelled, TranscribeBackend, TranscriptInfo
from backends.speech.openai_speech import MAX_PIECE_CHARS, OpenAISpeechBackend, parse_wav
from backends.speech.openai_transcribe import OpenAITranscribeBackend, language_code
from backends.text.base import (
    AuthFailedError,
    BackendError,
    ConnectionFailedError,
    ModelUnavailableError,
    RateLimitedError,
    ServerFailedError,
    TimeoutFailedError,
)
from config import Settings
from tests.support.openai_servers import fake_openai_server

KEY = "sk-test-AUDIO-S3CR3T-0123456789"


def speaker(url: str | None, *, key: str | None = KEY, timeout: float = 10.0, retries: int = 2) -> OpenAISpeechBackend:
    return OpenAISpeechBackend("tts-1", url, key, timeout, retries, spec="openai:tts-1")


def hearer(
    url: str | None, *, key: str | None = KEY, timeout: float = 10.0, retries: int = 2
) -> OpenAITranscribeBackend:
    return OpenAITranscribeBackend("whisper-1", url, key, timeout, retries, spec="openai:whisper-1")


def write_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((0.2 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes())
    return path


def assert_no_key(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc)) + repr(exc)
    assert KEY not in text
    assert exc.__cause__ is None and exc.__context__ is None  # the SDK error (with the request) not chained


def transcribe(backend: OpenAITranscribeBackend, path: Path, language: str | None = None, cancel=None):
    infos: list[TranscriptInfo] = []
    segments = list(
        backend.transcribe(path, language=language, cancel=cancel or threading.Event(), on_info=infos.append)
    )
    return segments, infos


# -- speech out ---------------------------------------------------------------------------------------------------


def test_speech_backend_meets_the_protocol_through_the_registry():
    from backends import create_speech_backend

    backend = create_speech_backend("openai:tts-1", Settings(openai_base_url="http://127.0.0.1:9/v1"))
    assert isinstance(backend, SpeechBackend) and isinstance(backend, OpenAISpeechBackend)
    assert backend.max_piece_chars == MAX_PIECE_CHARS <= 4096
    voices = backend.voices()
    assert voices[0].id == "alloy" and {"nova", "shimmer", "onyx"} <= {v.id for v in voices}
    assert all("en" in v.languages and "de" in v.languages and "ja" in v.languages for v in voices)


def test_speech_returns_audio_whose_length_follows_the_text():
    with fake_openai_server(require_key=KEY) as server:
        backend = speaker(server.base_url)
        short = backend.synthesize("Hello there.", voice="nova", speed=1.0, cancel=threading.Event())
        long = backend.synthesize("Hello there. " * 10, voice="nova", speed=1.0, cancel=threading.Event())
        fast = backend.synthesize("Hello there. " * 10, voice="nova", speed=2.0, cancel=threading.Event())
    assert short.sample_rate == 24000 and short.samples.dtype == np.float32
    assert short.seconds == pytest.approx(12 * 0.06, abs=0.01)
    assert long.seconds == pytest.approx(130 * 0.06, abs=0.01)
    assert fast.seconds == pytest.approx(long.seconds / 2, abs=0.01)
    assert 0.25 < float(np.abs(long.samples).max()) <= 0.31  # the tone, read back at its level
    sent = server.audio_requests[0].body
    assert sent == {"model": "tts-1", "voice": "nova", "input": "Hello there.", "response_format": "wav", "speed": 1.0}
    assert server.audio_requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_parse_wav_reads_plain_streamed_float_and_stereo_and_refuses_others():
    def riff(tag: int, channels: int, bits: int, payload: bytes, size: int | None = None) -> bytes:
        fmt = struct.pack("<HHIIHH", tag, channels, 8000, 8000 * channels * bits // 8, channels * bits // 8, bits)
        data_size = len(payload) if size is None else size
        return (
            b"RIFF" + struct.pack("<I", 36 + len(payload)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
            + b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # an odd-sized chunk before the data, padded
            + b"data" + struct.pack("<I", data_size) + payload
        )  # fmt: skip

    ints = np.array([0, 16384, -16384, 32767], dtype="<i2").tobytes()
    plain = parse_wav(riff(1, 1, 16, ints))
    assert plain is not None and plain.sample_rate == 8000
    assert plain.samples.tolist() == pytest.approx([0.0, 0.5, -0.5, 32767 / 32768])
    streamed = parse_wav(riff(1, 1, 16, ints, size=0xFFFFFFFF))
    assert streamed is not None and len(streamed.samples) == 4
    floats = parse_wav(riff(3, 1, 32, np.array([0.25, -2.0], dtype="<f4").tobytes()))
    assert floats is not None and floats.samples.tolist() == [0.25, -1.0]  # clipped into [-1, 1]
    stereo = parse_wav(riff(1, 2, 16, np.array([16384, 0, -16384, -16384], dtype="<i2").tobytes()))
    assert stereo is not None and stereo.samples.tolist() == pytest.approx([0.25, -0.5])
    assert parse_wav(b"ID3\x04 an mp3") is None
    assert parse_wav(riff(1, 1, 8, b"\x80\x80")) is None  # 8-bit: left to the sandboxed decoder


def test_speech_in_another_format_is_decoded(tmp_path):
    """A server that ignores response_format and answers MP3 still gives audio (through backends/speech/codecs.py)."""
    from backends.speech import codecs

    with codecs.AudioWriter(tmp_path / "reply.mp3", "mp3", 24000) as writer:
        writer.write((0.3 * np.sin(2 * np.pi * 440 * np.arange(24000) / 24000)).astype(np.float32))
    mp3 = (tmp_path / "reply.mp3").read_bytes()
    backend = speaker("http://127.0.0.1:9/v1")
    piece = backend._decode_other(mp3, threading.Event())
    assert piece.seconds == pytest.approx(1.0, abs=0.1) and float(np.abs(piece.samples).max()) > 0.2
    with pytest.raises(ServerFailedError, match="could not be read"):
        backend._decode_other(b"<html>not audio</html>" * 10, threading.Event())


def test_speech_401_is_a_clear_auth_error_without_the_key():
    with fake_openai_server(require_key="sk-the-right-one") as server, pytest.raises(AuthFailedError) as info:
        speaker(server.base_url).synthesize("Hi.", voice="alloy", speed=1.0, cancel=threading.Event())
    assert "OPENAI_API_KEY" in str(info.value) and "HTTP 401" in str(info.value)
    assert_no_key(info.value)
    assert len(server.audio_requests) == 1  # not retried


def test_speech_429_is_retried_after_retry_after():
    with fake_openai_server(rate_limit_first=2, retry_after=0.2) as server:
        start = time.monotonic()
        piece = speaker(server.base_url).synthesize("Hi.", voice="alloy", speed=1.0, cancel=threading.Event())
    assert piece.seconds > 0 and len(server.audio_requests) == 3
    assert time.monotonic() - start >= 0.4  # waited as asked, twice


def test_speech_persistent_500_gives_up_after_bounded_retries():
    with fake_openai_server(server_error_first=100) as server, pytest.raises(ServerFailedError, match="HTTP 500"):
        speaker(server.base_url, retries=1).synthesize("Hi.", voice="alloy", speed=1.0, cancel=threading.Event())
    assert len(server.audio_requests) == 2


def test_speech_timeout_is_a_clear_message():
    with fake_openai_server(slow=5.0) as server:
        start = time.monotonic()
        with pytest.raises(TimeoutFailedError, match="sent no audio within 0.6 s") as info:
            speaker(server.base_url, timeout=0.6, retries=0).synthesize(
                "Hi.", voice="alloy", speed=1.0, cancel=threading.Event()
            )
    assert time.monotonic() - start < 4
    assert "STUDIO_REQUEST_TIMEOUT" in str(info.value)


def test_speech_cancel_closes_the_request_in_flight():
    cancel = threading.Event()
    with fake_openai_server(slow=10.0) as server:
        threading.Timer(0.3, cancel.set).start()
        start = time.monotonic()
        with pytest.raises(SpeechCancelled):
            speaker(server.base_url, timeout=30).synthesize("Hi.", voice="alloy", speed=1.0, cancel=cancel)
        assert time.monotonic() - start < 3
        assert server.disconnected.wait(3)  # the server saw the hang-up


def test_speech_404_names_the_setting():
    with fake_openai_server() as server:
        backend = speaker(server.base_url.removesuffix("/v1") + "/wrong")
        with pytest.raises(ModelUnavailableError, match="STUDIO_SPEECH_MODEL"):
            backend.synthesize("Hi.", voice="alloy", speed=1.0, cancel=threading.Event())


def test_speech_refuses_bad_requests_before_any_http():
    with fake_openai_server() as server:
        backend = speaker(server.base_url)
        with pytest.raises(BackendError, match="no text"):
            backend.synthesize("   ", voice="alloy", speed=1.0, cancel=threading.Event())
        with pytest.raises(BackendError, match="4000 characters"):
            backend.synthesize("a" * (MAX_PIECE_CHARS + 1), voice="alloy", speed=1.0, cancel=threading.Event())
    assert server.requests == []


def test_not_configured_says_what_to_set():
    with pytest.raises(ModelUnavailableError, match="OPENAI_API_KEY.*OPENAI_BASE_URL"):
        speaker(None, key=None).load()
    with pytest.raises(ModelUnavailableError, match="OPENAI_API_KEY.*OPENAI_BASE_URL"):
        hearer(None, key=None).load()


def test_unreachable_server_is_a_connection_error():
    with fake_openai_server() as server:
        url = server.base_url
    with pytest.raises(ConnectionFailedError, match="Could not reach"):
        speaker(url, retries=0).synthesize("Hi.", voice="alloy", speed=1.0, cancel=threading.Event())


# -- speech in ----------------------------------------------------------------------------------------------------


def test_transcribe_backend_meets_the_protocol_through_the_registry():
    from backends import create_transcribe_backend

    backend = create_transcribe_backend("openai:whisper-1", Settings(openai_base_url="http://127.0.0.1:9/v1"))
    assert isinstance(backend, TranscribeBackend) and isinstance(backend, OpenAITranscribeBackend)


def test_transcription_gives_segments_language_and_duration(tmp_path):
    clip = write_wav(tmp_path / "clip.wav", 4.0)
    said = "Our meeting starts at nine. Bring the report! Is Maria coming?"
    with fake_openai_server(require_key=KEY, transcript=said, transcript_language="english") as server:
        segments, infos = transcribe(hearer(server.base_url), clip)
    assert [s.text for s in segments] == ["Our meeting starts at nine.", "Bring the report!", "Is Maria coming?"]
    assert segments[0].start == 0.0 and segments[-1].end == pytest.approx(4.0)
    assert all(a.end <= b.start + 1e-6 for a, b in zip(segments, segments[1:], strict=False))
    assert infos == [TranscriptInfo(language="en", language_probability=1.0, duration=4.0)]
    fields = server.audio_requests[0].body
    assert fields["model"] == "whisper-1" and fields["response_format"] == "verbose_json"
    assert fields["timestamp_granularities"] == "segment" and "language" not in fields
    assert fields["file"]["filename"] == "clip.wav" and fields["file"]["size"] == clip.stat().st_size
    assert fields["file"]["seconds"] == pytest.approx(4.0)


def test_transcription_sends_the_language_named(tmp_path):
    clip = write_wav(tmp_path / "clip.wav", 1.0)
    with fake_openai_server(transcript="Guten Tag.", transcript_language="german") as server:
        segments, infos = transcribe(hearer(server.base_url), clip, language="de")
    assert server.audio_requests[0].body["language"] == "de"
    assert infos[0].language == "de" and segments[0].text == "Guten Tag."


def test_text_only_answer_becomes_one_segment_over_the_recording(tmp_path):
    clip = write_wav(tmp_path / "clip.wav", 2.5)
    with fake_openai_server(transcript="Just the text, please.", transcript_text_only=True) as server:
        segments, infos = transcribe(hearer(server.base_url), clip)
    assert [(s.start, s.end, s.text) for s in segments] == [(0.0, 2.5, "Just the text, please.")]
    assert infos[0].duration == pytest.approx(2.5) and infos[0].language == ""


def test_a_server_refusing_verbose_json_is_asked_for_json_once(tmp_path):
    clip = write_wav(tmp_path / "clip.wav", 1.0)
    with fake_openai_server(transcript="Plain reply.", refuse_verbose_json=True) as server:
        backend = hearer(server.base_url)
        first, _ = transcribe(backend, clip)
        second, _ = transcribe(backend, clip)
    formats = [r.body["response_format"] for r in server.audio_requests]
    assert formats == ["verbose_json", "json", "json"]  # remembered
    assert first == second and first[0].text == "Plain reply."


def test_silence_transcript_yields_no_segments(tmp_path):
    clip = write_wav(tmp_path / "clip.wav", 1.0)
    with fake_openai_server(transcript="") as server:
        segments, infos = transcribe(hearer(server.base_url), clip)
    assert segments == [] and infos[0].duration == pytest.approx(1.0)


def test_transcription_401_429_timeout(tmp_path):
    clip = write_wav(tmp_path / "clip.wav", 1.0)
    with fake_openai_server(require_key="sk-other") as server, pytest.raises(AuthFailedError) as info:
        transcribe(hearer(server.base_url), clip)
    assert_no_key(info.value)
    with fake_openai_server(rate_limit_first=1, retry_after=0.05) as server:
        segments, _ = transcribe(hearer(server.base_url), clip)
    assert segments and len(server.audio_requests) == 2
    with fake_openai_server(rate_limit_first=100) as server, pytest.raises(RateLimitedError, match="HTTP 429"):
        transcribe(hearer(server.base_url, retries=1), clip)
    with fake_openai_server(slow=5.0) as server, pytest.raises(TimeoutFailedError, match="sent no transcript"):
        transcribe(hearer(server.base_url, timeout=0.6, retries=0), clip)


def test_transcription_cancel_closes_the_request(tmp_path):
    clip = write_wav(tmp_path / "clip.wav", 1.0)
    cancel = threading.Event()
    with fake_openai_server(slow=10.0) as server:
        threading.Timer(0.3, cancel.set).start()
        start = time.monotonic()
        with pytest.raises(SpeechCancelled):
            transcribe(hearer(server.base_url, timeout=30), clip, cancel=cancel)
        assert time.monotonic() - start < 3 and server.disconnected.wait(3)


def test_an_upload_over_25_mb_is_sent_as_ogg_opus(tmp_path):
    clip = write_wav(tmp_path / "long.wav", 14 * 60)  # 14 minutes of 16 kHz 16-bit: 26.9 MB
    assert clip.stat().st_size > 25_000_000
    with fake_openai_server(transcript="Long.") as server:
        segments, infos = transcribe(hearer(server.base_url), clip)
    sent = server.audio_requests[0].body["file"]
    assert sent["filename"] == "audio.ogg" and sent["head"] == b"OggS" and sent["content_type"] == "audio/ogg"
    assert sent["size"] < 5_000_000  # 32 kb/s
    assert infos[0].duration == pytest.approx(14 * 60, abs=0.1) and segments[0].text == "Long."


@pytest.mark.parametrize(
    ("said", "code"), [("english", "en"), ("English", "en"), ("en", "en"), ("en-US", "en"), ("haitian creole", "ht"),
                       ("", ""), (None, "")]
)  # fmt: skip
def test_language_names_become_codes(said, code):
    assert language_code(said) == code


# -- where the key goes -------------------------------------------------------------------------------------------


def test_the_key_never_reaches_a_second_base_url(tmp_path):
    """Server A redirects every audio request to server B: B gets the request (the SDK follows a 307) but never the
    key, which belongs to A."""
    clip = write_wav(tmp_path / "clip.wav", 1.0)
    with fake_openai_server(transcript="Arrived at B.") as other:
        with fake_openai_server(require_key=KEY, redirect_audio_to=other.base_url) as first:
            piece = speaker(first.base_url).synthesize("Hi.", voice="alloy", speed=1.0, cancel=threading.Event())
            segments, _ = transcribe(hearer(first.base_url), clip)
    assert piece.seconds > 0 and segments[0].text == "Arrived at B."
    assert [r.headers.get("authorization") for r in first.audio_requests] == [f"Bearer {KEY}"] * 2
    assert len(other.audio_requests) == 2
    for request in other.audio_requests:
        assert KEY not in repr(request.headers) and "authorization" not in request.headers
