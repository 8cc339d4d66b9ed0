"""Rewrite chosen layers into quantize-dequantize (QDQ) form, or into bf16.

QDQ form keeps every layer a float op whose operands pass through ``q.quantize`` ->
``q.dequantize``: it computes exactly what the integer kernel will (``fold.py`` turns each such
pattern into one), exports to ONNX as a QDQ model, and runs anywhere. Weights are quantized here,
once: symmetric int8 per output channel (or per tensor). Activations are quantized with their
calibrated range (static, per tensor) or from their own range at run time (``q.dynamic_quantize``,
per tensor, or per row for matmuls).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ...ir.graph import CONST, Graph, Node, Value
from ...ir.types import DType
from .emit import Emitter
from .layers import Layer
from .scheme import activation_params, weight_params

ActivationMode = Literal["static", "dynamic", "dynamic-row"]


@dataclass(frozen=True)
class LayerPlan:
    """How one layer is quantized."""

    activation: ActivationMode
    lo: float = 0.0  # calibrated range (static only)
    hi: float = 0.0
    per_channel: bool = True
    note: str = ""  # why the activation is quantized this way, when it is not what was asked

    def describe(self) -> str:
        """Short text for reports."""
        act = {"static": f"static u8 range [{self.lo:.4g}, {self.hi:.4g}]", "dynamic": "dynamic u8 per tensor",
               "dynamic-row": "dynamic u8 per row"}[self.activation]
        note = f" ({self.note})" if self.note else ""
        return f"activation {act}{note}, weight int8 {'per channel' if self.per_channel else 'per tensor'}"


def insert_qdq(graph: Graph, plans: Mapping[Node, LayerPlan], layers: Mapping[Node, Layer]) -> Graph:
    """``graph`` with each planned layer's activation and weight in QDQ form."""
    e = Emitter(graph)
    consts = graph.constants()
    act_cache: dict[tuple, Value] = {}
    for node in graph.nodes:
        plan = plans.get(node)
        if plan is None:
            e.keep(node)
            continue
        layer = layers[node]
        x = node.inputs[0]
        key = (x, plan.activation, plan.lo, plan.hi)
        if key not in act_cache:
            act_cache[key] = _quantize_activation(e, x, plan)
        w = _dequantized_weight(e, consts[layer.weight], layer, plan.per_channel)
        inputs = (act_cache[key], w) + node.inputs[2:]
        e.keep(Node(node.op, inputs, node.outputs, node.attrs, node.annotations))
    return e.finish()


def _quantize_activation(e: Emitter, x: Value, plan: LayerPlan) -> Value:
    if plan.activation == "static":
        scale, zp = activation_params(plan.lo, plan.hi)
        s, z = e.const(scale), e.const(zp)
        return e.op1("q.dequantize", e.op1("q.quantize", x, s, z), s, z)
    y, s, z = e.op("q.dynamic_quantize", (x,), {"per_row": plan.activation == "dynamic-row"})
    return e.op1("q.dequantize", y, s, z)


def _dequantized_weight(e: Emitter, w: np.ndarray, layer: Layer, per_channel: bool) -> Value:
    axis = layer.weight_axis if per_channel else None
    q, scale = weight_params(w, axis)
    hint = f"{layer.weight.name}_q" if layer.weight.name else None
    qv = e.const(q, hint)
    sv = e.const(scale, f"{hint}_scale" if hint else None)
    zv = e.const(np.zeros(scale.shape, np.int8), f"{hint}_zero" if hint else None)
    return e.op1("q.dequantize", qv, sv, zv, axis=layer.weight_axis if per_channel else 1)


def insert_bf16(graph: Graph, chosen: set[Node]) -> Graph:
    """``graph`` with each chosen layer computed in bf16: operands cast down, the result cast back."""
    e = Emitter(graph)
    consts = graph.constants()
    casts: dict[Value, Value] = {}
    for node in graph.nodes:
        if node not in chosen:
            e.keep(node)
            continue
        inputs = []
        for v in node.inputs:
            if v in consts:
                inputs.append(e.const(consts[v].astype(DType.bf16.numpy), f"{v.name}_bf16" if v.name else None))
            else:
                if v not in casts:
                    casts[v] = e.op1("tensor.cast", v, to=DType.bf16)
                inputs.append(casts[v])
        (low,) = e.op(node.op, inputs, node.attrs, annotations=node.annotations)
        e.op("tensor.cast", (low,), {"to": DType.f32}, outputs=node.outputs)
    return e.finish()


def is_quantized(graph: Graph) -> list[str]:
    """The q.* ops a graph already has (an empty list when it has none)."""
    return sorted({n.op for n in graph.walk() if n.op.startswith("q.")} - {CONST})
