"""``KernelSchedule``: the knobs of one kernel's loop schedule, filled by defaults or by a search.

The same values print in IR dumps as the ``sched`` annotation of a node, e.g.
``sched={tile=[8,32], vec=16, par=2, unroll=0, pack=true}``. This module imports nothing from TVM
so passes can build schedules without it.
"""

from __future__ import annotations

from collections.abc import Mapping
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
