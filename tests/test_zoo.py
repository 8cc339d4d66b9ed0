"""The benchmark model zoo: every model builds, runs and has the published size; export and the
onnxslim comparison work end to end on a small model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from graphopt.benchmarks import optimize_vs_onnxslim as bench
from graphopt.benchmarks import zoo
from graphopt.benchmarks.onnx_export import ONNX_IR_VERSION, ONNX_OPSET, export_onnx

SMALL_IMAGE = 64  # every CNN but AlexNet pools globally, so 64x64 is a legal (and fast) input
CNNS = ["resnet50", "densenet121", "inception_v1", "squeezenet1_1", "shufflenet_v2", "mobilenet_v2"]


def _run(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        out = module(*inputs)
    return out if isinstance(out, tuple) else (out,)


def _close_to_reference(name: str, params: int) -> None:
    want = zoo.REFERENCE_PARAMS[name]
    assert abs(params - want) <= 0.05 * want, f"{name}: {params} params, published {want}"


@pytest.mark.parametrize("name", CNNS)
def test_cnn_builds_runs_and_has_published_size(name: str) -> None:
    module, inputs = zoo.build(name, image_size=SMALL_IMAGE)
    assert not module.training
    assert [tuple(t.shape) for t in inputs] == [(1, 3, SMALL_IMAGE, SMALL_IMAGE)]
    (logits,) = _run(module, inputs)
    assert logits.shape == (1, 1000)
    assert torch.isfinite(logits).all() and logits.std() > 1e-3  # the weights keep the signal alive
    if name in zoo.REFERENCE_PARAMS:
        _close_to_reference(name, zoo.count_params(module))
    else:  # GoogLeNet without aux heads: the paper's table sums to about 6.8M; ours is 7.0M
        assert 6.5e6 < zoo.count_params(module) < 7.2e6


def test_alexnet_at_its_fixed_input_size() -> None:
    module, inputs = zoo.build("alexnet")
    assert [tuple(t.shape) for t in inputs] == [(1, 3, 224, 224)]
    assert _run(module, inputs)[0].shape == (1, 1000)
    _close_to_reference("alexnet", zoo.count_params(module))


def test_batchnorm_stats_are_not_trivial() -> None:
    module, _ = zoo.build("mobilenet_v2", image_size=SMALL_IMAGE)
    bns = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 52
    for bn in bns:
        assert bn.running_mean.abs().max() > 1e-3
        assert (bn.running_var - 1).abs().max() > 1e-2
        assert (bn.weight - 1).abs().max() > 1e-2


def test_builds_are_deterministic() -> None:
    a_module, a_inputs = zoo.build("squeezenet1_1", image_size=SMALL_IMAGE)
    b_module, b_inputs = zoo.build("squeezenet1_1", image_size=SMALL_IMAGE)
    assert torch.equal(a_inputs[0], b_inputs[0])
    assert torch.equal(_run(a_module, a_inputs)[0], _run(b_module, b_inputs)[0])


def test_bert_base_full_size_once() -> None:
    # One build of all 12 layers: the parameter count needs them; seq 16 keeps the forward cheap.
    module, (ids, segments, mask) = zoo.build("bert_base", seq=16)
    _close_to_reference("bert_base", zoo.count_params(module))
    assert ids.dtype == torch.int64 and ids.shape == (1, 16)
    assert set(mask.flatten().tolist()) == {0, 1}
    hidden, pooled = _run(module, (ids, segments, mask))
    assert hidden.shape == (1, 16, 768) and pooled.shape == (1, 768)
    # Padding is masked out: changing padded tokens leaves the real positions' outputs alone.
    padded = mask[0] == 0
    other = ids.clone()
    other[0, padded] = (other[0, padded] + 1) % 30522
    hidden2, _ = _run(module, (other, segments, mask))
    torch.testing.assert_close(hidden2[0, ~padded], hidden[0, ~padded])
    assert not torch.allclose(hidden2[0, padded], hidden[0, padded])


def test_gpt2_small_two_layers_is_causal_and_scales_to_published_size() -> None:
    module, (ids,) = zoo.build("gpt2_small", layers=2, seq=16)
    (logits,) = _run(module, (ids,))
    assert logits.shape == (1, 16, 50257)
    other = ids.clone()
    other[0, 10] = (other[0, 10] + 1) % 50257
    (logits2,) = _run(module, (other,))
    torch.testing.assert_close(logits2[:, :10], logits[:, :10])  # the future never leaks backwards
    assert not torch.allclose(logits2[:, 10:], logits[:, 10:])
    # The 12-layer count follows from this one: add ten more blocks of the same size.
    per_block = zoo.count_params(module.blocks[0])
    _close_to_reference("gpt2_small", zoo.count_params(module) + 10 * per_block)


def test_sample_inputs_match_build_and_stay_valid() -> None:
    _, inputs = zoo.build("gpt2_small", layers=1, seq=16)
    assert torch.equal(zoo.sample_inputs("gpt2_small", seq=16)[0], inputs[0])
    ids, segments, mask = zoo.sample_inputs("bert_base", seed=7, seq=32)
    assert ids.min() >= 0 and ids.max() < 30522
    assert set(segments.flatten().tolist()) <= {0, 1} and mask[0, 0] == 1
    assert zoo.sample_inputs("resnet50", seed=3, image_size=32)[0].shape == (1, 3, 32, 32)
    with pytest.raises(KeyError):
        zoo.build("resnet51")


def test_describe_counts_params_and_flops() -> None:
    info = zoo.describe("squeezenet1_1")
    assert info.params == zoo.REFERENCE_PARAMS["squeezenet1_1"]
    assert 0.6e9 < info.flops < 0.8e9  # about 0.35 GMAC at 224x224
    assert info.inputs == ["float32[1, 3, 224, 224]"] and info.outputs == ["float32[1, 1000]"]
    assert "squeezenet1_1" in info.to_text()


def _ort_outputs(path: Path, inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)})


@pytest.mark.parametrize(
    "name, op", [("shufflenet_v2", "BatchNormalization"), ("inception_v1", "LRN")])
def test_export_keeps_batchnorm_and_lrn_and_matches_torch(tmp_path: Path, name: str, op: str):
    module, inputs = zoo.build(name, image_size=SMALL_IMAGE)
    path = tmp_path / f"{name}.onnx"
    model = export_onnx(module, inputs, path)
    assert model.ir_version == onnx.load(str(path)).ir_version == ONNX_IR_VERSION
    assert model.opset_import[0].version == ONNX_OPSET
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert op in {n.op_type for n in model.graph.node}
    assert bench.rel_error(_ort_outputs(path, inputs), [_run(module, inputs)[0].numpy()]) < 1e-4


def test_export_dynamic_batch_and_named_transformer_io(tmp_path: Path) -> None:
    module, inputs = zoo.build("bert_base", layers=1, seq=8)
    model = export_onnx(module, inputs, tmp_path / "bert.onnx", dynamic_batch=True)
    assert [i.name for i in model.graph.input] == ["input_ids", "token_type_ids", "attention_mask"]
    assert [o.name for o in model.graph.output] == ["last_hidden_state", "pooler_output"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "B"
    batch2 = tuple(torch.cat([t, t]) for t in inputs)
    want = [t.numpy() for t in _run(module, batch2)]
    assert bench.rel_error(_ort_outputs(tmp_path / "bert.onnx", batch2), want) < 1e-4


def test_zoo_cli_export_is_cached(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert zoo.main(["export", "squeezenet1_1", "--out", str(tmp_path)]) == 0
    assert "exported" in capsys.readouterr().out
    mtime = (tmp_path / "squeezenet1_1.onnx").stat().st_mtime_ns
    assert zoo.main(["export", "squeezenet1_1", "--out", str(tmp_path)]) == 0
    assert "cached" in capsys.readouterr().out
    assert (tmp_path / "squeezenet1_1.onnx").stat().st_mtime_ns == mtime


def test_rel_error() -> None:
    want = [np.array([1.0, -4.0]), np.array([[2.0]])]
    assert bench.rel_error(want, want) == 0.0
    assert bench.rel_error([np.array([1.0, -3.0]), np.array([[2.0]])], want) == pytest.approx(0.25)
    assert bench.rel_error([np.array([np.nan, 0.0]), np.array([[2.0]])], want) == float("inf")
    with pytest.raises(bench.StepError, match="shape"):
        bench.rel_error([np.zeros(3), np.zeros((1, 1))], want)


def test_benchmark_row_end_to_end(tmp_path: Path) -> None:
    row = bench.bench_model("squeezenet1_1", tmp_path)
    assert row.errors == {}
    assert row.nodes_original and row.nodes_graphopt and row.nodes_onnxslim
    assert row.ok, row
    assert "| squeezenet1_1 |" in bench.markdown_table([row])


def test_benchmark_reports_a_failing_step_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(src: Path, dst: Path, passes: str | None) -> Path:
        raise RuntimeError("no canonicalize today")

    monkeypatch.setattr(bench, "_graphopt_optimize", broken)
    row = bench.bench_model("squeezenet1_1", tmp_path, compile_=False)
    assert not row.ok and "no canonicalize today" in row.errors["graphopt optimize"]
    # the other tool still ran
    assert row.nodes_onnxslim is not None and row.err_onnxslim_ort is not None
    table = bench.markdown_table([row])
    assert "NO" in table and "no canonicalize today" in table
