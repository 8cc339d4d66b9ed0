"""Elementwise and broadcasting math, activations, comparisons, logic and casts."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ..opdef import Attr, AttrKind, FusionKind, OpDef, register
from ..types import DType, TensorType, broadcast_shapes
from .common import binary, check_dtype, elementwise_flops, unary, upcast
from .special import erf as _erf


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Split by sign so exp never overflows and tiny results keep their relative accuracy.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(np.zeros((), x.dtype), x)


def _gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    x64 = x.astype(np.float64)
    return 0.5 * x64 * (1 + _erf(x64 * (1 / math.sqrt(2))))


def _check_gelu(attrs: Mapping[str, Any]) -> None:
    if attrs["approximate"] not in ("none", "tanh"):
        raise ValueError(f"gelu approximate must be \"none\" or \"tanh\", got {attrs['approximate']!r}")


def _clip(x: np.ndarray, min: float | None = None, max: float | None = None) -> np.ndarray:
    # Compare in the operand's own type so an integer clip stays exact.
    if min is not None:
        x = np.maximum(x, np.asarray(min).astype(x.dtype))
    if max is not None:
        x = np.minimum(x, np.asarray(max).astype(x.dtype))
    return x


def _check_clip(attrs: Mapping[str, Any]) -> None:
    lo, hi = attrs.get("min"), attrs.get("max")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"clip min {lo} is greater than max {hi}")


def _elu(x: np.ndarray, alpha: float) -> np.ndarray:
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _selu(x: np.ndarray, alpha: float, gamma: float) -> np.ndarray:
    return gamma * _elu(x, alpha)


def _sign(x: np.ndarray) -> np.ndarray:
    return np.sign(x) if x.dtype.kind != "u" else (x > 0).astype(x.dtype)


# One operand, floats only.
unary("math.exp", np.exp, flops_per_elem=4, allowed="float", doc="e ** x")
unary("math.log", np.log, flops_per_elem=4, allowed="float", doc="natural logarithm")
unary("math.sqrt", np.sqrt, flops_per_elem=2, allowed="float", doc="square root")
unary("math.rsqrt", lambda x: 1 / np.sqrt(x), flops_per_elem=3, allowed="float", doc="1 / sqrt(x)")
unary("math.reciprocal", lambda x: 1 / x, allowed="float", doc="1 / x")
unary("math.erf", lambda x: _erf(x), flops_per_elem=8, allowed="float", doc="the error function")
unary("math.tanh", np.tanh, flops_per_elem=4, allowed="float", doc="hyperbolic tangent")
unary("math.sin", np.sin, flops_per_elem=4, allowed="float", doc="sine (radians)")
unary("math.cos", np.cos, flops_per_elem=4, allowed="float", doc="cosine (radians)")
unary("math.floor", np.floor, allowed="float", doc="round toward -inf")
unary("math.ceil", np.ceil, allowed="float", doc="round toward +inf")
unary("math.round", np.round, allowed="float", doc="round half to even")

# One operand, any number type.
unary("math.neg", np.negative, allowed="numeric", doc="-x")
unary("math.abs", np.abs, allowed="numeric", doc="|x|")
unary("math.sign", _sign, allowed="numeric", doc="-1, 0 or 1 by the sign of x")
unary("math.clip", _clip, flops_per_elem=2, allowed="numeric", check=_check_clip,
      attrs=(Attr("min", AttrKind.FLOAT, None), Attr("max", AttrKind.FLOAT, None)),
      doc="x limited to [min, max]; a missing bound does not limit")
unary("logic.not", np.logical_not, allowed="bool", doc="logical not")

# Activations.
unary("nn.relu", lambda x: np.maximum(x, np.zeros((), x.dtype)), allowed="numeric", doc="max(x, 0)")
unary("nn.leaky_relu", lambda x, alpha: np.where(x >= 0, x, x * alpha), flops_per_elem=2, allowed="float",
      attrs=(Attr("alpha", AttrKind.FLOAT, 0.01),), doc="x if x >= 0 else alpha * x")
unary("nn.elu", _elu, flops_per_elem=5, allowed="float", attrs=(Attr("alpha", AttrKind.FLOAT, 1.0),),
      doc="x if x > 0 else alpha * (exp(x) - 1)")
unary("nn.selu", _selu, flops_per_elem=6, allowed="float",
      attrs=(Attr("alpha", AttrKind.FLOAT, 1.6732632423543772), Attr("gamma", AttrKind.FLOAT, 1.0507009873554805)),
      doc="gamma * (x if x > 0 else alpha * (exp(x) - 1))")
unary("nn.sigmoid", _sigmoid, flops_per_elem=4, allowed="float", doc="1 / (1 + exp(-x))")
unary("nn.hard_sigmoid", lambda x, alpha, beta: np.clip(alpha * x + beta, 0, 1), flops_per_elem=3, allowed="float",
      attrs=(Attr("alpha", AttrKind.FLOAT, 0.2), Attr("beta", AttrKind.FLOAT, 0.5)),
      doc="max(0, min(1, alpha * x + beta))")
unary("nn.hard_swish", lambda x: x * np.clip(x / 6 + 0.5, 0, 1), flops_per_elem=4, allowed="float",
      doc="x * max(0, min(1, x / 6 + 1 / 2))")
unary("nn.softplus", _softplus, flops_per_elem=5, allowed="float", doc="log(1 + exp(x))")
unary("nn.gelu", _gelu, flops_per_elem=8, allowed="float", check=_check_gelu,
      attrs=(Attr("approximate", AttrKind.STR, "none"),),
      doc="x * Phi(x) with the exact erf, or the tanh approximation when approximate=\"tanh\"")
unary("nn.silu", lambda x: x * _sigmoid(x), flops_per_elem=5, allowed="float", doc="x * sigmoid(x)")
unary("nn.mish", lambda x: x * np.tanh(_softplus(x)), flops_per_elem=10, allowed="float",
      doc="x * tanh(softplus(x))")

# Pure copies: they exist so importers need not special-case them; canonicalize removes them.
register(OpDef("tensor.identity", ("x",), lambda ins, a: [ins[0]], lambda xs, a: [xs[0]],
               FusionKind.ELEMENTWISE, flops=elementwise_flops(0), doc="x unchanged"))
register(OpDef("nn.dropout", ("x",), lambda ins, a: [ins[0]], lambda xs, a: [xs[0]],
               FusionKind.ELEMENTWISE, flops=elementwise_flops(0), doc="dropout at inference: x unchanged"))


def _cast_compute(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    to: DType = attrs["to"]
    x = upcast(xs[0])
    if to.is_int and x.dtype.kind == "f":
        # Float to int truncates toward zero (as ONNX and C); NaN and out-of-range are undefined.
        with np.errstate(invalid="ignore"):
            return [np.trunc(x).astype(to.numpy)]
    return [x.astype(to.numpy)]


register(OpDef(
    "tensor.cast", ("x",), lambda ins, a: [ins[0].with_dtype(a["to"])], _cast_compute, FusionKind.INJECTIVE,
    attrs=(Attr("to", AttrKind.DTYPE),), flops=elementwise_flops(1), doc="convert x to element type `to`",
))


# Two operands, broadcasting.
def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu":
        # Integer division truncates toward zero as in ONNX (numpy's // floors).
        q = np.floor_divide(a, b)
        return q + ((np.remainder(a, b) != 0) & ((a < 0) != (b < 0)))
    return np.true_divide(a, b)


def _mod(a: np.ndarray, b: np.ndarray, fmod: bool) -> np.ndarray:
    # fmod: the sign of the dividend (C fmod); otherwise the sign of the divisor (Python %).
    return np.fmod(a, b) if fmod else np.mod(a, b)


binary("math.add", np.add, allowed="numeric", doc="a + b")
binary("math.sub", np.subtract, allowed="numeric", doc="a - b")
binary("math.mul", np.multiply, allowed="numeric", doc="a * b")
binary("math.div", _div, allowed="numeric", doc="a / b (integer division truncates toward zero)")
binary("math.max", np.maximum, allowed="numeric", doc="the larger of a and b (NaN propagates)")
binary("math.min", np.minimum, allowed="numeric", doc="the smaller of a and b (NaN propagates)")
binary("math.mod", _mod, allowed="numeric", attrs=(Attr("fmod", AttrKind.BOOL, False),),
       doc="remainder with the divisor's sign, or with the dividend's when fmod")
binary("nn.prelu", lambda x, slope: np.where(x >= 0, x, x * slope), allowed="float", flops_per_elem=2,
       inputs=("x", "slope"), doc="x if x >= 0 else slope * x (slope broadcasts)")

binary("cmp.equal", np.equal, result_dtype=DType.bool, doc="a == b")
binary("cmp.less", np.less, result_dtype=DType.bool, allowed="numeric", doc="a < b")
binary("cmp.less_equal", np.less_equal, result_dtype=DType.bool, allowed="numeric", doc="a <= b")
binary("cmp.greater", np.greater, result_dtype=DType.bool, allowed="numeric", doc="a > b")
binary("cmp.greater_equal", np.greater_equal, result_dtype=DType.bool, allowed="numeric", doc="a >= b")

binary("logic.and", np.logical_and, allowed="bool", doc="a and b")
binary("logic.or", np.logical_or, allowed="bool", doc="a or b")
binary("logic.xor", np.logical_xor, allowed="bool", doc="a xor b")


def _pow_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    base, exponent = ins
    check_dtype(base, "numeric", "math.pow base")
    check_dtype(exponent, "numeric", "math.pow exponent")
    return [TensorType(broadcast_shapes(base.shape, exponent.shape), base.dtype)]


def _pow(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    base, exponent = xs
    return [np.power(base, exponent.astype(base.dtype, copy=False))]


# As in ONNX the exponent may have another number type (x ** 2 with an integer 2); the result
# has the base's type.
register(OpDef("math.pow", ("a", "b"), _pow_infer, _pow, FusionKind.BROADCAST, flops=elementwise_flops(4),
               doc="a ** b (the exponent may be of another number type)"))


def _where_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    cond, a, b = ins
    check_dtype(cond, "bool", "tensor.where condition")
    if a.dtype != b.dtype:
        raise ValueError(f"tensor.where branches differ in dtype: {a}, {b}")
    return [TensorType(broadcast_shapes(cond.shape, a.shape, b.shape), a.dtype)]


register(OpDef(
    "tensor.where", ("cond", "a", "b"), _where_infer, lambda xs, a: [np.where(xs[0], xs[1], xs[2])],
    FusionKind.BROADCAST, flops=elementwise_flops(1), doc="a where cond else b (all three broadcast)",
))
