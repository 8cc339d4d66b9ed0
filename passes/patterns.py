"""A tiny pattern language so that rewrite rules are data, one rule a line (as in tinygrad).

    x = Var("x")
    Rule("add-zero", x + 0, x),                                   # x + 0 -> x
    Rule("neg-neg", -(-x), x),                                    # -(-x) -> x
    Rule("transpose-id", transpose(x, where=identity_perm), x),   # transpose(x, [0,1,..]) -> x

Patterns: ``Var`` matches any value; ``Const`` matches a constant and binds its data; a Python
number (``Splat``) matches a constant whose elements all equal it; ``Op`` matches a node of an op
(or of one of several ops) whose operands match its argument patterns, optionally named (binds the
node), filtered by ``where(node)`` and required to have a single user (``one_use``). ``Opt`` marks
trailing operands that may be absent. Arithmetic operators on patterns build ``math.*`` patterns.

A rule's rewrite is a variable of its pattern or a function of the ``Match`` returning an existing
value, a ``New`` node tree to build, or None to decline. The engine applies a rewrite only when its
result has the replaced value's exact type, so ``x + 0`` never drops a broadcast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..ir.graph import CONST, Node, Value
from ..ir.types import DType

_BF16 = DType.bf16.numpy  # ml_dtypes' bfloat16 has numpy kind 'V', yet compares like a float


class Pat:
    """Base of all patterns; ``+ - * / ** -`` build ``math.*`` patterns (numbers become splats)."""

    def __add__(self, other: PatLike) -> Op:
        return Op("math.add", self, other)

    def __radd__(self, other: PatLike) -> Op:
        return Op("math.add", other, self)

    def __sub__(self, other: PatLike) -> Op:
        return Op("math.sub", self, other)

    def __rsub__(self, other: PatLike) -> Op:
        return Op("math.sub", other, self)

    def __mul__(self, other: PatLike) -> Op:
        return Op("math.mul", self, other)

    def __rmul__(self, other: PatLike) -> Op:
        return Op("math.mul", other, self)

    def __truediv__(self, other: PatLike) -> Op:
        return Op("math.div", self, other)

    def __rtruediv__(self, other: PatLike) -> Op:
        return Op("math.div", other, self)

    def __pow__(self, other: PatLike) -> Op:
        return Op("math.pow", self, other)

    def __neg__(self) -> Op:
        return Op("math.neg", self)


PatLike = Pat | int | float


@dataclass(frozen=True, eq=False)
class Var(Pat):
    """Any value; binds it under ``name`` (a second use of the name must be the same value)."""

    name: str


@dataclass(frozen=True, eq=False)
class Const(Pat):
    """A value produced by a ``const`` node; binds its data (the value is in ``Match.values``)."""

    name: str


@dataclass(frozen=True, eq=False)
class Splat(Pat):
    """A numeric constant whose elements all equal ``number``."""

    number: float


@dataclass(frozen=True, eq=False)
class Opt(Pat):
    """A trailing operand that may be absent (then its names are not bound)."""

    pat: Pat


class Op(Pat):
    """A node of ``op`` (or of one of a tuple of ops) whose operands match ``args``."""

    def __init__(
        self,
        op: str | tuple[str, ...],
        *args: PatLike,
        name: str | None = None,
        where: Callable[[Node], bool] | None = None,
        one_use: bool = False,
    ) -> None:
        self.ops = (op,) if isinstance(op, str) else tuple(op)
        self.args = tuple(_pat(a) for a in args)
        self.name = name
        self.where = where
        self.one_use = one_use
        self.required = sum(not isinstance(a, Opt) for a in self.args)
        if any(isinstance(a, Opt) for a in self.args[: self.required]):
            raise ValueError(f"pattern {self}: optional operands must come last")

    def __repr__(self) -> str:
        args = ", ".join(repr(a) for a in self.args)
        return f"{'|'.join(self.ops)}({args})"


def _pat(p: PatLike) -> Pat:
    if isinstance(p, Pat):
        return p
    if isinstance(p, (int, float)) and not isinstance(p, bool):
        return Splat(float(p))
    raise TypeError(f"{p!r} is not a pattern")


class Match:
    """Bindings of one match: ``m.x`` is a Value (Var), an array (Const) or a Node (named Op)."""

    def __init__(self) -> None:
        self.bound: dict[str, Any] = {}
        self.values: dict[str, Value] = {}

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["bound"][name]
        except KeyError:
            raise AttributeError(f"pattern bound no '{name}'") from None

    def get(self, name: str, default: Any = None) -> Any:
        """The binding of ``name``, or ``default`` if an optional operand was absent."""
        return self.bound.get(name, default)


@dataclass(frozen=True)
class Data:
    """A new constant for a rewrite to create; ``hint`` suggests its value name."""

    array: np.ndarray
    hint: str | None = None


class New:
    """A node for a rewrite to build: ``New("tensor.transpose", m.x, perm=(1, 0))``."""

    def __init__(self, op: str, *inputs: Value | New | Data, **attrs: Any) -> None:
        self.op = op
        self.inputs = inputs
        self.attrs = attrs

    def __repr__(self) -> str:
        return f"New({self.op}, {len(self.inputs)} operands, {self.attrs})"


Rewrite = Value | New | None


class GraphView(Protocol):
    """What matching needs to know about the graph being built."""

    def producer(self, value: Value) -> Node | None:
        """The node defining ``value`` (None for graph inputs)."""
        ...

    def use_count(self, value: Value) -> int:
        """How many operands (and graph outputs) read ``value``."""
        ...


@dataclass(frozen=True)
class Rule:
    """A named rewrite: when ``pattern`` matches a node, replace its result by ``rewrite``."""

    name: str
    pattern: Op
    rewrite: Var | Callable[[Match], Rewrite]

    def apply(self, node: Node, view: GraphView) -> tuple[Rewrite, Match]:
        """The rewrite for ``node`` (None if the pattern does not match or the rule declines)."""
        m = Match()
        if not _match_node(self.pattern, node, view, m):
            return None, m
        if isinstance(self.rewrite, Var):
            return m.bound[self.rewrite.name], m
        return self.rewrite(m), m


def index_rules(*rule_sets: Iterable[Rule]) -> Mapping[str, tuple[Rule, ...]]:
    """Rules by the op of their pattern's root, in declaration order."""
    out: dict[str, list[Rule]] = {}
    for rules in rule_sets:
        for r in rules:
            for op in r.pattern.ops:
                out.setdefault(op, []).append(r)
    return {k: tuple(v) for k, v in out.items()}


def _match_node(p: Op, node: Node, view: GraphView, m: Match) -> bool:
    if node.op not in p.ops or not p.required <= len(node.inputs) <= len(p.args):
        return False
    if p.where is not None and not p.where(node):
        return False
    if p.name is not None:
        m.bound[p.name] = node
    for arg, v in zip(p.args, node.inputs):
        if not _match(arg.pat if isinstance(arg, Opt) else arg, v, view, m):
            return False
    return True


def _match(p: Pat, v: Value, view: GraphView, m: Match) -> bool:
    if isinstance(p, Var):
        if p.name in m.values:
            return m.values[p.name] is v
        m.bound[p.name] = m.values[p.name] = v
        return True
    node = view.producer(v)
    if node is None:
        return False
    if isinstance(p, Const):
        if node.op != CONST:
            return False
        m.bound[p.name], m.values[p.name] = node.value, v
        return True
    if isinstance(p, Splat):
        data = node.value if node.op == CONST else None
        numeric = data is not None and (data.dtype.kind in "iuf" or data.dtype == _BF16)
        return numeric and data.size > 0 and bool(np.all(data == p.number))
    if isinstance(p, Op):
        if p.one_use and view.use_count(v) != 1:
            return False
        return _match_node(p, node, view, m)
    raise TypeError(f"unknown pattern {p!r}")
