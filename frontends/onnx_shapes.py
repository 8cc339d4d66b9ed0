"""Shape arithmetic folded at ONNX import: vectors of dims that may hold symbols.

Exporters compute reshape targets at run time (``Shape -> Gather -> Unsqueeze -> Concat ->
Reshape``). The IR wants them as attributes, so the importer evaluates that arithmetic itself:
a ``SymShape`` is a small integer vector (or scalar) whose entries are ints or symbols such as
``"N"``; arithmetic on a symbol gives an opaque expression string like ``"(N*3)"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir.types import Dim
from .onnx_types import numpy_dtype

INT64_MAX = int(np.iinfo(np.int64).max)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class SymShape:
    """An integer vector (``scalar``: a 0-d value) some of whose entries are symbols."""

    dims: tuple[Dim, ...]
    scalar: bool = False
    dtype: np.dtype = np.dtype(np.int64)

    @property
    def symbols(self) -> list[str]:
        """The symbolic entries, in order."""
        return [d for d in self.dims if isinstance(d, str)]


Known = np.ndarray | SymShape
"""A value the importer knows at import time: concrete data or a symbolic shape vector."""


def make_known(dims: Sequence[Dim], scalar: bool = False, dtype: Any = np.int64) -> Known:
    """``dims`` as a numpy array when every entry is an int, else as a SymShape."""
    dt = np.dtype(dtype)
    if all(not isinstance(d, str) for d in dims):
        arr = np.array(list(dims), dtype=dt)
        return arr.reshape(()) if scalar else arr
    return SymShape(tuple(dims), scalar, dt)


def is_symbol(d: Dim) -> bool:
    """True for a plain symbol (``"N"``), false for ints and derived expressions (``"(N*3)"``)."""
    return isinstance(d, str) and bool(_IDENT.match(d))


def as_dims(k: Known) -> list[Dim] | None:
    """The entries of a 0-d or 1-d integer vector, or None for anything else."""
    if isinstance(k, SymShape):
        return list(k.dims)
    if k.ndim > 1 or k.dtype.kind not in "iub":
        return None
    return [int(x) for x in k.reshape(-1)]


def _parts(k: Known) -> tuple[list[Any], bool, np.dtype] | None:
    if isinstance(k, SymShape):
        return list(k.dims), k.scalar, k.dtype
    if k.ndim > 1:
        return None
    return k.reshape(-1).tolist(), k.ndim == 0, k.dtype


def _arith(op: str) -> Callable[[Any, Any], Any]:
    def fn(a: Any, b: Any) -> Any:
        if isinstance(a, str) or isinstance(b, str):
            # x*1, x+0, x-0 and x/1 keep the symbol itself so reshape targets can still match it.
            if op in "*/" and b == 1 or op in "+-" and b == 0:
                return a
            if op in "*+" and a == (1 if op == "*" else 0):
                return b
            return f"({a}{op}{b})"
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        return a // b if isinstance(a, int) and isinstance(b, int) else a / b

    return fn


_ARITH = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/"}


def _broadcast(a: list[Any], b: list[Any]) -> tuple[list[Any], list[Any]] | None:
    if len(a) == len(b):
        return a, b
    if len(a) == 1:
        return a * len(b), b
    if len(b) == 1:
        return a, b * len(a)
    return None


def _equal(a: Any, b: Any) -> bool | None:
    if isinstance(a, str) and isinstance(b, str):
        return True if a == b else None
    if isinstance(a, str) or isinstance(b, str):
        other = b if isinstance(a, str) else a
        # A dimension is never negative; exporters compare against -1 to spot "infer" entries.
        return False if other < 0 else None
    return bool(a == b)


def fold_symbolic(op: str, ins: Sequence[Known | None], attrs: Mapping[str, Any]) -> list[Known] | None:
    """Evaluate ``op`` on known operands (at least one symbolic); None when it cannot be folded."""
    if any(i is None for i in ins):
        return None
    try:
        return _fold(op, [i for i in ins if i is not None], attrs)
    except (ValueError, TypeError, IndexError, ZeroDivisionError):
        return None


def _fold(op: str, ins: list[Known], attrs: Mapping[str, Any]) -> list[Known] | None:
    parts = [_parts(k) for k in ins]
    if any(p is None for p in parts):
        return None
    vals = [p[0] for p in parts if p is not None]
    scal = [p[1] for p in parts if p is not None]
    dts = [p[2] for p in parts if p is not None]
    if op in ("Identity",):
        return [ins[0]]
    if op == "Shape":
        shape = [] if scal[0] else [len(vals[0])]
        return [np.array(shape, dtype=np.int64)[attrs.get("start", 0):attrs.get("end", None)]]
    if op == "Size":
        return [np.array(1 if scal[0] else len(vals[0]), dtype=np.int64)]
    if op == "Cast":
        to = numpy_dtype(attrs["to"])
        out = [int(v) if not isinstance(v, str) and to.kind in "iu" else v for v in vals[0]]
        return [make_known(out, scal[0], to)]
    if op in _ARITH:
        pair = _broadcast(vals[0], vals[1])
        if pair is None:
            return None
        fn = _arith(_ARITH[op])
        return [make_known([fn(a, b) for a, b in zip(*pair)], scal[0] and scal[1], dts[0])]
    if op == "Equal":
        pair = _broadcast(vals[0], vals[1])
        if pair is None:
            return None
        eq = [_equal(a, b) for a, b in zip(*pair)]
        if any(e is None for e in eq):
            return None
        return [make_known(eq, scal[0] and scal[1], np.bool_)]
    if op == "Where":
        cond, a, b = vals
        n = max(len(cond), len(a), len(b))
        cond, a, b = (v * n if len(v) == 1 else v for v in (cond, a, b))
        return [make_known([x if c else y for c, x, y in zip(cond, a, b)], all(scal), dts[1])]
    if op == "Gather":
        if attrs.get("axis", 0) != 0 or scal[0]:
            return None
        idx = np.asarray(ins[1])
        picked = [vals[0][int(i)] for i in idx.reshape(-1)]
        return [make_known(picked, idx.ndim == 0, dts[0])]
    if op == "Slice":
        starts, ends = vals[1], vals[2]
        steps = vals[4] if len(vals) > 4 else [1]
        if len(starts) != 1 or any(isinstance(x, str) for x in starts + ends + steps):
            return None
        return [make_known(vals[0][slice(starts[0], ends[0], steps[0])], False, dts[0])]
    if op == "Concat":
        return [make_known([d for v in vals for d in v], False, dts[0])]
    if op == "Unsqueeze":
        axes = attrs.get("axes", vals[1] if len(vals) > 1 else None)
        if scal[0] and list(axes or []) in ([0], [-1]):
            return [make_known(vals[0], False, dts[0])]
        return None
    if op == "Squeeze":
        if not scal[0] and len(vals[0]) == 1:
            return [make_known(vals[0], True, dts[0])]
        return None
    if op == "Reshape":
        target = vals[1]
        if len(target) == 0 and len(vals[0]) == 1:
            return [make_known(vals[0], True, dts[0])]
        if len(target) == 1 and target[0] in (-1, len(vals[0])):
            return [make_known(vals[0], False, dts[0])]
        return None
    if op in ("Max", "Min") and all(not isinstance(v, str) for vs in vals[1:] for v in vs):
        return _fold_minmax(op, vals, scal, dts[0])
    return None


def _fold_minmax(op: str, vals: list[list[Any]], scal: list[bool], dtype: np.dtype) -> list[Known] | None:
    out = list(vals[0])
    for other in vals[1:]:
        pair = _broadcast(out, other)
        if pair is None:
            return None
        merged = []
        for a, b in zip(*pair):
            if isinstance(a, str):
                # Only max(dim, 0|1) folds: a symbolic dimension is at least 1 wherever this is used.
                if op == "Max" and b <= 1:
                    merged.append(a)
                    continue
                return None
            merged.append(max(a, b) if op == "Max" else min(a, b))
        out = merged
    return [make_known(out, all(scal), dtype)]


def reshape_target(in_shape: Sequence[Dim], target: Sequence[Dim]) -> list[int] | None:
    """A reshape target as IR ints: a symbol equal to the input's dim at its position copies it
    (``0``), any other symbol is inferred (``-1``); None when two entries would need inferring."""
    out: list[int] = []
    for i, d in enumerate(target):
        if isinstance(d, str):
            out.append(0 if i < len(in_shape) and in_shape[i] == d else -1)
        else:
            out.append(d)
    return out if out.count(-1) <= 1 else None


def expand_target(in_shape: Sequence[Dim], target: Sequence[Dim]) -> list[int] | None:
    """An Expand target as IR ints: a symbol is ``1`` (keep) where the input already has that dim;
    None when a symbol would have to grow a size-1 dim (not expressible as an attribute)."""
    out: list[int] = []
    offset = len(target) - len(in_shape)
    for i, d in enumerate(target):
        if not isinstance(d, str):
            out.append(d)
            continue
        j = i - offset
        have = in_shape[j] if j >= 0 else 1
        if have == d or (isinstance(have, int) and have != 1):
            out.append(1)
        else:
            return None
    return out
