"""One kernel (a ``fused`` node's body, or one standalone op node) -> a scheduled TIR PrimFunc.

The kernel's operands become TE placeholders, its ops are lowered one by one (``lower``), and
``te.create_prim_func`` turns the results into a PrimFunc that ``tir_schedule`` schedules. The
PrimFunc takes its inputs first, then one buffer per result (destination passing, as Relax's
``call_tir`` wants). Constants a lowering asked for in a packed layout are passed as extra inputs
holding the packed data, so the packing happens once, here, and never at run time.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tvm import te
from tvm import tirx as tir

from ...ir.graph import CONST, FUSED, Node, Value
from ...ir.types import TensorType
from .lower import TVM_DTYPE, Anchor, LowerContext, LoweringError, lower_node
from .schedule import KernelSchedule
from .target import HostTarget
from .tir_schedule import schedule_kernel


@dataclass(frozen=True)
class KernelArg:
    """Where one kernel input comes from: a graph value, or constant data made for this kernel."""

    value: Value | None = None
    data: np.ndarray | None = None  # a packed weight, or a constant of the fused body


@dataclass
class Kernel:
    """A kernel ready to be called from Relax: its PrimFunc, its inputs, and how it was scheduled."""

    name: str
    func: tir.PrimFunc
    args: list[KernelArg]
    schedule: str


def kernel_name(node: Node, index: int) -> str:
    """A unique, symbol-safe name for the kernel of ``node``, the ``index``-th node of its graph."""
    base = node.kernel_name if node.op == FUSED and node.kernel_name else node.op.split(".")[-1]
    return f"k{index}_" + re.sub(r"[^A-Za-z0-9_]", "_", base)


class _Names:
    """Unique TE names within one kernel (TIR block names must not repeat)."""

    def __init__(self) -> None:
        self._count = itertools.count()

    def __call__(self, base: str) -> str:
        return f"{base}_{next(self._count)}"


def _placeholder(t: TensorType, name: str) -> te.Tensor:
    if not t.is_static:
        raise LoweringError(f"operand type {t} is not specialized")
    return te.placeholder(tuple(int(d) for d in t.shape), TVM_DTYPE[t.dtype], name=name)


def _scalar(data: np.ndarray, names: _Names) -> te.Tensor:
    dtype = TVM_DTYPE[TensorType.of(data).dtype]
    value = data.item()
    return te.compute((), lambda: tir.const(value, dtype), name=names("scalar"))


def _used_placeholders(outputs: Sequence[te.Tensor]) -> set[str]:
    """Names of the placeholders the outputs read (TE operations hash by identity; names repeat)."""
    seen: set[te.Operation] = set()
    found: set[str] = set()
    stack = [t.op for t in outputs]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        if isinstance(op, te.PlaceholderOp):
            found.add(op.name)
        stack.extend(t.op for t in op.input_tensors)
    return found


def build_kernel(node: Node, name: str, types: Mapping[Value, TensorType], consts: Mapping[Value, np.ndarray],
                 sched: KernelSchedule, target: HostTarget) -> Kernel:
    """Lower and schedule the kernel of ``node``; raises LoweringError when an op cannot lower."""
    names = _Names()
    params = [_placeholder(types[v], f"in{i}") for i, v in enumerate(node.inputs)]
    args: list[tuple[te.Tensor, KernelArg]] = [(p, KernelArg(value=v)) for p, v in zip(params, node.inputs)]
    if node.op == FUSED:
        assert node.body is not None
        body_nodes, body_outputs = node.body.nodes, node.body.outputs
        env: dict[Value, te.Tensor] = dict(zip(node.body.inputs, params))
        known = {bv: consts[v] for bv, v in zip(node.body.inputs, node.inputs) if v in consts}
    else:
        body_nodes, body_outputs = (node,), node.outputs
        env, known = dict(zip(node.inputs, params)), {v: consts[v] for v in node.inputs if v in consts}
    anchors: list[Anchor] = []
    for inner in body_nodes:
        if inner.op == CONST:
            data = inner.value
            known[inner.output] = data
            if data.ndim == 0:
                env[inner.output] = _scalar(data, names)
            else:
                ph = te.placeholder(data.shape, TVM_DTYPE[TensorType.of(data).dtype], name=names("const"))
                args.append((ph, KernelArg(data=data)))
                env[inner.output] = ph
            continue
        if inner.op == FUSED:
            raise LoweringError("a fused node inside a fused body")
        ctx = LowerContext(
            op=inner.op, in_types=[types[v] for v in inner.inputs], out_types=[types[v] for v in inner.outputs],
            consts={i: known[v] for i, v in enumerate(inner.inputs) if v in known}, schedule=sched,
            lanes=target.lanes(), names=names,
        )
        outs = lower_node([env[v] for v in inner.inputs], inner.attrs, ctx)
        args += [(ph, KernelArg(data=data)) for _, ph, data in ctx.packs]
        if ctx.anchor is not None:
            anchors.append(ctx.anchor)
        env.update(zip(inner.outputs, outs))
    results = _results([env[v] for v in body_outputs], names)
    for t, v in zip(results, node.outputs):
        want = types[v]
        if tuple(int(d) for d in t.shape) != want.shape or t.dtype != TVM_DTYPE[want.dtype]:
            raise LoweringError(f"lowered result is {t.dtype}{list(t.shape)}, the graph says {want}")
    used = _used_placeholders(results)
    kept = [(p, a) for p, a in args if p.op.name in used]
    func = te.create_prim_func([p for p, _ in kept] + results)
    anchor = anchors[0] if len(anchors) == 1 else None
    func, desc = schedule_kernel(func, anchor, sched, target)
    if len(anchors) > 1:
        desc = f"{len(anchors)} anchors, {desc}"
    # No global symbol: Relax's BlockBuilder then stores structurally equal kernels (repeated
    # layers) once, and the build names each function after its first user.
    return Kernel(name, func.without_attr("global_symbol"), [a for _, a in kept], desc)


def _results(outs: list[te.Tensor], names: _Names) -> list[te.Tensor]:
    """Each result as its own computed tensor: a PrimFunc output cannot be an input or repeat."""
    fixed: list[te.Tensor] = []
    for t in outs:
        if isinstance(t.op, te.PlaceholderOp) or any(t.same_as(f) for f in fixed):
            t = _copy(t, names("copy"))
        fixed.append(t)
    return fixed


def _copy(src: te.Tensor, name: str) -> te.Tensor:
    return te.compute(src.shape, lambda *i: src[i], name=name)
