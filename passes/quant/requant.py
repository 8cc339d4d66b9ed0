"""Integer-only requantization (HAWQ-V3): an integer kernel whose f32 result is only requantized
by the next layer becomes an int32 kernel and a ``q.requantize`` with a dyadic multiplier.

    q.quantize([nn.relu](q.conv2d_int8(xq, wq, s, z, ws, b)), sy, zy)
        -> q.requantize(q.conv_integer(xq, wq, z), M, k, zy, round(b / (s * ws))) {axis=1, clamp}
    q.quantize([nn.relu](q.matmul_int8(aq, wq, s, z, ws, b)), sy, zy)
        -> q.requantize(q.matmul_integer(aq, wq, z), M, k, zy, round(b / (s * ws))) {axis=-1, clamp}

``M * 2**-k`` approximates ``s * ws / sy`` per output channel (``dyadic``: M in [2**30, 2**31),
relative error <= 2**-31); a ReLU becomes the clamp's lower end (the zero point). Only static
scales (constants) fold, and only when the f32 values in between have no other reader: a value
the graph also needs in f32 (a residual, a graph output) keeps the f32 epilogue. Unlike
``fold_qdq`` this changes the numbers: the bias is rounded to the accumulator's grid and the
result rounds ties toward +inf instead of to even.
"""

from __future__ import annotations

import numpy as np

from ...ir.graph import Graph, Node, Value
from ...ir.ops.quant import dyadic, qrange
from ...ir.types import DType
from .emit import Emitter
from .fold import FoldNote

KERNELS = {"q.conv2d_int8": ("q.conv_integer", 1), "q.matmul_int8": ("q.matmul_integer", -1)}
_I32 = (-(2**31), 2**31 - 1)


def requantize_fixed(graph: Graph) -> tuple[Graph, list[FoldNote]]:
    """``graph`` with every static requantization of an integer kernel done in integers."""
    producers = graph.producers()
    users = graph.users()
    consts = graph.constants()
    outputs = set(graph.outputs)
    e = Emitter(graph)
    notes: list[FoldNote] = []
    for node in graph.nodes:
        found = _match(node, producers, users, outputs, consts)
        if isinstance(found, str):
            if found:
                notes.append(FoldNote(f"q.quantize %{node.outputs[0].name or '?'}", False, found))
            e.keep(node)
            continue
        kernel, relu = found
        _emit(e, node, kernel, relu, consts)
        notes.append(FoldNote(f"{kernel.op} -> q.quantize", True, "integer-only requantization"))
    return e.finish(), notes


def _single_reader(v: Value, users: dict[Value, list[Node]], outputs: set[Value]) -> bool:
    return v not in outputs and len(users.get(v, [])) == 1


def _match(node: Node, producers: dict[Value, Node], users: dict[Value, list[Node]], outputs: set[Value],
           consts: dict[Value, np.ndarray]) -> tuple[Node, Node | None] | str:
    """``(kernel, relu or None)`` feeding the ``q.quantize`` ``node``, or why not ("" for no kernel)."""
    if node.op != "q.quantize":
        return ""
    src = producers.get(node.inputs[0])
    relu = None
    if src is not None and src.op == "nn.relu" and _single_reader(src.outputs[0], users, outputs):
        relu, src = src, producers.get(src.inputs[0])
    if src is None or src.op not in KERNELS:
        return ""
    if not _single_reader(src.outputs[0], users, outputs):
        return "the kernel's f32 result has other readers"
    scale, zp = node.inputs[1], node.inputs[2]
    if scale not in consts or zp not in consts or consts[scale].size != 1:
        return "the requantization scale is not one constant"
    a_scale, w_scale = src.inputs[2], src.inputs[4]
    if a_scale not in consts or consts[a_scale].size != 1 or w_scale not in consts:
        return "the kernel's activation scale is computed at run time (dynamic quantization)"
    if len(src.inputs) == 6 and src.inputs[5] not in consts:
        return "the kernel's bias is computed at run time"
    return src, relu


def _emit(e: Emitter, quant: Node, kernel: Node, relu: Node | None, consts: dict[Value, np.ndarray]) -> None:
    op, axis = KERNELS[kernel.op]
    xq, wq, a_scale, a_zp, w_scale = kernel.inputs[:5]
    acc_scale = np.float64(consts[a_scale].reshape(())) * consts[w_scale].astype(np.float64).reshape(-1)
    y_scale = np.float64(consts[quant.inputs[1]].reshape(()))
    mult, shift = dyadic(acc_scale / y_scale)
    zp_value = consts[quant.inputs[2]]
    hint = wq.name
    (acc,) = e.op(op, [xq, wq, a_zp], kernel.attrs if op == "q.conv_integer" else {})
    args = [acc, e.const(mult, hint and hint + "_mult"), e.const(shift, hint and hint + "_shift"), quant.inputs[2]]
    if len(kernel.inputs) == 6:
        bias = consts[kernel.inputs[5]].astype(np.float64) / np.where(acc_scale > 0, acc_scale, 1)
        args.append(e.const(np.clip(np.rint(bias), *_I32).astype(np.int32), hint and hint + "_bias"))
    clamp: tuple[int, ...] = ()
    if relu is not None:
        lo, hi = qrange(DType.from_numpy(zp_value.dtype))
        clamp = (max(lo, int(zp_value.reshape(()))), hi)
        clamp = () if clamp == (lo, hi) else clamp  # a zero point at the bottom: ReLU clamps nothing more
    e.op("q.requantize", args, {"axis": axis, "clamp": clamp}, outputs=quant.outputs,
         annotations=quant.annotations)
