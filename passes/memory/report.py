"""Seeing a memory plan: a text chart of buffer lifetimes and a PNG (address x time) with matplotlib."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...ir.analysis import format_bytes
from ...ir.graph import Graph, Value
from ...ir.printer import Printer
from .plan import MemoryPlan

_BARS = " ▁▂▃▄▅▆▇█"


def value_names(graph: Graph) -> dict[Value, str]:
    """``%name`` of every value as the IR printer shows it (unnamed values get their numbers)."""
    p = Printer()
    p.print(graph)
    return {v: f"%{n}" for v, n in p.names.items()}


def live_profile(plan: MemoryPlan, steps: int) -> list[int]:
    """Bytes of planned buffers live at each step."""
    delta = [0] * (steps + 1)
    for b in plan.buffers:
        delta[b.start] += b.size
        delta[b.end + 1] -= b.size
    out, running = [], 0
    for d in delta[:steps]:
        running += d
        out.append(running)
    return out


def lifetimes_chart(graph: Graph, plan: MemoryPlan, width: int = 64, rows: int = 40) -> str:
    """The largest buffers as bars over the steps, under a sparkline of live bytes."""
    steps = max(len(graph.nodes), 1)
    scale = max(1, -(-steps // width))
    cols = -(-steps // scale)
    names = value_names(graph)
    profile = live_profile(plan, steps)
    top = max(profile, default=0) or 1
    spark = "".join(_BARS[round(max(profile[c * scale:(c + 1) * scale], default=0) / top * 8)] for c in range(cols))
    order = sorted(range(len(plan.buffers)), key=lambda i: (-plan.buffers[i].size, plan.offsets[i]))[:rows]
    order.sort(key=lambda i: (plan.offsets[i], plan.buffers[i].start))
    shown = f"the {len(order)} largest of {len(plan.buffers)}" if len(order) < len(plan.buffers) else \
        f"all {len(plan.buffers)}"
    lines = [(f"lifetimes of {shown} buffers in {plan.arena} ({format_bytes(plan.arena_size)}); "
              f"{steps} steps, {scale} per column"),
             f"{'offset':>10} {'size':>10}  {'live':<{cols}}  values",
             f"{'':>10} {'':>10}  {spark}"]
    for i in order:
        b = plan.buffers[i]
        bar = "".join("█" if b.start <= c * scale + scale - 1 and c * scale <= b.end else "·" for c in range(cols))
        vals = " ".join(names.get(v, "%?") for v in b.values[:4]) + (" …" if len(b.values) > 4 else "")
        lines.append(f"{plan.offsets[i]:>10} {format_bytes(b.size):>10}  {bar}  {vals}")
    return "\n".join(lines)


def summary(plan: MemoryPlan) -> dict[str, Any]:
    """The plan's headline numbers as a JSON-ready dict."""
    out: dict[str, Any] = {
        "arena": plan.arena, "arena_bytes": plan.arena_size, "lower_bound_bytes": plan.lower_bound,
        "peak_live_bytes": plan.live_peak, "buffers": len(plan.buffers), "shared_values": len(plan.sharing),
        "method": plan.method, "optimal": plan.optimal, "alignment": plan.alignment,
        "bindings": dict(plan.bindings), "notes": list(plan.notes),
    }
    if plan.tiers is not None:
        tp = plan.tiers
        out["tiers"] = {
            "target": tp.problem.target.describe(), "method": tp.method, "fast_arena_bytes": tp.fast_arena,
            "predicted_us": tp.stats.time_us, "offchip_bytes": tp.stats.offchip_bytes,
            "noncompulsory_bytes": tp.stats.noncompulsory_bytes, "baseline_us": tp.baseline.time_us,
            "baseline_offchip_bytes": tp.baseline.offchip_bytes,
            "baseline_noncompulsory_bytes": tp.baseline.noncompulsory_bytes,
            "noncompulsory_reduction": tp.reduction(),
        }
    return out


def summary_text(plan: MemoryPlan) -> str:
    """The headline numbers, one per line."""
    lines = [f"  peak live memory  {format_bytes(plan.live_peak)} (max over steps, graph inputs included)",
             f"  arena             {format_bytes(plan.arena_size)} ({plan.arena_size:,} bytes, {plan.method})",
             f"  lower bound       {format_bytes(plan.lower_bound)} (most bytes of planned buffers live at once)"]
    if plan.bindings:
        lines.append("  planned with      " + ", ".join(f"{k}={v}" for k, v in plan.bindings.items()))
    if plan.tiers is not None:
        tp = plan.tiers
        lines.append(f"  tiers             {tp.problem.target.describe()}")
        lines.append(f"    ours            {tp.stats.time_us:,.1f} us, off-chip {format_bytes(tp.stats.offchip_bytes)} "
                     f"(non-compulsory {format_bytes(tp.stats.noncompulsory_bytes)}; {tp.method})")
        lines.append(f"    xla-style       {tp.baseline.time_us:,.1f} us, off-chip {format_bytes(tp.baseline.offchip_bytes)} "
                     f"(non-compulsory {format_bytes(tp.baseline.noncompulsory_bytes)}); "
                     f"{tp.reduction():.1%} less non-compulsory traffic")
    return "\n".join(lines)


def plot(graph: Graph, plan: MemoryPlan, path: str | Path) -> Path:
    """Write a PNG: buffers as rectangles (step x byte offset) above the live-bytes curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    steps = max(len(graph.nodes), 1)
    fig, (ax, live_ax) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    cmap = plt.get_cmap("tab20")
    for i, (b, off) in enumerate(zip(plan.buffers, plan.offsets)):
        ax.add_patch(Rectangle((b.start, off), b.end - b.start + 1, b.size, facecolor=cmap(i % 20),
                               edgecolor="black", linewidth=0.3))
    ax.axhline(plan.arena_size, color="black", linestyle="--", linewidth=0.8, label=f"arena {format_bytes(plan.arena_size)}")
    ax.axhline(plan.lower_bound, color="red", linestyle=":", linewidth=0.8, label=f"lower bound {format_bytes(plan.lower_bound)}")
    ax.set_xlim(0, steps)
    ax.set_ylim(0, max(plan.arena_size, 1) * 1.05)
    ax.set_ylabel("offset (bytes)")
    ax.set_title(f"@{graph.name}: {len(plan.buffers)} buffers in {plan.arena} ({plan.method})")
    ax.legend(loc="upper right", fontsize=8)
    profile = live_profile(plan, steps)
    live_ax.step(range(steps), profile, where="post")
    live_ax.set_ylabel("live bytes")
    live_ax.set_xlabel("step (node index)")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out



def inspect_memory(graph: Graph, passes: str = "", plot_path: str | None = None) -> tuple[dict[str, Any], str]:
    """What ``graphopt inspect --memory`` shows: the plan's numbers (JSON) and text with the chart.

    The plan uses the options of the last ``plan-memory`` in ``passes`` (defaults otherwise).
    """
    from ..plan_memory import PlanMemory
    from ..spec import parse_pipeline

    planner = next((p for p in reversed(parse_pipeline(passes)) if isinstance(p, PlanMemory)), PlanMemory())
    plan = planner.plan(graph)
    payload = summary(plan)
    text = "memory\n" + summary_text(plan) + "\n" + lifetimes_chart(graph, plan)
    if plot_path:
        payload["plot"] = str(plot(graph, plan, plot_path))
        text += f"\nwrote {plot_path}"
    return payload, text


def measure(graph: Graph, targets: tuple[str, ...] = ("npu-512k", "npu-2m", "npu-8m"),
            time_limit: float = 5.0) -> dict[str, Any]:
    """The numbers docs/memory.md reports for one graph: arena (as given and fused), order, tiers.

    ``least_noncompulsory_bytes`` is the traffic-only ILP optimum (fragmentation ignored): no
    placement moves fewer bytes, so it says how much better than the baseline was possible at all.
    """
    import dataclasses
    import time

    from ..base import PassContext
    from ..manager import run_passes
    from ..plan_memory import PlanMemory
    from ..schedule_order import Reorder
    from .tier_search import map_tiers, solve_ilp
    from .tiers import all_dram, build_tier_problem, simulate, target_from_spec

    def arena(g: Graph) -> dict[str, Any]:
        began = time.perf_counter()
        plan = PlanMemory(time_limit=time_limit).plan(g)
        return {"peak_live_bytes": plan.live_peak, "lower_bound_bytes": plan.lower_bound,
                "arena_bytes": plan.arena_size, "method": plan.method, "seconds": time.perf_counter() - began}

    ctx = PassContext()
    began = time.perf_counter()
    Reorder(time_limit=time_limit).run(graph, ctx)
    order = {**dict(ctx.stats["reorder"]), "seconds": time.perf_counter() - began}
    tiers = []
    for spec in targets:
        problem = build_tier_problem(graph, target_from_spec(spec))
        began = time.perf_counter()
        tp = map_tiers(problem, time_limit)
        seconds = time.perf_counter() - began
        least = solve_ilp(dataclasses.replace(problem, traffic_weight=1e4), all_dram(problem), 2 * time_limit)
        tiers.append({
            "target": spec, "all_dram_noncompulsory_bytes": simulate(problem, all_dram(problem)).noncompulsory_bytes,
            "baseline_noncompulsory_bytes": tp.baseline.noncompulsory_bytes,
            "noncompulsory_bytes": tp.stats.noncompulsory_bytes,
            "least_noncompulsory_bytes": simulate(problem, least.placement).noncompulsory_bytes
            if least.placement is not None else None,
            "least_proven": least.optimal, "reduction": tp.reduction(), "baseline_us": tp.baseline.time_us,
            "predicted_us": tp.stats.time_us, "method": tp.method, "seconds": seconds})
    fused, _ = run_passes(graph, "fuse", verify=False)
    return {"nodes": sum(n.op != "const" for n in graph.nodes), "arena": arena(graph), "arena_fused": arena(fused),
            "order": order, "tiers": tiers}
