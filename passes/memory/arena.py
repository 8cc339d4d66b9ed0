"""Offsets for buffers in one arena: greedy packers, and an exact MILP for small problems.

The problem is dynamic storage allocation: rectangles with a fixed time extent (a buffer's live
steps) and height (its size) are stacked at offsets so that no two that are live at a common step
overlap, minimizing the arena's top. Its lower bound is the most bytes live at one step.

* ``greedy``: TFLite's greedy-by-size family. Buffers are taken in one of several orders (size,
  size x duration, duration, start) and each goes to the *best-fit* gap (the smallest hole that
  fits among the buffers already placed that overlap it in time) or the *first-fit* one (lowest
  offset); the best of all combinations wins.
* ``exact``: a MILP (offsets, one binary per pair of buffers live together: above or below) solved
  by HiGHS under a time limit and started from the greedy answer, so a timeout still returns
  something at least as good as the heuristic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .milp import Milp

Interval = tuple[int, int, int]  # (size, start, end), sizes already aligned


@dataclass(frozen=True)
class Packing:
    """Offsets (one per interval, in input order), the arena size and how they were found."""

    offsets: tuple[int, ...]
    size: int
    method: str
    optimal: bool = False
    note: str = ""


def align(size: int, alignment: int) -> int:
    """``size`` rounded up to a multiple of ``alignment``."""
    return -(-size // alignment) * alignment if alignment > 1 else size


def arena_size(items: Sequence[Interval], offsets: Sequence[int]) -> int:
    """The top of the highest buffer."""
    return max((off + s for (s, _, _), off in zip(items, offsets)), default=0)


def conflicts(items: Sequence[Interval], offsets: Sequence[int]) -> list[tuple[int, int]]:
    """Pairs of buffers live at a common step whose byte ranges overlap (empty for a valid packing)."""
    bad = []
    for i, (si, ai, bi) in enumerate(items):
        for j in range(i + 1, len(items)):
            sj, aj, bj = items[j]
            if si and sj and ai <= bj and aj <= bi and offsets[i] < offsets[j] + sj and offsets[j] < offsets[i] + si:
                bad.append((i, j))
    return bad


_ORDERS: dict[str, Callable[[Interval], tuple[int, ...]]] = {
    "size": lambda it: (-it[0], it[1]),
    "area": lambda it: (-it[0] * (it[2] - it[1] + 1), -it[0]),
    "duration": lambda it: (-(it[2] - it[1]), -it[0]),
    "start": lambda it: (it[1], -it[0]),
}


def place(items: Sequence[Interval], order: Sequence[int], best_fit: bool) -> list[int]:
    """Offsets from placing ``items`` one by one in ``order`` into the best- or first-fitting gap."""
    offsets = [0] * len(items)
    placed: list[int] = []
    for i in order:
        size, start, end = items[i]
        busy = sorted((offsets[j], offsets[j] + items[j][0]) for j in placed
                      if items[j][0] and items[j][1] <= end and start <= items[j][2])
        best, best_gap, top = -1, -1, 0
        for lo, hi in busy:
            gap = lo - top
            if gap >= size and (best < 0 or (best_fit and gap < best_gap)):
                best, best_gap = top, gap
                if not best_fit:
                    break
            top = max(top, hi)
        offsets[i] = best if best >= 0 else top
        placed.append(i)
    return offsets


def greedy(items: Sequence[Interval]) -> Packing:
    """The smallest arena over every (order, best/first-fit) combination."""
    best: Packing | None = None
    for name, key in _ORDERS.items():
        order = sorted(range(len(items)), key=lambda i: key(items[i]))
        for fit in (True, False):
            offsets = place(items, order, fit)
            size = arena_size(items, offsets)
            if best is None or size < best.size:
                best = Packing(tuple(offsets), size, f"greedy by {name}, {'best' if fit else 'first'} fit")
    return best if best is not None else Packing((), 0, "empty")


def exact(items: Sequence[Interval], start: Packing, lower_bound: int, time_limit: float,
          alignment: int = 1) -> Packing:
    """The MILP optimum (or the best point found within ``time_limit`` s, never worse than ``start``)."""
    unit = max(alignment, 1)
    units = [-(-s // unit) for s, _, _ in items]
    top = -(-start.size // unit)
    m = Milp()
    offs = [m.var(0, top - u, integer=True) for u in units]
    peak = m.var(-(-lower_bound // unit), top)
    starting = [o // unit for o in start.offsets] + [float(top)]
    for i, u in enumerate(units):
        m.row({offs[i]: 1.0, peak: -1.0}, hi=-u)
    for i, (si, ai, bi) in enumerate(items):
        for j in range(i + 1, len(items)):
            sj, aj, bj = items[j]
            if not (si and sj and ai <= bj and aj <= bi):
                continue
            below = m.var(0, 1, integer=True)  # 1: i sits below j
            # i below j: o_i + u_i <= o_j; else j below i: o_j + u_j <= o_i (big-M = the arena top).
            m.row({offs[i]: 1.0, offs[j]: -1.0, below: top}, hi=top - units[i])
            m.row({offs[j]: 1.0, offs[i]: -1.0, below: -top}, hi=-units[j])
            starting.append(1.0 if start.offsets[i] < start.offsets[j] else 0.0)
    m.minimize({peak: 1.0})
    began = time.perf_counter()
    result = m.solve(time_limit, start=starting)
    seconds = time.perf_counter() - began
    if result.values is None:
        return Packing(start.offsets, start.size, start.method, False,
                       f"exact solver found no point in {seconds:.2f} s ({result.status}); kept {start.method}")
    offsets = tuple(round(result.values[o]) * unit for o in offs)
    size = arena_size(items, offsets)
    if size >= start.size or conflicts(items, offsets):
        note = "exact solver proved the heuristic optimal" if result.optimal else (
            f"exact solver stopped after {seconds:.2f} s ({result.status}) without improving; kept {start.method}")
        return Packing(start.offsets, start.size, start.method, result.optimal, note)
    if result.optimal:
        return Packing(offsets, size, "exact (MILP, optimal)", True, f"solved in {seconds:.2f} s")
    return Packing(offsets, size, "exact (MILP, best found)", False,
                   f"time limit {time_limit:g} s reached ({result.status}); best point found kept")


def pack(items: Sequence[Interval], lower_bound: int, exact_max: int, time_limit: float,
         alignment: int = 1) -> Packing:
    """Greedy packing, then the exact solver when there are at most ``exact_max`` buffers and a gap."""
    best = greedy(items)
    if best.size <= lower_bound:
        return Packing(best.offsets, best.size, best.method, True, "meets the lower bound")
    live = sum(1 for s, _, _ in items if s)
    if live > exact_max:
        return Packing(best.offsets, best.size, best.method, False,
                       f"{live} buffers > exact-max={exact_max}: heuristic only")
    return exact(items, best, lower_bound, time_limit, alignment)
