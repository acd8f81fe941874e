"""Draft storage: kept with its brief, scoped to its user, saved while streaming, picked, edited,
marked as cut after a crash; and the tab's brief controls restore every stored field."""

from __future__ import annotations

import pytest

from core.chat.store import ConversationStore
from core.errors import NotFoundError
from core.writer.store import DraftStore
from core.writer.templates import STANDARD_FIELDS, load_library
from ui.writer_form import EXTRA_SLOTS, brief_updates, collect_brief


def test_draft_round_trip_with_brief_and_user_scoping(tmp_path):
    store = DraftStore(tmp_path / "studio.sqlite3")
    brief = {"topic": "Bamboo mug", "keywords": "bamboo, eco", "length": 120, "features": "350 ml\nlid"}
    draft = store.create(
        "ann", "Bamboo mug", "product_description", brief, {"variants": 2, "seed": 5}, status="streaming"
    )
    store.save_generation("ann", draft.id, variants=["first text", "second text"])
    got = store.get("ann", draft.id)
    assert got.brief == brief and got.options == {"variants": 2, "seed": 5}
    assert got.variants == ["first text", "second text"] and got.text == "first text" and got.status == "streaming"
    with pytest.raises(NotFoundError):
        store.get("bob", draft.id)
    with pytest.raises(NotFoundError):
        store.save_text("bob", draft.id, "hijack")
    with pytest.raises(NotFoundError):
        store.delete("bob", draft.id)
    assert store.list("bob") == []

    picked = store.pick("ann", draft.id, 1)
    assert picked.chosen == 1 and picked.text == "second text"
    with pytest.raises(IndexError):
        store.pick("ann", draft.id, 2)
    store.save_text("ann", draft.id, "second text, edited")
    store.save_generation("ann", draft.id, variants=["v1", "v2 final"], status="complete", title="New title")
    got = store.get("ann", draft.id)
    assert got.text == "v2 final" and got.status == "complete" and got.title == "New title"

    other = store.create("ann", "Another", "social_x", {"topic": "Offline mode"}, {})
    assert [d.id for d in store.list("ann")] == [other.id, draft.id]  # newest first
    assert [d.id for d in store.list("ann", "v2 fin")] == [draft.id]
    store.delete("ann", other.id)
    assert [d.id for d in store.list("ann")] == [draft.id]


def test_a_crash_leaves_streaming_drafts_marked_cut(tmp_path):
    path = tmp_path / "studio.sqlite3"
    store = DraftStore(path)
    draft = store.create("ann", "t", "blog_post", {"topic": "t"}, {}, status="streaming")
    store.save_generation("ann", draft.id, variants=["half a sentence"])
    reopened = DraftStore(path)  # a new process
    assert reopened.mark_interrupted() == 1
    got = reopened.get("ann", draft.id)
    assert got.status == "cut" and got.text == "half a sentence" and "interrupted" in got.note


def test_drafts_share_the_app_database_with_conversations(tmp_path):
    path = tmp_path / "studio.sqlite3"
    conversations = ConversationStore(path)
    drafts = DraftStore(path)
    conv = conversations.create_conversation("ann", "chat")
    draft = drafts.create("ann", "draft", "social_x", {"topic": "x"}, {})
    assert conversations.get_conversation("ann", conv.id).title == "chat"
    assert drafts.get("ann", draft.id).title == "draft"


LIBRARY = load_library()


@pytest.mark.parametrize("name", sorted(LIBRARY.templates))
def test_brief_controls_restore_every_stored_field(name):
    """Reopening a draft fills every control: what brief_updates puts in the controls, collected
    back the way the Write button collects it, is the stored brief."""
    template = LIBRARY.templates[name]
    stored = {}
    for f in template.fields:
        stored[f.name] = (
            700
            if f.input == "number"
            else f.choices[-1]
            if f.input == "choice"
            else "kw one, kw two"
            if f.input == "list"
            else f"text for {f.name}"
        )
    updates = brief_updates(template, stored)
    controls = updates[1:]  # [template_info, *standard, *slot_texts, *slot_choices]
    assert len(controls) == len(STANDARD_FIELDS) + 2 * EXTRA_SLOTS
    value = lambda u: u.get("value") if isinstance(u, dict) else u.value  # noqa: E731
    standard = {name_: value(u) for name_, u in zip(STANDARD_FIELDS, controls)}
    texts = [value(u) for u in controls[len(STANDARD_FIELDS) : len(STANDARD_FIELDS) + EXTRA_SLOTS]]
    choices = [value(u) for u in controls[len(STANDARD_FIELDS) + EXTRA_SLOTS :]]
    collected = collect_brief(template, *(standard[n] for n in STANDARD_FIELDS), texts, choices)
    assert collected == stored
    visible = [u.get("visible") for u in controls[: len(STANDARD_FIELDS)]]
    assert visible == [template.field(n) is not None for n in STANDARD_FIELDS]
    assert len(template.extra_fields) <= EXTRA_SLOTS
