"""Helpers shared by op declarations: makers for families of ops and common type rules."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..opdef import Attr, FusionKind, OpDef, register
from ..types import DType, Dim, TensorType, broadcast_shapes


def normalize_axis(axis: int, rank: int) -> int:
    """``axis`` in ``[0, rank)``; negative axes count from the end. Raises ValueError if out of range."""
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


def same_as_first(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    """Result type = first operand's type."""
    return [ins[0]]


def broadcast_infer(result_dtype: DType | None = None) -> Callable[..., list[TensorType]]:
    """Type rule of a broadcasting op: shapes broadcast, dtypes must agree (result ``result_dtype``)."""

    def infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
        dtypes = {t.dtype for t in ins}
        if len(dtypes) != 1:
            raise ValueError(f"operand dtypes differ: {', '.join(str(t) for t in ins)}")
        shape = broadcast_shapes(*(t.shape for t in ins))
        return [TensorType(shape, result_dtype or ins[0].dtype)]

    return infer


def unary(name: str, fn: Callable[..., np.ndarray], attrs: tuple[Attr, ...] = (), flops_per_elem: int = 1,
          doc: str = "") -> OpDef:
    """Declare an elementwise op of one operand; ``fn(x, **attrs)`` is its numpy reference."""

    def compute(xs: Sequence[np.ndarray], a: Mapping[str, Any]) -> list[np.ndarray]:
        x = xs[0]
        return [np.asarray(fn(x, **a)).astype(x.dtype, copy=False)]

    return register(OpDef(
        name, ("x",), same_as_first, compute, FusionKind.ELEMENTWISE, attrs=attrs,
        flops=lambda i, o, a: flops_per_elem * o[0].numel(), doc=doc,
    ))


def binary(name: str, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], result_dtype: DType | None = None,
           doc: str = "") -> OpDef:
    """Declare a broadcasting op of two operands; ``fn(a, b)`` is its numpy reference."""

    def compute(xs: Sequence[np.ndarray], a: Mapping[str, Any]) -> list[np.ndarray]:
        out = np.asarray(fn(xs[0], xs[1]))
        return [out.astype(result_dtype.numpy if result_dtype else xs[0].dtype, copy=False)]

    return register(OpDef(name, ("a", "b"), broadcast_infer(result_dtype), compute, FusionKind.BROADCAST, doc=doc))


def dim_product(dims: Sequence[Dim]) -> int | None:
    """Product of static dims, or None if any is symbolic."""
    n = 1
    for d in dims:
        if isinstance(d, str):
            return None
        n *= d
    return n
