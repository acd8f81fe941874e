"""The per-user speech store (core/speech/store.py): files and rows kept together, per user, across restarts, under
the quota and retention like the gallery."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from backends.speech.base import Segment
from backends.speech.codecs import AudioWriter, read_wav
from core.errors import NotFoundError, QuotaExceededError
from core.quota import Retention, StorageQuota
from core.speech.store import SpeechStore


def _speech(store: SpeechStore, user: str, text: str = "Hello there.", seconds: float = 0.5, fmt: str = "wav"):
    item_id, partial = store.partial_path(user, fmt)
    with AudioWriter(partial, fmt, 16000) as writer:
        writer.write(np.sin(np.arange(int(16000 * seconds)) / 8).astype(np.float32) * 0.3)
    return store.add_speech(
        user, item_id, partial, text=text, source="speech", model="espeak", voice="en-us", language="en", fmt=fmt,
        duration=seconds, stopped=False,
    )  # fmt: skip


def test_speech_and_transcripts_are_kept_per_user_across_a_restart(tmp_path: Path) -> None:
    store = SpeechStore(tmp_path)
    spoken = _speech(store, "alice", "A first text to speak. " * 10)
    segments = (Segment(0.0, 1.23456, " Hi."), Segment(1.5, 3.0, "Bye."))
    heard = store.add_transcript(
        "alice", title="meeting.mp3", segments=segments, source="speech", model="whisper", language="en",
        duration=3.0, stopped=True,
    )  # fmt: skip
    _speech(store, "bob")
    assert spoken.path is not None and spoken.path.is_file() and spoken.path.suffix == ".wav"
    assert spoken.bytes == spoken.path.stat().st_size and spoken.title.endswith("…") and len(spoken.title) <= 80
    samples, rate = read_wav(spoken.path)
    assert rate == 16000 and abs(len(samples) / rate - 0.5) < 0.01
    assert heard.text == "Hi. Bye." and heard.stopped and heard.segments[0].end == 1.235

    again = SpeechStore(tmp_path)  # a restart
    items = again.list("alice")
    assert [i.id for i in items] == [heard.id, spoken.id]  # newest first
    assert items[0] == heard and items[1] == spoken
    assert [i.id for i in again.list("alice", "speech")] == [spoken.id]
    assert [i.kind for i in again.list("bob")] == ["speech"]
    with pytest.raises(NotFoundError):
        again.get("bob", spoken.id)
    with pytest.raises(NotFoundError):
        again.delete("bob", spoken.id)
    assert spoken.path.is_file()
    again.delete("alice", spoken.id)
    assert not spoken.path.exists()
    with pytest.raises(NotFoundError):
        again.get("alice", spoken.id)


def test_user_folders_never_come_from_the_id(tmp_path: Path) -> None:
    store = SpeechStore(tmp_path)
    item = _speech(store, "../../etc/passwd")
    assert item.path is not None and item.path.resolve().is_relative_to((tmp_path / "speech").resolve())
    assert ".." not in item.path.relative_to(tmp_path).as_posix()


def test_quota_refuses_and_keeps_nothing(tmp_path: Path) -> None:
    store = SpeechStore(tmp_path)
    quota = StorageQuota(40_000)
    quota.attach(store)
    _speech(store, "alice", seconds=0.5)  # ~16 kB
    assert 16_000 < store.bytes_used("alice") < 20_000
    with pytest.raises(QuotaExceededError):
        _speech(store, "alice", seconds=1.0)  # ~32 kB more: past 40 kB
    assert len(store.list("alice")) == 1
    assert [p.name for p in (tmp_path / "speech").glob("*/*")] == [store.list("alice")[0].path.name]
    _speech(store, "bob", seconds=1.0)  # another user's quota is their own


def test_retention_and_orphans(tmp_path: Path) -> None:
    store = SpeechStore(tmp_path)
    old = _speech(store, "api:anonymous")
    kept = _speech(store, "alice")
    _, partial = store.partial_path("alice", "mp3")
    partial.write_bytes(b"half an mp3")
    stale = time.time() - 7 * 3600
    os.utime(partial, (stale, stale))
    fresh_id, fresh = store.partial_path("alice", "ogg")
    fresh.write_bytes(b"being spoken now")
    removed = Retention([store], days=0, anon_hours=24).sweep(now=time.time() + 25 * 3600)
    assert removed == 2  # the anonymous caller's item and the stale partial file (days=0 keeps everyone else's)
    assert old.path is not None and not old.path.exists()
    assert [i.id for i in store.list("alice")] == [kept.id]
    assert not partial.exists() and fresh.exists()
