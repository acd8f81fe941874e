"""A model reply full of hostile HTML, in real Chromium against the real app process: nothing of it
becomes markup (while it streams, when it is done, and after a reload from storage), it shows as text,
and nothing from it covers the page."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.support.app_process import app_process
from tests.support.browser import wait_for
from tests.support.openai_servers import fake_openai_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOSTILE = (
    'Hello <div id="cover" style="position:fixed;top:0;left:0;width:100vw;height:100vh;z-index:99999;'
    'background:rgb(200,0,0)">COVERED</div>\n\n'
    '<form action="http://127.0.0.1:9/steal"><input type="password" name="pw" placeholder="Password">'
    "<button>Log in</button></form>\n\n"
    '<iframe src="http://127.0.0.1:9/"></iframe> <img src=x onerror="document.title=\'pwned\'"> '
    '<style>body{background:rgb(0,255,0)}</style> <svg onload="document.title=\'pwned\'"><circle r="40"/></svg>\n\n'
    "<details open ontoggle=\"document.title='pwned'\"><summary>sum</summary>det</details> "
    '<marquee>MARQUEE</marquee> <p style="position:fixed;inset:0">para</p> <b>bold ok</b> '
    "[click](javascript:alert(1)) ![pic](data:image/png;base64,AAAA)\n\n"
    '```mermaid\ngraph TD; A["<div style=position:fixed>x</div>"]\n```\n\nEND-OF-REPLY\n\n'
    '<span class="chat-read"><button class="chat-read-aloud chat-r-1" title="Read aloud"></button>'
    '<button class="chat-send-to chat-to-writer chat-sw-1" title="Send to Writer"></button>'
    '<button class="chat-send-to chat-to-speech chat-ss-1" title="Send to Speech"></button></span>'
)
SHOWN_AS_TEXT = [
    '<div id="cover" style="position:fixed',
    '<form action="http://127.0.0.1:9/steal">',
    '<input type="password"',
    "<iframe src=",
    "<style>body{background:rgb(0,255,0)}</style>",
    "<svg onload=",
    "<marquee>MARQUEE</marquee>",
    "[click](javascript:alert(1))",
]

REPLY = '#chatbot [data-testid="bot"] .md'
FORBIDDEN = "form, input, button, iframe, style, svg, img, marquee, object, embed, video, audio, link, meta, base, div"
# The app's own controls, added to a finished reply after its text was made safe (core/chat/display.py
# read_control): exactly <span class="chat-read"> holding three empty buttons, "Read aloud" (chat-read-aloud
# chat-r-<id>), "Send to Writer" (chat-send-to chat-to-writer chat-sw-<id>) and "Send to Speech" (chat-send-to
# chat-to-speech chat-ss-<id>), one message id for all three, as the last paragraph's last element. Anything else
# with those classes still counts.
OURS = """(e) => {
  const span = e.closest('span.chat-read');
  if (!span || span.className !== 'chat-read' || span.getAttributeNames().join() !== 'class') return false;
  const want = [['chat-read-aloud chat-r-', 'Read aloud'], ['chat-send-to chat-to-writer chat-sw-', 'Send to Writer'],
                ['chat-send-to chat-to-speech chat-ss-', 'Send to Speech']];
  const buttons = [...span.children];
  if (buttons.length !== want.length || span.textContent) return false;
  const id = (buttons[0].className.match(/^chat-read-aloud chat-r-(\\d+)$/) || [])[1];
  if (!id) return false;
  return buttons.every((b, i) => b.tagName === 'BUTTON' && b.childElementCount === 0 && !b.textContent
      && b.className === want[i][0] + id && b.title === want[i][1]
      && b.getAttributeNames().filter((a) => a !== 'type').sort().join() === 'class,title')
    && !span.nextElementSibling
    && span.parentElement === [...span.closest('.md').querySelectorAll('p')].pop();
}"""

# Watches the reply area from before sending: anything forbidden that ever renders, even for one
# streaming update (a half-received tag), is recorded.
WATCH = (
    """(sel) => {
  window.__hostile = [];
  const ours = """
    + OURS
    + """;
  const check = (el) => {
    if (!(el instanceof Element) || !el.closest('#chatbot [data-testid="bot"] .md')) return;
    for (const e of [el, ...el.querySelectorAll('*')]) {
      if (!e.closest('#chatbot [data-testid="bot"] .md') || e.matches('#chatbot [data-testid="bot"] .md')) continue;
      if (e.closest('.code_wrap') && !e.closest('pre')) continue;  // Gradio's own code block frame and copy button
      if (ours(e)) continue;
      if (e.matches(sel)) window.__hostile.push('element ' + e.tagName);
      for (const a of e.getAttributeNames())
        if (a === 'style' || a.startsWith('on') || a === 'id' || a === 'class' && e.tagName !== 'CODE')
          window.__hostile.push(e.tagName + '[' + a + ']');
      if (e.tagName === 'A' && /^\\s*(javascript|data|vbscript):/i.test(e.getAttribute('href') || ''))
        window.__hostile.push('href ' + e.getAttribute('href'));
    }
  };
  new MutationObserver((records) => records.forEach((r) => r.addedNodes.forEach(check)))
    .observe(document.body, {subtree: true, childList: true});
}"""
)

PAGE_STATE = (
    """(sel) => {
  const ours = """
    + OURS
    + """;
  const reply = [...document.querySelectorAll('#chatbot [data-testid="bot"] .md')];
  const inside = (e) => e && reply.some((r) => r.contains(e) && r !== e);
  const w = innerWidth, h = innerHeight;
  const points = [[8, 8], [w - 8, 8], [8, h - 8], [w - 8, h - 8], [w / 2, 8]];
  const heading = document.querySelector('h2');
  const hr = heading.getBoundingClientRect();
  return {
    forbidden: reply.flatMap((r) => [...r.querySelectorAll(sel)])
      .filter((e) => !(e.closest('.code_wrap') && !e.closest('pre')) && !ours(e)).map((e) => e.tagName),
    styled: reply.flatMap((r) => [...r.querySelectorAll('[style]')].map((e) => e.tagName)),
    positioned: reply.flatMap((r) => [...r.querySelectorAll('*')])
      .filter((e) => !(e.closest('.code_wrap') && !e.closest('pre')))
      .filter((e) => ['fixed', 'absolute', 'sticky'].includes(getComputedStyle(e).position)).map((e) => e.tagName),
    covered: points.filter(([x, y]) => inside(document.elementFromPoint(x, y))).length,
    heading_on_top: heading.contains(document.elementFromPoint(hr.left + hr.width / 2, hr.top + hr.height / 2)),
    title: document.title,
    body_background: getComputedStyle(document.body).backgroundColor,
    text: reply.map((r) => r.innerText).join('\\n'),
  };
}"""
)


def reply_text(page) -> str:
    return page.evaluate(f"() => [...document.querySelectorAll('{REPLY}')].map((e) => e.innerText).join('\\n')")


def _check_inert(state: dict) -> None:
    assert state["forbidden"] == [], state["forbidden"]
    assert state["styled"] == [] and state["positioned"] == [], (state["styled"], state["positioned"])
    assert state["covered"] == 0 and state["heading_on_top"], "an element from the reply covers the page"
    assert state["title"] != "pwned" and state["body_background"] != "rgb(0, 255, 0)"
    for snippet in SHOWN_AS_TEXT:
        assert snippet in state["text"], (snippet, state["text"][:2000])
    assert "END-OF-REPLY" in state["text"]


def test_hostile_html_in_a_reply_renders_as_text(browser, tmp_path):
    with fake_openai_server(reply_text=HOSTILE, chunk_delay=0.01) as fake:
        env = {"STUDIO_TEXT_MODEL": "openai:fake-model", "OPENAI_BASE_URL": fake.base_url}
        with app_process(tmp_path, env) as app:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(app.url)
            page.locator("#chat-input textarea").wait_for()
            page.wait_for_function("() => window.gradio_config !== undefined")
            page.wait_for_timeout(500)
            page.evaluate(WATCH, FORBIDDEN)
            box = page.locator("#chat-input textarea")
            box.fill("Say something hostile")
            box.press("Enter")
            wait_for(
                lambda: "tok/s" in page.locator("#chat-stats").inner_text() and "END-OF-REPLY" in reply_text(page),
                120,
                "the reply to finish",
            )
            page.wait_for_timeout(500)
            shot = Path(tempfile.gettempdir()) / "hostile_html_chat.png"
            page.screenshot(path=str(shot))
            hostile = page.evaluate("() => window.__hostile")
            assert hostile == [], hostile[:20]  # nothing rendered, even for one streaming update
            # the app's own Read aloud control is there once; the reply's forged copy of it is text
            for name in ("Read aloud", "Send to Writer", "Send to Speech"):
                assert page.locator("#chatbot").get_by_role("button", name=name).count() == 1, name
            _check_inert(page.evaluate(PAGE_STATE, FORBIDDEN))

            page.reload()  # the stored conversation comes back through display_messages
            page.locator(REPLY).first.wait_for(timeout=15000)
            wait_for(lambda: "END-OF-REPLY" in reply_text(page), 15, "the stored reply")
            page.wait_for_timeout(300)
            _check_inert(page.evaluate(PAGE_STATE, FORBIDDEN))
            context.close()
