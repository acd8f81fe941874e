"""What makes a sentence of a model's reply a usable note, beyond its cleaning (points.py): it says something, in the
model's own words (not a near-verbatim copy of the text it summarises, not a word salad). Small models copy, loop and
talk about the request; such a reply is asked again, and at last the chunk quoted (run.py)."""

from __future__ import annotations

import re

from core.condenser.cite import terms

COPY_NGRAM = 4  # words in a run; a sentence most of whose words sit in runs found in its chunk is a copy
COPY_SHARE = 0.8
COPY_MIN_WORDS = 8  # a shorter sentence is a copy only when all of it is a stretch of the text
MIN_SHARED_TERMS = 2  # content words a note shares with the text it summarises
MIN_TERMS = 3  # content words a note needs to say something ("Estrogenic 101", "The text." say nothing)


def word_ngrams(text: str, n: int = COPY_NGRAM) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def own_words(text: str, source_ngrams: set[tuple[str, ...]], n: int = COPY_NGRAM) -> bool:
    """Whether a sentence of a reply says something in the model's own words: it has a few content words, it is
    not a word salad (a few words over and over), and it is not a near-verbatim copy of the text it summarises
    (most of its words inside word runs found there). A copied sentence is the document's words presented as a
    summary: where nothing else is usable the chunk is quoted, and says so."""
    if len(terms(text)) < MIN_TERMS and sum(ch.isalpha() and ord(ch) >= 0x2E80 for ch in text) < 8:
        return False  # (scripts written without spaces have few "words": counted by their characters)
    words = re.findall(r"\w+", text.lower())
    if len(words) >= COPY_MIN_WORDS and len(set(words)) < 0.5 * len(words):
        return False
    covered = [False] * len(words)
    for i in range(len(words) - n + 1):
        if tuple(words[i : i + n]) in source_ngrams:
            covered[i : i + n] = [True] * n
    # A short sentence may well repeat the text's words ("The dam was finished in 1932."); one that is nothing but
    # a stretch of the text ("Boats on the river carry") is a copied fragment.
    share = COPY_SHARE if len(words) >= COPY_MIN_WORDS else 1.0
    return not covered or sum(covered) < share * len(words)
