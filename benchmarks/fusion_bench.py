"""Cost-model-guided fusion against the rule of the first ``fuse``, end to end on the TVM backend.

    python -m graphopt.benchmarks.fusion_bench squeezenet1_1:image_size=64 resnet50:image_size=64
    python -m graphopt.benchmarks.fusion_bench bert_base:layers=2,seq=16 --runs 30 --json out.json

Both variants run the same passes (``canonicalize,fuse`` by default) on the same imported graph in
one process; they differ only in the pass context: ``model`` is what ``graphopt.compile`` uses (the
shipped cost model, measuring when its intervals overlap), ``rule`` has no cost model, so ``fuse``
takes every legal merge. Each is built with TVM, both outputs are checked against torch eager, then
``--runs`` calls of each are timed interleaved (after warm-up) and the medians compared. The
machine is shared: only the ratio inside one run means anything.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from ..api import pass_context, tvm_pass_context
from ..backends import build
from ..costmodel import default_model_path
from ..frontends.detect import import_model
from ..ir.graph import CONST, Graph
from ..passes import run_passes
from ..passes.schedule import kernel_ops
from .bench import compare, load_model, reference_outputs

DEFAULT_PASSES = "canonicalize,fuse"
MODES = ("model", "rule")


@dataclass
class FusionRow:
    """One model: kernels, compile seconds and median milliseconds of each variant."""

    model: str
    kernels_model: int
    kernels_rule: int
    compile_s_model: float
    compile_s_rule: float
    ms_model: float
    ms_rule: float
    max_rel_err: float  # the worse variant's, against torch eager
    same_kernels: bool = False  # both variants made the same kernels: their ratio is the run's noise

    @property
    def speedup(self) -> float:
        """Rule time over model time: above 1 the cost model's fusion is faster."""
        return self.ms_rule / self.ms_model


def bench_fusion(arg: str, passes: str = DEFAULT_PASSES, runs: int = 30, rtol: float = 1e-3) -> FusionRow:
    """Compile ``arg`` (a zoo model spec) both ways, check the outputs, time them interleaved."""
    with TemporaryDirectory() as tmp:
        spec = load_model(arg, 1, Path(tmp))
    want, _ = reference_outputs(spec)
    graph = import_model(spec.module, tuple(spec.torch_inputs()))
    exes, kernels, seconds, partitions = {}, {}, {}, {}
    for mode in MODES:
        start = time.perf_counter()
        ctx = pass_context(passes, tvm=True) if mode == "model" else tvm_pass_context()
        if mode == "model" and ctx.cost_model is None:
            raise RuntimeError(f"the default cost model did not load ({default_model_path()})")
        fused, _ = run_passes(graph, passes, ctx=ctx)
        exes[mode] = build(fused, "tvm")
        seconds[mode] = time.perf_counter() - start
        kernels[mode] = sum(n.op != "const" for n in fused.nodes)
        partitions[mode] = partition(fused)
    worst = 0.0
    for mode in MODES:
        err, _ = compare(exes[mode].run(list(spec.inputs)), want, rtol, 1e-4)
        if err > rtol:  # max |got - want| over max |want|: fusion reorders float sums
            raise AssertionError(f"{spec.name} ({mode}): max relative error {err:.2e} > {rtol:g}")
        worst = max(worst, err)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for i in range(runs + 3):
        for mode in (MODES if i % 2 == 0 else MODES[::-1]):  # alternate who goes first
            start = time.perf_counter()
            exes[mode].run(list(spec.inputs))
            if i >= 3:  # the first rounds warm caches and thread pools
                times[mode].append(time.perf_counter() - start)
    ms = {m: float(np.median(t)) * 1e3 for m, t in times.items()}
    return FusionRow(spec.name, kernels["model"], kernels["rule"], seconds["model"], seconds["rule"],
                     ms["model"], ms["rule"], worst, partitions["model"] == partitions["rule"])


def partition(graph: Graph) -> list[tuple[str, tuple[tuple[int | str, ...], ...]]]:
    """Each kernel's ops and operand shapes in order: equal for two graphs cut into the same kernels
    (annotations such as ``cost`` left out)."""
    return [(kernel_ops(n), tuple(tuple(v.type.shape) for v in n.inputs)) for n in graph.nodes if n.op != CONST]


def to_markdown(rows: Sequence[FusionRow]) -> str:
    """The table, then the geomean speedup."""
    header = ("| model | kernels (model / rule) | same kernels | compile s (model / rule) | ms model | ms rule "
              "| rule / model |")
    lines = [header, "|---|---:|:-:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.model} | {r.kernels_model} / {r.kernels_rule} | {'yes' if r.same_kernels else 'no'} | "
                     f"{r.compile_s_model:.1f} / {r.compile_s_rule:.1f} | {r.ms_model:.3f} | {r.ms_rule:.3f} "
                     f"| {r.speedup:.3f}x |")
    if rows:
        geo = math.exp(sum(math.log(r.speedup) for r in rows) / len(rows))
        lines.append(f"\ngeomean rule / model: {geo:.3f}x (above 1: the cost model's fusion is faster)")
        same = [r for r in rows if r.same_kernels]
        if same:
            # Same kernels, same code: how far these ratios are from 1 is what this run's noise does.
            spread = max(abs(math.log(r.speedup)) for r in same)
            lines.append(f"noise: {len(same)} of {len(rows)} models have the same kernels both ways; their "
                         f"ratios are within {math.exp(spread):.3f}x of 1")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: models, then the table (and ``--json``)."""
    p = argparse.ArgumentParser(prog="python -m graphopt.benchmarks.fusion_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="zoo models, e.g. resnet50:image_size=64 bert_base:layers=2,seq=16")
    p.add_argument("--passes", default=DEFAULT_PASSES, help=f"pass pipeline (default {DEFAULT_PASSES})")
    p.add_argument("--runs", type=int, default=30, help="timed calls of each variant (default 30, at least 20)")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)
    if args.runs < 20:
        p.error("--runs must be at least 20 (DESIGN §7: median of at least 20 runs)")
    rows = []
    for arg in args.models:
        print(f"{arg} ...", file=sys.stderr, flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # TVM's and torch's export chatter
            rows.append(bench_fusion(arg, args.passes, args.runs))
    print(to_markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([{**asdict(r), "speedup": r.speedup} for r in rows], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
