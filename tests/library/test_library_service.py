"""The library's core (core/library/service.py) over the real stores on one real SQLite file: every kind made through
its own store's API, listed newest first, filtered, found by words deep inside it, renamed in its own store, deleted
with its files, kept apart per user, and gone from search once retention deletes it."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from backends.image.base import GeneratedImage
from backends.speech.base import Segment
from backends.speech.codecs import AudioWriter
from config import Settings
from core.chat.store import ConversationStore
from core.condenser.passages import PassageStore
from core.condenser.store import SummaryNotFound, SummaryStore
from core.errors import InputError, NotFoundError
from core.images.errors import ImageNotFoundError
from core.images.store import ImageGallery
from core.library.items import KINDS, ItemRef
from core.library.service import LibraryService
from core.quota import Retention, StorageQuota
from core.speech.store import SpeechStore
from core.writer.store import DraftStore

ALICE, BOB = "alice", "browser:bob"


@dataclass
class Studio:
    folder: Path
    chats: ConversationStore
    drafts: DraftStore
    summaries: SummaryStore
    images: ImageGallery
    speech: SpeechStore
    library: LibraryService

    def stores(self) -> list[Any]:
        return [self.chats, self.drafts, self.summaries, self.images, self.speech]


def make_studio(folder: Path) -> Studio:
    db = folder / "studio.sqlite3"
    chats, drafts, summaries = ConversationStore(db), DraftStore(db), SummaryStore(db)
    images, speech = ImageGallery(folder, db), SpeechStore(folder, db)
    StorageQuota(50 * 2**20).attach(chats, drafts, summaries, images, speech)
    library = LibraryService(
        Settings(data_dir=folder), db, chats=chats, drafts=drafts, summaries=summaries, images=images, speech=speech
    )
    return Studio(folder, chats, drafts, summaries, images, speech, library)


@pytest.fixture
def studio(tmp_path: Path) -> Studio:
    return make_studio(tmp_path)


def chat(s: Studio, user: str, title: str, *messages: str) -> ItemRef:
    conv = s.chats.create_conversation(user, title, model="embedded")
    for i, text in enumerate(messages):
        s.chats.add_message(user, conv.id, "user" if i % 2 == 0 else "assistant", text)
    return ItemRef("chat", conv.id)


def draft(s: Studio, user: str, title: str, text: str, topic: str = "balcony gardens") -> ItemRef:
    d = s.drafts.create(user, title, "blog_post", {"topic": topic}, {"model": "embedded"}, text=text)
    return ItemRef("draft", d.id)


def summary(s: Studio, user: str, title: str, markdown: str, created: float | None = None) -> ItemRef:
    made = s.summaries.save(
        user, title, markdown, model="embedded", sources=[{"name": "report.pdf"}, {"name": "notes.docx"}],
        created_at=created,
    )  # fmt: skip
    return ItemRef("summary", made.id)


def image(s: Studio, user: str, prompt: str, created: float | None = None) -> ItemRef:
    pixels = np.random.default_rng(5).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    params = {"prompt": prompt, "negative_prompt": "blur", "steps": 2, "model": "gan:faces"}
    made = s.images.save(user, GeneratedImage(Image.fromarray(pixels, "RGB"), 42, params), created_at=created)
    return ItemRef("image", made.id)


def audio(s: Studio, user: str, text: str, created: float | None = None) -> ItemRef:
    item_id, partial = s.speech.partial_path(user, "wav")
    with AudioWriter(partial, "wav", 16000) as writer:
        writer.write(np.sin(np.arange(8000) / 8).astype(np.float32) * 0.3)
    made = s.speech.add_speech(
        user, item_id, partial, text=text, source="writer", model="espeak", voice="en-us", language="en", fmt="wav",
        duration=80.0, stopped=False, created=created,
    )  # fmt: skip
    return ItemRef("audio", made.id)


def transcript(s: Studio, user: str, title: str, words: str, created: float | None = None) -> ItemRef:
    made = s.speech.add_transcript(
        user, title=title, segments=(Segment(0.0, 2.0, "Good morning."), Segment(2.0, 5.0, words)), source="speech",
        model="whisper", language="en", duration=5.0, stopped=False, created=created,
    )  # fmt: skip
    return ItemRef("transcript", made.id)


def every_kind(s: Studio, user: str = ALICE) -> dict[str, ItemRef]:
    """One item of each kind, made in this order (the transcript last, so newest)."""
    refs = {"chat": chat(s, user, "Trip planning", "Where to?", "Somewhere warm.", "Maybe Zanzibar in June?")}
    refs["draft"] = draft(s, user, "Balcony compost", "Start with a small bin.\nTurn it weekly.")
    refs["summary"] = summary(s, user, "Annual report", "# Summary\n\n- Revenue grew, driven by quokka tours [p. 3].")
    refs["image"] = image(s, user, "a lighthouse at dusk, header image")
    refs["audio"] = audio(s, user, "The post, read aloud for the newsletter.")
    refs["transcript"] = transcript(s, user, "interview.mp3", "We play the marimba on Sundays.")
    return refs


def found(s: Studio, query: str, user: str = ALICE, kind: str | None = None) -> list[ItemRef]:
    return [i.ref for i in s.library.items(user, kind=kind, query=query).items]


# -- listing -------------------------------------------------------------------------------------------------
def test_every_kind_is_listed_newest_first_and_a_change_moves_it_to_the_top(studio: Studio) -> None:
    refs = every_kind(studio)
    page = studio.library.items(ALICE)
    assert [i.ref for i in page.items] == [refs[k] for k in reversed(KINDS)]
    assert page.total == 6 and page.offset == 0
    times = [i.updated_at for i in page.items]
    assert times == sorted(times, reverse=True)
    by_kind = {i.ref.kind: i for i in page.items}
    assert by_kind["chat"].detail == "3 messages" and by_kind["chat"].snippet == "Where to?"
    assert by_kind["draft"].detail == "blog post · 8 words" and by_kind["draft"].snippet == "Start with a small bin."
    assert by_kind["summary"].detail == "2 files" and "quokka" in by_kind["summary"].snippet
    assert by_kind["image"].detail == "48×32 · seed 42" and by_kind["image"].title.startswith("a lighthouse")
    assert by_kind["audio"].detail == "1 min 20 s · en-us"
    assert by_kind["transcript"].title == "interview.mp3"
    assert all(i.size > 0 for i in page.items)
    assert by_kind["image"].size == studio.images.bytes_used(ALICE)

    # the conversation gains a reply: it is the newest now, with its new message counted
    studio.chats.add_message(ALICE, refs["chat"].id, "assistant", "Zanzibar is lovely then.")
    page = studio.library.items(ALICE)
    assert page.items[0].ref == refs["chat"] and page.items[0].detail == "4 messages"

    # pages: two at a time, in the same order
    first, second = studio.library.items(ALICE, limit=2), studio.library.items(ALICE, limit=2, offset=2)
    assert [i.ref for i in first.items + second.items] == [i.ref for i in page.items[:4]]
    assert second.offset == 2 and second.total == 6


def test_the_kind_filter_shows_one_kind_and_a_bad_kind_is_refused(studio: Studio) -> None:
    refs = every_kind(studio)
    image(studio, ALICE, "a second picture")
    images = studio.library.items(ALICE, kind="image")
    assert images.total == 2 and {i.ref.kind for i in images.items} == {"image"}
    assert refs["image"] in [i.ref for i in images.items]
    for kind in KINDS:
        assert all(i.ref.kind == kind for i in studio.library.items(ALICE, kind=kind).items)
    assert [i.ref for i in studio.library.items(ALICE, kind="transcript").items] == [refs["transcript"]]
    assert studio.library.items(ALICE, kind="").total == 7  # '' is every kind, as None is
    for bad in ("images", "CHAT", "'; DROP TABLE library_items; --", 3):
        with pytest.raises(InputError):
            studio.library.items(ALICE, kind=bad)  # type: ignore[arg-type]


# -- search --------------------------------------------------------------------------------------------------
def test_search_finds_words_deep_inside_each_kind_with_the_hit_marked(studio: Studio) -> None:
    refs = every_kind(studio)
    assert found(studio, "zanzibar") == [refs["chat"]]  # only in the conversation's third message
    assert found(studio, "quokka") == [refs["summary"]]  # in the summary's text
    assert found(studio, "notes.docx") == [refs["summary"]]  # a source file's name
    assert found(studio, "lighthouse") == [refs["image"]]  # the image's prompt
    assert found(studio, "blur") == [refs["image"]]  # and its parameters
    assert found(studio, "marimba") == [refs["transcript"]]  # the transcript's words
    assert found(studio, "newsletter") == [refs["audio"]]  # what was spoken
    assert found(studio, "balcony gardens") == [refs["draft"]]  # the draft's brief
    assert found(studio, "weekly") == [refs["draft"]]  # the draft's second line
    assert found(studio, "MARIMBA sundays") == [refs["transcript"]]  # every word, any case
    assert found(studio, "marimba zanzibar") == []  # every word must be in one item
    assert found(studio, "compo") == [refs["draft"]]  # a word's start finds it (as a person types)
    assert found(studio, "quokka", kind="image") == []

    hit = studio.library.items(ALICE, query="zanzibar").items[0]
    assert "«Zanzibar»" in hit.snippet and "\n" not in hit.snippet

    # a reply streamed into the conversation afterwards is found too (an update, not a new row)
    mid = studio.chats.add_message(ALICE, refs["chat"].id, "assistant", "", status="streaming")
    studio.chats.update_message(ALICE, refs["chat"].id, mid, content="Pack a snorkel.", status="complete")
    assert found(studio, "snorkel") == [refs["chat"]]

    # the best match first: the title outweighs a mention in the text
    titled = draft(studio, ALICE, "Marimba lessons", "Notes on practice.")
    assert found(studio, "marimba")[0] == titled


@pytest.mark.parametrize(
    "query",
    ['"', '"marimba', "AND OR NOT", "*", "NEAR(", "NEAR(marimba zanzibar, 2)", "marimba*", "title:marimba", "^m",
     "-", "a" * 10_000, "marimba " * 2_000, "\x00", "mari\x00mba", "(", ")", "{title}: x", "'", "\\", "%_", "🚋",
     "é", "   "],
)  # fmt: skip
def test_hostile_queries_give_results_or_none_never_an_error(studio: Studio, query: str) -> None:
    every_kind(studio)
    page = studio.library.items(ALICE, query=query)
    assert page.total == len(page.items) or page.total > len(page.items)
    assert all(i.ref.kind in KINDS for i in page.items)


def test_random_queries_never_raise(studio: Studio) -> None:
    every_kind(studio)
    rng = np.random.default_rng(14)
    pool = list("\"'*^:-+(){}[],.;NEARORANDNOT \x00\t\n\\%_éß漢字🚋") + ["marimba", "zanzibar", "NEAR/3"]
    for _ in range(300):
        query = "".join(rng.choice(pool, size=int(rng.integers(1, 40))))
        page = studio.library.items(ALICE, query=query, limit=5)
        assert len(page.items) <= 5 and page.total >= len(page.items)


def test_operators_are_plain_words(studio: Studio) -> None:
    every_kind(studio)
    note = draft(studio, ALICE, "Logic notes", "Cats AND dogs, NOT birds.")
    assert found(studio, "AND NOT") == [note]  # the words themselves, not FTS5 operators
    assert found(studio, 'marimba" OR "zanzibar') == []  # no way out of the quotes: all words must match


# -- rename --------------------------------------------------------------------------------------------------
def test_rename_changes_the_items_own_title_in_its_store(studio: Studio) -> None:
    refs = every_kind(studio)
    lib = studio.library
    for kind, ref in refs.items():
        item = lib.rename(ALICE, ref, f"  Renamed\n{kind}  ")
        assert item.title == f"Renamed {kind}"
    assert studio.chats.get_conversation(ALICE, refs["chat"].id).title == "Renamed chat"
    assert studio.drafts.get(ALICE, refs["draft"].id).title == "Renamed draft"
    assert studio.summaries.get(ALICE, refs["summary"].id).title == "Renamed summary"
    assert studio.images.get(ALICE, refs["image"].id).title == "Renamed image"
    assert studio.speech.get(ALICE, refs["audio"].id).title == "Renamed audio"
    assert studio.speech.get(ALICE, refs["transcript"].id).title == "Renamed transcript"
    assert found(studio, "renamed") and len(found(studio, "renamed")) == 6
    # a rename is not a change the list reorders by
    assert [i.ref for i in lib.items(ALICE).items] == [refs[k] for k in reversed(KINDS)]
    # the draft's size counts its new title
    assert studio.drafts.bytes_used(ALICE) == lib.get(ALICE, refs["draft"]).size

    for bad in ("", "   ", "\x00", "x" * 201, None, 42):
        with pytest.raises(InputError):
            lib.rename(ALICE, refs["draft"], bad)  # type: ignore[arg-type]
    assert studio.drafts.get(ALICE, refs["draft"].id).title == "Renamed draft"


# -- delete --------------------------------------------------------------------------------------------------
def test_delete_goes_through_each_store_and_removes_files(studio: Studio) -> None:
    refs = every_kind(studio)
    png = studio.images.get(ALICE, refs["image"].id).path
    wav = studio.speech.get(ALICE, refs["audio"].id).path
    assert png.is_file() and wav is not None and wav.is_file()

    assert studio.library.delete(ALICE, [refs["image"], refs["audio"], refs["image"]]) == 2  # a repeat counts once
    assert not png.exists() and not wav.exists()
    with pytest.raises(ImageNotFoundError):
        studio.images.get(ALICE, refs["image"].id)
    with pytest.raises(NotFoundError):
        studio.library.get(ALICE, refs["audio"])
    assert studio.library.items(ALICE).total == 4 and found(studio, "lighthouse") == []

    assert studio.library.delete(ALICE, [refs["chat"], refs["draft"], refs["summary"], refs["transcript"]]) == 4
    assert studio.chats.list_conversations(ALICE) == [] and studio.drafts.list(ALICE) == []
    with pytest.raises(SummaryNotFound):
        studio.summaries.get(ALICE, refs["summary"].id)
    assert studio.library.items(ALICE).total == 0
    assert index_rows(studio, ALICE) == (0, 0, 0)  # nothing of them is left in the index


def test_a_batch_with_an_item_not_the_users_deletes_nothing(studio: Studio) -> None:
    mine = every_kind(studio)
    theirs = draft(studio, BOB, "Bob's", "Bob's text")
    with pytest.raises(NotFoundError):
        studio.library.delete(ALICE, [mine["draft"], theirs])
    assert studio.library.items(ALICE).total == 6 and studio.drafts.get(BOB, theirs.id).title == "Bob's"
    with pytest.raises(InputError):
        studio.library.delete(ALICE, [mine["draft"], ItemRef("folder", mine["draft"].id)])
    assert studio.library.items(ALICE).total == 6


# -- per user ------------------------------------------------------------------------------------------------
def test_another_users_ids_are_not_found_for_any_call(studio: Studio) -> None:
    refs = every_kind(studio)
    bob_draft = draft(studio, BOB, "Bob's own", "zanzibar plans")
    lib = studio.library
    assert [i.ref for i in lib.items(BOB).items] == [bob_draft]
    assert found(studio, "marimba", user=BOB) == [] and found(studio, "zanzibar", user=BOB) == [bob_draft]
    assert found(studio, "zanzibar") == [refs["chat"]]
    for ref in refs.values():
        with pytest.raises(NotFoundError):
            lib.get(BOB, ref)
        with pytest.raises(NotFoundError):
            lib.rename(BOB, ref, "Mine now")
        with pytest.raises(NotFoundError):
            lib.delete(BOB, [ref])
        with pytest.raises(NotFoundError):
            lib.links(BOB, ref)
        with pytest.raises(NotFoundError):
            lib.link(BOB, bob_draft, ref, "stolen")
        with pytest.raises(NotFoundError):
            lib.link(BOB, ref, bob_draft, "stolen")
    assert lib.items(ALICE).total == 6
    assert {i.title for i in lib.items(ALICE).items} == {lib.get(ALICE, r).title for r in refs.values()}
    assert lib.links(BOB, bob_draft).made_from_it == []
    assert studio.images.get(ALICE, refs["image"].id).path.is_file()


@pytest.mark.parametrize(
    "ref",
    [ItemRef("chat", "../../etc/passwd"), ItemRef("image", ""), ItemRef("draft", "x" * 65), ItemRef("audio", "a b"),
     ItemRef("summary", "1 OR 1=1"), ItemRef("transcript", 7)],  # type: ignore[arg-type]
)  # fmt: skip
def test_malformed_ids_are_not_found(studio: Studio, ref: ItemRef) -> None:
    every_kind(studio)
    with pytest.raises(NotFoundError):
        studio.library.get(ALICE, ref)


@pytest.mark.parametrize("ref", [ItemRef("folder", "abc"), ItemRef("", "abc"), ("chat", "abc"), None])
def test_a_kind_that_is_not_one_of_kinds_is_an_input_error(studio: Studio, ref: Any) -> None:
    with pytest.raises(InputError):
        studio.library.get(ALICE, ref)
    with pytest.raises(InputError):
        studio.library.rename(ALICE, ref, "x")


def test_a_kind_mismatch_is_not_found(studio: Studio) -> None:
    refs = every_kind(studio)
    with pytest.raises(NotFoundError):  # the audio's id named as a transcript, the draft's as a chat
        studio.library.get(ALICE, ItemRef("transcript", refs["audio"].id))
    with pytest.raises(NotFoundError):
        studio.library.delete(ALICE, [ItemRef("chat", refs["draft"].id)])
    assert studio.drafts.get(ALICE, refs["draft"].id)


# -- links ---------------------------------------------------------------------------------------------------
def test_links_both_ways_with_what_items_carry_and_deleted_ends(studio: Studio) -> None:
    refs = every_kind(studio)
    lib = studio.library
    lib.link(ALICE, refs["draft"], refs["image"], "header image")
    lib.link(ALICE, refs["draft"], refs["image"], "header image")  # recorded once
    lib.link(ALICE, refs["summary"], refs["audio"], "spoken")
    lib.link(ALICE, refs["chat"], refs["draft"], "draft from a chat reply")

    draft_links = lib.links(ALICE, refs["draft"])
    assert [(link.ref, link.relation) for link in draft_links.made_from_it] == [(refs["image"], "header image")]
    assert draft_links.made_from_it[0].label.startswith("a lighthouse")
    assert [(link.ref, link.label, link.relation) for link in draft_links.came_from] == [
        (None, "Brief: balcony gardens", "brief"),
        (refs["chat"], "Trip planning", "draft from a chat reply"),
    ]
    summary_links = lib.links(ALICE, refs["summary"])
    assert [(link.ref, link.label) for link in summary_links.came_from] == [(None, "report.pdf"), (None, "notes.docx")]
    assert [link.ref for link in summary_links.made_from_it] == [refs["audio"]]
    assert [link.ref for link in lib.links(ALICE, refs["image"]).came_from] == [refs["draft"]]

    # a renamed end shows its new name; a deleted one its last name, marked, and no longer openable
    lib.rename(ALICE, refs["chat"], "Holiday chat")
    assert lib.links(ALICE, refs["draft"]).came_from[1].label == "Holiday chat"
    lib.delete(ALICE, [refs["chat"]])
    assert lib.links(ALICE, refs["draft"]).came_from[1] == studio_link(None, "Holiday chat (deleted)")
    studio.images.delete(ALICE, refs["image"].id)  # deleted in its own tab, not through the library
    assert lib.links(ALICE, refs["draft"]).made_from_it == [
        studio_link(None, "a lighthouse at dusk, header image (deleted)", "header image")
    ]

    # a link whose both ends are gone is dropped: the table does not grow with deleted items
    lib.delete(ALICE, [refs["draft"]])
    assert links_rows(studio, ALICE) == [("summary", "audio")]

    for bad in ("", " ", "x" * 81, None):
        with pytest.raises(InputError):
            lib.link(ALICE, refs["summary"], refs["transcript"], bad)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        lib.link(ALICE, refs["summary"], refs["summary"], "itself")
    with pytest.raises(NotFoundError):
        lib.link(ALICE, refs["summary"], refs["draft"], "deleted")


def studio_link(ref: ItemRef | None, label: str, relation: str = "draft from a chat reply") -> Any:
    from core.library.items import Link

    return Link(ref, label, relation)


def links_rows(s: Studio, user: str) -> list[tuple[str, str]]:
    with sqlite3.connect(s.folder / "studio.sqlite3") as db:
        return db.execute(
            "SELECT source_kind, made_kind FROM library_links WHERE user_id = ? ORDER BY id", (user,)
        ).fetchall()


# -- retention and changes from outside the library -------------------------------------------------------------
def index_rows(s: Studio, user: str) -> tuple[int, int, int]:
    with sqlite3.connect(s.folder / "studio.sqlite3") as db:
        items = db.execute("SELECT COUNT(*) FROM library_items WHERE user_id = ?", (user,)).fetchone()[0]
        fts = db.execute("SELECT COUNT(*) FROM library_fts").fetchone()[0]
        dirty = db.execute("SELECT COUNT(*) FROM library_dirty WHERE user_id = ?", (user,)).fetchone()[0]
    return items, fts, dirty


def test_retention_removes_items_from_listing_search_and_the_index(studio: Studio) -> None:
    old = time.time() - 40 * 86400
    gone = {
        "summary": summary(studio, ALICE, "Old report", "Quarterly quokka numbers.", created=old),
        "image": image(studio, ALICE, "an old lighthouse", created=old),
        "audio": audio(studio, ALICE, "old newsletter audio", created=old),
        "transcript": transcript(studio, ALICE, "old.mp3", "old marimba", created=old),
    }
    png = studio.images.get(ALICE, gone["image"].id).path
    kept = every_kind(studio)
    studio.library.link(ALICE, gone["summary"], gone["audio"], "spoken")
    assert len(found(studio, "quokka")) == 2 and studio.library.items(ALICE).total == 10
    assert index_rows(studio, ALICE)[:2] == (10, 10)

    deleted = Retention(studio.stores(), days=30, anon_hours=0).sweep()
    assert deleted == 4 and not png.exists()
    assert found(studio, "quokka") == [kept["summary"]] and found(studio, "marimba") == [kept["transcript"]]
    assert {i.ref for i in studio.library.items(ALICE).items} == set(kept.values())
    assert index_rows(studio, ALICE) == (6, 6, 0)
    assert links_rows(studio, ALICE) == []


def test_changes_made_by_another_process_are_seen(studio: Studio) -> None:
    """The index follows the database, not this process's calls: a second set of stores on the same file (another
    worker, a script) adds, changes and deletes, and the first library shows it."""
    refs = every_kind(studio)
    studio.library.items(ALICE)
    other = make_studio(studio.folder)
    added = draft(other, ALICE, "From elsewhere", "platypus facts")
    other.drafts.save_text(ALICE, refs["draft"].id, "Rewritten: wombat care.")
    other.chats.delete_conversation(ALICE, refs["chat"].id)
    assert found(studio, "platypus") == [added] and found(studio, "wombat") == [refs["draft"]]
    assert found(studio, "zanzibar") == [] and studio.library.items(ALICE).total == 6


def test_a_database_made_before_the_library_is_indexed_at_start(tmp_path: Path) -> None:
    db = tmp_path / "studio.sqlite3"
    chats = ConversationStore(db)
    conv = chats.create_conversation(ALICE, "Before the library")
    chats.add_message(ALICE, conv.id, "user", "an axolotl question")
    library = make_studio(tmp_path).library
    assert found_in(library, "axolotl") == [ItemRef("chat", conv.id)]


def found_in(library: LibraryService, query: str) -> list[ItemRef]:
    return [i.ref for i in library.items(ALICE, query=query).items]


def test_a_summarys_passages_go_with_it_when_the_library_deletes_it(studio: Studio) -> None:
    passages = PassageStore(studio.folder / "studio.sqlite3")
    ref = summary(studio, ALICE, "With passages", "A summary.")
    with sqlite3.connect(studio.folder / "studio.sqlite3") as db:
        db.execute(
            "INSERT INTO summary_passages (summary_id, user_id, documents, passages, created_at, size)"
            " VALUES (?, ?, '[]', '[]', ?, 2)",
            (ref.id, ALICE, time.time()),
        )  # what PassageStore.save keeps, without reading documents here
    assert passages.bytes_used(ALICE) == 2
    studio.library.delete(ALICE, [ref])
    assert passages.bytes_used(ALICE) == 0
