"""graphopt.compile / CompiledModel / graphopt.load end to end on the reference backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import graphopt
from graphopt.ir.printer import print_graph_with_constants
from graphopt.ir.verify import verify

from model_utils import export_onnx
from models import make_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny_resnet.onnx"


def check_graph(g: graphopt.Graph) -> None:
    verify(g)
    text, consts = print_graph_with_constants(g)
    assert graphopt.parse_ir(text, consts) == g


@pytest.mark.parametrize("kind", ["module", "exported_program", "onnx_path", "onnx_proto"])
def test_compile_every_model_kind(kind: str, tmp_path: Path) -> None:
    module, inputs = make_model("resnet")
    with torch.no_grad():
        ref = module(*inputs).numpy()
    if kind == "module":
        m = graphopt.compile(module, inputs)
    elif kind == "exported_program":
        m = graphopt.compile(torch.export.export(module, tuple(inputs)))
    elif kind == "onnx_path":
        export_onnx(module, inputs, tmp_path / "m.onnx")
        m = graphopt.compile(str(tmp_path / "m.onnx"))
    else:
        m = graphopt.compile(export_onnx(module, inputs))
    check_graph(m.graph)
    out = m(*inputs)
    assert isinstance(out, torch.Tensor)  # torch in, torch out
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-5)
    out_np = m(*[t.numpy() for t in inputs])
    assert isinstance(out_np, np.ndarray)
    np.testing.assert_allclose(out_np, ref, rtol=1e-4, atol=1e-5)
    assert "nn.batch_norm" not in m.graph.op_counts()
    assert m.report().nodes_after <= m.report().nodes_before


def test_report_dump_ir_and_bad_options(tmp_path: Path) -> None:
    m = graphopt.compile(EXAMPLE, dump_ir=tmp_path / "dumps")
    text = m.report().to_text()
    assert "pass canonicalize" in text and "backend tvm" in text  # auto picks TVM when it builds
    assert (tmp_path / "dumps" / "01-canonicalize.gir").exists()
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        graphopt.compile(EXAMPLE, backend="nope")
    with pytest.raises(ValueError, match="unknown target"):
        graphopt.compile(EXAMPLE, target="tpu")


def test_save_and_load_in_a_new_process(tmp_path: Path) -> None:
    m = graphopt.compile(EXAMPLE)
    art = m.save(tmp_path / "tiny.gopt")
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "want.npy", m(x))
    script = (
        "import numpy as np, graphopt, sys\n"
        f"m = graphopt.load({str(art)!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r}); want = np.load({str(tmp_path / 'want.npy')!r})\n"
        "sys.exit(0 if np.array_equal(m(x), want) else 1)\n"
    )
    assert subprocess.run([sys.executable, "-c", script], timeout=300).returncode == 0
    assert graphopt.load(art).graph == m.graph
    (tmp_path / "bad.gopt").write_text("nope")
    with pytest.raises(ValueError, match="not a graphopt artifact"):
        graphopt.load(tmp_path / "bad.gopt")


def test_compiled_onnx_matches_onnxruntime_with_dynamic_batch() -> None:
    m = graphopt.compile(str(EXAMPLE))
    assert m.graph.inputs[0].type.shape[0] == "B"
    session = ort.InferenceSession(str(EXAMPLE))
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 64, 64)).astype(np.float32)
        np.testing.assert_allclose(m(x), session.run(None, {"image": x})[0], rtol=1e-4, atol=1e-5)
    assert len(onnx.load(str(EXAMPLE)).graph.node) > m.report().nodes_after
