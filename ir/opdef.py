"""Operator declarations: one ``OpDef`` per op, kept in a single registry.

An ``OpDef`` says everything the compiler needs to know about an op in one place: its operands,
attribute schema, type inference, fusion kind, cost counts and a numpy reference implementation.
Adding an op is adding one declaration (see ``graphopt/ir/ops/``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .types import DType, TensorType


class FusionKind(enum.IntEnum):
    """How an op may take part in a fused kernel (ordered as in TVM's OpPatternKind)."""

    ELEMENTWISE = 0
    BROADCAST = 1
    INJECTIVE = 2
    REDUCTION = 3
    OUT_FUSABLE = 4  # complex op (conv, matmul) whose elementwise epilogue can fuse into it
    OPAQUE = 5


class AttrKind(enum.Enum):
    """Type of an attribute value."""

    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STR = "str"
    INTS = "ints"
    FLOATS = "floats"
    DTYPE = "dtype"
    TENSOR = "tensor"  # a numpy array (only the `const` op has one)


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""Default of an attribute that has no default."""

AttrValue = int | float | bool | str | tuple[int, ...] | tuple[float, ...] | DType | np.ndarray


@dataclass(frozen=True)
class Attr:
    """One attribute in an op's schema."""

    name: str
    kind: AttrKind
    default: Any = REQUIRED

    def check(self, value: Any) -> AttrValue:
        """Return ``value`` normalized to this attribute's kind, or raise TypeError."""
        k = self.kind
        ok: bool
        if k is AttrKind.INT:
            ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            value = int(value) if ok else value
        elif k is AttrKind.FLOAT:
            ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif k is AttrKind.BOOL:
            ok = isinstance(value, (bool, np.bool_))
            value = bool(value) if ok else value
        elif k is AttrKind.STR:
            ok = isinstance(value, str)
        elif k is AttrKind.INTS:
            ok = isinstance(value, (list, tuple)) and all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
            )
            value = tuple(int(v) for v in value) if ok else value
        elif k is AttrKind.FLOATS:
            ok = isinstance(value, (list, tuple)) and all(
                isinstance(v, (int, float, np.floating, np.integer)) for v in value
            )
            value = tuple(float(v) for v in value) if ok else value
        elif k is AttrKind.DTYPE:
            ok = isinstance(value, DType)
        else:
            ok = isinstance(value, np.ndarray)
        if not ok:
            raise TypeError(f"attribute '{self.name}' expects {k.value}, got {value!r}")
        return value


InferFn = Callable[[Sequence[TensorType], Mapping[str, Any]], Sequence[TensorType]]
ComputeFn = Callable[[Sequence[np.ndarray], Mapping[str, Any]], Sequence[np.ndarray]]
CountFn = Callable[[Sequence[TensorType], Sequence[TensorType], Mapping[str, Any]], int]


def _default_flops(ins: Sequence[TensorType], outs: Sequence[TensorType], attrs: Mapping[str, Any]) -> int:
    return sum(o.numel() for o in outs)


def _default_bytes(ins: Sequence[TensorType], outs: Sequence[TensorType], attrs: Mapping[str, Any]) -> int:
    return sum(t.nbytes() for t in ins) + sum(t.nbytes() for t in outs)


@dataclass(frozen=True)
class OpDef:
    """Declaration of one op.

    ``inputs`` names the operands; with ``variadic`` the last one repeats (one or more times).
    ``num_optional`` trailing operands may be left out. ``infer`` maps operand types and attributes
    to result types; ``compute`` is the numpy reference. ``flops``/``bytes`` count the work of one
    execution for the cost model (symbolic dims count as 1).
    """

    name: str
    inputs: tuple[str, ...]
    infer: InferFn
    compute: ComputeFn
    fusion: FusionKind
    attrs: tuple[Attr, ...] = ()
    variadic: bool = False
    num_optional: int = 0
    flops: CountFn = _default_flops
    bytes: CountFn = _default_bytes
    doc: str = ""
    attr_index: Mapping[str, Attr] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attr_index", {a.name: a for a in self.attrs})

    @property
    def namespace(self) -> str:
        """The part of the name before the dot (``nn`` for ``nn.conv2d``)."""
        return self.name.split(".", 1)[0]

    def check_arity(self, n: int) -> None:
        """Raise TypeError unless ``n`` operands fit this op."""
        lo = len(self.inputs) - self.num_optional
        if self.variadic:
            if n < max(lo, 1) and n < len(self.inputs):
                raise TypeError(f"{self.name} takes at least {max(lo, 1)} operands, got {n}")
            return
        if not lo <= n <= len(self.inputs):
            want = f"{lo}" if lo == len(self.inputs) else f"{lo} to {len(self.inputs)}"
            raise TypeError(f"{self.name} takes {want} operands, got {n}")

    def normalize_attrs(self, attrs: Mapping[str, Any]) -> dict[str, AttrValue]:
        """Check ``attrs`` against the schema and fill defaults; raise TypeError on a bad one."""
        out: dict[str, AttrValue] = {}
        for key in attrs:
            if key not in self.attr_index:
                known = ", ".join(self.attr_index) or "none"
                raise TypeError(f"{self.name} has no attribute '{key}' (known: {known})")
        for a in self.attrs:
            if a.name in attrs:
                out[a.name] = a.check(attrs[a.name])
            elif a.default is REQUIRED:
                raise TypeError(f"{self.name} needs attribute '{a.name}'")
            elif a.default is not None:
                out[a.name] = a.check(a.default)
        return out


_REGISTRY: dict[str, OpDef] = {}


class UnknownOpError(KeyError):
    """An op name that no OpDef declares."""

    def __str__(self) -> str:
        return f"unknown op '{self.args[0]}'"


def register(op: OpDef) -> OpDef:
    """Add ``op`` to the registry; a second declaration of the same name is an error."""
    if op.name in _REGISTRY:
        raise ValueError(f"op {op.name} declared twice")
    _REGISTRY[op.name] = op
    return op


def get_op(name: str) -> OpDef:
    """The OpDef called ``name``; raises UnknownOpError."""
    _load_ops()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownOpError(name) from None


def all_ops() -> dict[str, OpDef]:
    """Every registered op, by name."""
    _load_ops()
    return dict(_REGISTRY)


def _load_ops() -> None:
    # Importing the package registers every op declaration exactly once.
    from . import ops  # noqa: F401
