"""Drafts as files: Markdown as written, HTML (every character of model output escaped; only a small
Markdown subset becomes tags) and DOCX via python-docx (headings, lists, bold and italic kept)."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

BlockKind = Literal["heading", "bullet", "number", "paragraph", "rule"]
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not allowed in XML; never meaningful here


@dataclass
class Block:
    kind: BlockKind
    text: str = ""
    level: int = 0  # heading level 1-6


def blocks(markdown: str) -> Iterator[Block]:
    """The Markdown subset models write: # headings, - / 1. list items, --- rules, paragraphs
    (consecutive lines joined)."""
    para: list[str] = []

    def flush() -> Iterator[Block]:
        if para:
            yield Block("paragraph", "\n".join(para))
            para.clear()

    for line in _CONTROL.sub("", markdown or "").splitlines():
        stripped = line.strip()
        if not stripped:
            yield from flush()
            continue
        if m := re.match(r"^(#{1,6})\s+(.*?)\s*#*$", stripped):
            yield from flush()
            yield Block("heading", m.group(2), len(m.group(1)))
        elif re.fullmatch(r"(?:-{3,}|\*{3,}|_{3,})", stripped):
            yield from flush()
            yield Block("rule")
        elif m := re.match(r"^[-*+•]\s+(.*)$", stripped):
            yield from flush()
            yield Block("bullet", m.group(1))
        elif m := re.match(r"^\d+[.)]\s+(.*)$", stripped):
            yield from flush()
            yield Block("number", m.group(1))
        else:
            para.append(stripped)
    yield from flush()


# --------------------------------------------------------------------------------------------------
# inline formatting

_INLINE = re.compile(
    r"\*\*(.+?)\*\*|__(.+?)__|(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])|(?<!\w)_(?!\s)(.+?)(?<!\s)_(?!\w)|`([^`]+)`"
)
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def runs(text: str) -> list[tuple[str, str]]:
    """(style, text) pieces: style is '', 'b', 'i' or 'code'. Links become their text."""
    text = _LINK.sub(r"\1", text)
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _INLINE.finditer(text):
        if m.start() > pos:
            out.append(("", text[pos : m.start()]))
        bold, bold2, ital, ital2, code = m.groups()
        if bold or bold2:
            out.append(("b", bold or bold2))
        elif ital or ital2:
            out.append(("i", ital or ital2))
        else:
            out.append(("code", code))
        pos = m.end()
    if pos < len(text):
        out.append(("", text[pos:]))
    return out


def _inline_html(text: str) -> str:
    tags = {"b": "strong", "i": "em", "code": "code"}
    parts = []
    for style, piece in runs(text):
        escaped = html.escape(piece, quote=True).replace("\n", "<br>\n")
        parts.append(f"<{tags[style]}>{escaped}</{tags[style]}>" if style else escaped)
    return "".join(parts)


# --------------------------------------------------------------------------------------------------
# formats


def to_markdown(text: str) -> str:
    return (text or "").strip() + "\n"


def to_html(text: str, title: str = "Draft", lang: str = "en") -> str:
    """A standalone page. Model output is text, never markup: it is escaped everywhere, and the
    page's Content-Security-Policy forbids scripts as a second line of defence."""
    body: list[str] = []
    open_list: str | None = None
    for block in blocks(text):
        want = {"bullet": "ul", "number": "ol"}.get(block.kind)
        if open_list and want != open_list:
            body.append(f"</{open_list}>")
            open_list = None
        if want and not open_list:
            body.append(f"<{want}>")
            open_list = want
        if block.kind == "heading":
            body.append(f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>")
        elif block.kind in ("bullet", "number"):
            body.append(f"<li>{_inline_html(block.text)}</li>")
        elif block.kind == "rule":
            body.append("<hr>")
        else:
            body.append(f"<p>{_inline_html(block.text)}</p>")
    if open_list:
        body.append(f"</{open_list}>")
    safe_lang = re.sub(r"[^A-Za-z-]", "", lang)[:12] or "en"
    return (
        "<!doctype html>\n"
        f'<html lang="{safe_lang}">\n<head>\n<meta charset="utf-8">\n'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title or 'Draft')}</title>\n"
        "<style>body{font-family:system-ui,sans-serif;max-width:42em;margin:2em auto;padding:0 1em;"
        "line-height:1.6}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def to_docx(text: str, title: str = "Draft") -> bytes:
    """A Word document: # headings as Heading 1-6, list items as List Bullet / List Number,
    **bold** and *italic* as run formatting."""
    import docx  # python-docx; imported here so the app starts without it loaded

    document = docx.Document()
    document.core_properties.title = _CONTROL.sub("", title or "Draft")[:250]
    for block in blocks(text):
        if block.kind == "heading":
            paragraph = document.add_heading("", level=min(block.level, 9))
        elif block.kind == "bullet":
            paragraph = document.add_paragraph(style="List Bullet")
        elif block.kind == "number":
            paragraph = document.add_paragraph(style="List Number")
        elif block.kind == "rule":
            document.add_paragraph("")
            continue
        else:
            paragraph = document.add_paragraph()
        for style, piece in runs(block.text):
            run = paragraph.add_run(piece)
            run.bold = style == "b" or None
            run.italic = style == "i" or None
            if style == "code":
                run.font.name = "Courier New"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def export_filename(title: str, draft_id: str, ext: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title or "").strip("-").lower()[:40] or "draft"
    return f"{slug}-{(draft_id or 'new')[:8]}.{ext}"


_LANG_CODES = {
    "english": "en",
    "spanish": "es",
    "french": "fr",
    "german": "de",
    "italian": "it",
    "portuguese": "pt",
    "dutch": "nl",
    "polish": "pl",
    "swedish": "sv",
    "japanese": "ja",
    "chinese": "zh",
    "korean": "ko",
    "arabic": "ar",
    "hindi": "hi",
    "turkish": "tr",
}


def lang_code(language: str | None) -> str:
    """The HTML lang code of a language picked in the writer; English when unknown."""
    return _LANG_CODES.get((language or "").strip().lower(), "en")


def exported(text: str, title: str, fmt: str, language: str | None = None) -> bytes | str:
    """The draft as Markdown ("md"), HTML ("html") or DOCX (anything else: bytes)."""
    if fmt == "md":
        return to_markdown(text)
    if fmt == "html":
        return to_html(text, title, lang_code(language))
    return to_docx(text, title)
