"""Writer quality on real briefs, for any configured text model: keyword coverage, length against
the asked length, rewrites that really rewrite, and nothing echoed from the prompt (an instruction,
a prompt label, a template placeholder). The briefs and drafts are data (quality_writer_cases.toml),
split into a dev half and a held-out half. bench/quality_bench.py calls measure(); run alone:

    PYTHONPATH=. .venv/bin/python bench/quality_writer.py [--model embedded] [--split dev|held|all] [--quick] [-v]

The checks here are the bench's own (not the writer's repair checks), so the pipeline cannot pass
by grading itself: word counts and keyword matching reuse core.writer.text's plain functions only.
"""

from __future__ import annotations

import argparse
import difflib
import re
import statistics
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES = Path(__file__).with_name("quality_writer_cases.toml")
SEED = 1234
TRANSLATE_TO = "French"
LENGTH_TOLERANCE = 0.30

# Targets (issue 11). A piece is sampled at the app's default temperature, so length is judged over the
# pieces (90% of them within 30%); keywords over all the keywords asked for; echoes and failed rewrites
# must never happen.
TARGET_KEYWORDS = ">= 90%"
TARGET_LENGTH = ">= 90%"
TARGET_REWRITES = "100%"
TARGET_ECHO = "0"

# Labels of the prompts' brief and instruction blocks: never part of the copy. (Format labels a template
# asks for, like "Headline:" or "Meta description:", are not here.)
_PROMPT_LABEL = re.compile(
    r"(?im)^\W{0,4}(?:brief|instructions?|rules|text|product(?: or service)?|features(?: and facts)?|audience|"
    r"tone|length|keywords?|call to action|cta|topic|about|page topic|language|main promise|problem|channel|"
    r"company|facts|spokesperson|outline|section \d+|variant \d+|notes?|output|rewritten text|translation)"
    r"\s*[:：]"
)
_PLACEHOLDER = re.compile(
    r"\{[A-Za-z_][A-Za-z0-9_ ]*\}|\[(?:your|insert|add|company|product|brand|name|link|date|phone|email|"
    r"website|url|location|address|price|number)\b[^\]\n]{0,40}\](?!\()|<(?:your|insert)[^>\n]{0,40}>",
    re.I,
)


@dataclass
class Piece:
    split: str
    template: str
    text: str
    keywords: list[str]
    present: list[str]
    asked: int | None
    words: int
    echo: list[str]
    seconds: float


@dataclass
class Rewrite:
    split: str
    op: str
    before: str
    after: str
    ok: bool
    why: str
    echo: list[str] = field(default_factory=list)


def load_cases(split: str = "all") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    data = tomllib.loads(CASES.read_text(encoding="utf-8"))
    keep = (lambda c: True) if split == "all" else (lambda c: c["split"] == split)
    return [c for c in data["brief"] if keep(c)], [d for d in data["draft"] if keep(d)]


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _fixed_parts(instruction_texts: list[str]) -> list[str]:
    """The fixed wording of the prompts (placeholders cut out), as normalised runs of 4+ words."""
    parts = []
    for text in instruction_texts:
        for line in text.splitlines():
            for piece in re.split(r"\{[^}]*\}", line):
                norm = _norm(piece)
                if len(norm.split()) >= 4:
                    parts.append(norm)
    return parts


def echoes(text: str, instruction_texts: list[str]) -> list[str]:
    """What in `text` came from the prompt instead of being copy: a prompt label at a line start, a
    template placeholder, or a sentence that repeats a run of the prompt's fixed wording."""
    found = [f"label {m.group(0).strip()!r}" for m in _PROMPT_LABEL.finditer(text)]
    found += [f"placeholder {m.group(0)!r}" for m in _PLACEHOLDER.finditer(text)]
    fixed = _fixed_parts(instruction_texts)
    sentences = [s for s in re.split(r"(?<=[.!?:])\s+|\n+", text) if len(_norm(s).split()) >= 4]
    for sentence in sentences:
        norm = _norm(sentence)
        for part in fixed:
            if part in norm or difflib.SequenceMatcher(None, norm, part).ratio() >= 0.8:
                found.append(f"instruction {sentence.strip()[:80]!r}")
                break
    return found


def _service(model_spec: str) -> Any:
    from config import Settings
    from core.models.text import ModelManager
    from core.writer.service import WriterService
    from core.writer.store import DraftStore
    from core.writer.templates import load_library

    settings = Settings(
        text_models=(model_spec,), data_dir=Path(tempfile.mkdtemp(prefix="quality-writer-")), max_retries=0
    )
    return WriterService(settings, ModelManager(settings), DraftStore(settings.db_path), load_library())


def _template_texts(template: Any, common: Any) -> list[str]:
    texts = [template.system, template.prompt, template.outline_prompt, template.section_prompt]
    texts += list(template.section_notes.values()) + list(common.angles)
    return [t for t in texts if t]


def write_piece(service: Any, case: dict[str, Any], seed: int = SEED) -> Piece:
    from core.writer.brief import WriteOptions
    from core.writer.text import keyword_coverage, plain_text, words

    fields = {k: v for k, v in case.items() if k not in ("split", "template")}
    brief = service.prepare(case["template"], fields)
    t0 = time.perf_counter()
    final = None
    for final in service.write(brief, WriteOptions(seed=seed)):
        pass
    seconds = time.perf_counter() - t0
    text = final.texts[0] if final else ""
    coverage = keyword_coverage(text, brief.keywords)
    return Piece(
        case["split"],
        case["template"],
        text,
        brief.keywords,
        coverage.present,
        brief.length,
        len(words(plain_text(text))),
        echoes(text, _template_texts(brief.template, service.library.common)),
        seconds,
    )


def rewrite_once(service: Any, split: str, text: str, op_name: str, seed: int = SEED) -> Rewrite:
    from core.writer.brief import WriteOptions
    from core.writer.text import plain_text, words

    op = service.library.rewrites[op_name]
    language = TRANSLATE_TO if op.needs_language else ""
    final = None
    for final in service.rewrite(text, "", op_name, language, WriteOptions(seed=seed)):
        pass
    after = final.text if final else ""
    found = echoes(after, [op.instruction, service.library.common.rewrite_system])
    n_before, n_after = len(words(plain_text(text))), len(words(plain_text(after)))
    why = ""
    if not after.strip():
        why = "empty"
    elif found:
        why = "echo: " + found[0]
    elif _norm(after) == _norm(text) and op_name != "grammar":
        why = "unchanged"
    elif op_name == "shorter" and n_after >= n_before:
        why = f"not shorter ({n_before} -> {n_after} words)"
    elif op_name == "longer" and n_after <= n_before:
        why = f"not longer ({n_before} -> {n_after} words)"
    elif n_after < 0.2 * n_before and op_name != "shorter":
        why = f"lost most of the text ({n_before} -> {n_after} words)"
    elif final and final.notes:  # the writer's own fallback (an extract, the original kept): not a rewrite
        why = "fell back: " + final.notes[0]
    return Rewrite(split, op_name, text, after, not why, why, found)


def run(
    model_spec: str, split: str = "all", quick: bool = False, verbose: bool = False
) -> tuple[list[Piece], list[Rewrite]]:
    briefs, drafts = load_cases(split)
    if quick:  # a third of the briefs (every template kind still met) and one draft per split
        briefs = briefs[::3]
        drafts = [d for i, d in enumerate(drafts) if i % 3 == 0]
    service = _service(model_spec)
    service.backend(None).load()
    pieces = []
    for case in briefs:
        piece = write_piece(service, case)
        pieces.append(piece)
        if verbose:
            missing = [k for k in piece.keywords if k not in piece.present]
            print(
                f"--- [{piece.split}] {piece.template}: {piece.words}/{piece.asked} words, missing {missing}, "
                f"echo {piece.echo}, {piece.seconds:.1f} s\n{piece.text}\n",
                flush=True,
            )
    rewrites = []
    for d in drafts:
        for op_name in service.library.rewrites:
            r = rewrite_once(service, d["split"], d["text"], op_name)
            rewrites.append(r)
            if verbose:
                print(f"--- [{r.split}] rewrite {r.op}: {'ok' if r.ok else r.why}\n{r.after}\n", flush=True)
    return pieces, rewrites


def rows(pieces: list[Piece], rewrites: list[Rewrite]) -> list[tuple[str, float, str]]:
    keywords = sum(len(p.keywords) for p in pieces)
    present = sum(len(p.present) for p in pieces)
    sized = [p for p in pieces if p.asked]
    within = [p for p in sized if abs(p.words - p.asked) <= LENGTH_TOLERANCE * p.asked]  # type: ignore[operator]
    off = [abs(p.words - p.asked) / p.asked for p in sized]  # type: ignore[operator]
    echoed = sum(1 for p in pieces if p.echo) + sum(1 for r in rewrites if r.echo)
    return [
        ("writer: keywords present", present / keywords if keywords else 1.0, TARGET_KEYWORDS),
        ("writer: length within 30% of asked", len(within) / len(sized) if sized else 1.0, TARGET_LENGTH),
        ("writer: median length error", statistics.median(off) if off else 0.0, "(lower is better)"),
        (
            "rewrites: rewritten every time",
            sum(r.ok for r in rewrites) / len(rewrites) if rewrites else 1.0,
            TARGET_REWRITES,
        ),
        ("writer: echoed instruction/label/placeholder", float(echoed), TARGET_ECHO),
        ("writer: seconds per piece (median)", statistics.median(p.seconds for p in pieces) if pieces else 0.0, "-"),
    ]


def measure(model_spec: str, quick: bool = False) -> list[tuple[str, float, str]]:
    """Rows of (metric, value, target) over every brief and draft (dev and held-out)."""
    return rows(*run(model_spec, "all", quick))


def _print(title: str, table: list[tuple[str, float, str]]) -> None:
    print(f"\n{title}")
    for name, value, target in table:
        shown = f"{value:.0%}" if target.endswith("%") or "error" in name else f"{value:g}"
        print(f"  {name:<48} {shown:>8}   target {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default="embedded", help="a text model spec (embedded, gguf:..., hf:..., openai:...)"
    )
    parser.add_argument("--split", default="all", choices=("dev", "held", "all"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every piece and rewrite")
    args = parser.parse_args()
    t0 = time.perf_counter()
    pieces, rewrites = run(args.model, args.split, args.quick, args.verbose)
    for split in ("dev", "held"):
        ps, rs = [p for p in pieces if p.split == split], [r for r in rewrites if r.split == split]
        if ps or rs:
            _print(f"{args.model} · {split} ({len(ps)} briefs, {len(rs)} rewrites)", rows(ps, rs))
    failed = [r for r in rewrites if not r.ok]
    for r in failed:
        print(f"  rewrite {r.op} [{r.split}] failed: {r.why}")
    for p in pieces:
        if p.echo:
            print(f"  {p.template} [{p.split}] echoed: {p.echo[:3]}")
    print(f"\n{time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
