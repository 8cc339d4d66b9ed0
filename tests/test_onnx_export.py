"""ONNX export: every IR op written back and run in onnxruntime, fused bodies inlined, symbolic dims,
odd outputs, and import -> export round trips of torch-exported models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from graphopt.frontends.errors import FrontendError
from graphopt.frontends.onnx import export_onnx, import_onnx
from graphopt.frontends.onnx_export import EXPORT_OPSET, exportable_ops
from graphopt.ir.graph import Graph, GraphBuilder, Node, Value
from graphopt.ir.interpreter import run_graph
from graphopt.ir.opdef import all_ops
from graphopt.ir.parser import parse_ir
from graphopt.ir.printer import print_graph_with_constants
from graphopt.ir.types import DType, TensorType
from graphopt.ir.verify import verify

RNG = np.random.default_rng(1)


def checked(g: Graph) -> Graph:
    """``g`` after verifying it and checking its IR text round trip."""
    verify(g)
    text, consts = print_graph_with_constants(g)
    assert parse_ir(text, consts) == g
    return g


def ort_run(model: onnx.ModelProto, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run an exported model in onnxruntime, inputs in graph order."""
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), inputs)})


def assert_close(got: Sequence[np.ndarray], want: Sequence[np.ndarray], rtol: float = 1e-4) -> None:
    """Same count, shapes and dtypes; values within ``rtol`` (absolute floor scaled to the data)."""
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
        scale = float(np.max(np.abs(b))) if b.size and b.dtype.kind == "f" else 1.0
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(scale, 1.0))


def export_matches_interpreter(g: Graph, inputs: Sequence[np.ndarray]) -> onnx.ModelProto:
    """Export ``g``, run it in onnxruntime and compare with the interpreter."""
    model = export_onnx(checked(g))
    assert_close(ort_run(model, inputs), run_graph(g, inputs))
    return model


def f32(*shape: int, positive: bool = False) -> np.ndarray:
    """Random float32 data."""
    x = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(x) + 0.1 if positive else x


def i64(*values: int) -> np.ndarray:
    """An int64 vector."""
    return np.array(values, np.int64)


X = f32(2, 3, 4, 5)
M = f32(3, 4)
B = RNG.standard_normal((3, 4)) > 0

# (op, operands, attributes): one single-op graph each; operands become graph inputs.
OP_CASES: list[tuple[str, list[np.ndarray], dict[str, Any]]] = [
    *[(op, [M * 2], {}) for op in ("math.neg", "math.abs", "math.exp", "math.erf", "math.tanh", "math.sin",
                                    "math.cos", "math.floor", "math.ceil", "math.round", "math.sign", "nn.relu",
                                    "nn.sigmoid", "nn.hard_swish", "nn.softplus", "nn.silu", "nn.mish",
                                    "tensor.identity", "nn.dropout")],
    *[(op, [f32(3, 4, positive=True)], {}) for op in ("math.log", "math.sqrt", "math.rsqrt", "math.reciprocal")],
    ("logic.not", [B], {}),
    ("nn.leaky_relu", [M], {"alpha": 0.1}), ("nn.elu", [M], {"alpha": 0.5}), ("nn.selu", [M], {}),
    ("nn.hard_sigmoid", [M], {"alpha": 0.25, "beta": 0.4}),
    ("nn.gelu", [M * 3], {}), ("nn.gelu", [M * 3], {"approximate": "tanh"}),
    ("math.clip", [M], {"min": -0.2, "max": 0.4}), ("math.clip", [M], {"max": 0.1}),
    ("tensor.cast", [M * 10], {"to": DType.i32}),
    *[(op, [M, f32(4)], {}) for op in ("math.add", "math.sub", "math.mul", "math.max", "math.min", "nn.prelu")],
    ("math.div", [M, f32(4, positive=True)], {}), ("math.pow", [f32(3, 4, positive=True), f32(4)], {}),
    ("math.mod", [i64(7, -7, 9), i64(3, 3, -4)], {}), ("math.mod", [M * 5, f32(4, positive=True)], {"fmod": True}),
    *[(op, [M, M[:1]], {}) for op in ("cmp.equal", "cmp.less", "cmp.less_equal", "cmp.greater", "cmp.greater_equal")],
    *[(op, [B, B[::-1]], {}) for op in ("logic.and", "logic.or", "logic.xor")],
    ("tensor.where", [B, M, f32(4)], {}),
    ("nn.batch_norm", [X, f32(3, positive=True), f32(3), f32(3), f32(3, positive=True)], {"epsilon": 1e-3}),
    ("nn.layer_norm", [X, f32(4, 5), f32(4, 5)], {"axis": 2}), ("nn.layer_norm", [X, f32(5)], {}),
    ("nn.lrn", [X], {"size": 3, "alpha": 1e-3, "beta": 0.5, "bias": 2.0}),
    ("nn.softmax", [X], {"axis": 1}), ("nn.log_softmax", [X], {}),
    ("reduce.sum", [X], {"axes": (1, 3), "keepdims": False}), ("reduce.mean", [X], {}),
    ("reduce.max", [X], {"axes": (-1,)}), ("reduce.min", [X], {"axes": (0,)}), ("reduce.prod", [M], {"axes": (1,)}),
    ("reduce.argmax", [X], {"axis": 2, "keepdims": False}),
    ("reduce.argmin", [X], {"axis": 1, "select_last_index": True}),
    ("nn.matmul", [f32(2, 3, 4), f32(4, 5)], {}),
    ("nn.gemm", [f32(4, 3), f32(5, 4), f32(5)], {"alpha": 0.5, "beta": 2.0, "trans_a": True, "trans_b": True}),
    ("nn.gemm", [f32(3, 4), f32(4, 5)], {}),
    ("nn.conv2d", [X, f32(6, 1, 3, 2), f32(6)], {"strides": (2, 1), "pads": (1, 0, 1, 1), "groups": 3}),
    ("nn.conv2d", [X, f32(2, 3, 2, 2)], {"dilations": (2, 2)}),
    ("nn.max_pool2d", [X], {"kernel": (2, 3), "strides": (2, 2), "pads": (1, 1, 0, 1), "ceil_mode": True}),
    ("nn.max_pool2d", [X], {"kernel": (2, 2), "dilations": (1, 2)}),
    ("nn.avg_pool2d", [X], {"kernel": (3, 3), "pads": (1, 1, 1, 1), "count_include_pad": True}),
    ("nn.avg_pool2d", [X], {"kernel": (2, 2), "strides": (2, 2), "ceil_mode": True}),
    ("nn.global_avg_pool", [X], {}), ("nn.global_max_pool", [X], {}),
    ("tensor.reshape", [X], {"shape": (0, -1, 5)}), ("tensor.transpose", [X], {"perm": (0, 2, 3, 1)}),
    ("tensor.transpose", [X], {}), ("tensor.concat", [M, M, f32(3, 2)], {"axis": 1}),
    ("tensor.split", [X], {"axis": 3, "sizes": (2, 3)}),
    ("tensor.slice", [X], {"starts": (1, -1), "ends": (100, 0), "axes": (2, 3), "steps": (2, -1)}),
    ("tensor.slice", [X], {"starts": (0, 1), "ends": (1, 3)}),
    ("tensor.gather", [X, i64(2, -1)], {"axis": 2}), ("tensor.flatten", [X], {"axis": 2}),
    ("tensor.squeeze", [f32(3, 1, 4, 1)], {}), ("tensor.squeeze", [f32(3, 1, 4, 1)], {"axes": (1,)}),
    ("tensor.unsqueeze", [M], {"axes": (0, 3)}), ("tensor.expand", [f32(3, 1)], {"shape": (2, 3, 4)}),
    ("tensor.pad", [X], {"pads": (0, 0, 1, 2, 0, 0, 2, 1), "value": 1.5}),
    ("tensor.pad", [X], {"pads": (0, 0, 1, 2, 0, 0, 2, 1), "mode": "reflect"}),
    ("tensor.pad", [X], {"pads": (0, 1, 0, 0, 0, 1, 0, 0), "mode": "edge"}),
    ("tensor.tile", [M], {"repeats": (2, 3)}),
    ("tensor.trilu", [M], {}), ("tensor.trilu", [M], {"upper": False, "k": 1}),
]


def _single_op_graph(op: str, operands: list[np.ndarray], attrs: dict[str, Any]) -> Graph:
    b = GraphBuilder("single")
    ins = [b.input(f"x{i}", TensorType.of(a)) for i, a in enumerate(operands)]
    return b.build(b.op(op, ins, attrs))


@pytest.mark.parametrize("op,operands,attrs", OP_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(OP_CASES)])
def test_op_exports_and_runs(op: str, operands: list[np.ndarray], attrs: dict[str, Any]) -> None:
    export_matches_interpreter(_single_op_graph(op, operands, attrs), operands)


def test_every_op_is_exportable_and_covered() -> None:
    core = {name for name in all_ops() if name.split(".")[0] in {"math", "nn", "cmp", "logic", "reduce", "tensor"}}
    assert core <= exportable_ops()
    assert core <= {c[0] for c in OP_CASES}


def test_model_metadata_and_symbolic_dims() -> None:
    b = GraphBuilder("sym")
    x = b.input("x", TensorType(("B", 8), DType.f32))
    w = b.const(f32(8, 4), "w")
    y = b.op1("nn.relu", b.op1("nn.matmul", x, w))
    model = export_matches_interpreter(b.build([y]), [f32(3, 8)])
    assert model.ir_version == 10
    assert [(o.domain, o.version) for o in model.opset_import] == [("", EXPORT_OPSET)]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "B" and dims[1].dim_value == 8
    assert [t.name for t in model.graph.initializer] == ["w"]
    assert ort_run(model, [f32(5, 8)])[0].shape == (5, 4)


def test_fused_nodes_are_inlined() -> None:
    inner = GraphBuilder("f0")
    a = inner.input("a", TensorType((3, 4), DType.f32))
    c = inner.input("c", TensorType((4,), DType.f32))
    body = inner.build([inner.op1("nn.relu", inner.op1("math.add", a, c))])
    b = GraphBuilder("outer")
    x = b.input("x", TensorType((3, 4), DType.f32))
    bias = b.const(f32(4), "bias")
    (h,) = b.fused("f0", [x, bias], body)
    y = b.op1("math.mul", h, h)
    model = export_matches_interpreter(b.build([y]), [f32(3, 4)])
    assert [n.op_type for n in model.graph.node] == ["Add", "Relu", "Mul"]


def test_fused_body_yielding_an_input_or_twice() -> None:
    inner = GraphBuilder("f1")
    a = inner.input("a", TensorType((2, 2), DType.f32))
    r = inner.op1("nn.relu", a)
    body = inner.build([a, r, r])
    b = GraphBuilder("outer")
    x = b.input("x", TensorType((2, 2), DType.f32))
    p, q, s = b.fused("f1", [x], body)
    y = b.op1("math.add", b.op1("math.add", p, q), s)
    model = export_matches_interpreter(b.build([y]), [f32(2, 2)])
    assert [n.op_type for n in model.graph.node].count("Identity") == 2


def test_outputs_that_are_inputs_constants_or_repeated() -> None:
    b = GraphBuilder("odd")
    x = b.input("x", TensorType((2, 3), DType.f32))
    w = b.const(f32(3), "w")
    r = b.op1("nn.relu", x)
    model = export_matches_interpreter(b.build([r, x, w, r]), [f32(2, 3)])
    names = [o.name for o in model.graph.output]
    assert len(set(names)) == 4 and "x" not in names and "w" not in names


@pytest.mark.parametrize("dtype", [DType.f16, DType.bf16, DType.f64, DType.i8, DType.u8, DType.i32, DType.bool])
def test_dtypes_round_trip(dtype: DType) -> None:
    b = GraphBuilder("dtypes")
    x = b.input("x", TensorType((2, 3), dtype))
    w = b.const((np.arange(3) % 2).astype(dtype.numpy), "w")
    op = "logic.or" if dtype == DType.bool else "math.add"
    g = checked(b.build(b.op(op, [x, w], names=["y"])))
    model = export_onnx(g)
    assert checked(import_onnx(model)) == g
    if dtype != DType.bf16:  # onnxruntime's CPU provider has no bfloat16 Add
        data = (np.arange(6).reshape(2, 3) % 3).astype(dtype.numpy)
        assert_close(ort_run(model, [data]), run_graph(g, [data]))


def test_unknown_op_is_an_error() -> None:
    x = Value(TensorType((2,), DType.f32), "x")
    y = Value(TensorType((2,), DType.f32), "y")
    g = Graph("g", (x,), (Node("q.mystery", (x,), (y,)),), (y,))
    with pytest.raises(FrontendError, match="IR op q.mystery has no ONNX mapping"):
        export_onnx(g)


def test_export_writes_a_file_that_imports_back(tmp_path: Path) -> None:
    b = GraphBuilder("softmax")
    x = b.input("x", TensorType.of(X))
    g = b.build(b.op("nn.softmax", [x], {"axis": 2}, names=["probs"]))
    path = tmp_path / "out.onnx"
    export_onnx(g, path)
    assert checked(import_onnx(path)) == g


# --------------------------------------------------------------------------------- torch models round trip

TORCH_MODELS = ["mlp", "resnet", "mobilenet_v2", "densenet", "inception", "squeezenet", "shufflenet", "vgg",
                "bert", "gpt2"]


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("dynamic_batch", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("name", TORCH_MODELS)
def test_import_export_round_trip(name: str, dynamic_batch: bool) -> None:
    from model_utils import export_onnx as torch_to_onnx
    from model_utils import random_inputs, to_numpy
    from models import make_model

    module, example = make_model(name)
    original = torch_to_onnx(module, example, dynamic_batch=dynamic_batch)
    g = checked(import_onnx(original))
    exported = export_onnx(g)
    for batch in (1, 2) if dynamic_batch else (1,):
        xs = to_numpy(random_inputs(example, seed=batch, batch=batch))
        assert_close(ort_run(exported, xs), ort_run(original, xs))
    # Importing what we exported gives the same graph back.
    assert checked(import_onnx(exported)) == g
