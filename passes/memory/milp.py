"""A small mixed-integer linear program front end over HiGHS (``highspy``), with a time limit.

The memory planner's exact solvers (arena offsets, tier mapping) build their models here:

    m = Milp()
    x = m.var(0, 1, integer=True)
    m.row({x: 1.0, y: -1.0}, hi=0.0)
    m.minimize({y: 1.0})
    result = m.solve(time_limit=2.0, start=[...])

HiGHS is always asked for a bounded run (``time_limit`` seconds, one thread); the result says
whether the answer is proven optimal, so a caller can fall back to its heuristic with a note.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class MilpResult:
    """What a solve gave: the values (None when no feasible point was found) and whether proven optimal."""

    values: list[float] | None
    objective: float
    optimal: bool
    status: str
    seconds: float


@dataclass
class Milp:
    """Columns with bounds and integrality, rows ``lo <= sum(coef * x) <= hi``, a linear objective."""

    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    rows: list[tuple[dict[int, float], float, float]] = field(default_factory=list)
    cost: dict[int, float] = field(default_factory=dict)

    def var(self, lo: float, hi: float, integer: bool = False) -> int:
        """Add a column and return its index."""
        self.lower.append(lo)
        self.upper.append(hi)
        self.integer.append(integer)
        return len(self.lower) - 1

    def row(self, coefs: Mapping[int, float], lo: float = -np.inf, hi: float = np.inf) -> None:
        """Add the constraint ``lo <= sum(coefs[j] * x_j) <= hi``."""
        self.rows.append((dict(coefs), lo, hi))

    def minimize(self, coefs: Mapping[int, float]) -> None:
        """Set the objective to minimize."""
        self.cost = dict(coefs)

    def solve(self, time_limit: float, start: Sequence[float] | None = None) -> MilpResult:
        """Run HiGHS for at most ``time_limit`` seconds, optionally from a feasible starting point."""
        import highspy

        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("time_limit", float(max(time_limit, 0.01)))
        h.setOptionValue("threads", 1)
        n = len(self.lower)
        inf = h.getInfinity()
        h.addVars(n, np.array(self.lower, dtype=float), np.array([min(u, inf) for u in self.upper], dtype=float))
        ints = [j for j in range(n) if self.integer[j]]
        if ints:
            h.changeColsIntegrality(len(ints), np.array(ints, dtype=np.int32),
                                    np.array([highspy.HighsVarType.kInteger] * len(ints)))
        if self.cost:
            idx = np.array(sorted(self.cost), dtype=np.int32)
            h.changeColsCost(len(idx), idx, np.array([self.cost[j] for j in idx], dtype=float))
        if self.rows:
            starts, index, value = [], [], []
            for coefs, _, _ in self.rows:
                starts.append(len(index))
                index.extend(coefs)
                value.extend(coefs.values())
            h.addRows(len(self.rows), np.array([max(lo, -inf) for _, lo, _ in self.rows], dtype=float),
                      np.array([min(hi, inf) for _, _, hi in self.rows], dtype=float), len(index),
                      np.array(starts, dtype=np.int32), np.array(index, dtype=np.int32), np.array(value, dtype=float))
        if start is not None:
            sol = highspy.HighsSolution()
            sol.col_value = [float(v) for v in start]
            sol.value_valid = True
            h.setSolution(sol)
        h.run()
        status = h.getModelStatus()
        info = h.getInfo()
        has_point = info.primal_solution_status == 2  # kSolutionStatusFeasible
        values = list(h.getSolution().col_value) if has_point else None
        return MilpResult(
            values=values,
            objective=float(info.objective_function_value) if has_point else float("inf"),
            optimal=status == highspy.HighsModelStatus.kOptimal,
            status=h.modelStatusToString(status),
            seconds=float(h.getRunTime()),
        )
