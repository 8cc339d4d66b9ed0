"""The op set. Each module declares a family of ops; importing this package registers them all."""

from . import elementwise, linalg, shape  # noqa: F401
