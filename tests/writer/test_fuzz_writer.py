"""Property tests for the writer's parsers of user input: strict template rendering with hostile values
(braces, placeholders, numbered lines, unicode, huge text) and brief preparation with arbitrary JSON
field values (the /write API sends whatever the caller likes)."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.errors import InputError
from core.writer.brief import KEYWORD_CHARS, TEXT_LIMIT, TEXTAREA_LIMIT, Brief, prepare_brief
from core.writer.templates import STAGE_BUILTINS, TemplateError, load_library, placeholders, render

FUZZ = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
LIBRARY = load_library()
TEMPLATES = sorted(LIBRARY.templates)

# Text a person may type, weighted towards what breaks formatters: braces, placeholders of real
# fields, numbered-list starts, blank-line runs, CR/LF variants, line separators and non-ASCII.
HOSTILE = st.sampled_from(
    [
        "{",
        "}",
        "{{",
        "}}",
        "{topic}",
        "{0}",
        "{topic!r}",
        "{x:>10}",
        "%s",
        "\\",
        "\n",
        "\n\n\n",
        "\r\n",
        "\r",
        "\u2028",
        "\x0b",
        "\x1c",
        "1. ",
        "2024. ",
        "  3.\t",
        "#",
        '"',
        "“",
        "é",
        "𝔘",
        "\u200b",
        "\ufeff",
        "\x00",
    ]
)
USER_TEXT = st.lists(st.one_of(HOSTILE, st.text(max_size=20)), max_size=12).map("".join)


def builtin_values(stage: str, draw_text) -> dict:
    return {name: draw_text for name in STAGE_BUILTINS[stage]}


# --- render -----------------------------------------------------------------------------------------


@FUZZ
@given(st.sampled_from(TEMPLATES), st.data())
def test_every_value_reaches_the_prompt_verbatim(name, data):
    """Whatever a value holds (braces, '{topic}', '2024. ' at a line start, blank-line runs), it is
    inserted as typed: not formatted again, not renumbered, not squeezed. Only whitespace at the very
    ends of the whole prompt may be trimmed."""
    template = LIBRARY.templates[name]
    for stage, text in template.prompts().items():
        names = set(template.field_names) | STAGE_BUILTINS[stage]
        values = {n: data.draw(USER_TEXT.filter(lambda v: v.strip()), label=n) for n in sorted(names)}
        out = render(text, values, names, {f.name for f in template.fields if f.required})
        for n in placeholders(text):
            assert values[n].strip() in out, (n, values[n])


@FUZZ
@given(st.sampled_from(sorted(LIBRARY.rewrites)), USER_TEXT.filter(str.strip))
@example("shorter", "2024. What a year.\n3. Next")  # was renumbered to "1. What a year." (the 4th line numbered)
@example("shorter", "Intro\n\n\n\nOutro")  # blank-line runs were squeezed to one blank line
def test_rewrite_passage_is_sent_as_typed(op_name, passage):
    """The passage to rewrite is the user's draft: the instruction around it may not change it."""
    op = LIBRARY.rewrites[op_name]
    out = render(op.instruction, {"text": passage, "words": 3, "language": "English"}, STAGE_BUILTINS["rewrite"])
    assert passage.strip() in out


@FUZZ
@given(st.sampled_from(TEMPLATES), st.data())
def test_template_structure_survives_any_values(name, data):
    """The template's own numbered instructions still count 1, 2, 3... whatever the values, and an
    optional value left empty drops its line (and only lines that use it)."""
    template = LIBRARY.templates[name]
    required = {f.name for f in template.fields if f.required}
    for stage, text in template.prompts().items():
        names = set(template.field_names) | STAGE_BUILTINS[stage]
        # A marker per value that cannot occur in the template, so lines can be traced back.
        values = {
            n: "" if n not in required and data.draw(st.booleans(), label=f"{n} empty") else f"\x00{n}\x00"
            for n in sorted(names)
        }
        out = render(text, values, names, required)
        kept = [line for line in text.splitlines() if all(values[n] for n in placeholders(line))]
        numbered = [line for line in kept if re.match(r"^\s*\d+\.\s", line)]
        got = [int(m) for m in re.findall(r"(?m)^\s*(\d+)\.\s", out)]
        assert len(got) == len(numbered)
        # Each numbered run starts at 1 and counts up by one.
        for a, b in zip(got, got[1:]):
            assert b == a + 1 or b == 1
        assert not got or got[0] == 1
        for n in placeholders(text):
            assert (f"\x00{n}\x00" in out) == any(n in placeholders(line) for line in kept)


@FUZZ
@given(st.text(max_size=60))
@example("{a}{")
@example("{a!s}")
@example("{0}")
@example("{}")
@example("{a.b}")
@example("{a[0]}")
def test_a_malformed_template_fails_with_template_error_only(text):
    """Template text is checked at load time; anything malformed is a TemplateError, never a
    ValueError/KeyError/IndexError from str.format at request time."""
    try:
        names = placeholders(text)
    except TemplateError:
        return
    allowed = set(names)
    try:
        out = render(text, {n: "v" for n in names}, allowed)
    except TemplateError as exc:
        assert "required" not in str(exc)
        return
    assert isinstance(out, str)


@FUZZ
@given(st.sampled_from(TEMPLATES), st.integers(min_value=TEXTAREA_LIMIT, max_value=TEXTAREA_LIMIT * 30))
def test_huge_values_render_whole(name, size):
    template = LIBRARY.templates[name]
    stage, text = next(iter(template.prompts().items()))
    names = set(template.field_names) | STAGE_BUILTINS[stage]
    big = ("ü{x}" * size)[:size]
    out = render(text, {n: big for n in names}, names)
    assert out.count(big) == len(placeholders(text))


# --- prepare_brief ----------------------------------------------------------------------------------

JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    USER_TEXT,
    st.text(max_size=30),
)
JSON = st.recursive(
    JSON_SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)


def field_value(f):
    """Values a caller could send for field `f`: plausible ones of its kind, and arbitrary JSON."""
    plausible = {
        "number": st.one_of(
            st.integers(-(10**6), 10**6),
            st.floats(),
            st.text(max_size=8),
            st.sampled_from([10**400, -(10**400), "1e999", "nan", "0", ""]),
        ),
        "list": st.one_of(USER_TEXT, st.lists(st.one_of(USER_TEXT, JSON_SCALAR), max_size=12)),
        "choice": st.one_of(st.sampled_from(f.choices or ("",)), USER_TEXT),
    }.get(f.input, USER_TEXT)
    return st.one_of(plausible, plausible, JSON)


@st.composite
def briefs(draw):
    template = LIBRARY.templates[draw(st.sampled_from(TEMPLATES))]
    fields = {
        f.name: draw(field_value(f), label=f.name)
        for f in template.fields
        if draw(st.booleans(), label=f"send {f.name}")
    }
    if draw(st.booleans()):
        fields[draw(st.sampled_from(["bogus", "tone", "length", "Topic", "{topic}"]))] = draw(JSON)
    return template, fields


@FUZZ
@given(briefs())
@example((LIBRARY.templates["blog_post"], {"topic": "x", "length": 10**400}))  # float() overflows
@example((LIBRARY.templates["blog_post"], {"topic": "x", "length": "1e999"}))
@example((LIBRARY.templates["product_description"], {"topic": "x", "keywords": [None, 1, {"a": 2}]}))
def test_prepare_brief_gives_a_checked_brief_or_input_error(case):
    """Any JSON the API receives for a brief gives a Brief whose values respect the template (numbers
    in range, lists bounded, text within its limit, choices valid) or an InputError; nothing else."""
    template, fields = case
    try:
        brief = prepare_brief(template, fields, LIBRARY.common.tones)
    except InputError as exc:
        assert str(exc).strip()
        return
    assert isinstance(brief, Brief)
    for f in template.fields:
        value = brief.values[f.name]
        if f.input == "number":
            assert isinstance(value, int) and f.min <= value <= f.max, (f.name, value)
        elif f.input == "list":
            assert isinstance(value, list) and len(value) <= f.max_items
            assert all(isinstance(k, str) and k.strip() and len(k) <= KEYWORD_CHARS for k in value)
            assert not f.required or value
        else:
            assert isinstance(value, str)
            assert len(value) <= (TEXTAREA_LIMIT if f.input == "textarea" else TEXT_LIMIT) or f.name == "tone"
            assert not f.required or value.strip()
            if f.input == "choice" and not f.custom and value and f.name != "tone":
                assert value in f.choices
    # A checked brief always fills its template's prompts.
    builtins = {
        "sections": 3,
        "outline": "Title\n1. A\n2. B",
        "section_title": "A",
        "section_number": 1,
        "section_count": 2,
        "section_words": 100,
        "section_note": "n",
        "previous_text": "p",
        "text": "t",
        "words": 1,
        "language": "English",
    }
    for stage, text in template.prompts().items():
        render(
            text,
            {**builtins, **brief.values},
            set(template.field_names) | STAGE_BUILTINS[stage],
            {f.name for f in template.fields if f.required},
        )
