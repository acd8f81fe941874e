"""backends/speech/codecs.py for real: uploads of every accepted container probe and decode (in the sandboxed child)
to 16 kHz mono at the right length; every bad file gets its own code and message; a child that hangs, crashes or is
cancelled costs only itself; the writers' WAV/MP3/OGG decode back to what was written, with flat memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import wave
from pathlib import Path

import numpy as np
import pytest

from backends.speech import codecs
from backends.speech.base import SpeechCancelled
from backends.speech.codecs import AudioFileError, AudioWriter
from backends.text.base import BackendError
from tests.speech import audio_samples as samples

LIMIT = 90 * 60.0


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audio")


@pytest.mark.parametrize(
    ("suffix", "video", "channels"),
    [
        ("wav", False, 1),
        ("mp3", False, 2),
        ("ogg", False, 1),
        ("opus", False, 2),
        ("flac", False, 2),
        ("m4a", False, 1),
        ("webm", True, 2),
        ("mkv", False, 1),
        ("mp4", True, 1),
        ("mov", True, 2),
    ],
)
def test_good_files_decode_to_16k_mono_at_their_length(tmp_path: Path, suffix: str, video: bool, channels: int) -> None:
    src = samples.write_media(tmp_path / f"speech.{suffix}", 3.0, video=video, channels=channels)
    probed = codecs.probe(src, max_seconds=LIMIT)
    assert abs(probed.duration - 3.0) <= 0.1, probed
    assert probed.channels == channels and probed.has_video == video and probed.notes == ()
    assert probed.container == samples.CONTAINERS[suffix][0].replace("webm", "matroska").replace("mov", "mp4")
    out = tmp_path / "out.wav"
    decoded = codecs.decode_to_wav16k(src, out, max_seconds=LIMIT, timeout=60)
    with wave.open(str(out), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert abs(w.getnframes() / 16000 - 3.0) <= 0.1
    audio, rate = codecs.read_wav(out)
    assert rate == 16000 and abs(len(audio) / rate - decoded.duration) < 1e-3
    middle = audio[8000:40000]
    rms = float(np.sqrt(np.mean(middle.astype(np.float64) ** 2)))
    # The 0.3 tone survived (a stereo file was upmixed at -3 dB when written, so it comes back at 0.21).
    assert 0.13 < rms < 0.25 and decoded.peak is not None and 0.18 < decoded.peak < 0.8
    # The tone is still 440 Hz after resampling: the spectrum's peak.
    spectrum = np.abs(np.fft.rfft(middle[:16000]))
    assert abs(int(np.argmax(spectrum)) - 440) < 5  # 1 Hz per bin


def test_silence_decodes_with_peak_zero(tmp_path: Path) -> None:
    src = samples.write_media(tmp_path / "quiet.flac", 2.0, silent=True)
    decoded = codecs.decode_to_wav16k(src, tmp_path / "q.wav", max_seconds=LIMIT, timeout=60)
    assert decoded.peak == 0.0 and abs(decoded.duration - 2.0) <= 0.1


def test_every_bad_file_gets_its_code_and_message(folder: Path) -> None:
    bad = samples.bad_files(folder / "bad")
    assert len({b.code for b in bad}) >= 6
    for item in bad:
        for attempt in ("probe", "decode"):
            out = folder / f"{item.path.name}.out.wav"
            with pytest.raises(AudioFileError) as caught:
                if attempt == "probe":
                    codecs.probe(item.path, max_seconds=LIMIT)
                else:
                    codecs.decode_to_wav16k(item.path, out, max_seconds=LIMIT, timeout=60)
            assert caught.value.code == item.code, (item.path.name, attempt, caught.value)
            message = str(caught.value)
            assert item.says in message and item.path.name in message, message
            assert "Traceback" not in message and "Errno" not in message
            assert not out.exists(), "a refused decode leaves no output behind"


def test_mislabelled_real_audio_is_read_and_said(folder: Path) -> None:
    for path, seconds, note in samples.lying_files(folder / "lying"):
        probed = codecs.probe(path, max_seconds=LIMIT)
        decoded = codecs.decode_to_wav16k(path, folder / "lie.wav", max_seconds=LIMIT, timeout=60)
        assert abs(probed.duration - seconds) <= 0.1 and abs(decoded.duration - seconds) <= 0.1, path
        if note:
            assert any(note in n for n in probed.notes) and any(note in n for n in decoded.notes), probed.notes
        else:
            assert probed.notes == () and decoded.notes == ()


def test_cut_off_file_decodes_what_is_there_and_says_so(tmp_path: Path) -> None:
    whole = samples.write_media(tmp_path / "whole.mkv", 6.0)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    decoded = codecs.decode_to_wav16k(cut, tmp_path / "c.wav", max_seconds=LIMIT, timeout=60)
    assert 1.0 < decoded.duration < 5.0
    assert any("seems cut off: it announces 6.0 s" in n for n in decoded.notes), decoded.notes


def test_a_name_given_by_the_person_is_what_is_checked_and_quoted(folder: Path, tmp_path: Path) -> None:
    stored = tmp_path / "upload_0b3f"  # Gradio may store a file under a name of its own
    stored.write_bytes(b"%PDF-1.5\n" + bytes(500))
    with pytest.raises(AudioFileError) as caught:
        codecs.probe(stored, max_seconds=LIMIT, name="interview.mp3")
    assert caught.value.code == "mislabelled" and "“interview.mp3”" in str(caught.value)
    with pytest.raises(AudioFileError) as caught:
        codecs.probe(stored, max_seconds=LIMIT, name="../../etc/" + "x\n\x1b[31m" * 30 + ".mp3")
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message and "etc" not in message and "…”" in message, message


def test_length_is_enforced_while_decoding_when_the_header_lies(tmp_path: Path) -> None:
    liar = samples.matroska_duration_lie(tmp_path / "liar.mkv", real_seconds=20.0, claimed_seconds=1.0)
    assert abs(codecs.probe(liar, max_seconds=10).duration - 1.0) < 0.01  # the header's word
    out = tmp_path / "liar.wav"
    with pytest.raises(AudioFileError) as caught:
        codecs.decode_to_wav16k(liar, out, max_seconds=10, timeout=60)
    assert caught.value.code == "too_long" and "longer than the limit of 10.0 s" in str(caught.value)
    assert not out.exists()
    assert abs(codecs.decode_to_wav16k(liar, out, max_seconds=30, timeout=60).duration - 20.0) <= 0.1


def test_an_output_that_cannot_be_written_is_the_servers_error_not_the_files(tmp_path: Path) -> None:
    src = samples.write_media(tmp_path / "fine.wav", 1.0)
    with pytest.raises(BackendError) as caught:
        codecs.decode_to_wav16k(src, tmp_path / "missing" / "out.wav", max_seconds=LIMIT, timeout=30)
    assert not isinstance(caught.value, AudioFileError)
    assert str(caught.value).startswith("Could not write the decoded audio of “fine.wav” (FileNotFoundError")


def test_a_child_past_its_wall_clock_is_killed_with_a_clear_message(tmp_path: Path) -> None:
    src = samples.long_real_wav(tmp_path / "long.wav", 3600.0)  # decoding it takes ~2 s here
    out = tmp_path / "long16k.wav"
    started = time.monotonic()
    with pytest.raises(AudioFileError) as caught:
        codecs.decode_to_wav16k(src, out, max_seconds=LIMIT, timeout=0.3)
    assert time.monotonic() - started < 3.0
    assert caught.value.code == "timeout"
    assert str(caught.value).startswith("Reading “long.wav” took longer than 0.3 s and was stopped.")
    assert not out.exists()


def test_a_hung_or_crashing_reader_costs_only_the_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = samples.write_media(tmp_path / "ok.wav", 1.0)
    hang = tmp_path / "hang.py"
    hang.write_text("import time\nwhile True:\n    time.sleep(1)\n")
    crash = tmp_path / "crash.py"
    crash.write_text("import os, signal, sys\nsys.stdin.read()\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    monkeypatch.setattr(codecs, "WORKER", hang)
    started = time.monotonic()
    with pytest.raises(AudioFileError) as caught:
        codecs.probe(src, max_seconds=LIMIT, timeout=1.0)
    assert caught.value.code == "timeout" and time.monotonic() - started < 3.0
    monkeypatch.setattr(codecs, "WORKER", crash)
    with pytest.raises(AudioFileError) as caught:
        codecs.probe(src, max_seconds=LIMIT)
    assert caught.value.code == "corrupt"
    assert "The audio reader crashed on “ok.wav” (signal SIGSEGV)" in str(caught.value)
    monkeypatch.undo()
    assert codecs.probe(src, max_seconds=LIMIT).duration == pytest.approx(1.0, abs=0.01)


def test_the_memory_cap_is_applied_to_the_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = samples.write_media(tmp_path / "ok.webm", 1.0)
    monkeypatch.setattr(codecs, "MEMORY_MB", 100)  # too little to even map FFmpeg's libraries
    with pytest.raises(AudioFileError) as caught:
        codecs.decode_to_wav16k(src, tmp_path / "o.wav", max_seconds=60, timeout=30)
    assert caught.value.code == "corrupt"
    assert str(caught.value).startswith("Reading “ok.webm” needed more than 100 MB of memory and was stopped")
    monkeypatch.undo()
    assert codecs.decode_to_wav16k(src, tmp_path / "o.wav", max_seconds=60, timeout=30).duration == pytest.approx(
        1.0, abs=0.1
    )


def test_decode_reports_progress_and_honours_cancel(tmp_path: Path) -> None:
    src = samples.long_real_wav(tmp_path / "hour.wav", 3600.0)
    out = tmp_path / "hour16k.wav"
    cancel = threading.Event()
    seen: list[float] = []

    def progress(fraction: float) -> None:
        seen.append(fraction)
        cancel.set()

    started = time.monotonic()
    with pytest.raises(SpeechCancelled):
        codecs.decode_to_wav16k(src, out, max_seconds=LIMIT, timeout=120, cancel=cancel, progress=progress)
    assert time.monotonic() - started < 10 and seen and 0 < seen[0] < 1
    assert not out.exists()


def test_an_hour_decodes_streaming_with_flat_child_memory(tmp_path: Path) -> None:
    src = samples.long_real_wav(tmp_path / "hour.wav", 3600.0)
    out = tmp_path / "hour16k.wav"
    # Run in a fresh process, so that its RUSAGE_CHILDREN counts the one reading child and nothing else.
    script = (
        "import json, resource, sys\n"
        "from pathlib import Path\n"
        "from backends.speech import codecs\n"
        "seen = []\n"
        "d = codecs.decode_to_wav16k(Path(sys.argv[1]), Path(sys.argv[2]), max_seconds=5400, timeout=300,"
        " progress=seen.append)\n"
        "print(json.dumps({'duration': d.duration, 'peak': d.peak, 'seen': seen,"
        " 'rss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(src), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["duration"] == pytest.approx(3600.0, abs=0.1) and result["peak"] == 0.0
    assert out.stat().st_size > 115_000_000  # 16 kHz, 16-bit, an hour
    seen = result["seen"]
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 2
    assert result["rss_kb"] < 160 * 1024, result["rss_kb"]  # the 115 MB written were never held


@pytest.mark.parametrize("fmt", ["wav", "mp3", "ogg"])
def test_writer_output_decodes_back_to_the_written_length(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"speech.{fmt}"
    with AudioWriter(path, fmt, 24000) as writer:
        writer.write(samples.tone(1.5, 24000))
        writer.write(samples.tone(1.0, 22050, freq=300), sample_rate=22050)  # another engine's rate
        writer.write(np.zeros(8000, np.float32), sample_rate=16000)
        writer.write(np.full(100, 5.0, np.float32))  # out of range: clipped, not wrapped
    assert writer.close() == path.stat().st_size > 1000
    decoded = codecs.decode_to_wav16k(path, tmp_path / "back.wav", max_seconds=LIMIT, timeout=60)
    assert abs(decoded.duration - (1.5 + 1.0 + 0.5 + 100 / 24000)) <= 0.1, decoded
    assert decoded.container == {"wav": "wav", "mp3": "mp3", "ogg": "ogg"}[fmt]
    assert decoded.peak is not None and decoded.peak <= 1.0


def test_writer_refuses_unknown_formats_and_rates(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown audio format 'aiff'"):
        AudioWriter(tmp_path / "x.aiff", "aiff", 24000)
    with pytest.raises(ValueError, match="out of range"):
        AudioWriter(tmp_path / "x.wav", "wav", 0)


@pytest.mark.parametrize("fmt", ["wav", "mp3", "ogg"])
def test_writer_edges_nothing_written_odd_shapes_and_errors(tmp_path: Path, fmt: str) -> None:
    empty = tmp_path / f"empty.{fmt}"
    assert AudioWriter(empty, fmt, 22050).close() == empty.stat().st_size > 0  # a file even with nothing in it
    odd = tmp_path / f"odd.{fmt}"
    with AudioWriter(odd, fmt, 22050) as writer:
        writer.write(np.zeros((2205, 1), np.float32))  # a column
        writer.write(np.zeros(0, np.float32))
        writer.write(np.ones(800, np.float64), 8000)  # another dtype and rate
    assert writer.close() == odd.stat().st_size  # closing again is harmless
    assert abs(codecs.probe(odd, max_seconds=60).duration - 0.2) <= 0.1
    with pytest.raises(ValueError, match="closed"):
        writer.write(np.zeros(10, np.float32))
    with pytest.raises(KeyError, match="the engine failed"), AudioWriter(tmp_path / f"x.{fmt}", fmt, 22050) as w:
        w.write(np.zeros(100, np.float32))
        raise KeyError("the engine failed")  # what ended the writing is what the caller sees


def test_writing_thirty_minutes_in_pieces_keeps_memory_flat(tmp_path: Path) -> None:
    piece = samples.tone(10.0, 24000)  # 10 s = 960 kB of float32; 30 minutes = 173 MB
    tracemalloc.start()
    try:
        with AudioWriter(tmp_path / "long.wav", "wav", 24000) as writer:
            for _ in range(180):
                writer.write(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak
    assert (tmp_path / "long.wav").stat().st_size == pytest.approx(30 * 60 * 24000 * 2, abs=1000)


def test_mp3_and_ogg_writers_keep_memory_flat_too(tmp_path: Path) -> None:
    piece = samples.tone(10.0, 24000)
    for fmt in ("mp3", "ogg"):
        tracemalloc.start()
        try:
            with AudioWriter(tmp_path / f"long.{fmt}", fmt, 24000) as writer:
                for _ in range(30):  # 5 minutes
                    writer.write(piece)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 8 * 2**20, (fmt, peak)


def test_wav_bytes_and_read_wav_round_trip(tmp_path: Path) -> None:
    audio = samples.tone(0.5, 24000)
    data = codecs.wav_bytes(audio, 24000)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) == 44 + 2 * 12000
    (tmp_path / "x.wav").write_bytes(data)
    back, rate = codecs.read_wav(tmp_path / "x.wav")
    assert rate == 24000 and np.max(np.abs(back - audio)) < 1e-4
    loud = codecs.wav_bytes(np.array([2.0, -2.0, np.nan], np.float32), 8000)
    assert np.frombuffer(loud[44:], "<i2").tolist() == [32767, -32767, 0]


@pytest.mark.parametrize("fmt", ["mp3", "ogg", "wav"])
def test_encode_file_for_a_hosted_upload(tmp_path: Path, fmt: str) -> None:
    src = samples.write_pcm_wav(tmp_path / "src.wav", samples.tone(2.0, 16000), 16000)
    dst = codecs.encode_file(src, tmp_path / f"up.{fmt}", fmt, bitrate=32000 if fmt != "wav" else None)
    assert dst == tmp_path / f"up.{fmt}" and dst.stat().st_size > 0
    probed = codecs.probe(dst, max_seconds=LIMIT)
    assert abs(probed.duration - 2.0) <= 0.1 and probed.container == fmt
    if fmt == "mp3":
        assert dst.stat().st_size < 2.0 * 32000 / 8 * 1.3  # the bitrate was used


def test_the_child_gets_no_secrets_and_leaves_no_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-should-not-leak")
    spy = tmp_path / "spy.py"
    spy.write_text(
        "import json, os, sys\nsys.stdin.read()\n"
        "print(json.dumps({'ok': False, 'code': 'corrupt', 'detail': '', 'info': {'env': sorted(os.environ),"
        " 'cwd': os.getcwd()}}))\n"
    )
    monkeypatch.setattr(codecs, "WORKER", spy)
    replies: list[dict] = []
    original = codecs._failure

    def keep(reply: dict, name: str) -> AudioFileError:
        replies.append(reply)
        return original(reply, name)

    monkeypatch.setattr(codecs, "_failure", keep)
    with pytest.raises(AudioFileError):
        codecs.probe(samples.write_media(tmp_path / "a.wav", 0.5), max_seconds=LIMIT)
    info = replies[0]["info"]
    assert "OPENAI_API_KEY" not in info["env"] and info["cwd"].startswith(tempfile.gettempdir())
    assert not os.path.exists(info["cwd"])
