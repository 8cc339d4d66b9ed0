"""Export a torch module to an ONNX file that onnxruntime 1.31 reads (opset 17, IR version 10)."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
from torch import nn
from torch.onnx import TrainingMode

ONNX_OPSET = 17
ONNX_IR_VERSION = 10
"""onnx 1.23 writes IR version 14 by default; onnxruntime 1.31 reads at most 13."""


def io_names(module: nn.Module, n_inputs: int, n_outputs: int) -> tuple[list[str], list[str]]:
    """Input and output names: the module's ``input_names``/``output_names`` if it declares them."""
    ins = list(getattr(module, "input_names", ()))
    outs = list(getattr(module, "output_names", ()))
    if len(ins) != n_inputs:
        ins = ["x"] if n_inputs == 1 else [f"x{i}" for i in range(n_inputs)]
    if len(outs) != n_outputs:
        outs = ["y"] if n_outputs == 1 else [f"y{i}" for i in range(n_outputs)]
    return ins, outs


def export_onnx(
    module: nn.Module,
    inputs: Sequence[torch.Tensor],
    path: str | Path,
    dynamic_batch: bool = False,
    fold_batchnorm: bool = False,
) -> onnx.ModelProto:
    """Write ``module`` run on ``inputs`` to ``path`` as ONNX; returns the model.

    Uses the TorchScript exporter (``dynamo=False``): the torch.export one needs ``onnxscript``.
    With ``dynamic_batch`` axis 0 of every input and output is the symbol ``B``. BatchNormalization
    nodes are kept unless ``fold_batchnorm``: the exporter's own eval-mode peephole would fold them
    into the convolutions, leaving an optimizer nothing to do there. The file is written under a
    temporary name and renamed, so an interrupted export never leaves a half file behind for a
    cache to trust.
    """
    example = tuple(inputs)
    module = module.eval()
    with torch.no_grad():
        out = module(*example)
    n_out = len(out) if isinstance(out, (tuple, list)) else 1
    ins, outs = io_names(module, len(example), n_out)
    dynamic = {name: {0: "B"} for name in ins + outs} if dynamic_batch else None
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy exporter warns that it is deprecated on every call; that is known and chosen.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        # Tracing F.local_response_norm's empty-input check warns; the zoo's graphs are static.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module, example, buf, dynamo=False, input_names=ins, output_names=outs,
            dynamic_axes=dynamic, opset_version=ONNX_OPSET, do_constant_folding=True,
            # EVAL runs the Conv+BN folding peephole; PRESERVE exports the eval-mode module as is.
            training=TrainingMode.EVAL if fold_batchnorm else TrainingMode.PRESERVE,
        )
    model = onnx.load_from_string(buf.getvalue())
    del buf
    model.ir_version = ONNX_IR_VERSION
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return model
