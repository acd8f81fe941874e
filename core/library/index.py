"""The library's index in the shared SQLite file: one row per item (library_items) and its text in an FTS5 table
(library_fts, same rowid), kept right whatever path changed a store. Triggers on the stores' tables mark an item
changed (library_dirty) on every insert or update, from any code or process, and drop it from the index (and
record the title on its links) the moment its row is deleted: by its tab, the library, retention or a cascade.
A read brings the caller's changed items up to date first (`refresh`), so a listing costs what changed since the
last one, not what the user has. Links between items live here too (library_links, core/library/links.py)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from core.db import SQLiteDB
from core.library import sources
from core.library.sources import TABLES, Entry

BATCH = 200  # items brought up to date per write transaction (other writers wait at most one batch)
QUERY_CHARS = 1_000
QUERY_WORDS = 16
WORD_CHARS = 64
_WORD = re.compile(r"[^\W_]+")

SCHEMA = """
CREATE TABLE IF NOT EXISTS library_items (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    item_id TEXT NOT NULL,
    title TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    snippet TEXT NOT NULL,
    size INTEGER NOT NULL,
    model TEXT NOT NULL,
    detail TEXT NOT NULL,
    UNIQUE (kind, item_id)
);
CREATE INDEX IF NOT EXISTS library_items_by_user ON library_items(user_id, updated_at DESC);
CREATE INDEX IF NOT EXISTS library_items_by_kind ON library_items(user_id, kind, updated_at DESC);
CREATE VIRTUAL TABLE IF NOT EXISTS library_fts USING fts5(title, body, tokenize = 'unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS library_dirty (
    kind TEXT NOT NULL,
    item_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (kind, item_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS library_dirty_by_user ON library_dirty(user_id);
CREATE TABLE IF NOT EXISTS library_links (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    source_kind TEXT NOT NULL,
    source_id TEXT NOT NULL,
    made_kind TEXT NOT NULL,
    made_id TEXT NOT NULL,
    relation TEXT NOT NULL,
    created_at REAL NOT NULL,
    source_title TEXT,  -- NULL while the source exists; its last title once it is deleted
    made_title TEXT,
    UNIQUE (user_id, source_kind, source_id, made_kind, made_id, relation)
);
CREATE INDEX IF NOT EXISTS library_links_source ON library_links(source_kind, source_id);
CREATE INDEX IF NOT EXISTS library_links_made ON library_links(made_kind, made_id);
"""


def gone_sql(kind: str, item_id: str) -> list[str]:
    """What deleting an item does to the index, as SQL over the expressions `kind` and `item_id` (a trigger's
    OLD row, or named parameters): links keep its last title (a link whose both ends are gone is dropped), and its
    index rows go."""
    title = f"COALESCE((SELECT title FROM library_items WHERE kind = {kind} AND item_id = {item_id}), '')"
    return [
        f"UPDATE library_links SET source_title = {title}"
        f" WHERE source_kind = {kind} AND source_id = {item_id} AND source_title IS NULL",
        f"UPDATE library_links SET made_title = {title}"
        f" WHERE made_kind = {kind} AND made_id = {item_id} AND made_title IS NULL",
        "DELETE FROM library_links WHERE source_title IS NOT NULL AND made_title IS NOT NULL"
        f" AND ((source_kind = {kind} AND source_id = {item_id}) OR (made_kind = {kind} AND made_id = {item_id}))",
        f"DELETE FROM library_fts WHERE rowid IN (SELECT id FROM library_items WHERE kind = {kind} AND item_id = {item_id})",
        f"DELETE FROM library_items WHERE kind = {kind} AND item_id = {item_id}",
        f"DELETE FROM library_dirty WHERE kind = {kind} AND item_id = {item_id}",
    ]


def _triggers() -> list[str]:
    """Each store table's triggers, dropped and made again (so a newer body replaces an older one), one statement
    each."""
    out = []
    for table, kind in dict(TABLES.values()).items():
        new, old = kind.format(r="NEW"), kind.format(r="OLD")
        mark = f"INSERT OR IGNORE INTO library_dirty (kind, item_id, user_id) VALUES ({new}, NEW.id, NEW.user_id);"
        gone = " ".join(f"{s};" for s in gone_sql(old, "OLD.id"))
        for name, event, body in (("added", "INSERT", mark), ("changed", "UPDATE", mark), ("deleted", "DELETE", gone)):
            out += [
                f"DROP TRIGGER IF EXISTS library_{table}_{name}",
                f"CREATE TRIGGER library_{table}_{name} AFTER {event} ON {table} BEGIN {body} END",
            ]
    # a conversation changes with its messages (a reply streaming in, an edit, a branch deleted)
    for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
        name = f"library_messages_{event.lower()}"
        out += [
            f"DROP TRIGGER IF EXISTS {name}",
            f"CREATE TRIGGER {name} AFTER {event} ON messages BEGIN INSERT OR IGNORE INTO library_dirty"
            f" (kind, item_id, user_id) SELECT 'chat', id, user_id FROM conversations WHERE id = {row}.conversation_id;"
            " END",
        ]
    return out


def match_expression(query: str) -> str:
    """A person's words as an FTS5 query that cannot be a syntax error: each word quoted, as a prefix, all of them
    required. '' when there is no word in it."""
    words = _WORD.findall(query[:QUERY_CHARS])[:QUERY_WORDS]
    return " ".join(f'"{w[:WORD_CHARS]}"*' for w in words)


class LibraryIndex(SQLiteDB):
    """Built after the stores (their tables must exist: the triggers name them)."""

    def __init__(self, db_path: Path) -> None:
        super().__init__(db_path, SCHEMA)
        with self._tx() as db:
            for statement in _triggers():
                db.execute(statement)
            self._reconcile(db)

    def _reconcile(self, db: sqlite3.Connection) -> None:
        """At start: items made before the triggers existed are marked changed, index rows of items deleted
        meanwhile are dropped (a file from an older version, or one whose triggers were missing)."""
        for kind, (table, expr) in TABLES.items():
            kind_of = expr.format(r="t")
            db.execute(
                f"INSERT OR IGNORE INTO library_dirty (kind, item_id, user_id) SELECT {kind_of}, t.id, t.user_id"
                f" FROM {table} t WHERE {kind_of} = ? AND NOT EXISTS"
                " (SELECT 1 FROM library_items i WHERE i.kind = ? AND i.item_id = t.id)",
                (kind, kind),
            )
            stale = db.execute(
                f"SELECT item_id FROM library_items i WHERE kind = ? AND NOT EXISTS"
                f" (SELECT 1 FROM {table} t WHERE t.id = i.item_id AND {kind_of} = ?)",
                (kind, kind),
            ).fetchall()
            for row in stale:
                self._gone(db, kind, row["item_id"])

    def _gone(self, db: sqlite3.Connection, kind: str, item_id: str) -> None:
        for statement in gone_sql(":kind", ":id"):
            db.execute(statement, {"kind": kind, "id": item_id})

    # -- bringing one user's changed items up to date -------------------------------------------------------
    def refresh(self, user_id: str) -> int:
        """Index the user's items changed since the last read; how many were looked at."""
        done = 0
        while self._conn().execute("SELECT 1 FROM library_dirty WHERE user_id = ? LIMIT 1", (user_id,)).fetchone():
            with self._tx() as db:
                rows = db.execute(
                    "SELECT kind, item_id FROM library_dirty WHERE user_id = ? LIMIT ?", (user_id, BATCH)
                ).fetchall()
                if not rows:  # another thread did it meanwhile
                    return done
                by_kind: dict[str, list[str]] = {}
                for row in rows:
                    by_kind.setdefault(row["kind"], []).append(row["item_id"])
                for kind, ids in by_kind.items():
                    if kind not in TABLES:  # never written by our triggers; drop it
                        db.execute("DELETE FROM library_dirty WHERE kind = ?", (kind,))
                        continue
                    entries = sources.read(db, kind, ids)
                    for item_id in ids:
                        entry = entries.get(item_id)
                        if entry is None:
                            self._gone(db, kind, item_id)
                        else:
                            self._put(db, kind, item_id, entry)
                        db.execute("DELETE FROM library_dirty WHERE kind = ? AND item_id = ?", (kind, item_id))
                done += len(rows)
        return done

    def _put(self, db: sqlite3.Connection, kind: str, item_id: str, e: Entry) -> None:
        values = (e.user_id, e.title, e.created_at, e.updated_at, e.snippet, e.size, e.model, e.detail)
        row = db.execute("SELECT id FROM library_items WHERE kind = ? AND item_id = ?", (kind, item_id)).fetchone()
        if row is None:
            cur = db.execute(
                "INSERT INTO library_items (user_id, title, created_at, updated_at, snippet, size, model, detail,"
                " kind, item_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, kind, item_id),
            )
            rowid = int(cur.lastrowid or 0)
        else:
            rowid = row["id"]
            db.execute(
                "UPDATE library_items SET user_id = ?, title = ?, created_at = ?, updated_at = ?, snippet = ?,"
                " size = ?, model = ?, detail = ? WHERE id = ?",
                (*values, rowid),
            )
            db.execute("DELETE FROM library_fts WHERE rowid = ?", (rowid,))
        db.execute("INSERT INTO library_fts (rowid, title, body) VALUES (?, ?, ?)", (rowid, e.title, e.body))

    # -- reading --------------------------------------------------------------------------------------------
    def listing(
        self, user_id: str, kind: str | None, match: str, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        """The user's rows (newest first; with `match`, an FTS5 expression from match_expression, best first with
        the hit in `hit`) and how many there are in all."""
        db = self._conn()
        where, args = "i.user_id = ?", [user_id]
        if kind:
            where, args = where + " AND i.kind = ?", [*args, kind]
        if not match:
            total = db.execute(f"SELECT COUNT(*) FROM library_items i WHERE {where}", args).fetchone()[0]
            rows = db.execute(
                f"SELECT i.* FROM library_items i WHERE {where} ORDER BY i.updated_at DESC, i.id DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
            return [{**dict(r), "hit": ""} for r in rows], int(total)
        # CROSS JOIN keeps the full-text match the outer loop: run once, not once per item of the user
        found = f"FROM library_fts f CROSS JOIN library_items i ON i.id = f.rowid WHERE library_fts MATCH ? AND {where}"
        total = db.execute(f"SELECT COUNT(*) {found}", (match, *args)).fetchone()[0]
        rows = db.execute(
            f"SELECT i.* {found} ORDER BY bm25(library_fts, 4.0, 1.0), i.updated_at DESC LIMIT ? OFFSET ?",
            (match, *args, limit, offset),
        ).fetchall()
        hits = {}
        if rows:  # the marked passage of this page's items only
            ids = [r["id"] for r in rows]
            hits = dict(
                db.execute(
                    "SELECT rowid, snippet(library_fts, -1, '«', '»', '…', 16) FROM library_fts"
                    f" WHERE library_fts MATCH ? AND rowid IN ({','.join('?' * len(ids))})",
                    (match, *ids),
                ).fetchall()
            )
        return [{**dict(r), "hit": hits.get(r["id"], "")} for r in rows], int(total)

    def row(self, user_id: str, kind: str, item_id: str) -> sqlite3.Row | None:
        return (
            self._conn()
            .execute(
                "SELECT i.*, '' AS hit FROM library_items i WHERE user_id = ? AND kind = ? AND item_id = ?",
                (user_id, kind, item_id),
            )
            .fetchone()
        )

    def titles(self, user_id: str, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The titles of those of `refs` that are the user's items now."""
        out = {}
        db = self._conn()
        for kind, item_id in refs:
            row = db.execute(
                "SELECT title FROM library_items WHERE user_id = ? AND kind = ? AND item_id = ?",
                (user_id, kind, item_id),
            ).fetchone()
            if row is not None:
                out[(kind, item_id)] = row["title"]
        return out
