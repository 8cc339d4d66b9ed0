"""Cost-model-guided fusion against the rule of the first ``fuse``, end to end on the TVM backend.

    python -m graphopt.benchmarks.fusion_bench squeezenet1_1:image_size=64 resnet50:image_size=64
    python -m graphopt.benchmarks.fusion_bench bert_base:layers=2,seq=16 --runs 30 --json out.json

Both variants run the same passes (``canonicalize,fuse`` by default) on the same imported graph in
one process; they differ only in the pass context: ``model`` is what ``graphopt.compile`` uses (the
shipped cost model, measuring when its intervals overlap), ``rule`` has no cost model, so ``fuse``
takes every legal merge. Each is built with TVM, both outputs are checked against torch eager, then
``--runs`` calls of each are timed interleaved (after warm-up) and the medians compared. The
machine is shared: only the ratio inside one run means anything.

End to end, two builds of the *same* graph differ by 1-4 % here (their buffers land differently),
which is more than most fusion decisions are worth. So the kernels the two partitions do not
share are also timed on their own (``time_difference``): each built as in the model, both sets
timed back to back for ``--runs`` turns, the median of the per-turn ratios. The rest of the two
programs is the same code, so ``rule_ms / (rule_ms - saved)`` is the fusion decisions' effect on
the whole model ("from the kernels that differ"), to a precision the end-to-end ratio cannot give.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from ..api import pass_context, tvm_pass_context
from ..backends import build
from ..costmodel import default_model_path
from ..frontends.detect import import_model
from ..ir.graph import CONST, Graph, Node
from ..passes import run_passes
from ..passes.fuse import KERNEL_CALL_US
from ..passes.schedule import kernel_ops, kernel_workload
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
    differing_model: int = 0  # kernels only the model's partition has
    differing_rule: int = 0  # kernels only the rule's partition has
    us_differing_model: float = 0.0  # those kernels' summed time (median turn), VM calls included
    us_differing_rule: float = 0.0
    differing_ratio: float = 1.0  # median over turns of rule / model time of the differing kernels

    @property
    def speedup(self) -> float:
        """Rule time over model time: above 1 the cost model's fusion is faster."""
        return self.ms_rule / self.ms_model

    @property
    def speedup_from_kernels(self) -> float:
        """The end-to-end rule time over itself less what the differing kernels save: the fusion
        decisions' effect with the build-to-build noise of the rest of the program left out."""
        saved_ms = self.us_differing_model * (self.differing_ratio - 1.0) / 1e3
        return self.ms_rule / (self.ms_rule - saved_ms)


def bench_fusion(arg: str, passes: str = DEFAULT_PASSES, runs: int = 30, rtol: float = 1e-3) -> FusionRow:
    """Compile ``arg`` (a zoo model spec) both ways, check the outputs, time them interleaved."""
    with TemporaryDirectory() as tmp:
        spec = load_model(arg, 1, Path(tmp))
    want, _ = reference_outputs(spec)
    graph = import_model(spec.module, tuple(spec.torch_inputs()))
    exes, kernels, seconds, partitions, graphs = {}, {}, {}, {}, {}
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
        graphs[mode] = fused
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
    only_model, only_rule = differing_kernels(graphs["model"], graphs["rule"])
    diff = time_difference(only_model, only_rule, runs)
    return FusionRow(spec.name, kernels["model"], kernels["rule"], seconds["model"], seconds["rule"],
                     ms["model"], ms["rule"], worst, partitions["model"] == partitions["rule"],
                     len(only_model), len(only_rule), *diff)


def differing_kernels(model: Graph, rule: Graph) -> tuple[list[Node], list[Node]]:
    """The kernels of each graph that the other does not have (as a multiset of ``partition``
    entries), each as ``kernel_workload`` makes it: alone, its weights' data in its body."""
    def kernels(graph: Graph) -> list[tuple[tuple, Node]]:
        return list(zip(partition(graph), (n for n in graph.nodes if n.op != CONST)))

    mine, theirs = kernels(model), kernels(rule)
    left_m = Counter(e for e, _ in mine) - Counter(e for e, _ in theirs)
    left_r = Counter(e for e, _ in theirs) - Counter(e for e, _ in mine)

    def pick(pairs: list[tuple[tuple, Node]], left: Counter, weights: dict) -> list[Node]:
        picked = []
        for entry, node in pairs:
            if left[entry] > 0:
                left[entry] -= 1
                picked.append(kernel_workload(node, weights).nodes[-1])  # only the kernels that differ
        return picked

    return pick(mine, left_m, model.constants()), pick(theirs, left_r, rule.constants())


def time_difference(model: Sequence[Node], rule: Sequence[Node], turns: int) -> tuple[float, float, float]:
    """Summed microseconds of each side's kernels (median turn; one ``KERNEL_CALL_US`` per kernel)
    and rule / model over ``turns`` turns, the two sides timed back to back in each, so a burst of
    load hits both. Who goes first alternates, and the ratio is taken over each pair of turns (one
    of each order), the median over the pairs: the side that runs second finds the caches the other
    left, and a ratio per turn would swing with the order. (0, 0, 1) when nothing differs."""
    if not model and not rule:
        return 0.0, 0.0, 1.0
    from ..backends.tvm.measure import build_for_timing  # TVM only when there is something to time

    timed = {side: [build_for_timing(k, {}) for k in kernels] for side, kernels in (("model", model), ("rule", rule))}
    sums: dict[str, list[float]] = {"model": [], "rule": []}
    pairs = max(turns // 2, 1)
    for i in range(2 * pairs + 2):
        for side in (("model", "rule") if i % 2 == 0 else ("rule", "model")):
            us = sum(k.time(1, 3, 1) * 1e6 + KERNEL_CALL_US for k in timed[side])
            if i > 1:  # the first pair of turns warms caches
                sums[side].append(us)
    m, r = (np.asarray(sums[side]).reshape(pairs, 2).sum(axis=1) for side in ("model", "rule"))
    return float(np.median(sums["model"])), float(np.median(sums["rule"])), float(np.median(r / m))


def partition(graph: Graph) -> list[tuple[str, tuple[tuple[int | str, ...], ...]]]:
    """Each kernel's ops and operand shapes in order: equal for two graphs cut into the same kernels
    (annotations such as ``cost`` left out)."""
    return [(kernel_ops(n), tuple(tuple(v.type.shape) for v in n.inputs)) for n in graph.nodes if n.op != CONST]


def to_markdown(rows: Sequence[FusionRow]) -> str:
    """The table, then the geomean speedups (end to end, and from the kernels that differ)."""
    header = ("| model | kernels (model / rule) | compile s (model / rule) | ms model | ms rule | rule / model "
              "| differing kernels (model / rule) | their us (model / rule) | rule / model from them |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        differing = (f"{r.differing_model} / {r.differing_rule}", f"{r.us_differing_model:.1f} / {r.us_differing_rule:.1f}",
                     f"{r.speedup_from_kernels:.4f}x") if not r.same_kernels else ("none", "-", "1 (same code)")
        lines.append(f"| {r.model} | {r.kernels_model} / {r.kernels_rule} | "
                     f"{r.compile_s_model:.1f} / {r.compile_s_rule:.1f} | {r.ms_model:.3f} | {r.ms_rule:.3f} "
                     f"| {r.speedup:.3f}x | {' | '.join(differing)} |")
    if rows:
        lines.append(f"\ngeomean rule / model: end to end {_geomean(r.speedup for r in rows):.3f}x, from the "
                     f"kernels that differ {_geomean(r.speedup_from_kernels for r in rows):.4f}x "
                     "(above 1: the cost model's fusion is faster)")
        same = [r for r in rows if r.same_kernels]
        if same:
            # Same kernels, same code: how far these ratios are from 1 is what this run's noise does.
            spread = max(abs(math.log(r.speedup)) for r in same)
            lines.append(f"noise: {len(same)} of {len(rows)} models have the same kernels both ways; their "
                         f"end-to-end ratios are within {math.exp(spread):.3f}x of 1")
    return "\n".join(lines)


def _geomean(values: Iterable[float]) -> float:
    logs = [math.log(v) for v in values]
    return math.exp(sum(logs) / len(logs))


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
        Path(args.json).write_text(json.dumps([{**asdict(r), "speedup": r.speedup,
                                                "speedup_from_kernels": r.speedup_from_kernels} for r in rows],
                                              indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
