"""Element types and tensor types of the IR.

A dimension is either a non-negative ``int`` or a symbol (``str``, e.g. ``"B"`` for a dynamic batch).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

import ml_dtypes
import numpy as np

Dim = Union[int, str]


class DType(enum.Enum):
    """Element type of a tensor; the value is the name used in IR text."""

    f32 = "f32"
    f16 = "f16"
    bf16 = "bf16"
    f64 = "f64"
    i8 = "i8"
    u8 = "u8"
    i32 = "i32"
    i64 = "i64"
    bool = "bool"

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype that holds values of this type."""
        return _TO_NUMPY[self]

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return self.numpy.itemsize

    @property
    def is_float(self) -> bool:
        """True for floating-point types."""
        return self in (DType.f32, DType.f16, DType.bf16, DType.f64)

    @property
    def is_int(self) -> bool:
        """True for integer types (bool excluded)."""
        return self in (DType.i8, DType.u8, DType.i32, DType.i64)

    @staticmethod
    def from_numpy(dtype: np.dtype | type) -> DType:
        """The DType of a numpy dtype; raises ValueError for types the IR does not have."""
        dt = np.dtype(dtype)
        for k, v in _TO_NUMPY.items():
            if v == dt:
                return k
        raise ValueError(f"numpy dtype {dt} has no graphopt DType")

    def __str__(self) -> str:
        return self.value


_TO_NUMPY: dict[DType, np.dtype] = {
    DType.f32: np.dtype(np.float32),
    DType.f16: np.dtype(np.float16),
    DType.bf16: np.dtype(ml_dtypes.bfloat16),
    DType.f64: np.dtype(np.float64),
    DType.i8: np.dtype(np.int8),
    DType.u8: np.dtype(np.uint8),
    DType.i32: np.dtype(np.int32),
    DType.i64: np.dtype(np.int64),
    DType.bool: np.dtype(np.bool_),
}


@dataclass(frozen=True)
class TensorType:
    """Shape and element type of a tensor value, printed as ``f32[B,768]`` (``f32[]`` for a scalar)."""

    shape: tuple[Dim, ...]
    dtype: DType

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))
        for d in self.shape:
            if isinstance(d, bool) or not isinstance(d, (int, str)):
                raise TypeError(f"dimension {d!r} is neither int nor symbol")
            if isinstance(d, int) and d < 0:
                raise ValueError(f"negative dimension {d} in shape {self.shape}")

    @property
    def rank(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        """True when no dimension is symbolic."""
        return all(isinstance(d, int) for d in self.shape)

    def numel(self, bindings: dict[str, int] | None = None) -> int:
        """Element count; symbolic dims are looked up in ``bindings`` (1 when absent)."""
        n = 1
        for d in self.shape:
            n *= d if isinstance(d, int) else (bindings or {}).get(d, 1)
        return n

    def nbytes(self, bindings: dict[str, int] | None = None) -> int:
        """Size in bytes; symbolic dims are looked up in ``bindings`` (1 when absent)."""
        return self.numel(bindings) * self.dtype.itemsize

    def with_shape(self, shape: tuple[Dim, ...] | list[Dim]) -> TensorType:
        """The same dtype with another shape."""
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype: DType) -> TensorType:
        """The same shape with another dtype."""
        return TensorType(self.shape, dtype)

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"

    @staticmethod
    def of(array: np.ndarray) -> TensorType:
        """The type of a concrete numpy array."""
        return TensorType(tuple(int(d) for d in array.shape), DType.from_numpy(array.dtype))


def broadcast_shapes(*shapes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """Numpy-style broadcasting of shapes that may hold symbols; raises ValueError if incompatible."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        result: Dim = 1
        for d in dims:
            if d == 1 or d == result:
                continue
            if result == 1:
                result = d
            elif isinstance(d, str) or isinstance(result, str):
                # A symbol against a concrete size: the symbol must equal it at run time.
                result = result if isinstance(result, int) else d
            else:
                raise ValueError(f"shapes {[list(s) for s in shapes]} do not broadcast")
        out.append(result)
    return tuple(out)
