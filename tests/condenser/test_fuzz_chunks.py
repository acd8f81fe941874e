"""Property tests for the condenser's chunk accounting (core/condenser/chunks.py) on arbitrary documents:
every segment's text lands in chunks exactly once and in order, chunks respect their token budget
(overlap included), the overlap is the end of the previous chunk, and every piece points at a
segment (page or section) its document has. Token counters are real, if crude, counting rules."""

from __future__ import annotations

import math
import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.condenser.chunks import account, chunk_documents, split_text, tail
from core.condenser.documents import ExtractedDocument, Segment

FUZZ = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])


def words(text: str) -> int:
    return len(text.split())


def quarter_chars(text: str) -> int:
    return math.ceil(len(text) / 4)


_TOKEN = re.compile(r"\w{1,6}|[^\w\s]", re.UNICODE)


def wordpieces(text: str) -> int:
    """Closer to a real tokenizer: words cut every 6 characters, each punctuation mark a token."""
    return len(_TOKEN.findall(text))


COUNTERS = {"words": words, "quarter_chars": quarter_chars, "wordpieces": wordpieces}

WORD = st.one_of(
    st.from_regex(r"[A-Za-z]{1,12}[.,;:!?]?", fullmatch=True),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=8),
    st.sampled_from(["x" * 700, "https://example.com/" + "a" * 300, "“quoted”", "…", "ß", "日本語"]),
)
SEP = st.sampled_from([" ", " ", " ", "\n", "\n\n", "\t", "\u00a0", "  \n \n", "\r\n"])


@st.composite
def segment_text(draw):
    parts = draw(st.lists(st.tuples(WORD, SEP), min_size=1, max_size=draw(st.sampled_from([5, 40, 400]))))
    text = "".join(w + s for w, s in parts).strip()
    return text if text else "x"


@st.composite
def documents(draw, index=0):
    kind = draw(st.sampled_from(["pdf", "markdown", "txt"]))
    texts = draw(st.lists(segment_text(), min_size=1, max_size=8))
    if kind == "pdf":
        pages = sorted(draw(st.sets(st.integers(1, 60), min_size=len(texts), max_size=len(texts))))
        segments = [Segment(t, p, None) for t, p in zip(texts, pages)]
        return ExtractedDocument(f"doc{index}.pdf", "pdf", segments, page_count=pages[-1] + draw(st.integers(0, 3)))
    names = draw(
        st.lists(
            st.one_of(st.none(), st.sampled_from(["Intro", "Usage", "Intro", "lines 3-9"])),
            min_size=len(texts),
            max_size=len(texts),
        )
    )
    return ExtractedDocument(
        f"doc{index}.{'md' if kind == 'markdown' else 'txt'}", kind, [Segment(t, None, n) for t, n in zip(texts, names)]
    )


def ink(text: str) -> str:
    return re.sub(r"\s+", "", text)


@st.composite
def runs(draw):
    docs = [draw(documents(i)) for i in range(draw(st.integers(1, 3)))]
    counter = draw(st.sampled_from(sorted(COUNTERS)))
    budget = draw(st.integers(48, 700))
    overlap = draw(st.integers(0, 200))
    return docs, counter, budget, overlap


def check_run(docs, counter_name, budget, overlap, fits=None):
    count = COUNTERS[counter_name]
    chunks = chunk_documents(docs, count, budget, overlap, fits)
    # Accounting says complete, and it is: each segment's text, in order, is exactly its pieces' text.
    for acc in account(docs, chunks):
        assert acc.complete, acc.missing
    for d, doc in enumerate(docs):
        mine = [c for c in chunks if c.doc == d]
        assert mine, "a document with text got no chunk"
        assert [(c.number, c.of) for c in mine] == [(i + 1, len(mine)) for i in range(len(mine))]
        pieces = [p for c in mine for p in c.pieces]
        assert [p.segment for p in pieces] == sorted(p.segment for p in pieces), "pieces out of order"
        for s_index, segment in enumerate(doc.segments):
            assert ink("".join(p.text for p in pieces if p.segment == s_index)) == ink(segment.text)
        # Provenance: every piece names its own segment's locator, which the document has.
        locators = doc.locators()
        for p in pieces:
            assert p.source.doc == d and 0 <= p.segment < len(doc.segments)
            assert p.source.locator == doc.locator(doc.segments[p.segment]) and p.source.locator in locators
            if doc.kind == "pdf":
                page = doc.segments[p.segment].page
                assert 1 <= page <= doc.page_count
        # Overlap: only context, taken from the end of the previous chunk of the same document.
        assert mine[0].context == ""
        for before, chunk in zip(mine, mine[1:]):
            assert before.text.endswith(chunk.context)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    return chunks, count


@FUZZ
@given(runs())
def test_every_character_is_chunked_once_in_order_with_true_provenance(run):
    check_run(*run)


@FUZZ
@given(runs())
@example(
    (
        [
            ExtractedDocument(
                "a.txt",
                "txt",
                [
                    Segment(
                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "
                        + "b " * 30
                        + "c " * 200,
                        None,
                        None,
                    )
                ],
            )
        ],
        "words",
        60,
        15,
    )
)
def test_a_chunk_and_its_overlap_fit_the_budget(run):
    """The documented bound: a chunk holds at most `budget` tokens, overlap context included (as long
    as the budget leaves room for a piece: the condenser never runs with less than 48)."""
    docs, counter_name, budget, overlap = run
    chunks, count = check_run(docs, counter_name, budget, overlap)
    kept_overlap = max(0, min(overlap, budget // 4))
    for c in chunks:
        assert count(c.context) <= kept_overlap, (count(c.context), kept_overlap)
        assert c.tokens + count(c.context) <= budget, (c.tokens, count(c.context), budget)


@FUZZ
@given(runs(), st.integers(20, 400))
def test_chunks_that_do_not_fit_are_halved_and_nothing_is_lost(run, limit):
    """With `fits` (the real prompt check), a chunk that does not fit is halved; whatever is left is a
    single piece sent without overlap. Still complete and in order."""
    docs, counter_name, budget, overlap = run
    count = COUNTERS[counter_name]

    def fits(chunk) -> bool:
        return chunk.tokens + count(chunk.context) <= limit

    chunks, _ = check_run(docs, counter_name, budget, overlap, fits)
    for c in chunks:
        assert fits(c) or (len(c.pieces) == 1 and c.context == "")


@FUZZ
@given(segment_text(), st.integers(1, 300), st.sampled_from(sorted(COUNTERS)))
@example("AAA:", 1, "wordpieces")  # cut by the average density, "A:" was 2 tokens over a limit of 1
@example("a" * 600 + "!" * 200, 16, "wordpieces")  # a dense tail: pieces 3x over the limit
@example("0 " + "x" * 700 + " AAA:", 2, "quarter_chars")  # the spaces joining a group pushed it over the limit
def test_split_text_keeps_every_character_within_the_limit(text, limit, counter_name):
    count = COUNTERS[counter_name]
    parts = split_text(text, limit, count)
    assert ink("".join(t for t, _ in parts)) == ink(text)
    for t, n in parts:
        # The tokens given are the sum of the parts joined (exact for counters that add up over
        # whitespace, an upper bound for the others).
        assert n == count(t) if counter_name != "quarter_chars" else n >= count(t)
        # Only what the counter cannot cut smaller may pass the limit: one character (or, counting
        # words, one word).
        assert n <= limit or len(t) <= 1 or (counter_name == "words" and len(t.split()) == 1), (t, n)


@FUZZ
@given(segment_text(), st.integers(0, 100), st.sampled_from(sorted(COUNTERS)))
@example("a" * 80 + " b" * 30 + " c" * 200, 15, "words")  # short words at the end: the overlap was 28 tokens
def test_tail_is_a_suffix_within_its_token_count(text, tokens, counter_name):
    count = COUNTERS[counter_name]
    out = tail(text, tokens, count)
    assert text.endswith(out)
    assert count(out) <= tokens
