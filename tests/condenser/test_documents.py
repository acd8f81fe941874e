"""Document extraction: every corpus file gives what its manifest expects, and a hostile or broken
file costs only its own parser process (killed at its time or memory limit, nothing left behind).
Hostile inputs are built here, small on disk; nothing stands in for the real parsers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from core.condenser import worker as document_worker
from core.condenser.documents import (
    CorruptDocument,
    DocumentError,
    EmptyDocument,
    EncryptedDocument,
    ExtractionCancelled,
    ExtractionLimits,
    ImageOnlyDocument,
    MislabelledDocument,
    OversizeDocument,
    ParserCrashed,
    ParserOutOfMemory,
    ParserTimeout,
    Segment,
    UnsupportedType,
    extract_document,
    extract_text,
)
from tests.support.paths import CORPUS

if not (CORPUS / "manifest.json").is_file():
    raise RuntimeError(f"the document corpus is missing: expected {CORPUS}/manifest.json")
MANIFEST = {e["file"]: e for e in json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))}
SCANNED = "good-scanned-image-only-ocr-article.pdf"
GOOD = sorted(f for f, e in MANIFEST.items() if e["kind"] == "good" and f != SCANNED)

# Each bad file's specific error. Where the manifest allows either an error or extraction, the
# choice made is the one asserted here (and it is asserted precisely).
BAD_ERRORS: dict[str, type[DocumentError]] = {
    "bad-encrypted-user-password.pdf": EncryptedDocument,
    "bad-truncated-federal-register.pdf": CorruptDocument,  # pypdf cannot recover any page
    "bad-broken-xref.pdf": CorruptDocument,
    "bad-circular-pages-tree.pdf": CorruptDocument,  # alternative chosen: error, not page 1 only
    "bad-fuzz-deeply-nested-array.pdf": CorruptDocument,
    "bad-fuzz-poppler-395.pdf": CorruptDocument,  # its only page raises inside pypdf
    "bad-empty-zero-bytes.pdf": EmptyDocument,
    "bad-html-page-named-pdf.pdf": MislabelledDocument,  # alternative chosen: refuse, not read as HTML
    "bad-png-image-named-pdf.pdf": MislabelledDocument,
    "bad-truncated-zip.docx": CorruptDocument,
    "bad-encrypted-password.docx": EncryptedDocument,
    "bad-fuzz-clusterfuzz-bad-crc.docx": CorruptDocument,  # alternative chosen: error, no partial read
}
BAD_READABLE = ["bad-circular-outlines.pdf", "bad-encrypted-owner-password-only.pdf"]


def collapse(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path, monkeypatch):
    """Every test runs with its own temp root and must leave it empty, whatever happened."""
    root = tmp_path / "tempdir"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield root
    assert os.listdir(root) == [], "extraction left files in the temp dir"
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert left == [], f"extraction left processes behind: {left}"


class WorkerWatch:
    """Records every worker process (and its descendants, e.g. tesseract) while a test runs."""

    def __init__(self) -> None:
        self.seen: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                for proc in psutil.Process().children(recursive=True):
                    # Latest name wins: a fresh fork is still "python" until it execs tesseract.
                    self.seen[proc.pid] = proc.name()
            except psutil.Error:
                pass  # a process ended mid-scan; the next scan sees the rest
            time.sleep(0.01)

    def __enter__(self) -> WorkerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def alive(self, grace: float = 2.0) -> list[str]:
        """Recorded processes that still exist (zombies included) after `grace` seconds."""
        deadline = time.monotonic() + grace
        while True:
            living = []
            for pid, name in self.seen.items():
                try:
                    living.append(f"{pid} {name} {psutil.Process(pid).status()}")
                except psutil.NoSuchProcess:
                    pass
            if not living or time.monotonic() > deadline:
                return living
            time.sleep(0.05)


# --- hostile inputs, built small -----------------------------------------------------------------


def make_pdf(*pages: bytes | tuple[bytes, bytes]) -> bytes:
    """A PDF with one page per argument: a content stream (Flate-compressed here), or a
    (stream, filter name) pair whose stream is used as given."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for page in pages:
        stream, filter_name = page if isinstance(page, tuple) else (zlib.compress(page, 9), b"/FlateDecode")
        objects.append(b"<< /Length %d /Filter %s >>\nstream\n" % (len(stream), filter_name) + stream + b"\nendstream")
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R"
            b" >> >> /Contents %d 0 R >>" % (len(objects))
        )
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def text_page(text: str) -> bytes:
    return b"BT /F1 12 Tf 72 700 Td (%s) Tj ET" % text.encode("ascii")


def flate_of_repeated(block: bytes, times: int) -> bytes:
    """zlib data for `block * times` without ever holding that much in memory."""
    compressor = zlib.compressobj(9)
    return b"".join(compressor.compress(block) for _ in range(times)) + compressor.flush()


DOCX_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
    b'package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.'
    b'openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="'
    b'application/xml"/><Default Extension="bin" ContentType="application/octet-stream"/>'
    b'<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
    b'officedocument.wordprocessingml.document.main+xml"/></Types>'
)
DOCX_RELS = (
    b'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.'
    b'org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats'
    b'.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
    b"</Relationships>"
)
DOCX_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org'
    b'/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>'
)
DOCX_TAIL = b"</w:t></w:r></w:p></w:body></w:document>"


def make_docx(path: Path, text: bytes = b"Hello", repeat: int = 1, extra_zero_member_mb: int = 0) -> Path:
    """A minimal real DOCX, streamed member by member so a huge one costs the test no memory."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", DOCX_TYPES)
        zf.writestr("_rels/.rels", DOCX_RELS)
        with zf.open("word/document.xml", "w", force_zip64=True) as fh:
            fh.write(DOCX_HEAD)
            for _ in range(repeat):
                fh.write(text)
            fh.write(DOCX_TAIL)
        if extra_zero_member_mb:
            with zf.open("word/media/filler.bin", "w", force_zip64=True) as fh:
                block = bytes(1 << 20)
                for _ in range(extra_zero_member_mb):
                    fh.write(block)
    return path


@pytest.fixture(scope="module")
def cpu_bomb_pdf(tmp_path_factory) -> Path:
    """10 KB on disk, ~2M content-stream tokens: pypdf needs ~25 s for it, under all of pypdf's own
    limits, so only our wall-clock limit stops it."""
    path = tmp_path_factory.mktemp("hostile") / "cpu-bomb.pdf"
    path.write_bytes(make_pdf(b"BT /F1 12 Tf 72 700 Td " + b"(a) Tj " * 990_000 + b"ET"))
    return path


def tesseract_required() -> None:
    assert shutil.which("tesseract"), "tesseract is a test dependency: apt-get install tesseract-ocr tesseract-ocr-eng"


# --- the corpus ----------------------------------------------------------------------------------


def test_every_corpus_file_has_an_expectation_here():
    assert set(GOOD) | {SCANNED} | set(BAD_ERRORS) | set(BAD_READABLE) == set(MANIFEST)
    assert not set(BAD_ERRORS) & set(BAD_READABLE)


@pytest.mark.parametrize("name", GOOD)
def test_good_file_contains_its_phrases_with_provenance(name):
    entry = MANIFEST[name]
    doc = extract_document(CORPUS / name, name)
    text = collapse(doc.full_text)
    for phrase in entry["phrases"]:
        assert collapse(phrase) in text, phrase
    assert "\ufffd" not in doc.full_text
    if entry["language"] == "de":
        assert all(ch in doc.full_text for ch in "äöüß")
    assert doc.segments and all(s.text.strip() for s in doc.segments)
    # Roughly the manifest's word count: nothing dropped, nothing duplicated. (HTML keeps the
    # article only, ~4.2k of the page's 5.5k visible words.)
    assert 0.7 * entry["words"] <= doc.word_count <= 1.1 * entry["words"]
    assert set(doc.locators()) == {doc.locator(s) for s in doc.segments}
    if name.endswith(".pdf"):
        assert doc.kind == "pdf" and doc.page_count == entry["pages"]
        pages = [s.page for s in doc.segments]
        assert pages == sorted(set(pages)) and all(1 <= p <= doc.page_count for p in pages)
        assert all(doc.locator(s) == f"p. {s.page}" for s in doc.segments)
    else:
        assert doc.page_count is None and all(s.page is None for s in doc.segments)
    assert not doc.ocr_used


@pytest.mark.parametrize("name", sorted(BAD_ERRORS))
def test_bad_file_raises_its_specific_error(name):
    expected = BAD_ERRORS[name]
    with pytest.raises(DocumentError) as caught:
        extract_document(CORPUS / name, name)
    assert type(caught.value) is expected, (type(caught.value), str(caught.value), caught.value.detail)
    assert caught.value.code == expected.code
    assert name in str(caught.value)  # the user sees which file it was


def test_mislabelled_files_say_what_they_really_are():
    for name, detected, words in [
        ("bad-html-page-named-pdf.pdf", "html", "HTML web page"),
        ("bad-png-image-named-pdf.pdf", "png", "PNG image"),
    ]:
        with pytest.raises(MislabelledDocument) as caught:
            extract_document(CORPUS / name, name)
        assert (caught.value.declared, caught.value.detected) == ("pdf", detected)
        assert words in str(caught.value)


def test_circular_outlines_pdf_is_read_in_full():
    doc = extract_document(CORPUS / "bad-circular-outlines.pdf", "outlines.pdf")
    assert doc.page_count == 30 and [s.page for s in doc.segments] == list(range(1, 31))
    text = collapse(doc.full_text)
    assert "Salad 0" in text and "Salad 29" in text


def test_empty_user_password_pdf_opens_without_asking():
    doc = extract_document(CORPUS / "bad-encrypted-owner-password-only.pdf", "r6.pdf")
    assert "pdf encryption test password: asdfzxcv" in collapse(doc.full_text)
    assert doc.page_count == 1


def test_password_protected_pdf_opens_with_its_password_and_not_without():
    path = CORPUS / "bad-encrypted-user-password.pdf"
    assert "Lorem ipsum" in extract_document(path, "x.pdf", password="openpassword").full_text
    with pytest.raises(EncryptedDocument, match="Wrong password") as wrong:
        extract_document(path, "x.pdf", password="wrong")
    assert wrong.value.wrong_password and wrong.value.opens_with_password
    with pytest.raises(EncryptedDocument, match="password-protected") as missing:
        extract_document(path, "x.pdf")
    assert not missing.value.wrong_password and missing.value.opens_with_password
    with pytest.raises(EncryptedDocument) as docx:  # the reader cannot decrypt Word files: no password box
        extract_document(CORPUS / "bad-encrypted-password.docx", "x.docx", password="solrcell")
    assert not docx.value.opens_with_password


def test_both_moliere_files_decode_to_the_same_text():
    utf8 = extract_document(CORPUS / "good-french-moliere-utf8.txt", "a.txt")
    legacy = extract_document(CORPUS / "good-french-moliere-cp1252.txt", "b.txt")
    assert (utf8.encoding, legacy.encoding) == ("utf-8", "cp1252")
    assert legacy.full_text == utf8.full_text
    assert "œuvres" in legacy.full_text and "\ufffd" not in legacy.full_text
    raw = (CORPUS / "good-french-moliere-utf8.txt").read_text(encoding="utf-8")
    assert collapse(legacy.full_text) == collapse(raw)


def test_utf16_text_is_decoded_with_or_without_bom(tmp_path):
    text = (CORPUS / "good-french-moliere-utf8.txt").read_text(encoding="utf-8")
    reference = extract_document(CORPUS / "good-french-moliere-utf8.txt", "a.txt").full_text
    for codec, expected in (("utf-16", "utf-16-le"), ("utf-16-le", "utf-16-le"), ("utf-16-be", "utf-16-be")):
        path = tmp_path / f"{codec}.txt"
        path.write_bytes(text.encode(codec))
        doc = extract_document(path, path.name)
        assert (doc.encoding, doc.full_text) == (expected, reference)


def test_pdf_pages_without_text_are_named_not_dropped_silently(tmp_path):
    # Page 2 is blank; page 3's stream uses a filter name pypdf refuses (as in poppler fuzz case 395).
    broken = (b"BT /F1 12 Tf 72 700 Td (Third page) Tj ET~>", b"/A85")
    path = tmp_path / "mixed.pdf"
    path.write_bytes(make_pdf(text_page("First page"), b"", broken, text_page("Fourth page")))
    doc = extract_document(path, "mixed.pdf")
    assert doc.page_count == 4
    assert [(s.page, s.text) for s in doc.segments] == [(1, "First page"), (4, "Fourth page")]
    assert any(w.startswith("Page 3 could not be read") for w in doc.warnings), doc.warnings
    assert any(w.startswith("Page 2 is blank") for w in doc.warnings), doc.warnings


def test_docx_keeps_headings_and_table_text():
    essay = extract_document(CORPUS / "good-essay-assignment-headings.docx", "essay.docx")
    sections = essay.locators()
    assert sections[0] == "Personal Worldview Essay"
    assert {"Basics", "Conclusion", "Essay Memo"} <= set(sections)
    memo = next(s for s in essay.segments if s.section == "Essay Memo")
    assert memo.text.startswith("Essay Memo")
    budget = extract_document(CORPUS / "good-budget-cases-tables.docx", "budget.docx")
    assert "€" in budget.full_text and " | " in budget.full_text  # table rows keep their cells


def test_docx_text_in_nested_tables_is_extracted():
    import docx

    name = "good-messy-web-article-pcb.docx"
    phrase = "Exposure to polychlorinated biphenyl (PCB) congeners"
    paragraphs_only = collapse(" ".join(p.text for p in docx.Document(str(CORPUS / name)).paragraphs))
    assert phrase not in paragraphs_only  # so the phrase below can only come from the tables
    assert phrase in collapse(extract_document(CORPUS / name, name).full_text)


def test_html_keeps_the_article_and_drops_the_page_around_it():
    doc = extract_document(CORPUS / "good-wikipedia-mozilla-article.html", "mozilla.html")
    text = doc.full_text
    for boilerplate in (
        "Navigation menu",
        "Personal tools",
        "What links here",
        "Printable version",
        "mw.config",
        "function(",
    ):
        assert boilerplate not in text
    assert {"History", "Firefox", "Thunderbird", "References"} <= set(doc.locators())
    assert "[edit]" not in " ".join(doc.locators())


def test_plain_text_segments_name_the_lines_they_come_from():
    path = CORPUS / "good-alice-in-wonderland.txt"
    lines = path.read_text(encoding="ascii").replace("\r\n", "\n").split("\n")
    doc = extract_document(path, "alice.txt")
    assert len(doc.segments) > 10 and doc.encoding == "utf-8"
    previous_end = 0
    for segment in doc.segments:
        first, _, last = segment.section.removeprefix("lines ").partition("-")
        first, last = int(first), int(last or first)
        assert previous_end < first <= last
        previous_end = last
        # (the file ends in a DOS end-of-file byte, 0x1A, which extraction drops as a control character)
        assert collapse(segment.text) == collapse(" ".join(lines[first - 1 : last]).replace("\x1a", ""))
        assert lines[first - 1].strip("\x1a \t") and lines[last - 1].strip("\x1a \t")
        assert doc.locator(segment) == segment.section


def test_markdown_sections_ignore_headings_inside_code_and_drop_link_targets():
    text = (
        "Intro line\n\n# Title\n\nSee [the docs](https://example.com/x) ![logo](l.png)\n\n"
        "```sh\n# not a heading\n```\n\nSetext\n------\n\nbody\n\n## Next ##\n\nmore\n"
    )
    segments = document_worker.split_markdown(text)
    assert [s[2] for s in segments] == [None, "Title", "Setext", "Next"]
    assert "# not a heading" in segments[1][0]
    assert "See the docs logo" in segments[1][0] and "https://" not in segments[1][0]


def test_pasted_text():
    doc = extract_text("First paragraph.\r\n\r\nSecond paragraph.\n", "notes")
    assert doc.kind == "txt" and doc.name == "notes"
    assert doc.full_text == "First paragraph.\n\nSecond paragraph."
    assert doc.segments == [Segment("First paragraph.\n\nSecond paragraph.", None, "lines 1-3")]
    with pytest.raises(EmptyDocument):
        extract_text(" \n\t ")
    with pytest.raises(OversizeDocument):
        extract_text("x" * 101, max_chars=100)


# --- OCR -----------------------------------------------------------------------------------------


def test_scanned_pdf_is_read_with_ocr():
    tesseract_required()
    doc = extract_document(CORPUS / SCANNED, SCANNED)
    assert doc.ocr_used and doc.page_count == 1 and [s.page for s in doc.segments] == [1]
    text = collapse(doc.full_text)
    for phrase in MANIFEST[SCANNED]["phrases"]:
        assert phrase in text
    assert any("OCR" in w for w in doc.warnings)


def test_scanned_pdf_with_ocr_turned_off_says_so():
    with pytest.raises(ImageOnlyDocument, match="OCR .* turned off"):
        extract_document(CORPUS / SCANNED, SCANNED, ExtractionLimits(ocr=False))


def test_scanned_pdf_without_tesseract_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a real machine without tesseract on its PATH
    with pytest.raises(ImageOnlyDocument) as caught:
        extract_document(CORPUS / SCANNED, SCANNED)
    message = str(caught.value)
    assert "tesseract" in message and "apt-get install tesseract-ocr" in message
    assert "scanned" in message


# --- limits: time, memory, size ------------------------------------------------------------------


def test_hostile_pdf_is_killed_at_its_time_limit(cpu_bomb_pdf):
    limits = ExtractionLimits(timeout_s=1.5)
    with WorkerWatch() as watch:
        started = time.monotonic()
        with pytest.raises(ParserTimeout, match="longer than 1.5 s"):
            extract_document(cpu_bomb_pdf, "slow.pdf", limits)
        elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 1.5 + 1.0
    assert watch.seen and watch.alive() == []


def test_timeout_during_ocr_ends_tesseract_too(tmp_path):
    tesseract_required()
    from pypdf import PdfReader, PdfWriter

    # The scanned page four times: tesseract starts within about a second and OCR of the four pages takes
    # 10 s or more even on an idle machine (one page alone took 3.3 s there, under the 4 s limit), so
    # tesseract is surely mid-page when time runs out, however fast or loaded the machine is.
    writer = PdfWriter()
    for _ in range(4):
        writer.add_page(PdfReader(CORPUS / SCANNED).pages[0])
    scanned = tmp_path / SCANNED
    with open(scanned, "wb") as out:
        writer.write(out)
    limits = ExtractionLimits(timeout_s=4, ocr_dpi=600, memory_mb=4096)
    with WorkerWatch() as watch:
        started = time.monotonic()
        with pytest.raises(ParserTimeout):
            extract_document(scanned, SCANNED, limits)
        elapsed = time.monotonic() - started
    assert elapsed < 4 + 1.0
    assert "tesseract" in watch.seen.values()
    assert watch.alive() == []


def test_cancel_stops_the_parser(cpu_bomb_pdf):
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(ExtractionCancelled):
        extract_document(cpu_bomb_pdf, "slow.pdf", ExtractionLimits(timeout_s=30), cancel=cancel)
    assert time.monotonic() - started < 1.5


def test_parser_that_dies_gives_parser_crashed(cpu_bomb_pdf):
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            extract_document(cpu_bomb_pdf, "slow.pdf", ExtractionLimits(timeout_s=30))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 10
    worker = None
    while worker is None and time.monotonic() < deadline:
        worker = next((p for p in psutil.Process().children() if "condenser/worker.py" in " ".join(p.cmdline())), None)
        time.sleep(0.02)
    assert worker is not None
    time.sleep(0.3)  # let it get into the parser
    os.kill(worker.pid, signal.SIGSEGV)
    thread.join(10)
    error = outcome["error"]
    assert type(error) is ParserCrashed and "SIGSEGV" in str(error)


def test_memory_limit_stops_a_docx_that_inflates(tmp_path):
    # 480 MB of text in word/document.xml, under 1 MB on disk. With the unpacked-size check lifted,
    # only the child's address-space limit stands between python-docx and the whole 480 MB.
    path = make_docx(tmp_path / "inflates.docx", b"lorem ipsum " * 100_000, repeat=400)
    assert path.stat().st_size < 2_000_000
    limits = ExtractionLimits(memory_mb=300, max_unpacked_bytes=4 << 30)
    with pytest.raises(ParserOutOfMemory, match="300 MB of memory") as caught:
        extract_document(path, "inflates.docx", limits)
    assert isinstance(caught.value, ParserCrashed)


def test_zip_bomb_docx_is_refused_by_its_unpacked_size(tmp_path):
    path = make_docx(tmp_path / "bomb.docx", extra_zero_member_mb=300)
    assert path.stat().st_size < 1_000_000
    with WorkerWatch() as watch:
        started = time.monotonic()
        with pytest.raises(OversizeDocument, match="decompression bomb"):
            extract_document(path, "bomb.docx")  # default limits
    assert time.monotonic() - started < 5 and watch.alive() == []


def test_pdf_flate_bomb_is_refused(tmp_path):
    path = tmp_path / "flate-bomb.pdf"
    path.write_bytes(make_pdf((flate_of_repeated(b" " * (1 << 20), 100), b"/FlateDecode")))  # 100 MB of spaces
    assert path.stat().st_size < 200_000
    with pytest.raises(OversizeDocument, match="decompression bomb"):
        extract_document(path, "flate-bomb.pdf")


def test_too_big_a_file_is_refused_before_parsing(tmp_path):
    huge = tmp_path / "huge.pdf"
    with open(huge, "wb") as fh:
        fh.truncate(10 * 1024**3)  # 10 GB, sparse: would take minutes to read, let alone parse
    started = time.monotonic()
    with WorkerWatch() as watch, pytest.raises(OversizeDocument, match="10240.0 MB"):
        extract_document(huge, "huge.pdf")
    assert time.monotonic() - started < 0.5
    assert watch.seen == {}  # no parser process was started
    with pytest.raises(OversizeDocument, match="up to 1000 bytes can be read"):
        extract_document(CORPUS / "good-form-irs-1040-2010.pdf", "f.pdf", ExtractionLimits(max_bytes=1000))


def test_page_limit(tmp_path):
    with pytest.raises(OversizeDocument, match="117 pages"):
        extract_document(CORPUS / "good-long-german-lecture-notes.pdf", "g.pdf", ExtractionLimits(max_pages=100))


# --- file types ----------------------------------------------------------------------------------


def test_unsupported_extensions_are_refused_by_name(tmp_path):
    path = tmp_path / "any"
    path.write_text("hello")
    for name in ("old.doc", "sheet.xlsx", "README"):
        with pytest.raises(UnsupportedType):
            extract_document(path, name)


def test_content_must_match_the_extension(tmp_path):
    png = (CORPUS / "bad-png-image-named-pdf.pdf").read_bytes()
    cases = [
        ("image.txt", png, "png"),
        ("page.docx", b"<!DOCTYPE html><html><body>x</body></html>", "html"),
        ("paper.md", (CORPUS / "good-form-irs-1040-2010.pdf").read_bytes()[:5000], "pdf"),
        ("notes.txt", (CORPUS / "good-essay-assignment-headings.docx").read_bytes(), "zip"),
    ]
    for name, data, detected in cases:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(MislabelledDocument) as caught:
            extract_document(path, name)
        assert caught.value.detected == detected


def test_whitespace_only_text_file_is_empty(tmp_path):
    path = tmp_path / "blank.txt"
    path.write_text(" \n\n\t\n")
    with pytest.raises(EmptyDocument):
        extract_document(path, "blank.txt")


def test_parallel_extractions_do_not_interfere():
    names = [
        "good-form-irs-1040-2010.pdf",
        "good-essay-assignment-headings.docx",
        "good-ripgrep-user-guide.md",
        "good-french-moliere-cp1252.txt",
    ]
    with ThreadPoolExecutor(4) as pool:
        docs = list(pool.map(lambda n: extract_document(CORPUS / n, n), names))
    for name, doc in zip(names, docs):
        assert doc.name == name
        assert all(collapse(p) in collapse(doc.full_text) for p in MANIFEST[name]["phrases"])
