"""What a condense run tells while it works and what its result says about the file: the elapsed time and an
estimate of the time left (none before a request has finished), the notes of every chunk as it finishes, the
heading naming the file and its pages, and an encrypted PDF read with its password (never kept or logged)."""

from __future__ import annotations

import io
import json
import logging
import shutil
import time
from pathlib import Path

import pytest

from config import Settings
from core.condenser.documents import EncryptedDocument
from core.condenser.estimate import Estimate
from core.condenser.report import DocumentReport, heading, warning_lines
from core.condenser.service import CondenseOptions, CondenseService, InputFile
from core.condenser.store import SummaryStore
from core.models.text import ModelManager
from tests.support.openai_servers import fake_openai_server
from tests.support.paths import CORPUS

PDF = "good-paper-tracemonkey-2col.pdf"  # 14 pages: several chunks with a small context
PASSWORD = "s3cret-Pässword"


def make_service(tmp_path: Path, base_url: str) -> CondenseService:
    settings = Settings(
        text_models=("openai:fake-model",),
        data_dir=tmp_path,
        openai_base_url=base_url,
        request_timeout=10.0,
        max_retries=1,
    )
    return CondenseService(settings, ModelManager(settings), SummaryStore(settings.db_path))


def copy_of(tmp_path: Path, name: str, data: bytes | None = None) -> Path:
    folder = tmp_path / f"upload-{time.monotonic_ns()}"
    folder.mkdir()
    target = folder / name
    if data is None:
        shutil.copy(CORPUS / name, target)
    else:
        target.write_bytes(data)
    return target


def encrypted_pdf() -> bytes:
    """A two-page form encrypted with a user password (AES-256), as a user's protected PDF would be."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(CORPUS / "good-form-irs-1040-2010.pdf"))
    writer.encrypt(PASSWORD, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_the_estimate_waits_for_a_finished_request_then_follows_the_pace():
    now = [100.0]
    eta = Estimate(clock=lambda: now[0])
    eta.started(0)
    now[0] += 5
    assert eta.left() is None  # nothing has finished: no number yet ("estimating…")
    eta.finished(0)
    eta.map_progress(chunks_left=3, later_requests=1)
    assert eta.left() == pytest.approx(3 * 5 + 5)  # three chunks at 5 s each, then one 5 s final request
    now[0] += 4
    assert eta.left() == pytest.approx(16)  # the estimate counts down between updates
    now[0] += 100
    assert eta.left() == 0.0  # overdue: never negative


def test_a_run_shows_elapsed_time_the_time_left_and_each_chunks_notes_as_it_finishes(tmp_path):
    with fake_openai_server(reply_words=60, chunk_delay=0.004, max_model_len=1024) as fake:
        service = make_service(tmp_path, fake.base_url)
        f = InputFile(str(copy_of(tmp_path, PDF)), PDF, disposable=True)
        updates = []
        stamps = []
        for upd in service.condense("ann", [f], "", CondenseOptions(parallel=1), tick_s=0.05):
            updates.append(upd)
            stamps.append(time.monotonic())
    end = stamps[-1]
    assert updates[-1].state == "complete"
    summarised = [i for i, u in enumerate(updates) if "summarised" in u.status]
    total = int(updates[summarised[0]].status.split(" of ")[1].split()[0])
    assert total >= 4, updates[summarised[0]].status  # several chunks, or nothing here is tested
    first = summarised[0]
    assert all(u.eta_s is None for u in updates[:first])  # "estimating" until the first chunk is done
    assert all(u.eta_s is not None for u in updates[first:])
    elapsed = [u.elapsed_s for u in updates]
    assert elapsed == sorted(elapsed) and elapsed[-1] > 0
    # the notes of each chunk arrive while the run goes on: one chunk's notes before the second chunk is done
    assert "**chunk " in updates[first].notes and updates[first].result is None
    assert updates[first].notes.count("**chunk ") < updates[summarised[-1]].notes.count("**chunk ")
    # halfway through, the estimate is the right size (the notes still to combine counted): within a factor of two
    half = next(i for i in summarised if int(updates[i].status.split()[0]) >= total // 2)
    actual = end - stamps[half]
    assert actual / 2 <= updates[half].eta_s <= actual * 2, (updates[half].eta_s, actual)


def test_the_summary_heading_names_the_file_and_its_pages_and_warnings_say_so_in_words(tmp_path):
    with fake_openai_server(reply_words=60) as fake:
        service = make_service(tmp_path, fake.base_url)
        name = "good-form-irs-1040-2010.pdf"
        f = InputFile(str(copy_of(tmp_path, name)), name, disposable=True)
        result = list(service.condense("ann", [f], "", CondenseOptions()))[-1].result
    assert result is not None and result.markdown.startswith(f"### {name} · 2 pages\n")
    report = DocumentReport("notes.txt", "txt", None, 0, [], 3, 1, 0, True, 0, False, ["Some text was garbled."])
    assert heading(report) == "### notes.txt"
    assert warning_lines(report) == ["> **Warning:** Some text was garbled."]


def test_an_encrypted_pdf_is_read_with_its_password_which_is_never_logged_or_kept(tmp_path, caplog):
    data = encrypted_pdf()
    with fake_openai_server(reply_words=60) as fake:
        service = make_service(tmp_path, fake.base_url)

        def attempt(password: str):
            f = InputFile(str(copy_of(tmp_path, "protected.pdf", data)), "protected.pdf", password=password)
            return list(service.condense("ann", [f], "", CondenseOptions()))

        with pytest.raises(EncryptedDocument) as missing:
            attempt("")
        assert missing.value.opens_with_password and not missing.value.wrong_password
        with pytest.raises(EncryptedDocument, match="Wrong password") as wrong:
            attempt("not-it")
        assert wrong.value.wrong_password
        with caplog.at_level(logging.DEBUG):
            done = attempt(PASSWORD)[-1]
    assert done.result is not None and "2 of 2 pages read" in done.result.coverage
    assert PASSWORD not in repr(InputFile("p", "n", password=PASSWORD))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged and PASSWORD not in logged
    kept = service.summary("ann", done.result.summary_id)
    stored = json.dumps([kept.markdown, kept.settings, kept.sources, kept.coverage])
    assert PASSWORD not in stored
    db = service.settings.db_path
    for path in db.parent.glob(db.name + "*"):  # the database and its journal
        assert PASSWORD.encode() not in path.read_bytes(), path
