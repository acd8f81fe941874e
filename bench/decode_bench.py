"""Speed of the embedded model (SmolLM2-135M, llama.cpp) on this CPU, in one run on one machine:

1. The machine: CPUs, cores, cgroup quota, L3, and the load average, because it is often shared. Every A/B below is
   interleaved (the settings alternate within each round, same text in a round) and reported as median [min-max].
2. Threads: llama-cpp-python's old default (decode CPUs // 2, prompts all CPUs) vs the hardware rule
   (backends/text/hardware.py), plus 1, 2, physical cores and logical CPUs: prompt tok/s (a long prompt, as the
   condenser sends), decode tok/s after a short prompt (chat) and after the long one (the condenser's map step).
3. Engine options at the rule's threads: flash attention, q8_0 KV cache (needs flash attention), n_ubatch, mmap,
   and the Q8_0 copy of the weights the app loads (backends/text/requantize.py).
4. The app path: decode through the backend's stream_chat (what a chat user gets), wall clock vs engine counters.
5. The bandwidth bound: read bandwidth measured here (numpy kernels over an array far beyond L3, 1..cores threads,
   best: a lower bound on what the memory gives, so the % below is an upper estimate) and the bytes read per
   decoded token: every weight tensor (the token embedding only when it is also the output matrix, as in
   SmolLM2; otherwise one row) + the KV cache read at the mean context.
6. Prefix reuse in the condenser's map step: prompt tokens sent vs evaluated (llama.cpp's own counters) for the
   map requests of one document, with KV-cache prefix reuse on (the backend as the app runs it) vs off (the
   engine's cache cleared before each request), and whether the greedy replies are identical.
7. Optionally (--condense-chars), the condenser end to end on part of a document, before vs after.

    .venv/bin/python bench/decode_bench.py [--rounds 5] [--prompt-tokens 1024] [--skip-threads] [--skip-options]
                                           [--condense-chars 20000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DOC = ROOT.parent / "shared" / "corpus" / "good-alice-in-wonderland.txt"
CHAT = "Explain in a few paragraphs how a refrigerator keeps food cold."


def load() -> str:
    return "load %.1f" % os.getloadavg()[0]


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    values = [v for v in values if v == v]  # NaN: not measured
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def document_text() -> str:
    if DOC.is_file():
        return DOC.read_text(encoding="utf-8", errors="replace")
    return " ".join(f"Sentence {i} of a stand-in document, about topic {i % 17}." for i in range(20000))


# ---------------------------------------------------------------------- the engine, timed by its own counters


def open_engine(path: Path, n_ctx: int, **kwargs: Any) -> Any:
    import llama_cpp

    from backends.text.llamacpp import engine_model_params

    with engine_model_params(amx=False):  # as the app opens it (STUDIO_LLAMA_AMX off)
        return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, verbose=False, **kwargs)


def timed(llm: Any, prompt: list[int], follow: list[int], single: bool) -> dict[str, float]:
    """One fresh request (no cached prefix): the prompt in batches, then `follow` one token at a time (exactly a
    decoding step each, without sampling). Rates in tok/s by the wall clock and, where the engine runs on this
    thread only (1 thread), by this thread's CPU time: the speed it would have with a core to itself, which
    removes the scheduler's noise on a shared machine (not the competition for memory bandwidth)."""
    llm.reset()
    wall, cpu = time.perf_counter(), time.thread_time()
    llm.eval(prompt)
    pp_wall, pp_cpu = time.perf_counter() - wall, time.thread_time() - cpu
    wall, cpu = time.perf_counter(), time.thread_time()
    for token in follow:
        llm.eval([token])
    tg_wall, tg_cpu = time.perf_counter() - wall, time.thread_time() - cpu
    nan = float("nan")
    return {
        "pp": len(prompt) / pp_wall,
        "pp_cpu": len(prompt) / pp_cpu if single and llm.n_threads_batch == 1 else nan,
        "tg": len(follow) / tg_wall,
        "tg_cpu": len(follow) / tg_cpu if single and llm.n_threads == 1 else nan,
    }


def compare(engines: dict[str, Any], text_tokens: list[int], chat_tokens: list[int], args) -> dict[str, dict]:
    """Interleaved rounds: in each, every engine gets the same long prompt (a different slice per round), then
    decodes 32 tokens after it; and a chat-sized prompt followed by --decode-tokens decoding steps."""
    rows: dict[str, dict[str, list[float]]] = {k: {} for k in engines}
    n, d = args.prompt_tokens, args.decode_tokens
    for r in range(args.rounds):
        piece = text_tokens[r * (n + 32) : (r + 1) * (n + 32)]
        if len(piece) < n + 32:
            piece = text_tokens[: n + 32]
        for name, llm in engines.items():
            long = timed(llm, piece[:n], piece[n:], True)
            chat = timed(llm, chat_tokens, text_tokens[-d:], True)
            for key, value in (
                ("pp", long["pp"]),
                ("pp_cpu", long["pp_cpu"]),
                ("tg_long", long["tg"]),
                ("tg_long_cpu", long["tg_cpu"]),
                ("tg_chat", chat["tg"]),
                ("tg_chat_cpu", chat["tg_cpu"]),
            ):
                rows[name].setdefault(key, []).append(value)
        print(f"   round {r + 1}/{args.rounds} done, {load()}", file=sys.stderr, flush=True)
    return rows


def print_rows(rows: dict[str, dict[str, list[float]]], n_prompt: int) -> None:
    print(f"   {'setting':<34} {'prompt tok/s':>15} {'decode (chat)':>18} {'decode after prompt':>20}   by")
    for name, row in rows.items():
        for suffix, by in (("", "wall clock"), ("_cpu", "own core")):
            if all(v != v for v in row["pp" + suffix] + row["tg_chat" + suffix]):  # all NaN: not measurable
                continue
            cells = [
                spread(row[k + suffix]) if not all(v != v for v in row[k + suffix]) else "n/a"
                for k in ("pp", "tg_chat", "tg_long")
            ]
            print(f"   {name if not suffix else '':<34} {cells[0]:>15} {cells[1]:>18} {cells[2]:>20}   {by}")
    print(
        f"   (prompt: {n_prompt} tokens of a document; decode: one token per step, no sampling; 'own core': "
        "tokens per second of this thread's CPU time, 1-thread settings only)"
    )


# ---------------------------------------------------------------------- bandwidth bound


def bandwidth(max_threads: int, size_mb: int = 512) -> tuple[float, str]:
    """Best sustained read rate (GB/s) of a few numpy kernels over an array far larger than any cache, split over
    1..max_threads threads (numpy releases the GIL in these loops)."""
    import numpy as np

    a = np.ones(size_mb * 1024 * 1024 // 8, dtype=np.float64)
    a.sum()  # page it in
    kernels = {"sum": lambda x: x.sum(), "max": lambda x: x.max(), "dot": lambda x: x.dot(x)}
    best, which = 0.0, ""
    for n in range(1, max_threads + 1):
        parts = np.array_split(a, n)
        for kname, kernel in kernels.items():
            for _ in range(8):  # best of many: on a shared machine a quiet moment gives the hardware's figure
                workers = [threading.Thread(target=kernel, args=(p,)) for p in parts]
                t = time.perf_counter()
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
                rate = a.nbytes / (time.perf_counter() - t) / 1e9
                if rate > best:
                    best, which = rate, f"{kname}, {n} thread{'s' if n > 1 else ''}"
    return best, which


def bytes_per_token(path: Path) -> tuple[int, int]:
    """(weight bytes read per decoded token, KV-cache bytes per token of context at f16)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: t for t in reader.tensors}
    weights = sum(int(t.n_bytes) for t in tensors.values())
    embd = tensors.get("token_embd.weight")
    if embd is not None and "output.weight" in tensors:  # untied: decoding reads one embedding row
        rows = int(embd.shape[-1])
        weights -= int(embd.n_bytes) - int(embd.n_bytes) // rows

    def field(key: str) -> int:
        return int(reader.fields[key].parts[-1][0])

    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    layers, heads = field(f"{arch}.block_count"), field(f"{arch}.attention.head_count")
    kv_heads, width = field(f"{arch}.attention.head_count_kv"), field(f"{arch}.embedding_length")
    return weights, layers * 2 * kv_heads * (width // heads) * 2


# ---------------------------------------------------------------------- prefix reuse in the condenser's map step


def map_messages(pieces: list[str]) -> list[list[dict[str, str]]]:
    """The condenser's own map prompts (prompts/condense_prompts.toml) for consecutive chunks of one document."""
    from core.condenser.prompts import load_condense_prompts

    prompts = load_condense_prompts()
    length = prompts.lengths["short"]
    values = {
        "begin": "<doc-7f3a>",
        "end": "</doc-7f3a>",
        "points": length.map_points,
        "language_rule": "Write in the language of the document.",
        "audience_rule": "",
        "focus_rule": "",
        "form_rule": "",
    }
    out = []
    for i, part in enumerate(pieces):
        position = f"part {i + 1} of {len(pieces)} of “alice.txt”"
        system = prompts.render("map", "system", **values)
        user = prompts.render("map", "user", text=part, position=position, **values)
        out.append([{"role": "system", "content": system}, {"role": "user", "content": user}])
    return out


def prefix_reuse(backend: Any, requests: list[list[dict[str, str]]], reuse: bool) -> tuple[int, int, list[str]]:
    from backends.text.base import GenerationParams

    params = GenerationParams(temperature=0.0, max_new_tokens=8, seed=0)
    sent = evaluated = 0
    replies = []
    for messages in requests:
        if not reuse:
            backend._llm.reset()  # the bench's switch: forget the cached prefix (the app never does this)
        before = backend.engine_counters()
        replies.append(backend.chat(messages, params).text)
        after = backend.engine_counters()
        sent += backend.count_tokens(messages)
        evaluated += after.prompt_tokens - before.prompt_tokens
    return sent, evaluated, replies


# ---------------------------------------------------------------------- the condenser, end to end


def condense_before_after(args, text: str) -> None:
    """The condenser on `text` with the embedded model, interleaved: the Q4_1 file with llama-cpp-python's old
    thread defaults vs the app's defaults now (Q8_0 copy, threads from the hardware). Flash attention is on in both."""
    from condense_bench import condense, service_for

    from config import Settings

    configs = {
        "before (Q4_1 file, 1 decode/2 prompt threads)": {
            "gguf_requantize": False,
            "n_threads": 1,
            "n_threads_batch": 2,
        },
        "after (app defaults)": {},
    }
    times: dict[str, list[tuple[float, float, float]]] = {k: [] for k in configs}
    with tempfile.TemporaryDirectory() as data:
        services = {}
        for i, (name, overrides) in enumerate(configs.items()):
            services[name] = service_for(Settings(data_dir=Path(data) / str(i), n_ctx=args.n_ctx, **overrides))
            services[name].models.get(None).load()
        for _ in range(args.rounds):
            for name, service in services.items():
                started = time.perf_counter()
                result = condense(service, [], text, length="short", map_max_new_tokens=64)
                t = result.timings
                times[name].append((time.perf_counter() - started, t["map_s"], t["reduce_s"]))
    chunks = result.documents[0].chunks
    print(f"\n7. the condenser end to end: {len(text)} characters, {chunks} chunks, map replies <= 64 tokens, {load()}")
    for name, rows in times.items():
        total, map_s, reduce_s = ([r[i] for r in rows] for i in range(3))
        print(
            f"   {name:<46} total {spread(total, '{:.1f}')} s, map {spread(map_s, '{:.1f}')} s, reduce "
            f"{spread(reduce_s, '{:.1f}')} s"
        )
    before, after = (statistics.median(r[1] for r in rows) for rows in times.values())
    print(f"   map step before/after: {before / after:.2f}x")


# ---------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prompt-tokens", type=int, default=1024)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--skip-options", action="store_true")
    ap.add_argument("--skip-threads", action="store_true")
    ap.add_argument("--condense-chars", type=int, default=0, help="7.: condense this much of a document (0: skip)")
    args = ap.parse_args()

    import llama_cpp

    from backends import create_text_backend
    from backends.text.base import GenerationParams, StreamStats
    from backends.text.embedded import embedded_gguf_path
    from backends.text.hardware import cpu_topology, plan_threads
    from backends.text.requantize import fast_weights
    from config import Settings

    path = embedded_gguf_path()
    topo = cpu_topology()
    plan = plan_threads(topo)
    cpus = os.cpu_count() or 1
    print(
        f"1. machine: {topo.logical} CPUs, {topo.physical} cores, quota {topo.quota or 'none'}, "
        f"L3 {(topo.l3_bytes or 0) / 2**20:.0f} MiB; llama-cpp-python {llama_cpp.__version__}; "
        f"start {load()} (1-min average)"
    )
    print(f"   hardware rule -> {plan.reason}")

    probe = open_engine(path, args.n_ctx, n_threads=1)
    text_tokens = probe.tokenize(document_text().encode("utf-8"), add_bos=False)
    chat_tokens = probe.tokenize(f"<|im_start|>user\n{CHAT}<|im_end|>\n<|im_start|>assistant\n".encode(), special=True)
    from core.condenser.request import DEFAULT_CHUNK_TOKENS

    chunk = DEFAULT_CHUNK_TOKENS
    pieces = [probe.detokenize(text_tokens[i * chunk : (i + 1) * chunk]).decode("utf-8", "ignore") for i in range(6)]
    probe.close()

    plans = {
        f"old default ({max(cpus // 2, 1)} decode/{cpus} prompt)": (max(cpus // 2, 1), cpus),
        f"hardware rule ({plan.n_threads}/{plan.n_threads_batch})": (plan.n_threads, plan.n_threads_batch),
    }
    for n in sorted({1, 2, topo.physical, topo.logical}):
        if (n, n) not in plans.values():
            plans[f"{n} thread{'s' if n > 1 else ''} ({n}/{n})"] = (n, n)
    thread_rows: dict[str, dict[str, list[float]]] = {}
    if not args.skip_threads:
        print(f"\n2. threads, {args.rounds} interleaved rounds")
        engines = {k: open_engine(path, args.n_ctx, n_threads=d, n_threads_batch=b) for k, (d, b) in plans.items()}
        thread_rows = compare(engines, text_tokens, chat_tokens, args)
        print_rows(thread_rows, args.prompt_tokens)
        for llm in engines.values():
            llm.close()

    chosen = dict(n_threads=plan.n_threads, n_threads_batch=plan.n_threads_batch)
    q8 = fast_weights(path, Path(tempfile.mkdtemp()), plan.n_threads_batch)
    option_rows: dict[str, dict[str, list[float]]] = {}
    if not args.skip_options:
        options: dict[str, dict[str, Any]] = {
            "rule, defaults (n_ubatch 512, f16 KV)": {},
            "flash_attn": {"flash_attn": True},
            "flash_attn + q8_0 KV cache": {"flash_attn": True, "type_k": 8, "type_v": 8},
            "n_batch = n_ubatch = 128": {"n_batch": 128, "n_ubatch": 128},
            "n_batch = n_ubatch = 2048": {"n_batch": 2048, "n_ubatch": 2048},
            "no mmap (weights read into RAM)": {"use_mmap": False},
            "Q8_0 copy of the weights": {"model_path": str(q8)},
            "Q8_0 copy + flash_attn": {"model_path": str(q8), "flash_attn": True},
        }
        print(f"\n3. engine options at the rule's threads, {args.rounds} interleaved rounds")
        engines = {
            k: open_engine(Path(kw.pop("model_path", path)), args.n_ctx, **chosen, **kw) for k, kw in options.items()
        }
        option_rows = compare(engines, text_tokens, chat_tokens, args)
        print_rows(option_rows, args.prompt_tokens)
        for llm in engines.values():
            llm.close()

    with tempfile.TemporaryDirectory() as data:
        backend = create_text_backend("embedded", Settings(data_dir=Path(data), n_ctx=args.n_ctx))
        backend.load()
        print(f"\n4. the app path (backend stream_chat, {backend.threads.reason}; loads {backend.weights_path.name})")
        wall, engine = [], []
        params = GenerationParams(temperature=0.0, max_new_tokens=args.decode_tokens, seed=0)
        for _ in range(args.rounds):
            stats = StreamStats()
            before = backend.engine_counters()
            first = end = None
            for delta in backend.stream_chat([{"role": "user", "content": CHAT}], params, threading.Event(), stats):
                if first is None and delta:
                    first = time.perf_counter()
            end = time.perf_counter()
            after = backend.engine_counters()
            wall.append((stats.completion_tokens - 1) / (end - first))
            engine.append((after.decode_tokens - before.decode_tokens) / (after.decode_ms - before.decode_ms) * 1000)
        print(f"   decode tok/s: wall {spread(wall, '{:.1f}')}, engine {spread(engine, '{:.1f}')}, {load()}")

        print("\n5. bandwidth bound")
        bw, how = bandwidth(topo.usable_cores)
        weights, kv = bytes_per_token(path)
        q8_weights, _ = bytes_per_token(q8)
        mean_ctx = len(chat_tokens) + args.decode_tokens / 2
        bounds = {w: bw * 1e9 / (w + kv * mean_ctx) for w in (weights, q8_weights)}
        print(f"   read bandwidth {bw:.1f} GB/s ({how}), {load()}")
        for label, w in (("shipped Q4_1", weights), ("Q8_0 copy", q8_weights)):
            print(
                f"   bytes per decoded token, {label}: weights {w / 1e6:.1f} MB + KV {kv / 1e3:.1f} kB x "
                f"{mean_ctx:.0f} tokens of context = {(w + kv * mean_ctx) / 1e6:.1f} MB -> bound {bounds[w]:.0f} tok/s"
            )
        if topo.l3_bytes and weights < topo.l3_bytes:
            print("   (the weights fit in L3: decoding is not bound by memory bandwidth here)")
        shown = [(name, row, weights) for name, row in thread_rows.items()]
        shown += [(name, row, q8_weights if "Q8_0" in name else weights) for name, row in option_rows.items()]
        for name, row, w in shown:
            for key, by in (("tg_chat", "wall clock"), ("tg_chat_cpu", "own core")):
                values = [v for v in row[key] if v == v]
                if values:
                    tg = statistics.median(values)
                    print(f"   {name:<38} {tg:6.1f} tok/s = {tg / bounds[w]:5.1%} of its bound ({by})")
        app_bound = bounds[q8_weights if backend.weights_path != path else weights]
        print(
            f"   {'app path (' + backend.weights_path.name[:24] + ')':<38} {statistics.median(wall):6.1f} tok/s = "
            f"{statistics.median(wall) / app_bound:5.1%} of its bound (wall clock)"
        )

        requests = map_messages(pieces)
        print(
            f"\n6. prefix reuse in the condenser's map step ({len(requests)} chunks of {chunk} tokens of one document, "
            "replies <= 8 tokens)"
        )
        on = prefix_reuse(backend, requests, reuse=True)
        off = prefix_reuse(backend, requests, reuse=False)
        for label, (sent, evaluated, _) in (("reuse on (app)", on), ("reuse off", off)):
            print(f"   {label:<15} sent {sent:6d}, evaluated {evaluated:6d} ({evaluated / sent:.3f} of sent)")
        print(
            f"   saved by reuse: {1 - on[1] / off[1]:.1%} of the evaluated prompt tokens; "
            f"greedy replies identical: {on[2] == off[2]}"
        )
    if args.condense_chars:
        condense_before_after(args, document_text()[: args.condense_chars])
    print(f"\nend {load()}")


if __name__ == "__main__":
    main()
