"""The quality benchmark (issue 11): condenser and writer quality for each configured text model, in ONE table:
a row per metric, a column per model, the target, and pass/fail against it per model.

    PYTHONPATH=. .venv/bin/python bench/quality_bench.py [--model embedded --model gguf:/path/to.gguf ...] [--quick]

Default models: the embedded one, and the larger benchmark GGUF when bench/get_bench_model.py has fetched it
(Qwen2.5-Coder-0.5B-Instruct). The measurements are bench/quality_condenser.py and bench/quality_writer.py
(each `measure(model_spec, quick) -> [(metric, value, target)]`); --quick runs fewer documents and briefs.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

Row = tuple[str, float, str]
_TARGET = re.compile(r"^\s*(<=|>=|<|>|=)?\s*(-?[\d.]+)\s*(%?)\s*$")


def default_models() -> list[str]:
    from get_bench_model import FILE_NAME, default_cache

    larger = default_cache() / FILE_NAME
    return ["embedded"] + ([f"gguf:{larger}"] if larger.exists() else [])


def verdict(value: float, target: str) -> str:
    """ "pass"/"FAIL" against a target such as "<= 5%", ">= 90%", "100%" or "0" (a bare number is met when equalled,
    a bare 100% when reached); "" for a target that is no threshold ("-", "(lower is better)")."""
    m = _TARGET.match(target)
    if not m:
        return ""
    op, number, percent = m.groups()
    limit = float(number) / (100 if percent else 1)
    eps = 1e-9
    ok = {
        "<=": value <= limit + eps,
        ">=": value >= limit - eps,
        "<": value < limit,
        ">": value > limit,
        "=": abs(value - limit) <= eps,
        None: abs(value - limit) <= eps if not percent or limit < 1 else value >= limit - eps,
    }[op]
    return "pass" if ok else "FAIL"


def shown(value: float, target: str) -> str:
    return f"{value:.0%}" if target.strip().endswith("%") else f"{value:.2f}"


def table(models: list[str], results: dict[str, list[Row]]) -> str:
    metrics: list[str] = []
    targets: dict[str, str] = {}
    values: dict[tuple[str, str], float] = {}
    for model in models:
        for name, value, target in results[model]:
            if name not in targets:
                metrics.append(name)
                targets[name] = target
            values[(name, model)] = value
    names = [Path(m.split(":", 1)[-1]).name if m.startswith("gguf:") else m for m in models]
    width = max(len(n) for n in metrics) + 2
    cols = [max(14, len(n) + 2) for n in names]
    lines = [
        "metric".ljust(width) + "".join(n.rjust(c) for n, c in zip(names, cols, strict=True)) + "   target",
        "-" * (width + sum(cols) + 20),
    ]
    for name in metrics:
        target = targets[name]
        cells = []
        for model, c in zip(models, cols, strict=True):
            if (name, model) in values:
                v = values[(name, model)]
                mark = verdict(v, target)
                cells.append(f"{shown(v, target)} {mark}".rstrip().rjust(c))
            else:
                cells.append("n/a".rjust(c))
        lines.append(name.ljust(width) + "".join(cells) + f"   {target}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="a text model spec; repeat for several (default: see above)")
    parser.add_argument("--quick", action="store_true", help="fewer documents and briefs")
    parser.add_argument("--only", choices=("condenser", "writer"), help="measure one of the two")
    args = parser.parse_args()
    models = args.model or default_models()
    import quality_condenser
    import quality_writer

    suites: list[tuple[str, Callable[[str, bool], list[Row]]]] = [
        ("condenser", quality_condenser.measure),
        ("writer", quality_writer.measure),
    ]
    results: dict[str, list[Row]] = {m: [] for m in models}
    started = time.perf_counter()
    for model in models:
        for suite, measure in suites:
            if args.only and suite != args.only:
                continue
            t0 = time.perf_counter()
            print(f"{suite} on {model}…", file=sys.stderr, flush=True)
            results[model] += measure(model, args.quick)
            print(f"  {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(f"\nQuality benchmark{' (quick)' if args.quick else ''}, {time.perf_counter() - started:.0f} s\n")
    print(table(models, results))


if __name__ == "__main__":
    main()
