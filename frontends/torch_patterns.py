"""FX subgraphs that torch builds out of many ATen ops but the IR has as one op.

``F.local_response_norm`` is Python code, so ``torch.export`` records its arithmetic:

    div(x, pow(add(mul(view(squeeze(avg_pool3d(constant_pad_nd(view(mul(x, x)))))), alpha), k), beta))

``find_lrn`` recognizes that chain (odd window sizes only: with an even size torch's window is
off by one from ONNX LRN's) so the importer emits one ``nn.lrn`` instead of fourteen nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

aten = torch.ops.aten
_RESHAPES = (aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.squeeze.dims,
             aten.squeeze.dim, aten.unsqueeze.default)


@dataclass(frozen=True)
class LrnMatch:
    """An ``F.local_response_norm`` of ``x``: the ``nn.lrn`` attributes and the nodes it replaces."""

    x: torch.fx.Node
    size: int
    alpha: float
    beta: float
    bias: float
    inner: frozenset[torch.fx.Node]  # the chain's nodes other than the final div


def find_lrn(graph: torch.fx.Graph) -> dict[torch.fx.Node, LrnMatch]:
    """Every local-response-norm chain in ``graph``, keyed by its final ``div`` node."""
    found = {}
    for node in graph.nodes:
        if node.op == "call_function" and node.target is aten.div.Tensor:
            match = _match(node)
            if match is not None:
                found[node] = match
    return found


def _arg(node: Any, target: Any) -> torch.fx.Node | None:
    """``node`` if it calls ``target`` and nothing else reads it."""
    if isinstance(node, torch.fx.Node) and node.target is target and len(node.users) == 1:
        return node
    return None


def _match(div: torch.fx.Node) -> LrnMatch | None:
    x, den = div.args[0], div.args[1]
    chain: list[torch.fx.Node] = []
    pw = _arg(den, aten.pow.Tensor_Scalar)
    add = pw is not None and _arg(pw.args[0], aten.add.Tensor)
    mul = add and _arg(add.args[0], aten.mul.Tensor)
    if not (pw and add and mul) or not all(isinstance(v, (int, float)) for v in (pw.args[1], add.args[1], mul.args[1])):
        return None
    chain += [pw, add, mul]
    node = mul.args[0]
    while isinstance(node, torch.fx.Node) and node.target in _RESHAPES and len(node.users) == 1:
        chain.append(node)
        node = node.args[0]
    pool = _arg(node, aten.avg_pool3d.default)
    pad = pool is not None and _arg(pool.args[0], aten.constant_pad_nd.default)
    if not (pool and pad):
        return None
    size = pool.args[1][0]
    stride = pool.args[2] if len(pool.args) > 2 else []
    if (list(pool.args[1]) != [size, 1, 1] or list(stride) not in ([], [1, 1, 1]) or len(pool.args) > 3
            or pool.kwargs or add.kwargs
            or size % 2 == 0 or list(pad.args[1]) != [0, 0, 0, 0, size // 2, (size - 1) // 2]
            or (len(pad.args) > 2 and pad.args[2] != 0)):
        return None
    chain += [pool, pad]
    node = pad.args[0]
    while isinstance(node, torch.fx.Node) and node.target in _RESHAPES and len(node.users) == 1:
        chain.append(node)
        node = node.args[0]
    square = _arg(node, aten.mul.Tensor)
    if square is None or square.args[0] is not x or square.args[1] is not x:
        return None
    if not isinstance(x, torch.fx.Node) or getattr(x.meta.get("val"), "dim", lambda: 0)() != 4:
        return None
    chain.append(square)
    return LrnMatch(x, int(size), float(mul.args[1]), float(pw.args[1]), float(add.args[1]), frozenset(chain))
