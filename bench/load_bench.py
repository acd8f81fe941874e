"""Load: API users mixing chat, writer, condenser uploads and GAN images against the real app, with a
streaming OpenAI-compatible fake at a realistic token rate behind it. Prints one table: requests, busy
answers and errors by kind, HTTP 5xx, p50/p95 time to first token and total time, and the app's RSS
slope (MB per 1,000 requests after warm-up).

    .venv/bin/python bench/load_bench.py                      # 100 users, 10 minutes
    .venv/bin/python bench/load_bench.py --users 200 --wait 1 --minutes 4
    .venv/bin/python bench/load_bench.py --ci --json out.json  # 10 users, 30 s (tests/security/test_load_short.py)

Everything runs on 127.0.0.1: the fake model server (in this process), the app (python app.py, its own
process) and locust (its own process: gevent would patch this one's threads).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CORPUS = ROOT.parent / "shared" / "corpus"
DOCS = ("good-french-moliere-utf8.txt", "good-essay-assignment-headings.docx")
KINDS = ("chat", "write", "condense", "image")
MODEL = "load-model"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--spawn-rate", type=float, default=5.0, help="users started per second")
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--seconds", type=float, default=None, help="run time (default 10 minutes)")
    ap.add_argument("--wait", type=float, default=5.0, help="mean think time per user, s (uniform 0.5x-1.5x)")
    ap.add_argument("--token-ms", type=float, default=20.0, help="fake server: ms per streamed token")
    ap.add_argument("--reply-tokens", type=int, default=100, help="fake server: tokens per reply")
    ap.add_argument("--sample-s", type=float, default=3.0, help="RSS sampling period")
    ap.add_argument("--ci", action="store_true", help="short run: 10 users, 30 s, 1 s think time")
    ap.add_argument("--json", type=Path, help="also write the results here (for tests)")
    ap.add_argument("--keep", action="store_true", help="keep the app's data folder (images, database)")
    ap.add_argument(
        "--app-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the app (e.g. STUDIO_CONCURRENCY=8)",
    )
    args = ap.parse_args(argv)
    if args.ci:
        args.users, args.spawn_rate, args.wait = 10, 5.0, 1.0
        args.seconds = args.seconds or 30.0
    args.run_s = args.seconds if args.seconds is not None else (args.minutes or 10.0) * 60
    return args


def make_tokens(settings_db: Path, users: int) -> list[str]:
    """One API token per locust user, created before the app starts; [] until the app has tokens."""
    try:
        from core.security.tokens import TokenStore
    except ImportError:
        return []
    store = TokenStore(settings_db)
    return [store.create(f"user:load-{i}") for i in range(users)]


class RssSampler(threading.Thread):
    """(wall time, MB) of the app process and its children every `period` seconds, with the load
    average; keeps the CPU seconds of short-lived children (document readers) seen while sampling."""

    def __init__(self, pid: int, period: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.period = period
        self.samples: list[tuple[float, float]] = []
        self.loads: list[float] = []
        self.stop_event = threading.Event()
        self.child_cpu: dict[int, float] = {}  # last CPU seconds seen for each (short-lived) child

    def rss_mb(self) -> float:
        import psutil

        total = self.proc.memory_info().rss
        for child in self.proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
                t = child.cpu_times()
                self.child_cpu[child.pid] = t.user + t.system
        return total / 2**20

    def run(self) -> None:
        import psutil

        while not self.stop_event.wait(self.period):
            try:
                if self.proc.status() == psutil.STATUS_ZOMBIE:
                    return
                self.samples.append((time.time(), self.rss_mb()))
                self.loads.append(os.getloadavg()[0])
            except psutil.Error:
                return

    def app_cpu_s(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system + t.children_user + t.children_system


def slope_per_1000(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x, times 1,000 (x: requests done, y: MB)."""
    if len(points) < 3 or len({x for x, _ in points}) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return 1000 * sum((x - mx) * (y - my) for x, y in points) / sxx


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def summarise(records: list[dict], samples: list[tuple[float, float]], t0: float, t1: float) -> dict[str, Any]:
    kinds: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        mine = [r for r in records if r["kind"] == kind]
        ok = [r for r in mine if r["outcome"] == "ok"]
        errors = [r for r in mine if r["outcome"] == "error"]
        details: dict[str, int] = {}
        for r in errors:
            key = f"[{r['status']}] {r['detail'][:160]}"
            details[key] = details.get(key, 0) + 1
        kinds[kind] = {
            "requests": len(mine),
            "ok": len(ok),
            "busy": sum(r["outcome"] == "busy" for r in mine),
            "errors": len(errors),
            "http_5xx": sum(1 for r in mine for s in r["http"] if s >= 500),
            "ttft_p50": pct([r["ttft"] for r in ok if r["ttft"] is not None], 0.50),
            "ttft_p95": pct([r["ttft"] for r in ok if r["ttft"] is not None], 0.95),
            "total_p50": pct([r["total"] for r in ok], 0.50),
            "total_p95": pct([r["total"] for r in ok], 0.95),
            "error_details": dict(sorted(details.items(), key=lambda kv: -kv[1])[:5]),
        }
    ends = sorted(r["end"] for r in records)
    warm = t0 + 0.2 * (t1 - t0)
    import bisect

    points = [(bisect.bisect_right(ends, t), mb) for t, mb in samples if t >= warm]
    return {
        "kinds": kinds,
        "requests": len(records),
        "seconds": t1 - t0,
        "ok_per_s": sum(k["ok"] for k in kinds.values()) / max(1e-9, t1 - t0),
        "busy": sum(k["busy"] for k in kinds.values()),
        "errors": sum(k["errors"] for k in kinds.values()),
        "http_5xx": sum(k["http_5xx"] for k in kinds.values()),
        "rss_first_mb": samples[0][1] if samples else None,
        "rss_last_mb": samples[-1][1] if samples else None,
        "rss_peak_mb": max((mb for _, mb in samples), default=None),
        "rss_warm_median_mb": statistics.median(mb for _, mb in points) if points else None,
        "rss_warm_min_mb": min((mb for _, mb in points), default=None),
        "rss_warm_max_mb": max((mb for _, mb in points), default=None),
        "rss_slope_mb_per_1000": slope_per_1000(points),
        "rss_points": len(points),
    }


def fmt(v: float | None, unit: str = "s") -> str:
    return "-" if v is None else (f"{v * 1000:.0f} ms" if unit == "s" and v < 1 else f"{v:.2f} {unit}")


def print_table(res: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\nLoad: {args.users} users, think time {args.wait:g} s (x0.5-1.5), {res['seconds']:.0f} s, "
        f"fake model {args.token_ms:g} ms/token x {args.reply_tokens} tokens"
    )
    head = (
        f"{'kind':9}{'requests':>9}{'ok':>7}{'busy':>6}{'errors':>7}{'5xx':>5}"
        f"{'TTFT p50':>11}{'TTFT p95':>11}{'total p50':>11}{'total p95':>11}"
    )
    print(head)
    print("-" * len(head))
    rows = list(res["kinds"].items())
    total = {
        "requests": res["requests"],
        "ok": sum(k["ok"] for _, k in rows),
        "busy": res["busy"],
        "errors": res["errors"],
        "http_5xx": res["http_5xx"],
    }
    for name, k in rows + [("all", total)]:
        print(
            f"{name:9}{k['requests']:>9}{k['ok']:>7}{k['busy']:>6}{k['errors']:>7}{k['http_5xx']:>5}"
            f"{fmt(k.get('ttft_p50')):>11}{fmt(k.get('ttft_p95')):>11}"
            f"{fmt(k.get('total_p50')):>11}{fmt(k.get('total_p95')):>11}"
        )
    print(
        f"\nthroughput: {res['ok_per_s']:.2f} ok requests/s; load average (1 min) mean "
        f"{fmt(res.get('load_mean'), '')} max {fmt(res.get('load_max'), '')} on {os.cpu_count()} CPUs"
    )
    print(
        f"CPU seconds per request: app {fmt(res.get('cpu_app_per_req'), 's')}, locust "
        f"{fmt(res.get('cpu_locust_per_req'), 's')}, fake server+bench {fmt(res.get('cpu_bench_per_req'), 's')}"
    )
    slope = res["rss_slope_mb_per_1000"]
    print(
        f"app RSS (children included): first {fmt(res['rss_first_mb'], 'MB')}, last {fmt(res['rss_last_mb'], 'MB')}; "
        f"after warm-up (the first 20% of the run left out, {res['rss_points']} samples): median "
        f"{fmt(res['rss_warm_median_mb'], 'MB')}, min {fmt(res['rss_warm_min_mb'], 'MB')}, max "
        f"{fmt(res['rss_warm_max_mb'], 'MB')}, slope {'-' if slope is None else f'{slope:+.1f}'} MB per 1,000 requests"
    )
    for name, k in rows:
        for detail, n in k["error_details"].items():
            print(f"  {name} error x{n}: {detail}")


def run_locust(
    cmd: list[str], env: dict[str, str], log_path: Path, app: subprocess.Popen, limit_s: float
) -> tuple[int | None, float]:
    """Run locust to its end (or until the app dies, or `limit_s`); returns its exit status and the CPU
    seconds it used."""
    import psutil

    with open(log_path, "wb") as log:
        locust = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc = psutil.Process(locust.pid)
    cpu = 0.0
    deadline = time.monotonic() + limit_s
    while locust.poll() is None and time.monotonic() < deadline and app.poll() is None:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            cpu = t.user + t.system
        time.sleep(1)
    if locust.poll() is None:
        print(
            "the app died: stopping locust"
            if app.poll() is not None
            else "locust did not stop in time: terminating it",
            flush=True,
        )
        locust.terminate()
        try:
            locust.wait(15)
        except subprocess.TimeoutExpired:
            locust.kill()
            locust.wait(15)
    return locust.returncode, cpu


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    from config import Settings
    from tests.support.app_process import app_process
    from tests.support.openai_servers import fake_openai_server

    work = Path(tempfile.mkdtemp(prefix="load-bench-"))
    data_dir, gradio_tmp = work / "data", work / "gradio"
    data_dir.mkdir()
    gradio_tmp.mkdir()
    tokens = make_tokens(Settings(data_dir=data_dir).db_path, args.users)
    (work / "tokens.json").write_text(json.dumps(tokens))
    records_path = work / "records.jsonl"
    print(
        f"work folder {work}; {'one API token per user' if tokens else 'no API tokens (core.security.tokens absent)'}",
        flush=True,
    )
    extra = dict(kv.split("=", 1) for kv in args.app_env)
    try:
        with (
            fake_openai_server(
                model=MODEL, reply_words=args.reply_tokens, chunk_delay=args.token_ms / 1000, max_model_len=8192
            ) as fake,
            app_process(
                data_dir,
                {
                    "STUDIO_TEXT_MODEL": f"openai:{MODEL}",
                    "OPENAI_BASE_URL": fake.base_url,
                    "STUDIO_IMAGE_MODEL": "gan:faces",
                    "GRADIO_TEMP_DIR": str(gradio_tmp),
                    **extra,
                },
            ) as app,
        ):
            env = {
                **os.environ,
                "LOAD_TOKENS_FILE": str(work / "tokens.json"),
                "LOAD_RECORDS_FILE": str(records_path),
                "LOAD_WAIT": f"{args.wait:g}",
                "LOAD_DOCS": os.pathsep.join(str(CORPUS / d) for d in DOCS),
                "LOAD_IMAGE_MODEL": "gan:faces",
                "LOAD_ROUND_ROBIN_FIRST": "1" if args.ci else "0",
            }
            stop_timeout = 60
            cmd = [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(ROOT / "bench" / "locustfile.py"),
                "--headless",
                "--users",
                str(args.users),
                "--spawn-rate",
                f"{args.spawn_rate:g}",
                "--run-time",
                f"{args.run_s:.0f}s",
                "--host",
                app.url.rstrip("/"),
                "--stop-timeout",
                str(stop_timeout),
                "--only-summary",
                "--exit-code-on-error",
                "0",
                "--loglevel",
                "WARNING",
            ]
            sampler = RssSampler(app.proc.pid, args.sample_s)
            me = psutil.Process()
            bench_cpu0 = sum(me.cpu_times()[:2])
            app_cpu0 = sampler.app_cpu_s()
            t0 = time.time()
            sampler.samples.append((t0, sampler.rss_mb()))
            sampler.start()
            locust_exit, locust_cpu = run_locust(
                cmd, env, work / "locust.log", app.proc, args.run_s + stop_timeout + 120
            )
            t1 = time.time()
            sampler.stop_event.set()
            sampler.join(10)
            app_cpu = sampler.app_cpu_s() - app_cpu0 + sum(sampler.child_cpu.values())
            bench_cpu = sum(me.cpu_times()[:2]) - bench_cpu0
            alive = app.proc.poll() is None
            app_exit = app.proc.returncode
            shutil.copy(app.log_path, work / "app.log")
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    records = (
        [json.loads(line) for line in records_path.read_text().splitlines() if line.strip()]
        if records_path.exists()
        else []
    )
    (work / "rss.csv").write_text(
        "time,requests_done,rss_mb\n"
        + "".join(f"{t - t0:.1f},{sum(r['end'] <= t for r in records)},{mb:.1f}\n" for t, mb in sampler.samples)
    )
    res = summarise(records, sampler.samples, t0, t1)
    n = max(1, len(records))
    res.update(
        load_mean=statistics.fmean(sampler.loads) if sampler.loads else None,
        load_max=max(sampler.loads, default=None),
        cpu_app_per_req=app_cpu / n,
        cpu_locust_per_req=locust_cpu / n,
        cpu_bench_per_req=bench_cpu / n,
        app_alive=alive,
        app_exit=app_exit,
        work=str(work),
        locust_exit=locust_exit,
        users=args.users,
        wait=args.wait,
        fake_chat_requests=len(fake.chat_requests),
    )
    print_table(res, args)
    print(
        f"app {'still serving' if alive else f'DIED (exit status {app_exit})'}; locust exit {locust_exit}; "
        f"logs: {work}/app.log, {work}/locust.log; records: {records_path}; RSS samples: {work}/rss.csv"
    )
    return res


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run(args)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0 if res["app_alive"] else 1


if __name__ == "__main__":
    sys.exit(main())
