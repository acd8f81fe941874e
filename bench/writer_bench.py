"""Writer variants: time to write a 4-variant short piece with the variants run concurrently vs one
after another, on the same backend in the same run, for

  * the embedded model in-process (llama.cpp; one Llama object, generation behind a lock),
  * the OpenAI-compatible backend against `python -m llama_cpp.server` serving the same GGUF on
    loopback, with its default settings (interrupt_requests=True) and with interrupt_requests off,
  * the loopback fake OpenAI server (sleep-paced, truly parallel): where concurrency does help.

Same brief, same seeds, same token budget in both modes. Prints seconds (best and median of the
runs), completion tokens (estimated for the HTTP backends), variants cut, and the ratio
one-by-one / concurrent (above 1: concurrency helped).

    .venv/bin/python bench/writer_bench.py [--runs 2] [--length 60] [--template product_description]

llama.cpp's OpenMP threads spin-wait by default; on a small shared CPU that spinning competes with
decoding. OMP_WAIT_POLICY=PASSIVE in the environment makes them sleep instead (the header says
which was used).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = 4
BRIEF = {
    "topic": "Bamboo travel mug, 350 ml, keeps drinks hot for 6 hours",
    "audience": "commuters",
    "keywords": "bamboo, leak-proof",
    "cta": "Add to cart",
}


def make_service(models: tuple[str, ...], base_url: str | None = None):
    from config import Settings
    from core.models.text import ModelManager
    from core.writer.service import WriterService
    from core.writer.store import DraftStore
    from core.writer.templates import load_library

    settings = Settings(
        text_models=models,
        data_dir=Path(tempfile.mkdtemp(prefix="writer-bench-")),
        openai_base_url=base_url,
        request_timeout=300.0,
        max_retries=0,
    )
    return WriterService(settings, ModelManager(settings), DraftStore(settings.db_path), load_library())


def run_once(service, brief, parallel: int, seed: int) -> dict:
    from core.writer.service import WriteOptions
    from core.writer.text import words

    backend = service.backend(None)
    t0 = time.perf_counter()
    final = None
    for final in service.write(brief, WriteOptions(variants=VARIANTS, temperature=0.7, seed=seed), parallel=parallel):
        pass
    seconds = time.perf_counter() - t0
    tokens = sum(
        backend.count_tokens([{"role": "assistant", "content": t}])
        - backend.count_tokens([{"role": "assistant", "content": ""}])
        for t in final.texts
    )
    return {
        "seconds": seconds,
        "tokens": tokens,
        "cut": len(final.errors),
        "words": sum(len(words(t)) for t in final.texts),
        "errors": final.errors,
    }


def compare(name: str, service, brief, runs: int) -> dict:
    service.backend(None).load()
    run_once(service, brief, 1, seed=999)  # warm-up: load, page cache, server connection
    results: dict[str, list[dict]] = {"sequential": [], "concurrent": []}
    for r in range(runs):
        for mode, parallel in (("sequential", 1), ("concurrent", VARIANTS)):
            results[mode].append(run_once(service, brief, parallel, seed=100 + r))
    # Best of the runs: this machine may be shared, and interference only ever adds time.
    seq = min(x["seconds"] for x in results["sequential"])
    con = min(x["seconds"] for x in results["concurrent"])
    seq_med = statistics.median(x["seconds"] for x in results["sequential"])
    con_med = statistics.median(x["seconds"] for x in results["concurrent"])
    row = {
        "name": name,
        "sequential_s": seq,
        "concurrent_s": con,
        "ratio": seq / con,
        "median_ratio": seq_med / con_med,
        "seq_tokens": sum(x["tokens"] for x in results["sequential"]) / runs,
        "con_tokens": sum(x["tokens"] for x in results["concurrent"]) / runs,
        "seq_cut": sum(x["cut"] for x in results["sequential"]),
        "con_cut": sum(x["cut"] for x in results["concurrent"]),
        "example_error": next((e for x in results["concurrent"] for e in x["errors"]), ""),
    }
    print(
        f"{name:<52} {seq:10.2f} {con:10.2f} {row['ratio']:6.2f}x {seq_med:8.2f} {con_med:8.2f} "
        f"{row['median_ratio']:6.2f}x {row['seq_tokens']:6.0f}/{row['con_tokens']:<6.0f} "
        f"{row['seq_cut']}/{row['con_cut']}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2, help="timed runs per mode (median is reported)")
    parser.add_argument("--length", type=int, default=60, help="target length in words")
    parser.add_argument("--template", default="product_description")
    parser.add_argument("--skip-server", action="store_true", help="skip the llama_cpp.server rows")
    args = parser.parse_args()

    import llama_cpp

    from backends.text.embedded import embedded_gguf_path
    from tests.support.openai_servers import fake_openai_server, llama_cpp_server

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}; "
        f"llama-cpp-python {llama_cpp.__version__}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"brief: {args.template}, {args.length} words, {VARIANTS} variants, {args.runs} run(s) per mode "
        "(interleaved); seconds for all 4 variants; ratio = one-by-one / concurrent (>1: concurrency helped)\n"
    )
    print(
        f"{'backend':<52} {'1-by-1 best':>10} {'conc. best':>10} {'ratio':>7} {'1-by-1 med':>8} "
        f"{'conc. med':>8} {'ratio':>7} {'tokens≈ seq/conc':>14} {'cut seq/conc'}"
    )
    rows = []

    embedded = make_service(("embedded",))
    brief = embedded.prepare(args.template, {**BRIEF, "length": args.length})
    rows.append(compare("embedded llama.cpp (in-process)", embedded, brief, args.runs))

    gguf = embedded_gguf_path()
    if not args.skip_server:
        for label, extra in (
            ("llama_cpp.server (default: interrupt_requests)", ()),
            ("llama_cpp.server --interrupt_requests False", ("--interrupt_requests", "False")),
        ):
            with llama_cpp_server(gguf, n_ctx=4096, extra_args=extra) as server:
                service = make_service((f"openai:{server.model}",), server.base_url)
                rows.append(
                    compare(
                        f"openai backend -> {label}",
                        service,
                        service.prepare(args.template, {**BRIEF, "length": args.length}),
                        args.runs,
                    )
                )

    with fake_openai_server(reply_words=80, chunk_delay=0.02) as fake:
        service = make_service(("openai:fake-model",), fake.base_url)
        rows.append(
            compare(
                "openai backend -> fake server (20 ms/token, parallel)",
                service,
                service.prepare(args.template, {**BRIEF, "length": args.length}),
                args.runs,
            )
        )

    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    for row in rows:
        if row["example_error"]:
            print(f"{row['name']}: concurrent variants cut, e.g. {row['example_error']}")


if __name__ == "__main__":
    main()
