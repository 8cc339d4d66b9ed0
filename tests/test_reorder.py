"""The ``reorder`` pass: exact order = brute force, never a higher peak, budgets and their errors."""

from __future__ import annotations

import itertools
import random
import time

import numpy as np
import pytest
from models import make_model

import graphopt
from graphopt.ir import DType, GraphBuilder, TensorType, parse_ir
from graphopt.ir.analysis import live_bytes_per_step
from graphopt.ir.graph import CONST, Graph
from graphopt.ir.interpreter import run_graph
from graphopt.ir.printer import print_graph_with_constants
from graphopt.ir.verify import verify
from graphopt.passes import PassContext, PassError, run_passes
from graphopt.passes.memory.order import (
    HEURISTICS,
    build_problem,
    exact_order,
    is_topological,
    local_search,
    lower_bound,
    peak,
)
from graphopt.passes.schedule_order import MemoryBudgetError, emit, pareto_points

F32 = DType.f32


def check(before: Graph, after: Graph, seed: int = 0) -> None:
    """Verified, round-trips through text, same numbers as before."""
    verify(after)
    text, consts = print_graph_with_constants(after)
    assert parse_ir(text, consts) == after
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal([d if isinstance(d, int) else 2 for d in v.type.shape]).astype(v.type.dtype.numpy)
          for v in before.inputs]
    for a, b in zip(run_graph(before, xs), run_graph(after, xs)):
        np.testing.assert_array_equal(a, b)


def random_dag(rng: random.Random, n: int) -> Graph:
    """A random DAG of concat / tile / slice nodes on 1-D tensors of random sizes (all sinks returned)."""
    b = GraphBuilder("r")
    vals = [b.input(f"x{i}", TensorType((rng.randint(1, 8),), F32)) for i in range(rng.randint(1, 2))]
    used = set()
    for _ in range(n):
        r = rng.random()
        if r < 0.4 and len(vals) > 1:
            ins = rng.sample(vals, rng.randint(2, min(3, len(vals))))
            v = b.op1("tensor.concat", *ins, axis=0)
        elif r < 0.7:
            ins = [rng.choice(vals)]
            v = b.op1("tensor.tile", ins[0], repeats=[rng.randint(1, 4)])
        else:
            ins = [rng.choice(vals)]
            v = b.op1("tensor.slice", ins[0], starts=[0], ends=[rng.randint(1, ins[0].type.shape[0])])
        used.update(ins)
        vals.append(v)
    return b.build([v for v in vals if v not in used and v not in b.inputs] or [vals[-1]])


def brute_force(g: Graph) -> int:
    """The least ``max(live_bytes_per_step)`` over every topological order, measured on real graphs."""
    p = build_problem(g)
    best = None
    for perm in itertools.permutations(range(p.n)):
        if is_topological(p, perm):
            value = max(live_bytes_per_step(emit(g, p, perm)))
            best = value if best is None else min(best, value)
    assert best is not None
    return best


def test_exact_order_matches_brute_force_on_random_dags() -> None:
    rng = random.Random(7)
    improved = 0
    for _ in range(40):
        g = random_dag(rng, rng.randint(3, 7))
        p = build_problem(g)
        given = max(live_bytes_per_step(g))
        assert peak(p, list(range(p.n))) == given  # the order model is exactly the IR's live profile
        result = exact_order(p, given, time.perf_counter() + 10)
        assert result.proven
        best = given if result.order is None else max(live_bytes_per_step(emit(g, p, result.order)))
        assert best == brute_force(g)
        assert lower_bound(p) <= best
        improved += best < given
    assert improved >= 5  # the random graphs do leave room to improve


def test_heuristics_and_local_search_give_valid_orders() -> None:
    rng = random.Random(3)
    for _ in range(20):
        p = build_problem(random_dag(rng, 12))
        for heuristic in HEURISTICS.values():
            order = heuristic(p)
            assert is_topological(p, order)
            improved = local_search(p, order, time.perf_counter() + 1)
            assert is_topological(p, improved) and peak(p, improved) <= peak(p, order)


def test_exact_search_budget_runs_out_cleanly() -> None:
    p = build_problem(random_dag(random.Random(1), 30))
    result = exact_order(p, peak(p, list(range(p.n))), deadline=time.perf_counter() + 10, max_states=3)
    assert result.order is None and not result.proven


def branches_in_bad_order() -> Graph:
    """Four independent branches whose big first ops all run before any small second op."""
    b = GraphBuilder("branches")
    x = b.input("x", TensorType((16,), F32))
    bigs = [b.op1("tensor.tile", b.op1("math.exp", x), repeats=[8]) for _ in range(4)]
    smalls = [b.op1("reduce.sum", v, axes=[0], keepdims=True) for v in bigs]
    return b.build([b.op1("tensor.concat", *smalls, axis=0)])


def test_reorder_lowers_a_bad_order_and_keeps_numerics() -> None:
    g = branches_in_bad_order()
    ctx = PassContext()
    out, log = run_passes(g, "reorder", ctx=ctx)
    check(g, out)
    assert max(live_bytes_per_step(out)) < max(live_bytes_per_step(g))
    counts = log[0]["counts"]
    assert counts["peak_after"] < counts["peak_before"] and counts["reordered"] == 1
    assert any(d.subject == "exact order search" and "optimal" in d.reason for d in ctx.decisions)


@pytest.mark.parametrize("name", ["resnet", "inception", "gpt2"])
def test_reorder_never_raises_the_peak_on_models(name: str) -> None:
    module, inputs = make_model(name)
    g, _ = run_passes(graphopt.import_torch(module, inputs), "canonicalize")
    out, log = run_passes(g, "reorder")
    assert max(live_bytes_per_step(out)) <= max(live_bytes_per_step(g))
    assert log[0]["counts"].get("peak_after", 0) >= log[0]["counts"].get("lower_bound", 0)
    check(g, out)
    if log[0]["counts"].get("reordered", 0) == 0:
        assert out is g  # an optimal given order is kept as is


def test_constants_move_with_their_first_reader() -> None:
    b = GraphBuilder("c")
    x = b.input("x", TensorType((4,), F32))
    y = b.op1("math.mul", b.op1("math.exp", x), b.const(np.arange(4, dtype=np.float32), "w"))
    g = b.build([y])
    p = build_problem(g)
    out = emit(g, p, list(range(p.n)))
    ops = [n.op for n in out.nodes]
    assert ops.index(CONST) == ops.index("math.mul") - 1


def test_budget_below_the_lower_bound_is_a_clear_error() -> None:
    g = branches_in_bad_order()
    bound = lower_bound(build_problem(g))
    with pytest.raises(PassError) as info:
        run_passes(g, "reorder{budget=100}")
    assert isinstance(info.value.__cause__, MemoryBudgetError)
    assert f"lower bound {bound:,} bytes" in str(info.value.__cause__)


def test_budget_picks_the_fastest_order_that_fits_and_reports_pareto_points() -> None:
    g = branches_in_bad_order()
    ctx = PassContext()
    budget = max(live_bytes_per_step(g))
    out, _ = run_passes(g, f"reorder{{budget={budget}}}", ctx=ctx)
    check(g, out)
    orders = [d for d in ctx.decisions if d.pass_name == "reorder" and d.subject.startswith("order ")]
    chosen = [d for d in orders if d.accepted]
    assert len(chosen) == 1 and chosen[0].numbers["peak_bytes"] <= budget
    fitting = [d for d in orders if d.numbers["peak_bytes"] <= budget]
    assert chosen[0].numbers["predicted_us"] == min(d.numbers["predicted_us"] for d in fitting)
    points = pareto_points(ctx)
    assert points and any(p["chosen"] for p in points)
    assert [p["peak_bytes"] for p in points] == sorted(p["peak_bytes"] for p in points)


def test_compile_budget_errors_and_reports() -> None:
    module, inputs = make_model("mlp")
    with pytest.raises(ValueError, match="below the lower bound"):
        graphopt.compile(module, inputs, backend="reference", peak_memory_budget=1)
    compiled = graphopt.compile(module, inputs, backend="reference", peak_memory_budget=1 << 20)
    report = compiled.report()
    assert report.memory["budget_bytes"] == 1 << 20 and report.memory["pareto"]
    assert "peak memory budget" in report.to_text()
    x = inputs[0].numpy()
    np.testing.assert_allclose(compiled(x), module(inputs[0]).detach().numpy(), rtol=1e-4, atol=1e-5)
