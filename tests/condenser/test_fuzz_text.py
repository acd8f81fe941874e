"""Property tests for the document reader's text parsers, which also run in the app process (pasted
text): decoding any bytes, cutting plain text into line-named segments, cutting Markdown at its headings.
Nothing is lost, every segment names lines or a heading that exist, and bad input gives only the
documented errors. (Whole files through the sandboxed worker: bench/fuzz_documents.py.)"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.condenser import worker as document_worker
from core.condenser.documents import DESCRIPTIONS, EmptyDocument, OversizeDocument, extract_text, sniff
from core.condenser.worker import TXT_SEGMENT_CHARS, Failure, clean_text, decode_text, split_markdown

FUZZ = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])

LINE = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "\t", "\x00", "\x1a", "\x0c", "\u2028", "\ufeff", "é", "x" * 900, "# not special here"]),
)
TEXT = st.lists(LINE, max_size=60).flatmap(
    lambda lines: st.sampled_from(["\n", "\r\n", "\r"]).map(lambda nl: nl.join(lines))
)


def blank(line: str) -> bool:
    return not document_worker._CONTROL_CHARS.sub("", line).strip()


@FUZZ
@given(st.one_of(TEXT, st.lists(st.sampled_from(["word " * 150, "", "\r\n", "line\n"]), max_size=200).map("\n".join)))
@example("a\n\n" + "x" * TXT_SEGMENT_CHARS + "\n\n\x00\n\nb")
def test_pasted_text_keeps_every_line_once_under_its_line_numbers(text):
    try:
        doc = extract_text(text, max_chars=10**6)
    except EmptyDocument:
        assert all(blank(line) for line in re.split(r"\r\n|\r|\n", text))
        return
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    covered: list[int] = []
    for segment in doc.segments:
        assert segment.text and segment.page is None
        m = re.fullmatch(r"line (\d+)|lines (\d+)-(\d+)", segment.section)
        assert m, segment.section
        first, last = (int(m.group(1)),) * 2 if m.group(1) else (int(m.group(2)), int(m.group(3)))
        assert 1 <= first < last <= len(lines) or first == last <= len(lines)
        assert not blank(lines[first - 1]) and not blank(lines[last - 1])
        assert segment.text == clean_text("\n".join(lines[first - 1 : last]))
        covered += range(first, last + 1)
    assert covered == sorted(set(covered)), "segments overlap or are out of order"
    assert {n for n, line in enumerate(lines, 1) if not blank(line)} <= set(covered), "a line was lost"
    # Cut at blank lines only, and only once a segment has its size.
    for before, after in zip(doc.segments, doc.segments[1:]):
        assert len(before.text) >= TXT_SEGMENT_CHARS * 0.5


@FUZZ
@given(st.integers(1, 50), st.integers(0, 50))
def test_pasted_text_over_the_limit_is_refused(size, limit):
    text = "a" * size
    try:
        doc = extract_text(text, max_chars=limit)
    except OversizeDocument:
        assert size > limit
        return
    assert size <= limit and doc.full_text == text


# --- Markdown ---------------------------------------------------------------------------------------

WORDS = st.integers(0, 10**6).map(lambda n: f"w{n}")
PHRASE = st.lists(WORDS, min_size=1, max_size=4).map(" ".join)


@st.composite
def markdown(draw):
    """A Markdown document built from blocks, with what the splitter must give back: the words in order,
    the section names, and link targets that must not appear."""
    blocks, words, sections, targets = [], [], [], []
    last_was_heading = False
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["atx", "setext", "para", "link", "fence", "list"]))
        phrase = draw(PHRASE)
        if kind == "atx":
            blocks.append("#" * draw(st.integers(1, 6)) + " " + phrase + draw(st.sampled_from(["", " ##"])))
        elif kind == "setext":
            blocks.append(phrase + "\n" + draw(st.sampled_from(["===", "---", "=", "------"])))
        elif kind == "link":
            target = f"https://t{draw(st.integers(0, 999))}.example/{draw(WORDS)}x"
            targets.append(target)
            blocks.append(f"see [{phrase}]({target}) now")
            phrase = f"see {phrase} now"
        elif kind == "fence":
            blocks.append(f"```\n# {phrase}\n```")
        elif kind == "list":
            blocks.append("- " + phrase.replace(" ", "\n- "))
        else:
            blocks.append(phrase)
        words += phrase.split()
        if kind in ("atx", "setext"):
            if last_was_heading:
                sections[-1] = phrase  # a run of headings is one segment, named by the last
            else:
                sections.append(phrase)
        last_was_heading = kind in ("atx", "setext")
    return "\n\n".join(blocks), words, sections, targets


def is_subsequence(needles: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(n == h for h in it) for n in needles)


@FUZZ
@given(markdown())
@example(("# w1\n\n# w2\n\nw3", ["w1", "w2", "w3"], ["w2"], []))
def test_markdown_keeps_every_word_in_order_and_names_sections_by_their_headings(case):
    text, words, sections, targets = case
    segments = split_markdown(text)
    out = " ".join(s[0] for s in segments)
    assert is_subsequence(words, re.findall(r"w\d+|see|now", out)), (words, out)
    named = [s[2] for s in segments if s[2] is not None]
    assert named == sections
    assert all(target not in out for target in targets)
    assert all(s[0].strip() for s in segments)


@FUZZ
@given(TEXT)
@example("```\n# a\n" * 50)
@example("x\n===\n" * 30)
def test_any_text_splits_as_markdown_without_error(text):
    segments = split_markdown(text)
    for body, page, section in segments:
        assert body.strip() and page is None
        assert section is None or 0 < len(section) <= 120


# --- decoding and sniffing ------------------------------------------------------------------------------


@FUZZ
@given(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00\ufeff"), min_size=1, max_size=200),
    st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"]),
)
@example("œuvres, Molière", "utf-8")
def test_unicode_text_decodes_to_itself(text, codec):
    """UTF-8 (with or without a BOM) and UTF-16/32 with a BOM are read exactly."""
    decoded, _ = decode_text(text.encode(codec))
    assert decoded == text


@FUZZ
@given(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=200),
    st.sampled_from(["utf-16-le", "utf-16-be"]),
)
def test_bomless_utf16_latin_text_is_recognised(text, codec):
    decoded, encoding = decode_text(text.encode(codec))
    assert decoded == text and encoding == codec


@FUZZ
@given(st.binary(max_size=300))
@example(b"\xff\xfe\x00")  # a UTF-16 BOM and an odd byte
@example(b"\xef\xbb\xbf\xff")
def test_any_bytes_decode_or_fail_with_a_verdict(data):
    try:
        text, encoding = decode_text(data)
    except Failure as failure:
        assert failure.code in ("corrupt", "mislabelled")
        return
    assert isinstance(text, str) and encoding


@FUZZ
@given(st.binary(max_size=100))
def test_sniff_always_names_a_known_kind(head):
    assert sniff(head) in DESCRIPTIONS
