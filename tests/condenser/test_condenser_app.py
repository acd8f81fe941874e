"""The /condense endpoint through gradio_client against the real app: a file sent with handle_file is
condensed with citations and coverage, every other parameter is optional, every bad corpus file gives
its own message, nothing is left in Gradio's upload folder, and the app keeps serving."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from config import Settings
from tests.support.apps import running_app
from tests.support.openai_servers import fake_openai_server
from tests.support.paths import CORPUS

MANIFEST = {e["file"]: e for e in json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))}
BAD_MESSAGES = {
    "bad-encrypted-user-password.pdf": "password-protected",
    "bad-truncated-federal-register.pdf": "damaged or incomplete",
    "bad-broken-xref.pdf": "damaged or incomplete",
    "bad-circular-pages-tree.pdf": "damaged or incomplete",
    "bad-fuzz-deeply-nested-array.pdf": "damaged or incomplete",
    "bad-fuzz-poppler-395.pdf": "damaged or incomplete",
    "bad-empty-zero-bytes.pdf": "is empty (0 bytes)",
    "bad-html-page-named-pdf.pdf": "is named .pdf but is actually",
    "bad-png-image-named-pdf.pdf": "is named .pdf but is actually",
    "bad-truncated-zip.docx": "damaged or incomplete",
    "bad-encrypted-password.docx": "password-protected",
    "bad-fuzz-clusterfuzz-bad-crc.docx": "damaged or incomplete",
}


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory):
    """Gradio's upload folder for this module's app, so what it holds can be checked."""
    folder = tmp_path_factory.mktemp("gradio-uploads")
    old = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = old


@pytest.fixture(scope="module")
def client(upload_dir, tmp_path_factory):
    with fake_openai_server(reply_words=12) as fake:
        settings = Settings(
            text_models=("openai:fake-model",),
            data_dir=tmp_path_factory.mktemp("data"),
            openai_base_url=fake.base_url,
            request_timeout=10.0,
            max_retries=1,
        )
        with running_app(settings) as (client, _):
            yield client


@pytest.fixture
def nothing_left(client, upload_dir):
    """Each test must leave Gradio's upload folder as it found it (other tabs keep their own
    files there, e.g. images shown on the page)."""
    before = files_in(upload_dir)
    yield
    assert files_in(upload_dir) - before == set(), "an uploaded copy was left behind"


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_condense_a_file_sent_with_handle_file(client, nothing_left):
    from gradio_client import handle_file

    out = client.predict(handle_file(str(CORPUS / "good-form-irs-1040-2010.pdf")), api_name="/condense")
    assert out["status"] == "complete" and out["id"]
    assert out["coverage"].startswith("2 of 2 pages read, nothing truncated")
    assert re.search(r"\[pp?\. [12](-2)?\]", out["summary"]) and "<details>" in out["summary"]


def test_every_other_parameter_is_optional_and_text_works_alone(client, nothing_left):
    out = client.predict(
        None,
        text="The ferry leaves at noon. Tickets cost five euros.",
        length="tldr",
        form="prose",
        focus="When does it leave?",
        audience="tourists",
        language="German",
        api_name="/condense",
    )
    assert out["status"] == "complete" and out["summary"].startswith("### Pasted text\n\ndocument0")
    assert "[line 1]" in out["summary"] and out["coverage"].startswith("1 of 1 section read")


def test_several_files_in_one_call(client, nothing_left):
    from gradio_client import handle_file

    files = [handle_file(str(CORPUS / n)) for n in ("good-french-moliere-utf8.txt", "good-ripgrep-user-guide.md")]
    out = client.predict(files, api_name="/condense")
    assert "### Combined summary" in out["summary"] and "### good-ripgrep-user-guide.md" in out["summary"]
    assert out["coverage"].startswith("2 documents:")


@pytest.mark.parametrize("name", sorted(BAD_MESSAGES))
def test_bad_file_gets_its_own_message_and_leaves_nothing(client, nothing_left, name):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as caught:
        client.predict(handle_file(str(CORPUS / name)), api_name="/condense")
    assert name in str(caught.value) and BAD_MESSAGES[name] in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_the_app_keeps_serving_after_bad_files_and_refuses_server_paths(client, nothing_left):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="file upload"):
        client.predict({"path": str(CORPUS / "good-french-moliere-utf8.txt")}, api_name="/condense")
    with pytest.raises(AppError, match="Upload a document or paste"):
        client.predict(None, api_name="/condense")
    out = client.predict(handle_file(str(CORPUS / "good-essay-assignment-headings.docx")), api_name="/condense")
    assert out["status"] == "complete" and "7 of 7 sections read" in out["coverage"]


def test_cancelling_a_condense_call_stops_the_model_requests(tmp_path):
    """gradio_client's job.cancel() closes the endpoint's generator; the run's requests to the model
    end with it and no new one starts."""
    import time

    from tests.support.apps import running_app

    with fake_openai_server(reply_words=400, chunk_delay=0.05, max_model_len=1024) as slow:
        settings = Settings(
            text_models=("openai:fake-model",),
            data_dir=tmp_path,
            openai_base_url=slow.base_url,
            request_timeout=10.0,
            max_retries=0,
        )
        with running_app(settings) as (client, _):
            from gradio_client import handle_file

            job = client.submit(handle_file(str(CORPUS / "good-ripgrep-user-guide.md")), api_name="/condense")
            deadline = time.monotonic() + 60
            while slow.chunks_sent < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert slow.chunks_sent >= 20, "the model never started"
            job.cancel()
            assert slow.disconnected.wait(15), "the model's streams were not closed"
            time.sleep(1.0)
            sent, requests = slow.chunks_sent, len(slow.chat_requests)
            time.sleep(2.0)
            assert (slow.chunks_sent, len(slow.chat_requests)) == (sent, requests)  # nothing runs on
            assert requests < 12  # far from the whole document
