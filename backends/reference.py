"""The reference backend: runs the graph with the numpy interpreter. Always available."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..ir.graph import Graph
from ..ir.interpreter import run_graph


class ReferenceExecutable:
    """A graph bound to the interpreter."""

    name = "reference"

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run on numpy inputs in graph-input order."""
        return run_graph(self.graph, inputs)

    def describe(self) -> list[str]:
        """Report lines: where each part of the graph runs."""
        return [f"all {len(self.graph.nodes)} nodes run on the numpy reference interpreter"]
