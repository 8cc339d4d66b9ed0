"""The TVM backend's timing hook: one kernel built alone with one schedule, timed in process.

``measure_kernel`` lowers a kernel (a ``fused`` node or a single op node) with ``build_kernel``,
compiles it for the host CPU and times it with ``time_evaluator`` on random inputs of the
kernel's static types (symbolic dims bound to 1). ``TVMKernelMeasurer`` implements
``passes.base.KernelMeasurer`` with a small cache; the API creates it and hands it to the passes,
which never import it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import tvm

from ...ir.graph import Graph, Node, Value
from ...ir.types import TensorType
from .kernel import build_kernel, kernel_name
from .module import infer_types
from .schedule import KernelSchedule
from .target import host_target

CACHE_SIZE = 512


def bind_symbols(t: TensorType, size: int = 1) -> TensorType:
    """``t`` with every symbolic dim replaced by ``size`` (kernels are timed at batch 1)."""
    return t if t.is_static else t.with_shape(tuple(d if isinstance(d, int) else size for d in t.shape))


def measure_kernel(kernel: Node, schedule: Mapping[str, Any], *, constants: Mapping[Value, np.ndarray] | None = None,
                   number: int = 5, repeat: int = 7, min_repeat_ms: int = 2,
                   rng: np.random.Generator | None = None) -> float:
    """Median seconds of one run of ``kernel`` built with ``schedule`` (a ``sched`` annotation value).

    ``constants`` holds the data of operands that are weights (they are packed as in the real
    build); a fused kernel may instead carry its weights as ``const`` nodes in its body. Raises
    ``LoweringError`` when TVM cannot lower the kernel.
    """
    types: dict[Value, TensorType] = {v: bind_symbols(v.type) for v in kernel.inputs}
    infer_types([kernel], types)
    target = host_target()
    built = build_kernel(kernel, kernel_name(kernel, 0), types, constants or {},
                         KernelSchedule.from_annotation(schedule), target)
    func = built.func.with_attr("global_symbol", built.name)
    lib = tvm.compile(tvm.IRModule({built.name: func}), target.target).jit()
    dev = tvm.cpu()
    rng = rng or np.random.default_rng(0)
    # Every parameter gets fresh data, packed weights included: their values do not change the time.
    args = [tvm.runtime.tensor(_random(p.shape, str(p.dtype), rng), dev) for p in built.func.params]
    timer = lib.time_evaluator(built.name, dev, number=number, repeat=repeat, min_repeat_ms=min_repeat_ms)
    return float(np.median(timer(*args).results))


def _random(shape: Any, dtype: str, rng: np.random.Generator) -> np.ndarray:
    dims = tuple(int(d) for d in shape)
    if dtype.startswith(("float", "bfloat")):
        return rng.standard_normal(dims).astype(dtype)
    # Zeros are valid indices and divisors that do not trap (the lowering guards them anyway).
    return np.zeros(dims, dtype)


def _freeze(value: Any) -> Any:
    """A hashable form of a schedule annotation value (lists become tuples, dicts sorted items)."""
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


class TVMKernelMeasurer:
    """``KernelMeasurer`` for the TVM backend: median seconds of a kernel under a schedule, cached."""

    def __init__(self, constants: Mapping[Value, np.ndarray] | None = None, *, number: int = 5, repeat: int = 7,
                 min_repeat_ms: int = 2, seed: int = 0, cache_size: int = CACHE_SIZE) -> None:
        self.constants = dict(constants or {})
        self.number, self.repeat, self.min_repeat_ms = number, repeat, min_repeat_ms
        self.cache_size = cache_size
        self.calls = 0  # kernels actually built and timed (cache hits are not counted)
        self._rng = np.random.default_rng(seed)
        # Keyed by the node object itself (nodes hash by identity) so an entry keeps its node alive
        # and a recycled id can never alias another kernel.
        self._cache: OrderedDict[tuple[Node, Any], float] = OrderedDict()

    @classmethod
    def for_graph(cls, graph: Graph, **options: Any) -> TVMKernelMeasurer:
        """A measurer that knows ``graph``'s constants (kernels of its nodes pack them)."""
        return cls(graph.constants(), **options)

    def __call__(self, kernel: Node, schedule: Mapping[str, Any]) -> float:
        """Build ``kernel`` with ``schedule`` and return its median time in seconds."""
        key = (kernel, _freeze(schedule))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        seconds = measure_kernel(kernel, schedule, constants=self.constants, number=self.number,
                                 repeat=self.repeat, min_repeat_ms=self.min_repeat_ms, rng=self._rng)
        self.calls += 1
        self._cache[key] = seconds
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return seconds
