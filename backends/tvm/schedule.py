"""``KernelSchedule``: the knobs of one kernel's loop schedule, filled by defaults or by a search.

The same values print in IR dumps as the ``sched`` annotation of a node, e.g.
``sched={tile=[8,32], vec=16, par=2, unroll=0, pack=true}``. This module imports nothing from TVM
so passes can build schedules without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KernelSchedule:
    """Loop-schedule knobs of one kernel; zero or empty means "let the default heuristic choose".

    ``tile`` is the register tile of the kernel's anchor: ``(rows, cols)`` of the output for a
    matmul, ``(out-channel block, output-width block)`` for a convolution, ``(width block,)`` for a
    depthwise convolution. ``vec`` is the vector width in elements of the generic (non-anchor)
    inner loops. ``par`` is 1 to run serially, 2 or more to run the outer loops in parallel on
    TVM's thread pool (sized once per process, one thread per core), 0 to decide by the amount of
    work. ``unroll`` is the explicit unroll limit of inner loops and ``pack`` whether constant
    weights are repacked into the blocked layout the tile reads.
    """

    tile: tuple[int, ...] = ()
    vec: int = 0
    par: int = 0
    unroll: int = 0
    pack: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "tile", tuple(int(t) for t in self.tile))
        if any(t < 1 for t in self.tile) or self.vec < 0 or self.par < 0 or self.unroll < 0:
            raise ValueError(f"invalid kernel schedule {self}")

    def to_annotation(self) -> dict[str, Any]:
        """The ``sched`` annotation value (only fields that differ from the default)."""
        out: dict[str, Any] = {}
        if self.tile:
            out["tile"] = self.tile
        for key in ("vec", "par", "unroll"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if not self.pack:
            out["pack"] = False
        return out

    @staticmethod
    def from_annotation(value: Mapping[str, Any]) -> KernelSchedule:
        """Read a ``sched`` annotation (unknown keys are an error so typos do not pass silently)."""
        known = {"tile", "vec", "par", "unroll", "pack"}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"sched annotation has unknown keys {sorted(unknown)} (known: {sorted(known)})")
        return KernelSchedule(
            tile=tuple(value.get("tile", ())), vec=int(value.get("vec", 0)), par=int(value.get("par", 0)),
            unroll=int(value.get("unroll", 0)), pack=bool(value.get("pack", True)),
        )

    def __str__(self) -> str:
        parts = [f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in self.to_annotation().items()]
        return "{" + ", ".join(parts) + "}" if parts else "default"


# ------------------------------------------------------------------ default register tiles
# The lowerings build the tile these choose when a schedule names none; the cost model's features
# compute the same tile, so a default-scheduled kernel is described by the loops it really runs.


def _divisor_tile(n: int, candidates: Sequence[int]) -> int | None:
    return next((c for c in candidates if n % c == 0), None)


def matmul_tile(m: int, n: int, lanes: int, schedule: KernelSchedule) -> tuple[int, int]:
    """Default register tile (rows, cols) of an ``m x n`` matmul output."""
    if len(schedule.tile) >= 2:
        return min(schedule.tile[0], m), min(schedule.tile[1], n)
    # A row block shares each loaded B vector; with one row, wider column blocks give the FMA
    # units enough independent accumulators.
    cols = (4 * lanes, 2 * lanes, lanes, lanes // 2) if m == 1 else (2 * lanes, lanes, lanes // 2)
    nb = _divisor_tile(n, cols) or (n if n <= 4 * lanes else 2 * lanes)
    mb = _divisor_tile(m, (8, 6, 4, 3, 2, 1)) or 1
    return mb, nb


def conv_tile(oc_group: int, ow: int, lanes: int, schedule: KernelSchedule, groups: int) -> tuple[int, int]:
    """Default register tile (output-channel block, output-width block) of a convolution."""
    if len(schedule.tile) >= 2:
        ocb, owb = schedule.tile[0], min(schedule.tile[1], ow)
    else:
        ocb = 2 * lanes if oc_group >= 2 * lanes else lanes
        # Accumulators = owb * ocb / lanes; ~24 of the 32 vector registers leave room for operands.
        # Rows are computed in whole blocks, so pick the block that adds the fewest extra columns.
        limit = max(1, 24 * lanes // ocb)
        owb = ow if ow <= limit else min(range(limit // 2, limit + 1), key=lambda d: (-ow % d, -d))
    if groups > 1:
        # A channel block must stay inside one group.
        ocb = next(d for d in range(min(ocb, oc_group), 0, -1) if oc_group % d == 0)
    return ocb, owb


def dwconv_tile(wo: int, lanes: int, schedule: KernelSchedule) -> int:
    """Default width block of a depthwise convolution: one vector (half of one for short rows)."""
    if schedule.tile:
        return schedule.tile[0]
    return wo if wo < 4 else lanes if wo > lanes // 2 else lanes // 2
