"""The speech service (core/speech/service.py) over real engines (espeak-ng, Kokoro, Whisper base), real audio files
and real SQLite. `ToneVoice` / `ListeningClock` are real implementations of the protocols (a tone generator and a
segment clock) used only where timing matters: streaming order, memory, cancel and fairness."""

from __future__ import annotations

import io
import tempfile
import threading
import time
import tracemalloc
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from backends.speech.base import AudioPiece, Segment, SpeechCancelled, TranscriptInfo, Voice
from backends.speech.codecs import read_wav
from backends.text.base import ServerFailedError
from config import Settings
from core.errors import NotFoundError, StorageFullError
from core.speech.errors import LanguageMismatchError, SpeechInputError
from core.speech.models import SpeechModels, TranscribeModels
from core.speech.service import SpeechStudio, TooManySpeechJobsError
from core.speech.store import SpeechStore
from core.speech.subtitles import parse_srt, parse_vtt
from core.speech.text import clean_for_speech
from tests.speech.audio_samples import long_real_wav, tone, write_pcm_wav

GERMAN = "Der schnelle braune Fuchs springt über den faulen Hund, während die Kinder im Garten spielen."
FRENCH = "Le renard brun rapide saute par-dessus le chien paresseux pendant que les enfants jouent dans le jardin."


class ToneVoice:
    """A voice that says every piece as a tone, `per_char` seconds a character (after `delay`)."""

    spec = "tone"
    label = "Tone (test voice)"

    def __init__(self, per_char: float = 0.002, delay: float = 0.0, rate: int = 16000, max_piece_chars: int = 200):
        self.per_char, self.delay, self.rate, self.max_piece_chars = per_char, delay, rate, max_piece_chars
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def voices(self) -> tuple[Voice, ...]:
        return (Voice("a", "A (tone)", ("en",)), Voice("any", "Any (tone)", ()))

    def load(self, progress: Callable[[float, str], None] | None = None) -> None:
        if progress is not None:
            progress(1.0, "Tone ready")

    def synthesize(self, text: str, *, voice: str, speed: float, cancel: threading.Event) -> AudioPiece:
        if cancel.is_set():
            raise SpeechCancelled("cancelled")
        with self.lock:
            self.calls.append(text)
            n = len(self.calls)
        if self.delay and cancel.wait(self.delay):
            raise SpeechCancelled("cancelled")
        count = max(1, int(len(text) * self.per_char * self.rate / speed))
        samples = (0.3 * np.sin(np.arange(count, dtype=np.float32) * (0.05 + 0.001 * n))).astype(np.float32)
        return AudioPiece(samples, self.rate)


class ListeningClock:
    """A recogniser that hears `segments` one by one, `delay` seconds each."""

    spec = "clock"
    label = "Clock (test recogniser)"

    def __init__(self, segments: list[Segment], delay: float = 0.0) -> None:
        self.segments, self.delay = segments, delay

    def load(self, progress: Callable[[float, str], None] | None = None) -> None:
        return None

    def transcribe(
        self,
        path: Path,
        *,
        language: str | None,
        cancel: threading.Event,
        on_info: Callable[[TranscriptInfo], None] | None = None,
    ) -> Iterator[Segment]:
        with wave.open(str(path), "rb") as f:  # the service hands a 16 kHz mono WAV it made
            assert (f.getframerate(), f.getnchannels()) == (16000, 1)
            duration = f.getnframes() / 16000
        if on_info is not None:
            on_info(TranscriptInfo(language or "en", 1.0 if language else 0.9, duration))
        for segment in self.segments:
            if cancel.wait(self.delay):
                raise SpeechCancelled("cancelled")
            yield segment


def studio(tmp_path: Path, voices: tuple[str, ...] = ("espeak",), ready: dict | None = None, hear: dict | None = None,
           **settings: object) -> SpeechStudio:  # fmt: skip
    config = Settings(speech_models=voices, data_dir=tmp_path, **settings)  # type: ignore[arg-type]
    return SpeechStudio(
        config, SpeechModels(config, ready), TranscribeModels(config, hear), SpeechStore(tmp_path / "data")
    )


def pcm(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data), "rb") as f:
        return np.frombuffer(f.readframes(f.getnframes()), dtype="<i2"), f.getframerate()


# -- speaking ------------------------------------------------------------------------------------------------------


def test_espeak_streams_piece_by_piece_and_the_chunks_are_the_file(tmp_path: Path) -> None:
    speech = studio(tmp_path)
    text = "# A title\n\nThe first sentence is short. " + "Then a longer part follows, with more words in it. " * 12
    updates = list(speech.speak("alice", text, voice="en-us", cancel=threading.Event()))
    chunks = [u.chunk for u in updates if u.chunk is not None]
    assert len(chunks) >= 3 and updates[0].chunk is None and updates[-1].chunk is None
    done = [u.chars_done for u in updates]
    assert done == sorted(done) and updates[-1].fraction == 1.0
    item = updates[-1].item
    assert item is not None and not item.stopped and item.kind == "speech" and item.fmt == "wav"
    assert item.voice == "en-us" and item.model == "espeak" and item.language == "en" and item.title == "A title."
    assert item.path is not None and "Done" in updates[-1].message
    with wave.open(str(item.path), "rb") as f:
        file_pcm, file_rate = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2"), f.getframerate()
    parts = [pcm(c) for c in chunks]
    assert {rate for _, rate in parts} == {file_rate}
    streamed = np.concatenate([p for p, _ in parts])
    assert len(streamed) == len(file_pcm)
    assert np.abs(streamed.astype(np.int32) - file_pcm.astype(np.int32)).max() <= 1  # same audio (rounding aside)
    assert abs(item.duration - len(file_pcm) / file_rate) < 0.01
    assert speech.history("alice") == [item] and speech.history("bob") == []


@pytest.mark.parametrize("fmt", ["mp3", "ogg"])
def test_compressed_formats_are_kept_and_decode_to_the_spoken_length(tmp_path: Path, fmt: str) -> None:
    speech = studio(tmp_path)
    updates = list(speech.speak("alice", "One sentence. And a second one.", fmt=fmt, cancel=threading.Event()))
    item = updates[-1].item
    assert item is not None and item.path is not None and item.path.suffix == f".{fmt}"
    import av

    with av.open(str(item.path)) as container:
        seconds = sum(f.samples / f.sample_rate for f in container.decode(audio=0))
    assert abs(seconds - item.duration) < 0.1
    assert seconds > 1.0


def test_a_ten_thousand_word_text_starts_after_the_first_sentence_only(tmp_path: Path) -> None:
    tone = ToneVoice()
    speech = studio(tmp_path, ready={"tone": tone})
    text = "Short start here. " + " ".join(f"Word{i % 50} sits in a sentence of the draft." for i in range(1250))
    assert len(text.split()) > 10_000
    updates = speech.speak("alice", text, model="tone", cancel=threading.Event())
    first = next(u for u in updates if u.chunk is not None)
    assert tone.calls == ["Short start here."]  # only the first sentence was synthesised before audio came out
    assert first.chars_done == len("Short start here. ")
    assert "Speaking… 18 of" in first.message
    rest = list(updates)
    assert rest[-1].item is not None and len(tone.calls) > 240 and rest[-1].chars_done == len(text)


def test_a_long_text_is_cleaned_after_its_first_piece_and_spoken_whole(tmp_path: Path) -> None:
    tone = ToneVoice(per_char=0.0005)
    speech = studio(tmp_path, ready={"tone": tone})
    body = "# Title\n\nA first sentence. " + "Plain words go on here. A paragraph.\n\n" * 300
    text = body + "\n\n```\ncode\n\nmore code\n```\n\n" + "- a *list* item\n" * 200 + "\nThe end."
    plan = speech.plan_speech("alice", text, model="tone")
    assert plan.rest and len(plan.text) < len(text) / 2  # only the head is cleaned before the first audio
    updates = list(speech.speak("alice", text, model="tone", cancel=threading.Event()))
    item = updates[-1].item
    assert item is not None and not item.stopped and item.text == clean_for_speech(text)  # all of it, once
    assert "Code block." in item.text and item.text.endswith("The end.")
    assert updates[-1].chars_done == updates[-1].chars_total == len(item.text)
    spoken = " ".join(tone.calls)
    assert "".join(spoken.split()) == "".join(item.text.split())  # every piece once, in order


def test_memory_does_not_grow_with_the_text(tmp_path: Path) -> None:
    tone = ToneVoice(per_char=0.004)
    speech = studio(tmp_path, ready={"tone": tone})
    text = "A sentence of the long draft goes here, word after word. " * 1200  # ~68,000 characters
    audio_bytes = len(text) * 0.004 * 16000 * 4  # the whole audio as float32: ~17 MB
    warm = speech.speak("alice", "Load the language profiles and the encoder once.", model="tone", fmt="mp3",
                        cancel=threading.Event())  # fmt: skip
    assert list(warm)[-1].item is not None
    tracemalloc.start()
    try:
        peak_chunk = 0
        for update in speech.speak("alice", text, model="tone", fmt="mp3", cancel=threading.Event()):
            peak_chunk = max(peak_chunk, len(update.chunk or b""))
            item = update.item
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert item is not None and item.duration > 250
    assert peak < 4_000_000 < audio_bytes / 4, f"peak {peak:,} bytes"  # a few pieces at a time, not the whole


def test_cancel_keeps_the_partial_file(tmp_path: Path) -> None:
    tone = ToneVoice(per_char=0.01)
    speech = studio(tmp_path, ready={"tone": tone})
    cancel = threading.Event()
    text = "This piece is spoken now. " * 80
    seen = []
    for update in speech.speak("alice", text, model="tone", cancel=cancel):
        seen.append(update)
        if sum(u.chunk is not None for u in seen) == 3:
            cancel.set()
    last = seen[-1]
    assert last.item is not None and last.item.stopped and "Stopped at" in last.message
    spoken = sum(u.chunk is not None for u in seen)
    assert spoken == 3 and len(tone.calls) == 3
    samples, rate = read_wav(last.item.path)  # type: ignore[arg-type]
    assert abs(len(samples) / rate - last.audio_seconds) < 0.01 and last.audio_seconds > 0.5
    assert text.startswith(last.item.text) and 0 < len(last.item.text) < len(text) / 2  # what was spoken
    assert speech.history("alice")[0].id == last.item.id


class FailingVoice(ToneVoice):
    """A tone voice whose engine breaks on its `fails_at`-th piece (a hosted server gone, a tool crashed)."""

    def __init__(self, fails_at: int) -> None:
        super().__init__(per_char=0.01)
        self.fails_at = fails_at

    def synthesize(self, text: str, *, voice: str, speed: float, cancel: threading.Event) -> AudioPiece:
        if len(self.calls) + 1 >= self.fails_at:
            raise ServerFailedError("The speech server answered 502 Bad Gateway.")
        return super().synthesize(text, voice=voice, speed=speed, cancel=cancel)


def test_a_voice_that_fails_part_way_keeps_what_was_spoken(tmp_path: Path) -> None:
    speech = studio(tmp_path, ready={"tone": FailingVoice(fails_at=3)})
    text = "This piece is spoken now. " * 80
    updates = list(speech.speak("alice", text, model="tone", cancel=threading.Event()))
    last = updates[-1]
    assert last.item is not None and last.item.stopped and "502 Bad Gateway" in last.message
    assert "made so far is kept" in last.message and sum(u.chunk is not None for u in updates) == 2
    samples, rate = read_wav(last.item.path)  # type: ignore[arg-type]
    assert abs(len(samples) / rate - last.audio_seconds) < 0.01
    assert speech.history("alice")[0].id == last.item.id and speech.jobs("alice") == 0
    with pytest.raises(ServerFailedError):  # failing on the first piece there is nothing to keep: the error itself
        list(studio(tmp_path / "b", ready={"tone": FailingVoice(fails_at=1)}).speak("bob", text, model="tone",
                                                                                   cancel=threading.Event()))  # fmt: skip


def test_speaking_stops_before_the_disk_reserve_and_keeps_what_it_made(tmp_path: Path, monkeypatch) -> None:
    from core.speech import speaking

    disk = {"free": 10 * 2**20}  # a disk with 10 MB free; each piece written takes its bytes from it
    written = []

    def free_bytes(folder: Path) -> int:
        used = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        written.append(used)
        return disk["free"] - used

    monkeypatch.setattr(speaking, "free_bytes", free_bytes)
    # 9.9 MB reserve: 100 KB of room, so a few pieces of tone audio fit and then speaking stops.
    speech = studio(tmp_path, ready={"tone": ToneVoice(per_char=0.02)}, disk_reserve_mb=9.9)
    text = "This piece is spoken now. " * 200
    updates = list(speech.speak("alice", text, model="tone", cancel=threading.Event()))
    last = updates[-1]
    assert last.item is not None and last.item.stopped and "disk is nearly full" in last.message
    assert 0 < sum(u.chunk is not None for u in updates) < 20 and speech.jobs("alice") == 0
    assert read_wav(last.item.path)[0].size > 0  # type: ignore[arg-type]
    with pytest.raises(StorageFullError):  # no room at all: nothing is started
        list(studio(tmp_path / "b", ready={"tone": ToneVoice()}, disk_reserve_mb=20).speak(
            "bob", text, model="tone", cancel=threading.Event()))  # fmt: skip


def test_a_reader_that_goes_away_keeps_what_was_made(tmp_path: Path) -> None:
    speech = studio(tmp_path, ready={"tone": ToneVoice()})
    updates = speech.speak("alice", "Spoken before the tab closed. " * 30, model="tone", cancel=threading.Event())
    for update in updates:
        if update.chunk is not None:
            break
    updates.close()  # type: ignore[attr-defined]
    (kept,) = speech.history("alice")
    assert kept.stopped and kept.path is not None and kept.path.is_file() and kept.duration > 0
    assert not [p for p in kept.path.parent.iterdir() if p.name.startswith(".")]  # no partial left behind
    assert speech.jobs("alice") == 0


def test_two_users_long_texts_interleave_piece_by_piece(tmp_path: Path) -> None:
    tone = ToneVoice(delay=0.05, max_piece_chars=60)  # long enough for the other user to be waiting, under load
    speech = studio(tmp_path, ready={"tone": tone})
    errors: list[BaseException] = []

    def run(user: str, word: str) -> None:
        try:
            for _ in speech.speak(user, f"{word} is speaking now. " * 30, model="tone", cancel=threading.Event()):
                pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=a) for a in (("alice", "Alpha"), ("bob", "Bravo"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    order = [c.split()[0] for c in tone.calls]
    assert order.count("Alpha") == order.count("Bravo") >= 10
    last_first = max(order.index("Alpha"), order.index("Bravo"))
    middle = order[last_first : last_first + 16]  # both running: turns go round, one piece each
    switches = sum(a != b for a, b in zip(middle, middle[1:], strict=False))
    assert switches >= 12, order


def test_each_user_has_a_cap_on_jobs(tmp_path: Path) -> None:
    speech = studio(tmp_path, ready={"tone": ToneVoice()}, user_jobs=1)
    first = speech.speak("alice", "One. Two. Three.", model="tone", cancel=threading.Event())
    next(first)
    with pytest.raises(TooManySpeechJobsError):
        next(speech.speak("alice", "Another text.", model="tone", cancel=threading.Event()))
    assert list(speech.speak("bob", "Bob is not blocked.", model="tone", cancel=threading.Event()))[-1].item
    list(first)
    assert list(speech.speak("alice", "Now it may.", model="tone", cancel=threading.Event()))[-1].item


@pytest.mark.parametrize(
    ("kwargs", "code", "says"),
    [
        ({"text": ""}, "empty", "no text"),
        ({"text": "  ... !!! ***  "}, "empty", "no text"),
        ({"text": "```\ncode only\n```"}, "empty", "nothing"),
        ({"text": None}, "empty", "must be text"),
        ({"text": "x" * 5001}, "too_long", "5,001 characters; one request may speak at most 5,000. Split it into 2"),
        ({"speed": 0.1}, "bad_speed", "0.5 to 2.0"),
        ({"speed": float("nan")}, "bad_speed", "number"),
        ({"speed": "fast"}, "bad_speed", "number"),
        ({"speed": True}, "bad_speed", "number"),
        ({"fmt": "flac"}, "bad_format", "wav, mp3, ogg"),
        ({"voice": "no-such-voice"}, "unknown_voice", "no voice 'no-such-voice'"),
        ({"voice": 7}, "unknown_voice", "must be text"),
        ({"model": "nope"}, "unknown_model", "Unknown speech model 'nope'"),
    ],
)
def test_bad_requests_are_refused_before_anything_runs(tmp_path: Path, kwargs: dict, code: str, says: str) -> None:
    tone = ToneVoice()
    speech = studio(tmp_path, ready={"tone": tone}, max_speech_chars=5000)
    args = {"text": "A fine sentence.", "model": "tone", **kwargs}
    with pytest.raises(SpeechInputError) as caught:
        speech.speak("alice", args.pop("text"), cancel=threading.Event(), **args)
    assert caught.value.code == code and says in str(caught.value)
    assert tone.calls == [] and speech.history("alice") == [] and speech.jobs("alice") == 0


# -- languages -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "language", "name"), [(GERMAN, "de", "German"), (FRENCH, "fr", "French")])
def test_a_text_the_voice_cannot_speak_gets_espeaks_voice_offered(
    tmp_path: Path, text: str, language: str, name: str
) -> None:
    speech = studio(tmp_path, voices=("kokoro", "espeak"))
    with pytest.raises(LanguageMismatchError) as caught:
        speech.speak("alice", text, cancel=threading.Event())
    error = caught.value
    assert error.code == "language_mismatch" and error.language == language
    assert error.suggestion is not None and error.suggestion[0] == "espeak"
    voice = next(v for v in speech.voices.get("espeak").voices() if v.id == error.suggestion[1])
    assert language in voice.languages
    default = speech.voices.get("kokoro").voices()[0].label  # the voice used when none is named
    assert str(error).startswith(f"This text seems to be in {name}; the voice “{default}” speaks English.")
    assert f"which speaks {name}" in str(error)
    model, voice_id = error.suggestion
    plan = speech.plan_speech("alice", text, model=model, voice=voice_id)  # the offered voice is accepted
    assert plan.language == language


def test_no_configured_voice_for_the_language_says_so(tmp_path: Path) -> None:
    speech = studio(tmp_path, voices=("kokoro", "flite"))
    with pytest.raises(LanguageMismatchError) as caught:
        speech.speak("alice", GERMAN, cancel=threading.Event())
    assert caught.value.suggestion is None and "No voice configured here speaks German." in str(caught.value)
    assert speech.plan_speech("alice", "Hallo Welt.").language == "en"  # too short to tell: the voice is trusted


def test_model_and_voice_choices(tmp_path: Path) -> None:
    speech = studio(tmp_path, voices=("kokoro", "espeak"), ready={"tone": ToneVoice()})
    assert [spec for _, spec in speech.model_choices()] == ["kokoro", "espeak", "tone"]
    assert speech.voice_choices("tone") == [("A (tone)", "a"), ("Any (tone)", "any")]
    assert speech.voice_choices(None)[0][1] == speech.voices.get("kokoro").voices()[0].id
    assert ("German, espeak-ng", "de") in speech.voice_choices("espeak")


def test_kokoro_speaks_an_mp3(tmp_path: Path) -> None:
    speech = studio(tmp_path, voices=("kokoro",))
    loads: list[float] = []
    updates = list(
        speech.speak(
            "alice",
            "Hello from the speech tab. This is Kokoro.",
            fmt="mp3",
            cancel=threading.Event(),
            load_progress=lambda f, _: loads.append(f),
        )
    )
    item = updates[-1].item
    assert item is not None and item.model == "kokoro" and item.path is not None and item.path.stat().st_size > 1000
    chunks = [pcm(u.chunk) for u in updates if u.chunk is not None]
    assert len(chunks) == 2 and chunks[0][1] == 24000  # one sentence first, then the rest
    assert 1.5 < item.duration < 8


# -- transcribing --------------------------------------------------------------------------------------------------


def test_espeak_speech_is_transcribed_kept_and_exported(tmp_path: Path) -> None:
    speech = studio(tmp_path)
    said = list(speech.speak("alice", "Hello world. The weather is nice today.", cancel=threading.Event()))[-1].item
    assert said is not None and said.path is not None
    updates = list(speech.transcribe("alice", said.path, cancel=threading.Event(), title="hello.wav"))
    assert updates[0].message == "Checking the recording…"
    item = updates[-1].item
    assert item is not None and item.kind == "transcript" and item.title == "hello.wav" and item.language == "en"
    words = item.text.lower()
    assert "weather" in words and "today" in words
    assert item.segments and updates[-1].fraction == 1.0 and updates[-1].info is not None
    assert abs(item.duration - said.duration) < 0.2
    fractions = [u.fraction for u in updates]
    assert fractions == sorted(fractions)

    srt = speech.export("alice", item.id, "srt")
    assert srt.name == "hello.srt"
    assert [s.text for s in parse_srt(srt.read_text())] == [s.text.strip() for s in item.segments]
    vtt = speech.export("alice", item.id, "VTT")
    assert [(s.start, s.end) for s in parse_vtt(vtt.read_text())] == [(s.start, s.end) for s in item.segments]
    assert "weather" in speech.export("alice", item.id, "txt").read_text().lower()
    with pytest.raises(NotFoundError):
        speech.export("bob", item.id, "srt")
    with pytest.raises(SpeechInputError) as caught:
        speech.export("alice", said.id, "srt")
    assert caught.value.code == "not_transcript"
    with pytest.raises(SpeechInputError):
        speech.export("alice", item.id, "docx")

    again = studio(tmp_path)  # a restart: both kept
    assert [i.kind for i in again.history("alice")] == ["transcript", "speech"]
    assert again.get("alice", item.id).segments == item.segments
    with pytest.raises(NotFoundError):
        again.get("bob", item.id)
    again.delete("alice", said.id)
    assert not said.path.exists() and [i.id for i in again.history("alice")] == [item.id]


def test_a_recording_under_the_wrong_name_is_transcribed_and_the_person_is_told(tmp_path: Path) -> None:
    speech = studio(tmp_path)
    said = list(speech.speak("alice", "The library opens at nine.", fmt="mp3", cancel=threading.Event()))[-1].item
    assert said is not None and said.path is not None
    misnamed = tmp_path / "meeting.wav"  # MP3 audio under a WAV name
    misnamed.write_bytes(said.path.read_bytes())
    last = list(speech.transcribe("alice", misnamed, cancel=threading.Event(), title="meeting.wav"))[-1]
    assert last.item is not None and "library" in last.item.text.lower()
    assert last.message.startswith("Done:") and "Note:" in last.message and "MP3" in last.message


def test_a_silent_recording_has_no_speech(tmp_path: Path) -> None:
    speech = studio(tmp_path)
    silent = write_pcm_wav(tmp_path / "silence.wav", np.zeros(16000 * 3, dtype=np.float32), 16000)
    with pytest.raises(SpeechInputError) as caught:
        list(speech.transcribe("alice", silent, cancel=threading.Event()))
    assert caught.value.code == "no_speech" and "No speech was found" in str(caught.value)
    assert speech.history("alice") == [] and speech.jobs("alice") == 0


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("broken.wav", b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4, "corrupt"),
        ("notes.mp3", b"These are my notes, not a song.\n" * 40, "mislabelled"),
        ("empty.ogg", b"", "empty"),
    ],
)
def test_bad_recordings_get_their_reason(tmp_path: Path, name: str, data: bytes, code: str) -> None:
    clock = ListeningClock([Segment(0, 1, "never")])
    speech = studio(tmp_path, hear={"clock": clock})
    upload = tmp_path / name
    upload.write_bytes(data)
    with pytest.raises(SpeechInputError) as caught:
        list(speech.transcribe("alice", upload, model="clock", cancel=threading.Event()))
    assert caught.value.code == code, str(caught.value)
    assert str(caught.value) and "Traceback" not in str(caught.value)
    assert speech.history("alice") == [] and speech.jobs("alice") == 0


def test_a_recording_past_the_limit_is_refused(tmp_path: Path) -> None:
    speech = studio(tmp_path, hear={"clock": ListeningClock([])}, max_audio_minutes=0.02)  # 1.2 s
    long = write_pcm_wav(tmp_path / "long.wav", np.zeros(16000 * 3, dtype=np.float32), 16000)
    with pytest.raises(SpeechInputError) as caught:
        list(speech.transcribe("alice", long, model="clock", cancel=threading.Event()))
    assert caught.value.code == "too_long_audio"


def test_cancel_keeps_the_segments_so_far(tmp_path: Path) -> None:
    segments = [Segment(i * 1.0, i * 1.0 + 0.9, f"Part {i}.") for i in range(8)]
    speech = studio(tmp_path, hear={"clock": ListeningClock(segments, delay=0.01)})
    audio = write_pcm_wav(tmp_path / "talk.wav", tone(8.0, 16000), 16000)  # not silent: the clock "hears" it
    cancel = threading.Event()
    seen = []
    for update in speech.transcribe("alice", audio, model="clock", language="German", cancel=cancel):
        seen.append(update)
        if len(update.segments) == 3:
            cancel.set()
    last = seen[-1]
    assert last.item is not None and last.item.stopped and last.item.text == "Part 0. Part 1. Part 2."
    assert last.item.language == "de" and "Stopped at" in last.message
    assert 0.3 < last.fraction < 0.5 and speech.jobs("alice") == 0


def test_cancel_while_decoding_stops_the_child_and_leaves_no_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    speech = studio(tmp_path, hear={"clock": ListeningClock([Segment(0, 1, "never heard")])})
    long = long_real_wav(tmp_path / "long.wav", 40 * 60)  # 40 minutes (at a low rate: small to make)
    cancel = threading.Event()
    seen = []
    started = time.monotonic()
    for update in speech.transcribe("alice", long, model="clock", cancel=cancel):
        seen.append(update)
        if update.message.startswith("Preparing the audio"):
            cancel.set()
    assert [u.message for u in seen][-1] == "Stopped before any speech was recognised."
    assert all(u.item is None for u in seen) and time.monotonic() - started < 20
    assert list(scratch.iterdir()) == [] and speech.history("alice") == [] and speech.jobs("alice") == 0


@pytest.mark.parametrize(
    ("path", "language", "code"),
    [("missing.wav", None, "no_file"), ("", None, "no_file"), ("talk.wav", "klingon!", "bad_language")],
)
def test_bad_transcribe_arguments(tmp_path: Path, path: str, language: str | None, code: str) -> None:
    speech = studio(tmp_path, hear={"clock": ListeningClock([])})
    write_pcm_wav(tmp_path / "talk.wav", np.zeros(1600, dtype=np.float32), 16000)
    with pytest.raises(SpeechInputError) as caught:
        speech.transcribe("alice", tmp_path / path if path else "", model="clock", language=language,
                          cancel=threading.Event())  # fmt: skip
    assert caught.value.code == code


def test_two_users_transcriptions_share_the_recogniser(tmp_path: Path) -> None:
    segments = [Segment(i * 0.5, i * 0.5 + 0.4, f"Part {i}.") for i in range(6)]
    speech = studio(tmp_path, hear={"clock": ListeningClock(segments, delay=0.02)})
    audio = write_pcm_wav(tmp_path / "talk.wav", tone(3.0, 16000), 16000)
    results: dict[str, str] = {}

    def run(user: str) -> None:
        results[user] = list(speech.transcribe(user, audio, model="clock", cancel=threading.Event()))[-1].item.text  # type: ignore[union-attr]

    threads = [threading.Thread(target=run, args=(u,)) for u in ("alice", "bob")]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results["alice"] == results["bob"] == " ".join(s.text for s in segments)
    assert time.monotonic() - started < 30
