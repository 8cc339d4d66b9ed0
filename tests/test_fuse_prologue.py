"""Prologue fusion: merges the rule forbids that only the cost model may take, after measuring."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from graphopt.ir import DType, GraphBuilder, TensorType, parse_ir
from graphopt.ir.graph import CONST, FUSED, Graph, Node
from graphopt.ir.interpreter import run_graph
from graphopt.ir.printer import print_graph_with_constants
from graphopt.ir.verify import verify
from graphopt.passes import PassContext, run_passes
from graphopt.passes.schedule import kernel_ops

F32 = DType.f32


def roundtrip(g: Graph) -> None:
    verify(g)
    text, consts = print_graph_with_constants(g)
    assert parse_ir(text, consts) == g and parse_ir(text, consts).to_text() == text


def heads() -> Graph:
    """Attention-style: a reshape+transpose of the heads read by a batched matmul."""
    b = GraphBuilder("heads")
    q = b.input("q", TensorType((1, 16, 64), F32))
    k = b.input("k", TensorType((1, 4, 16, 16), F32))
    qh = b.op1("tensor.transpose", b.op1("tensor.reshape", q, shape=[1, 16, 4, 16]), perm=[0, 2, 1, 3])
    return b.build([b.op1("nn.relu", b.op1("nn.matmul", qh, k))])


def projection() -> Graph:
    """transpose+reshape of the heads read by a matmul with a constant weight."""
    rng = np.random.default_rng(1)
    b = GraphBuilder("proj")
    x = b.input("x", TensorType((1, 4, 16, 16), F32))
    w = b.const(rng.standard_normal((64, 32)).astype(np.float32), "w")
    flat = b.op1("tensor.reshape", b.op1("tensor.transpose", x, perm=[0, 2, 1, 3]), shape=[1, 16, 64])
    return b.build([b.op1("nn.matmul", flat, w)])


def concat_conv() -> Graph:
    rng = np.random.default_rng(2)
    b = GraphBuilder("dense")
    x = b.input("x", TensorType((1, 8, 8, 8), F32))
    y = b.input("y", TensorType((1, 8, 8, 8), F32))
    w = b.const(rng.standard_normal((16, 16, 1, 1)).astype(np.float32), "w")
    cat = b.op1("nn.relu", b.op1("tensor.concat", x, y, axis=1))
    return b.build([b.op1("nn.conv2d", cat, w)])


class Table:
    """A fake cost model: predictions by op chain (default: undecided, wide intervals)."""

    def __init__(self, table: Mapping[str, tuple[float, float, float]] | None = None) -> None:
        self.table = dict(table or {})

    def predict(self, kernels: Sequence[tuple[Node, Mapping[str, Any]]], target: str) -> tuple[Any, Any, Any]:
        rows = [self.table.get(kernel_ops(n), (10.0, 1.0, 100.0)) for n, _ in kernels]
        return tuple(np.array(col) for col in zip(*rows))


def _fake_measure(times: Mapping[str, float]) -> Any:
    def measure(kernel: Node, schedule: Mapping[str, Any]) -> float:
        return times[kernel_ops(kernel)] * 1e-6

    return measure


PROLOGUE = "tensor.reshape+tensor.transpose"
FUSED_OPS = "tensor.reshape+tensor.transpose+nn.matmul"


def test_rule_makes_the_first_versions_kernels() -> None:
    for graph in (heads(), projection(), concat_conv()):
        ctx = PassContext()
        out, _ = run_passes(graph, "fuse", ctx=ctx)
        roundtrip(graph)
        roundtrip(out)
        # No kernel holds an anchor after another op: the rule declines every prologue.
        for n in out.nodes:
            if n.op == FUSED:
                assert n.body.nodes[0].op in ("nn.matmul", "nn.conv2d") or not any(
                    m.op in ("nn.matmul", "nn.conv2d") for m in n.body.nodes)
    ctx = PassContext()
    run_passes(heads(), "fuse", ctx=ctx)
    declined = [d for d in ctx.decisions if d.subject.startswith("nn.matmul")]
    assert declined and not declined[0].accepted and "only the cost model fuses prologues" in declined[0].reason


def test_model_accepts_a_measured_faster_prologue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHOPT_CACHE_DIR", str(tmp_path))
    times = {FUSED_OPS: 10.0, PROLOGUE: 2.0, "nn.matmul": 10.0, "nn.relu": 1.0, "nn.matmul+nn.relu": 10.0,
             FUSED_OPS + "+nn.relu": 10.0}
    ctx = PassContext(cost_model=Table(), measure=_fake_measure(times))
    out, _ = run_passes(heads(), "fuse", ctx=ctx)
    roundtrip(out)
    (kernel,) = [n for n in out.nodes if n.op != CONST]
    assert kernel_ops(kernel) == FUSED_OPS + "+nn.relu"
    (d,) = [d for d in ctx.decisions if d.subject.startswith("nn.matmul")]
    assert d.accepted and d.reason.startswith("measured (prologue): fused 10us vs apart 12.2us")
    xs = [np.random.default_rng(0).standard_normal(v.type.shape).astype(np.float32) for v in heads().inputs]
    np.testing.assert_allclose(run_graph(out, xs)[0], run_graph(heads(), xs)[0], rtol=1e-5, atol=1e-6)


def test_model_rejects_a_slower_or_unmeasured_prologue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHOPT_CACHE_DIR", str(tmp_path))
    # Measured faster, but within noise: apart it stays.
    times = {FUSED_OPS: 11.5, PROLOGUE: 2.0, "nn.matmul": 10.0, "nn.matmul+nn.relu": 10.0, "nn.relu": 1.0}
    ctx = PassContext(cost_model=Table(), measure=_fake_measure(times))
    out, _ = run_passes(heads(), "fuse", ctx=ctx)
    roundtrip(out)
    (d,) = [d for d in ctx.decisions if d.subject.startswith("nn.matmul")]
    assert not d.accepted and d.reason.startswith("measured (prologue)")
    assert [kernel_ops(n) for n in out.nodes if n.op != CONST] == [PROLOGUE, "nn.matmul+nn.relu"]
    # A confident "faster" prediction is not enough without a measurer.
    ctx = PassContext(cost_model=Table({FUSED_OPS: (1.0, 0.9, 1.1)}))
    run_passes(heads(), "fuse", ctx=ctx)
    (d,) = [d for d in ctx.decisions if d.subject.startswith("nn.matmul")]
    assert not d.accepted and "nothing to measure with" in d.reason
    # A confident "slower" prediction rejects without measuring.
    ctx = PassContext(cost_model=Table({FUSED_OPS: (100.0, 90.0, 110.0), PROLOGUE: (1.0, 0.9, 1.1),
                                        "nn.matmul": (10.0, 9.0, 11.0)}), measure=_fake_measure({}))
    run_passes(heads(), "fuse", ctx=ctx)
    (d,) = [d for d in ctx.decisions if d.subject.startswith("nn.matmul")]
    assert not d.accepted and d.reason.startswith("cost model (prologue)")


def test_concat_and_convolution_prologues_are_forbidden() -> None:
    ctx = PassContext(cost_model=Table())
    run_passes(concat_conv(), "fuse", ctx=ctx)
    (d,) = [d for d in ctx.decisions if d.subject.startswith("nn.conv2d")]
    assert not d.accepted and d.reason.startswith("illegal: nn.conv2d is an anchor op")


@pytest.mark.parametrize("make", [heads, projection])
def test_prologue_kernels_build_on_tvm_with_the_matmul_schedule(make: Any) -> None:
    pytest.importorskip("tvm")
    from graphopt.backends import build
    from graphopt.backends.tvm.measure import lower_alone

    graph = make()

    def accept_all(kernel: Node, schedule: Mapping[str, Any]) -> float:
        return (1.0 if "+" in kernel_ops(kernel) and "transpose" in kernel_ops(kernel) and "matmul" in kernel_ops(kernel)
                else 10.0) * 1e-6

    ctx = PassContext(cost_model=Table(), measure=accept_all)
    out, _ = run_passes(graph, "fuse", ctx=ctx)
    roundtrip(out)
    kernels = [n for n in out.nodes if n.op == FUSED]
    (kernel,) = [k for k in kernels if "transpose" in kernel_ops(k) and "matmul" in kernel_ops(k)]
    assert lower_alone(kernel, {}, out.constants()).schedule.startswith("matmul tile=")
    xs = [np.random.default_rng(0).standard_normal(v.type.shape).astype(np.float32) for v in graph.inputs]
    got = build(out, "tvm").run(xs)
    np.testing.assert_allclose(got[0], run_graph(graph, xs)[0], rtol=1e-4, atol=1e-5)
