"""Per-user disk quota over everything a user keeps (gallery PNGs, summaries, drafts) and retention: a save past
the quota is refused with a clear message and writes nothing; an image job that reaches it stops cleanly;
old items (and anonymous API callers' after a day) are deleted at startup and hourly. Real stores on one
SQLite file, real PNGs, the real GAN behind a real app process for the HTTP test."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from PIL import Image

from core.condenser.store import SummaryStore
from core.errors import InputError, QuotaExceededError
from core.images.png import encode_png
from core.images.store import ImageGallery
from core.quota import ANONYMOUS_API_USER, Retention, StorageQuota
from core.writer.store import DraftStore
from tests.support.app_process import app_process
from tests.support.pictures import noise_image
from tests.support.rest_client import call_by_name


def png_size(seed: int, side: int = 256) -> int:
    image = noise_image(seed, side)
    return len(encode_png(image.image, {**image.parameters, "width": side, "height": side}))


@pytest.fixture()
def stores(tmp_path):
    gallery = ImageGallery(tmp_path)
    summaries, drafts = SummaryStore(gallery.db_path), DraftStore(gallery.db_path)
    return gallery, summaries, drafts


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and p.suffix in (".png", ".part"))


def test_everything_a_user_keeps_counts_and_a_save_past_the_quota_writes_nothing(stores, tmp_path):
    gallery, summaries, drafts = stores
    one_png = png_size(1)
    quota = StorageQuota(2.5 * one_png)
    quota.attach(gallery, summaries, drafts)
    gallery.save("ann", noise_image(1))
    summaries.save("ann", "Report", "x" * (one_png // 2))
    used = quota.used("ann")
    assert used >= one_png * 1.5 and used == gallery.bytes_used("ann") + summaries.bytes_used("ann")
    before = files_in(tmp_path)
    with pytest.raises(QuotaExceededError) as info:
        gallery.save("ann", noise_image(2))
    message = str(info.value)
    assert isinstance(info.value, InputError)
    assert message.startswith("Your library is full:") and " MB used" in message and "Delete some" in message
    assert files_in(tmp_path) == before and len(gallery.list("ann")) == 1  # no file, no row
    with pytest.raises(QuotaExceededError):
        summaries.save("ann", "Another", "y" * one_png)
    with pytest.raises(QuotaExceededError):
        drafts.create("ann", "A draft", "blog_post", {"topic": "z" * one_png}, {})
    assert len(summaries.list("ann")) == 1 and drafts.list("ann") == []
    # another user has their own quota; deleting makes room again
    gallery.save("bob", noise_image(3))
    gallery.delete("ann", gallery.list("ann")[0].id)
    gallery.save("ann", noise_image(2))
    assert quota.used("ann") == used and [g.seed for g in gallery.list("ann")] == [2]


def test_a_streaming_draft_that_reaches_the_quota_is_kept_as_written_and_marked_cut(stores):
    gallery, summaries, drafts = stores
    quota = StorageQuota(20_000)
    quota.attach(gallery, summaries, drafts)
    draft = drafts.create("cy", "Post", "blog_post", {"topic": "t"}, {}, status="streaming")
    drafts.save_generation("cy", draft.id, variants=["a" * 5_000])
    with pytest.raises(QuotaExceededError):
        drafts.save_generation("cy", draft.id, variants=["a" * 50_000])
    kept = drafts.get("cy", draft.id)
    assert kept.text == "a" * 5_000 and kept.status == "cut" and "library is full" in kept.note
    assert quota.used("cy") <= 20_000
    with pytest.raises(QuotaExceededError):
        drafts.save_text("cy", draft.id, "b" * 30_000)
    drafts.save_text("cy", draft.id, "shorter")  # shrinking is always allowed
    assert drafts.get("cy", draft.id).text == "shorter"


def test_sizes_of_rows_from_an_older_version_are_counted(tmp_path):
    db = tmp_path / "studio.sqlite3"
    with sqlite3.connect(db) as conn:  # the schemas before sizes were kept
        conn.executescript("""
            CREATE TABLE summaries (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, title TEXT NOT NULL,
                model TEXT NOT NULL DEFAULT '', settings TEXT NOT NULL DEFAULT '{}',
                sources TEXT NOT NULL DEFAULT '[]', coverage TEXT NOT NULL DEFAULT '', markdown TEXT NOT NULL,
                details TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL);
            CREATE TABLE images (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, file TEXT NOT NULL,
                parameters TEXT NOT NULL, seed INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
                model TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL);
        """)
        conn.execute(
            "INSERT INTO summaries (id, user_id, title, markdown, created_at) VALUES ('s', 'old', 't', ?, 1)",
            ("é" * 1000,),
        )
        (tmp_path / "images" / "u").mkdir(parents=True)
        (tmp_path / "images" / "u" / "i.png").write_bytes(b"\x89PNG" + b"0" * 4996)
        conn.execute("INSERT INTO images VALUES ('i', 'old', 'images/u/i.png', '{}', 1, 64, 64, 'm', 1)")
    # markdown (1000 two-byte characters), title, settings, sources, details
    assert SummaryStore(db).bytes_used("old") == 2000 + len("t") + len("{}") + len("[]") + len("{}")
    assert ImageGallery(tmp_path).bytes_used("old") == 5000
    assert ImageGallery(tmp_path).bytes_used("old") == 5000  # opening it again changes nothing


def age(db_path, table: str, column: str, user: str, seconds: float) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"UPDATE {table} SET {column} = {column} - ? WHERE user_id = ?", (seconds, user))


def test_retention_deletes_old_items_and_anonymous_ones_after_a_day(stores, tmp_path):
    gallery, summaries, drafts = stores
    for user in ("keen", ANONYMOUS_API_USER):
        gallery.save(user, noise_image(5, 64))
        summaries.save(user, "S", "text")
        drafts.create(user, "D", "blog_post", {"topic": "t"}, {})
    for table, column in (("images", "created_at"), ("summaries", "created_at"), ("writer_drafts", "updated_at")):
        age(gallery.db_path, table, column, ANONYMOUS_API_USER, 25 * 3600)
        age(gallery.db_path, table, column, "keen", 25 * 3600)
    anon_file = gallery.list(ANONYMOUS_API_USER)[0].path
    # days = 0: everyone's items are kept; the anonymous caller's go after 24 hours
    Retention([gallery, summaries, drafts], days=0, anon_hours=24).sweep()
    assert not anon_file.exists() and gallery.list(ANONYMOUS_API_USER) == []
    assert summaries.list(ANONYMOUS_API_USER) == [] and drafts.list(ANONYMOUS_API_USER) == []
    assert len(gallery.list("keen")) == len(summaries.list("keen")) == len(drafts.list("keen")) == 1
    # days = 2: items older than two days go, for everyone
    Retention([gallery, summaries, drafts], days=2, anon_hours=24).sweep(now=time.time() + 12 * 3600)
    assert len(gallery.list("keen")) == 1  # 25 h + 12 h < 2 days
    kept_file = gallery.list("keen")[0].path
    Retention([gallery, summaries, drafts], days=2, anon_hours=24).sweep(now=time.time() + 86400)
    assert gallery.list("keen") == summaries.list("keen") == drafts.list("keen") == [] and not kept_file.exists()
    assert gallery.bytes_used("keen") == 0


def test_files_a_crash_left_behind_are_swept(stores, tmp_path):
    gallery, _, _ = stores
    record = gallery.save("fay", noise_image(6, 64))
    folder = record.path.parent
    leftovers = [folder / ".dead.png.part", folder / "norow.png"]
    for path in leftovers:
        path.write_bytes(b"half")
    assert gallery.clean_orphans(min_age_s=3600) == 0  # recent: maybe a save in progress
    assert gallery.clean_orphans(min_age_s=0) == 2
    assert not any(p.exists() for p in leftovers) and record.path.exists()


# -- over HTTP: a real app process, the real GAN --------------------------------------------------------
def sse_end(base: str, name: str, data: list) -> tuple[str, object]:
    return call_by_name(base, name, dict(data), timeout=300)


def test_http_an_image_batch_stops_cleanly_at_the_quota_and_old_items_go_at_startup(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    env = {"STUDIO_IMAGE_MODEL": "gan:faces", "STUDIO_USER_QUOTA_MB": "2", "STUDIO_RETENTION_DAYS": "1"}
    with app_process(data, env) as app:
        event, payload = sse_end(
            app.url.rstrip("/"),
            "generate_image",
            [("prompt", ""), ("model", "gan:faces"), ("seed", 1), ("batch_count", 3)],
        )
        assert event == "error", payload
        message = json.dumps(payload)
        assert "Your library is full" in message and "of 2.0 MB used" in message, message
        pngs = sorted(data.rglob("*.png"))
        assert len(pngs) == 1 and not list(data.rglob("*.part"))  # the first face (1.6 MB) fits, the second not
        Image.open(pngs[0]).verify()
    # the image made a day and more ago is deleted when the app starts again
    with sqlite3.connect(data / "studio.sqlite3") as conn:
        conn.execute("UPDATE images SET created_at = created_at - 2 * 86400")
    with app_process(data, env):
        deadline = time.monotonic() + 60
        while list(data.rglob("*.png")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not list(data.rglob("*.png"))
        with sqlite3.connect(data / "studio.sqlite3") as conn:
            assert conn.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0


def test_conversations_count_toward_the_quota_and_a_reply_is_never_cut_for_it(stores, tmp_path):
    from core.chat.store import ConversationStore

    gallery, summaries, drafts = stores
    chats = ConversationStore(gallery.db_path)
    quota = StorageQuota(1000)
    quota.attach(gallery, summaries, drafts, chats)
    conv = chats.create_conversation("ann")
    chats.add_message("ann", conv.id, "user", "é" * 300)  # 600 bytes
    reply = chats.add_message("ann", conv.id, "assistant", "", status="streaming")
    chats.update_message("ann", conv.id, reply, content="x" * 5000, status="complete")  # kept whole
    assert quota.used("ann") == 5600 and chats.bytes_used("bob") == 0
    with pytest.raises(QuotaExceededError, match="library is full"):
        chats.add_message("ann", conv.id, "user", "one more question")
    assert [m.role for m in chats.get_conversation("ann", conv.id).messages] == ["user", "assistant"]
    chats.delete_conversation("ann", conv.id)
    assert quota.used("ann") == 0


def test_retention_removes_old_conversations_too(tmp_path):
    from core.chat.store import ConversationStore

    chats = ConversationStore(tmp_path / "db.sqlite3")
    old = chats.create_conversation("ann")
    chats.add_message("ann", old.id, "user", "hello")
    assert chats.delete_older_than(time.time() + 1, "bob") == 0
    assert chats.delete_older_than(time.time() + 1, "ann") == 1
    assert chats.list_conversations("ann") == []


def test_a_message_past_the_quota_is_refused_and_leaves_no_empty_conversation(tmp_path):
    from config import Settings
    from core.chat.service import ChatOptions, ChatService
    from core.chat.store import ConversationStore
    from core.models.text import ModelManager

    settings = Settings(data_dir=tmp_path)
    chats = ConversationStore(settings.db_path)
    StorageQuota(10).attach(chats)
    service = ChatService(settings, chats, ModelManager(settings))
    with pytest.raises(QuotaExceededError, match="library is full"):
        service.add_user_message("ann", None, "a question longer than ten bytes", ChatOptions())
    assert chats.list_conversations("ann") == []
