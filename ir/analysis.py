"""Read-only facts about a graph: op counts, parameters, FLOPs and the live-memory profile."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .graph import CONST, FUSED, Graph, Node, Value
from .opdef import get_op


def node_flops(node: Node) -> int:
    """FLOPs of one execution of ``node`` (fused bodies summed; symbolic dims count as 1)."""
    if node.op == CONST:
        return 0
    if node.op == FUSED:
        assert node.body is not None
        return sum(node_flops(n) for n in node.body.nodes)
    return int(get_op(node.op).flops([v.type for v in node.inputs], [v.type for v in node.outputs], node.attrs))


def live_bytes_per_step(graph: Graph, bindings: dict[str, int] | None = None) -> list[int]:
    """Bytes of activations alive while each node runs, in the graph's order.

    A value is alive from the node that defines it (graph inputs: from the start) to its last
    reader (graph outputs: to the end). Constants are weights, not activations, and are left out.
    """
    last_use: dict[Value, int] = {}
    end = len(graph.nodes)
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            last_use[v] = i
    for v in graph.outputs:
        last_use[v] = end
    consts = {n.output for n in graph.nodes if n.op == CONST}
    live: dict[Value, int] = {v: v.type.nbytes(bindings) for v in graph.inputs}
    profile = []
    for i, node in enumerate(graph.nodes):
        for v in node.outputs:
            if v not in consts:
                live[v] = v.type.nbytes(bindings)
        profile.append(sum(live.values()))
        for v in [v for v in live if last_use.get(v, -1) <= i]:
            del live[v]
    return profile


@dataclass
class GraphSummary:
    """What ``graphopt inspect`` reports about a graph."""

    name: str
    nodes: int
    op_counts: dict[str, int]
    parameters: int
    parameter_bytes: int
    flops: int
    peak_activation_bytes: int
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A plain dict for ``--json`` output."""
        return dict(self.__dict__)

    def to_text(self) -> str:
        """A short human-readable table."""
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(self.op_counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return "\n".join([
            f"graph @{self.name}",
            f"  inputs      {', '.join(self.inputs)}",
            f"  outputs     {', '.join(self.outputs)}",
            f"  nodes       {self.nodes} at top level; ops: {ops}",
            f"  parameters  {self.parameters:,} ({format_bytes(self.parameter_bytes)})",
            f"  FLOPs       {format_count(self.flops)} per run",
            f"  peak activation memory  {format_bytes(self.peak_activation_bytes)} (in the current order)",
        ])


def summarize(graph: Graph, bindings: dict[str, int] | None = None) -> GraphSummary:
    """Op counts, parameter count, FLOPs and peak activation memory of ``graph``."""
    consts = [n.value for n in graph.nodes if n.op == CONST]
    counts = {k: v for k, v in graph.op_counts().items() if k != CONST}
    profile = live_bytes_per_step(graph, bindings)
    return GraphSummary(
        name=graph.name,
        nodes=sum(1 for n in graph.nodes if n.op != CONST),  # top level: a fused kernel counts once
        op_counts=counts,
        parameters=int(sum(c.size for c in consts)),
        parameter_bytes=int(sum(c.nbytes for c in consts)),
        flops=sum(node_flops(n) for n in graph.nodes),
        peak_activation_bytes=max(profile, default=sum(v.type.nbytes(bindings) for v in graph.inputs)),
        inputs=[f"%{v.name}: {v.type}" for v in graph.inputs],
        outputs=[str(v.type) for v in graph.outputs],
    )


def format_bytes(n: int) -> str:
    """``1536`` → ``1.5 KiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def format_count(n: int) -> str:
    """``4100000000`` → ``4.10 G``."""
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)
