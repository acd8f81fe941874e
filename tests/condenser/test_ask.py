"""Asking the documents of a summary (or files sent with the question), against a real OpenAI-compatible server on
loopback whose reply is set per test, a real SQLite file and real corpus documents: an answer whose quote is in the
document cites the right page or section with that passage; a made-up answer, a refusal, and a question the
documents do not touch are all "The documents do not answer this" (the last without asking the model); another
user's summary is not found; bad questions are clear errors; the kept passages count toward the quota and go with
their summary and with retention."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from config import Settings
from core.condenser.ask import MAX_QUESTION_CHARS, NOT_ANSWERED, AskService, check_question, verify
from core.condenser.cite import Catalog
from core.condenser.documents import extract_document
from core.condenser.passages import PassagesNotKept, PassageStore, documents_of, split_passages
from core.condenser.service import CondenseOptions, CondenseService, InputFile
from core.condenser.store import SummaryNotFound, SummaryStore
from core.errors import InputError, QuotaExceededError
from core.models.text import ModelManager
from core.quota import Retention, StorageQuota
from tests.support.openai_servers import fake_openai_server
from tests.support.paths import CORPUS

ESSAY = "good-essay-assignment-headings.docx"
FORM = "good-form-irs-1040-2010.pdf"
GOOD_REPLY = (
    "The essay has to be at least 1200 words long.\n"
    "QUOTE: The essay should be at least 1200 words with fully-developed ideas and details."
)
MADE_UP = "The introduction must be 5000 words.\nQUOTE: The introduction must be 5000 words."


def services(tmp_path: Path, base_url: str) -> tuple[CondenseService, AskService]:
    settings = Settings(
        text_models=("openai:fake-model",),
        data_dir=tmp_path,
        openai_base_url=base_url,
        request_timeout=10.0,
        max_retries=1,
    )
    passages = PassageStore(settings.db_path)
    condense = CondenseService(settings, ModelManager(settings), SummaryStore(settings.db_path), passages=passages)
    return condense, AskService(condense, passages)


def upload(tmp_path: Path, name: str) -> InputFile:
    folder = tmp_path / f"upload-{time.monotonic_ns()}"
    folder.mkdir()
    shutil.copy(CORPUS / name, folder / name)
    return InputFile(str(folder / name), name, disposable=True)


def condensed(condense: CondenseService, tmp_path: Path, user: str = "alice") -> str:
    updates = list(condense.condense(user, [upload(tmp_path, ESSAY)], "", CondenseOptions(length="tldr")))
    assert updates[-1].result is not None and updates[-1].result.summary_id
    return updates[-1].result.summary_id


def answer_of(asker: AskService, user: str, question: str, **kw):
    updates = list(asker.ask(user, question, **kw))
    assert updates[-1].answer is not None
    return updates[-1].answer


def essay_text() -> str:
    doc = extract_document(str(CORPUS / ESSAY), ESSAY)
    return " ".join(doc.full_text.split())


def test_an_answer_quoted_from_the_document_cites_its_section_with_the_passage(tmp_path):
    with fake_openai_server(reply_text=GOOD_REPLY) as fake:
        condense, asker = services(tmp_path, fake.base_url)
        sid = condensed(condense, tmp_path)
        before = len(fake.chat_requests)
        answer = answer_of(asker, "alice", "How long does the essay have to be?", summary_id=sid)
        prompt = fake.chat_requests[-1].body["messages"][-1]["content"]
    assert len(fake.chat_requests) == before + 1
    assert "How long does the essay have to be?" in prompt and "1200 words" in prompt  # the passage was shown
    assert answer.answered and "1200" in answer.text
    [citation] = answer.citations
    assert citation.cite == "[§ Basics]"  # the section that holds the sentence, named as a summary names it
    assert "at least 1200 words" in citation.quote
    assert citation.quote.rstrip("…") in essay_text()  # the quoted passage is the document's own words
    assert "[§ Basics]" in answer.markdown() and "1200 words" in answer.markdown()


def test_a_made_up_answer_is_not_passed_off_as_the_documents(tmp_path):
    with fake_openai_server(reply_text=MADE_UP) as fake:
        condense, asker = services(tmp_path, fake.base_url)
        sid = condensed(condense, tmp_path)
        before = len(fake.chat_requests)
        answer = answer_of(asker, "alice", "How long should the introduction be?", summary_id=sid)
    assert len(fake.chat_requests) == before + 1  # the model was asked: the citation check refused its answer
    assert not answer.answered and answer.text == NOT_ANSWERED and not answer.citations
    assert "could not be found" in answer.reason
    assert NOT_ANSWERED in answer.markdown() and "5000" not in answer.markdown()


def test_the_model_saying_the_passages_do_not_answer_is_not_answered(tmp_path):
    with fake_openai_server(reply_text="NOT IN THE DOCUMENTS") as fake:
        condense, asker = services(tmp_path, fake.base_url)
        sid = condensed(condense, tmp_path)
        answer = answer_of(asker, "alice", "Who grades the essay memo?", summary_id=sid)
    assert not answer.answered and answer.text == NOT_ANSWERED


def test_a_question_the_documents_do_not_touch_is_not_answered_without_asking_the_model(tmp_path):
    with fake_openai_server(reply_text=GOOD_REPLY) as fake:
        condense, asker = services(tmp_path, fake.base_url)
        sid = condensed(condense, tmp_path)
        before = len(fake.chat_requests)
        answer = answer_of(asker, "alice", "What is the boiling point of mercury at sea level?", summary_id=sid)
        assert len(fake.chat_requests) == before  # the model would have answered: the retrieval gate decided
    assert not answer.answered and answer.text == NOT_ANSWERED


def test_files_sent_with_the_question_are_read_cited_by_page_and_deleted(tmp_path):
    reply = "Each exemption counts $3,650.\nQUOTE: Multiply $3,650 by the number on line 6d"
    with fake_openai_server(reply_text=reply) as fake:
        _, asker = services(tmp_path, fake.base_url)
        f = upload(tmp_path, FORM)
        answer = answer_of(asker, "bob", "What amount is multiplied by the number of exemptions?", files=[f])
    assert not Path(f.path).exists()  # the disposable upload is gone once read
    assert answer.answered and [c.cite for c in answer.citations] == ["[p. 2]"]
    assert "$3,650" in answer.citations[0].quote


def test_another_users_summary_is_not_found_and_bad_questions_are_clear_errors(tmp_path):
    with fake_openai_server(reply_text=GOOD_REPLY) as fake:
        condense, asker = services(tmp_path, fake.base_url)
        sid = condensed(condense, tmp_path, user="alice")
        before = len(fake.chat_requests)
        with pytest.raises(SummaryNotFound):
            list(asker.ask("mallory", "How long is the essay?", summary_id=sid))
        with pytest.raises(InputError, match="at most 1,000"):
            list(asker.ask("alice", "x" * 10_000, summary_id=sid))
        for empty in ("", "   \n ", None):
            with pytest.raises(InputError, match="Type a question"):
                list(asker.ask("alice", empty, summary_id=sid))
        with pytest.raises(InputError, match="control characters"):
            list(asker.ask("alice", "How long\x00 is the essay?", summary_id=sid))
        with pytest.raises(InputError, match="Condense a document first"):
            list(asker.ask("alice", "How long is the essay?"))
        with pytest.raises(InputError, match="Unknown model"):
            list(asker.ask("alice", "How long is the essay?", summary_id=sid, model="openai:other"))
        with pytest.raises(SummaryNotFound):
            list(asker.ask("alice", "How long is the essay?", summary_id="../" + sid))
        assert len(fake.chat_requests) == before  # none of them reached the model
    assert check_question("  How  long\tis it? ") == "How long is it?"
    assert len("x" * MAX_QUESTION_CHARS) == MAX_QUESTION_CHARS and check_question("x" * MAX_QUESTION_CHARS)


def test_kept_passages_count_toward_the_quota_and_go_with_their_summary_and_retention(tmp_path):
    with fake_openai_server(reply_words=40) as fake:
        condense, asker = services(tmp_path, fake.base_url)
        passages = asker.passages
        sid = condensed(condense, tmp_path, user="carol")
        infos, kept = passages.load("carol", sid)
        assert [i.name for i in infos] == [ESSAY] and kept
        used = passages.bytes_used("carol")
        assert used > sum(len(p.text) for p in kept)  # the passages' text at least
        with pytest.raises(PassagesNotKept):
            passages.load("mallory", sid)
        condense.store.delete("carol", sid)  # deleting the summary takes its passages (trigger)
        with pytest.raises(PassagesNotKept):
            passages.load("carol", sid)
        assert passages.bytes_used("carol") == 0

        sid2 = condensed(condense, tmp_path, user="carol")
        assert passages.bytes_used("carol") > 0
        Retention([condense.store, passages], days=1).sweep(now=time.time() + 2 * 86400)
        assert passages.bytes_used("carol") == 0
        with pytest.raises(SummaryNotFound):
            condense.summary("carol", sid2)

        # under a quota too small for the passages: the summary is kept, its documents are not, and it says so
        quota = StorageQuota(0)
        quota.attach(condense.store, passages)
        sid3 = condensed(condense, tmp_path, user="dave")
        quota.limit_bytes = condense.store.bytes_used("dave") + 10
        doc = extract_document(str(CORPUS / ESSAY), ESSAY)
        with pytest.raises(QuotaExceededError):
            passages.save("dave", sid3, [doc])


def test_passages_keep_every_word_and_their_place():
    doc = extract_document(str(CORPUS / FORM), FORM)
    passages = split_passages([doc])
    for page in (1, 2):
        original = [s for s in doc.segments if s.page == page]
        assert (
            " ".join(p.text for p in passages if p.page == page).split() == " ".join(s.text for s in original).split()
        )
    rebuilt = documents_of([type("I", (), {"name": FORM, "kind": "pdf"})()], passages)  # type: ignore[list-item]
    assert rebuilt[0].locators() == doc.locators()


def test_the_check_takes_a_quote_with_a_slip_and_refuses_one_from_elsewhere():
    doc = extract_document(str(CORPUS / ESSAY), ESSAY)
    passages = split_passages([doc])
    infos = [type("I", (), {"name": ESSAY, "kind": "docx"})()]
    catalog = Catalog(documents_of(infos, passages))  # type: ignore[arg-type]
    from core.condenser.ask import _source

    shown = passages[:6]
    sources = [_source(infos, p) for p in shown]  # type: ignore[arg-type]
    slipped = (
        "It is 1200 words.\nQUOTE: “The essay should be at least 1200 words with fully developed ideas and details”"
    )
    ok = verify("How long is the essay?", slipped, shown, sources, catalog, False, infos)  # type: ignore[arg-type]
    assert ok.answered and ok.citations[0].cite == "[§ Basics]"
    elsewhere = "It is short.\nQUOTE: Alice was beginning to get very tired of sitting by her sister on the bank"
    refused = verify("How long is the essay?", elsewhere, shown, sources, catalog, False, infos)  # type: ignore[arg-type]
    assert not refused.answered
