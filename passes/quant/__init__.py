"""Quantization machinery shared by the ``calibrate``, ``quantize``, ``fold-qdq`` and
``mixed-precision`` passes: observers, calibration, quantization parameters, QDQ insertion and
the fold into integer kernels."""

from .calibrate import CalibrationError, CalibrationSet, observe
from .fold import FoldNote, fold_qdq, int8_grid
from .insert import LayerPlan, insert_bf16, insert_qdq, is_quantized
from .layers import ANCHORS, INTEGER_KERNELS, QRANGE, Layer, find_layers
from .observers import ObserverKind, make_observer
from .scheme import activation_params, weight_params

__all__ = [
    "ANCHORS", "INTEGER_KERNELS", "QRANGE", "CalibrationError", "CalibrationSet", "FoldNote", "Layer", "LayerPlan", "ObserverKind",
    "activation_params", "find_layers", "fold_qdq", "insert_bf16", "insert_qdq", "int8_grid", "is_quantized",
    "make_observer", "observe", "weight_params",
]
