"""The ``schedule`` pass and its search space: legal candidates, the tuning database, measuring."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from graphopt.ir import DType, GraphBuilder, TensorType, parse_ir
from graphopt.ir.graph import FUSED, Graph, Node
from graphopt.ir.interpreter import run_graph
from graphopt.ir.printer import print_graph_with_constants
from graphopt.ir.verify import verify
from graphopt.passes import PassContext, parse_pipeline, run_passes
from graphopt.passes.schedule import kernel_workload, parse_tune
from graphopt.passes.search_space import (
    MAX_ACCUMULATORS,
    KernelInfo,
    analyze,
    candidates,
    is_legal,
    space,
)
from graphopt.passes.tuning_db import workload_key

F32 = DType.f32
TARGET = "llvm -mattr=+avx512f (test)"


def f32(*shape: int | str) -> TensorType:
    return TensorType(tuple(shape), F32)


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def check(before: Graph, after: Graph, *inputs: np.ndarray) -> None:
    """Verified, round-trips through the text form, and computes what ``before`` computes."""
    verify(after)
    text, consts = print_graph_with_constants(after)
    assert parse_ir(text, consts) == after and parse_ir(text, consts).to_text() == text
    for a, b in zip(run_graph(before, list(inputs)), run_graph(after, list(inputs))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def mlp(batch: int | str = 16) -> Graph:
    """Two matmul kernels (matmul+bias+relu, matmul) of different sizes, fused."""
    b = GraphBuilder("mlp")
    x = b.input("x", f32(batch, 64))
    h = b.op1("nn.relu", b.op1("math.add", b.op1("nn.matmul", x, b.const(rand(64, 128), "w1")),
                                b.const(rand(128, seed=1), "b1")))
    y = b.op1("nn.matmul", h, b.const(rand(128, 32, seed=2), "w2"))
    graph, _ = run_passes(b.build([y]), "fuse")
    return graph


def repeated_layers() -> Graph:
    """The same conv+relu layer three times (as in a ResNet stage), one workload."""
    b = GraphBuilder("stack")
    y = b.input("x", f32(1, 16, 8, 8))
    for i in range(3):
        y = b.op1("nn.relu", b.op1("nn.conv2d", y, b.const(rand(16, 16, 3, 3, seed=i), f"w{i}"), pads=[1, 1, 1, 1]))
    graph, _ = run_passes(b.build([y]), "fuse")
    return graph


def kernels(graph: Graph) -> list[Node]:
    return [n for n in graph.nodes if n.op != "const"]


class FakeMeasurer:
    """Times from a formula (fastest: tile (4,32), 2 threads, no unroll); counts every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Node, dict[str, Any]]] = []

    def __call__(self, kernel: Node, schedule: Mapping[str, Any]) -> float:
        self.calls.append((kernel, dict(schedule)))
        if not schedule:
            return 1e-2
        rows, cols = schedule.get("tile", (1, 1))[:2] if len(schedule.get("tile", ())) >= 2 else (1, 1)
        return 1e-4 * (1 + abs(rows - 4) + abs(cols - 32) / 16 + (schedule.get("par") != 2)
                       + schedule.get("unroll", 0) / 16 + (schedule.get("vec") != 16) * 0.5)


def distinct(calls: Sequence[tuple[Node, Mapping[str, Any]]]) -> set[tuple[int, str]]:
    """The (kernel, schedule) pairs measured: a pair timed again to confirm it is built once."""
    return {(id(k), json.dumps(s, sort_keys=True)) for k, s in calls}


def schedule(graph: Graph, tmp_path: Path, spec: str = "", measure: Any = None, model: Any = None,
             ) -> tuple[Graph, PassContext]:
    ctx = PassContext(target=TARGET, measure=measure, cost_model=model)
    options = ",".join(filter(None, [f"db={tmp_path / 'tuning.jsonl'}", spec]))
    out, _ = run_passes(graph, f"schedule{{{options}}}", ctx=ctx)
    return out, ctx


def scheduled(graph: Graph) -> dict[str, Any]:
    return {n.kernel_name or n.op: n.annotations["sched"] for n in graph.nodes if "sched" in n.annotations}


# ---------------------------------------------------------------------------------- search space


def _tile_ok(sched: Mapping[str, Any], info: KernelInfo) -> bool:
    tile, vec = tuple(sched.get("tile", ())), sched["vec"]
    if info.kind == "matmul":
        rows, cols = tile
        m, n = info.dims["m"], info.dims["n"]
        return (rows <= m and (cols % vec == 0 and n % cols == 0 or cols == n < vec)
                and rows * math.ceil(cols / 16) <= MAX_ACCUMULATORS)
    if info.kind == "conv2d":
        ocb, owb = tile
        og, ow = info.dims["og"], info.dims["ow"]
        return ((ocb % vec == 0 and og % ocb == 0 or ocb == og < vec) and 1 <= owb
                and (owb <= ow or ow % owb == 0) and math.ceil(ocb / 16) * owb <= MAX_ACCUMULATORS)
    if info.kind == "dwconv2d":
        return tile[0] <= max(info.dims["wo"], 1)
    return tile == ()


@pytest.mark.parametrize("info", [
    KernelInfo("matmul", {"m": 16, "n": 128}, packable=True, flops=1 << 22),
    KernelInfo("matmul", {"m": 1, "n": 1000}, packable=True, flops=1 << 21),
    KernelInfo("matmul", {"m": 12, "n": 6}, packable=False, flops=1000),
    KernelInfo("matmul", {"m": 197, "n": 768}, packable=True, flops=1 << 28),
    KernelInfo("conv2d", {"og": 64, "ow": 56}, packable=True, flops=1 << 28),
    KernelInfo("conv2d", {"og": 24, "ow": 7}, packable=False, flops=1 << 20),
    KernelInfo("dwconv2d", {"wo": 112}, flops=1 << 22),
    KernelInfo("elementwise", flops=100),
    KernelInfo("reduction", flops=1 << 20),
])
def test_search_space_is_legal_and_ordered(info: KernelInfo) -> None:
    cands = space(info)
    assert cands and {} not in cands
    assert len({json.dumps(c, sort_keys=True) for c in cands}) == len(cands)  # no duplicates
    for c in cands:
        assert is_legal(c, info) and _tile_ok(c, info), c
        assert c["vec"] in (8, 16) and c["par"] in (1, 2) and c.get("unroll", 0) in (0, 4, 16)
        assert c.get("pack", True) or info.packable
    # Base knobs first: the first candidate changes nothing but the tile.
    assert cands[0]["vec"] == max(c["vec"] for c in cands) and "unroll" not in cands[0] and "pack" not in cands[0]
    if not info.tiled:
        assert len(cands) == 2 * 2 * 3  # vec x par x unroll


def test_illegal_schedules_are_rejected() -> None:
    info = KernelInfo("matmul", {"m": 16, "n": 128}, packable=False)
    assert is_legal({}, info)
    assert not is_legal({"tile": (8, 48), "vec": 16, "par": 2}, info)  # 48 does not divide 128
    assert not is_legal({"tile": (6, 32), "vec": 16, "par": 2}, info)  # 6 does not divide 16
    assert not is_legal({"tile": (8, 32), "vec": 4, "par": 2}, info)
    assert not is_legal({"tile": (8, 32), "vec": 16, "par": 2, "pack": False}, info)  # nothing to pack
    assert is_legal({"tile": (8, 32), "vec": 16, "par": 2}, info)


def test_kernel_kinds_from_the_ir() -> None:
    graph = mlp()
    mm, second = kernels(graph)
    info = analyze(kernel_workload(mm, graph.constants()).nodes[-1])
    assert (info.kind, dict(info.dims), info.packable) == ("matmul", {"m": 16, "n": 128}, True)
    stack = repeated_layers()
    info = analyze(kernels(stack)[0], stack.constants())
    assert (info.kind, dict(info.dims), info.packable) == ("conv2d", {"og": 16, "ow": 8}, True)
    b = GraphBuilder("dw")
    x = b.input("x", f32(1, 8, 10, 10))
    y = b.op1("nn.conv2d", x, b.const(rand(8, 1, 3, 3), "w"), groups=8)
    assert analyze(b.build([y]).nodes[-1]).kind == "dwconv2d"
    b = GraphBuilder("sm")
    assert analyze(b.build([b.op1("nn.softmax", b.input("x", f32(4, 8)))]).nodes[-1]).kind == "reduction"
    assert candidates(second, constants=graph.constants())


def test_workload_is_static_canonical_and_shared_by_repeated_layers() -> None:
    graph = repeated_layers()
    convs = kernels(graph)
    keys = {workload_key(kernel_workload(n, graph.constants())) for n in convs}
    assert len(convs) == 3 and len(keys) == 1  # other weights, same workload
    dyn, one = mlp("B"), mlp(1)
    alone = kernel_workload(kernels(dyn)[0], dyn.constants())
    assert all(v.type.is_static for v in alone.inputs) and alone.inputs[0].type.shape == (1, 64)
    assert workload_key(alone) == workload_key(kernel_workload(kernels(one)[0], one.constants()))


def test_tune_option_parsing() -> None:
    assert parse_tune("fast") == ("fast", None) and parse_tune("30") == ("budget", 30.0)
    for bad in ("fastest", "-1", "0"):
        with pytest.raises(ValueError):
            parse_tune(bad)
    (p,) = parse_pipeline("schedule{tune=12.5,candidates=4}")
    assert p.tune == "12.5" and p.candidates == 4


# -------------------------------------------------------------------------------------- the pass


def test_fake_measurer_picks_the_fastest_and_annotates(tmp_path: Path) -> None:
    graph = mlp()
    measure = FakeMeasurer()
    out, ctx = schedule(graph, tmp_path, "tune=full", measure)
    check(graph, out, rand(16, 64, seed=5))
    sched = scheduled(out)
    assert set(sched) == {n.kernel_name or n.op for n in kernels(graph)}
    for kernel in {id(k): k for k, _ in measure.calls}.values():
        tried = [s for k, s in measure.calls if k is kernel]
        best = min(tried, key=lambda s: measure(kernel, s))
        assert best in sched.values() and best["tile"][0] == 4 and best["par"] == 2
    decisions = [d for d in ctx.decisions if d.pass_name == "schedule"]
    assert len(decisions) == 2 and all(d.accepted for d in decisions)
    assert "vs default 10000.0 us" in decisions[0].reason and decisions[0].numbers["speedup"] > 1
    assert "sched={tile=[4, 32]" in out.to_text()


def test_fast_mode_measures_few_candidates_of_the_heavy_kernels(tmp_path: Path) -> None:
    graph = mlp()
    measure = FakeMeasurer()
    out, ctx = schedule(graph, tmp_path, "tune=fast,candidates=4,coverage=0.5", measure)
    # The first kernel (16x64x128) holds most FLOPs: only it is tuned, with 4 schedules at most.
    assert len({id(k) for k, _ in measure.calls}) == 1 and len(distinct(measure.calls)) <= 4
    assert {} in [s for _, s in measure.calls]  # the default is always measured, to compare
    assert list(scheduled(out)) == [kernels(graph)[0].kernel_name]
    assert [d.accepted for d in ctx.decisions] == [True, False]
    check(graph, out, rand(16, 64, seed=5))


def test_tuning_database_hit_means_no_measuring(tmp_path: Path) -> None:
    graph = repeated_layers()
    first = FakeMeasurer()
    out1, _ = schedule(graph, tmp_path, "tune=fast", first)
    # Three repeated layers, one workload: measured once.
    assert len({id(k) for k, _ in first.calls}) == 1 and first.calls
    second = FakeMeasurer()
    out2, ctx = schedule(graph, tmp_path, "tune=fast", second)
    assert second.calls == [] and out2 == out1 and len(scheduled(out2)) == 3
    assert all("tuning database, no search" in d.reason for d in ctx.decisions)
    assert ctx.stats["schedule"]["db-hit"] == 3
    check(graph, out2, rand(1, 16, 8, 8))


def test_corrupted_record_is_skipped_with_a_warning_and_retuned(tmp_path: Path) -> None:
    graph = mlp()
    schedule(graph, tmp_path, "tune=fast", FakeMeasurer())
    db = tmp_path / "tuning.jsonl"
    lines = db.read_text().splitlines()
    first = json.loads(lines[0])
    first["latency_us"] = 0.001  # edited by hand: the checksum no longer matches
    db.write_text("\n".join([json.dumps(first)] + lines[1:]) + "\n")
    again = FakeMeasurer()
    with pytest.warns(UserWarning, match="bad checksum"):
        out, _ = schedule(graph, tmp_path, "tune=fast", again)
    assert len({id(k) for k, _ in again.calls}) == 1  # only the corrupted kernel is measured again
    check(graph, out, rand(16, 64, seed=5))


class NoisyMeasurer(FakeMeasurer):
    """The default's first sample is slow (a busy neighbour); the best candidate is 1 % faster."""

    def __call__(self, kernel: Node, schedule: Mapping[str, Any]) -> float:
        first = not any(not s for _, s in self.calls)
        t = super().__call__(kernel, schedule)
        if not schedule:
            return 5e-4 if first else 1e-4
        return max(t, 0.99e-4)


def test_default_is_kept_unless_clearly_beaten(tmp_path: Path) -> None:
    graph = mlp()
    measure = NoisyMeasurer()
    out, ctx = schedule(graph, tmp_path, "tune=fast,coverage=0.5", measure)
    assert scheduled(out) == {} and out == graph  # 1 % is noise: the default stays
    (tuned, _) = ctx.decisions
    assert tuned.accepted and tuned.reason.startswith("default, 100.0 us vs default 100.0 us")


def test_none_and_no_hook_leave_the_default(tmp_path: Path) -> None:
    graph = mlp()
    measure = FakeMeasurer()
    out, ctx = schedule(graph, tmp_path, "tune=none", measure)
    assert measure.calls == [] and scheduled(out) == {} and out == graph
    assert all(not d.accepted and "tune=none" in d.reason for d in ctx.decisions)
    out, ctx = schedule(graph, tmp_path, "tune=fast", None)
    assert scheduled(out) == {} and not any(d.accepted for d in ctx.decisions) and len(ctx.decisions) == 2
    assert "no timing hook" in ctx.decisions[0].reason


def test_existing_sched_annotation_is_kept(tmp_path: Path) -> None:
    graph = mlp()
    nodes = [n.with_annotations(sched={"tile": (2, 16)}) if n.op == FUSED else n for n in graph.nodes]
    pinned = Graph(graph.name, graph.inputs, tuple(nodes), graph.outputs)
    measure = FakeMeasurer()
    out, _ = schedule(pinned, tmp_path, "tune=full", measure)
    assert scheduled(out)[kernels(graph)[0].kernel_name] == {"tile": (2, 16)}
    assert all(k.op != FUSED or len(k.body.nodes) < 4 for k, _ in measure.calls)  # the pinned one is not searched


class ClockedMeasurer(FakeMeasurer):
    """Every build costs 0.1 s of a fake clock (re-timing a built schedule costs nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def __call__(self, kernel: Node, schedule: Mapping[str, Any]) -> float:
        if (id(kernel), json.dumps(dict(schedule), sort_keys=True)) not in distinct(self.calls):
            self.now += 0.1
        return super().__call__(kernel, schedule)


def test_time_budget_is_spread_over_kernels_by_flops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph = mlp()
    measure = ClockedMeasurer()
    monkeypatch.setattr("graphopt.passes.schedule.time.perf_counter", lambda: measure.now)
    out, _ = schedule(graph, tmp_path, "tune=2", measure)
    measured = {id(k): k for k, _ in measure.calls}.values()
    builds = [len(distinct([c for c in measure.calls if c[0] is k])) for k in measured]
    # 2 s buy 20 builds, shared by FLOPs: the 16x64x128 kernel (twice the FLOPs of the other, and
    # first) gets the most; unused time rolls over to the next kernel.
    assert len(builds) == 2 and builds[0] > builds[1] >= 2 and sum(builds) <= 21
    assert measure.now <= 2.5
    check(graph, out, rand(16, 64, seed=5))


class FakePredictor:
    """Predicts the fake measurer's times; ``width`` sets the relative interval width."""

    def __init__(self, width: float) -> None:
        self.width = width
        self.asked = 0

    def predict(self, kernels: Sequence[tuple[Node, Mapping[str, Any]]], target: str) -> tuple[Any, Any, Any]:
        assert target == TARGET
        self.asked += 1
        fake = FakeMeasurer()
        mean = np.array([fake(k, s) * 1e6 for k, s in kernels])
        return mean, mean * (1 - self.width / 2), mean * (1 + self.width / 2)


def test_cost_model_ranks_and_only_the_top_k_are_measured(tmp_path: Path) -> None:
    graph = mlp()
    measure = FakeMeasurer()
    out, ctx = schedule(graph, tmp_path, "tune=full,top-k=2", measure, FakePredictor(width=0.01))
    tuned = [d for d in ctx.decisions if d.accepted]
    assert len(tuned) == 2
    for d in tuned:
        assert d.numbers["k"] == 2 and d.numbers["measured"] == 3  # top-2 and the default
        assert "cost model top-2" in d.reason and d.numbers["interval_width_median"] < 0.02
    assert len(distinct(measure.calls)) == 6
    assert all(s["tile"][0] == 4 for s in scheduled(out).values())
    check(graph, out, rand(16, 64, seed=5))


def test_wide_intervals_widen_k(tmp_path: Path) -> None:
    measure = FakeMeasurer()
    _, ctx = schedule(mlp(), tmp_path, "tune=full,top-k=2", measure, FakePredictor(width=1.5))
    ks = [d.numbers["k"] for d in ctx.decisions if d.accepted]
    assert all(2 < k <= 6 for k in ks)  # overlapping candidates measured too, at most 3 x top-k
    assert len(distinct(measure.calls)) == sum(ks) + len(ks)


# --------------------------------------------------------------------------------- real TVM run


def test_real_tvm_tuning_of_a_small_matmul(tmp_path: Path) -> None:
    pytest.importorskip("tvm")
    from graphopt.backends.tvm import build_tvm
    from graphopt.backends.tvm.measure import TVMKernelMeasurer

    b = GraphBuilder("small")
    x = b.input("x", f32(8, 32))
    y = b.op1("nn.relu", b.op1("nn.matmul", x, b.const(rand(32, 64), "w")))
    graph, _ = run_passes(b.build([y]), "fuse")
    measure = TVMKernelMeasurer(number=1, repeat=3, min_repeat_ms=0)
    out, ctx = schedule(graph, tmp_path, "tune=fast,candidates=3", measure)
    assert measure.builds == 3 and measure.calls > 3  # the leaders are timed again, not rebuilt
    (decision,) = ctx.decisions
    assert decision.accepted and decision.numbers["best_us"] <= decision.numbers["default_us"]
    check(graph, out, rand(8, 32, seed=3))
    exe = build_tvm(out)
    sched = out.nodes[-1].annotations.get("sched")
    if sched:  # the backend builds the annotated tile
        assert f"tile=[{sched['tile'][0]},{sched['tile'][1]}]" in exe.kernels()[0].schedule
    xs = rand(8, 32, seed=4)
    np.testing.assert_allclose(exe.run([xs])[0], run_graph(graph, [xs])[0], rtol=1e-4, atol=1e-5)


def test_cli_tune_fills_the_database_then_reuses_it(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tvm")
    from graphopt.cli import main

    model = Path(__file__).resolve().parents[1] / "examples" / "tiny_resnet.onnx"
    monkeypatch.setenv("GRAPHOPT_CACHE_DIR", str(tmp_path))
    assert main(["tune", str(model), "--budget", "2", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    measured = [k for k in first["kernels"] if "default_us" in k]
    assert first["tune"] == "2.0" and measured and (tmp_path / "tuning.jsonl").exists()
    assert all(k["best_us"] <= k["default_us"] and k["flops"] > 0 for k in measured)
    assert main(["tune", str(model), "--budget", "2"]) == 0
    text = capsys.readouterr().out
    assert "db-hit=" in text and "measured=" not in text and "GFLOP/s" in text
    with pytest.raises(SystemExit) as exit_info:
        main(["compile", str(model), "-o", str(tmp_path / "m.gopt"), "--tune", "bogus"])
    assert exit_info.value.code == 2
    assert "tune must be none, fast, full or a number" in capsys.readouterr().err


class BrokenPredictor:
    """A cost model that cannot predict these kernels."""

    def predict(self, kernels: Sequence[tuple[Node, Mapping[str, Any]]], target: str) -> tuple[Any, Any, Any]:
        raise KeyError("no features for nn.matmul")


def test_a_failing_cost_model_falls_back_to_measuring(tmp_path: Path) -> None:
    graph = mlp()
    measure = FakeMeasurer()
    with pytest.warns(UserWarning, match="cost model could not rank"):
        out, ctx = schedule(graph, tmp_path, "tune=fast", measure, BrokenPredictor())
    assert all(d.accepted and "cost model" not in d.reason for d in ctx.decisions)
    check(graph, out, rand(16, 64, seed=5))
