"""Fuzz the sandboxed document reader: mutated corpus files through `extract_document`, one at a time.

Every input is a file from ../shared/corpus/ (or two of them) after one to three mutations: byte flips,
truncation, splices, repeated or deleted stretches, PDF token insertions, and for DOCX files mutations
inside the ZIP (a member's XML flipped, cut, nested, duplicated, dropped; lying sizes; inflating
members). Each run goes through the app's own path (core/condenser/documents.py -> core/condenser/worker.py in a
child process with its time and memory limits).

Outcome counts: `extracted` or the DocumentError code the user would see. FINDINGS (input saved under
bench/results/fuzz_documents/ with a .json note):
  - escaped:    an exception other than DocumentError reached the caller (the user would get a traceback);
  - hang:       a call took longer than the worker's time limit plus --margin (the limit did not hold);
  - leftover:   a process or scratch folder outlived the call;
  - bad-doc:    an extracted document breaks its own contract (empty segment, page outside 1..page_count).
What the sandbox caught (parser_crashed / parser_out_of_memory / parser_timeout) is not a finding, but
those inputs are kept too (as `notable-*`): a parser that dies or spins is worth a look.

    nice -n 10 .venv/bin/python bench/fuzz_documents.py --minutes 60 --seed 1
    .venv/bin/python bench/fuzz_documents.py --replay bench/results/fuzz_documents/escaped-3.pdf
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
import traceback
import warnings
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "corpus"
RESULTS = ROOT / "bench" / "results" / "fuzz_documents"

# --- mutations ---------------------------------------------------------------------------------------

PDF_TOKENS = [
    b"obj",
    b"endobj",
    b"stream",
    b"endstream",
    b"<<",
    b">>",
    b"[",
    b"]",
    b"/Length 99999999",
    b"/Length -1",
    b"/Filter /FlateDecode",
    b"/Filter [/FlateDecode /FlateDecode]",
    b"xref",
    b"trailer",
    b"startxref",
    b"%%EOF",
    b"/Type /Pages",
    b"/Kids [1 0 R]",
    b"/Count 99999999",
    b"0 0 R",
    b"1 0 R",
    b"/Parent 1 0 R",
    b"/Encrypt 1 0 R",
    b"/ObjStm",
    b"/Root 1 0 R",
    b"9999999999999999999999",
    b"-0.000000001",
    b"(",
    b")",
    b"\\",
    b"/Font",
    b"BT",
    b"ET",
    b"Tj",
    b"TJ",
    b"/Resources << >>",
    b"/Contents 1 0 R",
    b"/Outlines 1 0 R",
    b"/First 1 0 R",
    b"/Next 1 0 R",
    b"/ToUnicode 1 0 R",
    b"beginbfchar",
    b"endbfchar",
    b"/W [0 [1 2 3]]",
]
TEXT_TOKENS = [
    b"\x00",
    b"\xff\xfe",
    b"\xfe\xff",
    b"\xef\xbb\xbf",
    b"\r",
    b"\r\n",
    b"\x0c",
    b"\x80",
    b"\xc3",
    b"\xe2\x80",
    b"# ",
    b"```",
    b"~~~",
    b"===",
    b"---",
    b"<html>",
    b"<script>",
    b"</",
    b"&amp;",
    b"&#x0;",
    b"&#99999999;",
    b"<![CDATA[",
    b"<meta charset=utf-16>",
    b"<meta charset=bogus>",
    b"[a](",
    b"![",
    b"\n\n\n\n",
    b" " * 1000,
]
XML_TOKENS = [
    b"<w:p>",
    b"</w:p>",
    b"<w:t>",
    b"</w:t>",
    b"<w:tbl>",
    b"<w:tr>",
    b"<w:tc>",
    b"<w:br/>",
    b'<w:outlineLvl w:val="x"/>',
    b'<w:outlineLvl w:val="-5"/>',
    b'<w:pStyle w:val="Heading1"/>',
    b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>',
    b"&b;",
    b'<!ENTITY x SYSTEM "file:///etc/passwd">',
    b"&x;",
    b'<?xml version="1.0"?>',
    b'xmlns:w="urn:bogus"',
    b"\x00",
    b"\xff",
    b"<mc:Fallback>",
    b"<w:sdt><w:sdtContent>",
]


def flip_bytes(rng: random.Random, data: bytes, _: bytes) -> tuple[bytes, str]:
    if not data:
        return bytes([rng.randrange(256)]), "flip(empty)"
    out = bytearray(data)
    n = rng.choice([1, 1, 2, 4, 8, 32, 256])
    for _i in range(n):
        i = rng.randrange(len(out))
        out[i] = rng.randrange(256) if rng.random() < 0.5 else out[i] ^ (1 << rng.randrange(8))
    return bytes(out), f"flip({n})"


def truncate(rng: random.Random, data: bytes, _: bytes) -> tuple[bytes, str]:
    if len(data) < 2:
        return data, "truncate(noop)"
    cut = rng.choice([rng.randrange(1, len(data)), len(data) - rng.randrange(1, min(len(data), 2048))])
    return data[:cut], f"truncate({cut})"


def splice(rng: random.Random, data: bytes, other: bytes) -> tuple[bytes, str]:
    if not data or not other:
        return data + other, "splice(concat)"
    a, b = rng.randrange(len(data)), rng.randrange(len(other))
    if rng.random() < 0.5:
        return data[:a] + other[b:], f"splice(head {a} + other tail {b})"
    n = rng.randrange(1, min(len(other) - b, 65536) + 1)
    return data[:a] + other[b : b + n] + data[a:], f"splice(insert {n} at {a})"


def repeat_chunk(rng: random.Random, data: bytes, _: bytes) -> tuple[bytes, str]:
    if not data:
        return data, "repeat(noop)"
    a = rng.randrange(len(data))
    n = rng.randrange(1, min(len(data) - a, 4096) + 1)
    times = rng.choice([2, 3, 10, 100, 1000])
    times = max(2, min(times, (4 << 20) // n))  # keep inputs under a few MB
    return data[:a] + data[a : a + n] * times + data[a + n :], f"repeat({n} x{times} at {a})"


def delete_chunk(rng: random.Random, data: bytes, _: bytes) -> tuple[bytes, str]:
    if len(data) < 2:
        return data, "delete(noop)"
    a = rng.randrange(len(data))
    n = rng.randrange(1, min(len(data) - a, 8192) + 1)
    return data[:a] + data[a + n :], f"delete({n} at {a})"


def insert_token(rng: random.Random, data: bytes, _: bytes, tokens: list[bytes] | None = None) -> tuple[bytes, str]:
    tokens = tokens or (PDF_TOKENS if data.startswith(b"%PDF") else TEXT_TOKENS)
    token = rng.choice(tokens)
    n = rng.choice([1, 1, 1, 5, 50])
    out = data
    for _i in range(n):
        a = rng.randrange(len(out) + 1)
        out = out[:a] + token + out[a:]
    return out, f"token({token[:24]!r} x{n})"


def nest_deep(rng: random.Random, data: bytes, _: bytes) -> tuple[bytes, str]:
    depth = rng.choice([100, 1000, 20000, 200000])
    if data.startswith(b"%PDF"):
        opener, closer = (b"[", b"]") if rng.random() < 0.5 else (b"<</A ", b">>")
    elif data[:2] == b"PK":
        opener, closer = b"<w:p>", b"</w:p>"
    else:
        opener, closer = (b"<div>", b"</div>") if rng.random() < 0.5 else (b"> ", b"")
    a = rng.randrange(len(data) + 1) if data else 0
    return data[:a] + opener * depth + closer * depth + data[a:], f"nest({opener!r} x{depth})"


BYTE_MUTATORS = [
    flip_bytes,
    flip_bytes,
    truncate,
    splice,
    repeat_chunk,
    delete_chunk,
    insert_token,
    insert_token,
    nest_deep,
]


def mutate_zip(rng: random.Random, data: bytes, other: bytes) -> tuple[bytes, str]:
    """Rewrite a DOCX with one member changed (or dropped, duplicated, added); falls back to bytes."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [(info, zf.read(info)) for info in zf.infolist()]
    except Exception:
        fn = rng.choice(BYTE_MUTATORS)
        out, what = fn(rng, data, other)
        return out, f"zip-unreadable:{what}"
    if not members:
        return data, "zip(empty)"
    xml = [i for i, (info, _) in enumerate(members) if info.filename.endswith((".xml", ".rels"))]
    doc = [i for i, (info, _) in enumerate(members) if info.filename == "word/document.xml"]
    pick = rng.choice(doc + doc + xml) if (doc or xml) else rng.randrange(len(members))
    info, body = members[pick]
    op = rng.choice(
        [
            "flip",
            "truncate",
            "token",
            "nest",
            "repeat",
            "delete",
            "drop",
            "dup",
            "bomb",
            "rename",
            "stored-size",
            "swap",
        ]
    )
    what = f"zip:{op}:{info.filename}"
    if op == "flip":
        body, w = flip_bytes(rng, body, b"")
        members[pick] = (info, body)
        what += f":{w}"
    elif op == "truncate":
        body, w = truncate(rng, body, b"")
        members[pick] = (info, body)
        what += f":{w}"
    elif op == "token":
        body, w = insert_token(rng, body, b"", XML_TOKENS)
        members[pick] = (info, body)
        what += f":{w}"
    elif op == "nest":
        depth = rng.choice([100, 5000, 100000])
        a = body.find(b"<w:body>")
        a = a + len(b"<w:body>") if a >= 0 else rng.randrange(len(body) + 1)
        nest = rng.choice(
            [
                (b"<w:tbl><w:tr><w:tc>", b"</w:tc></w:tr></w:tbl>"),
                (b"<w:sdt><w:sdtContent>", b"</w:sdtContent></w:sdt>"),
                (b"<w:p><w:r>", b"</w:r></w:p>"),
            ]
        )
        members[pick] = (
            info,
            body[:a] + nest[0] * depth + b"<w:p><w:r><w:t>deep</w:t></w:r></w:p>" + nest[1] * depth + body[a:],
        )
        what += f":x{depth}"
    elif op == "repeat":
        body, w = repeat_chunk(rng, body, b"")
        members[pick] = (info, body)
        what += f":{w}"
    elif op == "delete":
        body, w = delete_chunk(rng, body, b"")
        members[pick] = (info, body)
        what += f":{w}"
    elif op == "drop":
        del members[pick]
    elif op == "dup":
        members.insert(pick, (info, body))
    elif op == "bomb":
        size = rng.choice([1 << 20, 64 << 20, 300 << 20])
        members[pick] = (info, body + b" " * size)
        what += f":+{size}"
    elif op == "rename":
        new = zipfile.ZipInfo(
            rng.choice(
                [
                    "word/document2.xml",
                    "../evil.xml",
                    "/abs.xml",
                    "word\\document.xml",
                    "word/document.xml\x00x",
                    info.filename.upper(),
                ]
            )
        )
        new.compress_type = zipfile.ZIP_DEFLATED
        members[pick] = (new, body)
        what += f"->{new.filename!r}"
    elif op == "swap" and other:
        members[pick] = (info, other[: rng.randrange(1, min(len(other), 65536) + 1)])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zw:
        for i, (inf, b) in enumerate(members):
            zi = zipfile.ZipInfo(inf.filename, date_time=inf.date_time)
            zi.compress_type = zipfile.ZIP_DEFLATED if (inf.compress_type or op == "bomb") else zipfile.ZIP_STORED
            zw.writestr(zi, b)
    result = out.getvalue()
    if op == "stored-size":
        # Lie in the central directory about a member's uncompressed size (a bomb that under-declares).
        cd = result.rfind(b"PK\x01\x02")
        if cd >= 0:
            fake = rng.choice([0, 1, 0xFFFFFFFF, rng.randrange(1 << 32)])
            result = result[: cd + 24] + fake.to_bytes(4, "little") + result[cd + 28 :]
            what += f":size={fake}"
    return result, what


def mutate(rng: random.Random, data: bytes, other: bytes, kind: str) -> tuple[bytes, list[str]]:
    original = data
    steps: list[str] = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if kind == "docx" and data[:2] == b"PK" and rng.random() < 0.7:
            data, what = mutate_zip(rng, data, other)
        else:
            data, what = rng.choice(BYTE_MUTATORS)(rng, data, other)
        steps.append(what)
        if len(data) > 48 << 20:
            data = data[: 48 << 20]
            steps.append("cap(48MB)")
    # Mostly keep the file's signature: a broken one is refused before parsing (mislabelled), which
    # tests the sniffing but not the parsers.
    head = original[:8]
    if kind != "docx" and not data.startswith(head) and rng.random() < 0.8:
        data = head + data[len(head) :] if len(data) >= len(head) else head
        steps.append("keep-signature")
    return data, steps


# --- the loop ----------------------------------------------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.executions = 0
        self.outcomes: collections.Counter[tuple[str, str]] = collections.Counter()  # (kind, outcome)
        self.findings: collections.Counter[str] = collections.Counter()
        self.notable = 0
        self.slowest = (0.0, "")
        self.busy_s = 0.0


def leftovers(scratch: Path, me) -> list[str]:
    import psutil

    found = [f"child pid {p.pid} {p.name()}" for p in me.children(recursive=True)]
    # A grandchild that left our process tree still has its cwd in the private scratch root.
    for proc in psutil.process_iter(["pid", "cwd"]):
        cwd = proc.info.get("cwd") or ""
        if cwd.startswith(str(scratch)) and proc.pid != me.pid:
            found.append(f"orphan pid {proc.pid} cwd {cwd}")
    found += [f"scratch {p.name}" for p in scratch.iterdir()]
    return found


def check_document(doc) -> str | None:
    if not doc.segments:
        return "no segments"
    for s in doc.segments:
        if not s.text.strip():
            return "an empty segment"
        if s.page is not None and (doc.page_count is None or not 1 <= s.page <= doc.page_count):
            return f"segment page {s.page} outside 1..{doc.page_count}"
    return None


def save(kind: str, n: int, ext: str, data: bytes, note: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{kind}-{n}{ext}"
    path.write_bytes(data)
    path.with_suffix(path.suffix + ".json").write_text(json.dumps(note, indent=1, default=str), encoding="utf-8")
    return path


def run_one(path: Path, name: str, limits, margin: float) -> tuple[str, object, float, str]:
    """(outcome, document-or-exception, seconds, traceback); the call runs in a thread so a hang in
    the parent itself is seen too."""
    from core.condenser.documents import DocumentError, extract_document

    box: dict = {}

    def call() -> None:
        try:
            box["doc"] = extract_document(path, name, limits)
        except DocumentError as exc:
            box["error"] = exc
        except BaseException as exc:  # noqa: BLE001 - exactly what we are looking for
            box["escaped"] = exc
            box["tb"] = traceback.format_exc()

    started = time.monotonic()
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(limits.timeout_s + margin + 30)
    took = time.monotonic() - started
    if thread.is_alive():
        return "parent-hang", None, took, ""
    if "escaped" in box:
        return "escaped", box["escaped"], took, box["tb"]
    if "error" in box:
        return box["error"].code, box["error"], took, ""
    return "extracted", box["doc"], took, ""


def summary(stats: Stats, started: float, seed: int) -> str:
    elapsed = time.monotonic() - started
    lines = [
        f"--- fuzz_documents: seed {seed}, {elapsed / 60:.1f} min, {stats.executions} executions, "
        f"{stats.executions / max(elapsed, 1e-9):.2f} exec/s (parse time {stats.busy_s:.0f} s), "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    ]
    kinds = sorted({k for k, _ in stats.outcomes})
    outcomes = sorted({o for _, o in stats.outcomes}, key=lambda o: (o != "extracted", o))
    width = max([len(o) for o in outcomes] + [10])
    lines.append(f"{'outcome':<{width}} " + " ".join(f"{k:>8}" for k in kinds) + f" {'total':>8}")
    for o in outcomes:
        row = [stats.outcomes[(k, o)] for k in kinds]
        lines.append(f"{o:<{width}} " + " ".join(f"{n:>8}" for n in row) + f" {sum(row):>8}")
    lines.append(
        f"findings: {dict(stats.findings) or 'none'}; notable inputs kept (crash, memory, timeout): {stats.notable}; "
        f"slowest call {stats.slowest[0]:.1f} s ({stats.slowest[1]})"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=20.0, help="the worker's time limit (s)")
    parser.add_argument("--memory-mb", type=int, default=1024, help="the worker's memory limit")
    parser.add_argument("--margin", type=float, default=10.0, help="seconds over the limit that count as a hang")
    parser.add_argument("--report-every", type=float, default=300.0, help="seconds between summary tables")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--replay", type=Path, nargs="*", help="run these saved inputs once each and exit")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", "Duplicate name", UserWarning)  # the zip mutator duplicates members on purpose

    import psutil

    from core.condenser.documents import EXTENSIONS, ExtractionLimits

    limits = ExtractionLimits(timeout_s=args.timeout, memory_mb=args.memory_mb)
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-documents-"))
    inputs_dir = Path(tempfile.mkdtemp(prefix="fuzz-inputs-"))
    tempfile.tempdir = str(scratch)  # the worker's scratch folders land here, where we can see leftovers
    me = psutil.Process()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}; limits: {args.timeout:g} s, {args.memory_mb} MB",
        flush=True,
    )
    try:
        if args.replay:
            for path in args.replay:
                outcome, result, took, tb = run_one(path, "fuzz" + path.suffix.lower(), limits, args.margin)
                print(f"{path}: {outcome} in {took:.1f} s: {result!r}\n{tb}")
            return 0
        files = sorted(p for p in args.corpus.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
        blobs = {p: p.read_bytes() for p in files}
        # Small files run faster and their structure is denser, but the big good files hold the parser
        # paths worth mutating: a mild preference for small ones.
        weights = [1 / max(len(blobs[p]), 20000) ** 0.3 for p in files]
        rng = random.Random(args.seed)
        stats = Stats()
        started = last_report = time.monotonic()
        end = started + args.minutes * 60
        while time.monotonic() < end:
            source = rng.choices(files, weights)[0]
            other = blobs[rng.choice(files)]
            kind = EXTENSIONS[source.suffix.lower()]
            data, steps = mutate(rng, blobs[source], other, kind)
            name = f"fuzz{source.suffix.lower()}"
            path = inputs_dir / name
            path.write_bytes(data)
            outcome, result, took, tb = run_one(path, name, limits, args.margin)
            stats.executions += 1
            stats.busy_s += took
            stats.outcomes[(kind, outcome)] += 1
            if took > stats.slowest[0]:
                stats.slowest = (took, f"{source.name} {' + '.join(steps)} -> {outcome}")
            note = {
                "source": source.name,
                "mutations": steps,
                "outcome": outcome,
                "seconds": round(took, 2),
                "execution": stats.executions,
                "seed": args.seed,
            }
            problems: list[tuple[str, str]] = []
            if outcome in ("escaped", "parent-hang"):
                problems.append((outcome, f"{result!r}"))
            if took > args.timeout + args.margin:
                problems.append(("hang", f"{took:.1f} s > {args.timeout:g} s + {args.margin:g} s"))
            if outcome == "extracted" and (bad := check_document(result)):
                problems.append(("bad-doc", bad))
            left = leftovers(scratch, me)
            if left:
                problems.append(("leftover", "; ".join(left)))
                for p in me.children(recursive=True):
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
                for p in scratch.iterdir():
                    shutil.rmtree(p, ignore_errors=True)
            for what, why in problems:
                stats.findings[what] += 1
                saved = save(
                    what,
                    stats.findings[what],
                    source.suffix.lower(),
                    data,
                    {**note, "finding": what, "why": why, "traceback": tb, "detail": getattr(result, "detail", None)},
                )
                print(f"FINDING {what}: {why} ({source.name} {' + '.join(steps)}) -> {saved}", flush=True)
            if not problems and outcome in ("parser_crashed", "parser_out_of_memory", "parser_timeout"):
                stats.notable += 1
                save(
                    f"notable-{outcome}",
                    stats.notable,
                    source.suffix.lower(),
                    data,
                    {**note, "detail": getattr(result, "detail", None)},
                )
            if time.monotonic() - last_report >= args.report_every:
                print(summary(stats, started, args.seed), flush=True)
                last_report = time.monotonic()
        print(summary(stats, started, args.seed), flush=True)
        return 1 if stats.findings else 0
    finally:
        shutil.rmtree(inputs_dir, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
