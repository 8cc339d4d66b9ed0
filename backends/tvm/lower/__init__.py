"""Op -> TE compute: one lowering per op family, registered by op name in ``LOWERINGS``.

A lowering takes the operands as TE tensors, the node's attributes and a ``LowerContext`` (concrete
operand and result types, which operands are compile-time constants, the kernel's schedule) and
returns the results as TE tensors. Semantics follow the reference implementations in
``graphopt/ir/ops``; where TVM's own intrinsic differs (NaN in max/min, integer division by zero,
narrow floats) the lowering spells the reference's behaviour out. Convolution and matmul lower to
the register-tiled forms the default schedules expect and record them in ``ctx.anchor``.

The modules mirror ``ir/ops``: ``elementwise``, ``nn`` (normalization, softmax, reductions,
pooling), ``linalg`` (matmul, gemm, conv2d) and ``shape``; ``base`` holds what they share.
"""

from . import elementwise, linalg, nn, shape  # noqa: F401 - importing registers the lowerings
from .base import LOWERINGS, TVM_DTYPE, Anchor, LowerContext, LoweringError, Pack, lower_node, lower_op
from . import quant  # noqa: F401, E402 - the q.* lowerings (int8 kernels); after .base, which they use
from .elementwise import BINARY, UNARY
from ..schedule import conv_tile, matmul_tile

__all__ = [
    "BINARY", "LOWERINGS", "TVM_DTYPE", "UNARY", "Anchor", "LowerContext", "LoweringError", "Pack", "conv_tile",
    "lower_node", "lower_op", "matmul_tile",
]
