"""How the TVM backend spells ``x ** exponent`` for an exponent known at compile time.

The lowering (``lower.elementwise.pow_by_constant``) and the cost model's features
(``costmodel.features``) both ask ``pow_spelling``, so a feature says what the kernel computes: a
few multiplies cost what a relu costs, a square root what a division costs, and only the rest a
libm ``pow`` call per element. This module imports nothing from TVM.
"""

from __future__ import annotations

import math
from typing import Literal

PowSpelling = Literal["multiply", "sqrt", "pow"]


def pow_spelling(exponent: float) -> PowSpelling:
    """``multiply`` for integers of magnitude 1 to 4 (``x ** 3`` of the tanh GELU), ``sqrt`` for
    magnitudes 0.5 and 0.75 (LRN's beta), ``pow`` (libm) for every other exponent."""
    if not math.isfinite(exponent):
        return "pow"
    if exponent == int(exponent) and 1 <= abs(exponent) <= 4:
        return "multiply"
    if abs(exponent) in (0.5, 0.75):
        return "sqrt"
    return "pow"
