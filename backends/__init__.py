"""Code-generating backends. Each turns a Graph into an executable with ``run(list[ndarray])``."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from ..ir.graph import Graph

BACKENDS = ("reference",)


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


def build(graph: Graph, backend: str = "auto") -> Executable:
    """Build ``graph`` for ``backend`` (``auto`` picks the best one available)."""
    if backend in ("auto", "reference"):
        from .reference import ReferenceExecutable

        return ReferenceExecutable(graph)
    raise ValueError(f"unknown backend '{backend}' (available: {', '.join(('auto',) + BACKENDS)})")
