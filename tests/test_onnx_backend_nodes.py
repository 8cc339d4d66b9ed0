"""The ONNX backend node tests shipped with the ``onnx`` package, run through import + interpreter.

The wheel carries the test *definitions* (``onnx.backend.test.case.node``), not the data files,
so the cases are generated in memory (~5 s). Every case whose model imports is run on its first
data set and compared with the expected outputs; cases that raise ``UnsupportedOpError`` are
counted, not failed. One test asserts the pass count stays above a measured floor and lists the
failures in its message.
"""

from __future__ import annotations

import collections
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from graphopt.frontends.errors import UnsupportedOpError
from graphopt.frontends.onnx import import_onnx
from graphopt.ir.graph import Graph
from graphopt.ir.interpreter import run_graph
from graphopt.ir.parser import parse_ir
from graphopt.ir.printer import print_graph_with_constants
from graphopt.ir.verify import verify

PASS_FLOOR = 885
"""Measured passes minus a small margin: a change that breaks imported ops drops below it."""


def _tolerance(dtype: np.dtype) -> tuple[float, float]:
    # Low-precision expectations are computed in float32 and rounded once; the interpreter rounds
    # after every op, so they get looser bounds.
    if dtype == np.float16:
        return 1e-2, 1e-3
    if dtype.name == "bfloat16":
        return 2e-2, 1e-2
    return 1e-3, 1e-5


@dataclass
class Summary:
    """Outcome of the whole run."""

    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unsupported: collections.Counter[str] = field(default_factory=collections.Counter)

    def line(self) -> str:
        """The one-line summary."""
        return (f"onnx backend node tests: {len(self.passed)} passed, {len(self.failed)} failed, "
                f"{sum(self.unsupported.values())} unsupported")


def _array(x: object) -> np.ndarray:
    if isinstance(x, onnx.TensorProto):
        return numpy_helper.to_array(x)
    # Sequence and map inputs stay as they are: the importer rejects their models as unsupported.
    return x if isinstance(x, (list, dict)) else np.asarray(x)  # type: ignore[return-value]


def _freeze_operands(model: onnx.ModelProto, inputs: list[np.ndarray]) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """Turn small integer graph inputs that feed a node's second or later operand (axes, shapes,
    pads, ...) into initializers holding the test data: the IR takes those as attributes."""
    operand_names = {name for n in model.graph.node for name in n.input[1:]}
    frozen = onnx.ModelProto()
    frozen.CopyFrom(model)
    keep, rest = [], []
    for vi, arr in zip(model.graph.input, inputs):
        if vi.name in operand_names and isinstance(arr, np.ndarray) and arr.dtype.kind in "iu" and arr.ndim <= 1:
            frozen.graph.initializer.append(numpy_helper.from_array(arr, vi.name))
        else:
            keep.append(vi)
            rest.append(arr)
    del frozen.graph.input[:]
    frozen.graph.input.extend(keep)
    return frozen, rest


def _import(model: onnx.ModelProto, inputs: list[np.ndarray]) -> tuple[Graph, list[np.ndarray]]:
    """Import a case's model; when an op needs an operand at import time, freeze those inputs."""
    try:
        return import_onnx(model), inputs
    except UnsupportedOpError as e:
        if "import time" not in str(e) and "must be a constant" not in str(e):
            raise
    frozen, rest = _freeze_operands(model, inputs)
    return import_onnx(frozen), rest


def _compare(got: list[np.ndarray], want: list[np.ndarray]) -> str | None:
    if len(got) != len(want):
        return f"{len(got)} outputs, expected {len(want)}"
    for i, (a, b) in enumerate(zip(got, want)):
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"output {i} is {a.dtype}{list(a.shape)}, expected {b.dtype}{list(b.shape)}"
        rtol, atol = _tolerance(b.dtype)
        if a.dtype.kind in "fc" or b.dtype.name == "bfloat16":
            same = np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True)
        else:
            same = np.array_equal(a, b)
        if not same:
            return f"output {i} differs"
    return None


def _run_case(case: Any, summary: Summary) -> None:
    """Import, check and run one ``onnx.backend.test.case.test_case.TestCase``; record the outcome."""
    name = case.name
    raw_inputs, raw_outputs = case.data_sets[0]
    inputs = [_array(x) for x in raw_inputs]
    try:
        graph, inputs = _import(case.model, inputs)
    except UnsupportedOpError as e:
        summary.unsupported[e.message] += 1
        return
    except Exception as e:  # noqa: BLE001 - any other error fails this case, not the whole run
        summary.failed[name] = f"import: {type(e).__name__}: {e}"
        return
    try:
        verify(graph)
        text, consts = print_graph_with_constants(graph)
        if parse_ir(text, consts) != graph:
            summary.failed[name] = "text round trip changed the graph"
            return
        problem = _compare(run_graph(graph, inputs), [_array(x) for x in raw_outputs])
    except Exception as e:  # noqa: BLE001 - as above
        problem = f"{type(e).__name__}: {e}"
    if problem is None:
        summary.passed.append(name)
    else:
        summary.failed[name] = problem


def run_backend_cases() -> Summary:
    """Generate every backend node case and run it."""
    from onnx.backend.test.case.node import collect_testcases

    summary = Summary()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for case in collect_testcases(None):
            _run_case(case, summary)
    return summary


@pytest.fixture(scope="session")
def backend_summary() -> Summary:
    """The backend cases, run once per session."""
    return run_backend_cases()


@pytest.mark.slow
def test_backend_node_cases(backend_summary: Summary) -> None:
    """Enough backend cases pass; the message lists every failure with its reason."""
    s = backend_summary
    print(s.line())
    failures = "\n".join(f"  {k}: {v[:200]}" for k, v in sorted(s.failed.items()))
    assert len(s.passed) >= PASS_FLOOR, f"{s.line()}\nfailures:\n{failures}"


@pytest.mark.slow
def test_backend_core_ops_pass(backend_summary: Summary) -> None:
    """The cases of the ops every CNN and transformer needs all pass (none fails or is skipped)."""
    s = backend_summary
    core = ["test_conv_with_strides_padding", "test_relu", "test_gemm_default_no_bias", "test_matmul_2d",
            "test_softmax_axis_1", "test_maxpool_2d_pads", "test_averagepool_2d_same_upper",
            "test_batchnorm_example", "test_layer_normalization_2d_axis0", "test_reshape_reordered_all_dims",
            "test_transpose_default", "test_concat_2d_axis_0", "test_gather_0", "test_slice",
            "test_split_equal_parts_1d_opset18",
            "test_gelu_tanh_1", "test_reduce_mean_default_axes_keepdims_example", "test_where_example"]
    missing = [name for name in core if name not in s.passed]
    details = "\n".join(f"  {n}: {s.failed.get(n, 'not passed (unsupported or absent)')}" for n in missing)
    assert not missing, f"core backend cases not passing:\n{details}"
