"""Work carried from one tab to another without copy and paste, and the "made from" link each leaves in the library:
a chat reply becomes a draft, a draft gives a header image's prompt, a summary starts a conversation, and a reply,
draft or summary sent to Speech is linked to the audio made from it. No gradio: the tabs' wiring is ui/flows.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.chat.discuss import start_discussion
from core.chat.display import spoken_reply
from core.chat.service import ChatService
from core.chat.store import Conversation
from core.condenser.service import CondenseService
from core.condenser.store import SummaryNotFound
from core.errors import InputError, NotFoundError
from core.images.service import ImageStudio
from core.library.items import ItemRef
from core.speech.service import SpeechStudio
from core.writer.brief import WriteOptions
from core.writer.header_image import header_image_prompt
from core.writer.service import WriterService
from core.writer.store import Draft

log = logging.getLogger(__name__)

# An item as the library names it: (kind, id), e.g. ("draft", "3f2a..."); library_linker turns it into core.library's
# ItemRef for LibraryService.link.
Ref = tuple[str, str]
# (user, source, made, relation): records that `made` was made from `source`.
Linker = Callable[[str, Ref, Ref, str], None]


def library_linker(library: Any) -> Linker:
    """LibraryService.link (core/library/service.py) as the flows call it."""

    def link(user: str, source: Ref, made: Ref, relation: str) -> None:
        library.link(user, ItemRef(*source), ItemRef(*made), relation)

    return link


# How each link reads in the library ("made from" relations, source -> made)
DRAFT_FROM_REPLY = "draft from a chat reply"
HEADER_IMAGE = "header image"
DISCUSSED = "discussed in chat"
SPOKEN = "spoken"
READ_ALOUD = "read aloud"
SPEECH_SOURCES = ("chat", "draft", "summary")  # what "Send to Speech" links the audio to
JOIN = "\n\n"


@dataclass(frozen=True)
class Pending:
    """A flow into a tab that makes something later (Images, Speech): what it came from and when it was sent, so
    what that tab makes from then on is linked to it (ui/flows.py keeps one per page and clears it once linked)."""

    source: Ref
    since: float


class Flows:
    def __init__(
        self,
        chat: ChatService,
        writer: WriterService,
        condenser: CondenseService,
        images: ImageStudio | None = None,
        speech: SpeechStudio | None = None,
        link: Linker | None = None,
    ) -> None:
        self.chat, self.writer, self.condenser = chat, writer, condenser
        self.images, self.speech = images, speech
        self._link = link

    def link(self, user: str, source: Ref, made: Ref, relation: str) -> bool:
        """Record the link; a failure is logged, never the flow's failure (the work itself arrived)."""
        if self._link is None:
            return False
        try:
            self._link(user, source, made, relation)
        except Exception:  # noqa: BLE001 - whatever the library's trouble, what the person made has arrived
            log.warning("link %s -> %s (%s) not recorded", source, made, relation, exc_info=True)
            return False
        return True

    # -- a chat reply -------------------------------------------------------------------------------------
    def reply_text(self, user: str, conversation_id: str | None, message_id: object) -> str:
        """The stored text of a reply shown in the user's conversation. NotFoundError for another user's or a
        reply no longer shown; InputError for a control that names no message."""
        try:
            mid = int(str(message_id or ""))
        except ValueError:
            raise InputError("That control is out of date; reload the page.") from None
        if not conversation_id or not isinstance(conversation_id, str):
            raise NotFoundError("Open the conversation first.")
        text = spoken_reply(self.chat.conversation(user, conversation_id), mid)
        if not text.strip():
            raise InputError("That reply is empty: there is nothing to send.")
        return text

    def reply_to_writer(
        self,
        user: str,
        conversation_id: str | None,
        message_id: object,
        unsaved: str = "",
        open_draft: str | None = None,
    ) -> Draft:
        """A new draft holding the reply, titled after its conversation and linked to it. What the writer held is
        never lost: an open draft keeps its text (`unsaved`, saved to it here), and text typed with no draft open
        comes first in the new draft, the reply after it."""
        text = self.reply_text(user, conversation_id, message_id)
        assert conversation_id is not None
        conv = self.chat.conversation(user, conversation_id)
        before = unsaved.strip() if isinstance(unsaved, str) else ""
        if open_draft and isinstance(open_draft, str):
            self.writer.keep_text(user, open_draft, unsaved if isinstance(unsaved, str) else "")
            before = ""
        body = f"{before}{JOIN}{text}" if before else text
        templates = self.writer.library.templates  # the writer tab's first template (a blog post), as a new piece
        template = "blog_post" if "blog_post" in templates else next(iter(templates))
        draft = self.writer.save_new_draft(user, body, template, {"topic": conv.title}, WriteOptions())
        self.link(user, ("chat", conversation_id), ("draft", draft.id), DRAFT_FROM_REPLY)
        return draft

    # -- a draft --------------------------------------------------------------------------------------------
    def header_prompt(self, user: str, draft_id: str | None, text: object, topic: object = "") -> str:
        """The Images prompt for a header image of the draft as it stands in the writer (saved or not)."""
        body = text if isinstance(text, str) else ""
        if not body.strip():
            raise InputError("Write or open a draft first: the draft is empty.")
        title = topic if isinstance(topic, str) and topic.strip() else ""
        if not title and draft_id:
            title = self.writer.open_draft(user, draft_id).title  # NotFoundError for another user's
        return header_image_prompt(body, title)

    # -- a summary ------------------------------------------------------------------------------------------
    def summary_to_chat(self, user: str, summary_id: object) -> Conversation:
        """A new conversation whose system prompt holds the summary, linked to it."""
        if not summary_id or not isinstance(summary_id, str):
            raise InputError("Condense a document (or open an earlier summary) first.")
        try:
            summary = self.condenser.summary(user, summary_id)
        except SummaryNotFound:
            raise NotFoundError("That summary no longer exists.") from None
        conv = start_discussion(self.chat, user, summary.title, summary.markdown)
        self.link(user, ("summary", summary.id), ("chat", conv.id), DISCUSSED)
        return conv

    # -- what a tab made after a flow into it ---------------------------------------------------------------
    def link_made(self, user: str, pending: Pending | None, kind: str, relation: str = "") -> list[str]:
        """Link what the user made of `kind` ("image" or "audio") since `pending` was sent to its source; returns
        the ids linked (none yet: the tab has not made anything since)."""
        if pending is None:
            return []
        made: list[str] = []
        relation = relation or (HEADER_IMAGE if kind == "image" else SPOKEN)
        if kind == "image" and self.images is not None:
            made = [g.id for g in self.images.images(user, limit=50) if g.created_at >= pending.since]
        elif kind == "audio" and self.speech is not None:
            made = [s.id for s in self.speech.history(user, "speech", limit=50) if s.created >= pending.since]
        for item_id in made:
            self.link(user, pending.source, (kind, item_id), relation)
        return made
