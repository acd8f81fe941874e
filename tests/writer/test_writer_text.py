"""Text analysis: syllables and Flesch reading ease on known sentences, word counts, keyword
coverage (case, whole words, multi-word, light inflection), outline parsing, clean-up, checks."""

from __future__ import annotations

import pytest

from core.writer.templates import Check
from core.writer.text import (
    assemble,
    clean_output,
    count_syllables,
    flesch_reading_ease,
    keyword_coverage,
    parse_keywords,
    parse_outline,
    reading_time_label,
    run_checks,
    sentence_count,
    text_stats,
    trim_repetition,
)


@pytest.mark.parametrize(
    "word, n",
    [
        ("the", 1),
        ("cat", 1),
        ("make", 1),
        ("stone", 1),
        ("table", 2),
        ("simple", 2),
        ("people", 2),
        ("jumped", 1),
        ("wanted", 2),
        ("needed", 2),
        ("played", 1),
        ("makes", 1),
        ("boxes", 2),
        ("places", 2),
        ("tables", 2),
        ("beautiful", 3),
        ("readability", 5),
        ("everything", 4),
        ("yellow", 2),
        ("movie", 2),
        ("free", 1),
        ("computer", 3),
        ("information", 4),
        ("2024", 1),
    ],
)
def test_syllable_heuristic_on_known_words(word, n):
    assert count_syllables(word) == n


def test_flesch_reading_ease_on_known_sentences():
    # 6 words, 1 sentence, 6 syllables: 206.835 - 1.015*6 - 84.6*1
    assert flesch_reading_ease("The cat sat on the mat.") == pytest.approx(116.145, abs=0.01)
    # 8 words, 1 sentence, 19 syllables (read-a-bil-i-ty 5, for-mu-las 3, es-ti-mate 3, how 1,
    # dif-fi-cult 3, a 1, pas-sage 2, is 1)
    assert flesch_reading_ease("Readability formulas estimate how difficult a passage is.") == pytest.approx(
        206.835 - 1.015 * 8 - 84.6 * 19 / 8, abs=0.01
    )
    # two sentences of 3 words, 1 syllable each
    assert flesch_reading_ease("I see you. You see me.") == pytest.approx(206.835 - 1.015 * 3 - 84.6, abs=0.01)
    simple = "We like tea. It is warm. We drink it in the sun."
    hard = (
        "Organisational interoperability necessitates comprehensive documentation of institutional "
        "responsibilities, particularly regarding administrative accountability."
    )
    assert flesch_reading_ease(simple) > 90 > 0 > flesch_reading_ease(hard)
    assert flesch_reading_ease("") is None and flesch_reading_ease("   ...   ") is None


def test_headings_and_bullets_count_as_sentences_and_markdown_is_not_counted():
    text = "# Big title\n\nA first sentence here. A second one!\n\n- bullet one\n- bullet two"
    assert sentence_count(text) == 5
    stats = text_stats(text)
    assert stats.words == 13  # "#", "-" are not words
    assert stats.flesch is not None and stats.flesch_label


def test_word_count_and_reading_time():
    stats = text_stats("word " * 476)
    assert stats.words == 476
    assert reading_time_label(stats.reading_minutes) == "2 min"
    assert reading_time_label(text_stats("just a few words").reading_minutes) == "under 1 min"
    assert text_stats("").words == 0


def test_keyword_coverage_is_case_insensitive_and_whole_word():
    cov = keyword_coverage("Our CAT naps. The category page lists Tea.", ["cat", "tea", "dog", "ego"])
    assert cov.counts == {"cat": 1, "tea": 1, "dog": 0, "ego": 0}  # "category" does not contain the word cat
    assert cov.present == ["cat", "tea"] and cov.missing == ["dog", "ego"]


def test_keyword_coverage_handles_multi_word_keywords_and_hyphens():
    text = "Try our running  shoes. Running-shoe fans love them. A shoe for running is different."
    assert keyword_coverage(text, ["running shoe"]).counts == {"running shoe": 2}
    assert keyword_coverage("leak-proof lid", ["leak proof"]).counts["leak proof"] == 1
    assert keyword_coverage("eco friendly cups", ["eco-friendly"]).counts["eco-friendly"] == 1


@pytest.mark.parametrize(
    "keyword, text",
    [
        ("battery", "Two batteries included."),
        ("shoe", "New shoes."),
        ("make", "We are making tea."),
        ("make", "She makes tea."),
        ("run", "Keep running."),
        ("plan", "We planned it."),
        ("box", "Three boxes."),
        ("brand", "The brand's promise."),
        ("study", "Two studies show it."),
        ("bake", "Freshly baked bread."),
        ("free", "Freeing up time."),
        ("350 ml", "Holds 350 ml."),
    ],
)
def test_keyword_coverage_allows_light_inflection(keyword, text):
    assert keyword_coverage(text, [keyword]).counts[keyword] == 1


@pytest.mark.parametrize(
    "keyword, text", [("go", "This is good."), ("art", "Start here."), ("ai", "Said the man."), ("pro", "A process.")]
)
def test_keyword_coverage_does_not_match_inside_other_words(keyword, text):
    assert keyword_coverage(text, [keyword]).counts[keyword] == 0


def test_keyword_coverage_with_punctuation_and_markdown():
    cov = keyword_coverage("We write **C++** and #travel posts. [SEO](http://x) matters.", ["C++", "#travel", "seo"])
    assert cov.counts == {"C++": 1, "#travel": 1, "seo": 1}


def test_parse_keywords_splits_trims_and_dedupes():
    assert parse_keywords(' bamboo, "Leak-proof" ;eco\n\nBamboo, ,') == ["bamboo", "Leak-proof", "eco"]
    assert parse_keywords(["a", " a ", "b"]) == ["a", "b"]
    assert parse_keywords(None) == [] and parse_keywords("") == []


@pytest.mark.parametrize(
    "text, title, sections",
    [
        (
            "Title: Composting 101\n1. Why compost\n2. Getting started\n3. Mistakes",
            "Composting 101",
            ["Why compost", "Getting started", "Mistakes"],
        ),
        ("# The Guide\n## Part one\n## Part two", "The Guide", ["Part one", "Part two"]),
        (
            '**Title:** "Tea time"\n- **Intro**\n  notes under it\n- Brewing: how long to steep',
            "Tea time",
            ["Intro", "Brewing: how long to steep"],
        ),
        ("Section 1: Start\nSection 2: Finish", "", ["Start", "Finish"]),
        ("Why it matters\nHow to begin\nWhat to avoid", "", ["Why it matters", "How to begin", "What to avoid"]),
        (
            "This is a rambling paragraph that an overeager small model wrote instead of an outline, going on and on.",
            "",
            [],
        ),
    ],
)
def test_parse_outline(text, title, sections):
    outline = parse_outline(text)
    assert outline.title == title and outline.sections == sections


def test_parse_outline_keeps_at_most_eight_sections():
    outline = parse_outline("\n".join(f"{i}. Heading {i}" for i in range(1, 13)))
    assert len(outline.sections) == 8 and outline.truncated == 4
    assert parse_outline(outline.as_text()).sections == outline.sections


def test_assemble_builds_markdown_with_headings():
    text = assemble("T", [("One", "Body one."), ("Two", "")])
    assert text == "# T\n\n## One\n\nBody one.\n\n## Two"


def test_clean_output_strips_what_small_models_wrap_around_text():
    assert clean_output("Sure! Here is your post:\nBuy tea today.") == "Buy tea today."
    assert clean_output("```markdown\nHello there\n```") == "Hello there"
    assert clean_output('"Short and sweet."') == "Short and sweet."
    assert clean_output("## Getting started\nFirst, buy a bin.", heading="Getting started") == "First, buy a bin."
    assert clean_output("**Getting Started:**\nFirst, buy a bin.", heading="Getting started") == "First, buy a bin."
    assert clean_output("Sure, tea is great.") == "Sure, tea is great."  # a one-line reply is kept


def test_trim_repetition_removes_loops_but_keeps_normal_text():
    looped = "Bamboo mug, 3-ounce, 3-ounce, 3-ounce, 3-ounce, 3-ounce, 3-ounce, 3-ounce"
    assert trim_repetition(looped).count("3-ounce") == 1
    repeated = (
        "Start small and grow. Start small and grow. Then compost.\n- Use a bin for scraps\n- Use a bin for scraps"
    )
    assert trim_repetition(repeated) == "Start small and grow. Then compost.\n- Use a bin for scraps"
    normal = "We sell tea. We sell cups too.\n\nBuy now."
    assert trim_repetition(normal) == normal


def test_length_checks_on_labelled_lines_and_whole_text():
    from core.writer.templates import load_library

    seo = load_library().get("seo_meta").checks
    text = "Title: " + "t" * 61 + "\n**Meta description:** " + "m" * 150
    results = {r.label: r for r in run_checks(text, seo)}
    assert results["SEO title"].chars == 61 and not results["SEO title"].ok
    assert "1 too many" in results["SEO title"].message()
    assert results["Meta description"].chars == 150 and results["Meta description"].ok
    missing = run_checks("Just a title line", seo)
    assert missing[1].chars is None and not missing[1].ok and "not found" in missing[1].message()
    x = run_checks("a" * 281, [Check("X post", max_chars=280)])[0]
    assert x.chars == 281 and not x.ok
