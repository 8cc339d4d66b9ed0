"""IR text printer. The grammar in ``grammar.lark`` reads back exactly what this writes.

Unnamed values are numbered ``%0, %1, …`` in print order across the whole graph (fused bodies
included); named values print their name. Constants of at most ``INLINE_LIMIT`` elements print
inline, bigger ones as ``@name`` references into a side table (``.npz`` when saved).
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

import numpy as np

from .annotations import BufferRef, Cost
from .graph import CONST, FUSED, Graph, Node, Value
from .opdef import REQUIRED, UnknownOpError, get_op
from .types import DType

INLINE_LIMIT = 16
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEYWORDS = {"true", "false", "inf", "nan"} | {d.value for d in DType}


class Printer:
    """Prints one graph; ``constants`` collects the data of referenced (big) constants."""

    def __init__(self, inline_limit: int = INLINE_LIMIT) -> None:
        self.inline_limit = inline_limit
        self.names: dict[Value, str] = {}
        self.constants: dict[str, np.ndarray] = {}
        self._counter = 0
        self._taken: set[str] = set()

    def print(self, graph: Graph) -> str:
        """The text of ``graph``."""
        for v in graph.inputs:
            self._name(v)
        for n in graph.walk():
            for v in n.outputs:
                if v.name is not None:
                    self._taken.add(v.name)
        params = ", ".join(f"%{self.names[v]}: {v.type}" for v in graph.inputs)
        results = ", ".join(str(v.type) for v in graph.outputs)
        lines = [f"graph @{graph.name}({params}) -> ({results}) {{"]
        self._block(graph, lines, "  ")
        lines.append(f"  return {self._refs(graph.outputs)}")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _name(self, v: Value) -> str:
        if v not in self.names:
            if v.name is not None:
                self.names[v] = v.name
            else:
                while str(self._counter) in self._taken:
                    self._counter += 1
                self.names[v] = str(self._counter)
                self._counter += 1
        return self.names[v]

    def _refs(self, values: tuple[Value, ...]) -> str:
        return ", ".join(f"%{self.names.get(v) or _undefined(v)}" for v in values)

    def _block(self, graph: Graph, lines: list[str], indent: str) -> None:
        for node in graph.nodes:
            lines.append(indent + self._node(node))
            if node.body is not None:
                body = node.body
                for inner, outer in zip(body.inputs, node.inputs):
                    # A fused body refers to its operands by the operands' own names.
                    self.names[inner] = self.names.get(outer) or _undefined(outer)
                self._block(body, lines, indent + "  ")
                lines.append(f"{indent}  yield {self._refs(body.outputs)}")
                lines.append(indent + "}")

    def _node(self, node: Node) -> str:
        results = ", ".join(f"%{self._name(v)}" for v in node.outputs)
        if node.op == CONST:
            return f"{results} = const {node.output.type} {self._const_data(node)}"
        args = self._refs(node.inputs)
        parts = [f"{results} = "]
        if node.op == FUSED:
            parts.append(f"fused @{node.kernel_name}({args})")
        else:
            parts.append(f"{node.op}({args})")
            attrs = format_attrs(node.op, node.attrs)
            if attrs:
                parts.append(f" {{{attrs}}}")
        for key, value in node.annotations.items():
            parts.append(f" {key}={format_annotation(value)}")
        parts.append(" : " + ", ".join(str(v.type) for v in node.outputs))
        if node.op == FUSED:
            parts.append(" {")
        return "".join(parts)

    def _const_data(self, node: Node) -> str:
        data = node.value
        if data.size <= self.inline_limit:
            flat = [format_scalar(x, data.dtype) for x in data.reshape(-1)]
            return flat[0] if data.ndim == 0 else "[" + ", ".join(flat) + "]"
        key = self.names[node.output]
        self.constants[key] = data
        return f"@{key}"


def _undefined(v: Value) -> str:
    # Printing must never fail: a dangling operand shows up as such and the verifier explains it.
    return f"undefined_{v.name or id(v)}"


def format_scalar(x: Any, dtype: np.dtype) -> str:
    """One element of a constant, in the shortest text that reads back to the same value."""
    if dtype == np.bool_:
        return "true" if bool(x) else "false"
    if dtype.kind in "iu":
        return str(int(x))
    if dtype.itemsize == 8:
        return repr(float(x))
    text = str(x)  # numpy prints the shortest text that round-trips at this precision
    return text if any(c in text for c in ".ein") else text + ".0"


def format_value(value: Any) -> str:
    """An attribute or annotation literal."""
    if isinstance(value, bool) or isinstance(value, np.bool_):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, DType):
        return value.value
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    raise TypeError(f"cannot print attribute value {value!r}")


def format_attrs(op: str, attrs: Mapping[str, Any]) -> str:
    """``k=v, …`` for the attributes that differ from their defaults, in schema order."""
    try:
        schema = get_op(op).attr_index
    except UnknownOpError:
        schema = {}
    parts = []
    for key, value in attrs.items():
        spec = schema.get(key)
        if spec is not None and spec.default is not REQUIRED and spec.default is not None:
            if _same(spec.check(spec.default), value):
                continue
        parts.append(f"{key}={format_value(value)}")
    return ", ".join(parts)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def format_annotation(value: Any) -> str:
    """An annotation value: a literal, a Cost, a BufferRef, a bare word or a ``{k=v}`` dict."""
    if isinstance(value, (Cost, BufferRef)):
        return str(value)
    if isinstance(value, str) and _IDENT.match(value) and value not in _KEYWORDS:
        return value
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={format_annotation(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(format_annotation(v) for v in value) + "]"
    return format_value(value)


def print_graph(graph: Graph, inline_limit: int = INLINE_LIMIT) -> str:
    """The IR text of ``graph``."""
    return Printer(inline_limit).print(graph)


def print_graph_with_constants(graph: Graph, inline_limit: int = INLINE_LIMIT) -> tuple[str, dict[str, np.ndarray]]:
    """The IR text and the data of every constant it references by ``@name``."""
    p = Printer(inline_limit)
    text = p.print(graph)
    return text, p.constants
