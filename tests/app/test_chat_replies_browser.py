"""The chat's reply lifecycle in real headless Chromium against the real app and a fake OpenAI server: a message sent
during a turn, reply versions, editing any message (branches), a reply cut by the token limit and Continue, which
actions show when, the phone layout, and axe on the chat at both sizes."""

from __future__ import annotations

import contextlib

import pytest

from tests.support.app_process import app_process
from tests.support.axe import blocking, describe
from tests.support.browser import wait_for
from tests.support.openai_servers import fake_openai_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
ACTIONS = ("#chat-send", "#chat-stop", "#chat-continue", "#chat-regenerate", "#chat-edit", "#chat-clear")


@contextlib.contextmanager
def chat_app(tmp_path, **fake_options):
    with fake_openai_server(**fake_options) as fake:
        env = {"STUDIO_TEXT_MODEL": "openai:fake-model", "OPENAI_BASE_URL": fake.base_url}
        with app_process(tmp_path, env) as app:
            yield app, fake


def _unload_noise(text: str) -> bool:
    """What Gradio logs for a stream cut by the page unloading: an AbortError, or its 'Connection errored out'."""
    return text.startswith("AbortError") or text.strip() == "Unexpected error Connection errored out."


def reload(page) -> None:
    page.studio_unloading = True
    page.reload()


@contextlib.contextmanager
def chat_page(browser, url: str, viewport=DESKTOP):
    """A page on the chat with its console errors collected (the test asserts there are none). While the page
    unloads for a reload (see reload()), the aborts of the streams it still had open (AbortError, 'Connection errored out') are Gradio's log of the unload,
    not errors: only those are left out, and only until the new page has loaded."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    errors: list[str] = []
    page.studio_unloading = False

    def on_console(m) -> None:
        if m.type == "error" and not (page.studio_unloading and _unload_noise(m.text)):
            errors.append(m.text)

    def on_load(_page) -> None:
        page.studio_unloading = False

    page.on("console", on_console)
    page.on("load", on_load)
    page.goto(url)
    page.locator("#chat-input textarea").wait_for()
    page.wait_for_function("() => window.gradio_config !== undefined")
    page.wait_for_timeout(500)
    try:
        yield page, errors
    finally:
        context.close()


def bots(page) -> list[str]:
    return page.locator('#chatbot [data-testid="bot"]').all_inner_texts()


def users(page) -> list[str]:
    return [t.split("\n\n")[0].strip() for t in page.locator('#chatbot [data-testid="user"]').all_inner_texts()]


def send(page, text: str) -> None:
    box = page.locator("#chat-input textarea")
    box.fill(text)
    box.press("Enter")


def shown(page) -> dict[str, bool]:
    return {sel: page.locator(sel).is_visible() for sel in ACTIONS}


def idle(page) -> bool:
    return page.locator("#chat-send").is_visible() and not page.locator("#chat-stop").is_visible()


def wait_idle(page, what: str, timeout: float = 30) -> None:
    wait_for(lambda: "tok/s" in page.locator("#chat-stats").inner_text() and idle(page), timeout, what)


def set_max_new_tokens(page, n: int) -> None:
    page.get_by_text("System prompt and sampling").click()
    box = page.locator("#chat-max-new input[type=number]")
    box.wait_for(state="visible")

    def typed() -> bool:  # typed again if the box, drawn as the section opened, took its first value after us
        if box.input_value() != str(n):
            box.fill(str(n))
            box.press("Enter")
        return box.input_value() == str(n)

    wait_for(typed, 10, "the token limit")


def test_a_message_sent_during_a_turn_is_refused_with_its_text_kept_and_sent_later_in_order(browser, tmp_path):
    # slow: the reply's first byte waits 3 s, as a model still loading does; then it streams
    with chat_app(tmp_path, slow=3.0, chunk_delay=0.05, reply_words=30) as (app, fake):
        with chat_page(browser, app.url) as (page, errors):
            assert shown(page) == {sel: sel == "#chat-send" for sel in ACTIONS}  # an empty chat: Send only
            send(page, "first question")
            # shown at once, before any of the reply exists, and the box is free again
            wait_for(lambda: users(page) == ["first question"], 2, "the message to show at once")
            assert page.locator("#chat-input textarea").input_value() == ""
            wait_for(lambda: page.locator("#chat-stop").is_visible(), 5, "Stop while the turn runs")
            assert shown(page) == {sel: sel == "#chat-stop" for sel in ACTIONS}

            send(page, "second question")  # while the reply has not even started
            page.get_by_text("A reply is still being written").first.wait_for(timeout=10000)
            assert page.locator("#chat-input textarea").input_value() == "second question"  # kept
            assert users(page) == ["first question"]

            wait_for(lambda: "question3" in " ".join(bots(page)), 20, "the reply to stream")
            send(page, "second question")  # again while it streams
            wait_for(lambda: page.get_by_text("A reply is still being written").count() >= 1, 10, "the refusal")
            assert page.locator("#chat-input textarea").input_value() == "second question"
            wait_idle(page, "the first reply to finish")
            assert users(page) == ["first question"] and len(bots(page)) == 1
            assert "question29" in bots(page)[0]

            page.locator("#chat-send").click()  # the kept text, sent now: answered after the first
            wait_for(lambda: len(bots(page)) == 2 and "second0" in bots(page)[1], 30, "the second reply")
            wait_idle(page, "the second reply to finish")
            assert users(page) == ["first question", "second question"]
            assert len(fake.chat_requests) == 2
            assert [m["content"] for m in fake.chat_requests[1].body["messages"] if m["role"] == "user"] == [
                "first question",
                "second question",
            ]
            reload(page)
            page.locator('#chatbot [data-testid="bot"]').nth(1).wait_for(timeout=15000)
            assert users(page) == ["first question", "second question"]
            assert errors == []


def test_regenerate_keeps_versions_to_flip_between_and_the_chat_continues_from_the_shown_one(browser, tmp_path):
    with chat_app(tmp_path, reply_words=40) as (app, fake):
        with chat_page(browser, app.url) as (page, errors):
            send(page, "olive")
            wait_idle(page, "the first reply")
            first = bots(page)[0]
            assert "olive39" in first and "1/" not in first  # one version: no controls
            set_max_new_tokens(page, 16)  # so the second version differs: shorter, cut by the limit
            page.locator("#chat-regenerate").click()
            wait_for(lambda: "2/2" in bots(page)[-1] and idle(page), 30, "version 2")
            assert "olive15" in bots(page)[0] and "olive16" not in bots(page)[0]
            assert page.locator("#chat-continue").is_visible()  # version 2 was cut by the token limit

            page.locator("#chatbot").get_by_role("button", name="Previous version").click()
            wait_for(lambda: "1/2" in bots(page)[0], 10, "version 1 shown")
            assert "olive39" in bots(page)[0]
            assert not page.locator("#chat-continue").is_visible()  # version 1 ended by itself
            assert page.locator("#chatbot").get_by_role("button", name="Previous version").is_disabled()
            label = page.locator('#chatbot [data-testid="bot"]').first.get_attribute("aria-label") or ""
            assert "olive39" in label and "chat-versions" not in label  # named by its text, not our markup

            reload(page)  # the choice is kept
            page.locator('#chatbot [data-testid="bot"]').first.wait_for(timeout=15000)
            wait_for(lambda: "1/2" in bots(page)[0] and "olive39" in bots(page)[0], 10, "version 1 after reload")

            send(page, "pepper")  # the conversation goes on from version 1
            wait_for(lambda: len(bots(page)) == 2 and idle(page), 30, "the next reply")
            history = fake.chat_requests[-1].body["messages"]
            assert history[-2]["role"] == "assistant" and "olive39" in history[-2]["content"]
            assert errors == []


def test_any_message_is_edited_in_place_and_the_old_continuation_stays_as_a_branch(browser, tmp_path):
    with chat_app(tmp_path, reply_words=5) as (app, fake):
        with chat_page(browser, app.url) as (page, errors):
            send(page, "cats purr")
            wait_idle(page, "reply 1")
            send(page, "dogs bark")
            wait_for(lambda: len(bots(page)) == 2 and idle(page), 30, "reply 2")

            page.locator('#chatbot button[aria-label="Edit"]').first.click()  # the FIRST message, not the last
            edit_box = page.locator("#chatbot textarea").first
            edit_box.wait_for()
            assert edit_box.input_value() == "cats purr"
            edit_box.fill("birds sing")
            page.locator("#chatbot").get_by_role("button", name="Submit").click()
            wait_for(lambda: users(page) == ["birds sing"] and "birds0" in " ".join(bots(page)), 30, "the branch")
            wait_for(lambda: idle(page), 30, "the branch's reply to finish")
            assert "2/2" in page.locator('#chatbot [data-testid="user"]').first.inner_text()
            assert fake.chat_requests[-1].body["messages"][-1] == {"role": "user", "content": "birds sing"}

            # the old branch, whole, a click away
            page.locator("#chatbot").get_by_role("button", name="Previous edit").click()
            wait_for(lambda: users(page) == ["cats purr", "dogs bark"], 10, "the old branch")
            assert "cats0" in bots(page)[0] and "dogs0" in bots(page)[1]

            # Edit last message opens the same in-place editor on the last message of the user's
            page.locator("#chat-edit").click()
            wait_for(lambda: page.locator("#chatbot textarea").count() == 1, 5, "the edit box")
            assert page.locator("#chatbot textarea").first.input_value() == "dogs bark"
            page.locator("#chatbot").get_by_role("button", name="Cancel").click()
            # a message shown with its "‹ 1/2 ›" controls is edited as its text alone
            page.locator('#chatbot button[aria-label="Edit"]').first.click()
            wait_for(lambda: page.locator("#chatbot textarea").first.input_value() == "cats purr", 5, "plain text")
            assert errors == []


def test_a_reply_cut_by_the_token_limit_is_marked_and_continue_appends_to_it(browser, tmp_path):
    with chat_app(tmp_path, reply_words=40) as (app, fake):
        with chat_page(browser, app.url) as (page, errors):
            set_max_new_tokens(page, 16)
            send(page, "comet tail")
            wait_idle(page, "the cut reply")
            cut = bots(page)[0]
            assert "reply cut: length" in cut and "tail15" in cut and "comet16" not in cut
            assert "cut: length" in page.locator("#chat-stats").inner_text()
            assert page.locator("#chat-continue").is_visible()
            assert page.locator("#chat-continue").inner_text().strip() == "Continue reply"

            page.locator("#chat-continue").click()
            wait_for(lambda: "continue0" in bots(page)[0] and idle(page), 30, "the continuation")
            longer = bots(page)
            assert len(longer) == 1 and users(page) == ["comet tail"]  # the same reply, longer
            assert longer[0].startswith(cut.split("\n\n")[0].strip())
            assert len(longer[0].split()) > len(cut.split())
            sent = fake.chat_requests[-1].body["messages"]
            assert sent[-2]["role"] == "assistant" and sent[-2]["content"].startswith("comet0 tail1")
            assert errors == []


def test_actions_show_where_they_apply_with_words_for_names(browser, tmp_path):
    with chat_app(tmp_path, reply_words=6) as (app, _):
        with chat_page(browser, app.url) as (page, errors):
            assert shown(page) == {sel: sel == "#chat-send" for sel in ACTIONS}
            send(page, "hello there")
            wait_idle(page, "a reply")
            assert shown(page) == {
                "#chat-send": True,
                "#chat-stop": False,
                "#chat-continue": False,
                "#chat-regenerate": True,
                "#chat-edit": True,
                "#chat-clear": True,
            }
            for sel, name in (("#chat-regenerate", "Regenerate"), ("#chat-edit", "Edit last message")):
                assert page.locator(sel).inner_text().strip() == name  # a word, not a glyph alone
            page.locator("#chat-clear").click()
            wait_for(lambda: not bots(page), 10, "the cleared chat")
            wait_for(lambda: shown(page) == {sel: sel == "#chat-send" for sel in ACTIONS}, 10, "actions hidden")
            send(page, "again")
            wait_idle(page, "a reply")
            page.get_by_role("button", name="+ New chat").click()  # a new, empty chat hides them again
            wait_for(lambda: shown(page) == {sel: sel == "#chat-send" for sel in ACTIONS}, 10, "new chat")
            assert errors == []


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_input_is_on_the_first_screen_and_axe_finds_nothing_serious(browser, tmp_path, viewport):
    with chat_app(tmp_path, reply_words=8) as (app, _):
        with chat_page(browser, app.url, viewport) as (page, errors):
            page.evaluate("window.scrollTo(0, 0)")
            box = page.locator("#chat-input textarea").bounding_box()
            send_btn = page.locator("#chat-send").bounding_box()
            chat = page.locator("#chatbot").bounding_box()
            assert box and send_btn and chat
            for what, b in (("message box", box), ("Send", send_btn)):
                assert b["y"] >= 0 and b["y"] + b["height"] <= viewport["height"], (what, b)
            assert chat["y"] < box["y"]  # the conversation, then its input
            sidebar = page.locator("#chat-sidebar").bounding_box()
            assert sidebar
            new_chat = page.get_by_role("button", name="+ New chat")
            if viewport is PHONE:  # the list comes after the conversation and its input, folded
                assert sidebar["y"] > box["y"] + box["height"]
                assert not new_chat.is_visible()
                page.locator("#chat-list-panel").get_by_text("Conversations").first.click()
                wait_for(new_chat.is_visible, 5, "the unfolded list")
            else:
                assert new_chat.is_visible()
            assert not (v := blocking(page, "#chat-main")), describe(v)
            send(page, "plum")
            wait_idle(page, "a reply")
            page.locator("#chat-regenerate").click()
            wait_for(lambda: "2/2" in bots(page)[-1] and idle(page), 30, "version 2")
            assert not (v := blocking(page, "#chat-main")), describe(v)
            assert errors == []
