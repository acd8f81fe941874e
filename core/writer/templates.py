"""Writer templates and rewrite operations as data (prompts/writer/*.toml): loading, checking and
strict rendering. A template declares its fields; a prompt may only use declared fields and the
few built-in values of its stage, and a malformed file fails at startup, not mid-request."""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.prompts import PROMPTS_DIR

WRITER_DIR = PROMPTS_DIR / "writer"
COMMON_FILE = "_common.toml"  # tones, languages, variant angles
REWRITES_FILE = "_rewrites.toml"

InputKind = Literal["text", "textarea", "choice", "number", "list"]
INPUT_KINDS = ("text", "textarea", "choice", "number", "list")
# Names the writer tab shows as its fixed brief controls; any other declared field gets a generic slot.
STANDARD_FIELDS = ("topic", "audience", "tone", "length", "keywords", "cta", "language")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

# Values the service supplies at each stage, on top of the template's declared fields.
STAGE_BUILTINS: dict[str, frozenset[str]] = {
    "prompt": frozenset(),
    "note": frozenset(),  # a long template's first / middle / last section notes
    "outline": frozenset({"sections"}),
    "section": frozenset(
        {
            "outline",
            "section_title",
            "section_number",
            "section_count",
            "section_words",
            "section_note",
            "previous_text",
        }
    ),
    "rewrite": frozenset({"text", "language", "words"}),
    "repair": frozenset({"what", "topic", "keywords", "text", "words", "language", "aspect"}),
}
REPAIR_PROMPTS = ("keyword_sentence", "continue_text")  # [repair] in _common.toml
_NUMBERED = re.compile(r"^(\s*)\d+\.(\s)")


class TemplateError(ValueError):
    """A template file (or a render call) breaks the rules; the message names the file and field."""


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    input: InputKind = "text"
    required: bool = False
    default: Any = ""
    help: str = ""
    placeholder: str = ""
    choices: tuple[str, ...] = ()  # for input="choice"
    custom: bool = False  # choice: free text allowed too
    min: int | None = None  # number: clamp range
    max: int | None = None
    max_items: int | None = None  # list: more is refused


@dataclass(frozen=True)
class Check:
    """A length rule on the output: the whole text, or the group captured by `pattern` per line."""

    label: str
    max_chars: int | None = None
    min_chars: int | None = None
    pattern: str | None = None


@dataclass(frozen=True)
class Template:
    name: str  # the file stem, used by the API
    label: str
    kind: Literal["short", "long"]
    description: str
    system: str
    fields: tuple[Field, ...]
    prompt: str = ""  # short pieces
    outline_prompt: str = ""  # long pieces
    section_prompt: str = ""
    section_notes: Mapping[str, str] = field(default_factory=dict)  # first / middle / last
    default_sections: tuple[str, ...] = ()
    words_per_section: int = 180
    max_tokens: int = 400  # short pieces without a length field
    stop: tuple[str, ...] = ()  # stop strings for short pieces (e.g. a blank line after a two-line format)
    checks: tuple[Check, ...] = ()
    path: Path | None = None

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def extra_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.name not in STANDARD_FIELDS)

    def prompts(self) -> dict[str, str]:
        """Stage -> prompt text, for the stages this kind of template has."""
        if self.kind == "short":
            return {"prompt": self.prompt}
        return {"outline": self.outline_prompt, "section": self.section_prompt}


@dataclass(frozen=True)
class RewriteOp:
    name: str
    label: str
    instruction: str  # the user message; {text} is the passage, {language} the target language
    needs_language: bool = False
    # How long the result may be, relative to the input's tokens (longer needs more room).
    length_factor: float = 1.3


@dataclass(frozen=True)
class WriterCommon:
    tones: Mapping[str, str]  # preset -> how it is described to the model
    languages: tuple[str, ...]
    angles: tuple[str, ...]  # one per variant, so variants differ in approach, not only in sampling
    rewrite_system: str
    repair: Mapping[str, str] = field(default_factory=dict)  # the repair steps' prompts (REPAIR_PROMPTS)


# --------------------------------------------------------------------------------------------------
# rendering


def placeholders(text: str) -> list[str]:
    """Names used as {name} in `text`; refuses format specs, conversions, indexing and positional {}."""
    names = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"unbalanced braces: {exc} (write {{{{ and }}}} for literal braces)") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not NAME_RE.match(name) or spec or conversion:
            raise TemplateError(
                f"placeholder {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} must be a plain {{field_name}}"
            )
        names.append(name)
    return names


def render(
    text: str,
    values: Mapping[str, Any],
    allowed: set[str] | frozenset[str],
    required: set[str] | frozenset[str] = frozenset(),
) -> str:
    """Fill {placeholders} strictly. Every placeholder must be in `allowed` and have a value; a
    required value may not be empty. A line that uses an optional value left empty is dropped (so
    'Call to action: {cta}' disappears when there is none) and numbered lines are renumbered."""
    names = placeholders(text)
    undeclared = sorted(set(names) - set(allowed))
    if undeclared:
        raise TemplateError(
            f"undeclared placeholder(s) {', '.join('{' + n + '}' for n in undeclared)}; "
            f"declared: {', '.join(sorted(allowed)) or 'none'}"
        )
    missing = sorted(n for n in set(names) if n not in values)
    if missing:
        raise TemplateError(f"no value given for {', '.join(missing)}")
    empty_required = sorted(n for n in required if not _text(values.get(n)).strip())
    if empty_required:
        raise TemplateError(f"required field(s) empty: {', '.join(empty_required)}")
    out_lines: list[str] = []
    number = 0
    blank = True  # the last line kept was a blank line of the template (or there is none yet)
    # Numbering and blank lines are the template's own: a value is inserted as typed, so "2024. was..."
    # at the start of a user's text is not renumbered and its blank lines are not squeezed.
    for line in text.splitlines():
        used = placeholders(line)
        if any(not _text(values[n]).strip() for n in used):
            continue
        m = _NUMBERED.match(line)
        if m:
            number += 1
            line = f"{m.group(1)}{number}.{m.group(2)}" + line[m.end() :]
        elif not line.strip():
            number = 0  # a blank line ends a numbered list
            if blank:
                continue  # at most one blank line where dropped lines leave a run of them
        blank = not line.strip()
        out_lines.append(line.format_map({n: _text(values[n]) for n in used}))
    return "\n".join(out_lines).strip()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(f'"{v}"' for v in value)
    return str(value)


# --------------------------------------------------------------------------------------------------
# loading


def _str(data: dict, key: str, where: str, required: bool = True, default: str = "") -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise TemplateError(f"{where}: '{key}' is required")
        return default
    if not isinstance(value, str):
        raise TemplateError(f"{where}: '{key}' must be a string")
    return value.strip()


def _field(raw: dict, where: str, common: WriterCommon) -> Field:
    if not isinstance(raw, dict):
        raise TemplateError(f"{where}: each [[fields]] entry must be a table")
    known = {
        "name",
        "label",
        "input",
        "required",
        "default",
        "help",
        "placeholder",
        "choices",
        "custom",
        "min",
        "max",
        "max_items",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise TemplateError(f"{where}: unknown key(s) {', '.join(unknown)}")
    name = _str(raw, "name", where)
    if not NAME_RE.match(name) or name in STAGE_BUILTINS["outline"] | STAGE_BUILTINS["section"]:
        raise TemplateError(f"{where}: field name {name!r} must be lower_snake_case and not a built-in")
    where = f"{where} field {name!r}"
    kind = raw.get("input", "text")
    if kind not in INPUT_KINDS:
        raise TemplateError(f"{where}: input must be one of {', '.join(INPUT_KINDS)}")
    choices = raw.get("choices", ())
    if choices == "tones":
        choices = tuple(common.tones)
    elif choices == "languages":
        choices = common.languages
    elif not isinstance(choices, (list, tuple)) or not all(isinstance(c, str) for c in choices):
        raise TemplateError(f'{where}: choices must be a list of strings, "tones" or "languages"')
    if kind == "choice" and not choices:
        raise TemplateError(f"{where}: a choice field needs choices")
    lo, hi = raw.get("min"), raw.get("max")
    if kind == "number" and (not isinstance(lo, int) or not isinstance(hi, int) or not 0 < lo <= hi):
        raise TemplateError(f"{where}: a number field needs integer min and max, 0 < min <= max")
    default = raw.get("default", lo if kind == "number" else "")
    if kind == "number" and not (
        isinstance(default, int) and isinstance(lo, int) and isinstance(hi, int) and lo <= default <= hi
    ):
        raise TemplateError(f"{where}: default must be an integer between min and max")
    if kind == "choice" and default and default not in choices and not raw.get("custom", False):
        raise TemplateError(f"{where}: default {default!r} is not one of the choices")
    max_items = raw.get("max_items")
    if kind == "list" and not (isinstance(max_items, int) and max_items > 0):
        raise TemplateError(f"{where}: a list field needs max_items (a positive integer)")
    return Field(
        name=name,
        label=_str(raw, "label", where),
        input=kind,
        required=bool(raw.get("required", False)),
        default=default,
        help=_str(raw, "help", where, False),
        placeholder=_str(raw, "placeholder", where, False),
        choices=tuple(choices),
        custom=bool(raw.get("custom", False)),
        min=lo,
        max=hi,
        max_items=max_items,
    )


def load_template(path: Path, common: WriterCommon) -> Template:
    where = path.name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{where}: not valid TOML: {exc}") from None
    known = {
        "label",
        "kind",
        "description",
        "system",
        "fields",
        "prompt",
        "outline",
        "section",
        "checks",
        "max_tokens",
        "stop",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise TemplateError(f"{where}: unknown key(s) {', '.join(unknown)}")
    kind = data.get("kind")
    if kind not in ("short", "long"):
        raise TemplateError(f'{where}: kind must be "short" or "long"')
    fields = tuple(_field(f, where, common) for f in data.get("fields", []))
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise TemplateError(f"{where}: a field name appears twice")
    topic = next((f for f in fields if f.name == "topic"), None)
    if topic is None or not topic.required:
        raise TemplateError(f"{where}: every template needs a required 'topic' field (the API's first parameter)")
    checks = []
    for i, raw in enumerate(data.get("checks", [])):
        pattern = raw.get("pattern")
        if pattern is not None:
            try:
                if re.compile(pattern).groups != 1:
                    raise TemplateError(f"{where}: check #{i + 1} pattern needs exactly one (group)")
            except re.error as exc:
                raise TemplateError(f"{where}: check #{i + 1} pattern: {exc}") from None
        checks.append(
            Check(
                label=_str(raw, "label", f"{where} check #{i + 1}"),
                max_chars=raw.get("max_chars"),
                min_chars=raw.get("min_chars"),
                pattern=pattern,
            )
        )
    outline, section = data.get("outline", {}), data.get("section", {})
    template = Template(
        name=path.stem,
        label=_str(data, "label", where),
        kind=kind,
        description=_str(data, "description", where, False),
        system=_str(data, "system", where),
        fields=fields,
        prompt=_str(data, "prompt", where, kind == "short"),
        outline_prompt=_str(outline, "prompt", f"{where} [outline]", kind == "long"),
        section_prompt=_str(section, "prompt", f"{where} [section]", kind == "long"),
        section_notes={k: _str(section, k, f"{where} [section]", False) for k in ("first", "middle", "last")},
        default_sections=tuple(outline.get("default_sections", ())),
        words_per_section=int(section.get("words", 180)),
        max_tokens=int(data.get("max_tokens", 400)),
        stop=tuple(str(x) for x in data.get("stop", ())),
        checks=tuple(checks),
        path=path,
    )
    if kind == "long" and len(template.default_sections) < 2:
        raise TemplateError(f"{where}: a long template needs [outline] default_sections (two or more)")
    if kind == "long" and template.field("length") is None:
        raise TemplateError(f"{where}: a long template needs a 'length' number field")
    texts = {**template.prompts(), **{f"section {k} note": v for k, v in template.section_notes.items()}}
    for stage, text in texts.items():
        builtins = STAGE_BUILTINS["note" if stage.endswith(" note") else stage]
        try:
            render(text, {n: "x" for n in (*names, *builtins)}, set(names) | builtins)
        except TemplateError as exc:
            raise TemplateError(f"{where} ({stage}): {exc}") from None
    return template


def load_common(path: Path | None = None) -> WriterCommon:
    path = path or WRITER_DIR / COMMON_FILE
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    tones = {t["name"]: t.get("describe", t["name"]).strip() for t in data.get("tone", [])}
    if not tones or not data.get("languages") or len(data.get("angles", [])) < 4:
        raise TemplateError(f"{path.name}: needs [[tone]] entries, languages and at least 4 angles")
    repair = data.get("repair")
    if repair is None and path != WRITER_DIR / COMMON_FILE:  # a folder of custom templates uses the app's
        repair = tomllib.loads((WRITER_DIR / COMMON_FILE).read_text(encoding="utf-8")).get("repair")
    repair = {k: str(v).strip() for k, v in (repair or {}).items()}
    for key in REPAIR_PROMPTS:
        if not repair.get(key):
            raise TemplateError(f"{path.name}: [repair] needs {key}")
        try:
            render(repair[key], {n: "x" for n in STAGE_BUILTINS["repair"]}, STAGE_BUILTINS["repair"])
        except TemplateError as exc:
            raise TemplateError(f"{path.name} [repair] {key}: {exc}") from None
    return WriterCommon(
        tones=tones,
        languages=tuple(data["languages"]),
        angles=tuple(data["angles"]),
        rewrite_system=str(data.get("rewrite_system", "")).strip(),
        repair=repair,
    )


def load_rewrites(path: Path | None = None) -> dict[str, RewriteOp]:
    path = path or WRITER_DIR / REWRITES_FILE
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    ops: dict[str, RewriteOp] = {}
    for raw in data.get("rewrite", []):
        where = f"{path.name} rewrite {raw.get('name')!r}"
        op = RewriteOp(
            name=_str(raw, "name", where),
            label=_str(raw, "label", where),
            instruction=_str(raw, "instruction", where),
            needs_language=bool(raw.get("needs_language", False)),
            length_factor=float(raw.get("length_factor", 1.3)),
        )
        try:
            render(op.instruction, {n: "x" for n in STAGE_BUILTINS["rewrite"]}, STAGE_BUILTINS["rewrite"])
        except TemplateError as exc:
            raise TemplateError(f"{where}: {exc}") from None
        if "{text}" not in op.instruction:
            raise TemplateError(f"{where}: the instruction must contain {{text}}")
        ops[op.name] = op
    if not ops:
        raise TemplateError(f"{path.name}: no [[rewrite]] entries")
    return ops


@dataclass(frozen=True)
class TemplateLibrary:
    templates: Mapping[str, Template]  # file stem -> template, sorted by label
    common: WriterCommon
    rewrites: Mapping[str, RewriteOp]

    def get(self, name: str | None) -> Template:
        template = self.templates.get((name or "").strip())
        if template is None:
            raise KeyError(f"Unknown template {name!r}. Valid templates: {', '.join(self.templates)}.")
        return template


def load_library(folder: Path | None = None) -> TemplateLibrary:
    """Every *.toml in the folder is a template, except _common.toml and _rewrites.toml."""
    folder = Path(folder or WRITER_DIR)
    common = load_common(folder / COMMON_FILE)
    templates = [load_template(p, common) for p in sorted(folder.glob("*.toml")) if not p.name.startswith("_")]
    if not templates:
        raise TemplateError(f"no templates in {folder}")
    return TemplateLibrary(
        templates={t.name: t for t in sorted(templates, key=lambda t: t.label.lower())},
        common=common,
        rewrites=load_rewrites(folder / REWRITES_FILE),
    )
