"""The ``fuse`` pass: kernels by fusion kind, recorded decisions, numerics unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.ir import DType, GraphBuilder, TensorType, parse_ir
from graphopt.ir.graph import FUSED, Graph
from graphopt.ir.interpreter import run_graph
from graphopt.ir.printer import print_graph_with_constants
from graphopt.ir.verify import verify
from graphopt.passes import PassContext, run_passes

F32 = DType.f32


def check(before: Graph, after: Graph, *shapes: tuple[int, ...]) -> None:
    verify(after)
    text, consts = print_graph_with_constants(after)
    assert parse_ir(text, consts) == after and parse_ir(text, consts).to_text() == text
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    for a, b in zip(run_graph(before, xs), run_graph(after, xs)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def conv_block() -> Graph:
    rng = np.random.default_rng(1)
    b = GraphBuilder("block")
    x = b.input("x", TensorType(("B", 4, 8, 8), F32))
    w = b.const(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w")
    bias = b.const(rng.standard_normal(4).astype(np.float32), "bias")
    y = b.op1("nn.conv2d", x, w, bias, pads=[1, 1, 1, 1])
    y = b.op1("nn.relu", b.op1("math.add", y, x))  # residual
    pooled = b.op1("nn.global_avg_pool", y)
    return b.build([b.op1("tensor.flatten", pooled)])


def test_conv_epilogue_becomes_one_kernel() -> None:
    g = conv_block()
    ctx = PassContext()
    out, log = run_passes(g, "fuse", ctx=ctx)
    fused = [n for n in out.nodes if n.op == FUSED]
    assert len(fused) == 1
    assert [n.op for n in fused[0].body.nodes] == ["nn.conv2d", "math.add", "nn.relu"]
    assert [n.op for n in out.nodes if n.op != "const"] == [FUSED, "nn.global_avg_pool", "tensor.flatten"]
    check(g, out, (2, 4, 8, 8))
    reasons = {d.subject: (d.accepted, d.reason) for d in ctx.decisions}
    assert reasons["math.add %1 into kernel nn.conv2d (ending %0)"][0] is True
    assert reasons["nn.global_avg_pool %3 into kernel nn.conv2d+math.add+nn.relu (ending %2)"] == (
        False, "illegal: nn.global_avg_pool (reduction) cannot follow nn.conv2d in one kernel")
    assert log[0]["counts"]["kernels"] == 1


def test_value_with_two_readers_is_not_fused_away() -> None:
    b = GraphBuilder("two")
    x = b.input("x", TensorType((4, 8), F32))
    e = b.op1("math.exp", x)
    out = b.build([b.op1("math.add", b.op1("nn.relu", e), b.op1("math.neg", e))])
    ctx = PassContext()
    fused, _ = run_passes(out, "fuse", ctx=ctx)
    assert any(d.reason == "illegal: the kernel's result has 2 readers" for d in ctx.decisions)
    check(out, fused, (4, 8))


def test_elementwise_chain_into_reduction_and_max_size() -> None:
    b = GraphBuilder("chain")
    x = b.input("x", TensorType((4, 8), F32))
    h = x
    for _ in range(5):
        h = b.op1("math.tanh", h)
    r = b.op1("reduce.sum", h, axes=[1])
    g = b.build([b.op1("math.mul", r, b.const(np.float32(2.0), "two"))])
    out, _ = run_passes(g, "fuse", ctx=PassContext())
    (kernel,) = [n for n in out.nodes if n.op == FUSED]
    assert [n.op for n in kernel.body.nodes if n.op != "const"] == ["math.tanh"] * 5 + ["reduce.sum", "math.mul"]
    assert "two" not in [n.output.name for n in out.nodes if n.op == "const"]  # scalar moved inside
    check(g, out, (4, 8))
    small, _ = run_passes(g, "fuse{max-size=3}", ctx=PassContext())
    assert max(len(n.body.nodes) for n in small.nodes if n.op == FUSED) <= 3
    check(g, small, (4, 8))


@pytest.mark.parametrize("name", ["resnet", "bert", "gpt2", "shufflenet"])
def test_models_fuse_with_same_numerics(name: str) -> None:
    from models import make_model

    import graphopt

    module, inputs = make_model(name)
    g = graphopt.import_torch(module, inputs)
    out, _ = run_passes(g, "canonicalize,fuse", ctx=PassContext())
    assert any(n.op == FUSED for n in out.nodes)
    xs = [t.numpy() for t in inputs]
    for a, b in zip(run_graph(g, xs), run_graph(out, xs)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    verify(out)
    text, consts = print_graph_with_constants(out)
    assert parse_ir(text, consts) == out
