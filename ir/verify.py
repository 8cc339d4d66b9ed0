"""The IR verifier.

Invariants checked (the error names the first node that breaks one, with its text):

1. SSA: every value is defined once — as a graph input or by exactly one node.
2. Topological order: every operand is defined before the node that reads it; outputs are defined.
3. Known ops: every node's op is registered (or is ``const`` / ``fused``), with the right arity.
4. Attributes match the op's schema (names, kinds, required ones present).
5. Types match inference: each result type equals what the op's ``infer`` gives for its operands.
6. Constants: a ``const`` node's data has exactly its result's dtype and shape.
7. Fused bodies are closed: a body reads only its own inputs (one per operand, same types) and
   its own values, yields values whose types are the node's results, and is itself valid.
8. Names: no two values share a name.
9. Annotations are well formed: string keys, values of the printable kinds.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .annotations import BufferRef, Cost
from .graph import CONST, FUSED, Graph, Node, Value
from .opdef import UnknownOpError, get_op


class VerifyError(ValueError):
    """A broken invariant; ``node`` is the offending node (None for graph-level errors)."""

    def __init__(self, message: str, node: Node | None = None) -> None:
        super().__init__(message)
        self.node = node


def verify(graph: Graph) -> None:
    """Raise VerifyError if ``graph`` breaks an invariant listed in this module's docstring."""
    _Verifier().graph(graph, outer=None)


class _Verifier:
    def __init__(self) -> None:
        self.names: dict[str, Value] = {}

    def _define(self, v: Value, defined: set[Value], node: Node | None, where: str) -> None:
        if v in defined:
            raise VerifyError(f"{where}: value {_show(v)} is defined twice (SSA)", node)
        defined.add(v)
        if v.name is not None:
            other = self.names.get(v.name)
            if other is not None and other is not v:
                raise VerifyError(f"{where}: name %{v.name} is used by two values", node)
            self.names[v.name] = v

    def graph(self, g: Graph, outer: Node | None) -> None:
        defined: set[Value] = set()
        for v in g.inputs:
            self._define(v, defined, outer, f"input of @{g.name}")
        for node in g.nodes:
            where = _where(g, node)
            for v in node.inputs:
                if v not in defined:
                    raise VerifyError(f"{where}: operand {_show(v)} is not defined before this node", node)
            self.node(node, where)
            for v in node.outputs:
                self._define(v, defined, node, where)
        for v in g.outputs:
            if v not in defined:
                raise VerifyError(f"@{g.name}: returned value {_show(v)} is not defined", outer)

    def node(self, node: Node, where: str) -> None:
        _check_annotations(node, where)
        if node.op == CONST:
            data = node.attrs.get("value")
            t = node.outputs[0].type if len(node.outputs) == 1 else None
            if node.inputs or t is None or not isinstance(data, np.ndarray):
                raise VerifyError(f"{where}: const takes no operands, one result and array data", node)
            if data.dtype != t.dtype.numpy or tuple(data.shape) != t.shape:
                raise VerifyError(f"{where}: const data is {data.dtype}{list(data.shape)} but typed {t}", node)
            return
        if node.op == FUSED:
            self.fused(node, where)
            return
        try:
            opdef = get_op(node.op)
        except UnknownOpError as e:
            raise VerifyError(f"{where}: {e}", node) from None
        try:
            opdef.check_arity(len(node.inputs))
            attrs = opdef.normalize_attrs(node.attrs)
            inferred = list(opdef.infer([v.type for v in node.inputs], attrs))
        except (TypeError, ValueError) as e:
            raise VerifyError(f"{where}: {e}", node) from None
        actual = [v.type for v in node.outputs]
        if inferred != actual:
            raise VerifyError(
                f"{where}: result types {_types(actual)} differ from inferred {_types(inferred)}", node
            )

    def fused(self, node: Node, where: str) -> None:
        body = node.body
        if body is None or not node.kernel_name:
            raise VerifyError(f"{where}: fused node needs a body and a kernel name", node)
        if len(body.inputs) != len(node.inputs):
            raise VerifyError(f"{where}: body has {len(body.inputs)} inputs for {len(node.inputs)} operands", node)
        for inner, outer in zip(body.inputs, node.inputs):
            if inner.type != outer.type:
                raise VerifyError(f"{where}: body input {_show(inner)} typed {inner.type}, operand {outer.type}", node)
        if [v.type for v in body.outputs] != [v.type for v in node.outputs]:
            raise VerifyError(f"{where}: body yields {_types([v.type for v in body.outputs])}", node)
        # A body's inputs may carry its operands' names; they stand for the same values.
        saved = dict(self.names)
        for inner, outer in zip(body.inputs, node.inputs):
            if inner.name is not None:
                self.names[inner.name] = inner
        self.graph(body, outer=node)
        self.names = saved
        for v in body.walk():
            for out in v.outputs:
                if out.name is not None:
                    self.names[out.name] = out


def _check_annotations(node: Node, where: str) -> None:
    for key, value in node.annotations.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise VerifyError(f"{where}: annotation key {key!r} is not an identifier", node)
        if not _printable(value):
            raise VerifyError(f"{where}: annotation {key}={value!r} is not a printable value", node)


def _printable(value: Any) -> bool:
    if isinstance(value, (bool, int, float, str, Cost, BufferRef, np.integer, np.floating)):
        return True
    if isinstance(value, (tuple, list)):
        return all(_printable(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _printable(v) for k, v in value.items())
    return False


def _where(g: Graph, node: Node) -> str:
    outs = ", ".join(_show(v) for v in node.outputs) or "(no results)"
    label = f"fused @{node.kernel_name}" if node.op == FUSED else node.op
    return f"in @{g.name}, node {outs} = {label}"


def _show(v: Value) -> str:
    return f"%{v.name}" if v.name is not None else f"<{v.type}>"


def _types(ts: list[Any]) -> str:
    return ", ".join(str(t) for t in ts)
