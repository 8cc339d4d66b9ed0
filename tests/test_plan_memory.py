"""``plan-memory``: lifetimes, in-place and view sharing, arena packing (greedy and exact), annotations."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from models import make_model

import graphopt
from graphopt.cli import main as cli_main
from graphopt.cli import random_inputs
from graphopt.ir import DType, GraphBuilder, TensorType, parse_ir
from graphopt.ir.analysis import live_bytes_per_step
from graphopt.ir.annotations import BufferRef
from graphopt.ir.graph import Graph
from graphopt.ir.interpreter import run_graph
from graphopt.ir.printer import print_graph_with_constants
from graphopt.ir.verify import verify
from graphopt.passes import PassContext, run_passes
from graphopt.passes.memory import arena_sizes, make_plan, read_plan, run_with_plan
from graphopt.passes.memory.arena import conflicts, exact, greedy, pack
from graphopt.passes.memory.lifetimes import inplace_operands, lifetimes, peak_live, share_buffers
from graphopt.passes.memory.report import lifetimes_chart

F32 = DType.f32


def check(before: Graph, after: Graph, bindings: dict[str, int] | None = None) -> None:
    """Verified, round-trips, same numbers as before, and the plan's arena execution agrees too."""
    verify(after)
    text, consts = print_graph_with_constants(after)
    again = parse_ir(text, consts)
    assert again == after and again.to_text() == text
    xs = random_inputs(before, seed=1, symbol_size=next(iter((bindings or {}).values()), 1))
    want = run_graph(before, xs)
    for a, b in zip(want, run_graph(after, xs)):
        np.testing.assert_array_equal(a, b)
    plan = make_plan(after, bindings=bindings)
    for a, b in zip(want, run_with_plan(after, plan, xs)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def chain() -> Graph:
    b = GraphBuilder("chain")
    x = b.input("x", TensorType((1, 64), F32))
    w = b.const(np.ones((64, 64), np.float32) / 64, "w")
    y = b.op1("nn.matmul", x, w)
    z = b.op1("nn.relu", y)  # y dies here: z can take its buffer
    r = b.op1("tensor.reshape", z, shape=[8, 8])  # a view of z's buffer
    s = b.op1("math.exp", r)  # r dies here: in place again
    return b.build([b.op1("math.add", s, s)])


def test_chain_plans_in_place_and_annotates() -> None:
    g = chain()
    ctx = PassContext()
    out, log = run_passes(g, "plan-memory", ctx=ctx)
    check(g, out)
    mems = [n.annotations.get("mem") for n in out.nodes if n.op != "const"]
    assert all(isinstance(m, BufferRef) and m.arena == "arena0" for m in mems)
    assert len({m.offset for m in mems}) == 1  # matmul, relu, reshape, exp, add all share one buffer
    assert "mem=arena0+0" in out.to_text()
    assert log[0]["counts"]["buffers"] == 1 and log[0]["counts"]["arena_bytes"] == 256
    kinds = [d.reason.split(":")[0] for d in ctx.decisions if "shares its operand" in d.subject]
    assert kinds == ["in-place", "view", "in-place", "in-place"]
    assert arena_sizes(out) == {"arena0": 256}
    assert {p.ref.offset for p in read_plan(out).values()} == {0}


def test_in_place_only_where_legal() -> None:
    b = GraphBuilder("legal")
    x = b.input("x", TensorType((4, 8), F32))
    e = b.op1("math.exp", x)  # x is the caller's input: never overwritten
    f = b.op1("nn.relu", e)  # e is read again below: not in place
    h = b.op1("math.add", e, f)  # e and f both die here: in place on one of them
    row = b.op1("reduce.sum", h, axes=[0], keepdims=True)
    k = b.op1("math.mul", row, h)  # broadcast: may overwrite h (same type), never row
    g = b.build([k, f])  # f is an output: nothing may overwrite it
    lives = lifetimes(g)
    _, owner, shared = share_buffers(g, lives)
    assert owner[f] is not owner[e]
    assert owner[k] is owner[h] and owner[h] is owner[e]
    assert [s.kind for s in shared] == ["in-place", "in-place"]
    assert inplace_operands(g.nodes[-1]) == [1]
    out, _ = run_passes(g, "plan-memory")
    check(g, out)


def test_fused_kernel_overwrites_only_its_elementwise_operand() -> None:
    rng = np.random.default_rng(0)
    b = GraphBuilder("block")
    x = b.input("x", TensorType((1, 4, 8, 8), F32))
    w = b.const(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w")
    r = b.op1("math.exp", x)
    y = b.op1("nn.conv2d", r, w, pads=[1, 1, 1, 1])
    g = b.build([b.op1("nn.relu", b.op1("math.add", y, r))])
    fused, _ = run_passes(g, "fuse")
    kernel = next(n for n in fused.nodes if n.op == "fused")
    assert r in kernel.inputs
    # The conv reads r at many positions: overwriting r while the kernel runs would be wrong.
    assert inplace_operands(kernel) == []
    out, _ = run_passes(fused, "plan-memory")
    check(g, out)


def test_fused_epilogue_residual_is_shared() -> None:
    rng = np.random.default_rng(0)
    b = GraphBuilder("residual")
    x = b.input("x", TensorType((1, 4, 8, 8), F32))
    w = b.const(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w")
    a = b.op1("math.exp", x)
    res = b.op1("math.neg", x)
    y = b.op1("nn.conv2d", a, w, pads=[1, 1, 1, 1])
    g = b.build([b.op1("nn.relu", b.op1("math.add", y, res))])
    fused, _ = run_passes(g, "fuse")
    kernel = next(n for n in fused.nodes if n.op == "fused")
    assert [kernel.inputs[k] for k in inplace_operands(kernel)] == [res]
    out, _ = run_passes(fused, "plan-memory")
    check(g, out)
    place = read_plan(out)
    assert place[kernel.output].ref == place[res].ref


def test_greedy_packing_is_valid_and_exact_closes_the_gap() -> None:
    items = [(6, 0, 2), (6, 3, 3), (2, 4, 6), (5, 4, 4), (3, 2, 4)]  # greedy by size needs 11
    bound, _ = peak_live(items, 7)
    heuristic = greedy(items)
    assert heuristic.size == 11 and not conflicts(items, heuristic.offsets)
    best = exact(items, heuristic, bound, time_limit=10)
    assert best.size == bound == 10 and best.optimal and not conflicts(items, best.offsets)
    rng = random.Random(0)
    for _ in range(50):
        items = [(rng.randint(1, 64), a, a + rng.randint(0, 6)) for a in (rng.randint(0, 20) for _ in range(25))]
        bound, _ = peak_live(items, 30)
        p = pack(items, bound, exact_max=0, time_limit=1)
        assert not conflicts(items, p.offsets) and p.size >= bound


def test_solver_time_limit_falls_back_with_a_note() -> None:
    rng = random.Random(5)
    items = [(rng.randint(1, 99) * 64, a, a + rng.randint(0, 30)) for a in (rng.randint(0, 80) for _ in range(200))]
    bound, _ = peak_live(items, 120)
    p = pack(items, bound, exact_max=1000, time_limit=0.05, alignment=64)
    assert not conflicts(items, p.offsets) and p.size <= greedy(items).size
    if p.size > bound:
        assert p.note  # says why it stopped and what it kept


@pytest.mark.parametrize("name", ["mlp", "resnet", "densenet", "bert"])
def test_models_plan_within_five_percent_of_live_peak(name: str) -> None:
    module, inputs = make_model(name)
    g, _ = run_passes(graphopt.import_torch(module, inputs), "canonicalize,fuse")
    ctx = PassContext()
    out, _ = run_passes(g, "plan-memory{time-limit=2}", ctx=ctx)
    check(g, out)
    plan = make_plan(out, time_limit=2)
    assert plan.arena_size <= 1.05 * max(live_bytes_per_step(g))
    assert plan.arena_size >= plan.lower_bound
    items = [(b.size, b.start, b.end) for b in plan.buffers]
    assert not conflicts(items, plan.offsets)
    assert any(d.pass_name == "plan-memory" and d.subject == "arena arena0" for d in ctx.decisions)


def test_symbolic_batch_is_bound_and_said_so() -> None:
    b = GraphBuilder("dyn")
    x = b.input("x", TensorType(("B", 16), F32))
    g = b.build([b.op1("math.exp", b.op1("math.tanh", x))])
    out, _ = run_passes(g, "plan-memory")
    assert "bind={B=1}" in out.to_text()
    check(g, out)
    out8, _ = run_passes(g, "plan-memory{symbols=[B=8]}")
    assert "bind={B=8}" in out8.to_text()
    assert arena_sizes(out8)["arena0"] >= 8 * 16 * 4
    check(g, out8, bindings={"B": 8})
    assert "symbolic dims bound for planning: B=1" in make_plan(g).describe()


def test_replanning_replaces_old_annotations() -> None:
    g = chain()
    once, _ = run_passes(g, "plan-memory")
    twice, _ = run_passes(once, "plan-memory{in-place=false}")
    assert twice.to_text().count("mem=") == once.to_text().count("mem=")
    assert len({p.ref.offset for p in read_plan(twice).values()}) > 1


def test_lifetimes_chart_and_inspect_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = chain()
    chart = lifetimes_chart(g, make_plan(g))
    assert "arena0" in chart and "█" in chart
    module, inputs = make_model("resnet")
    path = tmp_path / "resnet.onnx"
    graphopt.export_onnx(graphopt.import_torch(module, inputs), path)
    png = tmp_path / "mem.png"
    assert cli_main(["inspect", str(path), "--no-ir", "--memory", "--plot", str(png), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    mem = payload["memory"]
    assert mem["arena_bytes"] >= mem["lower_bound_bytes"] > 0 and mem["peak_live_bytes"] > 0
    assert png.stat().st_size > 1000
    assert cli_main(["inspect", str(path), "--no-ir", "--memory"]) == 0
    text = capsys.readouterr().out
    assert "lower bound" in text and "lifetimes of" in text


def test_exact_solver_limits_are_noted_in_decisions() -> None:
    module, inputs = make_model("inception")
    g, _ = run_passes(graphopt.import_torch(module, inputs), "canonicalize")
    greedy_only = make_plan(g, exact_max=0)
    assert greedy_only.arena_size > greedy_only.lower_bound  # this graph is one the greedy packs loosely
    ctx = PassContext()
    out, _ = run_passes(g, "plan-memory{exact-max=0}", ctx=ctx)
    check(g, out)
    assert any("exact-max=0: heuristic only" in d.reason for d in ctx.decisions)
    ctx = PassContext()
    run_passes(g, "plan-memory{time-limit=2}", ctx=ctx)
    exact_run = [d for d in ctx.decisions if d.subject == "arena arena0"]
    assert exact_run[0].numbers["arena_bytes"] <= greedy_only.arena_size
    assert len(exact_run) == 2  # the plan, and a note on how the exact solver ended
