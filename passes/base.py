"""What a pass is: a frozen dataclass with a kebab-case ``name`` and ``run(graph, ctx) -> graph``.

Options are the dataclass's fields (``max_size: int = 16`` is spelled ``max-size=16`` in a
pipeline spec). Passes are pure: they never change the graph they are given, they build a new one.
``register_pass`` adds a pass class to the registry that pipeline specs are resolved against.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from ..ir.graph import Graph, Node

_KEBAB = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@runtime_checkable
class Pass(Protocol):
    """A graph-to-graph transformation; its options are dataclass fields."""

    name: ClassVar[str]

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        """Return the transformed graph; ``graph`` itself is left unchanged."""
        ...


Schedule = Mapping[str, Any]
"""A kernel schedule as its ``sched`` annotation value, e.g. ``{"tile": (8, 32), "vec": 16, "par": 2}``."""


@runtime_checkable
class KernelMeasurer(Protocol):
    """A backend's timing hook: the median seconds of one kernel (a fused or single-op node with
    static types) built with ``schedule``. Passed in by the API, never imported by passes."""

    def __call__(self, kernel: Node, schedule: Schedule) -> float:
        """Build ``kernel`` with ``schedule`` and return its measured median time in seconds."""
        ...


@runtime_checkable
class CostPredictor(Protocol):
    """The learned cost model as passes see it (DESIGN §4)."""

    def predict(self, kernels: Sequence[tuple[Node, Schedule]], target: str) -> tuple[Any, Any, Any]:
        """Predicted (mean, low, high) microseconds of each kernel, as three arrays."""
        ...


@dataclass
class PassContext:
    """State shared by the passes of one pipeline run: per-pass counters for reports and the CLI."""

    stats: dict[str, Counter[str]] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    target: str = "llvm"  # the target description the backend will build for (cost model / tuning key)
    measure: KernelMeasurer | None = None  # set by the API when a backend can time kernels
    cost_model: CostPredictor | None = None  # set by the API when a trained model is available

    def record(self, pass_name: str, counts: Mapping[str, int]) -> None:
        """Add ``counts`` (e.g. how often each rewrite rule fired) to ``pass_name``'s counters."""
        self.stats.setdefault(pass_name, Counter()).update({k: v for k, v in counts.items() if v})

    def summary(self, pass_name: str) -> str:
        """``key=count`` pairs recorded by ``pass_name``, most frequent first (empty if none)."""
        counts = self.stats.get(pass_name, Counter())
        items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return ", ".join(f"{k}={v}" for k, v in items)


@dataclass(frozen=True)
class Decision:
    """One choice a pass made, kept so that reports and ``graphopt explain`` can say why.

    ``subject`` names what was decided about (e.g. ``fuse %3 into @k0``), ``accepted`` the
    outcome, ``reason`` the rule or prediction behind it; ``numbers`` holds any figures used
    (predicted times in microseconds, sizes).
    """

    pass_name: str
    subject: str
    accepted: bool
    reason: str
    numbers: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """A plain dict for ``--json`` output."""
        return {"pass": self.pass_name, "subject": self.subject, "accepted": self.accepted,
                "reason": self.reason, "numbers": dict(self.numbers)}


P = TypeVar("P", bound=type)

_REGISTRY: dict[str, type] = {}


def register_pass(cls: P) -> P:
    """Class decorator: add a frozen-dataclass pass to the registry under its ``name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _KEBAB.match(name):
        raise ValueError(f"pass class {cls.__name__} needs a kebab-case 'name' class attribute, has {name!r}")
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"pass '{name}' ({cls.__name__}) must be a frozen dataclass")
    if not callable(getattr(cls, "run", None)):
        raise TypeError(f"pass '{name}' ({cls.__name__}) has no run(graph, ctx) method")
    other = _REGISTRY.get(name)
    # The same class seen again (a module imported twice) may re-register; another class may not.
    if other is not None and (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"pass name '{name}' is taken by {other.__module__}.{other.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def registered_passes() -> dict[str, type]:
    """Every registered pass class, by name (imports all pass modules of this package first)."""
    _load_pass_modules()
    return dict(sorted(_REGISTRY.items()))


_loaded = False


def _load_pass_modules() -> None:
    # Each module of this package registers its passes on import, so adding a pass is adding a module.
    global _loaded
    if _loaded:
        return
    from .. import passes as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    _loaded = True


class PassSpecError(ValueError):
    """A pipeline spec names an unknown pass or option, or gives an option a bad value."""


class PassError(RuntimeError):
    """A pass failed; the message names it and the original exception is chained as ``__cause__``."""

    def __init__(self, message: str, pass_name: str | None) -> None:
        super().__init__(message)
        self.pass_name = pass_name


class PassVerifyError(PassError):
    """The graph a pass returned (or the pipeline's input) breaks an IR invariant."""
