"""The peer benchmark harness on a tiny model: fields, output checks, geomean, plot, bad systems.

Nothing here asserts on a time: only that times were taken, checked and reported.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from graphopt.benchmarks.bench import BenchConfig, BenchResult, compare, parse_model_arg, run_bench
from graphopt.benchmarks.peers import SYSTEMS, ModelSpec, PeerOptions, Prepared, System
from graphopt.benchmarks.report import to_markdown, write_plot
from graphopt.cli import main
from graphopt.passes import run_passes

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny_resnet.onnx"
CONFIG = BenchConfig(runs=3, warmup=1, threads=1, backend="reference", gemm_size=64)
CELL_FIELDS = {"model", "system", "status", "reason", "detail", "prepare_s", "times_ms",
               "median_ms", "p10_ms", "p90_ms", "speedup", "gflops", "peak_fraction", "max_rel_err"}


class TinyCNN(nn.Module):
    """conv-relu-pool-linear: every system under test supports it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.fc(y)


def tiny_spec(name: str = "tiny_cnn") -> ModelSpec:
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    return ModelSpec(name, (x,), module=TinyCNN().eval())


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def result() -> BenchResult:
    systems = [SYSTEMS["graphopt"], SYSTEMS["torch-eager"], SYSTEMS["onnxruntime"]]
    return run_bench([tiny_spec("tiny_a"), tiny_spec("tiny_b")], systems, CONFIG, log=quiet)


def test_every_system_checked_and_timed(result: BenchResult) -> None:
    assert result.systems == ["graphopt", "torch-eager", "onnxruntime"]
    for cell in result.cells:
        assert cell.status == "ok", cell.reason
        assert len(cell.times_ms) == CONFIG.runs
        assert cell.p10_ms <= cell.median_ms <= cell.p90_ms
        assert cell.max_rel_err is not None and cell.max_rel_err <= CONFIG.rtol
        assert cell.prepare_s is not None and cell.speedup is not None
        assert cell.gflops is not None and cell.peak_fraction is not None
    assert result.cell("tiny_a", "torch-eager").speedup == pytest.approx(1.0)
    assert "backend reference" in result.cell("tiny_a", "graphopt").detail


def test_json_has_all_fields_and_geomean(result: BenchResult) -> None:
    data = json.loads(json.dumps(result.to_json(), default=str))
    assert {"config", "machine", "versions", "systems", "models", "cells", "geomean",
            "geomean_models", "geomean_systems", "load_average"} <= set(data)
    assert data["config"]["runs"] == 3 and data["config"]["threads"] == 1
    assert data["machine"]["measured_gflops"] > 0 and data["machine"]["derivation"]
    assert all(set(c) == CELL_FIELDS for c in data["cells"])
    assert [m["name"] for m in data["models"]] == ["tiny_a", "tiny_b"]
    assert all(m["flops"] > 0 and m["reference"] == "torch eager" for m in data["models"])
    assert data["geomean_models"] == ["tiny_a", "tiny_b"]
    for system in result.systems:
        medians = [result.cell(m, system).median_ms for m in ("tiny_a", "tiny_b")]
        expected = math.sqrt(medians[0] * medians[1])
        assert data["geomean"][system]["median_ms"] == pytest.approx(expected)
    assert data["geomean"]["torch-eager"]["speedup"] == pytest.approx(1.0)


def test_markdown_and_plot(result: BenchResult, tmp_path: Path) -> None:
    text = to_markdown(result)
    assert "measured fp32 GEMM peak" in text and "theoretical fp32 FMA peak" in text
    assert "| **geomean** (2) |" in text and "tiny_b" in text
    png = write_plot(result, tmp_path / "bench.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wrong_output_and_failing_systems_are_reported() -> None:
    def wrong(spec: ModelSpec, opts: PeerOptions) -> Prepared:
        return Prepared(lambda: [np.ones((1, 5), np.float32)])

    def broken(spec: ModelSpec, opts: PeerOptions) -> Prepared:
        raise RuntimeError("cannot build\nthis model")

    def crashes(spec: ModelSpec, opts: PeerOptions) -> Prepared:
        def run() -> list[np.ndarray]:
            raise ValueError("kernel exploded")
        return Prepared(run)

    systems = [SYSTEMS["torch-eager"], System("wrong", wrong), System("broken", broken),
               System("crashes", crashes)]
    res = run_bench([tiny_spec()], systems, CONFIG, log=quiet)
    assert res.cell("tiny_cnn", "torch-eager").status == "ok"
    bad = res.cell("tiny_cnn", "wrong")
    assert bad.status == "WRONG" and "differs from the reference" in bad.reason
    assert bad.speedup is None and bad.gflops is None and bad.max_rel_err > CONFIG.rtol
    err = res.cell("tiny_cnn", "broken")
    assert err.status == "error" and err.reason == "prepare: RuntimeError: cannot build this model"
    crash = res.cell("tiny_cnn", "crashes")
    assert crash.status == "error" and crash.reason.startswith("run: ValueError: kernel exploded")
    assert res.any_wrong and res.geomean_models == []
    text = to_markdown(res)
    assert "**WRONG**" in text and "error: prepare: RuntimeError" in text


def test_runs_are_counted_in_rounds() -> None:
    calls = []

    def counted(spec: ModelSpec, opts: PeerOptions) -> Prepared:
        module, inputs = spec.module, spec.torch_inputs()

        def run() -> list[np.ndarray]:
            calls.append(1)
            with torch.inference_mode():
                return [module(*inputs).numpy()]
        return Prepared(run)

    config = BenchConfig(runs=7, warmup=2, threads=1, gemm_size=64)
    res = run_bench([tiny_spec()], [System("counted", counted)], config, log=quiet)
    cell = res.cell("tiny_cnn", "counted")
    assert cell.status == "ok" and len(cell.times_ms) == 7
    assert len(calls) == 2 + 2 + 7  # warm-up, one untimed call per round (5 + 2 runs), timed


def test_compare_shapes_nan_and_tolerance() -> None:
    want = [np.array([1.0, 2.0], np.float32)]
    assert compare([np.array([1.0, 2.0005])], want, 1e-3, 1e-4)[1] is None
    assert compare([np.array([1.0, 2.1])], want, 1e-3, 1e-4)[1] is not None
    err, why = compare([np.array([1.0, np.nan])], want, 1e-3, 1e-4)
    assert err == math.inf and why is not None
    assert "shape" in (compare([np.zeros(3)], want, 1e-3, 1e-4)[1] or "")
    assert parse_model_arg("bert_base:layers=2,seq=16") == ("bert_base", {"layers": 2, "seq": 16})


def test_cli_bench_onnx_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = main(["bench", str(EXAMPLE), "--systems", "graphopt,torch-eager,onnxruntime",
                 "--backend", "reference", "--runs", "2", "--warmup", "1", "--threads", "1",
                 "--gemm-size", "64", "--json", str(out), "--plot", str(tmp_path / "b.png")])
    stdout, stderr = capsys.readouterr()
    assert code == 0
    assert "| tiny_resnet |" in stdout and "[bench] tiny_resnet · onnxruntime: prepare" in stderr
    data = json.loads(out.read_text())
    cells = {c["system"]: c for c in data["cells"]}
    assert cells["torch-eager"]["status"] == "skipped"
    assert cells["graphopt"]["status"] == cells["onnxruntime"]["status"] == "ok"
    assert data["geomean_systems"] == ["graphopt", "onnxruntime"]
    assert data["geomean_models"] == ["tiny_resnet"]
    assert (tmp_path / "b.png").exists()


def test_cli_bench_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "no_such_model"]) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err
    assert main(["bench", str(EXAMPLE), "--systems", "graphopt,nope"]) == 2
    assert "unknown system(s) nope" in capsys.readouterr().err
    assert main(["bench", "resnet50:layers=2"]) == 2
    assert "resnet50 takes no option layers" in capsys.readouterr().err


def test_kernel_call_chain_runs_apart_and_fused() -> None:
    from graphopt.benchmarks.kernel_call import chain, per_call_us

    g = chain(4, (1, 8))
    fused, _ = run_passes(g, "fuse")
    assert len(g.nodes) == 4 and len(fused.nodes) == 1  # four kernels apart, one fused
    apart_us, fused_us, _ = per_call_us(4, (1, 8), runs=5)  # checks both give the same result
    assert apart_us > 0 and fused_us > 0


def test_fusion_bench_tells_same_kernels_from_different_ones() -> None:
    from graphopt.benchmarks.fusion_bench import partition
    from graphopt.benchmarks.kernel_call import chain

    g = chain(3, (1, 8))
    fused, _ = run_passes(g, "fuse")
    again, _ = run_passes(g, "fuse")
    assert partition(fused) == partition(again) != partition(g)
    assert partition(fused) == [("math.neg+nn.relu+math.neg", ((1, 8),))]


def test_fusion_bench_times_only_the_kernels_the_partitions_do_not_share() -> None:
    from graphopt.benchmarks.fusion_bench import FusionRow, differing_kernels, time_difference, to_markdown
    from graphopt.benchmarks.kernel_call import chain
    from graphopt.passes.schedule import kernel_ops

    g = chain(3, (1, 8))
    fused, _ = run_passes(g, "fuse")
    assert differing_kernels(fused, fused) == ([], [])
    assert time_difference([], [], turns=20) == (0.0, 0.0, 1.0)  # nothing differs: nothing is timed
    only_fused, only_apart = differing_kernels(fused, g)
    assert [kernel_ops(n) for n in only_fused] == ["math.neg+nn.relu+math.neg"]
    assert [kernel_ops(n) for n in only_apart] == ["math.neg", "nn.relu", "math.neg"]
    us_fused, us_apart, ratio = time_difference(only_fused, only_apart, turns=3)
    assert us_fused > 0 and us_apart > 0 and ratio > 0
    # The saving the differing kernels measure, over the rule's end-to-end time: 2 ms less 0.1 ms.
    row = FusionRow("m", 1, 3, 0.1, 0.1, 2.2, 2.0, 0.0, False, 1, 3, 100.0, 200.0, 2.0)
    assert math.isclose(row.speedup_from_kernels, 2.0 / 1.9)
    same = FusionRow("s", 3, 3, 0.1, 0.1, 1.0, 1.1, 0.0, True)
    assert same.speedup_from_kernels == 1.0 and "1 (same code)" in to_markdown([row, same])
