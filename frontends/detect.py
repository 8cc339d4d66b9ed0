"""One entry point for every kind of model a user hands us: files, protos, modules, graphs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from ..ir.graph import Graph
from .errors import FrontendError


def import_model(model: Any, example_inputs: Sequence[Any] | None = None, *, dynamic_batch: bool = False) -> Graph:
    """Import ``model`` into IR: a Graph, an ONNX path or ModelProto, a ``.gir`` dump, an
    ``nn.Module`` (with ``example_inputs``) or a ``torch.export.ExportedProgram``."""
    if isinstance(model, Graph):
        return model
    if isinstance(model, (str, Path)):
        return _import_file(Path(model), example_inputs, dynamic_batch)
    if type(model).__module__.startswith("onnx"):
        from .onnx import import_onnx

        return import_onnx(model, dynamic_batch=dynamic_batch)
    if _is_torch_model(model):
        from .torch import import_torch

        return import_torch(model, example_inputs, dynamic_batch=dynamic_batch)
    raise FrontendError(f"cannot import a {type(model).__name__}: expected an nn.Module, ExportedProgram, "
                        "ONNX path or ModelProto, or a graphopt Graph")


def _is_torch_model(model: Any) -> bool:
    torch = sys.modules.get("torch")  # a torch model can only exist if torch is already imported
    return torch is not None and isinstance(model, (torch.nn.Module, torch.export.ExportedProgram))


def _import_file(path: Path, example_inputs: Sequence[Any] | None, dynamic_batch: bool) -> Graph:
    if not path.exists():
        raise FrontendError(f"{path}: no such file", file=str(path))
    if path.is_dir():
        raise FrontendError(f"{path}: is a directory, expected a model file", file=str(path))
    suffix = path.suffix.lower()
    if suffix == ".gir":
        from ..ir.parser import load_ir

        return load_ir(path)
    if suffix in (".pt2", ".ep"):
        import torch

        return import_model(torch.export.load(str(path)), example_inputs, dynamic_batch=dynamic_batch)
    if suffix == ".gopt":
        raise FrontendError(f"{path}: is a compiled graphopt artifact; open it with graphopt.load()", file=str(path))
    from .onnx import import_onnx

    return import_onnx(str(path), dynamic_batch=dynamic_batch)
