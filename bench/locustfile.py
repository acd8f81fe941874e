"""Locust scenario for bench/load_bench.py: API users mixing /chat (60), /write (15), /condense with an
upload (10) and /generate_image with the GAN (15), over Gradio's documented REST API (POST
/gradio_api/call/<name>, then its event stream). One JSON line per logical request goes to
$LOAD_RECORDS_FILE: kind, outcome (ok / busy / error), time to first token, total time, HTTP status.

Run it through bench/load_bench.py (which starts the servers and reads the records); by hand:
    LOAD_RECORDS_FILE=/tmp/r.jsonl locust -f bench/locustfile.py --headless -u 10 -r 5 -t 30s --host http://127.0.0.1:7860
Environment: LOAD_TOKENS_FILE (JSON list of API tokens, one per user), LOAD_WAIT (mean think time, s),
LOAD_DOCS (os.pathsep-separated documents to upload), LOAD_IMAGE_MODEL, LOAD_ROUND_ROBIN_FIRST=1 (each
user's first request is kinds[user index % 4], so a short run covers every kind).
"""

from __future__ import annotations

import itertools
import json
import mimetypes
import os
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task

CALL_DEADLINE_S = 180.0  # a call still streaming after this long counts as an error ("deadline")
READ_TIMEOUT_S = 60.0  # Gradio sends a heartbeat every 15 s, so a 60 s silence is a dead stream
MAX_BUSY_SLEEP_S = 10.0  # a busy answer's Retry-After is honoured up to this long
# uvicorn closes a keep-alive connection after 5 s idle; a request sent on it just then is reset before
# the app sees it (browsers retry those). Dropping connections idle this long avoids counting that race.
IDLE_CLOSE_S = 4.0
BUSY_TEXT = re.compile(r"\bbusy\b|retry in|queue is full|too many requests|rate limit", re.I)

WAIT = float(os.environ.get("LOAD_WAIT", "5"))
TOKENS: list[str] = (
    json.loads(Path(os.environ["LOAD_TOKENS_FILE"]).read_text()) if os.environ.get("LOAD_TOKENS_FILE") else []
)
DOCS = [Path(p) for p in os.environ.get("LOAD_DOCS", "").split(os.pathsep) if p]
IMAGE_MODEL = os.environ.get("LOAD_IMAGE_MODEL", "gan:faces")
ROUND_ROBIN_FIRST = os.environ.get("LOAD_ROUND_ROBIN_FIRST") == "1"
_records = open(os.environ.get("LOAD_RECORDS_FILE", os.devnull), "a", buffering=1)  # line-buffered
_user_numbers = itertools.count()
_params: dict[str, list[dict]] = {}  # endpoint name -> its parameters, from /gradio_api/info

PROMPTS = [
    "Explain how a heat pump works to a ten year old.",
    "Give me three ideas for a team offsite in autumn.",
    "Summarise the plot of Hamlet in one paragraph.",
    "What should I check before buying a used bicycle?",
    "Draft a polite reminder about an unpaid invoice.",
]
TOPICS = [
    "Solar-powered phone charger",
    "Reusable coffee cup",
    "Noise-cancelling headphones for kids",
    "Community garden opening",
]
TEMPLATES = ["product_description", "social_x", "social_linkedin", "ad_aida"]


@events.test_start.add_listener
def _load_api_info(environment: Any, **_: Any) -> None:
    """Every call sends all its parameters in order, defaults filled from /gradio_api/info, so the bench
    does not depend on how REST treats missing trailing parameters."""
    import requests

    headers = {"Authorization": f"Bearer {TOKENS[0]}"} if TOKENS else {}
    info = requests.get(f"{environment.host.rstrip('/')}/gradio_api/info", headers=headers, timeout=30).json()
    for name, spec in info["named_endpoints"].items():
        _params[name.lstrip("/")] = spec["parameters"]


def call_data(endpoint: str, **values: Any) -> list:
    params = _params[endpoint]
    unknown = set(values) - {p["parameter_name"] for p in params}
    if unknown:
        raise KeyError(f"/{endpoint} has no parameter {sorted(unknown)}")
    return [
        values[p["parameter_name"]] if p["parameter_name"] in values else p.get("parameter_default") for p in params
    ]


class Outcome(Exception):
    """Ends one logical request early with its classification."""

    def __init__(self, outcome: str, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.outcome, self.status, self.detail, self.retry_after = outcome, status, detail, retry_after


def classify_http(resp: Any) -> Outcome | None:
    """None for a 2xx; otherwise busy (429, or a 503 saying the queue is full) or error."""
    status = resp.status_code or 0
    if 200 <= status < 300:
        return None
    try:
        text = (resp.text or "")[:300]
    except Exception:  # noqa: BLE001 - a body cut mid-read still has its status
        text = ""
    retry = _retry_after(resp.headers.get("Retry-After"))
    if status == 429 or (status == 503 and BUSY_TEXT.search(text)):
        return Outcome("busy", status, text or f"HTTP {status}", retry)
    if status == 0:
        return Outcome("error", 0, f"no response: {resp.error!r}"[:300])
    return Outcome("error", status, text or f"HTTP {status}")


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


class StudioUser(HttpUser):
    wait_time = between(WAIT * 0.5, WAIT * 1.5)

    def on_start(self) -> None:
        self.number = next(_user_numbers)
        self.token = TOKENS[self.number % len(TOKENS)] if TOKENS else None
        if self.token:
            self.client.headers["Authorization"] = f"Bearer {self.token}"
        self.last_turn: list[dict] | None = None
        self.last_done = time.monotonic()
        if ROUND_ROBIN_FIRST:
            [self.chat, self.write, self.condense, self.image][self.number % 4]()

    # -- the four kinds ---------------------------------------------------------------------------

    @task(60)
    def chat(self) -> None:
        message = random.choice(PROMPTS)
        history = self.last_turn if random.random() < 0.5 else None
        data = call_data("chat", message=message, temperature=0.7, seed=random.randrange(1 << 30), history=history)

        def run(rec: dict) -> None:
            text = self._call("chat", data, rec)
            self.last_turn = [{"role": "user", "content": message}, {"role": "assistant", "content": text}]

        self._request("chat", run)

    @task(15)
    def write(self) -> None:
        data = call_data(
            "write",
            topic=random.choice(TOPICS),
            template=random.choice(TEMPLATES),
            audience="busy parents",
            seed=random.randrange(1 << 30),
        )
        self._request("write", lambda rec: self._call("write", data, rec))

    @task(10)
    def condense(self) -> None:
        doc = random.choice(DOCS)

        def run(rec: dict) -> None:
            mime = mimetypes.guess_type(doc.name)[0] or "application/octet-stream"
            with self.client.post(
                "/gradio_api/upload",
                files=[("files", (doc.name, doc.read_bytes(), mime))],
                name="upload",
                catch_response=True,
                timeout=(10, READ_TIMEOUT_S),
            ) as resp:
                self._check(resp, rec)
                paths = resp.json()
            file = {"path": paths[0], "orig_name": doc.name, "mime_type": mime, "meta": {"_type": "gradio.FileData"}}
            self._call("condense", call_data("condense", file=file, length="short"), rec, tokens=False)

        self._request("condense", run)

    @task(15)
    def image(self) -> None:
        data = call_data("generate_image", prompt="", seed=random.randrange(1 << 30), model=IMAGE_MODEL)

        def run(rec: dict) -> None:
            files = self._call("generate_image", data, rec, tokens=False)
            url = files[0]["url"] if files and isinstance(files[0], dict) else None
            if not url:
                raise Outcome("error", 200, f"no image url in {str(files)[:200]}")
            with self.client.get(url, name="image file", catch_response=True, timeout=(10, READ_TIMEOUT_S)) as resp:
                self._check(resp, rec)
                if not resp.content.startswith(b"\x89PNG"):
                    raise Outcome("error", resp.status_code, "image file is not a PNG")

        self._request("image", run)

    # -- plumbing ---------------------------------------------------------------------------------

    def _request(self, kind: str, run: Any) -> None:
        """One logical request: times it, classifies it, writes its record, honours a busy answer."""
        if time.monotonic() - self.last_done > IDLE_CLOSE_S:
            self.client.close()  # requests reopens its connections on the next call
        rec: dict[str, Any] = {"kind": kind, "start": time.time(), "ttft": None, "status": 200, "http": []}
        t0 = time.perf_counter()
        rec["_t0"] = t0
        outcome, detail, retry = "ok", "", None
        try:
            run(rec)
        except Outcome as o:
            outcome, detail, retry = o.outcome, o.detail, o.retry_after
            rec["status"] = o.status
        except Exception as exc:  # noqa: BLE001 - a bench records every failure instead of dying
            outcome, detail = "error", f"{type(exc).__name__}: {exc}"[:300]
            rec["status"] = 0
        rec.pop("_t0")
        rec.update(outcome=outcome, detail=detail, total=time.perf_counter() - t0, end=time.time(), user=self.number)
        _records.write(json.dumps(rec) + "\n")
        self.last_done = time.monotonic()
        if outcome == "busy":
            time.sleep(min(retry if retry is not None else 1.0, MAX_BUSY_SLEEP_S))

    def _check(self, resp: Any, rec: dict) -> None:
        rec["http"].append(resp.status_code or 0)
        problem = classify_http(resp)
        if problem is None:
            resp.success()
            return
        resp.failure(f"{problem.outcome}: HTTP {problem.status}")
        raise problem

    def _call(self, endpoint: str, data: list, rec: dict, tokens: bool = True) -> Any:
        """POST the call, read its event stream to the end; returns the first output of the last value.
        With `tokens`, records the time to the first streamed value holding text."""
        with self.client.post(
            f"/gradio_api/call/{endpoint}",
            json={"data": data},
            name=f"call {endpoint}",
            catch_response=True,
            timeout=(10, READ_TIMEOUT_S),
        ) as resp:
            self._check(resp, rec)
            event_id = resp.json()["event_id"]
        with self.client.get(
            f"/gradio_api/call/{endpoint}/{event_id}",
            name=f"stream {endpoint}",
            stream=True,
            catch_response=True,
            timeout=(10, READ_TIMEOUT_S),
        ) as resp:
            self._check(resp, rec)
            for event, payload in self._events(resp):
                if event == "generating" and tokens and rec["ttft"] is None and payload and payload[0]:
                    rec["ttft"] = time.perf_counter() - rec["_t0"]
                elif event == "complete":
                    if tokens and rec["ttft"] is None and payload and payload[0]:
                        rec["ttft"] = time.perf_counter() - rec["_t0"]
                    return payload[0] if isinstance(payload, list) and payload else payload
                elif event == "error":
                    if isinstance(payload, dict):  # Gradio's error payload: {"error": message, "title": ...}
                        message = f"{payload.get('title') or ''}: {payload.get('error')}"
                    else:
                        message = payload if isinstance(payload, str) else json.dumps(payload)
                    kind = "busy" if BUSY_TEXT.search(message or "") else "error"
                    raise Outcome(kind, 200, f"event: error: {message}"[:300])
            raise Outcome("error", 200, "event stream ended without complete or error")

    def _events(self, resp: Any) -> Iterator[tuple[str, Any]]:
        """(event, parsed data) pairs of an SSE response, bounded by CALL_DEADLINE_S."""
        deadline = time.monotonic() + CALL_DEADLINE_S
        event = ""
        for line in resp.iter_lines(decode_unicode=True):
            if time.monotonic() > deadline:
                resp.close()
                raise Outcome("error", 200, f"still streaming after {CALL_DEADLINE_S:g} s (deadline)")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                raw = line[5:].strip()
                try:
                    payload = json.loads(raw) if raw else None
                except ValueError:
                    payload = raw
                if event != "heartbeat":
                    yield event, payload
