"""Matrix products."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..opdef import FusionKind, OpDef, register
from ..types import TensorType, broadcast_shapes


def _matmul_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    a, b = ins
    if a.dtype != b.dtype:
        raise ValueError(f"operand dtypes differ: {a}, {b}")
    if a.rank < 1 or b.rank < 1:
        raise ValueError("matmul operands must have rank >= 1")
    a_shape = a.shape if a.rank > 1 else (1,) + a.shape
    b_shape = b.shape if b.rank > 1 else b.shape + (1,)
    k1, k2 = a_shape[-1], b_shape[-2]
    if isinstance(k1, int) and isinstance(k2, int) and k1 != k2:
        raise ValueError(f"inner dimensions differ: {a} @ {b}")
    batch = broadcast_shapes(a_shape[:-2], b_shape[:-2])
    shape = batch + (a_shape[-2], b_shape[-1])
    if a.rank == 1:
        shape = shape[:-2] + shape[-1:]
    if b.rank == 1:
        shape = shape[:-1]
    return [TensorType(shape, a.dtype)]


def _matmul_flops(ins: Sequence[TensorType], outs: Sequence[TensorType], attrs: Mapping[str, Any]) -> int:
    k = ins[0].shape[-1]
    return 2 * outs[0].numel() * (k if isinstance(k, int) else 1)


register(OpDef(
    "nn.matmul", ("a", "b"), _matmul_infer, lambda xs, a: [np.matmul(xs[0], xs[1])],
    FusionKind.OUT_FUSABLE, flops=_matmul_flops, doc="numpy.matmul semantics (batched, broadcasting)",
))
