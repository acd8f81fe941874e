"""SQLite storage for the writer's drafts: each kept with its brief (every field as entered), the
generation options, the outline, the variants and the chosen text. Every query is scoped to a user.

Shares the app's database file (its own table); WAL with synchronous=NORMAL, as core/chat/store.py.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.db import SQLiteDB
from core.errors import NotFoundError, QuotaExceededError
from core.quota import reserved

DraftStatus = Literal["complete", "streaming", "cut"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS writer_drafts (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    title TEXT NOT NULL,
    template TEXT NOT NULL,
    brief TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL DEFAULT '{}',
    outline TEXT NOT NULL DEFAULT '',
    variants TEXT NOT NULL DEFAULT '[]',
    chosen INTEGER NOT NULL DEFAULT 0,
    text TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'complete' CHECK (status IN ('complete', 'streaming', 'cut')),
    note TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    size INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS writer_drafts_by_user ON writer_drafts(user_id, updated_at DESC);
"""
# Bytes a row's text takes (what counts toward the user's quota); kept in `size`, summed from a covering index.
_TEXT_COLUMNS = ("title", "template", "brief", "options", "outline", "variants", "text", "note")
_SIZE = " + ".join(f"length(CAST({c} AS BLOB))" for c in _TEXT_COLUMNS)


def _size(*values: str) -> int:
    return sum(len(v.encode("utf-8", "surrogatepass")) for v in values)


@dataclass
class Draft:
    id: str
    user_id: str
    title: str
    template: str
    brief: dict[str, Any] = field(default_factory=dict)  # field name -> value as the person entered it
    options: dict[str, Any] = field(default_factory=dict)  # model, variants, temperature, top_p, seed
    outline: str = ""
    variants: list[str] = field(default_factory=list)
    chosen: int = 0
    text: str = ""  # the picked variant, as edited since
    status: DraftStatus = "complete"
    note: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0


def _row_to_draft(row: sqlite3.Row) -> Draft:
    return Draft(
        id=row["id"],
        user_id=row["user_id"],
        title=row["title"],
        template=row["template"],
        brief=json.loads(row["brief"]),
        options=json.loads(row["options"]),
        outline=row["outline"],
        variants=json.loads(row["variants"]),
        chosen=row["chosen"],
        text=row["text"],
        status=row["status"],
        note=row["note"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class DraftStore(SQLiteDB):
    """With a `quota` (core/quota.py), a write that grows the user's drafts past it is refused with
    QuotaExceededError; a streaming draft that hits it is kept as written so far, marked cut."""

    def __init__(self, db_path: Path) -> None:
        super().__init__(db_path, SCHEMA)
        self.quota: Any = None  # core.quota.StorageQuota, set by StorageQuota.attach
        if self._add_column("writer_drafts", "size", "INTEGER NOT NULL DEFAULT 0"):
            with self._tx() as db:
                db.execute(f"UPDATE writer_drafts SET size = {_SIZE}")
        self._conn().execute("CREATE INDEX IF NOT EXISTS writer_drafts_usage ON writer_drafts(user_id, size)")

    def _check_growth(self, user_id: str, row: sqlite3.Row, new_size: int) -> None:
        if self.quota is not None:
            self.quota.check(user_id, new_size - row["size"])

    def _owned(self, db: sqlite3.Connection, user_id: str, draft_id: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM writer_drafts WHERE id = ? AND user_id = ?", (draft_id, user_id)).fetchone()
        if row is None:
            raise NotFoundError("No such draft (it may have been deleted)")
        return row

    # -- drafts ---------------------------------------------------------------------------------
    def create(
        self,
        user_id: str,
        title: str,
        template: str,
        brief: dict[str, Any],
        options: dict[str, Any],
        outline: str = "",
        text: str = "",
        status: DraftStatus = "complete",
    ) -> Draft:
        now = time.time()
        draft = Draft(
            uuid.uuid4().hex,
            user_id,
            " ".join(title.split())[:200] or "Untitled draft",
            template,
            dict(brief),
            dict(options),
            outline,
            [],
            0,
            text,
            status,
            "",
            now,
            now,
        )
        brief_json, options_json = json.dumps(draft.brief), json.dumps(draft.options)
        size = _size(draft.title, template, brief_json, options_json, outline, "[]", text, "")
        with reserved(self.quota, user_id, size), self._tx() as db:
            db.execute(
                "INSERT INTO writer_drafts (id, user_id, title, template, brief, options, outline, variants,"
                " chosen, text, status, note, created_at, updated_at, size)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    draft.id,
                    user_id,
                    draft.title,
                    template,
                    brief_json,
                    options_json,
                    outline,
                    "[]",
                    0,
                    text,
                    status,
                    "",
                    now,
                    now,
                    size,
                ),
            )
        return draft

    def import_draft(self, user_id: str, draft: Draft) -> Draft:
        """A draft brought in whole (a library archive): every field of `draft` but its id and user, which are new;
        within the quota. A draft left streaming is kept as cut."""
        title = " ".join(draft.title.split())[:200] or "Untitled draft"
        status = "cut" if draft.status == "streaming" else draft.status
        values = (
            title, draft.template, json.dumps(draft.brief), json.dumps(draft.options), draft.outline,
            json.dumps(draft.variants), draft.text, draft.note,
        )  # fmt: skip
        size = _size(*values)
        draft_id = uuid.uuid4().hex
        with reserved(self.quota, user_id, size), self._tx() as db:
            db.execute(
                "INSERT INTO writer_drafts (id, user_id, title, template, brief, options, outline, variants, text,"
                " note, chosen, status, created_at, updated_at, size) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (draft_id, user_id, *values, draft.chosen, status, draft.created_at, draft.updated_at, size),
            )
        return self.get(user_id, draft_id)

    def get(self, user_id: str, draft_id: str) -> Draft:
        return _row_to_draft(self._owned(self._conn(), user_id, draft_id or ""))

    def list(self, user_id: str, query: str = "", limit: int = 200) -> list[Draft]:
        """Newest first; `query` matches titles and text, case-insensitively."""
        db = self._conn()
        if query.strip():
            pattern = "%" + query.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = db.execute(
                "SELECT * FROM writer_drafts WHERE user_id = ? AND (title LIKE ? ESCAPE '\\' OR text LIKE ?"
                " ESCAPE '\\') ORDER BY updated_at DESC LIMIT ?",
                (user_id, pattern, pattern, limit),
            )
        else:
            rows = db.execute(
                "SELECT * FROM writer_drafts WHERE user_id = ? ORDER BY updated_at DESC LIMIT ?", (user_id, limit)
            )
        return [_row_to_draft(r) for r in rows]

    def save_generation(
        self,
        user_id: str,
        draft_id: str,
        *,
        variants: Sequence[str],
        outline: str | None = None,
        status: DraftStatus = "streaming",
        note: str = "",
        title: str | None = None,
        follow: bool = True,
    ) -> None:
        """Called as variants stream (throttled) and once at the end; the chosen text follows the
        chosen variant until the person picks or edits (with `follow` False it waits for a pick). Past the user's quota the draft keeps what it had,
        is marked cut with the reason, and QuotaExceededError is raised."""
        refused: QuotaExceededError | None = None
        with self._tx() as db:
            row = self._owned(db, user_id, draft_id)
            chosen = min(row["chosen"], max(0, len(variants) - 1))
            values = (
                json.dumps(variants),
                row["outline"] if outline is None else outline,
                variants[chosen] if variants and follow else row["text"],
                status,
                note,
                row["title"] if not title else " ".join(title.split())[:200],
            )
            size = _size(
                values[5], row["template"], row["brief"], row["options"], values[1], values[0], values[2], note
            )
            try:
                self._check_growth(user_id, row, size)
            except QuotaExceededError as exc:
                refused = exc
                db.execute(
                    "UPDATE writer_drafts SET status = 'cut', note = ?, updated_at = ? WHERE id = ?",
                    (str(exc)[:500], time.time(), draft_id),
                )
                db.execute(f"UPDATE writer_drafts SET size = {_SIZE} WHERE id = ?", (draft_id,))
            else:
                db.execute(
                    "UPDATE writer_drafts SET variants = ?, outline = ?, text = ?, status = ?, note = ?, title = ?,"
                    " updated_at = ?, size = ? WHERE id = ?",
                    (*values, time.time(), size, draft_id),
                )
        if refused is not None:
            raise refused

    def pick(self, user_id: str, draft_id: str, index: int) -> Draft:
        with self._tx() as db:
            row = self._owned(db, user_id, draft_id)
            variants = json.loads(row["variants"])
            if not 0 <= index < len(variants):
                raise IndexError(f"This draft has {len(variants)} variant(s); there is no variant {index + 1}.")
            self._check_growth(user_id, row, row["size"] - _size(row["text"]) + _size(variants[index]))
            db.execute(
                "UPDATE writer_drafts SET chosen = ?, text = ?, updated_at = ? WHERE id = ?",
                (index, variants[index], time.time(), draft_id),
            )
            db.execute(f"UPDATE writer_drafts SET size = {_SIZE} WHERE id = ?", (draft_id,))
        return self.get(user_id, draft_id)

    def save_text(self, user_id: str, draft_id: str, text: str) -> None:
        with self._tx() as db:
            row = self._owned(db, user_id, draft_id)
            self._check_growth(user_id, row, row["size"] - _size(row["text"]) + _size(text))
            db.execute("UPDATE writer_drafts SET text = ?, updated_at = ? WHERE id = ?", (text, time.time(), draft_id))
            db.execute(f"UPDATE writer_drafts SET size = {_SIZE} WHERE id = ?", (draft_id,))

    def rename(self, user_id: str, draft_id: str, title: str) -> None:
        """A new title (the library's Rename); its last change time stays, as a conversation's does."""
        title = " ".join(title.split())[:200]
        if not title:
            raise ValueError("A draft needs a non-empty title")
        with self._tx() as db:
            row = self._owned(db, user_id, draft_id)
            self._check_growth(user_id, row, row["size"] - _size(row["title"]) + _size(title))
            db.execute("UPDATE writer_drafts SET title = ? WHERE id = ?", (title, draft_id))
            db.execute(f"UPDATE writer_drafts SET size = {_SIZE} WHERE id = ?", (draft_id,))

    def delete(self, user_id: str, draft_id: str) -> None:
        with self._tx() as db:
            self._owned(db, user_id, draft_id)
            db.execute("DELETE FROM writer_drafts WHERE id = ?", (draft_id,))

    def mark_interrupted(self, note: str = "interrupted: the server stopped while writing") -> int:
        """At startup: drafts left 'streaming' by a crash are kept, marked as cut."""
        with self._tx() as db:
            count = db.execute(
                "UPDATE writer_drafts SET status = 'cut', note = ? WHERE status = 'streaming'", (note,)
            ).rowcount
            db.execute(f"UPDATE writer_drafts SET size = {_SIZE} WHERE status = 'cut' AND note = ?", (note,))
            return count

    def bytes_used(self, user_id: str) -> int:
        return self._sum_for_user("writer_drafts", "size", user_id)

    def delete_older_than(self, cutoff: float, user_id: str | None = None) -> int:
        """Retention: drafts last changed before `cutoff`, of one user or (None) of everyone."""
        return self._delete_before("writer_drafts", "updated_at", cutoff, user_id)
