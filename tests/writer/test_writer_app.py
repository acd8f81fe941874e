"""The /write endpoint through gradio_client: streams the text, takes only the topic as required,
passes every optional brief field through, refuses bad input with a clear message, reports models
that return nothing or break off, and keeps serving."""

from __future__ import annotations

import pytest

from tests.support.apps import running_app, settings_for
from tests.support.openai_servers import fake_openai_server


@pytest.fixture(scope="module")
def fake():
    with fake_openai_server(chunk_delay=0.01, reply_words=40) as server:
        yield server


@pytest.fixture(scope="module")
def app(fake, tmp_path_factory):
    with running_app(settings_for(tmp_path_factory.mktemp("writer-data"), fake.base_url)) as pair:
        yield pair


def app_error(excinfo) -> str:
    return str(excinfo.value)


def test_write_endpoint_streams_the_text(app, fake):
    client, _ = app
    before = len(fake.chat_requests)
    # 40 words asked, 40 written: nothing for the writer to repair (continue, trim)
    job = client.submit("Lessons from shipping", template="social_linkedin", length=40, api_name="/write")
    partials = [p for p in job]
    final = job.result()
    assert final.startswith("write0 one1 linkedin2 post3") and len(final.split()) == 40
    growing = [p for p in partials if p and final.startswith(p)]
    assert len(set(growing)) >= 3  # it streamed
    assert "Lessons from shipping" in fake.chat_requests[before].body["messages"][-1]["content"]


def test_write_endpoint_needs_only_the_topic(app, fake):
    client, _ = app
    before = len(fake.chat_requests)
    text = client.predict("composting basics", api_name="/write")  # default template: blog_post (long)
    # an outline first (the fake honours its JSON schema: its title and headings are used), then the sections
    assert text.startswith("# ") and text.count("\n\n## ") >= 2
    assert "composting basics" in fake.chat_requests[before].body["messages"][-1]["content"]


def test_write_endpoint_passes_every_optional_field(app, fake):
    client, _ = app
    before = len(fake.chat_requests)
    client.predict(
        "Bamboo mug",
        template="product_description",
        audience="commuters",
        tone="Luxury",
        length=90,
        keywords=["bamboo", "leak-proof"],
        cta="Buy now",
        language="Spanish",
        details={"features": "350 ml, lid"},
        temperature=0.4,
        top_p=0.9,
        seed=5,
        api_name="/write",
    )
    body = fake.chat_requests[before].body  # the piece's prompt (repair requests may follow)
    prompt = body["messages"][-1]["content"]
    for needle in (
        "Bamboo mug",
        "commuters",
        "luxurious",
        "about 90 words",
        '"bamboo", "leak-proof"',
        "Buy now",
        "Write in Spanish",
        "350 ml, lid",
    ):
        assert needle in prompt, needle
    assert body["seed"] == 5 and body["temperature"] == 0.4 and body["top_p"] == 0.9
    assert body["max_tokens"] == int(90 * 1.7) + 64


def test_write_endpoint_writes_a_long_piece_from_a_given_outline(app, fake):
    client, _ = app
    before = len(fake.chat_requests)
    text = client.predict(
        "Tea", template="blog_post", outline="Title: All about tea\n1. Green\n2. Black", api_name="/write"
    )
    assert text.startswith("# All about tea\n\n## Green\n\n") and "\n\n## Black\n\n" in text
    prompts = [r.body["messages"][-1]["content"] for r in fake.chat_requests[before:]]
    assert not any("outline" in p.split("\n")[0] for p in prompts)  # no outline request
    assert sum("Write only section" in p for p in prompts) == 2  # one per section (then repairs, if any)


def test_absurd_length_is_clamped(app, fake):
    client, _ = app
    before = len(fake.chat_requests)
    client.predict("Mug", template="product_description", length=10**7, api_name="/write")
    body = fake.chat_requests[before].body
    assert "about 400 words" in body["messages"][-1]["content"] and body["max_tokens"] == int(400 * 1.7) + 64


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(template="sonnet"), "Unknown template 'sonnet'. Valid templates: ad_aida, ad_pas, blog_post"),
        (dict(template="blog_post", keywords=", ".join(f"k{i}" for i in range(500))), "500 given"),
        (dict(template="press_release", details={"company": "Acme", "colour": "red"}), "no field 'colour'"),
        (dict(template="press_release"), "Company is empty"),
    ],
)
def test_bad_input_gets_a_clear_error(app, kwargs, message):
    from gradio_client.exceptions import AppError

    client, _ = app
    with pytest.raises(AppError) as exc:
        client.predict("Some topic", api_name="/write", **kwargs)
    assert message in app_error(exc)


def test_empty_topic_gets_a_clear_error(app):
    from gradio_client.exceptions import AppError

    client, _ = app
    with pytest.raises(AppError) as exc:
        client.predict("  ", template="social_x", api_name="/write")
    assert "is empty: say what the piece is about" in app_error(exc)


def test_models_that_return_nothing_or_break_off_get_clear_errors_and_the_app_keeps_serving(tmp_path):
    from gradio_client.exceptions import AppError

    with fake_openai_server(reply_words=0) as silent:
        with running_app(settings_for(tmp_path / "a", silent.base_url)) as (client, _):
            with pytest.raises(AppError) as exc:
                client.predict("mug", template="product_description", api_name="/write")
            assert "returned no text" in app_error(exc)
    with fake_openai_server(reply_words=30, cut_after=5) as cutter:
        with running_app(settings_for(tmp_path / "b", cutter.base_url)) as (client, _):
            job = client.submit("one two three", template="ad_pas", api_name="/write")
            with pytest.raises(AppError) as exc:
                job.result()
            assert "broke off" in app_error(exc)
            assert any(len(p.split()) == 5 for p in job.outputs())  # what arrived was streamed
            for _ in range(2):  # the server keeps answering, each time with the right message
                with pytest.raises(AppError) as exc:
                    client.predict("again", template="ad_pas", api_name="/write")
                assert "broke off" in app_error(exc)
                with pytest.raises(AppError) as exc:
                    client.predict("", template="ad_pas", api_name="/write")
                assert "Product or offer is empty" in app_error(exc)
