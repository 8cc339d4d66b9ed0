"""Element types and names shared by the ONNX importer and exporter."""

from __future__ import annotations

import re

import numpy as np
from onnx import TensorProto, helper

from ..ir.types import DType

_TO_DTYPE: dict[int, DType] = {
    TensorProto.FLOAT: DType.f32,
    TensorProto.FLOAT16: DType.f16,
    TensorProto.BFLOAT16: DType.bf16,
    TensorProto.DOUBLE: DType.f64,
    TensorProto.INT8: DType.i8,
    TensorProto.UINT8: DType.u8,
    TensorProto.INT32: DType.i32,
    TensorProto.INT64: DType.i64,
    TensorProto.BOOL: DType.bool,
}
_FROM_DTYPE = {v: k for k, v in _TO_DTYPE.items()}


def ir_dtype(elem_type: int) -> DType | None:
    """The IR dtype of an ONNX element type, or None when the IR has no such type."""
    return _TO_DTYPE.get(elem_type)


def onnx_elem_type(dtype: DType) -> int:
    """The ONNX element type (``TensorProto.FLOAT`` …) of an IR dtype."""
    return _FROM_DTYPE[dtype]


def elem_type_name(elem_type: int) -> str:
    """A readable name of an ONNX element type (``FLOAT16``), for error messages."""
    try:
        return str(TensorProto.DataType.Name(elem_type))
    except ValueError:
        return f"type {elem_type}"


def numpy_dtype(elem_type: int) -> np.dtype:
    """The numpy dtype onnx uses for an ONNX element type."""
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


_NON_IDENT = re.compile(r"[^A-Za-z0-9_]+")
_RESERVED = {"true", "false", "inf", "nan"}


def identifier(name: str, fallback: str = "v") -> str:
    """``name`` made into an IR identifier ``[A-Za-z_][A-Za-z0-9_]*`` (``/l1/Conv_output_0`` ->
    ``l1_Conv_output_0``, ``123`` -> ``v123``); uniqueness is the caller's business."""
    text = _NON_IDENT.sub("_", name).strip("_")
    if not text:
        return fallback
    if text[0].isdigit():
        text = fallback + text
    if text.lower() in _RESERVED:
        text += "_"
    return text
