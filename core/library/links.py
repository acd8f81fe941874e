"""The "made from" links between a user's items (library_links in the index's file): recorded by the cross-tab flows
and the archive, read both ways. A deleted end keeps its last title and reads "(deleted)"; a link whose both ends
are gone is dropped by the index's delete triggers (core/library/index.py), so the table never outgrows the items."""

from __future__ import annotations

import time

from core.errors import InputError
from core.library.index import LibraryIndex
from core.library.items import KIND_LABELS, ItemRef, Link

RELATION_CHARS = 80
MAX_LINKS = 20_000  # per user: far above what flows make, a bound on what a script could


def relation_of(relation: object) -> str:
    """A relation from outside: a short line of text."""
    text = " ".join(str(relation).split()) if isinstance(relation, str) else ""
    text = "".join(c for c in text if c.isprintable())
    if not text or len(text) > RELATION_CHARS:
        raise InputError(f"A link's relation is a line of 1 to {RELATION_CHARS} characters.")
    return text


def record(index: LibraryIndex, user: str, source: ItemRef, made: ItemRef, relation: str) -> None:
    """Both ends are the user's items (the caller checked); a link already there is kept as it is."""
    with index._tx() as db:
        count = db.execute("SELECT COUNT(*) FROM library_links WHERE user_id = ?", (user,)).fetchone()[0]
        if count >= MAX_LINKS:
            raise InputError("Your library holds as many links as it can; delete some items first.")
        db.execute(
            "INSERT OR IGNORE INTO library_links (user_id, source_kind, source_id, made_kind, made_id, relation,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (user, source.kind, source.id, made.kind, made.id, relation, time.time()),
        )


def read(index: LibraryIndex, user: str, ref: ItemRef) -> tuple[list[Link], list[Link]]:
    """(came from, made from it) as recorded, oldest first."""
    db = index._conn()
    ends = []
    for mine, other in (("made", "source"), ("source", "made")):
        rows = db.execute(
            f"SELECT {other}_kind AS kind, {other}_id AS id, {other}_title AS gone, relation FROM library_links"
            f" WHERE user_id = ? AND {mine}_kind = ? AND {mine}_id = ? ORDER BY created_at, id",
            (user, ref.kind, ref.id),
        ).fetchall()
        ends.append(rows)
    live = index.titles(user, [(r["kind"], r["id"]) for rows in ends for r in rows if r["gone"] is None])
    out: list[list[Link]] = []
    for rows in ends:
        links = []
        for r in rows:
            title = live.get((r["kind"], r["id"]))
            if r["gone"] is None and title is not None:
                links.append(Link(ItemRef(r["kind"], r["id"]), title, r["relation"]))
            else:
                name = r["gone"] or KIND_LABELS.get(r["kind"], "Item")
                links.append(Link(None, f"{name} (deleted)", r["relation"]))
        out.append(links)
    return out[0], out[1]
