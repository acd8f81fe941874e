"""The chat tab's conversation list in real Chromium against the real app: sections by date, keyboard use, "no
matches", one-click export with a real file name, the model's title arriving in the background, and axe-core on
the sidebar at desktop and phone sizes."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.support.app_process import app_process
from tests.support.axe import blocking, describe
from tests.support.browser import wait_for
from tests.support.openai_servers import fake_openai_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SHOTS = Path(os.environ.get("STUDIO_TEST_SHOTS", "/tmp/shots_b2"))

# The list's sections as the page shows them: [(heading, [titles])].
SECTIONS_JS = """() => [...document.querySelectorAll('#chat-conversations h3')].map(h =>
    [h.textContent, [...h.nextElementSibling.querySelectorAll('button')].map(b => b.textContent)])"""


def open_page(context, url: str, errors: list[str]):
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    page.locator("#chat-input textarea").wait_for()
    page.wait_for_function("() => window.gradio_config !== undefined")
    page.wait_for_timeout(500)
    return page


def bot_texts(page) -> list[str]:
    return page.locator('#chatbot [data-testid="bot"]').all_inner_texts()


def chat(page, text: str, new: bool = True) -> None:
    """Start a new conversation with `text` and wait for its reply (the fake numbers the message's words)."""
    if new and bot_texts(page):
        page.get_by_role("button", name="+ New chat").click()
        wait_for(lambda: not bot_texts(page), 10, "an empty chat")
    box = page.locator("#chat-input textarea")
    box.fill(text)
    box.press("Enter")
    first = re.findall(r"\w+", text.lower())[0] + "0"  # the fake's reply starts with it
    wait_for(lambda: any(first in t for t in bot_texts(page)), 20, f"the reply to {text!r}")


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def list_text(page) -> str:
    return page.locator("#chat-conversations").inner_text()


def test_the_list_is_grouped_by_date_works_by_keyboard_and_says_when_nothing_matches(browser, tmp_path):
    errors: list[str] = []
    with fake_openai_server(reply_words=4) as fake:
        env = {"STUDIO_TEXT_MODEL": "openai:fake-model", "OPENAI_BASE_URL": fake.base_url}
        with app_process(tmp_path, env) as app:
            context = browser.new_context(viewport=DESKTOP)
            page = open_page(context, app.url, errors)
            assert "No conversations yet" in list_text(page)
            for text in ("delta dogs", "gamma cats", "beta bats", "alpha owls"):
                chat(page, text)
            wait_for(lambda: "delta dogs" in list_text(page) and "alpha owls" in list_text(page), 10, "four listed")

            # Age three of them, as if last changed yesterday, four days ago and last year.
            midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
            ages = {
                "beta bats": midnight - timedelta(hours=12),
                "gamma cats": midnight - timedelta(days=4),
                "delta dogs": datetime.now() - timedelta(days=400),
            }
            with sqlite3.connect(tmp_path / "studio.sqlite3") as db:
                for title, when in ages.items():
                    assert (
                        db.execute(
                            "UPDATE conversations SET updated_at = ? WHERE title = ?", (when.timestamp(), title)
                        ).rowcount
                        == 1
                    )
            assert not errors, errors
            page.reload()  # streams still open abort as the page unloads (Gradio logs that): errors count from here
            page.locator("#chat-conversations h3").first.wait_for(timeout=15000)
            errors.clear()
            wait_for(lambda: len(page.evaluate(SECTIONS_JS)) == 4, 10, "four sections")
            assert page.evaluate(SECTIONS_JS) == [
                ["Today", ["alpha owls"]],
                ["Yesterday", ["beta bats"]],
                ["Previous 7 days", ["gamma cats"]],
                ["Older", ["delta dogs"]],
            ]
            # the open one (the newest, reopened after the reload) is marked for screen readers too
            assert page.locator('#chat-conversations button[aria-current="true"]').all_inner_texts() == ["alpha owls"]
            shot(page, "list_desktop")

            # keyboard: Tab to an item, Enter opens it
            page.locator("#chat-conversations button", has_text="gamma cats").focus()
            page.keyboard.press("Enter")
            wait_for(lambda: "gamma0" in " ".join(bot_texts(page)), 10, "the conversation opened by keyboard")
            assert "owls" not in " ".join(bot_texts(page))
            current = page.locator('#chat-conversations button[aria-current="true"]')
            wait_for(lambda: current.all_inner_texts() == ["gamma cats"], 10, "the opened one marked")
            page.keyboard.press("Tab")  # the next item is the next stop
            assert page.evaluate("() => document.activeElement.textContent") == "delta dogs"

            search = page.locator("#chat-search input, #chat-search textarea").first
            search.fill("bats")
            wait_for(lambda: page.evaluate(SECTIONS_JS) == [["Yesterday", ["beta bats"]]], 10, "one match")
            search.fill("zebras <b>${7*6}")  # shown as typed: neither markup nor a template
            wait_for(lambda: "No conversations match 'zebras <b>${7*6}'" in list_text(page), 10, "no matches")
            assert page.locator("#chat-conversations [role=status]").count() == 1
            shot(page, "list_no_matches_desktop")
            search.fill("")
            wait_for(lambda: len(page.evaluate(SECTIONS_JS)) == 4, 10, "the whole list back")

            assert not (v := blocking(page, "#chat-sidebar")), describe(v)

            page.set_viewport_size(PHONE)
            page.wait_for_timeout(500)
            box = page.locator("#chat-conversations .chat-list").bounding_box()
            assert box is not None and box["height"] <= 0.45 * PHONE["height"]  # the list scrolls, never grows
            assert not (v := blocking(page, "#chat-sidebar")), describe(v)
            page.locator("#chat-sidebar").scroll_into_view_if_needed()
            shot(page, "list_phone")
            assert not errors, errors  # (before closing: a closed page's aborted requests are no error of ours)
            context.close()


def test_export_is_one_click_with_the_title_and_date_as_file_name(browser, tmp_path):
    errors: list[str] = []
    with fake_openai_server(reply_words=4) as fake:
        env = {"STUDIO_TEXT_MODEL": "openai:fake-model", "OPENAI_BASE_URL": fake.base_url}
        with app_process(tmp_path, env) as app:
            context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
            page = open_page(context, app.url, errors)
            chat(page, "Owls: how do they see at night?")
            page.get_by_text("Rename · delete · export").click()
            today = datetime.now().strftime("%Y-%m-%d")

            with page.expect_download(timeout=10000) as md:
                page.get_by_role("button", name="Export Markdown").click()
            assert md.value.suggested_filename == f"owls-how-do-they-see-at-night-{today}.md"
            text = Path(md.value.path()).read_text(encoding="utf-8")
            assert text.startswith("# Owls: how do they see at night?") and "owls0 how1" in text

            with page.expect_download(timeout=10000) as js:
                page.get_by_role("button", name="Export JSON").click()
            assert js.value.suggested_filename == f"owls-how-do-they-see-at-night-{today}.json"
            data = json.loads(Path(js.value.path()).read_text(encoding="utf-8"))
            assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
            assert data["messages"][0]["content"] == "Owls: how do they see at night?"
            # nothing else to click: no download link was left on the page
            assert page.locator("#chat-sidebar a[download]:visible").count() == 0
            shot(page, "export_desktop")
            assert not errors, errors  # (before closing: a closed page's aborted requests are no error of ours)
            context.close()


def test_a_long_first_message_gets_a_short_title_at_once_then_the_models(browser, tmp_path):
    errors: list[str] = []
    long = "Could you please explain to me, step by step, how owls manage to see so well in the dark?"
    with fake_openai_server(reply_text="Owl night vision", chunk_delay=0.3) as fake:
        env = {"STUDIO_TEXT_MODEL": "openai:fake-model", "OPENAI_BASE_URL": fake.base_url}
        with app_process(tmp_path, env) as app:
            context = browser.new_context(viewport=DESKTOP)
            page = open_page(context, app.url, errors)
            box = page.locator("#chat-input textarea")
            box.fill(long)
            box.press("Enter")
            seen: list[str] = []

            def titled() -> bool:
                items = page.locator("#chat-conversations button").all_inner_texts()
                if items and (not seen or seen[-1] != items[0]):
                    seen.append(items[0])
                return bool(items) and items[0] == "Owl night vision"

            t0 = time.monotonic()
            wait_for(titled, 30, "the model's title in the list")
            # first the short title, one line of whole words, while the reply streamed; then the model's
            assert seen[0] == "Could you please explain to me, step…", seen
            assert seen[-1] == "Owl night vision" and time.monotonic() - t0 < 30
            height, line = page.evaluate(
                "() => { const b = document.querySelector('#chat-conversations button');"
                " return [b.getBoundingClientRect().height, parseFloat(getComputedStyle(b).lineHeight)]; }"
            )
            assert height < 2 * line  # one line in the list (two would be twice the line and the padding)
            assert not errors, errors
            page.reload()  # (streams still open abort as the page unloads, and Gradio logs that)
            wait_for(lambda: "Owl night vision" in list_text(page), 15, "the title kept across a reload")
            errors.clear()
            assert not errors, errors  # (before closing: a closed page's aborted requests are no error of ours)
            context.close()
