"""The "Read aloud" player the chat, the writer and the condenser share: a small row that appears when reading starts
(a live player, a status line, Stop), fed by SpeechStudio.speak with the default voice. What is read is the caller's
(`text_of`); how it is spoken, and that it is kept in the Speech tab's history, is core.speech's."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from core.cancel import CancelRegistry
from core.errors import BackendError, BusyError, InputError, NotFoundError
from core.registry import ModelLoadError
from core.speech.errors import LanguageMismatchError
from core.speech.service import SpeechStudio
from ui.errors import user_error
from ui.identity import limit_key, user_id
from ui.model_pickers import md
from ui.speech import LIVE_MAX_S
from ui.speech_view import duration, served_copy

PRIVATE = dict(api_visibility="private")
FAILURES = (InputError, BackendError, BusyError, NotFoundError, ModelLoadError)
TITLE = "Not read aloud"


def streams_live() -> bool:
    """Gradio encodes a streamed player's chunks with the ffmpeg program; without it the file plays when finished."""
    return shutil.which("ffmpeg") is not None


@dataclass
class ReadAloud:
    """One tab's player row. `wire` connects a trigger (a button, a hidden button the page script clicks) to it."""

    speech: SpeechStudio
    source: str  # "chat" | "writer" | "condenser": the Speech tab's history says where an item came from
    row: gr.Row
    player: gr.Audio
    status: gr.Markdown
    stop_btn: gr.Button
    live: bool
    cancels: CancelRegistry = field(default_factory=CancelRegistry)

    @property
    def outputs(self) -> list:
        return [self.row, self.player, self.status, self.stop_btn]

    def key(self, request: gr.Request) -> str:
        return f"{self.source}:{request.session_hash or ''}"  # this browser tab's reading only

    def stream(self, user: str, text: str, request: gr.Request) -> Iterator[tuple]:
        """Speak `text` in the default voice into the player, piece by piece. A text the default voice cannot speak
        is read by the voice core suggests for its language (said in the status); other problems are messages."""
        cancel = self.cancels.start(user, self.key(request), supersede=True)  # a second click replaces the first
        note, voice = "", None  # voice: (model spec, voice id) core suggested, after a language mismatch
        yield (
            gr.Row(visible=True),
            gr.skip() if self.live else None,
            "Getting the voice ready…",
            gr.Button(visible=True),
        )
        try:
            for attempt in range(2):
                updates = None
                try:
                    updates = self.speech.speak(
                        user,
                        text,
                        model=voice[0] if voice else None,
                        voice=voice[1] if voice else None,
                        fmt="mp3",
                        cancel=cancel,
                        source=self.source,
                        caller=limit_key(request),
                    )
                    yield from self._updates(updates, note)
                    return
                except LanguageMismatchError as exc:  # checked before any audio is made
                    if attempt or not exc.suggestion:
                        raise
                    voice = (exc.suggestion[0], exc.suggestion[1])
                    note = f"{md(str(exc))} Read with that voice instead."
                finally:
                    if hasattr(updates, "close"):
                        updates.close()  # the run's file and model turn are let go of at once
        except FAILURES as exc:
            yield gr.skip(), gr.skip(), f"**{TITLE}.** {md(str(exc))}", gr.Button(visible=False)
            raise user_error(str(exc), title=TITLE) from None
        finally:
            cancel.set()  # a page that went away mid-reading stops the voice; after the end it changes nothing
            self.cancels.finish(user, self.key(request), cancel)

    def _updates(self, updates: Iterator, note: str) -> Iterator[tuple]:
        prefix = f"{note} " if note else ""
        for upd in updates:
            # As in the Speech tab: Gradio holds a run's streamed audio in memory until the run ends, so the player
            # gets the first LIVE_MAX_S of a long text (a whole draft sent by a script) and the rest is in the file.
            streaming = self.live and upd.audio_seconds <= LIVE_MAX_S
            chunk = upd.chunk if streaming and upd.chunk else gr.skip()
            if upd.item is None:
                line = md(upd.message)
                if self.live and not streaming:
                    line += f" · the player has the first {duration(LIVE_MAX_S)}; all of it is kept in History"
                yield gr.skip(), chunk, f"{prefix}{line}", gr.skip()
                continue
            item = upd.item
            if item.stopped:
                line = f"**Stopped** after {duration(item.duration)} (kept in the Speech tab's history)."
            else:
                line = f"**Read aloud:** {duration(item.duration)} of audio (kept in the Speech tab's history)."
            played: Any = chunk
            if not self.live and item.path:  # no live stream: the whole file plays now
                played = served_copy(item.path, f"read-aloud.{item.fmt}")
            yield gr.skip(), played, f"{prefix}{line}", gr.Button(visible=False)

    def stop(self, bid: str | None, request: gr.Request) -> Any:
        """Ends this browser tab's reading; the status says so at once (a voice still loading ends when it is
        ready, which can take seconds)."""
        try:
            user = user_id(bid, request)
        except gr.Error:
            return gr.skip()
        return "**Stopping…**" if self.cancels.stop(user, self.key(request)) else gr.skip()

    def wire(self, trigger: Callable, text_of: Callable[..., str], inputs: list, browser_id: Any, **kwargs) -> Any:
        """On `trigger`, read `text_of(user, *values of inputs)` aloud. `text_of` raises gr.Error (user_error) when
        there is nothing to read. Returns the event."""

        def read(bid, values: tuple, request: gr.Request) -> Iterator[tuple]:
            user = user_id(bid, request)
            yield from self.stream(user, text_of(user, *values), request)

        # Gradio hands the request to the parameter annotated gr.Request, by position: one handler per arity
        if len(inputs) == 1:

            def handler(bid, a, request: gr.Request) -> Iterator[tuple]:
                yield from read(bid, (a,), request)

        elif len(inputs) == 2:

            def handler(bid, a, b, request: gr.Request) -> Iterator[tuple]:  # type: ignore[misc]
                yield from read(bid, (a, b), request)

        else:
            raise ValueError("read aloud takes one or two inputs besides the browser id")

        return trigger(
            handler,
            [browser_id, *inputs],
            self.outputs,
            concurrency_limit=self.speech.settings.concurrency_limit,
            concurrency_id="read-aloud",
            show_progress="hidden",
            **PRIVATE,
            **kwargs,
        )


def read_aloud_player(speech: SpeechStudio, source: str, browser_id: Any, elem_prefix: str) -> ReadAloud:
    """The row (hidden until reading starts), made where this is called. Stop ends only this browser tab's reading."""
    live = streams_live()
    with gr.Row(visible=False, equal_height=False, elem_id=f"{elem_prefix}-read", elem_classes=["read-aloud"]) as row:
        player = gr.Audio(
            label="Read aloud",
            streaming=live,
            autoplay=True,
            interactive=False,
            buttons=["download"],
            elem_id=f"{elem_prefix}-read-player",
            scale=3,
            min_width=220,
        )
        with gr.Column(scale=2, min_width=160):
            status = gr.Markdown(elem_id=f"{elem_prefix}-read-status")
            stop_btn = gr.Button("Stop reading", size="sm", visible=False, elem_id=f"{elem_prefix}-read-stop")
    reader = ReadAloud(speech, source, row, player, status, stop_btn, live)
    # Stop silences the player at once (what was already sent would play on) and ends the voice's work
    pause = f"(...args) => {{ document.querySelector('#{elem_prefix}-read-player audio')?.pause(); return args; }}"
    stop_btn.click(reader.stop, [browser_id], [status], queue=False, js=pause, show_progress="hidden", **PRIVATE)
    return reader
