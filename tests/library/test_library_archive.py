"""The library archive (core/library/archive.py): every kind exported and imported into a fresh install with every
field equal but the ids, the links among them kept, an archive imported twice recognised, and a failure part-way
taking back what was added. Real stores on real SQLite, a real PNG and real audio files."""

from __future__ import annotations

import json
import zipfile
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
from core.condenser.passages import DocumentInfo, Passage, PassagesNotKept, PassageStore
from core.condenser.store import SummaryStore
from core.db import DISK_FULL_MESSAGE
from core.errors import BusyError, NotFoundError, StorageFullError
from core.images.store import ImageGallery
from core.library.archive import LibraryArchive
from core.library.items import ItemRef
from core.library.service import LibraryService
from core.quota import StorageQuota
from core.speech.store import SpeechStore
from core.writer.store import DraftStore

USER = "alice"


@dataclass
class Install:
    """One install: its stores on one data folder and database, the library over them, the archive."""

    settings: Settings
    chats: ConversationStore
    drafts: DraftStore
    summaries: SummaryStore
    images: ImageGallery
    speech: SpeechStore
    library: LibraryService
    archive: LibraryArchive
    quota: StorageQuota
    passages: PassageStore

    def stores(self) -> dict[str, Any]:
        return {
            "chats": self.chats,
            "drafts": self.drafts,
            "summaries": self.summaries,
            "images": self.images,
            "speech": self.speech,
        }


def make_install(folder: Path, *, summaries: SummaryStore | None = None, **overrides: Any) -> Install:
    settings = Settings(data_dir=folder, **overrides)
    db = settings.db_path
    stores = {
        "chats": ConversationStore(db),
        "drafts": DraftStore(db),
        "summaries": summaries or SummaryStore(db),
        "images": ImageGallery(folder, db),
        "speech": SpeechStore(folder, db),
    }
    passages = PassageStore(db)
    quota = StorageQuota(settings.user_quota_mb * 2**20)
    quota.attach(*stores.values(), passages)
    library = LibraryService(settings, db, **stores)
    archive = LibraryArchive(settings, library, **stores, passages=passages)
    return Install(settings, *stores.values(), library, archive, quota, passages)  # type: ignore[arg-type]


def kept_nothing(install: Install, user: str = USER) -> None:
    """No item of `user` in any store, and no file in the data folder's images and speech folders."""
    assert install.chats.list_conversations(user) == []
    assert install.drafts.list(user) == []
    assert install.summaries.list(user) == []
    assert install.images.list(user) == []
    assert install.speech.list(user) == []
    for folder in ("images", "speech"):
        assert [p for p in (install.settings.data_dir / folder).rglob("*") if p.is_file()] == []


def _wav(store: SpeechStore, user: str, text: str, fmt: str = "wav") -> Any:
    item_id, partial = store.partial_path(user, fmt)
    with AudioWriter(partial, fmt, 16000) as writer:
        writer.write(np.sin(np.arange(8000) / 8).astype(np.float32) * 0.3)
    return store.add_speech(
        user, item_id, partial, text=text, source="writer", model="espeak", voice="en-us", language="en", fmt=fmt,
        duration=0.5, stopped=True,
    )  # fmt: skip


def fill(install: Install, user: str = USER) -> dict[str, ItemRef]:
    """One item of every kind (two of audio), made through each store's own API, with the awkward parts: a chat
    with a regenerated reply and an edited branch, a draft with a picked variant, nested summary details."""
    chats = install.chats
    conv = chats.create_conversation(user, "Trip to Lisbon", model="embedded", system_prompt="Be brief.")
    q = chats.add_message(user, conv.id, "user", "Where should I eat in Lisbon?")
    first = chats.add_message(user, conv.id, "assistant", "Try Alfama.", model="embedded")
    chats.update_message(user, conv.id, first, content="Try Alfama.", status="complete", stats={"tokens": 4})
    chats.add_message(user, conv.id, "assistant", "Try Belém: pastéis de nata.", parent_id=q)
    chats.show_sibling(user, conv.id, first + 1, -1)  # the first version shown again
    chats.add_message(user, conv.id, "user", "And for dessert?", parent_id=first)
    chats.add_message(user, conv.id, "user", "And for wine?", parent_id=first)  # an edit: a second branch
    cut = chats.add_message(user, conv.id, "assistant", "Vinho verde", model="embedded")
    chats.update_message(user, conv.id, cut, content="Vinho verde", status="cut", note="stopped")

    drafts = install.drafts
    draft = drafts.create(
        user, "Lisbon post", "blog_post", {"topic": "Lisbon", "keywords": ["nata", "tram"], "words": 600},
        {"model": "embedded", "variants": 2, "temperature": 0.7, "seed": 7}, outline="1. Arrive\n2. Eat",
    )  # fmt: skip
    drafts.save_generation(user, draft.id, variants=["Variant one.", "Variant two."], status="complete")
    drafts.pick(user, draft.id, 1)
    drafts.save_text(user, draft.id, "Variant two, edited by hand. 🚋")

    summary = install.summaries.save(
        user, "Report summary", "# Summary\n\nPoint one [p. 2].", model="embedded",
        settings={"length": "short", "form": "bullets", "focus": ""},
        sources=[{"name": "report.pdf", "kind": "pdf", "page_count": 3, "unread_pages": [], "warnings": []}],
        coverage="3 of 3 pages",
        details={"summaries": [[{"text": "Point one", "sources": [{"doc": 0, "locator": "p. 2"}]}]], "combined": None,
                 "timings": {"map": 1.5}},
    )  # fmt: skip

    install.passages.keep(
        user, summary.id, [DocumentInfo("report.pdf", "pdf")],
        [Passage(0, "Point one, in full.", 2, None), Passage(0, "A table row", None, "Annex B")],
        created_at=summary.created_at,
    )  # fmt: skip
    bare = install.summaries.save(user, "Summary kept without its documents", "# Short")

    pixels = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    image = install.images.save(
        user,
        GeneratedImage(
            Image.fromarray(pixels, "RGB"), 42,
            {"prompt": "a tram, header", "negative_prompt": "blur", "steps": 2, "guidance": 0.0,
             "model": "gan:faces", "scheduler": "euler"},
        ),
    )  # fmt: skip
    spoken = _wav(install.speech, user, "Lisbon post, read aloud.")
    spoken_ogg = _wav(install.speech, user, "Another one, as Ogg.", fmt="ogg")
    spoken_mp3 = _wav(install.speech, user, "And one as MP3.", fmt="mp3")
    heard = install.speech.add_transcript(
        user, title="interview.mp3", segments=(Segment(0.0, 1.5, " Hello."), Segment(1.5, 3.25, "Obrigado.")),
        source="speech", model="whisper", language="pt", duration=3.25, stopped=False,
    )  # fmt: skip
    refs = {
        "chat": ItemRef("chat", conv.id),
        "draft": ItemRef("draft", draft.id),
        "summary": ItemRef("summary", summary.id),
        "image": ItemRef("image", image.id),
        "audio": ItemRef("audio", spoken.id),
        "audio_ogg": ItemRef("audio", spoken_ogg.id),
        "transcript": ItemRef("transcript", heard.id),
        "bare_summary": ItemRef("summary", bare.id),
        "audio_mp3": ItemRef("audio", spoken_mp3.id),
    }
    install.library.rename(user, refs["image"], "Header for the Lisbon post")
    install.library.link(user, refs["draft"], refs["image"], "image for")
    install.library.link(user, refs["draft"], refs["audio"], "speech of")
    return refs


def snapshot(install: Install, refs: dict[str, ItemRef], user: str = USER) -> dict[str, Any]:
    """Every field of every item, without its ids (links by their titles)."""
    out: dict[str, Any] = {}
    for name, ref in refs.items():
        title = install.library.get(user, ref).title
        if ref.kind == "chat":
            conv, tree = install.chats.message_tree(user, ref.id)
            position = {m.id: i for i, (m, _) in enumerate(tree)}
            messages = [
                (m.role, m.content, m.status, m.note, m.model, m.stats, m.created_at,
                 None if m.parent_id is None else position[m.parent_id], active, m.version, m.versions)
                for m, active in tree
            ]  # fmt: skip
            shown = [m.content for m in conv.messages]
            value: Any = (conv.title, conv.model, conv.system_prompt, conv.created_at, conv.updated_at, messages, shown)
        elif ref.kind == "draft":
            d = install.drafts.get(user, ref.id)
            value = (d.title, d.template, d.brief, d.options, d.outline, d.variants, d.chosen, d.text, d.status,
                     d.note, d.created_at, d.updated_at)  # fmt: skip
        elif ref.kind == "summary":
            s = install.summaries.get(user, ref.id)
            try:
                kept: Any = install.passages.load(user, ref.id)
            except PassagesNotKept:
                kept = None
            value = (s.title, s.markdown, s.model, s.settings, s.sources, s.coverage, s.details, s.created_at, kept)
        elif ref.kind == "image":
            g = install.images.get(user, ref.id)
            with Image.open(g.path) as png:
                pixels = np.asarray(png.convert("RGB")).tobytes()
            value = (g.parameters, g.seed, g.width, g.height, g.model, g.created_at, pixels, g.infotext)
        else:
            s = install.speech.get(user, ref.id)
            audio = s.path.read_bytes() if s.path is not None else b""
            value = (s.kind, s.title, s.created, s.source, s.model, s.voice, s.language, s.fmt, s.text, s.segments,
                     s.duration, s.stopped, audio, s.bytes)  # fmt: skip
        links = install.library.links(user, ref)
        made = sorted(
            (install.library.get(user, link.ref).title, link.relation) for link in links.made_from_it if link.ref
        )
        out[name] = (ref.kind, title, value, made)
    return out


def test_every_kind_comes_back_whole_in_a_fresh_install(tmp_path: Path) -> None:
    home = make_install(tmp_path / "home")
    refs = fill(home)
    install_b = make_install(tmp_path / "away")
    _wav(home.speech, "bob", "Bob's, never exported.")

    everything = home.archive.export(USER, None)
    with zipfile.ZipFile(everything) as zf:
        assert len(json.loads(zf.read("manifest.json"))["items"]) == len(refs)  # not Bob's

    archive = home.archive.export(USER, list(refs.values()))
    assert archive.suffix == ".zip" and tmp_path not in archive.parents
    with zipfile.ZipFile(archive) as zf:
        names = sorted(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
    assert names[-1] == "manifest.json" and len(names) == 1 + 4  # the PNG and three recordings
    assert manifest["format"] == "genai-studio-library" and manifest["version"] == 1
    assert [i["kind"] for i in manifest["items"]] == [r.kind for r in refs.values()]
    assert len(manifest["links"]) == 2

    steps: list[float] = []
    report = install_b.archive.import_archive(USER, archive, progress=lambda f, _: steps.append(f))
    assert report.added == len(refs) and report.skipped == []
    assert steps[0] == 0.0 and steps[-1] == 1.0 and steps == sorted(steps)
    new_refs = dict(zip(refs, report.refs, strict=True))
    assert {r.id for r in new_refs.values()}.isdisjoint(r.id for r in refs.values())  # new ids
    assert snapshot(install_b, new_refs) == snapshot(home, refs)
    # what the library shows is the same too: titles, dates, kinds, newest first
    shown_home = [(i.ref.kind, i.title, i.created_at) for i in home.library.items(USER).items]
    shown_b = [(i.ref.kind, i.title, i.created_at) for i in install_b.library.items(USER).items]
    assert shown_b == shown_home
    # the imported items obey the new install's quota accounting like any other
    assert install_b.quota.used(USER) > 0


def test_a_selection_exports_only_those_items_and_the_links_among_them(tmp_path: Path) -> None:
    home = make_install(tmp_path / "home")
    refs = fill(home)
    archive = home.archive.export(USER, [refs["draft"], refs["image"], refs["chat"]])
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert sorted(zf.namelist()) == ["files/i1.png", "manifest.json"]
    assert [i["kind"] for i in manifest["items"]] == ["draft", "image", "chat"]
    assert manifest["links"] == [{"from": "i0", "to": "i1", "relation": "image for"}]  # not the audio's

    other = make_install(tmp_path / "other")
    report = other.archive.import_archive("carol", archive)
    assert report.added == 3
    draft = next(r for r in report.refs if r.kind == "draft")
    made = other.library.links("carol", draft).made_from_it
    assert [(link.ref, link.relation) for link in made] == [(report.refs[1], "image for")]


def test_another_users_items_cannot_be_exported(tmp_path: Path) -> None:
    home = make_install(tmp_path / "home")
    refs = fill(home)
    with pytest.raises(NotFoundError):
        home.archive.export("mallory", [refs["draft"]])
    with pytest.raises(NotFoundError):
        home.archive.export(USER, [ItemRef("audio", refs["transcript"].id)])  # the id is a transcript's
    empty = home.archive.export("mallory", None)
    with zipfile.ZipFile(empty) as zf:
        assert json.loads(zf.read("manifest.json"))["items"] == []
    assert empty.parent.parent != home.archive.export(USER, None).parent.parent  # each user's own folder


def test_importing_the_same_archive_twice_adds_nothing_the_second_time(tmp_path: Path) -> None:
    home = make_install(tmp_path / "home")
    refs = fill(home)
    archive = home.archive.export(USER, None)
    away = make_install(tmp_path / "away")
    assert away.archive.import_archive(USER, archive).added == len(refs)
    again = away.archive.import_archive(USER, archive)
    assert again.added == 0 and len(again.skipped) == len(refs)
    assert "“Trip to Lisbon” (conversation): already in your library." in again.skipped
    assert len(away.chats.list_conversations(USER)) == 1 and len(away.images.list(USER)) == 1
    # into the install it came from: everything is already there
    assert home.archive.import_archive(USER, archive).added == 0


def test_items_older_than_the_server_keeps_are_skipped_and_listed(tmp_path: Path) -> None:
    home = make_install(tmp_path / "home")
    conv = home.chats.create_conversation(USER, "Old chat")
    home.chats.add_message(USER, conv.id, "user", "hello")
    archive = home.archive.export(USER, None)
    manifest_path = tmp_path / "m"
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    manifest["items"][0]["created_at"] = manifest["items"][0]["updated_at"] = 1_000_000_000.0  # 2001
    with zipfile.ZipFile(manifest_path.with_suffix(".zip"), "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
    strict = make_install(tmp_path / "strict", retention_days=30)
    report = strict.archive.import_archive(USER, manifest_path.with_suffix(".zip"))
    assert report.added == 0 and report.skipped == [
        "“Old chat” (conversation): older than the 30 days this server keeps items."
    ]
    kept_nothing(strict)


def test_a_failure_part_way_takes_back_everything_added(tmp_path: Path) -> None:
    home = make_install(tmp_path / "home")
    fill(home)
    archive = home.archive.export(USER, None)

    class FullDiskSummaries(SummaryStore):
        """A real summary store whose disk is full (StorageFullError, as core/db.py raises it)."""

        def save(self, *args: Any, **kwargs: Any) -> Any:
            raise StorageFullError(DISK_FULL_MESSAGE)

    folder = tmp_path / "full"
    full = make_install(folder, summaries=FullDiskSummaries(Settings(data_dir=folder).db_path))
    with pytest.raises(StorageFullError, match="disk is full"):
        full.archive.import_archive(USER, archive)
    kept_nothing(full)  # the conversation and draft before the summary were deleted again


def test_one_import_at_a_time_per_user(tmp_path: Path) -> None:
    home = make_install(tmp_path / "home")
    fill(home)
    archive = home.archive.export(USER, None)
    away = make_install(tmp_path / "away")
    during: list[Any] = []

    def meanwhile(fraction: float, message: str) -> None:
        if not during:  # the same user again while the first import runs; another user is not held up
            with pytest.raises(BusyError, match="An import of yours is still running"):
                away.archive.import_archive(USER, archive)
            during.append(away.archive.import_archive("bob", archive))

    assert away.archive.import_archive(USER, archive, progress=meanwhile).added == 9
    assert during[0].added == 9 and len(away.chats.list_conversations("bob")) == 1
    assert away.archive.import_archive(USER, archive).added == 0  # and the user may import again after
