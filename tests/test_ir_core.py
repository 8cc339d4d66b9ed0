"""The IR core: types, builder, printer/parser round trip, verifier errors, interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.ir import Cost, DType, GraphBuilder, IRParseError, TensorType, parse_ir
from graphopt.ir.annotations import BufferRef
from graphopt.ir.graph import Graph, Node, Value
from graphopt.ir.interpreter import InputError, run_graph
from graphopt.ir.parser import load_ir, save_ir
from graphopt.ir.printer import print_graph_with_constants
from graphopt.ir.types import broadcast_shapes
from graphopt.ir.verify import VerifyError, verify

F32 = DType.f32


def roundtrip(g: Graph) -> Graph:
    """Check both round-trip laws and the verifier; return the re-parsed graph."""
    verify(g)
    text, consts = print_graph_with_constants(g)
    g2 = parse_ir(text, consts)
    assert g2 == g
    assert g2.to_text() == text
    verify(g2)
    return g2


def mlp_graph() -> Graph:
    rng = np.random.default_rng(0)
    b = GraphBuilder("mlp")
    x = b.input("x", TensorType(("B", 8), F32))
    w = b.const(rng.standard_normal((8, 32)).astype(np.float32), "w1")
    bias = b.const(np.linspace(-1, 1, 32, dtype=np.float32), "b1")
    h = b.op1("math.add", b.op1("nn.matmul", x, w), bias)
    y = b.op1("nn.leaky_relu", h, alpha=0.2)
    return b.build([y])


def test_types_print_and_broadcast() -> None:
    assert str(TensorType(("B", 768), F32)) == "f32[B,768]"
    assert str(TensorType((), DType.i64)) == "i64[]"
    assert broadcast_shapes(("B", 1, 4), (3, 1)) == ("B", 3, 4)
    with pytest.raises(ValueError, match="do not broadcast"):
        broadcast_shapes((2, 3), (4, 3))
    with pytest.raises(ValueError):
        TensorType((-1,), F32)


def test_mlp_roundtrip_and_runs() -> None:
    g = roundtrip(mlp_graph())
    x = np.ones((3, 8), np.float32)
    (out,) = run_graph(g, [x])
    w, bias = [n.value for n in g.nodes[:2]]
    ref = x @ w + bias
    np.testing.assert_allclose(out, np.where(ref >= 0, ref, 0.2 * ref), rtol=1e-6)
    assert "%w1 = const f32[8,32] @w1" in g.to_text()
    assert "{alpha=0.2}" in g.to_text()


def test_inline_constants_roundtrip_exactly() -> None:
    b = GraphBuilder("c")
    x = b.input("x", TensorType((4,), F32))
    vals = np.array([0.1, -1e-8, np.inf, 3.0], np.float32)
    c = b.const(vals, "k")
    i = b.const(np.array([[1, -2], [3, 4]], np.int64), "idx")
    t = b.const(np.array(True), "flag")
    y = b.op1("math.add", x, c)
    g = roundtrip(b.build([y, i, t]))
    assert np.array_equal(g.nodes[0].value, vals)
    assert "[0.1, -1e-08, inf, 3.0]" in g.to_text()
    assert "%flag = const bool[] true" in g.to_text()


def test_multiple_results_and_fused_body_with_annotations() -> None:
    g = mlp_graph()
    matmul, add = g.nodes[2], g.nodes[3]
    fb = GraphBuilder("f0")
    a, bias = fb.add_input(Value(matmul.output.type)), fb.add_input(Value(add.inputs[1].type, "b1"))
    body = fb.build([fb.op1("nn.relu", fb.op1("math.add", a, bias))])
    b = GraphBuilder("m")
    b.add_input(g.inputs[0])
    for n in g.nodes[:3]:
        b.add(n)
    anns = {"cost": Cost(41.0, 3.2), "sched": {"tile": (32, 64, 4), "vec": 16}, "tier": "fast",
            "mem": BufferRef("arena0", 4096), "note": "two words"}
    (out,) = b.fused("f0", [matmul.output, add.inputs[1]], body, anns)
    g2 = roundtrip(b.build([out]))
    text = g2.to_text()
    assert "fused @f0(%0, %b1) cost=41.0us±3.2 sched={tile=[32, 64, 4], vec=16} tier=fast mem=arena0+4096" in text
    assert "    yield %" in text
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    ref = np.maximum(run_graph(g, [x])[0], 0)  # leaky vs relu differ: compare to relu of pre-activation
    pre = x @ g.nodes[0].value + g.nodes[1].value
    np.testing.assert_allclose(run_graph(g2, [x])[0], np.maximum(pre, 0), rtol=1e-6)
    assert ref.shape == (2, 32)


def test_parse_hand_written_text_with_comments() -> None:
    text = """
    // a comment
    graph @g(%x: f32[2,3]) -> (f32[3,2]) {
      %0 = tensor.transpose(%x) {perm=[1, 0]} : f32[3,2]
      return %0
    }
    """
    g = parse_ir(text)
    (out,) = run_graph(g, [np.arange(6, dtype=np.float32).reshape(2, 3)])
    assert out.shape == (3, 2)
    roundtrip(g)


@pytest.mark.parametrize(
    "text, message",
    [
        ("graph @g(%x: f32[2]) -> (f32[2]) {\n  %0 = math.add(%x, %y) : f32[2]\n  return %0\n}", "undefined value %y"),
        ("graph @g(%x: f32[2]) -> (f32[2]) {\n  %0 = math.nope(%x) : f32[2]\n  return %0\n}", "unknown op 'math.nope'"),
        ("graph @g(%x: f32[2]) -> (f32[3]) {\n  %0 = nn.relu(%x) : f32[3]\n  return %0\n}", "results are f32[2]"),
        ("graph @g(%x: f32[2]) -> (f32[2]) {\n  %0 = nn.relu(%x) {bogus=1} : f32[2]\n  return %0\n}", "no attribute 'bogus'"),
        ("graph @g(%x: f32[2]) -> (f32[2]) {\n  %0 = nn.relu(%x, %x) : f32[2]\n  return %0\n}", "takes 1 operands"),
        ("graph @g(%x: f32[2]) -> (f32[2]) {\n  %x = nn.relu(%x) : f32[2]\n  return %x\n}", "defined twice"),
        ("graph @g(%x: f32[2]) -> (f32[2]) {\n  %0 = const f32[2] @w\n  return %0\n}", "constant @w has no data"),
        ("graph @g(%x: f32[2]) -> (f32[2]) {\n  %0 = const f32[2] [1.0]\n  return %0\n}", "has 1 elements"),
        ("graph @g(%x: f32[2]) -> (f32[2]) {\n  %0 = nn.relu(%x) :: f32[2]\n  return %0\n}", "line 2"),
    ],
)
def test_parse_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(IRParseError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_ir(text)


def test_verifier_names_the_bad_node() -> None:
    g = mlp_graph()
    x = g.inputs[0]
    bad_type = Node("nn.relu", (x,), (Value(TensorType(("B", 9), F32), "r"),))
    with pytest.raises(VerifyError, match=r"node %r = nn.relu: result types f32\[B,9\] differ"):
        verify(Graph("g", (x,), (bad_type,), (bad_type.output,)))
    late = Node("nn.relu", (g.nodes[3].output,), (Value(g.nodes[3].output.type),))
    with pytest.raises(VerifyError, match="not defined before"):
        verify(Graph("g", (x,), (late,) + g.nodes, (late.output,)))
    dup = Node("nn.relu", (x,), (x,))
    with pytest.raises(VerifyError, match="defined twice"):
        verify(Graph("g", (x,), (dup,), (x,)))
    weird = g.nodes[3].with_annotations(cost=object())  # type: ignore[arg-type]
    with pytest.raises(VerifyError, match="annotation cost="):
        verify(Graph("g", g.inputs, g.nodes[:3] + (weird,) + g.nodes[4:], g.outputs))


def test_verifier_rejects_open_fused_body() -> None:
    g = mlp_graph()
    x = g.inputs[0]
    inner = Value(x.type)
    stray = Node("nn.relu", (x,), (Value(x.type),))  # reads the outer %x, not its own input
    body = Graph("f", (inner,), (stray,), stray.outputs)
    fused = Node("fused", (x,), (Value(x.type),), {}, {}, body, "f")
    with pytest.raises(VerifyError, match="not defined before"):
        verify(Graph("g", (x,), (fused,), fused.outputs))


def test_interpreter_checks_inputs() -> None:
    g = mlp_graph()
    with pytest.raises(InputError, match=r"input %x expects f32\[B,8\], got shape \[3, 7\]"):
        run_graph(g, [np.zeros((3, 7), np.float32)])
    with pytest.raises(InputError, match="got dtype float64"):
        run_graph(g, [np.zeros((3, 8))])
    with pytest.raises(InputError, match="takes 1 inputs"):
        run_graph(g, [])
    (out,) = run_graph(g, {"x": np.zeros((5, 8), np.float32)})
    assert out.shape == (5, 32)


def test_save_and_load_ir_files(tmp_path) -> None:
    g = mlp_graph()
    save_ir(g, tmp_path / "mlp.gir")
    assert (tmp_path / "mlp.npz").exists()
    assert load_ir(tmp_path / "mlp.gir") == g
