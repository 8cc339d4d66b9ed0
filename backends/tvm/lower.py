"""Op -> TE compute: one lowering per op family, registered by op name in ``LOWERINGS``.

A lowering takes the operands as TE tensors, the node's attributes and a ``LowerContext`` (concrete
operand and result types, which operands are compile-time constants, the kernel's schedule) and
returns the results as TE tensors. Semantics follow the reference implementations in
``graphopt/ir/ops``; where TVM's own intrinsic differs (NaN in max/min, integer division by zero,
narrow floats) the lowering spells the reference's behaviour out. Convolution and matmul lower to
the register-tiled forms the default schedules expect and record them in ``ctx.anchor``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import tvm.tirx as tir
from tvm import te, topi

from ...ir.ops.common import normalize_axes, normalize_axis
from ...ir.ops.linalg import conv_out_size
from ...ir.ops.shape import slice_bounds
from ...ir.types import DType, TensorType
from .schedule import KernelSchedule

TVM_DTYPE = {
    DType.f32: "float32", DType.f16: "float16", DType.bf16: "bfloat16", DType.f64: "float64",
    DType.i8: "int8", DType.u8: "uint8", DType.i32: "int32", DType.i64: "int64", DType.bool: "bool",
}
_NARROW = ("float16", "bfloat16")


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


def _shape(t: TensorType) -> tuple[int, ...]:
    if not t.is_static:
        raise LoweringError(f"type {t} is not specialized to concrete shapes")
    return tuple(int(d) for d in t.shape)  # type: ignore[arg-type]


def _dt(t: TensorType) -> str:
    return TVM_DTYPE[t.dtype]


def _const(value: float | int | bool, dtype: str) -> tir.PrimExpr:
    return tir.const(value, dtype)


def _ty(e: Any) -> str:
    """The element type of a TIR expression (or of a TE tensor element) as a string."""
    return str(e.ty) if hasattr(e, "ty") else str(e.dtype)


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat"))


def _wide(dtype: str) -> str:
    # The reference computes narrow floats in float32 and rounds once at the end; so do we.
    return "float32" if dtype in _NARROW else dtype


def _bcast(t: te.Tensor, out_rank: int, idx: Sequence[tir.PrimExpr]) -> tir.PrimExpr:
    """Read ``t`` at output index ``idx`` with numpy broadcasting (size-1 dims read index 0)."""
    rank = len(t.shape)
    sub = idx[out_rank - rank:]
    return t[tuple(0 if int(d) == 1 else i for d, i in zip(t.shape, sub))] if rank else t()


def _elementwise(name: str, shape: Sequence[int], operands: Sequence[te.Tensor], out_dtype: str,
                 fn: Callable[..., tir.PrimExpr]) -> te.Tensor:
    rank = len(shape)

    def body(*idx: tir.PrimExpr) -> tir.PrimExpr:
        return tir.Cast(out_dtype, fn(*(_bcast(t, rank, idx) for t in operands)))

    return te.compute(tuple(shape), body, name=name)


# --------------------------------------------------------------------------- elementwise, one operand


def _gelu(x: tir.PrimExpr, approximate: str) -> tir.PrimExpr:
    f = _ty(x)
    if approximate == "tanh":
        inner = _const(math.sqrt(2 / math.pi), f) * (x + _const(0.044715, f) * x * x * x)
        return _const(0.5, f) * x * (_const(1.0, f) + tir.tanh(inner))
    return _const(0.5, f) * x * (_const(1.0, f) + tir.erf(x * _const(1 / math.sqrt(2), f)))


def _softplus(x: tir.PrimExpr) -> tir.PrimExpr:
    # log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): no overflow for large x (numpy's logaddexp).
    zero = _const(0.0, _ty(x))
    return tir.max(x, zero) + tir.log1p(tir.exp(-tir.abs(x)))


def _sigmoid(x: tir.PrimExpr) -> tir.PrimExpr:
    # exp(-|x|) never overflows, so tiny results keep their accuracy (as the reference).
    one = _const(1.0, _ty(x))
    e = tir.exp(-tir.abs(x))
    return tir.Select(x >= _const(0.0, _ty(x)), one / (one + e), e / (one + e))


def _elu(x: tir.PrimExpr, alpha: float) -> tir.PrimExpr:
    f = _ty(x)
    return tir.Select(x > _const(0.0, f), x, _const(alpha, f) * (tir.exp(tir.min(x, _const(0.0, f))) - _const(1.0, f)))


def _relu(x: tir.PrimExpr) -> tir.PrimExpr:
    # Select keeps NaN (NaN < 0 is false), as numpy's maximum does; LLVM's max would drop it.
    zero = _const(0, _ty(x))
    return tir.Select(x < zero, zero, x)


def _clip(x: tir.PrimExpr, lo: float | None, hi: float | None, np_dtype: np.dtype) -> tir.PrimExpr:
    # Bounds are converted to the operand's type first, as the reference does for integer clips.
    if lo is not None:
        bound = _const(np.asarray(lo).astype(np_dtype).item(), _ty(x))
        x = tir.Select(x < bound, bound, x)
    if hi is not None:
        bound = _const(np.asarray(hi).astype(np_dtype).item(), _ty(x))
        x = tir.Select(x > bound, bound, x)
    return x


def _sign(x: tir.PrimExpr) -> tir.PrimExpr:
    one, zero = _const(1, _ty(x)), _const(0, _ty(x))
    if _ty(x).startswith("uint"):
        return tir.Select(x > zero, one, zero)
    return tir.Select(x > zero, one, tir.Select(x < zero, _const(-1, _ty(x)), x))  # x keeps 0 and NaN


def _f(v: float) -> Callable[[tir.PrimExpr], tir.PrimExpr]:
    return lambda x: _const(v, _ty(x))


# op -> f(x, attrs) on the widened element.
UNARY: dict[str, Callable[[tir.PrimExpr, Mapping[str, Any]], tir.PrimExpr]] = {
    "math.neg": lambda x, a: -x,
    "math.abs": lambda x, a: x if _ty(x).startswith("uint") else tir.abs(x),
    "math.exp": lambda x, a: tir.exp(x),
    "math.log": lambda x, a: tir.log(x),
    "math.sqrt": lambda x, a: tir.sqrt(x),
    "math.rsqrt": lambda x, a: _f(1.0)(x) / tir.sqrt(x),
    "math.reciprocal": lambda x, a: _f(1.0)(x) / x,
    "math.erf": lambda x, a: tir.erf(x),
    "math.tanh": lambda x, a: tir.tanh(x),
    "math.sin": lambda x, a: tir.sin(x),
    "math.cos": lambda x, a: tir.cos(x),
    "math.floor": lambda x, a: tir.floor(x),
    "math.ceil": lambda x, a: tir.ceil(x),
    "math.round": lambda x, a: tir.nearbyint(x),  # round-half-to-even under the default FP mode
    "math.sign": lambda x, a: _sign(x),
    "logic.not": lambda x, a: tir.Not(x),
    "nn.relu": lambda x, a: _relu(x),
    "nn.leaky_relu": lambda x, a: tir.Select(x >= _f(0.0)(x), x, x * _f(a["alpha"])(x)),
    "nn.elu": lambda x, a: _elu(x, a["alpha"]),
    "nn.selu": lambda x, a: _f(a["gamma"])(x) * _elu(x, a["alpha"]),
    "nn.sigmoid": lambda x, a: _sigmoid(x),
    "nn.hard_sigmoid": lambda x, a: _clip(_f(a["alpha"])(x) * x + _f(a["beta"])(x), 0.0, 1.0, np.dtype(_ty(x))),
    "nn.hard_swish": lambda x, a: x * _clip(x / _f(6.0)(x) + _f(0.5)(x), 0.0, 1.0, np.dtype(_ty(x))),
    "nn.softplus": lambda x, a: _softplus(x),
    "nn.gelu": lambda x, a: _gelu(x, a["approximate"]),
    "nn.silu": lambda x, a: x * _sigmoid(x),
    "nn.mish": lambda x, a: x * tir.tanh(_softplus(x)),
    "tensor.identity": lambda x, a: x,
    "nn.dropout": lambda x, a: x,
}


@lowers(*UNARY)
def _lower_unary(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    fn, dtype = UNARY[ctx.op], _dt(out)
    wide = _wide(dtype)

    def body(v: tir.PrimExpr) -> tir.PrimExpr:
        return fn(tir.Cast(wide, v) if wide != dtype else v, attrs)

    return [_elementwise(ctx.names("unary"), _shape(out), [x], dtype, body)]


@lowers("math.clip")
def _lower_clip(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    out = ctx.out_types[0]
    np_dtype = out.dtype.numpy
    return [_elementwise(ctx.names("clip"), _shape(out), args, _dt(out),
                         lambda x: _clip(x, attrs.get("min"), attrs.get("max"), np_dtype))]


@lowers("tensor.cast")
def _lower_cast(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    out, src = ctx.out_types[0], _dt(ctx.in_types[0])
    dst = _dt(out)

    def body(x: tir.PrimExpr) -> tir.PrimExpr:
        if dst == "bool":
            return x != _const(0, src)  # nonzero is true, as numpy's astype(bool)
        if src in _NARROW and dst != "float32":
            x = tir.Cast("float32", x)
        if _is_float(_ty(x)) and not _is_float(dst):
            x = tir.trunc(x)  # toward zero, as the reference (and C)
        return x

    return [_elementwise(ctx.names("cast"), _shape(out), args, dst, body)]


# ------------------------------------------------------------------------- broadcasting, two operands


def _safe_int_div(a: tir.PrimExpr, b: tir.PrimExpr, fn: Callable[..., tir.PrimExpr]) -> tir.PrimExpr:
    # numpy gives 0 for integer division by zero; a bare idiv would trap, so the divisor is
    # replaced before dividing (Select evaluates both arms).
    zero, one = _const(0, _ty(b)), _const(1, _ty(b))
    return tir.Select(b == zero, zero, fn(a, tir.Select(b == zero, one, b)))


def _div(a: tir.PrimExpr, b: tir.PrimExpr) -> tir.PrimExpr:
    return a / b if _is_float(_ty(a)) else _safe_int_div(a, b, tir.truncdiv)


def _mod(a: tir.PrimExpr, b: tir.PrimExpr, fmod: bool) -> tir.PrimExpr:
    if not _is_float(_ty(a)):
        return _safe_int_div(a, b, tir.truncmod if fmod else tir.floormod)
    # LLVM has no fmod intrinsic TVM can call; in float64 the truncated quotient of two float32
    # values is exact enough that this equals C's fmod.
    a64, b64 = tir.Cast("float64", a), tir.Cast("float64", b)
    r = tir.Cast(_ty(a), a64 - tir.trunc(a64 / b64) * b64)
    if fmod:
        return r
    zero = _const(0.0, _ty(a))
    # Python's %: the remainder takes the divisor's sign (numpy.mod).
    return tir.Select(tir.And(r != zero, (r < zero) != (b < zero)), r + b, r)


def _max(a: tir.PrimExpr, b: tir.PrimExpr, pick_a: Callable[..., tir.PrimExpr]) -> tir.PrimExpr:
    if not _is_float(_ty(a)):
        return tir.Select(pick_a(a, b), a, b)
    # NaN in either operand propagates, as in numpy.maximum/minimum.
    return tir.Select(tir.isnan(b), b, tir.Select(tir.Or(pick_a(a, b), tir.isnan(a)), a, b))


BINARY: dict[str, Callable[[tir.PrimExpr, tir.PrimExpr, Mapping[str, Any]], tir.PrimExpr]] = {
    "math.add": lambda a, b, at: a + b,
    "math.sub": lambda a, b, at: a - b,
    "math.mul": lambda a, b, at: a * b,
    "math.div": lambda a, b, at: _div(a, b),
    "math.max": lambda a, b, at: _max(a, b, lambda x, y: x > y),
    "math.min": lambda a, b, at: _max(a, b, lambda x, y: x < y),
    "math.mod": lambda a, b, at: _mod(a, b, at["fmod"]),
    "nn.prelu": lambda x, s, at: tir.Select(x >= _const(0, _ty(x)), x, x * s),
    "cmp.equal": lambda a, b, at: a == b,
    "cmp.less": lambda a, b, at: a < b,
    "cmp.less_equal": lambda a, b, at: a <= b,
    "cmp.greater": lambda a, b, at: a > b,
    "cmp.greater_equal": lambda a, b, at: a >= b,
    "logic.and": lambda a, b, at: tir.And(a, b),
    "logic.or": lambda a, b, at: tir.Or(a, b),
    # LLVM rejects != on vectors of i1 (TVM emits a float compare), so xor is spelled out.
    "logic.xor": lambda a, b, at: tir.Or(tir.And(a, tir.Not(b)), tir.And(tir.Not(a), b)),
}


@lowers(*BINARY)
def _lower_binary(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    fn, out = BINARY[ctx.op], ctx.out_types[0]
    src = _dt(ctx.in_types[0])
    wide = _wide(src)

    def body(a: tir.PrimExpr, b: tir.PrimExpr) -> tir.PrimExpr:
        if wide != src:
            a, b = tir.Cast(wide, a), tir.Cast(wide, b)
        return fn(a, b, attrs)

    return [_elementwise(ctx.names("binary"), _shape(out), args, _dt(out), body)]


@lowers("math.pow")
def _lower_pow(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    out = ctx.out_types[0]
    dtype = _dt(out)
    if not _is_float(dtype):
        raise LoweringError(f"math.pow of integer base {ctx.in_types[0]} (LLVM has only a float pow)")
    wide = _wide(dtype)

    def body(a: tir.PrimExpr, b: tir.PrimExpr) -> tir.PrimExpr:
        # The exponent is converted to the base's type first, as the reference does.
        b = tir.Cast(dtype, b) if _ty(b) != dtype else b
        return tir.power(tir.Cast(wide, a), tir.Cast(wide, b))

    return [_elementwise(ctx.names("pow"), _shape(out), args, dtype, body)]


@lowers("tensor.where")
def _lower_where(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    out = ctx.out_types[0]
    return [_elementwise(ctx.names("where"), _shape(out), args, _dt(out), lambda c, a, b: tir.Select(c, a, b))]


# ------------------------------------------------------------------------------------ normalization


@lowers("nn.batch_norm")
def _lower_batch_norm(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    x, scale, bias, mean, var = args
    out = ctx.out_types[0]
    dtype = _dt(out)
    wide = _wide(dtype)
    eps = _const(attrs["epsilon"], wide)

    def body(*idx: tir.PrimExpr) -> tir.PrimExpr:
        c = idx[1]
        w = [tir.Cast(wide, t[c]) for t in (scale, bias, mean, var)]
        mul = w[0] / tir.sqrt(w[3] + eps)
        return tir.Cast(dtype, tir.Cast(wide, x[idx]) * mul + (w[1] - w[2] * mul))

    return [te.compute(_shape(out), body, name=ctx.names("batch_norm"))]


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


def _reduce(x: te.Tensor, axes: Sequence[int], keepdims: bool, kind: str, name: str,
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


_prod = te.comm_reducer(lambda a, b: a * b, lambda t: tir.const(1, t), name="prod")


@lowers("nn.layer_norm")
def _lower_layer_norm(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    x, scale = args[0], args[1]
    bias = args[2] if len(args) == 3 else None
    out = ctx.out_types[0]
    shape, dtype = _shape(out), _dt(out)
    wide = _wide(dtype)
    rank = len(shape)
    axes = tuple(range(normalize_axis(attrs["axis"], rank), rank))
    n = _const(float(np.prod([shape[a] for a in axes])), wide)
    xw = te.compute(shape, lambda *i: tir.Cast(wide, x[i]), name=ctx.names("ln_in"))
    mean = _reduce(xw, axes, True, "sum", ctx.names("ln_sum"))
    centered = te.compute(shape, lambda *i: xw[i] - _bcast(mean, rank, i) / n, name=ctx.names("ln_centered"))
    var = _reduce(centered, axes, True, "sum", ctx.names("ln_sq"), pre=lambda v: v * v)
    eps = _const(attrs["epsilon"], wide)

    def body(*i: tir.PrimExpr) -> tir.PrimExpr:
        y = centered[i] / tir.sqrt(_bcast(var, rank, i) / n + eps) * tir.Cast(wide, _bcast(scale, rank, i))
        if bias is not None:
            y = y + tir.Cast(wide, _bcast(bias, rank, i))
        return tir.Cast(dtype, y)

    return [te.compute(shape, body, name=ctx.names("layer_norm"))]


@lowers("nn.lrn")
def _lower_lrn(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    shape, dtype = _shape(out), _dt(out)
    wide = _wide(dtype)
    size = attrs["size"]
    before = (size - 1) // 2
    c = shape[1]
    r = te.reduce_axis((0, size), name="rc")

    def square_sum(*i: tir.PrimExpr) -> tir.PrimExpr:
        ch = i[1] + r - before
        v = tir.Cast(wide, x[(i[0], tir.max(tir.min(ch, c - 1), 0)) + tuple(i[2:])])
        return te.sum(tir.if_then_else(tir.And(ch >= 0, ch < c), v * v, _const(0.0, wide)), axis=r)

    total = te.compute(shape, square_sum, name=ctx.names("lrn_sum"))
    bias, alpha, beta = (_const(attrs[k], wide) for k in ("bias", "alpha", "beta"))

    def body(*i: tir.PrimExpr) -> tir.PrimExpr:
        base = bias + alpha / _const(float(size), wide) * total[i]
        return tir.Cast(dtype, tir.Cast(wide, x[i]) / tir.power(base, beta))

    return [te.compute(shape, body, name=ctx.names("lrn"))]


@lowers("nn.softmax", "nn.log_softmax")
def _lower_softmax(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    shape, dtype = _shape(out), _dt(out)
    wide = _wide(dtype)
    rank = len(shape)
    axis = normalize_axis(attrs["axis"], rank)
    xw = te.compute(shape, lambda *i: tir.Cast(wide, x[i]), name=ctx.names("sm_in"))
    mx = _reduce(xw, (axis,), True, "max", ctx.names("sm_max"))
    shifted = te.compute(shape, lambda *i: xw[i] - _bcast(mx, rank, i), name=ctx.names("sm_shift"))
    total = _reduce(shifted, (axis,), True, "sum", ctx.names("sm_sum"), pre=tir.exp)
    if ctx.op == "nn.softmax":
        def body(*i: tir.PrimExpr) -> tir.PrimExpr:
            return tir.Cast(dtype, tir.exp(shifted[i]) / _bcast(total, rank, i))
    else:
        def body(*i: tir.PrimExpr) -> tir.PrimExpr:
            return tir.Cast(dtype, shifted[i] - tir.log(_bcast(total, rank, i)))
    return [te.compute(shape, body, name=ctx.names("softmax"))]


# --------------------------------------------------------------------------------------- reductions


@lowers("reduce.sum", "reduce.mean", "reduce.max", "reduce.min", "reduce.prod")
def _lower_reduce(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    shape = _shape(ctx.in_types[0])
    dtype = _dt(out)
    axes = normalize_axes(attrs["axes"], len(shape)) if attrs["axes"] else tuple(range(len(shape)))
    op = ctx.op.split(".")[1]
    if op == "mean":
        # Integers are averaged in float64 and truncated back, as the reference.
        acc = "float64" if not _is_float(dtype) else _wide(dtype)
        total = _reduce(x, axes, attrs["keepdims"], "sum", ctx.names("mean_sum"), pre=lambda v: tir.Cast(acc, v))
        n = _const(float(np.prod([shape[a] for a in axes])), acc)
        return [te.compute(_shape(out), lambda *i: tir.Cast(dtype, tir.trunc(total[i] / n) if acc == "float64"
                                                            else total[i] / n), name=ctx.names("mean"))]
    wide = _wide(dtype)
    red = _reduce(x, axes, attrs["keepdims"], op, ctx.names(op), pre=lambda v: tir.Cast(wide, v))
    if wide == dtype:
        return [red]
    return [te.compute(_shape(out), lambda *i: tir.Cast(dtype, red[i]), name=ctx.names("narrow"))]


@lowers("reduce.argmax", "reduce.argmin")
def _lower_arg(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    axis = normalize_axis(attrs["axis"], len(x.shape))
    fn = topi.argmax if ctx.op == "reduce.argmax" else topi.argmin
    idx = fn(x, axis=axis, keepdims=attrs["keepdims"], select_last_index=attrs["select_last_index"])
    return [te.compute(_shape(out), lambda *i: tir.Cast("int64", idx[i]), name=ctx.names("arg"))]


@lowers("nn.global_avg_pool", "nn.global_max_pool")
def _lower_global_pool(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    shape, dtype = _shape(ctx.in_types[0]), _dt(out)
    wide = _wide(dtype)
    axes = tuple(range(2, len(shape)))
    if ctx.op == "nn.global_max_pool":
        red = _reduce(x, axes, True, "max", ctx.names("gmax"), pre=lambda v: tir.Cast(wide, v))
        return [te.compute(_shape(out), lambda *i: tir.Cast(dtype, red[i]), name=ctx.names("gpool"))]
    total = _reduce(x, axes, True, "sum", ctx.names("gsum"), pre=lambda v: tir.Cast(wide, v))
    n = _const(float(np.prod(shape[2:])), wide)
    return [te.compute(_shape(out), lambda *i: tir.Cast(dtype, total[i] / n), name=ctx.names("gpool"))]


# ----------------------------------------------------------------------------- matmul and gemm


def _divisor_tile(n: int, candidates: Sequence[int]) -> int | None:
    return next((c for c in candidates if n % c == 0), None)


def matmul_tile(m: int, n: int, lanes: int, schedule: KernelSchedule) -> tuple[int, int]:
    """Default register tile (rows, cols) of an ``m x n`` matmul output."""
    if len(schedule.tile) >= 2:
        return min(schedule.tile[0], m), min(schedule.tile[1], n)
    # A row block shares each loaded B vector; with one row, wider column blocks give the FMA
    # units enough independent accumulators.
    cols = (4 * lanes, 2 * lanes, lanes, lanes // 2) if m == 1 else (2 * lanes, lanes, lanes // 2)
    nb = _divisor_tile(n, cols) or (n if n <= 4 * lanes else 2 * lanes)
    mb = _divisor_tile(m, (8, 6, 4, 3, 2, 1)) or 1
    return mb, nb


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
    a_shape, b_shape = _shape(a_t), _shape(b_t)
    m, k = (a_shape[-1], a_shape[-2]) if trans_a else (a_shape[-2], a_shape[-1])
    n = b_shape[-2] if trans_b else b_shape[-1]
    batch = tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
    mb, nb = matmul_tile(m, n, ctx.lanes, ctx.schedule)
    rk = te.reduce_axis((0, k), name="k")
    pack = len(b_shape) == 2 and b_operand in ctx.consts and ctx.schedule.pack
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
    return te.compute(batch + (m, n), body, name=name)


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
    dtype = _dt(out)
    # 1-D operands become matrices (numpy's rule) and the added axis is dropped from the result.
    if a_t.rank == 1:
        a = topi.reshape(a, (1, int(a.shape[0])))
        a_t = a_t.with_shape((1,) + a_t.shape)
    if b_t.rank == 1:
        b = topi.reshape(b, (int(b.shape[0]), 1))
        b_t = b_t.with_shape(b_t.shape + (1,))
    acc = _accumulator(dtype)
    c = _matmul_core(a, b, a_t, b_t, False, False, 1 if ctx.in_types[1].rank > 1 else -1, ctx, acc)
    return [_finish(c, _shape(out), dtype, ctx)]


def _accumulator(dtype: str) -> str:
    if dtype in _NARROW:
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
    dtype = _dt(out)
    acc = _accumulator(dtype)
    mm = _matmul_core(a, b, ctx.in_types[0], ctx.in_types[1], attrs["trans_a"], attrs["trans_b"], 1, ctx, acc)
    alpha, beta = attrs["alpha"], attrs["beta"]
    c = args[2] if len(args) == 3 else None

    def body(i: tir.PrimExpr, j: tir.PrimExpr) -> tir.PrimExpr:
        y = mm[i, j]
        if alpha != 1.0:
            y = y * _const(alpha, acc)
        if c is not None:
            cv = tir.Cast(acc, _bcast(c, 2, (i, j)))
            y = y + (cv if beta == 1.0 else cv * _const(beta, acc))
        return tir.Cast(dtype, y)

    return [te.compute(_shape(out), body, name=ctx.names("gemm_epilogue"))]


# ------------------------------------------------------------------------------------ convolution


def conv_tile(oc_group: int, ow: int, lanes: int, schedule: KernelSchedule, groups: int) -> tuple[int, int]:
    """Default register tile (output-channel block, output-width block) of a convolution."""
    if len(schedule.tile) >= 2:
        ocb, owb = schedule.tile[0], min(schedule.tile[1], ow)
    else:
        ocb = 2 * lanes if oc_group >= 2 * lanes else lanes
        # Accumulators = owb * ocb / lanes; ~24 of the 32 vector registers leave room for operands.
        limit = max(1, 24 * lanes // ocb)
        owb = max(d for d in range(1, min(ow, limit) + 1) if ow % d == 0)
    if groups > 1:
        # A channel block must stay inside one group.
        ocb = next(d for d in range(min(ocb, oc_group), 0, -1) if oc_group % d == 0)
    return ocb, owb


def _pack_conv(oc: int, ocb: int) -> Callable[[np.ndarray], np.ndarray]:
    """OIHW -> [ceil(O/ocb), I, H, W, ocb], zero-padded (the output-channel block innermost)."""

    def pack(w: np.ndarray) -> np.ndarray:
        blocks = -(-oc // ocb)
        padded = np.zeros((blocks * ocb,) + w.shape[1:], w.dtype)
        padded[:oc] = w
        return np.ascontiguousarray(padded.reshape((blocks, ocb) + w.shape[1:]).transpose(0, 2, 3, 4, 1))

    return pack


def _pad_input(x: te.Tensor, pads: Sequence[int], value: tir.PrimExpr | float, ctx: LowerContext,
               extra: tuple[int, int] = (0, 0)) -> te.Tensor:
    pt, pl, pb, pr = pads
    if not any(pads) and not any(extra):
        return x
    return topi.nn.pad(x, [0, 0, pt, pl], [0, 0, pb + extra[0], pr + extra[1]], pad_value=value,
                       name=ctx.names("pad_keep"))


@lowers("nn.conv2d")
def _lower_conv2d(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    x, w = args[0], args[1]
    bias = args[2] if len(args) == 3 else None
    out = ctx.out_types[0]
    dtype = _dt(out)
    acc = _accumulator(dtype)
    n, c, h, wd = _shape(ctx.in_types[0])
    oc, cg, kh, kw = _shape(ctx.in_types[1])
    groups = attrs["groups"]
    (sh, sw), (dh, dw) = attrs["strides"], attrs["dilations"]
    pads = attrs["pads"]
    ho = conv_out_size(h, kh, sh, pads[0], pads[2], dh)
    wo = conv_out_size(wd, kw, sw, pads[1], pads[3], dw)
    xp = _pad_input(x, pads, 0.0, ctx)
    og = oc // groups

    def x_at(b: tir.PrimExpr, ch: tir.PrimExpr, i: tir.PrimExpr, j: tir.PrimExpr, ri: tir.PrimExpr,
             rj: tir.PrimExpr) -> tir.PrimExpr:
        return tir.Cast(acc, xp[b, ch, i * sh + ri * dh, j * sw + rj * dw])

    def with_bias(v: tir.PrimExpr, o: tir.PrimExpr) -> tir.PrimExpr:
        return tir.Cast(dtype, v + tir.Cast(acc, bias[o]) if bias is not None else v)

    rh, rw = te.reduce_axis((0, kh), name="rh"), te.reduce_axis((0, kw), name="rw")
    if cg == 1 and groups > 1:
        # Depthwise (one input channel per group): vectorized along the output width.
        name = ctx.names("anchor_dwconv")
        ctx.set_anchor(Anchor("dwconv2d", name, (min(wo, ctx.schedule.tile[0]),) if ctx.schedule.tile else ()))
        conv = te.compute((n, oc, ho, wo), lambda b, o, i, j: te.sum(
            x_at(b, o // og, i, j, rh, rw) * tir.Cast(acc, w[o, 0, rh, rw]), axis=[rh, rw]), name=name)
        return [te.compute((n, oc, ho, wo), lambda b, o, i, j: with_bias(conv[b, o, i, j], o),
                           name=ctx.names("conv_out"))]

    ocb, owb = conv_tile(og, wo, ctx.lanes, ctx.schedule, groups)
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
    conv = te.compute((n, blocks, ho, wo, ocb), conv_body, name=name)
    return [te.compute((n, oc, ho, wo), lambda b, o, i, j: with_bias(conv[b, o // ocb, i, j, o % ocb], o),
                       name=ctx.names("conv_out"))]


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
    shape, dtype = _shape(out), _dt(out)
    (kh, kw), (sh, sw), (dh, dw) = attrs["kernel"], attrs["strides"], attrs["dilations"]
    low = tir.min_value(dtype) if not _is_float(dtype) else _const(-np.inf, dtype)
    xp = _pad_input(x, attrs["pads"], low, ctx, _pool_extra(_shape(ctx.in_types[0]), shape[2:], attrs))
    rh, rw = te.reduce_axis((0, kh), name="rh"), te.reduce_axis((0, kw), name="rw")
    return [te.compute(shape, lambda b, c, i, j: te.max(xp[b, c, i * sh + rh * dh, j * sw + rw * dw], axis=[rh, rw]),
                       name=ctx.names("max_pool"))]


@lowers("nn.avg_pool2d")
def _lower_avg_pool(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    shape, dtype = _shape(out), _dt(out)
    wide = _wide(dtype)
    h, w = _shape(ctx.in_types[0])[2:]
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = attrs["kernel"], attrs["strides"], attrs["pads"]
    xp = _pad_input(x, attrs["pads"], 0.0, ctx, _pool_extra(_shape(ctx.in_types[0]), shape[2:], attrs))
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


# ------------------------------------------------------------------------------ layout and movement


@lowers("tensor.reshape", "tensor.flatten", "tensor.squeeze", "tensor.unsqueeze")
def _lower_reshape(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    shape = _shape(ctx.out_types[0])
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
        return [te.compute(_shape(ctx.out_types[0]), lambda *i: parts[0][i], name=ctx.names("concat"))]
    return [topi.concatenate(parts, axis)]


@lowers("tensor.split")
def _lower_split(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,) = args
    axis = normalize_axis(attrs["axis"], len(x.shape))
    offsets = [0, *itertools.accumulate(attrs["sizes"])]

    def piece(t: TensorType, off: int) -> te.Tensor:
        return te.compute(_shape(t), lambda *i: x[i[:axis] + (i[axis] + off,) + i[axis + 1:]],
                          name=ctx.names("split"))

    return [piece(t, off) for t, off in zip(ctx.out_types, offsets)]


@lowers("tensor.slice")
def _lower_slice(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,) = args
    in_shape = _shape(ctx.in_types[0])
    rank = len(in_shape)
    starts, ends = attrs["starts"], attrs["ends"]
    axes = normalize_axes(attrs["axes"] or range(len(starts)), rank)
    steps = attrs["steps"] or (1,) * len(starts)
    begin, step = [0] * rank, [1] * rank
    for a, s, e, st in zip(axes, starts, ends, steps):
        begin[a] = slice_bounds(in_shape[a], s, e, st)[0]
        step[a] = st
    return [te.compute(_shape(ctx.out_types[0]), lambda *i: x[tuple(b + s * v for b, s, v in zip(begin, step, i))],
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
        safe = tir.Cast("int64", tir.max(tir.min(wrapped, _const(dim - 1, "int64")), _const(0, "int64")))
        return data[i[:axis] + (safe,) + i[axis + irank:]]

    return [te.compute(_shape(ctx.out_types[0]), body, name=ctx.names("gather"))]


@lowers("tensor.expand")
def _lower_expand(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    out = ctx.out_types[0]
    return [_elementwise(ctx.names("expand"), _shape(out), args, _dt(out), lambda v: v)]


@lowers("tensor.tile")
def _lower_tile(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,) = args
    dims = [int(d) for d in x.shape]
    return [te.compute(_shape(ctx.out_types[0]), lambda *i: x[tuple(v % d for v, d in zip(i, dims))],
                       name=ctx.names("tile"))]


@lowers("tensor.pad")
def _lower_pad(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    dims = _shape(ctx.in_types[0])
    rank, pads, mode = len(dims), attrs["pads"], attrs["mode"]
    dtype = _dt(out)
    value = _const(np.asarray(attrs["value"]).astype(out.dtype.numpy).item(), dtype)

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

    return [te.compute(_shape(out), body, name=ctx.names("pad"))]


@lowers("tensor.trilu")
def _lower_trilu(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    (x,), out = args, ctx.out_types[0]
    k, upper = attrs["k"], attrs["upper"]
    zero = _const(0, _dt(out))

    def body(*i: tir.PrimExpr) -> tir.PrimExpr:
        row, col = i[-2], i[-1]
        keep = col - row >= k if upper else col - row <= k
        return tir.Select(keep, x[i], zero)

    return [te.compute(_shape(out), body, name=ctx.names("trilu"))]


def lower_node(args: Sequence[te.Tensor], attrs: Mapping[str, Any], ctx: LowerContext) -> list[te.Tensor]:
    """``lower_op`` for ``ctx.op``, with TVM's own errors turned into LoweringError."""
    try:
        return lower_op(ctx.op, args, attrs, ctx)
    except LoweringError:
        raise
    except Exception as e:  # noqa: BLE001 - TVM raises many types; any of them means "cannot lower"
        raise LoweringError(f"{ctx.op}: {type(e).__name__}: {_last_line(e)}") from e


def _last_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return (lines[-1] if lines else "")[:300]
