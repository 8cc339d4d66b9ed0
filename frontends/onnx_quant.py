"""ONNX quantization ops: import (QDQ, QLinear, dynamic) and export of the ``q.*`` ops.

Import:

* ``QuantizeLinear`` / ``DequantizeLinear`` -> ``q.quantize`` / ``q.dequantize`` (a missing zero
  point is a zero of the quantized type); a ``DequantizeLinear`` of an initializer is folded into
  a float constant at import, which ``fold-qdq`` recognizes as an exact int8 grid.
* ``DynamicQuantizeLinear`` -> ``q.dynamic_quantize``; ``MatMulInteger`` / ``ConvInteger`` ->
  ``q.matmul_integer`` / ``q.conv_integer``.
* ``QLinearConv`` / ``QLinearMatMul`` -> their QDQ meaning: dequantize the operands, run the float
  op (the int32 bias dequantized with ``x_scale * w_scale``), quantize the result. ``fold-qdq``
  then turns the middle into an integer kernel.

Export writes a QDQ model: ``q.quantize`` / ``q.dequantize`` / ``q.dynamic_quantize`` as the ONNX
ops when their scales are per tensor or per axis (else as the same arithmetic spelled out), and
each integer kernel as the QDQ pattern it stands for (``DequantizeLinear`` -> ``Conv``/``MatMul``),
which onnxruntime fuses back into its own integer kernels.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Node, Value
from ..ir.ops.quant import qrange
from ..ir.types import DType
from .onnx_export import _emits, _Exporter
from .onnx_ops import NodeCtx, Result, _spatial_rank, _window, converts
from .onnx_types import onnx_elem_type

_QUANT = (DType.u8, DType.i8)

# ------------------------------------------------------------------------------------------ import


def _zero_point(c: NodeCtx, i: int, dtype: DType) -> Value:
    """Operand ``i`` (a zero point), or a scalar zero of ``dtype`` when it is left out."""
    return c.value(i) if c.has(i) else c.constant(0, dtype)


def _check_quant_type(c: NodeCtx, v: Value, what: str) -> None:
    if v.type.dtype not in _QUANT:
        c.unsupported(f"{what} of type {v.type.dtype} (graphopt quantizes to u8 and i8 only)")


@converts("QuantizeLinear")
def _quantize_linear(c: NodeCtx) -> list[Result]:
    if c.attr("block_size", 0):
        c.unsupported("blocked quantization (block_size)")
    out_type = c.attr("output_dtype", 0)
    default = DType.i8 if out_type == 3 else DType.u8  # TensorProto.INT8 = 3; UINT8 is the default
    zp = _zero_point(c, 2, default)
    _check_quant_type(c, zp, "quantizing")
    return [c.op("q.quantize", c.value(0), c.value(1), zp, axis=c.attr("axis", 1))]


@converts("DequantizeLinear")
def _dequantize_linear(c: NodeCtx) -> list[Result]:
    if c.attr("block_size", 0):
        c.unsupported("blocked quantization (block_size)")
    x = c.value(0)
    if x.type.dtype not in _QUANT + (DType.i32,):
        c.unsupported(f"dequantizing {x.type.dtype} (graphopt takes u8, i8 and i32)")
    return [c.op("q.dequantize", x, c.value(1), _zero_point(c, 2, x.type.dtype), axis=c.attr("axis", 1))]


@converts("DynamicQuantizeLinear")
def _dynamic_quantize_linear(c: NodeCtx) -> list[Result]:
    return list(c.ops("q.dynamic_quantize", [c.value(0)], per_row=False))


@converts("MatMulInteger")
def _matmul_integer(c: NodeCtx) -> list[Result]:
    a, b = c.value(0), c.value(1)
    ins = [a, b] + ([_zero_point(c, 2, a.type.dtype)] if c.has(2) or c.has(3) else [])
    if c.has(3):
        ins.append(c.value(3))
    return [c.op("q.matmul_integer", *ins)]


def _conv_attrs(c: NodeCtx, x: Value, w: Value) -> dict[str, object]:
    if _spatial_rank(c, x) != 2:
        c.unsupported("quantized 1-d convolution")
    kernel = list(c.attr("kernel_shape") or w.type.shape[2:])
    strides, dilations, pads = _window(c, x, kernel)
    return {"strides": tuple(strides), "dilations": tuple(dilations), "pads": tuple(pads),
            "groups": c.attr("group", 1)}


@converts("ConvInteger")
def _conv_integer(c: NodeCtx) -> list[Result]:
    x, w = c.value(0), c.value(1)
    ins = [x, w] + ([_zero_point(c, 2, x.type.dtype)] if c.has(2) or c.has(3) else [])
    if c.has(3):
        ins.append(c.value(3))
    return [c.op("q.conv_integer", *ins, **_conv_attrs(c, x, w))]


def _bias(c: NodeCtx, i: int, x_scale: int, w_scale: int) -> Value | None:
    """QLinearConv's int32 bias as float: ``bias * x_scale * w_scale`` (known at import time)."""
    if not c.has(i):
        return None
    b, xs, ws = c.const(i), c.const(x_scale), c.const(w_scale)
    if b is None or xs is None or ws is None:
        c.unsupported("a bias or scales computed at run time")
    scale = (xs.astype(np.float32).reshape(-1) * ws.astype(np.float32).reshape(-1)).astype(np.float32)
    return c.constant((b.astype(np.float64) * scale).astype(np.float32), DType.f32)


def _dequantized(c: NodeCtx, x: int, scale: int, zp: int, axis: int = 1) -> Value:
    v = c.value(x)
    _check_quant_type(c, v, "dequantizing")
    return c.op("q.dequantize", v, c.value(scale), _zero_point(c, zp, v.type.dtype), axis=axis)


@converts("QLinearConv")
def _qlinear_conv(c: NodeCtx) -> list[Result]:
    x, w = _dequantized(c, 0, 1, 2), _dequantized(c, 3, 4, 5, axis=0)
    bias = _bias(c, 8, 1, 4)
    y = c.op("nn.conv2d", *([x, w] + ([bias] if bias is not None else [])), **_conv_attrs(c, c.value(0), c.value(3)))
    return [c.op("q.quantize", y, c.value(6), _zero_point(c, 7, c.value(0).type.dtype))]


@converts("QLinearMatMul")
def _qlinear_matmul(c: NodeCtx) -> list[Result]:
    b = c.value(3)
    y = c.op("nn.matmul", _dequantized(c, 0, 1, 2), _dequantized(c, 3, 4, 5, axis=b.type.rank - 1))
    return [c.op("q.quantize", y, c.value(6), _zero_point(c, 7, c.value(0).type.dtype))]


# ------------------------------------------------------------------------------------------ export


def _layout(node: Node) -> str:
    """``tensor`` / ``axis`` (ONNX's Q/DQ take these) or ``blocked`` (per row: spelled out)."""
    scale = node.inputs[1].type
    if scale.rank == 0 or scale.shape == (1,):
        return "tensor"
    return "axis" if scale.rank == 1 and node.inputs[0].type.rank > 1 else "blocked"


@_emits("q.quantize")
def _export_quantize(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    if _layout(node) != "blocked":
        e.emit("QuantizeLinear", ins, outs, axis=node.attrs["axis"])
        return
    lo, hi = qrange(node.outputs[0].type.dtype)
    scaled = _tmp(e, "Div", [ins[0], ins[1]])
    shifted = _tmp(e, "Add", [_tmp(e, "Round", [scaled]), _tmp(e, "Cast", [ins[2]], to=onnx_elem_type(DType.f32))])
    clipped = _tmp(e, "Clip", [shifted, e.scalar(lo, DType.f32), e.scalar(hi, DType.f32)])
    e.emit("Cast", [clipped], outs, to=onnx_elem_type(node.outputs[0].type.dtype))


@_emits("q.dequantize")
def _export_dequantize(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    if _layout(node) != "blocked":
        e.emit("DequantizeLinear", ins, outs, axis=node.attrs["axis"])
        return
    _spelled_dequantize(e, ins, outs)


def _spelled_dequantize(e: _Exporter, ins: list[str], outs: list[str]) -> None:
    f32 = onnx_elem_type(DType.f32)
    centered = _tmp(e, "Sub", [_tmp(e, "Cast", [ins[0]], to=f32), _tmp(e, "Cast", [ins[2]], to=f32)])
    e.emit("Mul", [centered, ins[1]], outs)


@_emits("q.dynamic_quantize")
def _export_dynamic(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    if not node.attrs["per_row"]:
        e.emit("DynamicQuantizeLinear", ins, outs)
        return
    f32, u8 = onnx_elem_type(DType.f32), onnx_elem_type(DType.u8)
    axes = e.ints([-1], "axes")
    zero, one = e.scalar(0.0, DType.f32), e.scalar(1.0, DType.f32)
    lo = _tmp(e, "Min", [_tmp(e, "ReduceMin", [ins[0], axes], keepdims=1), zero])
    hi = _tmp(e, "Max", [_tmp(e, "ReduceMax", [ins[0], axes], keepdims=1), zero])
    raw = _tmp(e, "Div", [_tmp(e, "Sub", [hi, lo]), e.scalar(255.0, DType.f32)])
    e.emit("Where", [_tmp(e, "Equal", [raw, zero]), one, raw], [outs[1]])
    top = e.scalar(255.0, DType.f32)
    zp = _tmp(e, "Clip", [_tmp(e, "Round", [_tmp(e, "Div", [_tmp(e, "Neg", [lo]), outs[1]])]), zero, top])
    e.emit("Cast", [zp], [outs[2]], to=u8)
    y = _tmp(e, "Add", [_tmp(e, "Round", [_tmp(e, "Div", [ins[0], outs[1]])]), _tmp(e, "Cast", [outs[2]], to=f32)])
    e.emit("Cast", [_tmp(e, "Clip", [y, zero, top])], [outs[0]], to=u8)


@_emits("q.matmul_integer")
def _export_matmul_integer(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    e.emit("MatMulInteger", ins, outs)


@_emits("q.conv_integer")
def _export_conv_integer(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    e.emit("ConvInteger", ins, outs, **_conv_onnx_attrs(node))


@_emits("q.requantize")
def _export_requantize(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    """In float, as ONNX has no integer requantization: ``QuantizeLinear(clip((acc + bias) * M *
    2**-k, lo - zp, hi - zp), 1, zp)`` (ties round to even there, toward +inf in the kernel)."""
    f32 = onnx_elem_type(DType.f32)
    acc = _tmp(e, "Add", [ins[0], _along(e, node, ins[4], 4)]) if len(ins) == 5 else ins[0]
    mult = _tmp(e, "Cast", [_along(e, node, ins[1], 1)], to=f32)
    shift = _tmp(e, "Cast", [_along(e, node, ins[2], 2)], to=f32)
    scale = _tmp(e, "Mul", [mult, _tmp(e, "Pow", [e.scalar(2.0, DType.f32), _tmp(e, "Neg", [shift])])])
    y = _tmp(e, "Mul", [_tmp(e, "Cast", [acc], to=f32), scale])
    lo, hi = node.attrs["clamp"] if node.attrs["clamp"] else qrange(node.outputs[0].type.dtype)
    zp = _tmp(e, "Cast", [ins[3]], to=f32)
    low = _tmp(e, "Sub", [e.scalar(float(lo), DType.f32), zp])
    high = _tmp(e, "Sub", [e.scalar(float(hi), DType.f32), zp])
    clipped = _tmp(e, "Min", [_tmp(e, "Max", [y, low]), high])
    e.emit("QuantizeLinear", [clipped, e.scalar(1.0, DType.f32), ins[3]], outs)


def _along(e: _Exporter, node: Node, name: str, operand: int) -> str:
    """A per-channel operand of ``q.requantize`` shaped to broadcast along its ``axis``."""
    param, rank = node.inputs[operand].type, node.inputs[0].type.rank
    axis = node.attrs["axis"] % rank
    if param.rank == 0 or param.shape == (1,) or axis == rank - 1:
        return name
    return _tmp(e, "Unsqueeze", [name, e.ints(list(range(1, rank - axis)), "axes")])


def _conv_onnx_attrs(node: Node) -> dict[str, object]:
    a = node.attrs
    return {"kernel_shape": list(node.inputs[1].type.shape[2:]), "strides": list(a["strides"]),
            "pads": list(a["pads"]), "dilations": list(a["dilations"]), "group": a["groups"]}


def _export_activation(e: _Exporter, node: Node, ins: list[str]) -> str:
    """The dequantized activation of an integer kernel (operands x, x_scale, x_zero_point)."""
    x_scale = node.inputs[2].type
    if x_scale.rank == 0 or x_scale.shape == (1,):
        return _tmp(e, "DequantizeLinear", [ins[0], ins[2], ins[3]])
    out = e.fresh()
    _spelled_dequantize(e, [ins[0], ins[2], ins[3]], [out])
    return out


def _export_weight(e: _Exporter, node: Node, ins: list[str], axis: int) -> str:
    """The dequantized weight of an integer kernel (symmetric: a zero point of zeros)."""
    scale = node.inputs[4].type
    zero = e.initializer(np.zeros(scale.shape, np.int8), "zero")
    return _tmp(e, "DequantizeLinear", [ins[1], ins[4], zero], axis=axis)


@_emits("q.conv2d_int8")
def _export_conv2d_int8(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    x, w = _export_activation(e, node, ins), _export_weight(e, node, ins, 0)
    e.emit("Conv", [x, w] + ins[5:], outs, **_conv_onnx_attrs(node))


@_emits("q.matmul_int8")
def _export_matmul_int8(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    a, w = _export_activation(e, node, ins), _export_weight(e, node, ins, 1)
    if len(ins) == 6:
        e.emit("Add", [_tmp(e, "MatMul", [a, w]), ins[5]], outs)
    else:
        e.emit("MatMul", [a, w], outs)


def _tmp(e: _Exporter, op_type: str, inputs: list[str], **attrs: object) -> str:
    """Emit one single-result node into a fresh temporary and return its name."""
    out = e.fresh()
    e.emit(op_type, inputs, [out], **attrs)
    return out
