"""What the library names and shows: an item's ref (kind, id), one row of a listing, a page of rows, and the
"made from" links between items. Plain data, no storage (core/library/service.py fills them)."""

from __future__ import annotations

from dataclasses import dataclass

# Every kind of thing a user makes, in the order the library's filter lists them.
KINDS: tuple[str, ...] = ("chat", "draft", "summary", "image", "audio", "transcript")
KIND_LABELS: dict[str, str] = {
    "chat": "Conversation",
    "draft": "Draft",
    "summary": "Summary",
    "image": "Image",
    "audio": "Audio",
    "transcript": "Transcript",
}


@dataclass(frozen=True)
class ItemRef:
    """One item of one store: its kind (one of KINDS) and its id in that store."""

    kind: str
    id: str


@dataclass(frozen=True)
class LibraryItem:
    """One row of the library. `snippet` is a line of the item's text in plain text (in a search, the hit with the
    matched words marked by « »); `size` the bytes it counts to the quota; `detail` one short line ("12 messages",
    "blog post · 640 words", "3 files", "768×768 · seed 42", "1 min 20 s · jm_kumo")."""

    ref: ItemRef
    title: str
    created_at: float
    updated_at: float
    snippet: str
    size: int
    model: str
    detail: str


@dataclass(frozen=True)
class LibraryPage:
    """A page of a listing: its items, how many match in all, and where the page starts."""

    items: list[LibraryItem]
    total: int
    offset: int


@dataclass(frozen=True)
class Link:
    """One end of a link as seen from an item. `ref` None: not an item (a source file's name, the brief) or an item
    since deleted ("(deleted)" in `label`)."""

    ref: ItemRef | None
    label: str
    relation: str


@dataclass(frozen=True)
class Links:
    """What an item came from and what was made from it."""

    came_from: list[Link]
    made_from_it: list[Link]
