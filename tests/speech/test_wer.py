"""core/speech/wer.py with hand-made pairs: the normalisation (case, punctuation, numbers as digits or words) and the
counts of substitutions, deletions and insertions."""

from __future__ import annotations

import time

import pytest

from core.speech.wer import align, corpus_wer, normalise, number_words, ordinal_words, wer, word_errors


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (40, "forty"),
        (42, "forty two"),
        (100, "one hundred"),
        (120, "one hundred twenty"),
        (2024, "two thousand twenty four"),
        (10_000, "ten thousand"),
        (3_000_005, "three million five"),
    ],
)
def test_number_words(n, words):
    assert number_words(n) == words


@pytest.mark.parametrize(("n", "words"), [(1, "first"), (3, "third"), (21, "twenty first"), (40, "fortieth")])
def test_ordinal_words(n, words):
    assert ordinal_words(n) == words


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Hello, World!", ["hello", "world"]),
        ("It's twenty-one.", ["its", "twenty", "one"]),
        ("12 apples", ["twelve", "apples"]),
        ("The 3rd time", ["the", "third", "time"]),
        ("At 7:45 sharp", ["at", "seven", "forty", "five", "sharp"]),
        ("at 9:00", ["at", "nine"]),
        ("leaves at 7.45", ["leaves", "at", "seven", "forty", "five"]),
        ("pi is 3.14159", ["pi", "is", "three", "point", "one", "four", "one", "five", "nine"]),
        ("It costs $5.", ["it", "costs", "five", "dollars"]),
        ("up 10%", ["up", "ten", "percent"]),
        ("10,000 words", ["ten", "thousand", "words"]),
        ("3.5 km", ["three", "point", "five", "km"]),
        ("code 007", ["code", "zero", "zero", "seven"]),
        ("Dr. Patel met Mr. Lee, OK?", ["doctor", "patel", "met", "mister", "lee", "okay"]),
        ("", []),
        ("  ...  ", []),
    ],
)
def test_normalise(text, words):
    assert normalise(text) == words


def test_identical_after_normalising_is_zero():
    assert wer("Is it 12 o'clock, Maria?", "is it twelve oclock maria") == 0.0


def test_one_substitution_in_five_words():
    errors = word_errors("the cat sat on mats", "the cat sat in mats")
    assert (errors.substitutions, errors.deletions, errors.insertions, errors.reference_words) == (1, 0, 0, 5)
    assert errors.rate == pytest.approx(0.2)


def test_deletion_and_insertion_are_counted_apart():
    errors = align("a b c d".split(), "a c d e f".split())
    assert (errors.substitutions, errors.deletions, errors.insertions) == (0, 1, 2)
    assert errors.rate == pytest.approx(3 / 4)


def test_everything_wrong_and_more_exceeds_one():
    assert wer("yes", "no no no") == pytest.approx(3.0)


def test_empty_reference():
    assert wer("", "") == 0.0
    assert wer("", "something") == 1.0
    assert wer("two words", "") == 1.0


def test_corpus_rate_weights_by_reference_length():
    pairs = [
        ("one two three four five six seven eight nine ten", "one two three four five six seven eight nine ten"),
        ("hello", "goodbye"),
    ]
    assert corpus_wer(pairs) == pytest.approx(1 / 11)  # not the mean of 0 and 1


def test_long_texts_align_quickly():
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet".split()
    reference = " ".join(words[i % 10] for i in range(3000))
    hypothesis = reference.replace("golf ", "").replace("echo", "eco")
    start = time.monotonic()
    errors = word_errors(reference, hypothesis)
    assert (errors.substitutions, errors.deletions, errors.insertions) == (300, 300, 0)
    assert time.monotonic() - start < 5  # a 20-minute transcript (3,000 words) is scored in a few seconds at most


def test_align_matches_a_plain_levenshtein_on_random_pairs():
    import random

    def distance(a: list[str], b: list[str]) -> int:
        row = list(range(len(b) + 1))
        for i, x in enumerate(a, start=1):
            prev, row[0] = row[0], i
            for j, y in enumerate(b, start=1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
        return row[-1]

    rng = random.Random(13)
    for _ in range(300):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 9))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 9))]
        errors = align(a, b)
        assert errors.errors == distance(a, b), (a, b)
        assert errors.deletions - errors.insertions == len(a) - len(b)
