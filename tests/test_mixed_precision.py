"""``mixed-precision`` (quantize="auto"): the ILP, measured sensitivities, the accuracy budget
(output error or a user metric), latency from a cost model or the roofline, and the report.

Every pass test runs the interpreter before and after (within the budget), verifies the result and
round-trips its IR text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from models import make_model

import graphopt
from graphopt.frontends import import_torch
from graphopt.ir.graph import Graph, Node
from graphopt.ir.interpreter import run_graph
from graphopt.ir.parser import parse_ir
from graphopt.ir.printer import print_graph_with_constants
from graphopt.ir.verify import verify
from graphopt.passes import PassContext, PassError, run_passes
from graphopt.passes.mixed_precision import AccuracyMetric, LayerChoice, MixedPrecision, solve_ilp
from graphopt.passes.quant import CalibrationSet, find_layers
from graphopt.passes.quantize import Calibrate, QuantizeError


def check_ir(g: Graph) -> None:
    """Verifies and round-trips through its text."""
    verify(g)
    text, consts = print_graph_with_constants(g)
    assert parse_ir(text, consts) == g


def setup(name: str, n: int = 4) -> tuple[Graph, list[np.ndarray], CalibrationSet]:
    """A canonicalized test model, its example inputs, and ``n`` calibration samples."""
    module, tensors = make_model(name)
    g, _ = run_passes(import_torch(module, tensors), "canonicalize")
    inputs = [t.numpy() for t in tensors]
    rng = np.random.default_rng(5)
    samples = [tuple(inputs)] + [tuple(rng.standard_normal(a.shape).astype(a.dtype) if a.dtype.kind == "f" else a
                                       for a in inputs) for _ in range(n - 1)]
    return g, inputs, CalibrationSet.of(samples, g)


def auto(g: Graph, samples: CalibrationSet, ctx: PassContext | None = None, **options: Any) -> Graph:
    """``g`` after calibrate and mixed-precision."""
    out, _ = run_passes(g, [Calibrate(samples=samples), MixedPrecision(samples=samples, **options)], ctx=ctx)
    return out


def relative_error(a: Graph, b: Graph, samples: CalibrationSet) -> float:
    """Mean over samples of ||a(x) - b(x)|| / ||b(x)|| (first output)."""
    errs = []
    for s in samples.samples:
        x, y = run_graph(a, list(s))[0], run_graph(b, list(s))[0]
        errs.append(np.linalg.norm(x.astype(np.float64) - y) / np.linalg.norm(y.astype(np.float64)))
    return float(np.mean(errs))


def layer_rows(ctx: PassContext) -> list[Any]:
    """The per-layer decisions of mixed-precision."""
    return [d for d in ctx.decisions if d.pass_name == "mixed-precision" and "gain_us" in d.numbers]


# ------------------------------------------------------------------------------------------- ILP


def _row(name: str, f32: float, int8: float, s_int8: float, bf16: float | None = None,
         s_bf16: float = 0.0) -> LayerChoice:
    lat, sens = {"f32": f32, "int8": int8}, {"f32": 0.0, "int8": s_int8}
    if bf16 is not None:
        lat["bf16"], sens["bf16"] = bf16, s_bf16
    return LayerChoice(name, "f32", sens, lat)


def test_ilp_minimizes_latency_within_the_budget() -> None:
    table = [_row("a", 10, 3, 0.004), _row("b", 10, 4, 0.001), _row("c", 10, 2, 0.010, bf16=7, s_bf16=0.002)]
    assert solve_ilp(table, 1.0) == ["int8", "int8", "int8"]
    # 0.008: a and b int8 (0.005), c cannot be int8 (0.015 > 0.008) but bf16 fits (0.007).
    assert solve_ilp(table, 0.008) == ["int8", "int8", "bf16"]
    assert solve_ilp(table, 0.0) == ["f32", "f32", "f32"]


def test_ilp_never_picks_a_precision_that_is_not_faster() -> None:
    table = [_row("slow-int8", 5, 5.5, 0.0), _row("tie", 5, 5, 0.0)]
    assert solve_ilp(table, 1.0) == ["f32", "f32"]


# -------------------------------------------------------------------------------------- the pass


@pytest.mark.parametrize("name, budget", [("resnet", 0.01), ("mlp", 0.01), ("bert", 0.005), ("resnet", 0.002)])
def test_auto_meets_its_budget_and_is_not_predicted_slower(name: str, budget: float) -> None:
    g, _, samples = setup(name)
    ctx = PassContext()
    out = auto(g, samples, ctx, max_drop=budget)
    check_ir(out)
    assert relative_error(out, g, samples) <= budget
    rows = layer_rows(ctx)
    assert len(rows) == len(find_layers(g)[0])
    chosen = sum(r.numbers[f"latency_{_choice(r)}_us"] for r in rows)
    assert chosen <= sum(r.numbers["latency_f32_us"] for r in rows)
    assert all(r.numbers["gain_us"] >= 0 for r in rows)
    budget_note = next(d for d in ctx.decisions if d.subject == "accuracy budget")
    assert budget_note.accepted and budget_note.numbers["measured"] <= budget


def _choice(decision: Any) -> str:
    return decision.reason.split(":", 1)[0]


def test_a_zero_budget_keeps_everything_f32() -> None:
    g, inputs, samples = setup("mlp")
    out = auto(g, samples, max_drop=0.0)
    assert out == run_passes(g, [Calibrate(samples=samples)])[0]
    np.testing.assert_array_equal(run_graph(out, inputs)[0], run_graph(g, inputs)[0])


def test_layers_pick_int8_when_predicted_faster() -> None:
    g, _, samples = setup("resnet")
    ctx = PassContext()
    out = auto(g, samples, ctx, max_drop=0.05)
    assert out.op_counts().get("q.conv2d_int8", 0) >= 5
    rows = layer_rows(ctx)
    for r in rows:
        assert {"latency_f32_us", "latency_int8_us", "latency_bf16_us", f"sensitivity_{_choice(r)}"} <= set(r.numbers)
        # Sensitivity is measured for the precisions predicted faster (the others are never chosen).
        faster = r.numbers["latency_int8_us"] < 0.95 * r.numbers["latency_f32_us"]
        assert ("sensitivity_int8" in r.numbers) == faster
        if faster:
            assert r.numbers["sensitivity_int8"] > 0
        if _choice(r) == "int8":
            assert r.numbers["latency_int8_us"] < r.numbers["latency_f32_us"]


class _Predictor:
    """A cost model stand-in: int8 kernels 10x slower than anything else."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, kernels: Sequence[tuple[Node, Any]], target: str) -> tuple[Any, Any, Any]:
        self.calls += 1
        mean = np.array([100.0 if node.op.startswith("q.") else 10.0 for node, _ in kernels])
        return mean, mean * 0.9, mean * 1.1


def test_latency_comes_from_the_cost_model_when_set() -> None:
    g, _, samples = setup("resnet")
    ctx = PassContext()
    ctx.cost_model = _Predictor()
    out = auto(g, samples, ctx, max_drop=0.05, precisions=("int8", "f32"))
    assert ctx.cost_model.calls > 0
    assert "q.conv2d_int8" not in out.op_counts()  # predicted slower: never chosen
    assert all(_choice(r) == "f32" for r in layer_rows(ctx))


def test_a_user_metric_sets_the_budget() -> None:
    g, _, samples = setup("resnet", n=6)
    labels = [int(np.argmax(run_graph(g, list(s))[0])) for s in samples.samples]

    def top1(outputs: list[list[np.ndarray]]) -> float:
        return float(np.mean([int(np.argmax(o[0])) == y for o, y in zip(outputs, labels)]))

    ctx = PassContext()
    out = auto(g, samples, ctx, max_drop=0.0, metric=AccuracyMetric(top1, "top1"))
    check_ir(out)
    assert top1([run_graph(out, list(s)) for s in samples.samples]) == 1.0
    note = next(d for d in ctx.decisions if d.subject == "accuracy budget")
    assert "top1 drop" in note.reason and note.accepted
    assert out.op_counts().get("q.conv2d_int8", 0) > 0  # argmax survives int8 on these samples


def test_refusals() -> None:
    g, _, samples = setup("mlp")
    with pytest.raises(PassError, match="needs samples"):
        run_passes(g, [MixedPrecision()])
    q, _ = run_passes(g, "quantize")
    with pytest.raises(PassError, match="already quantized"):
        run_passes(q, [MixedPrecision(samples=samples)])
    with pytest.raises(ValueError, match="include f32"):
        MixedPrecision(precisions=("int8",))


def test_compile_auto_reports_each_layer() -> None:
    module, tensors = make_model("resnet")
    x = tensors[0].numpy()
    calibration = [x, 0.5 * x, -x]
    m = graphopt.compile(module, tensors, backend="reference", quantize="auto", calibration=calibration,
                         max_accuracy_drop=0.02)
    rows = [r for r in m.report().quantization if r["pass"] == "mixed-precision"]
    layers = [r for r in rows if "gain_us" in r]
    assert len(layers) == 16
    assert all("latency_int8_us" in r and "latency_f32_us" in r for r in layers)
    assert any("sensitivity_int8" in r for r in layers)
    assert any(r["layer"] == "accuracy budget" and r["quantized"] for r in rows)
    assert "mixed-precision" in m.report().to_text()
    ref = graphopt.compile(module, tensors, backend="reference")
    err = np.linalg.norm(m(x) - ref(x)) / np.linalg.norm(ref(x))
    assert err <= 0.05
    with pytest.raises(QuantizeError, match="needs calibration"):
        graphopt.compile(module, tensors, quantize="auto")
