"""``reorder``: choose the node order, trading peak activation memory against predicted latency.

    reorder                          the order of least peak memory (never worse than the given one)
    reorder{budget=4000000}          the fastest order found whose peak fits in 4,000,000 bytes

Candidates: the given order; least-peak-memory-first, most-freed-first, BFS and TorchInductor's
DFS, each improved by local search; and, for graphs of at most ``exact-max-nodes`` compute nodes,
the exact optimum (memoized branch and bound, bounded by ``time-limit`` seconds; on timeout the
heuristics stand and a decision says so). Peak memory is ``max(live_bytes_per_step)`` of the graph
in that order; latency is the memory-tier simulator's prediction on ``target`` (kernel times from
the roofline estimate, placements by the greedy tier mapper), so orders that keep producers next to
their consumers win on it. Every candidate is recorded as a decision with both numbers; the Pareto
points (no other candidate both smaller and faster) are what ``pareto_points`` returns.

This pass is named ``reorder`` because ``schedule`` is the kernel-schedule pass. Reordering drops
the ``plan-memory`` annotations, which describe the old order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..ir.graph import CONST, Graph, GraphBuilder, Node, Value
from .base import Decision, PassContext, register_pass
from .memory.order import (
    HEURISTICS,
    OrderProblem,
    build_problem,
    exact_order,
    local_search,
    lower_bound,
    peak,
)
from .memory.plan import strip_plan, symbol_bindings
from .memory.tier_search import greedy as tier_greedy
from .memory.tiers import MemoryTarget, build_tier_problem, simulate, target_from_spec
from .plan_memory import parse_symbols

PASS_NAME = "reorder"


class MemoryBudgetError(ValueError):
    """A peak-memory budget no execution order can meet (the message gives the lower bound)."""


@dataclass(frozen=True)
class Candidate:
    """One execution order with its peak memory and predicted latency."""

    name: str
    order: tuple[int, ...]
    peak: int
    latency_us: float


@register_pass
@dataclass(frozen=True)
class Reorder:
    """Pick the execution order: least peak memory, or the fastest within ``budget`` bytes."""

    name: ClassVar[str] = PASS_NAME
    budget: int | None = None
    exact_max_nodes: int = 40
    time_limit: float = 5.0
    target: str = "npu-2m"
    symbols: tuple[str, ...] = ()

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        """Return ``graph`` in the chosen order (``graph`` itself when the given order is kept)."""
        began = time.perf_counter()
        deadline = began + self.time_limit
        binds = symbol_bindings(graph, parse_symbols(self.symbols))
        p = build_problem(graph, binds)
        bound = lower_bound(p)
        if self.budget is not None and self.budget < bound:
            raise MemoryBudgetError(
                f"peak memory budget {self.budget:,} bytes is below the lower bound {bound:,} bytes for "
                f"@{graph.name}: no execution order needs less (planned with {_binds(binds)})")
        candidates, notes, proven = self._candidates(p, bound, deadline)
        target = target_from_spec(self.target)
        scored = [Candidate(name, tuple(order), peak(p, order), _latency(graph, p, order, target, binds))
                  for name, order in candidates]
        best_peak = min(c.peak for c in scored)
        if self.budget is not None and self.budget < best_peak:
            what = "the least possible peak (proven optimal)" if proven else "the least peak found"
            raise MemoryBudgetError(
                f"peak memory budget {self.budget:,} bytes is below {what}, {best_peak:,} bytes, for @{graph.name} "
                f"(lower bound {bound:,} bytes; planned with {_binds(binds)})")
        fitting = [c for c in scored if self.budget is None or c.peak <= self.budget]
        if self.budget is None:
            chosen = min(fitting, key=lambda c: (c.peak, c.latency_us, c.name != "given"))
        else:
            chosen = min(fitting, key=lambda c: (c.latency_us, c.peak, c.name != "given"))
        front = pareto(scored)
        for c in scored:
            why = "chosen" if c is chosen else ("over budget" if c not in fitting else "not chosen")
            ctx.decisions.append(Decision(
                self.name, f"order {c.name}", c is chosen,
                f"{why}{'; Pareto point' if c in front else ''}",
                {"peak_bytes": c.peak, "predicted_us": c.latency_us, "pareto": float(c in front)}))
        for note in notes:
            ctx.decisions.append(Decision(self.name, "exact order search", proven, note, {"lower_bound_bytes": bound}))
        given = next(c for c in scored if c.name == "given")
        ctx.record(self.name, {"peak_before": given.peak, "peak_after": chosen.peak, "lower_bound": bound,
                               "pareto_points": len(front), "reordered": int(chosen.order != given.order)})
        if chosen.order == given.order:
            return graph
        return emit(graph, p, chosen.order)

    def _candidates(self, p: OrderProblem, bound: int,
                    deadline: float) -> tuple[list[tuple[str, list[int]]], list[str], bool]:
        given = list(range(p.n))
        out: list[tuple[str, list[int]]] = [("given", given)]
        per = (deadline - time.perf_counter()) / (2 * (len(HEURISTICS) + 1))
        for name, heuristic in HEURISTICS.items():
            out.append((name, heuristic(p)))
        for name, order in list(out):
            improved = local_search(p, order, time.perf_counter() + max(per, 0.01))
            if improved != order:
                out.append((f"{name}+local-search", improved))
        seen: set[tuple[int, ...]] = set()
        out = [(name, order) for name, order in out if not (tuple(order) in seen or seen.add(tuple(order)))]
        best = min(peak(p, o) for _, o in out)
        notes: list[str] = []
        proven = best <= bound
        if proven:
            notes.append(f"the best heuristic order meets the lower bound {bound:,} bytes: optimal")
        elif p.n > self.exact_max_nodes:
            notes.append(f"{p.n} compute nodes > exact-max-nodes={self.exact_max_nodes}: heuristics only")
        else:
            result = exact_order(p, best, deadline)
            if result.order is not None:
                out.append(("exact", result.order))
            proven = result.proven
            notes.append(f"exact search: optimal after {result.states:,} states" if proven else
                         f"exact search stopped by time-limit={self.time_limit:g} s after {result.states:,} states; "
                         "keeping the best heuristic order")
        return out, notes, proven


def _binds(binds: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in binds.items()) or "static shapes"


def _latency(graph: Graph, p: OrderProblem, order: Sequence[int], target: MemoryTarget,
             binds: dict[str, int]) -> float:
    ordered = emit(graph, p, order) if list(order) != list(range(p.n)) else graph
    problem = build_tier_problem(ordered, target, bindings=binds)
    return simulate(problem, tier_greedy(problem)).time_us


def emit(graph: Graph, p: OrderProblem, order: Sequence[int]) -> Graph:
    """``graph`` with its compute nodes in ``order``; each constant just before its first reader."""
    first: dict[Value, int] = {}
    for k, u in enumerate(order):
        for v in p.nodes[u].inputs:
            first.setdefault(v, k)
    before: dict[int, list[Node]] = {}
    for n in graph.nodes:
        if n.op == CONST:
            before.setdefault(first.get(n.output, -1), []).append(n)
    b = GraphBuilder(graph.name)
    for v in graph.inputs:
        b.add_input(v)
    for c in before.get(-1, []):
        b.add(c)
    for k, u in enumerate(order):
        for c in before.get(k, []):
            b.add(c)
        b.add(p.nodes[u])
    return strip_plan(b.build(graph.outputs))


def pareto(cands: Sequence[Candidate]) -> list[Candidate]:
    """Candidates no other one beats on both peak and latency (one per distinct point)."""
    front: list[Candidate] = []
    for c in sorted(cands, key=lambda c: (c.peak, c.latency_us)):
        if not front or c.latency_us < front[-1].latency_us - 1e-9:
            front.append(c)
    return front


def pareto_points(ctx: PassContext) -> list[dict[str, Any]]:
    """The Pareto points ``reorder`` recorded, smallest peak first: ``{order, peak_bytes, predicted_us, chosen}``."""
    points = sorted((d for d in ctx.decisions if d.pass_name == PASS_NAME and d.numbers.get("pareto")),
                    key=lambda d: d.numbers["peak_bytes"])
    return [{"order": d.subject.removeprefix("order "), "peak_bytes": int(d.numbers["peak_bytes"]),
             "predicted_us": d.numbers["predicted_us"], "chosen": d.accepted} for d in points]
