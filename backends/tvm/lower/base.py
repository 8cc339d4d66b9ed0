"""Shared pieces of the lowerings: dtypes, the lowering context, the registry and TE helpers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tvm.tirx as tir
from tvm import te, topi

from ....ir.types import DType, TensorType
from ..schedule import KernelSchedule

TVM_DTYPE = {
    DType.f32: "float32", DType.f16: "float16", DType.bf16: "bfloat16", DType.f64: "float64",
    DType.i8: "int8", DType.u8: "uint8", DType.i32: "int32", DType.i64: "int64", DType.bool: "bool",
}
NARROW = ("float16", "bfloat16")


class LoweringError(Exception):
    """An op (or an operand type) this backend has no TE lowering for; the kernel falls back."""


@dataclass(frozen=True)
class Pack:
    """A constant operand handed to the kernel in another layout, computed once at compile time."""

    operand: int
    layout: str  # names the layout, so two kernels asking for the same packing share one constant
    fn: Callable[[np.ndarray], np.ndarray]


@dataclass
class Anchor:
    """The kernel's main loop nest (a matmul or convolution) and the register tile it was built for."""

    kind: str  # "matmul", "conv2d" or "dwconv2d"
    block: str  # name of the TE compute (= the TIR block)
    tile: tuple[int, ...]


@dataclass
class LowerContext:
    """What a lowering may know about its node beyond the operand tensors."""

    op: str
    in_types: Sequence[TensorType]
    out_types: Sequence[TensorType]
    consts: Mapping[int, np.ndarray]  # operand index -> data, for operands known at compile time
    schedule: KernelSchedule
    lanes: int  # f32 elements per native vector
    names: Callable[[str], str]  # unique TE/TIR names within the kernel
    packs: list[tuple[Pack, te.Tensor, np.ndarray]] = field(default_factory=list)
    anchor: Anchor | None = None

    def packed(self, operand: int, layout: str, fn: Callable[[np.ndarray], np.ndarray], dtype: str) -> te.Tensor:
        """A placeholder for constant operand ``operand`` repacked by ``fn`` (recorded in ``packs``)."""
        data = fn(self.consts[operand])  # packed once here, at compile time
        ph = te.placeholder(tuple(int(d) for d in data.shape), dtype, name=self.names(f"packed_{layout}"))
        self.packs.append((Pack(operand, layout, fn), ph, data))
        return ph

    def set_anchor(self, anchor: Anchor) -> None:
        """Record the anchor; a second one in the same kernel leaves the kernel to the generic schedule."""
        self.anchor = anchor if self.anchor is None else Anchor("multiple", anchor.block, ())


Lowering = Callable[[Sequence[te.Tensor], Mapping[str, Any], LowerContext], list[te.Tensor]]
LOWERINGS: dict[str, Lowering] = {}


def lowers(*ops: str) -> Callable[[Lowering], Lowering]:
    """Register a lowering for ``ops``."""

    def register(fn: Lowering) -> Lowering:
        for op in ops:
            LOWERINGS[op] = fn
        return fn

    return register


def lower_op(op: str, args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    """The results of ``op`` on ``args`` as TE tensors; raises LoweringError when unsupported."""
    fn = LOWERINGS.get(op)
    if fn is None:
        raise LoweringError(f"no TVM lowering for {op}")
    return fn(args, attrs, ctx)


# ------------------------------------------------------------------------------------------ helpers


def static_shape(t: TensorType) -> tuple[int, ...]:
    """The dims of a specialized type as ints (LoweringError if one is still a symbol)."""
    if not t.is_static:
        raise LoweringError(f"type {t} is not specialized to concrete shapes")
    return tuple(int(d) for d in t.shape)  # type: ignore[arg-type]


def dtype_of(t: TensorType) -> str:
    """The TVM dtype string of a graphopt type."""
    return TVM_DTYPE[t.dtype]


def const(value: float | bool, dtype: str) -> tir.PrimExpr:
    """A TIR constant of ``dtype``."""
    return tir.const(value, dtype)


def type_of(e: Any) -> str:
    """The element type of a TIR expression (or of a TE tensor element) as a string."""
    return str(e.ty) if hasattr(e, "ty") else str(e.dtype)


def is_float(dtype: str) -> bool:
    """True for TVM floating-point dtype strings."""
    return dtype.startswith(("float", "bfloat"))


def widen(dtype: str) -> str:
    """The dtype arithmetic on ``dtype`` is done in (float32 for the narrow floats)."""
    # The reference computes narrow floats in float32 and rounds once at the end; so do we.
    return "float32" if dtype in NARROW else dtype


def broadcast_read(t: te.Tensor, out_rank: int, idx: Sequence[tir.PrimExpr]) -> tir.PrimExpr:
    """Read ``t`` at output index ``idx`` with numpy broadcasting (size-1 dims read index 0)."""
    rank = len(t.shape)
    sub = idx[out_rank - rank:]
    return t[tuple(0 if int(d) == 1 else i for d, i in zip(t.shape, sub))] if rank else t()


def elementwise(name: str, shape: Sequence[int], operands: Sequence[te.Tensor], out_dtype: str,
                fn: Callable[..., tir.PrimExpr]) -> te.Tensor:
    """``fn`` of the broadcast operands at every index of ``shape``, cast to ``out_dtype``."""
    rank = len(shape)

    def body(*idx: tir.PrimExpr) -> tir.PrimExpr:
        return tir.Cast(out_dtype, fn(*(broadcast_read(t, rank, idx) for t in operands)))

    return te.compute(tuple(shape), body, name=name)


def _reduce_axes(shape: Sequence[int], axes: Sequence[int], prefix: str) -> list[tir.IterVar]:
    return [te.reduce_axis((0, shape[a]), name=f"{prefix}{a}") for a in axes]


def _reduced_index(idx: Sequence[tir.PrimExpr], axes: Sequence[int], raxes: Sequence[tir.IterVar],
                   keepdims: bool, rank: int) -> tuple[tir.PrimExpr, ...]:
    """Index into the reduced operand: output index ``idx`` with the reduce axes put in."""
    it = iter(idx)
    rmap = dict(zip(axes, raxes))
    out = []
    for d in range(rank):
        if d in rmap:
            out.append(rmap[d])
            if keepdims:
                next(it)
        else:
            out.append(next(it))
    return tuple(out)


_prod = te.comm_reducer(lambda a, b: a * b, lambda t: tir.const(1, t), name="prod")


def reduction(x: te.Tensor, axes: Sequence[int], keepdims: bool, kind: str, name: str,
              pre: Callable[[tir.PrimExpr], tir.PrimExpr] = lambda v: v) -> te.Tensor:
    """``kind`` ("sum", "max", "min", "prod") of ``pre(x)`` over ``axes``."""
    shape = [int(d) for d in x.shape]
    rank = len(shape)
    out_shape = [1 if d in axes else s for d, s in enumerate(shape)] if keepdims else \
        [s for d, s in enumerate(shape) if d not in axes]
    reducer = {"sum": te.sum, "max": te.max, "min": te.min, "prod": _prod}[kind]

    def body(*idx: tir.PrimExpr) -> tir.PrimExpr:
        raxes = _reduce_axes(shape, axes, "r")
        return reducer(pre(x[_reduced_index(idx, axes, raxes, keepdims, rank)]), axis=raxes)

    return te.compute(tuple(out_shape), body, name=name)


def pad_input(x: te.Tensor, pads: Sequence[int], value: tir.PrimExpr | float, ctx: LowerContext,
              extra: tuple[int, int] = (0, 0)) -> te.Tensor:
    """NCHW ``x`` padded by (top, left, bottom, right) ``pads`` plus ``extra`` at the bottom and right.

    The block keeps its own buffer (``pad_keep``): inlined into a window loop it would put a
    bounds check in the innermost loop.
    """
    pt, pl, pb, pr = pads
    if not any(pads) and not any(extra):
        return x
    return topi.nn.pad(x, [0, 0, pt, pl], [0, 0, pb + extra[0], pr + extra[1]], pad_value=value,
                       name=ctx.names("pad_keep"))


def lower_node(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    """``lower_op`` for ``ctx.op``, with TVM's own errors turned into LoweringError."""
    try:
        return lower_op(ctx.op, args, attrs, ctx)
    except LoweringError:
        raise
    except Exception as e:
        raise LoweringError(f"{ctx.op}: {type(e).__name__}: {last_line(e)}") from e


def last_line(e: Exception) -> str:
    """The last line of an error message (TVM puts the cause there), shortened."""
    lines = str(e).strip().splitlines()
    return (lines[-1] if lines else "")[:300]

