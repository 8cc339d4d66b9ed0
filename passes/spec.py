"""Pipeline spec strings: ``"canonicalize,fuse{max-size=16},plan-memory"``.

Passes are separated by commas; options go in braces, separated by commas or spaces, written
``key=value`` (a bare ``key`` means ``key=true``). Option names are the pass's dataclass fields in
kebab-case and values are converted to the field's type: ``bool`` (true/false), ``int``, ``float``,
``str``, ``Literal[...]``, ``X | None`` (``none``) and ``tuple[X, ...]`` (``[1,2,3]``).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .base import Pass, PassSpecError, registered_passes

_ITEM = re.compile(r"^([A-Za-z0-9_.-]+)\s*(?:\{(.*)\})?$", re.DOTALL)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_pipeline(spec: str, registry: Mapping[str, type] | None = None) -> list[Pass]:
    """The passes a spec names, with their options set; raises PassSpecError naming what is wrong."""
    known = registered_passes() if registry is None else dict(registry)
    if not spec.strip():
        return []
    passes: list[Pass] = []
    for item in _split(spec, ",", spec):
        item = item.strip()
        m = _ITEM.match(item)
        if m is None:
            raise PassSpecError(f"bad pipeline item '{item}' in '{spec}' (expected name or name{{option=value}})")
        name, body = m.group(1), m.group(2)
        cls = known.get(name)
        if cls is None:
            raise PassSpecError(f"unknown pass '{name}'{_suggest(name, known)} (known passes: {', '.join(known)})")
        try:
            passes.append(cls(**_options(cls, name, body or "")))
        except (TypeError, ValueError) as e:
            if isinstance(e, PassSpecError):
                raise
            raise PassSpecError(f"pass '{name}': {e}") from None
    return passes


def format_pass(p: Pass) -> str:
    """The spec of one pass: its name and, in braces, the options that differ from their defaults."""
    opts = []
    for f in dataclasses.fields(p):  # type: ignore[arg-type]
        if not f.init:
            continue
        value = getattr(p, f.name)
        if f.default is not dataclasses.MISSING and value == f.default:
            continue
        opts.append(f"{f.name.replace('_', '-')}={_format(value)}")
    return p.name + (f"{{{','.join(opts)}}}" if opts else "")


def format_pipeline(passes: Sequence[Pass]) -> str:
    """The spec of a pipeline; ``parse_pipeline`` reads it back to equal passes."""
    return ",".join(format_pass(p) for p in passes)


def describe_options(cls: type) -> str:
    """``key (type, default value)`` for every option of a pass class, for help and error texts."""
    hints = get_type_hints(cls)
    parts = []
    for f in dataclasses.fields(cls):
        if f.init:
            default = "required" if f.default is dataclasses.MISSING else f"default {_format(f.default)}"
            parts.append(f"{f.name.replace('_', '-')} ({_type_name(hints[f.name])}, {default})")
    return ", ".join(parts) or "none"


def _options(cls: type, pass_name: str, body: str) -> dict[str, Any]:
    fields = {f.name.replace("_", "-"): f for f in dataclasses.fields(cls) if f.init}
    hints = get_type_hints(cls)
    out: dict[str, Any] = {}
    for token in _split(body, ", \t\n", body):
        if not token:
            continue
        key, eq, text = token.partition("=")
        key, text = key.strip(), text.strip() if eq else "true"
        f = fields.get(key)
        if f is None:
            raise PassSpecError(
                f"pass '{pass_name}' has no option '{key}'{_suggest(key, fields)} "
                f"(known options: {describe_options(cls)})"
            )
        if f.name in out:
            raise PassSpecError(f"pass '{pass_name}': option '{key}' given twice")
        tp = hints[f.name]
        try:
            out[f.name] = _convert(text, tp)
        except ValueError:
            raise PassSpecError(
                f"pass '{pass_name}': option '{key}' expects {_type_name(tp)}, got '{text}'"
            ) from None
    missing = [k for k, f in fields.items() if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and f.name not in out]
    if missing:
        raise PassSpecError(f"pass '{pass_name}' needs option(s) {', '.join(missing)}")
    return out


def _convert(text: str, tp: Any) -> Any:
    """``text`` as a value of type ``tp``; raises ValueError if it is not one."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(text)
    if tp is int:
        return int(text)
    if tp is float:
        return float(text)
    if tp is str:
        return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'" else text
    if origin is Literal:
        for a in args:
            if str(a).lower() == text.lower():
                return a
        raise ValueError(text)
    if origin in (Union, types.UnionType):
        if type(None) in args and text.lower() == "none":
            return None
        for a in args:
            if a is not type(None):
                try:
                    return _convert(text, a)
                except ValueError:
                    pass
        raise ValueError(text)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not (text.startswith("[") and text.endswith("]")):
            raise ValueError(text)
        inner = text[1:-1].strip()
        return tuple(_convert(t.strip(), args[0]) for t in _split(inner, ",", text)) if inner else ()
    raise TypeError(f"pass option type {tp!r} cannot be set from a spec")


def _type_name(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if isinstance(tp, type) and origin is None:
        return tp.__name__
    if origin is Literal:
        return "one of " + "|".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join("none" if a is type(None) else _type_name(a) for a in args)
    if origin is tuple:
        return f"list of {_type_name(args[0])} like [a,b]"
    return str(tp)


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "[" + ",".join(_format(v) for v in value) + "]"
    return str(value)


def _split(text: str, seps: str, whole: str) -> list[str]:
    """Split ``text`` at any of ``seps`` that is outside braces, brackets and quotes."""
    parts, start = [], 0
    closing = {"}": "{", "]": "["}
    stack: list[str] = []
    quote = ""
    for i, c in enumerate(text):
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c in "{[":
            stack.append(c)
        elif c in closing:
            if not stack or stack.pop() != closing[c]:
                raise PassSpecError(f"unbalanced '{c}' in pipeline spec '{whole}'")
        elif c in seps and not stack:
            parts.append(text[start:i])
            start = i + 1
    if stack or quote:
        raise PassSpecError(f"unclosed '{quote or stack[-1]}' in pipeline spec '{whole}'")
    parts.append(text[start:])
    return parts


def _suggest(name: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
