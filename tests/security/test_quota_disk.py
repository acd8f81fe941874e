"""A full disk gives a clear error and corrupts nothing: a gallery PNG is written to a temp file in its folder
and renamed when complete, its row only after that; ENOSPC/EDQUOT and SQLite's "database or disk is full"
become StorageFullError ("The server's disk is full..."); no partial PNG, no orphan row, no server path in the
message. Faults injected into a real store (a writer that fails mid-file, SQLite's max_page_count) and, where
this machine lets root mount one, a real 2-3 MB tmpfs under a real app process."""

from __future__ import annotations

import contextlib
import errno
import json
import sqlite3
import subprocess
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from PIL import Image

from backends.image.gan_faces import GanFacesBackend
from config import Settings
from core.condenser.store import SummaryStore
from core.errors import StorageFullError
from core.images.models import ImageModelManager
from core.images.service import ImageStudio
from core.images.store import ImageGallery
from core.writer.store import DraftStore
from tests.support.app_process import app_process
from tests.support.pictures import noise_image

GAN = "gan:faces"


class DiskFullAfter(ImageGallery):
    """The real gallery on a disk that fills up: the first `fit` files are written, then a write stops half-way
    with ENOSPC (or EDQUOT), as the kernel does."""

    def __init__(self, data_dir: Path, fit: int = 0, code: int = errno.ENOSPC) -> None:
        super().__init__(data_dir)
        self.fit, self.code, self.writes = fit, code, 0

    def _write_file(self, path: Path, data: bytes) -> None:
        self.writes += 1
        if self.writes <= self.fit:
            return super()._write_file(path, data)
        with open(path, "xb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(
            self.code, "No space left on device" if self.code == errno.ENOSPC else "Disk quota exceeded", str(path)
        )


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and (p.suffix in (".png", ".part") or ".part" in p.name)]


def assert_consistent(gallery: ImageGallery, user: str) -> None:
    """Every row has its complete PNG and every PNG its row; nothing partial is left."""
    rows = gallery.list(user, limit=10_000)
    files = sorted(p for p in gallery.images_dir.rglob("*") if p.is_file())
    assert sorted(g.path for g in rows) == files, (rows, files)
    for path in files:
        with Image.open(path) as image:
            image.load()  # a truncated PNG raises here


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_write_that_fails_mid_file_keeps_nothing_and_says_the_disk_is_full(tmp_path, code):
    gallery = DiskFullAfter(tmp_path, fit=1, code=code)
    kept = gallery.save("ann", noise_image(1))
    with pytest.raises(StorageFullError) as info:
        gallery.save("ann", noise_image(2))
    message = str(info.value)
    assert message.startswith("The server's disk is full") and str(tmp_path) not in message
    assert [g.id for g in gallery.list("ann")] == [kept.id]
    assert leftovers(tmp_path) == [kept.path]
    assert_consistent(gallery, "ann")


def test_sqlite_full_after_the_png_leaves_no_orphan_file(tmp_path):
    gallery = ImageGallery(tmp_path)
    gallery.save("ann", noise_image(1))
    db = gallery._conn()  # this thread's connection: the one the next save writes with
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite answers SQLITE_FULL for anything needing a new page
    with pytest.raises(StorageFullError) as info:
        gallery.save("ann", noise_image(2, prompt="p" * 20_000))  # a row that needs new pages
    assert "disk is full" in str(info.value)
    assert len(gallery.list("ann")) == 1
    assert_consistent(gallery, "ann")
    db.execute("PRAGMA max_page_count = 1073741823")
    gallery.save("ann", noise_image(3))  # room again: saving works, nothing was damaged
    assert len(gallery.list("ann")) == 2
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_summaries_and_drafts_on_a_full_database_say_so_and_keep_nothing(tmp_path):
    summaries, drafts = SummaryStore(tmp_path / "db.sqlite3"), DraftStore(tmp_path / "db.sqlite3")
    draft = drafts.create("ann", "Post", "blog_post", {"topic": "t"}, {}, status="streaming")
    for store in (summaries, drafts):
        conn = store._conn()
        conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(StorageFullError):
        summaries.save("ann", "Report", "m" * 50_000)
    with pytest.raises(StorageFullError):
        drafts.save_generation("ann", draft.id, variants=["v" * 50_000])
    assert summaries.list("ann") == []
    assert drafts.get("ann", draft.id).text == "" and drafts.get("ann", draft.id).variants == []


@pytest.fixture(scope="module")
def gan():
    backend = GanFacesBackend(spec=GAN)
    backend.load()
    return backend


def test_an_image_job_on_a_full_disk_stops_with_the_clear_message(gan, tmp_path):
    settings = Settings(image_models=(GAN,), data_dir=tmp_path)
    gallery = DiskFullAfter(tmp_path, fit=1)
    studio = ImageStudio(settings, ImageModelManager(settings, backends={GAN: gan}), gallery)
    updates = []
    with pytest.raises(StorageFullError) as info:
        for update in studio.generate("ann", GAN, dict(seed=3, batch_count=5)):
            updates.append(update)
    assert "The server's disk is full" in str(info.value) and str(tmp_path) not in str(info.value)
    assert gallery.writes < 5  # the job stopped instead of making faces it cannot keep
    assert [g.seed for g in studio.images("ann")] == [3]
    assert_consistent(gallery, "ann")
    assert not [t for t in threading.enumerate() if t.name in ("image-job", "image-saver") and t.is_alive()]


# -- a real, tiny filesystem ---------------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(folder: Path, size: str):
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc}); the fault-injection tests above cover the logic")
    if done.returncode != 0:
        pytest.skip(
            f"mounting a tmpfs is not permitted here ({done.stderr.strip()}); the fault-injection tests "
            "above cover the logic"
        )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def test_a_real_full_filesystem_corrupts_nothing(tmp_path):
    with tmpfs(tmp_path / f"small-{uuid.uuid4().hex[:6]}", "2m") as disk:
        gallery = ImageGallery(disk)
        summaries = SummaryStore(gallery.db_path)
        saved, error = [], None
        for seed in range(8):  # 512x512 noise: ~790 KB a PNG; 2 MB hold two at most
            try:
                saved.append(gallery.save("ann", noise_image(seed, 512)))
            except StorageFullError as exc:
                error = exc
                break
        assert saved and error is not None and str(error).startswith("The server's disk is full")
        assert_consistent(gallery, "ann")
        with pytest.raises(StorageFullError):
            summaries.save("ann", "Report", "m" * 1_500_000)
        assert summaries.list("ann") == []
        # freeing space makes everything work again, and the database is intact
        for record in saved:
            gallery.delete("ann", record.id)
        gallery.save("ann", noise_image(99, 512))
        summaries.save("ann", "Report", "short")
        assert gallery._conn().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert_consistent(gallery, "ann")


def test_http_a_full_disk_under_a_real_app_is_a_clear_error(tmp_path):
    """The app's whole data folder on a 3 MB filesystem: the first 1.6 MB face fits, the second does not."""
    with tmpfs(tmp_path / f"data-{uuid.uuid4().hex[:6]}", "3m") as data:
        with app_process(data, {"STUDIO_IMAGE_MODEL": GAN}) as app:
            base = app.url.rstrip("/")
            info = httpx.get(f"{base}/gradio_api/info", timeout=30).json()["named_endpoints"]["/generate_image"]
            values = {"prompt": "", "model": GAN, "seed": 1, "batch_count": 3}
            body = {"data": [values.get(p["parameter_name"], p.get("parameter_default")) for p in info["parameters"]]}
            event_id = httpx.post(f"{base}/gradio_api/call/generate_image", json=body, timeout=30).json()["event_id"]
            lines = httpx.get(f"{base}/gradio_api/call/generate_image/{event_id}", timeout=300).text.splitlines()
            assert "event: error" in lines, lines[-4:]
            message = json.dumps(lines[lines.index("event: error") + 1])
            assert "disk is full" in message and str(data) not in message, message
            assert httpx.get(base + "/", timeout=30).status_code == 200  # still serving
        pngs = sorted(data.rglob("*.png"))
        assert len(pngs) <= 1 and not [p for p in data.rglob("*") if ".part" in p.name]
        with sqlite3.connect(data / "studio.sqlite3") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            rows = [r[0] for r in conn.execute("SELECT file FROM images")]
        assert sorted(data / r for r in rows) == pngs
        for path in pngs:
            with Image.open(path) as image:
                image.load()
