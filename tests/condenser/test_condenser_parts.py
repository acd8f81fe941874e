"""The condenser's pure parts: citations written only from real places, the quoted passage behind a
citation, model output cleaned of links, images and HTML, repetition removed, chunks that never lose a
character, and prompts that refuse undeclared placeholders. No model needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.condenser.chunks import account, chunk_documents, pack, pieces_of, split_text
from core.condenser.cite import Catalog, Point, Source, attribute, line_ranges, model_cited, page_ranges
from core.condenser.documents import ExtractedDocument, Segment
from core.condenser.points import (
    clean_model_text,
    is_looping,
    md_quote,
    merge_duplicates,
    note_numbers,
    parse_points,
    strip_model_citations,
)
from core.condenser.prompts import load_condense_prompts
from core.condenser.report import ChunkRecord, document_report, render_points
from tests.support.paths import ROOT


def words(text: str) -> int:
    """A real (if crude) token count for chunking tests: one token a word."""
    return len(text.split())


def pdf_doc(pages: dict[int, str], page_count: int | None = None) -> ExtractedDocument:
    return ExtractedDocument(
        "report.pdf", "pdf", [Segment(t, n, None) for n, t in pages.items()], page_count=page_count or max(pages)
    )


def sectioned_doc() -> ExtractedDocument:
    return ExtractedDocument(
        "guide.md",
        "markdown",
        [
            Segment("Opening words before any heading.", None, None),
            Segment("Install it with the package manager. It takes a minute.", None, "Install [beta]"),
            Segment("Search recursively. Automatic filtering respects .gitignore files.", None, "Usage"),
        ],
    )


# --- citations -----------------------------------------------------------------------------------


def test_page_and_line_ranges():
    assert page_ranges([3]) == "p. 3"
    assert page_ranges([4, 3]) == "pp. 3-4"
    assert page_ranges([3, 4, 5, 9, 11, 12]) == "pp. 3-5, 9, 11-12"
    assert line_ranges([(5, 94), (96, 171)]) == "lines 5-171"  # neighbours across a blank line merge
    assert line_ranges([(5, 94), (300, 310)]) == "lines 5-94, 300-310"
    assert line_ranges([(7, 7)]) == "line 7"


def test_citations_name_only_places_the_document_has():
    doc = pdf_doc({1: "Alpha.", 2: "Beta.", 3: "Gamma.", 5: "Epsilon."}, page_count=6)
    catalog = Catalog([doc])
    cite = catalog.cite(
        [Source(0, "p. 3"), Source(0, "p. 2"), Source(0, "p. 99"), Source(1, "p. 1"), Source(0, "p. 5")]
    )
    assert cite == "[pp. 2-3, 5]"  # page 99 and a document that does not exist are dropped
    assert catalog.cite([Source(0, "p. 4")]) == ""  # a blank page has no text to cite
    md = sectioned_doc()
    catalog = Catalog([doc, md])
    assert catalog.cite([Source(1, "guide.md"), Source(1, "Install [beta]")]) == "[§ start; § Install (beta)]"
    assert (
        catalog.cite([Source(0, "p. 1"), Source(1, "Usage")], with_names=True)
        == "[report.pdf, p. 1; guide.md, § Usage]"
    )


def test_quote_is_the_passage_that_supports_the_point():
    doc = pdf_doc(
        {
            4: "The budget was cut by 12 percent in 2021. Staff morale stayed high. "
            "The new office opens in Lyon next spring."
        }
    )
    catalog = Catalog([doc])
    assert (
        catalog.quote("An office in Lyon will open in the spring", Source(0, "p. 4"))
        == "The new office opens in Lyon next spring."
    )
    assert "12 percent" in catalog.quote("Budget cuts of 12 percent", Source(0, "p. 4"))


def test_attribution_picks_matching_places_and_falls_back_to_all_the_model_saw():
    a, b, c = Source(0, "p. 1"), Source(0, "p. 2"), Source(0, "p. 3")
    candidates = [
        ((a,), "Rivers carry sediment to the delta."),
        ((b,), "The glacier feeds the river in spring."),
        ((c,), "Taxes on imported grain rose sharply."),
    ]
    assert attribute("Grain import taxes rose", candidates, (a, b, c)) == (c,)
    assert attribute("Completely unrelated claim about violins", candidates, (a, b, c)) == (a, b, c)


def test_a_page_the_model_cites_is_kept_only_if_it_was_shown_and_says_so():
    p3, p4 = Source(0, "p. 3"), Source(0, "p. 4")
    shown = [(p3, "The budget was cut by 12 percent."), (p4, "A new office opens in Lyon.")]
    assert model_cited(["p. 4"], shown, "A new office opens in Lyon next year") == (p4,)
    assert model_cited(["p. 4"], shown, "The budget was cut by 12 percent") == ()  # wrong page
    assert model_cited(["p. 99"], shown, "The budget was cut by 12 percent") == ()  # no such page
    assert model_cited(["pp. 3-4"], shown, "Budget cut 12 percent; new office opens in Lyon") == (p3, p4)


# --- model output --------------------------------------------------------------------------------


def test_sanitiser_strips_links_images_html_and_urls():
    raw = (
        "- See [the site](http://evil.example/x) and ![tracker](http://evil.example/p.png) now.\n"
        "- Visit <https://evil.example> or www.evil.example or http://evil.example/a?b=c today.\n"
        '- <img src=x onerror=alert(1)><a href="http://evil.example">click</a> <script>bad()</script>\n'
        "- Reference [here][1].\n\n[1]: http://evil.example/ref\n"
    )
    cleaned = clean_model_text(raw)
    assert "http" not in cleaned and "www." not in cleaned and "evil.example" not in cleaned
    assert "<" not in cleaned and "](" not in cleaned and "![" not in cleaned
    assert "See the site and  now." in cleaned and "click" in cleaned and "Reference here." in cleaned
    kept = clean_model_text("Read [the docs](https://example.com/docs).", allow_links=True)
    assert kept == "Read [the docs](https://example.com/docs)."
    assert "![" not in clean_model_text("![x](https://example.com/i.png)", allow_links=True)


def test_rendered_points_escape_html_and_quotes_never_link():
    catalog = Catalog([pdf_doc({1: "Text"})])
    md = render_points([Point("a < b & <b>c</b>", (Source(0, "p. 1"),))], catalog, False)
    assert md == "- a &lt; b &amp; &lt;b&gt;c&lt;/b&gt; [p. 1]"
    quoted = md_quote("Go to https://example.com/x now ![img](y) [z](w)")
    assert "`https://example.com/x`" in quoted and "\\!\\[img\\]\\(y\\)" in quoted


def test_model_citations_are_taken_out_and_note_numbers_read():
    text, cites = strip_model_citations("Sales rose [p. 3] and costs fell (pp. 4-5) as noted [N2, N7].")
    assert text == "Sales rose and costs fell as noted." and cites == ["p. 3", "pp. 4-5", "N2, N7"]
    assert note_numbers(cites) == [2, 7]
    assert note_numbers(["notes N3 & 4"]) == [3, 4] and note_numbers(["p. 3"]) == []


def test_parse_points_drops_labels_titles_repeats_and_unfinished_sentences():
    raw = (
        "Here are the key points:\n\n## Summary\n\n- The dam holds 3 billion litres.\n"
        "- The dam holds 3 billion litres.\n* It was built in 1932 [p. 2].\n\nIntroduction\n\n"
        "The spillway failed twice. The spillway failed twice. It was then rebuilt in"
    )
    parsed = parse_points(raw, complete=False)
    texts = [p.text for p, _ in parsed]
    assert texts == ["The dam holds 3 billion litres.", "It was built in 1932.", "The spillway failed twice."]
    assert parsed[1][1] == ["p. 2"]
    assert [p.kind for p, _ in parsed] == ["bullet", "bullet", "paragraph"]


def test_points_that_only_echo_the_request_are_dropped():
    request = "Summarise this part of the document (part 2 of 4 of “Pasted text”) in 2 or 3 short bullet points."
    parsed = parse_points(
        "- Paste text in 2 or 3 short bullet points.\n- The dam holds water for the town.", instructions=request
    )
    assert [p.text for p, _ in parsed] == ["The dam holds water for the town."]


def test_repetition_is_detected_and_cut():
    assert is_looping("It is big. " * 2 + "Cats purr. It is big. It is big. And")
    assert is_looping("le début de l'épée, " * 5)
    assert not is_looping("The years 2001, 2002, 2003, 2004 and 2005 were good. Then came 2006.")
    assert (
        parse_points("- Le début de l'épée, le début de l'épée, le début de l'épée, le")[0][0].text
        == "Le début de l'épée…"
    )


def test_duplicates_merge_their_sources():
    a, b = Source(0, "p. 1"), Source(0, "p. 2")
    merged = merge_duplicates([Point("Prices rose.", (a,)), Point("prices rose", (b,)), Point("Other.", (b,))])
    assert [p.text for p in merged] == ["Prices rose.", "Other."] and merged[0].sources == (a, b)


# --- chunks --------------------------------------------------------------------------------------


def test_split_text_respects_the_limit_and_keeps_every_character():
    text = "\n\n".join(f"Paragraph {i}. " + "word " * (i * 7) for i in range(1, 12)) + " " + "x" * 500
    parts = split_text(text, 20, words)
    assert all(n <= 20 for _, n in parts)
    assert re.sub(r"\s", "", "".join(t for t, _ in parts)) == re.sub(r"\s", "", text)


def test_chunks_keep_pages_whole_when_they_can_and_account_for_everything():
    pages = {n: " ".join(f"p{n}w{i}." for i in range(30 + 10 * (n % 3))) for n in range(1, 21)}
    doc = pdf_doc(pages)
    chunks = chunk_documents([doc], words, budget=120, overlap=10)
    assert all(c.tokens <= 120 - 10 for c in chunks)
    for c in chunks:  # no page is cut unless it is bigger than a chunk
        for s in c.sources:
            assert all(p.source in c.sources for p in c.pieces)
    pages_split = {s for i, c in enumerate(chunks[:-1]) for s in set(c.sources) & set(chunks[i + 1].sources)}
    assert not pages_split
    [acc] = account([doc], chunks)
    assert acc.complete and acc.chars == acc.chunked_chars
    assert chunks[1].context and chunks[0].text.endswith(chunks[1].context)  # overlap from the previous chunk
    assert [(c.number, c.of) for c in chunks] == [(i + 1, len(chunks)) for i in range(len(chunks))]


def test_a_page_bigger_than_a_chunk_is_split_and_still_fully_accounted():
    doc = pdf_doc({1: "short page.", 2: " ".join(f"w{i}." for i in range(500)), 3: "end page."})
    chunks = chunk_documents([doc], words, budget=100, overlap=0)
    assert sum(1 for c in chunks if Source(0, "p. 2") in c.sources) >= 5
    [acc] = account([doc], chunks)
    assert acc.complete
    # accounting notices a missing piece
    chunks[2].pieces.pop()
    [acc] = account([doc], chunks)
    assert not acc.complete and acc.missing == ["p. 2"]


def test_pack_never_exceeds_the_budget():
    doc = sectioned_doc()
    pieces = pieces_of(doc, 0, words, 4)
    for group in pack(pieces, 6):
        assert sum(p.tokens for p in group) <= 6


def test_coverage_names_pages_without_text_and_never_claims_what_was_not_read():
    doc = pdf_doc({1: "One.", 2: "Two.", 3: "Three.", 5: "Five."}, page_count=6)
    doc.warnings = ["Pages 4, 6 are blank (no text, no images)."]
    chunks = chunk_documents([doc], words, budget=50, overlap=0)
    records = [ChunkRecord(0, c.number, c.of, "", c.tokens, "summarised", 1) for c in chunks]
    report = document_report(doc, account([doc], chunks)[0], records)
    assert report.coverage == "4 of 6 pages read (pages 4, 6 had no readable text), nothing truncated."
    chunks[0].pieces.pop()
    report = document_report(doc, account([doc], chunks)[0], records)
    assert "nothing truncated" not in report.coverage and "characters NOT read" in report.coverage
    records[0].status = "quoted"
    assert (
        "quoted because the model returned nothing usable"
        in document_report(doc, account([doc], chunks)[0], records).coverage
    )


# --- prompts ---------------------------------------------------------------------------------------


def test_prompts_load_and_refuse_undeclared_placeholders(tmp_path: Path):
    prompts = load_condense_prompts()
    assert {"tldr", "short", "detailed"} <= set(prompts.lengths)
    assert {"bullets", "prose", "executive", "takeaways", "actions"} <= set(prompts.forms)
    user = prompts.render(
        "map",
        "user",
        begin="<d>",
        end="</d>",
        text="a  {b}\n\n  c",
        position="part 1",
        points="3",
        language_rule="",
        audience_rule="",
        focus_rule="",
    )
    assert "<d>\na  {b}\n\n  c\n</d>" in user  # the data is inserted verbatim, never formatted
    bad = ROOT / "prompts" / "condense_prompts.toml"
    text = bad.read_text(encoding="utf-8").replace("Summarize the following text in", "{secret}", 1)
    (tmp_path / "p.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="undeclared placeholders"):
        load_condense_prompts(tmp_path / "p.toml")
