"""A rewrite shown before it is kept (core/writer/review.py): the range picked in the draft, the word-level
difference as inert HTML, splicing an accepted rewrite back in; and variants that wait for a pick."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from core.errors import InputError
from core.writer.review import Proposal, diff_html, proposal_from, span_of, splice
from core.writer.service import WriteOptions
from core.writer.store import DraftStore
from tests.support.openai_servers import fake_openai_server
from tests.writer.test_writer_service import make_service

HOSTILE = '<script>alert(1)</script> <img src=x onerror="alert(2)"> & "quotes"'


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parsed(markup: str) -> _Tags:
    p = _Tags()
    p.feed(markup)
    return p


def test_span_of_reads_a_range_picked_in_the_draft():
    text = "Alpha beta. Gamma delta."
    assert span_of(text, "") is None and span_of(text, "  ") is None
    assert span_of(text, "12:24") == (12, 24)
    assert span_of(text, "5:6") is None  # only a space picked: the whole draft
    for bad in ("3:2", "0:99", "a:b", "-1:3", "1;2", 3, 2.5, ["0:3"], {"start": 0}, "/etc/passwd", "<b>0:3</b>"):
        with pytest.raises(InputError):
            span_of(text, bad)


def test_diff_marks_removed_and_added_words_with_text_for_screen_readers():
    markup = diff_html("The mug keeps coffee hot.", "The bamboo mug keeps tea hot.")
    tags = parsed(markup)
    names = [t for t, _ in tags.tags]
    assert names.count("del") == 1 and names.count("ins") == 2
    text = "".join(tags.text)
    assert "removed: coffee" in text and "added: bamboo" in text and "added: tea" in text
    assert "1 word removed, 2 words added." in text
    # the original side keeps every original word in order, the rewrite side every new one
    sides = re.findall(r'<div class="writer-diff-text">(.*?)</div>', markup)
    strip = lambda s: re.sub(r'<span class="writer-sr">.*?</span>|<[^>]+>', "", s)  # noqa: E731
    assert strip(sides[0]) == "The mug keeps coffee hot." and strip(sides[1]) == "The bamboo mug keeps tea hot."
    assert "No words changed." in diff_html("Same text.", "Same text.")


def test_hostile_model_text_in_the_diff_is_inert():
    for done in (True, False):
        markup = diff_html("A calm sentence.", HOSTILE, done=done)
        tags = parsed(markup)
        assert {t for t, _ in tags.tags} <= {"div", "p", "section", "del", "ins", "span"}
        assert all(not k.startswith("on") and k != "src" for _, attrs in tags.tags for k in attrs)
        assert "<script>alert(1)</script>" in "".join(tags.text)  # shown as text
        assert "&lt;script&gt;" in markup and "<script" not in markup and "<img" not in markup


def test_splice_puts_the_rewrite_where_the_part_is_now():
    text = "Keep this. Change me. Keep that."
    p = proposal_from(text, 11, 21, "Keep this. New words. Keep that.")
    assert p == Proposal(11, 21, "Change me.", "New words.")
    assert splice(text, p) == "Keep this. New words. Keep that."
    assert splice("Added first. " + text, p) == "Added first. Keep this. New words. Keep that."  # moved: found
    with pytest.raises(InputError, match="changed"):
        splice("Keep this. Keep that.", p)
    assert Proposal.from_state(p.as_state()) == p
    for bad in (None, "x", {"start": 0, "end": 5, "original": "ab", "rewritten": "c"}, {"start": "0"}):
        with pytest.raises(InputError):
            Proposal.from_state(bad)


def test_service_proposes_a_rewrite_of_the_picked_span_and_accept_keeps_it(tmp_path):
    with fake_openai_server(reply_text="Brand new middle words.", response_formats=(), response_format_refusal=0) as f:
        service = make_service(tmp_path, f.base_url)
        text = "First sentence stays.\n\nRewrite this middle sentence now.\n\nLast one stays."
        start = text.index("Rewrite")
        end = text.index("now.") + len("now.")
        *_, (update, proposal) = service.propose_rewrite(text, (start, end), "simpler", "", WriteOptions(seed=1))
        assert update.done and proposal.original == "Rewrite this middle sentence now."
        assert proposal.rewritten == "Brand new middle words."
        sent = f.chat_requests[-1].body["messages"][-1]["content"]
        assert "Rewrite this middle sentence now." in sent and "First sentence" not in sent
        draft = service.save_new_draft("ann", text, "blog_post", {"topic": "t"}, WriteOptions())
        accepted = service.accept_rewrite("ann", draft.id, text, proposal.as_state())
        assert accepted == "First sentence stays.\n\nBrand new middle words.\n\nLast one stays."
        assert service.open_draft("ann", draft.id).text == accepted
        with pytest.raises(InputError):
            service.check_rewrite(text, "", "simpler", "", (5, len(text) + 1))


def test_variants_wait_for_a_pick_in_the_store(tmp_path):
    store = DraftStore(tmp_path / "studio.sqlite3")
    draft = store.create("ann", "t", "social_x", {"topic": "t"}, {"variants": 2}, status="streaming")
    store.save_generation("ann", draft.id, variants=["one", "two"], status="complete", follow=False)
    assert store.get("ann", draft.id).text == ""
    assert store.pick("ann", draft.id, 1).text == "two"
