"""Quantization parameters: affine u8 activations from a range, symmetric per-channel int8 weights.

Activations are u8 with a zero point (asymmetric), so a ReLU output uses all 256 levels and the
u8 x i8 products map straight onto the VNNI dot-product instruction. Weights are symmetric int8
in [-127, 127]: no zero point, so the integer kernel needs no weight-side correction, and -128 is
left out so that negating a weight never overflows.
"""

from __future__ import annotations

import numpy as np

WEIGHT_MAX = 127
TINY = np.float32(1e-12)  # the smallest scale: an all-zero range still gets a valid (positive) one


def activation_params(lo: float, hi: float) -> tuple[np.float32, np.uint8]:
    """Scale and zero point mapping the real range ``[lo, hi]`` (widened to hold 0) onto 0..255."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = np.float32(max((hi - lo) / 255.0, float(TINY)))
    zero_point = np.uint8(np.clip(np.rint(-lo / float(scale)), 0, 255))
    return scale, zero_point


def weight_params(w: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 ``w`` and its f32 scales: one per slice along ``axis``, or one (``axis=None``)."""
    w32 = np.asarray(w, np.float32)
    if axis is None:
        amax = np.asarray(np.abs(w32).max() if w32.size else 0.0, np.float32).reshape(1)
        scale = np.maximum(amax / WEIGHT_MAX, TINY).astype(np.float32)
        q = np.clip(np.rint(w32 / scale[0]), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)
        return q, scale
    axis = axis % w32.ndim
    others = tuple(a for a in range(w32.ndim) if a != axis)
    amax = np.abs(w32).max(axis=others) if w32.size else np.zeros(w32.shape[axis], np.float32)
    scale = np.maximum(amax / WEIGHT_MAX, TINY).astype(np.float32)
    shape = [1] * w32.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w32 / scale.reshape(shape)), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)
    return q, scale
