"""Server memory over many REST calls (issue 9, finding 2): every POST /gradio_api/call/<name> without a
session hash starts a new Gradio session. Starts the real app (`python app.py`, its own process) against
a fast fake OpenAI-compatible server, makes N calls of /chat (POST + the SSE result, a few clients in
parallel), samples the app's RSS every 250 calls, and prints the table and the slope after warm-up
(least squares, MB per 1,000 calls).

    .venv/bin/python bench/session_memory_bench.py                  # the app as configured (bounded)
    .venv/bin/python bench/session_memory_bench.py --max-sessions 0 # Gradio's default: before the fix
    .venv/bin/python bench/session_memory_bench.py --compare        # both, one after the other
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from tests.support.app_process import app_process  # noqa: E402
from tests.support.openai_servers import fake_openai_server  # noqa: E402
from tests.support.rest_client import RestClient  # noqa: E402

# message, system prompt, model, temperature, top_p, max_new_tokens, seed, history
CHAT_ARGS = ["Say hi.", "", "", 0.7, 0.95, 4, -1, None]


def run(calls: int, parallel: int, every: int, max_sessions: int | None, warmup: int) -> dict:
    with fake_openai_server(reply_words=3) as fake, tempfile.TemporaryDirectory() as data_dir:
        env = {
            "STUDIO_TEXT_MODEL": "openai:fake-model",
            "OPENAI_BASE_URL": fake.base_url,
            # one caller making thousands of calls, a few at once, on purpose
            "STUDIO_RATE_LIMIT": "0",
            "STUDIO_USER_TEXT_JOBS": str(parallel + 4),
        }
        if max_sessions is not None:
            env["STUDIO_MAX_SESSIONS"] = str(max_sessions)
        with app_process(Path(data_dir), env) as app:
            proc = psutil.Process(app.proc.pid)
            lock = threading.Lock()
            done = failed = 0
            samples: list[tuple[int, float, float]] = []  # (calls done, RSS MB, seconds)
            failures: list[str] = []
            start = time.perf_counter()
            samples.append((0, proc.memory_info().rss / 2**20, 0.0))

            def worker() -> None:
                nonlocal done, failed
                client = RestClient(app.url)
                try:
                    while True:
                        with lock:
                            if done + failed >= calls:
                                return
                        outcome = client.call("chat", CHAT_ARGS)
                        with lock:
                            if outcome[0] == "complete":
                                done += 1
                            else:
                                failed += 1
                                if len(failures) < 5:
                                    failures.append(repr(outcome)[:300])
                            n = done + failed
                            if n % every == 0:
                                samples.append((n, proc.memory_info().rss / 2**20, time.perf_counter() - start))
                                fake.requests.clear()  # the fake keeps what it was sent
                finally:
                    client.close()

            threads = [threading.Thread(target=worker) for _ in range(parallel)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            time.sleep(2)  # one more sweep
            samples.append((done + failed, proc.memory_info().rss / 2**20, time.perf_counter() - start))
    tail = [(n, mb) for n, mb, _ in samples if n >= warmup]
    return {
        "samples": samples,
        "slope": slope(tail),
        "done": done,
        "failed": failed,
        "failures": failures,
        "max_sessions": max_sessions,
    }


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares MB per 1,000 calls."""
    if len(points) < 2:
        return float("nan")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 1000 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else float("nan")


def report(result: dict, warmup: int) -> None:
    label = {None: "as configured (STUDIO_MAX_SESSIONS default)", 0: "STUDIO_MAX_SESSIONS=0 (Gradio default)"}
    print(
        f"\n== {label.get(result['max_sessions'], 'STUDIO_MAX_SESSIONS=%s' % result['max_sessions'])}: "
        f"{result['done']} calls completed, {result['failed']} failed"
    )
    for f in result["failures"]:
        print("   failure:", f)
    print(f"{'calls':>7} {'RSS MB':>9} {'seconds':>9}")
    for n, mb, secs in result["samples"]:
        print(f"{n:>7} {mb:>9.1f} {secs:>9.1f}")
    first = next((mb for n, mb, _ in result["samples"] if n >= warmup), float("nan"))
    last = result["samples"][-1][1]
    print(f"slope after {warmup} calls: {result['slope']:+.2f} MB per 1,000 calls (RSS {first:.1f} -> {last:.1f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--every", type=int, default=250, help="sample RSS every N calls")
    parser.add_argument("--warmup", type=int, default=1000, help="calls left out of the slope")
    parser.add_argument(
        "--max-sessions",
        type=int,
        default=None,
        help="STUDIO_MAX_SESSIONS for the app (0: Gradio's default, as before the fix)",
    )
    parser.add_argument("--compare", action="store_true", help="run with 0 (before), then as configured")
    args = parser.parse_args()
    runs = [0, args.max_sessions] if args.compare else [args.max_sessions]
    results = []
    for max_sessions in runs:
        result = run(args.calls, args.parallel, args.every, max_sessions, args.warmup)
        report(result, args.warmup)
        results.append(result)
    if len(results) == 2:
        print(f"\nslope: {results[0]['slope']:+.2f} MB/1,000 calls before, {results[1]['slope']:+.2f} after")


if __name__ == "__main__":
    main()
