"""Opening a library archive someone uploaded before anything in it is read: the upload's size, the zip's member
count from its end record (before Python builds a directory of them), each member's name, kind, size and compression
ratio, and reading one member under a hard cap. Whatever is refused is an InputError saying why."""

from __future__ import annotations

import re
import stat
import struct
import zipfile
import zlib
from collections import Counter
from pathlib import Path
from typing import BinaryIO

from core.errors import InputError

MANIFEST = "manifest.json"
MAX_FILES = 2_000  # members of one archive, the manifest included
MAX_MANIFEST_BYTES = 64 * 2**20  # the manifest as unpacked (every text of every item)
MAX_MEMBER_BYTES = 512 * 2**20  # one file as unpacked (a long WAV)
MAX_TOTAL_BYTES = 2**30  # everything as unpacked
MAX_RATIO = 100  # unpacked / packed, for a member over RATIO_FROM bytes: text packs 3-10x, a zip bomb 1000x
RATIO_FROM = 2**20
FILE_NAME = re.compile(r"files/[A-Za-z0-9_-]{1,64}\.(png|wav|mp3|ogg)")
NOT_ARCHIVE = "This is not a GenAI Studio library archive"
_EOCD = b"PK\x05\x06"
_LOCAL = b"PK\x03\x04"
_EOCD_SEARCH = 22 + 65535  # the end record and the longest comment


def _mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MB"


def shown_name(name: str) -> str:
    """A member's name as a message quotes it: printable, at most 80 characters."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in name)
    return clean if len(clean) <= 80 else clean[:79] + "…"


def _damaged(why: str = "") -> InputError:
    return InputError(
        "This archive is damaged or incomplete (cut off while downloading?)"
        + (f": {why}" if why else "")
        + ". Download or export it again; nothing was imported."
    )


def _declared_count(f: BinaryIO, size: int) -> int:
    """The member count the archive's end record declares, read before zipfile lists the members (a 50 MB upload
    could declare a million tiny ones)."""
    f.seek(max(0, size - _EOCD_SEARCH))
    tail = f.read()
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        f.seek(0)
        if f.read(4) == _LOCAL:
            raise _damaged("its table of contents is missing")
        raise InputError(f"{NOT_ARCHIVE} (it is not a zip file); nothing was imported.")
    (count,) = struct.unpack("<H", tail[at + 10 : at + 12])
    return 65_535 if count == 0xFFFF else int(count)  # 0xFFFF: at least that many (zip64)


def open_archive(path: Path, max_bytes: int) -> zipfile.ZipFile:
    """The archive at `path`, its members checked: count, names (no absolute paths, '..', links, duplicates, only
    the manifest and files/<name>.<png|wav|mp3|ogg>), no encryption, plain or deflated, sizes and ratios within
    the limits. The caller closes it."""
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(
            f"The archive is {_mb(size)}; the most this server takes in one upload is {_mb(max_bytes)}. "
            "Export fewer items at a time (one kind, or a selection); nothing was imported."
        )
    if size == 0:
        raise InputError(f"{NOT_ARCHIVE} (the file is empty); nothing was imported.")
    with open(path, "rb") as f:
        count = _declared_count(f, size)
    if count > MAX_FILES:
        raise InputError(f"This archive has {count:,} files; the most is {MAX_FILES:,}. Nothing was imported.")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, struct.error) as exc:
        raise _damaged(str(exc)[:200]) from None
    try:
        check_members(zf.infolist(), size)
    except BaseException:
        zf.close()
        raise
    return zf


def check_members(infos: list[zipfile.ZipInfo], archive_bytes: int) -> None:
    if len(infos) > MAX_FILES:
        raise InputError(f"This archive has {len(infos):,} files; the most is {MAX_FILES:,}. Nothing was imported.")
    names = Counter(info.filename for info in infos)
    total = 0
    for info in infos:
        name, quoted = info.filename, f"“{shown_name(info.filename)}”"
        if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
            raise InputError(f"This archive holds {quoted}, an absolute path; nothing was imported.")
        if "\\" in name:
            raise InputError(f"This archive holds {quoted}, a name with backslashes; nothing was imported.")
        if ".." in name.split("/"):
            raise InputError(f"This archive holds {quoted}, a name that points outside it; nothing was imported.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise InputError(f"This archive holds {quoted}, a symbolic link; nothing was imported.")
        if names[name] > 1:
            raise InputError(f"This archive holds {quoted} {names[name]} times; nothing was imported.")
        if name != MANIFEST and not FILE_NAME.fullmatch(name):
            raise InputError(
                f"This archive holds {quoted}, which is not a file a GenAI Studio library archive has; "
                "nothing was imported."
            )
        if info.flag_bits & 0x1:
            raise InputError(f"{quoted} in this archive is encrypted; nothing was imported.")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise InputError(f"{quoted} in this archive is packed in a way it does not read; nothing was imported.")
        cap = MAX_MANIFEST_BYTES if name == MANIFEST else MAX_MEMBER_BYTES
        if info.file_size > cap:
            raise InputError(
                f"{quoted} in this archive unpacks to {_mb(info.file_size)}; the most is {_mb(cap)}. "
                "Nothing was imported."
            )
        if info.file_size > RATIO_FROM and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise InputError(
                f"{quoted} in this archive would unpack to {info.file_size // max(info.compress_size, 1):,} times its "
                "packed size, as a zip bomb does; nothing was imported."
            )
        total += info.file_size
    if total > MAX_TOTAL_BYTES:
        raise InputError(
            f"This archive unpacks to {_mb(total)}; the most is {_mb(MAX_TOTAL_BYTES)}. Nothing was imported."
        )
    if total > RATIO_FROM and total > MAX_RATIO * archive_bytes:  # members sharing packed data (overlapping entries)
        raise InputError(
            f"This archive would unpack to {total // archive_bytes:,} times its size, as a zip bomb does; "
            "nothing was imported."
        )
    if MANIFEST not in names:
        raise InputError(f"{NOT_ARCHIVE} (it has no {MANIFEST}); nothing was imported.")


def read_member(zf: zipfile.ZipFile, name: str, cap: int) -> bytes:
    """A member's bytes, refusing past `cap` whatever its header declared (zipfile also stops at the declared size
    and checks the CRC)."""
    out = bytearray()
    try:
        with zf.open(name) as f:
            while chunk := f.read(1 << 20):
                out += chunk
                if len(out) > cap:
                    raise InputError(
                        f"“{shown_name(name)}” in this archive unpacks to more than {_mb(cap)}; nothing was imported."
                    )
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, struct.error) as exc:
        raise _damaged(f"“{shown_name(name)}” cannot be unpacked ({str(exc)[:120]})") from None
    return bytes(out)


def copy_member(zf: zipfile.ZipFile, name: str, out: Path, cap: int) -> int:
    """A member written to the new file `out` (streamed, under `cap`); its size."""
    written = 0
    try:
        with zf.open(name) as f, open(out, "xb") as dest:
            while chunk := f.read(1 << 20):
                written += len(chunk)
                if written > cap:
                    raise InputError(
                        f"“{shown_name(name)}” in this archive unpacks to more than {_mb(cap)}; nothing was imported."
                    )
                dest.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, struct.error) as exc:
        raise _damaged(f"“{shown_name(name)}” cannot be unpacked ({str(exc)[:120]})") from None
    return written
