"""Memory tiers: a target with fast on-chip memory and DRAM, tensor placements, and their simulator.

The model (one kernel at a time, in the graph's order; a DMA engine beside it):

* Every tensor a kernel touches is a weight or graph input (in DRAM before the run), or an
  activation some step defines. Between consecutive events of a tensor (its definition or a read)
  lies a *segment*; each segment is in one state:

  - ``DRAM``: the read at the segment's end comes from DRAM;
  - ``KEEP``: the tensor stays in fast memory over the whole segment (for the first segment of an
    activation: the kernel writes it straight into fast memory). Only possible if the tensor was
    in fast memory at the segment's start;
  - ``PREFETCH``: the DMA engine copies it from DRAM during the step before the read (the copy's
    bytes count against that step's DRAM time, so it hides behind a compute-bound kernel).

* An activation is written to DRAM once (at its definition) unless every segment keeps it in fast
  memory and it is not a graph output. Weights, inputs and outputs cost their bytes once each
  whatever happens: that is the *compulsory* traffic; the rest is *non-compulsory*.
* A step takes ``max(kernel_time(node), DRAM bytes of the step / DRAM bandwidth)``, where
  ``kernel_time`` is the node's time with everything in fast memory (``roofline_time`` by default;
  the learned cost model plugs in the same way) and the DRAM bytes are its DRAM reads, its DRAM
  write, and the prefetches issued during it.
* Fast memory holds at most ``fast_bytes`` at every step (checked again after packing offsets).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ...ir.analysis import node_flops
from ...ir.graph import CONST, FUSED, Graph, Node, Value
from ...ir.opdef import get_op

DRAM, KEEP, PREFETCH = 0, 1, 2
STATE_NAMES = ("dram", "keep", "prefetch")
KernelTime = Callable[[Node], float]


@dataclass(frozen=True)
class MemoryTarget:
    """A two-level memory hierarchy and the compute roof of the default kernel-time estimate."""

    name: str
    fast_bytes: int
    fast_gbps: float
    dram_gbps: float
    gflops: float

    def describe(self) -> str:
        """``npu-2m: 2048 KiB fast memory at 512 GB/s, DRAM at 32 GB/s, 4000 GFLOP/s``."""
        return (f"{self.name}: {self.fast_bytes // 1024} KiB fast memory at {self.fast_gbps:g} GB/s, "
                f"DRAM at {self.dram_gbps:g} GB/s, {self.gflops:g} GFLOP/s")


TARGETS: dict[str, MemoryTarget] = {
    t.name: t for t in (
        MemoryTarget("npu-512k", 512 * 1024, 512.0, 32.0, 4000.0),
        MemoryTarget("npu-2m", 2 * 1024 * 1024, 512.0, 32.0, 4000.0),
        MemoryTarget("npu-8m", 8 * 1024 * 1024, 512.0, 32.0, 4000.0),
    )
}
"""Example edge-accelerator hierarchies (scratchpad size varies); ``target_from_spec`` makes others."""


def target_from_spec(spec: str) -> MemoryTarget:
    """A preset name, or ``fast=KIB;fast-gbps=..;dram-gbps=..;gflops=..`` (``;`` or ``,`` between
    fields; missing ones from npu-2m)."""
    if spec in TARGETS:
        return TARGETS[spec]
    base = TARGETS["npu-2m"]
    fields = {"fast": base.fast_bytes // 1024, "fast-gbps": base.fast_gbps, "dram-gbps": base.dram_gbps,
              "gflops": base.gflops}
    for item in filter(None, (s.strip() for s in spec.replace(";", ",").split(","))):
        key, eq, text = item.partition("=")
        if not eq or key.strip() not in fields:
            raise ValueError(f"bad memory target '{spec}': use one of {', '.join(TARGETS)} "
                             f"or fast=KIB;fast-gbps=G;dram-gbps=G;gflops=G")
        fields[key.strip()] = float(text)
    return MemoryTarget(spec, int(fields["fast"] * 1024), fields["fast-gbps"], fields["dram-gbps"], fields["gflops"])


def node_bytes(node: Node, bindings: Mapping[str, int] | None = None) -> int:
    """Bytes a kernel reads and writes (its operands and results; fused bodies stay on chip)."""
    if node.op in (CONST, FUSED):
        return sum(v.type.nbytes(dict(bindings or {})) for v in (*node.inputs, *node.outputs))
    return int(get_op(node.op).bytes([v.type for v in node.inputs], [v.type for v in node.outputs], node.attrs))


def roofline_time(target: MemoryTarget) -> KernelTime:
    """``kernel_time(node)`` in microseconds: max(FLOPs / compute roof, bytes / fast-memory bandwidth)."""

    def kernel_time(node: Node) -> float:
        return max(node_flops(node) / (target.gflops * 1e3), node_bytes(node) / (target.fast_gbps * 1e3))

    return kernel_time


@dataclass(frozen=True)
class Tensor:
    """A tensor the kernels touch: where it comes from and the steps that read it."""

    value: Value
    size: int
    defined: int  # the step that writes it; -1 for weights and graph inputs (in DRAM already)
    uses: tuple[int, ...]  # distinct reading steps, increasing
    kind: str  # "weight", "input" or "activation"
    is_output: bool

    def segment(self, j: int) -> tuple[int, int]:
        """``(start, end)`` steps of segment ``j``: from the previous event to the ``j``-th read."""
        return (self.uses[j - 1] if j else self.defined), self.uses[j]

    def can_keep(self, j: int) -> bool:
        """KEEP is possible for segment ``j`` (the first segment of a weight or input has nothing to keep)."""
        return j > 0 or self.defined >= 0

    def can_prefetch(self, j: int) -> bool:
        """PREFETCH needs a step before the read in which the tensor is already in DRAM."""
        start, end = self.segment(j)
        return end >= 1 and (end - 1 > start if j == 0 and self.defined >= 0 else end - 1 >= max(start, 0))

    def fast_steps(self, j: int, state: int) -> range:
        """Steps at which segment ``j`` in ``state`` occupies fast memory."""
        start, end = self.segment(j)
        if state == KEEP:
            return range(start if j == 0 else start + 1, end + 1)
        if state == PREFETCH:
            return range(end - 1, end + 1)
        return range(0)


@dataclass(frozen=True)
class TierProblem:
    """The compute steps of a graph, their kernel times, and every tensor they touch."""

    target: MemoryTarget
    nodes: tuple[Node, ...]
    kernel_us: tuple[float, ...]
    tensors: tuple[Tensor, ...]
    traffic_weight: float = 0.25  # objective: time + this x (DRAM bytes / DRAM bandwidth)

    @property
    def steps(self) -> int:
        """Number of compute steps."""
        return len(self.nodes)


def build_tier_problem(graph: Graph, target: MemoryTarget, kernel_time: KernelTime | None = None,
                       bindings: Mapping[str, int] | None = None, traffic_weight: float = 0.25) -> TierProblem:
    """The tier-mapping problem of ``graph`` in its current order."""
    binds = dict(bindings or {})
    timer = kernel_time or roofline_time(target)
    nodes = tuple(n for n in graph.nodes if n.op != CONST)
    consts = {n.output for n in graph.nodes if n.op == CONST}
    defined: dict[Value, int] = {v: -1 for v in graph.inputs}
    uses: dict[Value, list[int]] = {}
    for k, node in enumerate(nodes):
        for v in dict.fromkeys(node.inputs):
            uses.setdefault(v, []).append(k)
        for v in node.outputs:
            defined[v] = k
    outputs = set(graph.outputs)
    tensors = []
    for v in [*graph.inputs, *(v for v in uses if v in consts), *(v for n in nodes for v in n.outputs)]:
        if v in consts:
            kind, at = "weight", -1
        else:
            kind, at = ("input" if defined[v] < 0 else "activation"), defined[v]
        if kind != "activation" and not uses.get(v):
            continue  # an unread weight or input costs nothing
        tensors.append(Tensor(v, v.type.nbytes(binds), at, tuple(uses.get(v, ())), kind, v in outputs))
    return TierProblem(target, nodes, tuple(float(timer(n)) for n in nodes), tuple(tensors), traffic_weight)


Placement = tuple[tuple[int, ...], ...]  # per tensor, one state per segment


def all_dram(problem: TierProblem) -> Placement:
    """Every segment in DRAM (what a machine without fast memory does)."""
    return tuple((DRAM,) * len(t.uses) for t in problem.tensors)


def writes_dram(t: Tensor, states: Sequence[int]) -> bool:
    """True when activation ``t`` goes to DRAM: a graph output, unread, or read from DRAM later."""
    return t.kind == "activation" and (t.is_output or not t.uses or any(s != KEEP for s in states))


def validate(problem: TierProblem, placement: Placement) -> str | None:
    """Why ``placement`` breaks a rule (None when it is valid), capacity per step included."""
    for t, states in zip(problem.tensors, placement):
        if len(states) != len(t.uses):
            return f"{t.value}: {len(states)} states for {len(t.uses)} segments"
        for j, s in enumerate(states):
            if s == KEEP and not (t.can_keep(j) and (j == 0 or states[j - 1] != DRAM)):
                return f"{t.value}: segment {j} kept but not in fast memory before"
            if s == PREFETCH and not t.can_prefetch(j):
                return f"{t.value}: segment {j} cannot be prefetched"
    over = [k for k, used in enumerate(occupancy(problem, placement)) if used > problem.target.fast_bytes]
    return f"fast memory over capacity at step {over[0]}" if over else None


def fast_steps(t: Tensor, states: Sequence[int]) -> set[int]:
    """Steps at which tensor ``t`` with segment ``states`` occupies fast memory."""
    steps: set[int] = set()
    for j, s in enumerate(states):
        steps.update(t.fast_steps(j, s))
    return steps


def dram_events(t: Tensor, states: Sequence[int]) -> dict[int, int]:
    """DRAM bytes tensor ``t`` moves at each step: its write, its DRAM reads and its prefetches."""
    events: dict[int, int] = {}
    if writes_dram(t, states):
        events[t.defined] = t.size
    for j, s in enumerate(states):
        if s == DRAM:
            events[t.uses[j]] = events.get(t.uses[j], 0) + t.size
        elif s == PREFETCH:
            events[t.uses[j] - 1] = events.get(t.uses[j] - 1, 0) + t.size
    return events


def occupancy(problem: TierProblem, placement: Placement) -> list[int]:
    """Bytes of fast memory in use at every step."""
    used = [0] * max(problem.steps, 1)
    for t, states in zip(problem.tensors, placement):
        for k in fast_steps(t, states):
            used[k] += t.size
    return used


@dataclass(frozen=True)
class Stay:
    """One stay of a tensor in fast memory: segments ``first..last`` (a definition or prefetch, then
    consecutive KEEPs), occupying steps ``start..end``; each stay needs one block of the fast arena."""

    tensor: int
    size: int
    start: int
    end: int
    first: int
    last: int


def fast_stays(problem: TierProblem, placement: Placement) -> list[Stay]:
    """Every stay in fast memory of ``placement``, tensor by tensor."""
    out = []
    for i, (t, states) in enumerate(zip(problem.tensors, placement)):
        run: list[int] | None = None  # [start, end, first, last]
        for j, s in enumerate(states):
            steps = t.fast_steps(j, s)
            if s == KEEP and run is not None:
                run[1], run[3] = steps[-1], j
                continue
            if run is not None:
                out.append(Stay(i, t.size, *run))
                run = None
            if s != DRAM:
                run = [steps[0], steps[-1], j, j]
        if run is not None:
            out.append(Stay(i, t.size, *run))
    return out


@dataclass(frozen=True)
class TierStats:
    """What the simulator predicts for one placement."""

    time_us: float
    offchip_bytes: int
    compulsory_bytes: int
    step_us: tuple[float, ...]
    peak_fast_bytes: int

    @property
    def noncompulsory_bytes(self) -> int:
        """Off-chip bytes beyond reading weights and inputs once and writing outputs once."""
        return self.offchip_bytes - self.compulsory_bytes


def step_dram_bytes(problem: TierProblem, placement: Placement) -> list[int]:
    """DRAM bytes moved during each step: reads, writes and prefetches issued then."""
    dram = [0] * problem.steps
    for t, states in zip(problem.tensors, placement):
        for k, b in dram_events(t, states).items():
            dram[k] += b
    return dram


def compulsory_bytes(problem: TierProblem) -> int:
    """Weights and inputs read once, outputs (and results nobody reads) written once."""
    return sum(t.size for t in problem.tensors if t.kind != "activation" or t.is_output or not t.uses)


def simulate(problem: TierProblem, placement: Placement) -> TierStats:
    """Predicted time and off-chip traffic of ``placement`` (see the module docstring)."""
    dram = step_dram_bytes(problem, placement)
    per_byte = 1.0 / (problem.target.dram_gbps * 1e3)  # microseconds per byte
    steps = tuple(max(k, d * per_byte) for k, d in zip(problem.kernel_us, dram))
    return TierStats(sum(steps), sum(dram), compulsory_bytes(problem), steps,
                     max(occupancy(problem, placement), default=0))
