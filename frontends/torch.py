"""``import_torch``: an ``nn.Module`` (with example inputs) or a ``torch.export.ExportedProgram`` as IR.

The module is exported with ``torch.export`` (in eval mode), decomposed to core ATen except for a
few ops that map onto one IR op each (``linear``, ``matmul``, attention, some activations), and
its FX graph is converted node by node (``aten_ops.py``). See ``torch_import.py`` for the walk.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch.export import ExportedProgram

from ..ir.graph import Graph
from .errors import FrontendError
from .torch_import import export_module, import_exported_program


def import_torch(
    module_or_exported_program: torch.nn.Module | ExportedProgram,
    example_inputs: Sequence[Any] | torch.Tensor | None = None,
    *,
    dynamic_batch: bool = False,
) -> Graph:
    """The IR graph of a torch module run on ``example_inputs`` (or of an already exported program).

    With ``dynamic_batch`` axis 0 of every input is the symbol ``B`` (an ``ExportedProgram`` keeps
    whatever dynamic dims it was exported with). Raises ``UnsupportedOpError`` naming the FX node
    and ATen op that has no IR mapping, ``FrontendError`` for anything else torch cannot export.
    """
    model = module_or_exported_program
    if isinstance(model, ExportedProgram):
        return import_exported_program(model, name="main")
    if not isinstance(model, torch.nn.Module):
        raise FrontendError(f"import_torch takes an nn.Module or ExportedProgram, not {type(model).__name__}")
    if example_inputs is None:
        raise FrontendError(f"import_torch needs example inputs to export {type(model).__name__}")
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    ep = export_module(model, inputs, dynamic_batch=dynamic_batch)
    return import_exported_program(ep, name=_graph_name(model))


def _graph_name(module: torch.nn.Module) -> str:
    # ResNet -> resnet, MobileNetV2 -> mobilenetv2: graph names read like the model.
    return re.sub(r"[^a-z0-9_]", "_", type(module).__name__.lower()) or "main"


__all__ = ["import_torch"]
