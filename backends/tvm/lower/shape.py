"""Lowerings of layout and data-movement ops: reshape, transpose, concat, split, slice, gather, pad …"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tvm.tirx as tir
from tvm import te, topi

from ....ir.ops.common import normalize_axes, normalize_axis
from ....ir.ops.shape import slice_bounds
from ....ir.types import TensorType
from .base import LowerContext, const, dtype_of, elementwise, lowers, static_shape


@lowers("tensor.reshape", "tensor.flatten", "tensor.squeeze", "tensor.unsqueeze")
def _lower_reshape(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    shape = static_shape(ctx.out_types[0])
    if not shape:  # a scalar: topi.reshape wants at least one dim
        return [te.compute((), lambda: args[0][(0,) * len(args[0].shape)], name=ctx.names("reshape"))]
    return [topi.reshape(args[0], shape)]


@lowers("tensor.transpose")
def _lower_transpose(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    perm = attrs["perm"] or tuple(reversed(range(len(args[0].shape))))
    return [topi.transpose(args[0], list(perm))]


@lowers("tensor.concat")
def _lower_concat(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    axis = normalize_axis(attrs["axis"], len(args[0].shape))
    parts = [t for t in args if int(t.shape[axis]) > 0]
    if len(parts) == 1:
        return [te.compute(static_shape(ctx.out_types[0]), lambda *i: parts[0][i], name=ctx.names("concat"))]
    return [topi.concatenate(parts, axis)]


@lowers("tensor.split")
def _lower_split(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,) = args
    axis = normalize_axis(attrs["axis"], len(x.shape))
    offsets = [0, *itertools.accumulate(attrs["sizes"])]

    def piece(t: TensorType, off: int) -> te.Tensor:
        return te.compute(static_shape(t), lambda *i: x[i[:axis] + (i[axis] + off,) + i[axis + 1:]],
                          name=ctx.names("split"))

    return [piece(t, off) for t, off in zip(ctx.out_types, offsets)]


@lowers("tensor.slice")
def _lower_slice(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,) = args
    in_shape = static_shape(ctx.in_types[0])
    rank = len(in_shape)
    starts, ends = attrs["starts"], attrs["ends"]
    axes = normalize_axes(attrs["axes"] or range(len(starts)), rank)
    steps = attrs["steps"] or (1,) * len(starts)
    begin, step = [0] * rank, [1] * rank
    for a, s, e, st in zip(axes, starts, ends, steps):
        begin[a] = slice_bounds(in_shape[a], s, e, st)[0]
        step[a] = st
    return [te.compute(static_shape(ctx.out_types[0]), lambda *i: x[tuple(b + s * v for b, s, v in zip(begin, step, i))],
                       name=ctx.names("slice"))]


@lowers("tensor.gather")
def _lower_gather(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    data, indices = args
    axis = normalize_axis(attrs["axis"], len(data.shape))
    dim = int(data.shape[axis])
    irank = len(indices.shape)

    def body(*i: tir.PrimExpr) -> tir.PrimExpr:
        raw = tir.Cast("int64", indices[i[axis:axis + irank]])
        wrapped = tir.Select(raw < 0, raw + dim, raw)
        # The reference raises on an out-of-range index; compiled code cannot, so it clamps and
        # never reads outside ``data``.
        safe = tir.Cast("int64", tir.max(tir.min(wrapped, const(dim - 1, "int64")), const(0, "int64")))
        return data[i[:axis] + (safe,) + i[axis + irank:]]

    return [te.compute(static_shape(ctx.out_types[0]), body, name=ctx.names("gather"))]


@lowers("tensor.expand")
def _lower_expand(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    out = ctx.out_types[0]
    return [elementwise(ctx.names("expand"), static_shape(out), args, dtype_of(out), lambda v: v)]


@lowers("tensor.tile")
def _lower_tile(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,) = args
    dims = [int(d) for d in x.shape]
    return [te.compute(static_shape(ctx.out_types[0]), lambda *i: x[tuple(v % d for v, d in zip(i, dims))],
                       name=ctx.names("tile"))]


@lowers("tensor.pad")
def _lower_pad(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    dims = static_shape(ctx.in_types[0])
    rank, pads, mode = len(dims), attrs["pads"], attrs["mode"]
    dtype = dtype_of(out)
    value = const(np.asarray(attrs["value"]).astype(out.dtype.numpy).item(), dtype)

    def source(v: tir.PrimExpr, a: int) -> tir.PrimExpr:
        s = v - pads[a]  # negative pads crop: the same shift
        d = dims[a]
        if mode == "reflect":
            s = tir.Select(s < 0, -s, s)
            return tir.Select(s >= d, 2 * (d - 1) - s, s)
        return tir.max(tir.min(s, d - 1), 0)  # edge, and a safe index for constant mode

    def body(*i: tir.PrimExpr) -> tir.PrimExpr:
        v = x[tuple(source(i[a], a) for a in range(rank))]
        if mode != "constant":
            return v
        inside = [tir.And(i[a] - pads[a] >= 0, i[a] - pads[a] < dims[a]) for a in range(rank)
                  if pads[a] > 0 or pads[a + rank] > 0]
        return tir.Select(tir.all(*inside), v, value) if inside else v

    return [te.compute(static_shape(out), body, name=ctx.names("pad"))]


@lowers("tensor.trilu")
def _lower_trilu(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    k, upper = attrs["k"], attrs["upper"]
    zero = const(0, dtype_of(out))

    def body(*i: tir.PrimExpr) -> tir.PrimExpr:
        row, col = i[-2], i[-1]
        keep = col - row >= k if upper else col - row <= k
        return tir.Select(keep, x[i], zero)

    return [te.compute(static_shape(out), body, name=ctx.names("trilu"))]
