"""IR -> ONNX export (opset 18, IR version 10, so onnxruntime 1.31 loads it).

Each IR op maps back to its ONNX op (``nn.gemm`` -> Gemm, ``nn.conv2d`` -> Conv, ...); the few IR
ops without an opset-18 counterpart (``nn.gelu``, ``nn.silu``, ``math.rsqrt``) are written as short
ONNX expressions. Constants become initializers, symbolic dims become ``dim_param``, and ``fused``
nodes are inlined (their bodies exported in place).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..ir.graph import CONST, FUSED, Graph, Node, Value
from ..ir.types import DType, TensorType
from .errors import FrontendError
from .onnx_types import onnx_elem_type

EXPORT_OPSET = 18
ONNX_IR_VERSION = 10
"""onnx 1.23 writes IR version 14 by default; onnxruntime 1.31 reads at most 13."""


def export_onnx(graph: Graph, path: str | Path | None = None) -> onnx.ModelProto:
    """``graph`` as an ONNX ModelProto (opset 18); also written to ``path`` when given."""
    model = _Exporter(graph).run()
    if path is not None:
        onnx.save(model, str(path))
    return model


def exportable_ops() -> frozenset[str]:
    """The IR ops ``export_onnx`` can write (besides ``const`` and ``fused``)."""
    return frozenset(_EMITTERS)


def _value_info(name: str, t: TensorType) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, onnx_elem_type(t.dtype), list(t.shape))


class _Exporter:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.names: dict[Value, str] = {}
        self.taken: set[str] = set()
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counter = 0

    def run(self) -> onnx.ModelProto:
        g = self.graph
        for v in g.inputs:
            self.name_of(v)
        # Named values keep their names; only then may temporaries take what is left.
        for node in g.walk():
            for v in node.outputs:
                if v.name is not None:
                    self.name_of(v)
        self._claim_output_names()
        self.block(g, {})
        outputs = self._outputs()
        onnx_graph = helper.make_graph(
            self.nodes, g.name, [_value_info(self.names[v], v.type) for v in g.inputs], outputs, self.initializers,
        )
        model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", EXPORT_OPSET)],
                                  producer_name="graphopt")
        model.ir_version = ONNX_IR_VERSION
        return model

    # -- names -------------------------------------------------------------------------------------

    def fresh(self, base: str = "t") -> str:
        """A tensor name not used yet."""
        name = base
        while name in self.taken:
            self._counter += 1
            name = f"{base}_{self._counter}"
        self.taken.add(name)
        return name

    def name_of(self, v: Value) -> str:
        """The ONNX tensor name of IR value ``v``."""
        if v not in self.names:
            self.names[v] = self.fresh(v.name or "t")
        return self.names[v]

    def _claim_output_names(self) -> None:
        # Unnamed results the graph returns get readable names before any temporary takes them.
        for i, v in enumerate(self.graph.outputs):
            if v not in self.names and v.name is None:
                self.names[v] = self.fresh(f"output_{i}")

    def _outputs(self) -> list[onnx.ValueInfoProto]:
        inputs = set(self.graph.inputs)
        consts = set(self.graph.constants())
        seen: set[str] = set()
        out = []
        for v in self.graph.outputs:
            name = self.names[v]
            # ONNX output names are unique and should be produced by a node: copy inputs, constants
            # and values returned twice through an Identity.
            if v in inputs or v in consts or name in seen:
                copy = self.fresh(f"{name}_out")
                self.emit("Identity", [name], [copy])
                name = copy
            seen.add(name)
            out.append(_value_info(name, v.type))
        return out

    # -- emission ----------------------------------------------------------------------------------

    def emit(self, op_type: str, inputs: list[str], outputs: list[str], **attrs: Any) -> None:
        """Append one ONNX node."""
        self.nodes.append(helper.make_node(op_type, inputs, outputs, **attrs))

    def initializer(self, array: np.ndarray, base: str = "c") -> str:
        """Add ``array`` as an initializer and return its name."""
        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def ints(self, values: Any, base: str) -> str:
        """An int64 vector initializer (the shape / axes operands of opset-18 ops)."""
        return self.initializer(np.array(list(values), dtype=np.int64), base)

    def scalar(self, value: float, dtype: DType, base: str = "c") -> str:
        """A scalar initializer of ``dtype``."""
        return self.initializer(np.array(value, dtype=dtype.numpy), base)

    def block(self, g: Graph, outer: dict[Value, str]) -> None:
        """Emit the nodes of ``g`` (a fused body's inputs are named through ``outer``)."""
        for inner, name in outer.items():
            self.names[inner] = name
        for node in g.nodes:
            if node.op == CONST:
                name = self.name_of(node.output)
                self.initializers.append(numpy_helper.from_array(np.asarray(node.value), name))
            elif node.op == FUSED:
                self.fused(node)
            else:
                emitter = _EMITTERS.get(node.op)
                if emitter is None:
                    raise FrontendError(f"IR op {node.op} has no ONNX mapping", op_type=node.op)
                emitter(self, node, [self.name_of(v) for v in node.inputs], [self.name_of(v) for v in node.outputs])


    def fused(self, node: Node) -> None:
        """Inline a fused node: its body's nodes, writing straight into the node's result names."""
        body = node.body
        assert body is not None
        outer = {i: self.name_of(o) for i, o in zip(body.inputs, node.inputs)}
        copies, renamed = [], set()
        for inner, result in zip(body.outputs, node.outputs):
            if inner in outer or inner in renamed:
                copies.append((inner, result))  # a body input or a value yielded twice
            else:
                self.names[inner] = self.name_of(result)
                renamed.add(inner)
        self.block(body, outer)
        for inner, result in copies:
            self.emit("Identity", [self.names[inner]], [self.name_of(result)])


Emitter = Callable[[_Exporter, Node, list[str], list[str]], None]
_EMITTERS: dict[str, Emitter] = {}


def _emits(*ops: str) -> Callable[[Emitter], Emitter]:
    def deco(fn: Emitter) -> Emitter:
        for op in ops:
            _EMITTERS[op] = fn
        return fn

    return deco


def _direct(ir_op: str, op_type: str, **attr_map: str) -> None:
    """An IR op written as one ONNX op; ``attr_map`` maps ONNX attribute names to IR ones."""

    def emit(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
        attrs = {k: _onnx_attr(node.attrs[v]) for k, v in attr_map.items() if v in node.attrs}
        e.emit(op_type, ins, outs, **attrs)

    _EMITTERS[ir_op] = emit


def _onnx_attr(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, tuple):
        return list(v)
    return v


for _ir, _onnx in {
    "math.neg": "Neg", "math.abs": "Abs", "math.exp": "Exp", "math.log": "Log", "math.sqrt": "Sqrt",
    "math.reciprocal": "Reciprocal", "math.erf": "Erf", "math.tanh": "Tanh", "math.sin": "Sin", "math.cos": "Cos",
    "math.floor": "Floor", "math.ceil": "Ceil", "math.round": "Round", "math.sign": "Sign", "logic.not": "Not",
    "nn.relu": "Relu", "nn.sigmoid": "Sigmoid", "nn.hard_swish": "HardSwish", "nn.softplus": "Softplus",
    "nn.mish": "Mish", "tensor.identity": "Identity", "nn.dropout": "Identity",
    "math.add": "Add", "math.sub": "Sub", "math.mul": "Mul", "math.div": "Div", "math.pow": "Pow",
    "math.max": "Max", "math.min": "Min", "nn.prelu": "PRelu", "cmp.equal": "Equal", "cmp.less": "Less",
    "cmp.less_equal": "LessOrEqual", "cmp.greater": "Greater", "cmp.greater_equal": "GreaterOrEqual",
    "logic.and": "And", "logic.or": "Or", "logic.xor": "Xor", "tensor.where": "Where", "nn.matmul": "MatMul",
    "nn.global_avg_pool": "GlobalAveragePool", "nn.global_max_pool": "GlobalMaxPool",
}.items():
    _direct(_ir, _onnx)

_direct("nn.leaky_relu", "LeakyRelu", alpha="alpha")
_direct("nn.elu", "Elu", alpha="alpha")
_direct("nn.selu", "Selu", alpha="alpha", gamma="gamma")
_direct("nn.hard_sigmoid", "HardSigmoid", alpha="alpha", beta="beta")
_direct("nn.lrn", "LRN", size="size", alpha="alpha", beta="beta", bias="bias")
_direct("nn.softmax", "Softmax", axis="axis")
_direct("nn.log_softmax", "LogSoftmax", axis="axis")
_direct("math.mod", "Mod", fmod="fmod")
_direct("nn.batch_norm", "BatchNormalization", epsilon="epsilon")
_direct("nn.layer_norm", "LayerNormalization", axis="axis", epsilon="epsilon")
_direct("nn.gemm", "Gemm", alpha="alpha", beta="beta", transA="trans_a", transB="trans_b")
_direct("tensor.concat", "Concat", axis="axis")
_direct("tensor.gather", "Gather", axis="axis")
_direct("tensor.flatten", "Flatten", axis="axis")
_direct("reduce.argmax", "ArgMax", axis="axis", keepdims="keepdims", select_last_index="select_last_index")
_direct("reduce.argmin", "ArgMin", axis="axis", keepdims="keepdims", select_last_index="select_last_index")


@_emits("tensor.cast")
def _cast(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    e.emit("Cast", ins, outs, to=onnx_elem_type(node.attrs["to"]))


@_emits("math.rsqrt")
def _rsqrt(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    root = e.fresh()
    e.emit("Sqrt", ins, [root])
    e.emit("Reciprocal", [root], outs)


@_emits("nn.silu")
def _silu(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    sig = e.fresh()
    e.emit("Sigmoid", ins, [sig])
    e.emit("Mul", [ins[0], sig], outs)


@_emits("nn.gelu")
def _gelu(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    # Gelu is an ONNX op only from opset 20: write 0.5 * x * (1 + erf(x / sqrt 2)) or the tanh form.
    x, dt = ins[0], node.inputs[0].type.dtype
    inner = e.fresh()
    if node.attrs.get("approximate", "none") == "tanh":
        x2, x3, cx3, total, arg = (e.fresh() for _ in range(5))
        e.emit("Mul", [x, x], [x2])
        e.emit("Mul", [x2, x], [x3])
        e.emit("Mul", [x3, e.scalar(0.044715, dt)], [cx3])
        e.emit("Add", [x, cx3], [total])
        e.emit("Mul", [total, e.scalar(math.sqrt(2.0 / math.pi), dt)], [arg])
        e.emit("Tanh", [arg], [inner])
    else:
        scaled = e.fresh()
        e.emit("Mul", [x, e.scalar(1.0 / math.sqrt(2.0), dt)], [scaled])
        e.emit("Erf", [scaled], [inner])
    one_plus, half_x = e.fresh(), e.fresh()
    e.emit("Add", [inner, e.scalar(1.0, dt)], [one_plus])
    e.emit("Mul", [x, e.scalar(0.5, dt)], [half_x])
    e.emit("Mul", [half_x, one_plus], outs)


@_emits("math.clip")
def _clip(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    dt = node.inputs[0].type.dtype
    bounds = [e.scalar(node.attrs[k], dt) if node.attrs.get(k) is not None else "" for k in ("min", "max")]
    while bounds and not bounds[-1]:
        bounds.pop()
    e.emit("Clip", ins + bounds, outs)


_REDUCE = {"reduce.sum": "ReduceSum", "reduce.mean": "ReduceMean", "reduce.max": "ReduceMax",
           "reduce.min": "ReduceMin", "reduce.prod": "ReduceProd"}


@_emits(*_REDUCE)
def _reduce(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    axes = node.attrs.get("axes", ())
    extra = [e.ints(axes, "axes")] if axes else []
    e.emit(_REDUCE[node.op], ins + extra, outs, keepdims=int(node.attrs.get("keepdims", True)))


@_emits("nn.conv2d")
def _conv(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    a = node.attrs
    e.emit("Conv", ins, outs, kernel_shape=list(node.inputs[1].type.shape[2:]), strides=list(a["strides"]),
           pads=list(a["pads"]), dilations=list(a["dilations"]), group=a["groups"])


@_emits("nn.max_pool2d", "nn.avg_pool2d")
def _pool(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    a = node.attrs
    common = {"kernel_shape": list(a["kernel"]), "strides": list(a["strides"]), "pads": list(a["pads"]),
                  "ceil_mode": int(a["ceil_mode"])}
    if node.op == "nn.max_pool2d":
        e.emit("MaxPool", ins, outs, dilations=list(a["dilations"]), **common)
    else:
        e.emit("AveragePool", ins, outs, count_include_pad=int(a["count_include_pad"]), **common)


@_emits("tensor.reshape")
def _reshape(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    e.emit("Reshape", ins + [e.ints(node.attrs["shape"], "shape")], outs)


@_emits("tensor.expand")
def _expand(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    e.emit("Expand", ins + [e.ints(node.attrs["shape"], "shape")], outs)


@_emits("tensor.tile")
def _tile(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    e.emit("Tile", ins + [e.ints(node.attrs["repeats"], "repeats")], outs)


@_emits("tensor.transpose")
def _transpose(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    perm = node.attrs.get("perm", ())
    e.emit("Transpose", ins, outs, **({"perm": list(perm)} if perm else {}))


@_emits("tensor.split")
def _split(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    e.emit("Split", ins + [e.ints(node.attrs["sizes"], "split")], outs, axis=node.attrs["axis"])


@_emits("tensor.slice")
def _slice(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    a = node.attrs
    operands = ins + [e.ints(a["starts"], "starts"), e.ints(a["ends"], "ends")]
    axes, steps = a.get("axes", ()), a.get("steps", ())
    if axes or steps:
        operands.append(e.ints(axes or range(len(a["starts"])), "axes"))
    if steps:
        operands.append(e.ints(steps, "steps"))
    e.emit("Slice", operands, outs)


@_emits("tensor.squeeze", "tensor.unsqueeze")
def _squeeze(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    axes = node.attrs.get("axes", ())
    extra = [e.ints(axes, "axes")] if axes or node.op == "tensor.unsqueeze" else []
    e.emit("Squeeze" if node.op == "tensor.squeeze" else "Unsqueeze", ins + extra, outs)


@_emits("tensor.pad")
def _pad(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    a = node.attrs
    value = e.scalar(a.get("value", 0.0), node.inputs[0].type.dtype, "pad_value")
    e.emit("Pad", ins + [e.ints(a["pads"], "pads"), value], outs, mode=a.get("mode", "constant"))


@_emits("tensor.trilu")
def _trilu(e: _Exporter, node: Node, ins: list[str], outs: list[str]) -> None:
    k = e.initializer(np.array(node.attrs.get("k", 0), dtype=np.int64), "k")
    e.emit("Trilu", ins + [k], outs, upper=int(node.attrs.get("upper", True)))
from . import onnx_quant  # noqa: E402, F401 - registers the q.* exporters (frontends/onnx_quant.py)
