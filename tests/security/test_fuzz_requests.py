"""Property tests for the request normalisers: any JSON an API caller (or a forged UI event) sends as
image request values, chat options, chat history items or writer options gives a request within every
documented bound, or the normaliser's own user-facing error (InputError), never another exception."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from backends.image.base import ImageCapabilities
from core import validate
from core.chat.service import MAX_NEW_TOKENS, ChatOptions
from core.errors import InputError
from core.images.errors import ImageInputError
from core.images.request import (
    IMAGE_MODES,
    MAX_BATCH,
    MAX_FRAMES,
    MAX_GUIDANCE,
    MAX_PIXELS,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    PROMPT_MODES,
    normalise_request,
    parameters_for,
    request_fields,
)
from core.writer.brief import MAX_VARIANTS, WriteOptions

FUZZ = settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])

BIG = st.sampled_from(
    [
        10**400,
        -(10**400),
        2**63,
        2**64,
        -1,
        0,
        1e308,
        -1e308,
        float("inf"),
        float("nan"),
        "1e999",
        "nan",
        "-inf",
        "",
        " ",
        "12",
        "12.5",
        "0x10",
        "1_000",
        "٣",
        True,
        False,
    ]
)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12), BIG)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


def mostly(plausible, other):
    return st.one_of(plausible, plausible, plausible, other)


def number_like(lo, hi):
    """Numbers in a range (as JSON numbers or numeric strings), sometimes just outside it."""
    return st.one_of(
        st.integers(math.ceil(lo), int(hi)),
        st.integers(math.ceil(lo), int(hi)).map(str),
        st.floats(float(lo), float(hi)),
        st.integers(math.floor(lo) - 10, int(hi) + 10),
    )


def anything_like(lo, hi):
    """Mostly plausible numbers around a range, sometimes anything."""
    return mostly(number_like(lo, hi), st.one_of(BIG, JSON))


# --- images -----------------------------------------------------------------------------------------


@st.composite
def capabilities(draw):
    modes = tuple(
        draw(
            st.lists(
                st.sampled_from(["txt2img", "img2img", "sketch", "inpaint", "random"]),
                min_size=1,
                max_size=5,
                unique=True,
            )
        )
    )
    multiple = draw(st.sampled_from([1, 8, 16, 64]))
    return ImageCapabilities(
        modes=modes,
        schedulers=tuple(draw(st.lists(st.sampled_from(["Euler", "DPM++ 2M"]), unique=True))),
        max_width=draw(st.integers(64, 2048)),
        max_height=draw(st.integers(64, 2048)),
        size_multiple=multiple,
        max_steps=draw(st.integers(1, 150)),
    )


TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=40)


@st.composite
def image_requests(draw):
    """Plausible form values (in and around their ranges, any of them left out), and in half of the
    cases one of them replaced by anything JSON can carry."""
    caps = draw(capabilities())
    image = None
    if draw(st.booleans()):
        image = Image.new("RGB", (draw(st.integers(16, 300)), draw(st.integers(16, 300))), "white")
    values = {
        "mode": draw(st.sampled_from(caps.modes)),
        "prompt": draw(TEXT.filter(str.strip)),
        "negative_prompt": draw(TEXT),
        "seed": draw(number_like(-1, 2**63 - 1)),
        "steps": draw(number_like(1, 150)),
        "guidance": draw(number_like(0, 30)),
        "width": draw(number_like(64, 2048)),
        "height": draw(number_like(64, 2048)),
        "scheduler": draw(st.sampled_from(["", "Euler"])),
        "batch_count": draw(number_like(1, 16)),
        "strength": draw(number_like(0.01, 1)),
        "seed_b": draw(number_like(-1, 2**63 - 1)),
        "interpolation_steps": draw(number_like(0, 60)),
    }
    for key in draw(st.sets(st.sampled_from(sorted(set(values) - {"mode"})), max_size=4)):
        del values[key]  # left out: the default applies
    if draw(st.booleans()):
        values[draw(st.sampled_from(sorted(values)))] = draw(
            st.one_of(BIG, JSON, st.sampled_from(["random", "", " inpaint ", "x" * (MAX_PROMPT_CHARS + 1), "a\x00b"]))
        )
    return caps, values.pop("mode"), image, values


@FUZZ
@given(image_requests())
@example((ImageCapabilities(modes=("txt2img",)), "txt2img", None, {"prompt": "a cat", "steps": 10**400}))
@example((ImageCapabilities(modes=("txt2img",)), "txt2img", None, {"prompt": "a cat", "width": 10**400}))
def test_image_request_is_within_bounds_or_refused(case):
    caps, mode, image, values = case
    try:
        request, notes = normalise_request(caps=caps, mode=mode, init_image=image, mask_image=image, **values)
    except ImageInputError as exc:
        assert exc.code and str(exc).strip()
        event(f"refused: {exc.code}")
        return
    event(f"made: {request.mode}")
    assert request.mode in caps.modes
    assert 0 <= request.seed <= MAX_SEED
    assert 1 <= request.batch_count <= MAX_BATCH
    if request.mode == "random":
        assert (request.width, request.height) == (caps.max_width, caps.max_height)
        assert 0 <= request.interpolation_steps <= MAX_FRAMES and request.interpolation_steps != 1
        assert (request.seed_b is not None) == (request.interpolation_steps > 0)
        return
    assert 1 <= request.steps <= caps.max_steps
    assert 0.0 <= request.guidance <= MAX_GUIDANCE
    assert request.width % caps.size_multiple == 0 and request.height % caps.size_multiple == 0
    assert 0 < request.width <= caps.max_width and 0 < request.height <= caps.max_height
    assert request.width * request.height <= MAX_PIXELS
    assert request.prompt.strip() and len(request.prompt) <= MAX_PROMPT_CHARS
    assert request.mode in PROMPT_MODES
    if request.mode in IMAGE_MODES:
        assert 0.01 <= request.strength <= 1.0
        assert request.init_image.size == (request.width, request.height)
        # diffusers runs int(steps * strength) denoising steps, and fails on zero.
        assert int(request.steps * request.strength) >= 1 or request.steps == caps.max_steps


@FUZZ
@given(image_requests())
def test_reused_parameters_give_the_same_request(case):
    """'Reuse parameters': the parameters stored with an image, normalised again, are the same request
    (nothing drifts, nothing new to say)."""
    caps, mode, image, values = case
    try:
        request, _ = normalise_request(caps=caps, mode=mode, init_image=image, mask_image=image, **values)
    except ImageInputError:
        return
    fields = request_fields(parameters_for(request, seed=request.seed, model="m"))
    fields.pop("model")
    again, notes = normalise_request(
        caps=caps,
        init_image=request.init_image,
        mask_image=request.mask_image,
        **{**fields, "seed_b": request.seed_b, "interpolation_steps": request.interpolation_steps},
    )
    assert again == replace(request, batch_count=1)  # an image's parameters describe that one image
    assert not [n for n in notes if "random" not in n]


# --- chat ---------------------------------------------------------------------------------------------


@FUZZ
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "model": st.one_of(st.text(max_size=20), JSON),
            "system_prompt": st.one_of(st.text(max_size=20), JSON),
            "temperature": anything_like(0, 2),
            "top_p": anything_like(0, 1),
            "max_new_tokens": anything_like(1, MAX_NEW_TOKENS),
            "seed": anything_like(-5, 2**32 + 5),
        },
    )
)
@example({"max_new_tokens": 10**400})
@example({"temperature": "hot", "seed": "x"})
def test_chat_options_are_within_bounds_or_name_the_bad_one(values):
    try:
        options = ChatOptions.checked(**values)
    except InputError as exc:
        assert any(name in str(exc) for name in values), (str(exc), values)
        return
    assert 0.0 <= options.temperature <= 2.0 and 0.0 <= options.top_p <= 1.0
    assert 1 <= options.max_new_tokens <= MAX_NEW_TOKENS and isinstance(options.max_new_tokens, int)
    assert options.seed is None or 0 <= options.seed <= validate.MAX_SEED
    assert isinstance(options.system_prompt, str) and (options.model is None or options.model.strip())
    params = options.params()  # what the backend gets: the same values
    assert (params.temperature, params.max_new_tokens, params.seed) == (
        options.temperature,
        options.max_new_tokens,
        options.seed,
    )
    assert (
        ChatOptions.checked(
            options.model,
            options.system_prompt,
            options.temperature,
            options.top_p,
            options.max_new_tokens,
            options.seed,
        )
        == options
    )  # checking twice changes nothing


ITEM = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system"]), "content": st.text(max_size=30)},
        optional={"metadata": JSON, "options": JSON},
    ),
    st.fixed_dictionaries({}, optional={"role": JSON, "content": JSON}),
    JSON,
)


@pytest.fixture(scope="module")
def chat_service(tmp_path_factory):
    from config import Settings
    from core.chat.service import ChatService
    from core.chat.store import ConversationStore
    from core.models.text import ModelManager

    settings = Settings(data_dir=tmp_path_factory.mktemp("chat"), max_input_chars=2_000)
    return ChatService(settings, ConversationStore(settings.db_path), ModelManager(settings))


@FUZZ
@given(history=st.one_of(st.lists(ITEM, max_size=6), JSON, st.just([{"role": "user", "content": "x" * 5_000}] * 5)))
@example(history=[{"role": "user", "content": None}])  # was sent to the model as the text "None"
@example(history=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
@example(history=["hello"])  # not an object: was an AttributeError
def test_history_items_are_turns_or_a_named_error(chat_service, history):
    """What the /chat API accepts as `history` (ChatService.check_history)."""
    try:
        turns = chat_service.check_history(history)
    except InputError as exc:
        assert "history" in str(exc)
        return
    assert isinstance(history, list) or history is None
    assert len(turns) == len(history or [])
    for turn, item in zip(turns, history or []):
        assert set(turn) == {"role", "content"} and turn["role"] in ("user", "assistant", "system")
        assert turn == {"role": item["role"], "content": item["content"]}  # nothing rewritten


# --- writer options -------------------------------------------------------------------------------------


@FUZZ
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "variants": anything_like(-2, 10),
            "temperature": anything_like(0, 2),
            "top_p": anything_like(0, 1),
            "seed": anything_like(-5, 2**32 + 5),
        },
    )
)
@example({"variants": 10**400})
@example({"temperature": "hot"})
def test_write_options_are_within_bounds_or_name_the_bad_one(values):
    try:
        options, notes = WriteOptions(**values).checked()
    except InputError as exc:
        assert any(name in str(exc).lower() for name in values), (str(exc), values)
        return
    assert 1 <= options.variants <= MAX_VARIANTS
    assert 0.0 <= options.temperature <= 2.0 and 0.0 < options.top_p <= 1.0
    assert options.seed is None or options.seed >= 0
    assert not math.isnan(options.temperature)
    params = options.params(options.variants - 1, 100)
    assert params.max_new_tokens >= 16
