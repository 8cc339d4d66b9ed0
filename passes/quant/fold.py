"""Fold QDQ patterns into integer kernels with an f32 epilogue (``requant.py`` then makes the
requantization between static layers integer-only, as HAWQ-V3 does).

    conv2d(dequantize(xq, s, z), dequantize(wq, ws, 0), bias) -> q.conv2d_int8(xq, wq, s, z, ws, bias)
    matmul(dequantize(aq, s, z), dequantize(wq, ws, 0))       -> q.matmul_int8(aq, wq, s, z, ws)
    gemm(dequantize(aq, s, z), dequantize(wq, ws, 0), c)      -> q.matmul_int8(aq, wq', s, z, ws*alpha, beta*c)

A weight may also be a float constant that is exactly an int8 grid (what importers make of a
``DequantizeLinear`` of an initializer): its integers and scales are recovered exactly. A weight
that is neither is left alone, as is any pattern the kernels cannot take (per-axis activation
scales, asymmetric weights): the layer keeps computing the QDQ-simulated result in float, and
the reason is recorded. A fold never changes the numbers, only where they are computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...ir.graph import Graph, Node, Value
from ...ir.types import DType
from .emit import Emitter
from .layers import ANCHORS, value_names


@dataclass(frozen=True)
class FoldNote:
    """What happened to one layer-like node: folded (``accepted``) or why not."""

    subject: str
    accepted: bool
    reason: str


@dataclass(frozen=True)
class _Weight:
    q: np.ndarray  # int8, in the layout the kernel takes ([K, N] for matmuls, OIHW for convs)
    scale: np.ndarray  # f32, one per output channel or one
    source: str


def fold_qdq(graph: Graph) -> tuple[Graph, list[FoldNote]]:
    """``graph`` with every foldable QDQ layer replaced by its integer kernel, and a note per layer."""
    producers = graph.producers()
    consts = graph.constants()
    names = value_names(graph)
    e = Emitter(graph)
    notes: list[FoldNote] = []
    for node in graph.nodes:
        if node.op not in ANCHORS:
            e.keep(node)
            continue
        subject = f"{node.op} %{names[node.outputs[0]]}"
        act = _activation(node, producers, consts)
        if isinstance(act, str):
            if act:
                notes.append(FoldNote(subject, False, act))
            e.keep(node)
            continue
        weight = _weight(node, producers, consts)
        if isinstance(weight, str):
            notes.append(FoldNote(subject, False, weight))
            e.keep(node)
            continue
        xq, s, z = act
        reason = _emit_kernel(e, node, xq, s, z, weight, consts)
        if reason is None:
            notes.append(FoldNote(subject, True, f"integer kernel ({weight.source})"))
        else:
            notes.append(FoldNote(subject, False, reason))
            e.keep(node)
    return e.finish(), notes


def _activation(node: Node, producers: dict[Value, Node], consts: dict[Value, np.ndarray]
                ) -> tuple[Value, Value, Value] | str:
    """The quantized activation, scale and zero point behind operand 0, or why there is none."""
    dq = producers.get(node.inputs[0])
    if dq is None or dq.op != "q.dequantize":
        return ""  # a float layer: nothing to fold, nothing to say
    xq, s, z = dq.inputs
    if xq.type.dtype not in (DType.u8, DType.i8):
        return f"activation is dequantized from {xq.type.dtype}; the integer kernels take u8 or i8"
    per_tensor = s.type.rank == 0 or s.type.shape == (1,)
    per_row = s.type.rank == xq.type.rank and s.type.shape[-1] == 1 and node.op != "nn.conv2d"
    if not (per_tensor or per_row):
        return f"activation scale {s.type} is per axis; the integer kernels take one scale (or one per matmul row)"
    return xq, s, z


def _weight(node: Node, producers: dict[Value, Node], consts: dict[Value, np.ndarray]) -> _Weight | str:
    """The int8 weight in kernel layout, or why the weight cannot be one."""
    w = node.inputs[1]
    transpose = node.op == "nn.gemm" and node.attrs["trans_b"]
    axis = 0 if node.op == "nn.conv2d" else (0 if transpose else 1)
    if node.op == "nn.matmul" and w.type.rank != 2:
        return f"matmul weight {w.type} is not 2-D"
    dq = producers.get(w)
    if dq is not None and dq.op == "q.dequantize" and all(v in consts for v in dq.inputs):
        q, scale, zp = (consts[v] for v in dq.inputs)
        if q.dtype != np.int8 or np.any(zp != 0):
            return "weight is not symmetric int8 (zero point != 0 or u8): no integer kernel takes it"
        if scale.size > 1 and dq.attrs["axis"] % q.ndim != axis:
            return f"weight scale is per axis {dq.attrs['axis']}, the kernel needs per output channel (axis {axis})"
        wq, source = q, "int8 weight"
        scale = scale.astype(np.float32).reshape(-1)
    elif w in consts and consts[w].dtype == np.float32:
        found = int8_grid(consts[w], axis)
        if found is None:
            return "float weight is not on an int8 grid: folding would quantize it (run quantize for that)"
        wq, scale = found
        source = "float weight on an exact int8 grid"
    else:
        return "weight is computed at run time"
    if transpose:
        wq = np.ascontiguousarray(wq.T)
    return _Weight(wq, scale, source)


def int8_grid(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(q, scale)`` with ``w == q * scale`` (to float rounding), q int8, one scale for the tensor
    or else one per slice along ``axis``; None when ``w`` is on no such grid."""
    if w.size == 0:
        return None
    for per_axis in (False, True):
        rows = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1) if per_axis else w.reshape(1, -1)
        found = _grid_rows(rows.astype(np.float32))
        if found is not None:
            q, scale = found
            q = np.moveaxis(q.reshape(np.moveaxis(w, axis, 0).shape), 0, axis) if per_axis else q.reshape(w.shape)
            return np.ascontiguousarray(q), scale
    return None


def _grid_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Per row: the integers and scale of a symmetric int8 grid holding every value, or None."""
    amax = np.abs(rows).max(axis=1)
    ratio = rows / np.where(amax > 0, amax, 1)[:, None]
    # On a grid, ratio * k is integral for k = the largest |q| (<= 128); find k on a few columns,
    # then check all of them. Any valid k represents the values exactly.
    cols = np.unique(np.linspace(0, rows.shape[1] - 1, min(rows.shape[1], 48)).astype(int))
    sample = ratio[:, cols].astype(np.float64)
    k = np.zeros(len(rows))
    for cand in range(1, 129):
        scaled = sample * cand
        ok = (np.abs(scaled - np.rint(scaled)) < 1e-3).all(axis=1) & (k == 0)
        k[ok] = cand
    if np.any((k == 0) & (amax > 0)):
        return None
    scale = np.where(amax > 0, amax / np.where(k > 0, k, 1), 1).astype(np.float32)
    q = np.rint(rows / scale[:, None])
    if q.min() < -128 or q.max() > 127:
        return None
    back = (q * scale[:, None]).astype(np.float32)
    if not np.allclose(back, rows, rtol=1e-6, atol=0):
        return None
    return q.astype(np.int8), scale


def _emit_kernel(e: Emitter, node: Node, xq: Value, s: Value, z: Value, weight: _Weight,
                 consts: dict[Value, np.ndarray]) -> str | None:
    """Emit the integer kernel replacing ``node``; None on success, else why it was not possible."""
    hint = f"{node.inputs[1].name}_int8" if node.inputs[1].name else None
    if node.op == "nn.conv2d":
        if s.type.rank > 1 or s.type.numel() != 1:
            return "convolution activations need one scale"
        args = [xq, e.const(weight.q, hint), s, z, e.const(weight.scale, hint and hint + "_scale")]
        if len(node.inputs) == 3:
            args.append(node.inputs[2])
        e.op("q.conv2d_int8", args, node.attrs, outputs=node.outputs, annotations=node.annotations)
        return None
    scale, bias = weight.scale, None
    if node.op == "nn.gemm":
        alpha, beta = node.attrs["alpha"], node.attrs["beta"]
        scale = (scale * np.float32(alpha)).astype(np.float32)
        if len(node.inputs) == 3:
            c = consts[node.inputs[2]]
            n = weight.q.shape[1]
            if c.size not in (1, n) or c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1):
                return f"gemm's c {list(c.shape)} is not one bias per column"
            bias = np.broadcast_to(c.astype(np.float32).reshape(-1), (n,)) * np.float32(beta)
    args = [xq, e.const(weight.q, hint), s, z, e.const(scale, hint and hint + "_scale")]
    if bias is not None:
        args.append(e.const(bias.astype(np.float32), hint and hint + "_bias"))
    e.op("q.matmul_int8", args, outputs=node.outputs, annotations=node.annotations)
    return None

