"""Lowerings of normalization, softmax, reductions and pooling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tvm.tirx as tir
from tvm import te, topi

from ....ir.ops.common import normalize_axes, normalize_axis
from .base import (
    Anchor,
    LowerContext,
    broadcast_read,
    const,
    dtype_of,
    is_float,
    lowers,
    pad_input,
    reduction,
    static_shape,
    widen,
)
from .elementwise import exp_vectorized, pow_by_constant

# ------------------------------------------------------------------------------------ normalization


@lowers("nn.batch_norm")
def _lower_batch_norm(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    x, scale, bias, mean, var = args
    out = ctx.out_types[0]
    dtype = dtype_of(out)
    wide = widen(dtype)
    eps = const(attrs["epsilon"], wide)
    if all(i in ctx.consts for i in range(1, 5)):
        # Constant statistics (BN after a concat, which folding cannot reach): the per-channel
        # multiplier and shift are computed once here, not a sqrt and a divide per element.
        mul_np, shift_np = _bn_affine([ctx.consts[i] for i in range(1, 5)], attrs["epsilon"], wide)
        mul = ctx.packed(1, "bn_mul", lambda _: mul_np, wide)
        shift = ctx.packed(1, "bn_shift", lambda _: shift_np, wide)
        return [te.compute(static_shape(out), lambda *i: tir.Cast(dtype, tir.Cast(wide, x[i]) * mul[i[1]] + shift[i[1]]),
                           name=ctx.names("batch_norm"))]

    def body(*idx: tir.PrimExpr) -> tir.PrimExpr:
        c = idx[1]
        w = [tir.Cast(wide, t[c]) for t in (scale, bias, mean, var)]
        mul = w[0] / tir.sqrt(w[3] + eps)
        return tir.Cast(dtype, tir.Cast(wide, x[idx]) * mul + (w[1] - w[2] * mul))

    return [te.compute(static_shape(out), body, name=ctx.names("batch_norm"))]


def _bn_affine(stats: Sequence[np.ndarray], epsilon: float, wide: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (multiplier, shift) of batch norm with constant scale, bias, mean and var."""
    scale, bias, mean, var = (np.asarray(s, np.float64) for s in stats)
    mul = scale / np.sqrt(var + epsilon)
    return mul.astype(wide), (bias - mean * mul).astype(wide)


@lowers("nn.layer_norm")
def _lower_layer_norm(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    x, scale = args[0], args[1]
    bias = args[2] if len(args) == 3 else None
    out = ctx.out_types[0]
    shape, dtype = static_shape(out), dtype_of(out)
    wide = widen(dtype)
    rank = len(shape)
    axes = tuple(range(normalize_axis(attrs["axis"], rank), rank))
    n = const(float(np.prod([shape[a] for a in axes])), wide)
    xw = te.compute(shape, lambda *i: tir.Cast(wide, x[i]), name=ctx.names("ln_in"))
    mean = reduction(xw, axes, True, "sum", ctx.names("ln_sum"))
    centered = te.compute(shape, lambda *i: xw[i] - broadcast_read(mean, rank, i) / n, name=ctx.names("ln_centered"))
    var = reduction(centered, axes, True, "sum", ctx.names("ln_sq"), pre=lambda v: v * v)
    eps = const(attrs["epsilon"], wide)

    def body(*i: tir.PrimExpr) -> tir.PrimExpr:
        y = centered[i] / tir.sqrt(broadcast_read(var, rank, i) / n + eps) * tir.Cast(wide, broadcast_read(scale, rank, i))
        if bias is not None:
            y = y + tir.Cast(wide, broadcast_read(bias, rank, i))
        return tir.Cast(dtype, y)

    rows = axes == (rank - 1,) and wide == "float32"
    name = ctx.names("anchor_layer_norm" if rows else "layer_norm")
    if rows:
        ctx.set_anchor(Anchor("rows", name, ()))
    return [te.compute(shape, body, name=name)]


@lowers("nn.lrn")
def _lower_lrn(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    shape, dtype = static_shape(out), dtype_of(out)
    wide = widen(dtype)
    size = attrs["size"]
    before = (size - 1) // 2
    c = shape[1]
    r = te.reduce_axis((0, size), name="rc")

    def square_sum(*i: tir.PrimExpr) -> tir.PrimExpr:
        ch = i[1] + r - before
        v = tir.Cast(wide, x[(i[0], tir.max(tir.min(ch, c - 1), 0)) + tuple(i[2:])])
        return te.sum(tir.if_then_else(tir.And(ch >= 0, ch < c), v * v, const(0.0, wide)), axis=r)

    total = te.compute(shape, square_sum, name=ctx.names("lrn_sum"))
    bias, alpha = (const(attrs[k], wide) for k in ("bias", "alpha"))

    def body(*i: tir.PrimExpr) -> tir.PrimExpr:
        base = bias + alpha / const(float(size), wide) * total[i]
        return tir.Cast(dtype, tir.Cast(wide, x[i]) / pow_by_constant(base, float(attrs["beta"])))

    return [te.compute(shape, body, name=ctx.names("lrn"))]


@lowers("nn.softmax", "nn.log_softmax")
def _lower_softmax(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    shape, dtype = static_shape(out), dtype_of(out)
    wide = widen(dtype)
    rank = len(shape)
    axis = normalize_axis(attrs["axis"], rank)
    xw = te.compute(shape, lambda *i: tir.Cast(wide, x[i]), name=ctx.names("sm_in"))
    mx = reduction(xw, (axis,), True, "max", ctx.names("sm_max"))
    shifted = te.compute(shape, lambda *i: xw[i] - broadcast_read(mx, rank, i), name=ctx.names("sm_shift"))
    rows = axis == rank - 1 and wide == "float32"
    if ctx.op == "nn.softmax" and rows:
        # Rows along the last axis: exp once per element (TVM's vectorizable polynomial, not a libm
        # call per element), kept in a row buffer that the sum and the scaling both read.
        fast = topi.fast_exp(shifted)
        e = te.compute(shape, lambda *i: fast[i], name=ctx.names("sm_exp_keep"))
        total = reduction(e, (axis,), True, "sum", ctx.names("sm_sum"))
        inv = te.compute(total.shape, lambda *i: const(1.0, wide) / total[i], name=ctx.names("sm_inv_keep"))
        name = ctx.names("anchor_softmax")
        ctx.set_anchor(Anchor("rows", name, ()))
        return [te.compute(shape, lambda *i: tir.Cast(dtype, e[i] * broadcast_read(inv, rank, i)), name=name)]
    total = reduction(shifted, (axis,), True, "sum", ctx.names("sm_sum"), pre=exp_vectorized)
    if ctx.op == "nn.softmax":
        def body(*i: tir.PrimExpr) -> tir.PrimExpr:
            return tir.Cast(dtype, exp_vectorized(shifted[i]) / broadcast_read(total, rank, i))
    else:
        def body(*i: tir.PrimExpr) -> tir.PrimExpr:
            return tir.Cast(dtype, shifted[i] - tir.log(broadcast_read(total, rank, i)))
    name = ctx.names("anchor_softmax" if rows else "softmax")
    if rows:
        ctx.set_anchor(Anchor("rows", name, ()))
    return [te.compute(shape, body, name=name)]


# --------------------------------------------------------------------------------------- reductions


@lowers("reduce.sum", "reduce.mean", "reduce.max", "reduce.min", "reduce.prod")
def _lower_reduce(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    shape = static_shape(ctx.in_types[0])
    dtype = dtype_of(out)
    axes = normalize_axes(attrs["axes"], len(shape)) if attrs["axes"] else tuple(range(len(shape)))
    op = ctx.op.split(".")[1]
    if op == "mean":
        # Integers are averaged in float64 and truncated back, as the reference.
        acc = "float64" if not is_float(dtype) else widen(dtype)
        total = reduction(x, axes, attrs["keepdims"], "sum", ctx.names("mean_sum"), pre=lambda v: tir.Cast(acc, v))
        n = const(float(np.prod([shape[a] for a in axes])), acc)
        return [te.compute(static_shape(out), lambda *i: tir.Cast(dtype, tir.trunc(total[i] / n) if acc == "float64"
                                                            else total[i] / n), name=ctx.names("mean"))]
    wide = widen(dtype)
    red = reduction(x, axes, attrs["keepdims"], op, ctx.names(op), pre=lambda v: tir.Cast(wide, v))
    if wide == dtype:
        return [red]
    return [te.compute(static_shape(out), lambda *i: tir.Cast(dtype, red[i]), name=ctx.names("narrow"))]


@lowers("reduce.argmax", "reduce.argmin")
def _lower_arg(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    axis = normalize_axis(attrs["axis"], len(x.shape))
    fn = topi.argmax if ctx.op == "reduce.argmax" else topi.argmin
    idx = fn(x, axis=axis, keepdims=attrs["keepdims"], select_last_index=attrs["select_last_index"])
    return [te.compute(static_shape(out), lambda *i: tir.Cast("int64", idx[i]), name=ctx.names("arg"))]


@lowers("nn.global_avg_pool", "nn.global_max_pool")
def _lower_global_pool(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    shape, dtype = static_shape(ctx.in_types[0]), dtype_of(out)
    wide = widen(dtype)
    axes = tuple(range(2, len(shape)))
    if ctx.op == "nn.global_max_pool":
        red = reduction(x, axes, True, "max", ctx.names("gmax"), pre=lambda v: tir.Cast(wide, v))
        return [te.compute(static_shape(out), lambda *i: tir.Cast(dtype, red[i]), name=ctx.names("gpool"))]
    total = reduction(x, axes, True, "sum", ctx.names("gsum"), pre=lambda v: tir.Cast(wide, v))
    n = const(float(np.prod(shape[2:])), wide)
    return [te.compute(static_shape(out), lambda *i: tir.Cast(dtype, total[i] / n), name=ctx.names("gpool"))]


# ---------------------------------------------------------------------------------------- pooling


def _pool_extra(x_shape: Sequence[int], out_hw: Sequence[int], attrs: Mapping[str, Any]) -> tuple[int, int]:
    # What ceil_mode's last window needs beyond the end pad (as the reference's _pool_pads).
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = attrs["kernel"], attrs["strides"], attrs["pads"]
    dh, dw = attrs.get("dilations", (1, 1))
    h, w = x_shape[-2:]
    ho, wo = out_hw
    return (max(0, (ho - 1) * sh + dh * (kh - 1) + 1 - (h + pt + pb)),
            max(0, (wo - 1) * sw + dw * (kw - 1) + 1 - (w + pl + pr)))


@lowers("nn.max_pool2d")
def _lower_max_pool(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    shape, dtype = static_shape(out), dtype_of(out)
    (kh, kw), (sh, sw), (dh, dw) = attrs["kernel"], attrs["strides"], attrs["dilations"]
    low = tir.min_value(dtype) if not is_float(dtype) else const(-np.inf, dtype)
    xp = pad_input(x, attrs["pads"], low, ctx, _pool_extra(static_shape(ctx.in_types[0]), shape[2:], attrs))
    rh, rw = te.reduce_axis((0, kh), name="rh"), te.reduce_axis((0, kw), name="rw")

    def tap(b: tir.PrimExpr, c: tir.PrimExpr, i: tir.PrimExpr, j: tir.PrimExpr) -> tir.PrimExpr:
        return xp[b, c, i * sh + rh * dh, j * sw + rw * dw]

    if dtype != "bfloat16":
        return [te.compute(shape, lambda b, c, i, j: te.max(tap(b, c, i, j), axis=[rh, rw]), name=ctx.names("max_pool"))]
    # TVM's bf16 legalization leaves a bf16 max reduction's vector store unconverted (the build
    # fails: "buffer's dtype is uint16 ... RHS's dtype is bfloat16x7"); the max of the widened
    # values, cast back, is exact.
    best = te.compute(shape, lambda b, c, i, j: te.max(tir.Cast(widen(dtype), tap(b, c, i, j)), axis=[rh, rw]),
                      name=ctx.names("max_pool_wide"))
    return [te.compute(shape, lambda *i: tir.Cast(dtype, best[i]), name=ctx.names("max_pool"))]


@lowers("nn.avg_pool2d")
def _lower_avg_pool(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    shape, dtype = static_shape(out), dtype_of(out)
    wide = widen(dtype)
    h, w = static_shape(ctx.in_types[0])[2:]
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = attrs["kernel"], attrs["strides"], attrs["pads"]
    xp = pad_input(x, attrs["pads"], 0.0, ctx, _pool_extra(static_shape(ctx.in_types[0]), shape[2:], attrs))
    rh, rw = te.reduce_axis((0, kh), name="rh"), te.reduce_axis((0, kw), name="rw")
    total = te.compute(shape, lambda b, c, i, j: te.sum(tir.Cast(wide, xp[b, c, i * sh + rh, j * sw + rw]),
                                                        axis=[rh, rw]), name=ctx.names("avg_sum"))

    def taps(o: tir.PrimExpr, stride: int, k: int, size: int, begin: int, end: int) -> tir.PrimExpr:
        # Window [o*stride, o*stride + k) in padded coordinates; count the taps on the input (or on
        # input plus explicit pads), never those in ceil_mode's extra padding.
        start = o * stride
        if attrs["count_include_pad"]:
            return tir.min(start + k, size + begin + end) - start
        return tir.min(start + k, begin + size) - tir.max(start, begin)

    def body(b: tir.PrimExpr, c: tir.PrimExpr, i: tir.PrimExpr, j: tir.PrimExpr) -> tir.PrimExpr:
        count = taps(i, sh, kh, h, pt, pb) * taps(j, sw, kw, w, pl, pr)
        return tir.Cast(dtype, total[b, c, i, j] / tir.Cast(wide, count))

    return [te.compute(shape, body, name=ctx.names("avg_pool"))]
