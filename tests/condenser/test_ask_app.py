"""/ask over HTTP with gradio_client against the real app (a real loopback OpenAI-compatible server answering): the
documents of a summary made by /condense, or a file sent with the question, answered with the cited section or page
and its quoted passage; a summary id that is not the caller's, and bad questions, are clear errors; nothing is left
in Gradio's upload folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config import Settings
from tests.support.apps import running_app
from tests.support.openai_servers import fake_openai_server
from tests.support.paths import CORPUS

REPLY = (
    "The essay has to be at least 1200 words long.\n"
    "QUOTE: The essay should be at least 1200 words with fully-developed ideas and details."
)


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory):
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
    with fake_openai_server(reply_text=REPLY) as fake:
        settings = Settings(
            text_models=("openai:fake-model",),
            data_dir=tmp_path_factory.mktemp("data"),
            openai_base_url=fake.base_url,
            request_timeout=10.0,
            max_retries=1,
        )
        with running_app(settings) as (client, _):
            yield client


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_ask_a_condensed_summary_and_a_file_over_http(client, upload_dir):
    from gradio_client import handle_file

    before = files_in(upload_dir)
    made = client.predict(handle_file(str(CORPUS / "good-essay-assignment-headings.docx")), api_name="/condense")
    assert made["status"] == "complete" and made["id"]

    out = client.predict("How long does the essay have to be?", made["id"], api_name="/ask")
    assert out["status"] == "complete" and out["answered"] is True
    assert [c["cite"] for c in out["citations"]] == ["[§ Basics]"]
    assert "at least 1200 words" in out["citations"][0]["quote"]
    assert "[§ Basics]" in out["markdown"]

    # keyword arguments, question first; a file instead of a summary
    out = client.predict(
        question="What is the boiling point of mercury?",
        file=handle_file(str(CORPUS / "good-essay-assignment-headings.docx")),
        api_name="/ask",
    )
    assert out["answered"] is False and out["answer"] == "The documents do not answer this."
    assert files_in(upload_dir) - before == set(), "an uploaded copy was left behind"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("How long is the essay?", "0123456789abcdef0123456789abcdef"), "no longer exists"),
        (("x" * 10_000, ""), "at most 1,000"),
        (("", ""), "Type a question"),
        (("How long\x00 is it?", ""), "control characters"),
        (("How long is the essay?", ""), "Condense a document first"),
        ((12, ""), "question must be"),
    ],
)
def test_bad_asks_are_clear_errors(client, args, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name="/ask")
