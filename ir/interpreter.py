"""The reference interpreter: runs any graph with the ops' numpy implementations.

It is the oracle that every pass and backend test compares against.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .graph import CONST, FUSED, Graph, Node, Value
from .opdef import get_op
from .types import DType, TensorType


class InputError(ValueError):
    """An input array that does not match the graph's declared input (shape, dtype or count)."""


def check_inputs(graph: Graph, arrays: Sequence[np.ndarray]) -> dict[str, int]:
    """Check ``arrays`` against ``graph.inputs``; return the bindings of symbolic dims."""
    if len(arrays) != len(graph.inputs):
        names = ", ".join(f"%{v.name}: {v.type}" for v in graph.inputs)
        raise InputError(f"graph @{graph.name} takes {len(graph.inputs)} inputs ({names}), got {len(arrays)}")
    bindings: dict[str, int] = {}
    for v, a in zip(graph.inputs, arrays):
        want: TensorType = v.type
        try:
            got = DType.from_numpy(a.dtype)
        except ValueError:
            got = None
        if got != want.dtype:
            raise InputError(f"input %{v.name} expects {want}, got dtype {a.dtype}")
        if a.ndim != want.rank:
            raise InputError(f"input %{v.name} expects {want}, got shape {list(a.shape)}")
        for d, n in zip(want.shape, a.shape):
            if isinstance(d, str):
                if bindings.setdefault(d, n) != n:
                    raise InputError(f"input %{v.name}: dim {d} is {n} here but {bindings[d]} elsewhere")
            elif d != n:
                raise InputError(f"input %{v.name} expects {want}, got shape {list(a.shape)}")
    return bindings


def run_graph(graph: Graph, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``graph`` on numpy ``inputs`` (a list in input order, or a dict by input name)."""
    if isinstance(inputs, Mapping):
        missing = [v.name for v in graph.inputs if v.name not in inputs]
        if missing:
            raise InputError(f"missing inputs: {', '.join(str(m) for m in missing)}")
        arrays = [np.asarray(inputs[str(v.name)]) for v in graph.inputs]
    else:
        arrays = [np.asarray(a) for a in inputs]
    check_inputs(graph, arrays)
    return _run(graph, arrays)


def _run(graph: Graph, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    env: dict[Value, np.ndarray] = dict(zip(graph.inputs, arrays))
    for node in graph.nodes:
        for v, out in zip(node.outputs, run_node(node, [env[v] for v in node.inputs])):
            env[v] = out
    return [env[v] for v in graph.outputs]


def run_node(node: Node, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run one node on concrete operands."""
    if node.op == CONST:
        return [node.value]
    if node.op == FUSED:
        assert node.body is not None
        return _run(node.body, args)
    try:
        outs = get_op(node.op).compute(args, node.attrs)
    except Exception as e:  # name the node: a bare numpy error says nothing about where it came from
        raise RuntimeError(f"{node.op} failed on operands {[list(a.shape) for a in args]}: {e}") from e
    return [np.asarray(o) for o in outs]
