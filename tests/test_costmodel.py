"""The learned cost model: features, datasets, training and metrics, adaptation, the fuse policy, collection."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from graphopt.cli import main as cli_main
from graphopt.costmodel import CostModel, CostModelLoadError, default_model_or_none, load_default_model, metrics
from graphopt.costmodel.adapt import evaluate_adaptation, linear_correction
from graphopt.costmodel.dataset import Dataset, DatasetError, Record, kernel_from_ir
from graphopt.costmodel.evaluation import cross_validate, evaluate_model, train
from graphopt.costmodel.features import (
    FEATURE_NAMES,
    SCHEMA_HASH,
    canonical_kernel,
    features_matrix,
    kernel_features,
    target_info,
)
from graphopt.costmodel.kernels import KernelJob, plan_graph, synthetic_graphs
from graphopt.ir import DType, GraphBuilder, TensorType, parse_ir
from graphopt.ir.analysis import node_flops
from graphopt.ir.annotations import Cost
from graphopt.ir.graph import CONST, FUSED, Graph, Node
from graphopt.ir.interpreter import run_graph
from graphopt.ir.printer import print_graph_with_constants
from graphopt.passes import PassContext, run_passes
from graphopt.passes.fuse import CONFIRM_ROUNDS, KERNEL_CALL_US, KERNEL_TIMES_FILE, MEASURE_ROUNDS
from graphopt.passes.schedule import kernel_ops

F32 = DType.f32
TARGET = target_info(threads=2)


def mlp_block(name_x: str = "x", name_w: str = "w") -> Graph:
    rng = np.random.default_rng(0)
    b = GraphBuilder("mlp")
    x = b.input(name_x, TensorType((8, 64), F32))
    w = b.const(rng.standard_normal((64, 32)).astype(np.float32), name_w)
    bias = b.const(rng.standard_normal(32).astype(np.float32), "bias")
    y = b.op1("math.add", b.op1("nn.matmul", x, w), bias)
    return b.build([b.op1("nn.relu", y)])


def fused_kernel(graph: Graph) -> Node:
    out, _ = run_passes(graph, "fuse")
    return next(n for n in out.nodes if n.op == FUSED)


# ------------------------------------------------------------------------------------------ features


def test_features_are_deterministic_and_ignore_value_names() -> None:
    a = fused_kernel(mlp_block())
    b = fused_kernel(mlp_block("input", "weight"))
    fa, fb = kernel_features(a, {"tile": (4, 16)}, TARGET), kernel_features(b, {"tile": (4, 16)}, TARGET)
    assert fa.shape == (len(FEATURE_NAMES),) and fa.dtype == np.float32
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(fa, kernel_features(a, {"tile": (4, 16)}, TARGET))
    # Every schedule knob changes the vector.
    for sched in ({"tile": (2, 32)}, {"vec": 8}, {"par": 1}, {"unroll": 4}, {"pack": False}):
        assert not np.array_equal(fa, kernel_features(a, sched, TARGET)), sched
    assert not np.array_equal(fa, kernel_features(a, {"tile": (4, 16)}, target_info(threads=1)))


def conv_kernel(out_channels: int = 48) -> Node:
    rng = np.random.default_rng(0)
    b = GraphBuilder("conv")
    x = b.input("x", TensorType((1, 16, 14, 14), F32))
    w = b.const(rng.standard_normal((out_channels, 16, 3, 3)).astype(np.float32), "w")
    return fused_kernel(b.build([b.op1("nn.relu", b.op1("nn.conv2d", x, w, pads=[1, 1, 1, 1]))]))


def test_tile_features_describe_the_loops_the_backend_builds() -> None:
    """A default schedule is described by the lowering's default tile, not by zeros; a channel block
    LLVM widens to a power of two and a tile past the register file read as such."""
    from graphopt.costmodel.features import TargetInfo

    avx2 = TargetInfo(name="llvm", vector_bits=256, cores=2, threads=1, l1d_kb=32, l2_kb=512, l3_kb=32768,
                      isa=("avx2", "fma"))
    kernel = conv_kernel()
    tile_features = [i for i, n in enumerate(FEATURE_NAMES) if n.startswith(("tile_", "log_panel", "log_reread"))]
    default = kernel_features(kernel, {}, avx2)
    # 48 channels, 14 columns on 8 lanes: a block of two vectors, the widest width block dividing 14.
    explicit = kernel_features(kernel, {"tile": (16, 7)}, avx2)
    np.testing.assert_array_equal(default[tile_features], explicit[tile_features])
    assert default[tile_features].any()

    def feature(sched: Mapping[str, Any], name: str) -> float:
        return float(kernel_features(kernel, sched, avx2)[FEATURE_NAMES.index(name)])

    assert feature({"tile": (24, 7)}, "tile_vec_widened") == pytest.approx(32 / 24 - 1)
    assert feature({"tile": (16, 7)}, "tile_vec_widened") == 0.0
    assert feature({"tile": (16, 14)}, "tile_reg_pressure") > 1 > feature({"tile": (16, 4)}, "tile_reg_pressure")
    # Unpacked weights are a strided channel block: scalar loads, fewer multiply-adds per load.
    unpacked = feature({"tile": (16, 7), "pack": False}, "tile_fma_per_load")
    assert unpacked < feature({"tile": (16, 7)}, "tile_fma_per_load")


def test_features_survive_a_fresh_process_and_the_record_ir() -> None:
    kernel = fused_kernel(mlp_block())
    text = print_graph_with_constants(Graph("kernel", kernel.inputs, (kernel,), kernel.outputs))[0]
    code = ("from graphopt.costmodel.dataset import kernel_from_ir;"
            "from graphopt.costmodel.features import kernel_features, target_info, SCHEMA_HASH;"
            "import sys, json; k = kernel_from_ir(sys.stdin.read());"
            "print(json.dumps([SCHEMA_HASH, kernel_features(k, {}, target_info(threads=2)).tolist()]))")
    out = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "123"})
    schema, feats = json.loads(out.stdout)
    assert schema == SCHEMA_HASH and len(SCHEMA_HASH) == 16
    np.testing.assert_allclose(feats, kernel_features(kernel, {}, TARGET), rtol=1e-6)


@pytest.mark.parametrize("exponent, cost", [(3.0, "simple"), (-2.0, "dividing"), (0.75, "dividing"),
                                            (1.7, "transcendental")])
def test_a_power_by_a_constant_costs_what_the_backend_spells_it_as(exponent: float, cost: str) -> None:
    """x ** 3 is two multiplies in the TVM backend, x ** 0.75 two square roots, x ** 1.7 libm's pow:
    the element-cost features say so, from the kernel and from the IR text a record stores."""
    b = GraphBuilder("gelu_part")
    x = b.input("x", TensorType((4, 256), F32))
    y = b.op1("math.mul", b.op1("math.pow", x, b.const(np.float32(exponent))), b.const(np.float32(0.044715)))
    kernel = fused_kernel(b.build([y]))
    text = print_graph_with_constants(Graph("kernel", kernel.inputs, (kernel,), kernel.outputs))[0]
    for k in (kernel, kernel_from_ir(text)):
        f = dict(zip(FEATURE_NAMES, kernel_features(k, {}, TARGET), strict=True))
        counted = {c: f[f"log_{c}_elems"] for c in ("simple", "dividing", "transcendental")}
        # 1024 elements of the pow in its class (log2 1025), the multiply's 1024 among the simple.
        assert counted[cost] == pytest.approx(np.log2(1025 + (1024 if cost == "simple" else 0)), rel=1e-6)
        assert sum(v > 0 for v in counted.values()) == (1 if cost == "simple" else 2)


def test_target_descriptions() -> None:
    host = target_info("llvm", threads=2)
    assert target_info('{"kind": "llvm", "num-cores": 2, "mcpu": "x"}', threads=2) == host  # TVM's JSON form
    older = target_info('{"kind": "llvm", "mattr": ["+avx2", "+fma"]}', threads=2)
    assert older.vector_bits <= 256 and set(older.isa) <= {"avx2", "fma"} and older.l2_kb == host.l2_kb
    assert target_info("llvm -mcpu=haswell -mattr=+avx2,+fma", threads=2) == older
    with pytest.raises(ValueError, match="CPU targets only"):
        target_info("cuda")


def test_weights_inside_the_body_give_the_same_features() -> None:
    graph = mlp_block()
    kernel = fused_kernel(graph)
    consts = {n.output: n for n in graph.nodes if n.op == CONST}
    # The schedule pass's form: the weight as a constant node inside the body, not an operand.
    body = kernel.body
    inner_w = body.inputs[1]
    w_node = Node(CONST, (), (inner_w,), consts[kernel.inputs[1]].attrs)
    moved = Node(FUSED, (kernel.inputs[0], kernel.inputs[2]), kernel.outputs, {}, {},
                 Graph(body.name, (body.inputs[0], body.inputs[2]), (w_node, *body.nodes), body.outputs), "k")
    assert canonical_kernel(moved).inputs != moved.inputs
    np.testing.assert_array_equal(kernel_features(moved, {}, TARGET), kernel_features(kernel, {}, TARGET))


# ------------------------------------------------------------------------------------------- dataset


def _record(i: int, device: str = "dev-a", schema: str = SCHEMA_HASH, model: str = "net") -> Record:
    return Record(model=model, kernel="nn.relu", workload=f"w{i}", schedule={}, threads=2, latency_us=1.0 + i,
                  repeats_us=(1.0 + i,), features=(0.0,) * len(FEATURE_NAMES), device=device, schema=schema)


def test_dataset_rejects_other_devices_and_schemas_with_a_count(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    lines = [_record(i).to_line() for i in range(3)] + [_record(9, device="dev-b").to_line()] * 2
    lines += [_record(7, schema="0" * 16).to_line(), "{not json"]
    path.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match=r"rejected 4 records \(2 other device, 1 other feature schema, 1 unreadable\)"):
        ds = Dataset.load(path, device="dev-a")
    assert len(ds) == 3 and ds.rejected == {"other device": 2, "other feature schema": 1, "unreadable": 1}
    # Appending a foreign record is refused (and counted); the file only grows by the admitted one.
    assert ds.append([_record(5), _record(6, device="dev-b")]) == 1
    assert ds.rejected["other device"] == 3
    assert len(path.read_text().splitlines()) == len(lines) + 1
    with pytest.raises(DatasetError, match="several devices"):
        Dataset.load(path, quiet=True)


# ---------------------------------------------------------------------------------- model and metrics


def test_metrics_on_hand_computed_cases() -> None:
    y = np.array([1.0, 2.0, 4.0, 8.0])
    assert metrics.mape(y, y * 1.1) == pytest.approx(0.1)
    assert metrics.kendall_tau(y, y[::-1]) == pytest.approx(-1.0)
    groups = ["a", "a", "b", "b"]
    assert metrics.pairwise_accuracy(y, np.array([2.0, 1.0, 1.0, 2.0]), groups) == pytest.approx(0.5)
    # Task a: the model picks the slower schedule (2 instead of 1); task b (weight 3) it picks 4.
    pred = np.array([2.0, 1.0, 1.0, 2.0])
    assert metrics.top_k_score(y, pred, groups, 1, [1, 1, 3, 3]) == pytest.approx((1 + 3 * 4) / (2 + 3 * 4))
    assert np.isnan(metrics.top_k_score(y, pred, groups, 2))  # two candidates, two picks: nothing to score
    y3, pred3 = np.array([3.0, 1.0, 2.0]), np.array([1.0, 3.0, 2.0])
    assert metrics.top_k_score(y3, pred3, ["t"] * 3, 2) == pytest.approx(1 / 2)
    assert metrics.search_score(y3, pred3, ["t"] * 3, fraction=0.5, min_candidates=3)["mean"] == pytest.approx(1 / 2)
    assert metrics.coverage(y, y - 1, y + 1) == 1.0 and metrics.coverage(y, y + 1, y + 2) == 0.0


def test_search_score_counts_only_the_search_candidate_sets_when_told_which() -> None:
    """A random schedule outside the search's space (the fastest here, predicted badly) does not
    count against the search: it could never have proposed it."""
    y = np.array([10.0, 11.0, 12.0, *range(13, 21), 5.0])  # the last: a random variant, fastest
    pred = np.array([10.0, 11.0, 12.0, *range(13, 21), 99.0])
    groups = ["k"] * len(y)
    everything = metrics.evaluate(y, pred, pred, pred, groups)["search_20pct"]
    assert everything["tasks"] == 1 and everything["mean"] == pytest.approx(5 / 10)
    in_space = [True] * 11 + [False]
    searched = metrics.evaluate(y, pred, pred, pred, groups, candidate_set=in_space)["search_20pct"]
    assert searched["tasks"] == 1 and searched["mean"] == pytest.approx(1.0)
    assert metrics.evaluate(y, pred, pred, pred, groups, candidate_set=[False] * 12)["search_20pct"] == {"tasks": 0}


def _fake_latency(job: KernelJob, features: np.ndarray) -> float:
    """A made-up machine: 0.1 us per call, FLOPs at 2 GFLOP/s, bytes moved at 1 GB/s, small tiles slower."""
    flops = node_flops(job.kernel)
    nbytes = 2 ** features[FEATURE_NAMES.index("log_bytes_io")] - 1  # what the kernel touches (a gather: rows)
    tile = job.schedule.get("tile", (8, 32))
    slow = 1.0 + 0.5 / max(1, int(np.prod(tile)) / 16) + 0.3 * (job.schedule.get("par") == 1)
    return float(0.1 + (flops / 2e3 + nbytes / 1e3) * slow)


@pytest.fixture(scope="module")
def synthetic_dataset() -> Dataset:
    """Real kernels (random graphs, four fake networks) with latencies from ``_fake_latency`` and noise."""
    rng = np.random.default_rng(0)
    ds = Dataset(None, "fake-device")
    for i, graph in enumerate(synthetic_graphs(80, seed=3)):
        for job in plan_graph(f"net{i % 4}", graph, rng, 4, origins=("rule", "unfused")):
            features = kernel_features(job.kernel, job.schedule, TARGET)
            latency = _fake_latency(job, features) * float(np.exp(rng.normal(0, 0.05)))
            ds.records.append(Record(
                model=job.model, kernel=job.ops, workload=job.workload, schedule=job.schedule, threads=2,
                latency_us=latency, repeats_us=(latency,), features=tuple(features.tolist()), weight=job.weight,
                origin=job.origin, ir=job.ir, device="fake-device"))
    return ds


def test_cross_validation_by_network_gives_sane_metrics(synthetic_dataset: Dataset) -> None:
    result = cross_validate(synthetic_dataset)
    pooled = result["pooled"]
    assert set(result["per_network"]) == {"net0", "net1", "net2", "net3"}
    assert pooled["n"] == len(synthetic_dataset)
    assert pooled["kendall_tau"] > 0.85 and pooled["mape"] < 0.3 and pooled["top5_score"] > 0.9
    assert 0.6 < pooled["coverage"] <= 1.0


def test_cross_validation_trains_also_on_other_devices_but_never_on_the_held_out_network(
        synthetic_dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    from graphopt.costmodel import evaluation

    here = synthetic_dataset.select(models=["net0", "net1"])
    other = Dataset(None, "other-device", synthetic_dataset.schema,
                    [replace(r, device="other-device") for r in synthetic_dataset.records])
    trained_on: list[tuple[set[str], int]] = []
    real_train = evaluation.train

    def spy(ds: Dataset, *, seed: int = 0) -> CostModel:
        trained_on.append(({r.model for r in ds.records}, len(ds)))
        return real_train(ds, seed=seed)

    monkeypatch.setattr(evaluation, "train", spy)
    result = cross_validate(here, also=other)
    assert set(result["per_network"]) == {"net0", "net1"} and result["pooled"]["n"] == len(here)
    assert sorted(result["held_out"]) == ["net0", "net1"]
    for (models, n), held_out in zip(trained_on, result["held_out"], strict=True):
        assert models == {"net0", "net1", "net2", "net3"} - {held_out}
        assert n == len(here.select(exclude_models=[held_out])) + len(other.select(exclude_models=[held_out]))


def test_save_load_round_trip_and_bad_files(synthetic_dataset: Dataset, tmp_path: Path) -> None:
    model = train(synthetic_dataset)
    path = model.save(tmp_path / "m.json")
    loaded = CostModel.load(path)
    x, _ = synthetic_dataset.arrays()
    for a, b in zip(model.predict_features(x[:50]), loaded.predict_features(x[:50])):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    mean, low, high = loaded.predict_features(x[:50])
    assert np.all(low <= mean) and np.all(mean <= high)
    # 1000 trees of depth 9 (the shipped model, trained on 26k records, is 15 MB)
    assert model.size_bytes(path) < 16 * 2**20
    assert json.loads(path.read_text())["schema"] == SCHEMA_HASH
    # Bad files: a clear error naming the file and the reason.
    with pytest.raises(CostModelLoadError, match="file not found"):
        CostModel.load(tmp_path / "missing.json")
    (tmp_path / "m.point.ubj").write_bytes(b"garbage")
    with pytest.raises(CostModelLoadError, match="cannot load the point booster m.point.ubj"):
        CostModel.load(path)
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "schema": "0" * 16}))
    with pytest.raises(CostModelLoadError, match="feature schema 0000000000000000.*retrain"):
        CostModel.load(path)
    path.write_text("{")
    with pytest.raises(CostModelLoadError, match="not readable JSON"):
        CostModel.load(path)


def test_bad_default_model_warns_and_compile_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import graphopt

    (tmp_path / "broken.json").write_text("not a model")
    monkeypatch.setenv("GRAPHOPT_COST_MODEL", str(tmp_path / "broken.json"))
    with pytest.warns(UserWarning, match="broken.json: the sidecar is not readable JSON.*falling back to measuring"):
        assert default_model_or_none() is None
    with pytest.warns(UserWarning, match="falling back to measuring"):
        compiled = graphopt.compile(mlp_block(), backend="reference", passes="canonicalize,fuse")
    assert all("cost" not in n.annotations for n in compiled.graph.nodes)
    x = np.ones((8, 64), np.float32)
    np.testing.assert_allclose(compiled(x), run_graph(mlp_block(), [x])[0], rtol=1e-5)


def test_shipped_model_loads_and_predicts() -> None:
    model = load_default_model()
    kernel = fused_kernel(mlp_block())
    mean, low, high = model.predict([(kernel, {}), (kernel, {"tile": (8, 32), "par": 1})], "llvm")
    assert np.all(np.isfinite(mean)) and np.all(low <= mean) and np.all(mean <= high) and np.all(low > 0)
    assert model.meta["schema"] == SCHEMA_HASH


def test_adaptation_to_a_new_condition(synthetic_dataset: Dataset) -> None:
    assert linear_correction(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0]), ridge=0.0) == pytest.approx(
        (2.0, 0.0))
    model = train(synthetic_dataset.select(models=["net0", "net1", "net2"]))
    # The new device runs everything three times slower.
    new = synthetic_dataset.select(models=["net3"])
    x, y = new.arrays()
    result = evaluate_adaptation(model, x, y * 3.0, new.groups(), 10, seed=1)
    assert result["after"]["mape"] < result["before"]["mape"] / 2
    assert result["after"]["kendall_tau"] >= 0.8
    adapted = result["model"]
    # A uniformly slower device: leave-one-out keeps the shift alone, and finds the factor 3.
    # A shift, plus shallow trees when leave-one-out on the 10 samples says they help (which they do
    # on some hosts: the fixture's features describe the machine the tests run on).
    assert adapted.meta["adapted"]["method"] in ("shift", "shift+trees") and adapted.meta["adapted"]["samples"] == 10
    assert adapted.meta["correction"]["shift"] == pytest.approx(np.log(3.0), abs=0.2)
    # The same device as the training one: nothing to shift, and no worse for what leave-one-out
    # chose (on some hosts, shallow trees that it says help a little: seen on an Intel Xeon).
    same = evaluate_adaptation(model, x, y, new.groups(), 10, seed=1)
    assert abs(same["model"].meta["correction"]["shift"]) < 0.2
    assert same["after"]["mape"] <= same["before"]["mape"] * 1.1 and same["after"]["kendall_tau"] >= 0.8


# ------------------------------------------------------------------------------------- fuse policy


class FakePredictor:
    """Predicts from a table keyed by a kernel's op chain; records what it was asked."""

    def __init__(self, table: Mapping[str, tuple[float, float, float]]) -> None:
        self.table = table
        self.asked: list[str] = []

    def predict(self, kernels: Sequence[tuple[Node, Mapping[str, Any]]], target: str) -> tuple[Any, Any, Any]:
        rows = []
        for node, _ in kernels:
            ops = kernel_ops(node)
            self.asked.append(ops)
            rows.append(self.table[ops])
        return tuple(np.array(col) for col in zip(*rows))


def _fuse_with(table: Mapping[str, tuple[float, float, float]], measure: Any = None) -> tuple[Graph, PassContext]:
    ctx = PassContext(cost_model=FakePredictor(table), measure=measure)
    out, _ = run_passes(mlp_block(), "fuse", ctx=ctx)
    return out, ctx


TABLE = {"nn.matmul": (10.0, 9.0, 11.0), "math.add": (2.0, 1.8, 2.2), "nn.relu": (2.0, 1.8, 2.2),
         "nn.matmul+math.add": (10.5, 9.5, 11.5), "math.add+nn.relu": (2.5, 2.0, 3.0)}


def test_cost_model_policy_accepts_what_it_predicts_faster() -> None:
    out, ctx = _fuse_with({**TABLE, "nn.matmul+math.add+nn.relu": (11.0, 10.0, 12.0)})
    kernels = [n for n in out.nodes if n.op != CONST]
    assert len(kernels) == 1 and [n.op for n in kernels[0].body.nodes] == ["nn.matmul", "math.add", "nn.relu"]
    first, second = ctx.decisions
    assert first.accepted and first.reason.startswith("cost model: predicted fused 10.5us")
    call = KERNEL_CALL_US  # the VM's cost of calling one more kernel
    assert first.numbers == pytest.approx({"fused_us": 10.5, "fused_low_us": 9.5, "fused_high_us": 11.5,
                                           "unfused_us": 12.0 + call, "unfused_low_us": 10.8 + call,
                                           "unfused_high_us": 13.2 + call})
    assert second.accepted and second.numbers["fused_us"] == 11.0
    assert second.numbers["unfused_us"] == pytest.approx(12.5 + call)
    # Kernels carry the prediction, and the annotated IR round-trips.
    assert kernels[0].annotations["cost"] == Cost(11.0, 1.0)
    text, consts = print_graph_with_constants(out)
    assert "cost=11.0us±1.0" in text and parse_ir(text, consts).to_text() == text


def test_cost_model_policy_rejects_a_confidently_slower_merge() -> None:
    out, ctx = _fuse_with({**TABLE, "nn.matmul+math.add+nn.relu": (30.0, 25.0, 35.0)})
    assert [d.accepted for d in ctx.decisions] == [True, False]
    assert ctx.decisions[1].reason.startswith("cost model: predicted fused 30us")
    kernels = [n for n in out.nodes if n.op != CONST]
    assert [k.op for k in kernels] == [FUSED, "nn.relu"] and kernels[1].annotations["cost"] == Cost(2.0, 0.2)
    x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    np.testing.assert_allclose(run_graph(out, [x])[0], run_graph(mlp_block(), [x])[0], rtol=1e-5)


def test_undecided_prediction_measures_or_keeps_the_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHOPT_CACHE_DIR", str(tmp_path))
    undecided = {**TABLE, "nn.matmul+math.add+nn.relu": (13.0, 11.0, 15.0)}  # worse, but intervals overlap
    _, ctx = _fuse_with(undecided)
    assert ctx.decisions[1].accepted and ctx.decisions[1].reason.startswith("rule (prediction undecided")

    calls: list[str] = []

    def measure(kernel: Node, schedule: Mapping[str, Any]) -> float:
        ops = kernel_ops(kernel)
        calls.append(ops)
        assert len(kernel.inputs) == 1  # the weights are built into the kernel, as the backend builds it
        # The first turn of the fused kernel finds the machine busy (twice as slow): the fastest turn counts.
        slow = 2.0 if calls.count(ops) == 1 and ops == "nn.matmul+math.add+nn.relu" else 1.0
        return slow * {"nn.matmul+math.add+nn.relu": 20e-6, "nn.matmul+math.add": 10e-6, "nn.relu": 2e-6}[ops]

    _, ctx = _fuse_with(undecided, measure)
    # In turns; the loss is confirmed with more turns before the merge is declined.
    assert calls == ["nn.matmul+math.add+nn.relu", "nn.matmul+math.add", "nn.relu"] * (MEASURE_ROUNDS + CONFIRM_ROUNDS)
    d = ctx.decisions[1]
    assert not d.accepted and d.reason.startswith("measured (prediction undecided): fused 20us vs apart 12.2us")
    assert d.numbers["measured_fused_us"] == pytest.approx(20.0) and d.numbers["fused_us"] == 13.0
    # The timings are remembered: a second compile decides the same without measuring anything.
    assert len((tmp_path / KERNEL_TIMES_FILE).read_text().splitlines()) == 3

    def must_not_measure(kernel: Node, schedule: Mapping[str, Any]) -> float:
        raise AssertionError("measured again")

    _, again = _fuse_with(undecided, must_not_measure)
    assert [(d.accepted, d.reason) for d in again.decisions] == [(d.accepted, d.reason) for d in ctx.decisions]


def test_a_loss_that_more_turns_do_not_confirm_keeps_the_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHOPT_CACHE_DIR", str(tmp_path))
    undecided = {**TABLE, "nn.matmul+math.add+nn.relu": (13.0, 11.0, 15.0)}
    turns: list[str] = []

    def measure(kernel: Node, schedule: Mapping[str, Any]) -> float:
        ops = kernel_ops(kernel)
        turns.append(ops)
        # The fused kernel's first turns all find the machine busy; a later one runs at its own speed.
        busy = 2.0 if ops == "nn.matmul+math.add+nn.relu" and turns.count(ops) <= MEASURE_ROUNDS else 1.0
        return busy * {"nn.matmul+math.add+nn.relu": 11e-6, "nn.matmul+math.add": 10e-6, "nn.relu": 2e-6}[ops]

    out, ctx = _fuse_with(undecided, measure)
    d = ctx.decisions[1]
    assert d.accepted and d.reason.startswith("measured (prediction undecided): fused 11us vs apart 12.2us")
    assert len(turns) == 3 * (MEASURE_ROUNDS + CONFIRM_ROUNDS)
    assert [n.op for n in out.nodes if n.op != CONST] == [FUSED]
    # The confirmed times are the remembered ones: a warm compile makes the same decision unmeasured.
    _, again = _fuse_with(undecided, lambda k, s: pytest.fail("measured again"))
    assert [(d.accepted, d.reason) for d in again.decisions] == [(d.accepted, d.reason) for d in ctx.decisions]


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_train_eval_json(synthetic_dataset: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data.jsonl"
    Dataset(data, "fake-device").append(synthetic_dataset.select(models=["net0", "net1", "net2"]).records)
    model = tmp_path / "model.json"
    assert cli_main(["costmodel", "train", str(data), "-o", str(model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bytes"] < 16 * 2**20
    assert cli_main(["costmodel", "eval", str(data), "--model", str(model), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pooled"]["kendall_tau"] > 0.9 and result["rejected"] == {}
    assert cli_main(["costmodel", "eval", str(tmp_path / "nope.jsonl")]) == 2
    assert "no dataset at" in capsys.readouterr().err
    assert cli_main(["costmodel", "eval", str(data), "--model", str(tmp_path / "nope.json")]) == 2
    assert "nope.json: file not found" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ collecting


@pytest.mark.slow
def test_collect_measures_and_resumes(tmp_path: Path) -> None:
    from graphopt.costmodel.collect import collect

    path = tmp_path / "data.jsonl"
    first = collect(path, models=[], synthetic=3, variants=1, budget_s=60, progress=False)
    assert first.measured > 0 and not first.failed
    ds = Dataset.load(path)
    rec = ds.records[0]
    assert rec.latency_us > 0 and len(rec.repeats_us) == 5 and rec.schema == SCHEMA_HASH and rec.versions
    np.testing.assert_allclose(kernel_features(kernel_from_ir(rec.ir), rec.schedule, target_info(threads=rec.threads)),
                               rec.features, rtol=1e-4, atol=1e-4)
    again = collect(path, models=[], synthetic=3, variants=1, budget_s=60, progress=False)
    assert again.measured == 0 and again.skipped_existing == first.planned


def test_collect_stops_before_a_batch_that_would_end_past_the_budget(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget is checked between batches: a batch as long as the last one is not started when
    it would end past the budget (a clock that advances 3 s per reading: one batch "takes" 3 s)."""
    from graphopt.costmodel import collect as collect_module

    class Clock:
        now = 0.0

        def perf_counter(self) -> float:
            self.now += 3.0
            return self.now

    monkeypatch.setattr(collect_module, "time", Clock())
    report = collect_module.collect(tmp_path / "data.jsonl", models=[], synthetic=6, variants=1, budget_s=13,
                                    progress=False)
    # Readings: start 3; check 6 (3 s spent) -> a batch from 9 to 12; check 15: 12 s spent fits the
    # 13 s budget, but another 3 s batch would not.
    assert report.stopped_by_budget and report.planned > collect_module.BATCH
    assert report.measured + sum(report.failed.values()) == collect_module.BATCH


def test_prune_then_collect_ops_remeasures_only_those_kernels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from graphopt.costmodel.collect import collect

    path = tmp_path / "data.jsonl"
    collect(path, models=[], synthetic=6, variants=1, budget_s=120, progress=False)
    ds = Dataset.load(path)
    stale = {r.key() for r in ds.records if "tensor.transpose" in r.kernel.split("+")}
    assert stale and len(stale) < len(ds)  # the random graphs hold some transposes, not only
    pruned = tmp_path / "pruned.jsonl.xz"
    assert cli_main(["costmodel", "prune", str(path), "--ops", "tensor.transpose", "-o", str(pruned), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dropped"] == len(stale)
    kept = Dataset.load(pruned)
    assert {r.key() for r in kept.records} == {r.key() for r in ds.records} - stale
    # Refill: only the transposing kernels are planned, and exactly the pruned ones are measured again.
    refill = tmp_path / "refill.jsonl"
    kept.write(refill)
    report = collect(refill, models=[], synthetic=6, variants=1, budget_s=120, progress=False, ops=["tensor.transpose"])
    assert report.planned == report.skipped_existing + report.measured and report.skipped_existing == 0
    assert {r.key() for r in Dataset.load(refill).records} == {r.key() for r in ds.records}
    assert cli_main(["costmodel", "prune", str(path), "--ops", "tensor.transpose", "-o", str(path)]) == 2


def test_refeaturize_recomputes_old_schema_features_from_the_ir(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from graphopt.costmodel.collect import collect

    path = tmp_path / "data.jsonl"
    collect(path, models=[], synthetic=3, variants=1, budget_s=60, progress=False)
    fresh = Dataset.load(path)
    # The same measurements as an older graphopt wrote them: another schema, other features.
    old = [replace(r, schema="0" * 16, features=tuple(0.0 for _ in r.features)) for r in fresh.records]
    stale = tmp_path / "stale.jsonl"
    stale.write_text("".join(r.to_line() + "\n" for r in old))
    assert len(Dataset.load(stale, quiet=True)) == 0  # never mixed in as they are
    out = tmp_path / "refeaturized.jsonl.xz"
    argv = ["costmodel", "refeaturize", str(stale), "-o", str(out), "--json"]
    assert cli_main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["records"] == len(fresh) and report["from_schemas"] == {"0" * 16: len(fresh)}
    again = Dataset.load(out)
    assert [r.key() for r in again.records] == [r.key() for r in fresh.records]
    np.testing.assert_allclose([r.features for r in again.records], [r.features for r in fresh.records],
                               rtol=1e-4, atol=1e-4)
    assert cli_main(["costmodel", "refeaturize", str(stale), "-o", str(stale)]) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for(ready: Any, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not come up in {seconds:.0f} s")
        time.sleep(0.3)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


@pytest.fixture
def rpc_server() -> Iterator[str]:
    """One TVM RPC server on 127.0.0.1, reached directly (``HOST:PORT``)."""
    port = _free_port()
    procs = [_start(["tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port), "--port-end",
                     str(port + 1)])]
    try:
        _wait_for(lambda: _listening(port), "the RPC server")
        yield f"127.0.0.1:{port}"
    finally:
        _stop(procs)


@pytest.fixture
def rpc_tracker() -> Iterator[str]:
    """A TVM RPC tracker and one server registered with it under key ``loopback``, on 127.0.0.1."""
    from tvm import rpc

    port = _free_port()
    procs = [_start(["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port), "--port-end",
                     str(port + 1)])]
    try:
        _wait_for(lambda: _listening(port), "the RPC tracker")
        server_port = _free_port()  # the server's default --port-end (9199) lies below a free high port
        procs.append(_start(["tvm.exec.rpc_server", "--tracker", f"127.0.0.1:{port}", "--key", "loopback",
                             "--host", "127.0.0.1", "--port", str(server_port), "--port-end",
                             str(server_port + 1)]))

        def registered() -> bool:
            queue = rpc.connect_tracker("127.0.0.1", port).summary().get("queue_info", {})
            return bool(queue.get("loopback", {}).get("free", 0))

        _wait_for(registered, "the RPC server's registration with the tracker")
        yield f"127.0.0.1:{port}:loopback"
    finally:
        _stop(procs)


def _collect_remote(address: str, tmp_path: Path) -> Dataset:
    from graphopt.costmodel.collect import collect

    path = tmp_path / "remote.jsonl"
    report = collect(path, models=[], synthetic=2, variants=0, budget_s=60, rpc=address, progress=False)
    assert report.measured > 0 and not report.failed
    ds = Dataset.load(path)
    assert ds.device == report.device and all(r.latency_us > 0 and len(r.repeats_us) == 5 for r in ds.records)
    # The remote device's records never mix into this machine's dataset.
    local = Dataset(tmp_path / "local.jsonl", "this machine")
    assert local.append(ds.records) == 0 and local.rejected == {"other device": len(ds)}
    return ds


@pytest.mark.slow
def test_collect_over_rpc_on_a_loopback_server(rpc_server: str, tmp_path: Path) -> None:
    assert _collect_remote(rpc_server, tmp_path).device == f"rpc:{rpc_server}"


@pytest.mark.slow
def test_collect_over_rpc_on_a_loopback_tracker(rpc_tracker: str, tmp_path: Path) -> None:
    assert _collect_remote(rpc_tracker, tmp_path).device == "rpc:loopback"


def test_rpc_address_errors() -> None:
    from graphopt.costmodel.collect import parse_rpc

    assert parse_rpc("10.0.0.1:9190:rasp4") == ("10.0.0.1", 9190, "rasp4")
    assert parse_rpc("localhost:9090") == ("localhost", 9090, None)
    with pytest.raises(ValueError, match="HOST:PORT:KEY"):
        parse_rpc("localhost")


def test_evaluate_model_on_own_data(synthetic_dataset: Dataset) -> None:
    model = train(synthetic_dataset)
    result = evaluate_model(model, synthetic_dataset)
    assert result["kendall_tau"] > 0.95 and result["tasks"] > 10
    x = features_matrix([], TARGET)
    assert x.shape == (0, len(FEATURE_NAMES))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [len(a) for a in model.predict([], "llvm")] == [0, 0, 0]


# ------------------------------------------------------------------ the shipped data, held out


@pytest.mark.slow
def test_shipped_dataset_held_out_network_meets_the_targets() -> None:
    """On this project's own measurements, a network held out of training is ranked and bracketed
    as the issue asks (Kendall tau >= 0.85, 80 % intervals covering 75-85 %); the full table is in
    costmodel/shipped/DATASET_CARD.md."""
    from graphopt.costmodel import SHIPPED

    shipped = Dataset.load(SHIPPED.parent / "dataset.jsonl.xz")
    ds = shipped.select(threads=1)
    assert len(ds) > 8000 and "resnet50" in ds.models()
    pooled = cross_validate(ds, holdout=["resnet50"])["pooled"]
    assert pooled["kendall_tau"] >= 0.85
    assert 0.75 <= pooled["coverage"] <= 0.9
    assert pooled["search_20pct"]["worst"] >= 0.95
    with pytest.raises(DatasetError, match="compressed and read-only"):
        shipped.append(ds.records[:1])
