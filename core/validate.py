"""Checks for values callers send (API arguments, form fields): each helper coerces one value or refuses
it with an InputError (core.errors) naming the parameter and what is allowed. No gradio: the API edge, the
UI handlers and the option objects (ChatOptions, WriteOptions, CondenseOptions) share them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from core.errors import InputError

MAX_SEED = 2**32 - 1  # every text engine takes it (llama.cpp's sampler seed is 32-bit)
ROLES = ("user", "assistant", "system")
MAX_KEY_CHARS = 64
MAX_LIST_ITEMS = 100


def shown(value: Any) -> str:
    """A value as a message can quote it: short, and saying what kind of thing arrived."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "…")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _bounds(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" from {lo:g} to {hi:g}"
    if lo is not None:
        return f" of at least {lo:g}"
    if hi is not None:
        return f" of at most {hi:g}"
    return ""


def _as_float(value: Any) -> float | None:
    """The number in `value` (a JSON number or a numeric string), or None when there is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value) if not isinstance(value, int) or abs(value) < 2**1023 else math.inf
    elif isinstance(value, str) and value.strip():
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def number(
    name: str, value: Any, lo: float | None = None, hi: float | None = None, *, default: float | None = None
) -> float:
    """A finite number within [lo, hi]. None (or "") takes `default`; without one it is refused."""
    if (value is None or value == "") and default is not None:
        return float(default)
    got = _as_float(value)
    if got is None or (lo is not None and got < lo) or (hi is not None and got > hi):
        raise InputError(f"{name} must be a number{_bounds(lo, hi)}, got {shown(value)}.")
    return got


def whole(name: str, value: Any, lo: int | None = None, hi: int | None = None, *, default: int | None = None) -> int:
    """A whole number within [lo, hi] (3.0 counts; 3.5 does not). None (or "") takes `default`."""
    if (value is None or value == "") and default is not None:
        return int(default)
    if isinstance(value, int) and not isinstance(value, bool):
        got: float | int | None = value  # exact, however large
    else:
        got = _as_float(value)
        if got is not None and not float(got).is_integer():
            got = None
    if got is None or (lo is not None and got < lo) or (hi is not None and got > hi):
        raise InputError(f"{name} must be a whole number{_bounds(lo, hi)}, got {shown(value)}.")
    return int(got)


def seed(name: str, value: Any, maximum: int = MAX_SEED) -> int | None:
    """None for random (null, "" or any negative number), else a whole number up to `maximum`."""
    if value is None or value == "":
        return None
    try:
        got = whole(name, value)
    except InputError:
        raise InputError(
            f"{name} must be -1 (random) or a whole number from 0 to {maximum}, got {shown(value)}."
        ) from None
    if got < 0:
        return None
    if got > maximum:
        raise InputError(f"{name} must be -1 (random) or a whole number from 0 to {maximum}, got {got}.")
    return got


def text(name: str, value: Any, max_chars: int, *, default: str = "") -> str:
    """A string of at most `max_chars` characters; None takes `default`."""
    if value is None:
        return default
    if not isinstance(value, str):
        raise InputError(f"{name} must be text (a string), got {shown(value)}.")
    if len(value) > max_chars:
        raise InputError(f"{name} is {len(value):,} characters; the limit is {max_chars:,}.")
    return value


def choice(name: str, value: Any, choices: Iterable[str], *, default: str | None = None) -> str:
    """One of `choices`; None or "" takes `default` when there is one."""
    options = list(choices)
    if (value is None or value == "") and default is not None:
        return default
    if not isinstance(value, str) or value not in options:
        listed = ", ".join(options[:12]) + (", …" if len(options) > 12 else "")
        raise InputError(f"{name} must be one of: {listed}; got {shown(value)}.")
    return value


def texts(name: str, value: Any, *, max_items: int, max_chars: int) -> list[str]:
    """A list of strings (each at most `max_chars`); None is an empty list."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{name} must be a list of texts, got {shown(value)}.")
    if len(value) > max_items:
        raise InputError(f"{name} has {len(value):,} items; the limit is {max_items:,}.")
    return [text(f"{name}[{i}]", v, max_chars) for i, v in enumerate(value)]


def history(name: str, value: Any, *, max_items: int, max_chars: int) -> list[dict[str, str]]:
    """Earlier turns as [{"role": "user"|"assistant"|"system", "content": "..."}]; None is no history.
    Other keys of an item (Gradio's "metadata", "options") are dropped; `max_chars` bounds the total."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(f"{name} must be a list of {{role, content}} objects, got {shown(value)}.")
    if len(value) > max_items:
        raise InputError(f"{name} has {len(value):,} items; the limit is {max_items:,}.")
    out, total = [], 0
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise InputError(f"{where} must be an object with a role and a content, got {shown(item)}.")
        role, content = item.get("role"), item.get("content")
        if role not in ROLES:
            raise InputError(f"{where}.role must be one of: {', '.join(ROLES)}; got {shown(role)}.")
        if not isinstance(content, str):
            raise InputError(f"{where}.content must be text (a string), got {shown(content)}.")
        total += len(content)
        if total > max_chars:
            raise InputError(f"{name} holds more than {max_chars:,} characters; send fewer or shorter turns.")
        out.append({"role": role, "content": content})
    return out


def fields(name: str, value: Any, *, max_items: int, max_chars: int) -> dict[str, Any]:
    """An object of field name -> text, number or list of texts (None for a field left out)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{name} must be an object of field name -> value, got {shown(value)}.")
    if len(value) > max_items:
        raise InputError(f"{name} has {len(value)} fields; the limit is {max_items}.")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_CHARS:
            raise InputError(f"{name} has a field name that is not a short text: {shown(key)}.")
        where = f"{name}.{key}"
        if isinstance(item, str):
            out[key] = text(where, item, max_chars)
        elif isinstance(item, list):
            if len(item) > MAX_LIST_ITEMS or not all(isinstance(x, str) for x in item):
                raise InputError(
                    f"{where} must be a text, a number or a list of at most {MAX_LIST_ITEMS} texts, got {shown(item)}."
                )
            out[key] = [text(where, x, max_chars) for x in item]
        elif item is None or (isinstance(item, (int, float)) and not isinstance(item, bool)):
            if item is not None:
                number(where, item)  # finite: NaN and infinities are refused
            out[key] = item
        else:
            raise InputError(f"{where} must be a text, a number or a list of texts, got {shown(item)}.")
    return out


def model_spec(name: str, value: Any) -> str | None:
    """A model spec as typed (checked against the configured ones where it is used); empty is None."""
    spec = text(name, value, 500).strip()
    return spec or None
