"""The rewrite rules of ``canonicalize``, one a line, the identity in the comment.

``IDENTITIES`` are algebraic and layout identities; ``FOLDS`` fold batch norms and per-channel
scales into the convolution or matrix product before them. The engine (``canonicalize.py``)
applies a rewrite only if its result has exactly the type of the value it replaces, so a rule such
as ``x + 0 -> x`` never drops a broadcast and ``reshape(x) -> x`` fires only for the same shape.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ..ir.graph import Node
from .patterns import Const, Data, Match, New, Op, Opt, Rewrite, Rule, Var

x = Var("x")
w, b, k = Const("w"), Const("b"), Const("k")
BN_PARAMS = (Const("scale"), Const("bias"), Const("mean"), Const("var"))
RESHAPE_LIKE = ("tensor.reshape", "tensor.flatten", "tensor.squeeze", "tensor.unsqueeze")

neg = partial(Op, "math.neg")
relu = partial(Op, "nn.relu")
identity = partial(Op, "tensor.identity")
dropout = partial(Op, "nn.dropout")
cast = partial(Op, "tensor.cast")
reshape = partial(Op, "tensor.reshape")
squeeze = partial(Op, "tensor.squeeze")
unsqueeze = partial(Op, "tensor.unsqueeze")
expand = partial(Op, "tensor.expand")
concat = partial(Op, "tensor.concat")
slice_ = partial(Op, "tensor.slice")
pad = partial(Op, "tensor.pad")
tile = partial(Op, "tensor.tile")
transpose = partial(Op, "tensor.transpose")
batch_norm = partial(Op, "nn.batch_norm")
conv = partial(Op, "nn.conv2d")
gemm = partial(Op, "nn.gemm")
matmul = partial(Op, "nn.matmul")


def _perm(n: Node) -> tuple[int, ...]:
    """The permutation of a transpose (an empty perm reverses the axes)."""
    rank = n.inputs[0].type.rank
    return tuple(n.attrs["perm"]) or tuple(reversed(range(rank)))


def identity_perm(n: Node) -> bool:
    """A transpose that keeps every axis in place."""
    return _perm(n) == tuple(range(n.inputs[0].type.rank))


def whole_slice(n: Node) -> bool:
    """A slice that starts at 0 and runs to the end with step 1 on every sliced axis."""
    shape = n.inputs[0].type.shape
    starts, ends = n.attrs["starts"], n.attrs["ends"]
    axes = n.attrs.get("axes") or tuple(range(len(starts)))
    steps = n.attrs.get("steps") or (1,) * len(starts)
    for axis, start, end, step in zip(axes, starts, ends, steps):
        dim = shape[axis % len(shape)]
        # An unknown dim is covered only by the "to the end" sentinel that exporters write.
        if step != 1 or start != 0 or end < (dim if isinstance(dim, int) else 2**31 - 1):
            return False
    return True


def no_padding(n: Node) -> bool:
    """A pad that adds nothing on any side."""
    return not any(n.attrs["pads"])


def unit_repeats(n: Node) -> bool:
    """A tile that repeats every axis once."""
    return all(r == 1 for r in n.attrs["repeats"])


def compose_transposes(m: Match) -> Rewrite:
    """transpose(transpose(x, p), q) -> transpose(x, [p[q[0]], p[q[1]], ...])."""
    p, q = _perm(m.inner), _perm(m.outer)
    return New("tensor.transpose", m.x, perm=tuple(p[i] for i in q))


def reshape_once(m: Match) -> Rewrite:
    """reshape(any reshape of x) -> one reshape of x to the final shape."""
    out = m.outer.output.type
    shape = out.shape if out.is_static else m.outer.attrs["shape"]
    return New("tensor.reshape", m.x, shape=tuple(shape))


def merge_unsqueezes(m: Match) -> Rewrite:
    """unsqueeze(unsqueeze(x, a), b) -> unsqueeze(x, c), c = where the new unit dims end up."""
    rank = m.x.type.rank
    inner = {a % (rank + len(m.inner.attrs["axes"])) for a in m.inner.attrs["axes"]}
    middle = [i in inner for i in range(rank + len(inner))]  # True marks an inserted dim
    outer = {a % (len(middle) + len(m.outer.attrs["axes"])) for a in m.outer.attrs["axes"]}
    final, rest = [], iter(middle)
    for i in range(len(middle) + len(outer)):
        final.append(True if i in outer else next(rest))
    return New("tensor.unsqueeze", m.x, axes=tuple(i for i, new in enumerate(final) if new))


IDENTITIES: tuple[Rule, ...] = (
    Rule("add-zero", x + 0, x),                                           # x + 0 -> x
    Rule("zero-add", 0 + x, x),                                           # 0 + x -> x
    Rule("sub-zero", x - 0, x),                                           # x - 0 -> x
    Rule("zero-sub", 0 - x, lambda m: New("math.neg", m.x)),              # 0 - x -> -x
    Rule("mul-one", x * 1, x),                                            # x * 1 -> x
    Rule("one-mul", 1 * x, x),                                            # 1 * x -> x
    Rule("div-one", x / 1, x),                                            # x / 1 -> x
    Rule("pow-one", x ** 1, x),                                           # x ** 1 -> x
    Rule("neg-neg", neg(neg(x)), x),                                      # -(-x) -> x
    Rule("relu-relu", relu(relu(x, name="inner")), lambda m: m.inner.output),  # relu(relu(x)) -> relu(x)
    Rule("identity", identity(x), x),                                     # identity(x) -> x
    Rule("dropout", dropout(x), x),                                       # dropout(x) -> x (inference)
    Rule("cast-same", cast(x), x),                                        # cast(x: T, to=T) -> x
    Rule("reshape-same", reshape(x), x),                                  # reshape(x, shape(x)) -> x
    Rule("expand-same", expand(x), x),                                    # expand(x, shape(x)) -> x
    Rule("concat-one", concat(x), x),                                     # concat(x) -> x
    Rule("squeeze-unsqueeze", squeeze(unsqueeze(x)), x),                  # squeeze(unsqueeze(x, a), a) -> x
    Rule("unsqueeze-squeeze", unsqueeze(squeeze(x)), x),                  # unsqueeze(squeeze(x, a), a) -> x
    Rule("slice-all", slice_(x, where=whole_slice), x),                   # x[0:n:1] -> x
    Rule("pad-zero", pad(x, where=no_padding), x),                        # pad(x, 0) -> x
    Rule("tile-one", tile(x, where=unit_repeats), x),                     # tile(x, [1,..]) -> x
    Rule("transpose-id", transpose(x, where=identity_perm), x),           # transpose(x, [0,1,..]) -> x
    Rule("transpose-transpose", transpose(transpose(x, name="inner"), name="outer"), compose_transposes),  # t(t(x,p),q) -> t(x,p[q])
    Rule("unsqueeze-unsqueeze", unsqueeze(unsqueeze(x, name="inner"), name="outer"), merge_unsqueezes),  # u(u(x,a),b) -> u(x,a+b)
    Rule("reshape-reshape", reshape(Op(RESHAPE_LIKE, x), name="outer"), reshape_once),    # reshape(reshape(x)) -> reshape(x)
)


# ---- batch norm and per-channel scale folding -------------------------------------------------


def _bn_affine(m: Match) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel (s, t) with bn(y) = y * s + t, in float64; None unless float and one channel axis."""
    params = [m.scale, m.bias, m.mean, m.var]
    if any(p.dtype.kind != "f" or p.ndim != 1 or p.shape != params[0].shape for p in params):
        return None
    scale, bias, mean, var = (p.astype(np.float64) for p in params)
    s = scale / np.sqrt(var + m.bn.attrs["epsilon"])
    return s, bias - mean * s


def _named(m: Match, key: str, suffix: str) -> str:
    """A readable name for a folded constant derived from the constant it replaces."""
    base = m.values[key].name if key in m.values else None
    return f"{base or 'folded'}_{suffix}"


def fold_conv_bn(m: Match) -> Rewrite:
    """bn(conv(x, w, b?)) -> conv(x, w * s, b * s + t)."""
    st = _bn_affine(m)
    if st is None or m.w.dtype.kind != "f" or st[0].shape != (m.w.shape[0],):
        return None
    s, t = st
    bias = m.get("b")
    b64 = np.zeros_like(s) if bias is None else bias.astype(np.float64)
    w2 = (m.w.astype(np.float64) * s[:, None, None, None]).astype(m.w.dtype)
    b2 = (b64 * s + t).astype(m.w.dtype)
    return New("nn.conv2d", m.x, Data(w2, _named(m, "w", "bn")), Data(b2, _named(m, "w", "bn_bias")),
               **m.conv.attrs)


def fold_gemm_bn(m: Match) -> Rewrite:
    """bn(gemm(x, w, c?)) -> gemm(x, w * s, beta * c * s + t) with beta = 1 (scales w's output columns)."""
    st = _bn_affine(m)
    attrs = dict(m.gemm.attrs)
    if st is None or m.w.dtype.kind != "f" or m.w.ndim != 2:
        return None
    s, t = st
    trans_b = attrs["trans_b"]
    if s.shape != (m.w.shape[0] if trans_b else m.w.shape[1],):
        return None
    w2 = (m.w.astype(np.float64) * (s[:, None] if trans_b else s[None, :])).astype(m.w.dtype)
    c = m.get("b")
    c2 = t if c is None else attrs["beta"] * c.astype(np.float64) * s + t
    attrs["beta"] = 1.0
    return New("nn.gemm", m.x, Data(w2, _named(m, "w", "bn")), Data(c2.astype(m.w.dtype), _named(m, "w", "bn_bias")),
               **attrs)


def fold_matmul_bn(m: Match) -> Rewrite:
    """bn(x @ w) with a 2-D result -> x @ (w * s) + t."""
    st = _bn_affine(m)
    if st is None or m.w.dtype.kind != "f" or m.w.ndim != 2 or st[0].shape != (m.w.shape[1],):
        return None
    s, t = st
    w2 = (m.w.astype(np.float64) * s[None, :]).astype(m.w.dtype)
    return New("math.add", New("nn.matmul", m.x, Data(w2, _named(m, "w", "bn"))),
               Data(t.astype(m.w.dtype), _named(m, "w", "bn_bias")))


def _per_channel(k: np.ndarray, channels: int) -> np.ndarray | None:
    """``k`` as a vector of ``channels`` if it broadcasts over NCHW along the channel axis only."""
    if k.ndim > 4 or k.dtype.kind != "f":
        return None
    shape = (1,) * (4 - k.ndim) + k.shape
    if shape[0] != 1 or shape[2:] != (1, 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(k.reshape(-1), (channels,)).astype(np.float64)


def fold_conv_scale(m: Match) -> Rewrite:
    """conv(x, w, b?) * k -> conv(x, w * k, b * k) for a per-channel constant k."""
    kv = _per_channel(m.k, m.w.shape[0])
    if kv is None or m.w.dtype.kind != "f":
        return None
    bias = m.get("b")
    w2 = (m.w.astype(np.float64) * kv[:, None, None, None]).astype(m.w.dtype)
    inputs = [m.x, Data(w2, _named(m, "w", "scaled"))]
    if bias is not None:
        inputs.append(Data((bias.astype(np.float64) * kv).astype(m.w.dtype), _named(m, "b", "scaled")))
    return New("nn.conv2d", *inputs, **m.conv.attrs)


def fold_conv_shift(m: Match) -> Rewrite:
    """conv(x, w, b?) + k -> conv(x, w, b + k) for a per-channel constant k."""
    kv = _per_channel(m.k, m.w.shape[0])
    if kv is None or m.w.dtype.kind != "f":
        return None
    bias = m.get("b")
    b2 = (kv if bias is None else bias.astype(np.float64) + kv).astype(m.w.dtype)
    return New("nn.conv2d", m.x, m.values["w"], Data(b2, _named(m, "w", "shifted_bias")), **m.conv.attrs)


_conv = conv(x, w, Opt(b), name="conv", one_use=True)
_gemm = gemm(x, w, Opt(b), name="gemm", one_use=True)
_matmul_2d = matmul(x, w, name="mm", one_use=True, where=lambda n: n.output.type.rank == 2)

FOLDS: tuple[Rule, ...] = (
    Rule("conv-bn", batch_norm(_conv, *BN_PARAMS, name="bn"), fold_conv_bn),           # bn(conv(x,w,b)) -> conv(x, w*s, b*s+t)
    Rule("gemm-bn", batch_norm(_gemm, *BN_PARAMS, name="bn"), fold_gemm_bn),           # bn(gemm(x,w,c)) -> gemm(x, w*s, c*s+t)
    Rule("matmul-bn", batch_norm(_matmul_2d, *BN_PARAMS, name="bn"), fold_matmul_bn),  # bn(x @ w) -> x @ (w*s) + t
    Rule("conv-mul", _conv * k, fold_conv_scale),                                      # conv(x,w,b) * k -> conv(x, w*k, b*k)
    Rule("mul-conv", k * _conv, fold_conv_scale),                                      # k * conv(x,w,b) -> conv(x, w*k, b*k)
    Rule("conv-add", _conv + k, fold_conv_shift),                                      # conv(x,w,b) + k -> conv(x, w, b+k)
    Rule("add-conv", k + _conv, fold_conv_shift),                                      # k + conv(x,w,b) -> conv(x, w, b+k)
)
