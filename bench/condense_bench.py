"""Condenser throughput, in one run on one machine:

1. Pages per second end to end on the longest corpus PDF (117 pages) with the embedded model
   (SmolLM2-135M, llama.cpp, in process), with the time split into extraction, map and reduce.
2. Concurrent vs sequential map against `llama_cpp.server` (llama-cpp-python's OpenAI-compatible
   server, serving the embedded model on loopback) through the OpenAI-compatible backend: the same
   document, `parallel=8` (the backend's own concurrency) vs `parallel=1`; ratio of map times.
   llama_cpp.server has no parallel slots: one model, one lock, requests queue. It is started with
   `--interrupt_requests False`, because by default a new request cuts the stream in progress.
3. The same comparison against the loopback fake OpenAI server (a server that does run requests in
   parallel, 20 ms a token), to show what the pipeline's concurrency gives where the server has it.
4. Batched vs one-at-a-time map in the transformers backend (the embedded SmolLM2-135M de-quantised
   from its GGUF, fp32, on CPU unless CUDA is present): `parallel` = the backend's batch size vs
   `parallel=1`; ratio of map times, and how many requests each generate() call served.

Each map request may write at most --map-max-new-tokens (default 64) so the run stays short; say so
when quoting the numbers.

    .venv/bin/python bench/condense_bench.py [--map-max-new-tokens 64] [--chunk-tokens 2048]
    .venv/bin/python bench/condense_bench.py --skip-pages --skip-map   # only 4.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "corpus"
LONGEST = "good-long-german-lecture-notes.pdf"
MAP_DOC = "good-alice-in-wonderland.txt"


def condense(service, files, text, progress: bool = False, **options):
    from core.condenser.service import CondenseOptions

    started, last = time.perf_counter(), 0.0
    update = None
    for update in service.condense("bench", files, text, CondenseOptions(**options), save=False):
        now = time.perf_counter() - started
        if progress and now - last >= 30:  # a sign of life on long runs, on stderr
            print(f"   [{now:6.0f} s] {update.status}", file=sys.stderr, flush=True)
            last = now
    return update.result


def service_for(settings):
    from core.condenser.service import CondenseService
    from core.condenser.store import SummaryStore
    from core.models.text import ModelManager

    return CondenseService(settings, ModelManager(settings), SummaryStore(settings.db_path))


def pages_per_second(args, data: Path) -> None:
    from config import Settings
    from core.condenser.service import InputFile

    settings = Settings(data_dir=data / "embedded", n_ctx=args.n_ctx, n_threads=args.threads)
    service = service_for(settings)
    service.models.get(None).load()  # model load is not part of the condenser's time
    started = time.perf_counter()
    result = condense(
        service,
        [InputFile(str(CORPUS / LONGEST), LONGEST)],
        "",
        progress=True,
        length="short",
        chunk_tokens=args.chunk_tokens,
        map_max_new_tokens=args.map_max_new_tokens,
    )
    total = time.perf_counter() - started
    report = result.documents[0]
    t = result.timings
    print(
        f"\n1. {LONGEST}: {report.page_count} pages, {report.chunks} chunks of <= {args.chunk_tokens} tokens, "
        f"map replies <= {args.map_max_new_tokens} tokens, embedded model (llama.cpp, n_ctx {args.n_ctx}, "
        f"threads {args.threads or 'engine default'})"
    )
    print(f"   coverage: {report.coverage}")
    print(f"   total {total:7.1f} s  ->  {report.page_count / total:.3f} pages/s")
    for key in ("extract_s", "map_s", "reduce_s"):
        print(f"   {key[:-2]:<8} {t[key]:7.1f} s  ({100 * t[key] / total:4.1f} %)")
    print(f"   map per chunk {t['map_s'] / max(report.chunks, 1):.2f} s")


def map_ratio(args, data: Path) -> None:
    from backends.text.embedded import embedded_gguf_path
    from config import Settings
    from tests.support.openai_servers import fake_openai_server, llama_cpp_server

    text = (CORPUS / MAP_DOC).read_text(encoding="utf-8", errors="replace")[: args.map_chars]
    options = dict(length="short", chunk_tokens=args.map_chunk_tokens, map_max_new_tokens=args.map_max_new_tokens)
    with llama_cpp_server(
        embedded_gguf_path(), n_ctx=args.n_ctx, n_threads=args.threads, extra_args=["--interrupt_requests", "False"]
    ) as server:
        settings = Settings(
            text_models=(f"openai:{server.model}",),
            data_dir=data / "server",
            openai_base_url=server.base_url,
            openai_context_length=args.n_ctx,
            request_timeout=600.0,
        )
        service = service_for(settings)
        condense(service, [], text[:2000], **options)  # warm-up: first request pays the model's page-in
        # ABBA order (seq, par, par, seq, ...) so a drift in machine load hits both sides alike
        times: dict[int, list[float]] = {1: [], 8: []}
        for _ in range(args.repeats):
            for parallel in (1, 8, 8, 1):
                result = condense(service, [], text, parallel=parallel, **options)
                times[parallel].append(result.timings["map_s"])
    chunks = result.documents[0].chunks
    seq, par = sum(times[1]), sum(times[8])
    print(
        f"\n2. map against llama_cpp.server (loopback, embedded model, n_ctx {args.n_ctx}, no parallel slots): "
        f"{len(text):,} characters of {MAP_DOC}, {chunks} chunks, {len(times[1])} runs each (ABBA order)"
    )
    print(
        f"   sequential (parallel=1) map s: {', '.join(f'{t:.1f}' for t in times[1])}  (mean {seq / len(times[1]):.1f})"
    )
    print(
        f"   concurrent (parallel=8) map s: {', '.join(f'{t:.1f}' for t in times[8])}  (mean {par / len(times[8]):.1f})"
    )
    print(f"   concurrent / sequential speed-up: {seq / par:.2f}x")

    with fake_openai_server(reply_words=40, chunk_delay=0.02, max_model_len=args.n_ctx) as fake:
        settings = Settings(
            text_models=("openai:fake-model",),
            data_dir=data / "fake",
            openai_base_url=fake.base_url,
            openai_context_length=args.n_ctx,
        )
        service = service_for(settings)
        seq = condense(service, [], text, parallel=1, **options)
        par = condense(service, [], text, parallel=8, **options)
    print(
        f"\n3. same map against a server that runs requests in parallel (fake, 20 ms/token, 40 tokens a reply), "
        f"{seq.documents[0].chunks} chunks"
    )
    print(
        f"   sequential {seq.timings['map_s']:6.2f} s, concurrent {par.timings['map_s']:6.2f} s, "
        f"speed-up {seq.timings['map_s'] / par.timings['map_s']:.2f}x"
    )


def transformers_ratio(args, data: Path) -> None:
    from backends.text.embedded import embedded_gguf_path
    from config import Settings

    text = (CORPUS / MAP_DOC).read_text(encoding="utf-8", errors="replace")[: args.transformers_chars]
    options = dict(length="short", chunk_tokens=args.map_chunk_tokens, map_max_new_tokens=args.map_max_new_tokens)
    settings = Settings(
        text_models=(f"hf:{embedded_gguf_path()}",),
        data_dir=data / "transformers",
        n_ctx=args.n_ctx,
        batch_size=args.batch_size,
    )
    service = service_for(settings)
    backend = service.models.get(None)
    backend.load()  # de-quantising the GGUF (once) is not part of the map time
    width = backend.batch_size()
    condense(service, [], text[:1500], **options)  # warm-up
    times: dict[int, list[float]] = {1: [], width: []}
    served: dict[int, dict[int, int]] = {}
    for _ in range(args.repeats):
        for parallel in (1, width, width, 1):
            before = backend.batch_counts()
            result = condense(service, [], text, parallel=parallel, **options)
            times[parallel].append(result.timings["map_s"])
            after = backend.batch_counts()
            served[parallel] = {n: after[n] - before.get(n, 0) for n in sorted(after) if after[n] != before.get(n, 0)}
    seq, par = sum(times[1]) / len(times[1]), sum(times[width]) / len(times[width])
    import torch

    print(
        f"\n4. map in the transformers backend (SmolLM2-135M from the embedded GGUF, {backend._model.dtype}, "
        f"{backend._model.device}, torch threads {torch.get_num_threads()}): {len(text):,} characters of "
        f"{MAP_DOC}, {result.documents[0].chunks} chunks, {len(times[1])} runs each (ABBA order)"
    )
    print(
        f"   one at a time (parallel=1)   map s: {', '.join(f'{t:.1f}' for t in times[1])}  (mean {seq:.1f})"
        f"   generate() calls by rows, last run: {served[1]}"
    )
    print(
        f"   batched (parallel={width})         map s: {', '.join(f'{t:.1f}' for t in times[width])}  (mean {par:.1f})"
        f"   generate() calls by rows, last run: {served[width]}"
    )
    import statistics

    print(
        f"   batched / one-at-a-time speed-up: {seq / par:.2f}x (means), "
        f"{statistics.median(times[1]) / statistics.median(times[width]):.2f}x (medians)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--map-max-new-tokens", type=int, default=64)
    parser.add_argument("--chunk-tokens", type=int, default=2048)
    parser.add_argument("--n-ctx", type=int, default=8192)
    parser.add_argument("--map-chars", type=int, default=12000, help="text for the concurrent/sequential map")
    parser.add_argument("--map-chunk-tokens", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1, help="ABBA rounds for the map comparison")
    parser.add_argument("--skip-pages", action="store_true")
    parser.add_argument("--skip-map", action="store_true")
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--transformers-chars", type=int, default=6000, help="text for the transformers map")
    parser.add_argument("--batch-size", type=int, default=0, help="transformers batch size (0: backend default)")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="condense-bench-") as tmp:
        if not args.skip_pages:
            pages_per_second(args, Path(tmp))
        if not args.skip_map:
            map_ratio(args, Path(tmp))
        if not args.skip_transformers:
            transformers_ratio(args, Path(tmp))
    print(f"\nload average at end {os.getloadavg()[0]:.2f} (other processes on this machine skew all timings)")


if __name__ == "__main__":
    main()
