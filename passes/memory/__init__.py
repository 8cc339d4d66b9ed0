"""Memory planning: lifetimes, arena packing, execution order, memory tiers, and their reports.

The passes that use it are ``plan-memory`` (``passes/plan_memory.py``) and ``reorder``
(``passes/schedule_order.py``); backends read a plan back with ``read_plan``.
"""

from .plan import (
    MemoryPlan,
    Place,
    annotate,
    arena_sizes,
    home_places,
    make_plan,
    place_conflict,
    plan_bindings,
    read_plan,
    run_with_plan,
    strip_plan,
)
from .tiers import TARGETS, MemoryTarget, roofline_time, target_from_spec

__all__ = ["TARGETS", "MemoryPlan", "MemoryTarget", "Place", "annotate", "arena_sizes", "home_places", "make_plan",
           "place_conflict", "plan_bindings", "read_plan", "roofline_time", "run_with_plan", "strip_plan",
           "target_from_spec"]
