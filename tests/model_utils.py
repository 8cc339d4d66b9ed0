"""Helpers for tests that use the models of ``tests/models.py``: ONNX export and random inputs."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

ONNX_IR_VERSION = 10
"""onnx 1.23 writes IR version 14 by default; onnxruntime 1.31 reads at most 13."""

ONNX_OPSET = 17


def input_names(n: int) -> list[str]:
    """Names given to the exported model's inputs: ``x`` for one input, ``x0``, ``x1`` … otherwise."""
    return ["x"] if n == 1 else [f"x{i}" for i in range(n)]


def export_onnx(
    module: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    path: str | Path | None = None,
    dynamic_batch: bool = False,
) -> onnx.ModelProto:
    """Export ``module`` to ONNX (opset 17, IR version 10); also write it to ``path`` if given.

    Uses the TorchScript exporter (``dynamo=False``): the torch.export-based one needs
    ``onnxscript``, which is not a dependency. With ``dynamic_batch`` axis 0 of every input and
    output is the symbol ``B``. Outputs are named ``y`` (``y0``, ``y1`` … when there are several).
    """
    example = tuple(example_inputs)
    with torch.no_grad():
        out = module(*example)
    n_out = len(out) if isinstance(out, (tuple, list)) else 1
    ins = input_names(len(example))
    outs = ["y"] if n_out == 1 else [f"y{i}" for i in range(n_out)]
    dynamic = {name: {0: "B"} for name in ins + outs} if dynamic_batch else None
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy exporter warns that it is deprecated on every call; that is known and chosen.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            module.eval(), example, buf, dynamo=False, input_names=ins, output_names=outs,
            dynamic_axes=dynamic, opset_version=ONNX_OPSET, do_constant_folding=True,
        )
    model = onnx.load_from_string(buf.getvalue())
    model.ir_version = ONNX_IR_VERSION
    if path is not None:
        onnx.save(model, str(path))
    return model


def random_like(t: torch.Tensor, seed: int = 0, batch: int | None = None) -> torch.Tensor:
    """A random tensor shaped like ``t`` (batch dim replaced by ``batch`` if given).

    Floats are standard normal; integer tensors (token ids) are drawn from ``[1, max(t) + 1)`` so
    they stay inside the vocabulary the example used.
    """
    shape = list(t.shape)
    if batch is not None and shape:
        shape[0] = batch
    g = torch.Generator().manual_seed(seed)
    if t.dtype.is_floating_point:
        return torch.randn(shape, generator=g, dtype=t.dtype)
    if t.dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    high = max(int(t.max()) + 1, 2) if t.numel() else 2
    return torch.randint(1, high, shape, generator=g, dtype=t.dtype)


def random_inputs(
    example_inputs: Sequence[torch.Tensor], seed: int = 0, batch: int | None = None
) -> tuple[torch.Tensor, ...]:
    """Fresh random inputs like ``example_inputs`` (see ``random_like``), one seed per input."""
    return tuple(random_like(t, seed + i, batch) for i, t in enumerate(example_inputs))


def to_numpy(inputs: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """The inputs as numpy arrays (the form the interpreter and onnxruntime take)."""
    return [t.detach().cpu().numpy() for t in inputs]


def torch_outputs(module: nn.Module, inputs: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Run ``module`` eagerly without gradients; its (flattened) outputs as a list of numpy arrays."""
    with torch.no_grad():
        out = module(*inputs)
    # Nested outputs (tuples, named tuples such as torch.max's) flatten in order, as export does.
    return [o.detach().cpu().numpy() for o in torch.utils._pytree.tree_leaves(out)]
