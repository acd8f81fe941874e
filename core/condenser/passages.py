"""The documents of a summary kept for questions: their text cut into passages of a few sentences, each knowing its
document and page or section (so an answer cites them with the condenser's own citations), stored per user beside
the summary (same SQLite file, counted in the user's quota, deleted with the summary and by retention), and ranked
for a question with SQLite FTS5's BM25."""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.condenser.cite import _STOP, sentences
from core.condenser.documents import ExtractedDocument, Segment
from core.condenser.store import SCHEMA as SUMMARY_SCHEMA
from core.db import SQLiteDB
from core.quota import reserved

PASSAGE_WORDS = 90  # a passage grows sentence by sentence to about this many words (a short paragraph)
MAX_PASSAGE_WORDS = 160  # a longer run without sentence ends (a table) is cut by words
MAX_PASSAGES = 20_000  # per summary: a 2,000-page document at ten passages a page

SCHEMA = """
CREATE TABLE IF NOT EXISTS summary_passages (
    summary_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    documents TEXT NOT NULL,
    passages TEXT NOT NULL,
    created_at REAL NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (summary_id, user_id)
);
CREATE INDEX IF NOT EXISTS summary_passages_usage ON summary_passages(user_id, size);
CREATE INDEX IF NOT EXISTS summary_passages_age ON summary_passages(created_at);
-- A summary deleted in any way (its tab, the library, retention) takes its passages with it.
CREATE TRIGGER IF NOT EXISTS summary_passages_follow AFTER DELETE ON summaries BEGIN
    DELETE FROM summary_passages WHERE summary_id = old.id AND user_id = old.user_id;
END;
"""


@dataclass(frozen=True)
class Passage:
    doc: int  # index of the document in its summary (or request)
    text: str
    page: int | None = None
    section: str | None = None


@dataclass(frozen=True)
class DocumentInfo:
    name: str
    kind: str


def split_passages(docs: Sequence[ExtractedDocument]) -> list[Passage]:
    """Every segment of every document cut into passages of a few sentences; a passage never spans two pages or
    sections, so its citation is exact. Nothing is dropped: the passages of a segment hold all its words."""
    out: list[Passage] = []
    for d, doc in enumerate(docs):
        for segment in doc.segments:
            for text in _cut(segment.text):
                out.append(Passage(d, text, segment.page, segment.section))
    return out


def _cut(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    words = 0
    for sentence in sentences(text) or [text]:
        tokens = sentence.split()
        while len(tokens) > MAX_PASSAGE_WORDS:  # a run with no sentence end: cut by words
            if current:
                parts.append(" ".join(current))
                current, words = [], 0
            parts.append(" ".join(tokens[:MAX_PASSAGE_WORDS]))
            tokens = tokens[MAX_PASSAGE_WORDS:]
        if current and words + len(tokens) > MAX_PASSAGE_WORDS:
            parts.append(" ".join(current))
            current, words = [], 0
        if tokens:
            current.append(" ".join(tokens))
            words += len(tokens)
        if words >= PASSAGE_WORDS:
            parts.append(" ".join(current))
            current, words = [], 0
    if current:
        parts.append(" ".join(current))
    return [p for p in parts if p.strip()]


def documents_of(infos: Sequence[DocumentInfo], passages: Sequence[Passage]) -> list[ExtractedDocument]:
    """The documents again, one segment a passage, as the condenser's Catalog reads them: the same locators, so
    citations and quoted passages are made exactly as a summary's are."""
    docs = [ExtractedDocument(i.name, i.kind, []) for i in infos]  # type: ignore[arg-type]
    for p in passages:
        docs[p.doc].segments.append(Segment(p.text, p.page, p.section))
    return docs


# --- ranking --------------------------------------------------------------------------------------------------------

_QUERY_WORD = re.compile(r"[^\W_]{2,}")


def query_terms(question: str) -> list[str]:
    """The question's content words, each once, as FTS5 will look them up (stop words dropped)."""
    seen: dict[str, None] = {}
    for w in _QUERY_WORD.findall(question.lower()):
        if w not in _STOP and w not in _QUESTION_WORDS:
            seen.setdefault(w, None)
    return list(seen)


_QUESTION_WORDS = frozenset("what which who whom whose when where why how does did do is are was were the".split())


_SUFFIX = re.compile(r"(?:ies|es|s|ed|ing|ly|er|est)$")


def stem(word: str) -> str:
    """A crude stem, enough to meet "files" with "file" and "searching" with "search": common English endings
    cut, then the first seven letters."""
    word = word.lower()
    if len(word) > 4:
        word = _SUFFIX.sub("", word)
    return word[:7]


def content_words(text: str) -> set[str]:
    """The stems of a text's content words (what the answer checks compare)."""
    return {stem(w) for w in _QUERY_WORD.findall(text.lower()) if w not in _STOP and w not in _QUESTION_WORDS}


def coverage(passages: Sequence[Passage], question: str, indices: Sequence[int]) -> list[float]:
    """For each passage of `indices`: the share of the question's content words it holds, each weighted by its
    rarity in these documents (a word in every passage says little). The gate before the model: a question whose
    best passage holds little of it is not answered by these documents."""
    wanted = content_words(question)
    if not wanted:
        return [0.0 for _ in indices]
    df = dict.fromkeys(wanted, 0)
    for p in passages:
        for w in wanted & content_words(p.text):
            df[w] += 1
    n = len(passages)
    weight = {w: math.log((n + 1) / (df[w] + 0.5)) for w in wanted}
    total = sum(weight.values()) or 1.0
    return [sum(weight[w] for w in wanted & content_words(passages[i].text)) / total for i in indices]


def bm25_rank(passages: Sequence[Passage], question: str, k: int) -> list[tuple[int, float]]:
    """(passage index, BM25 score, higher is better) of the `k` best passages for the question; only passages
    sharing a word with it. An index of these passages alone (in memory): the statistics are this summary's, never
    shaped by anyone else's documents."""
    words = query_terms(question)
    if not words or not passages:
        return []
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE VIRTUAL TABLE p USING fts5(text, tokenize = 'porter unicode61 remove_diacritics 2')")
        db.executemany("INSERT INTO p(rowid, text) VALUES (?, ?)", ((i, x.text) for i, x in enumerate(passages)))
        match = " OR ".join('"' + w.replace('"', "") + '"' for w in words)
        rows = db.execute("SELECT rowid, bm25(p) FROM p WHERE p MATCH ? ORDER BY bm25(p) LIMIT ?", (match, k))
        return [(int(r[0]), -float(r[1])) for r in rows]
    finally:
        db.close()


# --- storage --------------------------------------------------------------------------------------------------------


class PassagesNotKept(LookupError):
    """The summary exists but its documents were not kept for questions (made before this, or past the quota)."""


class PassageStore(SQLiteDB):
    """A summary's documents, as passages, per user: one row a summary."""

    def __init__(self, db_path: Path) -> None:
        super().__init__(db_path, SUMMARY_SCHEMA + SCHEMA)  # the trigger needs the summaries table
        self.quota: Any = None  # core.quota.StorageQuota, set by StorageQuota.attach

    def save(
        self, user_id: str, summary_id: str, docs: Sequence[ExtractedDocument], created_at: float | None = None
    ) -> int:
        """Keep the documents of `summary_id` (the caller's own) for questions; the number of passages. Raises
        QuotaExceededError or StorageFullError (nothing kept then)."""
        infos = [DocumentInfo(d.name, d.kind) for d in docs]
        return self.keep(user_id, summary_id, infos, split_passages(docs), created_at)

    def keep(
        self,
        user_id: str,
        summary_id: str,
        documents: Sequence[DocumentInfo],
        passages: Sequence[Passage],
        created_at: float | None = None,
    ) -> int:
        """Keep passages already split (`save`, or a summary brought in from a library archive); as `save`."""
        passages = list(passages)[:MAX_PASSAGES]
        infos = json.dumps([{"name": d.name, "kind": d.kind} for d in documents])
        body = json.dumps([[p.doc, p.page, p.section, p.text] for p in passages])
        size = len(infos.encode("utf-8", "surrogatepass")) + len(body.encode("utf-8", "surrogatepass"))
        when = time.time() if created_at is None else float(created_at)
        with reserved(self.quota, user_id, size), self._tx() as db:
            owned = db.execute("SELECT 1 FROM summaries WHERE id = ? AND user_id = ?", (summary_id, user_id))
            if owned.fetchone() is None:
                raise PassagesNotKept("No such summary (it may have been deleted)")
            db.execute(
                "INSERT OR REPLACE INTO summary_passages VALUES (?, ?, ?, ?, ?, ?)",
                (summary_id, user_id, infos, body, when, size),
            )
        return len(passages)

    def load(self, user_id: str, summary_id: str) -> tuple[list[DocumentInfo], list[Passage]]:
        """PassagesNotKept when the user has no kept documents for that summary."""
        row = (
            self._conn()
            .execute(
                "SELECT documents, passages FROM summary_passages WHERE summary_id = ? AND user_id = ?",
                (summary_id, user_id),
            )
            .fetchone()
        )
        if row is None:
            raise PassagesNotKept(
                "The documents of this summary were not kept for questions; ask with the files instead."
            )
        infos = [DocumentInfo(str(d["name"]), str(d["kind"])) for d in json.loads(row["documents"])]
        passages = [Passage(int(d), str(t), p, s) for d, p, s, t in json.loads(row["passages"])]
        return infos, passages

    def bytes_used(self, user_id: str) -> int:
        return self._sum_for_user("summary_passages", "size", user_id)

    def delete_older_than(self, cutoff: float, user_id: str | None = None) -> int:
        """Retention (the summaries' own deletion takes theirs through the trigger as well)."""
        return self._delete_before("summary_passages", "created_at", cutoff, user_id)

    def clean_orphans(self) -> int:
        """Passages whose summary is gone (deleted while the trigger did not exist yet)."""
        with self._tx() as db:
            return db.execute(
                "DELETE FROM summary_passages WHERE NOT EXISTS (SELECT 1 FROM summaries s"
                " WHERE s.id = summary_passages.summary_id AND s.user_id = summary_passages.user_id)"
            ).rowcount
