"""The TVM backend's timing hook: one kernel built alone with one schedule, timed in process.

``measure_kernel`` lowers a kernel (a ``fused`` node or a single op node) with ``build_kernel``,
compiles it for the host CPU and times it with ``time_evaluator`` on random inputs of the
kernel's static types (symbolic dims bound to 1). ``TVMKernelMeasurer`` implements
``passes.base.KernelMeasurer``: it keeps the last few builds, so timing the same kernel and
schedule again (a search confirming its winner against the default) costs no second build. The API
creates it and hands it to the passes, which never import it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import tvm

from ...ir.graph import Graph, Node, Value
from ...ir.types import TensorType
from .kernel import Kernel, build_kernel, kernel_name
from .module import infer_types
from .schedule import KernelSchedule
from .target import HostTarget, host_target

CACHE_SIZE = 8  # builds kept: each holds its inputs (weights included), so only a few


def bind_symbols(t: TensorType, size: int = 1) -> TensorType:
    """``t`` with every symbolic dim replaced by ``size`` (kernels are timed at batch 1)."""
    return t if t.is_static else t.with_shape(tuple(d if isinstance(d, int) else size for d in t.shape))


@dataclass
class TimedKernel:
    """A kernel compiled alone, with random arguments, ready to be timed."""

    lib: Any  # the compiled runtime module
    name: str
    args: list[Any]  # tvm tensors: inputs, packed weights and results

    def time(self, number: int, repeat: int, min_repeat_ms: int) -> float:
        """Median seconds of one run (``repeat`` samples of ``number`` runs each)."""
        timer = self.lib.time_evaluator(self.name, tvm.cpu(), number=number, repeat=repeat,
                                        min_repeat_ms=min_repeat_ms)
        return float(np.median(timer(*self.args).results))


def lower_alone(kernel: Node, schedule: Mapping[str, Any], constants: Mapping[Value, np.ndarray] | None = None,
                target: HostTarget | None = None, name: str | None = None) -> Kernel:
    """``kernel`` lowered and scheduled alone with ``schedule`` (a ``sched`` annotation value), its
    symbolic dims bound to 1 (the host target unless ``target``; named ``name`` or after its ops).

    ``constants`` holds the data of operands that are weights (they are packed as in the real
    build); a fused kernel may instead carry its weights as ``const`` nodes in its body. Raises
    ``LoweringError`` when TVM cannot lower the kernel.
    """
    types: dict[Value, TensorType] = {v: bind_symbols(v.type) for v in kernel.inputs}
    infer_types([kernel], types)
    return build_kernel(kernel, name or kernel_name(kernel, 0), types, constants or {},
                        KernelSchedule.from_annotation(schedule), target or host_target())


def build_for_timing(kernel: Node, schedule: Mapping[str, Any], constants: Mapping[Value, np.ndarray] | None = None,
                     rng: np.random.Generator | None = None) -> TimedKernel:
    """Compile ``kernel`` with ``schedule`` (``lower_alone``) and make its arguments."""
    target = host_target()
    built = lower_alone(kernel, schedule, constants, target)
    func = built.func.with_attr("global_symbol", built.name)
    lib = tvm.compile(tvm.IRModule({built.name: func}), target.target).jit()
    rng = rng or np.random.default_rng(0)
    # Every parameter gets fresh data, packed weights included: their values do not change the time.
    args = [tvm.runtime.tensor(_random(p.shape, str(p.dtype), rng), tvm.cpu()) for p in built.func.params]
    return TimedKernel(lib, built.name, args)


def measure_kernel(kernel: Node, schedule: Mapping[str, Any], *, constants: Mapping[Value, np.ndarray] | None = None,
                   number: int = 5, repeat: int = 7, min_repeat_ms: int = 2,
                   rng: np.random.Generator | None = None) -> float:
    """Median seconds of one run of ``kernel`` built alone with ``schedule``."""
    return build_for_timing(kernel, schedule, constants, rng).time(number, repeat, min_repeat_ms)


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
    """``KernelMeasurer`` for the TVM backend: median seconds of a kernel under a schedule.

    Every call times the kernel afresh (a second call is a second sample); the last
    ``cache_size`` builds are kept so that re-timing does not rebuild.
    """

    def __init__(self, constants: Mapping[Value, np.ndarray] | None = None, *, number: int = 5, repeat: int = 7,
                 min_repeat_ms: int = 2, seed: int = 0, cache_size: int = CACHE_SIZE) -> None:
        self.constants = dict(constants or {})
        self.number, self.repeat, self.min_repeat_ms = number, repeat, min_repeat_ms
        self.cache_size = cache_size
        self.calls = 0  # kernels timed
        self.builds = 0  # kernels compiled (cache misses)
        self._rng = np.random.default_rng(seed)
        # Keyed by the node object itself (nodes hash by identity) so an entry keeps its node alive
        # and a recycled id can never alias another kernel.
        self._built: OrderedDict[tuple[Node, Any], TimedKernel] = OrderedDict()

    @classmethod
    def for_graph(cls, graph: Graph, **options: Any) -> TVMKernelMeasurer:
        """A measurer that knows ``graph``'s constants (kernels of its nodes pack them)."""
        return cls(graph.constants(), **options)

    def __call__(self, kernel: Node, schedule: Mapping[str, Any]) -> float:
        """Build ``kernel`` with ``schedule`` (or reuse that build) and return its median time in seconds."""
        key = (kernel, _freeze(schedule))
        timed = self._built.get(key)
        if timed is None:
            timed = build_for_timing(kernel, schedule, self.constants, self._rng)
            self.builds += 1
            self._built[key] = timed
            if len(self._built) > self.cache_size:
                self._built.popitem(last=False)
        else:
            self._built.move_to_end(key)
        self.calls += 1
        return timed.time(self.number, self.repeat, self.min_repeat_ms)
