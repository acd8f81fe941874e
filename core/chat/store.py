"""SQLite storage for conversations and their messages. Every query is scoped to a user id, so one
user can never read or change another's conversations even with a guessed id.

Messages form a tree: each has a parent (the message it follows), and siblings are versions of a reply
(regenerate) or branches from an edited message; one sibling of each group is `active`, and the path of
active messages from the root is the conversation as shown and as the model sees it.

WAL with synchronous=NORMAL: each committed write survives a crash or `kill -9` of the server.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.db import SQLiteDB
from core.errors import NotFoundError
from core.quota import reserved

Status = Literal["complete", "streaming", "cut"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    title TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    system_prompt TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_user ON conversations(user_id, updated_at DESC);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'complete' CHECK (status IN ('complete', 'streaming', 'cut')),
    note TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    stats TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    parent_id INTEGER,
    active INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id);
"""

# Files made before messages had parents: each message follows the one before it in its conversation.
BACKFILL_PARENTS = """UPDATE messages SET parent_id = (
    SELECT MAX(p.id) FROM messages p WHERE p.conversation_id = messages.conversation_id AND p.id < messages.id)"""
_LEAF = -1  # add_message's default parent: the last message of the shown path


@dataclass
class StoredMessage:
    id: int
    role: Literal["user", "assistant"]
    content: str
    status: Status = "complete"
    note: str = ""  # why a reply was cut
    model: str = ""
    stats: dict = field(default_factory=dict)
    created_at: float = 0.0
    parent_id: int | None = None
    version: int = 1  # its place among its siblings (1-based) ...
    versions: int = 1  # ... and how many there are: versions of a reply, branches from an edit


@dataclass
class Conversation:
    id: str
    user_id: str
    title: str
    model: str = ""
    system_prompt: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    messages: list[StoredMessage] = field(default_factory=list)  # the shown path, root first


def shown_path(rows: list[sqlite3.Row]) -> list[tuple[sqlite3.Row, int, int]]:
    """(row, version, versions) along the active path of a conversation's message rows (ordered by id): from
    the root, the active child of each message (the newest one when none is marked)."""
    children: dict[int | None, list[sqlite3.Row]] = {}
    for row in rows:
        children.setdefault(row["parent_id"], []).append(row)
    path: list[tuple[sqlite3.Row, int, int]] = []
    parent: int | None = None
    seen: set[int] = set()
    while group := children.get(parent):
        active = [i for i, r in enumerate(group) if r["active"]]
        i = active[-1] if active else len(group) - 1
        row = group[i]
        if row["id"] in seen:  # never loop on a damaged file
            break
        seen.add(row["id"])
        path.append((row, i + 1, len(group)))
        parent = row["id"]
    return path


class ConversationStore(SQLiteDB):
    def __init__(self, db_path: Path) -> None:
        super().__init__(db_path, SCHEMA)
        self.quota: Any = None  # core.quota.StorageQuota, set by StorageQuota.attach
        if self._add_column("messages", "parent_id", "INTEGER"):
            with self._tx() as db:
                db.execute(BACKFILL_PARENTS)
        self._add_column("messages", "active", "INTEGER NOT NULL DEFAULT 1")
        self._conn().execute("CREATE INDEX IF NOT EXISTS messages_by_parent ON messages(conversation_id, parent_id)")

    # -- conversations -------------------------------------------------------------------------
    def create_conversation(
        self, user_id: str, title: str = "New chat", model: str = "", system_prompt: str = ""
    ) -> Conversation:
        now = time.time()
        conv = Conversation(uuid.uuid4().hex, user_id, title.strip() or "New chat", model, system_prompt, now, now)
        with self._tx() as db:
            db.execute(
                "INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conv.id, user_id, conv.title, model, system_prompt, now, now),
            )
        return conv

    def _owned(self, db: sqlite3.Connection, user_id: str, conversation_id: str) -> sqlite3.Row:
        row = db.execute(
            "SELECT * FROM conversations WHERE id = ? AND user_id = ?", (conversation_id, user_id)
        ).fetchone()
        if row is None:
            raise NotFoundError("No such conversation (it may have been deleted)")
        return row

    def get_conversation(self, user_id: str, conversation_id: str) -> Conversation:
        db = self._conn()
        row = self._owned(db, user_id, conversation_id)
        conv = Conversation(**{k: row[k] for k in row.keys()})  # noqa: SIM118 - iterating a sqlite3.Row yields its values
        rows = db.execute("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)).fetchall()
        conv.messages = [
            StoredMessage(
                id=m["id"],
                role=m["role"],
                content=m["content"],
                status=m["status"],
                note=m["note"],
                model=m["model"],
                stats=json.loads(m["stats"]),
                created_at=m["created_at"],
                parent_id=m["parent_id"],
                version=version,
                versions=versions,
            )
            for m, version, versions in shown_path(rows)
        ]
        return conv

    def list_conversations(self, user_id: str, query: str = "", limit: int = 200) -> list[Conversation]:
        """Newest first. `query` matches titles and message text, case-insensitively."""
        db = self._conn()
        if query.strip():
            pattern = "%" + query.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = db.execute(
                """SELECT * FROM conversations c WHERE c.user_id = ? AND (
                       c.title LIKE ? ESCAPE '\\' OR EXISTS (
                           SELECT 1 FROM messages m WHERE m.conversation_id = c.id
                           AND m.content LIKE ? ESCAPE '\\'))
                   ORDER BY c.updated_at DESC LIMIT ?""",
                (user_id, pattern, pattern, limit),
            )
        else:
            rows = db.execute(
                "SELECT * FROM conversations WHERE user_id = ? ORDER BY updated_at DESC LIMIT ?", (user_id, limit)
            )
        return [Conversation(**{k: r[k] for k in r.keys()}) for r in rows]  # noqa: SIM118 - a sqlite3.Row iterates values

    def rename_conversation(self, user_id: str, conversation_id: str, title: str) -> None:
        title = " ".join(title.split())[:200]
        if not title:
            raise ValueError("A conversation needs a non-empty title")
        with self._tx() as db:
            self._owned(db, user_id, conversation_id)
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))

    def update_settings(
        self, user_id: str, conversation_id: str, *, model: str | None = None, system_prompt: str | None = None
    ) -> None:
        with self._tx() as db:
            row = self._owned(db, user_id, conversation_id)
            db.execute(
                "UPDATE conversations SET model = ?, system_prompt = ? WHERE id = ?",
                (
                    row["model"] if model is None else model,
                    row["system_prompt"] if system_prompt is None else system_prompt,
                    conversation_id,
                ),
            )

    def delete_conversation(self, user_id: str, conversation_id: str) -> None:
        with self._tx() as db:
            self._owned(db, user_id, conversation_id)
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    # -- the whole tree, for the library's archive (core/library/archive.py) ------------------------
    def message_tree(self, user_id: str, conversation_id: str) -> tuple[Conversation, list[tuple[StoredMessage, bool]]]:
        """The conversation (its shown path in `messages`) and every message of every branch in the order written,
        each with whether it is the shown one among its siblings."""
        conv = self.get_conversation(user_id, conversation_id)
        rows = (
            self._conn()
            .execute("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,))
            .fetchall()
        )
        tree = [
            (
                StoredMessage(
                    id=m["id"], role=m["role"], content=m["content"], status=m["status"], note=m["note"],
                    model=m["model"], stats=json.loads(m["stats"]), created_at=m["created_at"], parent_id=m["parent_id"],
                ),
                bool(m["active"]),
            )
            for m in rows
        ]  # fmt: skip
        return conv, tree

    def import_conversation(
        self,
        user_id: str,
        *,
        title: str,
        model: str,
        system_prompt: str,
        created_at: float,
        updated_at: float,
        messages: list[tuple[StoredMessage, bool]],
    ) -> Conversation:
        """A conversation brought in whole (a library archive), under a new id, in one transaction within the quota.
        `messages` as message_tree gives them, except that each `parent_id` is the position in `messages` of an
        earlier message (None: a first message); a reply left streaming is kept as cut."""
        adding = sum(len(m.content.encode("utf-8", "surrogatepass")) for m, _ in messages)
        conv_id = uuid.uuid4().hex
        with reserved(self.quota, user_id, adding), self._tx() as db:
            db.execute(
                "INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conv_id, user_id, " ".join(title.split())[:200] or "New chat", model, system_prompt, created_at,
                 updated_at),
            )  # fmt: skip
            ids: list[int] = []
            for m, active in messages:
                if m.parent_id is not None and not 0 <= m.parent_id < len(ids):
                    raise ValueError("a message's parent must come before it")
                cur = db.execute(
                    "INSERT INTO messages (conversation_id, role, content, status, note, model, stats, created_at,"
                    " parent_id, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        conv_id, m.role, m.content, "cut" if m.status == "streaming" else m.status, m.note, m.model,
                        json.dumps(m.stats), m.created_at, None if m.parent_id is None else ids[m.parent_id],
                        int(active),
                    ),
                )  # fmt: skip
                ids.append(int(cur.lastrowid or 0))
        return self.get_conversation(user_id, conv_id)

    # -- messages ------------------------------------------------------------------------------
    # -- quota and retention (core/quota.py) -----------------------------------------------------
    def bytes_used(self, user_id: str) -> int:
        row = (
            self._conn()
            .execute(
                "SELECT COALESCE(SUM(LENGTH(CAST(m.content AS BLOB))), 0) FROM messages m "
                "JOIN conversations c ON c.id = m.conversation_id WHERE c.user_id = ?",
                (user_id,),
            )
            .fetchone()
        )
        return int(row[0])

    def delete_older_than(self, cutoff: float, user_id: str | None = None) -> int:
        """Retention: conversations last changed before `cutoff`, of one user or (None) of everyone."""
        return self._delete_before("conversations", "updated_at", cutoff, user_id)

    def add_message(
        self,
        user_id: str,
        conversation_id: str,
        role: str,
        content: str,
        status: Status = "complete",
        model: str = "",
        parent_id: int | None = _LEAF,
    ) -> int:
        """A message following `parent_id` (default: the last shown message; None: a first message), shown
        from now on in place of its siblings. A user's new message counts toward their quota
        (QuotaExceededError past it: nothing is kept); a reply is always kept as it streams."""
        now = time.time()
        adding = len(content.encode("utf-8", "surrogatepass")) if role == "user" else 0
        with reserved(self.quota, user_id, adding), self._tx() as db:
            self._owned(db, user_id, conversation_id)
            rows = db.execute(
                "SELECT id, parent_id, active FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
            ).fetchall()
            if parent_id == _LEAF:
                path = shown_path(rows)
                parent_id = path[-1][0]["id"] if path else None
            elif parent_id is not None and not any(r["id"] == parent_id for r in rows):
                raise NotFoundError("No such message in this conversation")
            db.execute(
                "UPDATE messages SET active = 0 WHERE conversation_id = ? AND parent_id IS ?",
                (conversation_id, parent_id),
            )
            cur = db.execute(
                "INSERT INTO messages (conversation_id, role, content, status, model, created_at, parent_id, active)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                (conversation_id, role, content, status, model, now, parent_id),
            )
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
            return int(cur.lastrowid or 0)  # always set after an INSERT

    def update_message(
        self,
        user_id: str,
        conversation_id: str,
        message_id: int,
        *,
        content: str,
        status: Status,
        note: str = "",
        stats: dict | None = None,
    ) -> None:
        """Called as a reply streams (status 'streaming') and once at its end."""
        with self._tx() as db:
            self._owned(db, user_id, conversation_id)
            db.execute(
                "UPDATE messages SET content = ?, status = ?, note = ?, stats = ? WHERE id = ? AND conversation_id = ?",
                (content, status, note, json.dumps(stats or {}), message_id, conversation_id),
            )

    def delete_messages_from(self, user_id: str, conversation_id: str, message_id: int) -> None:
        """Delete a message and everything that follows it, in every branch."""
        with self._tx() as db:
            self._owned(db, user_id, conversation_id)
            db.execute(
                """WITH RECURSIVE doomed(id) AS (
                       SELECT id FROM messages WHERE conversation_id = ? AND id = ?
                       UNION SELECT m.id FROM messages m JOIN doomed d ON m.parent_id = d.id)
                   DELETE FROM messages WHERE id IN (SELECT id FROM doomed)""",
                (conversation_id, message_id),
            )

    def show_sibling(self, user_id: str, conversation_id: str, message_id: int, step: int) -> bool:
        """Show the version `step` places from `message_id` among its siblings (-1: the one before) instead of
        it. False when there is none that way; NotFoundError for a message not in this conversation."""
        with self._tx() as db:
            self._owned(db, user_id, conversation_id)
            row = db.execute(
                "SELECT parent_id FROM messages WHERE id = ? AND conversation_id = ?", (message_id, conversation_id)
            ).fetchone()
            if row is None:
                raise NotFoundError("No such message in this conversation")
            ids = [
                r["id"]
                for r in db.execute(
                    "SELECT id FROM messages WHERE conversation_id = ? AND parent_id IS ? ORDER BY id",
                    (conversation_id, row["parent_id"]),
                )
            ]
            target = ids.index(message_id) + step
            if step == 0 or not 0 <= target < len(ids):
                return False
            db.execute(
                "UPDATE messages SET active = (id = ?) WHERE conversation_id = ? AND parent_id IS ?",
                (ids[target], conversation_id, row["parent_id"]),
            )
            return True

    def clear_messages(self, user_id: str, conversation_id: str) -> None:
        with self._tx() as db:
            self._owned(db, user_id, conversation_id)
            db.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))

    def mark_interrupted(self, note: str = "interrupted: the server stopped while replying") -> int:
        """At startup: replies left 'streaming' by a crash are kept, marked as cut."""
        with self._tx() as db:
            return db.execute(
                "UPDATE messages SET status = 'cut', note = ? WHERE status = 'streaming'", (note,)
            ).rowcount

    def set_title_if(self, user_id: str, conversation_id: str, title: str, expected: str) -> bool:
        """Replace the title only while it is still `expected` (a background title never overwrites a rename).
        Whether it did; a conversation gone meanwhile is no error. Its last change time stays: naming it is
        not a change the list should reorder by."""
        title = " ".join(title.split())[:200]
        if not title:
            return False
        with self._tx() as db:
            cur = db.execute(
                "UPDATE conversations SET title = ? WHERE id = ? AND user_id = ? AND title = ?",
                (title, conversation_id, user_id, expected),
            )
            return cur.rowcount > 0
