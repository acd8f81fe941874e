"""Text rules for speaking (core/speech/text.py) and language detection (core/speech/language.py)."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from core.speech.language import detect_language, language_name, speaks
from core.speech.text import clean_for_speech, has_words, sentences, split_head, split_pieces


def test_markdown_becomes_plain_sentences() -> None:
    md = (
        "# Release notes\n\n"
        "Hello **world**, this is a [link](https://example.org/x) to _read_ and ~~not~~ `code`.\n\n"
        "- first item\n- second *item*\n1. numbered step\n\n"
        "> a quoted line\n\n"
        "![a diagram](img.png)\n\n"
        "Title\n=====\n\n"
        "---\n"
    )
    out = clean_for_speech(md)
    assert out.split("\n\n") == [
        "Release notes.",
        "Hello world, this is a link to read and not code.",
        "first item.",
        "second item.",
        "numbered step.",
        "a quoted line",
        "a diagram",
        "Title.",
    ]
    for mark in ("#", "*", "_", "~", "`", "[", "]", "(", ">", "https"):
        assert mark not in out


def test_code_blocks_are_summarised_not_read() -> None:
    out = clean_for_speech("Before.\n\n```python\nprint('secret code')\nx = 1\n```\n\nAfter.")
    assert out == "Before.\n\nCode block.\n\nAfter."
    unclosed = clean_for_speech("Text.\n~~~\nnever closed\nstill code")
    assert unclosed == "Text.\n\nCode block."


def test_urls_are_read_as_their_host() -> None:
    out = clean_for_speech("See https://www.example.org/a/b?c=d#e. Or <http://docs.python.org/3/>, or www.gnu.org/x")
    assert out == "See example.org. Or docs.python.org, or gnu.org"


def test_control_characters_are_removed_and_tables_read_as_lists() -> None:
    out = clean_for_speech(
        "Bell\x07 and null\x00 and\u200b zero\ufeff width\x1b[31m.\r\n\r\n| a | b |\n|---|---|\n| 1 | 2 |"
    )
    assert "\x07" not in out and "\x00" not in out and "\u200b" not in out and "\x1b" not in out
    assert out.startswith("Bell and null and zero width[31m.")
    assert "a, b." in out and "1, 2." in out


def test_only_punctuation_has_no_words() -> None:
    assert not has_words(clean_for_speech("... !!! --- *** ``` ```"))
    assert not has_words(clean_for_speech("   \n\n\t "))
    assert has_words(clean_for_speech("42"))


def test_sentences_respect_abbreviations_and_breaks() -> None:
    text = "Dr. Smith met Mr. J. Doe, e.g. at noon. It rained! Did it?\nNew line\n\nNew paragraph."
    found = [s for s, _, _ in sentences(text)]
    assert found == ["Dr. Smith met Mr. J. Doe, e.g. at noon.", "It rained!", "Did it?", "New line", "New paragraph."]
    breaks = [b for _, _, b in sentences(text)]
    assert breaks == [False, False, False, True, True]


def test_first_piece_is_one_short_sentence_then_pieces_pack_sentences() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(200))
    pieces = list(split_pieces(text, 300))
    assert pieces[0][0] == "Sentence number 0 is here."
    assert all(len(p) <= 300 for p, _ in pieces)
    assert len(pieces[1][0]) > 200  # later pieces pack several sentences
    offsets = [o for _, o in pieces]
    assert offsets == sorted(offsets) and offsets[-1] == len(text)


def test_a_long_first_sentence_is_cut_short_and_long_sentences_split_at_commas_then_words() -> None:
    clause = "and then another clause follows here"
    text = ", ".join([clause] * 30) + "."
    pieces = [p for p, _ in split_pieces(text, 120, first_chars=60)]
    assert len(pieces[0]) <= 60
    assert all(len(p) <= 120 for p in pieces)
    assert all(p.endswith((",", ".")) for p in pieces[1:])  # split at the commas, not inside clauses
    word = "x" * 1000
    cut = [p for p, _ in split_pieces(word, 100)]
    assert "".join(cut) == word and all(len(p) <= 100 for p in cut)


def test_a_heading_keeps_its_pause_and_short_paragraphs_are_packed() -> None:
    text = "One.\n\nTwo.\n\nA plain heading\n\nThree. Four."
    assert [p for p, _ in split_pieces(text, 400)] == ["One.", "Two. A plain heading", "Three. Four."]
    # Thousands of one-letter lines are a few pieces, not one engine call each.
    tiny = "a\n\n" * 30_000
    pieces = list(split_pieces(tiny, 400))
    assert len(pieces) < 400 and "".join("".join(p.split()) for p, _ in pieces) == "a" * 30_000


def test_pieces_are_lazy() -> None:
    text = "First sentence here. " + "More words follow in a long text. " * 50_000
    pieces = split_pieces(text, 400)
    assert next(pieces)[0] == "First sentence here."  # returns at once without splitting 1.7 MB


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("ab .,;!?\n—-'\"É字"), max_size=600),
    st.integers(min_value=1, max_value=200),
    st.integers(min_value=1, max_value=200),
)
def test_pieces_keep_every_character_in_order_and_within_limits(text: str, limit: int, first: int) -> None:
    pieces = list(split_pieces(text, limit, first_chars=first))
    assert all(0 < len(p) <= limit for p, _ in pieces)
    if pieces:
        assert len(pieces[0][0]) <= min(first, limit)
        assert pieces[-1][1] <= len(text)
    assert "".join("".join(p.split()) for p, _ in pieces) == "".join(text.split())
    offsets = [o for _, o in pieces]
    assert offsets == sorted(offsets)


def test_language_detection() -> None:
    assert detect_language("The quick brown fox jumps over the lazy dog while the children watch.") == "en"
    assert (
        detect_language("Der schnelle braune Fuchs springt über den faulen Hund, während die Kinder zusehen.") == "de"
    )
    assert detect_language("Le renard brun rapide saute par-dessus le chien paresseux pendant que les enfants.") == "fr"
    assert detect_language("Быстрая коричневая лиса прыгает через ленивую собаку, пока дети смотрят.") == "ru"
    assert detect_language("素早い茶色の狐がのろまな犬を飛び越えます。") == "ja"
    assert detect_language("敏捷的棕色狐狸跳过了懒狗，孩子们在花园里看着。") == "zh"
    assert detect_language("빠른 갈색 여우가 게으른 개를 뛰어넘습니다.") == "ko"
    assert detect_language("Hello there.") is None  # too few letters: the voice is trusted
    assert detect_language("12345 !!! 678") is None


def test_detection_is_stable_and_reads_a_sample_of_long_text() -> None:
    text = "Ein langer deutscher Text über das Wetter und die Berge im Süden des Landes. " * 3000
    assert {detect_language(text) for _ in range(3)} == {"de"}


def test_language_names_and_voice_matching() -> None:
    assert language_name("de") == "German" and language_name("pt-BR") == "Portuguese"
    assert language_name("xx") == "xx"
    assert speaks(("en",), "en") and speaks(("en-us",), "en") and not speaks(("en",), "de")
    assert speaks(("nb",), "no") and speaks(("cmn",), "zh")
    assert speaks((), "de")  # a voice listing no languages is trusted


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400) | st.text(alphabet=st.sampled_from("#*_`[]()<>|-=~!>\n \t.:/wh1"), max_size=300))
def test_any_text_cleans_without_error_and_without_control_characters(text: str) -> None:
    import unicodedata

    out = clean_for_speech(text)
    assert all(ch == "\n" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co") for ch in out)
    assert "\n\n\n" not in out and out == out.strip()
    assert all(len(p) <= 50 for p, _ in split_pieces(out, 50))
    if detect_language(out) is not None:
        assert detect_language(out) == detect_language(out)


HOSTILE = {
    "bold": "**a " * 25_000,
    "underscores": "__a _b " * 15_000,
    "strike": "~~a " * 25_000,
    "images": "![" * 50_000,
    "links": "[x](" * 25_000,
    "autolinks": "<http://a" * 11_000,
    "mail": "<a@" * 33_000,
    "dots": "." * 100_000,
    "commas": "," * 100_000 + "a",
    "spaced dashes": " - " * 33_000,
    "heading spaces": "#" + " " * 100_000 + "x",
    "table rule": "|" + "-" * 100_000 + "x",
    "backticks": "`" * 100_000,
    "mixed": "**[![<`~_" * 11_000,
}


def test_hostile_markup_is_cleaned_in_linear_time() -> None:
    for name, text in HOSTILE.items():
        started = time.perf_counter()
        cleaned = clean_for_speech(text)
        pieces = sum(1 for _ in split_pieces(cleaned, 400))
        assert time.perf_counter() - started < 1.5, name  # quadratic patterns took 15-100 s on these
        assert pieces >= 0


def test_headings_keep_a_hash_that_is_part_of_a_word() -> None:
    assert clean_for_speech("## Learning C#\n\n## Done ##") == "Learning C#.\n\nDone."
    assert clean_for_speech("2 * 3 = 6 and 2*3 too, snake_case stays") == "2 * 3 = 6 and 2*3 too, snake_case stays"


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b.", " ", "\n", "\n\n", "```", "~~~", "#", "- ", "|", "\r", "\u2028", "=="]),
             max_size=80).map("".join),
    st.integers(min_value=0, max_value=60),
)  # fmt: skip
def test_cleaning_the_head_then_the_rest_is_cleaning_the_whole(text: str, min_chars: int) -> None:
    head, rest = split_head(text, min_chars)
    parts = [p for p in (clean_for_speech(head), clean_for_speech(rest)) if p]
    assert "\n\n".join(parts) == clean_for_speech(text)


def test_the_head_of_a_long_text_ends_at_a_paragraph_outside_code() -> None:
    fenced = "```\n" + "code line\n\n" * 500 + "```\n"
    text = "Intro sentence.\n\n" + fenced + "\nAfter the code.\n\n" + "More words here. " * 500
    head, rest = split_head(text, 100)
    assert head.endswith("code line\n\n```\n") and rest.startswith("After the code.")  # not inside the fence
    assert split_head("Short.", 100) == ("Short.", "")
