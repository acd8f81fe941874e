"""What a finished summary says about itself: the coverage line per document ("23 of 23 pages read,
nothing truncated"), the chunk accounting, and the Markdown shown and exported (points with their
citations, then the quoted passage behind every citation)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from core.condenser.chunks import Accounting
from core.condenser.cite import Catalog, Point, Source, page_ranges
from core.condenser.documents import ExtractedDocument
from core.condenser.points import md_quote, md_text


@dataclass
class ChunkRecord:
    """One chunk and what became of it: every chunk of a run has one."""

    doc: int
    number: int
    of: int
    citation: str  # e.g. "[pp. 12-14]"
    tokens: int
    status: Literal["summarised", "quoted"]  # quoted: the model gave nothing usable; its opening kept
    notes: int  # points taken from it


@dataclass
class DocumentReport:
    name: str
    kind: str
    page_count: int | None
    pages_read: int  # pages with text
    unread_pages: list[int]  # pages without readable text (blank, damaged, scanned without OCR)
    sections: int  # distinct places a citation can name
    chunks: int
    quoted_chunks: int
    complete: bool  # every character of the extracted text reached a chunk
    missing_chars: int
    ocr_used: bool
    warnings: list[str] = field(default_factory=list)
    coverage: str = ""


def document_report(doc: ExtractedDocument, acc: Accounting, records: Sequence[ChunkRecord]) -> DocumentReport:
    pages = sorted({s.page for s in doc.segments if s.page is not None})
    unread = [n for n in range(1, doc.page_count + 1) if n not in set(pages)] if doc.page_count else []
    report = DocumentReport(
        name=doc.name,
        kind=doc.kind,
        page_count=doc.page_count,
        pages_read=len(pages),
        unread_pages=unread,
        sections=len(doc.locators()),
        chunks=len(records),
        quoted_chunks=sum(1 for r in records if r.status == "quoted"),
        complete=acc.complete,
        missing_chars=acc.chars - acc.chunked_chars,
        ocr_used=doc.ocr_used,
        warnings=list(doc.warnings),
    )
    report.coverage = coverage_line(report)
    return report


def coverage_line(r: DocumentReport) -> str:
    if r.page_count:
        line = f"{r.pages_read} of {r.page_count} pages read"
        if r.unread_pages:
            shown = page_ranges(r.unread_pages).replace("pp. ", "pages ").replace("p. ", "page ")
            line += f" ({shown} had no readable text)"
    else:
        line = f"{r.sections} of {r.sections} section{'s' if r.sections != 1 else ''} read"
    if r.ocr_used:
        line += " (scanned pages read with OCR)"
    line += ", nothing truncated" if r.complete else f", {r.missing_chars:,} characters NOT read"
    chunks = f"{r.chunks} chunk{'s' if r.chunks != 1 else ''}"
    if r.quoted_chunks:
        line += (
            f"; {r.chunks - r.quoted_chunks} of {chunks} summarised, {r.quoted_chunks} quoted because "
            "the model returned nothing usable for them"
        )
    elif r.chunks > 1:
        line += f"; all {chunks} summarised"
    return line + "."


def combined_coverage(reports: Sequence[DocumentReport]) -> str:
    if len(reports) == 1:
        return reports[0].coverage
    return f"{len(reports)} documents: " + " ".join(f"{r.name}: {r.coverage}" for r in reports)


def attach_quotes(points: list[Point], catalog: Catalog, per_point: int = 5) -> None:
    """The passage behind each citation: for a point resting on many places, those that match it
    best (a whole-document fallback citation would otherwise list every page)."""
    for p in points:
        quotes = [(s, *catalog.quote_scored(p.text, s)) for s in p.sources]
        best = sorted(quotes, key=lambda q: -q[2])[:per_point]
        keep = {q[0] for q in best}
        p.quotes = [(s, quote) for s, quote, _ in quotes if s in keep]


def render_points(points: Sequence[Point], catalog: Catalog, with_names: bool) -> str:
    lines: list[str] = []
    for p in points:
        cite = catalog.cite(p.sources, with_names)
        body = md_text(p.text) + (" *(quoted)*" if p.quoted else "")
        if p.kind == "bullet":
            lines.append(f"- {body} {cite}".rstrip())
        else:
            if lines and lines[-1].startswith("- "):
                lines.append("")
            lines.append(f"{body} {cite}".rstrip())
            lines.append("")
    return "\n".join(lines).strip()


def render_sources(groups: Sequence[Sequence[Point]], catalog: Catalog, with_names: bool) -> str:
    """Every citation with the passage it points to, once per place."""
    seen: dict[Source, str] = {}
    for points in groups:
        for p in points:
            for source, quote in p.quotes:
                if source not in seen and quote:
                    seen[source] = quote
    if not seen:
        return ""
    ordered = catalog.ordered(seen)
    items = [f"- **{catalog.cite([s], with_names)}** “{md_quote(seen[s])}”" for s in ordered]
    return (
        "<details><summary>Sources: the passage behind each citation</summary>\n\n"
        + "\n".join(items)
        + "\n\n</details>"
    )


def heading(r: DocumentReport) -> str:
    """The heading naming a summarised document and its size: "### report.pdf · 17 pages"."""
    size = f" · {r.page_count} page{'s' if r.page_count != 1 else ''}" if r.page_count else ""
    return f"### {md_text(r.name)}{size}"


def warning_lines(r: DocumentReport) -> list[str]:
    # Said in words: an emoji alone is an empty box where the font lacks it, and means nothing to a screen reader.
    return [f"> **Warning:** {md_text(w)}" for w in r.warnings]


def render_markdown(
    catalog: Catalog,
    reports: Sequence[DocumentReport],
    per_doc: Sequence[Sequence[Point]],
    combined: Sequence[Point] | None,
) -> str:
    """The summary as shown and stored: for several documents the combined summary first, then each
    document's; every point with its citation; the coverage lines and extraction warnings; then the
    quoted passage behind every citation in a collapsible list."""
    multi = combined is not None
    out: list[str] = []
    if multi:
        out += [
            "### Combined summary",
            "",
            render_points(combined or [], catalog, True),
            "",
            f"*{md_text(combined_coverage(reports))}*",
            "",
        ]
        for points, report in zip(per_doc, reports):
            out += [heading(report), "", render_points(points, catalog, False), "", f"*{md_text(report.coverage)}*", ""]
            out += warning_lines(report)
    else:
        out += [heading(reports[0]), "", render_points(per_doc[0], catalog, False), ""]
        out += [f"*{md_text(reports[0].coverage)}*", ""] + warning_lines(reports[0])
    sources = render_sources([*(per_doc or []), *([combined] if combined else [])], catalog, multi)
    if sources:
        out += ["", sources]
    return "\n".join(out).strip() + "\n"


def export_markdown(title: str, markdown: str, settings: dict[str, Any], created_at: float | None = None) -> str:
    """A standalone Markdown file: title, how it was made, then the summary as shown."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(created_at or time.time()))
    made = ", ".join(
        f"{k}: {v}"
        for k, v in settings.items()
        if v not in ("", None, 0) and k in ("length", "form", "focus", "audience", "language", "model")
    )
    return f"# {md_text(title)}\n\n*Condensed {when}. {md_text(made)}*\n\n{markdown}"
