"""The op set of docs/ops.md. Each module declares a family of ops; importing this package registers them all."""

from . import elementwise, linalg, nn, quant, reduce, shape  # noqa: F401
