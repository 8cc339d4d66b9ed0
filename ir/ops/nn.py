"""Normalization, softmax and pooling."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..opdef import Attr, AttrKind, FusionKind, OpDef, register
from ..types import TensorType, broadcast_shapes
from .common import check_dtype, dims_agree, elementwise_flops, normalize_axis, static_dims, upcast
from .linalg import check_window_attrs

# ---------------------------------------------------------------------------------------------
# Normalization


def _batch_norm_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    check_dtype(x, "float", "nn.batch_norm input")
    if x.rank < 2:
        raise ValueError(f"nn.batch_norm input needs a channel axis (rank >= 2), got {x}")
    for name, t in zip(("scale", "bias", "mean", "var"), ins[1:]):
        if t.dtype != x.dtype or t.rank != 1 or not dims_agree(t.shape[0], x.shape[1]):
            raise ValueError(f"nn.batch_norm {name} must be {x.dtype}[{x.shape[1]}] for input {x}, got {t}")
    return [x]


def _batch_norm(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    x, scale, bias, mean, var = (upcast(a) for a in xs)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mul = scale / np.sqrt(var + np.asarray(attrs["epsilon"], var.dtype))
    y = x * mul.reshape(shape) + (bias - mean * mul).reshape(shape)
    return [y.astype(xs[0].dtype, copy=False)]


register(OpDef(
    "nn.batch_norm", ("x", "scale", "bias", "mean", "var"), _batch_norm_infer, _batch_norm, FusionKind.BROADCAST,
    attrs=(Attr("epsilon", AttrKind.FLOAT, 1e-5),), flops=elementwise_flops(2),
    doc="inference batch norm over channel axis 1: (x - mean) / sqrt(var + epsilon) * scale + bias",
))


def _layer_norm_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    check_dtype(x, "float", "nn.layer_norm input")
    axis = normalize_axis(attrs["axis"], x.rank)
    normalized = x.shape[axis:]
    for name, t in zip(("scale", "bias"), ins[1:]):
        ok = t.dtype == x.dtype and t.rank <= len(normalized)
        if ok:
            try:
                ok = broadcast_shapes(normalized, t.shape) == normalized
            except ValueError:
                ok = False
        if not ok:
            raise ValueError(f"nn.layer_norm {name} {t} must broadcast to the normalized dims "
                             f"{x.dtype}[{','.join(map(str, normalized))}] of {x}")
    return [x]


def _layer_norm(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    x = upcast(xs[0])
    axes = tuple(range(normalize_axis(attrs["axis"], x.ndim), x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = np.mean(np.square(centered), axis=axes, keepdims=True)
    y = centered / np.sqrt(var + np.asarray(attrs["epsilon"], var.dtype)) * upcast(xs[1])
    if len(xs) == 3:
        y = y + upcast(xs[2])
    return [y.astype(xs[0].dtype, copy=False)]


register(OpDef(
    "nn.layer_norm", ("x", "scale", "bias"), _layer_norm_infer, _layer_norm, FusionKind.REDUCTION, num_optional=1,
    attrs=(Attr("axis", AttrKind.INT, -1), Attr("epsilon", AttrKind.FLOAT, 1e-5)), flops=elementwise_flops(8),
    doc="normalize over axes axis..rank-1 to zero mean, unit variance, then * scale + bias",
))


def _lrn_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    check_dtype(x, "float", "nn.lrn input")
    if x.rank < 3:
        raise ValueError(f"nn.lrn input must be N,C,spatial... (rank >= 3), got {x}")
    if attrs["size"] < 1:
        raise ValueError(f"nn.lrn size must be positive, got {attrs['size']}")
    return [x]


def _lrn(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    x = upcast(xs[0])
    size = attrs["size"]
    # Channel window [c - floor((size-1)/2), c + ceil((size-1)/2)], as in ONNX.
    before = (size - 1) // 2
    pad = [(0, 0)] * x.ndim
    pad[1] = (before, size - 1 - before)
    sq = np.pad(np.square(x), pad)
    c = x.shape[1]
    total = sum(sq[:, i:i + c] for i in range(size))
    base = attrs["bias"] + (attrs["alpha"] / size) * total
    y = x / np.power(base, np.asarray(attrs["beta"], base.dtype))
    return [y.astype(xs[0].dtype, copy=False)]


register(OpDef(
    "nn.lrn", ("x",), _lrn_infer, _lrn, FusionKind.OPAQUE,
    attrs=(Attr("size", AttrKind.INT), Attr("alpha", AttrKind.FLOAT, 1e-4), Attr("beta", AttrKind.FLOAT, 0.75),
           Attr("bias", AttrKind.FLOAT, 1.0)),
    flops=lambda i, o, a: (a["size"] + 4) * o[0].numel(),
    doc="local response normalization across channels: x / (bias + alpha / size * sum(x^2)) ** beta",
))


def _softmax_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    check_dtype(ins[0], "float", "softmax input")
    normalize_axis(attrs["axis"], ins[0].rank)
    return [ins[0]]


def _softmax(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    x = upcast(xs[0])
    e = np.exp(x - x.max(axis=attrs["axis"], keepdims=True))
    return [(e / e.sum(axis=attrs["axis"], keepdims=True)).astype(xs[0].dtype, copy=False)]


def _log_softmax(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    x = upcast(xs[0])
    shifted = x - x.max(axis=attrs["axis"], keepdims=True)
    y = shifted - np.log(np.exp(shifted).sum(axis=attrs["axis"], keepdims=True))
    return [y.astype(xs[0].dtype, copy=False)]


for _name, _fn, _doc in (("nn.softmax", _softmax, "exp(x) / sum(exp(x)) along axis"),
                         ("nn.log_softmax", _log_softmax, "log(softmax(x)) along axis, computed stably")):
    register(OpDef(_name, ("x",), _softmax_infer, _fn, FusionKind.REDUCTION, attrs=(Attr("axis", AttrKind.INT, -1),),
                   flops=elementwise_flops(5), doc=_doc))

# ---------------------------------------------------------------------------------------------
# Pooling


def pool_out_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int,
                  ceil_mode: bool) -> int:
    """Output length of a pooling window, as ONNX: with ceil_mode the last window must start in the input."""
    span = dilation * (kernel - 1) + 1
    room = size + pad_begin + pad_end - span
    if room < 0:
        return 0
    out = (-(-room // stride) if ceil_mode else room // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


def _pool_geometry(x: TensorType, attrs: Mapping[str, Any]) -> tuple[int, int]:
    kh, kw = attrs["kernel"]
    (sh, sw), (pt, pl, pb, pr) = attrs["strides"], attrs["pads"]
    dh, dw = attrs.get("dilations", (1, 1))
    h, w = static_dims(x, (2, 3), "pooling")
    return (pool_out_size(h, kh, sh, pt, pb, dh, attrs["ceil_mode"]),
            pool_out_size(w, kw, sw, pl, pr, dw, attrs["ceil_mode"]))


def _pool_infer(op: str, window_attrs: tuple[str, ...]) -> Callable[..., list[TensorType]]:
    def infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
        x = ins[0]
        check_window_attrs(op, attrs, window_attrs)
        if x.rank != 4:
            raise ValueError(f"{op} input must be N,C,H,W, got {x}")
        check_dtype(x, "numeric" if op == "nn.max_pool2d" else "float", f"{op} input")
        (pt, pl, pb, pr), (kh, kw) = attrs["pads"], attrs["kernel"]
        if pt >= kh or pb >= kh or pl >= kw or pr >= kw:
            raise ValueError(f"{op} pads {list(attrs['pads'])} must be smaller than the kernel {list(attrs['kernel'])}")
        ho, wo = _pool_geometry(x, attrs)
        if ho < 1 or wo < 1:
            raise ValueError(f"{op} kernel {kh}x{kw} does not fit input {x} with pads {list(attrs['pads'])}")
        return [x.with_shape((x.shape[0], x.shape[1], ho, wo))]

    return infer


def _windows(xp: np.ndarray, attrs: Mapping[str, Any], ho: int, wo: int) -> list[np.ndarray]:
    # One strided view per kernel tap: combining kh*kw views is much faster than a 6-D window view.
    (kh, kw), (sh, sw) = attrs["kernel"], attrs["strides"]
    dh, dw = attrs.get("dilations", (1, 1))
    return [xp[..., i * dh:i * dh + (ho - 1) * sh + 1:sh, j * dw:j * dw + (wo - 1) * sw + 1:sw]
            for i in range(kh) for j in range(kw)]


def _pool_pads(x_shape: Sequence[int], attrs: Mapping[str, Any], ho: int, wo: int) -> list[tuple[int, int]]:
    # Explicit pads, plus what ceil_mode's last window needs beyond the end pad.
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = attrs["kernel"], attrs["strides"], attrs["pads"]
    dh, dw = attrs.get("dilations", (1, 1))
    h, w = x_shape[-2:]
    extra_h = max(0, (ho - 1) * sh + dh * (kh - 1) + 1 - (h + pt + pb))
    extra_w = max(0, (wo - 1) * sw + dw * (kw - 1) + 1 - (w + pl + pr))
    return [(0, 0), (0, 0), (pt, pb + extra_h), (pl, pr + extra_w)]


def _max_pool(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    x = xs[0]
    ho, wo = _pool_geometry(TensorType.of(x), attrs)
    xu = upcast(x)
    low = -np.inf if xu.dtype.kind == "f" else np.iinfo(xu.dtype).min
    xp = np.pad(xu, _pool_pads(x.shape, attrs, ho, wo), constant_values=low)
    views = _windows(xp, attrs, ho, wo)
    y = views[0].copy()
    for v in views[1:]:
        np.maximum(y, v, out=y)
    return [y.astype(x.dtype, copy=False)]


def _avg_pool(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    x = xs[0]
    ho, wo = _pool_geometry(TensorType.of(x), attrs)
    pads = _pool_pads(x.shape, attrs, ho, wo)
    xp = np.pad(upcast(x), pads)
    y = sum(_windows(xp, attrs, ho, wo))
    # The divisor counts the taps that fall on the input, plus the explicit pads when
    # count_include_pad; taps beyond the end pad (ceil_mode) never count, as in ONNX and torch.
    h, w = x.shape[-2:]
    (pt, pl, pb, pr) = attrs["pads"]
    if attrs["count_include_pad"]:
        ones = np.pad(np.ones((h + pt + pb, w + pl + pr)), [(0, pads[2][1] - pb), (0, pads[3][1] - pr)])
    else:
        ones = np.pad(np.ones((h, w)), pads[2:])
    count = sum(_windows(ones, attrs, ho, wo))
    return [(y / count.astype(y.dtype)).astype(x.dtype, copy=False)]


def _pool_flops(ins: Sequence[TensorType], outs: Sequence[TensorType], attrs: Mapping[str, Any]) -> int:
    kh, kw = attrs["kernel"]
    return outs[0].numel() * kh * kw


_WINDOW = (Attr("kernel", AttrKind.INTS), Attr("strides", AttrKind.INTS, (1, 1)),
           Attr("pads", AttrKind.INTS, (0, 0, 0, 0)))
register(OpDef(
    "nn.max_pool2d", ("x",), _pool_infer("nn.max_pool2d", ("kernel", "strides", "pads", "dilations")), _max_pool,
    FusionKind.OUT_FUSABLE,
    attrs=_WINDOW + (Attr("dilations", AttrKind.INTS, (1, 1)), Attr("ceil_mode", AttrKind.BOOL, False)),
    flops=_pool_flops, doc="max over kH x kW windows of an NCHW input (ONNX MaxPool, explicit pads)",
))
register(OpDef(
    "nn.avg_pool2d", ("x",), _pool_infer("nn.avg_pool2d", ("kernel", "strides", "pads")), _avg_pool,
    FusionKind.OUT_FUSABLE,
    attrs=_WINDOW + (Attr("ceil_mode", AttrKind.BOOL, False), Attr("count_include_pad", AttrKind.BOOL, False)),
    flops=_pool_flops, doc="mean over kH x kW windows of an NCHW input (ONNX AveragePool, explicit pads)",
))


def _global_pool_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    if x.rank < 3:
        raise ValueError(f"global pooling needs N,C and spatial dims (rank >= 3), got {x}")
    check_dtype(x, "numeric", "global pooling input")
    return [x.with_shape(x.shape[:2] + (1,) * (x.rank - 2))]


def _global_pool(reduce: Callable[..., np.ndarray]) -> Callable[..., list[np.ndarray]]:
    def compute(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
        x = xs[0]
        y = reduce(upcast(x), axis=tuple(range(2, x.ndim)), keepdims=True)
        return [y.astype(x.dtype, copy=False)]

    return compute


register(OpDef("nn.global_avg_pool", ("x",), _global_pool_infer, _global_pool(np.mean), FusionKind.REDUCTION,
               flops=lambda i, o, a: i[0].numel(), doc="mean over all spatial dims, kept as size 1 (N,C,1,1)"))
register(OpDef("nn.global_max_pool", ("x",), _global_pool_infer, _global_pool(np.max), FusionKind.REDUCTION,
               flops=lambda i, o, a: i[0].numel(), doc="max over all spatial dims, kept as size 1 (N,C,1,1)"))
