"""Annotations: pass results attached to nodes and printed in IR dumps.

An annotation value is a plain literal (int, float, bool, str, list, nested dict) or one of the two
structured values below, each with its own short text form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Union


@dataclass(frozen=True)
class Cost:
    """A predicted kernel time with its uncertainty, printed ``cost=41.0us±3.2``."""

    mean_us: float
    err_us: float

    def __str__(self) -> str:
        return f"{_num(self.mean_us)}us±{_num(self.err_us)}"


@dataclass(frozen=True)
class BufferRef:
    """Where a value lives: an arena and a byte offset, printed ``mem=arena0+4096``."""

    arena: str
    offset: int

    def __str__(self) -> str:
        return f"{self.arena}+{self.offset}"


AnnotationValue = Union[int, float, bool, str, Cost, BufferRef, tuple, Mapping[str, "AnnotationValue"]]


def _num(x: float) -> str:
    return repr(float(x))
