"""Frontends: PyTorch and ONNX in, IR out (and IR back out to ONNX). Heavy imports are lazy."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..ir.graph import Graph
from .detect import import_model
from .errors import FrontendError, UnsupportedOpError


def import_onnx(model: Any, *, dynamic_batch: bool = False) -> Graph:
    """An ONNX ModelProto or file path as IR."""
    from .onnx import import_onnx as _import

    return _import(model, dynamic_batch=dynamic_batch)


def export_onnx(graph: Graph, path: str | Path | None = None) -> Any:
    """IR as an ONNX ModelProto (also written to ``path`` when given)."""
    from .onnx import export_onnx as _export

    return _export(graph, path)


def import_torch(model: Any, example_inputs: Sequence[Any] | None = None, *, dynamic_batch: bool = False) -> Graph:
    """An ``nn.Module`` (with example inputs) or ``ExportedProgram`` as IR."""
    from .torch import import_torch as _import

    return _import(model, example_inputs, dynamic_batch=dynamic_batch)


__all__ = ["FrontendError", "UnsupportedOpError", "export_onnx", "import_model", "import_onnx", "import_torch"]
