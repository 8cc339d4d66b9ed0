"""The TVM backend executes graphopt's memory plan: one ``alloc_storage`` per arena of the planned
size, every planned value an ``alloc_tensor`` at its planned offset, kernels writing into them.

Outputs are compared with ``run_graph`` (f32: rtol 1e-4, atol 1e-5) and, where cheap, bit for bit
with the same graph built on TVM's own allocation (the kernels are the same, only their memory is
not). The allocations are read off the Relax module itself, also after TVM's own memory planning
(``StaticPlanBlockMemory``), which must leave graphopt's storage alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tvm
from models import make_model
from tvm import relax

import graphopt
from graphopt.backends.tvm import build_tvm
from graphopt.backends.tvm import executable as tvm_executable
from graphopt.backends.tvm import lower as tvm_lower
from graphopt.backends.tvm.executable import TVMExecutable
from graphopt.ir.annotations import BufferRef
from graphopt.ir.graph import Graph, GraphBuilder, Node
from graphopt.ir.interpreter import run_graph
from graphopt.ir.parser import parse_ir
from graphopt.ir.printer import print_graph, print_graph_with_constants
from graphopt.ir.types import DType, TensorType
from graphopt.passes import run_passes
from graphopt.passes.memory import arena_sizes, read_plan, strip_plan
from graphopt.passes.memory.lifetimes import VIEW_OPS

PIPELINE = "canonicalize,fuse,schedule{tune=none},plan-memory"
RNG = np.random.default_rng(11)
STORAGE = tvm.ir.Op.get("relax.memory.alloc_storage")
TENSOR = tvm.ir.Op.get("relax.memory.alloc_tensor")
ZERO_OFFSET = tvm.ir.Op.get("relax.memory.ensure_zero_offset")


def round_trips(g: Graph) -> Graph:
    """``g`` prints and parses back to itself (annotations included); returns it."""
    text, consts = print_graph_with_constants(g)
    again = parse_ir(text, consts)
    assert again == g and again.to_text() == text
    assert print_graph(again) == print_graph(g)
    return g


def planned(name: str, pipeline: str = PIPELINE) -> tuple[Graph, list[np.ndarray]]:
    """Test model ``name`` through ``pipeline``, and its example inputs."""
    module, example = make_model(name)
    g, _ = run_passes(round_trips(graphopt.import_torch(module, example)), pipeline)
    return round_trips(g), [t.numpy() for t in example]


def assert_matches(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> None:
    """Same shapes and dtypes; f32 within rtol 1e-4, everything else exactly."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_array_equal(g, w)


def allocations(func: relax.Function) -> tuple[dict[str, int], dict[str, tuple[str, int]], list[tuple[str, list[Any]]]]:
    """Storages (name -> bytes), each tensor variable placed in one (name -> (storage, offset)), and
    every kernel call with, per argument, its place or None, read off ``func``'s bindings."""
    storages: dict[str, int] = {}
    places: dict[str, tuple[str, int]] = {}
    calls: list[tuple[str, list[Any]]] = []
    for block in func.body.blocks:
        for b in block.bindings:
            call = b.value
            if not isinstance(call, relax.Call):
                continue
            if call.op.same_as(STORAGE):
                storages[b.var.name] = int(call.args[0].values[0])
            elif call.op.same_as(TENSOR):
                places[b.var.name] = (call.args[0].name, int(call.args[1].value))
            elif call.op.same_as(ZERO_OFFSET):
                places[b.var.name] = places[call.args[0].name]
            elif isinstance(call.op, relax.GlobalVar):
                calls.append((call.op.name_hint, [places.get(a.name) if isinstance(a, relax.Var) else None
                                                  for a in call.args]))
    return storages, places, calls


def tvm_planned(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` after the default build pipeline's passes up to and including TVM's own memory planning."""
    t = relax.transform
    seq = [relax.backend.DispatchSampling(), relax.backend.DispatchSortScan(), t.LegalizeOps(),
           t.RewriteDataflowReshape(), t.ToNonDataflow(), t.RemovePurityChecking(), t.CallTIRRewrite(),
           t.StaticPlanBlockMemory()]
    return tvm.transform.Sequential(seq)(mod)


# ------------------------------------------------------------------------------------ mechanism


def test_arena_tensors_are_views_at_their_offsets() -> None:
    # What the backend relies on: alloc_tensor at an offset, then ensure_zero_offset, is the
    # storage's pointer plus the offset (no copy), whatever the shape.
    seen: list[int] = []
    tvm.register_global_func("graphopt.test.pointers", lambda *ts: seen.extend(np.from_dlpack(t).ctypes.data for t in ts),
                             override=True)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, 16), "float32"))
    with bb.function("main", [x], attrs={"relax.force_pure": True}):
        arena = bb.emit(relax.op.memory.alloc_storage(relax.ShapeExpr([1024]), 0, "global", "uint8"))
        tensors = [bb.emit(relax.op.memory.ensure_zero_offset(bb.emit(relax.op.memory.alloc_tensor(
            arena, off, relax.ShapeExpr(shape), "float32")))) for off, shape in ((0, [4, 16]), (256, [4, 16]), (256, [64]))]
        bb.emit(relax.Call(relax.ExternFunc("graphopt.test.pointers"), tensors))
        bb.emit_func_output(relax.Tuple([x]))
    vm = relax.VirtualMachine(tvm.compile(bb.get(), "llvm"), tvm.cpu())
    vm["main"](tvm.runtime.tensor(np.zeros((4, 16), np.float32)))
    assert [p - seen[0] for p in seen] == [0, 256, 256] and seen[0] % 64 == 0


# --------------------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", ["mlp", "resnet", "mobilenet_v2", "squeezenet", "bert", "gpt2"])
def test_model_runs_inside_graphopts_arena(name: str) -> None:
    g, xs = planned(name)
    sizes = arena_sizes(g)
    exe = build_tvm(g)
    assert_matches(exe.run(xs), run_graph(g, xs))
    (use,) = exe.memory().values()
    assert use.plan == "graphopt" and dict(use.storages) == sizes
    assert f"memory: graphopt plan, arena0 {sizes['arena0']:,} bytes" in "\n".join(exe.describe())

    # The Relax module allocates exactly the planned arena, and every planned value (but the graph
    # outputs, which TVM allocates) at its planned offset; TVM's own planning keeps it that way.
    outputs = set(g.outputs)
    want = {(p.ref.arena, p.ref.offset) for v, p in read_plan(g).items() if v not in outputs}
    for mod in (exe.relax_module(), tvm_planned(exe.relax_module())):
        storages, places, _ = allocations(mod["main"])
        assert {k: n for k, n in storages.items() if k in sizes} == sizes
        assert {p for p in places.values() if p[0] in sizes} == want
    estimate = relax.analysis.estimate_memory_usage(tvm_planned(exe.relax_module()))
    assert "With memory planning" in estimate


@pytest.mark.parametrize("name", ["resnet", "bert"])
def test_same_bits_as_tvms_own_allocation(name: str) -> None:
    g, xs = planned(name)
    ours, theirs = build_tvm(g), build_tvm(round_trips(strip_plan(g)))
    assert next(iter(theirs.memory().values())).plan == "tvm"
    for a, b in zip(ours.run(xs), theirs.run(xs)):
        np.testing.assert_array_equal(a, b)


def test_in_place_sharing_is_honoured() -> None:
    g, xs = planned("resnet")
    places, outputs = read_plan(g), set(g.outputs)
    # Nodes the plan writes over an operand (the residual blocks' conv+add+relu over the residual).
    shared = [n for n in g.nodes if n.op not in VIEW_OPS and n.output in places and n.output not in outputs
              and any(u in places and places[u].ref == places[n.output].ref for u in n.inputs)]
    assert any(n.op == "fused" for n in shared)
    exe = build_tvm(g)
    (use,) = exe.memory().values()
    assert use.in_place == len(shared)
    # In the module: that many kernel calls whose result tensor is one of their operand tensors.
    _, _, calls = allocations(exe.relax_module()["main"])
    in_place = [args for _, args in calls if args[-1] is not None and args[-1] in args[:-1]]
    assert sorted(a[-1][1] for a in in_place) == sorted(places[n.output].ref.offset for n in shared)
    offsets = [(a, off) for a, off, _, _ in use.tensors]
    assert len(set(offsets)) < len(offsets)  # two values at one offset
    assert_matches(exe.run(xs), run_graph(g, xs))


def test_a_view_runs_no_kernel() -> None:
    g, xs = planned("resnet")
    exe = build_tvm(g)
    views = [r for r in exe.kernels() if r.schedule.startswith("view")]
    assert [r.ops for r in views] == ["tensor.reshape"]
    _, _, calls = allocations(exe.relax_module()["main"])
    assert not any(name == views[0].name for name, _ in calls)
    assert_matches(exe.run(xs), run_graph(g, xs))


# --------------------------------------------------------------------------- fallbacks, shapes


def _chain() -> Graph:
    # conv -> relu -> tanh -> exp: relu and tanh can each be written over their operand.
    b = GraphBuilder("chain")
    x = b.input("x", TensorType((1, 4, 8, 8), DType.f32))
    w = b.const(RNG.standard_normal((8, 4, 3, 3)).astype(np.float32), "w")
    y = b.op1("math.tanh", b.op1("nn.relu", b.op1("nn.conv2d", x, w, pads=(1, 1, 1, 1))))
    return b.build([b.op1("math.exp", y)])


def test_fallback_node_runs_in_the_arena(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> Any:
        raise tvm_lower.LoweringError("relu refused by the test")

    monkeypatch.setitem(tvm_lower.LOWERINGS, "nn.relu", refuse)
    pointers: list[list[int]] = []
    real = tvm_executable._fallback_fn

    def recording(node: Node) -> Any:
        run = real(node)

        def run_and_record(*args: Any) -> None:
            pointers.append([np.from_dlpack(a).ctypes.data for a in args])
            run(*args)

        return run_and_record

    monkeypatch.setattr(tvm_executable, "_fallback_fn", recording)
    g, _ = run_passes(round_trips(_chain()), "plan-memory")
    round_trips(g)
    places = read_plan(g)
    relu = next(n for n in g.nodes if n.op == "nn.relu")
    assert places[relu.output].ref == places[relu.inputs[0]].ref  # planned in place
    exe = build_tvm(g)
    (fb,) = exe.fallbacks()
    assert fb.ops == "nn.relu"
    (use,) = exe.memory().values()
    assert use.plan == "graphopt" and use.in_place == 2
    x = RNG.standard_normal((1, 4, 8, 8)).astype(np.float32)
    assert_matches(exe.run([x]), run_graph(g, [x]))
    # At run time the interpreter's operand and result are one address: the arena, not a copy.
    ((operand, result),) = pointers
    assert operand == result and operand % 64 == 0
    _, _, calls = allocations(exe.relax_module()["main"])
    assert fb.name not in {name for name, _ in calls}  # a packed call into the interpreter, not a kernel


def _dynamic() -> Graph:
    b = GraphBuilder("dyn")
    x = b.input("x", TensorType(("B", 12), DType.f32))
    h = b.op1("nn.relu", b.op1("nn.matmul", x, b.const(RNG.standard_normal((12, 20)).astype(np.float32), "w")))
    return b.build([b.op1("reduce.sum", b.op1("math.exp", h), axes=(1,), keepdims=False)])


def test_plan_for_another_batch_falls_back_with_a_note() -> None:
    g, _ = run_passes(round_trips(_dynamic()), "plan-memory")
    round_trips(g)
    exe = build_tvm(g)
    for batch in (1, 3):
        x = RNG.standard_normal((batch, 12)).astype(np.float32)
        assert_matches(exe.run([x]), run_graph(g, [x]))
    use = exe.memory()
    assert use[((1, 12),)].plan == "graphopt" and use[((3, 12),)].plan == "tvm"
    assert use[((3, 12),)].note == "graphopt's plan assumes B=1, these inputs have B=3"
    text = "\n".join(exe.describe())
    assert "memory: TVM's own allocation (StaticPlanBlockMemory): graphopt's plan assumes B=1, these inputs have B=3" in text
    assert "memory: graphopt plan, arena0" in text

    g3, _ = run_passes(_dynamic(), "plan-memory{symbols=[B=3]}")
    exe3 = build_tvm(round_trips(g3))
    x = RNG.standard_normal((3, 12)).astype(np.float32)
    assert_matches(exe3.run([x]), run_graph(g3, [x]))
    assert exe3.memory()[((3, 12),)].plan == "graphopt"


def test_a_plan_that_does_not_fit_the_graph_is_not_used() -> None:
    b = GraphBuilder("branch")
    x = b.input("x", TensorType((4, 16), DType.f32))
    a = b.op1("math.exp", x)
    g, _ = run_passes(b.build([b.op1("math.add", a, b.op1("math.tanh", a))]), "plan-memory")
    round_trips(g)
    # Everything at offset 0: exp's result and tanh's are both live at the add, in the same bytes.
    stale = round_trips(Graph(g.name, g.inputs, tuple(
        n if "mem" not in n.annotations else
        Node(n.op, n.inputs, n.outputs, n.attrs, {**n.annotations, "mem": BufferRef("arena0", 0)}, n.body,
             n.kernel_name) for n in g.nodes), g.outputs))
    exe = build_tvm(stale)
    xs = [RNG.standard_normal((4, 16)).astype(np.float32)]
    assert_matches(exe.run(xs), run_graph(g, xs))
    (use,) = exe.memory().values()
    assert use.plan == "tvm" and "does not fit the graph" in use.note and "overlap while both are live" in use.note
    assert next(iter(build_tvm(g).memory().values())).plan == "graphopt"


def test_tier_plan_runs_with_fast_memory_as_a_second_arena() -> None:
    g, xs = planned("resnet", "canonicalize,fuse,schedule{tune=none},plan-memory{tiers=npu-512k}")
    exe = build_tvm(g)
    assert_matches(exe.run(xs), run_graph(g, xs))
    (use,) = exe.memory().values()
    assert use.plan == "graphopt" and "sram0" in use.storages


# --------------------------------------------------------------------------- compile, save, load


def test_compile_uses_the_plan_and_it_survives_save_and_load(tmp_path: Path) -> None:
    module, example = make_model("resnet")
    compiled = graphopt.compile(module, example, backend="tvm", tune="none")
    g = round_trips(compiled.graph)
    size = arena_sizes(g)["arena0"]
    text = compiled.report().to_text()
    assert "pass plan-memory" in text and f"memory: graphopt plan, arena0 {size:,} bytes" in text
    want = compiled(*example).numpy()
    np.testing.assert_allclose(want, run_graph(g, [t.numpy() for t in example])[0], rtol=1e-4, atol=1e-5)

    loaded = graphopt.load(compiled.save(tmp_path / "m.gopt"))
    assert {v.name: p.ref for v, p in read_plan(loaded.graph).items()} == \
        {v.name: p.ref for v, p in read_plan(g).items()}
    np.testing.assert_array_equal(loaded(*example).numpy(), want)
    exe = loaded._exe
    assert isinstance(exe, TVMExecutable)
    assert f"memory: graphopt plan, arena0 {size:,} bytes" in "\n".join(exe.describe())


def test_a_peak_memory_budget_is_planned_after_the_reorder() -> None:
    module, example = make_model("mlp")
    compiled = graphopt.compile(module, example, backend="tvm", tune="none", peak_memory_budget=1 << 30)
    assert [p["name"] for p in compiled.report().passes][-2:] == ["reorder", "plan-memory"]
    assert "memory: graphopt plan" in compiled.report().to_text()
    np.testing.assert_allclose(compiled(*example).numpy(), module(*example).detach().numpy(), rtol=1e-4, atol=1e-5)
