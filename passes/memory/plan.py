"""The memory plan: every activation's place (arena, offset, size, lifetime), made and read back.

``make_plan`` runs the pieces (optional tier mapping, lifetimes, sharing, offset packing);
``annotate`` writes the plan into the IR as node annotations, which are the contract with
backends (they survive printing and parsing):

    %3 = nn.relu(%2) mem=arena0+4096 : f32[1,64,56,56]            # DRAM arena, byte offset
    %4 = nn.conv2d(%3, %w) tier=fast mem=sram0+0 evict=arena0+512 : ...  # written to fast memory,
                                                                   # and copied to its DRAM home
    %5 = nn.relu(%x) mem=arena0+0 bind={B=1} : f32[B,64]           # sizes assumed B=1

``read_plan`` recovers value -> place from the annotations; ``run_with_plan`` executes a graph
inside real byte arenas laid out as planned, which is how the tests prove a plan is safe. A backend
that executes the plan (the TVM backend) takes ``home_places`` and ``plan_bindings``, and refuses a
plan that ``place_conflict`` finds unsafe for the graph as it now is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...ir.analysis import live_bytes_per_step
from ...ir.annotations import BufferRef
from ...ir.graph import CONST, Graph, Node, Value
from ...ir.interpreter import check_inputs, run_node
from .arena import Packing, align, conflicts, pack
from .lifetimes import Buffer, Sharing, lifetimes, peak_live, share_buffers
from .tier_search import TierPlan, map_tiers
from .tiers import DRAM, KEEP, KernelTime, MemoryTarget, build_tier_problem, writes_dram

ARENA = "arena0"
FAST_ARENA = "sram0"
PLAN_KEYS = ("mem", "tier", "evict", "bind")
"""Annotation keys the planner owns (replaced on every run, dropped by passes that reorder)."""


@dataclass(frozen=True)
class MemoryPlan:
    """Where each activation lives, how it was decided, and the numbers to judge it by."""

    arena: str
    arena_size: int
    lower_bound: int  # most bytes live at one step among the planned buffers (aligned sizes)
    live_peak: int  # max over steps of live bytes in this order, graph inputs included (unaligned)
    alignment: int
    bindings: Mapping[str, int]
    buffers: tuple[Buffer, ...]
    offsets: tuple[int, ...]  # one per buffer
    sharing: tuple[Sharing, ...]
    method: str
    optimal: bool
    notes: tuple[str, ...] = ()
    tiers: TierPlan | None = None
    home: Mapping[Value, int] = field(default_factory=dict)  # value -> offset in ``arena``

    def describe(self) -> str:
        """One paragraph for reports and ``graphopt explain``."""
        binds = ", ".join(f"{k}={v}" for k, v in sorted(self.bindings.items()))
        values = sum(len(b.values) for b in self.buffers)
        lines = [(f"arena {self.arena}: {self.arena_size:,} bytes for {len(self.buffers)} buffers ({values} values, "
                  f"{len(self.sharing)} shared in place or as views); lower bound {self.lower_bound:,}, peak live "
                  f"bytes of this order {self.live_peak:,}; {self.method}{' (optimal)' if self.optimal else ''}")]
        if binds:
            lines.append(f"symbolic dims bound for planning: {binds}")
        lines += list(self.notes)
        return "\n".join(lines)


def symbol_bindings(graph: Graph, given: Mapping[str, int] | None = None, default: int = 1) -> dict[str, int]:
    """Every symbolic dim of ``graph`` bound: from ``given``, else ``default``."""
    symbols = {d for n in graph.walk() for v in (*n.inputs, *n.outputs) for d in v.type.shape if isinstance(d, str)}
    symbols |= {d for v in graph.inputs for d in v.type.shape if isinstance(d, str)}
    return {s: int((given or {}).get(s, default)) for s in sorted(symbols)}


def make_plan(
    graph: Graph,
    *,
    alignment: int = 64,
    in_place: bool = True,
    exact_max: int = 500,
    time_limit: float = 5.0,
    bindings: Mapping[str, int] | None = None,
    target: MemoryTarget | None = None,
    kernel_time: KernelTime | None = None,
    traffic_weight: float = 0.25,
    exact_max_segments: int = 4000,
) -> MemoryPlan:
    """Plan ``graph``'s activations into one DRAM arena (and fast memory when ``target`` is given)."""
    binds = symbol_bindings(graph, bindings)
    tier_plan = None
    fast_only: set[Value] = set()
    if target is not None:
        problem = build_tier_problem(graph, target, kernel_time, binds, traffic_weight)
        tier_plan = map_tiers(problem, time_limit, exact_max_segments)
        fast_only = {t.value for t, s in zip(problem.tensors, tier_plan.placement)
                     if t.kind == "activation" and not writes_dram(t, s)}
    lives = lifetimes(graph, binds)
    buffers, _, sharing = share_buffers(graph, lives, in_place, skip=fast_only)
    items = [(align(b.size, alignment), b.start, b.end) for b in buffers]
    lower, _ = peak_live(items, len(graph.nodes))
    packing: Packing = pack(items, lower, exact_max, time_limit, alignment)
    assert not conflicts(items, packing.offsets), "arena packing overlaps live buffers"
    notes = [packing.note] if packing.note else []
    if tier_plan is not None:
        notes.append(f"tiers on {tier_plan.problem.target.describe()}: {tier_plan.method}; "
                     f"{len(fast_only)} activations live only in fast memory")
        notes += list(tier_plan.notes)
    home = {v: off for b, off in zip(buffers, packing.offsets) for v in b.values}
    return MemoryPlan(
        arena=ARENA, arena_size=packing.size, lower_bound=lower,
        live_peak=max(live_bytes_per_step(graph, binds), default=0), alignment=alignment, bindings=binds,
        buffers=tuple(buffers), offsets=packing.offsets, sharing=tuple(sharing), method=packing.method,
        optimal=packing.optimal, notes=tuple(notes), tiers=tier_plan, home=home,
    )


def _fast_home(plan: MemoryPlan) -> dict[Value, int]:
    # Offset in fast memory of every activation the producing kernel writes there.
    tp = plan.tiers
    if tp is None:
        return {}
    out = {}
    for stay, off in zip(tp.stays, tp.fast_offsets):
        t = tp.problem.tensors[stay.tensor]
        if t.kind == "activation" and stay.first == 0 and tp.placement[stay.tensor][0] == KEEP:
            out[t.value] = off
    return out


def annotate(graph: Graph, plan: MemoryPlan) -> Graph:
    """``graph`` with every node's results annotated with their place (and old plan keys dropped)."""
    fast = _fast_home(plan)
    tiered = plan.tiers is not None
    nodes = []
    for node in graph.nodes:
        ann = {k: v for k, v in node.annotations.items() if k not in PLAN_KEYS}
        if node.op != CONST:
            mems: list[BufferRef | None] = []
            tiers: list[str] = []
            evicts: list[BufferRef | None] = []
            for v in node.outputs:
                dram = BufferRef(plan.arena, plan.home[v]) if v in plan.home else None
                mems.append(BufferRef(FAST_ARENA, fast[v]) if v in fast else dram)
                tiers.append("fast" if v in fast else "dram")
                evicts.append(dram if v in fast else None)
            if all(m is not None for m in mems):
                ann["mem"] = _one_or_all(mems)
            if tiered:
                ann["tier"] = _one_or_all(tiers)
                if all(e is not None for e in evicts):  # every result written to fast also has a DRAM copy
                    ann["evict"] = _one_or_all(evicts)
            syms = {d for v in node.outputs for d in v.type.shape if isinstance(d, str)}
            if syms:
                ann["bind"] = {s: plan.bindings[s] for s in sorted(syms)}
        nodes.append(node if ann == dict(node.annotations) else
                     Node(node.op, node.inputs, node.outputs, node.attrs, ann, node.body, node.kernel_name))
    return Graph(graph.name, graph.inputs, tuple(nodes), graph.outputs)


def _one_or_all(items: Sequence[Any]) -> Any:
    # One result annotates a plain value, several a list in result order.
    return items[0] if len(items) == 1 else tuple(items)


def strip_plan(graph: Graph) -> Graph:
    """``graph`` without planner annotations (a pass that reorders nodes invalidates them)."""
    nodes = tuple(n if not any(k in n.annotations for k in PLAN_KEYS) else
                  Node(n.op, n.inputs, n.outputs, n.attrs, {k: v for k, v in n.annotations.items() if k not in PLAN_KEYS},
                       n.body, n.kernel_name) for n in graph.nodes)
    return Graph(graph.name, graph.inputs, nodes, graph.outputs)


@dataclass(frozen=True)
class Place:
    """Where one value lives according to the IR annotations."""

    value: Value
    ref: BufferRef
    size: int


def read_plan(graph: Graph) -> dict[Value, Place]:
    """The place of every annotated value (its ``mem``), sizes with the annotated symbol bindings."""
    out = {}
    for node in graph.nodes:
        mem = node.annotations.get("mem")
        if mem is None:
            continue
        refs = mem if isinstance(mem, tuple) else (mem,)
        binds = node.annotations.get("bind", {})
        for v, ref in zip(node.outputs, refs):
            out[v] = Place(v, ref, v.type.nbytes(dict(binds) if isinstance(binds, Mapping) else {}))
    return out


def plan_bindings(graph: Graph) -> dict[str, int]:
    """The symbol sizes the plan in ``graph``'s annotations assumes (``bind={B=1}``), all nodes together."""
    out: dict[str, int] = {}
    for node in graph.nodes:
        binds = node.annotations.get("bind")
        if "mem" in node.annotations and isinstance(binds, Mapping):
            out.update({str(k): int(v) for k, v in binds.items()})
    return out


def home_places(graph: Graph) -> dict[Value, Place]:
    """Where a backend without fast memory keeps each planned value for its whole life.

    That is ``mem``, except for a result written to fast memory that also has a DRAM copy
    (``evict``): its DRAM home. The values left in fast memory (no ``evict``) are those the tier plan
    keeps there from their definition to their last read, so each arena stays a valid packing.
    """
    places = read_plan(graph)
    for node in graph.nodes:
        evict = node.annotations.get("evict")
        if evict is None:
            continue
        for v, ref in zip(node.outputs, evict if isinstance(evict, tuple) else (evict,)):
            if v in places and ref is not None:
                places[v] = Place(v, ref, places[v].size)
    return places


def place_conflict(graph: Graph, places: Mapping[Value, Place], bindings: Mapping[str, int]) -> str | None:
    """Why ``places`` is unsafe for ``graph`` in its node order, or None.

    Unsafe: two values live at a common step share bytes without being one buffer (a view of, or
    an in-place result over, the other, at the same offset, as ``share_buffers`` allows them), so a
    stale plan (the graph changed after ``plan-memory``) is caught here instead of corrupting results.
    """
    lives = lifetimes(graph, bindings)
    _, owner, _ = share_buffers(graph, lives, in_place=True)
    missing = [p.value for p in places.values() if p.value not in lives]
    if missing:
        return f"{missing[0]} has a place but no node of the graph defines it"
    by_arena: dict[str, list[Place]] = {}
    for p in places.values():
        by_arena.setdefault(p.ref.arena, []).append(p)
    for items in by_arena.values():
        items.sort(key=lambda p: p.ref.offset)
        for i, a in enumerate(items):
            la, top = lives[a.value], a.ref.offset + a.size
            for b in items[i + 1:]:
                if b.ref.offset >= top:
                    break
                lb = lives[b.value]
                if la.start > lb.end or lb.start > la.end or b.size == 0 or a.size == 0:
                    continue
                same = owner.get(a.value) is not None and owner.get(a.value) is owner.get(b.value)
                if not (same and a.ref.offset == b.ref.offset):
                    return (f"{a.value} ({a.ref}, steps {la.start}-{la.end}) and {b.value} ({b.ref}, steps "
                            f"{lb.start}-{lb.end}) overlap while both are live")
    return None


def arena_sizes(graph: Graph) -> dict[str, int]:
    """Bytes each arena named in the annotations needs (the top of its highest value)."""
    sizes: dict[str, int] = {}
    for place in read_plan(graph).values():
        sizes[place.ref.arena] = max(sizes.get(place.ref.arena, 0), place.ref.offset + place.size)
    return sizes


def run_with_plan(graph: Graph, plan: MemoryPlan, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run ``graph`` keeping every activation only in byte arenas laid out by ``plan``.

    Results are written into the DRAM arena (and fast memory for tiered values) and operands are
    read back from there, from fast memory for segments the tier plan keeps or prefetches; a plan
    that lets two live values overlap corrupts the outputs.
    """
    arrays = [np.asarray(a) for a in inputs]
    check_inputs(graph, arrays)
    dram = np.zeros(plan.arena_size + 1, dtype=np.uint8)
    tp = plan.tiers
    sram = np.zeros((tp.fast_arena if tp else 0) + 1, dtype=np.uint8)
    env: dict[Value, np.ndarray] = dict(zip(graph.inputs, arrays))
    for node in graph.nodes:
        if node.op == CONST:
            env[node.output] = node.value
    fast_reads, fast_writes, prefetches = _tier_schedule(graph, plan)

    def view(buf: np.ndarray, offset: int, v: Value) -> np.ndarray:
        dt = v.type.dtype.numpy
        shape = tuple(d if isinstance(d, int) else plan.bindings[d] for d in v.type.shape)
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(buf.data, dtype=dt, count=count, offset=offset).reshape(shape)

    compute = [n for n in graph.nodes if n.op != CONST]
    for k, node in enumerate(compute):
        args = []
        for v in node.inputs:
            if (k, v) in fast_reads:
                args.append(view(sram, fast_reads[k, v], v).copy())
            elif v in plan.home:
                args.append(view(dram, plan.home[v], v).copy())
            else:
                args.append(env[v])
        for v, out in zip(node.outputs, run_node(node, args)):
            if v in plan.home:
                view(dram, plan.home[v], v)[...] = out
            if v in fast_writes:
                view(sram, fast_writes[v], v)[...] = out
            if v not in plan.home and v not in fast_writes:
                env[v] = out
        for v, off in prefetches.get(k, ()):  # the DMA copies issued during this step
            view(sram, off, v)[...] = view(dram, plan.home[v], v) if v in plan.home else env[v]
    results = []
    for v in graph.outputs:
        results.append(view(dram, plan.home[v], v).copy() if v in plan.home else env[v])
    return results


def _tier_schedule(graph: Graph, plan: MemoryPlan) -> tuple[dict[tuple[int, Value], int], dict[Value, int],
                                                           dict[int, list[tuple[Value, int]]]]:
    # From the tier plan: (step, value) reads served by fast memory, values written to fast memory
    # by their kernel, and the prefetches issued during each step, all with their fast offsets.
    tp = plan.tiers
    reads: dict[tuple[int, Value], int] = {}
    writes: dict[Value, int] = {}
    prefetches: dict[int, list[tuple[Value, int]]] = {}
    if tp is None:
        return reads, writes, prefetches
    for stay, off in zip(tp.stays, tp.fast_offsets):
        t = tp.problem.tensors[stay.tensor]
        states = tp.placement[stay.tensor]
        if stay.first == 0 and states[0] == KEEP:
            writes[t.value] = off
        else:
            prefetches.setdefault(t.uses[stay.first] - 1, []).append((t.value, off))
        for j in range(stay.first, stay.last + 1):
            assert states[j] != DRAM
            reads[t.uses[j], t.value] = off
    return reads, writes, prefetches
