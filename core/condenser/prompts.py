"""The condenser's prompts as data (prompts/condense_prompts.toml): loaded and checked once, so a
malformed file fails at startup, and rendered strictly (a prompt uses only the placeholders declared
for it, and every value comes from the code, never from a document)."""

from __future__ import annotations

import string
import tomllib
from dataclasses import dataclass
from pathlib import Path

from core.prompts import PROMPTS_DIR

PROMPTS_FILE = PROMPTS_DIR / "condense_prompts.toml"
STAGES = ("map", "retry", "topic", "subject", "merge", "final", "direct")
_COMMON = frozenset({"begin", "end", "language_rule", "audience_rule", "focus_rule", "points"})
ALLOWED: dict[str, dict[str, frozenset[str]]] = {
    "map": {"system": _COMMON, "user": _COMMON | {"text", "position"}},
    "retry": {"system": _COMMON, "user": _COMMON | {"text", "position"}},
    "topic": {"system": _COMMON, "user": _COMMON | {"text", "position"}},
    "subject": {"system": _COMMON, "user": _COMMON | {"text", "position"}},
    "merge": {"system": _COMMON, "user": _COMMON | {"text"}},
    "final": {"system": _COMMON | {"form_rule"}, "user": _COMMON | {"text", "form_rule"}},
    "direct": {"system": _COMMON | {"form_rule"}, "user": _COMMON | {"text", "form_rule", "position"}},
}
_DATA = "\x00DATA\x00"  # stands in for {text} while the instructions around it are tidied


@dataclass(frozen=True)
class Length:
    name: str
    label: str
    points: str
    map_points: str
    merge_points: str
    max_new_tokens: int
    map_max_new_tokens: int


@dataclass(frozen=True)
class Form:
    name: str
    label: str
    rule: str
    bullets: bool


@dataclass(frozen=True)
class CondensePrompts:
    templates: dict[str, dict[str, str]]  # stage -> {"system": ..., "user": ...}
    lengths: dict[str, Length]
    forms: dict[str, Form]
    languages: tuple[str, ...]

    def render(self, stage: str, part: str, **values: str) -> str:
        """Fill a template; a placeholder it does not declare is a programming error."""
        template = self.templates[stage][part]
        wanted = _fields(template)
        missing = wanted - values.keys()
        if missing:
            raise KeyError(f"{stage}.{part} needs {sorted(missing)}")
        filled = {k: values[k] for k in wanted}
        data = filled.pop("text", None)
        text = template.format_map({**filled, **({"text": _DATA} if data is not None else {})})
        # A rule left empty leaves a double space; the data itself is never touched.
        text = "\n".join(" ".join(line.split()) if _DATA not in line else line for line in text.split("\n"))
        return text.replace(_DATA, data) if data is not None else text


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def load_condense_prompts(path: Path | None = None) -> CondensePrompts:
    path = path or PROMPTS_FILE
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    templates: dict[str, dict[str, str]] = {}
    for stage in STAGES:
        section = data.get(stage)
        if not isinstance(section, dict):
            raise ValueError(f"{path}: missing [{stage}]")
        templates[stage] = {}
        for part in ("system", "user"):
            text = section.get(part)
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{path}: [{stage}] needs a non-empty '{part}'")
            try:
                used = _fields(text)
            except ValueError as exc:
                raise ValueError(f"{path}: [{stage}] {part}: {exc}") from None
            unknown = used - ALLOWED[stage][part]
            if unknown:
                raise ValueError(
                    f"{path}: [{stage}] {part} uses undeclared placeholders {sorted(unknown)}; "
                    f"allowed: {sorted(ALLOWED[stage][part])}"
                )
            if part == "user" and not {"begin", "text", "end"} <= used:
                raise ValueError(f"{path}: [{stage}] user must put {{text}} between {{begin}} and {{end}}")
            templates[stage][part] = text.strip()
    lengths = {}
    for name, entry in (data.get("length") or {}).items():
        try:
            lengths[name] = Length(
                name,
                str(entry["label"]),
                str(entry["points"]),
                str(entry["map_points"]),
                str(entry["merge_points"]),
                int(entry["max_new_tokens"]),
                int(entry["map_max_new_tokens"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: [length.{name}] is incomplete ({exc})") from None
    forms = {}
    for name, entry in (data.get("form") or {}).items():
        try:
            forms[name] = Form(name, str(entry["label"]), str(entry["rule"]), bool(entry["bullets"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: [form.{name}] is incomplete ({exc})") from None
    if not lengths or not forms:
        raise ValueError(f"{path}: needs [length.*] and [form.*] entries")
    languages = tuple(str(x) for x in data.get("languages", ()))
    return CondensePrompts(templates, lengths, forms, languages)
