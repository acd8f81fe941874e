"""What "Read aloud" reads of a summary (core/condenser/spoken.py): the headings and points, no citations, no
"(quoted)" marks, no coverage lines, no quoted sources."""

from __future__ import annotations

from core.condenser.spoken import spoken_summary

ONE = """### report.pdf · 17 pages

- Revenue grew by 12 % in 2025 [p. 3]
- Costs &amp; risks rose faster than planned *(quoted)* [pp. 3-5, 9]
- The team [sic] plans two hires [§ Staffing; § Budget]
- Lines matter too [lines 5-94]

*17 of 17 pages read, nothing truncated.*

> **Warning:** page 12 had no readable text

<details><summary>Sources: the passage behind each citation</summary>

- **[p. 3]** “Revenue grew by 12 %”
- **[pp. 3-5, 9]** “Costs rose”

</details>
"""

MANY = """### Combined summary

Both documents agree on the launch date. [a.pdf, p. 2; b.docx, § Intro]

*2 documents: a.pdf: 2 of 2 pages read, nothing truncated. b.docx: 3 of 3 sections read, nothing truncated.*

### b.docx

- Many places [§ One; § Two; § Three; § Four; 2 more sections]
"""


def test_a_summary_is_read_without_citations_marks_coverage_or_sources():
    text = spoken_summary(ONE)
    assert text.splitlines() == [
        "### report.pdf · 17 pages",
        "",
        "- Revenue grew by 12 % in 2025",
        "- Costs & risks rose faster than planned",
        "- The team [sic] plans two hires",  # the model's own words in brackets stay; only the citation goes
        "- Lines matter too",
        "",
        "**Warning:** page 12 had no readable text",
    ]


def test_several_documents_citations_with_names_and_counted_sections_go_too():
    text = spoken_summary(MANY)
    assert "[" not in text and "pages read" not in text
    assert "Both documents agree on the launch date." in text and "- Many places" in text
    assert text.startswith("### Combined summary") and "### b.docx" in text


def test_empty_and_plain_text_pass_through():
    assert spoken_summary("") == ""
    assert spoken_summary("Just a sentence.") == "Just a sentence."
