"""Word error rate: how far a transcript is from the text that was spoken. Owns the normalisation (case, punctuation,
hyphens, numbers written as digits or words, ordinals, %, $, times of day) and the word-level Levenshtein alignment.
Used by the round-trip quality test and the speech benchmark."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((1_000_000_000, "billion"), (1_000_000, "million"), (1_000, "thousand"), (100, "hundred"))
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
MAX_SPELLED = 10**12  # longer digit runs are read digit by digit
# Spellings a recogniser picks for the same spoken word (Whisper writes "Dr." for "doctor").
_SAME_WORD = {"dr": "doctor", "mr": "mister", "mrs": "missus", "ok": "okay"}

# A time of day: 7:45, and 7.45 as Whisper writes it (British style). A decimal with two places whose second part could
# be minutes (3.25) reads the same way; both sides of a comparison written in digits still match.
_TIME = re.compile(r"\b([01]?\d|2[0-3])[:.]([0-5]\d)\b")
_MONEY = re.compile(r"\$\s?(\d[\d,]*(?:\.\d+)?)")
_PERCENT = re.compile(r"(\d)\s?%")
_GROUPED = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")  # 10,000
_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
_ORDINAL = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b")
_NUMBER = re.compile(r"\d+")
_APOSTROPHE = re.compile(r"['\u2019\u2018`]")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def number_words(n: int) -> str:
    """12 -> "twelve", 120 -> "one hundred twenty", 2024 -> "two thousand twenty four" (no "and", no hyphens)."""
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    for value, name in _SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            return f"{number_words(high)} {name}" + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError("unreachable")


def ordinal_words(n: int) -> str:
    """3 -> "third", 21 -> "twenty first", 40 -> "fortieth"."""
    words = number_words(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _spell(digits: str) -> str:
    if len(digits) > 1 and digits.startswith("0") or int(digits) >= MAX_SPELLED:
        return " ".join(_ONES[int(d)] for d in digits)  # a code or a long number: digit by digit
    return number_words(int(digits))


def normalise(text: str) -> list[str]:
    """The words of `text` as compared: lower case, no punctuation, hyphens and apostrophes dropped ("twenty-one"
    -> "twenty one", "it's" -> "its"), numbers in words ("12" and "twelve" match, "3rd" and "third", "7:45" and
    "seven forty five" and "7.45", "$5" and "five dollars", "10%" and "ten percent"), and a few abbreviations ("Dr." and
    "doctor", "Mr." and "mister", "OK" and "okay")."""
    text = text.lower()
    text = _APOSTROPHE.sub("", text)
    text = _TIME.sub(lambda m: f"{_spell(m.group(1))} " + ("" if m.group(2) == "00" else _spell(m.group(2))), text)
    text = _MONEY.sub(lambda m: f"{m.group(1)} dollars", text)
    text = _PERCENT.sub(r"\1 percent", text)
    text = _GROUPED.sub(lambda m: m.group(0).replace(",", ""), text)
    text = _DECIMAL.sub(lambda m: f"{_spell(m.group(1))} point {' '.join(_ONES[int(d)] for d in m.group(2))}", text)
    text = _ORDINAL.sub(lambda m: ordinal_words(int(m.group(1))), text)
    text = _NUMBER.sub(lambda m: f" {_spell(m.group(0))} ", text)
    return [_SAME_WORD.get(w, w) for w in _NOT_WORD.split(text) if w]


@dataclass(frozen=True)
class WordErrors:
    """The cheapest word alignment of a hypothesis to its reference."""

    substitutions: int
    deletions: int  # reference words missing from the hypothesis
    insertions: int  # hypothesis words not in the reference
    reference_words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """errors / reference words; an empty reference gives 0.0 against an empty hypothesis, else 1.0."""
        if self.reference_words == 0:
            return 0.0 if self.errors == 0 else 1.0
        return self.errors / self.reference_words

    def __add__(self, other: WordErrors) -> WordErrors:
        return WordErrors(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference_words + other.reference_words,
        )


def align(reference: list[str], hypothesis: list[str]) -> WordErrors:
    """Levenshtein distance over words (each edit costs 1), split into substitutions, deletions and insertions.
    Rows are computed with numpy (an insertion chain along a row is a running minimum), then one path is traced
    back; O(len(reference) x len(hypothesis)) memory as 32-bit integers."""
    import numpy as np

    n, m = len(reference), len(hypothesis)
    vocabulary: dict[str, int] = {}
    ref = np.array([vocabulary.setdefault(w, len(vocabulary)) for w in reference], dtype=np.int64)
    hyp = np.array([vocabulary.setdefault(w, len(vocabulary)) for w in hypothesis], dtype=np.int64)
    cost = np.zeros((n + 1, m + 1), dtype=np.int32)
    cost[0] = np.arange(m + 1)
    steps = np.arange(m + 1, dtype=np.int32)
    for i in range(1, n + 1):
        best = np.empty(m + 1, dtype=np.int32)
        best[0] = i
        best[1:] = np.minimum(cost[i - 1, :-1] + (hyp != ref[i - 1]), cost[i - 1, 1:] + 1)
        # current[j] = min over k <= j of best[k] + (j - k): insertions along the row
        cost[i] = np.minimum.accumulate(best - steps) + steps
    substitutions = deletions = insertions = 0
    i, j = n, m
    while i > 0 or j > 0:  # prefer a match or substitution, then a deletion, then an insertion
        if i > 0 and j > 0 and cost[i, j] == cost[i - 1, j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            substitutions += reference[i - 1] != hypothesis[j - 1]
            i, j = i - 1, j - 1
        elif i > 0 and cost[i, j] == cost[i - 1, j] + 1:
            deletions += 1
            i -= 1
        else:
            insertions += 1
            j -= 1
    return WordErrors(substitutions=substitutions, deletions=deletions, insertions=insertions, reference_words=n)


def word_errors(reference: str, hypothesis: str) -> WordErrors:
    return align(normalise(reference), normalise(hypothesis))


def wer(reference: str, hypothesis: str) -> float:
    """The word error rate of `hypothesis` against `reference`, after normalise(): 0.0 is perfect, 0.1 is one word
    in ten wrong; insertions can push it above 1.0."""
    return word_errors(reference, hypothesis).rate


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> float:
    """The rate over several (reference, hypothesis) pairs: all their errors over all their reference words."""
    total = WordErrors(0, 0, 0, 0)
    for reference, hypothesis in pairs:
        total = total + word_errors(reference, hypothesis)
    return total.rate
