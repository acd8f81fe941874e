"""The child-process side of document extraction: caps its own memory, parses one untrusted file and
writes one JSON reply. Run as `python -I core/condenser/worker.py` with a JSON request on stdin; it
imports nothing from this project, and only the standard library at module top (the parent imports
it for the plain-text splitters), so a parser crash, hang or memory blow-up costs only this process.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile

_PROCESS_START = time.monotonic()  # in the worker: when this process began, as the parent's clock nearly did
EXIT_OUT_OF_MEMORY = 3  # used when even the JSON reply cannot be written after a MemoryError
TXT_SEGMENT_CHARS = 4000  # plain text is cut at blank lines into segments of about this size
OCR_MAX_PIXELS = 40_000_000  # a huge page is rendered at a lower resolution instead of exhausting memory

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_HEADING_STYLE = re.compile(r"^(?:heading|titre|überschrift|titolo|título|kop)\s*(\d)$", re.IGNORECASE)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


class Failure(Exception):
    """A verdict on the file, sent to the parent as a code plus facts it turns into a user message."""

    def __init__(self, code: str, detail: str = "", **info: object) -> None:
        super().__init__(detail or code)
        self.code = code
        self.detail = detail
        self.info = info


# --- plain text (also used in the parent for pasted text) -------------------------------------------


def clean_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Control characters are font garbage (math fonts in PDFs) or binary debris; form feeds and
    # vertical tabs separate lines.
    text = _CONTROL_CHARS.sub("", text.replace("\x0c", "\n").replace("\x0b", "\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def split_plain_text(text: str) -> list[tuple[str, int | None, str | None]]:
    """Segments of about TXT_SEGMENT_CHARS cut at blank lines, each named by the range of lines it
    spans (first and last non-blank line), so a citation can be found in any editor."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    segments: list[tuple[str, int | None, str | None]] = []
    first = last = 0  # line numbers of the open segment; 0: none open
    size = 0
    for number, line in enumerate(lines, start=1):
        if _CONTROL_CHARS.sub("", line).strip():
            first = first or number
            last = number
            size += len(line) + 1
        elif first and size >= TXT_SEGMENT_CHARS:
            segments.append(_line_segment(lines, first, last))
            first = last = size = 0
    if first:
        segments.append(_line_segment(lines, first, last))
    return [s for s in segments if s[0]]


def _line_segment(lines: list[str], first: int, last: int) -> tuple[str, int | None, str | None]:
    name = f"line {first}" if first == last else f"lines {first}-{last}"
    return clean_text("\n".join(lines[first - 1 : last])), None, name


def utf16_order(head: bytes) -> str | None:
    """'utf-16-le' or 'utf-16-be' when the bytes look like UTF-16 text (with or without a BOM): its
    NULs sit in every other byte, where binary data scatters them."""
    if head.startswith(b"\xff\xfe"):
        return "utf-16-le"
    if head.startswith(b"\xfe\xff"):
        return "utf-16-be"
    even, odd = head[0::2], head[1::2]
    if not even or not odd:
        return None
    if odd.count(0) >= 0.9 * len(odd) and even.count(0) <= 0.05 * len(even):
        return "utf-16-le"
    if even.count(0) >= 0.9 * len(even) and odd.count(0) <= 0.05 * len(odd):
        return "utf-16-be"
    return None


def decode_text(data: bytes) -> tuple[str, str]:
    """UTF-8 first (it almost never decodes non-UTF-8 text by accident), then charset-normalizer."""
    for bom, codec in (
        (b"\xef\xbb\xbf", "utf-8"),
        (b"\xff\xfe\x00\x00", "utf-32-le"),
        (b"\x00\x00\xfe\xff", "utf-32-be"),
        (b"\xff\xfe", "utf-16-le"),
        (b"\xfe\xff", "utf-16-be"),
    ):
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(codec), codec
            except UnicodeDecodeError as exc:
                raise Failure("corrupt", f"{codec} text with invalid bytes: {exc}") from None
    order = utf16_order(data[:4096]) if b"\x00" in data[:4096] else None
    if order is not None:
        try:
            return data.decode(order), order
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    import charset_normalizer

    best = charset_normalizer.from_bytes(data).best()
    if best is None:
        raise Failure("mislabelled", "no text encoding fits", detected="binary data")
    encoding = best.encoding
    # Latin-1 maps 0x80-0x9F to invisible C1 controls; Windows-1252 (its superset in practice) maps
    # them to the letters and quotes a Western text means there (0x9C is 'œ').
    if encoding in ("latin_1", "iso8859_1", "iso8859_15"):
        try:
            return data.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:
            pass
    return str(best), encoding


def _parse_txt(path: str, request: dict) -> dict:
    text, encoding = decode_text(_read_limited(path, request))
    return {"segments": split_plain_text(text), "encoding": encoding}


# --- Markdown ---------------------------------------------------------------------------------------

_MD_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_MD_SETEXT = re.compile(r"^ {0,3}(=+|-{2,})\s*$")
_MD_LIST = re.compile(r"^\s*([-*+]|\d+[.)])\s")


def _md_inline(text: str) -> str:
    # Link targets are dropped: they are not content, and a summary must not pick up URLs from data.
    return _MD_LINK.sub(r"\1", _MD_IMAGE.sub(r"\1", text))


def split_markdown(text: str) -> list[tuple[str, int | None, str | None]]:
    """Segments cut at ATX (`## x`) and setext (underlined) headings, never inside fenced code."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    segments: list[tuple[str, int | None, str | None]] = []
    section: str | None = None
    buf: list[str] = []
    only_headings = True  # a run of headings with nothing between them is one segment
    fence: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if fence is not None:
            buf.append(line)
            if line.strip().startswith(fence):
                fence = None
            continue
        m = _MD_FENCE.match(line)
        if m:
            fence = m.group(1)[:3]
            buf.append(line)
            only_headings = False
            continue
        heading = None
        m = _MD_HEADING.match(line)
        if m:
            heading = m.group(2)
        elif (
            line.strip()
            and i < len(lines)
            and _MD_SETEXT.match(lines[i])
            and not _MD_LIST.match(line)
            and (i < 2 or not lines[i - 2].strip())
        ):
            heading = line.strip()
            i += 1  # skip the underline
        if heading is None:
            buf.append(_md_inline(line))
            only_headings = only_headings and not line.strip()
            continue
        title = _md_inline(heading).strip("`*_ ") or heading
        if not only_headings:
            body = clean_text("\n".join(buf))
            if body:
                segments.append((body, None, section))
            buf = []
        section = title[:120]
        buf.append(title)
        only_headings = True
    body = clean_text("\n".join(buf))
    if body:
        segments.append((body, None, section))
    return segments


def _parse_markdown(path: str, request: dict) -> dict:
    text, encoding = decode_text(_read_limited(path, request))
    return {"segments": split_markdown(text), "encoding": encoding}


# --- HTML -------------------------------------------------------------------------------------------

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def _decode_html(data: bytes) -> tuple[str, str]:
    try:
        return decode_text(data)
    except Failure:
        pass
    m = _META_CHARSET.search(data[:8192])
    if m:
        try:
            name = m.group(1).decode("ascii")
            return data.decode(name, errors="replace"), name
        except (LookupError, UnicodeDecodeError):
            pass
    raise Failure("mislabelled", "no text encoding fits", detected="binary data")


def _parse_html(path: str, request: dict) -> dict:
    html, encoding = _decode_html(_read_limited(path, request))
    if not html.strip():
        raise Failure("empty")
    import trafilatura
    from lxml import etree

    # Main content only: navigation, sidebars, scripts and styles are dropped; headings survive as
    # <head> elements, which become the section names.
    xml = trafilatura.extract(
        html,
        output_format="xml",
        include_tables=True,
        include_comments=False,
        include_formatting=False,
        include_links=False,
        include_images=False,
        with_metadata=False,
        favor_recall=True,
    )
    segments: list[tuple[str, int | None, str | None]] = []
    warnings: list[str] = []
    if xml:
        root = etree.fromstring(xml.encode("utf-8"))
        main = root.find("main")
        buf: list[str] = []
        section, only_headings = None, True
        for el in main if main is not None else root:
            if el.tag == "head":
                title = re.sub(r"\s*\[edit\]\s*$", "", _element_text(el))[:120]
                if not title:
                    continue
                if not only_headings:
                    segments.append((clean_text("\n\n".join(buf)), None, section))
                    buf = []
                section, only_headings = title, True
                buf.append(title)
                continue
            if el.tag == "table":
                rows = [" | ".join(_element_text(c) for c in row) for row in el.iter("row")]
                text = "\n".join(r for r in rows if r.strip(" |"))
            elif el.tag == "list":
                text = "\n".join("- " + _element_text(i) for i in el.iter("item"))
            elif el.tag == "code":
                text = "".join(el.itertext())
            else:
                text = _element_text(el)
            if text.strip():
                buf.append(text)
                only_headings = False
        if buf:
            segments.append((clean_text("\n\n".join(buf)), None, section))
    if not any(s[0] for s in segments):
        # Pages too short or odd for the main-content heuristics: fall back to all visible text.
        text = trafilatura.html2txt(html) or ""
        segments = [(clean_text(text), None, None)] if text.strip() else []
        if segments:
            warnings.append(
                "The main content could not be told apart from the page around it, so all visible text was kept."
            )
    return {"segments": [s for s in segments if s[0]], "encoding": encoding, "warnings": warnings}


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _element_text(el) -> str:
    for lb in el.iter("lb"):  # trafilatura's line breaks carry no text of their own
        lb.tail = " " + (lb.tail or "")
    return _collapse("".join(el.itertext()))


# --- DOCX -------------------------------------------------------------------------------------------


def _check_zip(path: str, request: dict) -> None:
    limits = request["limits"]
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        raise Failure("corrupt", f"bad zip: {exc}") from None
    if len(infos) > limits["max_zip_members"]:
        raise Failure("oversize", f"{len(infos)} zip members", reason="members", members=len(infos))
    # The sizes in the central directory are binding: zipfile refuses (CRC/length error) to hand out
    # more bytes than declared, so summing them stops a decompression bomb before anything inflates.
    unpacked = sum(i.file_size for i in infos)
    if unpacked > limits["max_unpacked_bytes"]:
        raise Failure("oversize", f"unpacks to {unpacked} bytes", reason="unpacked", unpacked=unpacked)
    names = {i.filename for i in infos}
    if "word/document.xml" not in names:
        detected = (
            "an Excel workbook"
            if "xl/workbook.xml" in names
            else "a PowerPoint presentation"
            if "ppt/presentation.xml" in names
            else "an OpenDocument file"
            if "mimetype" in names
            else "a ZIP archive"
        )
        raise Failure("mislabelled", "no word/document.xml", detected=detected)


def _check_ole(path: str) -> None:
    # Password-protected .docx files are not ZIPs at all but OLE2 containers holding the encrypted
    # package; an OLE2 file without one is a legacy Word 97-2003 .doc.
    with open(path, "rb") as fh:
        data = fh.read()
    if "EncryptedPackage".encode("utf-16-le") in data or "EncryptionInfo".encode("utf-16-le") in data:
        raise Failure("encrypted", "OLE2 container with an EncryptedPackage stream")
    raise Failure("mislabelled", "OLE2 container", detected="a Word 97-2003 (.doc) file")


def _paragraph_text(p) -> str:
    parts: list[str] = []

    def walk(el) -> None:
        for child in el:
            tag = child.tag
            if tag == _MC_FALLBACK:
                continue  # the same content as the mc:Choice next to it
            if tag == _W + "t":
                parts.append(child.text or "")
            elif tag == _W + "tab":
                parts.append("\t")
            elif tag in (_W + "br", _W + "cr"):
                parts.append("\n")
            elif tag == _W + "noBreakHyphen":
                parts.append("-")
            elif tag == _W + "p" and parts:
                parts.append("\n")  # a paragraph inside a text box
                walk(child)
            else:
                walk(child)

    walk(p)
    return "".join(parts)


def _parse_docx(path: str, request: dict) -> dict:
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        _check_ole(path)
    _check_zip(path, request)
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(path)
    except PackageNotFoundError as exc:
        raise Failure("corrupt", f"python-docx: {exc}") from None

    styles: dict[str, tuple[str, int | None]] = {}
    for style in document.styles:
        try:
            outline = style.element.find(f"{_W}pPr/{_W}outlineLvl")
            level = int(outline.get(f"{_W}val")) + 1 if outline is not None else None
            styles[style.style_id] = (style.name or "", level)
        except (ValueError, TypeError, AttributeError):
            continue

    def heading_level(p) -> int | None:
        ppr = p.find(_W + "pPr")
        if ppr is None:
            return None
        outline = ppr.find(_W + "outlineLvl")
        if outline is not None:
            try:
                value = int(outline.get(_W + "val"))
                return value + 1 if value < 9 else None  # 9 means body text
            except (TypeError, ValueError):
                pass
        pstyle = ppr.find(_W + "pStyle")
        if pstyle is None:
            return None
        name, level = styles.get(pstyle.get(_W + "val") or "", ("", None))
        if name.lower() == "title":
            return 0
        m = _HEADING_STYLE.match(name.strip())
        if m:
            return int(m.group(1))
        return level if level is not None and level < 10 else None

    # Blocks in document order: ("h", text) for headings, ("t", text) for everything else. Tables are
    # walked cell by cell, nested tables included (layout tables hold whole articles).
    blocks: list[tuple[str, str]] = []

    def walk(container) -> None:
        for el in container:
            tag = el.tag
            if tag == _W + "p":
                text = _paragraph_text(el).strip()
                if text:
                    blocks.append(("h" if heading_level(el) is not None else "t", text))
            elif tag == _W + "tbl":
                walk_table(el)
            elif tag in (_W + "sdt", _W + "customXml", _W + "sdtContent", _W + "smartTag"):
                walk(el)

    def walk_table(tbl) -> None:
        for tr in tbl.iterchildren(_W + "tr"):
            cells = []
            for tc in tr.iterchildren(_W + "tc"):
                start = len(blocks)
                walk(tc)
                cells.append(blocks[start:])
                del blocks[start:]
            simple = all(len(c) <= 1 and all(kind == "t" for kind, _ in c) for c in cells)
            if simple:
                row = " | ".join(c[0][1].replace("\n", " ") if c else "" for c in cells)
                if row.strip(" |"):
                    blocks.append(("t", row))
            else:
                for c in cells:
                    blocks.extend(c)

    walk(document.element.body)
    segments: list[tuple[str, int | None, str | None]] = []
    section: str | None = None
    buf: list[str] = []
    only_headings = True
    for kind, text in blocks:
        if kind == "h":
            if buf and not only_headings:
                segments.append((clean_text("\n\n".join(buf)), None, section))
                buf = []
            section = _collapse(text)[:120]
            only_headings = True
        else:
            only_headings = False
        buf.append(text)
    if buf:
        segments.append((clean_text("\n\n".join(buf)), None, section))
    return {"segments": [s for s in segments if s[0]]}


# --- PDF --------------------------------------------------------------------------------------------


def _page_has_images(page) -> bool:
    try:
        resources = page.get("/Resources")
        resources = resources.get_object() if resources is not None else None
        xobjects = resources.get("/XObject") if resources is not None else None
        if xobjects is None:
            return False
        for ref in xobjects.get_object().values():
            obj = ref.get_object()
            if obj.get("/Subtype") == "/Image":
                return True
            if obj.get("/Subtype") == "/Form":
                return True  # a scan wrapped in a form XObject; rendering decides
        return False
    except Exception:
        return True  # unreadable resources: let OCR look at the rendered page


def _tesseract_ready(languages: str) -> str | None:
    exe = shutil.which("tesseract")
    if exe is None:
        return None
    try:
        listed = subprocess.run([exe, "--list-langs"], capture_output=True, timeout=20, text=True)
    except (OSError, subprocess.TimeoutExpired):
        return None
    have = {line.strip() for line in listed.stdout.splitlines()[1:]}
    return exe if all(lang in have for lang in languages.split("+")) else None


def _ocr_pages(path: str, numbers: list[int], request: dict, exe: str, deadline: float) -> dict[int, str]:
    limits = request["limits"]
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(path, password=request.get("password") or None)
    env = dict(os.environ, OMP_THREAD_LIMIT="1")  # one engine thread: the box is shared with the app
    texts: dict[int, str] = {}
    try:
        for number in numbers:
            page = pdf[number - 1]
            width, height = page.get_size()
            scale = limits["ocr_dpi"] / 72
            if width * height * scale * scale > OCR_MAX_PIXELS:
                scale = math.sqrt(OCR_MAX_PIXELS / max(width * height, 1.0))
            bitmap = page.render(scale=scale, grayscale=True)
            # Binary PGM: tesseract reads it from stdin, so no image ever touches the disk.
            w, h, stride = bitmap.width, bitmap.height, bitmap.stride
            raw = bytes(bitmap.buffer)
            rows = raw if stride == w else b"".join(raw[y * stride : y * stride + w] for y in range(h))
            pgm = b"P5\n%d %d\n255\n" % (w, h) + rows
            del raw, rows, bitmap
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Failure("parser_timeout", "OCR ran out of time")
            try:
                done = subprocess.run(
                    [exe, "stdin", "stdout", "-l", limits["ocr_languages"]],
                    input=pgm,
                    capture_output=True,
                    timeout=remaining,
                    env=env,
                )
            except subprocess.TimeoutExpired:  # run() has killed and reaped tesseract
                raise Failure("parser_timeout", f"OCR of page {number} ran out of time") from None
            if done.returncode != 0:
                raise Failure(
                    "parser_crashed",
                    f"tesseract exit {done.returncode}: {done.stderr.decode('utf-8', 'replace')[-300:]}",
                )
            texts[number] = clean_text(done.stdout.decode("utf-8", "replace"))
    finally:
        pdf.close()
    return texts


def _parse_pdf(path: str, request: dict) -> dict:
    # pypdf reports every oddity of a damaged file through logging; thousands of lines help no one.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    from pypdf.errors import LimitReachedError

    try:
        return _read_pdf(path, request)
    except LimitReachedError as exc:
        # pypdf's own safety limits: cycles and runaway nesting mean a broken file; the rest (a
        # stream that inflates past 75 MB, millions of tokens) mean a file built to exhaust us.
        message = str(exc).lower()
        if any(word in message for word in ("cycl", "loop", "depth", "recursion")):
            raise Failure("corrupt", f"pypdf: {exc}") from None
        raise Failure("oversize", f"pypdf: {exc}", reason="stream") from None


def _read_pdf(path: str, request: dict) -> dict:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError, LimitReachedError

    limits = request["limits"]
    reader = PdfReader(path, strict=False)
    if reader.is_encrypted:
        password = request.get("password") or ""
        try:
            result = reader.decrypt(password)
        except DependencyError as exc:
            raise Failure("unsupported_type", f"pypdf: {exc}", reason="crypto") from None
        if result == PasswordType.NOT_DECRYPTED:
            raise Failure("encrypted", "a password is needed to open it", wrong_password=bool(password))
    page_count = len(reader.pages)
    if page_count == 0:
        raise Failure("empty", "the PDF has no pages")
    if page_count > limits["max_pages"]:
        raise Failure("oversize", f"{page_count} pages", reason="pages", pages=page_count)

    texts: list[str] = []
    failed: list[int] = []
    images: list[bool] = []
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = clean_text(page.extract_text() or "")
        except (LimitReachedError, MemoryError, Failure):
            raise
        except Exception as exc:  # a damaged page must not cost the other pages
            failed.append(number)
            text = ""
            logging.getLogger(__name__).debug("page %d: %r", number, exc)
        texts.append(text)
        images.append(not text and _page_has_images(page))

    warnings: list[str] = []
    if failed and len(failed) == page_count:
        raise Failure("corrupt", "no page could be read", pages=page_count)
    if failed:
        warnings.append(f"{_pages_phrase(failed)} could not be read (damaged content); their text is missing.")
    blank = [
        n for n, (t, has_img) in enumerate(zip(texts, images), start=1) if not t and not has_img and n not in failed
    ]
    if blank and any(texts):
        verb = "is" if len(blank) == 1 else "are"
        warnings.append(f"{_pages_phrase(blank)} {verb} blank (no text, no images).")
    ocr_used = False
    scanned = [n for n, (t, has_img) in enumerate(zip(texts, images), start=1) if not t and has_img]
    exe = _tesseract_ready(limits["ocr_languages"]) if scanned and limits["ocr"] else None
    if scanned:
        if exe is None:
            if not any(texts):
                reason = "disabled" if not limits["ocr"] else "no_tesseract"
                raise Failure("image_only", reason=reason, languages=limits["ocr_languages"], pages=page_count)
            warnings.append(
                f"{_pages_phrase(scanned)}: scanned images without a text layer, skipped (OCR is not available)."
            )
        else:
            if len(scanned) > limits["ocr_max_pages"]:
                raise Failure(
                    "oversize",
                    f"{len(scanned)} scanned pages",
                    reason="ocr_pages",
                    pages=len(scanned),
                    limit=limits["ocr_max_pages"],
                )
            # Stop tesseract (and reap it) a little before the parent would kill this whole process.
            timeout = float(limits["timeout_s"])
            deadline = _PROCESS_START + timeout - min(1.0, 0.2 * timeout)
            for number, text in _ocr_pages(path, scanned, request, exe, deadline).items():
                texts[number - 1] = text
            ocr_used = True
            warnings.append(f"{_pages_phrase(scanned)}: read with OCR; expect some recognition errors.")
    if not any(texts):
        raise Failure("empty", "no text on any page", pages=page_count)
    segments = [(text, number, None) for number, text in enumerate(texts, start=1) if text]
    return {"segments": segments, "page_count": page_count, "ocr_used": ocr_used, "warnings": warnings}


def _pages_phrase(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:20]) + (f" and {len(numbers) - 20} more" if len(numbers) > 20 else "")
    return f"Page {shown}" if len(numbers) == 1 else f"Pages {shown}"


# --- entry point ------------------------------------------------------------------------------------


def _read_limited(path: str, request: dict) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read(request["limits"]["max_bytes"] + 1)
    if len(data) > request["limits"]["max_bytes"]:
        raise Failure("oversize", reason="bytes", size=len(data))
    return data


PARSERS = {"pdf": _parse_pdf, "docx": _parse_docx, "txt": _parse_txt, "markdown": _parse_markdown, "html": _parse_html}


def parse(request: dict) -> dict:
    result = PARSERS[request["kind"]](request["path"], request)
    segments = [list(s) for s in result["segments"] if s[0].strip()]
    if not segments:
        raise Failure("empty", "no text")
    chars = sum(len(s[0]) for s in segments)
    if chars > request["limits"]["max_chars"]:
        raise Failure("oversize", f"{chars} characters", reason="chars", chars=chars)
    return {
        "segments": segments,
        "page_count": result.get("page_count"),
        "encoding": result.get("encoding"),
        "ocr_used": bool(result.get("ocr_used")),
        "warnings": list(result.get("warnings", [])),
    }


def _limit_resources(limits: dict) -> None:
    import resource

    memory = int(limits["memory_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not leave a core file behind
    cpu = int(limits["timeout_s"]) + 5  # backstop should the parent die before it can kill us
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))


def main() -> int:
    import faulthandler

    faulthandler.enable()  # a segfault leaves a traceback on stderr for the parent's log
    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    _limit_resources(request["limits"])
    # Libraries print; the reply gets a private copy of stdout and everything else goes to stderr.
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        reply = {"ok": True, "document": parse(request)}
    except Failure as failure:
        reply = {"ok": False, "code": failure.code, "detail": failure.detail, "info": failure.info}
    except MemoryError:
        reply = {"ok": False, "code": "parser_out_of_memory", "detail": "MemoryError", "info": {}}
    except RecursionError:
        reply = {"ok": False, "code": "corrupt", "detail": "structure nested too deeply", "info": {}}
    except Exception as exc:  # parsers raise anything on malformed input; the file is the cause
        reply = {"ok": False, "code": "corrupt", "detail": f"{type(exc).__name__}: {exc}"[:500], "info": {}}
    try:
        data = json.dumps(reply, ensure_ascii=False).encode("utf-8")
        with os.fdopen(reply_fd, "wb") as out:
            out.write(data)
    except MemoryError:
        return EXIT_OUT_OF_MEMORY
    return 0


if __name__ == "__main__":
    sys.exit(main())
