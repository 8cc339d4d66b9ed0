"""``torch.compile(model, backend="graphopt")``: the dynamo backend and its loud fallbacks."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import torch
from torch import nn

from graphopt.frontends.torch_backend import (
    CompiledGraph,
    GraphoptFallbackWarning,
    ShapeSpecialized,
    graphopt_backend,
    pretty_input_name,
)
from graphopt.ir.graph import Graph
from graphopt.ir.parser import parse_ir
from graphopt.ir.printer import print_graph_with_constants
from graphopt.ir.verify import verify

from model_utils import random_inputs
from models import make_model


@pytest.fixture(autouse=True)
def fresh_dynamo() -> Iterator[None]:
    """Each test compiles from scratch (dynamo caches compiled frames per code object)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def check_graph(g: Graph) -> None:
    verify(g)
    text, consts = print_graph_with_constants(g)
    assert parse_ir(text, consts) == g


class Spy:
    """A backend that forwards to graphopt's and keeps what it returned."""

    def __init__(self) -> None:
        self.compiled: list[Callable[..., Any]] = []

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
        fn = graphopt_backend(gm, example_inputs)
        self.compiled.append(fn)
        return fn


def test_entry_point_registers_the_backend() -> None:
    assert "graphopt" in torch._dynamo.list_backends()
    assert torch._dynamo.lookup_backend("graphopt") is graphopt_backend


@pytest.mark.parametrize("name", ["mlp", pytest.param("resnet", marks=pytest.mark.slow)])
def test_compiled_model_runs_graphopt_and_matches_eager(name: str) -> None:
    module, example = make_model(name)
    spy = Spy()
    compiled = torch.compile(module, backend=spy, dynamic=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphoptFallbackWarning)
        with torch.no_grad():
            for seed in (0, 1):
                x = random_inputs(example, seed=seed)
                torch.testing.assert_close(compiled(*x), module(*x), rtol=1e-4, atol=1e-5)
    assert len(spy.compiled) == 1
    fn = spy.compiled[0]
    assert isinstance(fn, CompiledGraph)
    check_graph(fn.graph)
    # Parameters stay graph inputs, named after the module path.
    names = [v.name for v in fn.graph.inputs]
    assert "x" in names and {"fc_weight", "fc1_weight"} & set(names)


@pytest.mark.slow
def test_backend_by_name_gives_eager_results_without_fallback() -> None:
    module, example = make_model("resnet")
    compiled = torch.compile(module, backend="graphopt", dynamic=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphoptFallbackWarning)
        with torch.inference_mode():
            got = compiled(*example)
    with torch.no_grad():
        torch.testing.assert_close(got, module(*example), rtol=1e-4, atol=1e-5)


class _TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.fc(x)
        return y.softmax(-1), y.argmax(-1)


def test_tuple_outputs_and_integer_dtypes_come_back_as_torch_gives_them() -> None:
    module = _TwoOutputs().eval()
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    spy = Spy()
    with torch.no_grad():
        probs, index = torch.compile(module, backend=spy, dynamic=False)(x)
        want_probs, want_index = module(x)
    assert isinstance(spy.compiled[0], CompiledGraph)
    assert index.dtype == torch.int64 and probs.dtype == torch.float32
    torch.testing.assert_close(probs, want_probs, rtol=1e-4, atol=1e-6)
    assert torch.equal(index, want_index)


class _Cumsum(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).cumsum(dim=1)


def test_unsupported_graph_falls_back_loudly_and_still_computes() -> None:
    module = _Cumsum()
    x = torch.randn(2, 5, generator=torch.Generator().manual_seed(0))
    with pytest.warns(GraphoptFallbackWarning, match=r"aten\.cumsum\.default"):
        got = torch.compile(module, backend="graphopt", dynamic=False)(x)
    torch.testing.assert_close(got, module(x))


def test_call_needing_gradients_falls_back_loudly_once() -> None:
    module, example = make_model("mlp")
    compiled = torch.compile(module, backend="graphopt", dynamic=False)
    with pytest.warns(GraphoptFallbackWarning, match="require gradients"):
        out = compiled(*example)
    assert out.requires_grad
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphoptFallbackWarning)
        compiled(*example)  # the same reason is not repeated on every call


def test_dynamic_batch_compiles_once_per_shape_without_fallback() -> None:
    module, example = make_model("mlp")
    spy = Spy()
    compiled = torch.compile(module, backend=spy)  # dynamo turns the batch dynamic on the 2nd shape
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphoptFallbackWarning)
        with torch.no_grad():
            for batch in (1, 3, 4, 3):
                x = random_inputs(example, seed=batch, batch=batch)
                torch.testing.assert_close(compiled(*x), module(*x), rtol=1e-4, atol=1e-5)
    dynamic = [fn for fn in spy.compiled if isinstance(fn, ShapeSpecialized)]
    assert len(dynamic) == 1
    assert len(dynamic[0].compiled) == 2  # batch 3 and 4; the second batch-3 call reuses its graph
    for fn in dynamic[0].compiled.values():
        assert isinstance(fn, CompiledGraph)
        check_graph(fn.graph)


def test_too_many_shapes_fall_back_loudly() -> None:
    module, example = make_model("mlp")
    spy = Spy()
    compiled = torch.compile(module, backend=spy)
    with torch.no_grad():
        compiled(*random_inputs(example, batch=1))
        compiled(*random_inputs(example, batch=2))
        dynamic = next(fn for fn in spy.compiled if isinstance(fn, ShapeSpecialized))
        dynamic.MAX_SIGNATURES = 1
        x = random_inputs(example, batch=5)
        with pytest.warns(GraphoptFallbackWarning, match="more than 1 input shapes"):
            got = compiled(*x)
        torch.testing.assert_close(got, module(*x))


@pytest.mark.parametrize("raw, pretty", [
    ("l_x_", "x"),
    ("l_self_modules_fc1_parameters_weight_", "fc1_weight"),
    ("l_self_modules_layer1_modules_0_modules_bn1_buffers_running_mean_", "layer1_0_bn1_running_mean"),
])
def test_dynamo_placeholder_names_are_shortened(raw: str, pretty: str) -> None:
    assert pretty_input_name(raw) == pretty
