"""SQLite storage of condensed summaries: the Markdown shown, the settings it was made with and the
documents it read (names, pages, coverage, chunk accounting). Every query is scoped to a user id, so
nobody can read or delete another user's summaries, even with a guessed id. Same database file as
the conversations (WAL; each committed write survives a crash)."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.db import SQLiteDB
from core.quota import reserved

SCHEMA = """
CREATE TABLE IF NOT EXISTS summaries (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    title TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    settings TEXT NOT NULL DEFAULT '{}',
    sources TEXT NOT NULL DEFAULT '[]',
    coverage TEXT NOT NULL DEFAULT '',
    markdown TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    size INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS summaries_by_user ON summaries(user_id, created_at DESC);
"""
# Bytes a row's text takes (what counts toward the user's quota); kept in `size`, summed from a covering index.
_SIZE = (
    "length(CAST(title AS BLOB)) + length(CAST(model AS BLOB)) + length(CAST(settings AS BLOB))"
    " + length(CAST(sources AS BLOB)) + length(CAST(coverage AS BLOB)) + length(CAST(markdown AS BLOB))"
    " + length(CAST(details AS BLOB))"
)


@dataclass
class StoredSummary:
    id: str
    user_id: str
    title: str
    markdown: str
    model: str = ""
    settings: dict[str, Any] = field(default_factory=dict)  # length, form, focus, audience, language...
    sources: list[dict[str, Any]] = field(default_factory=list)  # one per document read
    coverage: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # points with their sources, chunks, timings
    created_at: float = 0.0


class SummaryNotFound(LookupError):
    """No such summary for this user (another user's is indistinguishable from none)."""


class SummaryStore(SQLiteDB):
    def __init__(self, db_path: Path) -> None:
        super().__init__(db_path, SCHEMA)
        self.quota: Any = None  # core.quota.StorageQuota, set by StorageQuota.attach
        if self._add_column("summaries", "size", "INTEGER NOT NULL DEFAULT 0"):
            with self._tx() as db:
                db.execute(f"UPDATE summaries SET size = {_SIZE}")
        self._conn().execute("CREATE INDEX IF NOT EXISTS summaries_usage ON summaries(user_id, size)")

    def save(
        self,
        user_id: str,
        title: str,
        markdown: str,
        *,
        model: str = "",
        settings: dict | None = None,
        sources: list | None = None,
        coverage: str = "",
        details: dict | None = None,
        created_at: float | None = None,
    ) -> StoredSummary:
        """Raises QuotaExceededError (past the user's quota) or StorageFullError (disk full); nothing is kept then.
        `created_at`: when it was made, for one brought in from a library archive (default: now)."""
        item = StoredSummary(
            uuid.uuid4().hex,
            user_id,
            " ".join(title.split())[:200] or "Summary",
            markdown,
            model,
            dict(settings or {}),
            list(sources or []),
            coverage,
            dict(details or {}),
            time.time() if created_at is None else float(created_at),
        )
        values = (
            item.title,
            model,
            json.dumps(item.settings),
            json.dumps(item.sources),
            coverage,
            markdown,
            json.dumps(item.details),
        )
        size = sum(len(v.encode("utf-8", "surrogatepass")) for v in values)
        with reserved(self.quota, user_id, size), self._tx() as db:
            db.execute(
                "INSERT INTO summaries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (item.id, user_id, *values, item.created_at, size),
            )
        return item

    def bytes_used(self, user_id: str) -> int:
        return self._sum_for_user("summaries", "size", user_id)

    def delete_older_than(self, cutoff: float, user_id: str | None = None) -> int:
        """Retention: summaries made before `cutoff`, of one user or (None) of everyone."""
        return self._delete_before("summaries", "created_at", cutoff, user_id)

    def get(self, user_id: str, summary_id: str) -> StoredSummary:
        row = (
            self._conn()
            .execute("SELECT * FROM summaries WHERE id = ? AND user_id = ?", (summary_id, user_id))
            .fetchone()
        )
        if row is None:
            raise SummaryNotFound("No such summary (it may have been deleted)")
        return _from_row(row)

    def list(self, user_id: str, limit: int = 200) -> list[StoredSummary]:
        """Newest first, without the (possibly large) details."""
        rows = self._conn().execute(
            "SELECT id, user_id, title, model, settings, sources, coverage, '' AS markdown, '{}' AS details,"
            " created_at FROM summaries WHERE user_id = ? ORDER BY created_at DESC LIMIT ?",
            (user_id, limit),
        )
        return [_from_row(r) for r in rows]

    def rename(self, user_id: str, summary_id: str, title: str) -> None:
        """A new title (the library's Rename). SummaryNotFound for another user's or a deleted one."""
        title = " ".join(title.split())[:200]
        if not title:
            raise ValueError("A summary needs a non-empty title")
        with self._tx() as db:
            cur = db.execute(
                "UPDATE summaries SET title = ?, size = size - length(CAST(title AS BLOB)) + length(CAST(? AS BLOB))"
                " WHERE id = ? AND user_id = ?",
                (title, title, summary_id, user_id),
            )
            if cur.rowcount == 0:
                raise SummaryNotFound("No such summary (it may have been deleted)")

    def delete(self, user_id: str, summary_id: str) -> None:
        with self._tx() as db:
            if db.execute("DELETE FROM summaries WHERE id = ? AND user_id = ?", (summary_id, user_id)).rowcount == 0:
                raise SummaryNotFound("No such summary (it may have been deleted)")


def _from_row(row: sqlite3.Row) -> StoredSummary:
    return StoredSummary(
        id=row["id"],
        user_id=row["user_id"],
        title=row["title"],
        markdown=row["markdown"],
        model=row["model"],
        settings=json.loads(row["settings"]),
        sources=json.loads(row["sources"]),
        coverage=row["coverage"],
        details=json.loads(row["details"]),
        created_at=row["created_at"],
    )
