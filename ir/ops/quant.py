"""Quantization: quantize / dequantize (static and dynamic) and integer matmul / convolution.

Scales and zero points are operands, as in ONNX, so they may be constants (static quantization)
or computed at run time (``q.dynamic_quantize``). A scale is per tensor (a scalar), per axis (1-D,
one per slice along ``axis``) or blocked (same rank as the data, broadcasting to it: one per row).

The integer kernels take quantized operands and return f32: ``q.matmul_int8`` and
``q.conv2d_int8`` accumulate ``(a - a_zero_point) * b`` in int32, then apply the dequantizing
epilogue ``acc * (a_scale * b_scale) + bias``. Weights are symmetric int8 (no zero point).
References accumulate in float64, which is exact for integer sums below 2**53, so they equal an
int32 accumulation whenever that one does not overflow (K below 66 000 for u8 x i8).
``q.matmul_integer`` and ``q.conv_integer`` are ONNX's MatMulInteger and ConvInteger (int32 out).
``q.requantize`` is HAWQ-V3's integer-only requantization of such an int32 accumulator: an int32
bias, a dyadic multiplier ``M * 2**-k`` per channel (``dyadic``) and a clamp, all in int64.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..opdef import Attr, AttrKind, FusionKind, OpDef, register
from ..types import DType, TensorType, broadcast_shapes
from .common import check_dtype, check_rank, dims_agree, elementwise_flops, normalize_axis
from .linalg import _conv_flops, _matmul_flops, conv2d
from .linalg import _conv_infer as _float_conv_infer
from .linalg import _matmul_infer as _float_matmul_infer

QUANT_DTYPES = (DType.i8, DType.u8)


def qrange(dtype: DType) -> tuple[int, int]:
    """The representable range of a quantized element type."""
    info = np.iinfo(dtype.numpy)
    return int(info.min), int(info.max)


def _check_scale_layout(x: TensorType, scale: TensorType, zp: TensorType, axis: int, op: str) -> None:
    """A scale is a scalar, one per slice along ``axis`` (1-D), or broadcasts to ``x``; its zero
    point has the same shape."""
    check_dtype(scale, "float", f"{op} scale")
    if zp.shape != scale.shape:
        raise ValueError(f"{op} zero point {zp} and scale {scale} must have the same shape")
    if scale.rank <= 1 and scale.shape in ((), (1,)):
        return  # per tensor
    if scale.rank == 1:
        ax = normalize_axis(axis, x.rank)
        if not dims_agree(scale.shape[0], x.shape[ax]):
            raise ValueError(f"{op} per-axis scale {scale} needs x.shape[{axis}] = {x.shape[ax]} entries (x is {x})")
        return
    try:
        ok = scale.rank == x.rank and broadcast_shapes(x.shape, scale.shape) == x.shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{op} scale {scale} must be a scalar, 1-D along axis {axis}, or broadcast to {x}")


def _expand(param: np.ndarray, x_ndim: int, axis: int) -> np.ndarray:
    """A scale or zero point shaped to broadcast against data of rank ``x_ndim``."""
    if param.ndim == 0 or param.ndim == x_ndim:
        return param
    if param.size == 1:
        return param.reshape(())
    shape = [1] * x_ndim
    shape[axis % x_ndim] = param.shape[0]  # per axis
    return param.reshape(shape)


def quantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int = 1) -> np.ndarray:
    """``saturate(round_half_even(x / scale) + zero_point)`` in the zero point's element type."""
    lo, hi = qrange(DType.from_numpy(zero_point.dtype))
    s = _expand(np.asarray(scale, np.float32), x.ndim, axis)
    zp = _expand(zero_point, x.ndim, axis).astype(np.float32)
    y = np.rint(x.astype(np.float32) / s) + zp
    return np.clip(y, lo, hi).astype(zero_point.dtype)


def dequantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int = 1) -> np.ndarray:
    """``(x - zero_point) * scale`` as float32."""
    s = _expand(np.asarray(scale, np.float32), x.ndim, axis)
    zp = _expand(zero_point, x.ndim, axis).astype(np.int32)
    return ((x.astype(np.int32) - zp).astype(np.float32) * s).astype(np.float32)


def _quantize_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x, scale, zp = ins
    check_dtype(x, "float", "q.quantize input")
    if zp.dtype not in QUANT_DTYPES:
        raise ValueError(f"q.quantize zero point must be i8 or u8 (it sets the result type), got {zp}")
    _check_scale_layout(x, scale, zp, attrs["axis"], "q.quantize")
    return [x.with_dtype(zp.dtype)]


def _dequantize_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x, scale, zp = ins
    if x.dtype not in QUANT_DTYPES + (DType.i32,):
        raise ValueError(f"q.dequantize input must be i8, u8 or i32, got {x}")
    if zp.dtype != x.dtype:
        raise ValueError(f"q.dequantize zero point {zp} must have the input's type {x.dtype}")
    _check_scale_layout(x, scale, zp, attrs["axis"], "q.dequantize")
    return [x.with_dtype(DType.f32)]


_AXIS = (Attr("axis", AttrKind.INT, 1),)
register(OpDef(
    "q.quantize", ("x", "scale", "zero_point"), _quantize_infer,
    lambda xs, a: [quantize(xs[0], xs[1], xs[2], a["axis"])], FusionKind.BROADCAST, attrs=_AXIS,
    flops=elementwise_flops(3),
    doc="saturate(round_half_even(x / scale) + zero_point) in zero_point's type (ONNX QuantizeLinear)",
))
register(OpDef(
    "q.dequantize", ("x", "scale", "zero_point"), _dequantize_infer,
    lambda xs, a: [dequantize(xs[0], xs[1], xs[2], a["axis"])], FusionKind.BROADCAST, attrs=_AXIS,
    flops=elementwise_flops(2), doc="(x - zero_point) * scale as f32 (ONNX DequantizeLinear)",
))


# ------------------------------------------------------------------------------------ dynamic


def dynamic_quantize(x: np.ndarray, per_row: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """u8 data, scale and zero point from the range of ``x`` (with 0 in it), per tensor or per row."""
    axes = (x.ndim - 1,) if per_row and x.ndim else None
    keep = bool(per_row)
    xf = x.astype(np.float32)
    lo = np.minimum(np.min(xf, axis=axes, keepdims=keep), 0).astype(np.float32)
    hi = np.maximum(np.max(xf, axis=axes, keepdims=keep), 0).astype(np.float32)
    scale = ((hi - lo) / np.float32(255)).astype(np.float32)
    # An all-zero slice has no range; any scale represents it exactly (ONNX would divide by zero).
    scale = np.where(scale == 0, np.float32(1), scale).astype(np.float32)
    zp = np.clip(np.rint(-lo / scale), 0, 255).astype(np.uint8)
    y = np.clip(np.rint(xf / scale) + zp.astype(np.float32), 0, 255).astype(np.uint8)
    return y, np.asarray(scale, np.float32), np.asarray(zp, np.uint8)


def _dynamic_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    check_dtype(x, "float", "q.dynamic_quantize input")
    if attrs["per_row"]:
        if x.rank < 1:
            raise ValueError(f"q.dynamic_quantize per_row needs rank >= 1, got {x}")
        shape = x.shape[:-1] + (1,)
    else:
        shape = ()
    return [x.with_dtype(DType.u8), TensorType(shape, DType.f32), TensorType(shape, DType.u8)]


register(OpDef(
    "q.dynamic_quantize", ("x",), _dynamic_infer, lambda xs, a: list(dynamic_quantize(xs[0], a["per_row"])),
    FusionKind.REDUCTION, attrs=(Attr("per_row", AttrKind.BOOL, False),), flops=elementwise_flops(5),
    doc="u8 quantization over the range of x (0 included): results y, scale, zero_point; per tensor as "
        "ONNX DynamicQuantizeLinear, or per row (last axis) with per_row",
))


# ---------------------------------------------------------------------- ONNX integer operators


def _centered(x: np.ndarray, zp: np.ndarray | None, per_slice: tuple[int, ...] = (-1,)) -> np.ndarray:
    """``x - zp`` exactly, in float64 (BLAS then sums it exactly: every partial sum is below 2**53).

    A zero point with several entries is reshaped to ``per_slice`` to broadcast against ``x``.
    """
    out = x.astype(np.float64)
    if zp is None:
        return out
    z = zp.astype(np.float64)
    return out - (z.reshape(per_slice) if z.ndim == 1 and z.size > 1 else z)


def _to_int32(acc: np.ndarray) -> np.ndarray:
    # Wraps like an int32 accumulator would (only when the sum overflows, which needs K > 66 000).
    return (np.rint(acc).astype(np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def _int_operands(ins: Sequence[TensorType], op: str) -> None:
    for t, name in zip(ins[:2], ("a", "b")):
        if t.dtype not in QUANT_DTYPES:
            raise ValueError(f"{op} {name} must be i8 or u8, got {t}")
    for t, data, name in zip(ins[2:], ins[:2], ("a_zero_point", "b_zero_point")):
        if t.dtype != data.dtype:
            raise ValueError(f"{op} {name} {t} must have its operand's type {data.dtype}")
        if t.rank > 1:
            raise ValueError(f"{op} {name} must be a scalar or 1-D, got {t}")


def _matmul_integer_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    _int_operands(ins, "q.matmul_integer")
    a, b = ins[0], ins[1]
    out = _float_matmul_infer([a.with_dtype(DType.f32), b.with_dtype(DType.f32)], attrs)[0]
    return [out.with_dtype(DType.i32)]


def _matmul_integer(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    a, b = xs[0], xs[1]
    a_zp = xs[2] if len(xs) > 2 else None
    b_zp = xs[3] if len(xs) > 3 else None
    # A 1-D a zero point is per row of a (M entries), a 1-D b zero point per column of b (N).
    ac = _centered(a, a_zp, (-1, 1))
    bc = _centered(b, b_zp, (1, -1))
    return [_to_int32(np.matmul(ac, bc))]


register(OpDef(
    "q.matmul_integer", ("a", "b", "a_zero_point", "b_zero_point"), _matmul_integer_infer, _matmul_integer,
    FusionKind.OUT_FUSABLE, num_optional=2, flops=_matmul_flops,
    doc="(a - a_zero_point) @ (b - b_zero_point) accumulated in i32 (ONNX MatMulInteger)",
))

_CONV_ATTRS = (Attr("strides", AttrKind.INTS, (1, 1)), Attr("pads", AttrKind.INTS, (0, 0, 0, 0)),
               Attr("dilations", AttrKind.INTS, (1, 1)), Attr("groups", AttrKind.INT, 1))


def _conv_integer_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    _int_operands(ins, "q.conv_integer")
    x, w = ins[0], ins[1]
    if len(ins) > 2 and ins[2].numel() != 1:
        raise ValueError(f"q.conv_integer x_zero_point must be a scalar, got {ins[2]}")
    out = _float_conv_infer([x.with_dtype(DType.f32), w.with_dtype(DType.f32)], attrs)[0]
    return [out.with_dtype(DType.i32)]


def _conv_integer(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    x, w = xs[0], xs[1]
    x_zp = xs[2] if len(xs) > 2 else None
    w_zp = xs[3] if len(xs) > 3 else None
    wc = _centered(w, w_zp, (-1, 1, 1, 1))
    acc = conv2d(_centered(x, x_zp), wc, None, attrs["strides"], attrs["pads"], attrs["dilations"],
                 attrs["groups"])
    return [_to_int32(acc)]


register(OpDef(
    "q.conv_integer", ("x", "w", "x_zero_point", "w_zero_point"), _conv_integer_infer, _conv_integer,
    FusionKind.OUT_FUSABLE, num_optional=2, attrs=_CONV_ATTRS, flops=_conv_flops,
    doc="convolution of (x - x_zero_point) and (w - w_zero_point) accumulated in i32 (ONNX ConvInteger)",
))


# ---------------------------------------------------------------- integer kernels, f32 results


def _check_activation(a: TensorType, scale: TensorType, zp: TensorType, op: str, per_row: bool) -> None:
    if a.dtype not in QUANT_DTYPES:
        raise ValueError(f"{op} activation must be i8 or u8, got {a}")
    check_dtype(scale, "float", f"{op} activation scale")
    if zp.dtype != a.dtype or zp.shape != scale.shape:
        raise ValueError(f"{op} activation zero point {zp} must be {a.dtype} shaped like its scale {scale}")
    if scale.numel() == 1 and scale.rank <= 1 and all(isinstance(d, int) for d in scale.shape):
        return
    # Per row: one scale per row of a, i.e. a's shape with the reduced (last) axis kept as 1.
    ok = per_row and scale.rank == a.rank and scale.shape[-1] == 1
    if ok:
        try:
            ok = broadcast_shapes(a.shape[:-1], scale.shape[:-1]) == a.shape[:-1]
        except ValueError:
            ok = False
    if not ok:
        what = "a scalar or one per row ([..., M, 1])" if per_row else "a scalar"
        raise ValueError(f"{op} activation scale must be {what}, got {scale} for {a}")


def _check_weight(w: TensorType, scale: TensorType, channels: Any, op: str) -> None:
    if w.dtype is not DType.i8:
        raise ValueError(f"{op} weight must be i8 (symmetric), got {w}")
    check_dtype(scale, "float", f"{op} weight scale")
    per_tensor = scale.rank == 0 or scale.rank == 1 and scale.shape[0] == 1
    if not per_tensor and not (scale.rank == 1 and dims_agree(scale.shape[0], channels)):
        raise ValueError(f"{op} weight scale must be a scalar or [{channels}], got {scale}")


def _check_bias(bias: TensorType, channels: Any, op: str) -> None:
    if not bias.dtype.is_float or bias.rank != 1 or not dims_agree(bias.shape[0], channels):
        raise ValueError(f"{op} bias must be a float vector [{channels}], got {bias}")


def _matmul_int8_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    a, b, a_scale, a_zp, b_scale = ins[:5]
    op = "q.matmul_int8"
    check_rank(b, 2, f"{op} weight [K,N]")
    if a.rank < 2:
        raise ValueError(f"{op} activation must have rank >= 2 ([..., M, K]), got {a}")
    _check_activation(a, a_scale, a_zp, op, per_row=True)
    _check_weight(b, b_scale, b.shape[1], op)
    if not dims_agree(a.shape[-1], b.shape[0]):
        raise ValueError(f"{op} inner dimensions differ: {a} @ {b}")
    if len(ins) == 6:
        _check_bias(ins[5], b.shape[1], op)
    return [TensorType(a.shape[:-1] + (b.shape[1],), DType.f32)]


def _epilogue(acc: np.ndarray, a_scale: np.ndarray, b_scale: np.ndarray, bias: np.ndarray | None,
              channel_shape: tuple[int, ...]) -> np.ndarray:
    """``f32(acc) * (a_scale * b_scale) + bias``, in float32 as the integer kernels compute it."""
    scale = a_scale.astype(np.float32) * b_scale.astype(np.float32).reshape(channel_shape if b_scale.size > 1 else ())
    y = acc.astype(np.float32) * scale
    if bias is not None:
        y = y + bias.astype(np.float32).reshape(channel_shape)
    return y.astype(np.float32)


def _matmul_int8(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    a, b, a_scale, a_zp, b_scale = xs[:5]
    bias = xs[5] if len(xs) == 6 else None
    zp = a_zp.reshape(()) if a_zp.ndim < a.ndim else a_zp
    acc = _to_int32(np.matmul(a.astype(np.float64) - zp.astype(np.float64), b.astype(np.float64)))
    s = a_scale.reshape(()) if a_scale.ndim < a.ndim else a_scale
    return [_epilogue(acc, s, b_scale, bias, (-1,))]


def _int8_matmul_flops(ins: Sequence[TensorType], outs: Sequence[TensorType], attrs: Mapping[str, Any]) -> int:
    k = ins[1].shape[0]
    return 2 * outs[0].numel() * (k if isinstance(k, int) else 1)


register(OpDef(
    "q.matmul_int8", ("a", "b", "a_scale", "a_zero_point", "b_scale", "bias"), _matmul_int8_infer, _matmul_int8,
    FusionKind.OUT_FUSABLE, num_optional=1, flops=_int8_matmul_flops,
    doc="f32((a - a_zero_point) @ b accumulated in i32) * (a_scale * b_scale) + bias: u8/i8 activation "
        "[..., M, K] scaled per tensor or per row, i8 weight [K, N] scaled per tensor or per column",
))


def _conv2d_int8_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x, w, x_scale, x_zp, w_scale = ins[:5]
    op = "q.conv2d_int8"
    check_rank(w, 4, f"{op} weight (O,I,kH,kW)")
    _check_activation(x, x_scale, x_zp, op, per_row=False)
    _check_weight(w, w_scale, w.shape[0], op)
    if len(ins) == 6:
        _check_bias(ins[5], w.shape[0], op)
    out = _float_conv_infer([x.with_dtype(DType.f32), w.with_dtype(DType.f32)], attrs)[0]
    return [out]


def _conv2d_int8(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    x, w, x_scale, x_zp, w_scale = xs[:5]
    bias = xs[5] if len(xs) == 6 else None
    # Pads hold the zero point (real zero): after centering they are the 0 that conv2d pads with.
    acc = conv2d(_centered(x, x_zp), w.astype(np.float64), None, attrs["strides"], attrs["pads"],
                 attrs["dilations"], attrs["groups"])
    return [_epilogue(_to_int32(acc), x_scale.reshape(()), w_scale, bias, (1, -1, 1, 1))]


register(OpDef(
    "q.conv2d_int8", ("x", "w", "x_scale", "x_zero_point", "w_scale", "bias"), _conv2d_int8_infer, _conv2d_int8,
    FusionKind.OUT_FUSABLE, num_optional=1, attrs=_CONV_ATTRS, flops=_conv_flops,
    doc="f32(conv2d(x - x_zero_point, w) accumulated in i32) * (x_scale * w_scale) + bias: u8/i8 NCHW "
        "activation scaled per tensor (pads hold the zero point), i8 OIHW weight per tensor or per output channel",
))


# ------------------------------------------------------------------ integer-only requantization


def requantize(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, zero_point: np.ndarray,
               bias: np.ndarray | None = None, axis: int = 1, clamp: Sequence[int] = ()) -> np.ndarray:
    """``clamp(((acc + bias) * multiplier + 2**(shift-1)) >> shift + zero_point)`` in integers.

    The sum, the product, the rounding term and the arithmetic right shift are int64: exact while
    |acc + bias| < 2**31 (multiplier < 2**31, shift <= 62), which an int32 accumulator of u8 x i8
    products below K = 66 000 and a bias on its grid always meet. So the result rounds
    ``(acc + bias) * multiplier / 2**shift`` to nearest, ties toward +inf.
    The clamp (``[lo, hi]``, else the zero point's range) is applied in int64 before narrowing.
    """
    dtype = DType.from_numpy(zero_point.dtype)
    lo, hi = (int(clamp[0]), int(clamp[1])) if clamp else qrange(dtype)
    v = acc.astype(np.int64)
    if bias is not None:
        v = v + _expand(bias.astype(np.int64), acc.ndim, axis)
    m = _expand(multiplier.astype(np.int64), acc.ndim, axis)
    k = _expand(shift.astype(np.int64), acc.ndim, axis)
    y = (v * m + (np.int64(1) << (k - 1))) >> k
    y = np.clip(y + np.int64(zero_point.reshape(()).astype(np.int64)), lo, hi)
    return y.astype(zero_point.dtype)


def dyadic(scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(multiplier, shift)`` as int32 with ``multiplier * 2**-shift ~= scale`` per entry.

    The multiplier is normalized to [2**30, 2**31), so the relative error is at most 2**-31;
    shift is in [1, 62] (a scale below 2**-31 gets a smaller multiplier at shift 62, a zero scale
    multiplier 0). Raises ``ValueError`` for a negative, non-finite or >= 2**30 scale.
    """
    s = np.asarray(scale, np.float64)
    if not np.all(np.isfinite(s)) or np.any(s < 0) or np.any(s >= 2.0**30):
        raise ValueError(f"requantization scale must be finite, >= 0 and < 2**30, got {s.min()}..{s.max()}")
    frac, exp = np.frexp(s)  # s = frac * 2**exp, frac in [0.5, 1) (0 for s == 0)
    mult = np.rint(frac * 2.0**31).astype(np.int64)
    shift = (31 - exp).astype(np.int64)
    carry = mult == 2**31  # frac rounded up to 1.0
    mult = np.where(carry, 2**30, mult)
    shift = np.where(carry, shift - 1, shift)
    small = shift > 62
    mult = np.where(small, np.rint(np.where(small, s, 0) * 2.0**62).astype(np.int64), mult)
    shift = np.where(small, 62, shift)
    shift = np.where(s == 0, 31, shift)
    return mult.astype(np.int32), shift.astype(np.int32)


def _requantize_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    acc, mult, shift, zp = ins[:4]
    op = "q.requantize"
    if acc.dtype is not DType.i32:
        raise ValueError(f"{op} accumulator must be i32, got {acc}")
    if zp.dtype not in QUANT_DTYPES or zp.numel() != 1 or zp.rank > 1:
        raise ValueError(f"{op} zero point must be an i8 or u8 scalar (it sets the result type), got {zp}")
    ax = normalize_axis(attrs["axis"], acc.rank) if acc.rank else 0
    params = [(mult, "multiplier"), (shift, "shift")] + ([(ins[4], "bias")] if len(ins) == 5 else [])
    for t, name in params:
        if t.dtype is not DType.i32:
            raise ValueError(f"{op} {name} must be i32, got {t}")
        per_tensor = t.rank == 0 or t.shape == (1,)
        if not per_tensor and not (t.rank == 1 and acc.rank and dims_agree(t.shape[0], acc.shape[ax])):
            raise ValueError(f"{op} {name} must be a scalar or one per acc.shape[{attrs['axis']}], got {t} for {acc}")
    clamp = attrs["clamp"]
    if clamp:
        lo, hi = qrange(zp.dtype)
        if len(clamp) != 2 or not lo <= clamp[0] <= clamp[1] <= hi:
            raise ValueError(f"{op} clamp must be [lo, hi] within {zp.dtype}'s range, got {list(clamp)}")
    return [acc.with_dtype(zp.dtype)]


register(OpDef(
    "q.requantize", ("acc", "multiplier", "shift", "zero_point", "bias"), _requantize_infer,
    lambda xs, a: [requantize(xs[0], xs[1], xs[2], xs[3], xs[4] if len(xs) == 5 else None, a["axis"], a["clamp"])],
    FusionKind.BROADCAST, num_optional=1,
    attrs=(Attr("axis", AttrKind.INT, 1), Attr("clamp", AttrKind.INTS, ())), flops=elementwise_flops(6),
    doc="integer-only requantization of an i32 accumulator: clamp(((acc + bias) * multiplier + "
        "2**(shift-1)) >> shift + zero_point) with an int64 product, in zero_point's type",
))
