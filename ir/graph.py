"""The graph IR: SSA values, immutable nodes in execution order, and a builder.

Nodes never change after creation; a pass makes a new ``Graph`` with a ``GraphBuilder``, reusing
the nodes (and their values) it keeps. Two special ops have no OpDef: ``const`` (attribute
``value`` holds a numpy array) and ``fused`` (``body`` holds the sub-graph of a kernel).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .annotations import AnnotationValue
from .opdef import get_op
from .types import TensorType

CONST = "const"
FUSED = "fused"


class Value:
    """One SSA value: a type and an optional name (unnamed values print as ``%0``, ``%1`` …)."""

    __slots__ = ("type", "name")

    def __init__(self, type: TensorType, name: str | None = None) -> None:
        self.type = type
        self.name = name

    def __repr__(self) -> str:
        return f"Value(%{self.name or '?'}: {self.type})"


@dataclass(frozen=True, eq=False)
class Node:
    """One operation: ``outputs = op(inputs) {attrs} annotations``; ``body`` only for ``fused``."""

    op: str
    inputs: tuple[Value, ...]
    outputs: tuple[Value, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    annotations: Mapping[str, AnnotationValue] = field(default_factory=dict)
    body: Graph | None = None
    kernel_name: str | None = None  # the @name of a fused node

    @property
    def output(self) -> Value:
        """The single result of a one-result node."""
        if len(self.outputs) != 1:
            raise ValueError(f"{self.op} has {len(self.outputs)} results")
        return self.outputs[0]

    @property
    def value(self) -> np.ndarray:
        """The data of a ``const`` node."""
        return self.attrs["value"]

    def with_annotations(self, **updates: AnnotationValue) -> Node:
        """A copy with annotations added or replaced (same values, so users need no remapping)."""
        ann = dict(self.annotations)
        ann.update(updates)
        return Node(self.op, self.inputs, self.outputs, self.attrs, ann, self.body, self.kernel_name)


@dataclass(frozen=True, eq=False)
class Graph:
    """A function: named inputs, nodes in topological (= execution) order, outputs."""

    name: str
    inputs: tuple[Value, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[Value, ...]

    def producers(self) -> dict[Value, Node]:
        """Map from each node-defined value to its node."""
        return {v: n for n in self.nodes for v in n.outputs}

    def users(self) -> dict[Value, list[Node]]:
        """Map from each value to the nodes that read it, in order."""
        out: dict[Value, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                out.setdefault(v, []).append(n)
        return out

    def constants(self) -> dict[Value, np.ndarray]:
        """The data of every ``const`` node, by value."""
        return {n.output: n.value for n in self.nodes if n.op == CONST}

    def walk(self) -> Iterator[Node]:
        """Every node, fused bodies included (pre-order)."""
        for n in self.nodes:
            yield n
            if n.body is not None:
                yield from n.body.walk()

    def op_counts(self) -> dict[str, int]:
        """How many nodes of each op, fused bodies counted inside."""
        counts: dict[str, int] = {}
        for n in self.walk():
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts

    def to_text(self) -> str:
        """The IR text (big constants printed as ``@name`` references)."""
        from .printer import print_graph

        return print_graph(self)

    def __str__(self) -> str:
        return self.to_text()

    def __eq__(self, other: object) -> bool:
        # Structural equality: same text (names, ops, attributes, types) and the same constant data.
        if not isinstance(other, Graph):
            return NotImplemented
        if self.to_text() != other.to_text():
            return False
        a, b = list(self.constants().values()), list(other.constants().values())
        return len(a) == len(b) and all(
            x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f") for x, y in zip(a, b)
        )

    __hash__ = object.__hash__


def fresh_name(base: str, taken: set[str]) -> str:
    """``base`` if not in ``taken``, else ``base_1``, ``base_2`` …; the result is added to ``taken``."""
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


class GraphBuilder:
    """Builds a Graph node by node; ``op`` checks attributes and infers result types."""

    def __init__(self, name: str = "main") -> None:
        self.name = name
        self.inputs: list[Value] = []
        self.nodes: list[Node] = []
        self._names: set[str] = set()
        self._const_ids = itertools.count()

    def unique_name(self, base: str) -> str:
        """``base`` if not taken yet in this builder, else ``base_1``, ``base_2`` …"""
        return fresh_name(base, self._names)

    def _claim(self, v: Value) -> None:
        if v.name is not None:
            if v.name in self._names and not any(v is u for u in self.inputs):
                v.name = self.unique_name(v.name)
            self._names.add(v.name)

    def input(self, name: str, type: TensorType) -> Value:
        """Add a graph input."""
        v = Value(type, self.unique_name(name))
        self.inputs.append(v)
        return v

    def add_input(self, v: Value) -> Value:
        """Add an existing value as a graph input (passes that keep the signature use this)."""
        self._claim(v)
        self.inputs.append(v)
        return v

    def const(self, array: np.ndarray | float | int, name: str | None = None, dtype: Any = None) -> Value:
        """Add a ``const`` node holding ``array`` (copied, made read-only)."""
        arr = np.array(array, dtype=dtype, copy=True)
        arr.flags.writeable = False
        v = Value(TensorType.of(arr), self.unique_name(name or f"c{next(self._const_ids)}"))
        self.nodes.append(Node(CONST, (), (v,), {"value": arr}))
        return v

    def op(
        self,
        op: str,
        inputs: Sequence[Value],
        attrs: Mapping[str, Any] | None = None,
        annotations: Mapping[str, AnnotationValue] | None = None,
        names: Sequence[str | None] | None = None,
    ) -> tuple[Value, ...]:
        """Add a node of a registered op and return its results (types inferred)."""
        opdef = get_op(op)
        opdef.check_arity(len(inputs))
        norm = opdef.normalize_attrs(attrs or {})
        types = list(opdef.infer([v.type for v in inputs], norm))
        outs = tuple(
            Value(t, self.unique_name(names[i]) if names and names[i] else None) for i, t in enumerate(types)
        )
        self.nodes.append(Node(op, tuple(inputs), outs, norm, dict(annotations or {})))
        return outs

    def op1(self, op: str, *inputs: Value, **attrs: Any) -> Value:
        """Add a single-result node: ``b.op1("math.add", x, y)``."""
        (out,) = self.op(op, inputs, attrs)
        return out

    def fused(
        self,
        kernel_name: str,
        inputs: Sequence[Value],
        body: Graph,
        annotations: Mapping[str, AnnotationValue] | None = None,
    ) -> tuple[Value, ...]:
        """Add a ``fused`` node running ``body`` (whose inputs stand for ``inputs``)."""
        outs = tuple(Value(v.type) for v in body.outputs)
        self.nodes.append(Node(FUSED, tuple(inputs), outs, {}, dict(annotations or {}), body, kernel_name))
        return outs

    def add(self, node: Node) -> Node:
        """Append an existing node unchanged (its output values keep their identity)."""
        for v in node.outputs:
            self._claim(v)
        self.nodes.append(node)
        return node

    def build(self, outputs: Iterable[Value]) -> Graph:
        """The finished graph returning ``outputs``."""
        return Graph(self.name, tuple(self.inputs), tuple(self.nodes), tuple(outputs))


def remap(node: Node, mapping: Mapping[Value, Value]) -> Node:
    """``node`` with inputs replaced through ``mapping`` (the node itself when nothing changes)."""
    new_inputs = tuple(mapping.get(v, v) for v in node.inputs)
    if all(a is b for a, b in zip(new_inputs, node.inputs)):
        return node
    return Node(node.op, new_inputs, node.outputs, node.attrs, node.annotations, node.body, node.kernel_name)
