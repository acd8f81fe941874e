"""Hosted speech to text through the OpenAI transcription API (audio.transcriptions) or any server that speaks it
(faster-whisper-server, LocalAI, vLLM), via the `openai` SDK. Owns the upload (made smaller when over the API's
25 MB), the request (segments with timestamps, plain text where a model gives no segments) and reading the answer;
retries and HTTP failures are backends/openai_http.py's. The API key stays inside the SDK client."""

from __future__ import annotations

import functools
import logging
import tempfile
import threading
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from backends.openai_http import (
    OpenAIHttp,
    OpenAIModelBackend,
    RequestCancelled,
    missing_model,
    run_cancellable,
    server_said,
)
from backends.speech.base import Segment, SpeechCancelled, TranscriptInfo
from backends.text.base import BackendError, ServerFailedError

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 25 * 1000 * 1000  # the API refuses larger files
SMALLER_BITRATE = 32_000  # Opus at 32 kb/s: 25 MB hold about 100 minutes of speech
# A long recording takes the server longer: each request may take STUDIO_REQUEST_TIMEOUT plus this share of the
# recording's length (a 60-minute recording: 6 more minutes).
TIMEOUT_PER_AUDIO_SECOND = 0.1
# Whisper's language names (OpenAI answers "english", not "en") -> ISO 639-1 codes.
_NAMES = (
    "en english;zh chinese;de german;es spanish;ru russian;ko korean;fr french;ja japanese;pt portuguese;"
    "tr turkish;pl polish;ca catalan;nl dutch;ar arabic;sv swedish;it italian;id indonesian;hi hindi;fi finnish;"
    "vi vietnamese;he hebrew;uk ukrainian;el greek;ms malay;cs czech;ro romanian;da danish;hu hungarian;ta tamil;"
    "no norwegian;th thai;ur urdu;hr croatian;bg bulgarian;lt lithuanian;la latin;mi maori;ml malayalam;cy welsh;"
    "sk slovak;te telugu;fa persian;lv latvian;bn bengali;sr serbian;az azerbaijani;sl slovenian;kn kannada;"
    "et estonian;mk macedonian;br breton;eu basque;is icelandic;hy armenian;ne nepali;mn mongolian;bs bosnian;"
    "kk kazakh;sq albanian;sw swahili;gl galician;mr marathi;pa punjabi;si sinhala;km khmer;sn shona;yo yoruba;"
    "so somali;af afrikaans;oc occitan;ka georgian;be belarusian;tg tajik;sd sindhi;gu gujarati;am amharic;"
    "yi yiddish;lo lao;uz uzbek;fo faroese;ht haitian creole;ps pashto;tk turkmen;nn nynorsk;mt maltese;"
    "sa sanskrit;lb luxembourgish;my myanmar;bo tibetan;tl tagalog;mg malagasy;as assamese;tt tatar;"
    "haw hawaiian;ln lingala;ha hausa;ba bashkir;jw javanese;su sundanese;yue cantonese"
)
LANGUAGE_CODES = {name: code for code, _, name in (pair.partition(" ") for pair in _NAMES.split(";"))}


def language_code(value: Any) -> str:
    """ "english" / "English" / "en" / "en-US" -> "en"; "" when the server named none."""
    text = str(value or "").strip().lower()
    if not text:
        return ""
    if text in LANGUAGE_CODES:
        return LANGUAGE_CODES[text]
    head = text.replace("_", "-").split("-")[0]
    return head if head.isalpha() and len(head) <= 3 else text


def wav_seconds(path: Path) -> float | None:
    try:
        with wave.open(str(path), "rb") as src:
            return src.getnframes() / src.getframerate() if src.getframerate() else None
    except (OSError, EOFError, wave.Error):
        return None


class _VerboseRefused(BackendError):
    """The server does not give verbose_json (gpt-4o-transcribe takes json or text only)."""


class OpenAITranscribeBackend(OpenAIModelBackend):
    """One transcription model on one OpenAI-compatible server. Thread-safe: every request has its own SDK client;
    the only state kept is whether this server refused verbose_json (then plain json is asked for)."""

    server_kind = "transcription"
    api_name = "OpenAI-compatible transcription API"
    no_answer = "sent no transcript"
    _plain_json = False  # set on the object once its server refuses verbose_json

    # -- TranscribeBackend ----------------------------------------------------------------------------------------

    def transcribe(
        self,
        path: Path,
        *,
        language: str | None,
        cancel: threading.Event,
        on_info: Callable[[TranscriptInfo], None] | None = None,
    ) -> Iterator[Segment]:
        """The whole file is sent in one request; its segments are then yielded in order."""
        self.load()
        path = Path(path)
        language = (language or "").strip().lower() or None
        if cancel.is_set():
            raise SpeechCancelled("Cancelled.")
        duration = wav_seconds(path)
        with tempfile.TemporaryDirectory(prefix="studio-stt-") as tmp:
            name, data, mime = self._upload(path, Path(tmp))
        if cancel.is_set():
            raise SpeechCancelled("Cancelled.")
        http = self._http_for(duration or 0.0)
        response = self._request(http, (name, data, mime), language, cancel)
        text = response if isinstance(response, str) else getattr(response, "text", None)
        if not isinstance(text, str) and not hasattr(response, "segments"):
            raise ServerFailedError(f"The server at {self._host} did not answer with a transcript.")
        said = _number(getattr(response, "duration", None))
        duration = said if said is not None else duration
        segments = [] if isinstance(response, str) else self._segments(getattr(response, "segments", None))
        if not segments and text and text.strip():
            segments = [Segment(0.0, float(duration or 0.0), text.strip())]
        if duration is None:
            duration = segments[-1].end if segments else 0.0
        detected = "" if isinstance(response, str) else language_code(getattr(response, "language", None))
        if on_info is not None:
            on_info(
                TranscriptInfo(
                    language=language or detected,
                    language_probability=1.0 if language or detected else 0.0,
                    duration=float(duration),
                )
            )
        for segment in segments:
            if cancel.is_set():
                raise SpeechCancelled("Cancelled.")
            yield segment

    # -- the upload -----------------------------------------------------------------------------------------------

    def _upload(self, path: Path, tmp: Path) -> tuple[str, bytes, str]:
        """(file name, bytes, MIME type) to send: the WAV itself, or over 25 MB an Ogg/Opus copy at 32 kb/s."""
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise BackendError(f"Cannot read the recording to transcribe: {exc.strerror or exc}") from None
        if size <= MAX_UPLOAD_BYTES:
            return path.name if path.suffix else "audio.wav", path.read_bytes(), "audio/wav"
        from backends.speech.codecs import encode_file

        smaller = tmp / "audio.ogg"
        try:
            encode_file(path, smaller, "ogg", bitrate=SMALLER_BITRATE)
        except (OSError, ValueError, EOFError, wave.Error) as exc:
            raise BackendError(
                f"The recording is {size / 1e6:.0f} MB, over the transcription API's 25 MB, and could not be made "
                f"smaller ({exc})."
            ) from None
        if smaller.stat().st_size > MAX_UPLOAD_BYTES:
            raise BackendError(
                "The recording is too long for the transcription API: even compressed it is over 25 MB (about "
                "100 minutes). Split it, or use the local recogniser (STUDIO_TRANSCRIBE_MODEL=whisper)."
            )
        log.info("upload of %.0f MB made %.1f MB as Ogg/Opus", size / 1e6, smaller.stat().st_size / 1e6)
        return "audio.ogg", smaller.read_bytes(), "audio/ogg"

    # -- the request ----------------------------------------------------------------------------------------------

    def _http_for(self, seconds: float) -> OpenAIHttp:
        if seconds <= 0:
            return self._http
        return OpenAIHttp(
            self._base_url,
            self._api_key,
            self._timeout_s + seconds * TIMEOUT_PER_AUDIO_SECOND,
            no_answer=self.no_answer,
            client_error=self._client_error,
        )

    def _request(
        self, http: OpenAIHttp, file: tuple[str, bytes, str], language: str | None, cancel: threading.Event
    ) -> Any:
        while True:
            kwargs: dict[str, Any] = {"model": self.model, "file": file}
            if self._plain_json:
                kwargs["response_format"] = "json"
            else:
                kwargs["response_format"] = "verbose_json"
                kwargs["timestamp_granularities"] = ["segment"]
            if language:
                kwargs["language"] = language
            try:
                return http.with_retries(
                    functools.partial(self._attempt, http, kwargs, cancel), self._max_retries, cancel=cancel
                )
            except RequestCancelled:
                raise SpeechCancelled("Cancelled; the request to the server was closed.") from None
            except _VerboseRefused:
                if self._plain_json:
                    raise
                log.info("%s refused verbose_json; asking for plain json (no timestamps)", self._host)
                self._plain_json = True

    def _attempt(self, http: OpenAIHttp, kwargs: dict[str, Any], cancel: threading.Event, seconds: float) -> Any:
        async def call(client: Any) -> Any:
            return await client.audio.transcriptions.create(**kwargs, timeout=http.timeout(seconds))

        return run_cancellable(self._http.async_client, call, cancel, name="openai-transcribe")

    def _segments(self, raw: Any) -> list[Segment]:
        found: list[Segment] = []
        for item in raw or ():
            get = item.get if isinstance(item, dict) else functools.partial(getattr, item)
            start, end, text = _number(get("start", None)), _number(get("end", None)), get("text", None)
            if start is None or end is None or not isinstance(text, str) or not text.strip():
                continue
            found.append(Segment(start=max(0.0, start), end=max(start, end), text=text.strip()))
        return found

    # -- error mapping (the rest is OpenAIHttp's) -------------------------------------------------------------

    def _client_error(self, status: int, detail: str, exc: Any) -> BackendError | None:
        if status == 404:
            return missing_model(
                self._where,
                self.model,
                detail,
                kind="transcription",
                endpoint="audio/transcriptions",
                setting="STUDIO_TRANSCRIBE_MODEL",
            )
        lowered = detail.lower()
        if status == 400 and not self._plain_json and ("verbose_json" in lowered or "response_format" in lowered):
            return _VerboseRefused(f"The server at {self._host} does not give timestamps.{server_said(detail)}")
        if status == 413:
            return BackendError(f"The server at {self._host} refused a recording this large (HTTP 413).")
        if status == 400 and ("audio" in lowered or "file" in lowered):
            return BackendError(
                f"The server at {self._host} could not use this recording (HTTP 400).{server_said(detail)}"
            )
        return None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None
