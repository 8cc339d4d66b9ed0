"""The op set: every op's numpy reference against ONNX (reference evaluator or onnxruntime) or torch,
type inference with symbolic dims, error messages, and the registry's declarations."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from graphopt.ir.graph import Graph, GraphBuilder
from graphopt.ir.interpreter import run_graph
from graphopt.ir.opdef import FusionKind, all_ops, get_op
from graphopt.ir.ops.special import erf
from graphopt.ir.parser import parse_ir
from graphopt.ir.printer import print_graph, print_graph_with_constants
from graphopt.ir.types import DType, TensorType
from graphopt.ir.verify import verify

RNG = np.random.default_rng(0)
BIG = 2**63 - 1  # what exporters write for "to the end" in Slice

# ------------------------------------------------------------------------------------------------
# Helpers


def rand(*shape: int, dtype: Any = np.float32, lo: float = -2.0, hi: float = 2.0) -> np.ndarray:
    """Uniform random array."""
    return RNG.uniform(lo, hi, size=shape).astype(dtype)


def ints(*shape: int, lo: int = -9, hi: int = 10, dtype: Any = np.int64) -> np.ndarray:
    """Random integers in [lo, hi)."""
    return RNG.integers(lo, hi, size=shape).astype(dtype)


def bools(*shape: int) -> np.ndarray:
    """Random booleans."""
    return RNG.random(shape) < 0.5


def single_node(op: str, inputs: Sequence[np.ndarray | TensorType], attrs: dict[str, Any] | None = None) -> Graph:
    """A graph of one ``op`` node whose operands are graph inputs."""
    b = GraphBuilder(op.replace(".", "_"))
    vals = [b.input(f"x{i}", a if isinstance(a, TensorType) else TensorType.of(a)) for i, a in enumerate(inputs)]
    return b.build(b.op(op, vals, attrs or {}))


def check_round_trip(g: Graph) -> None:
    """The printed text parses back to an equal graph, prints identically, and verifies."""
    verify(g)
    text, consts = print_graph_with_constants(g)
    back = parse_ir(text, consts)
    assert back == g
    assert print_graph(back) == text
    verify(back)


Ref = Callable[[list[np.ndarray]], list[np.ndarray]]


def onnx_ref(op_type: str, consts: Sequence[Any] = (), n_out: int = 1, ort_run: bool = False, **attrs: Any) -> Ref:
    """Expected outputs from a single-node ONNX model; ``consts`` become extra inputs (None: omitted)."""

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        names = [f"in{i}" for i in range(len(inputs))]
        node_inputs, inits = list(names), []
        for j, c in enumerate(consts):
            if c is None:
                node_inputs.append("")
            else:
                inits.append(numpy_helper.from_array(np.asarray(c), f"c{j}"))
                node_inputs.append(f"c{j}")
        outs = [f"out{k}" for k in range(n_out)]
        graph = helper.make_graph(
            [helper.make_node(op_type, node_inputs, outs, **attrs)], "g",
            [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
             for n, a in zip(names, inputs)],
            [helper.make_empty_tensor_value_info(o) for o in outs], initializer=inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
        model.ir_version = 10  # onnxruntime reads IR versions up to 13; onnx 1.23 writes 14
        feeds = dict(zip(names, inputs))
        if ort_run:
            sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            return [np.asarray(o) for o in sess.run(None, feeds)]
        return [np.asarray(o) for o in ReferenceEvaluator(model).run(None, feeds)]

    return run


def torch_ref(fn: Callable[..., torch.Tensor]) -> Ref:
    """Expected output of ``fn`` on the inputs as float64 torch tensors, cast back to the first input's type."""

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        out = fn(*(torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in inputs))
        return [out.numpy().astype(inputs[0].dtype)]

    return run


@dataclass
class Case:
    """One op run on given inputs, compared with an independent reference."""

    id: str
    op: str
    inputs: list[np.ndarray]
    expect: Ref
    attrs: dict[str, Any] = field(default_factory=dict)
    rtol: float = 1e-5
    atol: float = 1e-6


# ------------------------------------------------------------------------------------------------
# Cases

X = rand(2, 3, 4)
POS = rand(2, 3, 4, lo=0.1, hi=3.0)
UNIT = rand(2, 3, 4, lo=-0.9, hi=0.9)

UNARY: list[tuple[str, str, np.ndarray, dict[str, Any]]] = [
    # (op, ONNX op, input, ONNX attributes)
    ("math.neg", "Neg", X, {}),
    ("math.abs", "Abs", X, {}),
    ("math.exp", "Exp", X, {}),
    ("math.log", "Log", POS, {}),
    ("math.sqrt", "Sqrt", POS, {}),
    ("math.reciprocal", "Reciprocal", POS, {}),
    ("math.erf", "Erf", rand(5, 40, lo=-5, hi=5), {}),
    ("math.tanh", "Tanh", X, {}),
    ("math.sin", "Sin", X, {}),
    ("math.cos", "Cos", X, {}),
    ("math.floor", "Floor", X * 3, {}),
    ("math.ceil", "Ceil", X * 3, {}),
    ("math.round", "Round", np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.4, -3.7], np.float32), {}),
    ("math.sign", "Sign", np.array([-2.0, 0.0, 3.0, -0.0], np.float32), {}),
    ("logic.not", "Not", bools(3, 4), {}),
    ("nn.relu", "Relu", X, {}),
    ("nn.sigmoid", "Sigmoid", rand(4, 8, lo=-30, hi=30), {}),
    ("nn.hard_swish", "HardSwish", X * 3, {}),
    ("nn.softplus", "Softplus", rand(4, 8, lo=-30, hi=30), {}),
    ("nn.mish", "Mish", X * 3, {}),
    ("tensor.identity", "Identity", X, {}),
    ("nn.dropout", "Dropout", X, {}),
]

CASES: list[Case] = [Case(f"{op}", op, [x], onnx_ref(onnx_op, **oa)) for op, onnx_op, x, oa in UNARY]
CASES += [
    Case("math.sign-int", "math.sign", [ints(10)], onnx_ref("Sign")),
    Case("math.abs-int", "math.abs", [ints(10)], onnx_ref("Abs")),
    Case("math.rsqrt", "math.rsqrt", [POS], torch_ref(torch.rsqrt)),
    Case("math.clip", "math.clip", [X], onnx_ref("Clip", [np.float32(-0.5), np.float32(1.0)]),
         {"min": -0.5, "max": 1.0}),
    Case("math.clip-max-only", "math.clip", [X], onnx_ref("Clip", [None, np.float32(0.3)]), {"max": 0.3}),
    Case("math.clip-int", "math.clip", [ints(12)], onnx_ref("Clip", [np.int64(-3), np.int64(4)]),
         {"min": -3.0, "max": 4.0}),
    Case("nn.leaky_relu", "nn.leaky_relu", [X], onnx_ref("LeakyRelu", alpha=0.2), {"alpha": 0.2}),
    Case("nn.leaky_relu-default", "nn.leaky_relu", [X], onnx_ref("LeakyRelu", alpha=0.01)),
    Case("nn.elu", "nn.elu", [X], onnx_ref("Elu", alpha=0.7), {"alpha": 0.7}),
    Case("nn.selu", "nn.selu", [X], onnx_ref("Selu")),
    Case("nn.hard_sigmoid", "nn.hard_sigmoid", [X * 4], onnx_ref("HardSigmoid", alpha=0.3, beta=0.4),
         {"alpha": 0.3, "beta": 0.4}),
    Case("nn.gelu", "nn.gelu", [X * 2], torch_ref(F.gelu)),
    Case("nn.gelu-onnx", "nn.gelu", [X * 2], onnx_ref("Gelu")),
    Case("nn.gelu-tanh", "nn.gelu", [X * 2], torch_ref(lambda x: F.gelu(x, approximate="tanh")),
         {"approximate": "tanh"}),
    Case("nn.silu", "nn.silu", [X * 3], torch_ref(F.silu)),
    Case("tensor.cast-f32-i32", "tensor.cast", [X * 3], onnx_ref("Cast", to=onnx.TensorProto.INT32),
         {"to": DType.i32}),
    Case("tensor.cast-i64-f32", "tensor.cast", [ints(6)], onnx_ref("Cast", to=onnx.TensorProto.FLOAT),
         {"to": DType.f32}),
    Case("tensor.cast-f32-bool", "tensor.cast", [np.array([0.0, 1.5, -2.0], np.float32)],
         onnx_ref("Cast", to=onnx.TensorProto.BOOL), {"to": DType.bool}),
    Case("tensor.cast-f32-f16", "tensor.cast", [X], onnx_ref("Cast", to=onnx.TensorProto.FLOAT16), {"to": DType.f16}),
]

# Broadcasting binary ops: same shapes, trailing broadcast, both-sided broadcast.
A, B1, B2 = rand(2, 3, 4), rand(3, 1), rand(1, 4)
IA, IB = ints(2, 3, 4), ints(3, 1, lo=1, hi=7) * np.array([[1], [-1], [1]])
BINARY = [
    ("math.add", "Add"), ("math.sub", "Sub"), ("math.mul", "Mul"), ("math.div", "Div"),
    ("math.max", "Max"), ("math.min", "Min"),
]
for op, onnx_op in BINARY:
    CASES += [
        Case(f"{op}-bcast", op, [A, B1], onnx_ref(onnx_op)),
        Case(f"{op}-two-sided", op, [B1, B2], onnx_ref(onnx_op)),
    ]
CASES += [
    Case("math.div-int-truncates", "math.div", [IA, IB], onnx_ref("Div")),
    Case("math.add-int", "math.add", [IA, IB], onnx_ref("Add")),
    Case("math.pow", "math.pow", [POS, B1], onnx_ref("Pow")),
    Case("math.pow-int-exponent", "math.pow", [X, np.array(3, np.int64)], onnx_ref("Pow")),
    Case("math.mod-int", "math.mod", [IA, IB], onnx_ref("Mod", fmod=0)),
    Case("math.mod-fmod", "math.mod", [A * 5, B1 + 3], onnx_ref("Mod", fmod=1), {"fmod": True}),
    Case("math.mod-fmod-int", "math.mod", [IA, IB], onnx_ref("Mod", fmod=1), {"fmod": True}),
    Case("nn.prelu", "nn.prelu", [rand(2, 3, 4, 4), rand(3, 1, 1)], onnx_ref("PRelu")),
    Case("cmp.equal", "cmp.equal", [ints(3, 4, lo=0, hi=3), ints(4, lo=0, hi=3)], onnx_ref("Equal")),
    Case("cmp.less", "cmp.less", [A, B1], onnx_ref("Less")),
    Case("cmp.less_equal", "cmp.less_equal", [IA, IB], onnx_ref("LessOrEqual")),
    Case("cmp.greater", "cmp.greater", [A, B2], onnx_ref("Greater")),
    Case("cmp.greater_equal", "cmp.greater_equal", [IA, IB], onnx_ref("GreaterOrEqual")),
    Case("logic.and", "logic.and", [bools(2, 3), bools(3)], onnx_ref("And")),
    Case("logic.or", "logic.or", [bools(2, 3), bools(2, 1)], onnx_ref("Or")),
    Case("logic.xor", "logic.xor", [bools(2, 3), bools(2, 3)], onnx_ref("Xor")),
    Case("tensor.where", "tensor.where", [bools(3, 1), rand(2, 3, 4), rand(4)], onnx_ref("Where")),
]



def _lrn_spec(size: int, alpha: float, beta: float, bias: float) -> Ref:
    # The ONNX LRN formula channel by channel (onnxruntime takes odd sizes only, and the reference
    # evaluator's LRN loops over the batch axis instead of the channels).
    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        x = inputs[0].astype(np.float64)
        c_total = x.shape[1]
        out = np.empty_like(x)
        for c in range(c_total):
            lo, hi = max(0, c - (size - 1) // 2), min(c_total - 1, c + math.ceil((size - 1) / 2))
            square_sum = (x[:, lo:hi + 1] ** 2).sum(axis=1)
            out[:, c] = x[:, c] / (bias + alpha / size * square_sum) ** beta
        return [out.astype(inputs[0].dtype)]

    return run


# Normalization and softmax.
NCHW = rand(2, 3, 5, 6)
C3 = [rand(3), rand(3), rand(3), rand(3, lo=0.5, hi=2.0)]
CASES += [
    Case("nn.batch_norm", "nn.batch_norm", [NCHW, *C3], onnx_ref("BatchNormalization", epsilon=1e-3),
         {"epsilon": 1e-3}),
    Case("nn.batch_norm-rank3", "nn.batch_norm", [rand(2, 3, 7), *C3], onnx_ref("BatchNormalization")),
    Case("nn.layer_norm", "nn.layer_norm", [rand(2, 5, 8), rand(8), rand(8)], onnx_ref("LayerNormalization"),
         rtol=1e-4, atol=1e-5),
    Case("nn.layer_norm-axis1-nobias", "nn.layer_norm", [rand(2, 5, 8), rand(5, 8)],
         onnx_ref("LayerNormalization", axis=1, epsilon=1e-3), {"axis": 1, "epsilon": 1e-3}, rtol=1e-4, atol=1e-5),
    Case("nn.layer_norm-neg-axis", "nn.layer_norm", [rand(2, 5, 8), rand(5, 8), rand(8)],
         onnx_ref("LayerNormalization", axis=-2), {"axis": -2}, rtol=1e-4, atol=1e-5),
    Case("nn.lrn", "nn.lrn", [rand(2, 7, 3, 3)], onnx_ref("LRN", size=3, ort_run=True), {"size": 3}),
    Case("nn.lrn-even", "nn.lrn", [rand(1, 6, 2, 2)], _lrn_spec(size=4, alpha=0.01, beta=0.5, bias=2.0),
         {"size": 4, "alpha": 0.01, "beta": 0.5, "bias": 2.0}),
    Case("nn.softmax", "nn.softmax", [X * 10], onnx_ref("Softmax")),
    Case("nn.softmax-axis0", "nn.softmax", [X * 10], onnx_ref("Softmax", axis=0), {"axis": 0}),
    Case("nn.log_softmax", "nn.log_softmax", [X * 10], onnx_ref("LogSoftmax", axis=-2), {"axis": -2}),
]

# Reductions.
R = rand(3, 4, 5, lo=0.5, hi=1.5)
for op, onnx_op in [("reduce.sum", "ReduceSum"), ("reduce.mean", "ReduceMean"), ("reduce.max", "ReduceMax"),
                    ("reduce.min", "ReduceMin"), ("reduce.prod", "ReduceProd")]:
    CASES += [
        Case(f"{op}-axes", op, [R], onnx_ref(onnx_op, [np.array([0, -1])]), {"axes": (0, -1)}),
        Case(f"{op}-nokeep", op, [R], onnx_ref(onnx_op, [np.array([1])], keepdims=0),
             {"axes": (1,), "keepdims": False}),
        Case(f"{op}-all", op, [R], onnx_ref(onnx_op, keepdims=0), {"keepdims": False}),
    ]
TIES = np.array([[1, 3, 3, 0], [2, 2, 1, 2], [0, 0, 0, 5]], np.float32)
for op, onnx_op in [("reduce.argmax", "ArgMax"), ("reduce.argmin", "ArgMin")]:
    CASES += [
        Case(f"{op}", op, [TIES], onnx_ref(onnx_op)),
        Case(f"{op}-last-nokeep", op, [TIES], onnx_ref(onnx_op, axis=-1, keepdims=0, select_last_index=1),
             {"axis": -1, "keepdims": False, "select_last_index": True}),
    ]

# Linear algebra.
CASES += [
    Case("nn.matmul-batched", "nn.matmul", [rand(2, 1, 3, 4), rand(5, 4, 6)], onnx_ref("MatMul"), rtol=1e-4),
    Case("nn.matmul-vec-mat", "nn.matmul", [rand(4), rand(2, 4, 3)], onnx_ref("MatMul"), rtol=1e-4),
    Case("nn.matmul-mat-vec", "nn.matmul", [rand(3, 4), rand(4)], onnx_ref("MatMul"), rtol=1e-4),
    Case("nn.gemm", "nn.gemm", [rand(3, 4), rand(4, 5), rand(5)], onnx_ref("Gemm"), rtol=1e-4),
    Case("nn.gemm-trans", "nn.gemm", [rand(4, 3), rand(5, 4), rand(3, 1)],
         onnx_ref("Gemm", alpha=0.5, beta=2.0, transA=1, transB=1),
         {"alpha": 0.5, "beta": 2.0, "trans_a": True, "trans_b": True}, rtol=1e-4),
    Case("nn.gemm-no-c", "nn.gemm", [rand(3, 4), rand(4, 5)], onnx_ref("Gemm", alpha=2.0), {"alpha": 2.0}, rtol=1e-4),
]

CONV = [
    # (id, x shape, w shape, bias?, attrs)
    ("plain", (1, 3, 8, 8), (4, 3, 3, 3), True, {}),
    ("stride-pad", (2, 3, 9, 7), (5, 3, 3, 3), True, {"strides": (2, 2), "pads": (1, 1, 1, 1)}),
    ("asym-pads", (1, 2, 7, 8), (3, 2, 3, 2), False, {"pads": (0, 2, 1, 0), "strides": (1, 2)}),
    ("dilation", (1, 2, 10, 10), (3, 2, 3, 3), True, {"dilations": (2, 3), "pads": (2, 1, 2, 3)}),
    ("groups", (2, 6, 6, 6), (4, 3, 3, 3), True, {"groups": 2, "pads": (1, 1, 1, 1)}),
    ("depthwise", (1, 8, 7, 7), (8, 1, 3, 3), True, {"groups": 8, "strides": (2, 2), "pads": (1, 1, 1, 1)}),
    ("depthwise-mult", (1, 4, 6, 6), (8, 1, 5, 5), False, {"groups": 4, "pads": (2, 2, 2, 2)}),
    ("pointwise", (2, 16, 5, 5), (8, 16, 1, 1), False, {}),
]
for cid, xs, ws, has_bias, attrs in CONV:
    ins = [rand(*xs), rand(*ws)] + ([rand(ws[0])] if has_bias else [])
    onnx_attrs = {"pads": list(attrs.get("pads", (0, 0, 0, 0))), "strides": list(attrs.get("strides", (1, 1))),
                  "dilations": list(attrs.get("dilations", (1, 1))), "group": attrs.get("groups", 1)}
    CASES.append(Case(f"nn.conv2d-{cid}", "nn.conv2d", ins, onnx_ref("Conv", ort_run=True, **onnx_attrs), attrs,
                      rtol=1e-4, atol=1e-5))


def _torch_conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.conv2d(F.pad(x, (1, 0, 2, 1)), w, b, stride=(2, 1), dilation=(1, 2), groups=2)


CASES.append(Case("nn.conv2d-torch", "nn.conv2d", [rand(1, 4, 9, 9), rand(6, 2, 3, 3), rand(6)],
                  torch_ref(_torch_conv), {"strides": (2, 1), "pads": (2, 1, 1, 0), "dilations": (1, 2), "groups": 2},
                  rtol=1e-4, atol=1e-5))

POOL = [
    # (id, x shape, attrs): kernel, strides, pads, ceil_mode, ...
    ("basic", (1, 2, 6, 6), {"kernel": (2, 2), "strides": (2, 2)}),
    ("pad", (1, 2, 7, 7), {"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1)}),
    ("asym-pad", (2, 1, 6, 7), {"kernel": (3, 2), "strides": (1, 2), "pads": (0, 1, 2, 1)}),
    ("ceil", (1, 2, 7, 8), {"kernel": (3, 3), "strides": (2, 2), "ceil_mode": True}),
    ("ceil-pad", (1, 2, 6, 6), {"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1), "ceil_mode": True}),
    ("ceil-stride3", (1, 1, 9, 10), {"kernel": (2, 2), "strides": (3, 3), "pads": (1, 1, 0, 1), "ceil_mode": True}),
]
for pid, xs, attrs in POOL:
    base = {"kernel_shape": list(attrs["kernel"]), "strides": list(attrs["strides"]),
            "pads": list(attrs.get("pads", (0, 0, 0, 0))), "ceil_mode": int(attrs.get("ceil_mode", False))}
    x = rand(*xs)
    CASES.append(Case(f"nn.max_pool2d-{pid}", "nn.max_pool2d", [x], onnx_ref("MaxPool", ort_run=True, **base), attrs))
    for cip in (False, True):
        CASES.append(Case(f"nn.avg_pool2d-{pid}-cip{int(cip)}", "nn.avg_pool2d", [x],
                          onnx_ref("AveragePool", ort_run=True, count_include_pad=int(cip), **base),
                          {**attrs, "count_include_pad": cip}))
CASES += [
    Case("nn.max_pool2d-dilation", "nn.max_pool2d", [rand(1, 2, 9, 9)],
         onnx_ref("MaxPool", ort_run=True, kernel_shape=[3, 2], dilations=[2, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
         {"kernel": (3, 2), "dilations": (2, 3), "pads": (1, 1, 1, 1)}),
    Case("nn.max_pool2d-int", "nn.max_pool2d", [ints(1, 2, 5, 5, dtype=np.int8)],
         onnx_ref("MaxPool", ort_run=True, kernel_shape=[2, 2], pads=[1, 1, 1, 1]),
         {"kernel": (2, 2), "pads": (1, 1, 1, 1)}),
    Case("nn.global_avg_pool", "nn.global_avg_pool", [NCHW], onnx_ref("GlobalAveragePool")),
    Case("nn.global_max_pool", "nn.global_max_pool", [NCHW], onnx_ref("GlobalMaxPool")),
]


def _avg_pool_torch(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=True)


# torch agrees with ONNX on ceil_mode windows that run past the padding: they are not counted.
CASES.append(Case("nn.avg_pool2d-torch-ceil-cip", "nn.avg_pool2d", [rand(1, 2, 8, 8)], torch_ref(_avg_pool_torch),
                  {"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1), "ceil_mode": True,
                   "count_include_pad": True}))

# Layout and data movement.
S = rand(2, 3, 4, 5)
IDX = np.array([[0, -1], [2, -3]], np.int64)
CASES += [
    Case("tensor.reshape", "tensor.reshape", [S], onnx_ref("Reshape", [np.array([0, -1, 5])]), {"shape": (0, -1, 5)}),
    Case("tensor.reshape-flat", "tensor.reshape", [S], onnx_ref("Reshape", [np.array([-1])]), {"shape": (-1,)}),
    Case("tensor.transpose", "tensor.transpose", [S], onnx_ref("Transpose", perm=[2, 0, 3, 1]), {"perm": (2, 0, 3, 1)}),
    Case("tensor.transpose-reverse", "tensor.transpose", [S], onnx_ref("Transpose")),
    Case("tensor.concat", "tensor.concat", [rand(2, 1, 4), rand(2, 3, 4), rand(2, 2, 4)],
         onnx_ref("Concat", axis=1), {"axis": 1}),
    Case("tensor.concat-neg-axis", "tensor.concat", [ints(2, 3), ints(2, 1)], onnx_ref("Concat", axis=-1),
         {"axis": -1}),
    Case("tensor.split", "tensor.split", [S], onnx_ref("Split", [np.array([1, 3, 0])], n_out=3, axis=2),
         {"axis": 2, "sizes": (1, 3, 0)}),
    Case("tensor.split-neg-axis", "tensor.split", [S], onnx_ref("Split", [np.array([2, 3])], n_out=2, axis=-1),
         {"axis": -1, "sizes": (2, 3)}),
    Case("tensor.slice", "tensor.slice", [S],
         onnx_ref("Slice", [np.array([1, -4]), np.array([BIG, -1]), np.array([1, 3])]),
         {"starts": (1, -4), "ends": (BIG, -1), "axes": (1, 3)}),
    Case("tensor.slice-neg-step", "tensor.slice", [S],
         onnx_ref("Slice", [np.array([-1, 3]), np.array([-BIG, 0]), np.array([-1, 2]), np.array([-2, -1])]),
         {"starts": (-1, 3), "ends": (-BIG, 0), "axes": (-1, 2), "steps": (-2, -1)}),
    Case("tensor.slice-clamp", "tensor.slice", [S],
         onnx_ref("Slice", [np.array([-10, 1]), np.array([10, 100]), None, np.array([2, 3])]),
         {"starts": (-10, 1), "ends": (10, 100), "steps": (2, 3)}),
    Case("tensor.slice-empty", "tensor.slice", [S], onnx_ref("Slice", [np.array([3]), np.array([1]), np.array([0])]),
         {"starts": (3,), "ends": (1,), "axes": (0,)}),
    Case("tensor.gather", "tensor.gather", [S, IDX], onnx_ref("Gather", axis=1), {"axis": 1}),
    Case("tensor.gather-neg-axis", "tensor.gather", [S, np.array(-2, np.int64)], onnx_ref("Gather", axis=-1),
         {"axis": -1}),
    Case("tensor.gather-i32", "tensor.gather", [rand(6, 3), np.array([5, -6, 0], np.int32)], onnx_ref("Gather")),
    Case("tensor.flatten", "tensor.flatten", [S], onnx_ref("Flatten")),
    Case("tensor.flatten-axis", "tensor.flatten", [S], onnx_ref("Flatten", axis=-2), {"axis": -2}),
    Case("tensor.flatten-axis0", "tensor.flatten", [S], onnx_ref("Flatten", axis=0), {"axis": 0}),
    Case("tensor.squeeze", "tensor.squeeze", [rand(1, 3, 1, 2)], onnx_ref("Squeeze", [np.array([-2])]),
         {"axes": (-2,)}),
    Case("tensor.squeeze-all", "tensor.squeeze", [rand(1, 3, 1, 2)], onnx_ref("Squeeze")),
    Case("tensor.unsqueeze", "tensor.unsqueeze", [rand(3, 2)], onnx_ref("Unsqueeze", [np.array([0, -1])]),
         {"axes": (0, -1)}),
    Case("tensor.expand", "tensor.expand", [rand(3, 1)], onnx_ref("Expand", [np.array([2, 1, 4])]),
         {"shape": (2, 1, 4)}),
    Case("tensor.expand-smaller", "tensor.expand", [rand(2, 3, 1)], onnx_ref("Expand", [np.array([3, 5])]),
         {"shape": (3, 5)}),
    Case("tensor.pad", "tensor.pad", [rand(2, 3, 4)], onnx_ref("Pad", [np.array([0, 1, 2, 1, 0, 3]), np.float32(1.5)]),
         {"pads": (0, 1, 2, 1, 0, 3), "value": 1.5}),
    Case("tensor.pad-reflect", "tensor.pad", [rand(2, 3, 4)],
         onnx_ref("Pad", [np.array([0, 2, 3, 0, 1, 2])], mode="reflect"),
         {"pads": (0, 2, 3, 0, 1, 2), "mode": "reflect"}),
    Case("tensor.pad-edge", "tensor.pad", [rand(2, 3, 4)],
         onnx_ref("Pad", [np.array([1, 0, 2, 0, 2, 1])], mode="edge"), {"pads": (1, 0, 2, 0, 2, 1), "mode": "edge"}),
    Case("tensor.pad-negative", "tensor.pad", [rand(3, 5)], onnx_ref("Pad", [np.array([-1, 2, 1, -2])], ort_run=True),
         {"pads": (-1, 2, 1, -2)}),
    Case("tensor.pad-int", "tensor.pad", [ints(2, 2)], onnx_ref("Pad", [np.array([1, 1, 1, 1]), np.int64(7)]),
         {"pads": (1, 1, 1, 1), "value": 7.0}),
    Case("tensor.tile", "tensor.tile", [rand(2, 3)], onnx_ref("Tile", [np.array([2, 3])]), {"repeats": (2, 3)}),
    Case("tensor.trilu", "tensor.trilu", [rand(2, 4, 5)], onnx_ref("Trilu", [np.array(1)]), {"k": 1}),
    Case("tensor.trilu-lower", "tensor.trilu", [rand(4, 5)], onnx_ref("Trilu", [np.array(-1)], upper=0),
         {"upper": False, "k": -1}),
]

# Quantization (ir/ops/quant.py; tests/test_quantize.py covers the passes that use them).


def _rows(ref: Ref) -> Ref:
    """``ref`` (ONNX's per-tensor DynamicQuantizeLinear) applied to each row of the last axis."""

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        x = inputs[0]
        rows = [ref([r]) for r in x.reshape(-1, x.shape[-1])]
        y = np.stack([r[0] for r in rows]).reshape(x.shape)
        return [y] + [np.stack([r[i] for r in rows]).reshape(x.shape[:-1] + (1,)) for i in (1, 2)]

    return run


def _requantize_ref(lo: int, hi: int) -> Ref:
    """q.requantize in Python integers (exact): floor(((acc + bias) * m + 2**(k-1)) / 2**k) + zp, clamped."""

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        acc, m, k, zp, bias = inputs
        out = np.empty(acc.shape, zp.dtype)
        for idx in np.ndindex(acc.shape):
            c = idx[1]
            v = (int(acc[idx]) + int(bias[c])) * int(m[c]) + (1 << (int(k[c]) - 1))
            out[idx] = min(max((v >> int(k[c])) + int(zp), lo), hi)
        return [out]

    return run


def _int8_kernel(conv: bool, **attrs: Any) -> Ref:
    """f32((x - zp) * w accumulated exactly) * (x_scale * w_scale) + bias, computed in float64 by torch."""

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        x, w, xs, xz, ws, *bias = (torch.from_numpy(np.asarray(a, np.float64)) for a in inputs)
        if conv:
            pt, pl, pb, pr = attrs.get("pads", (0, 0, 0, 0))
            acc = F.conv2d(F.pad(x - xz, (pl, pr, pt, pb)), w, stride=attrs.get("strides", (1, 1)))
            scale = (xs * ws).reshape(1, -1, 1, 1).float()
            y = acc.float() * scale + (bias[0].float().reshape(1, -1, 1, 1) if bias else 0)
        else:
            acc = (x - xz) @ w
            y = acc.float() * (xs.float() * ws.float()) + (bias[0].float() if bias else 0)
        return [y.numpy().astype(np.float32)]

    return run


U8 = RNG.integers(0, 256, (2, 3, 8)).astype(np.uint8)
I8 = RNG.integers(-127, 128, (8, 5)).astype(np.int8)
CASES += [
    Case("q.quantize", "q.quantize", [rand(2, 3, 4, lo=-4, hi=4), np.float32(0.03), np.uint8(128)],
         onnx_ref("QuantizeLinear")),
    Case("q.quantize-axis", "q.quantize", [rand(2, 3, 4), np.array([0.01, 0.02, 0.05], np.float32),
                                           np.array([0, -3, 5], np.int8)], onnx_ref("QuantizeLinear", axis=1)),
    Case("q.dequantize", "q.dequantize", [ints(2, 3, 4, lo=-128, hi=128, dtype=np.int8),
                                          np.array([0.01, 0.02, 0.05], np.float32), np.array([0, -3, 5], np.int8)],
         onnx_ref("DequantizeLinear", axis=1)),
    Case("q.dequantize-u8", "q.dequantize", [U8, np.float32(0.1), np.uint8(7)], onnx_ref("DequantizeLinear")),
    Case("q.dynamic_quantize", "q.dynamic_quantize", [rand(3, 7, lo=-1, hi=3)],
         onnx_ref("DynamicQuantizeLinear", n_out=3)),
    Case("q.dynamic_quantize-rows", "q.dynamic_quantize", [rand(2, 3, 7, lo=-1, hi=3)],
         _rows(onnx_ref("DynamicQuantizeLinear", n_out=3)), {"per_row": True}),
    Case("q.matmul_integer", "q.matmul_integer", [U8, I8, np.uint8(100), np.int8(-2)], onnx_ref("MatMulInteger")),
    Case("q.conv_integer", "q.conv_integer", [RNG.integers(0, 256, (1, 2, 6, 6)).astype(np.uint8),
                                              RNG.integers(0, 256, (3, 2, 3, 3)).astype(np.uint8), np.uint8(9)],
         onnx_ref("ConvInteger", pads=[1, 0, 1, 2]), {"pads": (1, 0, 1, 2)}),
    Case("q.matmul_int8", "q.matmul_int8", [U8, I8, np.float32(0.02), np.uint8(120), rand(5, lo=0.001, hi=0.01),
                                            rand(5)], _int8_kernel(False)),
    Case("q.conv2d_int8", "q.conv2d_int8",
         [RNG.integers(0, 256, (1, 4, 7, 7)).astype(np.uint8), RNG.integers(-127, 128, (6, 4, 3, 3)).astype(np.int8),
          np.float32(0.05), np.uint8(3), rand(6, lo=0.001, hi=0.01), rand(6)],
         _int8_kernel(True, pads=(1, 1, 0, 2), strides=(2, 1)), {"pads": (1, 1, 0, 2), "strides": (2, 1)}),
    Case("q.requantize", "q.requantize",
         [RNG.integers(-200_000, 200_000, (2, 3, 4, 5)).astype(np.int32),
          np.array([2**30, 1_500_000_000, 2**31 - 1], np.int32), np.array([40, 41, 38], np.int32), np.uint8(7),
          np.array([-5000, 0, 123], np.int32)], _requantize_ref(7, 250), {"clamp": (7, 250)}),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_reference_matches(case: Case) -> None:
    g = single_node(case.op, case.inputs, case.attrs)
    check_round_trip(g)
    got = run_graph(g, case.inputs)
    want = case.expect(case.inputs)
    assert len(got) == len(want) == len(g.outputs)
    for value, out, ref in zip(g.outputs, got, want):
        # The interpreter's result has exactly the inferred type.
        assert out.dtype == value.type.dtype.numpy and out.shape == value.type.shape
        if out.dtype.kind in "fc":
            np.testing.assert_allclose(out, ref.astype(out.dtype), rtol=case.rtol, atol=case.atol)
        else:
            np.testing.assert_array_equal(out, ref)


def test_every_op_has_a_reference_case() -> None:
    covered = {c.op for c in CASES}
    assert set(all_ops()) - covered == set()


def test_registry_matches_docs() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "ops.md").read_text()
    documented = set(re.findall(r"\b(?:math|nn|tensor|cmp|logic|reduce|q)\.[a-z0-9_]+[a-z0-9]", text))
    assert documented == set(all_ops())


def test_declarations_are_complete() -> None:
    # Every op: a docstring, a fusion kind, and cost counts that are non-negative ints on a sample.
    samples = {c.op: c for c in CASES}
    for name, op in all_ops().items():
        assert op.doc, name
        assert isinstance(op.fusion, FusionKind), name
        case = samples[name]
        ins = [TensorType.of(a) for a in case.inputs]
        attrs = op.normalize_attrs(case.attrs)
        outs = list(op.infer(ins, attrs))
        for count in (op.flops(ins, outs, attrs), op.bytes(ins, outs, attrs)):
            assert isinstance(count, int) and count >= 0, name
        assert op.bytes(ins, outs, attrs) > 0, name


@pytest.mark.parametrize("name, kind", [
    ("math.add", FusionKind.BROADCAST), ("nn.relu", FusionKind.ELEMENTWISE), ("tensor.cast", FusionKind.INJECTIVE),
    ("reduce.sum", FusionKind.REDUCTION), ("nn.softmax", FusionKind.REDUCTION), ("nn.conv2d", FusionKind.OUT_FUSABLE),
    ("nn.max_pool2d", FusionKind.OUT_FUSABLE), ("nn.lrn", FusionKind.OPAQUE), ("tensor.reshape", FusionKind.INJECTIVE),
    ("nn.global_avg_pool", FusionKind.REDUCTION), ("nn.batch_norm", FusionKind.BROADCAST),
])
def test_fusion_kinds(name: str, kind: FusionKind) -> None:
    assert get_op(name).fusion is kind


def test_attribute_defaults_follow_the_docs() -> None:
    defaults = {
        "nn.conv2d": {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "groups": 1},
        "nn.max_pool2d": {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "ceil_mode": False},
        "nn.avg_pool2d": {"strides": (1, 1), "pads": (0, 0, 0, 0), "ceil_mode": False, "count_include_pad": False},
        "nn.gemm": {"alpha": 1.0, "beta": 1.0, "trans_a": False, "trans_b": False},
        "nn.selu": {"alpha": 1.6732632423543772, "gamma": 1.0507009873554805},
        "nn.hard_sigmoid": {"alpha": 0.2, "beta": 0.5},
        "nn.layer_norm": {"axis": -1, "epsilon": 1e-5},
        "nn.lrn": {"alpha": 1e-4, "beta": 0.75, "bias": 1.0},
        "reduce.argmax": {"axis": 0, "keepdims": True, "select_last_index": False},
        "reduce.mean": {"axes": (), "keepdims": True},
        "tensor.pad": {"mode": "constant", "value": 0.0},
        "tensor.slice": {"axes": (), "steps": ()},
        "tensor.trilu": {"upper": True, "k": 0},
        "tensor.flatten": {"axis": 1},
        "nn.gelu": {"approximate": "none"},
    }
    for name, want in defaults.items():
        schema = get_op(name).attr_index
        assert {k: schema[k].default for k in want} == want, name


@pytest.mark.parametrize("name, shapes, attrs, flops", [
    ("nn.conv2d", [(1, 8, 10, 10), (16, 4, 3, 3)], {"groups": 2, "pads": (1, 1, 1, 1)}, 2 * 16 * 10 * 10 * 4 * 9),
    ("nn.matmul", [(2, 3, 4), (4, 5)], {}, 2 * 2 * 3 * 5 * 4),
    ("nn.gemm", [(4, 3), (4, 5)], {"trans_a": True}, 2 * 3 * 5 * 4),
    ("math.add", [(2, 3), (3,)], {}, 6),
    ("nn.max_pool2d", [(1, 2, 4, 4)], {"kernel": (2, 2), "strides": (2, 2)}, 2 * 2 * 2 * 4),
    ("tensor.transpose", [(2, 3)], {}, 0),
])
def test_flop_counts(name: str, shapes: list[tuple[int, ...]], attrs: dict[str, Any], flops: int) -> None:
    op = get_op(name)
    ins = [TensorType(s, DType.f32) for s in shapes]
    a = op.normalize_attrs(attrs)
    assert op.flops(ins, op.infer(ins, a), a) == flops


# ------------------------------------------------------------------------------------------------
# Type inference with symbolic dims


def f32(*shape: int | str) -> TensorType:
    """A float32 tensor type."""
    return TensorType(shape, DType.f32)


@pytest.mark.parametrize("name, ins, attrs, want", [
    ("tensor.reshape", [f32("B", 12, 64)], {"shape": (0, 768)}, [f32("B", 768)]),
    ("tensor.reshape", [f32("B", 12, 64)], {"shape": (-1, 768)}, [f32("B", 768)]),
    ("tensor.reshape", [f32("B", 12, 64)], {"shape": (0, -1)}, [f32("B", 768)]),
    ("tensor.reshape", [f32("B", "S", 768)], {"shape": (0, 0, 12, 64)}, [f32("B", "S", 12, 64)]),
    ("tensor.reshape", [f32("B", "S", 12, 64)], {"shape": (0, 0, -1)}, [f32("B", "S", 768)]),
    ("tensor.reshape", [f32(4, "B", 6)], {"shape": (2, -1, 12)}, [f32(2, "B", 12)]),
    ("tensor.flatten", [f32("B", 64, 7, 7)], {}, [f32("B", 3136)]),
    ("tensor.flatten", [f32("B", 1, 7)], {"axis": -1}, [f32("B", 7)]),
    ("math.add", [f32("B", 1, 4), f32(3, 1)], {}, [f32("B", 3, 4)]),
    ("math.mul", [f32("B", "S", 8), f32(1, "S", 1)], {}, [f32("B", "S", 8)]),
    ("nn.matmul", [f32("B", "S", 768), f32(768, 3072)], {}, [f32("B", "S", 3072)]),
    ("nn.gemm", [f32("B", 512), f32(1000, 512), f32(1000)], {"trans_b": True}, [f32("B", 1000)]),
    ("nn.conv2d", [f32("N", 3, 224, 224), f32(64, 3, 7, 7)], {"strides": (2, 2), "pads": (3, 3, 3, 3)},
     [f32("N", 64, 112, 112)]),
    ("nn.max_pool2d", [f32("N", 64, 112, 112)], {"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1)},
     [f32("N", 64, 56, 56)]),
    ("nn.global_avg_pool", [f32("N", 2048, 7, 7)], {}, [f32("N", 2048, 1, 1)]),
    ("reduce.mean", [f32("B", "S", 8)], {"axes": (-1,)}, [f32("B", "S", 1)]),
    ("reduce.sum", [f32("B", "S", 8)], {"axes": (1,), "keepdims": False}, [f32("B", 8)]),
    ("reduce.argmax", [f32("B", 10)], {"axis": 1, "keepdims": False}, [TensorType(("B",), DType.i64)]),
    ("tensor.slice", [f32("B", 10)], {"starts": (0, 2), "ends": (BIG, -1)}, [f32("B", 7)]),
    ("tensor.slice", [f32("B", 10)], {"starts": (-1,), "ends": (-BIG,), "steps": (-1,)}, [f32("B", 10)]),
    ("tensor.concat", [f32("B", 2), f32("B", 3)], {"axis": 1}, [f32("B", 5)]),
    ("tensor.concat", [f32("B", "S", 2), f32("B", "S", 3), f32("B", "S", 1)], {"axis": -1}, [f32("B", "S", 6)]),
    ("tensor.gather", [f32(1000, 64), TensorType(("B", "S"), DType.i64)], {}, [f32("B", "S", 64)]),
    ("tensor.transpose", [f32("B", "S", 12, 64)], {"perm": (0, 2, 1, 3)}, [f32("B", 12, "S", 64)]),
    ("tensor.unsqueeze", [f32("B", 8)], {"axes": (1, -1)}, [f32("B", 1, 8, 1)]),
    ("tensor.squeeze", [f32("B", 1, 8)], {}, [f32("B", 8)]),
    ("tensor.expand", [f32("B", 1, 8)], {"shape": (1, 4, 1)}, [f32("B", 4, 8)]),
    ("tensor.split", [f32("B", 10)], {"axis": 1, "sizes": (3, 7)}, [f32("B", 3), f32("B", 7)]),
    ("tensor.pad", [f32("B", 3, 4)], {"pads": (0, 1, 2, 0, 1, 2)}, [f32("B", 5, 8)]),
    ("tensor.tile", [f32("B", 3)], {"repeats": (1, 2)}, [f32("B", 6)]),
    ("nn.layer_norm", [f32("B", "S", 8), f32(8)], {}, [f32("B", "S", 8)]),
    ("nn.batch_norm", [f32("N", 3, 4, 4)] + [f32(3)] * 4, {}, [f32("N", 3, 4, 4)]),
    ("tensor.where", [TensorType(("B", 1), DType.bool), f32(1, 4), f32("B", 4)], {}, [f32("B", 4)]),
])
def test_symbolic_inference(name: str, ins: list[TensorType], attrs: dict[str, Any], want: list[TensorType]) -> None:
    g = single_node(name, ins, attrs)
    assert [v.type for v in g.outputs] == want
    check_round_trip(g)


def test_symbolic_graph_runs() -> None:
    # A graph typed with B runs for a concrete B, and every result has the shape B binds to.
    b = GraphBuilder("sym")
    x = b.input("x", f32("B", 12, 64))
    w = b.const(rand(768, 10), "w")
    h = b.op1("tensor.reshape", x, shape=(0, -1))
    y = b.op1("nn.softmax", b.op1("nn.matmul", h, w))
    g = b.build([y])
    check_round_trip(g)
    (out,) = run_graph(g, [rand(3, 12, 64)])
    assert out.shape == (3, 10) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("name, ins, attrs, match", [
    ("math.add", [f32(2, 3), f32(4)], {}, "do not broadcast"),
    ("math.add", [f32(2), TensorType((2,), DType.i32)], {}, "dtypes differ"),
    ("math.sqrt", [TensorType((2,), DType.i64)], {}, "must be float"),
    ("logic.and", [f32(2), f32(2)], {}, "must be bool"),
    ("tensor.where", [f32(2), f32(2), f32(2)], {}, "condition must be bool"),
    ("nn.gelu", [f32(2)], {"approximate": "fast"}, "approximate"),
    ("math.clip", [f32(2)], {"min": 2.0, "max": 1.0}, "greater than max"),
    ("nn.matmul", [f32(2, 3), f32(4, 5)], {}, "inner dimensions differ"),
    ("nn.gemm", [f32(2, 3), f32(3, 5), f32(4)], {}, "does not broadcast"),
    ("nn.conv2d", [f32(1, 3, 8, 8), f32(4, 2, 3, 3)], {}, "input channels"),
    ("nn.conv2d", [f32(1, 4, 8, 8), f32(6, 2, 3, 3)], {"groups": 4}, "must divide"),
    ("nn.conv2d", [f32(1, 3, 2, 2), f32(4, 3, 3, 3)], {}, "does not fit"),
    ("nn.conv2d", [f32(1, 3, "H", 8), f32(4, 3, 3, 3)], {}, "static dims"),
    ("nn.conv2d", [f32(1, 3, 8, 8), f32(4, 3, 3, 3), f32(5)], {}, "bias"),
    ("nn.conv2d", [f32(1, 3, 8, 8), f32(4, 3, 3, 3)], {"pads": (1, 1)}, "pads must be 4"),
    ("nn.max_pool2d", [f32(1, 3, 2, 2)], {"kernel": (3, 3)}, "does not fit"),
    ("nn.max_pool2d", [f32(1, 3, 8, 8)], {"kernel": (2, 2), "pads": (2, 0, 0, 0)}, "smaller than the kernel"),
    ("nn.avg_pool2d", [f32(3, 8, 8)], {"kernel": (2, 2)}, "N,C,H,W"),
    ("nn.batch_norm", [f32(1, 3, 4, 4), f32(3), f32(3), f32(4), f32(3)], {}, "mean must be"),
    ("nn.layer_norm", [f32(2, 5, 8), f32(5)], {}, "must broadcast to the normalized dims"),
    ("nn.softmax", [f32(2, 3)], {"axis": 2}, "out of range"),
    ("reduce.sum", [f32(2, 3)], {"axes": (0, -2)}, "repeat"),
    ("tensor.reshape", [f32(2, 3)], {"shape": (4, 2)}, "elements"),
    ("tensor.reshape", [f32(2, 3)], {"shape": (-1, -1)}, "more than one -1"),
    ("tensor.reshape", [f32(2, 3)], {"shape": (4, -1)}, "cannot infer -1"),
    ("tensor.reshape", [f32("B", "S", 768)], {"shape": (-1, 64)}, "not a single dim"),
    ("tensor.reshape", [f32("B", 4)], {"shape": (4, 0)}, "elements"),
    ("tensor.flatten", [f32("B", "S", 8)], {"axis": 2}, "not a single dim"),
    ("tensor.transpose", [f32(2, 3)], {"perm": (0, 0)}, "not a permutation"),
    ("tensor.concat", [f32(2, 3), f32(3, 3)], {"axis": 1}, "dim 0 differs"),
    ("tensor.concat", [f32("B", 3), f32(2, 3)], {"axis": 0}, "not a single dim"),
    ("tensor.split", [f32(2, 6)], {"axis": 1, "sizes": (2, 3)}, "add up to 5"),
    ("tensor.slice", [f32(4)], {"starts": (0,), "ends": (2,), "steps": (0,)}, "must not be 0"),
    ("tensor.slice", [f32("B", 4)], {"starts": (0,), "ends": (2,)}, "no known size"),
    ("tensor.slice", [f32(4, 4)], {"starts": (0, 1), "ends": (2,)}, "differ in length"),
    ("tensor.gather", [f32(4, 3), f32(2)], {}, "indices must be int"),
    ("tensor.squeeze", [f32(2, 3)], {"axes": (0,)}, "not 1"),
    ("tensor.expand", [f32(2, 3)], {"shape": (4, 3)}, "does not broadcast"),
    ("tensor.pad", [f32(2, 3)], {"pads": (1, 1)}, "must have 4 entries"),
    ("tensor.pad", [f32(2, 3)], {"pads": (0, 3, 0, 0), "mode": "reflect"}, "smaller than 3"),
    ("tensor.pad", [f32(2, 3)], {"pads": (0, 0, 0, 0), "mode": "wrap"}, "mode must be"),
    ("tensor.tile", [f32(2, 3)], {"repeats": (2,)}, "must be 2"),
    ("tensor.trilu", [f32(3)], {}, "rank >= 2"),
])
def test_bad_operands_raise(name: str, ins: list[TensorType], attrs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        single_node(name, ins, attrs)


def test_error_names_the_shapes() -> None:
    with pytest.raises(ValueError) as e:
        single_node("nn.matmul", [f32("B", 3), f32(4, 5)])
    assert "f32[B,3]" in str(e.value) and "f32[4,5]" in str(e.value)


# ------------------------------------------------------------------------------------------------
# Numerics beyond single ops


def test_erf_matches_math_erf() -> None:
    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, -0.0, 1e-30, 0.46875, 4.0, np.inf, -np.inf]])
    want = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(erf(x), want, rtol=1e-15, atol=1e-300)
    assert np.isnan(erf(np.array([np.nan])))[0]


@pytest.mark.parametrize("dtype", [np.float16, DType.bf16.numpy, np.float64], ids=["f16", "bf16", "f64"])
def test_other_float_types_keep_their_type(dtype: np.dtype) -> None:
    # Every float case again in another float type: results keep that type and stay close to the
    # float32 results on the same (rounded) inputs.
    for case in CASES:
        if not any(a.dtype == np.float32 for a in case.inputs):
            continue
        ins = [a.astype(dtype) if a.dtype == np.float32 else a for a in case.inputs]
        g = single_node(case.op, ins, case.attrs)
        check_round_trip(g)
        ref_ins = [a.astype(np.float32) if a.dtype == dtype else a for a in ins]
        want = run_graph(single_node(case.op, ref_ins, case.attrs), ref_ins)
        for value, out, ref in zip(g.outputs, run_graph(g, ins), want):
            assert out.dtype == value.type.dtype.numpy, case.id
            np.testing.assert_allclose(out.astype(np.float32), ref.astype(np.float32), rtol=3e-2, atol=3e-2,
                                       err_msg=case.id)


def test_half_conv_against_torch() -> None:
    x = rand(1, 2, 5, 5, dtype=np.float16)
    w = rand(3, 2, 3, 3, dtype=np.float16)
    g = single_node("nn.conv2d", [x, w], {"pads": (1, 1, 1, 1)})
    check_round_trip(g)
    (out,) = run_graph(g, [x, w])
    assert out.dtype == np.float16
    want = F.conv2d(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(w.astype(np.float32)), padding=1)
    np.testing.assert_allclose(out.astype(np.float32), want.numpy(), rtol=1e-2, atol=1e-2)


def test_conv_on_a_resnet_sized_input_is_vectorized() -> None:
    # The stem of ResNet-50 at batch 1: one im2col matmul, far from a Python loop per pixel.
    x, w = rand(1, 3, 224, 224), rand(64, 3, 7, 7)
    g = single_node("nn.conv2d", [x, w], {"strides": (2, 2), "pads": (3, 3, 3, 3)})
    check_round_trip(g)
    (out,) = run_graph(g, [x, w])
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=2, padding=3).numpy()
    np.testing.assert_allclose(out, want, rtol=1e-3, atol=1e-3)
