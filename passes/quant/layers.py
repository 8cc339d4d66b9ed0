"""Which nodes are quantizable layers (conv / matmul / gemm with a constant weight) and why not.

A *layer* is a float convolution, matmul or gemm whose weight is a constant: its weight can be
quantized once at compile time and its activation at run time, and an integer kernel exists for
it. Everything else stays float; ``find_layers`` says why for the nodes that look like layers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...ir.graph import CONST, FUSED, Graph, Node, Value
from ...ir.printer import Printer
from ...ir.types import DType

ANCHORS = ("nn.conv2d", "nn.matmul", "nn.gemm")
# The integer kernels a quantized layer runs as: f32 epilogue, or i32 results for q.requantize.
INTEGER_KERNELS = ("q.conv2d_int8", "q.matmul_int8", "q.conv_integer", "q.matmul_integer")
QRANGE = "qrange"  # annotation of a layer: calibrated real range [lo, hi] of its activation operand


@dataclass(frozen=True, eq=False)
class Layer:
    """One quantizable node: its weight and the axis of the weight that holds output channels."""

    node: Node
    name: str  # how reports name it: the result's name as the IR prints it
    weight: Value
    weight_axis: int  # per-channel axis of the weight as stored (conv OIHW: 0, matmul [K,N]: 1)
    macs: int

    @property
    def activation(self) -> Value:
        """The operand quantized at run time."""
        return self.node.inputs[0]

    @property
    def kind(self) -> str:
        """``conv2d``, ``matmul`` or ``gemm``."""
        return self.node.op.split(".", 1)[1]


def value_names(graph: Graph) -> dict[Value, str]:
    """Each value's name as the IR text prints it (``%12`` for unnamed ones)."""
    printer = Printer()
    printer.print(graph)
    return printer.names


def find_layers(graph: Graph) -> tuple[list[Layer], list[tuple[str, str]]]:
    """The quantizable layers in order, and (subject, reason) for look-alike nodes that are not."""
    consts = {n.output: n for n in graph.nodes if n.op == CONST}
    names = value_names(graph)
    layers: list[Layer] = []
    skipped: list[tuple[str, str]] = []
    for node in graph.nodes:
        if node.op == FUSED:
            skipped.append((f"kernel @{node.kernel_name}", "already fused: quantize runs before fuse"))
            continue
        if node.op not in ANCHORS:
            continue
        subject = f"{node.op} %{names[node.outputs[0]]}"
        reason = _not_quantizable(node, consts)
        if reason is not None:
            skipped.append((subject, reason))
            continue
        w = node.inputs[1]
        axis = 0 if node.op == "nn.conv2d" else (0 if node.op == "nn.gemm" and node.attrs["trans_b"] else 1)
        layers.append(Layer(node, subject, w, axis, _macs(node)))
    return layers, skipped


def _not_quantizable(node: Node, consts: dict[Value, Node]) -> str | None:
    a, w = node.inputs[0], node.inputs[1]
    if a.type.dtype is not DType.f32 or node.outputs[0].type.dtype is not DType.f32:
        return f"operands are {a.type.dtype}, only f32 layers are quantized"
    if w not in consts:
        return "no integer kernel for activation x activation products: both operands are computed at run time"
    if node.op == "nn.conv2d" and node.attrs["groups"] != 1:
        return f"no integer kernel for grouped convolution (groups={node.attrs['groups']})"
    if node.op == "nn.matmul" and (a.type.rank < 2 or w.type.rank != 2):
        return f"no integer kernel for matmul of {a.type} by {w.type} (needs [..., M, K] @ [K, N])"
    if node.op == "nn.gemm":
        if node.attrs["trans_a"]:
            return "no integer kernel for gemm with trans_a"
        if len(node.inputs) == 3 and node.inputs[2] not in consts:
            return "gemm's c is computed at run time"
    return None


def _macs(node: Node) -> int:
    out = node.outputs[0].type.numel()
    w = node.inputs[1].type
    if node.op == "nn.conv2d":
        return out * int(w.shape[1]) * int(w.shape[2]) * int(w.shape[3])  # type: ignore[operator]
    k = w.shape[1] if node.op == "nn.gemm" and node.attrs["trans_b"] else w.shape[0]
    return out * (k if isinstance(k, int) else 1)
