"""What a rendered summary cites, read from the text the user sees, and the check that every cited page,
line range or section exists in the document it names."""

from __future__ import annotations

import re

from core.condenser.documents import ExtractedDocument


def cited_places(markdown: str) -> list[str]:
    """Every place named in a citation of the rendered summary, e.g. "p. 3", "§ Usage", "lines 5-94",
    parsed from the text the user sees (independently of the code that wrote it)."""
    body = markdown.split("<details>")[0]
    places: list[str] = []
    for inner in re.findall(r"\[((?:p\.|pp\.|§|lines?) [^\]]*)\]", body):
        for part in inner.split("; "):
            places.append(part)
    return places


def check_citations(markdown: str, doc: ExtractedDocument) -> int:
    """Each cited page exists (and has text); each cited section is one of the document's."""
    locators = set(doc.locators())
    count = 0
    for place in cited_places(markdown):
        count += 1
        if place.startswith(("p. ", "pp. ")):
            for a, b in re.findall(r"(\d+)(?:-(\d+))?", place):
                for n in range(int(a), int(b or a) + 1):
                    assert 1 <= n <= (doc.page_count or 0), place
                    assert f"p. {n}" in locators, place
        elif place.startswith("line"):
            spans = [tuple(map(int, re.findall(r"\d+", loc))) for loc in locators]
            for a, b in re.findall(r"(\d+)(?:-(\d+))?", place):
                lo, hi = int(a), int(b or a)
                assert any(s[0] == lo for s in spans) and any(s[-1] == hi for s in spans), place
        else:
            name = place.removeprefix("§ ")
            assert (
                name == "start"
                or name.endswith(" more sections")
                or name in {loc.replace("[", "(").replace("]", ")") for loc in locators}
            ), place
    return count
