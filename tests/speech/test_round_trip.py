"""The quality check of issue 13, for real: EVERY English voice of every offline engine speaks ten fixed sentences, the
embedded recogniser (faster-whisper base, as the app runs it) hears them back, and each voice's word error rate stays
at or under 10%. No golden audio. Each voice's rate is printed (pytest -s) and recorded (record_property).

Fast: a voice's sentences are spoken one by one (as the app speaks them, piece by piece), joined into one clip with
0.4 s of silence between them, and heard in one call; the rate is scored over the whole clip. An engine missing on
this machine FAILS with what to install (`make test` installs them); it is never skipped."""

from __future__ import annotations

import difflib
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from backends import create_speech_backend
from backends.speech.audio_writer import wav_bytes
from backends.speech.base import SpeechBackend, Voice
from backends.speech.codecs import decode_to_wav16k
from backends.speech.faster_whisper_local import WhisperBackend
from backends.text.base import BackendError
from config import Settings
from core.speech.wer import normalise, word_errors
from tests.support.speech import loaded_whisper

# Written for this test before any voice was heard, and kept apart from the larger set the voices were chosen with:
# numbers, a time, a year, names, places, questions, everyday and technical words. (One was reworded after the first
# run: Whisper writes "I am" as "I'm", which the WER counts as two errors for every voice.)
SENTENCES = (
    "The train to Boston leaves at 7:45 every morning.",
    "Doctor Patel said the results would be ready in 3 days.",
    "Can you send me the report before Friday afternoon?",
    "We planted 12 apple trees behind the old barn.",
    "Maria and James moved to Chicago in 2019.",
    "How many people will come to the meeting on Tuesday?",
    "The printer on the third floor is out of paper again.",
    "Remember to water the plants while we travel to Denver.",
    "Her new laptop has a faster processor and a brighter screen.",
    "Why is the bridge closed until the end of April?",
)
MAX_WER = 0.10
GAP_S = 0.4
ENGINES = ("kokoro", "festival", "flite", "espeak")  # the offline engines of backends/registry.py
# About 83 s on the shared 2-core machine (load 2-3): 11 voices, Kokoro's four take two thirds of it.
pytestmark = pytest.mark.slow


def english_voices(engine: str) -> list:
    """One case per English voice the engine offers; an engine that cannot list its voices here gives one case that
    fails with the reason (what to install)."""
    try:
        voices = create_speech_backend(engine, Settings()).voices()
    except BackendError as exc:
        return [pytest.param(engine, None, str(exc), id=f"{engine}-unavailable")]
    english = [v for v in voices if "en" in v.languages]
    if not english:
        return [pytest.param(engine, None, f"{engine} offers no English voice", id=f"{engine}-no-english")]
    return [pytest.param(engine, v, "", id=f"{engine}-{v.id}") for v in english]


CASES = [case for engine in ENGINES for case in english_voices(engine)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("round-trip-cache")


@pytest.fixture(scope="module")
def whisper(cache) -> WhisperBackend:
    return loaded_whisper(cache)


@pytest.fixture(scope="module")
def engines() -> dict[str, SpeechBackend]:
    """One backend per engine for the module (Kokoro loads its model once), loaded on first use."""
    return {}


def loaded(engines: dict[str, SpeechBackend], engine: str, cache: Path) -> SpeechBackend:
    if engine not in engines:
        backend = create_speech_backend(engine, Settings(cache_dir=cache))
        try:
            backend.load()
        except BackendError as exc:
            pytest.fail(f"The {engine} voices cannot run on this machine: {exc}")
        engines[engine] = backend
    return engines[engine]


def spoken_clip(backend: SpeechBackend, voice: str, folder: Path) -> tuple[Path, float]:
    """SENTENCES in `voice`, one piece each joined by GAP_S of silence, as the 16 kHz mono WAV the app hands the
    recogniser (made by the sandboxed decoder); and the seconds of speech."""
    parts: list[np.ndarray] = []
    rate = 0
    for sentence in SENTENCES:
        piece = backend.synthesize(sentence, voice=voice, speed=1.0, cancel=threading.Event())
        assert piece.seconds > 0.5, f"{voice} made {piece.seconds:.2f} s of audio for {sentence!r}"
        assert rate in (0, piece.sample_rate), "one voice's pieces changed sample rate"
        rate = piece.sample_rate
        parts += [piece.samples.astype(np.float32), np.zeros(int(GAP_S * rate), np.float32)]
    audio = np.concatenate(parts)
    native = folder / "clip.native.wav"
    native.write_bytes(wav_bytes(audio, rate))
    clip = folder / "clip.wav"
    decode_to_wav16k(native, clip, max_seconds=300.0, timeout=120.0)
    return clip, len(audio) / rate


def differences(reference: str, heard: str) -> list[str]:
    """The words that differ, as 'said' -> 'heard', after the WER's normalisation."""
    ref, hyp = normalise(reference), normalise(heard)
    ops = difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False).get_opcodes()
    return [f"{' '.join(ref[a:b])!r} -> {' '.join(hyp[c:d])!r}" for op, a, b, c, d in ops if op != "equal"]


@pytest.mark.parametrize(("engine", "voice", "problem"), CASES)
def test_voice_is_understood(
    engine: str, voice: Voice | None, problem: str, whisper, engines, cache, tmp_path, record_property
) -> None:
    if voice is None:
        pytest.fail(f"The {engine} voices cannot run on this machine: {problem}")
    backend = loaded(engines, engine, cache)
    start = time.monotonic()
    clip, spoken = spoken_clip(backend, voice.id, tmp_path)
    synth_s = time.monotonic() - start
    start = time.monotonic()
    heard = " ".join(s.text.strip() for s in whisper.transcribe(clip, language=None, cancel=threading.Event()))
    hear_s = time.monotonic() - start
    reference = " ".join(SENTENCES)
    errors = word_errors(reference, heard)
    diffs = differences(reference, heard)
    report = (
        f"{engine}/{voice.id}: WER {errors.rate:.1%} ({errors.errors} of {errors.reference_words} words); "
        f"{spoken:.1f} s of speech, synthesis RTF {synth_s / spoken:.2f}, recognition RTF {hear_s / spoken:.2f}\n"
        f"    differences: {'; '.join(diffs) or 'none'}"
    )
    print("\n" + report)
    record_property("wer", round(errors.rate, 4))
    record_property("synthesis_rtf", round(synth_s / spoken, 3))
    record_property("recognition_rtf", round(hear_s / spoken, 3))
    record_property("transcript", heard)
    assert errors.rate <= MAX_WER, f"word error rate {errors.rate:.1%} > {MAX_WER:.0%}: {report}\n    heard: {heard!r}"
