"""The graph -> a Relax IRModule whose ``main`` calls one kernel per node, in graphopt's order.

Each kernel is a ``call_tir`` of its PrimFunc; a kernel that could not be lowered is a
``call_dps_packed`` of a Python function (registered by the executable) that runs the node on the
reference interpreter. Graph constants become Relax constants, stored once in the built library.
Symbolic dims are first specialized to the concrete input shapes (``specialize``).

When the graph carries graphopt's memory plan (``plan-memory`` annotations) and it holds for the
input shapes (``arena_layout``), ``main`` executes that plan instead of TVM's own: one
``memory.alloc_storage`` per arena of the planned size, one ``memory.alloc_tensor`` per planned
value at its planned byte offset, and each kernel called in destination-passing style (the
lowered form of ``call_tir``: the PrimFunc with its operands and its result tensors) on those
tensors. TVM's ``StaticPlanBlockMemory`` plans only ``builtin.alloc_tensor``, so it leaves them
alone; graph outputs (returned to the caller) keep TVM's allocation. A view whose result is
planned onto its operand's bytes runs no kernel at all: its tensor is a second ``alloc_tensor`` at
the same offset. A kernel writing a result over an operand (in place) is called without its
``tirx.noalias`` attribute, since its two pointers do alias. The small ResNet of the tests (``R.``
prefixes dropped)::

    arena0 = memory.alloc_storage(shape([81920]), 0, "global", "uint8")
    a3_0 = memory.alloc_tensor(arena0, 65536, shape([1, 16, 16, 16]), "float32", 0)
    v3_0 = memory.ensure_zero_offset(a3_0)   # TIR kernels want byte_offset 0: the pointer moves
    k3_max_pool2d(v2_0, v3_0)
    ...
    a9_0 = memory.alloc_tensor(arena0, 65536, shape([1, 16, 16, 16]), "float32", 0)
    v9_0 = memory.ensure_zero_offset(a9_0)   # conv+add+relu written over the residual v3_0
    k9_k2(v6_0, weight, v3_0, bias, v9_0)
    ...
    gv17 = call_tir(k50_gemm, (v47_0, weight, bias), out_ty=Tensor((1, 10)))  # a graph output: TVM's
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from ...ir.annotations import BufferRef
from ...ir.graph import CONST, FUSED, Graph, Node, Value
from ...ir.opdef import get_op
from ...ir.types import TensorType
from ...passes.memory.lifetimes import VIEW_OPS
from ...passes.memory.plan import home_places, place_conflict, plan_bindings
from ...passes.schedule import kernel_ops
from .kernel import Kernel, KernelArg, build_kernel, kernel_name
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


@dataclass
class ModuleNotes:
    """What ``build_module`` decided, by node index."""

    shared: dict[int, str] = field(default_factory=dict)  # kernels calling another's identical PrimFunc
    views: set[int] = field(default_factory=set)  # views that run nothing: result on the operand's bytes
    in_place: set[int] = field(default_factory=set)  # kernels writing a result over an operand


@dataclass(frozen=True)
class ArenaLayout:
    """graphopt's memory plan as one build executes it: each arena's bytes and the values kept in one."""

    sizes: Mapping[str, int]  # arena -> bytes (the top of its highest planned value)
    places: Mapping[Value, BufferRef]  # planned values except graph outputs, which TVM allocates


TVM_ALIGN = 64  # TVM's kernels assume 64-byte aligned data


def arena_layout(graph: Graph, types: Mapping[Value, TensorType]) -> tuple[ArenaLayout | None, str]:
    """The plan in ``graph``'s annotations for values of ``types``, or None and why it cannot be used.

    It cannot when there is none, when it assumed other symbol sizes than these inputs have (a plan
    made with ``bind={B=1}`` is only valid for batch 1), when an offset is not 64-byte aligned, or
    when it is unsafe for the graph as it now is (``place_conflict``).
    """
    places = home_places(graph)
    if not places:
        return None, "the graph carries no memory plan (run plan-memory)"
    assumed = plan_bindings(graph)
    actual = {d: int(types[v].shape[i]) for v in graph.inputs for i, d in enumerate(v.type.shape) if isinstance(d, str)}
    wrong = {k: n for k, n in assumed.items() if actual.get(k, n) != n}
    if wrong:
        plan = ", ".join(f"{k}={n}" for k, n in sorted(wrong.items()))
        here = ", ".join(f"{k}={actual[k]}" for k in sorted(wrong))
        return None, f"graphopt's plan assumes {plan}, these inputs have {here}"
    for v, p in places.items():
        if types[v].nbytes() != p.size:
            return None, f"{v} is {types[v].nbytes():,} bytes here, the plan has {p.size:,}"
        if p.ref.offset % TVM_ALIGN:
            return None, f"{v} is at {p.ref}, not {TVM_ALIGN}-byte aligned as TVM's kernels need"
    conflict = place_conflict(graph, places, assumed)
    if conflict is not None:
        return None, f"graphopt's plan does not fit the graph (stale?): {conflict}"
    sizes: dict[str, int] = {}
    for p in places.values():
        sizes[p.ref.arena] = max(sizes.get(p.ref.arena, 0), p.ref.offset + p.size)
    outputs = set(graph.outputs)
    kept = {v: p.ref for v, p in places.items() if v not in outputs}
    if not kept:
        return None, "every planned value is a graph output, and TVM allocates those"
    used = {ref.arena for ref in kept.values()}  # an arena holding only graph outputs is not allocated
    return ArenaLayout({a: n for a, n in sizes.items() if a in used}, kept), ""


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
                 fallback_name: Callable[[int], str],
                 layout: ArenaLayout | None = None) -> tuple[tvm.IRModule, ModuleNotes]:
    """The Relax IRModule running ``graph``: ``kernels`` by node index, the other nodes as fallbacks.

    With a ``layout``, planned values live in its arenas (see the module docstring).
    """
    bb = relax.BlockBuilder()
    params = [relax.Var(v.name or f"in{i}", _sinfo(types[v])) for i, v in enumerate(graph.inputs)]
    env: dict[Value, relax.Expr] = dict(zip(graph.inputs, params))
    const_cache: dict[int, relax.Expr] = {}
    notes = ModuleNotes()
    shared, views = notes.shared, notes.views

    def const(data: np.ndarray) -> relax.Expr:
        # Keyed by identity: one weight used by several kernels is stored once.
        if id(data) not in const_cache:
            # The dtype is explicit: relax.const turns a 0-d int64 array into an int32 scalar.
            dtype = TVM_DTYPE[TensorType.of(data).dtype]
            const_cache[id(data)] = relax.const(np.require(data, requirements="C"), dtype)
        return const_cache[id(data)]

    def arg(a: KernelArg) -> relax.Expr:
        return env[a.value] if a.value is not None else const(a.data)  # type: ignore[arg-type]

    def bind(node: Node, result: relax.Expr) -> None:
        if len(node.outputs) == 1:
            env[node.output] = result
        else:
            for i, v in enumerate(node.outputs):
                env[v] = bb.emit(relax.TupleGetItem(result, i))

    def add_kernel(index: int, kernel: Kernel, in_place: bool = False) -> relax.GlobalVar:
        func = kernel.func
        if in_place:  # a result overwrites an operand: the two pointers alias, so they are not noalias
            func = func.without_attr("tirx.noalias")
        gvar = bb.add_func(func, kernel.name)  # an equal function is reused
        if gvar.name_hint != kernel.name:
            shared[index] = gvar.name_hint
        return gvar

    planned = layout is not None and bool(layout.places)
    # Explicit allocations and calls with result arguments are impure: outside a dataflow block,
    # in a function marked pure as a whole (what TVM's own CallTIRRewrite produces).
    attrs = {"relax.force_pure": True} if planned else None
    with bb.function("main", params, attrs=attrs):
        storage: dict[str, relax.Expr] = {}
        if planned:
            assert layout is not None
            for arena, size in sorted(layout.sizes.items()):
                storage[arena] = bb.emit(relax.op.memory.alloc_storage(
                    relax.ShapeExpr([size]), 0, "global", "uint8"), name_hint=arena)

        def placed(v: Value, index: int, k: int) -> relax.Expr:
            # The value's tensor at its planned offset; TIR kernels check byte_offset == 0, so the
            # offset moves into the data pointer (a view on the CPU, no copy).
            assert layout is not None
            ref, t = layout.places[v], types[v]
            shape = relax.ShapeExpr([int(d) for d in t.shape])
            at = bb.emit(relax.op.memory.alloc_tensor(storage[ref.arena], ref.offset, shape, TVM_DTYPE[t.dtype]),
                         name_hint=f"a{index}_{k}")
            return bb.emit(relax.op.memory.ensure_zero_offset(at), name_hint=f"v{index}_{k}")

        with bb.dataflow() if not planned else contextlib.nullcontext():
            for index, node in enumerate(graph.nodes):
                if node.op == CONST:
                    env[node.output] = const(node.value)
                    continue
                out_sinfo = [_sinfo(types[v]) for v in node.outputs]
                kernel = kernels.get(index)
                homes = [layout.places.get(v) for v in node.outputs] if planned and layout is not None else []
                if not any(homes):
                    if kernel is not None:
                        call = relax.call_tir(add_kernel(index, kernel), [arg(a) for a in kernel.args], out_sinfo)
                    else:
                        call = relax.call_dps_packed(fallback_name(index), [env[v] for v in node.inputs], out_sinfo)
                    bind(node, bb.emit(call))
                    continue
                assert layout is not None
                src = layout.places.get(node.inputs[0]) if node.inputs else None
                if node.op in VIEW_OPS and len(node.outputs) == 1 and src is not None and homes[0] == src:
                    env[node.output] = placed(node.output, index, 0)  # the same bytes: nothing to run
                    views.add(index)
                    continue
                outs = [placed(v, index, k) if home is not None
                        else bb.emit(relax.op.builtin.alloc_tensor(relax.ShapeExpr([int(d) for d in types[v].shape]),
                                                                   TVM_DTYPE[types[v].dtype], 0), name_hint=f"o{index}_{k}")
                        for k, (v, home) in enumerate(zip(node.outputs, homes))]
                in_place = _aliases(node, layout, types)
                if in_place:
                    notes.in_place.add(index)
                if kernel is not None:
                    bb.emit(relax.Call(add_kernel(index, kernel, in_place), [arg(a) for a in kernel.args] + outs))
                else:
                    bb.emit(relax.Call(relax.ExternFunc(fallback_name(index)), [env[v] for v in node.inputs] + outs))
                for v, t in zip(node.outputs, outs):
                    env[v] = t
            result = relax.Tuple([env[v] for v in graph.outputs])
            out = bb.emit(result) if planned else bb.emit_output(result)
        bb.emit_func_output(out)
    return bb.get(), notes


def _aliases(node: Node, layout: ArenaLayout, types: Mapping[Value, TensorType]) -> bool:
    """True when a result of ``node`` is written over one of its operands (planned in place).

    Any other overlap between an operand and a result would be a broken plan: ``arena_layout``
    checked there is none, and this asserts it again where it matters.
    """
    alias = False
    for v in node.outputs:
        out = layout.places.get(v)
        if out is None:
            continue
        top = out.offset + types[v].nbytes()
        for u in node.inputs:
            ref = layout.places.get(u)
            if ref is None or ref.arena != out.arena or ref.offset >= top or out.offset >= ref.offset + types[u].nbytes():
                continue
            assert ref.offset == out.offset and types[u] == types[v], f"{u} at {ref} overlaps result {v} at {out}"
            alias = True
    return alias


@dataclass(frozen=True)
class MemoryUse:
    """How one build allocates activations, read off the Relax module it compiled."""

    plan: str  # "graphopt" or "tvm"
    note: str  # why TVM's own allocation is used, when it is
    storages: Mapping[str, int]  # graphopt's arenas as the module allocates them: name -> bytes
    tensors: tuple[tuple[str, int, tuple[int, ...], str], ...]  # (arena, offset, shape, dtype) per alloc_tensor
    views: int = 0  # view nodes that run no kernel
    in_place: int = 0  # kernels writing a result over an operand

    @classmethod
    def of(cls, mod: tvm.IRModule, note: str, views: int = 0, in_place: int = 0) -> MemoryUse:
        """What ``mod``'s ``main`` allocates explicitly (its ``memory.alloc_storage`` / ``alloc_tensor``)."""
        storage_op, tensor_op = tvm.ir.Op.get("relax.memory.alloc_storage"), tvm.ir.Op.get("relax.memory.alloc_tensor")
        storages: dict[str, int] = {}
        tensors = []
        for block in mod["main"].body.blocks:
            for b in block.bindings:
                call = b.value
                if not isinstance(call, relax.Call):
                    continue
                if call.op.same_as(storage_op):
                    storages[b.var.name] = int(call.args[0].values[0])
                elif call.op.same_as(tensor_op):
                    tensors.append((call.args[0].name, int(call.args[1].value),
                                    tuple(int(d) for d in call.args[2].values), str(call.args[3].value)))
        return cls("graphopt" if storages else "tvm", note, storages, tuple(tensors), views, in_place)

    def describe(self) -> str:
        """``memory: graphopt plan, arena0 36,864 bytes (...)`` or why TVM's own allocation is used."""
        if self.plan != "graphopt":
            return f"memory: TVM's own allocation (StaticPlanBlockMemory): {self.note or 'no graphopt plan'}"
        arenas = ", ".join(f"{a} {n:,} bytes" for a, n in sorted(self.storages.items()))
        return (f"memory: graphopt plan, {arenas} ({len(self.tensors)} values at planned offsets; "
                f"{self.in_place} kernels in place, {self.views} views without a kernel; "
                f"graph outputs allocated by TVM)")

    def to_json(self) -> dict[str, object]:
        """A plain dict for the saved manifest."""
        return {"plan": self.plan, "note": self.note, "storages": dict(self.storages),
                "tensors": [list(t[:2]) + [list(t[2]), t[3]] for t in self.tensors], "views": self.views,
                "in_place": self.in_place}

    @classmethod
    def from_json(cls, d: Mapping[str, object]) -> MemoryUse:
        """Read back what ``to_json`` wrote."""
        tensors = tuple((str(a), int(off), tuple(shape), str(dt)) for a, off, shape, dt in d["tensors"])  # type: ignore[attr-defined]
        return cls(str(d["plan"]), str(d["note"]), dict(d["storages"]), tensors,  # type: ignore[arg-type]
                   int(d["views"]), int(d["in_place"]))  # type: ignore[call-overload]
