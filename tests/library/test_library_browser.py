"""The Library tab in real headless Chromium against the real app process (with a login, so the items made through
the real stores beforehand are that person's): newest first, the kind filter, search with the hit marked, a draft
and an image opened back in their tabs with their parameters, rename, delete with its confirm step, axe-core, and
Export everything then Import into a fresh app. Screenshots at 1280x900 and 390x844 go to the test's tmp folder."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PIL import Image

from backends.image.base import GeneratedImage
from backends.speech.base import Segment
from config import Settings
from core.chat.store import ConversationStore
from core.condenser.store import SummaryStore
from core.images.store import ImageGallery
from core.library.items import ItemRef
from core.library.service import LibraryService
from core.speech.store import SpeechStore
from core.writer.store import DraftStore
from tests.support.app_process import app_process
from tests.support.axe import blocking, describe
from tests.support.browser import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]
USER = "user:ann"
ENV = {
    "STUDIO_TEXT_MODEL": "openai:fake-model",
    "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
    "STUDIO_IMAGE_MODEL": "gan:faces",
    "STUDIO_AUTH": "ann:pw-ann",
}


def make_items(data: Path) -> None:
    """A conversation, a draft, a summary, an image and a transcript, each through its own store, oldest first."""
    db = Settings(data_dir=data).db_path
    chats = ConversationStore(db)
    conv = chats.create_conversation(USER, "Compost talk", "openai:fake-model", "You are a terse gardener.")
    chats.add_message(USER, conv.id, "user", "How do I start?")
    chats.add_message(USER, conv.id, "assistant", "Get a bin with a lid.")
    chats.add_message(USER, conv.id, "user", "What about the smell of the marigolds?")
    time.sleep(0.02)
    drafts, images = DraftStore(db), ImageGallery(data, db)
    draft = drafts.create(
        USER,
        "Balcony composting",
        "product_description",
        {"topic": "A balcony compost bin", "audience": "city renters", "keywords": "bokashi"},
        {"model": "openai:fake-model", "temperature": 0.35, "seed": 1234, "variants": 1},
        text="Meet the bin that fits between two chairs.",
    )
    time.sleep(0.02)
    SummaryStore(db).save(
        USER,
        "Field report",
        "- The soil warmed by three degrees.",
        model="openai:fake-model",
        settings={"length": "detailed", "form": "prose", "focus": "What changed in the soil?"},
        sources=[{"name": "report.pdf"}],
    )
    time.sleep(0.02)
    image = images.save(
        USER,
        GeneratedImage(
            Image.new("RGB", (64, 64), (30, 120, 200)),
            4242,
            {"prompt": "a compost bin on a sunny balcony", "steps": 3, "width": 64, "height": 64, "model": "gan:faces"},
        ),
    )
    time.sleep(0.02)
    speech = SpeechStore(data, db)
    speech.add_transcript(
        USER,
        title="Voice memo",
        segments=(Segment(0.0, 1.5, "remember the zucchini seedlings"),),
        source="speech",
        model="whisper",
        language="en",
        duration=1.5,
        stopped=False,
    )
    # the image was made for the draft: a link the library shows both ways
    stores = dict(chats=chats, drafts=drafts, summaries=SummaryStore(db), images=images, speech=speech)
    library = LibraryService(Settings(data_dir=data), db, **stores)
    library.link(USER, ItemRef("draft", draft.id), ItemRef("image", image.id), "header image")


def login(page, url: str) -> None:
    page.goto(url)
    page.locator('input[type="text"]').fill("ann")
    page.locator('input[type="password"]').fill("pw-ann")
    page.get_by_role("button", name="Login").click()
    page.locator("#chat-input textarea").wait_for(timeout=20000)
    page.wait_for_timeout(500)


def open_library(page) -> None:
    page.get_by_role("tab", name="Library").click()
    page.locator("#library-list").wait_for()


def titles(page) -> list[str]:
    return page.locator("#library-list .lib-title").all_inner_texts()


def row(page, title: str):
    return page.locator("#library-list .lib-open", has_text=title).first


def test_filter_search_open_rename_delete_export_import(browser, tmp_path):
    data = tmp_path / "first"
    data.mkdir()
    make_items(data)
    errors: list[str] = []
    with app_process(data, ENV) as app:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # e.g. a failed request
        login(page, app.url)
        open_library(page)
        wait_for(lambda: len(titles(page)) == 5, 20, "the five items")
        order = titles(page)
        assert order[0] == "Voice memo" and order[-1] == "Compost talk", order
        assert "5 items" in page.locator("#library-list").inner_text()
        page.screenshot(path=str(tmp_path / "library-desktop.png"))

        # the kind filter, then search (the hit marked in the snippet)
        page.locator("#library-kind").get_by_text("Drafts", exact=True).click()
        wait_for(lambda: titles(page) == ["Balcony composting"], 10, "only the draft")
        page.locator("#library-kind").get_by_text("All", exact=True).click()
        wait_for(lambda: len(titles(page)) == 5, 10, "all again")
        page.locator("#library-search textarea, #library-search input").first.fill("marigolds")
        wait_for(lambda: titles(page) == ["Compost talk"], 10, "the search hit")
        assert page.locator("#library-list mark").first.inner_text().lower() == "marigolds"
        page.locator("#library-search textarea, #library-search input").first.fill("")
        wait_for(lambda: len(titles(page)) == 5, 10, "the whole list back")

        # a draft opened in Writer with its brief and options
        row(page, "Balcony composting").click()
        wait_for(lambda: "Balcony composting" in page.locator("#library-details").inner_text(), 10, "its details")
        assert not (v := blocking(page, "#library-tab")), describe(v)
        page.locator("#library-open").click()
        topic = page.locator("#writer-topic textarea")
        wait_for(lambda: topic.is_visible() and topic.input_value() == "A balcony compost bin", 15, "the topic")
        assert page.locator("#writer-draft textarea").input_value() == "Meet the bin that fits between two chairs."
        assert page.locator("#writer-keywords textarea, #writer-keywords input").first.input_value() == "bokashi"

        # an image opened in Images: selected in the gallery, its seed back in the controls (the GAN model that
        # made it has no prompt box; the app test checks every diffusion parameter)
        # reached through the draft's links ("Made from it")
        open_library(page)
        row(page, "Balcony composting").click()
        link = page.locator("#library-details .lib-link", has_text="compost bin on a sunny balcony")
        wait_for(link.is_visible, 10, "the draft's link to its image")
        page.screenshot(path=str(tmp_path / "library-details-desktop.png"))
        link.click()
        wait_for(lambda: "64×64" in page.locator("#library-details").inner_text(), 10, "the image's details")
        assert "Balcony composting" in page.locator("#library-details").inner_text()  # came from the draft
        page.locator("#library-open").click()
        chosen = page.locator("#image-selected-params textarea")
        wait_for(lambda: chosen.is_visible() and "Seed: 4242" in chosen.input_value(), 15, "the image selected")
        assert "a compost bin on a sunny balcony" in chosen.input_value()
        wait_for(lambda: page.locator("#image-seed input").first.input_value() == "4242", 10, "the seed")
        assert page.get_by_role("tab", name="Images").get_attribute("aria-selected") == "true"

        # rename
        open_library(page)
        row(page, "Field report").click()
        title_box = page.locator("#library-title textarea, #library-title input").first
        wait_for(lambda: title_box.input_value() == "Field report", 10, "the title to edit")
        title_box.fill("Soil field report")
        page.locator("#library-rename").click()
        wait_for(lambda: "Soil field report" in titles(page), 10, "the new title")

        # delete asks first; Keep it keeps; the confirmation deletes
        row(page, "Voice memo").click()
        wait_for(lambda: "Voice memo" in page.locator("#library-details").inner_text(), 10, "the memo's details")
        page.locator("#library-delete").click()
        confirm = page.locator("#library-delete-confirm")
        wait_for(confirm.is_visible, 10, "the confirmation")
        page.locator("#library-delete-keep").click()
        wait_for(lambda: not confirm.is_visible(), 10, "the confirmation to go")
        assert "Voice memo" in titles(page)
        page.locator("#library-delete").click()
        wait_for(confirm.is_visible, 10, "the confirmation")
        confirm.click()
        wait_for(lambda: "Voice memo" not in titles(page), 10, "the memo gone")
        assert len(titles(page)) == 4

        # phone
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(400)
        row(page, "Balcony composting").click()
        wait_for(lambda: "Made from it" in page.locator("#library-details").inner_text(), 10, "the draft's details")

        def details_in_sight() -> bool:  # the details are under the list on a phone: the pick scrolls to them
            box = page.locator("#library-details").bounding_box()
            return bool(box) and 0 <= box["y"] < 844 - 100

        wait_for(details_in_sight, 5, "the details scrolled into sight")
        page.wait_for_timeout(500)
        page.screenshot(path=str(tmp_path / "library-phone-details.png"))
        page.screenshot(path=str(tmp_path / "library-phone.png"), full_page=True)
        assert not (v := blocking(page, "#library-tab")), describe(v)
        page.set_viewport_size({"width": 1280, "height": 900})

        # export everything
        page.locator("#library-export-all").click()
        link = page.locator("#library-export-file a").first
        wait_for(lambda: link.count() and link.is_visible(), 30, "the archive")
        with page.expect_download() as info:
            link.click()
        archive = tmp_path / "library.zip"
        info.value.save_as(archive)
        assert archive.stat().st_size > 200
        context.close()

    fresh = tmp_path / "second"
    fresh.mkdir()
    with app_process(fresh, ENV) as app:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        login(page, app.url)
        open_library(page)
        wait_for(lambda: "Nothing here yet" in page.locator("#library-list").inner_text(), 15, "the empty state")
        page.locator("#library-import input[type=file], input[type=file][data-testid]").last.set_input_files(
            str(archive)
        )
        wait_for(lambda: len(titles(page)) == 4, 60, "the imported items")
        assert {"Soil field report", "Balcony composting", "Compost talk"} <= set(titles(page))
        context.close()
    assert not errors, errors
