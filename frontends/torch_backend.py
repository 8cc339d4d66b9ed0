"""The ``torch.compile`` backend: ``torch.compile(model, backend="graphopt")``.

Registered through the ``torch_dynamo_backends`` entry point in ``pyproject.toml``. Dynamo hands
over each captured FX graph with example inputs; the backend exports it with ``torch.export``,
imports it into IR (through the same ATen converters as ``import_torch``), runs the canonicalize
pass when available, and returns a callable that runs the graph on torch tensors.

Parameters reach a dynamo graph as inputs, and stay graph inputs here (as in TorchInductor without
``freezing``), so weights updated in place after compiling are still seen.

Nothing is dropped silently: a graph the backend cannot import, a call with tensors that need
gradients, or tensors on another device run the original graph in torch, with a
``GraphoptFallbackWarning`` that says why.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils import _pytree as pytree

from ..ir.graph import Graph
from ..ir.interpreter import run_graph
from ..ir.types import DType
from .torch_import import export_module, import_exported_program, tensor_to_numpy


class GraphoptFallbackWarning(UserWarning):
    """A graph (or one call of it) ran in torch instead of graphopt; the message says why."""


class CompiledGraph:
    """A dynamo graph compiled to IR; calling it runs the IR on torch tensors (CPU)."""

    def __init__(self, gm: torch.fx.GraphModule, graph: Graph, out_spec: Any) -> None:
        self.gm = gm
        self.graph = graph
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
        outs = run_graph(self.graph, [tensor_to_numpy(t) for t in tensors])
        results = [_to_torch(o, v.type.dtype) for o, v in zip(outs, self.graph.outputs)]
        return pytree.tree_unflatten(results, self.out_spec)


def graphopt_backend(gm: torch.fx.GraphModule, example_inputs: Sequence[Any], **_: Any) -> Callable[..., Any]:
    """Compile one dynamo graph with graphopt, or fall back (loudly) to running it in torch."""
    reason = _unsupported_inputs(example_inputs)
    if reason is None:
        try:
            return compile_graph_module(gm, example_inputs)
        except Exception as e:  # any failure to import must not break the user's model, only warn
            reason = f"{type(e).__name__}: {e}"
    _fallback_warning(f"cannot compile this graph ({reason})")
    return gm.forward


def compile_graph_module(gm: torch.fx.GraphModule, example_inputs: Sequence[torch.Tensor]) -> CompiledGraph:
    """Export ``gm`` on ``example_inputs``, import it as IR, canonicalize it; raises on failure."""
    ep = export_module(gm, tuple(example_inputs))
    names = [pretty_input_name(n.name) for n in gm.graph.nodes if n.op == "placeholder"]
    graph = import_exported_program(ep, name="dynamo", input_names=names)
    return CompiledGraph(gm, _canonicalize(graph), ep.call_spec.out_spec)


def pretty_input_name(name: str) -> str:
    """A short IR name for a dynamo placeholder: ``l_self_modules_fc1_parameters_weight_`` -> ``fc1_weight``."""
    name = re.sub(r"^[lL]_", "", name).rstrip("_")
    name = re.sub(r"^self_(modules|parameters|buffers)_", "", name)
    name = re.sub(r"_(modules|parameters|buffers)_", "_", name)
    return name or "input"


def _unsupported_inputs(example_inputs: Sequence[Any]) -> str | None:
    for i, a in enumerate(example_inputs):
        if not isinstance(a, torch.Tensor):
            return f"input {i} is a {type(a).__name__}: dynamic shapes reach the backend as symbolic ints"
        if a.device.type != "cpu":
            return f"input {i} is on {a.device}; graphopt's torch backend runs on CPU tensors"
    return None


def _canonicalize(graph: Graph) -> Graph:
    # The lead wires the full pipeline through graphopt.api; until then canonicalize alone runs here.
    from .. import passes

    if "canonicalize" not in passes.registered_passes():
        return graph
    result, _ = passes.run_passes(graph, "canonicalize")
    return result


def _to_torch(array: np.ndarray, dtype: DType) -> torch.Tensor:
    if dtype == DType.bf16:
        # torch cannot read ml_dtypes' bfloat16; float32 holds every bfloat16 value exactly.
        return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
    # A copy: the interpreter may return read-only arrays (constants) that torch must not share.
    return torch.from_numpy(np.array(array, copy=True, order="C"))


def _fallback_warning(reason: str) -> None:
    warnings.warn(f"graphopt: {reason}; running the graph in torch instead", GraphoptFallbackWarning, stacklevel=3)


__all__ = ["CompiledGraph", "GraphoptFallbackWarning", "compile_graph_module", "graphopt_backend"]
