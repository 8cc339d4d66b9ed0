"""A small graph editor for the quantization passes: keep, replace and add nodes, then prune.

Nodes keep their result values, so a rewritten node's readers need no remapping; new values get
names unused anywhere in the graph; ``finish`` drops nodes nothing reads any more (the float
weights a quantized layer replaced, dequantize nodes a fold made dead).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...ir.graph import CONST, Graph, Node, Value, fresh_name
from ...ir.opdef import get_op
from ...ir.types import TensorType


class Emitter:
    """Builds the node list of a new graph from an old one."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes: list[Node] = []
        self.names = {v.name for v in graph.inputs if v.name} | {
            v.name for n in graph.walk() for v in n.outputs if v.name}

    def fresh(self, hint: str | None) -> str | None:
        """``hint`` or ``hint_N``, unused by any value of the graph (None stays anonymous)."""
        return None if hint is None else fresh_name(hint, self.names)

    def keep(self, node: Node) -> Node:
        """Append ``node`` as it is."""
        self.nodes.append(node)
        return node

    def const(self, data: np.ndarray | float, hint: str | None = None, dtype: Any = None) -> Value:
        """A new ``const`` node (copied, read-only); big ones are named so dumps reference them."""
        arr = np.array(data, dtype=dtype, copy=True)
        arr.flags.writeable = False
        name = self.fresh(hint) if hint is not None and arr.size > 16 else None
        v = Value(TensorType.of(arr), name)
        self.nodes.append(Node(CONST, (), (v,), {"value": arr}))
        return v

    def op(self, op: str, inputs: Sequence[Value], attrs: Mapping[str, Any] | None = None,
           outputs: Sequence[Value] | None = None, annotations: Mapping[str, Any] | None = None) -> tuple[Value, ...]:
        """A node of ``op`` (types inferred and checked); ``outputs`` reuses existing result values."""
        opdef = get_op(op)
        opdef.check_arity(len(inputs))
        norm = opdef.normalize_attrs(attrs or {})
        types = list(opdef.infer([v.type for v in inputs], norm))
        if outputs is None:
            outputs = tuple(Value(t) for t in types)
        elif [v.type for v in outputs] != types:
            raise ValueError(f"{op} gives {[str(t) for t in types]}, the replaced node gave "
                             f"{[str(v.type) for v in outputs]}")
        self.nodes.append(Node(op, tuple(inputs), tuple(outputs), norm, dict(annotations or {})))
        return tuple(outputs)

    def op1(self, op: str, *inputs: Value, **attrs: Any) -> Value:
        """A single-result node of ``op``."""
        (out,) = self.op(op, inputs, attrs)
        return out

    def finish(self) -> Graph:
        """The new graph, without nodes that no output needs."""
        live = set(self.graph.outputs)
        kept: list[Node] = []
        for node in reversed(self.nodes):
            if any(v in live for v in node.outputs):
                kept.append(node)
                live.update(node.inputs)
        return Graph(self.graph.name, self.graph.inputs, tuple(reversed(kept)), self.graph.outputs)
