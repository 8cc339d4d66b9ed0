"""ONNX import: every op family against onnxruntime, opset conversion, symbolic dims, shape folding,
torch-exported models, and the errors users see for models we cannot read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from graphopt.frontends.errors import FrontendError, UnsupportedOpError
from graphopt.frontends.onnx import import_onnx
from graphopt.frontends.onnx_shapes import SymShape, expand_target, fold_symbolic, reshape_target
from graphopt.ir.graph import Graph
from graphopt.ir.interpreter import run_graph
from graphopt.ir.parser import parse_ir
from graphopt.ir.printer import print_graph_with_constants
from graphopt.ir.verify import verify

RNG = np.random.default_rng(0)


def make_model(nodes: list[onnx.NodeProto], inputs: dict[str, tuple[int, Sequence[Any]]],
               outputs: Sequence[str], inits: dict[str, np.ndarray] | None = None, opset: int = 18) -> onnx.ModelProto:
    """A model of ``nodes``; ``inputs`` maps names to (element type, shape); output types are inferred."""
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, t, list(s)) for n, (t, s) in inputs.items()],
        [onnx.ValueInfoProto(name=o) for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    # onnxruntime wants typed outputs; take ONNX's inferred types but none of its other value_info.
    typed = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(model).graph.output}
    for vi in model.graph.output:
        vi.CopyFrom(typed[vi.name])
    return model


def ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The model's outputs from onnxruntime."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def checked_graph(model: onnx.ModelProto | str | Path, **kwargs: Any) -> Graph:
    """Import, verify, and check the IR text round trip."""
    g = import_onnx(model, **kwargs)
    verify(g)
    text, consts = print_graph_with_constants(g)
    assert parse_ir(text, consts) == g
    return g


def assert_close(got: Sequence[np.ndarray], want: Sequence[np.ndarray], rtol: float = 1e-4) -> None:
    """Same count, shapes and dtypes; values within ``rtol`` (absolute floor scaled to the data)."""
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
        scale = float(np.max(np.abs(b))) if b.size and b.dtype.kind == "f" else 1.0
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(scale, 1.0))


def check_against_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray], **kwargs: Any) -> Graph:
    """Import ``model`` and compare the interpreter with onnxruntime on ``feeds``."""
    g = checked_graph(model, **kwargs)
    assert_close(run_graph(g, feeds), ort_run(model, feeds))
    return g


def f32(*shape: int, positive: bool = False) -> np.ndarray:
    """Random float32 data."""
    x = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(x) + 0.1 if positive else x


def node(op: str, ins: Sequence[str], outs: Sequence[str] = ("y",), **attrs: Any) -> onnx.NodeProto:
    """One ONNX node."""
    return helper.make_node(op, list(ins), list(outs), **attrs)


# --------------------------------------------------------------------------------- op families

UNARY = [
    ("Relu", {}), ("Sigmoid", {}), ("Tanh", {}), ("Exp", {}), ("Abs", {}), ("Neg", {}), ("Erf", {}),
    ("Floor", {}), ("Ceil", {}), ("Round", {}), ("Sign", {}), ("Sin", {}), ("Cos", {}),
    ("LeakyRelu", {"alpha": 0.2}), ("Elu", {"alpha": 0.7}), ("Selu", {}), ("HardSigmoid", {"alpha": 0.3}),
    ("HardSwish", {}), ("Softplus", {}), ("Softsign", {}), ("Mish", {}), ("ThresholdedRelu", {"alpha": 0.5}),
    ("Identity", {}),
]


@pytest.mark.parametrize("op,attrs", UNARY, ids=[u[0] for u in UNARY])
def test_unary(op: str, attrs: dict[str, Any]) -> None:
    model = make_model([node(op, ["x"], **attrs)], {"x": (TP.FLOAT, [2, 3, 4])}, ["y"])
    check_against_ort(model, {"x": f32(2, 3, 4) * 3})


@pytest.mark.parametrize("op", ["Sqrt", "Log", "Reciprocal"])
def test_unary_positive_domain(op: str) -> None:
    model = make_model([node(op, ["x"])], {"x": (TP.FLOAT, [5, 7])}, ["y"])
    check_against_ort(model, {"x": f32(5, 7, positive=True)})


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_opset20(approximate: str) -> None:
    model = make_model([node("Gelu", ["x"], approximate=approximate)], {"x": (TP.FLOAT, [4, 8])}, ["y"], opset=20)
    g = check_against_ort(model, {"x": f32(4, 8)})
    assert g.op_counts()["nn.gelu"] == 1


def test_clip_constant_bounds_become_attributes() -> None:
    inits = {"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}
    model = make_model([node("Clip", ["x", "lo", "hi"])], {"x": (TP.FLOAT, [3, 4])}, ["y"], inits)
    g = check_against_ort(model, {"x": f32(3, 4)})
    (clip,) = [n for n in g.nodes if n.op == "math.clip"]
    assert clip.attrs["min"] == pytest.approx(-0.5) and clip.attrs["max"] == pytest.approx(0.7)


def test_clip_runtime_bound_and_missing_min() -> None:
    model = make_model([node("Clip", ["x", "", "hi"])], {"x": (TP.FLOAT, [3, 4]), "hi": (TP.FLOAT, [])}, ["y"])
    check_against_ort(model, {"x": f32(3, 4), "hi": np.array(0.25, np.float32)})


BINARY = ["Add", "Sub", "Mul", "Div", "Max", "Min", "PRelu"]


@pytest.mark.parametrize("op", BINARY)
def test_binary_broadcast(op: str) -> None:
    model = make_model([node(op, ["a", "b"])], {"a": (TP.FLOAT, [2, 3, 4]), "b": (TP.FLOAT, [3, 1])}, ["y"])
    check_against_ort(model, {"a": f32(2, 3, 4), "b": f32(3, 1, positive=op == "Div")})


def test_pow_with_integer_exponent() -> None:
    model = make_model([node("Pow", ["a", "e"])], {"a": (TP.FLOAT, [4, 5]), "e": (TP.INT64, [5])}, ["y"])
    check_against_ort(model, {"a": f32(4, 5), "e": np.array([0, 1, 2, 3, 2], np.int64)})


@pytest.mark.parametrize("op", ["Sum", "Max", "Min", "Mean"])
def test_variadic(op: str) -> None:
    model = make_model([node(op, ["a", "b", "c"])],
                       {"a": (TP.FLOAT, [3, 4]), "b": (TP.FLOAT, [4]), "c": (TP.FLOAT, [3, 1])}, ["y"])
    check_against_ort(model, {"a": f32(3, 4), "b": f32(4), "c": f32(3, 1)})


def test_integer_mod_and_fmod() -> None:
    nodes = [node("Mod", ["a", "b"], ["m"]), node("Mod", ["fa", "fb"], ["f"], fmod=1)]
    inputs = {"a": (TP.INT64, [6]), "b": (TP.INT64, [6]), "fa": (TP.FLOAT, [6]), "fb": (TP.FLOAT, [6])}
    feeds = {"a": np.array([5, -5, 7, -7, 9, 0], np.int64), "b": np.array([3, 3, -2, -2, 4, 5], np.int64),
             "fa": f32(6) * 5, "fb": f32(6, positive=True)}
    check_against_ort(make_model(nodes, inputs, ["m", "f"]), feeds)


def test_comparisons_logic_and_where() -> None:
    nodes = [
        node("Less", ["a", "b"], ["lt"]), node("Greater", ["a", "b"], ["gt"]), node("Equal", ["i", "j"], ["eq"]),
        node("LessOrEqual", ["a", "b"], ["le"]), node("GreaterOrEqual", ["a", "b"], ["ge"]),
        node("Or", ["lt", "eq"], ["or"]), node("And", ["le", "ge"], ["and"]), node("Xor", ["or", "and"], ["xor"]),
        node("Not", ["xor"], ["not"]), node("Where", ["not", "a", "b"], ["w"]),
    ]
    inputs = {"a": (TP.FLOAT, [4, 5]), "b": (TP.FLOAT, [5]), "i": (TP.INT64, [4, 5]), "j": (TP.INT64, [4, 5])}
    a = f32(4, 5)
    b = a[1].copy()  # equal entries exercise <= and >=
    feeds = {"a": a, "b": b, "i": RNG.integers(0, 3, (4, 5)), "j": RNG.integers(0, 3, (4, 5))}
    check_against_ort(make_model(nodes, inputs, ["w", "not", "eq"]), feeds)


# --------------------------------------------------------------------------------- normalization


def test_batch_norm_layer_norm_lrn_instance_norm() -> None:
    c = 6
    inits = {"s": f32(c, positive=True), "b": f32(c), "m": f32(c), "v": f32(c, positive=True),
             "ln_s": f32(5), "ln_b": f32(5)}
    nodes = [
        node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"], epsilon=1e-3),
        node("LRN", ["bn"], ["lrn"], size=3, alpha=1e-3, beta=0.6, bias=1.5),
        node("InstanceNormalization", ["lrn", "s", "b"], ["inorm"], epsilon=1e-4),
        node("LayerNormalization", ["inorm", "ln_s", "ln_b"], ["y"], axis=-1, epsilon=1e-5),
    ]
    model = make_model(nodes, {"x": (TP.FLOAT, [2, c, 4, 5])}, ["y"], inits)
    g = check_against_ort(model, {"x": f32(2, c, 4, 5)})
    assert {"nn.batch_norm", "nn.lrn", "nn.layer_norm"} <= set(g.op_counts())


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis", [-1, 1])
def test_softmax(op: str, axis: int) -> None:
    model = make_model([node(op, ["x"], axis=axis)], {"x": (TP.FLOAT, [2, 3, 4])}, ["y"])
    check_against_ort(model, {"x": f32(2, 3, 4)})


# --------------------------------------------------------------------------------- reductions

REDUCE = [
    ("ReduceMean", [1], 1), ("ReduceSum", [0, 2], 0), ("ReduceMax", [-1], 1), ("ReduceMin", [], 1),
    ("ReduceProd", [1], 0), ("ReduceL2", [2], 1), ("ReduceL1", [1], 0), ("ReduceSumSquare", [0], 1),
    ("ReduceLogSumExp", [1], 0),
]


@pytest.mark.parametrize("op,axes,keepdims", REDUCE, ids=[r[0] for r in REDUCE])
def test_reductions_axes_as_input(op: str, axes: list[int], keepdims: int) -> None:
    inits = {"axes": np.array(axes, np.int64)} if axes else {}
    model = make_model([node(op, ["x", "axes"] if axes else ["x"], keepdims=keepdims)],
                       {"x": (TP.FLOAT, [3, 4, 5])}, ["y"], inits)
    check_against_ort(model, {"x": f32(3, 4, 5)})


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
def test_arg_reductions(op: str) -> None:
    model = make_model([node(op, ["x"], axis=1, keepdims=0, select_last_index=1)], {"x": (TP.FLOAT, [3, 4])}, ["y"])
    check_against_ort(model, {"x": np.array([[1, 3, 3, 0], [2, 2, 0, 0], [5, 1, 5, 1]], np.float32)})


# --------------------------------------------------------------------------------- linear algebra, conv, pool


def test_matmul_batched_and_gemm() -> None:
    inits = {"w": f32(6, 5), "c": f32(6)}
    nodes = [node("MatMul", ["a", "b"], ["mm"]),
             node("Gemm", ["x", "w", "c"], ["gemm"], alpha=0.5, beta=2.0, transB=1)]
    inputs = {"a": (TP.FLOAT, [2, 1, 3, 4]), "b": (TP.FLOAT, [3, 4, 2]), "x": (TP.FLOAT, [7, 5])}
    g = check_against_ort(make_model(nodes, inputs, ["mm", "gemm"], inits),
                          {"a": f32(2, 1, 3, 4), "b": f32(3, 4, 2), "x": f32(7, 5)})
    assert g.op_counts()["nn.gemm"] == 1


CONV = [
    ({"pads": [1, 0, 2, 1], "strides": [2, 1]}, 1),
    ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 1),
    ({"auto_pad": "SAME_LOWER", "strides": [1, 2]}, 1),
    ({"auto_pad": "VALID", "group": 2}, 2),
]


@pytest.mark.parametrize("attrs,groups", CONV, ids=["pads", "same_upper", "same_lower", "valid_grouped"])
def test_conv2d(attrs: dict[str, Any], groups: int) -> None:
    inits = {"w": f32(4, 4 // groups, 3, 3), "bias": f32(4)}
    model = make_model([node("Conv", ["x", "w", "bias"], kernel_shape=[3, 3], **attrs)],
                       {"x": (TP.FLOAT, [1, 4, 9, 8])}, ["y"], inits)
    g = check_against_ort(model, {"x": f32(1, 4, 9, 8)})
    assert g.op_counts()["nn.conv2d"] == 1


def test_conv1d_and_pool1d_lift_to_2d() -> None:
    nodes = [node("Conv", ["x", "w"], ["c"], pads=[1, 2], strides=[2]),
             node("MaxPool", ["c"], ["y"], kernel_shape=[2], strides=[2])]
    model = make_model(nodes, {"x": (TP.FLOAT, [2, 3, 17])}, ["y"], {"w": f32(5, 3, 4)})
    check_against_ort(model, {"x": f32(2, 3, 17)})


POOL = [
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", {"kernel_shape": [3, 2], "strides": [2, 2], "ceil_mode": 1, "dilations": [1, 2]}),
    ("MaxPool", {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [2, 3], "pads": [0, 1, 0, 1], "strides": [2, 1], "ceil_mode": 1}),
    ("GlobalAveragePool", {}), ("GlobalMaxPool", {}),
]


@pytest.mark.parametrize("op,attrs", POOL, ids=[f"{p[0]}{i}" for i, p in enumerate(POOL)])
def test_pooling(op: str, attrs: dict[str, Any]) -> None:
    model = make_model([node(op, ["x"], **attrs)], {"x": (TP.FLOAT, [2, 3, 9, 10])}, ["y"])
    check_against_ort(model, {"x": f32(2, 3, 9, 10)})


def test_3d_pool_with_a_flat_axis_runs_as_2d() -> None:
    # torch exports LocalResponseNorm as exactly this: a (size, 1, 1) average pool over 5-d data.
    model = make_model([node("AveragePool", ["x"], kernel_shape=[3, 1, 1], pads=[1, 0, 0, 1, 0, 0])],
                       {"x": (TP.FLOAT, [2, 1, 6, 4, 5])}, ["y"])
    g = check_against_ort(model, {"x": f32(2, 1, 6, 4, 5)})
    assert g.op_counts()["nn.avg_pool2d"] == 1


# --------------------------------------------------------------------------------- layout


def test_layout_ops() -> None:
    i64 = lambda *v: np.array(v, np.int64)
    inits = {"shape": i64(4, -1), "starts": i64(1, -1), "ends": i64(3, -100), "axes": i64(0, 2),
             "steps": i64(1, -2), "idx": i64(2, -1, 0), "ax0": i64(0), "split": i64(2, 4),
             "pads": i64(1, 1, 2, 0), "reps": i64(1, 2), "exp": i64(2, 1, 3)}
    nodes = [
        node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),                      # [3,2,4]
        node("Reshape", ["t", "shape"], ["r"]),                               # [4,6]
        node("Slice", ["x", "starts", "ends", "axes", "steps"], ["s"]),       # [1,2,2]
        node("Gather", ["x", "idx"], ["g"], axis=2),                          # [2,3,3]
        node("Flatten", ["g"], ["f"], axis=2),                                # [6,3]
        node("Concat", ["f", "f"], ["cat"], axis=1),                          # [6,6]
        node("Split", ["cat", "split"], ["sp0", "sp1"], axis=1),
        node("Unsqueeze", ["sp1", "ax0"], ["u"]),                             # [1,6,3]
        node("Squeeze", ["u", "ax0"], ["sq"]),
        node("Pad", ["sq", "pads"], ["pr"], mode="reflect"),
        node("Tile", ["sp0", "reps"], ["tile"]),
        node("Expand", ["b", "exp"], ["ex"]),
        node("Trilu", ["r"], ["tri"], upper=0),
        node("Cast", ["r"], ["cast"], to=TP.INT32),
    ]
    outs = ["r", "s", "cat", "pr", "tile", "ex", "tri", "cast"]
    model = make_model(nodes, {"x": (TP.FLOAT, [2, 3, 4]), "b": (TP.FLOAT, [1, 3])}, outs, inits)
    check_against_ort(model, {"x": f32(2, 3, 4), "b": f32(1, 3)})


def test_split_even_by_num_outputs_and_dropout() -> None:
    nodes = [node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3),
             node("Dropout", ["b", "ratio"], ["d"])]
    model = make_model(nodes, {"x": (TP.FLOAT, [2, 7])}, ["a", "d", "c"], {"ratio": np.array(0.3, np.float32)})
    check_against_ort(model, {"x": f32(2, 7)})


# --------------------------------------------------------------------------------- opsets


def test_opset11_model_is_upgraded() -> None:
    # Opset 11: Softmax coerces to 2-d at `axis`, Squeeze/ReduceMean/Split take axes as attributes.
    nodes = [
        node("Softmax", ["x"], ["sm"], axis=1),
        node("ReduceMean", ["sm"], ["rm"], axes=[2], keepdims=1),
        node("Squeeze", ["rm"], ["sq"], axes=[2]),
        node("Split", ["sq"], ["s0", "s1"], axis=1, split=[1, 2]),
        node("Unsqueeze", ["s1"], ["y"], axes=[0]),
    ]
    model = make_model(nodes, {"x": (TP.FLOAT, [2, 3, 4])}, ["s0", "y"], opset=11)
    x = f32(2, 3, 4)
    g = check_against_ort(model, {"x": x})
    # Softmax over the coerced 2-d view normalizes over axes 1 and 2 together.
    flat = np.exp(x.reshape(2, 12)) / np.exp(x.reshape(2, 12)).sum(1, keepdims=True)
    assert_close([run_graph(g, [x])[0]], [flat.reshape(2, 3, 4).mean(2, keepdims=True)[:, :1, 0]])


def test_opset7_model_is_upgraded() -> None:
    c = 3
    inits = {"s": f32(c, positive=True), "b": f32(c), "m": f32(c), "v": f32(c, positive=True),
             "shape": np.array([0, -1], np.int64)}
    nodes = [
        node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"], epsilon=1e-4),
        node("Clip", ["bn"], ["cl"], min=-0.5, max=0.5),
        node("MaxPool", ["cl"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Reshape", ["mp", "shape"], ["r"]),
        node("Dropout", ["r"], ["dr"], ratio=0.5),
        node("Softmax", ["dr"], ["y"]),
    ]
    model = make_model(nodes, {"x": (TP.FLOAT, [2, c, 4, 4])}, ["y"], inits, opset=7)
    g = check_against_ort(model, {"x": f32(2, c, 4, 4)})
    assert {"nn.batch_norm", "math.clip", "nn.max_pool2d", "nn.softmax"} <= set(g.op_counts())


# --------------------------------------------------------------------------------- symbolic dims and shape folding


def _batch_flatten_model() -> onnx.ModelProto:
    """Conv then `x.reshape(x.shape[0], -1)` the way exporters write it, with a dynamic batch N."""
    inits = {"w": f32(4, 3, 3, 3), "zero": np.array(0, np.int64), "ax0": np.array([0], np.int64),
             "minus1": np.array([-1], np.int64)}
    nodes = [
        node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        node("Shape", ["c"], ["shape"]),
        node("Gather", ["shape", "zero"], ["n"], axis=0),
        node("Unsqueeze", ["n", "ax0"], ["n1"]),
        node("Concat", ["n1", "minus1"], ["target"], axis=0),
        node("Reshape", ["c", "target"], ["y"]),
    ]
    return make_model(nodes, {"x": (TP.FLOAT, ["N", 3, 6, 6])}, ["y"], inits)


def test_shape_chain_folds_to_a_static_reshape() -> None:
    model = _batch_flatten_model()
    g = checked_graph(model)
    assert g.inputs[0].type.shape == ("N", 3, 6, 6)
    assert g.outputs[0].type.shape == ("N", 144)
    assert g.op_counts() == {"const": 1, "nn.conv2d": 1, "tensor.reshape": 1}
    (reshape,) = [n for n in g.nodes if n.op == "tensor.reshape"]
    assert reshape.attrs["shape"] == (0, -1)
    for batch in (2, 5):
        x = f32(batch, 3, 6, 6)
        assert_close(run_graph(g, [x]), ort_run(model, {"x": x}))


def test_symbolic_dims_in_reshape_targets_and_expand() -> None:
    # y = (x.reshape(N, S, 2, 4) + bias).expand-like broadcast; target built from Shape(x) pieces.
    i64 = lambda *v: np.array(v, np.int64)
    inits = {"i01": i64(0, 1), "tail": i64(2, 4), "bias": f32(1, 1, 1, 4)}
    nodes = [
        node("Shape", ["x"], ["sx"]),
        node("Gather", ["sx", "i01"], ["ns"], axis=0),
        node("Concat", ["ns", "tail"], ["target"], axis=0),
        node("Reshape", ["x", "target"], ["r"]),
        node("Shape", ["r"], ["sr"]),
        node("Expand", ["r", "sr"], ["e"]),
        node("ConstantOfShape", ["sr"], ["zeros"], value=numpy_helper.from_array(np.array([1.5], np.float32))),
        node("Add", ["e", "zeros"], ["y"]),
    ]
    model = make_model(nodes, {"x": (TP.FLOAT, ["N", "S", 8])}, ["y"], inits)
    g = checked_graph(model)
    assert g.outputs[0].type.shape == ("N", "S", 2, 4)
    for n, s in ((1, 3), (4, 2)):
        x = f32(n, s, 8)
        assert_close(run_graph(g, [x]), ort_run(model, {"x": x}))


def test_symbolic_shape_arithmetic() -> None:
    shape = SymShape(("N", 3, "S"))
    n = fold_symbolic("Gather", [shape, np.array(0)], {})
    assert n == [SymShape(("N",), scalar=True)]
    (prod,) = fold_symbolic("Mul", [n[0], np.array(4)], {}) or []
    assert prod == SymShape(("(N*4)",), scalar=True)
    (same,) = fold_symbolic("Mul", [n[0], np.array(1)], {}) or []
    assert same == n[0]  # x*1 keeps the symbol itself, so reshape targets can still match it
    (is_infer,) = fold_symbolic("Equal", [shape, np.array(-1)], {}) or []
    assert is_infer.tolist() == [False, False, False]
    assert fold_symbolic("Equal", [shape, np.array(3)], {}) is None  # N == 3 is unknown
    (cat,) = fold_symbolic("Concat", [np.array([2]), shape], {"axis": 0}) or []
    assert cat == SymShape((2, "N", 3, "S"))
    assert reshape_target(("N", "S", 8), ["N", "S", 2, 4]) == [0, 0, 2, 4]
    assert reshape_target(("N", "S", 8), ["(N*S)", 8]) == [-1, 8]
    assert reshape_target(("N", "S", 8), ["S", "N", 8]) is None  # two dims would need inferring
    assert expand_target(("N", 1, 4), ["N", 3, 4]) == [1, 3, 4]
    assert expand_target((1, 4), ["N", 4]) is None  # a 1 growing to a run-time size


def test_dynamic_batch_option() -> None:
    model = make_model([node("Relu", ["x"], ["y"])], {"x": (TP.FLOAT, [1, 5])}, ["y"])
    assert checked_graph(model).inputs[0].type.shape == (1, 5)
    assert checked_graph(model, dynamic_batch=True).inputs[0].type.shape == ("N", 5)
    g = checked_graph(model, dynamic_batch="batch")
    assert g.inputs[0].type.shape == ("batch", 5)
    assert run_graph(g, [f32(3, 5)])[0].shape == (3, 5)


def test_unknown_dims_become_symbols_and_names_are_sanitized() -> None:
    x = helper.make_tensor_value_info("input:0", TP.FLOAT, [None, "seq len", 4])
    w = numpy_helper.from_array(f32(4, 2), "onnx::MatMul_7")
    g_proto = helper.make_graph([node("MatMul", ["input:0", "onnx::MatMul_7"], ["out/0"])], "my graph", [x],
                                [helper.make_tensor_value_info("out/0", TP.FLOAT, None)], [w])
    model = helper.make_model(g_proto, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    g = checked_graph(model)
    assert g.name == "my_graph"
    assert g.inputs[0].name == "input_0"
    assert g.inputs[0].type.shape == ("input_0_0", "seq_len", 4)
    assert g.outputs[0].name == "out_0"
    assert "onnx_MatMul_7" in {v.name for v in g.constants()}
    x0 = f32(3, 2, 4)
    assert_close(run_graph(g, [x0]), ort_run(model, {"input:0": x0}))


def test_outputs_that_are_inputs_constants_or_repeated() -> None:
    nodes = [node("Relu", ["x"], ["r"]), node("Identity", ["r"], ["r2"])]
    model = make_model(nodes, {"x": (TP.FLOAT, [2, 3])}, ["r", "x", "w", "r2"], {"w": f32(3)})
    g = check_against_ort(model, {"x": f32(2, 3)})
    assert len(g.outputs) == 4 and g.outputs[1] is g.inputs[0]


def test_if_with_constant_condition_is_inlined() -> None:
    def branch(op: str) -> onnx.GraphProto:
        return helper.make_graph([node(op, ["x"], [f"{op}_out"])], op,
                                 [], [helper.make_tensor_value_info(f"{op}_out", TP.FLOAT, None)])

    nodes = [
        node("Shape", ["x"], ["s"]), node("Size", ["s"], ["rank"]),
        node("Equal", ["rank", "three"], ["is3"]),
        node("If", ["is3"], ["y"], then_branch=branch("Relu"), else_branch=branch("Neg")),
    ]
    model = make_model(nodes, {"x": (TP.FLOAT, ["N", 2, 2])}, ["y"], {"three": np.array(3, np.int64)})
    g = check_against_ort(model, {"x": f32(3, 2, 2)})
    assert g.op_counts() == {"nn.relu": 1}


def test_constant_subgraphs_are_folded() -> None:
    # A weight transposed and scaled by constant nodes becomes one constant.
    nodes = [node("Constant", [], ["k"], value_float=2.0), node("Transpose", ["w"], ["wt"]),
             node("Mul", ["wt", "k"], ["w2"]), node("MatMul", ["x", "w2"], ["y"])]
    model = make_model(nodes, {"x": (TP.FLOAT, [2, 3])}, ["y"], {"w": f32(4, 3)})
    g = check_against_ort(model, {"x": f32(2, 3)})
    assert g.op_counts() == {"const": 1, "nn.matmul": 1}


# --------------------------------------------------------------------------------- errors


def test_unsupported_op_names_file_node_and_op(tmp_path: Path) -> None:
    nodes = [node("Relu", ["x"], ["r"], name="relu_0"),
             node("NonMaxSuppression", ["r", "r"], ["y"], name="nms_1")]
    model = make_model(nodes, {"x": (TP.FLOAT, [1, 4, 4])}, ["y"])
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UnsupportedOpError) as info:
        import_onnx(path)
    e = info.value
    assert (e.file, e.node_name, e.op_type) == (str(path), "nms_1", "NonMaxSuppression")
    assert str(e) == f"{path}: node 'nms_1' (op NonMaxSuppression): unsupported op"


def test_unsupported_attribute_value_is_an_unsupported_op_error() -> None:
    model = make_model([node("Pad", ["x", "p"], mode="wrap", name="pad")], {"x": (TP.FLOAT, [3, 3])}, ["y"],
                       {"p": np.array([1, 1, 1, 1], np.int64)})
    with pytest.raises(UnsupportedOpError, match="node 'pad' \\(op Pad\\): mode=wrap"):
        import_onnx(model)


def test_unsupported_input_type() -> None:
    model = make_model([node("Neg", ["x"])], {"x": (TP.UINT16, [3])}, ["y"])
    with pytest.raises(UnsupportedOpError, match="input 'x' has element type UINT16"):
        import_onnx(model)


def test_runtime_shape_arithmetic_is_reported() -> None:
    # Range over a symbolic length: the result's shape is only known at run time.
    inits = {"zero": np.array(0, np.int64), "one": np.array(1, np.int64)}
    nodes = [node("Shape", ["x"], ["s"]), node("Gather", ["s", "zero"], ["n"]),
             node("Range", ["zero", "n", "one"], ["y"], name="arange")]
    model = make_model(nodes, {"x": (TP.FLOAT, ["N"])}, ["y"], inits)
    with pytest.raises(UnsupportedOpError, match="node 'arange' \\(op Range\\).*symbolic dims N"):
        import_onnx(model)


def test_if_on_a_runtime_condition_is_unsupported() -> None:
    branch = helper.make_graph([node("Relu", ["x"], ["r"])], "b", [], [helper.make_tensor_value_info("r", TP.FLOAT, None)])
    model = make_model([node("If", ["c"], ["y"], then_branch=branch, else_branch=branch, name="if0")],
                       {"x": (TP.FLOAT, [2]), "c": (TP.BOOL, [])}, ["y"])
    with pytest.raises(UnsupportedOpError, match="node 'if0' \\(op If\\): a condition computed at run time"):
        import_onnx(model)


def test_not_an_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a protobuf, just some text\n")
    with pytest.raises(FrontendError, match="notes.onnx: not an ONNX model"):
        import_onnx(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.onnx"
    with pytest.raises(FrontendError) as info:
        import_onnx(str(path))
    assert str(info.value) == f"{path}: no such file"


def test_model_loaded_from_path_and_bytes(tmp_path: Path) -> None:
    model = _batch_flatten_model()
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert checked_graph(path) == checked_graph(model) == checked_graph(model.SerializeToString())


# --------------------------------------------------------------------------------- torch-exported models


def _torch_case(name: str, dynamic_batch: bool, batches: Sequence[int]) -> None:
    from model_utils import export_onnx, random_inputs, to_numpy
    from models import make_model as make_torch_model

    module, example = make_torch_model(name)
    model = export_onnx(module, example, dynamic_batch=dynamic_batch)
    g = checked_graph(model)
    names = [i.name for i in model.graph.input]
    for batch in batches:
        xs = to_numpy(random_inputs(example, seed=batch, batch=batch))
        assert_close(run_graph(g, xs), ort_run(model, dict(zip(names, xs))))


TORCH_MODELS = ["mlp", "resnet", "mobilenet_v2", "densenet", "inception", "squeezenet", "shufflenet", "vgg",
                "bert", "gpt2"]


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("name", TORCH_MODELS)
def test_torch_exported_model(name: str) -> None:
    _torch_case(name, dynamic_batch=False, batches=[1])


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("name", ["resnet", "vgg", "shufflenet", "bert", "gpt2"])
def test_torch_exported_model_dynamic_batch(name: str) -> None:
    _torch_case(name, dynamic_batch=True, batches=[1, 3])
