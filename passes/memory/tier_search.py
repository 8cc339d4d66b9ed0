"""Choosing tensor placements across memory tiers (see ``tiers`` for the model).

* ``xla_baseline``: XLA memory-space assignment's greedy, as a yardstick. Tensors in decreasing
  *memory boundedness* (the time their reads and write would save in fast memory, divided by the
  square root of their size, as in XLA's ``GetMemoryBoundedness``); each read is then served by
  keeping the tensor in fast memory if it still fits, else by a prefetch if that fits, else from DRAM.
* ``greedy``: lazy greedy over single-segment upgrades (DRAM -> KEEP / PREFETCH, PREFETCH -> KEEP),
  best saving per byte-step of fast memory first, followed by a time-bounded local search that
  evicts one tensor and refills.
* ``solve_ilp``: the exact 0-1 program (KEEP and PREFETCH binaries per segment, one DRAM-write
  binary per activation, step times as continuous variables) by HiGHS, started from the greedy.
* ``fit_arena``: gives every stay in fast memory an offset (greedy packing, then the exact packer
  if that overflows); if fragmentation still makes the packing exceed capacity, the stays on top
  are sent back to DRAM until it fits.

All minimize ``time + traffic_weight * DRAM bytes / DRAM bandwidth`` (``TierProblem.objective``):
predicted time, plus a charge for DRAM transfers even when they hide behind compute (they still
cost energy and bandwidth that other work shares).
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .arena import Packing, align
from .arena import exact as pack_exact
from .arena import greedy as pack_greedy
from .lifetimes import peak_live
from .milp import Milp
from .tiers import (
    DRAM,
    KEEP,
    PREFETCH,
    Placement,
    Stay,
    Tensor,
    TierProblem,
    TierStats,
    all_dram,
    dram_events,
    fast_stays,
    fast_steps,
    simulate,
    step_dram_bytes,
    validate,
    writes_dram,
)

FAST_ALIGNMENT = 64
PACK_EXACT_MAX = 400  # stays; above this fragmentation is fixed by eviction alone
PACK_TIME_LIMIT = 0.5  # seconds per exact packing attempt
REFILLS = 3  # fill-and-pack rounds after fragmentation evictions


class _State:
    """A mutable placement with per-step DRAM bytes and fast-memory use kept up to date."""

    def __init__(self, problem: TierProblem, placement: Placement) -> None:
        self.p = problem
        self.states = [list(s) for s in placement]
        self.dram = step_dram_bytes(problem, placement)
        self.occ = [0] * max(problem.steps, 1)
        self.fast: list[set[int]] = []
        for t, s in zip(problem.tensors, self.states):
            steps = fast_steps(t, s)
            self.fast.append(steps)
            for k in steps:
                self.occ[k] += t.size
        self.per_byte = 1.0 / (problem.target.dram_gbps * 1e3)

    def step_cost(self, k: int, dram: int) -> float:
        return max(self.p.kernel_us[k], dram * self.per_byte) + self.p.traffic_weight * dram * self.per_byte

    def objective(self) -> float:
        return sum(self.step_cost(k, d) for k, d in enumerate(self.dram))

    def delta(self, i: int, new: Sequence[int]) -> tuple[float, int, bool]:
        """(cost change, added byte-steps of fast memory, fits) of giving tensor ``i`` states ``new``."""
        t = self.p.tensors[i]
        before, after = dram_events(t, self.states[i]), dram_events(t, new)
        change: dict[int, int] = {}
        for k, b in before.items():
            change[k] = change.get(k, 0) - b
        for k, b in after.items():
            change[k] = change.get(k, 0) + b
        cost = sum(self.step_cost(k, self.dram[k] + d) - self.step_cost(k, self.dram[k]) for k, d in change.items() if d)
        added = fast_steps(t, new) - self.fast[i]
        fits = all(self.occ[k] + t.size <= self.p.target.fast_bytes for k in added)
        return cost, t.size * len(added), fits

    def apply(self, i: int, new: Sequence[int]) -> None:
        t = self.p.tensors[i]
        for k, b in dram_events(t, self.states[i]).items():
            self.dram[k] -= b
        for k, b in dram_events(t, new).items():
            self.dram[k] += b
        steps = fast_steps(t, new)
        for k in self.fast[i] - steps:
            self.occ[k] -= t.size
        for k in steps - self.fast[i]:
            self.occ[k] += t.size
        self.fast[i] = steps
        self.states[i] = list(new)

    def placement(self) -> Placement:
        return tuple(tuple(s) for s in self.states)


def _upgrades(t: Tensor, states: Sequence[int]) -> list[tuple[int, ...]]:
    # Single-segment moves toward fast memory that keep the placement valid.
    out = []
    for j, s in enumerate(states):
        prev_fast = j == 0 or states[j - 1] != DRAM
        if s != KEEP and t.can_keep(j) and prev_fast:
            out.append(tuple(states[:j]) + (KEEP,) + tuple(states[j + 1:]))
        if s == DRAM and t.can_prefetch(j) and not (j > 0 and states[j - 1] != DRAM):
            out.append(tuple(states[:j]) + (PREFETCH,) + tuple(states[j + 1:]))
    return out


# ------------------------------------------------------------------------------------ XLA baseline


def xla_baseline(problem: TierProblem) -> Placement:
    """XLA-style greedy: by memory boundedness, each read kept, else prefetched, else from DRAM."""
    st = _State(problem, all_dram(problem))
    benefit = []
    for i, t in enumerate(problem.tensors):
        if not t.uses:
            benefit.append(0.0)
            continue
        best_case = tuple(KEEP if t.can_keep(j) else PREFETCH if t.can_prefetch(j) else DRAM for j in range(len(t.uses)))
        cost, _, _ = st.delta(i, best_case)
        benefit.append(-cost / math.sqrt(max(t.size, 1)))
    for i in sorted(range(len(problem.tensors)), key=lambda i: (-benefit[i], i)):
        t = problem.tensors[i]
        states = [DRAM] * len(t.uses)
        for j in range(len(t.uses)):
            for choice in (KEEP, PREFETCH):
                if choice == KEEP and not (t.can_keep(j) and (j == 0 or states[j - 1] != DRAM)):
                    continue
                if choice == PREFETCH and not t.can_prefetch(j):
                    continue
                trial = states[:j] + [choice] + states[j + 1:]
                _, _, fits = st.delta(i, trial)
                if fits:
                    states = trial
                    st.apply(i, states)
                    break
    return st.placement()


# ------------------------------------------------------------------------------- greedy + search


def greedy(problem: TierProblem, start: Placement | None = None, only: set[int] | None = None) -> Placement:
    """Lazy greedy: apply the upgrade with the best saving per byte-step until none helps or fits."""
    st = _State(problem, start or all_dram(problem))
    _fill(st, only)
    return st.placement()


def _fill(st: _State, only: set[int] | None = None) -> None:
    heap: list[tuple[float, int, int, int, tuple[int, ...]]] = []
    version = [0] * len(st.p.tensors)
    counter = 0

    def push(i: int) -> None:
        nonlocal counter
        for new in _upgrades(st.p.tensors[i], st.states[i]):
            cost, area, fits = st.delta(i, new)
            if fits and cost < 0:
                heapq.heappush(heap, (cost / max(area, 1), counter, i, version[i], new))
                counter += 1

    for i in (only if only is not None else range(len(st.p.tensors))):
        push(i)
    while heap:
        _, _, i, seen, new = heapq.heappop(heap)
        if seen != version[i]:
            continue  # the tensor changed since this move was proposed; its new moves are queued
        cost, area, fits = st.delta(i, new)
        if not fits or cost >= 0:
            continue
        ratio = cost / max(area, 1)
        if heap and ratio > heap[0][0] + 1e-12:
            heapq.heappush(heap, (ratio, counter, i, seen, new))  # lazy: its saving shrank, requeue
            counter += 1
            continue
        st.apply(i, new)
        version[i] += 1
        push(i)


def local_search(problem: TierProblem, placement: Placement, deadline: float, seed: int = 0,
                 max_offchip: int | None = None) -> Placement:
    """Evict a tensor from fast memory (and some that overlap it), refill greedily, keep if better
    (and, with ``max_offchip``, only if it moves at most that many DRAM bytes)."""
    rng = random.Random(seed)
    best = placement
    best_value = _State(problem, best).objective()
    while time.perf_counter() < deadline:
        st = _State(problem, best)
        placed = [i for i, f in enumerate(st.fast) if f]
        if not placed:
            break
        i = rng.choice(placed)
        victims = [j for j in placed if j == i or (st.fast[j] & st.fast[i] and rng.random() < 0.3)]
        for j in victims:
            st.apply(j, [DRAM] * len(st.states[j]))
        _fill(st, set(range(len(problem.tensors))) - {i})  # others first, then the evicted one
        _fill(st, {i})
        value = st.objective()
        if value < best_value - 1e-9 and (max_offchip is None or sum(st.dram) <= max_offchip):
            best, best_value = st.placement(), value
    return best


# ------------------------------------------------------------------------------------------- ILP


@dataclass(frozen=True)
class IlpOutcome:
    """The exact solver's placement (None when it found none) and whether it is proven optimal."""

    placement: Placement | None
    optimal: bool
    note: str


def solve_ilp(problem: TierProblem, start: Placement, time_limit: float, max_offchip: int | None = None) -> IlpOutcome:
    """The optimal placement (or the best found within ``time_limit`` seconds) by HiGHS, moving at
    most ``max_offchip`` DRAM bytes when given."""
    m = Milp()
    cap = problem.target.fast_bytes
    per_byte = 1.0 / (problem.target.dram_gbps * 1e3)
    scale = 1.0 / max(max((t.size for t in problem.tensors), default=1), 1)  # keep coefficients near 1
    keep: dict[tuple[int, int], int] = {}
    pre: dict[tuple[int, int], int] = {}
    occ_rows: list[dict[int, float]] = [{} for _ in range(problem.steps)]
    dram: list[dict[int, float]] = [{} for _ in range(problem.steps)]
    dram_const = [0.0] * problem.steps
    warm: list[float] = []

    def var(lo: float, hi: float, integer: bool, value: float) -> int:
        warm.append(value)
        return m.var(lo, hi, integer)

    for i, (t, states) in enumerate(zip(problem.tensors, start)):
        write_var = None
        must_write = t.kind == "activation" and (t.is_output or not t.uses)
        if must_write:
            dram_const[t.defined] += t.size
        elif t.kind == "activation":
            write_var = var(0, 1, True, 1.0 if writes_dram(t, states) else 0.0)
            dram[t.defined][write_var] = dram[t.defined].get(write_var, 0.0) + t.size
        for j, end in enumerate(t.uses):
            read = {}
            if t.can_keep(j):
                k = keep[i, j] = var(0, 1, True, 1.0 if states[j] == KEEP else 0.0)
                for step in t.fast_steps(j, KEEP):
                    occ_rows[step][k] = t.size * scale
                read[k] = -float(t.size)
                if j > 0:  # kept only if it was in fast memory at the previous read
                    prev = {v: -1.0 for v in (keep.get((i, j - 1)), pre.get((i, j - 1))) if v is not None}
                    m.row({k: 1.0, **prev}, hi=0.0)
                if write_var is not None:
                    m.row({write_var: 1.0, k: 1.0}, lo=1.0)  # not kept here: the DRAM copy is needed
            elif write_var is not None:
                m.row({write_var: 1.0}, lo=1.0)
            if t.can_prefetch(j):
                q = pre[i, j] = var(0, 1, True, 1.0 if states[j] == PREFETCH else 0.0)
                for step in t.fast_steps(j, PREFETCH):
                    occ_rows[step][q] = occ_rows[step].get(q, 0.0) + t.size * scale
                read[q] = -float(t.size)
                dram[end - 1][q] = dram[end - 1].get(q, 0.0) + t.size
                if (i, j) in keep:
                    m.row({keep[i, j]: 1.0, q: 1.0}, hi=1.0)
            dram_const[end] += t.size  # the read from DRAM, minus what keep/prefetch save
            for v, c in read.items():
                dram[end][v] = dram[end].get(v, 0.0) + c
    for row in occ_rows:
        if row:
            m.row(row, hi=cap * scale)
    objective: dict[int, float] = {}
    sim_dram = step_dram_bytes(problem, start)
    for k in range(problem.steps):
        t_k = var(problem.kernel_us[k], math.inf, False, max(problem.kernel_us[k], sim_dram[k] * per_byte))
        m.row({t_k: 1.0, **{v: -c * per_byte for v, c in dram[k].items()}}, lo=dram_const[k] * per_byte)
        objective[t_k] = 1.0
        for v, c in dram[k].items():
            objective[v] = objective.get(v, 0.0) + problem.traffic_weight * c * per_byte
    if max_offchip is not None:
        total: dict[int, float] = {}
        for row in dram:
            for v, c in row.items():
                total[v] = total.get(v, 0.0) + c * scale
        m.row(total, hi=(max_offchip - sum(dram_const)) * scale + 1e-6)
    m.minimize(objective)
    result = m.solve(time_limit, start=warm)
    if result.values is None:
        return IlpOutcome(None, False, f"exact tier solver found no point ({result.status})")
    placement = tuple(
        tuple(KEEP if (i, j) in keep and result.values[keep[i, j]] > 0.5
              else PREFETCH if (i, j) in pre and result.values[pre[i, j]] > 0.5 else DRAM
              for j in range(len(t.uses)))
        for i, t in enumerate(problem.tensors))
    why = validate(problem, placement)
    if why is not None:
        return IlpOutcome(None, False, f"exact tier solver answer rejected: {why}")
    if result.optimal:
        return IlpOutcome(placement, True, f"optimal in {result.seconds:.2f} s")
    return IlpOutcome(placement, False, f"time limit {time_limit:g} s reached ({result.status}); best point kept")


# ------------------------------------------------------------------------------------ fast arena


def fit_arena(problem: TierProblem, placement: Placement,
              exact_time: float = PACK_TIME_LIMIT) -> tuple[Placement, Packing, list[Stay]]:
    """Offsets in fast memory for every stay; stays that do not fit after packing go back to DRAM."""
    current = placement
    tries_exact = exact_time > 0
    while True:
        stays = fast_stays(problem, current)
        items = [(align(s.size, FAST_ALIGNMENT), s.start, s.end) for s in stays]
        packing = pack_greedy(items)
        if packing.size > problem.target.fast_bytes and tries_exact and len(items) <= PACK_EXACT_MAX:
            tries_exact = False  # once: after an eviction the greedy packing is usually enough
            packing = pack_exact(items, packing, peak_live(items, problem.steps)[0], exact_time, FAST_ALIGNMENT)
        if packing.size <= problem.target.fast_bytes:
            return current, packing, stays
        # Fragmentation: send the stay reaching highest back to DRAM (what follows it is not a KEEP).
        worst = stays[max(range(len(stays)), key=lambda s: packing.offsets[s] + items[s][0])]
        states = list(current[worst.tensor])
        states[worst.first:worst.last + 1] = [DRAM] * (worst.last - worst.first + 1)
        current = tuple(tuple(states) if k == worst.tensor else s for k, s in enumerate(current))


# ---------------------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class TierPlan:
    """The chosen placement with its fast-memory offsets, its predicted stats and the baseline's."""

    problem: TierProblem
    placement: Placement
    stays: tuple[Stay, ...]
    fast_offsets: tuple[int, ...]  # one per stay
    fast_arena: int
    stats: TierStats
    baseline: TierStats
    method: str
    notes: tuple[str, ...]

    def reduction(self) -> float:
        """Fraction of the baseline's non-compulsory off-chip bytes this plan avoids."""
        base = self.baseline.noncompulsory_bytes
        return (base - self.stats.noncompulsory_bytes) / base if base else 0.0


def objective(problem: TierProblem, placement: Placement) -> float:
    """The quantity every search minimizes: predicted time plus the traffic tie-break."""
    return _State(problem, placement).objective()


def map_tiers(problem: TierProblem, time_limit: float = 5.0, exact_max_segments: int = 4000,
              seed: int = 0) -> TierPlan:
    """The fastest placement found that moves no more DRAM bytes than the XLA-style baseline.

    Greedy, then the exact ILP when small enough (else local search). The baseline is itself a
    candidate, so the result is never slower nor more off-chip traffic than it.
    """
    notes: list[str] = []
    base, _, _ = fit_arena(problem, xla_baseline(problem))
    cap = simulate(problem, base).offchip_bytes
    candidates: list[tuple[str, Placement]] = [("xla-style baseline", base), ("greedy", greedy(problem))]
    segments = sum(len(t.uses) for t in problem.tensors)
    proven = False
    if segments <= exact_max_segments:
        start = min((c[1] for c in candidates), key=lambda pl: objective(problem, pl))
        outcome = solve_ilp(problem, start, time_limit, cap)
        notes.append(outcome.note)
        if outcome.placement is not None:
            proven = outcome.optimal
            candidates.append(("exact ILP" + (" (optimal)" if proven else ""), outcome.placement))
    else:
        notes.append(f"{segments} segments > exact-max-segments={exact_max_segments}: heuristic only")
    if not proven:
        deadline = time.perf_counter() + time_limit
        candidates.append(("greedy + local search", local_search(problem, candidates[1][1], deadline, seed, cap)))
    scored = []
    for rank, (name, placement) in enumerate(reversed(candidates)):  # ties go to the later (better) method
        packed, packing, stays = fit_arena(problem, placement)
        if packed != placement:
            notes.append(f"{name}: {sum(a != b for a, b in zip(packed, placement))} tensor(s) sent back to DRAM "
                         "because fragmentation left no room in the fast arena; refilled greedily")
            for _ in range(REFILLS):  # the evictions freed room in other places: fill it and pack again
                st = _State(problem, packed)
                _fill(st)
                again, again_packing, again_stays = fit_arena(problem, st.placement(), exact_time=0)
                if objective(problem, again) >= objective(problem, packed) - 1e-9:
                    break
                packed, packing, stays = again, again_packing, again_stays
        if simulate(problem, packed).offchip_bytes > cap:
            continue
        scored.append((objective(problem, packed), rank, name, packed, packing, stays))
    _, _, name, placement, packing, stays = min(scored, key=lambda s: (s[0], s[1]))
    return TierPlan(problem, placement, tuple(stays), packing.offsets, packing.size, simulate(problem, placement),
                    simulate(problem, base), name, tuple(notes))
