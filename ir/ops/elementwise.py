"""Elementwise and broadcasting math, activations and comparisons."""

from __future__ import annotations

import numpy as np

from ..opdef import Attr, AttrKind
from ..types import DType
from .common import binary, unary

# Binary arithmetic (numpy broadcasting).
binary("math.add", np.add, doc="a + b")
binary("math.sub", np.subtract, doc="a - b")
binary("math.mul", np.multiply, doc="a * b")

# Activations.
unary("nn.relu", lambda x: np.maximum(x, 0), doc="max(x, 0)")
unary("nn.leaky_relu", lambda x, alpha: np.where(x >= 0, x, x * alpha),
      attrs=(Attr("alpha", AttrKind.FLOAT, 0.01),), doc="x if x >= 0 else alpha * x")

# Comparisons give bool.
binary("cmp.less", np.less, result_dtype=DType.bool, doc="a < b")
