"""The studio as an MCP server, through the official `mcp` Python client over HTTP against a real app process
(embedded model, espeak voice, embedded Whisper, the GAN face model): the tools and their schemas, a call to each,
files back as bytes and as links only the caller can fetch, clear tool errors for bad arguments, files only as
data: URIs (no URL fetched, no server path read), and under logins a token that decides who calls."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sqlite3
import urllib.error
import urllib.request
import wave
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamablehttp_client

from tests.support.app_process import app_process
from tests.support.paths import CORPUS

TOOLS = {"chat", "write", "condense", "ask", "generate_image", "speak", "transcribe"}
ENV = {"STUDIO_SPEECH_MODEL": "espeak", "STUDIO_TRANSCRIBE_MODEL": "whisper", "STUDIO_IMAGE_MODEL": "gan:faces"}


def data_uri(raw: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


async def _session(url: str, headers: dict[str, str] | None, work: Any, sse: bool = False) -> Any:
    transport = sse_client(url, headers=headers) if sse else streamablehttp_client(url, headers=headers)
    async with transport as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            return await work(session)


def listed(url: str, headers: dict[str, str] | None = None, sse: bool = False) -> dict[str, Any]:
    async def work(session: ClientSession) -> dict[str, Any]:
        return {t.name: t for t in (await session.list_tools()).tools}

    return asyncio.run(_session(url, headers, work, sse))


def call(url: str, name: str, arguments: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    async def work(session: ClientSession) -> Any:
        return await session.call_tool(name, arguments)

    return asyncio.run(_session(url, headers, work))


def text_of(result: Any) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


def last_json(result: Any) -> Any:
    return json.loads(next(c.text for c in reversed(result.content) if c.type == "text"))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    data = tmp_path_factory.mktemp("mcp")
    with app_process(data, {**ENV, "HF_HOME": str(data / "hf")}) as proc:
        yield proc


def mcp_url(app: Any) -> str:
    return f"http://127.0.0.1:{app.port}/gradio_api/mcp/"


# -- the tools -----------------------------------------------------------------------------------------------


def test_the_tools_are_the_studios_api_with_descriptions_and_typed_parameters(app):
    tools = listed(mcp_url(app))
    assert set(tools) == TOOLS  # no UI event of any tab is a tool
    for tool in tools.values():
        assert len(tool.description) > 40, tool.name
        assert "upload_file_to_gradio" not in tool.description  # Gradio's hint names a tool that is not here
        for name, prop in tool.inputSchema["properties"].items():
            assert prop.get("description"), (tool.name, name)
            assert "handle_file" not in prop["description"], (tool.name, name)
    speak = tools["speak"].inputSchema
    assert speak["required"] == ["text"]
    assert speak["properties"]["format"]["enum"] == ["wav", "mp3", "ogg"]
    assert (speak["properties"]["speed"]["minimum"], speak["properties"]["speed"]["maximum"]) == (0.5, 2.0)
    assert tools["chat"].inputSchema["properties"]["temperature"]["type"] == "number"
    assert tools["chat"].inputSchema["properties"]["max_new_tokens"]["type"] == "integer"
    condense = tools["condense"].inputSchema["properties"]
    assert condense["length"]["enum"] == ["tldr", "short", "detailed"]
    assert set(condense["form"]["enum"]) == {"bullets", "prose", "executive", "takeaways", "actions"}
    audio = tools["transcribe"].inputSchema["properties"]["audio"]
    assert audio["type"] == "string" and "data: URI" in audio["format"] and "required" not in audio
    assert "data: URI" in tools["transcribe"].description
    # the model descriptions keep their second line (Gradio's own reader cut them at "empty for the")
    assert tools["speak"].inputSchema["properties"]["model"]["description"].endswith("empty for the default.")
    assert tools["ask"].inputSchema["required"] == ["question"]


def test_sse_transport_lists_the_same_tools_and_calls_them(app):
    url = f"http://127.0.0.1:{app.port}/gradio_api/mcp/sse"
    assert set(listed(url, sse=True)) == TOOLS

    async def work(session: ClientSession) -> Any:
        return await session.call_tool("speak", {"text": "Over the older transport.", "format": "ogg"})

    spoken = asyncio.run(_session(url, None, work, sse=True))
    assert not spoken.isError, text_of(spoken)
    (audio,) = [c for c in spoken.content if c.type == "audio"]
    assert base64.b64decode(audio.data)[:4] == b"OggS"


# -- calling each -------------------------------------------------------------------------------------------


def test_chat_and_write_reply_with_text(app):
    chat = call(mcp_url(app), "chat", {"message": "Say hello.", "max_new_tokens": 12, "seed": 1})
    assert not chat.isError and text_of(chat).strip()
    write = call(
        mcp_url(app), "write", {"topic": "a bakery's new rye bread", "template": "social_x", "length": 30, "seed": 1}
    )
    assert not write.isError and len(text_of(write).split()) >= 3


def test_condense_a_corpus_file_then_ask_it(app):
    raw = (CORPUS / "good-essay-assignment-headings.docx").read_bytes()
    docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    condensed = call(mcp_url(app), "condense", {"file": data_uri(raw, docx), "length": "tldr"})
    assert not condensed.isError, text_of(condensed)
    summary = last_json(condensed)
    assert summary["status"] == "complete" and summary["summary"].strip() and summary["id"]
    asked = call(mcp_url(app), "ask", {"question": "How many words must the essay have?", "summary_id": summary["id"]})
    assert not asked.isError, text_of(asked)
    answer = last_json(asked)
    assert answer["status"] == "complete" and isinstance(answer["answered"], bool)
    if answer["answered"]:
        assert answer["citations"] and all(c["quote"] for c in answer["citations"])


def test_generate_image_returns_a_png_and_a_link_only_the_caller_fetches(app, tmp_path):
    from PIL import Image

    result = call(mcp_url(app), "generate_image", {"prompt": "", "model": "gan:faces", "seed": 7})
    assert not result.isError, text_of(result)
    images = [c for c in result.content if c.type == "image"]
    assert len(images) == 1 and images[0].mimeType == "image/png"
    picture = Image.open(io.BytesIO(base64.b64decode(images[0].data)))
    picture.load()
    assert picture.size[0] >= 64 and picture.size[1] >= 64
    files, parameters = json.loads(text_of(result))
    assert parameters[0]["seed"] == 7
    (link,) = files
    assert "/gradio_api/file=studio-files/" in link
    with urllib.request.urlopen(link, timeout=30) as reply:  # this caller (the same address): the same PNG
        assert reply.read() == base64.b64decode(images[0].data)
    with pytest.raises(urllib.error.HTTPError) as refused:  # someone else (a token's user): not theirs
        urllib.request.urlopen(_with_token(app, link), timeout=30)
    assert refused.value.code == 404


def _with_token(app: Any, url: str) -> urllib.request.Request:
    from core.security.tokens import TokenStore

    token = TokenStore(Path(app.env["STUDIO_DATA_DIR"]) / "studio.sqlite3").create("browser:" + "x" * 24)
    return urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})


def test_speak_returns_wav_audio_and_transcribe_hears_it(app, tmp_path):
    spoken = call(mcp_url(app), "speak", {"text": "The quick brown fox jumps over the lazy dog.", "format": "wav"})
    assert not spoken.isError, text_of(spoken)
    (audio,) = [c for c in spoken.content if c.type == "audio"]
    assert audio.mimeType in ("audio/wav", "audio/x-wav")
    with wave.open(io.BytesIO(base64.b64decode(audio.data))) as wav:
        assert wav.getnframes() / wav.getframerate() > 1.0
    link, status = json.loads(text_of(spoken))
    assert status.startswith("Done") and "/gradio_api/file=studio-files/" in link

    heard = call(mcp_url(app), "transcribe", {"audio": data_uri(base64.b64decode(audio.data), "audio/wav")})
    assert not heard.isError, text_of(heard)
    text, segments, language = json.loads(text_of(heard))
    assert "fox" in text.lower() and segments and language == "en"


# -- bad arguments ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "arguments", "says"),
    [
        # checked against the tool's input schema before any call
        ("speak", {"text": "Hello.", "format": "flac"}, "'flac' is not one of ['wav', 'mp3', 'ogg']"),
        ("speak", {"text": "Hello.", "speed": 5}, "greater than the maximum of 2.0"),
        ("chat", {"message": 42}, "42 is not of type 'string'"),
        ("chat", {"message": "hi", "temperature": "hot"}, "'hot' is not of type 'number'"),
        ("ask", {"question": "", "summary_id": "nope"}, "should be non-empty"),
        ("nonesuch", {}, "unknown tool"),
        # and by the endpoint itself, as its own message
        ("ask", {"question": "   ", "summary_id": "nope"}, "type a question"),
        ("ask", {"question": "What is it?", "summary_id": "nope"}, "summary no longer exists"),
        ("transcribe", {"audio": "data:audio/wav;base64,AAAA"}, "not really audio"),
    ],
)
def test_a_bad_argument_is_a_clear_tool_error(app, name, arguments, says):
    result = call(mcp_url(app), name, arguments)
    assert result.isError
    message = text_of(result)
    assert says.lower() in message.lower() and "Traceback" not in message and len(message) < 600


@pytest.mark.parametrize(
    "value",
    [
        "http://127.0.0.1:9/secret.wav",  # the server must not fetch a URL for the caller (SSRF)
        "https://example.com/a.wav",
        "/etc/passwd",  # nor read one of its own files
        "file:///etc/passwd",
        "data:audio/wav;base64,not base64!",
    ],
)
def test_files_go_in_only_as_data_uris(app, value):
    result = call(mcp_url(app), "transcribe", {"audio": value})
    assert result.isError
    message = text_of(result)
    assert "data: URI" in message and "Traceback" not in message and "root:" not in message


# -- under logins -------------------------------------------------------------------------------------------


def test_under_logins_a_token_is_needed_and_decides_who_calls(tmp_path):
    import httpx

    from core.security.tokens import TokenStore

    env = {**ENV, "STUDIO_AUTH": "ann:pw-ann,bob:pw-bob", "HF_HOME": str(tmp_path / "hf")}
    with app_process(tmp_path, env) as proc:
        url = mcp_url(proc)
        with pytest.raises(BaseException) as refused:  # the client's task group wraps the 401
            listed(url)
        assert "401" in repr(refused.value) or "401" in str(getattr(refused.value, "exceptions", ""))
        with httpx.Client(timeout=30) as http:
            bare = http.post(url, json={}, headers={"accept": "application/json, text/event-stream"})
            assert bare.status_code == 401 and "API token" in bare.text
            assert http.post(url, json={}, headers={"authorization": "Bearer wrong"}).status_code == 401
            # the header that carries an MCP caller to Gradio's loopback call cannot be made up from outside
            forged = {"x-studio-relay": 'guess ["user:ann", "user:ann", "127.0.0.1"]'}
            assert http.post(url, json={}, headers=forged).status_code == 401

        store = TokenStore(tmp_path / "studio.sqlite3")
        ann = {"Authorization": f"Bearer {store.create('user:ann')}"}
        bob = {"Authorization": f"Bearer {store.create('user:bob')}"}
        assert set(listed(url, ann)) == TOOLS
        spoken = call(url, "speak", {"text": "Good morning, Ann.", "format": "ogg"}, ann)
        assert not spoken.isError, text_of(spoken)
        link, status = json.loads(text_of(spoken))
        # kept as Ann's (the token's user), never as an MCP or loopback identity
        with sqlite3.connect(tmp_path / "studio.sqlite3") as db:
            kept = [row[0] for row in db.execute("SELECT DISTINCT user_id FROM speech_items")]
        assert kept == ["user:ann"]
        with httpx.Client(timeout=30) as http:
            assert http.get(link, headers=ann).content == base64.b64decode(
                next(c for c in spoken.content if c.type == "audio").data
            )
            assert http.get(link).status_code == 401  # no token: not even the link
            assert http.get(link, headers=bob).status_code == 404  # Bob's token: not his
        # a file in goes up as Ann's upload (Gradio's own loopback client would send it as nobody's)
        audio = next(c for c in spoken.content if c.type == "audio").data
        heard = call(url, "transcribe", {"audio": f"data:audio/ogg;base64,{audio}"}, ann)
        assert not heard.isError, text_of(heard)
        assert "morning" in json.loads(text_of(heard))[0].lower()
