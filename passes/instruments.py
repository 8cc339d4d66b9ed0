"""Pass instruments: hooks the pass manager calls around the pipeline and around every pass.

Verification, timing, IR dumps and print-after-change are all instruments on the same four hooks
(as in TVM's ``tvm.ir.instrument``). Before-hooks run in list order and after-hooks in reverse, so
the first instrument wraps the others; the manager puts ``VerifyInstrument`` first, which means a
``DumpIR`` still writes the broken graph before verification rejects it.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from ..ir.graph import Graph
from ..ir.parser import save_ir
from ..ir.verify import VerifyError, verify
from .base import Pass, PassContext, PassVerifyError
from .spec import format_pass


class Instrument:
    """Base class: every hook does nothing; override the ones you need."""

    def enter_pipeline(self, graph: Graph, ctx: PassContext) -> None:
        """Called once with the pipeline's input graph."""

    def before_pass(self, p: Pass, index: int, graph: Graph, ctx: PassContext) -> None:
        """Called before pass number ``index`` (1-based) runs on ``graph``."""

    def after_pass(self, p: Pass, index: int, before: Graph, after: Graph, seconds: float, ctx: PassContext) -> None:
        """Called after a pass returned ``after``; ``seconds`` is the time spent in ``p.run`` alone."""

    def exit_pipeline(self, graph: Graph, ctx: PassContext) -> None:
        """Called once with the pipeline's final graph."""


class VerifyInstrument(Instrument):
    """Verifies the input graph and the graph after every pass; the error names the pass."""

    def enter_pipeline(self, graph: Graph, ctx: PassContext) -> None:
        """Reject an invalid input before any pass sees it."""
        try:
            verify(graph)
        except VerifyError as e:
            raise PassVerifyError(f"pipeline input: {e}", None) from e

    def after_pass(self, p: Pass, index: int, before: Graph, after: Graph, seconds: float, ctx: PassContext) -> None:
        """Raise PassVerifyError naming ``p`` if its result breaks an invariant."""
        try:
            verify(after)
        except VerifyError as e:
            raise PassVerifyError(f"after pass '{p.name}': {e}", p.name) from e


class TimingInstrument(Instrument):
    """Collects the seconds each pass took; ``report()`` formats them as a table."""

    def __init__(self) -> None:
        self.records: list[tuple[str, float]] = []

    def enter_pipeline(self, graph: Graph, ctx: PassContext) -> None:
        """Start a fresh set of records for this run."""
        self.records = []

    def after_pass(self, p: Pass, index: int, before: Graph, after: Graph, seconds: float, ctx: PassContext) -> None:
        """Record the pass's time."""
        self.records.append((p.name, seconds))

    @property
    def total(self) -> float:
        """Seconds spent in all passes together."""
        return sum(s for _, s in self.records)

    def report(self) -> str:
        """One line per pass (milliseconds and share of the total), then the total."""
        total = self.total
        width = max([len(n) for n, _ in self.records] + [len("total")])
        lines = [f"{'pass':<{width}}  {'ms':>10}  {'share':>6}"]
        for name, s in self.records:
            share = 100.0 * s / total if total > 0 else 0.0
            lines.append(f"{name:<{width}}  {s * 1e3:10.3f}  {share:5.1f}%")
        lines.append(f"{'total':<{width}}  {total * 1e3:10.3f}  {100.0 if self.records else 0.0:5.1f}%")
        return "\n".join(lines)


class DumpIR(Instrument):
    """Writes ``00-input.gir`` and one numbered ``NN-<pass>.gir`` (with ``.npz`` if needed) per pass."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.files: list[Path] = []

    def enter_pipeline(self, graph: Graph, ctx: PassContext) -> None:
        """Create the folder and dump the input graph."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.files = []
        self._dump(0, "input", graph)

    def after_pass(self, p: Pass, index: int, before: Graph, after: Graph, seconds: float, ctx: PassContext) -> None:
        """Dump the graph the pass returned."""
        self._dump(index, p.name, after)

    def _dump(self, index: int, label: str, graph: Graph) -> None:
        path = self.directory / f"{index:02d}-{label}.gir"
        save_ir(graph, path)
        self.files.append(path)


class PrintAfterChange(Instrument):
    """Prints a pass's result only when it changed the graph (text or constant data)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def after_pass(self, p: Pass, index: int, before: Graph, after: Graph, seconds: float, ctx: PassContext) -> None:
        """Print ``after`` under a comment header if it differs from ``before``."""
        if after != before:
            out = self.stream or sys.stdout
            out.write(f"// ----- after pass {index} '{p.name}' -----\n{after.to_text()}")


class PassLog(Instrument):
    """Records one JSON-ready entry per pass: name, spec, seconds, changed and its counters."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self._counts_before: Counter[str] = Counter()

    def enter_pipeline(self, graph: Graph, ctx: PassContext) -> None:
        """Start a fresh log for this run."""
        self.entries = []

    def before_pass(self, p: Pass, index: int, graph: Graph, ctx: PassContext) -> None:
        """Remember the pass's counters so the entry shows only this run's share."""
        self._counts_before = Counter(ctx.stats.get(p.name, Counter()))

    def after_pass(self, p: Pass, index: int, before: Graph, after: Graph, seconds: float, ctx: PassContext) -> None:
        """Add the entry for ``p``."""
        counts = Counter(ctx.stats.get(p.name, Counter()))
        counts.subtract(self._counts_before)
        counts = Counter({k: v for k, v in counts.items() if v})
        changed = after != before
        summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        self.entries.append({
            "name": p.name, "spec": format_pass(p), "seconds": seconds, "changed": changed,
            "counts": dict(counts), "summary": summary or ("changed" if changed else "no change"),
        })
