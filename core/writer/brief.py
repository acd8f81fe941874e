"""Briefs for the writer: the generation options and a brief checked against its template's
declared fields (required, lengths clamped and said so, keyword lists bounded, tones expanded)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from backends.text.base import GenerationParams
from core import validate
from core.errors import InputError
from core.writer.templates import STANDARD_FIELDS, Field, Template
from core.writer.text import parse_keywords

MAX_VARIANTS = 4
TEXT_LIMIT = 1_000  # characters in a one-line field
TEXTAREA_LIMIT = 6_000  # characters in a multi-line field (facts, features)
KEYWORD_CHARS = 80


@dataclass(frozen=True)
class WriteOptions:
    model: str | None = None  # spec; None = default
    variants: int = 1
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int | None = None  # None: random; variant i uses seed + i

    def checked(self) -> tuple[WriteOptions, list[str]]:
        """These options with every value checked (InputError names one of the wrong type or out of
        range; None takes the default), and notes on what was adjusted: variants are clamped to
        1..MAX_VARIANTS, and a temperature too low for several variants to differ is raised."""
        notes = []
        n = validate.whole("variants", self.variants, default=1)
        if not 1 <= n <= MAX_VARIANTS:
            clamped = max(1, min(MAX_VARIANTS, n))
            notes.append(f"{n} variants asked for; writing {clamped} (1 to {MAX_VARIANTS} are possible).")
            n = clamped
        temp = validate.number("temperature", self.temperature, 0.0, 2.0, default=0.7)
        top_p = validate.number("top_p", self.top_p, 0.0, 1.0, default=0.95)
        if n > 1 and temp < 0.3:
            notes.append(f"Temperature raised from {temp:g} to 0.7 so the {n} variants differ.")
            temp = 0.7
        seed = validate.seed("seed", self.seed)
        return WriteOptions(validate.model_spec("model", self.model), n, temp, max(0.05, top_p), seed), notes

    def params(self, variant: int, max_new_tokens: int, stop: tuple[str, ...] = ()) -> GenerationParams:
        seed = None if self.seed is None else self.seed + variant
        return GenerationParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_new_tokens=max(16, int(max_new_tokens)),
            seed=seed,
            stop=stop,
        )


@dataclass
class Brief:
    """A brief checked against its template: `values` are ready for the prompts, `raw` is what the
    person entered (stored and restored), `notes` say what was adjusted (clamped lengths...)."""

    template: Template
    values: dict[str, Any]
    raw: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def keywords(self) -> list[str]:
        return list(self.values.get("keywords") or [])

    @property
    def title(self) -> str:
        topic = " ".join(str(self.values.get("topic", "")).split())
        return topic if len(topic) <= 80 else topic[:79].rstrip() + "…"

    @property
    def length(self) -> int | None:
        return self.values.get("length") if self.template.field("length") else None


def prepare_brief(template: Template, fields: Mapping[str, Any], tones: Mapping[str, str]) -> Brief:
    """Check every value against the template's declared fields. Raises InputError (nothing is
    changed in the form); adjustments the person should know about go to Brief.notes."""
    notes: list[str] = []
    declared = set(template.field_names)
    for name, value in fields.items():
        if name in declared or _empty(value):
            continue
        if name in STANDARD_FIELDS:
            notes.append(f"The {template.label} template has no '{name}' setting; it was ignored.")
        else:
            raise InputError(
                f"The {template.label} template has no field '{name}'. Its fields are: "
                f"{', '.join(template.field_names)}."
            )
    values: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    for f in template.fields:
        value = fields.get(f.name)
        raw[f.name] = value if not isinstance(value, tuple) else list(value)
        values[f.name] = _check_field(template, f, value, notes, tones)
    return Brief(template, values, raw, notes)


def _check_field(template: Template, f: Field, value: Any, notes: list[str], tones: Mapping[str, str]) -> Any:
    if f.input == "number":
        return _clamp_number(f, value, notes)
    if f.input == "list":
        items = parse_keywords(value if isinstance(value, (str, list, tuple)) or value is None else str(value))
        if len(items) > (f.max_items or 0):
            raise InputError(
                f"{f.label}: {len(items)} given; the {template.label} template takes at most {f.max_items}. "
                f"Keep the {f.max_items} that matter most. Nothing was sent, and your list is still in the box."
            )
        long = [k for k in items if len(k) > KEYWORD_CHARS]
        if long:
            raise InputError(
                f"{f.label}: '{long[0][:40]}…' is {len(long[0])} characters; one keyword or "
                f"phrase may have at most {KEYWORD_CHARS}. Separate keywords with commas."
            )
        if f.required and not items:
            raise InputError(f"{f.label} is empty: the {template.label} template needs it.")
        return items
    text = "" if value is None else str(value).strip()
    if not text:
        if f.required:
            what = "say what the piece is about" if f.name == "topic" else "the template needs it"
            raise InputError(f"{f.label} is empty: {what}. Nothing was sent.")
        text = str(f.default or "")
    limit = TEXTAREA_LIMIT if f.input == "textarea" else TEXT_LIMIT
    if len(text) > limit:
        raise InputError(
            f"{f.label} is {len(text):,} characters; the limit is {limit:,}. Shorten it: "
            "nothing was sent, and your text is still in the box."
        )
    if f.input == "choice" and text and not f.custom and text not in f.choices:
        raise InputError(f"{f.label} must be one of: {', '.join(f.choices)} (got {text!r}).")
    if f.name == "tone" and text:
        text = tones.get(text, text)
    return text


def _empty(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, (str, list, tuple, dict)) and not value)
        or (isinstance(value, str) and not value.strip())
    )


def _clamp_number(f: Field, value: Any, notes: list[str]) -> int:
    lo, hi = int(f.min or 1), int(f.max or 1)
    if value is None or (isinstance(value, str) and not value.strip()):
        return int(f.default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{f.label} must be a number (got {str(value)[:40]!r}).") from None
    except OverflowError:  # an integer too large for a float: JSON allows any number of digits
        raise InputError(
            f"{f.label} must be a number from {lo} to {hi:,} (got one with {len(str(abs(value)))} digits)."
        ) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise InputError(f"{f.label} must be a number (got {value!r}).")
    if number == 0:  # "0" means "the template's default" (the API's way to leave it out)
        return int(f.default)
    if number < lo:
        notes.append(f"{f.label}: {number:g} is below the {lo} this template needs; using {lo}.")
        return lo
    if number > hi:
        notes.append(f"{f.label}: {number:,.0f} is more than this template writes (max {hi:,}); using {hi:,}.")
        return hi
    return int(round(number))
