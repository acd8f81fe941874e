"""The library: one view of everything a user made across the stores (conversations, drafts, summaries, images,
audio, transcripts), newest first or found by full-text search (SQLite FTS5, core/library/index.py), renamed or
deleted through each store's own API, and the "made from" links between items. Per user strictly: every ref from
outside is checked before use, and another user's item is indistinguishable from none. No gradio."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from config import Settings
from core.errors import InputError, NotFoundError
from core.library import links as link_table
from core.library.index import LibraryIndex, match_expression
from core.library.items import KINDS, ItemRef, LibraryItem, LibraryPage, Link, Links
from core.library.sources import cut

TITLE_CHARS = 200
MAX_PAGE = 200
MAX_OFFSET = 1_000_000
MAX_DELETE = 10_000
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
NOT_FOUND = "That item is not in your library (it may have been deleted)."


def check_ref(ref: object) -> ItemRef:
    """A ref from outside: a known kind (else InputError) and an id that could be one (else NotFoundError)."""
    if not isinstance(ref, ItemRef) or not isinstance(ref.kind, str) or ref.kind not in KINDS:
        raise InputError(f"An item's kind is one of: {', '.join(KINDS)}.")
    if not isinstance(ref.id, str) or not _ID.fullmatch(ref.id):
        raise NotFoundError(NOT_FOUND)
    return ref


def clean_title(title: object) -> str:
    text = " ".join(title.split()) if isinstance(title, str) else ""
    text = "".join(c for c in text if c.isprintable())
    if not text or len(text) > TITLE_CHARS:
        raise InputError(f"A title needs 1 to {TITLE_CHARS} characters.")
    return text


def _number(value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputError(f"{what} must be a whole number.")
    try:
        number = int(value)
    except (ValueError, OverflowError):
        raise InputError(f"{what} must be a whole number.") from None
    return min(max(number, low), high)


def _item(row: sqlite3.Row | dict[str, Any]) -> LibraryItem:
    snippet = " ".join(row["hit"].split()) if row["hit"] else row["snippet"]
    return LibraryItem(
        ItemRef(row["kind"], row["item_id"]), row["title"], row["created_at"], row["updated_at"], snippet,
        row["size"], row["model"], row["detail"],
    )  # fmt: skip


class LibraryService:
    def __init__(
        self, settings: Settings, db_path: Path, *, chats: Any, drafts: Any, summaries: Any, images: Any, speech: Any
    ) -> None:
        """Built after the stores (their tables must exist); they share `db_path`."""
        self.settings = settings
        self.db_path = Path(db_path)
        self.chats, self.drafts, self.summaries, self.images, self.speech = chats, drafts, summaries, images, speech
        self.index = LibraryIndex(self.db_path)

    # -- reading --------------------------------------------------------------------------------------------
    def items(
        self, user: str, kind: str | None = None, query: str = "", limit: int = 50, offset: int = 0
    ) -> LibraryPage:
        """Newest first (last changed); with a query, the items holding every word of it (as a word's start), in
        their titles or anywhere in their text, best match first, with the hit marked « » in the snippet."""
        if kind is not None and kind != "" and (not isinstance(kind, str) or kind not in KINDS):
            raise InputError(f"Show one kind of: {', '.join(KINDS)}, or all.")
        limit = _number(limit, 1, MAX_PAGE, "The page size")
        offset = _number(offset, 0, MAX_OFFSET, "Where the page starts")
        match = match_expression(query) if isinstance(query, str) else ""
        self.index.refresh(user)
        rows, total = self.index.listing(user, kind or None, match, limit, offset)
        return LibraryPage([_item(r) for r in rows], total, offset)

    def get(self, user: str, ref: ItemRef) -> LibraryItem:
        ref = check_ref(ref)
        self.index.refresh(user)
        row = self.index.row(user, ref.kind, ref.id)
        if row is None:
            raise NotFoundError(NOT_FOUND)
        return _item(row)

    # -- changing -------------------------------------------------------------------------------------------
    def rename(self, user: str, ref: ItemRef, title: str) -> LibraryItem:
        """The item's own title in its store, so its tab shows the new name too."""
        ref = check_ref(ref)
        title = clean_title(title)
        self.get(user, ref)
        try:
            if ref.kind == "chat":
                self.chats.rename_conversation(user, ref.id, title)
            elif ref.kind == "draft":
                self.drafts.rename(user, ref.id, title)
            elif ref.kind == "summary":
                self.summaries.rename(user, ref.id, title)
            elif ref.kind == "image":
                self.images.rename(user, ref.id, title)
            else:
                self.speech.rename(user, ref.id, title)
        except LookupError:  # deleted meanwhile
            raise NotFoundError(NOT_FOUND) from None
        return self.get(user, ref)

    def delete(self, user: str, refs: list[ItemRef]) -> int:
        """Each through its store's own delete (files too). Every ref is checked first: one that is not the user's
        item deletes nothing (NotFoundError). The number deleted (one deleted meanwhile is not counted)."""
        if not isinstance(refs, list | tuple) or len(refs) > MAX_DELETE:
            raise InputError(f"Delete 1 to {MAX_DELETE:,} items at a time.")
        wanted = list(dict.fromkeys(check_ref(r) for r in refs))
        for ref in wanted:
            self.get(user, ref)
        deleted = 0
        for ref in wanted:
            try:
                self.delete_in_store(user, ref)
            except LookupError:
                continue
            deleted += 1
        return deleted

    # -- links ----------------------------------------------------------------------------------------------
    def delete_in_store(self, user: str, ref: ItemRef) -> None:
        """Delete one item of the user's through its own store (files too), with no checks: for callers that
        checked `ref` already (delete above; the archive undoing a failed import)."""
        if ref.kind == "chat":
            self.chats.delete_conversation(user, ref.id)
        elif ref.kind == "draft":
            self.drafts.delete(user, ref.id)
        elif ref.kind == "summary":
            self.summaries.delete(user, ref.id)
        elif ref.kind == "image":
            self.images.delete(user, ref.id)
        else:
            self.speech.delete(user, ref.id)

    def link(self, user: str, source: ItemRef, made: ItemRef, relation: str) -> None:
        """Record that `made` was made from `source` (both the user's items)."""
        source, made = check_ref(source), check_ref(made)
        relation = link_table.relation_of(relation)
        if source == made:
            raise InputError("An item cannot be made from itself.")
        self.get(user, source)
        self.get(user, made)
        link_table.record(self.index, user, source, made, relation)

    def links(self, user: str, ref: ItemRef) -> Links:
        """What the item came from (its recorded sources, a summary's source files, a draft's brief) and what was
        made from it."""
        item = self.get(user, ref)
        came_from, made = link_table.read(self.index, user, item.ref)
        try:
            carried = self._carried(user, item.ref)
        except LookupError:  # deleted meanwhile
            carried = []
        return Links(carried + came_from, made)

    def _carried(self, user: str, ref: ItemRef) -> list[Link]:
        if ref.kind == "summary":
            sources = self.summaries.get(user, ref.id).sources
            names = [str(s.get("name", "")) for s in sources if isinstance(s, dict)]
            return [Link(None, name, "source file") for name in names if name]
        if ref.kind == "draft":
            brief = self.drafts.get(user, ref.id).brief
            values = [" ".join(str(v).split()) for v in brief.values() if str(v).strip()] if brief else []
            topic = " ".join(str(brief.get("topic", "")).split()) if brief else ""
            if topic or values:
                return [Link(None, f"Brief: {cut(topic or values[0], 160)}", "brief")]
        return []
