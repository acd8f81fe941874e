"""The load scenario, short: bench/load_bench.py --ci (10 API users for ~30 s mixing chat, writer,
condenser uploads and GAN images against a real app process and a streaming fake model server). No
5xx, no failure other than a clear "busy" answer, and every kind of request succeeded at least once."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.paths import ROOT


@pytest.mark.slow
def test_short_mixed_load_has_no_5xx_and_no_errors(tmp_path):
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load_bench.py"), "--ci", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    report = proc.stdout[-4000:]
    assert res["app_alive"], report
    assert res["http_5xx"] == 0, report
    assert res["errors"] == 0, report
    for kind, k in res["kinds"].items():
        assert k["ok"] >= 1, f"no {kind} request succeeded\n{report}"
    assert res["kinds"]["chat"]["ttft_p50"] is not None, report  # the chat stream really streamed
