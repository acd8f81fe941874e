"""Flows across tabs in real headless Chromium against the real app (a fake OpenAI server for the text, the tiny
diffusers pipeline for Images), at 1280x900 and 390x844: a chat reply's "Send to Writer" opens Writer with the reply
as a new draft, "Make a header image" puts a prompt made from the draft in the Images prompt box (asking before it
replaces one already there), and a summary's "Discuss in Chat" opens a new conversation the model sees it in."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from config import Settings
from core.chat.store import ConversationStore
from core.condenser.store import SummaryStore
from core.flows import HEADER_IMAGE, SPOKEN
from core.images.store import ImageGallery
from core.library.items import ItemRef
from core.library.service import LibraryService
from core.speech.store import SpeechStore
from core.writer.store import DraftStore
from tests.support.app_process import app_process
from tests.support.browser import wait_for
from tests.support.openai_servers import fake_openai_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(os.environ.get("STUDIO_TEST_SHOTS", "/tmp/shots_flows"))
SUMMARY = "## Composting report\n\n- Worm bins suit small flats and need little care [p. 2]"


def login(page, url: str) -> None:
    page.goto(url)
    page.locator('input[type="text"]').fill("ann")
    page.locator('input[type="password"]').fill("pw-ann")
    page.get_by_role("button", name="Login").click()
    page.locator("#chat-input textarea").wait_for(timeout=15000)
    page.wait_for_function("() => window.gradio_config !== undefined")
    page.wait_for_timeout(500)


def viewport_height(page) -> int:
    return page.viewport_size["height"]


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def test_reply_to_writer_draft_to_image_prompt_and_summary_to_chat(browser, tmp_path, tiny_folder):
    SummaryStore(tmp_path / "studio.sqlite3").save("user:ann", "composting-report.pdf", SUMMARY)
    SHOTS.mkdir(exist_ok=True)
    with fake_openai_server(reply_words=10) as fake:
        env = {
            "STUDIO_TEXT_MODEL": "openai:fake-model",
            "OPENAI_BASE_URL": fake.base_url,
            "STUDIO_AUTH": "ann:pw-ann",
            "HF_HOME": str(tmp_path / "hf"),
            "STUDIO_IMAGE_MODEL": f"diffusers:{tiny_folder}",
            "STUDIO_SPEECH_MODEL": "espeak",
        }
        with app_process(tmp_path, env) as app:
            for size, viewport in (
                ("desktop", {"width": 1280, "height": 900}),
                ("phone", {"width": 390, "height": 844}),
            ):
                context = browser.new_context(viewport=viewport)
                page = context.new_page()
                errors: list[str] = []
                page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
                login(page, app.url)
                walk(page, size, fake, tmp_path if size == "desktop" else None)
                assert not errors, errors
                context.close()


def made_from(data: Path, kind: str, newest: str) -> list[tuple[str, str]]:
    """(kind made, relation) of what the library links to ann's newest conversation or draft, read from the app's
    SQLite file the way the app reads it."""
    db = data / "studio.sqlite3"
    chats, drafts = ConversationStore(db), DraftStore(db)
    library = LibraryService(
        Settings(data_dir=data), db, chats=chats, drafts=drafts, summaries=SummaryStore(db),
        images=ImageGallery(data, db), speech=SpeechStore(data, db),
    )  # fmt: skip
    item_id = chats.list_conversations("user:ann")[0].id if kind == "chat" else drafts.list("user:ann")[0].id
    found = library.links("user:ann", ItemRef(kind, item_id)).made_from_it
    return [(link.ref.kind, link.relation) for link in found if link.ref is not None]


def walk(page, size: str, fake, data: Path | None) -> None:
    """The walk through the flows; with `data` (once) it also speaks and generates, and reads the links made."""
    new_chat = page.get_by_role("button", name="+ New chat")
    if not new_chat.is_visible():  # on a phone the conversation list starts folded
        page.locator("#chat-list-panel > button, #chat-list-panel .label-wrap").first.click()
    new_chat.click()

    # 1. a chat reply -> Writer: the reply's text becomes a new draft, titled after the conversation
    box = page.locator("#chat-input textarea")
    box.fill(f"worm composting {size}")
    box.press("Enter")
    wait_for(lambda: "tok/s" in page.locator("#chat-stats").inner_text(), 30, "the reply")
    reply = page.locator('#chatbot [data-testid="bot"]').last.inner_text()
    assert "composting" in reply
    send = page.locator("#chatbot").get_by_role("button", name="Send to Writer").last
    send.wait_for()
    assert page.locator("#chatbot").get_by_role("button", name="Send to Speech").count() == 1
    page.screenshot(path=str(SHOTS / f"flows_chat_{size}.png"))
    # ... and to Speech: the reply's text in the Speech box
    page.locator("#chatbot").get_by_role("button", name="Send to Speech").last.click()
    spoken = page.locator("#speech-text textarea")
    wait_for(lambda: spoken.is_visible() and spoken.input_value().strip(), 15, "the text to speak")
    assert words(spoken.input_value()) == words(reply)
    if data is not None:  # what is spoken next links to the reply's conversation
        page.locator("#speech-run").click()
        wait_for(lambda: ("audio", SPOKEN) in made_from(data, "chat", ""), 90, "the audio's link")
    # other text there is not replaced without asking: Cancel keeps it (and the chat stays open)
    spoken.fill("words of my own")
    page.get_by_role("tab", name="Chat").click()
    questions: list[str] = []
    page.once("dialog", lambda d: (questions.append(d.message), d.dismiss()))
    page.locator("#chatbot").get_by_role("button", name="Send to Speech").last.click()
    wait_for(lambda: questions, 10, "the question")
    assert "already holds text" in questions[0]
    page.wait_for_timeout(1000)  # time for a wrongly sent event to land
    assert send.is_visible() and spoken.input_value() == "words of my own"
    send.wait_for()
    send.click()
    draft = page.locator("#writer-draft textarea")
    wait_for(lambda: draft.is_visible() and draft.input_value().strip(), 15, "the draft")
    assert words(draft.input_value()) == words(reply)
    assert page.locator("#writer-topic textarea").input_value() == f"worm composting {size}"
    page.screenshot(path=str(SHOTS / f"flows_writer_{size}.png"))
    if data is not None:  # the draft sent to Speech (the writer's own button) and spoken links to the draft
        page.locator("#writer-send-speech").click()
        wait_for(lambda: page.locator("#speech-text textarea").is_visible(), 15, "the Speech tab")
        page.locator("#speech-run").click()
        wait_for(lambda: ("audio", SPOKEN) in made_from(data, "draft", ""), 90, "the draft's audio link")
        page.get_by_role("tab", name="Writer").click()
        draft.wait_for(state="visible")

    # 2. the draft -> a header image's prompt in the Images prompt box
    header = page.locator("#writer-header-image")
    prompt = page.locator("#image-prompt textarea")
    header.click()
    wait_for(lambda: prompt.is_visible() and "Header image" in prompt.input_value(), 15, "the prompt")
    # (the fake's reply numbers every word, "worm0 composting1 ...": no word repeats to name a subject)
    assert prompt.input_value().startswith(f'Header image for an article titled "worm composting {size}". Wide')
    page.wait_for_timeout(800)  # the prompt box scrolled into view (ui/flows.py show_js)
    page.screenshot(path=str(SHOTS / f"flows_images_{size}.png"))
    box_top = page.evaluate("() => document.querySelector('#image-prompt textarea').getBoundingClientRect().top")
    assert 0 <= box_top < viewport_height(page) * 0.75  # on screen, above the Generate bar fixed at a phone's bottom
    # a prompt of the person's own is not replaced without asking; "Cancel" keeps it and stays in Writer
    prompt.fill("my own careful prompt")
    page.get_by_role("tab", name="Writer").click()
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    header.click()
    wait_for(lambda: asked, 10, "the question")
    assert "already holds a prompt" in asked[0]
    page.wait_for_timeout(1000)  # time for a wrongly sent event to land
    assert draft.is_visible() and not prompt.is_visible()
    assert prompt.input_value() == "my own careful prompt"
    page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
    header.click()
    wait_for(lambda: prompt.is_visible() and "Header image" in prompt.input_value(), 15, "the replaced prompt")
    assert len(asked) == 2
    if data is not None:  # the image made next links to the draft
        page.locator("#image-generate").click()
        wait_for(lambda: ("image", HEADER_IMAGE) in made_from(data, "draft", ""), 120, "the image's link")

    # 3. a summary -> Chat: a new conversation whose system prompt holds it
    page.get_by_role("tab", name="Condense").click()
    page.get_by_text("Earlier summaries · export").click()
    page.locator("#condense-history input").click()
    page.get_by_role("option", name=re.compile("composting-report.pdf")).click()
    discuss = page.locator("#condense-discuss")
    discuss.wait_for(state="visible", timeout=10000)
    page.screenshot(path=str(SHOTS / f"flows_condense_{size}.png"))
    discuss.click()
    wait_for(lambda: "starts from the summary" in page.locator("#chat-stats").inner_text(), 15, "the chat")
    assert "Discuss: composting-report.pdf" in page.locator("#chat-conversations").inner_text()
    before = len(fake.chat_requests)
    box.fill("Which bins suit flats?")
    box.press("Enter")
    wait_for(lambda: "tok/s" in page.locator("#chat-stats").inner_text(), 30, "the answer")
    page.screenshot(path=str(SHOTS / f"flows_discuss_{size}.png"))
    sent = [r.body for r in fake.chat_requests[before:] if r.body and r.body.get("stream")]
    system = sent[0]["messages"][0]
    assert system["role"] == "system" and "Worm bins suit small flats" in system["content"]
