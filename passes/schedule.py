"""``schedule``: choose each kernel's loop schedule and annotate it ``sched={...}``.

Every ``fused`` node and every standalone op node is a kernel. Its *workload* is its IR with static
shapes (symbolic dims bound to 1) and its weights as constants, hashed by ``workload_key``;
repeated layers share one workload and are searched once. A workload already in the tuning database
(for this target and these versions) is annotated from it without measuring. Otherwise ``tune``
decides:

* ``none``: the backend's default schedule (no annotation);
* ``fast`` (the default): the heaviest kernels covering ``coverage`` of the graph's FLOPs, at most
  ``candidates`` schedules each, within a total budget that grows with the model's FLOPs (3 s a
  GFLOP, 2 to 25 s); kernels whose share of it would not pay for two builds are left out;
* ``full``: every kernel, the whole search space;
* a number: that many seconds, spread over the kernels by FLOPs, the whole space in order.

Candidates come from ``search_space``. Without a cost model they are measured in order in two
stages: tiles with base knobs, then knob variants of the best tile. With ``ctx.cost_model`` they
are ranked by predicted mean and only the top ``top-k`` are measured, widened by every candidate
whose predicted interval overlaps the best one's (wide intervals mean more measuring). The default
schedule is always measured too, and the leaders are timed again against it: a candidate must beat
it by ``MIN_GAIN`` to be chosen, so timing noise on a busy machine does not pick a slower schedule.
The decision reports both times; the best schedule goes into the database (the default as ``{}``,
which needs no annotation).
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..ir.analysis import node_flops
from ..ir.graph import CONST, FUSED, Graph, GraphBuilder, Node, Value
from ..ir.types import TensorType
from .base import CostPredictor, Decision, KernelMeasurer, PassContext, register_pass
from .search_space import KernelInfo, Sched, analyze, is_base, same_tile, space, target_lanes
from .tuning_db import TuningDatabase, TuningRecord, workload_key

FAST_SECONDS_PER_GFLOP = 3.0  # a fast tune's budget: worth spending more on models that run longer
FAST_BUDGET = (2.0, 25.0)  # seconds, the least and the most a fast tune plans to spend
MIN_SHARE = 0.25  # seconds: a kernel whose share of a fast budget buys less than ~2 builds is left out
FIRST_STAGE = 0.6  # share of a kernel's candidates spent on tiles before refining knobs
CONFIRM = 2  # leading candidates timed again against the default after the search
CONFIRM_ROUNDS = 3
MIN_GAIN = 0.02  # a candidate must beat the default by this much to replace it (timing noise)


# ------------------------------------------------------------------------------------- workloads


def _bind(t: TensorType) -> TensorType:
    return t if t.is_static else t.with_shape(tuple(d if isinstance(d, int) else 1 for d in t.shape))


def kernel_workload(node: Node, constants: Mapping[Value, np.ndarray]) -> Graph:
    """The kernel of ``node`` alone: static types, constant operands moved into its body.

    The result is a one-node graph whose ``fused`` node is what gets measured and keyed: values
    are renamed canonically, so repeated layers print (and hash) the same, and weights print as
    references, so their data does not change the key.
    """
    outer = GraphBuilder("kernel")
    inner = GraphBuilder("body")
    args: list[Value] = []
    env: dict[Value, Value] = {}
    sources = node.body.inputs if node.op == FUSED and node.body is not None else node.inputs
    for i, (v, src) in enumerate(zip(node.inputs, sources)):
        if v in constants:
            env[src] = inner.add(Node(CONST, (), (Value(_bind(v.type)),), {"value": constants[v]})).output
        else:
            args.append(outer.input(f"x{i}", _bind(v.type)))
            env[src] = inner.input(f"x{i}", _bind(v.type))
    body_nodes = node.body.nodes if node.op == FUSED and node.body is not None else (node,)
    for n in body_nodes:
        if n.op == CONST:
            env[n.output] = inner.add(Node(CONST, (), (Value(n.output.type),), n.attrs)).output
        else:
            env.update(zip(n.outputs, inner.op(n.op, [env[v] for v in n.inputs], n.attrs)))
    results = node.body.outputs if node.op == FUSED and node.body is not None else node.outputs
    body = inner.build([env[v] for v in results])
    return outer.build(outer.fused("kernel", args, body))


def kernel_ops(node: Node) -> str:
    """The ops a kernel runs: ``nn.conv2d+math.add+nn.relu``."""
    if node.op == FUSED and node.body is not None:
        return "+".join(n.op for n in node.body.nodes if n.op != CONST)
    return node.op


def format_schedule(sched: Mapping[str, Any]) -> str:
    """``tile=[8,32] vec=16 par=2`` (``default`` for ``{}``)."""
    parts = [f"{k}={list(v) if isinstance(v, tuple) else v}".replace(" ", "")
             for k, v in _annotation_value(sched).items()]
    return " ".join(parts) if parts else "default"


@dataclass
class Workload:
    """One distinct kernel of the graph and the nodes that run it."""

    key: str
    kernel: Node  # the canonical kernel (see ``kernel_workload``)
    ops: str
    flops: int
    nodes: list[int] = field(default_factory=list)  # indices into the graph's nodes

    @property
    def total_flops(self) -> int:
        """FLOPs of all the nodes running this workload."""
        return self.flops * len(self.nodes)


@dataclass
class SearchResult:
    """What a search found for one workload."""

    best: Sched
    best_s: float
    default_s: float
    measured: int
    numbers: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ the search


class _Timer:
    """Calls the measuring hook, counting the calls and the wall time they take (builds included)."""

    def __init__(self, measure: KernelMeasurer) -> None:
        self.measure = measure
        self.spent = 0.0
        self.calls = 0

    def __call__(self, kernel: Node, sched: Sched) -> float | None:
        start = time.perf_counter()
        try:
            return float(self.measure(kernel, sched))
        except Exception:  # noqa: BLE001 - a schedule TVM cannot build is just a bad candidate
            return None
        finally:
            self.calls += 1
            self.spent += time.perf_counter() - start


def _two_stage(cands: Sequence[Sched], info: KernelInfo, times: Mapping[int, float], first: int) -> Iterator[int]:
    """Indices of ``cands`` to measure next: ``first`` base tiles, then knob variants of the best tile."""
    base = [i for i, c in enumerate(cands) if is_base(c, info)]
    yield from base[:first]
    while True:
        measured = {i: t for i, t in times.items() if i >= 0}
        best = cands[min(measured, key=measured.__getitem__)] if measured else {}
        rest = [i for i in range(len(cands)) if i not in times]
        if not rest:
            return
        # Refine the best tile first; when its variants run out, continue down the list.
        same = [i for i in rest if same_tile(cands[i], best)]
        yield (same or rest)[0]


def _ranked(cands: Sequence[Sched], kernel: Node, model: CostPredictor, target: str,
            top_k: int) -> tuple[list[int], dict[str, float]]:
    """Candidates to measure by predicted time: the top ``top_k`` plus every one whose interval
    overlaps the best-predicted one's (at most three times ``top_k``)."""
    mean, low, high = (np.asarray(a, dtype=float) for a in model.predict([(kernel, c) for c in cands], target))
    order = [int(i) for i in np.argsort(mean, kind="stable")]
    best = order[0]
    overlapping = [i for i in order[top_k:] if low[i] < high[best]]
    k = min(len(order), top_k + len(overlapping), 3 * top_k)
    chosen = order[:top_k] + overlapping[: k - top_k]
    widths = (high[chosen] - low[chosen]) / np.maximum(mean[chosen], 1e-9)
    numbers = {"k": float(len(chosen)), "predicted_best_us": float(mean[best]),
               "predicted_best_low_us": float(low[best]), "predicted_best_high_us": float(high[best]),
               "interval_width_median": float(np.median(widths))}
    return chosen, numbers


def search(wl: Workload, timer: _Timer, lanes: int, *, limit: int | None, seconds: float | None,
           model: CostPredictor | None = None, target: str = "", top_k: int = 3) -> SearchResult | None:
    """Measure the default and candidate schedules of ``wl``; None when the default cannot be built.

    At most ``limit`` schedules (the default included) and about ``seconds`` of measuring; at
    least one candidate besides the default is always measured. The leaders are then timed again,
    alternating with the default, and each schedule is judged by its fastest sample: on a busy
    machine a slow sample says more about the neighbours than about the schedule. A candidate
    replaces the default only when it is faster by ``MIN_GAIN``.
    """
    start = timer.spent
    default_s = timer(wl.kernel, {})
    if default_s is None:
        return None
    info = analyze(wl.kernel)
    cands = space(info, lanes)
    times: dict[int, float] = {-1: default_s}  # -1 is the default; the fastest sample of each
    numbers: dict[str, float] = {}
    order: Iterator[int] | None = None
    if model is not None and cands:
        try:
            chosen, numbers = _ranked(cands, wl.kernel, model, target, top_k)
            order = iter(chosen)
        except Exception as e:  # noqa: BLE001 - a model that cannot predict this kernel: measure instead
            warnings.warn(f"cost model could not rank {wl.ops} ({type(e).__name__}: {e}); measuring in order",
                          stacklevel=2)
    if order is None:
        first = max(1, round(FIRST_STAGE * ((limit or len(cands) + 1) - 1)))
        order = _two_stage(cands, info, times, first)
    for i in order:
        count = len(times)
        if count > 1 and ((limit is not None and count >= limit) or
                          (seconds is not None and timer.spent - start >= seconds)):
            break
        t = timer(wl.kernel, cands[i])
        times[i] = math.inf if t is None else t  # a failed build stays measured (and never best)
    measured = len(times)
    leaders = sorted((i for i in times if i >= 0 and times[i] < math.inf), key=times.__getitem__)[:CONFIRM]
    for _ in range(CONFIRM_ROUNDS):
        for i in [-1, *leaders]:
            t = timer(wl.kernel, cands[i] if i >= 0 else {})
            if t is not None:
                times[i] = min(times[i], t)
    best_i = min(leaders, key=times.__getitem__, default=-1)
    if times[best_i] > times[-1] * (1 - MIN_GAIN):
        best_i = -1
    best = {} if best_i < 0 else cands[best_i]
    return SearchResult(best, times[best_i], times[-1], measured, numbers)


# -------------------------------------------------------------------------------------- the pass


def _progress(total: int) -> Any:
    """A tqdm bar on stderr, or a no-op one when stderr is not a terminal or GRAPHOPT_PROGRESS=0."""
    from tqdm import tqdm

    off = not sys.stderr.isatty() or os.environ.get("GRAPHOPT_PROGRESS", "1") == "0"
    return tqdm(total=total, desc="tuning kernels", unit="kernel", file=sys.stderr, disable=off, leave=False)


def parse_tune(tune: str) -> tuple[str, float | None]:
    """``tune`` as (mode, seconds): ``("fast", None)``, ``("budget", 30.0)`` …; ValueError if bad."""
    text = str(tune).strip().lower()
    if text in ("none", "fast", "full"):
        return text, None
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"tune must be none, fast, full or a number of seconds, not {tune!r}") from None
    if not seconds > 0:
        raise ValueError(f"a tuning budget must be positive seconds, not {tune!r}")
    return "budget", seconds


@register_pass
@dataclass(frozen=True)
class Schedule:
    """Annotate each kernel with its best measured schedule (from the tuning database or a search)."""

    name: ClassVar[str] = "schedule"
    tune: str = "fast"  # none | fast | full | SECONDS
    db: str = ""  # tuning database file ("" = tuning.jsonl in graphopt's cache folder)
    candidates: int = 8  # fast: schedules measured per kernel at most (the default included)
    coverage: float = 0.9  # fast: tune the heaviest kernels covering this share of the FLOPs
    top_k: int = 3  # with a cost model: candidates measured at least

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        """Return ``graph`` with ``sched`` annotations on the kernels a schedule was chosen for."""
        mode, seconds = parse_tune(self.tune)
        db = TuningDatabase(self.db or None, target=ctx.target)
        workloads, names, skipped = self._workloads(graph)
        for index, why in skipped.items():
            ctx.decisions.append(Decision(self.name, f"kernel {names[index]} {kernel_ops(graph.nodes[index])}", False,
                                          f"not tuned: no static workload ({why}); backend default"))
        chosen: dict[str, Sched] = {}
        counts = {"db-hit": 0, "tuned": 0, "default": 0, "measured": 0}
        for wl in workloads:
            rec = db.lookup(wl.key)
            if rec is not None:
                chosen[wl.key] = dict(rec.schedule)
                counts["db-hit"] += len(wl.nodes)
                self._decide(ctx, wl, names, True,
                             f"{format_schedule(rec.schedule)}, {rec.latency_us:.1f} us (tuning database, no search)",
                             {"best_us": rec.latency_us, "flops": float(wl.flops)})
        planned, seconds = self._plan(workloads, mode, seconds)
        todo = [wl for wl in planned if wl.key not in chosen]
        if todo and ctx.measure is None:
            for wl in todo:
                self._decide(ctx, wl, names, False, "not tuned: the backend has no timing hook; backend default", {})
        elif todo:
            counts["measured"] = self._tune(todo, ctx, db, chosen, mode, seconds, names)
        for wl in workloads:
            if wl.key not in chosen and wl not in todo:
                why = "tune=none" if mode == "none" else "tune=fast searches only the heaviest kernels"
                self._decide(ctx, wl, names, False, f"not tuned ({why}); backend default", {})
        nodes = list(graph.nodes)
        for wl in workloads:
            sched = chosen.get(wl.key)
            # An empty schedule (the default won) needs no annotation: the backend picks it anyway.
            for i in wl.nodes:
                if sched:
                    nodes[i] = nodes[i].with_annotations(sched=_annotation_value(sched))
            counts["tuned" if sched else "default"] += len(wl.nodes)
        ctx.record(self.name, counts)
        return Graph(graph.name, graph.inputs, tuple(nodes), graph.outputs)

    # ---------------------------------------------------------------------------------- helpers

    def _workloads(self, graph: Graph) -> tuple[list[Workload], dict[int, str], dict[int, str]]:
        """The graph's distinct kernels (in first-use order), a readable name per node index, and
        the nodes left out because their kernel does not specialize (with the reason)."""
        constants = graph.constants()
        by_key: dict[str, Workload] = {}
        names: dict[int, str] = {}
        skipped: dict[int, str] = {}
        for index, node in enumerate(graph.nodes):
            if node.op == CONST:
                continue
            names[index] = f"@{node.kernel_name}" if node.op == FUSED and node.kernel_name else f"#{index}"
            if "sched" in node.annotations:
                continue  # a schedule already written into the IR (by hand or a dump) is kept
            try:
                alone = kernel_workload(node, constants)
            except Exception as e:  # noqa: BLE001 - a kernel whose types do not specialize keeps the default
                skipped[index] = f"{type(e).__name__}: {e}"
                continue
            key, kernel = workload_key(alone), alone.nodes[-1]
            wl = by_key.get(key)
            if wl is None:
                wl = by_key[key] = Workload(key, kernel, kernel_ops(node), node_flops(kernel))
            wl.nodes.append(index)
        return list(by_key.values()), names, skipped

    def _plan(self, workloads: Sequence[Workload], mode: str,
              seconds: float | None) -> tuple[list[Workload], float | None]:
        """The workloads ``mode`` searches, heaviest first, and the seconds it may spend on them.

        The plan depends on the graph alone, not on the database or on timings, so a second
        compile plans the same workloads and finds every one of them in the database.
        """
        if mode == "none":
            return [], None
        heavy = sorted((wl for wl in workloads if mode == "full" or wl.flops > 0), key=lambda w: -w.total_flops)
        if mode != "fast":
            return heavy, seconds
        total = sum(wl.total_flops for wl in heavy)
        out, covered = [], 0
        for wl in heavy:
            if covered >= self.coverage * total:
                break
            out.append(wl)
            covered += wl.total_flops
        planned = sum(wl.total_flops for wl in out)
        budget = min(max(FAST_SECONDS_PER_GFLOP * planned / 1e9, FAST_BUDGET[0]), FAST_BUDGET[1])
        # A kernel whose share of the budget cannot pay for a couple of builds is not worth it.
        kept = [wl for n, wl in enumerate(out) if n == 0 or budget * wl.total_flops / planned >= MIN_SHARE]
        return kept, budget

    def _tune(self, todo: list[Workload], ctx: PassContext, db: TuningDatabase, chosen: dict[str, Sched],
              mode: str, seconds: float | None, names: Mapping[int, str]) -> int:
        """Search each workload of ``todo`` (heaviest first), record and annotate the best; the
        number of timings taken."""
        assert ctx.measure is not None
        timer = _Timer(ctx.measure)
        lanes = target_lanes(ctx.target)
        limit = self.candidates if mode == "fast" else None
        left_flops = sum(wl.total_flops for wl in todo)
        with _progress(len(todo)) as bar:
            for wl in todo:
                bar.set_postfix_str(wl.ops[:40])
                share = None
                if seconds is not None:
                    # Time left, split by FLOPs among the kernels left: unused time rolls forward.
                    share = max(0.0, seconds - timer.spent) * wl.total_flops / max(left_flops, 1)
                left_flops -= wl.total_flops
                result = search(wl, timer, lanes, limit=limit, seconds=share, model=ctx.cost_model,
                                target=ctx.target, top_k=self.top_k)
                bar.update(1)
                if result is None:
                    self._decide(ctx, wl, names, False, "not tuned: the default schedule does not build "
                                 "(the kernel falls back)", {})
                    continue
                chosen[wl.key] = result.best
                db.add(TuningRecord(wl.key, ctx.target, _annotation_value(result.best), result.best_s * 1e6,
                                    kernel=wl.ops))
                best_us, default_us = result.best_s * 1e6, result.default_s * 1e6
                reason = (f"{format_schedule(result.best)}, {best_us:.1f} us vs default {default_us:.1f} us, "
                          f"{result.measured} candidates measured")
                if "k" in result.numbers:
                    reason += f" (cost model top-{int(result.numbers['k'])})"
                self._decide(ctx, wl, names, True, reason,
                             {"best_us": best_us, "default_us": default_us, "measured": float(result.measured),
                              "speedup": default_us / best_us if best_us else 1.0, "flops": float(wl.flops),
                              **result.numbers})
        return timer.calls

    def _decide(self, ctx: PassContext, wl: Workload, names: Mapping[int, str], accepted: bool,
                reason: str, numbers: Mapping[str, float]) -> None:
        """One decision per node running ``wl``; repeats say which node's search they share."""
        first = names[wl.nodes[0]]
        for n, i in enumerate(wl.nodes):
            why = reason if n == 0 else f"{reason} (same workload as {first}, not measured again)"
            ctx.decisions.append(Decision(self.name, f"kernel {names[i]} {wl.ops}", accepted, why, numbers))


_ORDER = ("tile", "vec", "par", "unroll", "pack")


def _annotation_value(sched: Mapping[str, Any]) -> dict[str, Any]:
    """A schedule as an annotation value: keys in the usual order, tiles as tuples (JSON gives lists)."""
    keys = sorted(sched, key=lambda k: _ORDER.index(k) if k in _ORDER else len(_ORDER))
    return {k: tuple(sched[k]) if isinstance(sched[k], list) else sched[k] for k in keys}

