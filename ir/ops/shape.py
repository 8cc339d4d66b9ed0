"""Layout and data-movement ops (injective): no arithmetic, every output element copies one input element."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..opdef import Attr, AttrKind, ComputeFn, FusionKind, InferFn, OpDef, register
from ..types import Dim, TensorType, broadcast_shapes
from .common import (
    BIG,
    SymProduct,
    check_dtype,
    dims_agree,
    no_flops,
    normalize_axes,
    normalize_axis,
    product_dim,
)


def _injective(name: str, inputs: tuple[str, ...], infer: InferFn, compute: ComputeFn, attrs: tuple[Attr, ...] = (),
               doc: str = "", variadic: bool = False) -> OpDef:
    return register(OpDef(name, inputs, infer, compute, FusionKind.INJECTIVE, attrs=attrs, variadic=variadic,
                          flops=no_flops, doc=doc))


# --- reshape ------------------------------------------------------------------------------------

def _reshape_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x, spec = ins[0], attrs["shape"]
    if list(spec).count(-1) > 1:
        raise ValueError(f"tensor.reshape shape {list(spec)} has more than one -1")
    out: list[Dim | None] = []
    for i, s in enumerate(spec):
        if s == 0:
            if i >= x.rank:
                raise ValueError(f"tensor.reshape shape {list(spec)}: 0 at position {i} copies no dim of {x}")
            out.append(x.shape[i])
        elif s == -1:
            out.append(None)
        elif s < -1:
            raise ValueError(f"tensor.reshape shape {list(spec)} has a negative size {s}")
        else:
            out.append(s)
    total = SymProduct.of(x.shape)
    known = SymProduct.of([d for d in out if d is not None])
    if None in out:
        rest = total.divide(known)
        dim = rest.as_dim() if rest is not None else None
        if dim is None:
            raise ValueError(f"tensor.reshape cannot infer -1 in {list(spec)} for {x}: {total} elements over "
                             f"{known} is not a single dim")
        out[out.index(None)] = dim
    elif known != total:
        raise ValueError(f"tensor.reshape of {x} ({total} elements) to {list(spec)} ({known} elements)")
    return [x.with_shape([d for d in out if d is not None])]


def _reshape(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    x = xs[0]
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(attrs["shape"])]
    return [np.reshape(x, shape)]


_injective("tensor.reshape", ("x",), _reshape_infer, _reshape, attrs=(Attr("shape", AttrKind.INTS),),
           doc="same elements in a new shape: 0 copies the input dim at that position, one -1 is inferred")


# --- transpose ----------------------------------------------------------------------------------

def _transpose_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    perm = attrs["perm"] or tuple(reversed(range(x.rank)))
    if sorted(perm) != list(range(x.rank)):
        raise ValueError(f"perm {list(perm)} is not a permutation of {x.rank} axes")
    return [x.with_shape([x.shape[p] for p in perm])]


_injective("tensor.transpose", ("x",), _transpose_infer,
           lambda xs, a: [np.ascontiguousarray(np.transpose(xs[0], a["perm"] or None))],
           attrs=(Attr("perm", AttrKind.INTS, ()),), doc="permute axes (empty perm reverses them)")


# --- concat and split ---------------------------------------------------------------------------

def _concat_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    first = ins[0]
    axis = normalize_axis(attrs["axis"], first.rank)
    shape = list(first.shape)
    for t in ins[1:]:
        if t.dtype != first.dtype or t.rank != first.rank:
            raise ValueError(f"tensor.concat operands differ in dtype or rank: {', '.join(map(str, ins))}")
        for i, d in enumerate(t.shape):
            if i != axis:
                if not dims_agree(shape[i], d):
                    raise ValueError(f"tensor.concat on axis {axis}: dim {i} differs in "
                                     f"{', '.join(map(str, ins))}")
                shape[i] = shape[i] if isinstance(shape[i], int) else d
    parts = [t.shape[axis] for t in ins]
    syms = [d for d in parts if isinstance(d, str)]
    fixed = sum(d for d in parts if isinstance(d, int))
    if syms and (len(syms) > 1 or fixed):
        raise ValueError(f"tensor.concat on axis {axis}: the sum of dims {parts} is not a single dim")
    shape[axis] = syms[0] if syms else fixed
    return [first.with_shape(shape)]


_injective("tensor.concat", ("xs",), _concat_infer, lambda xs, a: [np.concatenate(xs, axis=a["axis"])],
           attrs=(Attr("axis", AttrKind.INT),), variadic=True, doc="join operands along axis")


def _split_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x, sizes = ins[0], attrs["sizes"]
    axis = normalize_axis(attrs["axis"], x.rank)
    if not sizes or any(s < 0 for s in sizes):
        raise ValueError(f"tensor.split sizes must be non-negative and not empty, got {list(sizes)}")
    d = x.shape[axis]
    if d != sum(sizes):
        raise ValueError(f"tensor.split sizes {list(sizes)} add up to {sum(sizes)}, but axis {axis} of {x} is {d}")
    return [x.with_shape(x.shape[:axis] + (s,) + x.shape[axis + 1:]) for s in sizes]


def _split(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    cuts = np.cumsum(attrs["sizes"])[:-1]
    return [np.ascontiguousarray(p) for p in np.split(xs[0], cuts, axis=attrs["axis"])]


_injective("tensor.split", ("x",), _split_infer, _split,
           attrs=(Attr("axis", AttrKind.INT), Attr("sizes", AttrKind.INTS)),
           doc="cut x along axis into pieces of the given sizes (one result per size)")


# --- slice --------------------------------------------------------------------------------------

def _slice_params(rank: int, attrs: Mapping[str, Any]) -> list[tuple[int, int, int, int]]:
    # (axis, start, end, step) per sliced axis, checked.
    starts, ends = attrs["starts"], attrs["ends"]
    axes = normalize_axes(attrs["axes"] or range(len(starts)), rank)
    steps = attrs["steps"] or (1,) * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ValueError(f"tensor.slice starts {list(starts)}, ends {list(ends)}, axes {list(attrs['axes'])} and "
                         f"steps {list(attrs['steps'])} differ in length")
    if 0 in steps:
        raise ValueError("tensor.slice steps must not be 0")
    return list(zip(axes, starts, ends, steps))


def slice_bounds(dim: int, start: int, end: int, step: int) -> tuple[int, int, int]:
    """ONNX clamping of a slice on an axis of size ``dim``: (start, end, length); end -1 means before 0."""
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    length = max(0, -(-(end - start) // step))
    return start, end, length


def _slice_dim(dim: Dim, start: int, end: int, step: int, x: TensorType, axis: int) -> Dim:
    if isinstance(dim, int):
        return slice_bounds(dim, start, end, step)[2]
    # A symbolic dim keeps its symbol only when the slice provably covers all of it.
    whole = (step == 1 and (start == 0 or start <= -BIG) and end >= BIG) or \
            (step == -1 and (start == -1 or start >= BIG) and end <= -BIG)
    if not whole:
        raise ValueError(f"tensor.slice [{start}:{end}:{step}] of symbolic axis {axis} of {x} has no known size")
    return dim


def _slice_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    shape = list(x.shape)
    for axis, start, end, step in _slice_params(x.rank, attrs):
        shape[axis] = _slice_dim(shape[axis], start, end, step, x, axis)
    return [x.with_shape(shape)]


def _slice(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    x = xs[0]
    index = [slice(None)] * x.ndim
    for axis, start, end, step in _slice_params(x.ndim, attrs):
        s, e, _ = slice_bounds(x.shape[axis], start, end, step)
        index[axis] = slice(s, e if e >= 0 else None, step)
    return [np.ascontiguousarray(x[tuple(index)])]


_injective("tensor.slice", ("x",), _slice_infer, _slice,
           attrs=(Attr("starts", AttrKind.INTS), Attr("ends", AttrKind.INTS), Attr("axes", AttrKind.INTS, ()),
                  Attr("steps", AttrKind.INTS, ())),
           doc="x[starts:ends:steps] on axes (ONNX Slice: negative bounds count from the end, bounds clamp)")


# --- gather -------------------------------------------------------------------------------------

def _gather_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    data, indices = ins
    check_dtype(indices, "int", "tensor.gather indices")
    if data.rank < 1:
        raise ValueError(f"tensor.gather data must have rank >= 1, got {data}")
    axis = normalize_axis(attrs["axis"], data.rank)
    return [data.with_shape(data.shape[:axis] + indices.shape + data.shape[axis + 1:])]


def _gather(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    data, indices = xs
    # np.take wraps negative indices like Python, as ONNX asks, and raises on out-of-range ones.
    return [np.take(data, indices.astype(np.int64, copy=False), axis=attrs["axis"])]


_injective("tensor.gather", ("data", "indices"), _gather_infer, _gather, attrs=(Attr("axis", AttrKind.INT, 0),),
           doc="pick entries of data along axis at integer indices (negative indices count from the end)")


# --- flatten, squeeze, unsqueeze ----------------------------------------------------------------

def _flatten_axis(rank: int, axis: int) -> int:
    # Flatten takes axis in [-rank, rank]: axis == rank puts everything in the first dim.
    if not -rank <= axis <= rank:
        raise ValueError(f"tensor.flatten axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def _flatten_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    axis = _flatten_axis(x.rank, attrs["axis"])
    outer = product_dim(x.shape[:axis], "tensor.flatten")
    return [x.with_shape((outer, product_dim(x.shape[axis:], "tensor.flatten")))]


def _flatten(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    x = xs[0]
    axis = _flatten_axis(x.ndim, attrs["axis"])
    return [x.reshape(int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))]


_injective("tensor.flatten", ("x",), _flatten_infer, _flatten, attrs=(Attr("axis", AttrKind.INT, 1),),
           doc="2-D view: dims before axis multiply into the first, the rest into the second")


def _squeeze_axes(x: TensorType, axes: Sequence[int]) -> tuple[int, ...]:
    if not axes:
        return tuple(i for i, d in enumerate(x.shape) if d == 1)
    out = normalize_axes(axes, x.rank)
    for a in out:
        if x.shape[a] != 1:
            raise ValueError(f"tensor.squeeze axis {a} of {x} is {x.shape[a]}, not 1")
    return out


def _squeeze_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    axes = _squeeze_axes(x, attrs["axes"])
    return [x.with_shape([d for i, d in enumerate(x.shape) if i not in axes])]


def _squeeze(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    x = xs[0]
    return [np.squeeze(x, _squeeze_axes(TensorType.of(x), attrs["axes"]))]


_injective("tensor.squeeze", ("x",), _squeeze_infer, _squeeze, attrs=(Attr("axes", AttrKind.INTS, ()),),
           doc="drop size-1 axes (empty axes: every static size-1 axis)")


def _unsqueeze_shape(shape: Sequence[Any], axes: Sequence[int]) -> list[Any]:
    rank = len(shape) + len(axes)
    where = normalize_axes(axes, rank)
    rest = iter(shape)
    return [1 if i in where else next(rest) for i in range(rank)]


def _unsqueeze_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    if not attrs["axes"]:
        raise ValueError("tensor.unsqueeze needs at least one axis")
    return [ins[0].with_shape(_unsqueeze_shape(ins[0].shape, attrs["axes"]))]


_injective("tensor.unsqueeze", ("x",), _unsqueeze_infer,
           lambda xs, a: [xs[0].reshape(_unsqueeze_shape(xs[0].shape, a["axes"]))],
           attrs=(Attr("axes", AttrKind.INTS),), doc="insert size-1 axes at the given positions of the result")


# --- expand, tile -------------------------------------------------------------------------------

def _expand_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x, shape = ins[0], attrs["shape"]
    if any(d < 0 for d in shape):
        raise ValueError(f"tensor.expand shape {list(shape)} has a negative dim")
    try:
        return [x.with_shape(broadcast_shapes(x.shape, tuple(shape)))]
    except ValueError:
        raise ValueError(f"tensor.expand: {x} does not broadcast with shape {list(shape)}") from None


def _expand(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    x = xs[0]
    return [np.array(np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(attrs["shape"]))))]


_injective("tensor.expand", ("x",), _expand_infer, _expand, attrs=(Attr("shape", AttrKind.INTS),),
           doc="broadcast x against shape (both ways, as ONNX Expand)")


def _tile_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x, reps = ins[0], attrs["repeats"]
    if len(reps) != x.rank or any(r < 0 for r in reps):
        raise ValueError(f"tensor.tile repeats {list(reps)} must be {x.rank} non-negative ints for {x}")
    shape: list[Dim] = []
    for d, r in zip(x.shape, reps):
        if isinstance(d, str) and r != 1:
            raise ValueError(f"tensor.tile cannot repeat symbolic dim {d} of {x} {r} times")
        shape.append(d if isinstance(d, str) else d * r)
    return [x.with_shape(shape)]


_injective("tensor.tile", ("x",), _tile_infer, lambda xs, a: [np.tile(xs[0], a["repeats"])],
           attrs=(Attr("repeats", AttrKind.INTS),), doc="repeat x repeats[i] times along each axis i")


# --- pad ----------------------------------------------------------------------------------------

_PAD_MODES = ("constant", "reflect", "edge")


def _pad_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x, pads, mode = ins[0], attrs["pads"], attrs["mode"]
    if mode not in _PAD_MODES:
        raise ValueError(f"tensor.pad mode must be one of {', '.join(_PAD_MODES)}, got {mode!r}")
    if len(pads) != 2 * x.rank:
        raise ValueError(f"tensor.pad pads {list(pads)} must have {2 * x.rank} entries (begins then ends) for {x}")
    shape: list[Dim] = []
    for i, d in enumerate(x.shape):
        b, e = pads[i], pads[i + x.rank]
        if isinstance(d, str):
            if b or e:
                raise ValueError(f"tensor.pad cannot pad symbolic dim {d} of {x}")
            shape.append(d)
            continue
        if d + b + e < 0:
            raise ValueError(f"tensor.pad pads {list(pads)} crop axis {i} of {x} below zero")
        if mode == "reflect" and max(b, e) > d - 1:
            raise ValueError(f"tensor.pad reflect pads {b},{e} on axis {i} of {x} must be smaller than {d}")
        if mode == "edge" and (b > 0 or e > 0) and d == 0:
            raise ValueError(f"tensor.pad edge mode cannot pad empty axis {i} of {x}")
        shape.append(d + b + e)
    return [x.with_shape(shape)]


def _pad(xs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list[np.ndarray]:
    x, pads, mode = xs[0], attrs["pads"], attrs["mode"]
    r = x.ndim
    widths = [(max(pads[i], 0), max(pads[i + r], 0)) for i in range(r)]
    kwargs = {"constant_values": np.asarray(attrs["value"]).astype(x.dtype)} if mode == "constant" else {}
    y = np.pad(x, widths, mode=mode, **kwargs)  # type: ignore[call-overload]
    # Negative pads crop (ONNX allows them).
    crop = tuple(slice(-min(pads[i], 0), y.shape[i] + min(pads[i + r], 0)) for i in range(r))
    return [np.ascontiguousarray(y[crop])]


_injective("tensor.pad", ("x",), _pad_infer, _pad,
           attrs=(Attr("pads", AttrKind.INTS), Attr("mode", AttrKind.STR, "constant"),
                  Attr("value", AttrKind.FLOAT, 0.0)),
           doc="pad each axis (pads: all begins, then all ends; negative crops) by a constant, reflection or edge")


# --- trilu --------------------------------------------------------------------------------------

def _trilu_infer(ins: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    if ins[0].rank < 2:
        raise ValueError(f"tensor.trilu needs rank >= 2, got {ins[0]}")
    return [ins[0]]


_injective("tensor.trilu", ("x",), _trilu_infer,
           lambda xs, a: [np.triu(xs[0], a["k"]) if a["upper"] else np.tril(xs[0], a["k"])],
           attrs=(Attr("upper", AttrKind.BOOL, True), Attr("k", AttrKind.INT, 0)),
           doc="keep the upper (or lower) triangle of the last two axes from diagonal k, zero the rest")
