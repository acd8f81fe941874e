"""The library archive's manifest: each kind of item as JSON (everything needed to open it again) and, for an
archive from outside, the check of every field (type, length, range) before anything is written. A check that
fails is an InputError naming the item and the field."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any

from backends.speech.base import Segment
from core import validate
from core.chat.store import Conversation, StoredMessage
from core.condenser.passages import MAX_PASSAGES, DocumentInfo, Passage
from core.condenser.store import StoredSummary
from core.errors import InputError
from core.images.png import to_infotext
from core.images.request import MAX_PIXELS, MAX_PROMPT_CHARS, MAX_SEED, MAX_SIDE
from core.library.items import KINDS
from core.speech.store import AUDIO_FORMATS, SpeechItem
from core.writer.store import Draft

FORMAT = "genai-studio-library"
VERSION = 1
KIND_NAMES = {
    "chat": "a conversation",
    "draft": "a draft",
    "summary": "a summary",
    "image": "an image",
    "audio": "audio",
    "transcript": "a transcript",
}
MAX_ITEMS = 10_000
MAX_LINKS = 20_000
TITLE_CHARS = 200  # what every store keeps
MODEL_CHARS = 500
NOTE_CHARS = 2_000
LONG_TEXT = 2_000_000  # a message, a draft's text, a summary's Markdown
MAX_MESSAGES = 20_000
MAX_VARIANTS = 16
MAX_SOURCES = 100
MAX_SEGMENTS = 200_000
MAX_SECONDS = 24 * 3600.0  # one recording
MAX_DEPTH = 12  # nesting of free-form JSON (a summary's details, a draft's options)
KEY = re.compile(r"[A-Za-z0-9_-]{1,32}")
PARAM_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_FUTURE_S = 86400.0  # clocks differ; a date further ahead than this is not a real one


@dataclass
class Entry:
    """One checked item of an archive: `data` holds its kind's own fields, `file` its member (images, audio)."""

    index: int
    key: str
    kind: str
    title: str
    created_at: float
    updated_at: float
    data: dict[str, Any]
    file: str | None = None

    @property
    def label(self) -> str:
        """How a line of the import report names it: “Title” (conversation)."""
        return f"“{_short(self.title)}” ({KIND_NAMES[self.kind].split(' ', 1)[-1]})"

    @property
    def where(self) -> str:
        """How a refusal names it: Item 3 of the archive (an image, “Title”)."""
        return f"Item {self.index + 1} of the archive ({KIND_NAMES[self.kind]}, “{_short(self.title)}”)"


# -- out: each kind as JSON ----------------------------------------------------------------------------------------
def chat_data(conv: Conversation, tree: list[tuple[StoredMessage, bool]]) -> dict[str, Any]:
    position = {m.id: i for i, (m, _) in enumerate(tree)}
    return {
        "model": conv.model,
        "system_prompt": conv.system_prompt,
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "note": m.note,
                "model": m.model,
                "stats": m.stats,
                "created_at": m.created_at,
                "parent": position.get(m.parent_id) if m.parent_id is not None else None,
                "active": active,
            }
            for m, active in tree
        ],
    }


def draft_data(draft: Draft) -> dict[str, Any]:
    return {
        "template": draft.template,
        "brief": draft.brief,
        "options": draft.options,
        "outline": draft.outline,
        "variants": draft.variants,
        "chosen": draft.chosen,
        "text": draft.text,
        "status": draft.status,
        "note": draft.note,
    }


def summary_data(
    summary: StoredSummary, kept: tuple[list[DocumentInfo], list[Passage]] | None = None
) -> dict[str, Any]:
    """`kept`: its documents as passages, for questions (None when they were not kept)."""
    data: dict[str, Any] = {
        "markdown": summary.markdown,
        "model": summary.model,
        "settings": summary.settings,
        "sources": summary.sources,
        "coverage": summary.coverage,
        "details": summary.details,
    }
    if kept is not None:
        data["documents"] = [{"name": d.name, "kind": d.kind} for d in kept[0]]
        data["passages"] = [[p.doc, p.page, p.section, p.text] for p in kept[1]]
    return data


def image_data(parameters: dict, seed: int, width: int, height: int, model: str) -> dict[str, Any]:
    return {"parameters": parameters, "seed": seed, "width": width, "height": height, "model": model}


def speech_data(item: SpeechItem) -> dict[str, Any]:
    common = {
        "source": item.source,
        "model": item.model,
        "language": item.language,
        "duration": item.duration,
        "stopped": item.stopped,
    }
    if item.kind == "transcript":
        return {**common, "segments": [[s.start, s.end, s.text] for s in item.segments]}
    return {**common, "text": item.text, "voice": item.voice, "fmt": item.fmt}


# -- in: every field checked ---------------------------------------------------------------------------------------
class _Where:
    """Checks of one item's fields; a refusal names the item and the field."""

    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, message: str) -> InputError:
        return InputError(f"{self.label}: {message} Nothing was imported.")

    def _wrap(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            raise self.fail(str(exc)) from None

    def obj(self, name: str, value: Any) -> dict:
        if not isinstance(value, dict):
            raise self.fail(f"{name} must be an object, got {validate.shown(value)}.")
        return value

    def text(self, name: str, value: Any, max_chars: int, *, default: str | None = None) -> str:
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            raise self.fail(f"{name} must be text (a string), got {validate.shown(value)}.")
        return str(self._wrap(validate.text, name, value, max_chars))

    def whole(self, name: str, value: Any, lo: int, hi: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(f"{name} must be a whole number from {lo} to {hi:,}, got {validate.shown(value)}.")
        return int(self._wrap(validate.whole, name, value, lo, hi))

    def number(self, name: str, value: Any, lo: float, hi: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"{name} must be a number, got {validate.shown(value)}.")
        return float(self._wrap(validate.number, name, value, lo, hi))

    def flag(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(f"{name} must be true or false, got {validate.shown(value)}.")
        return value

    def choice(self, name: str, value: Any, choices: tuple[str, ...]) -> str:
        return str(self._wrap(validate.choice, name, value, choices))

    def when(self, name: str, value: Any) -> float:
        """A time (seconds since 1970), not past tomorrow."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= time.time() + _FUTURE_S:
            raise self.fail(
                f"{name} must be a time (seconds since 1970) no later than tomorrow, got {validate.shown(value)}."
            )
        return float(value)

    def plain(self, name: str, value: Any, depth: int = 0) -> Any:
        """Free-form JSON (a summary's details, a draft's options): objects with short text keys, lists, texts,
        finite numbers, true/false and null, nested at most MAX_DEPTH deep."""
        if depth > MAX_DEPTH:
            raise self.fail(f"{name} is nested more than {MAX_DEPTH} levels deep.")
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str) or len(key) > 200:
                    raise self.fail(f"{name} has a field name that is not a short text.")
            return {k: self.plain(f"{name}.{k}", v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self.plain(f"{name}[{i}]", v, depth + 1) for i, v in enumerate(value)]
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(f"{name} must be a finite number.")
        if value is None or isinstance(value, (str, bool, int, float)):
            return value
        raise self.fail(f"{name} holds {validate.shown(value)}.")  # json.loads makes nothing else; kept for safety


def check_manifest(manifest: Any) -> tuple[list[Entry], list[tuple[str, str, str]]]:
    """The archive's items and links ((from key, to key, relation)), each field checked; InputError otherwise."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError("This is not a GenAI Studio library archive (its manifest is not one); nothing was imported.")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError("This library archive has no format version this server knows; nothing was imported.")
    if version > VERSION:
        raise InputError(
            f"This library archive is format version {version}, made by a newer GenAI Studio; this server reads "
            f"version {VERSION}. Update this server, then import it again; nothing was imported."
        )
    items, links = manifest.get("items"), manifest.get("links", [])
    if not isinstance(items, list) or not isinstance(links, list):
        raise InputError("This library archive's manifest has no list of items; nothing was imported.")
    if len(items) > MAX_ITEMS:
        raise InputError(f"This archive has {len(items):,} items; the most is {MAX_ITEMS:,}. Nothing was imported.")
    if len(links) > MAX_LINKS:
        raise InputError(f"This archive has {len(links):,} links; the most is {MAX_LINKS:,}. Nothing was imported.")
    entries = [check_item(i, raw) for i, raw in enumerate(items)]
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        raise InputError("This library archive names two items the same; nothing was imported.")
    files = [e.file for e in entries if e.file]
    if len(set(files)) != len(files):
        raise InputError("This library archive gives two items the same file; nothing was imported.")
    known = set(keys)
    checked_links = []
    for i, raw in enumerate(links):
        where = _Where(f"Link {i + 1} of the archive")
        link = where.obj("the link", raw)
        source, made = link.get("from"), link.get("to")
        if source not in known or made not in known or source == made:
            raise where.fail("it must join two different items of the archive.")
        relation = where.text("relation", link.get("relation"), 64)
        if not relation.strip() or not relation.isprintable():
            raise where.fail("its relation must be a few words on one line.")
        checked_links.append((str(source), str(made), relation))
    return entries, checked_links


def check_item(index: int, raw: Any) -> Entry:
    where = _Where(f"Item {index + 1} of the archive")
    item = where.obj("the item", raw)
    kind = where.choice("kind", item.get("kind"), KINDS)
    title = where.text("title", item.get("title"), TITLE_CHARS)
    where.label = f"Item {index + 1} of the archive ({KIND_NAMES[kind]}, “{_short(title)}”)"
    key = item.get("key")
    if not isinstance(key, str) or not KEY.fullmatch(key):
        raise where.fail("its key must be 1 to 32 letters, digits, - or _.")
    created = where.when("created_at", item.get("created_at"))
    updated = where.when("updated_at", item.get("updated_at", created))
    data = where.obj("data", item.get("data"))
    checked = _CHECKS[kind](where, data)
    file = None
    if kind in ("image", "audio"):
        file = where.text("file", item.get("file"), 100)
        ext = "png" if kind == "image" else checked["fmt"]
        if not re.fullmatch(r"files/[A-Za-z0-9_-]{1,64}\." + ext, file):
            raise where.fail(f"file must be files/<name>.{ext}, got {validate.shown(file)}.")
    return Entry(index, key, kind, title, created, updated, checked, file)


def _short(title: str) -> str:
    one_line = " ".join(title.split())
    return one_line if len(one_line) <= 60 else one_line[:59] + "…"


def _chat(w: _Where, data: dict) -> dict[str, Any]:
    raw = data.get("messages")
    if not isinstance(raw, list):
        raise w.fail(f"messages must be a list, got {validate.shown(raw)}.")
    if len(raw) > MAX_MESSAGES:
        raise w.fail(f"it has {len(raw):,} messages; the most is {MAX_MESSAGES:,}.")
    messages: list[tuple[StoredMessage, bool]] = []
    for i, m in enumerate(raw):
        name = f"messages[{i}]"
        m = w.obj(name, m)
        parent = m.get("parent")
        if parent is not None:
            parent = w.whole(f"{name}.parent", parent, 0, max(i - 1, 0))
            if i == 0:
                raise w.fail(f"{name}.parent must be an earlier message.")
        role = w.choice(f"{name}.role", m.get("role"), ("user", "assistant"))
        message = StoredMessage(
            id=i,
            role="user" if role == "user" else "assistant",
            content=w.text(f"{name}.content", m.get("content"), LONG_TEXT),
            status=_status(w, f"{name}.status", m.get("status", "complete")),
            note=w.text(f"{name}.note", m.get("note"), NOTE_CHARS, default=""),
            model=w.text(f"{name}.model", m.get("model"), MODEL_CHARS, default=""),
            stats=w.plain(f"{name}.stats", w.obj(f"{name}.stats", m.get("stats", {}))),
            created_at=w.when(f"{name}.created_at", m.get("created_at")),
            parent_id=parent,
        )
        messages.append((message, w.flag(f"{name}.active", m.get("active", True))))
    return {
        "model": w.text("model", data.get("model"), MODEL_CHARS, default=""),
        "system_prompt": w.text("system_prompt", data.get("system_prompt"), LONG_TEXT, default=""),
        "messages": messages,
    }


def _status(w: _Where, name: str, value: Any) -> Any:
    return w.choice(name, value, ("complete", "streaming", "cut"))


def _draft(w: _Where, data: dict) -> dict[str, Any]:
    variants = data.get("variants", [])
    if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
        raise w.fail(f"variants must be a list of texts, got {validate.shown(variants)}.")
    if len(variants) > MAX_VARIANTS:
        raise w.fail(f"it has {len(variants)} variants; the most is {MAX_VARIANTS}.")
    return {
        "template": w.text("template", data.get("template"), 200),
        "brief": w.plain("brief", w.obj("brief", data.get("brief", {}))),
        "options": w.plain("options", w.obj("options", data.get("options", {}))),
        "outline": w.text("outline", data.get("outline"), LONG_TEXT, default=""),
        "variants": [w.text(f"variants[{i}]", v, LONG_TEXT) for i, v in enumerate(variants)],
        "chosen": w.whole("chosen", data.get("chosen", 0), 0, max(len(variants) - 1, 0)),
        "text": w.text("text", data.get("text"), LONG_TEXT, default=""),
        "status": _status(w, "status", data.get("status", "complete")),
        "note": w.text("note", data.get("note"), NOTE_CHARS, default=""),
    }


def _summary(w: _Where, data: dict) -> dict[str, Any]:
    sources = data.get("sources", [])
    if not isinstance(sources, list) or len(sources) > MAX_SOURCES:
        raise w.fail(f"sources must be a list of at most {MAX_SOURCES} documents, got {validate.shown(sources)}.")
    for i, source in enumerate(sources):
        w.text(f"sources[{i}].name", w.obj(f"sources[{i}]", source).get("name"), 500)
    return {
        "kept": _kept(w, data),
        "markdown": w.text("markdown", data.get("markdown"), LONG_TEXT),
        "model": w.text("model", data.get("model"), MODEL_CHARS, default=""),
        "settings": w.plain("settings", w.obj("settings", data.get("settings", {}))),
        "sources": w.plain("sources", sources),
        "coverage": w.text("coverage", data.get("coverage"), 20_000, default=""),
        "details": w.plain("details", w.obj("details", data.get("details", {}))),
    }


def _kept(w: _Where, data: dict) -> tuple[list[DocumentInfo], list[Passage]] | None:
    """A summary's documents kept for questions, as passages; None when the archive has none."""
    if data.get("passages") is None:
        return None
    raw_docs, raw = data.get("documents"), data.get("passages")
    if not isinstance(raw_docs, list) or not 1 <= len(raw_docs) <= MAX_SOURCES:
        raise w.fail(f"documents must be a list of 1 to {MAX_SOURCES} documents, got {validate.shown(raw_docs)}.")
    if not isinstance(raw, list) or len(raw) > MAX_PASSAGES:
        raise w.fail(f"passages must be a list of at most {MAX_PASSAGES:,}, got {validate.shown(raw)}.")
    docs = [
        DocumentInfo(
            w.text(f"documents[{i}].name", w.obj(f"documents[{i}]", d).get("name"), 500),
            w.text(f"documents[{i}].kind", d.get("kind"), 32),
        )
        for i, d in enumerate(raw_docs)
    ]
    passages = []
    for i, p in enumerate(raw):
        name = f"passages[{i}]"
        if not isinstance(p, list) or len(p) != 4:
            raise w.fail(f"{name} must be [document, page, section, text], got {validate.shown(p)}.")
        doc = w.whole(f"{name} document", p[0], 0, len(docs) - 1)
        page = None if p[1] is None else w.whole(f"{name} page", p[1], 0, 1_000_000)
        section = None if p[2] is None else w.text(f"{name} section", p[2], 1_000)
        passages.append(Passage(doc, w.text(f"{name} text", p[3], 100_000), page, section))
    return docs, passages


def _image(w: _Where, data: dict) -> dict[str, Any]:
    params = w.obj("parameters", data.get("parameters"))
    if len(params) > 64:
        raise w.fail(f"parameters has {len(params)} fields; the most is 64.")
    for key, value in params.items():
        if not PARAM_KEY.fullmatch(key):
            raise w.fail(f"parameters has a field name that is not a short word: {validate.shown(key)}.")
        if isinstance(value, str):
            w.text(f"parameters.{key}", value, MAX_PROMPT_CHARS)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            w.number(f"parameters.{key}", value, -(2.0**63), 2.0**64)
        elif not isinstance(value, bool):
            raise w.fail(f"parameters.{key} must be a text, a number or true/false, got {validate.shown(value)}.")
    width = w.whole("width", data.get("width"), 1, MAX_SIDE)
    height = w.whole("height", data.get("height"), 1, MAX_SIDE)
    if width * height > MAX_PIXELS:
        raise w.fail(f"it is {width}×{height} pixels; the most is {MAX_PIXELS:,} pixels.")
    seed = w.whole("seed", data.get("seed"), 0, MAX_SEED)
    try:
        to_infotext({"seed": seed, "width": width, "height": height, "model": "unknown", **params})
    except (ValueError, TypeError) as exc:
        raise w.fail(f"its parameters cannot be written into a PNG ({exc}).") from None
    model = w.text("model", data.get("model"), MODEL_CHARS, default="")
    return {"parameters": params, "seed": seed, "width": width, "height": height, "model": model}


def _spoken(w: _Where, data: dict) -> dict[str, Any]:
    source = w.text("source", data.get("source"), 32)
    if not re.fullmatch(r"[a-z_]{1,32}", source):
        raise w.fail(f"source must be a short word, got {validate.shown(source)}.")
    return {
        "source": source,
        "model": w.text("model", data.get("model"), MODEL_CHARS, default=""),
        "language": w.text("language", data.get("language"), 32, default=""),
        "duration": w.number("duration", data.get("duration"), 0.0, MAX_SECONDS),
        "stopped": w.flag("stopped", data.get("stopped", False)),
    }


def _audio(w: _Where, data: dict) -> dict[str, Any]:
    return {
        **_spoken(w, data),
        "text": w.text("text", data.get("text"), LONG_TEXT),
        "voice": w.text("voice", data.get("voice"), 200, default=""),
        "fmt": w.choice("fmt", data.get("fmt"), AUDIO_FORMATS),
    }


def _transcript(w: _Where, data: dict) -> dict[str, Any]:
    raw = data.get("segments")
    if not isinstance(raw, list) or len(raw) > MAX_SEGMENTS:
        raise w.fail(f"segments must be a list of at most {MAX_SEGMENTS:,}, got {validate.shown(raw)}.")
    segments = []
    for i, s in enumerate(raw):
        if not isinstance(s, list) or len(s) != 3:
            raise w.fail(f"segments[{i}] must be [start, end, text], got {validate.shown(s)}.")
        start = w.number(f"segments[{i}] start", s[0], 0.0, MAX_SECONDS)
        end = w.number(f"segments[{i}] end", s[1], start, MAX_SECONDS)
        segments.append(Segment(start, end, w.text(f"segments[{i}] text", s[2], 100_000)))
    return {**_spoken(w, data), "segments": tuple(segments)}


_CHECKS = {
    "chat": _chat,
    "draft": _draft,
    "summary": _summary,
    "image": _image,
    "audio": _audio,
    "transcript": _transcript,
}
