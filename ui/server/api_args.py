"""Arguments checked at the edge, before any handler runs: `api_endpoint` wraps every gr.api function
(JSON types against the annotations, defaults for what is missing, clear errors); the ASGI `ArgumentCheck`
pads REST calls to named endpoints and refuses UI events sent a control value of the wrong type."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

import gradio as gr
from gradio.data_classes import FileData

from core.errors import BusyError, InputError
from core.validate import shown
from ui.errors import user_error
from ui.server.asgi import Receive, Scope, Send, replay, respond

log = logging.getLogger(__name__)


API = "/gradio_api"
_NAMED = re.compile(rf"^{API}/(call|run|api)/(?!v2/)([^/]+)/?$")  # call/v2 fills defaults itself
_JOIN = re.compile(rf"^{API}/queue/join/?$")
_V2 = re.compile(rf"^{API}/call/v2/([^/]+)/?$")  # arguments by name: {"temperature": 0.2, ...}
MAX_BODY_BYTES = 32 * 2**20  # bodies past this pass through unread (the HTTP guard caps them first)


# ------------------------------------------------------------------------------------------------------
# gr.api functions


@dataclass(frozen=True)
class ApiParameter:
    name: str
    hint: Any
    required: bool
    default: Any = None


def api_parameters(fn: Callable) -> list[ApiParameter]:
    """The parameters a caller sends, in order: those gr.api turns into inputs (not gr.Request)."""
    hints = typing.get_type_hints(fn)
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            break
        hint = hints.get(p.name, Any)
        if hint in (gr.Request, gr.Request | None):
            continue
        out.append(ApiParameter(p.name, hint, p.default is p.empty, None if p.default is p.empty else p.default))
    return out


def api_endpoint(fn: Callable, title: str = "Not done") -> Callable:
    """`fn` for gr.api, checked at the edge: a missing or null optional argument takes its default, an
    argument of the wrong JSON type is refused naming it, and InputError (or a core BusyError) reaches the
    caller as a clear message under `title`. Keeps the signature, annotations, docstring and
    generator-ness gr.api reads, so the endpoint's API description does not change."""
    params = api_parameters(fn)
    signature = inspect.signature(fn)

    def checked(args: tuple, kwargs: dict) -> inspect.BoundArguments:
        try:
            bound = signature.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise user_error(f"Wrong arguments: {exc}.", title=title) from None
        for p in params:
            value = bound.arguments.get(p.name)
            if value is None and not _allows_none(p.hint):
                if p.required:
                    raise user_error(f"{p.name} is required: {_expected(p.hint)}.", title=title)
                bound.arguments[p.name] = p.default
                continue
            ok, value = _conform(value, p.hint)
            if not ok:
                raise user_error(
                    f"{p.name} must be {_expected(p.hint)}, got {shown(bound.arguments[p.name])}.", title=title
                )
            bound.arguments[p.name] = value
        bound.apply_defaults()
        return bound

    def refused(exc: Exception) -> gr.Error:
        if isinstance(exc, (InputError, BusyError)):
            return user_error(str(exc), title=title)
        log.exception("%s failed", fn.__name__)
        return user_error(f"The server failed unexpectedly ({type(exc).__name__}); try again.", title=title)

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def endpoint(*args: Any, **kwargs: Any) -> Any:
            bound = checked(args, kwargs)
            try:
                return (yield from fn(*bound.args, **bound.kwargs))
            except gr.Error:
                raise
            except Exception as exc:
                raise refused(exc) from None
    else:

        @functools.wraps(fn)
        def endpoint(*args: Any, **kwargs: Any) -> Any:
            bound = checked(args, kwargs)
            try:
                return fn(*bound.args, **bound.kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise refused(exc) from None

    endpoint.api_parameters = params  # type: ignore[attr-defined]  # what ArgumentCheck pads with
    return endpoint


def _arms(hint: Any) -> tuple:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _allows_none(hint: Any) -> bool:
    return hint is Any or any(a is type(None) for a in _arms(hint))


def _conform(value: Any, hint: Any) -> tuple[bool, Any]:
    """(fits, value as the function gets it) for a JSON value against an annotation."""
    for arm in _arms(hint):
        origin = typing.get_origin(arm) or arm
        if arm is Any or arm is object:
            return True, value
        if arm is type(None):
            if value is None:
                return True, None
        elif origin is str:
            if isinstance(value, str):
                return True, value
        elif origin is bool:
            if isinstance(value, bool):
                return True, value
        elif origin is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return True, value
            if isinstance(value, float) and math.isfinite(value) and value.is_integer():
                return True, int(value)
        elif origin is float:
            if _finite(value):
                return True, value
        elif origin is list:
            if isinstance(value, list):
                (item,) = typing.get_args(arm) or (Any,)
                conformed = [_conform(v, item) for v in value]
                if all(ok for ok, _ in conformed):
                    return True, [v for _, v in conformed]
        elif origin is dict:
            if isinstance(value, dict):
                return True, value
        elif isinstance(origin, type) and issubclass(origin, FileData):
            if isinstance(value, FileData) or (isinstance(value, dict) and isinstance(value.get("path"), str)):
                return True, value
        elif isinstance(origin, type) and isinstance(value, origin):
            return True, value
    return False, value


_PLURALS = {str: "texts", int: "whole numbers", float: "numbers", dict: "objects", FileData: "uploaded files"}


def _expected(hint: Any) -> str:
    words = []
    for arm in _arms(hint):
        origin = typing.get_origin(arm) or arm
        if arm is type(None):
            words.append("null")
        elif origin is str:
            words.append("text (a string)")
        elif origin is bool:
            words.append("true or false")
        elif origin is int:
            words.append("a whole number")
        elif origin is float:
            words.append("a number")
        elif origin is list:
            (item,) = typing.get_args(arm) or (Any,)
            plural = _PLURALS.get(typing.get_origin(item) or item, "values")
            words.append("a list" if item is Any else f"a list of {plural}")
        elif origin is dict:
            words.append("an object")
        elif isinstance(origin, type) and issubclass(origin, FileData):
            words.append("an uploaded file (gradio_client.handle_file(path))")
        else:
            words.append(getattr(origin, "__name__", str(origin)))
    return " or ".join(dict.fromkeys(words))


# ------------------------------------------------------------------------------------------------------
# what must happen before Gradio reads a request


def event_problem(block_fn: Any, data: list) -> tuple[list, str | None]:
    """(data to pass on, a message when it must be refused) for one event of the app. A gr.api endpoint
    gets its missing trailing arguments as their defaults (a missing required one as null, which the
    endpoint refuses by name); a UI event needs one value per input, each of its control's JSON type."""
    inputs = list(getattr(block_fn, "inputs", None) or [])
    params = getattr(getattr(block_fn, "fn", None), "api_parameters", None)
    if params is not None:
        if len(data) < len(inputs) and len(inputs) == len(params):
            data = data + [None if p.required else p.default for p in params[len(data) :]]
        return data, None
    if len(data) < len(inputs):
        return data, f"This event takes {len(inputs)} values; {len(data)} were sent."
    props = set(getattr(block_fn, "component_prop_inputs", None) or [])  # {"value": ...} dicts: not ours
    for k, (block, value) in enumerate(zip(inputs, data)):
        problem = None if k in props else control_problem(block, value, k)
        if problem:
            return data, problem
    return data, None


def control_problem(block: Any, value: Any, index: int = 0) -> str | None:
    """Why `value` cannot be this control's value (a message naming the control), or None. Only JSON
    types and fixed slider ranges: choices and everything else are the handlers' to check."""
    if getattr(block, "stateful", False):
        return None  # Gradio reads a State from the session, never from the request
    name = str(getattr(block, "label", None) or getattr(block, "elem_id", None) or f"Input {index + 1}")
    kind = type(block)
    if issubclass(kind, (gr.Slider, gr.Number)):
        if value is None and issubclass(kind, gr.Number):
            return None
        lo, hi = getattr(block, "minimum", None), getattr(block, "maximum", None)
        if not _finite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
            span = f" from {lo:g} to {hi:g}" if lo is not None and hi is not None else ""
            return f"{name} must be a number{span}, got {shown(value)}."
    elif issubclass(kind, gr.Textbox):
        if value is not None and not isinstance(value, str):
            return f"{name} must be text (a string), got {shown(value)}."
    elif issubclass(kind, (gr.Dropdown, gr.Radio)):
        scalar = (str, int, float)
        if getattr(block, "multiselect", False):
            ok = value is None or (isinstance(value, list) and all(isinstance(v, scalar) for v in value))
        else:
            ok = value is None or (isinstance(value, scalar) and not isinstance(value, bool))
        if not ok:
            return f"{name} must be one of its choices, got {shown(value)}."
    elif issubclass(kind, gr.Checkbox):
        if value is not None and not isinstance(value, bool):
            return f"{name} must be true or false, got {shown(value)}."
    elif issubclass(kind, gr.File):
        many = getattr(block, "file_count", "single") in ("multiple", "directory")
        ok = value is None or _is_file(value) or (many and isinstance(value, list) and all(map(_is_file, value)))
        if not ok:
            what = "a list of uploaded files" if many else "an uploaded file"
            return f"{name} must be {what}, got {shown(value)}."
    elif issubclass(kind, (gr.Image, gr.ImageEditor)):
        if value is not None and not isinstance(value, dict):
            return f"{name} must be an uploaded image, got {shown(value)}."
    elif issubclass(kind, gr.BrowserState):
        # What the page keeps in localStorage comes back as sent: it must be of its default's type.
        default = getattr(block, "default_value", None)
        if isinstance(default, str) and value is not None and not isinstance(value, str):
            key = getattr(block, "storage_key", None) or name
            return f"The page's stored {key} must be text (a string), got {shown(value)}."
    return None


def _finite(value: Any) -> bool:
    """A JSON number a float can hold (not NaN or infinite, not an integer past float range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _is_file(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("path"), str)


class ArgumentCheck:
    """ASGI middleware in front of Gradio's call routes: see the module docstring. Installed through
    launch(app_kwargs={"middleware": [...]}) after the HTTP guard, so it sees only admitted requests."""

    def __init__(self, app: Callable, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        named = _NAMED.match(path) if scope.get("method") == "POST" else None
        joining = scope.get("method") == "POST" and _JOIN.match(path)
        by_name = _V2.match(path) if scope.get("method") == "POST" else None
        blocks = _blocks(scope) if named or joining or by_name else None
        if blocks is None:
            await self.app(scope, receive, send)
            return
        messages, complete = await _read(receive, self.max_body_bytes)
        if not complete:  # too large (or cut) to look at here: pass it on as it came
            await self.app(scope, replay(messages, receive), send)
            return
        body = b"".join(m.get("body", b"") for m in messages)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if by_name:
            problem = v2_problem(blocks, by_name.group(1), payload)
            if problem:
                await _refuse(send, problem)
                return
            await self.app(scope, replay(messages, receive), send)
            return
        # Gradio's /call route ignores a fn_index in the body; /run, /api and queue/join go by it first.
        block_fn = _event(
            blocks, payload, named.group(2) if named else None, by_index=not (named and named.group(1) == "call")
        )
        if block_fn is not None:
            data, problem = event_problem(block_fn, payload["data"])
            if problem:
                await _refuse(send, problem)
                return
            if data is not payload["data"]:
                body = json.dumps({**payload, "data": data}).encode()
                scope = {
                    **scope,
                    "headers": [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
                    + [(b"content-length", str(len(body)).encode())],
                }
                messages = [{"type": "http.request", "body": body, "more_body": False}]
        await self.app(scope, replay(messages, receive), send)


def v2_problem(blocks: Any, api_name: str, payload: Any) -> str | None:
    """Gradio's /call/v2/<name> takes the arguments by name and fails with a 500 on a name it does not
    know; say which names there are instead."""
    fn = next(
        (f for f in (getattr(blocks, "fns", {}) or {}).values() if getattr(f, "api_name", None) == api_name), None
    )
    params = getattr(getattr(fn, "fn", None), "api_parameters", None)
    if fn is None or params is None:
        return None  # not one of our endpoints: Gradio answers
    names = [p.name for p in params]
    if not isinstance(payload, dict):
        return f"The body must be a JSON object of argument name -> value; /{api_name} takes: {', '.join(names)}."
    unknown = [k for k in payload if k not in names and k != "oauth_token"]
    if unknown:
        return f"Unknown argument {unknown[0]!r} for /{api_name}; its arguments are: {', '.join(names)}."
    return None


def _blocks(scope: Scope) -> Any:
    app = scope.get("app")
    get = getattr(app, "get_blocks", None)
    try:
        return get() if get else None
    except Exception:  # not launched yet
        return None


def _event(blocks: Any, payload: Any, api_name: str | None, by_index: bool) -> Any:
    """The event a call body is for, found as Gradio will find it; None leaves the request to Gradio."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list) or payload.get("batched"):
        return None
    fns = getattr(blocks, "fns", {}) or {}
    index = payload.get("fn_index") if by_index else None
    if index is not None:
        return fns.get(index) if isinstance(index, int) and not isinstance(index, bool) else None
    if api_name is not None:
        return next((fn for fn in fns.values() if getattr(fn, "api_name", None) == api_name), None)
    return None


async def _read(receive: Receive, limit: int) -> tuple[list[dict], bool]:
    """The request's body messages as they came, and whether the whole body fitted under `limit` bytes."""
    messages, total = [], 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, False
        total += len(message.get("body", b""))
        if total > limit:
            return messages, False
        if not message.get("more_body"):
            return messages, True


async def _refuse(send: Send, message: str) -> None:
    await respond(send, 422, message)
