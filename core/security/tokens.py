"""Per-user API tokens. A token is shown once when made; only its SHA-256 is stored, so a copy of the
database does not hand out working tokens."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from core.db import SQLiteDB

PREFIX = "gs_"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    digest TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    hint TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    last_used REAL
);
CREATE INDEX IF NOT EXISTS api_tokens_user ON api_tokens(user_id);
"""
MAX_TOKENS_PER_USER = 20


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    digest: str
    label: str
    hint: str  # the token's last characters, to tell them apart
    created: float
    last_used: float | None


class TokenStore(SQLiteDB):
    def __init__(self, db_path: Path) -> None:
        super().__init__(db_path, _SCHEMA)

    def create(self, user_id: str, label: str = "") -> str:
        """A new token for `user_id`, returned once. Older tokens beyond the per-user cap are revoked."""
        if not user_id:
            raise ValueError("a token needs a user")
        token = PREFIX + secrets.token_urlsafe(32)
        with self._tx() as db:
            db.execute(
                "INSERT INTO api_tokens(digest, user_id, label, hint, created) VALUES (?,?,?,?,?)",
                (_digest(token), user_id, label[:80], token[-4:], time.time()),
            )
            db.execute(
                "DELETE FROM api_tokens WHERE user_id = ? AND digest NOT IN (SELECT digest FROM "
                "api_tokens WHERE user_id = ? ORDER BY created DESC LIMIT ?)",
                (user_id, user_id, MAX_TOKENS_PER_USER),
            )
        return token

    def resolve(self, token: str | None) -> str | None:
        """The user a token belongs to, or None. Malformed input is simply not a token."""
        if not token or not isinstance(token, str) or not token.startswith(PREFIX) or len(token) > 200:
            return None
        digest = _digest(token)
        row = self._conn().execute("SELECT user_id, last_used FROM api_tokens WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            return None
        now = time.time()
        if row["last_used"] is None or now - row["last_used"] > 60:  # "last used", to the minute: few writes
            with self._tx() as db:
                db.execute("UPDATE api_tokens SET last_used = ? WHERE digest = ?", (now, digest))
        return row["user_id"]

    def list(self, user_id: str) -> list[TokenInfo]:
        rows = (
            self._conn()
            .execute(
                "SELECT digest, label, hint, created, last_used FROM api_tokens "
                "WHERE user_id = ? ORDER BY created DESC",
                (user_id,),
            )
            .fetchall()
        )
        return [TokenInfo(r["digest"], r["label"], r["hint"], r["created"], r["last_used"]) for r in rows]

    def revoke_all(self, user_id: str) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM api_tokens WHERE user_id = ?", (user_id,)).rowcount


class ApiAccess:
    """What the page offers about tokens: make one (shown once), list them, revoke them all."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store

    def issue(self, user_id: str) -> str:
        return self.store.create(user_id, "made in the app")

    def describe(self, user_id: str) -> str:
        tokens = self.store.list(user_id)
        if not tokens:
            return "You have no API tokens."
        lines = [f"You have {len(tokens)} API token(s):"]
        for t in tokens:
            used = time.strftime("%Y-%m-%d %H:%M", time.localtime(t.last_used)) if t.last_used else "never"
            lines.append(
                f"- ending in `…{t.hint}`, made {time.strftime('%Y-%m-%d %H:%M', time.localtime(t.created))}, "
                f"last used {used}"
            )
        return "\n".join(lines)

    def revoke_all(self, user_id: str) -> int:
        return self.store.revoke_all(user_id)


def main(argv: list[str] | None = None) -> int:
    """`python -m core.security.tokens create USER [LABEL]` prints a new token for USER (a login name
    under STUDIO_AUTH); `revoke USER` removes all of theirs. Uses STUDIO_DATA_DIR like the app."""
    import argparse

    from config import Settings

    parser = argparse.ArgumentParser(prog="python -m core.security.tokens")
    sub = parser.add_subparsers(dest="cmd", required=True)
    make = sub.add_parser("create", help="make a token for a user and print it")
    make.add_argument("user")
    make.add_argument("label", nargs="?", default="")
    rev = sub.add_parser("revoke", help="revoke every token of a user")
    rev.add_argument("user")
    args = parser.parse_args(argv)
    store = TokenStore(Settings.from_env().db_path)
    user_id = args.user if args.user.startswith(("user:", "browser:", "api:")) else f"user:{args.user}"
    if args.cmd == "create":
        print(store.create(user_id, args.label))
    else:
        print(f"revoked {store.revoke_all(user_id)} token(s) of {user_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
