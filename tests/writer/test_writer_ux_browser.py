"""The writer tab as people use it (issue 12), in real headless Chromium against the real app process and a fake
OpenAI server: a rewrite of the part selected in the draft is shown beside the original with the changes marked and
is kept only on Accept; hostile model text in it stays text; "Into" shows only for Translate; variants stream side
by side with no overlay and the draft waits for a pick; a reload reopens the last draft with its brief; actions show
when they apply; on a phone the draft comes first and Write stays in reach; axe finds nothing serious."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support.app_process import app_process
from tests.support.axe import blocking, describe
from tests.support.browser import wait_for
from tests.support.openai_servers import fake_openai_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SHOTS = Path(os.environ.get("WRITER_SHOTS", "/tmp/shots_writer"))
COPY = (
    "Meet the bamboo travel mug that keeps your coffee hot all morning. The lid clicks shut, so nothing spills "
    "in your bag on the way to work. It is light, it rinses clean in seconds, and it goes in the dishwasher. "
    "Every mug replaces hundreds of paper cups each year, which your planet will thank you for. Add to cart."
)
HOSTILE = 'Fresh plain words <script>window.pwned = 1</script> <img src=x onerror="window.pwned = 2"> for readers.'
DRAFT = "The first line stays as it is.\n\nThis middle sentence is slow and very wordy indeed.\n\nThe last line stays."


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def pick(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def box(page, elem_id: str):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def open_writer(browser, url: str, viewport: dict, permissions: list[str] | None = None):
    context = browser.new_context(viewport=viewport, permissions=permissions or [])
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("() => window.gradio_config !== undefined")
    page.get_by_role("tab", name="Writer").click()
    box(page, "writer-topic").wait_for()
    page.wait_for_timeout(800)  # the load event reopens the last draft
    return context, page, errors


def draft_box(page):
    return page.locator("#writer-draft textarea")


def no_overlay_on(page, elem_id: str) -> bool:
    """Gradio's loading overlay (a status tracker drawn over the component) is not shown on it."""
    return page.evaluate(
        """(id) => {
            const el = document.getElementById(id);
            return !Array.from(el.querySelectorAll('.wrap')).some(w =>
                w.classList.contains('generating') || w.classList.contains('pending') ||
                (w.classList.contains('full') && w.offsetParent !== null && w.getBoundingClientRect().height > 20));
        }""",
        elem_id,
    )


def test_rewrite_of_a_selection_is_reviewed_then_accepted_or_discarded_and_hostile_text_stays_text(browser, tmp_path):
    with fake_openai_server(reply_text=HOSTILE, response_formats=(), response_format_refusal=0, chunk_delay=0.02) as f:
        env = {"STUDIO_TEXT_MODEL": "openai:fake-model", "OPENAI_BASE_URL": f.base_url}
        with app_process(tmp_path, env) as app:
            context, page, errors = open_writer(browser, app.url, DESKTOP, ["clipboard-read", "clipboard-write"])
            # nothing to rewrite or export yet; Stop only while something runs; Write is the main action
            assert page.locator("#writer-export-md").is_hidden() and page.locator("#writer-rewrite").is_hidden()
            assert page.locator("#writer-stop").count() == 0 or page.locator("#writer-stop").is_hidden()
            assert "primary" in (page.locator("#writer-write").get_attribute("class") or "")
            assert page.locator("#writer-selection").count() == 0  # no second box to paste a selection into
            assert page.locator("#writer-undo").is_hidden()  # nothing to undo yet
            assert page.get_by_role("textbox", name=re.compile(r"^Draft\b")).count() == 1  # the draft has a name
            write = page.locator("#writer-write").bounding_box()  # the main action in sight on the first screen
            assert write is not None and write["y"] + write["height"] <= DESKTOP["height"], write
            assert not (v := blocking(page, "#writer-tab")), describe(v)

            draft = draft_box(page)
            draft.fill(DRAFT)
            draft.blur()  # leave the box: the draft is kept
            wait_for(lambda: page.locator("#writer-export-md").is_visible(), 10, "export to show with a draft")
            assert page.locator("#writer-rewrite").is_visible()

            # "Into (translate)" only for Translate
            lang = page.locator("#writer-rewrite-lang")
            assert lang.count() == 0 or lang.is_hidden()
            pick(page, "writer-rewrite-op", "Translate")
            wait_for(lambda: page.locator("#writer-rewrite-lang").is_visible(), 10, "the language field")
            pick(page, "writer-rewrite-op", "Simpler")
            wait_for(lambda: page.locator("#writer-rewrite-lang").is_hidden(), 10, "the language field to go")

            # select the middle sentence in the draft itself, then Rewrite
            middle = "This middle sentence is slow and very wordy indeed."
            start = DRAFT.index(middle)
            draft.evaluate("(ta, r) => { ta.focus(); ta.setSelectionRange(r[0], r[1]); }", [start, start + len(middle)])
            page.locator("#writer-rewrite").click()
            review = page.locator("#writer-review")
            wait_for(lambda: "words added" in review.inner_text(), 30, "the rewrite to be shown")
            shot(page, "desktop-rewrite-review")
            sent = f.chat_requests[-1].body["messages"][-1]["content"]
            assert middle in sent and "first line" not in sent  # only the selected part went to the model
            assert draft.input_value() == DRAFT  # nothing changed until Accept
            # the changes are marked with words, the original beside the rewrite, and the model's markup is text
            diff = page.locator("#writer-diff")
            assert diff.locator("del").count() >= 1 and diff.locator("ins").count() >= 1
            assert "removed:" in diff.locator("del").first.text_content()
            assert "added:" in diff.locator("ins").first.text_content()
            rewrite_side = (
                diff.locator(".writer-diff-side")
                .nth(1)
                .evaluate(
                    "(el) => { const c = el.cloneNode(true); c.querySelectorAll('.writer-sr').forEach(s => s.remove());"
                    " return c.querySelector('.writer-diff-text').textContent; }"
                )
            )
            assert rewrite_side == HOSTILE  # shown as text, character for character
            assert diff.locator("script, img").count() == 0
            assert page.evaluate("() => window.pwned") is None
            assert not (v := blocking(page, "#writer-tab")), describe(v)
            assert page.locator("#writer-stop").is_hidden()  # the rewrite is over

            page.locator("#writer-discard").click()
            wait_for(lambda: review.is_hidden(), 10, "the review to close")
            assert draft.input_value() == DRAFT

            draft.evaluate("(ta, r) => { ta.focus(); ta.setSelectionRange(r[0], r[1]); }", [start, start + len(middle)])
            page.locator("#writer-rewrite").click()
            wait_for(lambda: review.is_visible() and "words added" in review.inner_text(), 30, "the rewrite again")
            page.locator("#writer-accept").click()
            wait_for(lambda: draft.input_value() != DRAFT, 10, "the rewrite to be accepted")
            accepted = draft.input_value()
            # only the selected span changed: the lines around it are exactly as they were
            assert accepted.startswith("The first line stays as it is.\n\n")
            assert accepted.endswith("\n\nThe last line stays.")
            assert middle not in accepted and "Fresh plain words" in accepted
            assert review.is_hidden()
            wait_for(lambda: page.locator("#writer-undo").is_visible(), 10, "Undo once there is something to undo")
            page.locator("#writer-copy").click()
            wait_for(lambda: page.evaluate("() => navigator.clipboard.readText()") == accepted, 10, "the copied draft")

            # the accepted text is the stored draft's: a reload brings it back
            reload_quietly(page, errors)
            page.get_by_role("tab", name="Writer").click()
            wait_for(lambda: draft_box(page).input_value() == accepted, 15, "the accepted draft after a reload")
            assert page.evaluate("() => window.pwned") is None
            assert not errors, errors
            context.close()


def test_variants_stream_side_by_side_the_draft_waits_for_a_pick_and_a_reload_reopens_it(browser, tmp_path):
    with fake_openai_server(chunk_delay=0.05, reply_text=COPY) as fake:
        env = {"STUDIO_TEXT_MODEL": "openai:fake-model", "OPENAI_BASE_URL": fake.base_url}
        with app_process(tmp_path, env) as app:
            context, page, errors = open_writer(browser, app.url, DESKTOP)
            pick(page, "writer-template", "Product description")
            wait_for(lambda: "Product" in page.locator("#writer-topic").inner_text(), 10, "the template's labels")
            box(page, "writer-topic").fill("Bamboo travel mug")
            box(page, "writer-keywords").fill("bamboo, travel")
            box(page, "writer-length").fill("60")
            page.locator("#writer-variants input[type=number]").fill("2")
            page.locator("#writer-variants input[type=number]").press("Enter")
            page.locator("#writer-write").click()

            v1 = page.locator("#writer-variant-1 textarea")
            v2 = page.locator("#writer-variant-2 textarea")
            draft = draft_box(page)
            wait_for(lambda: page.locator("#writer-stop").is_visible(), 10, "Stop while writing")
            wait_for(lambda: len(v1.input_value().split()) >= 5, 30, "variant 1 to stream in")
            use1 = page.locator("#writer-use-1")
            assert use1.is_disabled(), (use1.evaluate("b => b.outerHTML"), v1.input_value())  # not before it is written
            assert draft.input_value() == ""  # the draft waits for a pick
            assert no_overlay_on(page, "writer-draft") and no_overlay_on(page, "writer-variant-1")
            page.locator("#writer-output").scroll_into_view_if_needed()
            shot(page, "desktop-variants-streaming")
            wait_for(lambda: page.locator("#writer-use-2").is_enabled(), 40, "the variants to finish")
            assert len(v2.input_value().split()) == 60 and draft.input_value() == ""
            wait_for(lambda: page.locator("#writer-stop").is_hidden(), 10, "Stop to go once written")
            shot(page, "desktop-variants-done")
            page.locator("#writer-use-2").click()
            wait_for(lambda: draft.input_value() == v2.input_value(), 10, "variant 2 in the draft")
            assert "present: bamboo" in page.locator("#writer-stats").inner_text()
            assert not (v := blocking(page, "#writer-tab")), describe(v)
            picked = draft.input_value()

            # a reload reopens the last draft with its brief
            reload_quietly(page, errors)
            page.get_by_role("tab", name="Writer").click()
            wait_for(lambda: draft_box(page).input_value() == picked, 15, "the draft after a reload")
            assert box(page, "writer-topic").input_value() == "Bamboo travel mug"
            assert page.locator("#writer-template input").input_value() == "Product description"
            assert box(page, "writer-keywords").input_value() == "bamboo, travel"
            assert errors == [], errors
            context.close()


def test_on_a_phone_the_draft_comes_first_and_write_stays_in_reach(browser, tmp_path):
    with fake_openai_server(chunk_delay=0.01, reply_text=COPY) as fake:
        env = {"STUDIO_TEXT_MODEL": "openai:fake-model", "OPENAI_BASE_URL": fake.base_url}
        with app_process(tmp_path, env) as app:
            context, page, errors = open_writer(browser, app.url, PHONE)
            shot(page, "phone-first-screen")
            assert not (v := blocking(page, "#writer-tab")), describe(v)
            top = page.locator("#writer-draft").bounding_box()
            assert top is not None and top["y"] < PHONE["height"] - 200, top  # the draft is on the first screen
            brief = page.locator("#writer-topic").bounding_box()
            assert brief is not None and brief["y"] > top["y"]  # the brief comes after it
            write = page.locator("#writer-write")
            # Write stays in reach: on screen at the bottom, also when scrolled down to the brief
            for scroll in (0, 1200):
                page.evaluate("(y) => window.scrollTo(0, y)", scroll)
                page.wait_for_timeout(200)
                b = write.bounding_box()
                assert b is not None and b["y"] >= 0 and b["y"] + b["height"] <= PHONE["height"], (scroll, b)
            box(page, "writer-topic").fill("Bamboo travel mug")
            write.click()
            wait_for(lambda: page.locator("#writer-stop").is_visible(), 10, "Stop while writing")
            page.wait_for_timeout(300)
            shown = page.locator("#writer-draft").bounding_box()  # Write brought the draft into view
            assert shown is not None and 0 <= shown["y"] < PHONE["height"] / 2, shown
            shot(page, "phone-writing")
            wait_for(lambda: page.locator("#writer-stop").is_hidden(), 60, "the piece to be written")
            assert len(draft_box(page).input_value().split()) >= 20
            page.evaluate("() => window.scrollTo(0, 0)")
            page.wait_for_timeout(300)
            shot(page, "phone-written")
            assert not (v := blocking(page, "#writer-tab")), describe(v)
            assert errors == [], errors
            context.close()


def reload_quietly(page, errors: list[str]) -> None:
    """Reload, leaving out only what Gradio logs for the streams cut by the old page unloading (an AbortError, or
    'Connection errored out'); anything else, and anything the new page logs, still counts."""
    before = len(errors)
    page.reload()
    page.wait_for_function("() => window.gradio_config !== undefined")
    errors[before:] = [e for e in errors[before:] if not (e.startswith("AbortError") or "Connection errored out" in e)]


def test_what_is_typed_before_the_last_draft_reopens_is_kept(browser, tmp_path):
    """The page is usable at once: a brief typed while the load event that reopens the last draft is still on its
    way (held back here at the network level) is not overwritten when it arrives; with nothing typed, it reopens."""
    import json
    import urllib.request

    with fake_openai_server(reply_text=COPY) as fake:
        env = {"STUDIO_TEXT_MODEL": "openai:fake-model", "OPENAI_BASE_URL": fake.base_url}
        with app_process(tmp_path, env) as app:
            context, page, errors = open_writer(browser, app.url, DESKTOP)
            pick(page, "writer-template", "Product description")
            wait_for(lambda: "Product" in page.locator("#writer-topic").inner_text(), 10, "the template's labels")
            box(page, "writer-topic").fill("Bamboo travel mug")
            box(page, "writer-length").fill("40")
            page.locator("#writer-write").click()
            wait_for(lambda: len(draft_box(page).input_value().split()) >= 20, 30, "the draft")
            wait_for(lambda: page.locator("#writer-stop").is_hidden(), 10, "the end of writing")

            with urllib.request.urlopen(app.url + "config", timeout=10) as r:
                config = json.load(r)
            loads = {d["id"] for d in config["dependencies"] if any(t[1] == "load" for t in d["targets"])}
            held: list = []
            state = {"hold": True}

            def route(r):
                body = r.request.post_data or ""
                payload = json.loads(body) if body.startswith("{") else {}
                if state["hold"] and payload.get("fn_index") in loads:
                    held.append(r)
                else:
                    r.continue_()

            page.route(re.compile(r".*/gradio_api/(queue/join|run/predict).*"), route)
            reload_quietly(page, errors)
            page.get_by_role("tab", name="Writer").click()
            topic = box(page, "writer-topic")
            topic.wait_for()
            topic.fill("Solar lantern for campers")
            wait_for(lambda: held, 10, "the load events to be held")
            state["hold"] = False
            for r in held:
                r.continue_()
            page.wait_for_timeout(2500)  # the reopen arrives; it must leave the typed brief alone
            assert topic.input_value() == "Solar lantern for campers"
            assert draft_box(page).input_value() == ""

            page.unroute(re.compile(r".*/gradio_api/(queue/join|run/predict).*"))
            reload_quietly(page, errors)  # nothing typed this time: the last draft reopens
            page.get_by_role("tab", name="Writer").click()
            wait_for(lambda: box(page, "writer-topic").input_value() == "Bamboo travel mug", 15, "the reopened brief")
            assert len(draft_box(page).input_value().split()) >= 20
            assert not errors, errors
            context.close()
