"""A user's library as one archive and back: export writes the chosen items (or all) with everything needed to open
them again, their files and the links among them into a zip; import checks an archive from outside whole (zip,
manifest, every file) before anything is kept, then adds each item through its own store (new ids, the user's quota)
and takes back everything it added when one fails. Format: archive_format.py; the zip's checks: archive_zip.py."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.image.base import GeneratedImage
from config import Settings
from core.condenser.passages import DocumentInfo, Passage, PassagesNotKept
from core.errors import BusyError, InputError, NotFoundError, QuotaExceededError
from core.library.archive_format import (
    FORMAT,
    KIND_NAMES,
    KINDS,
    MAX_ITEMS,
    VERSION,
    Entry,
    chat_data,
    check_manifest,
    draft_data,
    image_data,
    speech_data,
    summary_data,
)
from core.library.archive_media import check_audio, decode_png
from core.library.archive_zip import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    MAX_MEMBER_BYTES,
    copy_member,
    open_archive,
    read_member,
    shown_name,
)
from core.library.items import ItemRef
from core.quota import ANONYMOUS_API_USER, MB
from core.writer.store import Draft

log = logging.getLogger(__name__)
EXPORT_TTL_S = 3600.0  # a user's earlier export files are deleted this long after they were made
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ImportReport:
    added: int
    skipped: list[str]  # one line each: the item and why it was left out
    refs: list[ItemRef] = field(default_factory=list)  # the items added, in the archive's order


def _exports_root() -> Path:
    return Path(tempfile.gettempdir()) / "studio-library-exports"


class LibraryArchive:
    def __init__(
        self,
        settings: Settings,
        library: Any,
        *,
        chats: Any,
        drafts: Any,
        summaries: Any,
        images: Any,
        speech: Any,
        passages: Any = None,
    ) -> None:
        """`passages` (core.condenser.passages.PassageStore): a summary's documents kept for questions travel with
        it when given."""
        self.settings, self.library, self.passages = settings, library, passages
        self.chats, self.drafts, self.summaries, self.images, self.speech = chats, drafts, summaries, images, speech
        self._importing: set[str] = set()  # users with an import running: one at a time each
        self._importing_lock = threading.Lock()

    # -- export ----------------------------------------------------------------------------------------------------
    def export(self, user: str, refs: list[ItemRef] | None = None) -> Path:
        """A .zip of `refs` (None: everything the user has) in a private folder of the user's, which keeps the
        user's exports for an hour. NotFoundError for an item that is not the user's."""
        chosen = self._all_refs(user) if refs is None else _checked_refs(refs)
        items: list[dict[str, Any]] = []
        files: list[tuple[Path, str]] = []
        keys: dict[ItemRef, str] = {}
        for n, ref in enumerate(chosen):
            key = f"i{n}"
            entry, path = self._entry(user, ref, key)
            if path is not None:
                if not path.is_file():  # a row whose file a crash took: nothing to open again
                    log.warning("library export: %s %s has no file", ref.kind, ref.id)
                    continue
                files.append((path, entry["file"]))
            items.append(entry)
            keys[ref] = key
        links = []
        for ref, key in keys.items():
            for link in self.library.links(user, ref).made_from_it:
                if link.ref is not None and link.ref in keys:
                    links.append({"from": key, "to": keys[link.ref], "relation": link.relation})
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "app": "GenAI Studio",
            "exported_at": time.time(),
            "items": items,
            "links": links,
        }
        target = self._export_path(user)
        try:
            with zipfile.ZipFile(target, "x", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(MANIFEST, json.dumps(manifest, ensure_ascii=False))
                for path, name in files:
                    packed = zipfile.ZIP_DEFLATED if name.endswith(".wav") else zipfile.ZIP_STORED
                    zf.write(path, name, compress_type=packed)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return target

    def _all_refs(self, user: str) -> list[ItemRef]:
        refs = [ItemRef("chat", c.id) for c in self.chats.list_conversations(user, limit=MAX_ITEMS)]
        refs += [ItemRef("draft", d.id) for d in self.drafts.list(user, limit=MAX_ITEMS)]
        refs += [ItemRef("summary", s.id) for s in self.summaries.list(user, limit=MAX_ITEMS)]
        refs += [ItemRef("image", g.id) for g in self.images.list(user, limit=MAX_ITEMS)]
        refs += [
            ItemRef("audio" if s.kind == "speech" else "transcript", s.id)
            for s in self.speech.list(user, None, limit=MAX_ITEMS)
        ]
        if len(refs) > MAX_ITEMS:
            raise InputError(
                f"Your library has {len(refs):,} items; one archive holds at most {MAX_ITEMS:,}. "
                "Export one kind at a time, or a selection."
            )
        return refs

    def _entry(self, user: str, ref: ItemRef, key: str) -> tuple[dict[str, Any], Path | None]:
        """The manifest's entry for one item, and its file (images, audio)."""
        file: Path | None = None
        if ref.kind == "chat":
            conv, tree = self.chats.message_tree(user, ref.id)
            created, updated, data = conv.created_at, conv.updated_at, chat_data(conv, tree)
        elif ref.kind == "draft":
            draft = self.drafts.get(user, ref.id)
            created, updated, data = draft.created_at, draft.updated_at, draft_data(draft)
        elif ref.kind == "summary":
            summary = self.summaries.get(user, ref.id)
            created = updated = summary.created_at
            data = summary_data(summary, self._kept(user, ref.id))
        elif ref.kind == "image":
            image = self.images.get(user, ref.id)
            created = updated = image.created_at
            data = image_data(image.parameters, image.seed, image.width, image.height, image.model)
            file = image.path
        else:
            item = self.speech.get(user, ref.id)
            if item.kind != ("speech" if ref.kind == "audio" else "transcript"):
                raise NotFoundError("No such recording or transcript (it may have been deleted).")
            created = updated = item.created
            data = speech_data(item)
            file = item.path if ref.kind == "audio" else None
        entry: dict[str, Any] = {
            "key": key,
            "kind": ref.kind,
            "title": self.library.get(user, ref).title,
            "created_at": created,
            "updated_at": updated,
            "data": data,
        }
        if file is not None:
            entry["file"] = f"files/{key}{file.suffix}"
        return entry, file

    def _kept(self, user: str, summary_id: str) -> tuple[list[DocumentInfo], list[Passage]] | None:
        if self.passages is None:
            return None
        try:
            return self.passages.load(user, summary_id)
        except PassagesNotKept:
            return None

    def _export_path(self, user: str) -> Path:
        folder = _exports_root() / hashlib.sha256(user.encode("utf-8")).hexdigest()[:24]
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        cutoff = time.time() - EXPORT_TTL_S
        for old in folder.iterdir():
            try:
                if old.stat().st_mtime < cutoff:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                continue
        place = Path(tempfile.mkdtemp(prefix="export-", dir=folder))
        return place / f"genai-studio-library-{time.strftime('%Y-%m-%d-%H%M')}.zip"

    # -- import ----------------------------------------------------------------------------------------------------
    def import_archive(self, user: str, path: Path, progress: Progress | None = None) -> ImportReport:
        """Every item of the archive at `path` added to the user's library under new ids, with the links among them.
        Items already in the library (same kind and time made: an archive imported twice) and items older than this
        server keeps are skipped and listed. InputError (nothing added) for an archive that is not ours, is damaged
        or hostile, or whose items do not fit the user's quota (QuotaExceededError)."""
        path = Path(path)
        if not path.is_file():
            raise InputError("The archive is no longer on the server; upload it again.")
        with self._importing_lock:
            if user in self._importing:
                raise BusyError("An import of yours is still running; wait for it to finish, then try again.", 5.0)
            self._importing.add(user)
        try:
            return self._import(user, path, progress or (lambda fraction, message: None))
        finally:
            with self._importing_lock:
                self._importing.discard(user)

    def _import(self, user: str, path: Path, report: Progress) -> ImportReport:
        report(0.0, "Checking the archive")
        with open_archive(path, int(self.settings.max_upload_mb * MB)) as zf:
            entries, links = check_manifest(_load_manifest(read_member(zf, MANIFEST, MAX_MANIFEST_BYTES)))
            _match_files(zf, entries)
            todo, skipped = self._plan(user, entries)
            self._check_quota(user, todo, zf)
            scratch = Path(tempfile.mkdtemp(prefix="studio-import-"))
            try:
                audio = self._check_files(zf, todo, scratch, report)
                added = self._add_all(user, zf, todo, audio, report)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        refs = {entry.key: ref for entry, ref in added}
        for source, made, relation in links:
            if source in refs and made in refs:
                try:
                    self.library.link(user, refs[source], refs[made], relation)
                except InputError as exc:
                    skipped.append(f"A link ({shown_name(relation)}) was not kept: {exc}")
        report(1.0, f"Imported {len(added)} item(s)")
        return ImportReport(len(added), skipped, [ref for _, ref in added])

    def _plan(self, user: str, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        """The entries to add, and a line for each one left out: already in the library, or past retention."""
        seen = self._made_times(user)
        hours = self.settings.anon_retention_hours if user == ANONYMOUS_API_USER else 0.0
        days = self.settings.retention_days
        keep_s = min(x for x in (days * 86400.0, hours * 3600.0, float("inf")) if x > 0)
        cutoff = time.time() - keep_s
        todo, skipped = [], []
        for entry in entries:
            stamp = (entry.kind, entry.created_at)
            last_change = entry.updated_at if entry.kind in ("chat", "draft") else entry.created_at
            if stamp in seen:
                skipped.append(f"{entry.label}: already in your library.")
            elif last_change < cutoff:
                kept = f"{days:g} days" if not hours else f"{hours:g} hours"
                skipped.append(f"{entry.label}: older than the {kept} this server keeps items.")
            else:
                seen.add(stamp)
                todo.append(entry)
        return todo, skipped

    def _made_times(self, user: str) -> set[tuple[str, float]]:
        """(kind, time made) of everything the user has: how an item imported before is recognised."""
        times = {("chat", c.created_at) for c in self.chats.list_conversations(user, limit=10**9)}
        times |= {("draft", d.created_at) for d in self.drafts.list(user, limit=10**9)}
        times |= {("summary", s.created_at) for s in self.summaries.list(user, limit=10**9)}
        times |= {("image", g.created_at) for g in self.images.list(user, limit=10**9)}
        times |= {
            ("audio" if s.kind == "speech" else "transcript", s.created) for s in self.speech.list(user, None, 10**9)
        }
        return times

    def _check_quota(self, user: str, todo: list[Entry], zf: zipfile.ZipFile) -> None:
        quota = next(
            (s.quota for s in (self.chats, self.drafts, self.summaries, self.images, self.speech) if s.quota), None
        )
        if quota is None or quota.limit_bytes <= 0:
            return
        need = sum(_size(entry, zf) for entry in todo)
        free, limit = quota.limit_bytes - quota.used(user), quota.limit_bytes / MB
        if need > free:
            raise QuotaExceededError(
                f"This archive's items take {need / MB:,.1f} MB; your library has {max(free, 0) / MB:,.1f} MB free "
                f"of {limit:,.{1 if limit < 10 else 0}f} MB. Nothing was imported: delete some items you no longer need, "
                "or import an archive of fewer items."
            )

    def _check_files(self, zf: zipfile.ZipFile, todo: list[Entry], scratch: Path, report: Progress) -> dict[str, Path]:
        """Every image decoded and every recording probed before anything is kept; the audio, unpacked."""
        audio: dict[str, Path] = {}
        media = [e for e in todo if e.file]
        for n, entry in enumerate(media):
            report(0.05 + 0.45 * n / len(media), f"Checking {entry.label}")
            assert entry.file is not None
            where = entry.where
            if entry.kind == "image":
                decode_png(
                    where, read_member(zf, entry.file, MAX_MEMBER_BYTES), entry.data["width"], entry.data["height"]
                )
            else:
                out = scratch / f"{entry.key}.{entry.data['fmt']}"
                copy_member(zf, entry.file, out, MAX_MEMBER_BYTES)
                check_audio(where, out, entry.data["fmt"])
                audio[entry.key] = out
        return audio

    def _add_all(
        self, user: str, zf: zipfile.ZipFile, todo: list[Entry], audio: dict[str, Path], report: Progress
    ) -> list[tuple[Entry, ItemRef]]:
        """Each entry through its store; on any failure everything added so far is deleted again."""
        added: list[tuple[Entry, ItemRef]] = []
        try:
            for n, entry in enumerate(todo):
                report(0.5 + 0.5 * n / max(len(todo), 1), f"Adding {entry.label}")
                ref = self._add(user, zf, entry, audio)
                added.append((entry, ref))
                title = " ".join(entry.title.split())
                names_itself = entry.kind in ("image", "audio", "transcript")  # the others' stores take the title
                if title and names_itself and self.library.get(user, ref).title != title:
                    self.library.rename(user, ref, title)
        except BaseException:
            for _, ref in reversed(added):
                try:
                    self._delete(user, ref)
                except Exception:
                    log.exception("library import: could not take back %s %s", ref.kind, ref.id)
            raise
        return added

    def _add(self, user: str, zf: zipfile.ZipFile, entry: Entry, audio: dict[str, Path]) -> ItemRef:
        d = entry.data
        if entry.kind == "chat":
            conv = self.chats.import_conversation(
                user, title=entry.title, model=d["model"], system_prompt=d["system_prompt"],
                created_at=entry.created_at, updated_at=entry.updated_at, messages=d["messages"],
            )  # fmt: skip
            return ItemRef("chat", conv.id)
        if entry.kind == "draft":
            draft = Draft(
                "", user, entry.title, d["template"], d["brief"], d["options"], d["outline"], d["variants"],
                d["chosen"], d["text"], d["status"], d["note"], entry.created_at, entry.updated_at,
            )  # fmt: skip
            return ItemRef("draft", self.drafts.import_draft(user, draft).id)
        if entry.kind == "summary":
            summary = self.summaries.save(
                user, entry.title, d["markdown"], model=d["model"], settings=d["settings"], sources=d["sources"],
                coverage=d["coverage"], details=d["details"], created_at=entry.created_at,
            )  # fmt: skip
            if d["kept"] is not None and self.passages is not None:
                try:
                    self.passages.keep(user, summary.id, *d["kept"], created_at=entry.created_at)
                except BaseException:
                    self.summaries.delete(user, summary.id)  # its passages go with it (a trigger)
                    raise
            return ItemRef("summary", summary.id)
        if entry.kind == "image":
            assert entry.file is not None
            image = decode_png(entry.where, read_member(zf, entry.file, MAX_MEMBER_BYTES), d["width"], d["height"])
            kept = self.images.save(
                user, GeneratedImage(image, d["seed"], dict(d["parameters"])), created_at=entry.created_at
            )
            return ItemRef("image", kept.id)
        if entry.kind == "audio":
            item_id, partial = self.speech.partial_path(user, d["fmt"])
            try:
                shutil.copyfile(audio[entry.key], partial)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            item = self.speech.add_speech(
                user, item_id, partial, text=d["text"], source=d["source"], model=d["model"], voice=d["voice"],
                language=d["language"], fmt=d["fmt"], duration=d["duration"], stopped=d["stopped"],
                created=entry.created_at,
            )  # fmt: skip
            return ItemRef("audio", item.id)
        item = self.speech.add_transcript(
            user, title=entry.title, segments=d["segments"], source=d["source"], model=d["model"],
            language=d["language"], duration=d["duration"], stopped=d["stopped"], created=entry.created_at,
        )  # fmt: skip
        return ItemRef("transcript", item.id)

    def _delete(self, user: str, ref: ItemRef) -> None:
        self.library.delete_in_store(user, ref)


def _checked_refs(refs: Any) -> list[ItemRef]:
    if not isinstance(refs, (list, tuple)):
        raise InputError("Choose the items to export.")
    if len(refs) > MAX_ITEMS:
        raise InputError(f"That is {len(refs):,} items; one archive holds at most {MAX_ITEMS:,}.")
    out: list[ItemRef] = []
    for ref in refs:
        if not isinstance(ref, ItemRef) or ref.kind not in KINDS or not isinstance(ref.id, str):
            raise InputError("One of the chosen items is not a library item.")
        if len(ref.id) > 64 or not ref.id:
            raise NotFoundError("No such item (it may have been deleted).")
        if ref not in out:
            out.append(ref)
    return out


def _load_manifest(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError("This library archive's manifest is not UTF-8 text; nothing was imported.") from None
    except RecursionError:
        raise InputError("This library archive's manifest is nested too deeply; nothing was imported.") from None
    except ValueError as exc:
        raise InputError(
            f"This library archive's manifest is not valid JSON ({str(exc)[:100]}); nothing was imported."
        ) from None


def _match_files(zf: zipfile.ZipFile, entries: list[Entry]) -> None:
    """Every file the manifest names is in the archive, and the archive holds nothing else."""
    members = {info.filename for info in zf.infolist()} - {MANIFEST}
    named = {e.file: e for e in entries if e.file}
    extra = sorted(members - named.keys())
    if extra:
        raise InputError(
            f"This archive holds “{shown_name(extra[0])}”, which its manifest does not list; nothing was imported."
        )
    for name, entry in named.items():
        if name not in members:
            raise InputError(f"{entry.where} names {name}, which is not in the archive; nothing was imported.")


def _size(entry: Entry, zf: zipfile.ZipFile) -> int:
    """About the bytes an entry counts to the quota once kept (as each store counts them)."""
    d = entry.data

    def utf8(*texts: str) -> int:
        return sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)

    if entry.kind == "chat":
        return sum(utf8(m.content) for m, _ in d["messages"])
    if entry.kind == "transcript":
        return sum(utf8(s.text) + 24 for s in d["segments"]) * 2
    if entry.kind in ("image", "audio"):
        assert entry.file is not None
        return zf.getinfo(entry.file).file_size + (utf8(d["text"]) if entry.kind == "audio" else 0)
    if entry.kind == "summary" and d["kept"] is not None:
        docs, passages = d["kept"]
        kept = sum(utf8(p.text, p.section or "") + 16 for p in passages) + sum(utf8(x.name) + 32 for x in docs)
        return kept + utf8(json.dumps({k: v for k, v in d.items() if k != "kept"}, ensure_ascii=False), entry.title)
    return utf8(json.dumps(d, ensure_ascii=False), entry.title)


__all__ = ["KIND_NAMES", "ImportReport", "LibraryArchive"]
