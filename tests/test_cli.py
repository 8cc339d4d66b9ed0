"""The ``graphopt`` command: inspect, optimize, run, compile, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from graphopt.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny_resnet.onnx"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_prints_ir_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "inspect", str(EXAMPLE))
    assert code == 0
    assert out.startswith("graph @")
    assert "nn.conv2d" in out and "peak activation memory" in out and "FLOPs" in out


def test_inspect_json_after_passes_and_dump_ir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run_cli(capsys, "inspect", str(EXAMPLE), "--passes", "canonicalize", "--json",
                           "--dump-ir", str(tmp_path))
    assert code == 0
    data = json.loads(out)
    assert "nn.batch_norm" not in data["summary"]["op_counts"]  # folded into the convolutions
    assert data["summary"]["parameters"] > 0 and data["summary"]["flops"] > 0
    assert data["summary"]["peak_activation_bytes"] > 0
    assert sorted(p.name for p in tmp_path.glob("*.gir"))[:2] == ["00-input.gir", "01-canonicalize.gir"]


def test_optimize_writes_equivalent_smaller_onnx(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_path = tmp_path / "opt.onnx"
    code, out, _ = run_cli(capsys, "optimize", str(EXAMPLE), "-o", str(out_path))
    assert code == 0 and out_path.exists()
    before, after = len(onnx.load(str(EXAMPLE)).graph.node), len(onnx.load(str(out_path)).graph.node)
    assert after < before
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    ref = ort.InferenceSession(str(EXAMPLE)).run(None, {"image": x})[0]
    new_session = ort.InferenceSession(str(out_path))
    got = new_session.run(None, {new_session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4)


def test_run_random_and_npz_inputs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run_cli(capsys, "run", str(EXAMPLE), "--json")
    assert code == 0
    assert json.loads(out)["outputs"][0]["shape"] == [1, 10]
    x = np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32)
    np.savez(tmp_path / "in.npz", image=x)
    code, out, _ = run_cli(capsys, "run", str(EXAMPLE), "--inputs", str(tmp_path / "in.npz"),
                           "--output", str(tmp_path / "out.npz"))
    assert code == 0 and "output 0: float32[2, 10]" in out
    ref = ort.InferenceSession(str(EXAMPLE)).run(None, {"image": x})[0]
    with np.load(tmp_path / "out.npz") as got:
        np.testing.assert_allclose(got["arr_0"], ref, rtol=1e-3, atol=1e-4)


def test_explain_lists_fusion_decisions(capsys: pytest.CaptureFixture[str]) -> None:
    # --rule: the rule alone decides, so the kernels are known in advance.
    code, out, _ = run_cli(capsys, "explain", str(EXAMPLE), "--node", "nn.max_pool2d", "--rejected", "--rule")
    assert code == 0
    assert "- [fuse] nn.max_pool2d %2 into kernel nn.conv2d+nn.relu (ending %1): illegal:" in out
    # By default the decisions compile makes: legal merges are decided by the shipped cost model
    # (settled by measuring when its intervals overlap), each with the predicted times.
    code, out, _ = run_cli(capsys, "explain", str(EXAMPLE), "--json")
    decisions = json.loads(out)["decisions"]
    assert any(d["accepted"] for d in decisions) and any(not d["accepted"] for d in decisions)
    assert all(d["pass"] == "fuse" and d["reason"] for d in decisions)
    legal = [d for d in decisions if not d["reason"].startswith("illegal")]
    assert legal and all("predicted fused" in d["reason"] and "fused_us" in d["numbers"] for d in legal)


def test_compile_artifact_then_run_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    art = tmp_path / "m.gopt"
    code, out, _ = run_cli(capsys, "compile", str(EXAMPLE), "-o", str(art))
    assert code == 0 and art.exists() and "pass canonicalize" in out
    code, out, _ = run_cli(capsys, "run", str(art), "--json")
    assert code == 0 and json.loads(out)["outputs"][0]["shape"] == [1, 10]


@pytest.mark.parametrize("case", ["missing", "not_onnx", "unsupported", "bad_shape", "bad_dtype", "bad_passes"])
def test_bad_input_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str) -> None:
    model = str(EXAMPLE)
    extra: list[str] = []
    if case == "missing":
        model = str(tmp_path / "nope.onnx")
        want = "no such file"
    elif case == "not_onnx":
        model = str(tmp_path / "junk.onnx")
        Path(model).write_text("this is not a protobuf")
        want = "junk.onnx"
    elif case == "unsupported":
        node = onnx.helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["sel"], name="nms_1")
        graph = onnx.helper.make_graph(
            [node], "g",
            [onnx.helper.make_tensor_value_info("boxes", onnx.TensorProto.FLOAT, [1, 4, 4]),
             onnx.helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [1, 1, 4])],
            [onnx.helper.make_tensor_value_info("sel", onnx.TensorProto.INT64, [None, 3])])
        proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
        proto.ir_version = 10
        model = str(tmp_path / "nms.onnx")
        onnx.save(proto, model)
        want = "nms_1"
    elif case in ("bad_shape", "bad_dtype"):
        x = np.zeros((1, 3, 32, 64), np.float32) if case == "bad_shape" else np.zeros((1, 3, 64, 64))
        np.savez(tmp_path / "in.npz", image=x)
        extra = ["--inputs", str(tmp_path / "in.npz")]
        want = "input %image expects f32[B,3,64,64]"
    else:
        extra = ["--passes", "canonicalize,no-such-pass"]
        want = "no-such-pass"
    code, out, err = run_cli(capsys, "run", model, *extra)
    assert code == 2, err
    assert err.startswith("graphopt: error:") and err.count("\n") == 1, err
    assert want in err
    assert "Traceback" not in err


def test_console_script_help() -> None:
    exe = Path(sys.executable).with_name("graphopt")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for command in ("inspect", "optimize", "run", "compile"):
        assert command in result.stdout
