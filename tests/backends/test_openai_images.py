"""OpenAIImagesBackend against a real HTTP server on loopback that speaks the images API
(tests/support/openai_images_server.py): decoding, sizes, edits with image and mask, seeds, faults and keys."""

from __future__ import annotations

import threading
import time
import traceback

import numpy as np
import pytest
from PIL import Image, ImageDraw

from backends.image.base import ImageBackend, ImageCancelled, ImageRequest
from backends.image.openai_images import OpenAIImagesBackend
from backends.text.base import (
    AuthFailedError,
    BackendError,
    ConnectionFailedError,
    ModelUnavailableError,
    RateLimitedError,
    ServerFailedError,
    TimeoutFailedError,
)
from tests.support.openai_images_server import colour_for, images_server

KEY = "sk-test-IMG-S3CR3T-0123456789"


def make(
    server_url: str | None,
    *,
    key: str | None = KEY,
    timeout: float = 10.0,
    retries: int = 2,
    model: str = "sd-compatible",
    **kw,
) -> OpenAIImagesBackend:
    return OpenAIImagesBackend(
        model=model,
        base_url=server_url,
        api_key=key,
        timeout=timeout,
        max_retries=retries,
        spec=f"openai:{model}",
        label="test",
        **kw,
    )


def request(**kw) -> ImageRequest:
    base = dict(prompt="a lighthouse at dusk", seed=5, width=64, height=48)
    base.update(kw)
    return ImageRequest(**base)


def assert_no_key(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc)) + repr(exc)
    assert KEY not in text
    assert exc.__cause__ is None and exc.__context__ is None  # the SDK error (with the request) not chained


def test_is_an_image_backend():
    assert isinstance(make("http://127.0.0.1:1/v1"), ImageBackend)


def test_generate_decodes_b64_pngs_with_seeds_and_parameters():
    with images_server(require_key=KEY) as server:
        events = []
        out = make(server.base_url).generate(
            request(batch_count=2), threading.Event(), lambda s, t, p: events.append((s, t))
        )
    assert [g.seed for g in out] == [5, 6]
    for g in out:
        assert g.image.size == (64, 48) and g.image.mode == "RGB"
        assert g.image.getpixel((10, 10)) == colour_for("a lighthouse at dusk", g.seed)
        assert g.parameters["seed"] == g.seed and (g.parameters["width"], g.parameters["height"]) == (64, 48)
        assert "may not give the same image" in g.parameters["note"]
    assert events == [(0, 2), (1, 2), (2, 2)]
    bodies = [r.fields for r in server.requests]
    assert [b["seed"] for b in bodies] == [5, 6] and all(b["n"] == 1 for b in bodies)
    assert all(b["response_format"] == "b64_json" and b["model"] == "sd-compatible" for b in bodies)
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.requests)


def test_gpt_image_models_get_no_response_format_and_official_host_no_seed():
    with images_server() as server:
        make(server.base_url, model="gpt-image-2").generate(request(), threading.Event())
        make(server.base_url, send_seed=False).generate(request(), threading.Event())
    first, second = (r.fields for r in server.requests)
    assert "response_format" not in first and first["seed"] == 5
    assert "seed" not in second
    official = make("https://api.openai.com/v1", model="gpt-image-1")
    assert official._send_seed is False and official._size_for(640, 360) == (1536, 1024)


@pytest.mark.parametrize("mode", ["img2img", "sketch"])
def test_edit_sends_the_image(mode):
    start = Image.new("RGB", (32, 32), (10, 200, 30))  # resized to the request's size before upload
    with images_server() as server:
        out = make(server.base_url).generate(request(mode=mode, init_image=start), threading.Event())
    recorded = server.requests[0]
    assert recorded.path == "/v1/images/edits"
    assert recorded.headers["content-type"].startswith("multipart/form-data")
    assert isinstance(recorded.fields["image"], bytes) and "mask" not in recorded.fields
    assert recorded.fields["seed"] == "5"  # extra_body travels as a form field
    assert out[0].image.size == (64, 48) and out[0].parameters["mode"] == mode


def test_inpaint_sends_image_and_mask_and_only_the_mask_changes():
    start = Image.new("RGB", (64, 48), (200, 20, 20))
    mask = Image.new("L", (64, 48), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 47), fill=255)  # white = repaint the left half
    with images_server() as server:
        out = make(server.base_url).generate(
            request(mode="inpaint", init_image=start, mask_image=mask), threading.Event()
        )
    fields = server.requests[0].fields
    assert isinstance(fields["image"], bytes) and isinstance(fields["mask"], bytes)
    result = np.asarray(out[0].image)
    assert (result[:, 32:] == (200, 20, 20)).all()  # kept where the mask was black
    assert (result[:, :32] == colour_for("a lighthouse at dusk", "5")).all()


def test_url_answers_are_fetched():
    with images_server(answer_url=True) as server:
        out = make(server.base_url).generate(request(), threading.Event())
    assert out[0].image.getpixel((0, 0)) == colour_for("a lighthouse at dusk", 5)
    fetch = [r for r in server.requests if r.path.startswith("/files/")]
    assert len(fetch) == 1 and "authorization" not in fetch[0].headers  # the key never follows a URL


def test_401_maps_to_auth_error_without_the_key():
    with images_server(require_key="sk-the-right-one") as server, pytest.raises(AuthFailedError) as info:
        make(server.base_url).generate(request(), threading.Event())
    assert "OPENAI_API_KEY" in str(info.value)
    assert_no_key(info.value)
    assert len(server.requests) == 1  # not retried


def test_429_then_ok_is_retried():
    with images_server(fail_first=1, fail_status=429) as server:
        out = make(server.base_url).generate(request(), threading.Event())
    assert len(server.requests) == 2 and out[0].image.size == (64, 48)


def test_persistent_500_gives_server_error_after_bounded_retries():
    with images_server(fail_first=100, fail_status=500) as server:
        with pytest.raises(ServerFailedError, match="HTTP 500.*after 2 retries") as info:
            make(server.base_url, retries=2).generate(request(), threading.Event())
    assert len(server.requests) == 3
    assert_no_key(info.value)


def test_persistent_429_gives_rate_limit_error():
    with images_server(fail_first=100, fail_status=429) as server, pytest.raises(RateLimitedError):
        make(server.base_url, retries=1).generate(request(), threading.Event())
    assert len(server.requests) == 2


def test_content_policy_400_says_so():
    body = {"error": {"message": "Your request was rejected by the safety system.", "code": "moderation_blocked"}}
    with images_server(fail_first=1, fail_status=400, error_body=body) as server:
        with pytest.raises(BackendError, match="content policy"):
            make(server.base_url).generate(request(), threading.Event())
    assert len(server.requests) == 1


def test_404_is_model_unavailable():
    with images_server(fail_first=1, fail_status=404) as server:
        with pytest.raises(ModelUnavailableError, match="STUDIO_IMAGE_MODEL"):
            make(server.base_url).generate(request(), threading.Event())


def test_slow_server_times_out():
    with images_server(slow=5.0) as server:
        start = time.monotonic()
        with pytest.raises(TimeoutFailedError):
            make(server.base_url, timeout=0.6, retries=0).generate(request(), threading.Event())
    assert time.monotonic() - start < 4


def test_unreachable_server_is_a_connection_error():
    with images_server() as server:
        url = server.base_url
    with pytest.raises(ConnectionFailedError, match="Could not reach"):
        make(url, retries=0).generate(request(), threading.Event())


def test_cancel_closes_the_in_flight_request():
    cancel = threading.Event()
    with images_server(slow=10.0) as server:
        threading.Timer(0.3, cancel.set).start()
        start = time.monotonic()
        with pytest.raises(ImageCancelled):
            make(server.base_url, timeout=30).generate(request(), cancel)
        elapsed = time.monotonic() - start
        deadline = time.monotonic() + 3
        while server.hangups == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert elapsed < 2
    assert server.hangups == 1  # the server saw the connection close


def test_bad_requests_are_refused_before_any_http():
    with images_server() as server:
        backend = make(server.base_url)
        for kw, words in (
            (dict(prompt="  "), "needs a prompt"),
            (dict(mode="img2img"), "starting image"),
            (dict(mode="inpaint", init_image=Image.new("RGB", (8, 8))), "mask"),
        ):
            with pytest.raises(BackendError, match=words):
                backend.generate(request(**kw), threading.Event())
    assert server.requests == []


def test_not_configured_says_what_to_set():
    with pytest.raises(ModelUnavailableError, match="OPENAI_API_KEY"):
        make(None, key=None).load()
