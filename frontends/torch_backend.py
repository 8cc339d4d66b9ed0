"""The ``torch.compile`` backend: ``torch.compile(model, backend="graphopt")``.

Registered through the ``torch_dynamo_backends`` entry point in ``pyproject.toml``. Dynamo hands
over each captured FX graph with example inputs; the backend exports it with ``torch.export``,
imports it into IR (through the same ATen converters as ``import_torch``), compiles it with
``graphopt.compile`` (default pipeline and backend: TVM when available), and returns a callable
that runs it on torch tensors.

Parameters reach a dynamo graph as inputs, and stay graph inputs here (as in TorchInductor without
``freezing``), so weights updated in place after compiling are still seen.

A graph dynamo made dynamic (sizes passed as ``SymInt`` inputs) is compiled once per concrete
input signature as calls arrive (``ShapeSpecialized``).

Nothing is dropped silently: a graph the backend cannot import, a call with tensors that need
gradients, or tensors on another device run the original graph in torch, with a
``GraphoptFallbackWarning`` that says why.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree

from ..ir.graph import Graph
from ..ir.types import DType
from .torch_import import export_module, import_exported_program, tensor_to_numpy


class GraphoptFallbackWarning(UserWarning):
    """A graph (or one call of it) ran in torch instead of graphopt; the message says why."""


class CompiledGraph:
    """A dynamo graph compiled to IR; calling it runs the IR on torch tensors (CPU)."""

    def __init__(self, gm: torch.fx.GraphModule, compiled: Any, out_spec: Any) -> None:
        self.gm = gm
        self.compiled = compiled  # a graphopt.CompiledModel
        self.graph: Graph = compiled.graph
        self.out_spec = out_spec
        self._warned_grad = False

    def __call__(self, *args: Any) -> Any:
        """Run the graph on ``args`` (the dynamo graph's inputs) and return its outputs."""
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            if not self._warned_grad:
                _fallback_warning("inputs require gradients and graphopt compiles inference only "
                                  "(call under torch.no_grad() or torch.inference_mode())")
                self._warned_grad = True
            return self.gm(*args)
        outs = self.compiled(*[tensor_to_numpy(t) for t in tensors])
        outs = list(outs) if isinstance(outs, tuple) else [outs]
        results = [_to_torch(o, v.type.dtype) for o, v in zip(outs, self.graph.outputs)]
        return pytree.tree_unflatten(results, self.out_spec)


def graphopt_backend(gm: torch.fx.GraphModule, example_inputs: Sequence[Any], **_: Any) -> Callable[..., Any]:
    """Compile one dynamo graph with graphopt, or fall back (loudly) to running it in torch."""
    if any(isinstance(a, torch.SymInt) for a in example_inputs):
        return ShapeSpecialized(gm)
    return _compile_or_fall_back(gm, example_inputs)


def compile_graph_module(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> CompiledGraph:
    """Export ``gm`` on ``example_inputs``, import it as IR and compile it with ``graphopt.compile``
    (the default pipeline and backend); raises on failure."""
    ep = export_module(gm, tuple(example_inputs))
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    names = [pretty_input_name(n.name) for n, a in zip(placeholders, example_inputs) if isinstance(a, torch.Tensor)]
    graph = import_exported_program(ep, name="dynamo", input_names=names)
    from ..api import compile as compile_graph  # the backend is an entry point like the API itself

    return CompiledGraph(gm, compile_graph(graph), ep.call_spec.out_spec)


class ShapeSpecialized:
    """A dynamo graph with symbolic sizes, compiled once per concrete input signature as it is called.

    Dynamo turns a graph dynamic after it sees a second input shape and then passes sizes as
    ``SymInt`` inputs. graphopt compiles each signature it meets (sizes baked in) up to
    ``MAX_SIGNATURES``; past that it runs the rest in torch, saying so once.
    """

    MAX_SIGNATURES = 8

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        self.gm = gm
        self.compiled: dict[tuple[Any, ...], Callable[..., Any]] = {}
        self._warned_full = False

    def __call__(self, *args: Any) -> Any:
        """Run the graph compiled for these arguments' shapes (compiling it on first sight)."""
        key = tuple((tuple(a.shape), a.dtype) if isinstance(a, torch.Tensor) else a for a in args)
        fn = self.compiled.get(key)
        if fn is None:
            if len(self.compiled) >= self.MAX_SIGNATURES:
                if not self._warned_full:
                    _fallback_warning(f"more than {self.MAX_SIGNATURES} input shapes for one graph")
                    self._warned_full = True
                return self.gm(*args)
            fn = self.compiled[key] = _compile_or_fall_back(self.gm, args)
        return fn(*args)


def _compile_or_fall_back(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
    reason = _unsupported_inputs(example_inputs)
    if reason is None:
        try:
            return compile_graph_module(gm, example_inputs)
        except Exception as e:  # noqa: BLE001 -- any failure to compile must only warn, never break the model
            reason = f"{type(e).__name__}: {e}"
    _fallback_warning(f"cannot compile this graph ({reason})")
    return gm.forward


def pretty_input_name(name: str) -> str:
    """A short IR name for a dynamo placeholder: ``l_self_modules_fc1_parameters_weight_`` -> ``fc1_weight``."""
    name = re.sub(r"^[lL]_", "", name).rstrip("_")
    name = re.sub(r"^self_(modules|parameters|buffers)_", "", name)
    name = re.sub(r"_(modules|parameters|buffers)_", "_", name)
    return name or "input"


def _unsupported_inputs(example_inputs: Sequence[Any]) -> str | None:
    for i, a in enumerate(example_inputs):
        if isinstance(a, torch.Tensor) and a.device.type != "cpu":
            return f"input {i} is on {a.device}; graphopt's torch backend runs on CPU tensors"
        if not isinstance(a, (torch.Tensor, int, float, bool)):
            return f"input {i} is a {type(a).__name__}"
    return None


def _to_torch(array: np.ndarray, dtype: DType) -> torch.Tensor:
    if dtype == DType.bf16:
        # torch cannot read ml_dtypes' bfloat16; float32 holds every bfloat16 value exactly.
        return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
    # A copy: the interpreter may return read-only arrays (constants) that torch must not share.
    return torch.from_numpy(np.array(array, copy=True, order="C"))


def _fallback_warning(reason: str) -> None:
    warnings.warn(f"graphopt: {reason}; running the graph in torch instead", GraphoptFallbackWarning, stacklevel=3)


__all__ = ["CompiledGraph", "GraphoptFallbackWarning", "ShapeSpecialized", "compile_graph_module", "graphopt_backend"]
