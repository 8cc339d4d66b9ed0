"""Golden IR text tests: every case in ``tests/ir_cases/*.gir`` runs a pipeline on an input graph.

File format (inline constants only; ``//`` lines outside the directives are free comments)::

    // RUN: canonicalize                 pipeline spec for the file (a case may give its own)
    // -----                             starts a case
    graph @f(...) { ... }                input IR, in printed form
    // CHECK:                            the expected output IR follows, in printed form
    graph @f(...) { ... }
    // -----
    graph @g(...) { ... }
    // ERROR: some text                  parsing, verifying or running must fail with this text

A CHECK case also asserts: both texts round-trip (``print(parse(t)) == t``) and verify, the output
equals the expected text, the interpreter gives the same numbers before and after on random inputs,
and a pipeline of only ``canonicalize`` is at its fixed point on the expected output. Set
``GRAPHOPT_UPDATE_GOLDEN=1`` to rewrite CHECK blocks from the actual output (then review the diff).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from graphopt.ir.graph import Graph
from graphopt.ir.interpreter import run_graph
from graphopt.ir.parser import parse_ir
from graphopt.ir.printer import print_graph_with_constants
from graphopt.ir.verify import verify
from graphopt.passes import PassManager, parse_pipeline

CASES_DIR = Path(__file__).with_name("ir_cases")
SEPARATOR = "// -----"


@dataclass
class Case:
    """One golden case: where it is, the pipeline, the input, and the expected text or error."""

    file: Path
    index: int
    spec: str
    source: str
    expected: str | None
    error: str | None

    @property
    def id(self) -> str:
        first = next((ln for ln in self.source.splitlines() if ln.startswith("graph @")), "?")
        return f"{self.file.stem}:{self.index}:{first.split('(')[0].removeprefix('graph @')}"


def _code(lines: list[str]) -> str:
    kept = [ln for ln in lines if not ln.lstrip().startswith("//") and ln.strip()]
    return "\n".join(kept) + "\n" if kept else ""


def load_cases(path: Path) -> list[Case]:
    """The cases of one golden file."""
    chunks: list[list[str]] = [[]]
    for line in path.read_text().splitlines():
        if line.strip() == SEPARATOR:
            chunks.append([])
        else:
            chunks[-1].append(line)
    file_spec = next((ln.split(":", 1)[1].strip() for ln in chunks[0] if ln.startswith("// RUN:")), "")
    cases = []
    for i, chunk in enumerate(chunks[1:], start=1):
        spec = next((ln.split(":", 1)[1].strip() for ln in chunk if ln.startswith("// RUN:")), file_spec)
        check = next((j for j, ln in enumerate(chunk) if ln.strip() == "// CHECK:"), None)
        err = next((j for j, ln in enumerate(chunk) if ln.startswith("// ERROR:")), None)
        if (check is None) == (err is None):
            raise ValueError(f"{path.name} case {i}: needs exactly one of '// CHECK:' or '// ERROR:'")
        if check is not None:
            cases.append(Case(path, i, spec, _code(chunk[:check]), _code(chunk[check + 1:]), None))
        else:
            assert err is not None
            message = chunk[err].split(":", 1)[1].strip()
            cases.append(Case(path, i, spec, _code(chunk[:err]), None, message))
    return cases


ALL_CASES = [c for f in sorted(CASES_DIR.glob("*.gir")) for c in load_cases(f)]


def random_inputs(graph: Graph, seed: int) -> list[np.ndarray]:
    """Random arrays for the graph's inputs; every symbolic dim is 3."""
    rng = np.random.default_rng(seed)
    arrays = []
    for v in graph.inputs:
        shape = tuple(d if isinstance(d, int) else 3 for d in v.type.shape)
        dt = v.type.dtype
        if dt.is_float:
            arrays.append(rng.standard_normal(shape).astype(dt.numpy))
        elif dt.is_int:
            arrays.append(rng.integers(-4, 5, shape).astype(dt.numpy))
        else:
            arrays.append(rng.random(shape) < 0.5)
    return arrays


def assert_same_numbers(before: Graph, after: Graph, seed: int = 0) -> None:
    """The interpreter gives the same outputs (dtype, shape, values) for both graphs."""
    for s in (seed, seed + 1):
        inputs = random_inputs(before, s)
        for a, b in zip(run_graph(before, inputs), run_graph(after, inputs), strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_allclose(b.astype(np.float64), a.astype(np.float64), rtol=1e-5, atol=1e-6)


def assert_round_trip(text: str) -> Graph:
    """Parse ``text``, check that it prints back identically and verifies, and return the graph."""
    g = parse_ir(text)
    assert g.to_text() == text
    verify(g)
    return g


def _update(case: Case, actual: str) -> None:
    content = case.file.read_text()
    old = f"// CHECK:\n{case.expected}"
    if content.count(old) != 1:
        raise AssertionError(f"cannot update {case.id}: its CHECK block is not unique in the file")
    case.file.write_text(content.replace(old, f"// CHECK:\n{actual}"))


def test_cases_exist() -> None:
    assert len(ALL_CASES) >= 40
    assert any(c.error for c in ALL_CASES) and any(c.expected for c in ALL_CASES)


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_golden(case: Case) -> None:
    if case.error is not None:
        with pytest.raises(Exception) as info:
            g = parse_ir(case.source)
            verify(g)
            PassManager(case.spec).run(g)
        assert case.error in str(info.value)
        return
    assert case.expected is not None
    before = assert_round_trip(case.source)
    after = PassManager(case.spec).run(before)
    text, consts = print_graph_with_constants(after)
    assert parse_ir(text, consts) == after
    if os.environ.get("GRAPHOPT_UPDATE_GOLDEN") and text != case.expected:
        _update(case, text)
    else:
        assert text == case.expected
        assert_round_trip(case.expected)
    assert_same_numbers(before, after, seed=case.index)
    if all(p.name == "canonicalize" for p in parse_pipeline(case.spec)):
        assert PassManager(case.spec).run(after) == after, "canonicalize is not at a fixed point"
