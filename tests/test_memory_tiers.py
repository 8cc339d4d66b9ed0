"""Memory tiers: the simulator's numbers, the exact ILP against brute force, the baseline comparison."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest
from models import make_model

import graphopt
from graphopt.cli import random_inputs
from graphopt.ir import DType, GraphBuilder, TensorType, parse_ir
from graphopt.ir.graph import Graph
from graphopt.ir.interpreter import run_graph
from graphopt.ir.printer import print_graph_with_constants
from graphopt.ir.verify import verify
from graphopt.passes import PassContext, run_passes
from graphopt.passes.memory import make_plan, run_with_plan
from graphopt.passes.memory.tier_search import map_tiers, objective, solve_ilp, xla_baseline
from graphopt.passes.memory.tiers import (
    DRAM,
    KEEP,
    PREFETCH,
    TARGETS,
    Placement,
    TierProblem,
    all_dram,
    build_tier_problem,
    simulate,
    target_from_spec,
    validate,
)

F32 = DType.f32


def small_graph() -> Graph:
    """x -> exp -> (matmul with w) -> tanh, with exp's result read twice."""
    b = GraphBuilder("small")
    x = b.input("x", TensorType((1, 256), F32))  # 1 KiB
    w = b.const(np.full((256, 256), 0.01, np.float32), "w")  # 256 KiB
    e = b.op1("math.exp", x)
    m = b.op1("nn.matmul", e, w)
    return b.build([b.op1("math.add", b.op1("math.tanh", m), e)])


def test_all_dram_traffic_and_compulsory_bytes() -> None:
    g = small_graph()
    problem = build_tier_problem(g, target_from_spec("fast=4"))
    stats = simulate(problem, all_dram(problem))
    kib = 1024
    # x read once; w read once; e written, read twice; m written, read once; tanh written, read once;
    # the output written once.
    assert stats.offchip_bytes == kib + 256 * kib + 3 * kib + 2 * kib + 2 * kib + kib
    assert stats.compulsory_bytes == kib + 256 * kib + kib
    assert stats.noncompulsory_bytes == 7 * kib
    assert stats.time_us == pytest.approx(sum(stats.step_us))


def test_pluggable_kernel_time() -> None:
    g = small_graph()
    problem = build_tier_problem(g, TARGETS["npu-2m"], kernel_time=lambda node: 100.0)
    stats = simulate(problem, all_dram(problem))
    assert stats.step_us == (100.0,) * 4  # every step compute-bound at the given time


def placements(problem: TierProblem) -> Iterator[Placement]:
    """Every valid placement (brute force)."""
    options = []
    for t in problem.tensors:
        options.append(list(itertools.product((DRAM, KEEP, PREFETCH), repeat=len(t.uses))))
    for combo in itertools.product(*options):
        if validate(problem, combo) is None:
            yield combo


@pytest.mark.parametrize("kib", [1, 2, 3, 260])
def test_exact_ilp_matches_brute_force(kib: int) -> None:
    g = small_graph()
    problem = build_tier_problem(g, target_from_spec(f"fast={kib}"))
    best = min(objective(problem, p) for p in placements(problem))
    outcome = solve_ilp(problem, all_dram(problem), time_limit=10)
    assert outcome.optimal and outcome.placement is not None
    assert validate(problem, outcome.placement) is None
    assert objective(problem, outcome.placement) == pytest.approx(best, rel=1e-6)


@pytest.mark.parametrize(("name", "kib"), [("resnet", 32), ("gpt2", 32), ("inception", 16)])
def test_fewer_offchip_bytes_than_the_xla_style_baseline(name: str, kib: int) -> None:
    module, inputs = make_model(name)
    g, _ = run_passes(graphopt.import_torch(module, inputs), "canonicalize")
    problem = build_tier_problem(g, target_from_spec(f"fast={kib}"))
    plan = map_tiers(problem, time_limit=3)
    assert validate(problem, plan.placement) is None and plan.fast_arena <= kib * 1024
    assert plan.stats.noncompulsory_bytes < plan.baseline.noncompulsory_bytes
    assert plan.stats.time_us <= plan.baseline.time_us + 1e-9
    assert plan.reduction() > 0.1
    base = xla_baseline(problem)
    assert validate(problem, base) is None


def test_heuristic_only_beyond_the_exact_size_says_so() -> None:
    g = small_graph()
    problem = build_tier_problem(g, target_from_spec("fast=2"))
    plan = map_tiers(problem, time_limit=0.2, exact_max_segments=0)
    assert any("heuristic only" in n for n in plan.notes)
    assert plan.stats.offchip_bytes <= plan.baseline.offchip_bytes


def test_tiered_plan_runs_correctly_and_annotates() -> None:
    module, inputs = make_model("resnet")
    g, _ = run_passes(graphopt.import_torch(module, inputs), "canonicalize,fuse")
    ctx = PassContext()
    out, _ = run_passes(g, "plan-memory{tiers='fast=32'}", ctx=ctx)
    verify(out)
    text, consts = print_graph_with_constants(out)
    assert parse_ir(text, consts) == out
    assert "tier=fast" in text and "mem=sram0+" in text and "tier=dram" in text
    xs = random_inputs(g, seed=2)
    want = run_graph(g, xs)
    for a, b in zip(want, run_graph(out, xs)):
        np.testing.assert_array_equal(a, b)
    plan = make_plan(out, target=target_from_spec("fast=32"))
    assert plan.tiers is not None and plan.tiers.stays
    for a, b in zip(want, run_with_plan(out, plan, xs)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    tiers = [d for d in ctx.decisions if d.subject.startswith("tiers on")]
    assert tiers and tiers[0].numbers["offchip_bytes"] > 0


def test_bad_target_spec() -> None:
    assert target_from_spec("npu-8m").fast_bytes == 8 << 20
    assert target_from_spec("fast=64;dram-gbps=10").dram_gbps == 10
    assert target_from_spec("fast=64,dram-gbps=10").fast_bytes == 64 * 1024
    with pytest.raises(ValueError, match="bad memory target"):
        target_from_spec("sram=64")
