"""Document extraction with provenance: the text of an uploaded PDF, DOCX, TXT, Markdown or HTML file
(or pasted text) cut into segments that know their page or section. Every file is parsed in a child
process (core/condenser/worker.py) under a wall-clock timeout and a memory cap, so a hostile or broken
file costs one request, never the app; each way a file can fail has its own error and message."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Literal

from core.condenser import worker as document_worker

log = logging.getLogger(__name__)

Kind = Literal["pdf", "docx", "txt", "markdown", "html"]
WORKER = Path(document_worker.__file__).resolve()
EXTENSIONS: dict[str, Kind] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".txt": "txt",
    ".text": "txt",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
}
KIND_LABELS = {"pdf": "PDF", "docx": "Word (.docx)", "txt": "text", "markdown": "Markdown", "html": "HTML"}
_WORKER_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TESSDATA_PREFIX", "SYSTEMROOT")
OCR_INSTALL_HINT = (
    "Debian/Ubuntu: `sudo apt-get install tesseract-ocr tesseract-ocr-eng`; macOS: `brew install tesseract`"
)


@dataclass(frozen=True)
class Segment:
    """A stretch of text and where it came from: a PDF page, or a section (a heading, or a line
    range for plain text)."""

    text: str
    page: int | None = None
    section: str | None = None


@dataclass
class ExtractedDocument:
    name: str
    kind: Kind
    segments: list[Segment]
    page_count: int | None = None
    encoding: str | None = None  # for decoded text formats (txt, markdown, html)
    ocr_used: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def full_text(self) -> str:
        return "\n\n".join(s.text for s in self.segments)

    @property
    def word_count(self) -> int:
        return sum(len(s.text.split()) for s in self.segments)

    @property
    def char_count(self) -> int:
        return sum(len(s.text) for s in self.segments)

    def locator(self, segment: Segment) -> str:
        """How a citation names the segment: "p. 3", the section name, or the document name when the
        text stands before any heading."""
        if segment.page is not None:
            return f"p. {segment.page}"
        return segment.section or self.name

    def locators(self) -> list[str]:
        """Every locator a citation may use, in document order (a citation naming anything else
        points nowhere)."""
        seen: dict[str, None] = {}
        for segment in self.segments:
            seen.setdefault(self.locator(segment), None)
        return list(seen)


@dataclass(frozen=True)
class ExtractionLimits:
    max_bytes: int = 50 * 1024 * 1024  # refused before any parsing
    max_pages: int = 2000
    max_chars: int = 5_000_000  # extracted text
    max_unpacked_bytes: int = 256 * 1024 * 1024  # sum of a DOCX's members once inflated
    max_zip_members: int = 10_000
    timeout_s: float = 120.0  # wall clock for the whole parse, OCR included
    memory_mb: int = 1024  # address space of the parser process (RLIMIT_AS)
    ocr: bool = True  # read scanned PDFs with tesseract when it is installed
    ocr_languages: str = "eng"  # tesseract language codes joined by '+', e.g. "eng+deu"
    ocr_max_pages: int = 20
    ocr_dpi: int = 300


# --- errors -----------------------------------------------------------------------------------------


class DocumentError(ValueError):
    """A file that cannot be summarised; str(error) tells the user why and what to do about it."""

    code = "document_error"

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail  # technical cause, for logs


class EmptyDocument(DocumentError):
    code = "empty"


class EncryptedDocument(DocumentError):
    code = "encrypted"

    def __init__(
        self,
        message: str,
        *,
        detail: str | None = None,
        opens_with_password: bool = False,
        wrong_password: bool = False,
    ) -> None:
        super().__init__(message, detail=detail)
        self.opens_with_password = opens_with_password  # a PDF: the reader opens it when given its password
        self.wrong_password = wrong_password  # a password was given, and it does not open the file


class CorruptDocument(DocumentError):
    code = "corrupt"


class MislabelledDocument(DocumentError):
    code = "mislabelled"

    def __init__(self, message: str, *, declared: str, detected: str, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.declared = declared
        self.detected = detected


class UnsupportedType(DocumentError):
    code = "unsupported_type"


class OversizeDocument(DocumentError):
    code = "oversize"


class ImageOnlyDocument(DocumentError):
    code = "image_only"


class ParserTimeout(DocumentError):
    code = "parser_timeout"


class ParserCrashed(DocumentError):
    code = "parser_crashed"


class ParserOutOfMemory(ParserCrashed):
    code = "parser_out_of_memory"


class ExtractionCancelled(DocumentError):
    code = "cancelled"


# --- file type --------------------------------------------------------------------------------------

_MAGIC: list[tuple[bytes, str]] = [
    (b"%PDF-", "pdf"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole2"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"\x1f\x8b", "gzip"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"{\\rtf", "rtf"),
    (b"\x7fELF", "executable"),
]  # only signatures that plain text cannot start with by accident
DESCRIPTIONS = {
    "pdf": "a PDF document",
    "zip": "a ZIP archive",
    "ole2": "an old-style Office (OLE2) file",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "gif": "a GIF image",
    "tiff": "a TIFF image",
    "webp": "a WebP image",
    "gzip": "a gzip archive",
    "7z": "a 7-Zip archive",
    "rar": "a RAR archive",
    "rtf": "an RTF document",
    "executable": "a program",
    "html": "an HTML web page",
    "text": "plain text",
    "binary": "unrecognised binary data",
}
_BINARY = {"pdf", "zip", "ole2", "png", "jpeg", "gif", "tiff", "webp", "gzip", "7z", "rar", "executable"}


def kind_for_name(name: str) -> Kind:
    suffix = Path(name).suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    shown = suffix or "files without an extension"
    hint = " Save it as .docx first." if suffix == ".doc" else ""
    raise UnsupportedType(
        f"“{_short(name)}”: {shown} files cannot be read.{hint} "
        "Upload a PDF, Word (.docx), text, Markdown or HTML file."
    )


def sniff(head: bytes) -> str:
    """What the first bytes of a file say it is: a key of DESCRIPTIONS."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if start.startswith((b"<!doctype html", b"<html")) or (start.startswith(b"<") and b"<html" in start[:1024]):
        return "html"
    if b"\x00" in head[:4096] and document_worker.utf16_order(head[:4096]) is None:
        return "binary"
    return "text"


def _check_content(name: str, kind: Kind, head: bytes) -> None:
    detected = sniff(head)
    if kind == "pdf":
        ok = b"%PDF-" in head[:1024]  # the spec tolerates junk before the header
    elif kind == "docx":
        ok = detected in ("zip", "ole2")  # OLE2: a password-protected .docx (the worker tells)
    else:
        ok = detected not in _BINARY and detected != "binary"
    if not ok:
        declared = Path(name).suffix.lower() or kind
        what = DESCRIPTIONS.get(detected, detected)
        raise MislabelledDocument(
            f"“{_short(name)}” is named {declared} but is actually {what}, so it cannot be read as "
            f"{KIND_LABELS[kind]}. Check that you uploaded the right file, or give it the right extension.",
            declared=kind,
            detected=detected,
        )


# --- extraction -------------------------------------------------------------------------------------


def extract_document(
    path: str | os.PathLike[str],
    original_name: str,
    limits: ExtractionLimits = ExtractionLimits(),
    *,
    password: str | None = None,
    cancel: threading.Event | None = None,
) -> ExtractedDocument:
    """Read one uploaded file. `original_name` (what the user called it) decides the expected type;
    the content must agree. Raises a DocumentError subclass; never leaves a process or file behind."""
    kind = kind_for_name(original_name)
    path = os.fspath(path)
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as fh:
            head = fh.read(8192)
    except OSError as exc:
        raise DocumentError(f"“{_short(original_name)}” could not be opened.", detail=str(exc)) from None
    if size == 0:
        raise EmptyDocument(
            f"“{_short(original_name)}” is empty (0 bytes). Upload the file again; the upload may have failed."
        )
    if size > limits.max_bytes:
        raise OversizeDocument(
            f"“{_short(original_name)}” is {_mb(size)}; files up to {_mb(limits.max_bytes)} can be read."
        )
    _check_content(original_name, kind, head)
    request = {"path": os.path.abspath(path), "kind": kind, "password": password, "limits": asdict(limits)}
    reply = _run_worker(request, limits, original_name, cancel)
    if not reply.get("ok"):
        error = _error_from_reply(reply, original_name, kind, limits)
        log.info("extracting %r: %s (%s)", original_name, error.code, error.detail)
        raise error
    doc = reply["document"]
    return ExtractedDocument(
        name=original_name,
        kind=kind,
        segments=[Segment(text, page, section) for text, page, section in doc["segments"]],
        page_count=doc["page_count"],
        encoding=doc["encoding"],
        ocr_used=doc["ocr_used"],
        warnings=doc["warnings"],
    )


def extract_text(text: str, name: str = "Pasted text", *, max_chars: int | None = None) -> ExtractedDocument:
    """Pasted text: already decoded and already in memory, so it is split here, in-process."""
    if not text or not text.strip():
        raise EmptyDocument("The pasted text is empty.")
    if max_chars is not None and len(text) > max_chars:
        raise OversizeDocument(f"The pasted text has {len(text):,} characters; up to {max_chars:,} can be read.")
    segments = [Segment(t, p, s) for t, p, s in document_worker.split_plain_text(text)]
    if not segments:  # only control characters
        raise EmptyDocument("The pasted text is empty.")
    return ExtractedDocument(name=name, kind="txt", segments=segments)


class _Drain(threading.Thread):
    """Reads a pipe to its end so the child never blocks on a full pipe; keeps at most `cap` bytes."""

    def __init__(self, pipe: IO[bytes], cap: int, keep_tail: bool = False) -> None:
        super().__init__(daemon=True)
        self.pipe, self.cap, self.keep_tail = pipe, cap, keep_tail
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflow = False
        self.start()

    def run(self) -> None:
        try:
            while chunk := self.pipe.read(65536):
                if self.size + len(chunk) <= self.cap:
                    self.chunks.append(chunk)
                    self.size += len(chunk)
                elif self.keep_tail:
                    self.chunks = [(b"".join(self.chunks) + chunk)[-self.cap :]]
                    self.size = len(self.chunks[0])
                else:
                    self.overflow = True
        except (OSError, ValueError):
            pass

    def data(self) -> bytes:
        return b"".join(self.chunks)


def _kill_group(proc: subprocess.Popen) -> None:
    # The worker leads its own session; killing the group also ends tesseract if OCR was running.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _run_worker(request: dict, limits: ExtractionLimits, name: str, cancel: threading.Event | None) -> dict:
    # A private scratch folder, also the child's cwd and TMPDIR: whatever a parser or tesseract
    # writes lands there and goes away with it, even when the child is killed.
    workdir = tempfile.mkdtemp(prefix="studio-extract-")
    # Only what a parser needs: no API keys or other secrets reach code that reads hostile input.
    env = {key: os.environ[key] for key in _WORKER_ENV if key in os.environ}
    env.update(TMPDIR=workdir, TMP=workdir, TEMP=workdir, HOME=workdir, OMP_THREAD_LIMIT="1")
    proc: subprocess.Popen | None = None
    drains: list[_Drain] = []
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None  # all three are PIPEs
        out = _Drain(proc.stdout, cap=limits.max_chars * 4 + (1 << 20))
        err = _Drain(proc.stderr, cap=32 * 1024, keep_tail=True)
        drains = [out, err]
        try:
            proc.stdin.write(json.dumps(request).encode("utf-8"))
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the child died at once; its exit status tells why
        deadline = started + limits.timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                returncode = proc.wait(timeout=max(0.0, min(remaining, 0.1 if cancel else remaining)))
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    _kill_group(proc)
                    raise ExtractionCancelled(f"Reading “{_short(name)}” was cancelled.") from None
                if time.monotonic() >= deadline:
                    _kill_group(proc)
                    raise _timeout(name, limits) from None
        for drain in drains:
            drain.join(timeout=5)
        stderr_tail = err.data().decode("utf-8", "replace")[-2000:]
        if returncode == 0 and not out.overflow:
            try:
                return json.loads(out.data().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                log.warning("document worker sent a bad reply for %r: %s; stderr: %s", name, exc, stderr_tail)
                raise ParserCrashed(_crash_message(name, "it sent an unreadable reply"), detail=stderr_tail) from None
        if out.overflow:
            raise OversizeDocument(
                f"“{_short(name)}” holds more text than can be read (over {limits.max_chars:,} characters)."
            )
        log.warning("document worker for %r ended with status %s; stderr: %s", name, returncode, stderr_tail)
        if returncode == document_worker.EXIT_OUT_OF_MEMORY:
            raise _out_of_memory(name, limits)
        if returncode < 0:
            sig = signal.Signals(-returncode)
            if sig == signal.SIGXCPU:
                raise ParserTimeout(
                    f"Reading “{_short(name)}” used more than {limits.timeout_s:g} s of "
                    "processor time and was stopped.",
                    detail=stderr_tail,
                )
            raise ParserCrashed(_crash_message(name, f"signal {sig.name}"), detail=stderr_tail)
        raise ParserCrashed(_crash_message(name, f"exit status {returncode}"), detail=stderr_tail)
    finally:
        if proc is not None:
            if proc.poll() is None:
                _kill_group(proc)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                with contextlib.suppress(OSError):
                    if pipe is not None:
                        pipe.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _crash_message(name: str, why: str) -> str:
    return (
        f"The document reader crashed on “{_short(name)}” ({why}); the file is probably damaged. "
        "Try re-saving it from the program that made it."
    )


def _timeout(name: str, limits: ExtractionLimits, detail: str | None = None) -> ParserTimeout:
    return ParserTimeout(
        f"Reading “{_short(name)}” took longer than {limits.timeout_s:g} s and was stopped. "
        "The file may be damaged or unusually complex; try re-saving or splitting it.",
        detail=detail,
    )


def _out_of_memory(name: str, limits: ExtractionLimits, detail: str | None = None) -> ParserOutOfMemory:
    return ParserOutOfMemory(
        f"Reading “{_short(name)}” needed more than {limits.memory_mb} MB of memory and was stopped. "
        "The file may be damaged or built to exhaust memory (a decompression bomb).",
        detail=detail,
    )


def _error_from_reply(reply: dict, name: str, kind: Kind, limits: ExtractionLimits) -> DocumentError:
    code, detail, info = reply.get("code"), reply.get("detail") or None, reply.get("info") or {}
    shown = f"“{_short(name)}”"
    if code == "empty":
        return EmptyDocument(f"{shown} contains no text to summarise.", detail=detail)
    if code == "encrypted":
        pdf = kind == "pdf"  # the worker decrypts PDFs; a protected Word file needs a copy without the password
        if info.get("wrong_password"):
            return EncryptedDocument(
                f"Wrong password for {shown}.", detail=detail, opens_with_password=pdf, wrong_password=True
            )
        return EncryptedDocument(
            f"{shown} is password-protected. Save a copy without the password "
            "(or remove the protection) and upload that.",
            detail=detail,
            opens_with_password=pdf,
        )
    if code == "corrupt":
        what = {"pdf": "PDF", "docx": "Word file"}.get(kind, "file")
        return CorruptDocument(
            f"{shown} is damaged or incomplete and cannot be read as a {what}. If it was "
            "downloaded, download it again; otherwise re-save it from the program that "
            "made it.",
            detail=detail,
        )
    if code == "mislabelled":
        detected = str(info.get("detected", "something else"))
        return MislabelledDocument(
            f"{shown} is named {Path(name).suffix.lower() or kind} but is actually "
            f"{detected}, so it cannot be read as {KIND_LABELS[kind]}.",
            declared=kind,
            detected=detected,
            detail=detail,
        )
    if code == "unsupported_type":
        return UnsupportedType(f"{shown} uses a feature this server cannot read ({detail}).", detail=detail)
    if code == "oversize":
        reason = info.get("reason")
        if reason == "pages":
            text = f"{shown} has {info.get('pages')} pages; documents up to {limits.max_pages} pages can be read."
        elif reason == "unpacked":
            text = (
                f"{shown} expands to more than {_mb(limits.max_unpacked_bytes)} when unpacked, so it was "
                "not read (this is how a decompression bomb looks)."
            )
        elif reason == "stream":
            text = (
                f"{shown} contains a compressed part that expands beyond the safety limit, so it was "
                "not read (this is how a decompression bomb looks)."
            )
        elif reason == "members":
            text = f"{shown} is made of {info.get('members')} parts, more than the {limits.max_zip_members} allowed."
        elif reason == "ocr_pages":
            text = (
                f"{shown} has {info.get('pages')} scanned pages; OCR reads up to {limits.ocr_max_pages} "
                "pages per document."
            )
        elif reason == "chars":
            text = f"{shown} holds more than {limits.max_chars:,} characters of text."
        else:
            text = f"{shown} is larger than {_mb(limits.max_bytes)}."
        return OversizeDocument(text, detail=detail)
    if code == "image_only":
        if info.get("reason") == "disabled":
            return ImageOnlyDocument(
                f"{shown} is a scanned document: its pages are images with no text "
                "layer, and OCR (text recognition) is turned off here. Upload a PDF "
                "with a text layer, or turn OCR on.",
                detail=detail,
            )
        return ImageOnlyDocument(
            f"{shown} is a scanned document: its pages are images with no text layer. Reading it needs OCR, "
            f"and the OCR engine tesseract (with the '{info.get('languages', 'eng')}' language data) is "
            f"not installed on this server. Install it ({OCR_INSTALL_HINT}) and try again, or upload a "
            "PDF with a text layer.",
            detail=detail,
        )
    if code == "parser_timeout":
        return _timeout(name, limits, detail)
    if code == "parser_out_of_memory":
        return _out_of_memory(name, limits, detail)
    why = "the OCR engine failed" if (detail or "").startswith("tesseract") else f"error {code}"
    return ParserCrashed(_crash_message(name, why), detail=detail)


def _short(name: str, limit: int = 80) -> str:
    name = os.path.basename(name) or name
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _mb(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB"
