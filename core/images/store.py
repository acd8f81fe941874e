"""The per-user image gallery: PNG files (each with its parameters chunk) under the data folder and one SQLite row
each, kept consistent through a crash or a full disk."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.image.base import GeneratedImage
from core.db import DISK_FULL_MESSAGE, SQLiteDB, is_disk_full
from core.errors import StorageFullError
from core.images.errors import ImageNotFoundError
from core.images.png import canonical_parameters, encode_png, to_infotext
from core.quota import reserved

GALLERY_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    file TEXT NOT NULL,
    parameters TEXT NOT NULL,
    seed INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS images_by_user ON images(user_id, created_at DESC);
"""
ORPHAN_AGE_S = 3600.0  # a file without its row this old is left over from a crash (a save takes well under this)


@dataclass(frozen=True)
class GalleryImage:
    id: str
    user_id: str
    path: Path  # the PNG, with its parameters chunk
    parameters: dict
    seed: int
    width: int
    height: int
    model: str
    created_at: float
    title: str = ""  # a name the person gave it (the library's Rename); '' until then

    @property
    def infotext(self) -> str:
        return to_infotext(self.parameters)


class ImageGallery(SQLiteDB):
    """Every image a user made: PNG files under `<data_dir>/images/<user folder>/` and a row each in
    SQLite. Every query is scoped to the user id; a user's folder name is a hash of the id, so ids
    never become paths. A PNG is complete before its row exists and a row is gone before its file, so a
    crash or a full disk never leaves a row without its image (a file left without a row is swept by
    `clean_orphans`). With a `quota` (core/quota.py) a save that would pass it is refused."""

    def __init__(self, data_dir: Path, db_path: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.images_dir = self.data_dir / "images"
        self.quota: Any = None  # core.quota.StorageQuota, set by StorageQuota.attach
        super().__init__(Path(db_path) if db_path is not None else self.data_dir / "studio.sqlite3", GALLERY_SCHEMA)
        if self._add_column("images", "bytes", "INTEGER NOT NULL DEFAULT 0"):
            self._backfill_sizes()
        self._add_column("images", "title", "TEXT NOT NULL DEFAULT ''")

    def _backfill_sizes(self) -> None:
        """Rows from before sizes were kept: their file sizes, once."""
        rows = self._conn().execute("SELECT id, file FROM images WHERE bytes = 0").fetchall()
        sizes = []
        for row in rows:
            try:
                sizes.append(((self.data_dir / row["file"]).stat().st_size, row["id"]))
            except OSError:
                continue
        with self._tx() as db:
            db.executemany("UPDATE images SET bytes = ? WHERE id = ?", sizes)

    def _user_dir(self, user_id: str) -> Path:
        return self.images_dir / hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:24]

    def _write_file(self, path: Path, data: bytes) -> None:
        """Write `data` to the new file `path`, on disk before this returns (a full disk raises here, not later)."""
        with open(path, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def save(
        self, user_id: str, generated: GeneratedImage, threads: int = 1, created_at: float | None = None
    ) -> GalleryImage:
        """Write the PNG (`threads`: see encode_png) and its row; the job's images are final once this returns.
        Raises QuotaExceededError (nothing written) and StorageFullError (disk full: nothing kept). `created_at`:
        when it was made, for one brought in from a library archive (default: now)."""
        image: Any = generated.image  # a PIL image (backends type it `object`: they import PIL only where used)
        params = canonical_parameters(generated.parameters)  # the DB row and the PNG say the same
        params.setdefault("seed", generated.seed)
        params.setdefault("width", image.width)
        params.setdefault("height", image.height)
        params.setdefault("model", "unknown")  # the PNG format needs three fields; never lose an image over it
        png = encode_png(image, params, threads=threads)
        image_id = uuid.uuid4().hex
        folder = self._user_dir(user_id)
        path = folder / f"{image_id}.png"
        partial = folder / f".{image_id}.png.part"  # same folder: os.replace is atomic
        with reserved(self.quota, user_id, len(png)):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                try:
                    self._write_file(partial, png)
                    os.replace(partial, path)  # a crash never leaves a half-written PNG under the real name
                finally:
                    partial.unlink(missing_ok=True)  # a failed write keeps no partial file
            except OSError as exc:
                if is_disk_full(exc):
                    raise StorageFullError(DISK_FULL_MESSAGE) from None
                raise
            record = GalleryImage(
                image_id,
                user_id,
                path,
                params,
                int(generated.seed),
                image.width,
                image.height,
                str(params.get("model", "")),
                time.time() if created_at is None else float(created_at),
            )
            try:
                with self._tx() as db:
                    db.execute(
                        "INSERT INTO images (id, user_id, file, parameters, seed, width, height, model, created_at,"
                        " bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            image_id,
                            user_id,
                            str(path.relative_to(self.data_dir)),
                            json.dumps(params),
                            record.seed,
                            record.width,
                            record.height,
                            record.model,
                            record.created_at,
                            len(png),
                        ),
                    )
            except BaseException:
                path.unlink(missing_ok=True)  # no image without its row
                raise
        return record

    def bytes_used(self, user_id: str) -> int:
        return self._sum_for_user("images", "bytes", user_id)

    def delete_older_than(self, cutoff: float, user_id: str | None = None) -> int:
        """Retention: images made before `cutoff` (of one user, or of everyone); rows first, then files."""
        return self._delete_files_before("images", "created_at", cutoff, user_id, self.data_dir)

    def clean_orphans(self, min_age_s: float = ORPHAN_AGE_S) -> int:
        """Files a crash left behind: partial writes, and PNGs whose row was never written (both older than
        `min_age_s`, so a save in progress is never touched)."""
        if not self.images_dir.is_dir():
            return 0
        known = {r["file"] for r in self._conn().execute("SELECT file FROM images")}
        cutoff = time.time() - min_age_s
        removed = 0
        for path in self.images_dir.glob("*/*"):
            try:
                if not path.is_file() or path.stat().st_mtime >= cutoff:
                    continue
                if path.name.endswith(".part") or (
                    path.suffix == ".png" and str(path.relative_to(self.data_dir)) not in known
                ):
                    path.unlink(missing_ok=True)
                    removed += 1
            except OSError:
                continue
        return removed

    def _record(self, row: sqlite3.Row) -> GalleryImage:
        return GalleryImage(
            row["id"],
            row["user_id"],
            self.data_dir / row["file"],
            json.loads(row["parameters"]),
            row["seed"],
            row["width"],
            row["height"],
            row["model"],
            row["created_at"],
            row["title"],
        )

    def list(self, user_id: str, limit: int = 200, offset: int = 0) -> list[GalleryImage]:
        """Newest first."""
        rows = self._conn().execute(
            "SELECT * FROM images WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
            (user_id, limit, offset),
        )
        return [self._record(r) for r in rows]

    def get(self, user_id: str, image_id: str) -> GalleryImage:
        row = self._conn().execute("SELECT * FROM images WHERE id = ? AND user_id = ?", (image_id, user_id)).fetchone()
        if row is None:
            raise ImageNotFoundError("No such image (it may have been deleted)")
        return self._record(row)

    def rename(self, user_id: str, image_id: str, title: str) -> None:
        """A name for the image (the library's Rename). ImageNotFoundError for another user's or a deleted one."""
        title = " ".join(title.split())[:200]
        if not title:
            raise ValueError("An image needs a non-empty title")
        with self._tx() as db:
            cur = db.execute("UPDATE images SET title = ? WHERE id = ? AND user_id = ?", (title, image_id, user_id))
            if cur.rowcount == 0:
                raise ImageNotFoundError("No such image (it may have been deleted)")

    def delete(self, user_id: str, image_id: str) -> None:
        with self._tx() as db:
            row = db.execute("SELECT file FROM images WHERE id = ? AND user_id = ?", (image_id, user_id)).fetchone()
            if row is None:
                raise ImageNotFoundError("No such image (it may have been deleted)")
            db.execute("DELETE FROM images WHERE id = ? AND user_id = ?", (image_id, user_id))
        (self.data_dir / row["file"]).unlink(missing_ok=True)  # after the commit: no row without a file
