"""A summary as it is read aloud: its headings, points and warnings, without what only a reader can use - the
citations after each point ("[p. 3]", "[pp. 3-5, 9]", "[a.pdf, § Intro]"), the "(quoted)" marks, the coverage lines
and the quoted sources. The text stays Markdown; the speech service turns Markdown into words."""

from __future__ import annotations

import html
import re

# What Catalog.cite (core/condenser/cite.py) writes at the end of a point: pages, lines, sections, "N more sections",
# each optionally after a document's name ("[a.pdf, p. 3; b.docx, § Intro]"). Names never hold brackets.
_CITATION = re.compile(r"\s*\[(?:[^\[\]]*?, )?(?:pp?\. |§ |lines? |\d+ more sections)[^\[\]]*\]\s*$")
_QUOTED = re.compile(r"\s*\*\(quoted\)\*")
_SOURCES = re.compile(r"<details>.*?</details>", re.DOTALL)
_COVERAGE = re.compile(r"^\*[^*].*\*$")  # "*23 of 23 pages read, nothing truncated.*" (a whole line in italics)


def spoken_summary(markdown: str) -> str:
    """The summary's Markdown (StoredSummary.markdown) as it should be heard. Citations are left out rather than
    read as words: said after every point ("pages three to five, nine") they would interrupt each one, often
    doubling what a listener hears, and a page number helps only someone with the document open; the summary on
    screen and its export keep them."""
    lines = []
    for line in _SOURCES.sub("", markdown or "").splitlines():
        line = line.rstrip()
        if _COVERAGE.match(line.strip()):
            continue
        line = _QUOTED.sub("", _CITATION.sub("", line))
        if line.startswith("> "):  # an extraction warning: read as a plain line
            line = line[2:]
        lines.append(line)
    text = "\n".join(lines)
    return html.unescape(re.sub(r"\n{3,}", "\n\n", text)).strip()
