"""``plan-memory``: buffer lifetimes, arena offsets, in-place reuse, and (optionally) memory tiers.

    plan-memory                        one DRAM arena, in place where legal, exact solver if small
    plan-memory{tiers=npu-2m}          also map tensors onto a 2 MiB scratchpad (see memory/tiers.py)
    plan-memory{symbols=[B=8]}         plan for batch 8 (every symbolic dim is 1 unless bound here)
    plan-memory{time-limit=1}          bound every exact solver run to 1 s (then the heuristic stands)

The result is the same graph with each node's results annotated (``mem=arena0+4096``,
``tier=fast``, ``bind={B=1}``); ``passes.memory.plan.read_plan`` reads them back. Every choice
(method, solver outcome, fallbacks) is recorded in ``ctx.decisions``. See docs/memory.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..ir.graph import Graph
from .base import Decision, PassContext, register_pass
from .memory.plan import MemoryPlan, annotate, make_plan
from .memory.tiers import target_from_spec


def parse_symbols(items: tuple[str, ...]) -> dict[str, int]:
    """``("B=8", "S=128")`` -> ``{"B": 8, "S": 128}``; raises ValueError on a malformed item."""
    out = {}
    for item in items:
        name, eq, size = item.partition("=")
        if not eq or not name.strip().isidentifier() or not size.strip().isdigit():
            raise ValueError(f"symbol binding '{item}' is not NAME=SIZE")
        out[name.strip()] = int(size)
    return out


@register_pass
@dataclass(frozen=True)
class PlanMemory:
    """Assign every activation an arena offset (and a memory tier when ``tiers`` names a target)."""

    name: ClassVar[str] = "plan-memory"
    alignment: int = 64
    in_place: bool = True
    exact_max: int = 500
    time_limit: float = 5.0
    symbols: tuple[str, ...] = ()
    tiers: str = ""
    traffic_weight: float = 0.25
    exact_max_segments: int = 4000

    def plan(self, graph: Graph) -> MemoryPlan:
        """The plan this pass would annotate ``graph`` with."""
        if self.alignment < 1 or self.time_limit <= 0:
            raise ValueError("alignment must be >= 1 and time-limit > 0")
        target = target_from_spec(self.tiers) if self.tiers else None
        return make_plan(graph, alignment=self.alignment, in_place=self.in_place, exact_max=self.exact_max,
                         time_limit=self.time_limit, bindings=parse_symbols(self.symbols), target=target,
                         traffic_weight=self.traffic_weight, exact_max_segments=self.exact_max_segments)

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        """Plan ``graph`` and return it annotated; record the plan's numbers and choices."""
        plan = self.plan(graph)
        record_plan(self.name, plan, ctx)
        return annotate(graph, plan)


def record_plan(pass_name: str, plan: MemoryPlan, ctx: PassContext) -> None:
    """Counters and decisions describing ``plan`` (for the pass log, reports and ``explain``)."""
    ctx.record(pass_name, {"buffers": len(plan.buffers), "shared": len(plan.sharing),
                           "arena_bytes": plan.arena_size, "lower_bound_bytes": plan.lower_bound})
    binds = ", ".join(f"{k}={v}" for k, v in plan.bindings.items())
    ctx.decisions.append(Decision(
        pass_name, f"arena {plan.arena}", True,
        f"{plan.method}{' (optimal)' if plan.optimal else ''}" + (f"; planned with {binds}" if binds else ""),
        {"arena_bytes": plan.arena_size, "lower_bound_bytes": plan.lower_bound, "peak_live_bytes": plan.live_peak},
    ))
    for note in plan.notes:
        ctx.decisions.append(Decision(pass_name, f"arena {plan.arena}", True, note))
    for s in plan.sharing:
        ctx.decisions.append(Decision(pass_name, f"step {s.step}: result shares its operand's buffer", True,
                                      f"{s.kind}: the operand dies here and has the result's type" if s.kind == "in-place"
                                      else "view: same bytes in the same order"))
    if plan.tiers is not None:
        tp = plan.tiers
        ctx.decisions.append(Decision(
            pass_name, f"tiers on {tp.problem.target.name}", True, tp.method,
            {"predicted_us": tp.stats.time_us, "offchip_bytes": tp.stats.offchip_bytes,
             "noncompulsory_bytes": tp.stats.noncompulsory_bytes, "baseline_us": tp.baseline.time_us,
             "baseline_noncompulsory_bytes": tp.baseline.noncompulsory_bytes, "fast_arena_bytes": tp.fast_arena},
        ))
