"""The graph -> a Relax IRModule whose ``main`` calls one kernel per node, in graphopt's order.

Each kernel is a ``call_tir`` of its PrimFunc; a kernel that could not be lowered is a
``call_dps_packed`` of a Python function (registered by the executable) that runs the node on the
reference interpreter. Graph constants become Relax constants, stored once in the built library.
Symbolic dims are first specialized to the concrete input shapes (``specialize``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from ...ir.graph import CONST, FUSED, Graph, Node, Value
from ...ir.opdef import get_op
from ...ir.types import TensorType
from .kernel import Kernel, KernelArg, build_kernel, kernel_name, kernel_ops
from .lower import TVM_DTYPE, LoweringError
from .schedule import KernelSchedule
from .target import HostTarget


@dataclass
class KernelRecord:
    """What became of one kernel: compiled by TVM with some schedule, or run by the interpreter."""

    name: str
    node_index: int
    ops: str
    schedule: str = ""
    fallback: str | None = None  # the reason, when the interpreter runs it
    shares: str | None = None  # the kernel whose identical code this one calls

    def to_json(self) -> dict[str, object]:
        """A plain dict for the saved manifest."""
        return dict(self.__dict__)


def specialize(graph: Graph, input_types: Sequence[TensorType]) -> dict[Value, TensorType]:
    """Concrete types of every value (fused bodies included) for inputs of ``input_types``."""
    types: dict[Value, TensorType] = dict(zip(graph.inputs, input_types))
    infer_types(graph.nodes, types)
    return types


def infer_types(nodes: Sequence[Node], types: dict[Value, TensorType]) -> None:
    """Add the types of ``nodes``' results (fused bodies included) to ``types``, which has their operands."""
    for node in nodes:
        if node.op == CONST:
            types[node.output] = node.output.type
            continue
        if node.op == FUSED:
            assert node.body is not None
            types.update(zip(node.body.inputs, (types[v] for v in node.inputs)))
            infer_types(node.body.nodes, types)
            outs = [types[v] for v in node.body.outputs]
        else:
            opdef = get_op(node.op)
            outs = list(opdef.infer([types[v] for v in node.inputs], node.attrs))
        types.update(zip(node.outputs, outs))


def _sinfo(t: TensorType) -> relax.TensorType:
    return relax.TensorType(tuple(int(d) for d in t.shape), TVM_DTYPE[t.dtype])  # type: ignore[arg-type]


def _schedule_for(node: Node, name: str, schedules: Mapping[str, KernelSchedule]) -> KernelSchedule:
    # An explicit schedule (by kernel name) wins over the node's ``sched`` annotation.
    for key in (name, node.kernel_name or ""):
        if key in schedules:
            return schedules[key]
    ann = node.annotations.get("sched")
    return KernelSchedule.from_annotation(ann) if isinstance(ann, Mapping) else KernelSchedule()


def build_kernels(graph: Graph, types: Mapping[Value, TensorType], schedules: Mapping[str, KernelSchedule],
                  target: HostTarget, force_fallback: Mapping[int, str]) -> tuple[dict[int, Kernel], list[KernelRecord]]:
    """Lower every compute node of ``graph``; nodes that fail (or are in ``force_fallback``) fall back."""
    consts = graph.constants()
    kernels: dict[int, Kernel] = {}
    records: list[KernelRecord] = []
    for index, node in enumerate(graph.nodes):
        if node.op == CONST:
            continue
        name = kernel_name(node, index)
        record = KernelRecord(name, index, kernel_ops(node))
        records.append(record)
        if index in force_fallback:
            record.fallback = force_fallback[index]
            continue
        try:
            kernel = build_kernel(node, name, types, consts, _schedule_for(node, name, schedules), target)
        except LoweringError as e:
            record.fallback = str(e)
            continue
        except Exception as e:  # noqa: BLE001 - TVM raises many types; any of them means "cannot build"
            lines = str(e).strip().splitlines()
            record.fallback = f"TVM could not build the kernel: {type(e).__name__}: {(lines or [''])[-1][:300]}"
            continue
        record.schedule = kernel.schedule
        kernels[index] = kernel
    return kernels, records


def build_module(graph: Graph, types: Mapping[Value, TensorType], kernels: Mapping[int, Kernel],
                 fallback_name: Callable[[int], str]) -> tuple[tvm.IRModule, dict[int, str]]:
    """The Relax IRModule running ``graph``: ``kernels`` by node index, the other nodes as fallbacks.

    Also returns, by node index, the kernels that call another kernel's identical PrimFunc.
    """
    bb = relax.BlockBuilder()
    params = [relax.Var(v.name or f"in{i}", _sinfo(types[v])) for i, v in enumerate(graph.inputs)]
    env: dict[Value, relax.Expr] = dict(zip(graph.inputs, params))
    const_cache: dict[int, relax.Expr] = {}
    shared: dict[int, str] = {}

    def const(data: np.ndarray) -> relax.Expr:
        # Keyed by identity: one weight used by several kernels is stored once.
        if id(data) not in const_cache:
            # The dtype is explicit: relax.const turns a 0-d int64 array into an int32 scalar.
            dtype = TVM_DTYPE[TensorType.of(data).dtype]
            const_cache[id(data)] = relax.const(np.require(data, requirements="C"), dtype)
        return const_cache[id(data)]

    def arg(a: KernelArg) -> relax.Expr:
        return env[a.value] if a.value is not None else const(a.data)  # type: ignore[arg-type]

    with bb.function("main", params):
        with bb.dataflow():
            for index, node in enumerate(graph.nodes):
                if node.op == CONST:
                    env[node.output] = const(node.value)
                    continue
                out_sinfo = [_sinfo(types[v]) for v in node.outputs]
                kernel = kernels.get(index)
                if kernel is not None:
                    gvar = bb.add_func(kernel.func, kernel.name)  # an equal function is reused
                    if gvar.name_hint != kernel.name:
                        shared[index] = gvar.name_hint
                    call = relax.call_tir(gvar, [arg(a) for a in kernel.args], out_sinfo)
                else:
                    call = relax.call_dps_packed(fallback_name(index), [env[v] for v in node.inputs], out_sinfo)
                result = bb.emit(call)
                if len(node.outputs) == 1:
                    env[node.output] = result
                else:
                    for i, v in enumerate(node.outputs):
                        env[v] = bb.emit(relax.TupleGetItem(result, i))
            out = bb.emit_output(relax.Tuple([env[v] for v in graph.outputs]))
        bb.emit_func_output(out)
    return bb.get(), shared
