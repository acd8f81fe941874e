"""Audio inputs follow the rules of every file input: a recording (gr.Audio upload or microphone blob) reaches the app
only as the caller's own upload (UploadRegistry.resolve, the guard's FileData check), under the same size cap; the
upload route filters nothing by type, so a recording is judged by its content, in the sandboxed reader, which also
refuses (without blocking) anything that is not a regular file should a path ever reach it unresolved."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from backends.speech import codecs
from backends.speech.codec_worker import EXTENSIONS
from backends.speech.codecs import AudioFileError
from core.security.uploads import UploadError, UploadRegistry
from tests.speech import audio_samples as samples
from ui.server.guard import _filedata_items
from ui.speech_view import UPLOAD_TYPES


@pytest.fixture
def uploads(tmp_path: Path) -> UploadRegistry:
    root = tmp_path / "uploads"
    (root / "h1").mkdir(parents=True)
    return UploadRegistry(root, max_bytes=2_000_000, ttl_s=3600)


def _file_data(path: Path, name: str, mime: str) -> dict:
    """A FileData as Gradio's audio input sends it (an upload, or the microphone's recording)."""
    return {"path": str(path), "orig_name": name, "mime_type": mime, "meta": {"_type": "gradio.FileData"}}


def test_a_recording_in_a_call_must_be_the_callers_own_upload(uploads: UploadRegistry, tmp_path: Path) -> None:
    mine = samples.write_media(uploads.root / "h1" / "recording.webm", 1.0)
    uploads.record("ip:1", [str(mine)])
    outside = samples.write_media(tmp_path / "server.wav", 1.0)
    body = {"data": [_file_data(mine, "recording.webm", "audio/webm"), "en"], "session_hash": "s"}
    found = _filedata_items(body)  # what the guard checks in a named call's body
    assert [f["path"] for f in found] == [str(mine)]
    resolved = uploads.resolve("ip:1", found[0], "The recording")
    assert codecs.probe(resolved, max_seconds=60, name=found[0]["orig_name"]).container == "matroska"
    for caller, value in [
        ("ip:2", found[0]),  # someone else's recording
        ("ip:1", _file_data(outside, "server.wav", "audio/wav")),  # a file on the server
        ("ip:1", _file_data(Path("/etc/passwd"), "x.wav", "audio/wav")),
        ("ip:1", {"path": str(uploads.root / "h1" / ".." / ".." / "server.wav"), "meta": {"_type": "gradio.FileData"}}),
    ]:
        with pytest.raises(UploadError) as caught:
            uploads.resolve(caller, value, "The recording")
        assert str(caught.value).startswith("The recording must be a file upload of yours")
        assert "server.wav" not in str(caught.value) and "passwd" not in str(caught.value)


def test_the_size_cap_applies_to_recordings(uploads: UploadRegistry) -> None:
    long = samples.write_pcm_wav(uploads.root / "h1" / "long.wav", samples.tone(70.0, 16000), 16000)  # 2.24 MB
    uploads.record("ip:1", [str(long)])
    with pytest.raises(UploadError) as caught:
        uploads.resolve("ip:1", str(long), "The recording")
    assert caught.value.code == "too_large" and str(caught.value) == "The recording is 2.2 MB; the limit is 2 MB."


def test_nothing_filters_by_type_so_the_reader_judges_the_content(uploads: UploadRegistry) -> None:
    mp3 = samples.write_media(uploads.root / "h1" / "a.mp3", 1.0)
    renamed = uploads.root / "h1" / "voice.wav"
    renamed.write_bytes(mp3.read_bytes())
    pdf = uploads.root / "h1" / "talk.mp3"
    pdf.write_bytes(b"%PDF-1.7\n" + bytes(1000))
    uploads.record("ip:1", [str(renamed), str(pdf)])
    probed = codecs.probe(uploads.resolve("ip:1", str(renamed)), max_seconds=60)
    assert probed.container == "mp3" and "named .wav but holds MP3 audio" in probed.notes[0]
    with pytest.raises(AudioFileError) as caught:
        codecs.probe(uploads.resolve("ip:1", str(pdf)), max_seconds=60)
    assert (
        caught.value.code == "mislabelled"
        and str(caught.value) == "This file (“talk.mp3”) is a PDF document, not audio."
    )


def test_the_reader_refuses_what_is_not_a_regular_file_without_blocking(tmp_path: Path) -> None:
    real = samples.write_media(tmp_path / "real.wav", 1.0)
    link = tmp_path / "link.wav"
    link.symlink_to(real)
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    for path in (link, fifo, folder, Path("/dev/zero")):
        started = time.monotonic()
        with pytest.raises(AudioFileError) as caught:
            codecs.decode_to_wav16k(path, tmp_path / "out.wav", max_seconds=60, timeout=10)
        assert time.monotonic() - started < 5, path
        assert caught.value.code == "unsupported" and "is not a regular file" in str(caught.value), path
    gone = tmp_path / "gone.wav"
    with pytest.raises(AudioFileError) as caught:
        codecs.probe(gone, max_seconds=60)
    assert caught.value.code == "not_found" and "upload it again" in str(caught.value)


def test_every_kind_the_reader_accepts_passes_the_upload_box_type_filter() -> None:
    """The Speech tab's file box filters by name (Gradio checks it on the server too); it must never turn away a
    recording the reader would take, in any case of its extension (the reader then judges the content)."""
    from gradio_client.utils import is_valid_file

    for ext in EXTENSIONS:
        for name in (f"rec{ext}", f"REC{ext.upper()}"):
            assert is_valid_file(f"/tmp/gradio/abc/{name}", UPLOAD_TYPES), name
