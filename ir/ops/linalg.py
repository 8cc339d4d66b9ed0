"""Matrix products and convolution (out-fusable: an elementwise epilogue can fuse into them)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..opdef import Attr, AttrKind, FusionKind, OpDef, register
from ..types import TensorType, broadcast_shapes
from .common import check_dtype, check_rank, dims_agree, static_dims, upcast


def _matmul_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    a, b = ins
    if a.dtype != b.dtype:
        raise ValueError(f"operand dtypes differ: {a}, {b}")
    check_dtype(a, "numeric", "nn.matmul operands")
    if a.rank < 1 or b.rank < 1:
        raise ValueError("matmul operands must have rank >= 1")
    a_shape = a.shape if a.rank > 1 else (1,) + a.shape
    b_shape = b.shape if b.rank > 1 else b.shape + (1,)
    if not dims_agree(a_shape[-1], b_shape[-2]):
        raise ValueError(f"inner dimensions differ: {a} @ {b}")
    batch = broadcast_shapes(a_shape[:-2], b_shape[:-2])
    shape = batch + (a_shape[-2], b_shape[-1])
    if a.rank == 1:
        shape = shape[:-2] + shape[-1:]
    if b.rank == 1:
        shape = shape[:-1]
    return [TensorType(shape, a.dtype)]


def _matmul_flops(ins: Sequence[TensorType], outs: Sequence[TensorType], attrs: Mapping[str, Any]) -> int:
    k = ins[0].shape[-1]
    return 2 * outs[0].numel() * (k if isinstance(k, int) else 1)


def _matmul(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    a, b = xs
    return [np.matmul(upcast(a), upcast(b)).astype(a.dtype, copy=False)]


register(OpDef(
    "nn.matmul", ("a", "b"), _matmul_infer, _matmul,
    FusionKind.OUT_FUSABLE, flops=_matmul_flops, doc="numpy.matmul semantics (batched, broadcasting)",
))


def _gemm_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    a, b = ins[0], ins[1]
    for t in ins:
        if t.dtype != a.dtype:
            raise ValueError(f"operand dtypes differ: {', '.join(str(t) for t in ins)}")
    check_dtype(a, "numeric", "nn.gemm operands")
    check_rank(a, 2, "nn.gemm a")
    check_rank(b, 2, "nn.gemm b")
    m, k1 = a.shape[::-1] if attrs["trans_a"] else a.shape
    k2, n = b.shape[::-1] if attrs["trans_b"] else b.shape
    if not dims_agree(k1, k2):
        raise ValueError(f"nn.gemm inner dimensions differ: {a} and {b} (trans_a={attrs['trans_a']}, "
                         f"trans_b={attrs['trans_b']})")
    if len(ins) == 3:
        c = ins[2]
        try:
            ok = c.rank <= 2 and broadcast_shapes((m, n), c.shape) == (m, n)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"nn.gemm c {c} does not broadcast to [{m},{n}]")
    return [TensorType((m, n), a.dtype)]


def _gemm(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    a, b = upcast(xs[0]), upcast(xs[1])
    a = a.T if attrs["trans_a"] else a
    b = b.T if attrs["trans_b"] else b
    y = a @ b
    if attrs["alpha"] != 1.0:
        y = y * np.asarray(attrs["alpha"], y.dtype)
    if len(xs) == 3:
        c = upcast(xs[2])
        y = y + (c if attrs["beta"] == 1.0 else c * np.asarray(attrs["beta"], c.dtype))
    return [y.astype(xs[0].dtype, copy=False)]


def _gemm_flops(ins: Sequence[TensorType], outs: Sequence[TensorType], attrs: Mapping[str, Any]) -> int:
    a = ins[0]
    k = a.shape[0] if attrs["trans_a"] else a.shape[1]
    return 2 * outs[0].numel() * (k if isinstance(k, int) else 1)


register(OpDef(
    "nn.gemm", ("a", "b", "c"), _gemm_infer, _gemm, FusionKind.OUT_FUSABLE, num_optional=1,
    attrs=(Attr("alpha", AttrKind.FLOAT, 1.0), Attr("beta", AttrKind.FLOAT, 1.0),
           Attr("trans_a", AttrKind.BOOL, False), Attr("trans_b", AttrKind.BOOL, False)),
    flops=_gemm_flops, doc="alpha * op(a) @ op(b) + beta * c for 2-D a, b (op transposes when asked)",
))


def check_window_attrs(op: str, attrs: Mapping[str, Any], names: Sequence[str]) -> None:
    """Raise ValueError unless ``strides``/``dilations``/``kernel`` are 2 positive ints and ``pads`` 4 >= 0."""
    for key in names:
        want = 4 if key == "pads" else 2
        vals = attrs[key]
        if len(vals) != want or any(v < (0 if key == "pads" else 1) for v in vals):
            bound = "non-negative" if key == "pads" else "positive"
            raise ValueError(f"{op} {key} must be {want} {bound} ints, got {list(vals)}")


def conv_out_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int) -> int:
    """Output length of a convolution window sliding over ``size`` padded elements (floor mode)."""
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1


def _conv_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x, w = ins[0], ins[1]
    check_window_attrs("nn.conv2d", attrs, ("strides", "pads", "dilations"))
    check_rank(x, 4, "nn.conv2d input (N,C,H,W)")
    check_rank(w, 4, "nn.conv2d weight (O,I,kH,kW)")
    check_dtype(x, "float", "nn.conv2d input")
    if w.dtype != x.dtype:
        raise ValueError(f"nn.conv2d input and weight dtypes differ: {x}, {w}")
    c, h, wd = static_dims(x, (1, 2, 3), "nn.conv2d input")
    o, cg, kh, kw = static_dims(w, (0, 1, 2, 3), "nn.conv2d weight")
    g = attrs["groups"]
    if g < 1 or c % g or o % g:
        raise ValueError(f"nn.conv2d groups={g} must divide input channels {c} and output channels {o}")
    if cg * g != c:
        raise ValueError(f"nn.conv2d weight {w} expects {cg * g} input channels (groups={g}), input {x} has {c}")
    if len(ins) == 3:
        bias = ins[2]
        if bias.dtype != x.dtype or bias.rank != 1 or not dims_agree(bias.shape[0], o):
            raise ValueError(f"nn.conv2d bias must be {x.dtype}[{o}], got {bias}")
    (sh, sw), (pt, pl, pb, pr), (dh, dw) = attrs["strides"], attrs["pads"], attrs["dilations"]
    ho = conv_out_size(h, kh, sh, pt, pb, dh)
    wo = conv_out_size(wd, kw, sw, pl, pr, dw)
    if ho < 1 or wo < 1:
        raise ValueError(f"nn.conv2d kernel {kh}x{kw} (dilations {dh},{dw}) does not fit input {x} with pads "
                         f"{list(attrs['pads'])}")
    return [TensorType((x.shape[0], o, ho, wo), x.dtype)]


def conv2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, strides: Sequence[int], pads: Sequence[int],
           dilations: Sequence[int], groups: int) -> np.ndarray:
    """2-D convolution, NCHW input and OIHW weight, as im2col views and one batched matmul."""
    n, _, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (pt, pl, pb, pr), (dh, dw) = strides, pads, dilations
    ho = conv_out_size(h, kh, sh, pt, pb, dh)
    wo = conv_out_size(wd, kw, sw, pl, pr, dw)
    xp = np.pad(upcast(x), ((0, 0), (0, 0), (pt, pb), (pl, pr))) if any(pads) else upcast(x)
    s_n, s_c, s_h, s_w = xp.strides
    # Axes (group, channel in group, kernel row, kernel col, batch, out row, out col): the last
    # axes walk memory almost contiguously, so the copy into the column matrix stays cheap.
    cols = as_strided(
        xp, (groups, cg, kh, kw, n, ho, wo),
        (cg * s_c, s_c, dh * s_h, dw * s_w, s_n, sh * s_h, sw * s_w), writeable=False,
    ).reshape(groups, cg * kh * kw, n * ho * wo)
    wg = upcast(w).reshape(groups, o // groups, cg * kh * kw)
    y = np.matmul(wg, cols).reshape(groups, o // groups, n, ho, wo)
    y = y.transpose(2, 0, 1, 3, 4).reshape(n, o, ho, wo)
    if bias is not None:
        y = y + upcast(bias).reshape(1, o, 1, 1)
    return np.ascontiguousarray(y, dtype=x.dtype)


def _conv_flops(ins: Sequence[TensorType], outs: Sequence[TensorType], attrs: Mapping[str, Any]) -> int:
    _, cg, kh, kw = ins[1].shape
    return 2 * outs[0].numel() * int(cg) * int(kh) * int(kw)


register(OpDef(
    "nn.conv2d", ("x", "w", "bias"), _conv_infer,
    lambda xs, a: [conv2d(xs[0], xs[1], xs[2] if len(xs) == 3 else None, a["strides"], a["pads"],
                          a["dilations"], a["groups"])],
    FusionKind.OUT_FUSABLE, num_optional=1,
    attrs=(Attr("strides", AttrKind.INTS, (1, 1)), Attr("pads", AttrKind.INTS, (0, 0, 0, 0)),
           Attr("dilations", AttrKind.INTS, (1, 1)), Attr("groups", AttrKind.INT, 1)),
    flops=_conv_flops,
    doc="2-D convolution: NCHW input, OIHW weight, optional bias; pads are (top, left, bottom, right)",
))
