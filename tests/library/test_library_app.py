"""The Library tab's handlers in the real app (build_app with real stores in a temporary folder), called as Gradio
calls them: the list (newest first, kind filter, search with the hit marked, the empty state), picking an item (its
details and links), Open in its own tab with every parameter restored (a conversation, a draft, a summary, an image,
audio and a transcript), Rename, Delete, and what a hostile page may send (another user's ids, junk refs)."""

from __future__ import annotations

import html
import json
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from PIL import Image

from app import build_app
from backends.image.base import GeneratedImage
from backends.speech.base import Segment
from config import Settings
from core.library.items import ItemRef
from ui.library_view import MAX_TICKED, parse_ref, picked_refs

ALICE = "A" * 24  # browser ids: what the page's identity holds
BOB = "B" * 24
CAROL = "C" * 24


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data = tmp_path_factory.mktemp("library-app")
    settings = Settings(
        text_models=("openai:fake-model",),
        image_models=("gan:faces",),
        speech_models=("espeak",),
        data_dir=data,
        openai_base_url="http://127.0.0.1:9/v1",
    )
    return build_app(settings)


def request(bid: str = ALICE) -> gr.Request:
    return gr.Request(session_hash=f"s-{bid[:4]}")


def handler(demo, name: str):
    """The Library's event function `name` (its nested function's name) and its dependency."""
    for block_fn in demo.fns.values():
        fn = block_fn.fn
        if fn is not None and fn.__qualname__ in (f"build_library_tab.<locals>.{name}", f"_wire_open.<locals>.{name}"):
            return fn, block_fn
    raise AssertionError(f"no library handler {name}")


def by_id(block_fn, elem_id: str) -> Any:
    found = [c for c in block_fn.outputs if getattr(c, "elem_id", None) == elem_id]
    assert found, f"{elem_id} is not among the outputs"
    return found[0]


def value_of(update: Any) -> Any:
    """What an update sets: a plain value, or the value of a component update / gr.update dict."""
    if isinstance(update, dict):
        return update.get("value")
    if isinstance(update, gr.components.Component):
        return update.value
    return update


class Pick:
    """A "pick" event as the list's script sends it."""

    def __init__(self, ref: str) -> None:
        self._data = {"ref": ref}


# -- items made through each store's own API -----------------------------------------------------------------------
def make_items(demo, user: str) -> dict[str, ItemRef]:
    chats = demo.studio_service.store
    conv = chats.create_conversation(user, "Compost talk", "openai:fake-model", "You are a terse gardener.")
    chats.add_message(user, conv.id, "user", "How do I start?")
    chats.add_message(user, conv.id, "assistant", "Get a bin with a lid.")
    chats.add_message(user, conv.id, "user", "What about the smell of the marigolds?")
    time.sleep(0.01)
    draft = demo.writer_service.drafts.create(
        user,
        "Balcony composting",
        "product_description",
        {"topic": "A balcony compost bin", "audience": "city renters", "tone": "Playful", "keywords": "bokashi"},
        {"model": "openai:fake-model", "temperature": 0.35, "seed": 1234, "variants": 1},
        text="Meet the bin that fits between two chairs.",
    )
    time.sleep(0.01)
    summary = demo.condense_service.store.save(
        user,
        "Field report",
        "- The soil warmed by three degrees.",
        model="openai:fake-model",
        settings={
            "length": "detailed",
            "form": "prose",
            "focus": "What changed in the soil?",
            "audience": "farmers",
            "language": "German",
            "model": "openai:fake-model",
        },
        sources=[{"name": "report.pdf"}],
        coverage="Read 1 document.",
    )
    time.sleep(0.01)
    picture = Image.new("RGB", (64, 48), (30, 120, 200))
    image = demo.image_studio.gallery.save(
        user,
        GeneratedImage(
            picture,
            4242,
            {
                "prompt": "a header image of a compost bin on a balcony",
                "negative_prompt": "blurry",
                "steps": 7,
                "guidance": 1.5,
                "width": 64,
                "height": 48,
                "model": "gan:faces",
                "mode": "txt2img",
            },
        ),
    )
    time.sleep(0.01)
    transcript = demo.speech_studio.store.add_transcript(
        user,
        title="Voice memo",
        segments=(Segment(0.0, 1.5, "remember the zucchini seedlings"),),
        source="speech",
        model="whisper",
        language="en",
        duration=1.5,
        stopped=False,
    )
    return {
        "chat": ItemRef("chat", conv.id),
        "draft": ItemRef("draft", draft.id),
        "summary": ItemRef("summary", summary.id),
        "image": ItemRef("image", image.id),
        "transcript": ItemRef("transcript", transcript.id),
    }


@pytest.fixture(scope="module")
def items(demo):
    return make_items(demo, f"browser:{ALICE}")


def listing(demo, kind: str = "", query: str = "", bid: str = ALICE) -> str:
    fn, _ = handler(demo, "refresh")
    rows, _more = fn(bid, kind, query, 50, [], None, request(bid))
    return rows


def titles_in(rows: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'<span class="lib-title">(.*?)</span>', rows)]


def open_item(demo, ref: ItemRef, bid: str = ALICE) -> tuple[dict, Any]:
    fn, block_fn = handler(demo, "open_item")
    values = {c: None for c in block_fn.inputs}
    values.update({c: bid for c in block_fn.inputs if isinstance(c, gr.BrowserState)})
    chosen = next(c for c in block_fn.inputs if isinstance(c, gr.State) and c is not None and _is_chosen(demo, c))
    values[chosen] = f"{ref.kind}:{ref.id}"
    return fn(values, request(bid)), block_fn


def _is_chosen(demo, state) -> bool:
    _, pick_fn = handler(demo, "pick")
    return state is pick_fn.outputs[0]


# -- the list ------------------------------------------------------------------------------------------------------
def test_list_is_newest_first_across_kinds_with_kind_filter(demo, items):
    rows = listing(demo)
    order = titles_in(rows)
    assert order.index("Voice memo") < order.index("Field report") < order.index("Balcony composting")
    assert order.index("Balcony composting") < order.index("Compost talk")
    assert "5 items" in rows
    only_drafts = listing(demo, "draft")
    assert titles_in(only_drafts) == ["Balcony composting"]
    assert titles_in(listing(demo, "summary")) == ["Field report"]
    assert "No audio yet." in listing(demo, "audio")


def test_search_finds_a_word_deep_in_a_conversation_and_marks_it(demo, items):
    rows = listing(demo, query="marigolds")
    assert titles_in(rows) == ["Compost talk"]
    assert "<mark>" in rows and "marigolds" in rows.split("<mark>", 1)[1].split("</mark>", 1)[0].lower()
    none = listing(demo, query="zeppelin")
    assert "Nothing matches 'zeppelin'" in none
    for hostile in ['"', "AND OR NOT", "*", "NEAR(", "x" * 10_000, "a\x00b", "<script>alert(1)</script>"]:
        rows = listing(demo, query=hostile)  # never an error
        assert "<script>" not in rows


def test_empty_library_says_what_will_appear(demo, items):
    rows = listing(demo, bid=BOB)
    assert "Nothing here yet" in rows and "conversations" in rows and "images" in rows


# -- details and links ---------------------------------------------------------------------------------------------
def test_pick_shows_details_and_refuses_junk_and_other_users_items(demo, items):
    fn, block_fn = handler(demo, "pick")
    chosen, details, actions, title, _confirm = fn(ALICE, Pick(f"summary:{items['summary'].id}"), request())
    assert chosen == f"summary:{items['summary'].id}"
    assert "Field report" in details and title == "Field report"
    assert actions.visible is True  # Open, Rename, Delete show
    for junk in ["", "nope", "secret:abc", "draft:../../etc/passwd", "draft:" + "x" * 500]:
        with pytest.raises(gr.Error):
            fn(ALICE, Pick(junk), request())
    # another user's id: nothing shown, no error that tells it exists
    chosen, details, actions, _, _ = fn(BOB, Pick(f"draft:{items['draft'].id}"), request(BOB))
    assert chosen is None and "no longer exists" in details and actions.visible is False


def test_check_events_keep_only_well_formed_refs():
    assert parse_ref("image:abc123") == ItemRef("image", "abc123")
    assert parse_ref("image:a/b") is None and parse_ref("video:abc") is None and parse_ref(None) is None
    refs = picked_refs({"refs": ["draft:1", "draft:1", "bad", 7, "chat:2"] + ["image:x"] * 3})
    assert refs == [ItemRef("draft", "1"), ItemRef("chat", "2"), ItemRef("image", "x")]
    many = picked_refs({"refs": [f"draft:{n}" for n in range(MAX_TICKED + 50)]})
    assert len(many) == MAX_TICKED


# -- open in its tab: every parameter restored -------------------------------------------------------------------
def test_open_a_draft_restores_its_brief_template_and_options(demo, items):
    updates, block_fn = open_item(demo, items["draft"])
    out = {getattr(c, "elem_id", None): v for c, v in updates.items()}
    tabs = next(v for c, v in updates.items() if isinstance(c, gr.Tabs))
    assert tabs.selected == "writer"
    assert value_of(out["writer-template"]) == "product_description"
    assert value_of(out["writer-topic"]) == "A balcony compost bin"
    assert value_of(out["writer-audience"]) == "city renters"
    assert value_of(out["writer-tone"]) == "Playful"
    assert value_of(out["writer-keywords"]) == "bokashi"
    assert value_of(out["writer-draft"]) == "Meet the bin that fits between two chairs."
    temperature = next(v for c, v in updates.items() if getattr(c, "label", "") == "Temperature")
    seed = next(v for c, v in updates.items() if getattr(c, "label", "") == "Seed")
    assert value_of(temperature) == pytest.approx(0.35) and value_of(seed) == 1234
    assert value_of(out["writer-drafts"]) == items["draft"].id


def test_open_an_image_restores_its_parameters_and_selects_it(demo, items):
    updates, _ = open_item(demo, items["image"])
    out = {getattr(c, "elem_id", None): v for c, v in updates.items()}
    tabs = next(v for c, v in updates.items() if isinstance(c, gr.Tabs))
    assert tabs.selected == "images"
    assert value_of(out["image-prompt"]) == "a header image of a compost bin on a balcony"
    assert value_of(out["image-negative"]) == "blurry"
    assert value_of(out["image-seed"]) == 4242
    assert value_of(out["image-steps"]) == 7
    assert value_of(out["image-guidance"]) == pytest.approx(1.5)
    assert value_of(out["image-width"]) == 64 and value_of(out["image-height"]) == 48
    assert "4242" in value_of(out["image-selected-params"])


def test_open_a_summary_restores_its_options(demo, items):
    updates, _ = open_item(demo, items["summary"])
    out = {getattr(c, "elem_id", None): v for c, v in updates.items()}
    assert next(v for c, v in updates.items() if isinstance(c, gr.Tabs)).selected == "condense"
    assert value_of(out["condense-length"]) == "detailed"
    assert value_of(out["condense-form"]) == "prose"
    assert value_of(out["condense-focus"]) == "What changed in the soil?"
    assert "three degrees" in value_of(out["condense-summary"])
    assert value_of(out["condense-history"]) == items["summary"].id
    audience = next(v for c, v in updates.items() if getattr(c, "label", "") == "Audience (optional)")
    language = next(v for c, v in updates.items() if getattr(c, "label", "") == "Output language")
    assert audience == "farmers" and language == "German"


def test_open_a_conversation_and_a_transcript(demo, items):
    updates, _ = open_item(demo, items["chat"])
    out = {getattr(c, "elem_id", None): v for c, v in updates.items()}
    assert next(v for c, v in updates.items() if isinstance(c, gr.Tabs)).selected == "chat"
    shown = value_of(out["chatbot"])
    assert "marigolds" in str(shown) and "Get a bin with a lid." in str(shown)
    assert value_of(out["chat-title"]) == "Compost talk"
    system = next(v for c, v in updates.items() if getattr(c, "label", "") == "System prompt")
    assert system == "You are a terse gardener."
    assert f'data-open="{items["chat"].id}"' in value_of(out["chat-conversations"])

    updates, _ = open_item(demo, items["transcript"])
    out = {getattr(c, "elem_id", None): v for c, v in updates.items()}
    selected = [v.selected for c, v in updates.items() if isinstance(c, gr.Tabs)]
    assert "speech" in selected and "speech-history-part" in selected
    assert value_of(out["speech-history"]) == items["transcript"].id


def test_open_another_users_item_is_not_found(demo, items):
    for ref in items.values():
        with pytest.raises(gr.Error, match="no longer exists"):
            open_item(demo, ref, bid=BOB)


# -- rename and delete ---------------------------------------------------------------------------------------------
def test_rename_shows_in_the_items_own_store_and_delete_removes_it(demo):
    user = f"browser:{CAROL}"
    made = make_items(demo, user)
    rename, _ = handler(demo, "rename")
    ref = f"draft:{made['draft'].id}"
    out = rename(CAROL, ref, "Composting on a balcony", "", "", 50, [], request(CAROL))
    assert demo.writer_service.drafts.get(user, made["draft"].id).title == "Composting on a balcony"
    assert "Composting on a balcony" in out[-2]  # the list redrawn
    with pytest.raises(gr.Error):
        rename(CAROL, ref, "   ", "", "", 50, [], request(CAROL))  # empty title refused, as a toast
    with pytest.raises(gr.Error):
        rename(BOB, ref, "Stolen", "", "", 50, [], request(BOB))
    assert demo.writer_service.drafts.get(user, made["draft"].id).title == "Composting on a balcony"

    image_path = Path(demo.image_studio.gallery.get(user, made["image"].id).path)
    assert image_path.is_file()
    delete, _ = handler(demo, "delete")
    with pytest.raises(gr.Error):
        delete(BOB, f"image:{made['image'].id}", "", "", 50, [], request(BOB))
    assert image_path.is_file()
    out = delete(CAROL, f"image:{made['image'].id}", "", "", 50, [f"image:{made['image'].id}"], request(CAROL))
    assert not image_path.exists()
    assert out[5] == []  # no longer ticked
    with pytest.raises(gr.Error, match="no longer exists"):
        open_item(demo, made["image"], bid=CAROL)


# -- export and import ---------------------------------------------------------------------------------------------
def library_fn(demo, qualname: str):
    for block_fn in demo.fns.values():
        if block_fn.fn is not None and block_fn.fn.__qualname__ == qualname:
            return block_fn.fn
    raise AssertionError(qualname)


def test_export_ticked_items_and_import_refuses_a_file_that_is_not_the_callers_upload(demo, items):
    on_check = library_fn(demo, "build_library_tab.<locals>.on_check")
    ticked = on_check(
        type("E", (), {"_data": {"refs": [f"draft:{items['draft'].id}", "../x", f"image:{items['image'].id}"]}})()
    )
    assert ticked == [f"draft:{items['draft'].id}", f"image:{items['image'].id}"]
    runs = [
        b.fn
        for b in demo.fns.values()
        if b.fn is not None and b.fn.__qualname__.endswith("export.<locals>.run") and b.fn.__module__ == "ui.library"
    ]
    assert len(runs) == 2
    selected = runs[0]
    with pytest.raises(gr.Error, match="Tick the items"):
        selected(ALICE, [], request())
    made = selected(ALICE, ticked, request()).value
    archive = Path(made if isinstance(made, str) else made["path"])
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert any(n.endswith(".png") for n in zf.namelist())
    assert sorted(i["kind"] for i in manifest["items"]) == ["draft", "image"]
    with pytest.raises(gr.Error):  # another user's items are not exported
        selected(BOB, ticked, request(BOB))

    do_import = library_fn(demo, "build_library_tab.<locals>.do_import")
    before = demo.library.items(f"browser:{ALICE}").total
    for hostile in (
        {"path": "/etc/passwd", "orig_name": "x.zip"},
        "/etc/passwd",
        {"path": str(archive)},  # a real archive, but a file on the server, not an upload of the caller's
    ):
        with pytest.raises(gr.Error):
            do_import(ALICE, hostile, "", "", 50, [], request())
    assert demo.library.items(f"browser:{ALICE}").total == before  # nothing added


def test_show_more_pages_a_long_library(demo):
    dave = "D" * 24
    drafts = demo.writer_service.drafts
    for n in range(55):
        drafts.create(f"browser:{dave}", f"Note {n:02d}", "product_description", {"topic": f"t{n}"}, {})
    rows, more = handler(demo, "refresh")[0](dave, "", "", 50, [], None, request(dave))
    assert len(titles_in(rows)) == 50 and more.visible is True and "55 items · showing 50" in rows
    limit, rows, more = handler(demo, "more")[0](dave, "", "", 50, [], None, request(dave))
    assert limit == 100 and len(titles_in(rows)) == 55 and more.visible is False
    assert titles_in(rows)[0] == "Note 54" and titles_in(rows)[-1] == "Note 00"  # newest first
