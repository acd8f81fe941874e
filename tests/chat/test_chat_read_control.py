"""The "Read aloud" control in reply bubbles (core/chat/display.py): on every finished or cut reply with text, carrying
the message id, never on the user's messages or a reply still streaming; on one line with the version controls; taken
out again wherever the bubble's text is wanted back."""

from __future__ import annotations

import re

from core.chat.display import display_messages, read_control, without_controls
from core.chat.store import Conversation, StoredMessage


def conv(*messages: StoredMessage) -> Conversation:
    return Conversation(id="c1", user_id="u", title="t", messages=list(messages))


def test_every_reply_with_text_gets_a_read_aloud_button_naming_its_message():
    bubbles = display_messages(
        conv(
            StoredMessage(7, "user", "hello"),
            StoredMessage(8, "assistant", "Hi **there**."),
            StoredMessage(9, "user", "and?"),
            StoredMessage(12, "assistant", "half a rep", status="cut", note="stopped"),
        )
    )
    assert [b["role"] for b in bubbles] == ["user", "assistant", "user", "assistant"]
    assert "chat-read" not in bubbles[0]["content"] and "chat-read" not in bubbles[2]["content"]
    for bubble, mid in ((bubbles[1], 8), (bubbles[3], 12)):
        found = re.findall(
            r'<button type="button" class="chat-read-aloud chat-r-(\d+)" title="Read aloud"></button>',
            bubble["content"],
        )
        assert found == [str(mid)], bubble["content"]
    assert bubbles[1]["content"].startswith('Hi **there**.\n\n<span class="chat-read">')
    assert "reply cut: stopped" in bubbles[3]["content"]  # the cut mark stays, the control follows it


def test_no_control_while_streaming_or_without_text():
    assert read_control(StoredMessage(3, "assistant", "partial", status="streaming")) == ""
    assert read_control(StoredMessage(3, "assistant", "   ", status="cut", note="error")) == ""
    assert read_control(StoredMessage(3, "user", "a question")) == ""
    bubble = display_messages(conv(StoredMessage(1, "user", "q"), StoredMessage(2, "assistant", "x", "streaming")))[1]
    assert "chat-read" not in bubble["content"] and bubble["content"].endswith("▌")


def test_read_aloud_and_version_controls_share_one_line_and_both_come_out_again():
    reply = StoredMessage(5, "assistant", "The answer is 4.", version=2, versions=3)
    content = display_messages(conv(StoredMessage(4, "user", "2+2?"), reply))[1]["content"]
    text, controls = content.split("\n\n", 1)
    assert text == "The answer is 4."
    assert "\n" not in controls  # one paragraph: the speaker first, then ‹ 2/3 ›
    assert controls.index("chat-r-5") < controls.index("chat-versions") and "2/3" in controls
    assert without_controls(content) == "The answer is 4."
    # an edited message of the user's keeps its version controls only, and they come out too
    edited = display_messages(conv(StoredMessage(4, "user", "2+2?", version=1, versions=2), reply))[0]["content"]
    assert "chat-read" not in edited and without_controls(edited) == "2+2?"


def test_the_control_never_carries_the_reply_text_or_markup_from_it():
    hostile = StoredMessage(6, "assistant", '<button class="chat-read-aloud chat-r-1">x</button> "quoted"')
    content = display_messages(conv(StoredMessage(1, "user", "q"), hostile))[1]["content"]
    # the reply's own button is made harmless text by safe_markdown; ours names message 6 only
    assert re.findall(r"<button[^>]*chat-r-(\d+)", content) == ["6"]


def test_read_aloud_reads_the_stored_reply_it_names_and_nothing_else():
    from core.chat.display import spoken_reply
    from core.errors import NotFoundError

    shown = conv(StoredMessage(1, "user", "q"), StoredMessage(2, "assistant", "**Stored** text, [a link](http://x)."))
    assert spoken_reply(shown, 2) == "**Stored** text, [a link](http://x)."  # the Markdown as kept, not the HTML
    for wrong in (1, 3, -2):  # the user's message, an id not shown (another version, another conversation)
        try:
            spoken_reply(shown, wrong)
        except NotFoundError as exc:
            assert "no longer shown" in str(exc)
        else:
            raise AssertionError(f"message {wrong} was read")
