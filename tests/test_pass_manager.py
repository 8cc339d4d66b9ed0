"""The pass manager: pipeline specs, errors that name the pass, and the instruments."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pytest
from graphopt.ir.graph import Graph, GraphBuilder, Node, Value
from graphopt.ir.parser import IRParseError, load_ir, parse_ir
from graphopt.ir.printer import print_graph_with_constants
from graphopt.ir.types import DType, TensorType
from graphopt.ir.verify import VerifyError, verify
from graphopt.passes import (
    DumpIR,
    PassContext,
    PassError,
    PassManager,
    PassSpecError,
    PassVerifyError,
    PrintAfterChange,
    TimingInstrument,
    describe_options,
    format_pass,
    format_pipeline,
    parse_pipeline,
    register_pass,
    registered_passes,
    run_passes,
)
from graphopt.passes.canonicalize import Canonicalize


def checked(g: Graph) -> Graph:
    """``g`` after asserting that it verifies and round-trips through its text."""
    verify(g)
    text, consts = print_graph_with_constants(g)
    assert parse_ir(text, consts) == g
    return g


def small_graph(big: bool = False) -> Graph:
    """relu(x * 1 + c): one identity to remove; ``big`` makes c a 24-element (npz) constant."""
    b = GraphBuilder("small")
    x = b.input("x", TensorType((2, 12 if big else 3), DType.f32))
    one = b.const(np.float32(1.0), "one")
    c = b.const(np.arange(24 if big else 6, dtype=np.float32).reshape(2, -1), "c")
    y = b.op1("math.add", b.op1("math.mul", x, one), c)
    return checked(b.build([b.op1("nn.relu", y)]))


@dataclass(frozen=True)
class Toy:
    """A pass with one option of each supported type (not registered; used with a local registry)."""

    name: ClassVar[str] = "toy"
    size: int = 4
    ratio: float = 0.5
    label: str = "a"
    mode: Literal["fast", "exact"] = "fast"
    limit: int | None = None
    tiles: tuple[int, ...] = (32, 32)
    on: bool = True

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        """Return the graph unchanged."""
        return graph


@dataclass(frozen=True)
class Fails:
    """A pass that raises."""

    name: ClassVar[str] = "fails"

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        """Raise a KeyError."""
        raise KeyError("no such thing")


@dataclass(frozen=True)
class BreakTypes:
    """A deliberately broken pass: it gives the last node a result type inference disagrees with."""

    name: ClassVar[str] = "break-types"

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        """The graph with the last node's result retyped to f32[99]."""
        last = graph.nodes[-1]
        bad = Node(last.op, last.inputs, (Value(TensorType((99,), DType.f32), "broken"),), last.attrs)
        outputs = tuple(bad.output if v is last.output else v for v in graph.outputs)
        return Graph(graph.name, graph.inputs, graph.nodes[:-1] + (bad,), outputs)


@dataclass(frozen=True)
class NotAGraph:
    """A pass that returns the wrong kind of thing."""

    name: ClassVar[str] = "not-a-graph"

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        """Return a string."""
        return graph.to_text()  # type: ignore[return-value]


TOYS = {"toy": Toy}


# ---- specs


def test_canonicalize_is_registered() -> None:
    assert registered_passes()["canonicalize"] is Canonicalize
    assert parse_pipeline("canonicalize") == [Canonicalize()]
    assert parse_pipeline("") == [] and parse_pipeline("  ") == []


def test_options_are_kebab_case_fields_converted_to_their_types() -> None:
    (p,) = parse_pipeline("canonicalize{max-iterations=3, fold-constants=false,cse}")
    assert p == Canonicalize(max_iterations=3, fold_constants=False, cse=True)
    passes = parse_pipeline("canonicalize{identities=no},canonicalize")
    assert passes == [Canonicalize(identities=False), Canonicalize()]


def test_every_option_type() -> None:
    (p,) = parse_pipeline("toy{size=16 ratio=0.25 label=\"x y\" mode=exact limit=none tiles=[8,16,4] on=off}", TOYS)
    assert p == Toy(size=16, ratio=0.25, label="x y", mode="exact", limit=None, tiles=(8, 16, 4), on=False)
    (q,) = parse_pipeline("toy{limit=7,tiles=[]}", TOYS)
    assert q.limit == 7 and q.tiles == ()


def test_format_round_trips() -> None:
    spec = "canonicalize{fold-constants=false,max-iterations=3},canonicalize"
    passes = parse_pipeline(spec)
    assert format_pipeline(passes) == spec
    toy = Toy(size=2, mode="exact", limit=5, tiles=(1, 2))
    assert format_pass(toy) == "toy{size=2,mode=exact,limit=5,tiles=[1,2]}"
    assert parse_pipeline(format_pass(toy), TOYS) == [toy]
    assert PassManager(spec).spec == spec


@pytest.mark.parametrize("spec, message", [
        ("canonicalise", "unknown pass 'canonicalise' (did you mean 'canonicalize'?) (known passes: "),
    ("no-such-pass{max-size=16}", "unknown pass 'no-such-pass'"),
    ("canonicalize{label=\"open}", "unclosed '\"'"),
    ("canonicalize{max-iteration=2}", "has no option 'max-iteration' (did you mean 'max-iterations'?)"),
    ("canonicalize{bogus=1}", "known options: fold-constants (bool, default true)"),
    ("canonicalize{max-iterations=lots}", "option 'max-iterations' expects int, got 'lots'"),
    ("canonicalize{cse=maybe}", "option 'cse' expects bool, got 'maybe'"),
    ("canonicalize{cse=true,cse=false}", "option 'cse' given twice"),
    ("canonicalize{max-iterations=0}", "pass 'canonicalize': max-iterations must be at least 1, got 0"),
    ("canonicalize{cse=true", "unclosed '{'"),
    ("canonicalize}", "unbalanced '}'"),
    ("canonicalize,,canonicalize", "bad pipeline item ''"),
    ("canonicalize{cse=true}x", "bad pipeline item"),
])
def test_spec_errors_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(PassSpecError) as info:
        parse_pipeline(spec)
    assert message in str(info.value)


@pytest.mark.parametrize("spec, message", [
    ("toy{mode=slow}", "option 'mode' expects one of fast|exact, got 'slow'"),
    ("toy{tiles=8}", "option 'tiles' expects list of int like [a,b], got '8'"),
    ("toy{limit=x}", "option 'limit' expects int or none, got 'x'"),
    ("toy{ratio=half}", "option 'ratio' expects float, got 'half'"),
])
def test_typed_option_errors(spec: str, message: str) -> None:
    with pytest.raises(PassSpecError) as info:
        parse_pipeline(spec, TOYS)
    assert message in str(info.value)


def test_describe_options_lists_types_and_defaults() -> None:
    text = describe_options(Canonicalize)
    assert "max-iterations (int, default 10)" in text and "max-fold-size (int, default 1000000)" in text
    assert "mode (one of fast|exact, default fast)" in describe_options(Toy)


def test_register_pass_checks_the_class() -> None:
    class NotFrozen:
        name = "not-frozen"

        def run(self, graph: Graph, ctx: PassContext) -> Graph:
            return graph

    with pytest.raises(TypeError, match="frozen dataclass"):
        register_pass(NotFrozen)
    with pytest.raises(ValueError, match="kebab-case"):
        register_pass(type("BadName", (), {"name": "Bad_Name"}))
    with pytest.raises(ValueError, match="taken"):
        register_pass(dataclass(frozen=True)(type("Other", (), {"name": "canonicalize", "run": Toy.run})))
    assert register_pass(Canonicalize) is Canonicalize  # registering the same class again is harmless


# ---- running, errors and verification


def test_run_is_pure_and_records_stats() -> None:
    g = small_graph()
    text = g.to_text()
    ctx = PassContext()
    out = checked(PassManager("canonicalize").run(g, ctx))
    assert g.to_text() == text  # the input graph is untouched
    assert out.op_counts() == {"const": 1, "math.add": 1, "nn.relu": 1}
    assert ctx.stats["canonicalize"]["rule:mul-one"] == 1
    assert "rule:mul-one=1" in ctx.summary("canonicalize")
    assert ctx.summary("no-such-pass") == ""


def test_exception_in_pass_is_wrapped_with_its_name() -> None:
    with pytest.raises(PassError) as info:
        PassManager([Canonicalize(), Fails()]).run(small_graph())
    assert str(info.value).startswith("pass 'fails' failed: KeyError")
    assert info.value.pass_name == "fails"
    assert isinstance(info.value.__cause__, KeyError)


def test_pass_returning_something_else_is_an_error() -> None:
    with pytest.raises(PassError, match="pass 'not-a-graph' returned str, not a Graph"):
        PassManager([NotAGraph()]).run(small_graph())


def test_manager_rejects_non_passes() -> None:
    with pytest.raises(TypeError, match="is not a pass"):
        PassManager([object()])  # type: ignore[list-item]


def test_verify_after_pass_names_the_pass() -> None:
    g = small_graph()
    with pytest.raises(PassVerifyError) as info:
        PassManager([Canonicalize(), BreakTypes()]).run(g)
    message = str(info.value)
    assert message.startswith("after pass 'break-types': ")
    assert "result types f32[99] differ from inferred f32[2,3]" in message
    assert info.value.pass_name == "break-types"
    assert isinstance(info.value.__cause__, VerifyError)
    broken = PassManager([BreakTypes()], verify=False).run(g)  # without verification it goes through
    assert broken.outputs[0].type == TensorType((99,), DType.f32)


def test_invalid_input_is_rejected_before_any_pass() -> None:
    g = small_graph()
    bad = Graph(g.name, g.inputs, g.nodes[1:], g.outputs)  # drops the const that a node reads
    with pytest.raises(PassVerifyError, match="pipeline input: .* is not defined before this node"):
        PassManager("canonicalize").run(bad)


# ---- instruments


def test_dump_ir_writes_numbered_files_that_load_back(tmp_path: Path) -> None:
    folder = tmp_path / "dumps"
    g = small_graph(big=True)
    dump = DumpIR(folder)
    out = PassManager("canonicalize,canonicalize{cse=false}", [dump]).run(g)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["00-input.gir", "00-input.npz", "01-canonicalize.gir", "01-canonicalize.npz",
                     "02-canonicalize.gir", "02-canonicalize.npz"]
    assert [p.name for p in dump.files] == ["00-input.gir", "01-canonicalize.gir", "02-canonicalize.gir"]
    assert load_ir(folder / "00-input.gir") == g
    assert load_ir(folder / "02-canonicalize.gir") == out
    assert "@c" in (folder / "02-canonicalize.gir").read_text()  # the big constant sits in the npz


def test_dump_ir_keeps_the_broken_graph_for_debugging(tmp_path: Path) -> None:
    folder = tmp_path
    with pytest.raises(PassVerifyError):
        PassManager([BreakTypes()], [DumpIR(folder)]).run(small_graph())
    broken = folder / "01-break-types.gir"
    assert "%broken = nn.relu" in broken.read_text()
    with pytest.raises(IRParseError, match="nn.relu results are f32\\[2,3\\], but the text says f32\\[99\\]"):
        load_ir(broken)


def test_timing_report() -> None:
    timing = TimingInstrument()
    PassManager("canonicalize,canonicalize", [timing]).run(small_graph())
    assert [name for name, _ in timing.records] == ["canonicalize", "canonicalize"]
    assert all(s >= 0 for _, s in timing.records) and timing.total == sum(s for _, s in timing.records)
    lines = timing.report().splitlines()
    assert lines[0].split() == ["pass", "ms", "share"]
    assert lines[1].startswith("canonicalize") and lines[1].endswith("%")
    assert lines[-1].startswith("total") and len(lines) == 4


def test_print_after_change_prints_only_changes() -> None:
    out = io.StringIO()
    result = PassManager("canonicalize,canonicalize", [PrintAfterChange(out)]).run(small_graph())
    text = out.getvalue()
    assert text.count("// ----- after pass") == 1
    assert text.startswith("// ----- after pass 1 'canonicalize' -----\n")
    assert text.split("\n", 1)[1] == result.to_text()


def test_run_passes_log_for_the_cli(tmp_path: Path) -> None:
    g = small_graph()
    out, log = run_passes(g, "canonicalize,canonicalize{max-iterations=2}", dump_ir=tmp_path)
    checked(out)
    assert [e["name"] for e in log] == ["canonicalize", "canonicalize"]
    assert log[1]["spec"] == "canonicalize{max-iterations=2}"
    assert log[0]["changed"] and not log[1]["changed"]
    assert log[0]["counts"]["rule:mul-one"] == 1 and "rule:mul-one=1" in log[0]["summary"]
    assert log[1]["counts"] == {"iterations": 1}  # the second run only counts its own work
    assert all(e["seconds"] >= 0 for e in log)
    assert (tmp_path / "02-canonicalize.gir").exists()
