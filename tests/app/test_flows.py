"""Flows across tabs (core/flows.py) with the real stores: the text that arrives in the other tab, what the person had
there kept, the "made from" link recorded, and another user's items refused."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from PIL import Image

from backends.image.base import GeneratedImage
from core.chat.discuss import MAX_SUMMARY_CHARS
from core.chat.service import ChatService
from core.chat.store import ConversationStore
from core.condenser.service import CondenseService
from core.condenser.store import SummaryStore
from core.errors import InputError, NotFoundError, QuotaExceededError
from core.flows import DISCUSSED, DRAFT_FROM_REPLY, HEADER_IMAGE, READ_ALOUD, SPOKEN, Flows, Pending, library_linker
from core.images.models import ImageModelManager
from core.images.service import ImageStudio
from core.images.store import ImageGallery
from core.library.items import ItemRef
from core.library.service import LibraryService
from core.models.text import ModelManager
from core.quota import StorageQuota
from core.speech.models import SpeechModels, TranscribeModels
from core.speech.service import SpeechStudio
from core.speech.store import SpeechStore
from core.writer.brief import WriteOptions
from core.writer.header_image import header_image_prompt
from core.writer.service import WriterService
from core.writer.store import DraftStore
from core.writer.templates import load_library

CORPUS = (
    Path("/work/shared/corpus") if Path("/work/shared/corpus").is_dir() else Path(__file__).parents[3] / "shared/corpus"
)
REPLY = "Composting in a flat works with a **worm bin**:\n\n1. Keep it under the sink.\n2. Feed it vegetable scraps."


class Links:
    """What the library says was made from what: LibraryService.links read for the refs a test names."""

    def __init__(self, library: LibraryService) -> None:
        self.library = library

    def made_from(self, user: str, kind: str, item_id: str) -> list[tuple[tuple[str, str], str]]:
        """(made item, relation) for each link from the item."""
        found = self.library.links(user, ItemRef(kind, item_id)).made_from_it
        return [((link.ref.kind, link.ref.id), link.relation) for link in found if link.ref is not None]

    def came_from(self, user: str, kind: str, item_id: str) -> list[tuple[tuple[str, str], str]]:
        found = self.library.links(user, ItemRef(kind, item_id)).came_from
        return [((link.ref.kind, link.ref.id), link.relation) for link in found if link.ref is not None]


@pytest.fixture()
def world(settings_factory):
    settings = settings_factory()
    db = settings.db_path
    models = ModelManager(settings)
    chat = ChatService(settings, ConversationStore(db), models)
    writer = WriterService(settings, models, DraftStore(db), load_library())
    condenser = CondenseService(settings, models, SummaryStore(db))
    images = ImageStudio(settings, ImageModelManager(settings), ImageGallery(settings.data_dir, db))
    speech = SpeechStudio(
        settings, SpeechModels(settings), TranscribeModels(settings), SpeechStore(settings.data_dir, db)
    )
    library = LibraryService(
        settings, db, chats=chat.store, drafts=writer.drafts, summaries=condenser.store, images=images.gallery,
        speech=speech.store,
    )  # fmt: skip
    return Flows(chat, writer, condenser, images, speech, link=library_linker(library)), Links(library)


def conversation_with_reply(flows: Flows, user: str, reply: str = REPLY) -> tuple[str, int]:
    store = flows.chat.store
    conv = store.create_conversation(user, "Composting at home", model="embedded")
    question = store.add_message(user, conv.id, "user", "How do I compost in a flat?")
    mid = store.add_message(user, conv.id, "assistant", reply, "complete", "embedded", question)
    return conv.id, mid


def test_a_reply_becomes_a_draft_linked_to_its_conversation(world):
    flows, links = world
    cid, mid = conversation_with_reply(flows, "ann")
    draft = flows.reply_to_writer("ann", cid, str(mid))
    stored = flows.writer.open_draft("ann", draft.id)
    assert stored.text == REPLY  # the model's Markdown as stored, not the bubble's HTML or its controls
    assert stored.title == "Composting at home" and stored.brief["topic"] == "Composting at home"
    assert links.made_from("ann", "chat", cid) == [(("draft", draft.id), DRAFT_FROM_REPLY)]
    assert (("chat", cid), DRAFT_FROM_REPLY) in links.came_from("ann", "draft", draft.id)


def test_a_link_that_fails_never_loses_what_was_made(world):
    flows, _ = world

    def broken(user, source, made, relation):
        raise RuntimeError("the library's database is locked")

    flows._link = broken
    cid, mid = conversation_with_reply(flows, "ann")
    draft = flows.reply_to_writer("ann", cid, mid)
    assert flows.writer.open_draft("ann", draft.id).text == REPLY
    assert flows.link("ann", ("chat", cid), ("draft", draft.id), DRAFT_FROM_REPLY) is False


def test_text_in_the_writer_is_never_lost(world):
    flows, _ = world
    cid, mid = conversation_with_reply(flows, "ann")
    # typed with no draft open: it comes first in the new draft, the reply after it
    typed = flows.reply_to_writer("ann", cid, mid, unsaved="My own opening paragraph.")
    assert flows.writer.open_draft("ann", typed.id).text == "My own opening paragraph.\n\n" + REPLY
    # an open draft with edits not yet saved: they are saved to it, and the reply gets a draft of its own
    flows.writer.keep_text("ann", typed.id, "old text")
    fresh = flows.reply_to_writer("ann", cid, mid, unsaved="edited, not yet saved", open_draft=typed.id)
    assert flows.writer.open_draft("ann", typed.id).text == "edited, not yet saved"
    assert flows.writer.open_draft("ann", fresh.id).text == REPLY and fresh.id != typed.id


def test_another_users_reply_or_a_stale_control_sends_nothing(world):
    flows, links = world
    cid, mid = conversation_with_reply(flows, "ann")
    with pytest.raises(NotFoundError):
        flows.reply_to_writer("bob", cid, mid)
    with pytest.raises(NotFoundError):  # a message id that is not a reply of this conversation
        flows.reply_to_writer("ann", cid, mid - 1)
    with pytest.raises(InputError):
        flows.reply_to_writer("ann", cid, "12; DROP TABLE drafts")
    assert flows.writer.draft_choices("bob") == [] and len(flows.writer.draft_choices("ann")) == 0
    assert links.made_from("ann", "chat", cid) == []


def test_the_reply_to_speech_is_the_stored_text(world):
    flows, _ = world
    cid, mid = conversation_with_reply(flows, "ann")
    assert flows.reply_text("ann", cid, mid) == REPLY
    with pytest.raises(NotFoundError):
        flows.reply_text("bob", cid, mid)


def test_a_header_prompt_names_the_title_and_the_subject_of_real_drafts():
    guide = (CORPUS / "good-ripgrep-user-guide.md").read_text(encoding="utf-8")[:6000]
    prompt = header_image_prompt(guide, "Getting started with ripgrep")
    assert prompt.startswith('Header image for an article titled "User Guide"')  # the draft's own heading wins
    subject = prompt.split("showing ", 1)[1].split(".")[0]
    assert "ripgrep" in subject and "command line" in subject
    assert "mut" not in subject  # code blocks say nothing about what to show
    html = (CORPUS / "good-wikipedia-mozilla-article.html").read_text(encoding="utf-8")
    text = re.sub(r"<(script|style)[^>]*>.*?</\1>|<[^>]+>", "", html, flags=re.S)
    article = "\n".join(line.strip() for line in text[text.index("Mozilla is a free-software") :].splitlines())
    prompt = header_image_prompt(article[:6000], "Mozilla")
    subject = prompt.split("showing ", 1)[1].split(".")[0]
    assert prompt.startswith('Header image for an article titled "Mozilla"') and "firefox" in subject
    assert "mozilla" not in subject  # the title says it already
    assert "\n" not in prompt and "no text" in prompt  # one line; a header image carries no lettering


def test_a_header_prompt_from_the_writer(world):
    flows, _ = world
    draft = flows.writer.save_new_draft(
        "ann", "Worms eat scraps. Worms like scraps.", "blog_post", {"topic": "Worm bins"}, _o()
    )
    assert flows.header_prompt("ann", draft.id, draft.text, "").startswith(
        'Header image for an article titled "Worm bins", showing worms, scraps. Wide banner'
    )  # no topic in the form: the open draft's title
    with pytest.raises(InputError):
        flows.header_prompt("ann", draft.id, "   ", "")
    with pytest.raises(NotFoundError):  # the title is looked up only in the caller's own drafts
        flows.header_prompt("bob", draft.id, "Some text with no heading", "")
    hostile = '# A "quoted" title\n\n<img src=x onerror=alert(1)> cats cats'
    assert "<" not in flows.header_prompt("ann", None, hostile, "") and "'quoted'" in flows.header_prompt(
        "ann", None, hostile, ""
    )


def test_images_made_after_the_flow_link_to_the_draft(world):
    flows, links = world
    assert flows.images is not None
    gallery = flows.images.gallery
    before = gallery.save("ann", _picture("before"))
    draft = flows.writer.save_new_draft("ann", "A post about owls.", "blog_post", {"topic": "Owls"}, _o())
    pending = Pending(("draft", draft.id), time.time())
    assert flows.link_made("ann", pending, "image") == []  # nothing made yet: the tab keeps waiting
    made = gallery.save("ann", _picture("a header"))
    gallery.save("bob", _picture("bob's"))
    assert flows.link_made("ann", pending, "image") == [made.id]
    assert links.made_from("ann", "draft", draft.id) == [(("image", made.id), HEADER_IMAGE)]
    assert before.id not in str(links.made_from("ann", "draft", draft.id))


def test_speech_made_after_send_to_speech_links_to_the_reply(world):
    flows, links = world
    assert flows.speech is not None
    cid, mid = conversation_with_reply(flows, "ann")
    pending = Pending(("chat", cid), time.time())
    assert flows.link_made("ann", pending, "audio") == []
    spoken = _speak(flows, "ann", flows.reply_text("ann", cid, mid))
    _speak(flows, "bob", "bob's words")  # another user's audio is never linked to ann's reply
    assert flows.link_made("ann", pending, "audio") == [spoken]
    assert links.made_from("ann", "chat", cid) == [(("audio", spoken), SPOKEN)]
    # read aloud in the chat: the same, under its own relation
    later = Pending(("chat", cid), time.time())
    read = _speak(flows, "ann", flows.reply_text("ann", cid, mid))
    assert flows.link_made("ann", later, "audio", READ_ALOUD) == [read]
    assert (("audio", read), READ_ALOUD) in links.made_from("ann", "chat", cid)


def test_a_summary_starts_a_conversation_that_holds_it(world):
    flows, links = world
    markdown = (
        "## Boeing 737 MAX\n\n- The FAA proposes new software for the flight control computer [p. 3]\n\n"
        "<details><summary>Quoted sources</summary>\n\n> a long quoted passage\n\n</details>"
    )
    summary = flows.condenser.store.save("ann", "federal-register.pdf", markdown)
    conv = flows.summary_to_chat("ann", summary.id)
    assert conv.title == "Discuss: federal-register.pdf" and conv.messages == []
    assert "new software for the flight control computer [p. 3]" in conv.system_prompt  # citations kept
    assert "a long quoted passage" not in conv.system_prompt  # the quoted sources are for a reader
    assert flows.chat.conversation("ann", conv.id).system_prompt == conv.system_prompt  # opened with it
    assert links.made_from("ann", "summary", summary.id) == [(("chat", conv.id), DISCUSSED)]
    with pytest.raises(NotFoundError):
        flows.summary_to_chat("bob", summary.id)
    with pytest.raises(InputError):
        flows.summary_to_chat("ann", None)


def test_a_full_library_gets_no_new_conversation(world):
    flows, links = world
    summary = flows.condenser.store.save("ann", "report.pdf", "- a point worth discussing " * 40)
    StorageQuota(1_500).attach(flows.chat.store, flows.condenser.store)  # the summary alone takes most of it
    with pytest.raises(QuotaExceededError):
        flows.summary_to_chat("ann", summary.id)
    assert flows.chat.conversations("ann") == [] and links.made_from("ann", "summary", summary.id) == []


def test_a_long_summary_is_cut_to_fit_and_says_so(world):
    flows, _ = world
    paragraphs = "\n\n".join(f"- Point {i}: " + "word " * 40 for i in range(400))
    summary = flows.condenser.store.save("ann", "long.pdf", paragraphs)
    conv = flows.summary_to_chat("ann", summary.id)
    assert len(conv.system_prompt) < MAX_SUMMARY_CHARS + 1_000
    assert "Point 0:" in conv.system_prompt and "Point 399:" not in conv.system_prompt
    assert "it was cut at the end" in conv.system_prompt


def _o() -> WriteOptions:
    return WriteOptions()


def _picture(prompt: str) -> GeneratedImage:
    return GeneratedImage(Image.new("RGB", (8, 8), (200, 100, 50)), 7, {"prompt": prompt, "model": "test"})


def _speak(flows: Flows, user: str, text: str) -> str:
    """A speech item as the Speak run keeps one (the audio file and its row)."""
    assert flows.speech is not None
    store = flows.speech.store
    item_id, partial = store.partial_path(user, "wav")
    partial.write_bytes(b"RIFF....WAVEfmt ")
    item = store.add_speech(
        user, item_id, partial, text=text, source="speech", model="espeak", voice="en", language="en",
        fmt="wav", duration=1.0, stopped=False,
    )  # fmt: skip
    return item.id
