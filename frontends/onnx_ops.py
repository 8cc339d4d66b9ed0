"""ONNX op -> IR op converters, one small function per ONNX op (or family), kept in ``CONVERTERS``.

A converter gets a ``NodeCtx`` and returns the node's results in order: IR values, or values known
at import time (arrays, symbolic shapes). Semantics are those of ONNX opset 18 and later; older
models are upgraded to opset 18 before conversion (see ``onnx_import``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
from onnx import numpy_helper

from ..ir.graph import Value
from ..ir.types import Dim, DType
from .errors import UnsupportedOpError
from .onnx_shapes import INT64_MAX, Known, SymShape, as_dims, expand_target, reshape_target
from .onnx_types import elem_type_name, ir_dtype

if TYPE_CHECKING:
    import onnx

    from .onnx_import import Importer

Result = Value | Known


class NodeCtx:
    """What a converter sees of one ONNX node: attributes, operands, and the graph being built."""

    def __init__(self, imp: Importer, node: onnx.NodeProto, ins: Sequence[Value | Known | None],
                 attrs: dict[str, Any]) -> None:
        self.imp = imp
        self.node = node
        self.ins = list(ins)
        self.attrs = attrs
        self.b = imp.b

    def has(self, i: int) -> bool:
        """Whether optional operand ``i`` is present."""
        return i < len(self.ins) and self.ins[i] is not None

    def value(self, i: int) -> Value:
        """Operand ``i`` as an IR value (a known constant becomes a ``const`` node)."""
        return self.imp.value_of(self.node.input[i])

    def known(self, i: int) -> Known | None:
        """Operand ``i`` when it is known at import time, else None."""
        x = self.ins[i] if i < len(self.ins) else None
        return None if x is None or isinstance(x, Value) else x

    def const(self, i: int) -> np.ndarray | None:
        """Operand ``i`` when it is concrete data, else None."""
        x = self.known(i)
        return x if isinstance(x, np.ndarray) else None

    def dims(self, i: int, what: str) -> list[Dim]:
        """Operand ``i`` as a list of ints and symbols; it must be known at import time."""
        k = self.known(i)
        dims = as_dims(k) if k is not None else None
        if dims is None:
            self.unsupported(f"{what} (input {i}) must be computable at import time")
        return dims

    def ints(self, i: int, what: str) -> list[int]:
        """Operand ``i`` as a list of ints; it must be a constant."""
        dims = self.dims(i, what)
        if any(isinstance(d, str) for d in dims):
            self.unsupported(f"{what} {dims} depends on symbolic dims")
        return [int(d) for d in dims]

    def scalar(self, i: int, what: str) -> float:
        """Operand ``i`` as one number; it must be a constant."""
        c = self.const(i)
        if c is None or c.size != 1:
            self.unsupported(f"{what} (input {i}) must be a constant scalar")
        return float(c.reshape(-1)[0])

    def attr(self, name: str, default: Any = None) -> Any:
        """ONNX attribute ``name`` (``default`` when absent)."""
        return self.attrs.get(name, default)

    def op(self, name: str, *inputs: Value, **attrs: Any) -> Value:
        """Add a one-result IR node."""
        (out,) = self.b.op(name, inputs, attrs)
        return out

    def ops(self, name: str, inputs: Sequence[Value], **attrs: Any) -> tuple[Value, ...]:
        """Add an IR node and return all its results."""
        return self.b.op(name, inputs, attrs)

    def constant(self, data: Any, dtype: DType) -> Value:
        """A new ``const`` node holding ``data`` as ``dtype``."""
        return self.b.const(np.asarray(data, dtype=dtype.numpy))

    def output_used(self, i: int) -> bool:
        """Whether result ``i`` of this node is read by anything."""
        return i < len(self.node.output) and self.imp.is_used(self.node.output[i])

    def unsupported(self, reason: str) -> NoReturn:
        """Raise UnsupportedOpError naming this node."""
        raise UnsupportedOpError(reason, node_name=self.node.name or None, op_type=self.node.op_type)


Converter = Callable[[NodeCtx], Sequence[Result]]
CONVERTERS: dict[str, Converter] = {}

FOLD_ONLY = frozenset({"Constant", "Shape", "Size", "If"})
"""Ops the importer evaluates itself (an ``If`` on a known condition is inlined)."""


def converts(*op_types: str) -> Callable[[Converter], Converter]:
    """Register a converter for ``op_types``."""

    def deco(fn: Converter) -> Converter:
        for t in op_types:
            CONVERTERS[t] = fn
        return fn

    return deco


def _simple(op_type: str, ir_op: str, **defaults: Any) -> None:
    """An ONNX op that maps to one IR op; ``defaults`` holds the ONNX default of each attribute
    (the IR attribute has the same name)."""

    def convert(c: NodeCtx) -> list[Result]:
        attrs = {k: c.attr(k, v) for k, v in defaults.items()}
        return [c.op(ir_op, *(c.value(i) for i in range(len(c.ins)) if c.has(i)), **attrs)]

    CONVERTERS[op_type] = convert


# --- elementwise ----------------------------------------------------------------------------------

for _onnx, _ir in {
    "Neg": "math.neg", "Abs": "math.abs", "Exp": "math.exp", "Log": "math.log", "Sqrt": "math.sqrt",
    "Reciprocal": "math.reciprocal", "Erf": "math.erf", "Tanh": "math.tanh", "Sin": "math.sin",
    "Cos": "math.cos", "Floor": "math.floor", "Ceil": "math.ceil", "Round": "math.round", "Sign": "math.sign",
    "Not": "logic.not", "Relu": "nn.relu", "Sigmoid": "nn.sigmoid", "HardSwish": "nn.hard_swish",
    "Softplus": "nn.softplus", "Mish": "nn.mish",
    "Add": "math.add", "Sub": "math.sub", "Mul": "math.mul", "Div": "math.div", "PRelu": "nn.prelu",
    "Equal": "cmp.equal", "Less": "cmp.less", "LessOrEqual": "cmp.less_equal", "Greater": "cmp.greater",
    "GreaterOrEqual": "cmp.greater_equal", "And": "logic.and", "Or": "logic.or", "Xor": "logic.xor",
    "Where": "tensor.where", "MatMul": "nn.matmul",
}.items():
    _simple(_onnx, _ir)

# ONNX's defaults are float32 constants; passing them keeps results bit-identical to onnxruntime.
_simple("LeakyRelu", "nn.leaky_relu", alpha=0.01)
_simple("Elu", "nn.elu", alpha=1.0)
_simple("Selu", "nn.selu", alpha=1.67326319217681884765625, gamma=1.05070102214813232421875)
_simple("HardSigmoid", "nn.hard_sigmoid", alpha=0.2, beta=0.5)
_simple("Gelu", "nn.gelu", approximate="none")
_simple("LRN", "nn.lrn", size=None, alpha=1e-4, beta=0.75, bias=1.0)
_simple("Softmax", "nn.softmax", axis=-1)
_simple("LogSoftmax", "nn.log_softmax", axis=-1)


@converts("Pow")
def _pow(c: NodeCtx) -> list[Result]:
    x, y = c.value(0), c.value(1)
    if y.type.dtype != x.type.dtype:
        # ONNX lets the exponent have its own type; the IR wants one dtype for both operands.
        y = c.op("tensor.cast", y, to=x.type.dtype)
    return [c.op("math.pow", x, y)]


@converts("Mod")
def _mod(c: NodeCtx) -> list[Result]:
    return [c.op("math.mod", c.value(0), c.value(1), fmod=bool(c.attr("fmod", 0)))]


@converts("Clip")
def _clip(c: NodeCtx) -> list[Result]:
    x = c.value(0)
    bounds: dict[str, float] = {}
    out = x
    for i, key, ir_op in ((1, "min", "math.max"), (2, "max", "math.min")):
        if not c.has(i):
            continue
        if c.const(i) is not None:
            bounds[key] = c.scalar(i, key)
        else:
            out = c.op(ir_op, out, c.value(i))
    return [c.op("math.clip", out, **bounds) if bounds else out]


@converts("Sum", "Max", "Min", "Mean")
def _variadic(c: NodeCtx) -> list[Result]:
    ir_op = {"Sum": "math.add", "Mean": "math.add", "Max": "math.max", "Min": "math.min"}[c.node.op_type]
    vals = [c.value(i) for i in range(len(c.ins)) if c.has(i)]
    out = vals[0]
    for v in vals[1:]:
        out = c.op(ir_op, out, v)
    if c.node.op_type == "Mean" and len(vals) > 1:
        out = c.op("math.div", out, c.constant(len(vals), out.type.dtype))
    return [out]


@converts("Softsign")
def _softsign(c: NodeCtx) -> list[Result]:
    x = c.value(0)
    one = c.constant(1.0, x.type.dtype)
    return [c.op("math.div", x, c.op("math.add", one, c.op("math.abs", x)))]


@converts("ThresholdedRelu")
def _thresholded_relu(c: NodeCtx) -> list[Result]:
    x = c.value(0)
    above = c.op("cmp.greater", x, c.constant(c.attr("alpha", 1.0), x.type.dtype))
    return [c.op("tensor.where", above, x, c.constant(0.0, x.type.dtype))]


@converts("Celu")
def _celu(c: NodeCtx) -> list[Result]:
    x = c.value(0)
    dt, alpha = x.type.dtype, c.attr("alpha", 1.0)
    # celu(x) = max(0, x) + min(0, alpha * (exp(x / alpha) - 1))
    neg = c.op("math.mul", c.op("math.sub", c.op("math.exp", c.op("math.div", x, c.constant(alpha, dt))),
                                c.constant(1.0, dt)), c.constant(alpha, dt))
    zero = c.constant(0.0, dt)
    return [c.op("math.add", c.op("math.max", x, zero), c.op("math.min", neg, zero))]


@converts("Swish")
def _swish(c: NodeCtx) -> list[Result]:
    x = c.value(0)
    alpha = c.attr("alpha", 1.0)
    if alpha == 1.0:
        return [c.op("nn.silu", x)]
    return [c.op("math.mul", x, c.op("nn.sigmoid", c.op("math.mul", x, c.constant(alpha, x.type.dtype))))]


@converts("IsNaN")
def _isnan(c: NodeCtx) -> list[Result]:
    x = c.value(0)
    return [c.op("logic.not", c.op("cmp.equal", x, x))]


@converts("IsInf")
def _isinf(c: NodeCtx) -> list[Result]:
    x = c.value(0)
    hits = []
    if c.attr("detect_positive", 1):
        hits.append(c.op("cmp.equal", x, c.constant(np.inf, x.type.dtype)))
    if c.attr("detect_negative", 1):
        hits.append(c.op("cmp.equal", x, c.constant(-np.inf, x.type.dtype)))
    if not hits:
        return [c.op("cmp.less", x, x)]  # all false, in x's shape
    return [hits[0] if len(hits) == 1 else c.op("logic.or", *hits)]


@converts("Identity")
def _identity(c: NodeCtx) -> list[Result]:
    x = c.ins[0]
    assert x is not None
    return [x]


@converts("Dropout")
def _dropout(c: NodeCtx) -> list[Result]:
    if c.has(2) and (c.const(2) is None or bool(c.const(2).reshape(-1)[0])):
        c.unsupported("training mode")
    if c.output_used(1):
        c.unsupported("the mask output")
    return [c.value(0)]


@converts("Cast", "CastLike")
def _cast(c: NodeCtx) -> list[Result]:
    x = c.value(0)
    to = c.value(1).type.dtype if c.node.op_type == "CastLike" else ir_dtype(c.attr("to"))
    if to is None:
        c.unsupported(f"cast to {elem_type_name(c.attr('to'))}")
    return [x if to == x.type.dtype else c.op("tensor.cast", x, to=to)]


# --- normalization --------------------------------------------------------------------------------


@converts("BatchNormalization")
def _batch_norm(c: NodeCtx) -> list[Result]:
    if c.attr("training_mode", 0) or any(c.output_used(i) for i in (1, 2)):
        c.unsupported("training mode")
    ins = [c.value(i) for i in range(5)]
    return [c.op("nn.batch_norm", *ins, epsilon=c.attr("epsilon", 1e-5))]


@converts("LayerNormalization")
def _layer_norm(c: NodeCtx) -> list[Result]:
    ins = [c.value(i) for i in range(3) if c.has(i)]
    axis, eps = c.attr("axis", -1), c.attr("epsilon", 1e-5)
    y = c.op("nn.layer_norm", *ins, axis=axis, epsilon=eps)
    if not (c.output_used(1) or c.output_used(2)):
        return [y]
    # Training graphs also read the statistics, computed in the stash type (float32).
    if c.attr("stash_type", 1) != 1:
        c.unsupported(f"stash_type={c.attr('stash_type')}")
    x = ins[0]
    if x.type.dtype != DType.f32:
        x = c.op("tensor.cast", x, to=DType.f32)
    axes = tuple(range(axis % x.type.rank, x.type.rank))
    mean = c.op("reduce.mean", x, axes=axes, keepdims=True)
    d = c.op("math.sub", x, mean)
    var = c.op("reduce.mean", c.op("math.mul", d, d), axes=axes, keepdims=True)
    inv_std = c.op("math.rsqrt", c.op("math.add", var, c.constant(eps, DType.f32)))
    return [y, mean, inv_std]


@converts("InstanceNormalization")
def _instance_norm(c: NodeCtx) -> list[Result]:
    x, scale, bias = c.value(0), c.value(1), c.value(2)
    axes = tuple(range(2, x.type.rank))
    per_channel = (-1,) + (1,) * len(axes)
    mean = c.op("reduce.mean", x, axes=axes, keepdims=True)
    d = c.op("math.sub", x, mean)
    var = c.op("reduce.mean", c.op("math.mul", d, d), axes=axes, keepdims=True)
    eps = c.constant(c.attr("epsilon", 1e-5), x.type.dtype)
    y = c.op("math.div", d, c.op("math.sqrt", c.op("math.add", var, eps)))
    y = c.op("math.mul", y, c.op("tensor.reshape", scale, shape=per_channel))
    return [c.op("math.add", y, c.op("tensor.reshape", bias, shape=per_channel))]


# --- reductions -----------------------------------------------------------------------------------

_REDUCE: dict[str, tuple[str, str | None, str | None]] = {
    # ONNX op: (IR reduction, elementwise op before it, elementwise op after it)
    "ReduceSum": ("reduce.sum", None, None),
    "ReduceMean": ("reduce.mean", None, None),
    "ReduceMax": ("reduce.max", None, None),
    "ReduceMin": ("reduce.min", None, None),
    "ReduceProd": ("reduce.prod", None, None),
    "ReduceSumSquare": ("reduce.sum", "square", None),
    "ReduceL1": ("reduce.sum", "math.abs", None),
    "ReduceL2": ("reduce.sum", "square", "math.sqrt"),
    "ReduceLogSum": ("reduce.sum", None, "math.log"),
    "ReduceLogSumExp": ("reduce.sum", "math.exp", "math.log"),
}


@converts(*_REDUCE)
def _reduce(c: NodeCtx) -> list[Result]:
    ir_op, pre, post = _REDUCE[c.node.op_type]
    x = c.value(0)
    if x.type.dtype == DType.bool and ir_op in ("reduce.max", "reduce.min"):
        # IR reductions are numeric; on bools max is "any" and min is "all", exact through u8.
        y = _reduce_values(c, c.op("tensor.cast", x, to=DType.u8), ir_op, None, None)
        return [c.op("tensor.cast", y, to=DType.bool)]
    return [_reduce_values(c, x, ir_op, pre, post)]


def _reduce_values(c: NodeCtx, x: Value, ir_op: str, pre: str | None, post: str | None) -> Value:
    axes = c.attr("axes") or (c.ints(1, "axes") if c.has(1) else [])
    if pre == "square":
        x = c.op("math.mul", x, x)
    elif pre is not None:
        x = c.op(pre, x)
    if not axes and c.attr("noop_with_empty_axes", 0):
        return x
    out = c.op(ir_op, x, axes=tuple(axes), keepdims=bool(c.attr("keepdims", 1)))
    return c.op(post, out) if post else out


@converts("ArgMax", "ArgMin")
def _arg(c: NodeCtx) -> list[Result]:
    ir_op = "reduce.argmax" if c.node.op_type == "ArgMax" else "reduce.argmin"
    return [c.op(ir_op, c.value(0), axis=c.attr("axis", 0), keepdims=bool(c.attr("keepdims", 1)),
                 select_last_index=bool(c.attr("select_last_index", 0)))]


# --- linear algebra, convolution, pooling ---------------------------------------------------------


@converts("Gemm")
def _gemm(c: NodeCtx) -> list[Result]:
    ins = [c.value(i) for i in range(3) if c.has(i)]
    return [c.op("nn.gemm", *ins, alpha=c.attr("alpha", 1.0), beta=c.attr("beta", 1.0),
                 trans_a=bool(c.attr("transA", 0)), trans_b=bool(c.attr("transB", 0)))]


def _window(c: NodeCtx, x: Value, kernel: list[int]) -> tuple[list[int], list[int], list[int]]:
    """Strides, dilations and explicit pads (begins then ends) of a conv or pool node."""
    n = len(kernel)
    strides = list(c.attr("strides") or [1] * n)
    dilations = list(c.attr("dilations") or [1] * n)
    auto_pad = c.attr("auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        return strides, dilations, list(c.attr("pads") or [0] * (2 * n))
    if auto_pad == "VALID":
        return strides, dilations, [0] * (2 * n)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        c.unsupported(f"auto_pad={auto_pad}")
    begins, ends = [], []
    for size, k, s, d in zip(x.type.shape[2:], kernel, strides, dilations):
        if isinstance(size, str):
            c.unsupported(f"auto_pad={auto_pad} over the symbolic dim {size}")
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else big)
        ends.append(big if auto_pad == "SAME_UPPER" else small)
    return strides, dilations, begins + ends


def _lift_1d(c: NodeCtx, v: Value) -> Value:
    """A 1-d spatial tensor (N, C, L) as a 2-d one (N, C, 1, L), so 2-d IR ops can run it."""
    return c.op("tensor.unsqueeze", v, axes=(2,))


def _as_2d(kernel: list[int], strides: list[int], dil: list[int], pads: list[int]) -> tuple[list[int], ...]:
    if len(kernel) == 2:
        return kernel, strides, dil, pads
    return [1] + kernel, [1] + strides, [1] + dil, [0, pads[0], 0, pads[1]]


def _spatial_rank(c: NodeCtx, x: Value) -> int:
    rank = x.type.rank - 2
    if rank not in (1, 2):
        c.unsupported(f"{rank}-d spatial input {x.type}")
    return rank


@converts("Conv")
def _conv(c: NodeCtx) -> list[Result]:
    x, w = c.value(0), c.value(1)
    rank = _spatial_rank(c, x)
    kernel = list(c.attr("kernel_shape") or w.type.shape[2:])
    if any(isinstance(k, str) for k in kernel):
        c.unsupported("a kernel with symbolic size")
    kernel, strides, dil, pads = _as_2d(kernel, *_window(c, x, kernel))
    if rank == 1:
        x, w = _lift_1d(c, x), _lift_1d(c, w)
    ins = [x, w] + ([c.value(2)] if c.has(2) else [])
    y = c.op("nn.conv2d", *ins, strides=tuple(strides), pads=tuple(pads), dilations=tuple(dil),
             groups=c.attr("group", 1))
    return [c.op("tensor.squeeze", y, axes=(2,)) if rank == 1 else y]


@converts("MaxPool", "AveragePool")
def _pool(c: NodeCtx) -> list[Result]:
    x = c.value(0)
    if c.output_used(1):
        c.unsupported("the indices output")
    kernel = list(c.attr("kernel_shape"))
    strides, dil, pads = _window(c, x, kernel)
    if c.node.op_type == "AveragePool" and any(d != 1 for d in dil):
        c.unsupported("dilated average pooling")
    rank = x.type.rank - 2
    if rank == 3:
        return [_pool3d(c, x, kernel, strides, dil, pads)]
    rank = _spatial_rank(c, x)
    kernel, strides, dil, pads = _as_2d(kernel, strides, dil, pads)
    y = _pool2d(c, _lift_1d(c, x) if rank == 1 else x, kernel, strides, dil, pads)
    return [c.op("tensor.squeeze", y, axes=(2,)) if rank == 1 else y]


def _pool2d(c: NodeCtx, x: Value, kernel: list[int], strides: list[int], dil: list[int], pads: list[int]) -> Value:
    attrs: dict[str, Any] = {"kernel": tuple(kernel), "strides": tuple(strides), "pads": tuple(pads),
                                 "ceil_mode": bool(c.attr("ceil_mode", 0))}
    if c.node.op_type == "MaxPool":
        return c.op("nn.max_pool2d", x, dilations=tuple(dil), **attrs)
    return c.op("nn.avg_pool2d", x, count_include_pad=bool(c.attr("count_include_pad", 0)), **attrs)


def _pool3d(c: NodeCtx, x: Value, kernel: list[int], strides: list[int], dil: list[int], pads: list[int]) -> Value:
    """A 3-d pool with one untouched spatial axis (kernel 1, stride 1, no pad) as a 2-d pool: that
    axis joins the channels. torch exports LocalResponseNorm as such a pool with kernel (size, 1, 1)."""
    flat = [i for i in range(3) if (kernel[i], strides[i], dil[i], pads[i], pads[3 + i]) == (1, 1, 1, 0, 0)]
    if not flat:
        c.unsupported(f"3-d pooling with kernel {kernel}")
    t = flat[-1]
    a, b = (i for i in range(3) if i != t)
    perm = (0, 1, 2 + t, 2 + a, 2 + b)
    xt = c.op("tensor.transpose", x, perm=perm)
    _, ch, tdim, adim, bdim = xt.type.shape
    if any(isinstance(d, str) for d in (adim, bdim)) or (isinstance(ch, str) and isinstance(tdim, str)):
        c.unsupported(f"3-d pooling of {x.type} with symbolic spatial dims")
    merged = c.op("tensor.reshape", xt, shape=(0, -1, adim, bdim))
    y = _pool2d(c, merged, [kernel[a], kernel[b]], [strides[a], strides[b]], [dil[a], dil[b]],
                [pads[a], pads[b], pads[3 + a], pads[3 + b]])
    _, _, ya, yb = y.type.shape
    split = c.op("tensor.reshape", y, shape=(0, -1 if isinstance(ch, str) else ch,
                                             -1 if isinstance(tdim, str) else tdim, ya, yb))
    inverse = tuple(perm.index(i) for i in range(5))
    return c.op("tensor.transpose", split, perm=inverse)


@converts("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(c: NodeCtx) -> list[Result]:
    x = c.value(0)
    avg = c.node.op_type == "GlobalAveragePool"
    if x.type.rank == 4:
        return [c.op("nn.global_avg_pool" if avg else "nn.global_max_pool", x)]
    axes = tuple(range(2, x.type.rank))
    return [c.op("reduce.mean" if avg else "reduce.max", x, axes=axes, keepdims=True)]


# --- layout and data movement ---------------------------------------------------------------------


@converts("Reshape")
def _reshape(c: NodeCtx) -> list[Result]:
    x = c.value(0)
    target = c.dims(1, "shape")
    if c.attr("allowzero", 0) and 0 in target:
        c.unsupported("allowzero=1 with a 0 in the target shape")
    shape = reshape_target(x.type.shape, target)
    if shape is None:
        c.unsupported(f"reshape target {target} has more than one dim known only at run time")
    return [c.op("tensor.reshape", x, shape=tuple(shape))]


@converts("Expand")
def _expand(c: NodeCtx) -> list[Result]:
    x = c.value(0)
    target = c.dims(1, "shape")
    shape = expand_target(x.type.shape, target)
    if shape is None:
        c.unsupported(f"expand of {x.type} to {target}: a size-1 dim would grow to a symbolic size")
    return [c.op("tensor.expand", x, shape=tuple(shape))]


@converts("Transpose")
def _transpose(c: NodeCtx) -> list[Result]:
    return [c.op("tensor.transpose", c.value(0), perm=tuple(c.attr("perm") or ()))]


@converts("Concat")
def _concat(c: NodeCtx) -> list[Result]:
    vals = [c.value(i) for i in range(len(c.ins)) if c.has(i)]
    return [c.op("tensor.concat", *vals, axis=c.attr("axis"))]


@converts("Split")
def _split(c: NodeCtx) -> list[Result]:
    x = c.value(0)
    axis = c.attr("axis", 0)
    if c.attr("split") is not None:
        sizes = list(c.attr("split"))
    elif c.has(1):
        sizes = c.ints(1, "split")
    else:
        n = c.attr("num_outputs", len(c.node.output))
        dim = x.type.shape[axis]
        if isinstance(dim, str):
            c.unsupported(f"an even split of the symbolic dim {dim}")
        chunk = -(-dim // n)
        sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
    return list(c.ops("tensor.split", [x], axis=axis, sizes=tuple(sizes)))


@converts("Slice")
def _slice(c: NodeCtx) -> list[Result]:
    x = c.value(0)
    starts, ends = c.dims(1, "starts"), c.dims(2, "ends")
    axes = c.ints(3, "axes") if c.has(3) else list(range(len(starts)))
    steps = c.ints(4, "steps") if c.has(4) else [1] * len(starts)
    for i, (s, e, a) in enumerate(zip(starts, ends, axes)):
        if isinstance(s, str):
            c.unsupported(f"a slice start given by the symbolic dim {s}")
        if isinstance(e, str):
            # Slicing up to a dim's own size is "to the end"; any other symbolic bound is not static.
            if x.type.shape[a] != e or steps[i] < 0:
                c.unsupported(f"a slice end given by the symbolic dim {e}")
            ends[i] = INT64_MAX
    return [c.op("tensor.slice", x, starts=tuple(starts), ends=tuple(ends), axes=tuple(axes),
                 steps=tuple(steps))]


@converts("Gather")
def _gather(c: NodeCtx) -> list[Result]:
    return [c.op("tensor.gather", c.value(0), c.value(1), axis=c.attr("axis", 0))]


@converts("Flatten")
def _flatten(c: NodeCtx) -> list[Result]:
    return [c.op("tensor.flatten", c.value(0), axis=c.attr("axis", 1))]


@converts("Squeeze", "Unsqueeze")
def _squeeze(c: NodeCtx) -> list[Result]:
    axes = c.attr("axes") or (c.ints(1, "axes") if c.has(1) else [])
    ir_op = "tensor.squeeze" if c.node.op_type == "Squeeze" else "tensor.unsqueeze"
    return [c.op(ir_op, c.value(0), axes=tuple(axes))]


@converts("Pad")
def _pad(c: NodeCtx) -> list[Result]:
    x = c.value(0)
    mode = c.attr("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        c.unsupported(f"mode={mode}")
    pads = list(c.attr("pads") or c.ints(1, "pads"))
    if c.has(3):
        # Pads given for some axes only: spread them over every axis (begins, then ends).
        axes = [a % x.type.rank for a in c.ints(3, "axes")]
        full = [0] * (2 * x.type.rank)
        for j, a in enumerate(axes):
            full[a], full[x.type.rank + a] = pads[j], pads[len(axes) + j]
        pads = full
    value = c.scalar(2, "constant_value") if c.has(2) else float(c.attr("value", 0.0))
    return [c.op("tensor.pad", x, pads=tuple(pads), mode=mode, value=value)]


@converts("Tile")
def _tile(c: NodeCtx) -> list[Result]:
    return [c.op("tensor.tile", c.value(0), repeats=tuple(c.ints(1, "repeats")))]


@converts("Trilu")
def _trilu(c: NodeCtx) -> list[Result]:
    k = int(c.scalar(1, "k")) if c.has(1) else 0
    return [c.op("tensor.trilu", c.value(0), upper=bool(c.attr("upper", 1)), k=k)]


@converts("ConstantOfShape")
def _constant_of_shape(c: NodeCtx) -> list[Result]:
    shape = c.known(0)
    like = c.imp.shape_source(shape.dims) if isinstance(shape, SymShape) else None
    if like is None:
        return _needs_static(c)
    value = c.attr("value")
    fill = numpy_helper.to_array(value).reshape(()) if value is not None else np.zeros((), np.float32)
    # The IR has no "fill to a run-time shape" op; a select between two equal scalars broadcast to
    # the shape of the tensor the dims came from is exactly that (equal(x, x) only sets the shape).
    mask = c.op("cmp.equal", like, like)
    scalar = c.b.const(fill)
    return [c.op("tensor.where", mask, scalar, scalar)]


@converts("Range")
def _needs_static(c: NodeCtx) -> list[Result]:
    symbols = sorted({s for x in c.ins if isinstance(x, SymShape) for s in x.symbols})
    if symbols:
        c.unsupported(f"a result whose shape depends on the symbolic dims {', '.join(symbols)}")
    c.unsupported("operands that are not constant")
from . import onnx_quant  # noqa: E402, F401 - registers the QDQ / QLinear converters (frontends/onnx_quant.py)
