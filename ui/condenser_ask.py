"""“Ask these documents” under a summary, and the /ask API: components and event wiring only. Every answer comes
from core.condenser.ask (passages that match, the model's answer, its citation checked by the code); the thread of
questions and answers is this tab's, for the summary shown."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import gradio as gr
from gradio.data_classes import FileData

from core.condenser.ask import MAX_QUESTION_CHARS, AskCancelled, AskService
from core.condenser.documents import DocumentError
from core.condenser.passages import PassagesNotKept
from core.condenser.service import InputFile
from core.condenser.store import SummaryNotFound
from core.errors import BackendError, InputError
from core.safe_html import safe_markdown
from core.security.limits import UserSlots
from core.security.uploads import UploadRegistry
from ui.errors import user_error
from ui.identity import api_user, user_id
from ui.server.api_args import api_endpoint

PRIVATE = dict(api_visibility="private")
FAILURES = (InputError, DocumentError, BackendError, SummaryNotFound, PassagesNotKept)
MAX_THREAD = 20  # answers kept in the tab's thread (the oldest go first)
UPDATE_INTERVAL_S = 0.1
HINT = "*Ask about the documents of this summary. Answers come only from them, with the page or section quoted.*"


def _thread(answers: list[str]) -> str:
    return safe_markdown("\n\n---\n\n".join(answers)) if answers else HINT


def _message(exc: Exception) -> str:
    if isinstance(exc, SummaryNotFound):
        return "That summary no longer exists."
    return exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)


def build_ask_section(asker: AskService, browser_id: gr.BrowserState, summary_id: gr.State) -> None:
    """The “Ask these documents” box, shown once a summary is (its id in `summary_id`); a new summary starts a new
    thread."""
    answers = gr.State([])
    with gr.Group(visible=False, elem_id="condense-ask") as box:
        gr.Markdown("#### Ask these documents", elem_id="condense-ask-title")
        thread = gr.Markdown(HINT, elem_id="condense-ask-thread")
        status = gr.Markdown(elem_id="condense-ask-status")
        question = gr.Textbox(
            label="Question about the documents",
            placeholder="e.g. What does it say about the deadline?",
            max_length=MAX_QUESTION_CHARS,
            lines=1,
            max_lines=4,
            elem_id="condense-ask-question",
        )
        with gr.Row():
            ask_btn = gr.Button("Ask", variant="primary", elem_id="condense-ask-run", scale=2)
            stop_btn = gr.Button("Stop", variant="stop", visible=False, elem_id="condense-ask-stop", scale=1)

    summary_id.change(
        lambda sid: (gr.Group(visible=bool(sid)), [], HINT, ""),
        [summary_id],
        [box, answers, thread, status],
        queue=False,
        show_progress="hidden",
        **PRIVATE,
    )

    def running() -> tuple[Any, Any]:
        return gr.Button(interactive=False, value="Asking…"), gr.Button(visible=True)

    def idle() -> tuple[Any, Any]:
        return gr.Button(interactive=True, value="Ask"), gr.Button(visible=False)

    def ask_in_tab(q, sid, kept, bid, request: gr.Request) -> Iterator:  # not `ask`: that name is the API's
        user = user_id(bid, request)
        if not sid or not isinstance(sid, str):
            raise user_error("Condense a document (or open an earlier summary) first.", title="Nothing to ask")
        kept = list(kept or [])
        updates = None
        try:
            updates = asker.ask(user, q, summary_id=sid, session=request.session_hash or "")
            last = 0.0
            for upd in updates:
                if upd.answer is not None:
                    kept = (kept + [upd.answer.markdown()])[-MAX_THREAD:]
                    # the question is in the thread now: the box is cleared for the next one
                    yield _thread(kept), "", "", kept, *idle()
                    return
                if time.monotonic() - last < UPDATE_INTERVAL_S:
                    continue
                last = time.monotonic()
                line = safe_markdown(f"**{upd.status}**")
                if upd.partial:
                    line += "\n\n" + safe_markdown(f"*{upd.partial[-600:]}*")
                yield gr.update(), line, gr.update(), gr.update(), *running()
        except AskCancelled:
            yield gr.update(), "**Stopped.** Your question is still in the box.", gr.update(), gr.update(), *idle()
        except FAILURES as exc:
            # what was typed stays in the box; the status says it too, then the toast
            yield gr.update(), safe_markdown(f"**Not answered.** {_message(exc)}"), gr.update(), gr.update(), *idle()
            raise user_error(_message(exc), title="Not answered") from None
        finally:
            if updates is not None:
                updates.close()

    outputs = [thread, status, question, answers, ask_btn, stop_btn]
    for trigger in (ask_btn.click, question.submit):
        trigger(
            ask_in_tab,
            [question, summary_id, answers, browser_id],
            outputs,
            concurrency_limit=asker.condense.settings.concurrency_limit,
            concurrency_id="condense",
            show_progress="hidden",
            **PRIVATE,
        ).then(idle, None, [ask_btn, stop_btn], queue=False, show_progress="hidden", **PRIVATE)

    def stop_asking(bid, request: gr.Request):
        asker.stop(user_id(bid, request), request.session_hash or "")

    stop_btn.click(stop_asking, [browser_id], None, queue=False, **PRIVATE)


def build_ask_api(asker: AskService, uploads: UploadRegistry, jobs: UserSlots) -> None:
    def ask(
        question: str,
        summary_id: str = "",
        file: FileData | list[FileData] | None = None,
        model: str = "",
        request: gr.Request = None,
    ) -> Iterator[dict]:  # type: ignore[assignment]
        """Answer a question from documents only: the answer cites the page or section it comes from, with the
        quoted passage, or says plainly "The documents do not answer this." Streams progress; the last value holds
        the answer.

        Args:
            question: the question, in plain words (up to 1,000 characters).
            summary_id: the id of one of your summaries (the "id" /condense returned): its documents are asked.
            file: or the document itself, sent with gradio_client.handle_file(path) (PDF, DOCX, TXT, MD, HTML); a list for several.
            model: a configured model spec; empty for the default.
        Returns:
            {"status", "answered" (false when the documents do not answer), "answer", "citations" (each with
            "cite", "document" and "quote"), "markdown"}.
        """
        from ui.condenser import add_api_files  # here: ui/condenser.py imports this module for the tab's section

        inputs: list[InputFile] = []
        try:
            add_api_files(inputs, uploads, request, file)
            with jobs.hold(api_user(request)):
                for upd in asker.ask(
                    api_user(request), question, summary_id or "", inputs, model or None, session=uuid.uuid4().hex
                ):
                    if upd.answer is not None:
                        yield {"status": "complete", **upd.answer.as_dict()}
                        return
                    yield {"status": upd.status, "answered": False, "answer": "", "citations": [], "markdown": ""}
        except AskCancelled:
            raise user_error("The question was cancelled.", title="Not answered") from None
        except FAILURES as exc:
            raise user_error(_message(exc), title="Not answered") from None
        finally:
            asker.condense.discard_unused(inputs)

    gr.api(
        api_endpoint(ask, title="Not answered"),
        api_name="ask",
        concurrency_limit=asker.condense.settings.concurrency_limit,
        concurrency_id="condense",
    )
