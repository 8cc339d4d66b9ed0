"""ATen op -> IR converters, one function per family, keyed by the overload name (``aten.add.Tensor``).

A converter takes the ``ImportContext`` (the node, type helpers, emitters) and the node's arguments
bound by schema name, and returns the node's result: a ``Value``, a tuple for multi-result ops
(``None`` for results the IR does not produce, e.g. pooling indices), or a Python scalar for shape
arithmetic. Arguments that were FX nodes arrive already converted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..ir.graph import Value
from ..ir.types import DType
from .torch_import import ImportContext, to_torch_dtype

Args = dict[str, Any]
Converter = Callable[[ImportContext, Args], Any]

CONVERTERS: dict[str, Converter] = {}
"""Every ATen overload the frontend converts, by name."""

IGNORED = frozenset({
    "aten._assert_tensor_metadata.default", "aten._assert_scalar.default", "aten._assert_async.default",
    "aten._assert_async.msg", "aten.sym_constrain_range.default", "aten.sym_constrain_range_for_size.default",
})
"""Runtime assertions torch.export leaves in the graph; they produce nothing the IR needs."""

INT64_MAX = 2**63 - 1


def converts(*names: str) -> Callable[[Converter], Converter]:
    """Register the decorated function as the converter of the named ATen overloads."""

    def deco(fn: Converter) -> Converter:
        for name in names:
            if name in CONVERTERS:
                raise ValueError(f"{name} converted twice")
            CONVERTERS[name] = fn
        return fn

    return deco


def _norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _pair(x: int | Sequence[int], n: int = 2) -> tuple[int, ...]:
    if isinstance(x, int):
        return (x,) * n
    vals = tuple(int(v) for v in x)
    return vals * n if len(vals) == 1 else vals


# --- pass-through and scalars -------------------------------------------------------------------


@converts("aten.clone.default", "aten.alias.default", "aten.detach.default", "aten.detach_.default",
          "aten.lift_fresh_copy.default", "aten.contiguous.default")
def _identity(ctx: ImportContext, a: Args) -> Any:
    return a["self"]


@converts("aten.dropout.default", "aten.native_dropout.default")
def _dropout(ctx: ImportContext, a: Args) -> Any:
    # Exported in eval mode, dropout is the identity; train=True would need random numbers.
    if a["train"]:
        raise ctx.unsupported("dropout in training mode")
    x = a["input"]
    return (x, None) if "native" in ctx.target else x


@converts("aten._to_copy.default", "aten.to.dtype", "aten.to.dtype_layout", "aten._to_dim_order_copy.default")
def _to(ctx: ImportContext, a: Args) -> Any:
    return ctx.cast(a["self"], ctx.out_type().dtype)


# --- constants ----------------------------------------------------------------------------------


@converts("aten.full.default", "aten.zeros.default", "aten.ones.default", "aten.empty.memory_format",
          "aten.new_full.default", "aten.new_zeros.default", "aten.new_ones.default", "aten.new_empty.default")
def _full(ctx: ImportContext, a: Args) -> Any:
    value = a.get("fill_value", 1 if "ones" in ctx.target else 0)
    return ctx.full(value, ctx.out_type())


@converts("aten.full_like.default", "aten.zeros_like.default", "aten.ones_like.default", "aten.empty_like.default")
def _full_like(ctx: ImportContext, a: Args) -> Any:
    value = a.get("fill_value", 1 if "ones" in ctx.target else 0)
    return ctx.full(value, ctx.out_type(), like=a["self"])


@converts("aten.scalar_tensor.default")
def _scalar_tensor(ctx: ImportContext, a: Args) -> Any:
    return ctx.const(a["s"], ctx.out_type().dtype)


@converts("aten.arange.default", "aten.arange.start", "aten.arange.start_step")
def _arange(ctx: ImportContext, a: Args) -> Any:
    bounds = [a.get("start", 0), a["end"], a.get("step", 1)]
    if not all(isinstance(v, (int, float)) for v in bounds):
        raise ctx.unsupported(f"arange with symbolic bounds {bounds}")
    out = ctx.out_type()
    data = torch.arange(*bounds, dtype=to_torch_dtype(out.dtype))
    return ctx.const(data.numpy(), out.dtype)


# --- elementwise --------------------------------------------------------------------------------

_UNARY = {
    "relu": "nn.relu", "sigmoid": "nn.sigmoid", "tanh": "math.tanh", "exp": "math.exp", "log": "math.log",
    "sqrt": "math.sqrt", "rsqrt": "math.rsqrt", "reciprocal": "math.reciprocal", "erf": "math.erf",
    "neg": "math.neg", "abs": "math.abs", "sin": "math.sin", "cos": "math.cos", "floor": "math.floor",
    "ceil": "math.ceil", "round": "math.round", "sign": "math.sign", "silu": "nn.silu", "mish": "nn.mish",
    "hardswish": "nn.hard_swish", "selu": "nn.selu", "logical_not": "logic.not",
}


def _unary(ir_op: str) -> Converter:
    def convert(ctx: ImportContext, a: Args) -> Any:
        x = a["self"]
        # Integer tensors promote to float for transcendental ops in torch (e.g. sqrt of an int).
        return ctx.op(ir_op, ctx.cast(x, ctx.out_type().dtype) if ir_op != "logic.not" else ctx.cast(x, DType.bool))

    return convert


for _name, _ir in _UNARY.items():
    converts(f"aten.{_name}.default")(_unary(_ir))


@converts("aten.bitwise_not.default")
def _bitwise_not(ctx: ImportContext, a: Args) -> Any:
    if a["self"].type.dtype != DType.bool:
        raise ctx.unsupported("bitwise not of an integer tensor")
    return ctx.op("logic.not", a["self"])


@converts("aten.gelu.default")
def _gelu(ctx: ImportContext, a: Args) -> Any:
    return ctx.op("nn.gelu", a["self"], approximate=a["approximate"])


@converts("aten.hardtanh.default")
def _hardtanh(ctx: ImportContext, a: Args) -> Any:
    return ctx.op("math.clip", a["self"], min=float(a["min_val"]), max=float(a["max_val"]))


@converts("aten.relu6.default")
def _relu6(ctx: ImportContext, a: Args) -> Any:
    return ctx.op("math.clip", a["self"], min=0.0, max=6.0)


@converts("aten.clamp.default", "aten.clamp_min.default", "aten.clamp_max.default")
def _clamp(ctx: ImportContext, a: Args) -> Any:
    attrs = {k: float(a[k]) for k in ("min", "max") if a.get(k) is not None}
    return ctx.op("math.clip", ctx.cast(a["self"], ctx.out_type().dtype), **attrs)


@converts("aten.hardsigmoid.default")
def _hardsigmoid(ctx: ImportContext, a: Args) -> Any:
    # torch: relu6(x + 3) / 6 == clip(x / 6 + 0.5, 0, 1)
    return ctx.op("nn.hard_sigmoid", a["self"], alpha=1.0 / 6.0, beta=0.5)


@converts("aten.leaky_relu.default")
def _leaky_relu(ctx: ImportContext, a: Args) -> Any:
    return ctx.op("nn.leaky_relu", a["self"], alpha=float(a["negative_slope"]))


@converts("aten.elu.default")
def _elu(ctx: ImportContext, a: Args) -> Any:
    if a["scale"] != 1 or a["input_scale"] != 1:
        raise ctx.unsupported("elu with scale or input_scale other than 1")
    return ctx.op("nn.elu", a["self"], alpha=float(a["alpha"]))


@converts("aten.softplus.default")
def _softplus(ctx: ImportContext, a: Args) -> Any:
    # torch returns x where beta * x > threshold; log1p(exp(x)) differs from x there by < exp(-20).
    if a["beta"] != 1 or a["threshold"] < 20:
        raise ctx.unsupported("softplus with beta != 1 or threshold < 20")
    return ctx.op("nn.softplus", a["self"])


@converts("aten.prelu.default")
def _prelu(ctx: ImportContext, a: Args) -> Any:
    x, w = a["self"], a["weight"]
    # torch applies one slope per channel (axis 1); the IR broadcasts numpy-style from the right.
    if x.type.rank > 2 and w.type.rank == 1 and w.type.shape[0] != 1:
        w = ctx.op("tensor.unsqueeze", w, axes=list(range(1, x.type.rank - 1)))
    return ctx.op("nn.prelu", x, w)


# --- broadcasting arithmetic and comparisons ----------------------------------------------------

_ARITH = {"add": "math.add", "sub": "math.sub", "mul": "math.mul", "div": "math.div", "pow": "math.pow",
          "maximum": "math.max", "minimum": "math.min"}


def _binary(ir_op: str, reverse: bool = False) -> Converter:
    def convert(ctx: ImportContext, a: Args) -> Any:
        dtype = ctx.out_type().dtype
        x, y = a["self"], a["other"] if "other" in a else a["exponent"]
        if reverse:
            x, y = y, x
        alpha = a.get("alpha", 1)
        if alpha != 1:  # alpha scales the second operand: x + alpha * y, and other - alpha * self
            y = ctx.op("math.mul", ctx.tensor(y, dtype), ctx.const(alpha, dtype))
        return ctx.op(ir_op, ctx.tensor(x, dtype), ctx.tensor(y, dtype))

    return convert


for _name, _ir in _ARITH.items():
    _overloads = getattr(torch.ops.aten, _name).overloads()
    converts(*(f"aten.{_name}.{o}" for o in ("Tensor", "Scalar", "default", "Tensor_Scalar", "Tensor_Tensor")
               if o in _overloads))(_binary(_ir))
converts("aten.rsub.Scalar", "aten.rsub.Tensor")(_binary("math.sub", reverse=True))


@converts("aten.div.Tensor_mode", "aten.div.Scalar_mode")
def _div_mode(ctx: ImportContext, a: Args) -> Any:
    dtype, mode = ctx.out_type().dtype, a["rounding_mode"]
    x, y = ctx.tensor(a["self"], dtype), ctx.tensor(a["other"], dtype)
    if mode is None:
        return ctx.op("math.div", x, y)
    if dtype.is_float:
        q = ctx.op("math.div", x, y)
        if mode == "floor":
            return ctx.op("math.floor", q)
        # trunc(q) = sign(q) * floor(|q|)
        return ctx.op("math.mul", ctx.op("math.sign", q), ctx.op("math.floor", ctx.op("math.abs", q)))
    if mode == "trunc":
        return ctx.op("math.div", x, y)  # IR integer division truncates
    # floor(x / y) = (x - x mod y) / y, the division exact; mod takes the divisor's sign like floor.
    return ctx.op("math.div", ctx.op("math.sub", x, ctx.op("math.mod", x, y)), y)


_COMPARE = {"eq": "cmp.equal", "lt": "cmp.less", "le": "cmp.less_equal", "gt": "cmp.greater",
            "ge": "cmp.greater_equal", "ne": "cmp.equal"}


def _compare(name: str) -> Converter:
    def convert(ctx: ImportContext, a: Args) -> Any:
        x, y = a["self"], a["other"]
        dtype = ctx.result_dtype(x, y)
        out = ctx.op(_COMPARE[name], ctx.tensor(x, dtype), ctx.tensor(y, dtype))
        return ctx.op("logic.not", out) if name == "ne" else out

    return convert


for _name in _COMPARE:
    converts(f"aten.{_name}.Tensor", f"aten.{_name}.Scalar")(_compare(_name))

_LOGIC = {"logical_and": "logic.and", "logical_or": "logic.or", "logical_xor": "logic.xor",
          "bitwise_and": "logic.and", "bitwise_or": "logic.or", "bitwise_xor": "logic.xor"}


def _logic(name: str) -> Converter:
    def convert(ctx: ImportContext, a: Args) -> Any:
        x, y = a["self"], a["other"]
        if name.startswith("bitwise") and any(isinstance(v, Value) and v.type.dtype != DType.bool for v in (x, y)):
            raise ctx.unsupported("bitwise ops on integer tensors")
        return ctx.op(_LOGIC[name], ctx.tensor(x, DType.bool), ctx.tensor(y, DType.bool))

    return convert


for _name in _LOGIC:
    converts(*(f"aten.{_name}.{o}" for o in ("default", "Tensor")
               if o in getattr(torch.ops.aten, _name).overloads()))(_logic(_name))


@converts("aten.where.self")
def _where(ctx: ImportContext, a: Args) -> Any:
    dtype = ctx.out_type().dtype
    cond = ctx.cast(a["condition"], DType.bool)
    return ctx.op("tensor.where", cond, ctx.tensor(a["self"], dtype), ctx.tensor(a["other"], dtype))


@converts("aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def _masked_fill(ctx: ImportContext, a: Args) -> Any:
    x = a["self"]
    fill = ctx.tensor(a["value"], x.type.dtype)
    return ctx.op("tensor.where", ctx.cast(a["mask"], DType.bool), fill, x)


# --- linear algebra -----------------------------------------------------------------------------


@converts("aten.mm.default", "aten.bmm.default", "aten.matmul.default")
def _matmul(ctx: ImportContext, a: Args) -> Any:
    return ctx.op("nn.matmul", a["self"], a.get("mat2", a.get("other")))


@converts("aten.addmm.default")
def _addmm(ctx: ImportContext, a: Args) -> Any:
    return ctx.op("nn.gemm", a["mat1"], a["mat2"], a["self"], alpha=float(a["alpha"]), beta=float(a["beta"]))


@converts("aten.linear.default")
def _linear(ctx: ImportContext, a: Args) -> Any:
    x, w, bias = a["input"], a["weight"], a["bias"]
    if x.type.rank == 2:
        inputs = [x, w] + ([bias] if bias is not None else [])
        return ctx.op("nn.gemm", *inputs, trans_b=True)
    out = ctx.op("nn.matmul", x, ctx.op("tensor.transpose", w, perm=[1, 0]) if w.type.rank == 2 else w)
    return out if bias is None else ctx.op("math.add", out, bias)


@converts("aten.scaled_dot_product_attention.default")
def _sdpa(ctx: ImportContext, a: Args) -> Any:
    q, k, v, mask = a["query"], a["key"], a["value"], a["attn_mask"]
    if a["dropout_p"] != 0 or a.get("enable_gqa"):
        raise ctx.unsupported("attention with dropout or grouped-query heads")
    rank, dtype = q.type.rank, q.type.dtype
    scale = a["scale"] if a["scale"] is not None else 1.0 / math.sqrt(_static(ctx, q.type.shape[-1]))
    kt = ctx.op("tensor.transpose", k, perm=list(range(rank - 2)) + [rank - 1, rank - 2])
    scores = ctx.op("math.mul", ctx.op("nn.matmul", q, kt), ctx.const(scale, dtype))
    if a["is_causal"]:
        length, source = _static(ctx, q.type.shape[-2]), _static(ctx, k.type.shape[-2])
        causal = np.tril(np.ones((length, source), dtype=bool))
        mask = ctx.const(np.where(causal, 0.0, -np.inf), dtype)
    if mask is not None:
        if mask.type.dtype == DType.bool:
            scores = ctx.op("tensor.where", mask, scores, ctx.const(-np.inf, dtype))
        else:
            scores = ctx.op("math.add", scores, ctx.cast(mask, dtype))
    return ctx.op("nn.matmul", ctx.op("nn.softmax", scores, axis=-1), v)


def _static(ctx: ImportContext, d: Any) -> int:
    if not isinstance(d, int):
        raise ctx.unsupported(f"dimension {d} must be static here")
    return d


# --- convolution, normalization, pooling --------------------------------------------------------


@converts("aten.convolution.default")
def _convolution(ctx: ImportContext, a: Args) -> Any:
    x, w, bias = a["input"], a["weight"], a["bias"]
    if a["transposed"]:
        raise ctx.unsupported("transposed convolution")
    rank = x.type.rank
    if rank not in (3, 4):
        raise ctx.unsupported(f"{rank - 2}-D convolution (only 1-D and 2-D are supported)")
    stride, padding, dilation = (list(_pair(a[k], rank - 2)) for k in ("stride", "padding", "dilation"))
    if rank == 3:
        # A 1-D convolution is a 2-D one over a height-1 image.
        x, w = ctx.op("tensor.unsqueeze", x, axes=[2]), ctx.op("tensor.unsqueeze", w, axes=[2])
        stride, padding, dilation = [1] + stride, [0] + padding, [1] + dilation
    inputs = [x, w] + ([bias] if bias is not None else [])
    out = ctx.op("nn.conv2d", *inputs, strides=stride, pads=padding + padding, dilations=dilation,
                 groups=int(a["groups"]))
    return ctx.op("tensor.squeeze", out, axes=[2]) if rank == 3 else out


def _ones_or(ctx: ImportContext, v: Value | None, n: Any, fill: float, dtype: DType) -> Value:
    return v if v is not None else ctx.const(np.full((_static(ctx, n),), fill), dtype)


@converts("aten._native_batch_norm_legit_no_training.default")
def _batch_norm(ctx: ImportContext, a: Args) -> Any:
    x = a["input"]
    c, dtype = x.type.shape[1], x.type.dtype
    scale, bias = _ones_or(ctx, a["weight"], c, 1.0, dtype), _ones_or(ctx, a["bias"], c, 0.0, dtype)
    out = ctx.op("nn.batch_norm", x, scale, bias, a["running_mean"], a["running_var"], epsilon=float(a["eps"]))
    return (out, None, None)


@converts("aten.native_layer_norm.default")
def _layer_norm(ctx: ImportContext, a: Args) -> Any:
    x, shape = a["input"], list(a["normalized_shape"])
    dtype = x.type.dtype
    scale = a["weight"] if a["weight"] is not None else ctx.const(np.ones(shape), dtype)
    inputs = [x, scale] + ([a["bias"]] if a["bias"] is not None else [])
    out = ctx.op("nn.layer_norm", *inputs, axis=-len(shape), epsilon=float(a["eps"]))
    return (out, None, None)


@converts("aten._softmax.default", "aten._log_softmax.default")
def _softmax(ctx: ImportContext, a: Args) -> Any:
    name = "nn.log_softmax" if "log" in ctx.target else "nn.softmax"
    return ctx.op(name, ctx.cast(a["self"], ctx.out_type().dtype), axis=int(a["dim"]))


def _pool_args(a: Args) -> tuple[list[int], list[int], list[int]]:
    kernel = list(_pair(a["kernel_size"]))
    stride = list(_pair(a["stride"])) if a["stride"] else kernel
    padding = list(_pair(a["padding"]))
    return kernel, stride, padding + padding


@converts("aten.max_pool2d_with_indices.default")
def _max_pool(ctx: ImportContext, a: Args) -> Any:
    kernel, stride, pads = _pool_args(a)
    out = ctx.op("nn.max_pool2d", a["self"], kernel=kernel, strides=stride, pads=pads,
                 dilations=list(_pair(a["dilation"])), ceil_mode=bool(a["ceil_mode"]))
    return (out, None)


@converts("aten.avg_pool2d.default")
def _avg_pool(ctx: ImportContext, a: Args) -> Any:
    if a["divisor_override"] is not None:
        raise ctx.unsupported("avg_pool2d with divisor_override")
    kernel, stride, pads = _pool_args(a)
    return ctx.op("nn.avg_pool2d", a["self"], kernel=kernel, strides=stride, pads=pads,
                  ceil_mode=bool(a["ceil_mode"]), count_include_pad=bool(a["count_include_pad"]))


@converts("aten.avg_pool3d.default")
def _avg_pool3d(ctx: ImportContext, a: Args) -> Any:
    # F.local_response_norm pools over channels with a (size, 1, 1) window; with the last two axes
    # untouched this is a 2-D pool over (depth, height*width).
    x = a["self"]
    kernel = _pair(a["kernel_size"], 3)
    stride = _pair(a["stride"], 3) if a["stride"] else kernel
    padding = _pair(a["padding"], 3)
    if kernel[1:] != (1, 1) or stride[1:] != (1, 1) or padding[1:] != (0, 0) or a["divisor_override"] is not None:
        raise ctx.unsupported("avg_pool3d other than a (k, 1, 1) window with unit stride in height and width")
    n, c, d, h, w = x.type.shape
    hw = h * w if isinstance(h, int) and isinstance(w, int) else None
    if hw is None:
        raise ctx.unsupported("avg_pool3d over symbolic height or width")
    flat = ctx.reshape(x, (n, c, d, hw))
    pooled = ctx.op("nn.avg_pool2d", flat, kernel=[kernel[0], 1], strides=[stride[0], 1],
                    pads=[padding[0], 0, padding[0], 0], ceil_mode=bool(a["ceil_mode"]),
                    count_include_pad=bool(a["count_include_pad"]))
    return ctx.reshape(pooled, ctx.out_type().shape)


@converts("aten.adaptive_avg_pool2d.default", "aten._adaptive_avg_pool2d.default")
def _adaptive_avg_pool(ctx: ImportContext, a: Args) -> Any:
    x, size = a["self"], _pair(a["output_size"])
    if size == (1, 1):
        return ctx.op("nn.global_avg_pool", x)
    h, w = x.type.shape[-2:]
    if not (isinstance(h, int) and isinstance(w, int) and h % size[0] == 0 and w % size[1] == 0):
        raise ctx.unsupported(f"adaptive average pooling of {x.type} to {list(size)} (sizes must divide)")
    kernel = [h // size[0], w // size[1]]
    return ctx.op("nn.avg_pool2d", x, kernel=kernel, strides=kernel)


# --- reductions ---------------------------------------------------------------------------------


def _reduce(ir_op: str) -> Converter:
    def convert(ctx: ImportContext, a: Args) -> Any:
        x = a["self"]
        dims = a.get("dim")
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        keep = bool(a.get("keepdim", False))
        axes = sorted(_norm_axis(d, x.type.rank) for d in dims)
        x = ctx.cast(x, ctx.out_type().dtype)
        if ir_op == "reduce.mean" and x.type.rank == 4 and axes == [2, 3] and keep:
            return ctx.op("nn.global_avg_pool", x)
        return ctx.op(ir_op, x, axes=axes, keepdims=keep)

    return convert


converts("aten.mean.dim", "aten.mean.default")(_reduce("reduce.mean"))
converts("aten.sum.dim_IntList", "aten.sum.default")(_reduce("reduce.sum"))
converts("aten.amax.default")(_reduce("reduce.max"))
converts("aten.amin.default")(_reduce("reduce.min"))
converts("aten.prod.dim_int", "aten.prod.default")(_reduce("reduce.prod"))


@converts("aten.max.dim", "aten.min.dim")
def _max_dim(ctx: ImportContext, a: Args) -> Any:
    kind = "max" if "max" in ctx.target else "min"
    x, axis, keep = a["self"], _norm_axis(a["dim"], a["self"].type.rank), bool(a["keepdim"])
    values = ctx.op(f"reduce.{kind}", x, axes=[axis], keepdims=keep)
    # torch returns the first index of the extreme value, as the IR's default does.
    return values, ctx.op(f"reduce.arg{kind}", x, axis=axis, keepdims=keep)


@converts("aten.argmax.default", "aten.argmin.default")
def _argmax(ctx: ImportContext, a: Args) -> Any:
    kind = "argmax" if "argmax" in ctx.target else "argmin"
    x, dim = a["self"], a["dim"]
    if dim is None:
        if not x.type.is_static:
            raise ctx.unsupported(f"{kind} over all elements of {x.type}")
        return ctx.op(f"reduce.{kind}", ctx.reshape(x, (x.type.numel(),)), axis=0, keepdims=False)
    return ctx.op(f"reduce.{kind}", x, axis=_norm_axis(dim, x.type.rank), keepdims=bool(a["keepdim"]))


# --- layout and data movement -------------------------------------------------------------------


@converts("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default", "aten.view_copy.default")
def _view(ctx: ImportContext, a: Args) -> Any:
    return ctx.reshape(a["self"], ctx.out_type().shape)


@converts("aten.permute.default", "aten.permute_copy.default")
def _permute(ctx: ImportContext, a: Args) -> Any:
    x = a["self"]
    perm = [_norm_axis(d, x.type.rank) for d in a["dims"]]
    return x if perm == sorted(perm) else ctx.op("tensor.transpose", x, perm=perm)


@converts("aten.transpose.int")
def _transpose(ctx: ImportContext, a: Args) -> Any:
    x = a["self"]
    rank = x.type.rank
    d0, d1 = _norm_axis(a["dim0"], rank), _norm_axis(a["dim1"], rank)
    if d0 == d1:
        return x
    perm = list(range(rank))
    perm[d0], perm[d1] = d1, d0
    return ctx.op("tensor.transpose", x, perm=perm)


@converts("aten.t.default")
def _t(ctx: ImportContext, a: Args) -> Any:
    x = a["self"]
    return x if x.type.rank < 2 else ctx.op("tensor.transpose", x, perm=[1, 0])


@converts("aten.expand.default", "aten.expand_copy.default")
def _expand(ctx: ImportContext, a: Args) -> Any:
    x, out = a["self"], ctx.out_type()
    if out.shape == x.type.shape:
        return x
    offset = out.rank - x.type.rank
    shape: list[int] = []
    for i, d in enumerate(out.shape):
        if isinstance(d, int):
            shape.append(d)
        elif i >= offset and x.type.shape[i - offset] == d:
            shape.append(1)  # the input already has this symbolic dim; broadcasting keeps it
        else:
            raise ctx.unsupported(f"expand of {x.type} to {out}: a dim of size 1 cannot grow to a symbol")
    return ctx.op("tensor.expand", x, shape=shape)


@converts("aten.cat.default")
def _cat(ctx: ImportContext, a: Args) -> Any:
    out = ctx.out_type()
    # torch skips 1-D empty tensors in cat (legacy behaviour).
    parts = [ctx.cast(t, out.dtype) for t in a["tensors"] if t.type.shape != (0,)]
    if len(parts) == 1:
        return parts[0]
    return ctx.op("tensor.concat", *parts, axis=_norm_axis(a["dim"], out.rank))


@converts("aten.split_with_sizes.default", "aten.split.Tensor", "aten.split_with_sizes_copy.default",
          "aten.split_copy.Tensor")
def _split(ctx: ImportContext, a: Args) -> Any:
    x = a["self"]
    axis = _norm_axis(a["dim"], x.type.rank)
    outs = [ctx.out_type(i) for i in range(len(ctx.meta_val))]
    sizes = [t.shape[axis] for t in outs]
    if not all(isinstance(s, int) for s in sizes):
        raise ctx.unsupported("split along a symbolic dim")
    if len(sizes) == 1:
        return (x,)
    return ctx.ops("tensor.split", [x], {"axis": axis, "sizes": sizes})


@converts("aten.slice.Tensor", "aten.slice_copy.Tensor")
def _slice(ctx: ImportContext, a: Args) -> Any:
    x = a["self"]
    axis = _norm_axis(a["dim"], x.type.rank)
    start = a["start"] if a["start"] is not None else 0
    end = a["end"] if a["end"] is not None else INT64_MAX
    step = a["step"]
    if not all(isinstance(v, int) for v in (start, end, step)):
        raise ctx.unsupported(f"slice with symbolic bounds [{start}:{end}:{step}]")
    size = x.type.shape[axis]
    if isinstance(size, int):
        # Clamp as torch does, so the attributes read plainly (no INT64_MAX in dumps).
        start = min(max(start + size if start < 0 else start, 0), size)
        end = min(max(end + size if end < 0 else end, 0), size)
        if start == 0 and end == size and step == 1:
            return x
    elif start == 0 and end == INT64_MAX and step == 1:
        return x
    return ctx.op("tensor.slice", x, starts=[start], ends=[end], axes=[axis], steps=[step])


@converts("aten.select.int", "aten.select_copy.int")
def _select(ctx: ImportContext, a: Args) -> Any:
    x = a["self"]
    index = a["index"]
    if not isinstance(index, int):
        raise ctx.unsupported("select with a symbolic index")
    # A 0-d index makes gather drop the axis, exactly like select.
    return ctx.op("tensor.gather", x, ctx.const(index, DType.i64), axis=_norm_axis(a["dim"], x.type.rank))


@converts("aten.index_select.default")
def _index_select(ctx: ImportContext, a: Args) -> Any:
    x = a["self"]
    return ctx.op("tensor.gather", x, a["index"], axis=_norm_axis(a["dim"], x.type.rank))


@converts("aten.index.Tensor")
def _index(ctx: ImportContext, a: Args) -> Any:
    x, indices = a["self"], list(a["indices"])
    used = [i for i, t in enumerate(indices) if t is not None]
    if len(used) != 1:
        raise ctx.unsupported("advanced indexing with more than one index tensor")
    index = indices[used[0]]
    if index.type.dtype == DType.bool:
        raise ctx.unsupported("boolean mask indexing (data-dependent shape)")
    return ctx.op("tensor.gather", x, index, axis=used[0])


@converts("aten.embedding.default")
def _embedding(ctx: ImportContext, a: Args) -> Any:
    return ctx.op("tensor.gather", a["weight"], a["indices"], axis=0)


@converts("aten.squeeze.default", "aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze_copy.dims")
def _squeeze(ctx: ImportContext, a: Args) -> Any:
    x = a["self"]
    rank = x.type.rank
    dims = a.get("dim")
    wanted = range(rank) if dims is None else ([dims] if isinstance(dims, int) else dims)
    # torch leaves a requested dim alone unless its size is 1.
    axes = sorted({_norm_axis(d, rank) for d in wanted if x.type.shape[_norm_axis(d, rank)] == 1})
    return ctx.op("tensor.squeeze", x, axes=axes) if axes else x


@converts("aten.unsqueeze.default", "aten.unsqueeze_copy.default")
def _unsqueeze(ctx: ImportContext, a: Args) -> Any:
    x = a["self"]
    return ctx.op("tensor.unsqueeze", x, axes=[_norm_axis(a["dim"], x.type.rank + 1)])


@converts("aten.flatten.using_ints")
def _flatten(ctx: ImportContext, a: Args) -> Any:
    return ctx.reshape(a["self"], ctx.out_type().shape)


@converts("aten.constant_pad_nd.default")
def _constant_pad(ctx: ImportContext, a: Args) -> Any:
    return _pad(ctx, a["self"], list(a["pad"]), "constant", float(a["value"]))


@converts("aten.reflection_pad2d.default", "aten.replication_pad2d.default",
          "aten.reflection_pad1d.default", "aten.replication_pad1d.default")
def _mode_pad(ctx: ImportContext, a: Args) -> Any:
    mode = "reflect" if "reflection" in ctx.target else "edge"
    return _pad(ctx, a["self"], list(a["padding"]), mode, 0.0)


def _pad(ctx: ImportContext, x: Value, pad: list[int], mode: str, value: float) -> Value:
    if any(p < 0 for p in pad):
        raise ctx.unsupported("negative padding")
    rank = x.type.rank
    # torch lists (begin, end) pairs from the last axis backwards; the IR wants begins then ends.
    begins, ends = [0] * rank, [0] * rank
    for i in range(len(pad) // 2):
        begins[rank - 1 - i], ends[rank - 1 - i] = pad[2 * i], pad[2 * i + 1]
    if not any(begins) and not any(ends):
        return x
    attrs: dict[str, Any] = {"pads": begins + ends, "mode": mode}
    if mode == "constant":
        attrs["value"] = value
    return ctx.op("tensor.pad", x, **attrs)


@converts("aten.tril.default", "aten.triu.default")
def _trilu(ctx: ImportContext, a: Args) -> Any:
    upper = "triu" in ctx.target
    return ctx.op("tensor.trilu", a["self"], upper=upper, k=int(a["diagonal"]))


@converts("aten.repeat.default")
def _repeat(ctx: ImportContext, a: Args) -> Any:
    x, reps = a["self"], list(a["repeats"])
    if len(reps) > x.type.rank:
        x = ctx.reshape(x, (1,) * (len(reps) - x.type.rank) + x.type.shape)
    return ctx.op("tensor.tile", x, repeats=reps)
