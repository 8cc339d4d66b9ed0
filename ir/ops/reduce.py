"""Reductions over axes, and arg-reductions that give indices."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..opdef import Attr, AttrKind, FusionKind, OpDef, register
from ..types import Dim, DType, TensorType
from .common import check_dtype, normalize_axes, normalize_axis, upcast


def reduced_shape(x: TensorType, axes: Sequence[int], keepdims: bool) -> tuple[Dim, ...]:
    """The shape left after reducing ``axes`` (already normalized) of ``x``."""
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    return tuple(d for i, d in enumerate(x.shape) if i not in axes)


def _axes(x_rank: int, attrs: Mapping[str, Any]) -> tuple[int, ...]:
    return normalize_axes(attrs["axes"], x_rank) if attrs["axes"] else tuple(range(x_rank))


def _reduce_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    check_dtype(x, "numeric", "reduction input")
    return [x.with_shape(reduced_shape(x, _axes(x.rank, attrs), attrs["keepdims"]))]


def _reduce(fn: Callable[..., np.ndarray]) -> Callable[..., list[np.ndarray]]:
    def compute(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
        x = xs[0]
        y = fn(upcast(x), axis=_axes(x.ndim, attrs), keepdims=attrs["keepdims"])
        return [np.asarray(y).astype(x.dtype, copy=False)]

    return compute


def _mean(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    # Accumulate integers exactly (numpy's mean of ints is float64, cast back truncates like ONNX).
    return np.mean(x, axis=axis, keepdims=keepdims, dtype=x.dtype if x.dtype.kind == "f" else np.float64)


def _extreme(fn: Callable[..., np.ndarray], largest: bool) -> Callable[..., np.ndarray]:
    """``fn`` (np.max or np.min) that returns the identity over an empty set, as ONNX does: -inf
    for max and +inf for min (the dtype's lowest/highest for integers), where numpy would raise."""

    def compute(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
        if x.size:
            return fn(x, axis=axis, keepdims=keepdims)
        info = np.finfo(x.dtype) if x.dtype.kind == "f" else np.iinfo(x.dtype)
        identity = (-np.inf if largest else np.inf) if x.dtype.kind == "f" else (info.min if largest else info.max)
        return fn(x, axis=axis, keepdims=keepdims, initial=identity)

    return compute


_REDUCE_ATTRS = (Attr("axes", AttrKind.INTS, ()), Attr("keepdims", AttrKind.BOOL, True))
for _name, _fn, _doc in (
    ("reduce.sum", np.sum, "sum over axes (empty axes: all)"),
    ("reduce.mean", _mean, "mean over axes (empty axes: all)"),
    ("reduce.max", _extreme(np.max, largest=True), "max over axes (empty axes: all; -inf over an empty set)"),
    ("reduce.min", _extreme(np.min, largest=False), "min over axes (empty axes: all; +inf over an empty set)"),
    ("reduce.prod", np.prod, "product over axes (empty axes: all)"),
):
    register(OpDef(_name, ("x",), _reduce_infer, _reduce(_fn), FusionKind.REDUCTION, attrs=_REDUCE_ATTRS,
                   flops=lambda i, o, a: i[0].numel(), doc=_doc))


def _arg_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    check_dtype(x, "numeric", "arg-reduction input")
    axis = normalize_axis(attrs["axis"], x.rank)
    return [TensorType(reduced_shape(x, (axis,), attrs["keepdims"]), DType.i64)]


def _arg(fn: Callable[..., np.ndarray]) -> Callable[..., list[np.ndarray]]:
    def compute(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
        x = xs[0]
        axis = normalize_axis(attrs["axis"], x.ndim)
        if attrs["select_last_index"]:
            # The first hit in the reversed tensor is the last one in the original.
            idx = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis, keepdims=attrs["keepdims"])
        else:
            idx = fn(x, axis=axis, keepdims=attrs["keepdims"])
        return [np.asarray(idx, dtype=np.int64)]

    return compute


_ARG_ATTRS = (Attr("axis", AttrKind.INT, 0), Attr("keepdims", AttrKind.BOOL, True),
              Attr("select_last_index", AttrKind.BOOL, False))
register(OpDef("reduce.argmax", ("x",), _arg_infer, _arg(np.argmax), FusionKind.REDUCTION, attrs=_ARG_ATTRS,
               flops=lambda i, o, a: i[0].numel(), doc="index (i64) of the largest element along axis"))
register(OpDef("reduce.argmin", ("x",), _arg_infer, _arg(np.argmin), FusionKind.REDUCTION, attrs=_ARG_ATTRS,
               flops=lambda i, o, a: i[0].numel(), doc="index (i64) of the smallest element along axis"))
