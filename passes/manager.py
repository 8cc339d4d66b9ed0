"""The pass manager: runs a pipeline of passes with instruments around each one.

    pm = PassManager("canonicalize", instruments=[TimingInstrument(), DumpIR("dumps")])
    graph = pm.run(graph)

Verification after every pass is on by default (``verify=False`` turns it off). An exception
raised inside a pass comes out as ``PassError`` naming the pass, with the original chained.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..ir.graph import Graph
from .base import Pass, PassContext, PassError
from .instruments import DumpIR, Instrument, PassLog, VerifyInstrument
from .spec import format_pipeline, parse_pipeline


class PassManager:
    """A pipeline (spec string or pass objects) plus the instruments that watch it."""

    def __init__(
        self,
        pipeline: str | Sequence[Pass],
        instruments: Sequence[Instrument] = (),
        verify: bool = True,
    ) -> None:
        self.passes: tuple[Pass, ...] = tuple(parse_pipeline(pipeline) if isinstance(pipeline, str) else pipeline)
        for p in self.passes:
            if not isinstance(p, Pass) or not isinstance(p.name, str):
                raise TypeError(f"{p!r} is not a pass (needs a 'name' and run(graph, ctx))")
        self.instruments: tuple[Instrument, ...] = ((VerifyInstrument(),) if verify else ()) + tuple(instruments)

    @property
    def spec(self) -> str:
        """The pipeline as a spec string."""
        return format_pipeline(self.passes)

    def run(self, graph: Graph, ctx: PassContext | None = None) -> Graph:
        """Run every pass in order on ``graph`` and return the result."""
        ctx = ctx if ctx is not None else PassContext()
        for inst in self.instruments:
            inst.enter_pipeline(graph, ctx)
        for index, p in enumerate(self.passes, start=1):
            for inst in self.instruments:
                inst.before_pass(p, index, graph, ctx)
            start = time.perf_counter()
            try:
                result = p.run(graph, ctx)
            except Exception as e:
                raise PassError(f"pass '{p.name}' failed: {type(e).__name__}: {e}", p.name) from e
            seconds = time.perf_counter() - start
            if not isinstance(result, Graph):
                raise PassError(f"pass '{p.name}' returned {type(result).__name__}, not a Graph", p.name)
            for inst in reversed(self.instruments):
                inst.after_pass(p, index, graph, result, seconds, ctx)
            graph = result
        for inst in reversed(self.instruments):
            inst.exit_pipeline(graph, ctx)
        return graph

    def __repr__(self) -> str:
        return f"PassManager({self.spec!r})"


def run_passes(
    graph: Graph,
    pipeline: str | Sequence[Pass],
    dump_ir: str | Path | None = None,
    verify: bool = True,
    ctx: PassContext | None = None,
) -> tuple[Graph, list[dict[str, Any]]]:
    """Run a pipeline and return the result with one JSON-ready log entry per pass (for API and CLI)."""
    log = PassLog()
    instruments: list[Instrument] = [log]
    if dump_ir is not None:
        instruments.append(DumpIR(dump_ir))
    result = PassManager(pipeline, instruments, verify=verify).run(graph, ctx)
    return result, log.entries
