"""The ONNX frontend: ``import_onnx`` (ONNX -> IR) and ``export_onnx`` (IR -> ONNX).

Decisions, for whoever extends it:

- **One opset's semantics.** Models older than opset 18 are upgraded to 18 with
  ``onnx.version_converter`` (so Softmax's pre-13 "coerce to 2-d" becomes Flatten/Softmax/Reshape,
  and Split/Squeeze/Reduce* axes become inputs); newer models are read as they are, since up to
  opset 28 the mapped ops only gained types and options the converters check. Converters live in
  ``onnx_ops.py``, one function per ONNX op.
- **Shape arithmetic is folded at import.** A table maps tensor names to IR values or to values
  known at import time: arrays, and ``SymShape`` vectors of ints and symbols (``onnx_shapes.py``).
  Nodes whose operands are all known are evaluated (``onnx.reference`` for arrays, our own rules
  for symbolic shapes) and never reach the IR; an ``If`` on a known condition is inlined. Reshape
  and Expand targets become attributes: a symbol equal to the input's dim at the same position
  becomes ``0`` (copy), another symbol ``-1`` (infer).
- **Names.** Initializers become named ``const`` nodes on first use, inputs and graph outputs
  keep their names, all made identifiers (``onnx::MatMul_7`` -> ``onnx_MatMul_7``); unknown input
  dims become symbols ``<input>_<axis>``. Intermediate values stay unnamed.
- **Errors.** ``UnsupportedOpError`` for an op, attribute value or element type the IR lacks
  (the message names file, node and op); ``FrontendError`` for unreadable files and models that
  break ONNX rules. ONNX's own inferred shapes are compared with the IR's where both are static.
- **Export** writes opset 18, IR version 10 (what onnxruntime 1.31 loads), one ONNX op per IR op
  except ``nn.gelu``/``nn.silu``/``math.rsqrt`` (short expressions); ``fused`` bodies are inlined.
  Importing an exported graph gives the same graph back.
"""

from __future__ import annotations

from .onnx_export import EXPORT_OPSET, export_onnx
from .onnx_import import TARGET_OPSET, import_onnx

__all__ = ["EXPORT_OPSET", "TARGET_OPSET", "export_onnx", "import_onnx"]
