"""Writer templates as data: every template renders with its declared fields, an undeclared
placeholder fails loading, required fields are enforced, and a new file is a new template."""

from __future__ import annotations

import re
import shutil

import pytest

from core.writer.templates import (
    STAGE_BUILTINS,
    WRITER_DIR,
    TemplateError,
    load_common,
    load_library,
    load_template,
    placeholders,
    render,
)

LIBRARY = load_library()
TEMPLATES = sorted(LIBRARY.templates)
REQUIRED_TEMPLATES = {
    "blog_post",
    "product_description",
    "ad_aida",
    "ad_pas",
    "social_x",
    "social_linkedin",
    "social_instagram",
    "email_newsletter",
    "press_release",
    "landing_hero",
    "seo_meta",
}


def sample_values(template) -> dict:
    values = {}
    for f in template.fields:
        if f.input == "number":
            values[f.name] = f.default
        elif f.input == "list":
            values[f.name] = ["alpha keyword", "beta"]
        elif f.input == "choice":
            values[f.name] = f.choices[0]
        else:
            values[f.name] = f"VALUE-{f.name.upper()}"
    return values


def test_the_issue_templates_are_all_there():
    assert set(TEMPLATES) >= REQUIRED_TEMPLATES
    kinds = {name: LIBRARY.templates[name].kind for name in REQUIRED_TEMPLATES}
    assert kinds["blog_post"] == "long" and kinds["product_description"] == "short"


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_template_renders_with_its_declared_fields(name):
    template = LIBRARY.templates[name]
    values = sample_values(template)
    builtins = {
        "sections": 4,
        "outline": "Title: T\n1. One\n2. Two",
        "section_title": "One",
        "section_number": 1,
        "section_count": 2,
        "section_words": 150,
        "section_note": "NOTE",
        "previous_text": "PREVIOUS",
    }
    for stage, text in template.prompts().items():
        allowed = set(template.field_names) | STAGE_BUILTINS[stage]
        out = render(text, {**values, **builtins}, allowed, {f.name for f in template.fields if f.required})
        assert "VALUE-TOPIC" in out  # the brief is restated in every prompt
        assert not re.search(r"\{[a-z_]+\}", out), out  # every placeholder was filled
        numbers = [int(m) for m in re.findall(r"(?m)^(\d+)\. ", out)]
        assert numbers and numbers[0] == 1  # numbered instructions for small models
    assert template.system and len(template.system) < 600  # a short system prompt


@pytest.mark.parametrize("name", TEMPLATES)
def test_an_undeclared_placeholder_fails_loading(name, tmp_path):
    source = WRITER_DIR / f"{name}.toml"
    text = source.read_text(encoding="utf-8")
    key = 'prompt = """'
    assert key in text
    broken = text.replace(key, key + "Mention {undeclared_thing}.\n", 1)
    path = tmp_path / f"{name}.toml"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(TemplateError) as exc:
        load_template(path, LIBRARY.common)
    assert "{undeclared_thing}" in str(exc.value) and name in str(exc.value)


def test_render_refuses_undeclared_missing_and_empty_required_values():
    with pytest.raises(TemplateError, match="undeclared"):
        render("About {topic} for {who}", {"topic": "x", "who": "y"}, {"topic"})
    with pytest.raises(TemplateError, match="no value"):
        render("About {topic}", {}, {"topic"})
    with pytest.raises(TemplateError, match="required"):
        render("About {topic}", {"topic": "  "}, {"topic"}, {"topic"})
    for bad in ("{topic!r}", "{topic:>10}", "{0}", "{topic.upper}", "{topic", "{}"):
        with pytest.raises(TemplateError):
            placeholders(bad)
    assert placeholders("{{literal}} {topic}") == ["topic"]


def test_lines_with_empty_optional_values_are_dropped_and_numbering_stays_contiguous():
    text = "Brief:\n- Topic: {topic}\n- Audience: {audience}\n\n1. First.\n2. Use: {keywords}\n3. End: {cta}\n4. Last."
    out = render(
        text, {"topic": "Tea", "audience": "", "keywords": [], "cta": "Buy"}, {"topic", "audience", "keywords", "cta"}
    )
    assert "Audience" not in out and "Use:" not in out
    assert out.endswith("1. First.\n2. End: Buy\n3. Last.")
    listed = render("Keywords: {keywords}", {"keywords": ["a b", "c"]}, {"keywords"})
    assert listed == 'Keywords: "a b", "c"'


def test_values_are_not_reinterpreted_as_placeholders():
    out = render("Topic: {topic}", {"topic": "{cta} and {{x}}"}, {"topic", "cta"})
    assert out == "Topic: {cta} and {{x}}"


def test_adding_a_template_is_adding_a_file(tmp_path):
    for helper in ("_common.toml", "_rewrites.toml", "social_x.toml"):
        shutil.copy(WRITER_DIR / helper, tmp_path / helper)
    (tmp_path / "haiku.toml").write_text(
        '''
label = "Product haiku"
kind = "short"
system = "You write haiku."
prompt = """Write a haiku about {topic} for {season}.
1. Three lines."""

[[fields]]
name = "topic"
label = "Product"
required = true

[[fields]]
name = "season"
label = "Season"
input = "choice"
choices = ["spring", "winter"]
default = "spring"
''',
        encoding="utf-8",
    )
    library = load_library(tmp_path)
    assert set(library.templates) == {"haiku", "social_x"}
    haiku = library.get("haiku")
    assert haiku.extra_fields[0].name == "season" and haiku.extra_fields[0].choices == ("spring", "winter")
    with pytest.raises(KeyError, match="Valid templates: .*haiku"):
        library.get("sonnet")


@pytest.mark.parametrize(
    "body, message",
    [
        ('kind = "medium"', "kind must be"),
        (
            'kind = "short"\nlabel = "x"\nsystem = "s"\nprompt = "{topic}"\n[[fields]]\nname = "topic"\nlabel = "T"',
            "required 'topic'",
        ),
        (
            'kind = "short"\nlabel = "x"\nsystem = "s"\nprompt = "{topic}"\n[[fields]]\nname = "topic"\nlabel = "T"\n'
            'required = true\ninput = "slider"',
            "input must be",
        ),
        (
            'kind = "short"\nlabel = "x"\nsystem = "s"\nprompt = "{topic}"\n[[fields]]\nname = "topic"\nlabel = "T"\n'
            'required = true\n[[fields]]\nname = "n"\nlabel = "N"\ninput = "number"',
            "integer min and max",
        ),
        (
            'kind = "short"\nlabel = "x"\nsystem = "s"\nprompt = "{topic}"\n[[fields]]\nname = "topic"\nlabel = "T"\n'
            'required = true\n[[fields]]\nname = "k"\nlabel = "K"\ninput = "list"',
            "max_items",
        ),
        (
            'kind = "long"\nlabel = "x"\nsystem = "s"\n[[fields]]\nname = "topic"\nlabel = "T"\nrequired = true\n'
            '[outline]\nprompt = "{topic}"\n[section]\nprompt = "{section_title}"',
            "default_sections",
        ),
        (
            'kind = "short"\nlabel = "x"\nsystem = "s"\nprompt = "{topic}"\nmystery = 1\n[[fields]]\nname = "topic"\n'
            'label = "T"\nrequired = true',
            "unknown key",
        ),
    ],
)
def test_malformed_templates_fail_with_a_message_naming_the_problem(tmp_path, body, message):
    path = tmp_path / "bad.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(TemplateError, match=message):
        load_template(path, load_common())


def test_rewrite_operations_are_data_and_render():
    ops = LIBRARY.rewrites
    assert {"shorter", "longer", "simpler", "formal", "persuasive", "grammar", "translate"} <= set(ops)
    assert ops["translate"].needs_language and not ops["shorter"].needs_language
    for op in ops.values():
        out = render(op.instruction, {"text": "SOME TEXT", "words": 2, "language": "German"}, STAGE_BUILTINS["rewrite"])
        assert "SOME TEXT" in out
    assert "German" in render(
        ops["translate"].instruction, {"text": "t", "words": 1, "language": "German"}, STAGE_BUILTINS["rewrite"]
    )


def test_length_limits_are_declared_for_seo_and_x():
    seo = {c.label: c.max_chars for c in LIBRARY.get("seo_meta").checks}
    assert seo == {"SEO title": 60, "Meta description": 155}
    assert [c.max_chars for c in LIBRARY.get("social_x").checks] == [280]
