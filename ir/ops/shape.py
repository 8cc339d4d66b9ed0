"""Layout and data-movement ops (injective)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..opdef import Attr, AttrKind, FusionKind, OpDef, register
from ..types import TensorType
from .common import normalize_axis


def _transpose_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    perm = attrs["perm"] or tuple(reversed(range(x.rank)))
    if sorted(perm) != list(range(x.rank)):
        raise ValueError(f"perm {list(perm)} is not a permutation of {x.rank} axes")
    return [x.with_shape([x.shape[p] for p in perm])]


register(OpDef(
    "tensor.transpose", ("x",), _transpose_infer,
    lambda xs, a: [np.ascontiguousarray(np.transpose(xs[0], a["perm"] or None))],
    FusionKind.INJECTIVE, attrs=(Attr("perm", AttrKind.INTS, ()),), flops=lambda i, o, a: 0,
    doc="permute axes (empty perm reverses them)",
))
_ = normalize_axis
