"""What the library indexes of each kind, read straight from its store's table in the shared SQLite file: one Entry
per item (title, times, the line shown, bytes, model, the detail line, and the whole text searched). One reader per
kind; the stores' own APIs stay the way items are changed (core/library/service.py)."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.chat.store import shown_path

SNIPPET_CHARS = 200
BODY_CHARS = 1_000_000  # what one item gives the search: its first million characters
_MARKUP = re.compile(r"^[\s#>*\-+|`]+|\[\^?\d+\]|[*_`]+")


@dataclass(frozen=True)
class Entry:
    user_id: str
    title: str
    created_at: float
    updated_at: float
    snippet: str
    size: int
    model: str
    detail: str
    body: str


def first_line(text: str, chars: int = SNIPPET_CHARS) -> str:
    """The first line with words in it, as plain text, cut at a word to `chars`."""
    for line in text.splitlines():
        plain = " ".join(_MARKUP.sub(" ", line).split())
        if any(c.isalnum() for c in plain):
            return cut(plain, chars)
    return ""


def cut(text: str, chars: int) -> str:
    text = " ".join(text.split())
    if len(text) <= chars:
        return text
    return text[: chars - 1].rsplit(" ", 1)[0] + "…"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def duration(seconds: float) -> str:
    """A duration as read: 45 s, 1 min 20 s, 1 h 2 min."""
    s = max(0, round(float(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _words(text: str) -> int:
    return len(text.split())


def _json(value: str, default: Any) -> Any:
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return default


def _strings(value: Any) -> list[str]:
    """Every string inside a JSON value (a brief, an image's parameters), keys left out."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [str(value)]
    return []


def _marks(ids: Sequence[str]) -> str:
    return ",".join("?" * len(ids))


def _chats(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, Entry]:
    convs = db.execute(f"SELECT * FROM conversations WHERE id IN ({_marks(ids)})", tuple(ids)).fetchall()
    messages: dict[str, list[sqlite3.Row]] = {c["id"]: [] for c in convs}
    for m in db.execute(
        "SELECT id, conversation_id, role, content, model, parent_id, active FROM messages"
        f" WHERE conversation_id IN ({_marks(ids)}) ORDER BY id",
        tuple(ids),
    ):
        messages[m["conversation_id"]].append(m)
    out = {}
    for c in convs:
        rows = messages[c["id"]]
        shown = [r for r, _, _ in shown_path(rows)]
        asked = next((r["content"] for r in shown if r["role"] == "user"), "")
        model = c["model"] or next((r["model"] for r in reversed(shown) if r["model"]), "")
        out[c["id"]] = Entry(
            c["user_id"], c["title"], c["created_at"], c["updated_at"],
            first_line(asked or (shown[0]["content"] if shown else "")),
            sum(len(r["content"].encode("utf-8", "surrogatepass")) for r in rows), model,
            plural(len(shown), "message"), "\n".join(r["content"] for r in rows)[:BODY_CHARS],
        )  # fmt: skip
    return out


def _drafts(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, Entry]:
    out = {}
    for d in db.execute(
        "SELECT id, user_id, title, template, brief, options, text, created_at, updated_at, size FROM writer_drafts"
        f" WHERE id IN ({_marks(ids)})",
        tuple(ids),
    ):
        brief, options = _json(d["brief"], {}), _json(d["options"], {})
        model = options.get("model", "") if isinstance(options, dict) else ""
        topic = brief.get("topic", "") if isinstance(brief, dict) else ""
        out[d["id"]] = Entry(
            d["user_id"], d["title"], d["created_at"], d["updated_at"],
            first_line(d["text"]) or cut(str(topic), SNIPPET_CHARS), int(d["size"]), str(model or ""),
            f"{d['template'].replace('_', ' ')} · {plural(_words(d['text']), 'word')}",
            "\n".join([d["text"], *_strings(brief)])[:BODY_CHARS],
        )  # fmt: skip
    return out


def _summaries(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, Entry]:
    out = {}
    for s in db.execute(
        f"SELECT id, user_id, title, model, sources, markdown, created_at, size FROM summaries WHERE id IN ({_marks(ids)})",
        tuple(ids),
    ):
        sources = _json(s["sources"], [])
        names = [str(x.get("name", "")) for x in sources if isinstance(x, dict)] if isinstance(sources, list) else []
        out[s["id"]] = Entry(
            s["user_id"], s["title"], s["created_at"], s["created_at"],
            first_line("\n".join(line for line in s["markdown"].splitlines() if not line.lstrip().startswith("#"))),
            int(s["size"]), s["model"], plural(len(names), "file"), "\n".join([s["markdown"], *names])[:BODY_CHARS],
        )  # fmt: skip
    return out


def image_title(title: str, prompt: str) -> str:
    """An image's own title, else the first words of its prompt."""
    return title or cut(first_line(prompt, 400), 80) or "Image"


def _images(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, Entry]:
    out = {}
    for i in db.execute(
        "SELECT id, user_id, title, parameters, seed, width, height, model, created_at, bytes FROM images"
        f" WHERE id IN ({_marks(ids)})",
        tuple(ids),
    ):
        params = _json(i["parameters"], {})
        params = params if isinstance(params, dict) else {}
        prompt = str(params.get("prompt", ""))
        out[i["id"]] = Entry(
            i["user_id"], image_title(i["title"], prompt), i["created_at"], i["created_at"],
            first_line(prompt), int(i["bytes"]), i["model"], f"{i['width']}×{i['height']} · seed {i['seed']}",
            "\n".join([prompt, *_strings({k: v for k, v in params.items() if k != "prompt"})])[:BODY_CHARS],
        )  # fmt: skip
    return out


def _speech(db: sqlite3.Connection, ids: Sequence[str], kind: str) -> dict[str, Entry]:
    """Audio (`kind` "speech") or transcripts: an id of the other kind is not one of these."""
    out = {}
    for s in db.execute(
        "SELECT id, user_id, kind, title, created_at, model, voice, language, text, duration, bytes FROM speech_items"
        f" WHERE kind = ? AND id IN ({_marks(ids)})",
        (kind, *ids),
    ):
        who = s["voice"] if s["kind"] == "speech" else plural(_words(s["text"]), "word")
        out[s["id"]] = Entry(
            s["user_id"], s["title"], s["created_at"], s["created_at"], first_line(s["text"]), int(s["bytes"]),
            s["model"], f"{duration(s['duration'])} · {who}" if who else duration(s["duration"]),
            s["text"][:BODY_CHARS],
        )  # fmt: skip
    return out


def _audio(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, Entry]:
    return _speech(db, ids, "speech")


def _transcripts(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, Entry]:
    return _speech(db, ids, "transcript")


# kind -> (its table, the SQL that names an item's library kind from a row `r` of it, the reader)
Reader = Callable[[sqlite3.Connection, Sequence[str]], dict[str, Entry]]
SPEECH_KIND = "CASE {r}.kind WHEN 'transcript' THEN 'transcript' ELSE 'audio' END"
TABLES: dict[str, tuple[str, str]] = {
    "chat": ("conversations", "'chat'"),
    "draft": ("writer_drafts", "'draft'"),
    "summary": ("summaries", "'summary'"),
    "image": ("images", "'image'"),
    "audio": ("speech_items", SPEECH_KIND),
    "transcript": ("speech_items", SPEECH_KIND),
}
READERS: dict[str, Reader] = {
    "chat": _chats,
    "draft": _drafts,
    "summary": _summaries,
    "image": _images,
    "audio": _audio,
    "transcript": _transcripts,
}


def read(db: sqlite3.Connection, kind: str, ids: Sequence[str]) -> dict[str, Entry]:
    """The entries of those of the items `ids` of `kind` that exist, by id."""
    return READERS[kind](db, ids) if ids else {}
