"""Bad arguments from the outside, over plain HTTP against a real app process: every named endpoint
(/chat, /write, /condense, /generate_image) refuses a value of the wrong type or out of range with a
message naming the parameter (never {"error": null}); Gradio's REST route takes only the leading
arguments, the rest taking their defaults as through gradio_client; and a UI event sent through
/gradio_api/queue/join with a control value of the wrong type is refused naming the control."""

from __future__ import annotations

import inspect
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import gradio as gr
import pytest

from core import validate
from core.errors import InputError
from tests.support.app_process import app_process
from tests.support.openai_servers import fake_openai_server, fake_reply
from tests.support.rest_client import final_event

BROWSER_ID = "validation-test-browser-id-0001"


@pytest.fixture(scope="module")
def fake():
    with fake_openai_server(reply_words=6) as server:
        yield server


@pytest.fixture(scope="module")
def app(fake, tmp_path_factory):
    env = {
        "STUDIO_TEXT_MODEL": "openai:fake-model",
        "OPENAI_BASE_URL": fake.base_url,
        "STUDIO_IMAGE_MODEL": "gan:faces",
        "STUDIO_REQUEST_TIMEOUT": "10",
        "STUDIO_MAX_RETRIES": "0",
    }
    with app_process(tmp_path_factory.mktemp("data"), env) as running:
        yield running


# -- plain HTTP ---------------------------------------------------------------------------------------


def request(
    app, path: str, body: Any = None, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    raw = data if data is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(
        app.url.rstrip("/") + path,
        data=raw,
        method="POST" if raw is not None else "GET",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def sse(raw: bytes) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs of a server-sent event stream."""
    for block in raw.decode().split("\n\n"):
        event, data = "message", None
        for line in block.splitlines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:].strip())
        if data is not None or event != "message":
            yield event, data


def call(app, name: str, data: list) -> tuple[str, Any]:
    """POST /gradio_api/call/<name>, then read its result: ("complete", outputs) or ("error", payload)
    from the stream, or ("refused", body) when the POST itself was refused."""
    status, body = request(app, f"/gradio_api/call/{name}", {"data": data})
    if status != 200:
        return "refused", json.loads(body)
    event_id = json.loads(body)["event_id"]
    status, raw = request(app, f"/gradio_api/call/{name}/{event_id}")
    assert status == 200
    return final_event(raw.decode()) or ("none", None)


def error_message(outcome: tuple[str, Any]) -> str:
    event, payload = outcome
    assert event in ("error", "refused"), f"not refused: {outcome}"
    message = payload.get("error") if isinstance(payload, dict) else None
    assert isinstance(message, str) and message.strip(), f"no message: {outcome}"  # never {"error": null}
    return message


def upload(app, name: str, content: bytes) -> dict:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, raw = request(
        app, "/gradio_api/upload", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert status == 200, raw
    (path,) = json.loads(raw)
    return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


# -- named endpoints: bad types and ranges ---------------------------------------------------------------

# Positional data: only the arguments up to the bad one are sent; the rest take their defaults.
CHAT = ["message", "system_prompt", "model", "temperature", "top_p", "max_new_tokens", "seed", "history"]
WRITE = [
    "topic",
    "template",
    "audience",
    "tone",
    "length",
    "keywords",
    "cta",
    "language",
    "details",
    "outline",
    "model",
    "temperature",
    "top_p",
    "seed",
]
CONDENSE = ["file", "text", "length", "form", "focus", "audience", "language", "model"]
IMAGE = [
    "prompt",
    "seed",
    "negative_prompt",
    "model",
    "mode",
    "steps",
    "guidance",
    "width",
    "height",
    "scheduler",
    "batch_count",
    "strength",
    "init_image",
    "mask_image",
    "seed_b",
    "interpolation_steps",
]


def args(names: list[str], first: Any, **given: Any) -> list:
    last = max(names.index(k) for k in given)
    values = [first] + [None] * last
    for k, v in given.items():
        values[names.index(k)] = v
    return values


BAD_CHAT = [
    ({"temperature": "hot"}, "temperature"),
    ({"max_new_tokens": "abc"}, "max_new_tokens"),
    ({"seed": "x"}, "seed"),
    ({"temperature": -1}, "temperature"),
    ({"top_p": 5}, "top_p"),
    ({"max_new_tokens": -5}, "max_new_tokens"),
    ({"max_new_tokens": 2.5}, "max_new_tokens"),
    ({"temperature": True}, "temperature"),
    ({"seed": 10**20}, "seed"),
    ({"temperature": float("nan")}, "temperature"),
    ({"top_p": 10**400}, "top_p"),
    ({"max_new_tokens": float("inf")}, "max_new_tokens"),
    ({"system_prompt": 5}, "system_prompt"),
    ({"model": ["embedded"]}, "model"),
    ({"history": "earlier"}, "history"),
    ({"history": [{"role": "bot", "content": "hi"}]}, "history[0].role"),
    ({"history": [{"role": "user", "content": 5}]}, "history[0].content"),
    ({"history": [{"role": "user", "content": "ok"}, "hello"]}, "history[1]"),
    ({"history": [{"role": "user"}]}, "history[0].content"),
]


@pytest.mark.parametrize("given,name", BAD_CHAT, ids=[f"{k}={v!r}"[:40] for d, _ in BAD_CHAT for k, v in d.items()])
def test_chat_refuses_a_bad_argument_by_name(app, fake, given, name):
    before = len(fake.chat_requests)
    message = error_message(call(app, "chat", args(CHAT, "Say hi.", **given)))
    assert name in message
    assert len(fake.chat_requests) == before  # refused before any model request


def test_chat_refuses_a_message_that_is_not_text_or_missing(app):
    assert "message" in error_message(call(app, "chat", [{"text": "hi"}]))
    assert "message is required" in error_message(call(app, "chat", []))


BAD_WRITE = [
    ({"temperature": "hot"}, "temperature"),
    ({"top_p": 5}, "top_p"),
    ({"seed": "x"}, "seed"),
    ({"temperature": -1}, "temperature"),
    ({"length": "abc"}, "length"),
    ({"template": 7}, "template"),
    ({"keywords": [1, 2]}, "keywords"),
    ({"details": "features"}, "details"),
    ({"details": {"features": {"nested": 1}}}, "details.features"),
    ({"audience": {"who": "x"}}, "audience"),
]


@pytest.mark.parametrize("given,name", BAD_WRITE, ids=[next(iter(d)) for d, _ in BAD_WRITE])
def test_write_refuses_a_bad_argument_by_name(app, fake, given, name):
    before = len(fake.chat_requests)
    message = error_message(call(app, "write", args(WRITE, "A solar phone charger", **given)))
    assert name in message
    assert len(fake.chat_requests) == before


BAD_CONDENSE = [
    ({"length": "epic"}, "length"),
    ({"form": 5}, "form"),
    ({"focus": "?" * 600}, "focus"),
    ({"language": ["French"]}, "language"),
    ({"model": 3}, "model"),
]


@pytest.mark.parametrize("given,name", BAD_CONDENSE, ids=[next(iter(d)) for d, _ in BAD_CONDENSE])
def test_condense_refuses_a_bad_argument_by_name(app, fake, given, name):
    before = len(fake.chat_requests)
    message = error_message(call(app, "condense", args(CONDENSE, None, text="Some text to condense.", **given)))
    assert name in message
    assert len(fake.chat_requests) == before


def test_condense_refuses_a_file_that_is_not_a_file_object(app):
    message = error_message(call(app, "condense", ["/etc/passwd"]))
    assert "file" in message and "passwd" in message
    assert "text" in error_message(call(app, "condense", [None, 12345]))


BAD_IMAGE = [
    ({"seed": "x"}, "seed"),
    ({"steps": "abc"}, "steps"),
    ({"guidance": "hot"}, "guidance"),
    ({"width": "wide"}, "width"),
    ({"batch_count": 2.5}, "batch_count"),
    ({"strength": [1]}, "strength"),
    ({"init_image": "/etc/passwd"}, "init_image"),
    ({"seed_b": "y"}, "seed_b"),
    ({"interpolation_steps": "many"}, "interpolation_steps"),
    ({"mode": 3}, "mode"),
]


@pytest.mark.parametrize("given,name", BAD_IMAGE, ids=[next(iter(d)) for d, _ in BAD_IMAGE])
def test_generate_image_refuses_a_bad_type_by_name(app, given, name):
    message = error_message(call(app, "generate_image", args(IMAGE, "a lighthouse", **given)))
    assert name in message


# -- REST with only the leading arguments ----------------------------------------------------------------


def test_rest_chat_with_only_the_message_takes_the_defaults(app, fake):
    event, outputs = call(app, "chat", ["Say hi."])
    assert event == "complete", outputs
    expected, _ = fake_reply([{"role": "user", "content": "Say hi."}], 512, reply_words=6)
    assert outputs == [expected]
    sent = fake.chat_requests[-1].body
    assert sent["temperature"] == 0.7 and sent["top_p"] == 0.95 and sent["max_tokens"] == 512
    assert "seed" not in sent  # -1: random


def test_rest_chat_with_a_null_optional_argument_takes_its_default(app, fake):
    event, outputs = call(app, "chat", ["Say hi.", None, None, None, None, 7])
    assert event == "complete", outputs
    assert fake.chat_requests[-1].body["max_tokens"] == 7


def test_rest_chat_history_with_a_system_turn(app, fake):
    history = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "answer", "metadata": None},
    ]
    event, outputs = call(app, "chat", args(CHAT, "now", history=history))
    assert event == "complete", outputs
    sent = fake.chat_requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "Be terse."}
    assert [m["content"] for m in sent[1:]] == ["earlier", "answer", "now"]


def test_rest_write_with_only_the_topic_takes_the_defaults(app):
    event, outputs = call(app, "write", ["A solar-powered phone charger for hikers"])
    assert event == "complete", outputs
    assert isinstance(outputs[0], str) and outputs[0].strip()


def test_rest_condense_with_only_the_file_takes_the_defaults(app):
    document = upload(app, "notes.txt", b"The board met twice. Revenue rose by a tenth. The plant opens in May.\n")
    event, outputs = call(app, "condense", [document])
    assert event == "complete", outputs
    assert outputs[0]["status"] == "complete" and outputs[0]["summary"]


# -- UI events through /gradio_api/queue/join -------------------------------------------------------------


@pytest.fixture(scope="module")
def ui(app):
    status, raw = request(app, "/config")
    assert status == 200
    config = json.loads(raw)
    components = {c["id"]: c for c in config["components"]}
    by_elem = {c.get("props", {}).get("elem_id"): c["id"] for c in config["components"]}
    return config, components, by_elem


def event_for(ui, elem_id: str, trigger: str) -> tuple[int, list[dict]]:
    """(fn_index, input components) of the first event `trigger` on the control `elem_id`."""
    config, components, by_elem = ui
    target = by_elem[elem_id]
    for dep in config["dependencies"]:
        if [target, trigger] in [list(t) for t in dep["targets"]]:
            return dep["id"], [components[i] for i in dep["inputs"]]
    raise AssertionError(f"no {trigger} event on {elem_id}")


def join(app, fn_index: int, data: list) -> tuple[int, Any, str]:
    session = uuid.uuid4().hex
    status, raw = request(
        app,
        "/gradio_api/queue/join",
        {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None},
    )
    return status, json.loads(raw), session


def chat_send_values(inputs: list[dict], **by_label: Any) -> list:
    values = []
    for c in inputs:
        props = c.get("props", {})
        label = props.get("label")
        value = props.get("value")
        if props.get("elem_id") == "chat-input":
            value = "hello there"
        elif c.get("type") == "browserstate":
            value = BROWSER_ID
        values.append(by_label.get(label, value))
    return values


@pytest.mark.parametrize(
    "label,bad",
    [
        ("Temperature", "hot"),
        ("Max new tokens", "abc"),
        ("Seed", "x"),
        ("Top-p", None),
        ("Temperature", -1),
        ("Seed", float("nan")),
        ("Max new tokens", 10**400),
        ("Model", ["a", "b"]),
        ("System prompt", 42),
    ],
)
def test_ui_event_with_a_bad_control_value_is_refused_by_name(app, ui, fake, label, bad):
    before = len(fake.chat_requests)
    fn_index, inputs = event_for(ui, "chat-send", "click")
    status, body, _ = join(app, fn_index, chat_send_values(inputs, **{label: bad}))
    assert status == 422, body
    assert label in body["detail"]
    assert len(fake.chat_requests) == before


def test_ui_event_with_a_stored_browser_id_that_is_not_text_is_refused(app, ui):
    fn_index, inputs = event_for(ui, "chat-send", "click")
    values = [{"id": 1} if c.get("type") == "browserstate" else v for c, v in zip(inputs, chat_send_values(inputs))]
    status, body, _ = join(app, fn_index, values)
    assert status == 422 and "must be text" in body["detail"], body


def test_ui_event_with_too_few_values_is_refused(app, ui):
    fn_index, inputs = event_for(ui, "chat-send", "click")
    status, body, _ = join(app, fn_index, chat_send_values(inputs)[:2])
    assert status == 422 and f"takes {len(inputs)} values" in body["detail"]


def test_unqueued_ui_event_with_a_bad_value_is_refused(app, ui):
    """Events outside the queue (Stop, the writer's live stats) come through /gradio_api/run/predict."""
    fn_index, inputs = event_for(ui, "writer-draft", "input")
    props = [c.get("props", {}) for c in inputs]
    values = [{"text": 1} if p.get("elem_id") == "writer-draft" else p.get("value") for p in props]
    status, raw = request(
        app, "/gradio_api/run/predict", {"data": values, "fn_index": fn_index, "session_hash": uuid.uuid4().hex}
    )
    assert status == 422 and "Draft" in json.loads(raw)["detail"]


def test_ui_event_file_input_that_is_not_a_file_is_refused(app, ui):
    fn_index, inputs = event_for(ui, "condense-run", "click")
    values = [c.get("props", {}).get("value") for c in inputs]
    values[[c.get("props", {}).get("elem_id") for c in inputs].index("condense-files")] = "/etc/passwd"
    status, body, _ = join(app, fn_index, values)
    assert status == 422 and "Documents" in body["detail"]


def test_ui_event_value_the_core_refuses_gets_a_named_error(app, ui, fake):
    """Right type, wrong value: past the edge, the chat handler's ChatOptions check names it."""
    before = len(fake.chat_requests)
    fn_index, inputs = event_for(ui, "chat-send", "click")
    status, body, session = join(app, fn_index, chat_send_values(inputs, Seed=10**12))
    assert status == 200, body
    status, raw = request(app, f"/gradio_api/queue/data?session_hash={session}")
    done = [d for _, d in sse(raw) if isinstance(d, dict) and d.get("msg") == "process_completed"]
    assert done and done[0]["success"] is False
    assert "seed" in (done[0]["output"].get("error") or "")
    assert len(fake.chat_requests) == before


# -- the edge keeps what gr.api reads; the core helpers ---------------------------------------------------


def test_api_endpoint_keeps_signature_docstring_and_generator():
    from gradio.utils import get_function_params, get_return_types

    from ui.server.api_args import api_endpoint

    def reply(
        message: str, temperature: float = 0.7, history: list | None = None, request: gr.Request = None
    ) -> Iterator[str]:
        """Say something."""
        yield f"{message} {temperature} {history}"

    wrapped = api_endpoint(reply)
    assert inspect.isgeneratorfunction(wrapped) and wrapped.__doc__ == reply.__doc__
    assert get_function_params(wrapped) == get_function_params(reply)
    assert get_return_types(wrapped) == get_return_types(reply)
    assert list(wrapped("hi")) == ["hi 0.7 None"]
    assert list(wrapped("hi", 1, [])) == ["hi 1 []"]
    with pytest.raises(gr.Error, match="temperature must be a number"):
        list(wrapped("hi", "hot"))


@pytest.mark.parametrize(
    "call_, message",
    [
        (lambda: validate.number("temperature", "hot", 0, 2), "temperature must be a number from 0 to 2, got 'hot'"),
        (lambda: validate.number("top_p", float("nan"), 0, 1), "top_p must be a number"),
        (lambda: validate.whole("max_new_tokens", 10**400, 1, 100), "max_new_tokens must be a whole number"),
        (lambda: validate.seed("seed", 2**40), "seed must be -1 (random)"),
        (lambda: validate.choice("form", "poem", ["bullets", "prose"]), "form must be one of: bullets, prose"),
        (lambda: validate.text("audience", "x" * 300, 200), "audience is 300 characters"),
        (
            lambda: validate.history("history", [{"role": "tool", "content": ""}], max_items=5, max_chars=100),
            "history[0].role",
        ),
        (
            lambda: validate.history("history", [{"role": "user", "content": "x"}] * 6, max_items=5, max_chars=100),
            "history has 6 items",
        ),
        (lambda: validate.fields("details", {"a": float("inf")}, max_items=5, max_chars=10), "details.a"),
    ],
)
def test_core_checks_name_what_they_refuse(call_, message):
    with pytest.raises(InputError) as exc:
        call_()
    assert message in str(exc.value)


def test_core_checks_coerce_what_they_accept():
    assert validate.number("t", "0.5", 0, 1) == 0.5 and validate.number("t", None, 0, 1, default=0.7) == 0.7
    assert validate.whole("n", 16.0, 1, 32) == 16 and validate.whole("n", "8", 1, 32) == 8
    assert validate.seed("seed", -1) is None and validate.seed("seed", "") is None
    assert validate.seed("seed", 7) == 7
    assert validate.history("h", [{"role": "user", "content": "a", "metadata": {}}], max_items=2, max_chars=9) == [
        {"role": "user", "content": "a"}
    ]
