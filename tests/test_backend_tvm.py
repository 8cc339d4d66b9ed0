"""The TVM backend against the reference interpreter: every op, weight packing, hand-fused kernels,
the test models, fallbacks, dynamic batch, saving and loading, and a missing or mismatched TVM.

Every comparison is with ``run_graph`` (f32: rtol 1e-4, atol 1e-5; integers and bools exactly).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tvm.tirx as tir
from models import MODELS, make_model
from test_ops import CASES, single_node

import graphopt
from graphopt.backends import NotedExecutable, build
from graphopt.backends import tvm as tvm_backend
from graphopt.backends.tvm import KernelSchedule, TVMUnavailableError, build_tvm
from graphopt.backends.tvm import lower as tvm_lower
from graphopt.backends.tvm.executable import TVMExecutable
from graphopt.backends.tvm.measure import TVMKernelMeasurer
from graphopt.backends.tvm.target import cpu_flags, host_target
from graphopt.ir.graph import Graph, GraphBuilder, Value
from graphopt.ir.interpreter import InputError, run_graph
from graphopt.ir.parser import parse_ir
from graphopt.ir.printer import print_graph_with_constants
from graphopt.ir.types import DType, TensorType
from graphopt.passes import run_passes
from graphopt.passes.base import KernelMeasurer

RNG = np.random.default_rng(7)


def f32(*shape: int | str) -> TensorType:
    """A float32 tensor type."""
    return TensorType(shape, DType.f32)


def rand(*shape: int) -> np.ndarray:
    """Standard normal float32 data."""
    return RNG.standard_normal(shape).astype(np.float32)


def assert_matches(exe: Any, graph: Graph, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``exe`` gives the interpreter's outputs on ``inputs`` (same dtypes and shapes)."""
    got = exe.run(list(inputs))
    want = run_graph(graph, list(inputs))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, g.shape, w.dtype, w.shape)
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_array_equal(g, w)
    return got


def no_fallbacks(exe: TVMExecutable) -> None:
    """Every kernel of ``exe`` was compiled by TVM."""
    assert exe.fallbacks() == [], "\n".join(exe.describe())


# ------------------------------------------------------------------------------------- single ops


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_every_op_lowers_and_matches(case: Any) -> None:
    g = single_node(case.op, case.inputs, case.attrs)
    exe = build_tvm(g)
    no_fallbacks(exe)
    assert_matches(exe, g, case.inputs)


@pytest.mark.parametrize("dtype", [DType.bf16, DType.f16])
@pytest.mark.parametrize("size", [14, 16])
def test_half_precision_max_pool_builds_and_is_exact(dtype: DType, size: int) -> None:
    """A bf16 max pool builds with TVM (its bf16 max reduction used to fail in LLVM codegen and run
    on the interpreter) and gives exactly the reference's values, odd output widths included."""
    b = GraphBuilder()
    v = b.input("x", TensorType((1, 16, size, size), dtype))
    g = b.build([b.op1("nn.max_pool2d", b.op1("nn.relu", v), kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1))])
    text, consts = print_graph_with_constants(g)
    assert parse_ir(text, consts) == g
    exe = build_tvm(g)
    no_fallbacks(exe)
    x = (rand(1, 16, size, size) * 4).astype(dtype.numpy)
    got = exe.run([x])[0]
    np.testing.assert_array_equal(got.astype(np.float32), run_graph(g, [x])[0].astype(np.float32))


@pytest.mark.parametrize("exponent", [2.0, 3.0, 4.0, -1.0, -2.0, 0.5, 0.75, -0.5, -0.75, 1.7, np.inf, np.nan])
def test_pow_by_a_constant_matches_numpy_at_every_sign(exponent: float) -> None:
    """Constant exponents become multiplies and square roots (vectorized); 1.7, inf and NaN keep libm's pow.
    Negative bases, zero, inf and NaN give what numpy's power gives."""

    special = np.array([-2.5, -1.0, -0.0, 0.0, 1e-30, 0.3, 1.0, 7.0, np.inf, -np.inf, np.nan], np.float32)
    x = np.concatenate([special, rand(53) * 3]).reshape(1, 64)
    b = GraphBuilder()
    v = b.input("x", f32(1, 64))
    g = b.build([b.op1("math.pow", v, b.const(np.float32(exponent)))])
    text, consts = print_graph_with_constants(g)
    assert parse_ir(text, consts) == g
    exe = build_tvm(g)
    no_fallbacks(exe)
    with np.errstate(all="ignore"):
        assert_matches(exe, g, [x])


@pytest.mark.parametrize("op", ["math.exp", "math.tanh", "nn.sigmoid", "nn.silu", "nn.elu"])
def test_exp_and_tanh_are_vectorized_arithmetic_within_a_few_ulps(op: str) -> None:
    """exp and tanh are built from arithmetic (libm's are scalar calls per element): relative error
    of a few float32 ulps over the whole range, tiny and huge arguments, inf and NaN included."""
    special = np.array([0.0, -0.0, 1e-30, -1e-7, 3e-5, 0.39, 0.41, -88.0, 88.5, -103.0, 95.0, -200.0,
                        np.inf, -np.inf, np.nan], np.float32)
    x = np.concatenate([special, np.linspace(-30, 30, 4081, dtype=np.float32)]).reshape(1, -1)
    b = GraphBuilder()
    v = b.input("x", f32(*x.shape))
    g = b.build([b.op1(op, v, **({"alpha": 1.0} if op == "nn.elu" else {}))])
    exe = build_tvm(g)
    no_fallbacks(exe)
    got = exe.run([x])[0].astype(np.float64)
    want = run_graph(g, [x])[0].astype(np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(want)), x[np.isnan(got) != np.isnan(want)]
    finite = np.isfinite(want)
    assert np.array_equal(got[~finite], want[~finite], equal_nan=True)
    err = np.abs(got[finite] - want[finite])
    # 4 ulps of each value, or float32's smallest normal for results that underflow towards it.
    assert np.all(err <= 4 * np.spacing(np.abs(want[finite]).astype(np.float32)).astype(np.float64) + 1.2e-38), (
        x[0][finite[0]][np.argmax(err / (np.abs(want[finite]) + 1e-38))])


@pytest.mark.parametrize("op", ["math.tanh", "nn.mish", "nn.silu", "math.exp"])
def test_chains_of_ops_that_use_their_element_many_times_build_and_match(op: str) -> None:
    """Six in one kernel. Inlined into each other, every use of an element copied the producer's
    whole expression: two tanh ops took 53 s to build, three did not finish in two minutes."""
    b = GraphBuilder()
    v = b.input("x", f32(4, 16))
    for _ in range(6):
        v = b.op1(op, v)
    g, _ = run_passes(b.build([v]), "fuse")
    assert [n.op for n in g.nodes] == ["fused"]
    exe = build_tvm(g)
    no_fallbacks(exe)
    assert_matches(exe, g, [rand(4, 16) * 0.5])


def _weights_graph(op: str, x_type: TensorType, weight: np.ndarray, **attrs: Any) -> Graph:
    b = GraphBuilder("w")
    x = b.input("x", x_type)
    w = b.const(weight, "w")
    return b.build([b.op1(op, x, w, **attrs)])


@pytest.mark.parametrize("m,k,n,tile", [(1, 64, 10, ()), (5, 48, 96, ()), (7, 33, 70, (3, 32)), (16, 64, 64, (8, 16)),
                                        (1, 40, 1000, ()), (3, 24, 200, ()), (4, 16, 257, ())])
def test_matmul_with_packed_weights(m: int, k: int, n: int, tile: tuple[int, ...]) -> None:
    g = _weights_graph("nn.matmul", f32(m, k), rand(k, n))
    exe = build_tvm(g, {"k1_matmul": KernelSchedule(tile=tile)})
    no_fallbacks(exe)
    assert_matches(exe, g, [rand(m, k)])
    # Packed weights are part of the kernel's arguments, computed at compile time.
    assert any("matmul tile" in r.schedule for r in exe.kernels())


def test_gemm_transposed_weights_and_batched_matmul() -> None:
    g = _weights_graph("nn.gemm", f32(4, 24), rand(40, 24), trans_b=True, alpha=0.5)
    assert_matches(build_tvm(g), g, [rand(4, 24)])
    g = _weights_graph("nn.matmul", f32(2, 3, 5, 24), rand(24, 20))
    assert_matches(build_tvm(g), g, [rand(2, 3, 5, 24)])


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 8, 12, 12), (20, 8, 3, 3), {"pads": (1, 1, 1, 1)}),  # 20 channels: the packed block is padded
    ((2, 6, 9, 11), (4, 3, 3, 1), {"groups": 2, "strides": (2, 1), "pads": (1, 0, 1, 0)}),
    ((1, 16, 10, 10), (16, 1, 3, 3), {"groups": 16, "pads": (1, 1, 1, 1)}),
    ((1, 3, 17, 17), (32, 3, 5, 5), {"strides": (2, 2), "dilations": (2, 1), "pads": (2, 1, 2, 1)}),
])
def test_conv2d_with_packed_weights(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, Any]) -> None:
    g = _weights_graph("nn.conv2d", f32(*x_shape), rand(*w_shape), **attrs)
    exe = build_tvm(g)
    no_fallbacks(exe)
    assert_matches(exe, g, [rand(*x_shape)])
    assert "conv2d" in exe.kernels()[0].schedule


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_reference_semantics_at_the_edges() -> None:
    # NaN goes through relu and max as in numpy; integer division by zero gives 0, not a trap.
    b = GraphBuilder("edges")
    x, y = b.input("x", f32(6)), b.input("y", f32(6))
    i, j = b.input("i", TensorType((4,), DType.i32)), b.input("j", TensorType((4,), DType.i32))
    outs = [b.op1("nn.relu", x), b.op1("math.max", x, y), b.op1("math.min", y, x), b.op1("math.div", i, j),
            b.op1("math.mod", i, j)]
    g = b.build(outs)
    xs = np.array([np.nan, -1, 0, 2, np.inf, -np.inf], np.float32)
    ys = np.array([1, np.nan, 0, 3, 1, 1], np.float32)
    got = assert_matches(build_tvm(g), g, [xs, ys, np.array([7, -7, 3, 0], np.int32),
                                           np.array([2, 2, 0, 0], np.int32)])
    assert np.isnan(got[0][0]) and np.isnan(got[1][0]) and np.isnan(got[1][1])


# ----------------------------------------------------------------------------------- fused kernels


def _body(name: str, types: Sequence[TensorType], make: Any) -> Graph:
    b = GraphBuilder(name)
    ins = [b.input(f"a{i}", t) for i, t in enumerate(types)]
    return b.build(make(b, *ins))


def test_fused_matmul_bias_gelu() -> None:
    body = _body("f0", [f32(8, 32), f32(32, 48), f32(48)],
                 lambda b, x, w, c: [b.op1("nn.gelu", b.op1("math.add", b.op1("nn.matmul", x, w), c))])
    b = GraphBuilder("mlp")
    x = b.input("x", f32(8, 32))
    w, c = b.const(rand(32, 48), "w"), b.const(rand(48), "c")
    (y,) = b.fused("f0", [x, w, c], body)
    g = b.build([y])
    exe = build_tvm(g)
    no_fallbacks(exe)
    assert_matches(exe, g, [rand(8, 32)])
    (record,) = exe.kernels()
    assert record.ops == "nn.matmul+math.add+nn.gelu" and "matmul tile" in record.schedule


def test_fused_conv_residual_relu_then_pool() -> None:
    conv = _body("f0", [f32(1, 16, 14, 14), f32(16, 16, 3, 3), f32(16), f32(1, 16, 14, 14)],
                 lambda b, x, w, c, r: [b.op1("nn.relu", b.op1(
                     "math.add", b.op1("nn.conv2d", x, w, c, pads=(1, 1, 1, 1)), r))])
    pool = _body("f1", [f32(1, 16, 14, 14)],
                 lambda b, x: [b.op1("nn.max_pool2d", x, kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1))])
    b = GraphBuilder("block")
    x = b.input("x", f32(1, 16, 14, 14))
    w, c = b.const(rand(16, 16, 3, 3), "w"), b.const(rand(16), "c")
    (y,) = b.fused("f0", [x, w, c, x], conv)
    (z,) = b.fused("f1", [y], pool)
    g = b.build([z, y])
    exe = build_tvm(g)
    no_fallbacks(exe)
    assert_matches(exe, g, [rand(1, 16, 14, 14)])
    assert "conv2d" in exe.kernels()[0].schedule


def test_fused_concat_batch_norm_relu_is_partitioned() -> None:
    # DenseNet's pattern: the concat's select chain is split into one loop per input, and the
    # constant BN statistics become a per-channel multiplier and shift.
    shapes = [f32(1, 24, 9, 11), f32(1, 8, 9, 11), f32(1, 8, 9, 11), f32(1, 16, 9, 11)]
    body = _body("f0", [*shapes, f32(56), f32(56), f32(56), f32(56)],
                 lambda b, x0, x1, x2, x3, s, c, m, v: [b.op1("nn.relu", b.op1(
                     "nn.batch_norm", b.op1("tensor.concat", x0, x1, x2, x3, axis=1), s, c, m, v, epsilon=1e-5))])
    b = GraphBuilder("dense")
    xs = [b.input(f"x{i}", t) for i, t in enumerate(shapes)]
    stats = [b.const(rand(56), "scale"), b.const(rand(56), "bias"), b.const(rand(56), "mean"),
             b.const(np.abs(rand(56)) + 0.1, "var")]
    (y,) = b.fused("f0", [*xs, *stats], body)
    g = b.build([y])
    exe = build_tvm(g)
    no_fallbacks(exe)
    assert_matches(exe, g, [rand(*t.shape) for t in shapes])  # type: ignore[arg-type]


@pytest.mark.parametrize("op", ["nn.softmax", "nn.log_softmax", "nn.layer_norm"])
def test_row_ops_get_the_vectorized_row_schedule(op: str) -> None:
    # Rows of 64 (rfactor over 16 lanes) and of 24 (too short to split), with an epilogue.
    for last in (64, 24):
        x_t = f32(2, 5, last)
        if op == "nn.layer_norm":
            body = _body("f0", [x_t, f32(last), f32(last)], lambda b, x, s, c: [b.op1("math.mul", b.op1(
                op, x, s, c, axis=-1, epsilon=1e-5), x)])
        else:
            body = _body("f0", [x_t], lambda b, x: [b.op1("math.mul", b.op1(op, x, axis=-1), x)])
        b = GraphBuilder("rows")
        x = b.input("x", x_t)
        extra = [b.const(rand(last), "s"), b.const(rand(last), "c")] if op == "nn.layer_norm" else []
        (y,) = b.fused("f0", [x, *extra], body)
        g = b.build([y])
        exe = build_tvm(g)
        no_fallbacks(exe)
        assert exe.kernels()[0].schedule == "rows", exe.describe()
        assert_matches(exe, g, [4 * rand(2, 5, last)])


def test_depthwise_conv_strided_matches() -> None:
    for stride, size, dil in ((2, 15, 1), (2, 16, 1), (1, 13, 1), (2, 12, 2), (3, 14, 1)):
        w = rand(24, 1, 3, 3)
        g = _weights_graph("nn.conv2d", f32(1, 24, size, size), w, groups=24, strides=(stride, stride),
                           pads=(1, 1, 1, 1), dilations=(dil, dil))
        exe = build_tvm(g)
        no_fallbacks(exe)
        assert "depthwise conv2d" in exe.kernels()[0].schedule
        assert_matches(exe, g, [rand(1, 24, size, size)])


def test_fused_body_with_scalar_constant_several_results_and_a_passthrough() -> None:
    def make(b: GraphBuilder, x: Value, y: Value) -> list[Value]:
        half = b.const(np.float32(0.5))
        s = b.op1("math.mul", b.op1("math.add", x, y), half)
        return [b.op1("nn.softmax", s), s, x]

    body = _body("f0", [f32(3, 10), f32(10)], make)
    b = GraphBuilder("multi")
    x, y = b.input("x", f32(3, 10)), b.input("y", f32(10))
    outs = b.fused("f0", [x, y], body)
    g = b.build(list(outs))
    exe = build_tvm(g)
    no_fallbacks(exe)
    assert_matches(exe, g, [rand(3, 10), rand(10)])


def test_identical_kernels_share_code_but_not_weights() -> None:
    b = GraphBuilder("layers")
    h = b.input("x", f32(4, 32))
    for i in range(3):
        h = b.op1("nn.relu", b.op1("nn.gemm", h, b.const(rand(32, 32), f"w{i}"), b.const(rand(32), f"b{i}")))
    g = b.build([h])
    exe = build_tvm(g)
    assert_matches(exe, g, [rand(4, 32)])
    gemms = [r for r in exe.kernels() if r.ops == "nn.gemm"]
    assert gemms[0].shares is None and gemms[1].shares == gemms[2].shares == gemms[0].name
    assert f"(same code as {gemms[0].name})" in "\n".join(exe.describe())


def test_explicit_and_annotated_schedules_are_used() -> None:
    body = _body("f0", [f32(16, 64), f32(64, 64)], lambda b, x, w: [b.op1("nn.relu", b.op1("nn.matmul", x, w))])
    b = GraphBuilder("sched")
    x = b.input("x", f32(16, 64))
    w = b.const(rand(64, 64), "w")
    sched = KernelSchedule(tile=(4, 16), par=1)
    (y,) = b.fused("f0", [x, w], body, annotations={"sched": sched.to_annotation()})
    g = b.build([y])
    exe = build_tvm(g)
    assert "tile=[4,16]" in exe.kernels()[0].schedule
    assert_matches(exe, g, [rand(16, 64)])
    exe = build_tvm(g, {"f0": KernelSchedule(tile=(2, 64))})
    assert "tile=[2,64]" in exe.kernels()[0].schedule
    assert_matches(exe, g, [rand(16, 64)])
    assert KernelSchedule.from_annotation(sched.to_annotation()) == sched
    with pytest.raises(ValueError, match="unknown keys"):
        KernelSchedule.from_annotation({"tiles": [1]})


def test_kernel_measurer_times_a_kernel_under_a_schedule() -> None:
    body = _body("f0", [f32(32, 64), f32(64, 64)], lambda b, x, w: [b.op1("nn.relu", b.op1("nn.matmul", x, w))])
    b = GraphBuilder("timed")
    x = b.input("x", f32(32, 64))
    (y,) = b.fused("f0", [x, b.const(rand(64, 64), "w")], body)
    g = b.build([y])
    measure = TVMKernelMeasurer.for_graph(g, number=2, repeat=3, min_repeat_ms=0)
    assert isinstance(measure, KernelMeasurer)
    kernel = g.nodes[-1]
    for sched in ({}, {"tile": (4, 16), "par": 1}):
        seconds = measure(kernel, sched)
        assert 0 < seconds < 1
    b = GraphBuilder("dyn")
    xd = b.input("x", f32("B", 4))
    dyn = b.build([b.op1("nn.relu", xd)])
    assert 0 < measure(dyn.nodes[0], {}) < 1  # symbolic dims are timed at 1


# ------------------------------------------------------------------------------------------ models


def _model_graph(name: str, pipeline: str = "canonicalize,fuse") -> tuple[Graph, list[np.ndarray]]:
    module, inputs = make_model(name)
    graph, _ = run_passes(graphopt.import_torch(module, inputs), pipeline)
    return graph, [t.numpy() for t in inputs]


_FAST_MODELS = {"mlp", "resnet", "bert"}


@pytest.mark.parametrize("name", [n if n in _FAST_MODELS else pytest.param(n, marks=pytest.mark.slow)
                                  for n in MODELS])
def test_model_matches_interpreter(name: str) -> None:
    graph, inputs = _model_graph(name)
    exe = build_tvm(graph)
    no_fallbacks(exe)
    assert_matches(exe, graph, inputs)


def test_unfused_model_and_compile_api() -> None:
    graph, inputs = _model_graph("mobilenet_v2", "canonicalize")
    assert_matches(build_tvm(graph), graph, inputs)
    module, example = make_model("mlp")
    m = graphopt.compile(module, example, backend="tvm")
    assert m.report().backend == "tvm"
    np.testing.assert_allclose(m(*example).numpy(), run_graph(m.graph, [t.numpy() for t in example])[0],
                               rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------- fallbacks


def _conv_relu_graph() -> Graph:
    b = GraphBuilder("cr")
    x = b.input("x", f32(1, 4, 8, 8))
    w = b.const(rand(8, 4, 3, 3), "w")
    y = b.op1("nn.relu", b.op1("nn.conv2d", x, w, pads=(1, 1, 1, 1)))
    return b.build([b.op1("math.tanh", y)])


def test_an_op_that_cannot_lower_runs_on_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> Any:
        raise tvm_lower.LoweringError("relu refused by the test")

    monkeypatch.setitem(tvm_lower.LOWERINGS, "nn.relu", refuse)
    g = _conv_relu_graph()
    exe = build_tvm(g)
    assert_matches(exe, g, [rand(1, 4, 8, 8)])
    (fb,) = exe.fallbacks()
    assert fb.ops == "nn.relu" and "refused by the test" in (fb.fallback or "")
    assert any(line.strip().startswith("FALLBACK") and "nn.relu" in line and "refused by the test" in line
               for line in exe.describe())
    assert "1 on the interpreter" in "\n".join(exe.describe())


def test_a_kernel_llvm_cannot_build_runs_on_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    # TVM lowers float fmod to an intrinsic LLVM does not know: lowering succeeds, the build fails.
    monkeypatch.setitem(tvm_lower.UNARY, "math.tanh", lambda x, a: tir.fmod(x, x + tir.const(3.0, "float32")))
    g = _conv_relu_graph()
    exe = build_tvm(g)
    assert_matches(exe, g, [rand(1, 4, 8, 8)])
    (fb,) = exe.fallbacks()
    assert fb.ops == "math.tanh" and "LLVM build failed" in (fb.fallback or "")


def test_missing_or_mismatched_tvm_gives_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tvm_backend, "_installed", lambda dist: {"apache-tvm": "0.21.0"}.get(dist, "0.1.15.post2"))
    with pytest.raises(TVMUnavailableError) as info:
        tvm_backend.require_tvm()
    message = str(info.value)
    assert "apache-tvm==0.27.0.post1" in message and "apache-tvm-ffi==0.1.14.post1" in message
    assert "found apache-tvm 0.21.0" in message
    g = _conv_relu_graph()
    exe = build(g, "auto")
    assert isinstance(exe, NotedExecutable) and exe.name == "reference"
    assert "tvm unavailable" in exe.describe()[0] and "apache-tvm==0.27.0.post1" in exe.describe()[0]
    monkeypatch.setattr(tvm_backend, "_installed", lambda dist: None)
    with pytest.raises(TVMUnavailableError, match="not installed"):
        build(g, "tvm")


def test_auto_picks_tvm() -> None:
    g = _conv_relu_graph()
    exe = build(g, "auto")
    assert exe.name == "tvm"
    assert_matches(exe, g, [rand(1, 4, 8, 8)])


# ---------------------------------------------------------------------------------- dynamic batch


def test_dynamic_batch_builds_once_per_shape() -> None:
    b = GraphBuilder("dyn")
    x = b.input("x", f32("B", 12))
    h = b.op1("nn.relu", b.op1("nn.matmul", x, b.const(rand(12, 20), "w")))
    flat = b.op1("tensor.reshape", h, shape=(0, 4, 5))
    g = b.build([b.op1("reduce.sum", flat, axes=(2,), keepdims=False)])
    exe = build_tvm(g)
    assert exe.kernels() == []  # nothing is built before the first call
    assert any("dynamic dims B" in line and "none yet" in line for line in exe.describe())
    for batch in (1, 5, 1):
        assert_matches(exe, g, [rand(batch, 12)])
    lines = "\n".join(exe.describe())
    assert "build for inputs [1,12]" in lines and "build for inputs [5,12]" in lines
    assert lines.count("build for inputs") == 2
    with pytest.raises(InputError):
        exe.run([rand(2, 13)])


def test_dynamic_batch_model() -> None:
    module, example = make_model("mlp")
    graph = graphopt.import_torch(module, example, dynamic_batch=True)
    exe = build_tvm(graph)
    for batch in (1, 3):
        assert_matches(exe, graph, [rand(batch, 32)])


# ------------------------------------------------------------------------------- save and load


_LOADER = textwrap.dedent("""
    import sys
    import numpy as np
    import tvm
    from graphopt.ir.parser import parse_ir
    from graphopt.backends.tvm.executable import TVMExecutable

    def no_compiling(*args, **kwargs):
        raise AssertionError("load recompiled the graph")

    tvm.compile = no_compiling
    folder = sys.argv[1]
    with np.load(folder + "/consts.npz") as z:
        consts = {k: z[k] for k in z.files}
    graph = parse_ir(open(folder + "/graph.gir").read(), consts)
    exe = TVMExecutable.load(folder + "/tvm", graph)
    x = np.load(folder + "/x.npy")
    np.save(folder + "/y.npy", exe.run([x])[0])
    print("\\n".join(exe.describe()))
""")


def test_save_and_load_in_a_new_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One kernel falls back, so the reloaded library must find its interpreter function again.
    monkeypatch.setitem(tvm_lower.LOWERINGS, "math.tanh", tvm_lower.LOWERINGS["nn.lrn"])  # fails: no 'size'
    g = _conv_relu_graph()
    exe = build_tvm(g)
    assert len(exe.fallbacks()) == 1
    exe.save(tmp_path / "tvm")
    text, consts = print_graph_with_constants(g)
    (tmp_path / "graph.gir").write_text(text)
    np.savez(tmp_path / "consts.npz", **consts)
    x = rand(1, 4, 8, 8)
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-c", _LOADER, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), run_graph(g, [x])[0], rtol=1e-4, atol=1e-5)
    assert "FALLBACK" in proc.stdout and "math.tanh" in proc.stdout


def test_load_rejects_another_graph(tmp_path: Path) -> None:
    exe = build_tvm(_conv_relu_graph())
    exe.save(tmp_path)
    b = GraphBuilder("other")
    x = b.input("x", f32(1, 4, 8, 8))
    other = b.build([b.op1("nn.sigmoid", x)])
    with pytest.raises(ValueError, match="does not match the graph"):
        TVMExecutable.load(tmp_path, other)


# ---------------------------------------------------------------------------------------- target


def test_target_detection(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse4_2 avx2 fma avx512f avx512_vnni\n")
    assert {"avx512f", "avx512_vnni", "avx2"} <= cpu_flags(info)
    assert cpu_flags(tmp_path / "missing") == set()
    host = host_target()
    assert host.target.kind.name == "llvm" and host.cores >= 1 and host.threads >= 1
    if "avx512f" in cpu_flags():
        assert "+avx512f" in host.mattr and host.lanes(32) == 16
    assert "threads" in host.describe()
