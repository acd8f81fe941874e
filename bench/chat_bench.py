"""Chat throughput: the embedded model through the app's /chat endpoint (the app in its own process,
driven over Gradio's documented HTTP API) vs the same backend called directly, in one run, on one machine.

Prints decode tokens/s and time to first token for both, their ratio, and the embedded model's
tokens/s against the machine's memory-bandwidth bound (model bytes read per token / bandwidth).

    .venv/bin/python bench/chat_bench.py [--runs 5] [--max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = "Explain in a few paragraphs how a refrigerator keeps food cold."


def direct_run(backend, max_new: int) -> tuple[str, float, float, int]:
    from backends.text.base import GenerationParams, StreamStats

    stats = StreamStats()
    params = GenerationParams(temperature=0.0, max_new_tokens=max_new, seed=0)
    t0 = time.perf_counter()
    first = None
    text = ""
    for delta in backend.stream_chat([{"role": "user", "content": PROMPT}], params, threading.Event(), stats):
        if first is None and delta:
            first = time.perf_counter()
        text += delta
    end = time.perf_counter()
    tokens = stats.completion_tokens
    return text, first - t0, (tokens - 1) / (end - first), tokens


def app_run(http, base_url: str, max_new: int, tokens: int) -> tuple[str, float, float]:
    """/chat through Gradio's documented HTTP API (POST .../call/chat, then its event stream):
    measures the app, not a client library."""
    import json

    t0 = time.perf_counter()
    body = {"data": [PROMPT, "", "", 0.0, 0.95, max_new, 0, None]}
    event_id = http.post(f"{base_url}gradio_api/call/chat", json=body).json()["event_id"]
    first, text, event = None, "", ""
    with http.stream("GET", f"{base_url}gradio_api/call/chat/{event_id}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("generating", "complete"):
                text = json.loads(line[5:])[0]
                if first is None and text:
                    first = time.perf_counter()
                if event == "complete":
                    break
            elif event == "error":
                raise RuntimeError(f"/chat failed: {line}")
    end = time.perf_counter()
    return text, first - t0, (tokens - 1) / (end - first)


def gradio_client_ttft(client, runs: int = 5) -> float:
    """Time to first output as gradio_client reports it (its job iterator adds its own latency)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        job = client.submit(PROMPT, temperature=0.0, max_new_tokens=8, seed=0, api_name="/chat")
        for partial in job:
            if partial:
                times.append(time.perf_counter() - t0)
                break
        job.result()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()

    from gradio_client import Client

    from backends import create_text_backend
    from config import Settings
    from tests.support.app_process import app_process

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}")
    backend = create_text_backend("embedded", Settings(data_dir=Path(tempfile.mkdtemp())))
    backend.load()
    direct_run(backend, 16)  # warm-up

    import httpx

    with tempfile.TemporaryDirectory() as data, app_process(Path(data)) as app, httpx.Client(timeout=120) as http:
        app_run(http, app.url, 16, 16)  # warm-up: loads the model in the app process
        rows = []
        for _ in range(args.runs):  # interleaved, so drift hits both alike
            d_text, d_ttft, d_tps, tokens = direct_run(backend, args.max_new_tokens)
            a_text, a_ttft, a_tps = app_run(http, app.url, args.max_new_tokens, tokens)
            assert a_text == d_text, "greedy text through the app differs from the direct call"
            rows.append((d_ttft, d_tps, a_ttft, a_tps, tokens))
        client_ttft = gradio_client_ttft(Client(app.url, verbose=False))

    med = lambda i: statistics.median(r[i] for r in rows)  # noqa: E731
    d_ttft, d_tps, a_ttft, a_tps, tokens = med(0), med(1), med(2), med(3), med(4)
    print(f"runs: {args.runs}, reply tokens: {tokens:.0f} (greedy, identical text both ways)")
    print(f"direct backend : {d_tps:6.1f} tok/s  first token {d_ttft * 1000:6.1f} ms")
    print(f"app /chat      : {a_tps:6.1f} tok/s  first token {a_ttft * 1000:6.1f} ms")
    print(f"app/direct tok/s ratio: {a_tps / d_tps:.3f}   (target >= 0.95)")
    print(f"first-token overhead  : {(a_ttft - d_ttft) * 1000:.1f} ms   (target < 100 ms)")
    print(
        f"(gradio_client's own first output: {client_ttft * 1000:.0f} ms; its job iterator polls, so "
        "this is the client library's latency, not the app's)"
    )

    from decode_bench import bandwidth, bytes_per_token  # the same bound as bench/decode_bench.py

    bw, how = bandwidth(os.cpu_count() or 1)
    weights, kv = bytes_per_token(backend.weights_path)  # the file the backend loaded (a Q8_0 copy, by default)
    model_bytes = weights + kv * (len(PROMPT) // 4 + tokens / 2)
    bound = bw * 1e9 / model_bytes
    print(
        f"memory bandwidth: {bw:.1f} GB/s ({how}); bytes read per token {model_bytes / 1e6:.0f} MB "
        f"({backend.weights_path.name})"
    )
    print(f"bandwidth bound: {bound:.0f} tok/s; embedded direct decode = {d_tps / bound:.1%} of it")


if __name__ == "__main__":
    main()
