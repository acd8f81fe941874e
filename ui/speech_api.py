"""The /speak and /transcribe endpoints for gradio_client and REST: the speech studio's API, wired to core like the
Speech tab. Files go back as links only their caller can fetch (never a server path); uploads must be the caller's."""

# No `from __future__ import annotations`: gr.api reads the endpoints' annotations as live objects.

import threading
import time
from pathlib import Path

import gradio as gr
from gradio.data_classes import FileData
from gradio.route_utils import API_PREFIX
from pydantic import BaseModel

from core.errors import BackendError, BusyError, InputError, NotFoundError
from core.registry import ModelLoadError
from core.security.links import FileLinks
from core.security.uploads import UploadRegistry
from core.speech.service import SpeechStudio
from ui.errors import user_error
from ui.identity import api_user, caller, limit_key
from ui.images_uploads import owned_upload
from ui.server.api_args import api_endpoint
from ui.speech_view import LANGUAGE_CODE, item_filename

FAILURES = (InputError, BackendError, BusyError, NotFoundError, ModelLoadError)
API_TICK_S = 0.25  # while it works an endpoint sends a value at least this often, so a cancelled call can end it
MAX_NAME_CHARS = 200  # a model or voice name longer than this is no name of ours
MIME = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg"}


class LinkedFile(BaseModel):
    """A file link as gradio_client reads one (FileData's JSON), for an output that is a single file. FileData itself
    would be taken by Gradio, as the whole value of an output, for a server path to copy into its cache (a FileData
    inside a list, as /generate_image returns, is left as it is): this passes through as sent."""

    path: str  # the link, studio-files/<token>/<name>: no server path
    url: str
    size: int | None = None
    orig_name: str | None = None
    mime_type: str | None = None
    is_stream: bool = False
    meta: dict = {"_type": "gradio.FileData"}


def _short(value: str, name: str, title: str) -> str:
    if len(value) > MAX_NAME_CHARS:
        raise user_error(f"{name} is {len(value):,} characters long; no {name} is that long.", title=title)
    return value


def build_speech_api(speech: SpeechStudio, uploads: UploadRegistry, links: FileLinks) -> None:
    def speak(
        text: str, model: str = "", voice: str = "", speed: float = 1.0, format: str = "mp3", request: gr.Request = None
    ) -> tuple[FileData | None, str]:  # type: ignore[misc]
        # A generator, annotated with what it yields (Gradio takes the outputs from the annotation).
        """Speak `text` aloud and keep the audio (it also shows in the Speech tab's History for the token's user).
        Streams a status while it works; the last value holds the file.

        Args:
            text: what to say (Markdown is read as its words; at most the server's character limit).
            model: a configured voice model ("kokoro", "festival", "flite", "espeak", "openai:tts-1"); empty for the
                default.
            voice: one of the model's voices (e.g. "en-us" for espeak); empty for the model's default.
            speed: 0.5 to 2.0; 1.0 is normal.
            format: the file's format: wav, mp3 or ogg.
        Returns:
            (the audio file, a short status such as "Done: 12.4 s of audio (mp3)").
        """
        title = "Not spoken"
        user = api_user(request)
        model, voice = _short(model, "model", title), _short(voice, "voice", title)
        fmt = format.strip().lower()
        cancel = threading.Event()
        updates = None
        last = 0.0
        try:
            updates = speech.speak(
                user,
                text,
                model=model or None,
                voice=voice or None,
                speed=speed,
                fmt=fmt,
                cancel=cancel,
                source="api",
                caller=limit_key(request),
            )
            for upd in updates:
                if upd.item is not None:
                    item = upd.item
                    if item.path is None:
                        raise user_error("No audio was made.", title=title)
                    name = item_filename(item.title, item.created, item.fmt)
                    link = links.link(caller(request), Path(item.path), name)
                    state = "Stopped" if item.stopped else "Done"
                    yield (
                        LinkedFile(
                            path=link,
                            url=f"{API_PREFIX}/file={link}",
                            size=item.bytes,
                            mime_type=MIME.get(item.fmt, "application/octet-stream"),
                            orig_name=name,
                        ),
                        f"{state}: {item.duration:.1f} s of audio ({item.fmt}), id {item.id}",
                    )
                    return
                if time.monotonic() - last >= API_TICK_S:
                    last = time.monotonic()
                    yield None, upd.message
        except FAILURES as exc:
            raise user_error(str(exc), title=title) from None
        finally:
            cancel.set()  # a cancelled call (Gradio closed this generator) stops the work between pieces
            if updates is not None:
                updates.close()
        raise user_error("No audio was made.", title=title)

    gr.api(
        api_endpoint(speak, title="Not spoken"),
        api_name="speak",
        concurrency_limit=speech.settings.concurrency_limit,
        concurrency_id="speech-speak",
    )

    def transcribe(
        audio: FileData, language: str = "", model: str = "", request: gr.Request = None
    ) -> tuple[str, list[dict], str]:  # type: ignore[misc]
        """Transcribe a recording (or a video's sound track) into text with timestamps; the transcript is kept
        (it shows in the Speech tab's History for the token's user). Streams the segments recognised so far; the
        last value has them all.

        Args:
            audio: the recording, sent with gradio_client.handle_file(path): WAV, MP3, OGG, FLAC, M4A, MP4, WebM, MKV.
            language: an ISO 639-1 code such as "en" or "de"; empty to detect it.
            model: a configured recogniser ("whisper", "faster-whisper:small", "openai:whisper-1"); empty for the
                default.
        Returns:
            (the text, the segments as [{"start": seconds, "end": seconds, "text": "..."}], the language code).
        """
        title = "Not transcribed"
        user = api_user(request)
        model, language = _short(model, "model", title), language.strip()
        if language and not LANGUAGE_CODE.match(language):
            raise user_error(
                f"language must be a language code such as 'en' or 'de', or empty to detect it; got {language[:40]!r}.",
                title=title,
            )
        data = audio.model_dump() if isinstance(audio, FileData) else audio
        cancel = threading.Event()
        updates = None
        last = 0.0
        try:
            path = owned_upload(uploads, caller(request), data, "audio")
            if path is None:
                raise InputError("audio is required: an uploaded file (gradio_client.handle_file(path)).")
            name = data.get("orig_name") if isinstance(data, dict) else None
            updates = speech.transcribe(
                user,
                Path(path),
                model=model or None,
                language=language or None,
                cancel=cancel,
                source="api",
                title=name if isinstance(name, str) else None,
                caller=limit_key(request),
            )
            for upd in updates:
                if upd.item is not None:
                    item = upd.item
                    yield item.text, _segments(item.segments), item.language
                    return
                if time.monotonic() - last >= API_TICK_S:
                    last = time.monotonic()
                    lang = upd.info.language if upd.info is not None else ""
                    yield " ".join(s.text.strip() for s in upd.segments), _segments(upd.segments), lang
        except FAILURES as exc:
            raise user_error(str(exc), title=title) from None
        finally:
            cancel.set()
            if updates is not None:
                updates.close()
        raise user_error("Nothing was transcribed.", title=title)

    gr.api(
        api_endpoint(transcribe, title="Not transcribed"),
        api_name="transcribe",
        concurrency_limit=speech.settings.concurrency_limit,
        concurrency_id="speech-transcribe",
    )


def _segments(segments) -> list[dict]:
    return [{"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text.strip()} for s in segments]
