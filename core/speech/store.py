"""Each user's speech items, kept across restarts: spoken audio files under `<data_dir>/speech/<user folder>/` and
transcripts (text and timed segments), one SQLite row each; under the user quota and retention like the gallery."""

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

from backends.speech.base import Segment
from core.db import DISK_FULL_MESSAGE, SQLiteDB, is_disk_full
from core.errors import NotFoundError, StorageFullError
from core.quota import reserved

SPEECH_SCHEMA = """
CREATE TABLE IF NOT EXISTS speech_items (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    created_at REAL NOT NULL,
    source TEXT NOT NULL,
    model TEXT NOT NULL,
    voice TEXT NOT NULL,
    language TEXT NOT NULL,
    fmt TEXT NOT NULL,
    file TEXT NOT NULL,
    text TEXT NOT NULL,
    segments TEXT NOT NULL,
    duration REAL NOT NULL,
    bytes INTEGER NOT NULL,
    stopped INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS speech_by_user ON speech_items(user_id, created_at DESC);
"""
ORPHAN_AGE_S = 6 * 3600.0  # a partial file this old is left over from a crash (a long text takes well under this)
TITLE_CHARS = 80
AUDIO_FORMATS = ("wav", "mp3", "ogg")


@dataclass(frozen=True)
class SpeechItem:
    id: str
    user: str
    kind: str  # "speech" | "transcript"
    title: str
    created: float
    source: str  # "speech" | "chat" | "writer" | "condenser" | "api"
    model: str
    voice: str
    language: str
    fmt: str  # "wav" | "mp3" | "ogg" for speech; "" for a transcript
    path: Path | None  # the audio file of a speech item
    text: str  # what was spoken, or the transcript's plain text
    segments: tuple[Segment, ...]  # a transcript's timed segments
    duration: float
    bytes: int
    stopped: bool  # cancelled part-way (what was made is kept)


def title_of(text: str) -> str:
    """A short title: the first words of `text`'s first line."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    words = " ".join(first.split())
    return words if len(words) <= TITLE_CHARS else words[: TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"


class SpeechStore(SQLiteDB):
    """Every speech item a user made. Every query is scoped to the user id; a user's folder name is a hash of the
    id, so ids never become paths. Audio is written to a partial file (`partial_path`) while it is spoken and
    renamed into place before its row exists; a row is gone before its file, so no row is ever without its audio
    (partial files a crash left are swept by `clean_orphans`). With a `quota` a save that would pass it is refused
    (QuotaExceededError) and its audio deleted."""

    def __init__(self, data_dir: Path, db_path: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.speech_dir = self.data_dir / "speech"
        self.quota: Any = None  # core.quota.StorageQuota, set by StorageQuota.attach
        super().__init__(Path(db_path) if db_path is not None else self.data_dir / "studio.sqlite3", SPEECH_SCHEMA)

    def _user_dir(self, user_id: str) -> Path:
        return self.speech_dir / hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:24]

    def partial_path(self, user_id: str, fmt: str) -> tuple[str, Path]:
        """A new item id and the file to write its audio into while it is made (its extension is the format's,
        so encoders can tell it). Hand both to `add_speech` when done, or delete the file."""
        if fmt not in AUDIO_FORMATS:
            raise ValueError(f"unknown audio format {fmt!r}")
        item_id = uuid.uuid4().hex
        folder = self._user_dir(user_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if is_disk_full(exc):
                raise StorageFullError(DISK_FULL_MESSAGE) from None
            raise
        return item_id, folder / f".{item_id}.part.{fmt}"

    def add_speech(
        self,
        user_id: str,
        item_id: str,
        partial: Path,
        *,
        text: str,
        source: str,
        model: str,
        voice: str,
        language: str,
        fmt: str,
        duration: float,
        stopped: bool,
        created: float | None = None,
    ) -> SpeechItem:
        """Keep the finished audio `partial` (from `partial_path`) as a speech item. On any failure (quota, full
        disk) the audio is deleted and nothing is kept. `created`: for one from a library archive (default: now)."""
        final = partial.with_name(f"{item_id}.{fmt}")
        try:
            size = partial.stat().st_size
            with reserved(self.quota, user_id, size + len(text.encode("utf-8"))):
                with open(partial, "rb") as f:
                    os.fsync(f.fileno())  # on disk before its row exists
                os.replace(partial, final)
                item = SpeechItem(
                    item_id, user_id, "speech", title_of(text), time.time() if created is None else created, source, model, voice, language, fmt,
                    final, text, (), float(duration), size, stopped,
                )  # fmt: skip
                self._insert(item)
        except BaseException as exc:
            partial.unlink(missing_ok=True)
            final.unlink(missing_ok=True)
            if isinstance(exc, OSError) and is_disk_full(exc):
                raise StorageFullError(DISK_FULL_MESSAGE) from None
            raise
        return item

    def add_transcript(
        self,
        user_id: str,
        *,
        title: str,
        segments: tuple[Segment, ...],
        source: str,
        model: str,
        language: str,
        duration: float,
        stopped: bool,
        created: float | None = None,
    ) -> SpeechItem:
        segments = tuple(Segment(round(s.start, 3), round(s.end, 3), s.text) for s in segments)
        text = " ".join(s.text.strip() for s in segments if s.text.strip())
        size = len(text.encode("utf-8")) + len(_segments_json(segments))
        with reserved(self.quota, user_id, size):
            item = SpeechItem(
                uuid.uuid4().hex, user_id, "transcript", title_of(title) or "Transcript",
                time.time() if created is None else created, source, model,
                "", language, "", None, text, tuple(segments), float(duration), size, stopped,
            )  # fmt: skip
            self._insert(item)
        return item

    def _insert(self, item: SpeechItem) -> None:
        file = str(item.path.relative_to(self.data_dir)) if item.path is not None else ""
        with self._tx() as db:
            db.execute(
                "INSERT INTO speech_items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    item.id, item.user, item.kind, item.title, item.created, item.source, item.model, item.voice,
                    item.language, item.fmt, file, item.text, _segments_json(item.segments), item.duration,
                    item.bytes, int(item.stopped),
                ),
            )  # fmt: skip

    def _record(self, row: sqlite3.Row) -> SpeechItem:
        segments = tuple(Segment(float(s[0]), float(s[1]), str(s[2])) for s in json.loads(row["segments"]))
        return SpeechItem(
            row["id"], row["user_id"], row["kind"], row["title"], row["created_at"], row["source"], row["model"],
            row["voice"], row["language"], row["fmt"], self.data_dir / row["file"] if row["file"] else None,
            row["text"], segments, row["duration"], row["bytes"], bool(row["stopped"]),
        )  # fmt: skip

    def list(self, user_id: str, kind: str | None = None, limit: int = 50, offset: int = 0) -> list[SpeechItem]:
        """Newest first; `kind` "speech" or "transcript" for one kind only."""
        where, args = ("user_id = ? AND kind = ?", (user_id, kind)) if kind else ("user_id = ?", (user_id,))
        rows = self._conn().execute(
            f"SELECT * FROM speech_items WHERE {where} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
            (*args, int(limit), int(offset)),
        )
        return [self._record(r) for r in rows]

    def get(self, user_id: str, item_id: str) -> SpeechItem:
        row = (
            self._conn()
            .execute("SELECT * FROM speech_items WHERE id = ? AND user_id = ?", (str(item_id), user_id))
            .fetchone()
        )
        if row is None:
            raise NotFoundError("No such recording or transcript (it may have been deleted).")
        return self._record(row)

    def rename(self, user_id: str, item_id: str, title: str) -> None:
        """A new title (the library's Rename). NotFoundError for another user's or a deleted item."""
        title = " ".join(title.split())[:200]
        if not title:
            raise ValueError("A recording or transcript needs a non-empty title")
        with self._tx() as db:
            cur = db.execute(
                "UPDATE speech_items SET title = ? WHERE id = ? AND user_id = ?", (title, str(item_id), user_id)
            )
            if cur.rowcount == 0:
                raise NotFoundError("No such recording or transcript (it may have been deleted).")

    def delete(self, user_id: str, item_id: str) -> None:
        with self._tx() as db:
            row = db.execute(
                "SELECT file FROM speech_items WHERE id = ? AND user_id = ?", (str(item_id), user_id)
            ).fetchone()
            if row is None:
                raise NotFoundError("No such recording or transcript (it may have been deleted).")
            db.execute("DELETE FROM speech_items WHERE id = ? AND user_id = ?", (str(item_id), user_id))
        if row["file"]:
            (self.data_dir / row["file"]).unlink(missing_ok=True)  # after the commit: no row without a file

    # -- quota and retention (core/quota.py UserStore) -----------------------------------------------------------
    def bytes_used(self, user_id: str) -> int:
        return self._sum_for_user("speech_items", "bytes", user_id)

    def delete_older_than(self, cutoff: float, user_id: str | None = None) -> int:
        """Retention: items made before `cutoff` (of one user, or of everyone); rows first, then files."""
        return self._delete_files_before("speech_items", "created_at", cutoff, user_id, self.data_dir)

    def clean_orphans(self, min_age_s: float = ORPHAN_AGE_S) -> int:
        """Files a crash left behind: partial audio, and audio whose row was never written (both older than
        `min_age_s`, so audio being spoken now is never touched)."""
        # Same shape as ImageGallery.clean_orphans (core/images/store.py): kept apart because which files count as
        # left behind differs (here any file no row names; there .part files and unnamed PNGs only).
        if not self.speech_dir.is_dir():
            return 0
        known = {r["file"] for r in self._conn().execute("SELECT file FROM speech_items WHERE file != ''")}
        cutoff = time.time() - min_age_s
        removed = 0
        for path in self.speech_dir.glob("*/*"):
            try:
                if not path.is_file() or path.stat().st_mtime >= cutoff:
                    continue
                if str(path.relative_to(self.data_dir)) not in known:
                    path.unlink(missing_ok=True)
                    removed += 1
            except OSError:
                continue
        return removed


def _segments_json(segments: tuple[Segment, ...]) -> str:
    return json.dumps([[round(s.start, 3), round(s.end, 3), s.text] for s in segments], ensure_ascii=False)
