"""One way to open the app's SQLite file: a connection per thread, WAL with synchronous=NORMAL (a
committed write survives a crash or `kill -9`), and short explicit write transactions. A full disk is
turned into StorageFullError here, for every store."""

from __future__ import annotations

import errno
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import StorageFullError

DISK_FULL_MESSAGE = (
    "The server's disk is full, so this could not be saved; nothing already saved was harmed. "
    "Tell whoever runs this server to free some space, then try again."
)


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT from a file write, or SQLite's SQLITE_FULL ("database or disk is full")."""
    if isinstance(exc, StorageFullError):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return False


class SQLiteDB:
    """Base for the stores (conversations, drafts, summaries, images, speech): each passes its own schema;
    they may share one file."""

    def __init__(self, db_path: Path, schema: str) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conn().executescript(schema)  # runs its own transaction

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=10.0, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:  # SQLite may have rolled back already (a failed write on a full disk)
                    db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if is_disk_full(exc):
                raise StorageFullError(DISK_FULL_MESSAGE) from None
            raise

    def _add_column(self, table: str, name: str, definition: str) -> bool:
        """Schema upgrade of a file made by an older version: add `name` when missing. True when added."""
        db = self._conn()
        if any(row["name"] == name for row in db.execute(f"PRAGMA table_info({table})")):
            return False
        try:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")
        except sqlite3.OperationalError as exc:  # another store object (or process) added it meanwhile
            if "duplicate column" not in str(exc):
                raise
            return False
        return True

    def _sum_for_user(self, table: str, column: str, user_id: str) -> int:
        """Quota accounting for a table of per-user rows: the sum of `column` over the user's rows (0 for none).
        `table` and `column` are the store's own names, never input."""
        row = (
            self._conn()
            .execute(f"SELECT COALESCE(SUM({column}), 0) FROM {table} WHERE user_id = ?", (user_id,))
            .fetchone()
        )
        return int(row[0])

    def _delete_before(self, table: str, time_column: str, cutoff: float, user_id: str | None) -> int:
        """Retention for a table of per-user rows: those whose `time_column` is before `cutoff`, of one
        user or (None) of everyone. `table` and `time_column` are the store's own names, never input."""
        where, args = _before(time_column, cutoff, user_id)
        with self._tx() as db:
            return db.execute(f"DELETE FROM {table} WHERE {where}", args).rowcount

    def _delete_files_before(
        self, table: str, time_column: str, cutoff: float, user_id: str | None, files_root: Path
    ) -> int:
        """Retention for a table of per-user rows that each name a file (column `file`, relative to `files_root`;
        '' for none), as _delete_before: the rows go first, in one transaction, then their files (a crash between
        leaves files without rows, which the store's clean_orphans removes, never a row without its file). The
        number of rows deleted."""
        where, args = _before(time_column, cutoff, user_id)
        with self._tx() as db:
            files = [r["file"] for r in db.execute(f"SELECT file FROM {table} WHERE {where}", args)]
            deleted = db.execute(f"DELETE FROM {table} WHERE {where}", args).rowcount
        for file in files:
            if file:
                (files_root / file).unlink(missing_ok=True)
        return deleted


def _before(time_column: str, cutoff: float, user_id: str | None) -> tuple[str, tuple[float | str, ...]]:
    """The WHERE clause and its arguments for rows before `cutoff`, of one user or (None) of everyone."""
    where = f"{time_column} < ?" + (" AND user_id = ?" if user_id is not None else "")
    return where, ((cutoff, user_id) if user_id is not None else (cutoff,))
