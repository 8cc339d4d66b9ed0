"""Buffer lifetimes from the node order, and which values may share one buffer.

Steps are indices into ``graph.nodes`` (constants included, as in
``graphopt.ir.analysis.live_bytes_per_step``). A value is live from the step that defines it to
its last reader, inclusive; graph inputs from step 0; graph outputs to the last step; a value
nobody reads only at its own step. Constants are weights, not activations, and have no lifetime.

Two kinds of sharing make several values one *buffer*:

* **views**: a reshape-like op (same bytes, same element order) reads and writes the same memory,
  so its result aliases its operand's buffer and the buffer lives until the last of them dies;
* **in place**: an elementwise op (or a fused kernel whose operand is only read elementwise at the
  index it writes) may write its result over an operand of the same type whose buffer dies at that
  node, is not a graph output and is not read through another operand of the same node.

Graph inputs belong to the caller and are never written or aliased.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from ...ir.graph import CONST, FUSED, Graph, Node, Value
from ...ir.opdef import FusionKind, get_op

VIEW_OPS = frozenset({"tensor.reshape", "tensor.flatten", "tensor.squeeze", "tensor.unsqueeze", "tensor.identity",
                      "nn.dropout"})
"""Ops whose result has exactly the operand's bytes in the same order: they can be free views."""

_POINTWISE = (FusionKind.ELEMENTWISE, FusionKind.BROADCAST)


@dataclass(frozen=True)
class Lifetime:
    """One value's live range in steps (inclusive) and its size in bytes with symbols bound."""

    value: Value
    size: int
    start: int
    end: int
    is_input: bool = False
    is_output: bool = False


@dataclass
class Buffer:
    """A block of memory that one or more values occupy in turn (views and in-place results share it)."""

    id: int
    size: int
    start: int
    end: int
    values: list[Value] = field(default_factory=list)
    holds_output: bool = False

    def overlaps(self, other: Buffer) -> bool:
        """True when the two buffers are live at a common step."""
        return self.start <= other.end and other.start <= self.end


@dataclass(frozen=True)
class Sharing:
    """One value placed in another value's buffer: ``kind`` is ``view`` or ``in-place``."""

    step: int
    kind: str
    operand: Value
    result: Value


def lifetimes(graph: Graph, bindings: Mapping[str, int] | None = None) -> dict[Value, Lifetime]:
    """The live range and size of every non-constant value of ``graph``, inputs included."""
    binds = dict(bindings or {})
    last = len(graph.nodes) - 1
    end: dict[Value, int] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            end[v] = i
    outputs = set(graph.outputs)
    out: dict[Value, Lifetime] = {}
    for v in graph.inputs:
        out[v] = Lifetime(v, v.type.nbytes(binds), 0, max(end.get(v, 0), last if v in outputs else 0), True,
                          v in outputs)
    for i, node in enumerate(graph.nodes):
        if node.op == CONST:
            continue
        for v in node.outputs:
            stop = max(last, i) if v in outputs else end.get(v, i)
            out[v] = Lifetime(v, v.type.nbytes(binds), i, stop, False, v in outputs)
    return out


def peak_live(items: list[tuple[int, int, int]], steps: int) -> tuple[int, int]:
    """``(bytes, step)`` of the most bytes live at once among ``(size, start, end)`` intervals."""
    delta = [0] * (steps + 2)
    for size, start, end in items:
        delta[start] += size
        delta[end + 1] -= size
    best, at, running = 0, 0, 0
    for step in range(steps + 1):
        running += delta[step]
        if running > best:
            best, at = running, step
    return best, at


def inplace_operands(node: Node) -> list[int]:
    """Operand positions whose memory ``node``'s single result may overwrite (elementwise reads only)."""
    if len(node.outputs) != 1 or node.op == CONST:
        return []
    out_type = node.output.type
    if node.op == FUSED:
        assert node.body is not None
        return [k for k, inner in enumerate(node.body.inputs)
                if node.inputs[k].type == out_type and _read_pointwise(node.body, inner, out_type)]
    if get_op(node.op).fusion not in _POINTWISE:
        return []
    return [k for k, v in enumerate(node.inputs) if v.type == out_type]


def _read_pointwise(body: Graph, start: Value, out_type: object) -> bool:
    # Everything computed from ``start`` inside the kernel must be read only by elementwise ops of
    # the kernel's result shape: then element i of the result needs element i of ``start`` only,
    # so overwriting it after reading is safe however the kernel tiles its loops.
    derived = {start}
    for node in body.nodes:
        if not any(v in derived for v in node.inputs):
            continue
        if node.op in (CONST, FUSED) or get_op(node.op).fusion not in _POINTWISE:
            return False
        if len(node.outputs) != 1 or node.output.type != out_type:
            return False
        if any(v in derived and v.type != out_type for v in node.inputs):
            return False
        derived.add(node.output)
    return True


def share_buffers(
    graph: Graph, lives: Mapping[Value, Lifetime], in_place: bool = True, skip: AbstractSet[Value] = frozenset()
) -> tuple[list[Buffer], dict[Value, Buffer], list[Sharing]]:
    """Group the values nodes define (except ``skip``) into buffers, following the order of the nodes."""
    buffers: list[Buffer] = []
    owner: dict[Value, Buffer] = {}
    shared: list[Sharing] = []
    for step, node in enumerate(graph.nodes):
        if node.op == CONST or all(v in skip for v in node.outputs):
            continue
        host = _host(node, step, owner, lives) if in_place and node.outputs[0] not in skip else None
        for v in node.outputs:
            if v in skip:
                continue
            life = lives[v]
            if host is not None:
                buf, operand, kind = host
                buf.end = max(buf.end, life.end)
                buf.values.append(v)
                buf.holds_output |= life.is_output
                owner[v] = buf
                shared.append(Sharing(step, kind, operand, v))
                continue
            buf = Buffer(len(buffers), life.size, life.start, life.end, [v], life.is_output)
            buffers.append(buf)
            owner[v] = buf
    return buffers, owner, shared


def _host(node: Node, step: int, owner: Mapping[Value, Buffer],
          lives: Mapping[Value, Lifetime]) -> tuple[Buffer, Value, str] | None:
    if len(node.outputs) != 1:
        return None
    size = lives[node.output].size
    if node.op in VIEW_OPS and node.inputs:
        buf = owner.get(node.inputs[0])
        if buf is not None and buf.size == size:
            return buf, node.inputs[0], "view"
    for k in inplace_operands(node):
        v = node.inputs[k]
        buf = owner.get(v)
        if buf is None or buf.size != size or buf.holds_output or buf.end != step:
            continue
        if any(owner.get(u) is buf and u is not v for u in node.inputs):
            continue  # another operand reads the same memory at other indices
        return buf, v, "in-place"
    return None
