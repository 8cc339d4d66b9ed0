"""Lowerings of matmul, gemm and conv2d, in the register-tiled forms the default schedules expect."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tvm.tirx as tir
from tvm import te, topi

from ....ir.ops.linalg import conv_out_size
from ....ir.types import TensorType
from ..schedule import conv_tile, dwconv_tile, matmul_tile
from .base import (
    NARROW,
    Anchor,
    LowerContext,
    LoweringError,
    broadcast_read,
    const,
    dtype_of,
    lowers,
    pad_input,
    static_shape,
)

# ----------------------------------------------------------------------------- matmul and gemm


def _pack_b(k: int, n: int, nb: int, transposed: bool) -> Callable[[np.ndarray], np.ndarray]:
    """[K,N] (or [N,K] when ``transposed``) -> [ceil(N/nb), K, nb] panels, zero-padded."""

    def pack(b: np.ndarray) -> np.ndarray:
        b = b.T if transposed else b
        blocks = -(-n // nb)
        padded = np.zeros((k, blocks * nb), b.dtype)
        padded[:, :n] = b
        return np.ascontiguousarray(padded.reshape(k, blocks, nb).transpose(1, 0, 2))

    return pack


def _matmul_core(a: te.Tensor, b: te.Tensor, a_t: TensorType, b_t: TensorType, trans_a: bool, trans_b: bool,
                 b_operand: int, ctx: LowerContext, acc: str) -> te.Tensor:
    """C[..., m, n] = sum_k A[..., m, k] * B[..., k, n] (operand transposes and batch broadcast)."""
    a_shape, b_shape = static_shape(a_t), static_shape(b_t)
    m, k = (a_shape[-1], a_shape[-2]) if trans_a else (a_shape[-2], a_shape[-1])
    n = b_shape[-2] if trans_b else b_shape[-1]
    batch = tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
    mb, nb = matmul_tile(m, n, ctx.lanes, ctx.schedule)
    rk = te.reduce_axis((0, k), name="k")
    pack = len(b_shape) == 2 and b_operand in ctx.consts and ctx.schedule.pack
    wide = n
    if pack and not ctx.schedule.tile and (nb < ctx.lanes or n % nb) and n > 4 * ctx.lanes:
        # No vector-sized divisor (a 1000-class head, GPT-2's 50257-word head): compute whole
        # column blocks over the zero-padded packed panels and keep the first n columns. A ragged
        # last block instead makes LLVM scalarize every block (50257 columns: 20x slower).
        nb = 4 * ctx.lanes if m == 1 else 2 * ctx.lanes
        wide = -(-n // nb) * nb
    if pack:
        bp = ctx.packed(b_operand, f"kn{nb}n{'t' if trans_b else ''}", _pack_b(k, n, nb, trans_b), b.dtype)

        def b_at(bidx: tuple, kk: tir.PrimExpr, j: tir.PrimExpr) -> tir.PrimExpr:
            return bp[j // nb, kk, j % nb]
    else:
        def b_at(bidx: tuple, kk: tir.PrimExpr, j: tir.PrimExpr) -> tir.PrimExpr:
            sub = _batch_index(b_shape, bidx)
            return b[sub + ((j, kk) if trans_b else (kk, j))]

    def body(*idx: tir.PrimExpr) -> tir.PrimExpr:
        *bidx, i, j = idx
        sub = _batch_index(a_shape, tuple(bidx))
        av = a[sub + ((rk, i) if trans_a else (i, rk))]
        return te.sum(tir.Cast(acc, av) * tir.Cast(acc, b_at(tuple(bidx), rk, j)), axis=rk)

    name = ctx.names("anchor_matmul")
    ctx.set_anchor(Anchor("matmul", name, (mb, nb)))
    c = te.compute(batch + (m, wide), body, name=name)
    if wide == n:
        return c
    return te.compute(batch + (m, n), lambda *i: c[i], name=ctx.names("mm_crop"))


def _batch_index(shape: Sequence[int], bidx: tuple) -> tuple:
    """The batch part of an index into an operand of ``shape`` whose batch dims broadcast."""
    nb = len(shape) - 2
    sub = bidx[len(bidx) - nb:] if nb else ()
    return tuple(0 if d == 1 else i for d, i in zip(shape[:nb], sub))


@lowers("nn.matmul")
def _lower_matmul(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    a, b = args
    a_t, b_t = ctx.in_types
    out = ctx.out_types[0]
    dtype = dtype_of(out)
    # 1-D operands become matrices (numpy's rule) and the added axis is dropped from the result.
    if a_t.rank == 1:
        a = topi.reshape(a, (1, int(a.shape[0])))
        a_t = a_t.with_shape((1,) + a_t.shape)
    if b_t.rank == 1:
        b = topi.reshape(b, (int(b.shape[0]), 1))
        b_t = b_t.with_shape(b_t.shape + (1,))
    acc = _accumulator(dtype)
    c = _matmul_core(a, b, a_t, b_t, False, False, 1 if ctx.in_types[1].rank > 1 else -1, ctx, acc)
    return [_finish(c, static_shape(out), dtype, ctx)]


def _accumulator(dtype: str) -> str:
    if dtype in NARROW:
        return "float32"
    if dtype in ("int8", "uint8"):
        raise LoweringError(f"{dtype} matmul/conv wraps around in numpy; no lowering for it")
    return dtype


def _finish(c: te.Tensor, shape: Sequence[int], dtype: str, ctx: LowerContext) -> te.Tensor:
    """``c`` reshaped to ``shape`` and cast to ``dtype`` (one injective step, inlined by the schedule)."""
    if tuple(int(d) for d in c.shape) == tuple(shape) and c.dtype == dtype:
        return c
    flat = topi.reshape(c, shape) if tuple(int(d) for d in c.shape) != tuple(shape) else c
    return te.compute(tuple(shape), lambda *i: tir.Cast(dtype, flat[i]), name=ctx.names("mm_out"))


@lowers("nn.gemm")
def _lower_gemm(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    a, b = args[0], args[1]
    out = ctx.out_types[0]
    dtype = dtype_of(out)
    acc = _accumulator(dtype)
    mm = _matmul_core(a, b, ctx.in_types[0], ctx.in_types[1], attrs["trans_a"], attrs["trans_b"], 1, ctx, acc)
    alpha, beta = attrs["alpha"], attrs["beta"]
    c = args[2] if len(args) == 3 else None

    def body(i: tir.PrimExpr, j: tir.PrimExpr) -> tir.PrimExpr:
        y = mm[i, j]
        if alpha != 1.0:
            y = y * const(alpha, acc)
        if c is not None:
            cv = tir.Cast(acc, broadcast_read(c, 2, (i, j)))
            y = y + (cv if beta == 1.0 else cv * const(beta, acc))
        return tir.Cast(dtype, y)

    return [te.compute(static_shape(out), body, name=ctx.names("gemm_epilogue"))]


# ------------------------------------------------------------------------------------ convolution


def _pack_conv(oc: int, ocb: int) -> Callable[[np.ndarray], np.ndarray]:
    """OIHW -> [ceil(O/ocb), I, H, W, ocb], zero-padded (the output-channel block innermost)."""

    def pack(w: np.ndarray) -> np.ndarray:
        blocks = -(-oc // ocb)
        padded = np.zeros((blocks * ocb,) + w.shape[1:], w.dtype)
        padded[:oc] = w
        return np.ascontiguousarray(padded.reshape((blocks, ocb) + w.shape[1:]).transpose(0, 2, 3, 4, 1))

    return pack


@lowers("nn.conv2d")
def _lower_conv2d(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    x, w = args[0], args[1]
    bias = args[2] if len(args) == 3 else None
    out = ctx.out_types[0]
    dtype = dtype_of(out)
    acc = _accumulator(dtype)
    n, _, h, wd = static_shape(ctx.in_types[0])
    oc, cg, kh, kw = static_shape(ctx.in_types[1])
    groups = attrs["groups"]
    (sh, sw), (dh, dw) = attrs["strides"], attrs["dilations"]
    pads = attrs["pads"]
    ho = conv_out_size(h, kh, sh, pads[0], pads[2], dh)
    wo = conv_out_size(wd, kw, sw, pads[1], pads[3], dw)
    og = oc // groups
    depthwise = cg == 1 and groups > 1
    # Rows are computed in whole width blocks (a vector for depthwise, a register tile otherwise):
    # the row is widened to a multiple of the block, reading extra zero padding, and the epilogue
    # keeps the valid columns.
    if depthwise:
        owb = dwconv_tile(wo, ctx.lanes, ctx.schedule)
    else:
        ocb, owb = conv_tile(og, wo, ctx.lanes, ctx.schedule, groups)
    wide = -(-wo // owb) * owb
    span = (wide - 1) * sw + (kw - 1) * dw + 1  # input columns the (widened) rows read
    xp = pad_input(x, pads, 0.0, ctx, extra=(0, max(0, span - (wd + pads[1] + pads[3]))))

    def x_at(b: tir.PrimExpr, ch: tir.PrimExpr, i: tir.PrimExpr, j: tir.PrimExpr, ri: tir.PrimExpr,
             rj: tir.PrimExpr) -> tir.PrimExpr:
        return tir.Cast(acc, xp[b, ch, i * sh + ri * dh, j * sw + rj * dw])

    def with_bias(v: tir.PrimExpr, o: tir.PrimExpr) -> tir.PrimExpr:
        return tir.Cast(dtype, v + tir.Cast(acc, bias[o]) if bias is not None else v)

    rh, rw = te.reduce_axis((0, kh), name="rh"), te.reduce_axis((0, kw), name="rw")
    if depthwise:
        if sw > 1:
            x_at = _strided_columns(x, (ho, wide), (kh, kw), (sh, sw), (dh, dw), pads, acc, ctx)
        name = ctx.names("anchor_dwconv")
        ctx.set_anchor(Anchor("dwconv2d", name, (owb,)))
        conv = te.compute((n, oc, ho, wide), lambda b, o, i, j: te.sum(
            x_at(b, o // og, i, j, rh, rw) * tir.Cast(acc, w[o, 0, rh, rw]), axis=[rh, rw]), name=name)
        return [te.compute((n, oc, ho, wo), lambda b, o, i, j: with_bias(conv[b, o, i, j], o),
                           name=ctx.names("conv_out"))]

    blocks = -(-oc // ocb)
    rc = te.reduce_axis((0, cg), name="rc")
    if 1 in ctx.consts and ctx.schedule.pack:
        wp = ctx.packed(1, f"oihw{ocb}o", _pack_conv(oc, ocb), w.dtype)

        def w_at(ob: tir.PrimExpr, oi: tir.PrimExpr) -> tir.PrimExpr:
            return wp[ob, rc, rh, rw, oi]
    else:
        if oc % ocb:
            ocb = next(d for d in range(ocb, 0, -1) if oc % d == 0)
            blocks = oc // ocb

        def w_at(ob: tir.PrimExpr, oi: tir.PrimExpr) -> tir.PrimExpr:
            return w[ob * ocb + oi, rc, rh, rw]

    def conv_body(b: tir.PrimExpr, ob: tir.PrimExpr, i: tir.PrimExpr, j: tir.PrimExpr,
                  oi: tir.PrimExpr) -> tir.PrimExpr:
        ch = rc if groups == 1 else (ob * ocb + oi) // og * cg + rc
        return te.sum(x_at(b, ch, i, j, rh, rw) * tir.Cast(acc, w_at(ob, oi)), axis=[rc, rh, rw])

    # The result is computed with the channel block innermost (NCHW[x]c), so each output pixel's
    # channel block is one vector; the unpacking step writes NCHW and carries the epilogue.
    name = ctx.names("anchor_conv2d")
    ctx.set_anchor(Anchor("conv2d", name, (ocb, owb)))
    conv = te.compute((n, blocks, ho, wide, ocb), conv_body, name=name)
    return [te.compute((n, oc, ho, wo), lambda b, o, i, j: with_bias(conv[b, o // ocb, i, j, o % ocb], o),
                       name=ctx.names("conv_out"))]


def _strided_columns(x: te.Tensor, out_hw: tuple[int, int], k: tuple[int, int], strides: tuple[int, int],
                     dil: tuple[int, int], pads: Sequence[int], acc: str, ctx: LowerContext,
                     pad_value: tir.PrimExpr | float = 0.0) -> Callable[..., tir.PrimExpr]:
    """The padded input of a column-strided window op, with its columns split by phase.

    ``xq[b, c, row, p, q]`` is padded column ``q * sw + p``, so the taps of a row of outputs at
    stride ``sw`` read consecutive ``q``: one vector load instead of a strided gather. Both the
    padded input and its phase split keep their own buffers (``pad_keep``); the schedule computes
    them one channel at a time, while the channel is in cache.
    """
    (ho, wide), (kh, kw), (sh, sw), (dh, dw) = out_hw, k, strides, dil
    h, wd = int(x.shape[2]), int(x.shape[3])
    rows = (ho - 1) * sh + (kh - 1) * dh + 1
    cols = wide + ((kw - 1) * dw) // sw
    xp = pad_input(x, pads, pad_value, ctx, extra=(max(0, rows - (h + pads[0] + pads[2])),
                                                   max(0, cols * sw - (wd + pads[1] + pads[3]))))
    n, c = (int(d) for d in x.shape[:2])
    xq = te.compute((n, c, rows, sw, cols), lambda b, ch, r, p, q: xp[b, ch, r, q * sw + p],
                    name=ctx.names("pad_keep_phases"))

    def x_at(b: tir.PrimExpr, ch: tir.PrimExpr, i: tir.PrimExpr, j: tir.PrimExpr, ri: tir.PrimExpr,
             rj: tir.PrimExpr) -> tir.PrimExpr:
        tap = rj * dw
        return tir.Cast(acc, xq[b, ch, i * sh + ri * dh, tap % sw, j + tap // sw])

    return x_at

