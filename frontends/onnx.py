"""The ONNX frontend: ``import_onnx`` (ONNX -> IR) and ``export_onnx`` (IR -> ONNX).

Design notes: docs/onnx.md.
"""

from __future__ import annotations

from .onnx_export import EXPORT_OPSET, export_onnx
from .onnx_import import TARGET_OPSET, import_onnx

__all__ = ["EXPORT_OPSET", "TARGET_OPSET", "export_onnx", "import_onnx"]
