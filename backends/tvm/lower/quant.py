"""Lowerings of the ``q.*`` ops: quantize / dequantize, dynamic quantization, integer matmul and
convolution with int32 accumulation.

On a CPU with AVX-512 VNNI the integer products run on ``vpdpbusd`` (u8 x i8 -> i32, four products
per lane), through a TIR tensor intrinsic the anchor schedules below tensorize with:

* matmul: ``acc[m, nb, 16] += a[m, 4k:4k+4] . Wp[nb, k, 16, 4]``: B packed at compile time into
  16-column x 4-deep panels, A rows padded to the row tile and K to a multiple of 4 (in a
  ``pad_keep`` block), a register tile of ``rows x 16*cols`` accumulators;
* convolution: the activation repacked to ``[N, C/4, H+pads, W', 4]`` (zero point in the pads),
  weights to ``[O/16, C/4, kH, kW, 16, 4]``; tile = output-width block x 16-channel blocks.

The zero point of the activation is taken out after the dot products: ``sum (a - z) w = sum a w -
z * colsum(w)``, ``colsum`` packed at compile time. An i8 activation is shifted to u8 (+128, zero
point too), which leaves ``a - z`` unchanged. The dequantizing epilogue (scales, bias) and any
elementwise ops fused after it run on the accumulator tile before it is written; so does an
integer-only ``q.requantize`` after ``q.conv_integer`` / ``q.matmul_integer`` (int64 product,
rounding shift, zero point and clamp, vectorized like the f32 epilogue).

The ``schedule`` pass searches these kernels like the float ones (``passes/search_space.py``, kinds
``qmatmul`` / ``qconv2d``); the knobs they honour: ``tile`` (rows x columns, or channels x width
block; columns and channels in 16-lane vectors), ``par`` (1 serial, 2 parallel over the fused outer
tiles), ``unroll`` (that many 4-deep reduction steps unrolled around the tile's dot products) and
``pack`` (weights packed at compile time, or in the kernel). ``vec`` is not one: ``vpdpbusd`` is
16 lanes wide.

Without VNNI (or for grouped convolutions, u8 or asymmetric weights) the same ops lower to plain
int32 reductions under the generic schedule: correct, but not faster than f32.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tvm.tirx as tir
from tvm import te, topi
from tvm.s_tir import Schedule

from ....ir.ops.linalg import conv_out_size
from ....ir.ops.quant import qrange
from ....ir.types import DType, TensorType
from .. import tir_schedule
from ..schedule import KernelSchedule
from ..target import HostTarget, host_target
from .base import Anchor, LowerContext, LoweringError, const, dtype_of, lowers, reduction, static_shape

LANES = 16  # i32 accumulators per 512-bit vector: output columns (channels) of one vpdpbusd
DEPTH = 4  # u8 x i8 products summed into each lane by one vpdpbusd
INTRIN = "graphopt_vnni_u8i8i32_16x4"


# ---------------------------------------------------------------------------- tensor intrinsic


@functools.cache
def vnni_intrinsic() -> str | None:
    """The name of the registered VNNI dot-product intrinsic, or None when the host lacks VNNI."""
    if "+avx512vnni" not in host_target().mattr:
        return None
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
             c: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            for i in T.serial(0, 16):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        c[vi] = c[vi] + T.cast(a[vk], "int32") * T.cast(b[vi, vk], "int32")

    # TVM's own x86 intrinsic passes i32 vectors; LLVM 22's vpdpbusd takes <64 x i8> operands.
    @T.prim_func(s_tir=True)
    def impl(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
             c: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            a_i32 = T.reinterpret(a.vload([0], "uint8x4"), dtype="int32")
            a_x64 = T.reinterpret(T.broadcast(a_i32, 16), dtype="int8x64")
            c[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                c.vload([0], dtype="int32x16"), a_x64, b.vload([0, 0], dtype="int8x64"), dtype="int32x16")

    TensorIntrin.register(INTRIN, desc, impl, override=True)
    return INTRIN


# ------------------------------------------------------------------------------------- helpers


def _param(t: te.Tensor, tt: TensorType, idx: Sequence[tir.PrimExpr], axis: int) -> tir.PrimExpr:
    """A scale or zero point read for data index ``idx``: per tensor, per ``axis``, or broadcast."""
    if tt.rank == 0:
        return t()
    if tt.rank == len(idx):
        return t[tuple(0 if int(d) == 1 else i for d, i in zip(t.shape, idx))]
    if int(t.shape[0]) == 1:
        return t[0]
    return t[idx[axis % len(idx)]]


def _f32(e: tir.PrimExpr) -> tir.PrimExpr:
    return tir.Cast("float32", e)


def _i32(e: tir.PrimExpr) -> tir.PrimExpr:
    return tir.Cast("int32", e)


def _i64(e: tir.PrimExpr) -> tir.PrimExpr:
    return tir.Cast("int64", e)


def _round_clip(v: tir.PrimExpr, zero: tir.PrimExpr | None, lo: int, hi: int, dtype: str) -> tir.PrimExpr:
    """``saturate(round_half_even(v) + zero)`` converted to ``dtype``: the reference's order of
    operations (rounding after adding the zero point would round some ties differently)."""
    r = tir.nearbyint(v) + zero if zero is not None else tir.nearbyint(v)
    return tir.Cast(dtype, tir.max(tir.min(r, const(float(hi), "float32")), const(float(lo), "float32")))


# --------------------------------------------------------------------------- quantize, dequantize


@lowers("q.quantize")
def _lower_quantize(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    x, s, z = args
    out = ctx.out_types[0]
    lo, hi = qrange(out.dtype)
    st, zt = ctx.in_types[1], ctx.in_types[2]

    def body(*idx: tir.PrimExpr) -> tir.PrimExpr:
        v = _f32(x[idx]) / _f32(_param(s, st, idx, attrs["axis"]))
        return _round_clip(v, _f32(_param(z, zt, idx, attrs["axis"])), lo, hi, dtype_of(out))

    return [te.compute(static_shape(out), body, name=ctx.names("quantize"))]


@lowers("q.dequantize")
def _lower_dequantize(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    x, s, z = args
    st, zt = ctx.in_types[1], ctx.in_types[2]

    def body(*idx: tir.PrimExpr) -> tir.PrimExpr:
        centered = _i32(x[idx]) - _i32(_param(z, zt, idx, attrs["axis"]))
        return _f32(centered) * _f32(_param(s, st, idx, attrs["axis"]))

    return [te.compute(static_shape(ctx.out_types[0]), body, name=ctx.names("dequantize"))]


@lowers("q.requantize")
def _lower_requantize(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    """The reference's integer arithmetic in int64: bias add, product, rounding arithmetic right
    shift, zero point and clamp, narrowed last (exact, so bit-equal to the interpreter)."""
    acc, mult, shift, zp = args[:4]
    bias = args[4] if len(args) == 5 else None
    out = ctx.out_types[0]
    lo, hi = attrs["clamp"] if attrs["clamp"] else qrange(out.dtype)
    types = ctx.in_types
    axis = attrs["axis"]

    def body(*idx: tir.PrimExpr) -> tir.PrimExpr:
        v = _i64(acc[idx])
        if bias is not None:
            v = v + _i64(_param(bias, types[4], idx, axis))
        k = _i64(_param(shift, types[2], idx, axis))
        prod = v * _i64(_param(mult, types[1], idx, axis))
        y = tir.shift_right(prod + tir.shift_left(const(1, "int64"), k - const(1, "int64")), k)
        y = y + _i64(_param(zp, types[3], idx, axis))
        return tir.Cast(dtype_of(out), tir.max(tir.min(y, const(hi, "int64")), const(lo, "int64")))

    return [te.compute(static_shape(out), body, name=ctx.names("requantize"))]


@lowers("q.dynamic_quantize")
def _lower_dynamic(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,) = args
    shape = static_shape(ctx.in_types[0])
    keep = bool(attrs["per_row"])
    lo = _range_reduce(x, shape, keep, "min", ctx)
    hi = _range_reduce(x, shape, keep, "max", ctx)
    zero, one = const(0.0, "float32"), const(1.0, "float32")
    p_shape = tuple(int(d) for d in lo.shape)

    def scale_at(*i: tir.PrimExpr) -> tir.PrimExpr:
        s = (tir.max(hi(*i), zero) - tir.min(lo(*i), zero)) / const(255.0, "float32")
        return tir.Select(s == zero, one, s)

    scale = te.compute(p_shape, scale_at, name=ctx.names("dq_scale"))
    zp = te.compute(p_shape, lambda *i: _round_clip(-tir.min(lo(*i), zero) / scale(*i), None, 0, 255, "uint8"),
                    name=ctx.names("dq_zero"))

    def y_at(*idx: tir.PrimExpr) -> tir.PrimExpr:
        p = tuple(idx[:-1]) + (0,) if keep else ()
        return _round_clip(_f32(x[idx]) / scale(*p), _f32(zp(*p)), 0, 255, "uint8")

    y = te.compute(shape, y_at, name=ctx.names("dq_data"))
    return [y, scale, zp]


def _range_reduce(x: te.Tensor, shape: Sequence[int], per_row: bool, kind: str, ctx: LowerContext) -> te.Tensor:
    """min or max of ``x`` per row (kept as a size-1 last axis) or over everything (a scalar).

    Done in two steps, ``LANES`` partial results first: a reduction along a contiguous row into
    one scalar is a chain of dependent operations, while ``LANES`` independent ones vectorize.
    """
    rank = len(shape)
    width = shape[-1] if per_row else math.prod(shape)
    axes = [rank - 1] if per_row else list(range(rank))
    if width % LANES or width < 2 * LANES:
        return reduction(x, axes, per_row, kind, ctx.names(f"dq_{kind}"), pre=_f32)
    vectors = width // LANES
    if per_row:
        flat, rows, chunk = x, tuple(shape[:-1]), vectors
    else:
        # The whole tensor: split into chunks of at most 1024 vectors, reduced in parallel.
        parts = next(p for p in range(1, vectors + 1) if vectors % p == 0 and vectors // p <= 1024)
        flat, rows, chunk = topi.reshape(x, (parts, vectors // parts * LANES)), (parts,), vectors // parts
    ro = te.reduce_axis((0, chunk), name="ro")
    reducer = te.min if kind == "min" else te.max

    def partial_at(*idx: tir.PrimExpr) -> tir.PrimExpr:
        *row, lane = idx
        return reducer(_f32(flat[tuple(row) + (ro * LANES + lane,)]), axis=ro)

    partial = te.compute(rows + (LANES,), partial_at, name=ctx.names(f"dq_{kind}_lanes"))
    if per_row:
        return reduction(partial, [len(rows)], True, kind, ctx.names(f"dq_{kind}"))
    return reduction(partial, [0, 1], False, kind, ctx.names(f"dq_{kind}"))


# ------------------------------------------------------------------------------ integer kernels


def _flat_rows(shape: Sequence[int]) -> int:
    return math.prod(shape[:-1]) if len(shape) > 1 else 1


def _row_index(batch: Sequence[tir.PrimExpr], i: tir.PrimExpr, batch_shape: Sequence[int], m: int) -> tir.PrimExpr:
    """The flat row of output index (batch..., i)."""
    flat: tir.PrimExpr = const(0, "int32")
    for b, d in zip(batch, batch_shape):
        flat = flat * d + b
    return flat * m + i


def _vnni_ok(a_dtype: DType, w_dtype: DType) -> bool:
    return vnni_intrinsic() is not None and a_dtype in (DType.u8, DType.i8) and w_dtype is DType.i8


def matmul_tile(rows: int, cols: int, schedule: KernelSchedule) -> tuple[int, int]:
    """Default register tile of the VNNI matmul: (rows, 16-column vectors)."""
    if len(schedule.tile) >= 2:
        return max(1, min(schedule.tile[0], rows)), max(1, schedule.tile[1] // LANES)
    # 4 rows x 4 vectors = 16 accumulators: measured best on 128x768x{768,3072} (~900 GOP/s a core).
    return min(rows, 4), min(4, -(-cols // LANES))


def _pack_matmul_weight(k: int, n: int, n_pad: int) -> Callable[[np.ndarray], np.ndarray]:
    """[K, N] i8 -> [N'/16, K'/4, 16, 4] (zero-padded): one vpdpbusd operand per 64 bytes."""
    k_pad = -(-k // DEPTH) * DEPTH

    def pack(w: np.ndarray) -> np.ndarray:
        padded = np.zeros((k_pad, n_pad), np.int8)
        padded[:k, :n] = w
        return np.ascontiguousarray(padded.reshape(k_pad // DEPTH, DEPTH, n_pad // LANES, LANES).transpose(2, 0, 3, 1))

    return pack


def _colsum(axis_out: int) -> Callable[[np.ndarray], np.ndarray]:
    """Sum of an int8 weight over every axis but the output-channel one, as int32."""

    def fn(w: np.ndarray) -> np.ndarray:
        others = tuple(a for a in range(w.ndim) if a != axis_out)
        return w.astype(np.int32).sum(axis=others).astype(np.int32)

    return fn


def _as_u8(v: tir.PrimExpr, signed: bool) -> tir.PrimExpr:
    # i8 -> u8 by adding 128 (the zero point moves with it, so a - z is unchanged).
    return tir.Cast("uint8", _i32(v) + 128) if signed else v


def _vnni_matmul(a: te.Tensor, w: te.Tensor, a_shape: Sequence[int], k: int, n: int, signed: bool,
                 w_operand: int, ctx: LowerContext) -> tuple[Callable[[tir.PrimExpr, tir.PrimExpr], tir.PrimExpr],
                                                          te.Tensor]:
    """The i32 accumulator ``acc(row, col) = sum_k a_u8[row, k] * w[k, col]`` and colsum(w)."""
    rows = _flat_rows(a_shape)
    mb, nv = matmul_tile(rows, n, ctx.schedule)
    m_pad = -(-rows // mb) * mb
    k_pad = -(-k // DEPTH) * DEPTH
    n_pad = -(-n // (LANES * nv)) * LANES * nv
    a2 = topi.reshape(a, (rows, k)) if len(a_shape) != 2 else a
    if m_pad != rows or k_pad != k or signed:
        a2 = te.compute((m_pad, k_pad), lambda i, j: tir.Select(
            tir.all(i < rows, j < k), _as_u8(a2[tir.min(i, rows - 1), tir.min(j, k - 1)], signed),
            tir.const(0, "uint8")), name=ctx.names("pad_keep_a"))
    if w_operand in ctx.consts and ctx.schedule.pack:
        wp = ctx.packed(w_operand, f"vnni_kn{n_pad}", _pack_matmul_weight(k, n, n_pad), "int8")
        colsum = ctx.packed(w_operand, "colsum_n", _colsum(1), "int32")
    else:
        wp = te.compute((n_pad // LANES, k_pad // DEPTH, LANES, DEPTH), lambda nb, kb, ni, ki: tir.Select(
            tir.all(kb * DEPTH + ki < k, nb * LANES + ni < n),
            w[tir.min(kb * DEPTH + ki, k - 1), tir.min(nb * LANES + ni, n - 1)], tir.const(0, "int8")),
            name=ctx.names("pad_keep_w"))
        rk = te.reduce_axis((0, k), name="ck")
        colsum = te.compute((n,), lambda j: te.sum(_i32(w[rk, j]), axis=rk), name=ctx.names("colsum"))
    ko = te.reduce_axis((0, k_pad // DEPTH), name="ko")
    ki = te.reduce_axis((0, DEPTH), name="ki")
    name = ctx.names("anchor_qmatmul")
    acc = te.compute((m_pad, n_pad // LANES, LANES), lambda i, nb, ni: te.sum(
        _i32(a2[i, ko * DEPTH + ki]) * _i32(wp[nb, ko, ni, ki]), axis=[ko, ki]), name=name)
    ctx.set_anchor(Anchor("qmatmul_vnni", name, (mb, nv)))
    return (lambda row, col: acc[row, col // LANES, col % LANES]), colsum


def _plain_matmul(a: te.Tensor, w: te.Tensor, a_shape: Sequence[int], k: int, n: int,
                  w_zero: Callable[[tir.PrimExpr], tir.PrimExpr] | None,
                  ctx: LowerContext) -> Callable[[tir.PrimExpr, tir.PrimExpr], tir.PrimExpr]:
    """``acc(row, col) = sum_k a[row, k] * (w[k, col] - w_zero(col))`` as a plain int32 reduction."""
    rows = _flat_rows(a_shape)
    a2 = topi.reshape(a, (rows, k)) if len(a_shape) != 2 else a
    rk = te.reduce_axis((0, k), name="k")

    def body(i: tir.PrimExpr, j: tir.PrimExpr) -> tir.PrimExpr:
        wv = _i32(w[rk, j]) - (w_zero(j) if w_zero is not None else 0)
        return te.sum(_i32(a2[i, rk]) * wv, axis=rk)

    acc = te.compute((rows, n), body, name=ctx.names("qmatmul_plain"))
    return lambda row, col: acc[row, col]


def _plain_colsum(w: te.Tensor, k: int, n: int, w_zero: Callable[[tir.PrimExpr], tir.PrimExpr] | None,
                  ctx: LowerContext) -> te.Tensor:
    rk = te.reduce_axis((0, k), name="ck")
    return te.compute((n,), lambda j: te.sum(_i32(w[rk, j]) - (w_zero(j) if w_zero is not None else 0), axis=rk),
                      name=ctx.names("colsum"))


def _integer_matmul(a: te.Tensor, w: te.Tensor, a_t: TensorType, w_t: TensorType, a_zero: Any,
                    w_zero: Callable[[tir.PrimExpr], tir.PrimExpr] | None, ctx: LowerContext
                    ) -> Callable[[tuple, tir.PrimExpr, tir.PrimExpr], tir.PrimExpr]:
    """``f(batch, i, j) = sum_k (a - a_zero(batch, i)) (w - w_zero(j))`` in int32 for a 2-D weight."""
    a_shape = static_shape(a_t)
    k, n = static_shape(w_t)
    signed = a_t.dtype is DType.i8
    if w_zero is None and _vnni_ok(a_t.dtype, w_t.dtype):
        acc, colsum = _vnni_matmul(a, w, a_shape, k, n, signed, 1, ctx)
        shift = 128 if signed else 0
    else:
        acc = _plain_matmul(a, w, a_shape, k, n, w_zero, ctx)
        colsum = _plain_colsum(w, k, n, w_zero, ctx)
        shift = 0
    batch_shape, m = a_shape[:-2], a_shape[-2]

    def at(batch: tuple, i: tir.PrimExpr, j: tir.PrimExpr) -> tir.PrimExpr:
        row = _row_index(batch, i, batch_shape, m)
        z = _i32(a_zero(batch, i)) + shift
        return acc(row, j) - z * colsum[j]

    return at


def _activation_param(t: te.Tensor, tt: TensorType, a_rank: int) -> Callable[[tuple, tir.PrimExpr], tir.PrimExpr]:
    """Read a per-tensor or per-row ([..., M, 1]) activation scale / zero point at (batch, row)."""
    if tt.rank < a_rank:
        return lambda batch, i: t() if tt.rank == 0 else t[0]

    def at(batch: tuple, i: tir.PrimExpr) -> tir.PrimExpr:
        idx = tuple(batch) + (i, 0)
        return t[tuple(0 if int(d) == 1 else v for d, v in zip(t.shape, idx))]

    return at


def _channel_param(t: te.Tensor | None) -> Callable[[tir.PrimExpr], tir.PrimExpr] | None:
    if t is None:
        return None
    if len(t.shape) == 0:
        return lambda j: t()
    if int(t.shape[0]) == 1:
        return lambda j: t[0]
    return lambda j: t[j]


@lowers("q.matmul_int8")
def _lower_matmul_int8(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    a, w, a_scale, a_zp, w_scale = args[:5]
    bias = _channel_param(args[5] if len(args) == 6 else None)
    a_t = ctx.in_types[0]
    zero = _activation_param(a_zp, ctx.in_types[3], a_t.rank)
    scale = _activation_param(a_scale, ctx.in_types[2], a_t.rank)
    ws = _channel_param(w_scale)
    assert ws is not None
    acc = _integer_matmul(a, w, a_t, ctx.in_types[1], zero, None, ctx)

    def body(*idx: tir.PrimExpr) -> tir.PrimExpr:
        *batch, i, j = idx
        y = _f32(acc(tuple(batch), i, j)) * (_f32(scale(tuple(batch), i)) * _f32(ws(j)))
        return y + _f32(bias(j)) if bias is not None else y

    return [te.compute(static_shape(ctx.out_types[0]), body, name=ctx.names("qmatmul_out"))]


def _weight_zero(w_zp: te.Tensor | None, operand: int, w_t: TensorType,
                 ctx: LowerContext) -> Callable[[tir.PrimExpr], tir.PrimExpr] | None:
    """The weight zero point per output channel, or None when it is known to be 0 for an i8 weight
    (only then does the VNNI path apply: it takes symmetric i8 weights)."""
    known_zero = w_zp is None or operand in ctx.consts and not np.any(ctx.consts[operand])
    if known_zero and w_t.dtype is DType.i8:
        return None
    wz = _channel_param(w_zp)
    return (lambda j: _i32(wz(j))) if wz is not None else (lambda j: const(0, "int32"))


@lowers("q.matmul_integer")
def _lower_matmul_integer(args: Sequence[te.Tensor], attrs: Mapping[str, Any],
                          ctx: LowerContext) -> list[te.Tensor]:
    a, w = args[0], args[1]
    a_t, w_t = ctx.in_types[0], ctx.in_types[1]
    if a_t.rank < 2 or w_t.rank != 2:
        raise LoweringError(f"q.matmul_integer lowers [..., M, K] @ [K, N] only, got {a_t} @ {w_t}")
    a_zp = args[2] if len(args) > 2 else None
    w_zp = args[3] if len(args) > 3 else None

    def zero(batch: tuple, i: tir.PrimExpr) -> tir.PrimExpr:
        if a_zp is None:
            return const(0, "int32")
        return _channel_param(a_zp)(i)  # type: ignore[misc]  # scalar, or one per row of a

    w_zero = _weight_zero(w_zp, 3, w_t, ctx)
    acc = _integer_matmul(a, w, a_t, w_t, zero, w_zero, ctx)

    def body(*idx: tir.PrimExpr) -> tir.PrimExpr:
        *batch, i, j = idx
        return acc(tuple(batch), i, j)

    return [te.compute(static_shape(ctx.out_types[0]), body, name=ctx.names("qmatmul_out"))]


# ---------------------------------------------------------------------------------- convolution


def conv_tile(ow: int, oc: int, schedule: KernelSchedule) -> tuple[int, int]:
    """Default register tile of the VNNI convolution: (16-channel vectors, output-width block)."""
    if len(schedule.tile) >= 2:
        return max(1, schedule.tile[0] // LANES), max(1, min(schedule.tile[1], ow))
    vectors = 2 if oc > LANES else 1
    limit = 24 // vectors  # accumulators; the rest of the 32 registers hold weights and the broadcast
    owb = ow if ow <= limit else min(range(limit // 2, limit + 1), key=lambda d: (-ow % d, -d))
    return vectors, owb


def _pack_conv_weight(o_pad: int, c_pad: int) -> Callable[[np.ndarray], np.ndarray]:
    """OIHW i8 -> [O'/16, C'/4, kH, kW, 16, 4] (zero-padded)."""

    def pack(w: np.ndarray) -> np.ndarray:
        o, c, kh, kw = w.shape
        padded = np.zeros((o_pad, c_pad, kh, kw), np.int8)
        padded[:o, :c] = w
        blocks = padded.reshape(o_pad // LANES, LANES, c_pad // DEPTH, DEPTH, kh, kw)
        return np.ascontiguousarray(blocks.transpose(0, 2, 4, 5, 1, 3))

    return pack


def _vnni_conv(x: te.Tensor, w: te.Tensor, x_t: TensorType, w_t: TensorType, attrs: Mapping[str, Any],
               zero: tir.PrimExpr, ctx: LowerContext) -> tuple[Callable[..., tir.PrimExpr], te.Tensor]:
    """``acc(n, o, i, j) = sum x_u8 * w`` (pads hold the shifted zero point) and colsum(w)."""
    n, c, h, wd = static_shape(x_t)
    oc, _, kh, kw = static_shape(w_t)
    (sh, sw), (pt, pl, pb, pr), (dh, dw) = attrs["strides"], attrs["pads"], attrs["dilations"]
    ho, wo = conv_out_size(h, kh, sh, pt, pb, dh), conv_out_size(wd, kw, sw, pl, pr, dw)
    nv, owb = conv_tile(wo, oc, ctx.schedule)
    signed = x_t.dtype is DType.i8
    c_pad = -(-c // DEPTH) * DEPTH
    o_pad = -(-oc // (LANES * nv)) * LANES * nv
    wide = -(-wo // owb) * owb
    hp = (ho - 1) * sh + (kh - 1) * dh + 1
    wp_ = (wide - 1) * sw + (kw - 1) * dw + 1
    z8 = tir.Cast("uint8", zero)

    def x_at(b: tir.PrimExpr, cb: tir.PrimExpr, y: tir.PrimExpr, xx: tir.PrimExpr, ci: tir.PrimExpr) -> tir.PrimExpr:
        ch, yy, xc = cb * DEPTH + ci, y - pt, xx - pl
        inside = tir.all(ch < c, yy >= 0, yy < h, xc >= 0, xc < wd)
        v = x[b, tir.min(ch, c - 1), tir.max(tir.min(yy, h - 1), 0), tir.max(tir.min(xc, wd - 1), 0)]
        return tir.Select(inside, _as_u8(v, signed), z8)

    xp = te.compute((n, c_pad // DEPTH, hp, wp_, DEPTH), x_at, name=ctx.names("pad_keep_x"))
    if 1 in ctx.consts and ctx.schedule.pack:
        wpk = ctx.packed(1, f"vnni_o{o_pad}c{c_pad}", _pack_conv_weight(o_pad, c_pad), "int8")
        colsum = ctx.packed(1, "colsum_o", _colsum(0), "int32")
    else:
        wpk = te.compute((o_pad // LANES, c_pad // DEPTH, kh, kw, LANES, DEPTH), lambda ob, cb, r, s, oi, ci: tir.Select(
            tir.all(ob * LANES + oi < oc, cb * DEPTH + ci < c),
            w[tir.min(ob * LANES + oi, oc - 1), tir.min(cb * DEPTH + ci, c - 1), r, s], tir.const(0, "int8")),
            name=ctx.names("pad_keep_w"))
        rc, rh, rw = (te.reduce_axis((0, d), name=nm) for d, nm in ((c, "cc"), (kh, "ch"), (kw, "cw")))
        colsum = te.compute((oc,), lambda o: te.sum(_i32(w[o, rc, rh, rw]), axis=[rc, rh, rw]),
                            name=ctx.names("colsum"))
    cb, rh, rw, ci = (te.reduce_axis((0, d), name=nm) for d, nm in
                      ((c_pad // DEPTH, "rc"), (kh, "rh"), (kw, "rw"), (DEPTH, "ri")))
    name = ctx.names("anchor_qconv2d")
    acc = te.compute((n, o_pad // LANES, ho, wide, LANES), lambda b, ob, i, j, oi: te.sum(
        _i32(xp[b, cb, i * sh + rh * dh, j * sw + rw * dw, ci]) * _i32(wpk[ob, cb, rh, rw, oi, ci]),
        axis=[cb, rh, rw, ci]), name=name)
    ctx.set_anchor(Anchor("qconv2d_vnni", name, (nv, owb)))
    return (lambda b, o, i, j: acc[b, o // LANES, i, j, o % LANES]), colsum


def _plain_conv(x: te.Tensor, w: te.Tensor, x_t: TensorType, w_t: TensorType, attrs: Mapping[str, Any],
                zero: tir.PrimExpr, w_zero: Callable[[tir.PrimExpr], tir.PrimExpr] | None,
                ctx: LowerContext) -> Callable[..., tir.PrimExpr]:
    """``acc(n, o, i, j) = sum (x - zero) (w - w_zero)`` as a plain int32 reduction (any groups)."""
    n, c, h, wd = static_shape(x_t)
    oc, cg, kh, kw = static_shape(w_t)
    groups = attrs["groups"]
    (sh, sw), (pt, pl, pb, pr), (dh, dw) = attrs["strides"], attrs["pads"], attrs["dilations"]
    ho, wo = conv_out_size(h, kh, sh, pt, pb, dh), conv_out_size(wd, kw, sw, pl, pr, dw)
    hp, wp_ = (ho - 1) * sh + (kh - 1) * dh + 1, (wo - 1) * sw + (kw - 1) * dw + 1

    def x_at(b: tir.PrimExpr, ch: tir.PrimExpr, y: tir.PrimExpr, xx: tir.PrimExpr) -> tir.PrimExpr:
        yy, xc = y - pt, xx - pl
        inside = tir.all(yy >= 0, yy < h, xc >= 0, xc < wd)
        v = x[b, ch, tir.max(tir.min(yy, h - 1), 0), tir.max(tir.min(xc, wd - 1), 0)]
        return tir.Select(inside, _i32(v) - zero, const(0, "int32"))

    xc = te.compute((n, c, hp, wp_), x_at, name=ctx.names("pad_keep_xc"))
    og = oc // groups
    rc, rh, rw = te.reduce_axis((0, cg), name="rc"), te.reduce_axis((0, kh), name="rh"), te.reduce_axis((0, kw), name="rw")

    def body(b: tir.PrimExpr, o: tir.PrimExpr, i: tir.PrimExpr, j: tir.PrimExpr) -> tir.PrimExpr:
        wv = _i32(w[o, rc, rh, rw]) - (w_zero(o) if w_zero is not None else 0)
        return te.sum(xc[b, o // og * cg + rc, i * sh + rh * dh, j * sw + rw * dw] * wv, axis=[rc, rh, rw])

    acc = te.compute((n, oc, ho, wo), body, name=ctx.names("qconv_plain"))
    return lambda b, o, i, j: acc[b, o, i, j]


def _integer_conv(x: te.Tensor, w: te.Tensor, x_t: TensorType, w_t: TensorType, attrs: Mapping[str, Any],
                  zero: tir.PrimExpr, w_zero: Callable[[tir.PrimExpr], tir.PrimExpr] | None,
                  ctx: LowerContext) -> Callable[..., tir.PrimExpr]:
    """``f(n, o, i, j) = conv(x - zero, w - w_zero)`` accumulated in int32."""
    if w_zero is None and attrs["groups"] == 1 and _vnni_ok(x_t.dtype, w_t.dtype):
        shifted = zero + (128 if x_t.dtype is DType.i8 else 0)
        acc, colsum = _vnni_conv(x, w, x_t, w_t, attrs, shifted, ctx)
        return lambda b, o, i, j: acc(b, o, i, j) - shifted * colsum[o]
    return _plain_conv(x, w, x_t, w_t, attrs, zero, w_zero, ctx)


def _scalar(t: te.Tensor) -> tir.PrimExpr:
    return t() if len(t.shape) == 0 else t[0]


@lowers("q.conv2d_int8")
def _lower_conv2d_int8(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    x, w, x_scale, x_zp, w_scale = args[:5]
    bias = _channel_param(args[5] if len(args) == 6 else None)
    ws = _channel_param(w_scale)
    assert ws is not None
    acc = _integer_conv(x, w, ctx.in_types[0], ctx.in_types[1], attrs, _i32(_scalar(x_zp)), None, ctx)

    def body(b: tir.PrimExpr, o: tir.PrimExpr, i: tir.PrimExpr, j: tir.PrimExpr) -> tir.PrimExpr:
        y = _f32(acc(b, o, i, j)) * (_f32(_scalar(x_scale)) * _f32(ws(o)))
        return y + _f32(bias(o)) if bias is not None else y

    return [te.compute(static_shape(ctx.out_types[0]), body, name=ctx.names("qconv_out"))]


@lowers("q.conv_integer")
def _lower_conv_integer(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    x, w = args[0], args[1]
    zero = _i32(_scalar(args[2])) if len(args) > 2 else const(0, "int32")
    w_zero = _weight_zero(args[3] if len(args) > 3 else None, 3, ctx.in_types[1], ctx)
    acc = _integer_conv(x, w, ctx.in_types[0], ctx.in_types[1], attrs, zero, w_zero, ctx)
    return [te.compute(static_shape(ctx.out_types[0]), lambda b, o, i, j: acc(b, o, i, j),
                       name=ctx.names("qconv_out"))]


# ------------------------------------------------------------------------------ anchor schedules


PARALLEL_MACS = 4 * tir_schedule.PARALLEL_WORK
"""Multiply-adds below which an integer kernel runs on one thread: waking the thread pool costs
several microseconds, and int8 does about 4x the f32 rate, so the f32 threshold is scaled by 4."""


def _wants_parallel(sch: Schedule, block: Any, sched: KernelSchedule) -> bool:
    """``par`` when set (1 serial, 2+ parallel), else parallel only for enough work."""
    if sched.par:
        return sched.par >= 2
    return math.prod(int(sch.get(lp).extent) for lp in sch.get_loops(block)) >= PARALLEL_MACS


def _blocks_under(sch: Schedule, loop: Any) -> set[str]:
    return {sch.get(b).name_hint for b in sch.get_child_blocks(loop)}


def _vectorize(sch: Schedule, loop: Any, lanes: int) -> None:
    extent = int(sch.get(loop).extent)
    if extent > lanes and extent % lanes == 0:
        _, loop = sch.split(loop, [None, lanes])
    if extent >= 2:
        sch.vectorize(loop)


def _epilogue(sch: Schedule, writeback: Any, at_loop: Any, lanes: int) -> None:
    """Fold the accumulator's consumers into its write-back, or compute them per tile at ``at_loop``."""
    consumers = sch.get_consumers(writeback)
    while consumers:
        try:
            sch.reverse_compute_inline(consumers[0])
        except Exception:  # noqa: BLE001 - a padded or reshaped read cannot inline
            break
        consumers = sch.get_consumers(writeback)
    _attach(sch, consumers, at_loop, lanes)


def _attach(sch: Schedule, consumers: Sequence[Any], at_loop: Any, lanes: int) -> None:
    """Compute each consumer per tile at ``at_loop``; one that reads a value computed at run time
    outside the tile (a weight's column sums) stays a loop nest of its own after the anchor."""
    for c in consumers:
        try:
            sch.reverse_compute_at(c, at_loop)
        except Exception:  # noqa: BLE001, S112 - expected for that case; the consumer stays unattached
            continue
        _vectorize(sch, sch.get_loops(c)[-1], lanes)


def _split_reduction(sch: Schedule, loop: Any, unroll: int) -> tuple[Any, list[Any]]:
    """``loop`` (4-deep reduction steps) split so that ``unroll`` steps form an inner loop to
    unroll, when ``unroll`` divides it (the schedule search only offers such factors)."""
    extent = int(sch.get(loop).extent)
    if unroll < 2 or unroll >= extent or extent % unroll:
        return loop, []
    outer, inner = sch.split(loop, [None, unroll])
    return outer, [inner]


def _unroll_note(inner: Sequence[Any], sched: KernelSchedule) -> str:
    return f" unroll={sched.unroll}" if inner else ""


def _qmatmul_schedule(sch: Schedule, anchor: Anchor, sched: KernelSchedule,
                      target: HostTarget) -> tuple[str, set[str]]:
    block = sch.get_sblock(anchor.block)
    i, nb, ni, ko, ki = sch.get_loops(block)
    mb, nv = anchor.tile
    parallel = _wants_parallel(sch, block, sched)
    io, ii = sch.split(i, [None, mb])
    no, nvi = sch.split(nb, [None, nv])
    ko, kin = _split_reduction(sch, ko, sched.unroll)
    # Column panels outermost: one packed weight panel stays in cache for all row blocks.
    sch.reorder(no, io, ko, *kin, ii, nvi, ni, ki)
    acc = sch.cache_write(block, 0, "global")  # tile-sized after compaction: LLVM keeps it in registers
    sch.reverse_compute_at(acc, io)
    _vectorize(sch, sch.get_loops(acc)[-1], LANES)
    _epilogue(sch, acc, io, target.lanes())
    outer = sch.fuse(no, io)
    if parallel:
        sch.parallel(outer)
    init = sch.decompose_reduction(block, ko)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(ni, INTRIN)
    sch.unroll(ii)
    sch.unroll(nvi)
    for loop in kin:
        sch.unroll(loop)
    return f"int8 matmul vnni tile=[{mb},{nv * LANES}]{_unroll_note(kin, sched)}", _blocks_under(sch, outer)


def _qconv_schedule(sch: Schedule, anchor: Anchor, sched: KernelSchedule,
                    target: HostTarget) -> tuple[str, set[str]]:
    block = sch.get_sblock(anchor.block)
    n, ob, i, j, oi, cb, rh, rw, ci = sch.get_loops(block)
    nv, owb = anchor.tile
    parallel = _wants_parallel(sch, block, sched)
    obo, obi = sch.split(ob, [None, nv])
    jo, ji = sch.split(j, [None, owb])
    cb, cin = _split_reduction(sch, cb, sched.unroll)
    sch.reorder(n, obo, i, jo, cb, rh, rw, *cin, ji, obi, oi, ci)
    acc = sch.cache_write(block, 0, "global")
    sch.reverse_compute_at(acc, jo)
    _vectorize(sch, sch.get_loops(acc)[-1], LANES)
    # The NCHW result and its epilogue are written one output row at a time.
    _attach(sch, sch.get_consumers(acc), i, target.lanes())
    outer = sch.fuse(n, obo, i)
    if parallel:
        sch.parallel(outer)
    init = sch.decompose_reduction(block, cb)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(oi, INTRIN)
    sch.unroll(ji)
    sch.unroll(obi)
    for loop in cin:
        sch.unroll(loop)
    handled = _blocks_under(sch, outer) | _repack_schedule(sch, sched, parallel)
    return f"int8 conv2d vnni NCHW4c tile=[{owb},{nv * LANES}]{_unroll_note(cin, sched)}", handled


def _repack_schedule(sch: Schedule, sched: KernelSchedule, parallel: bool) -> set[str]:
    """The activation repacking ``x[n, c, y, x] -> xp[n, c/4, y, x, c%4]``: rows in parallel, the 4
    channels unrolled inside the pixel loop so LLVM vectorizes along the row with interleaved stores
    (TVM's vectorizing of the 4-channel loop would gather from four planes instead)."""
    names = set()
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        name = sch.get(block).name_hint
        if not name.startswith("pad_keep_x"):
            continue
        n, cb, y, _, ci = sch.get_loops(block)
        rows = sch.fuse(n, cb, y)
        if parallel:
            sch.parallel(rows)
        sch.unroll(ci)
        names.add(name)
    return names


# Registered with the default schedules: a kernel whose anchor is one of these gets its schedule.
tir_schedule._ANCHORS.update({"qmatmul_vnni": _qmatmul_schedule, "qconv2d_vnni": _qconv_schedule})
