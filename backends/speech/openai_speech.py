"""Hosted text to speech through the OpenAI speech API (audio.speech) or any server that speaks it (Kokoro-FastAPI,
openedai-speech, LocalAI), via the `openai` SDK. Owns the speech requests and reading the WAV that comes back; the
client, cancelling in flight, retries and HTTP failures are backends/openai_http.py's.
The API key stays inside the SDK client and never appears in a message."""

from __future__ import annotations

import functools
import logging
import struct
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from backends.openai_http import OpenAIModelBackend, RequestCancelled, missing_model, run_cancellable, server_said
from backends.speech.base import AudioPiece, SpeechCancelled, Voice
from backends.text.base import BackendError, ServerFailedError

log = logging.getLogger(__name__)

MAX_PIECE_CHARS = 4000  # the API takes at most 4096 characters of input
MAX_AUDIO_BYTES = 64 << 20  # a reply larger than this is refused (4,000 characters is about 15 MB of 24 kHz WAV)
# The voices of OpenAI's speech models (tts-1, tts-1-hd, gpt-4o-mini-tts); self-hosted servers may name others.
OPENAI_VOICES = (
    ("alloy", "Alloy"),
    ("ash", "Ash"),
    ("coral", "Coral"),
    ("echo", "Echo"),
    ("fable", "Fable"),
    ("onyx", "Onyx"),
    ("nova", "Nova"),
    ("sage", "Sage"),
    ("shimmer", "Shimmer"),
)
# The languages OpenAI documents for its speech models (those of Whisper with good accuracy), as ISO 639-1 codes.
OPENAI_TTS_LANGUAGES = tuple(
    (
        "en af ar hy az be bs bg ca zh hr cs da nl et fi fr gl de el he hi hu is id it ja kn kk ko lv lt mk ms mr mi "
        "ne no fa pl pt ro ru sr sk sl es sw sv tl ta th tr uk ur vi cy"
    ).split()
)


def parse_wav(data: bytes) -> AudioPiece | None:
    """Mono float samples of a 16-bit PCM or 32-bit float WAV held in memory, channels averaged; None when `data` is
    another format or an encoding this does not read. Streamed WAVs (OpenAI's) declare no length (0 or 0xFFFFFFFF):
    the data then runs to the end."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk == b"fmt " and size >= 16:
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", data[body : body + 16])
            if tag == 0xFFFE and size >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID
                tag = int.from_bytes(data[body + 24 : body + 26], "little")
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data":
            if fmt is None:
                return None
            end = len(data) if size in (0, 0xFFFFFFFF) or body + size > len(data) else body + size
            tag, channels, rate, bits = fmt
            if channels < 1 or rate < 1:
                return None
            if tag == 1 and bits == 16:
                raw = data[body : end - (end - body) % 2]
                samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
            elif tag == 3 and bits == 32:
                raw = data[body : end - (end - body) % 4]
                samples = np.clip(np.nan_to_num(np.frombuffer(raw, "<f4").astype(np.float32)), -1.0, 1.0)
            else:
                return None
            if channels > 1:
                samples = samples[: len(samples) // channels * channels].reshape(-1, channels).mean(axis=1)
            return AudioPiece(samples=np.ascontiguousarray(samples, dtype=np.float32), sample_rate=int(rate))
        pos = body + size + (size & 1)
    return None


class OpenAISpeechBackend(OpenAIModelBackend):
    """One speech model on one OpenAI-compatible server. Thread-safe: every request has its own SDK client and
    event loop (so that cancelling closes its connection); nothing per request is kept on the object."""

    max_piece_chars = MAX_PIECE_CHARS
    server_kind = "speech"
    api_name = "OpenAI-compatible speech API"
    no_answer = "sent no audio"

    # -- SpeechBackend --------------------------------------------------------------------------------------------

    def voices(self) -> tuple[Voice, ...]:
        return tuple(
            Voice(id=v, label=f"{name} ({self.model})", languages=OPENAI_TTS_LANGUAGES) for v, name in OPENAI_VOICES
        )

    def synthesize(self, text: str, *, voice: str, speed: float, cancel: threading.Event) -> AudioPiece:
        self.load()
        if not text.strip():
            raise BackendError("There is no text to speak.")
        if len(text) > MAX_PIECE_CHARS:
            raise BackendError(f"One request to the speech API takes at most {MAX_PIECE_CHARS} characters.")
        if cancel.is_set():
            raise SpeechCancelled("Cancelled.")
        kwargs: dict[str, Any] = {
            "model": self.model,
            "voice": voice,
            "input": text,
            "response_format": "wav",
            "speed": min(4.0, max(0.25, float(speed))),
        }
        try:
            data = self._http.with_retries(
                functools.partial(self._attempt, kwargs, cancel), self._max_retries, cancel=cancel
            )
        except RequestCancelled:
            raise SpeechCancelled("Cancelled; the request to the server was closed.") from None
        if len(data) > MAX_AUDIO_BYTES:
            raise ServerFailedError(f"The server at {self._host} sent more audio than this app accepts for one piece.")
        piece = parse_wav(data) or self._decode_other(data, cancel)
        if piece.samples.size == 0:
            raise ServerFailedError(f"The server at {self._host} sent no audio for this text; try again.")
        return piece

    # -- transport ------------------------------------------------------------------------------------------------

    def _attempt(self, kwargs: dict[str, Any], cancel: threading.Event, seconds: float) -> bytes:
        async def call(client: Any) -> bytes:
            response = await client.audio.speech.create(**kwargs, timeout=self._http.timeout(seconds))
            content = response.content
            return bytes(content) if not isinstance(content, bytes) else content

        return bytes(run_cancellable(self._http.async_client, call, cancel, name="openai-speech"))

    def _decode_other(self, data: bytes, cancel: threading.Event) -> AudioPiece:
        """Audio that is not a WAV this module reads (a server that ignores response_format and sends MP3, say):
        decoded by the sandboxed reader of backends/speech/codecs.py, to 16 kHz."""
        from backends.speech.codecs import AudioFileError, decode_to_wav16k, read_wav

        with tempfile.TemporaryDirectory(prefix="studio-tts-") as tmp:
            source, out = Path(tmp) / "reply.bin", Path(tmp) / "reply.wav"
            source.write_bytes(data)
            try:
                decode_to_wav16k(source, out, max_seconds=3600.0, timeout=60.0, cancel=cancel)
            except AudioFileError as exc:
                raise ServerFailedError(
                    f"The server at {self._host} sent audio that could not be read ({exc})."
                ) from None
            samples, rate = read_wav(out)
        return AudioPiece(samples=samples, sample_rate=rate)

    # -- error mapping (the rest is OpenAIHttp's) -------------------------------------------------------------

    def _client_error(self, status: int, detail: str, exc: Any) -> BackendError | None:
        if status == 404:
            return missing_model(
                self._where, self.model, detail, kind="speech", endpoint="audio/speech", setting="STUDIO_SPEECH_MODEL"
            )
        if "voice" in detail.lower():
            return BackendError(
                f"The server at {self._host} refused the voice (HTTP {status}); pick another one.{server_said(detail)}"
            )
        return None
