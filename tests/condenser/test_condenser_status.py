"""The condense tab's words for a run and its kept upload (ui/condenser_status.py): the time left says
"estimating" until there is a number, an upload stays the caller's for another run until it expires, then the
message says to upload it again; someone else's file or a server path gets the same message and is never opened."""

from __future__ import annotations

import time

import gradio as gr
import pytest

from core.condenser.request import CondenseUpdate
from core.security.uploads import UploadRegistry
from ui.condenser_status import clock, kept_upload, running_status, time_left


def test_the_time_left_is_a_number_only_once_there_is_one():
    assert time_left(None) == "estimating time left…"
    assert time_left(2) == "almost done"
    assert time_left(23) == "about 25 s left"
    assert time_left(61) == "about 2 min left"
    assert clock(7) == "0:07" and clock(750) == "12:30" and clock(3723) == "1:02:03"
    line = running_status(CondenseUpdate("Summarising chunk 3 of 6 (pp. 5-7)…", 0.4, elapsed_s=72, eta_s=130))
    assert "**Summarising chunk 3 of 6 (pp. 5-7)…**" in line and "40% · 1:12 elapsed · about 3 min left" in line


def test_an_upload_stays_the_callers_for_another_run_until_it_expires(tmp_path):
    root = tmp_path / "uploads"
    (root / "abc").mkdir(parents=True)
    doc = root / "abc" / "report.pdf"
    doc.write_bytes(b"%PDF-1.4 test")
    uploads = UploadRegistry(root, max_bytes=1 << 20, ttl_s=0.5)
    uploads.record("alice", [str(doc)])
    for _ in range(2):  # the same upload twice: kept, not used up by the first run
        f = kept_upload(uploads, "alice", str(doc), "pw", ttl_h=0.5 / 3600)
        assert f.path == str(doc.resolve()) and f.name == "report.pdf" and not f.disposable and f.password == "pw"
    with pytest.raises(gr.Error, match="no longer uploaded") as refused:
        kept_upload(uploads, "bob", str(doc), "", ttl_h=1)  # someone else's: the same words, nothing revealed
    assert "upload it again" in str(refused.value.message)
    with pytest.raises(gr.Error, match="no longer uploaded"):
        kept_upload(uploads, "alice", "/etc/passwd", "", ttl_h=1)
    time.sleep(0.6)
    with pytest.raises(gr.Error, match="no longer uploaded"):
        kept_upload(uploads, "alice", str(doc), "", ttl_h=1)
