"""Code-generating backends. Each turns a Graph into an executable with ``run(list[ndarray])``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ..ir.graph import Graph

BACKENDS = ("reference", "tvm")


class Executable(Protocol):
    """What a backend returns: something that runs the graph on numpy arrays."""

    name: str
    graph: Graph

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Outputs for ``inputs`` given in graph-input order."""
        ...

    def describe(self) -> list[str]:
        """Report lines saying where each part of the graph runs (fallbacks named)."""
        ...


class NotedExecutable:
    """An executable whose report starts with a note, e.g. why ``auto`` did not pick TVM."""

    def __init__(self, inner: Executable, note: str) -> None:
        self.inner = inner
        self.note = note
        self.name = inner.name
        self.graph = inner.graph

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the wrapped executable."""
        return self.inner.run(inputs)

    def describe(self) -> list[str]:
        """The note, then the wrapped executable's lines."""
        return [self.note, *self.inner.describe()]


def build(graph: Graph, backend: str = "auto") -> Executable:
    """Build ``graph`` for ``backend``; ``auto`` picks TVM when it imports and builds, else the interpreter."""
    if backend == "reference":
        from .reference import ReferenceExecutable

        return ReferenceExecutable(graph)
    if backend == "tvm":
        from .tvm import build_tvm

        return build_tvm(graph)
    if backend == "auto":
        from .reference import ReferenceExecutable
        from .tvm import build_tvm

        try:
            return build_tvm(graph)
        except Exception as e:  # noqa: BLE001 - whatever stops TVM, the interpreter still runs the graph
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return NotedExecutable(ReferenceExecutable(graph),
                                   f"backend auto: tvm unavailable ({reason}); using the reference interpreter")
    raise ValueError(f"unknown backend '{backend}' (available: {', '.join(('auto',) + BACKENDS)})")
