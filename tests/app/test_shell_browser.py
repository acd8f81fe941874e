"""The page frame every tab shares, in real Chromium against the real app: a message sent the instant the page shows
gets its reply (the browser id exists before any event), every tab one tap away on a phone, and the colours of the
main action and of Stop."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from tests.support.app_process import app_process
from tests.support.browser import wait_for
from tests.support.openai_servers import fake_openai_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TABS = ("Chat", "Writer", "Condense", "Images", "Speech", "Library", "Models")

# Every toast the page shows, kept after it closes.
TOASTS = """() => {
  window.__toasts = [];
  new MutationObserver(() => {
    for (const el of document.querySelectorAll('.toast-body')) {
      if (!el.dataset.seen) { el.dataset.seen = '1'; window.__toasts.push(el.innerText); }
    }
  }).observe(document.body, {subtree: true, childList: true});
}"""

# A probe inside the app's container, coloured as the theme colours the stop variant (whether or not a tab shows one).
STOP_PROBE = """() => {
  const el = document.createElement('div');
  el.textContent = 'Stop';
  el.style.cssText = 'background: var(--button-cancel-background-fill); color: var(--button-cancel-text-color)';
  document.querySelector('.gradio-container').appendChild(el);
  return el;
}"""

# WCAG contrast of an element's text on its own background (both opaque here), and the background's lightness.
COLOURS = """(el) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => {
    const [r, g, b] = rgb(c).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const s = getComputedStyle(el);
  const [a, b] = [lum(s.color), lum(s.backgroundColor)].sort((x, y) => y - x);
  return {contrast: (a + 0.05) / (b + 0.05), background: lum(s.backgroundColor)};
}"""


def console_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def test_a_message_sent_the_instant_the_page_shows_gets_a_reply(browser, tmp_path):
    """Every load event is held back until the reply is on screen: the send cannot lean on any of them for its
    identity. The id it carried is the one the page keeps: the load events, and the page after a reload, send it."""
    with fake_openai_server(reply_words=12) as fake:
        env = {"STUDIO_TEXT_MODEL": "openai:fake-model", "OPENAI_BASE_URL": fake.base_url}
        with app_process(tmp_path, env) as app:
            context = browser.new_context(viewport=DESKTOP)
            page = context.new_page()
            errors = console_errors(page)
            with urllib.request.urlopen(app.url + "config", timeout=10) as r:
                config = json.load(r)
            loads = {d["id"] for d in config["dependencies"] if any(t[1] == "load" for t in d["targets"])}
            assert loads
            held, sent = [], []

            def route(r):
                body = r.request.post_data or ""
                payload = json.loads(body) if body.startswith("{") else {}
                sent.append(payload)
                if payload.get("fn_index") in loads and not released:
                    held.append(r)
                else:
                    r.continue_()

            released = False
            page.route(re.compile(r".*/gradio_api/(queue/join|run/predict).*"), route)
            page.goto(app.url)
            page.evaluate(TOASTS)
            box = page.locator("#chat-input textarea")
            box.wait_for(state="visible")
            box.fill("Hello there, first thing on this page")
            box.press("Enter")
            bot = page.locator('#chatbot [data-testid="bot"]')
            wait_for(lambda: bot.count() and len(bot.last.inner_text().split()) >= 10, 30, "the reply")
            assert held, "no load event was held: the test would not show the send needs none"
            released = True
            for r in held:
                r.continue_()
            page.wait_for_timeout(1500)  # the load events' results arrive; none may undo the reply
            assert page.locator('#chatbot [data-testid="user"]').last.inner_text().strip().startswith("Hello there")
            toasts = page.evaluate("() => window.__toasts")
            assert not toasts, toasts
            ids = {
                p["data"][0] for p in sent if p.get("data") and re.fullmatch(r"[A-Za-z0-9_-]{24}", str(p["data"][0]))
            }
            assert len(ids) == 1, ids  # the send and the load events carried one id, minted before any of them

            assert not errors, errors
            sent.clear()
            page.reload()  # streams still open abort as the page unloads (Gradio logs that): errors count from here
            page.locator('#chatbot [data-testid="user"]').first.wait_for(timeout=15000)
            errors.clear()
            assert "Hello there" in page.locator("#chat-conversations").inner_text()
            ids_after = {p["data"][0] for p in sent if p.get("data") and isinstance(p["data"][0], str)}
            assert ids & ids_after, (ids, ids_after)  # the same browser after a reload
            page.wait_for_timeout(500)
            assert not errors, errors
            context.close()


def test_every_tab_is_one_tap_away_on_a_phone_and_the_title_is_one_line(browser, tmp_path):
    with app_process(tmp_path) as app:
        context = browser.new_context(viewport=PHONE)
        page = context.new_page()
        errors = console_errors(page)
        page.goto(app.url)
        page.locator("#chat-input textarea").wait_for()
        assert page.locator(".overflow-menu").count() == 0 or not page.locator(".overflow-menu").first.is_visible()
        title = page.locator("#studio-title h2")
        box = title.bounding_box()
        line = float(page.evaluate("(el) => parseFloat(getComputedStyle(el).lineHeight)", title.element_handle()))
        assert box and box["height"] < 1.5 * line, (box, line)
        tops = set()
        for name in TABS:
            tab = page.get_by_role("tab", name=name)
            assert tab.is_visible(), name
            tb = tab.bounding_box()
            assert tb and tb["x"] >= 0 and tb["x"] + tb["width"] <= PHONE["width"], (name, tb)
            assert tb["height"] >= 24, (name, tb)  # a finger-sized target
            tops.add(round(tb["y"]))
            tab.click()
            wait_for(lambda t=tab: t.get_attribute("aria-selected") == "true", 5, f"{name} to open")
        assert len(tops) == 1, tops  # one row: the tab bar does not eat the first screen
        assert not errors, errors
        context.close()


def test_on_a_phone_the_first_run_chat_keeps_its_input_in_reach_and_pickers_full_width(browser, tmp_path):
    """The app as `make run` starts it (the embedded model, the first-run line and its offer above the chat): on a
    phone the message box is on the first screen, and each tab's model picker has the screen's width to show the
    model's name instead of sharing a row with "Get more models"."""
    with app_process(tmp_path) as app:
        context = browser.new_context(viewport=PHONE)
        page = context.new_page()
        errors = console_errors(page)
        page.goto(app.url)
        page.locator("#chat-model-note").wait_for()
        box = page.locator("#chat-input textarea").bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"], box
        send = page.locator("#chat-send").bounding_box()
        assert send and send["y"] + send["height"] <= PHONE["height"] and send["x"] + send["width"] <= PHONE["width"]
        for tab, picker in (("Chat", "#chat-model"), ("Condense", "#condense-model"), ("Images", "#image-model")):
            page.get_by_role("tab", name=tab).click()
            found = page.locator(picker)
            found.wait_for()
            width = found.bounding_box()["width"]
            assert width >= 0.75 * PHONE["width"], (tab, width)
        # the Models tab's table keeps readable columns and scrolls sideways rather than a letter a line
        page.get_by_role("tab", name="Models").click()
        heads = page.locator("#models-table thead th")
        heads.first.wait_for()
        widths = [heads.nth(i).bounding_box()["width"] for i in range(heads.count())]
        assert min(widths) >= 50 and widths[0] >= 150, widths
        assert not errors, errors
        context.close()


def test_the_main_action_stands_out_and_stop_is_calm(browser, tmp_path):
    """Light and dark: the primary button is a solid colour with text at 4.5:1 or more; Stop/Cancel's text reads
    at 4.5:1 on a ground that is no solid red block (pale in light mode, the dark surface in dark mode)."""
    with app_process(tmp_path) as app:
        for scheme in ("light", "dark"):
            context = browser.new_context(viewport=DESKTOP, color_scheme=scheme)
            page = context.new_page()
            page.goto(app.url)
            page.locator("#chat-input textarea").wait_for()
            page.get_by_role("tab", name="Condense").click()
            primary = page.locator("button.primary:visible").first
            primary.wait_for()
            p = page.evaluate(COLOURS, primary.element_handle())
            assert p["contrast"] >= 4.5, (scheme, p)
            stops = [page.evaluate_handle(STOP_PROBE)]  # tabs show their Stop only while something runs
            stops += [b.element_handle() for b in page.locator("button.stop:visible").all()]
            for stop in stops:
                s = page.evaluate(COLOURS, stop)
                assert s["contrast"] >= 4.5, (scheme, s)
                assert s["background"] > 0.8 if scheme == "light" else s["background"] < 0.05, (scheme, s)
            context.close()
