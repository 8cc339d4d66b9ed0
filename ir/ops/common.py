"""Helpers shared by op declarations: makers for families of ops and common type rules."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..opdef import Attr, FusionKind, OpDef, register
from ..types import Dim, DType, TensorType, broadcast_shapes

# Which element types an operand may have; "any" admits every DType.
DTYPE_CLASSES: dict[str, Callable[[DType], bool]] = {
    "any": lambda d: True,
    "float": lambda d: d.is_float,
    "numeric": lambda d: d is not DType.bool,
    "int": lambda d: d.is_int,
    "bool": lambda d: d is DType.bool,
}

# Slice bounds at least this large mean "to the end" (frontends write INT64_MAX or INT32_MAX).
BIG = 2**31 - 1


def normalize_axis(axis: int, rank: int) -> int:
    """``axis`` in ``[0, rank)``; negative axes count from the end. Raises ValueError if out of range."""
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


def normalize_axes(axes: Sequence[int], rank: int) -> tuple[int, ...]:
    """Each axis normalized (see ``normalize_axis``); raises ValueError on a repeated axis."""
    out = tuple(normalize_axis(a, rank) for a in axes)
    if len(set(out)) != len(out):
        raise ValueError(f"axes {list(axes)} repeat an axis")
    return out


def check_dtype(t: TensorType, allowed: str, what: str = "operand") -> None:
    """Raise ValueError unless ``t``'s element type is in the class ``allowed`` (see DTYPE_CLASSES)."""
    if not DTYPE_CLASSES[allowed](t.dtype):
        raise ValueError(f"{what} must be {allowed}, got {t}")


def check_rank(t: TensorType, rank: int, what: str = "operand") -> None:
    """Raise ValueError unless ``t`` has exactly ``rank`` dims."""
    if t.rank != rank:
        raise ValueError(f"{what} must have rank {rank}, got {t}")


def static_dims(t: TensorType, axes: Sequence[int], what: str) -> tuple[int, ...]:
    """The dims of ``t`` at ``axes``, which must be ints (raise ValueError naming ``what`` otherwise)."""
    dims = tuple(t.shape[a] for a in axes)
    if not all(isinstance(d, int) for d in dims):
        raise ValueError(f"{what} needs static dims at axes {list(axes)}, got {t}")
    return dims  # type: ignore[return-value]


def same_as_first(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    """Result type = first operand's type."""
    return [ins[0]]


def dims_agree(a: Dim, b: Dim) -> bool:
    """False only when both dims are ints and differ (a symbol may stand for any size)."""
    return isinstance(a, str) or isinstance(b, str) or a == b


def broadcast_infer(result_dtype: DType | None = None, allowed: str = "any") -> Callable[..., list[TensorType]]:
    """Type rule of a broadcasting op: shapes broadcast, dtypes must agree (result ``result_dtype``)."""

    def infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
        dtypes = {t.dtype for t in ins}
        if len(dtypes) != 1:
            raise ValueError(f"operand dtypes differ: {', '.join(str(t) for t in ins)}")
        check_dtype(ins[0], allowed, "operands")
        shape = broadcast_shapes(*(t.shape for t in ins))
        return [TensorType(shape, result_dtype or ins[0].dtype)]

    return infer


def elementwise_flops(per_elem: int) -> Callable[..., int]:
    """FLOP count of ``per_elem`` operations for every result element."""
    return lambda ins, outs, attrs: per_elem * sum(o.numel() for o in outs)


def no_flops(ins: Sequence[TensorType], outs: Sequence[TensorType], attrs: Mapping[str, Any]) -> int:
    """FLOP count of a pure data-movement op."""
    return 0


def unary(name: str, fn: Callable[..., np.ndarray], attrs: tuple[Attr, ...] = (), flops_per_elem: int = 1,
          doc: str = "", allowed: str = "any", check: Callable[[Mapping[str, Any]], None] | None = None) -> OpDef:
    """Declare an elementwise op of one operand; ``fn(x, **attrs)`` is its numpy reference.

    ``allowed`` restricts the operand's element type; ``check(attrs)`` raises ValueError on bad
    attribute values (it runs during type inference, so the builder, parser and verifier all see it).
    """

    def infer(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
        check_dtype(ins[0], allowed, f"{name} operand")
        if check is not None:
            check(a)
        return [ins[0]]

    def compute(xs: Sequence[np.ndarray], a: Mapping[str, Any]) -> list[np.ndarray]:
        x = xs[0]
        return [np.asarray(fn(x, **a)).astype(x.dtype, copy=False)]

    return register(OpDef(
        name, ("x",), infer, compute, FusionKind.ELEMENTWISE, attrs=attrs,
        flops=elementwise_flops(flops_per_elem), doc=doc,
    ))


def binary(name: str, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], result_dtype: DType | None = None,
           doc: str = "", allowed: str = "any", flops_per_elem: int = 1, attrs: tuple[Attr, ...] = (),
           inputs: tuple[str, str] = ("a", "b")) -> OpDef:
    """Declare a broadcasting op of two operands; ``fn(a, b, **attrs)`` is its numpy reference."""

    def compute(xs: Sequence[np.ndarray], a: Mapping[str, Any]) -> list[np.ndarray]:
        out = np.asarray(fn(xs[0], xs[1], **a))
        return [out.astype(result_dtype.numpy if result_dtype else xs[0].dtype, copy=False)]

    return register(OpDef(
        name, inputs, broadcast_infer(result_dtype, allowed), compute, FusionKind.BROADCAST, attrs=attrs,
        flops=elementwise_flops(flops_per_elem), doc=doc,
    ))


def dim_product(dims: Sequence[Dim]) -> int | None:
    """Product of static dims, or None if any is symbolic."""
    n = 1
    for d in dims:
        if isinstance(d, str):
            return None
        n *= d
    return n


@dataclass(frozen=True)
class SymProduct:
    """A product of dims kept exact with symbols: ``coeff * sym1 * sym2 …`` (e.g. 768*B)."""

    coeff: int
    syms: tuple[str, ...] = ()  # sorted, with repeats

    @staticmethod
    def of(dims: Sequence[Dim]) -> SymProduct:
        """The product of ``dims``."""
        coeff, syms = 1, []
        for d in dims:
            if isinstance(d, str):
                syms.append(d)
            else:
                coeff *= d
        return SymProduct(coeff, tuple(sorted(syms)))

    def divide(self, other: SymProduct) -> SymProduct | None:
        """``self / other`` when it is an exact product again, else None."""
        if other.coeff == 0 or self.coeff % other.coeff:
            return None
        mine, theirs = Counter(self.syms), Counter(other.syms)
        if theirs - mine:
            return None
        return SymProduct(self.coeff // other.coeff, tuple(sorted((mine - theirs).elements())))

    def as_dim(self) -> Dim | None:
        """The single dim this product equals (an int, or one symbol times 1), else None."""
        if not self.syms:
            return self.coeff
        if len(self.syms) == 1 and self.coeff == 1:
            return self.syms[0]
        return None

    def __str__(self) -> str:
        head = [str(self.coeff)] if self.coeff != 1 or not self.syms else []
        return "*".join(head + list(self.syms))


def product_dim(dims: Sequence[Dim], what: str) -> Dim:
    """The product of ``dims`` as one dim; raises ValueError when it needs several symbols (B*S)."""
    p = SymProduct.of(dims)
    d = p.as_dim()
    if d is None:
        raise ValueError(f"{what}: the product {p} of dims {list(dims)} is not a single dim")
    return d


def same_dims(a: Sequence[Dim], b: Sequence[Dim]) -> bool:
    """True when two dim lists multiply to the same (possibly symbolic) product."""
    return SymProduct.of(a) == SymProduct.of(b)


_NARROW_FLOATS = (DType.f16.numpy, DType.bf16.numpy)


def upcast(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 when it is a narrower float (numpy computes f16/bf16 slowly and inexactly)."""
    return x.astype(np.float32) if x.dtype in _NARROW_FLOATS else x
