"""Kernels to measure: from the benchmark zoo's networks and from random graphs, with schedule variants.

A network is imported at a few input sizes and partitioned three ways (the ``fuse`` rule, every op
alone, and random legal groupings), so the data holds both sides of every fusion decision. Random
graphs add shapes, dtypes and op mixes the zoo lacks. Each kernel then gets its default schedule
and others drawn from the schedule search's candidates (``passes.search_space``) and, for wider
coverage, at random from the knobs of ``KernelSchedule``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir.graph import CONST, FUSED, Graph, GraphBuilder, Node, Value
from ..ir.printer import print_graph
from ..ir.types import DType, TensorType
from .features import anchor_of, body_nodes, problem_size

NETWORK_OPTIONS: dict[str, tuple[dict[str, Any], ...]] = {
    "resnet50": ({"image_size": 64}, {"image_size": 96}),
    "densenet121": ({"image_size": 64},),
    "inception_v1": ({"image_size": 64}, {"image_size": 96}),
    "squeezenet1_1": ({"image_size": 64}, {"image_size": 128}),
    "shufflenet_v2": ({"image_size": 64}, {"image_size": 128}),
    "mobilenet_v2": ({"image_size": 64}, {"image_size": 128}),
    "alexnet": ({"image_size": 224},),
    "bert_base": ({"layers": 2, "seq": 16}, {"layers": 2, "seq": 64}),
    "gpt2_small": ({"layers": 2, "seq": 16}, {"layers": 2, "seq": 64}),
}
"""The zoo networks collected by default, each at a few sizes (small inputs keep kernels quick to time)."""

SYNTHETIC = "synthetic"
"""The model name of random-graph kernels (they belong to no network)."""
FULL_SPACE = "full-space"
"""The origin of records that measure every candidate of a kernel's schedule search (``collect --full-space``)."""


@dataclass(frozen=True)
class KernelJob:
    """One planned measurement: a kernel of a network, a schedule, and the weights it may pack."""

    model: str
    origin: str
    kernel: Node
    schedule: dict[str, Any]
    weight: int
    workload: str
    ir: str
    constants: Mapping[Value, np.ndarray]

    @property
    def ops(self) -> str:
        """``nn.conv2d+math.add+nn.relu``."""
        return "+".join(n.op for n in body_nodes(self.kernel))


def kernel_graph(kernel: Node) -> Graph:
    """The kernel as a one-node graph whose inputs are its operands (what records store and hash)."""
    inputs = tuple(Value(v.type, f"in{i}") for i, v in enumerate(kernel.inputs))
    outputs = tuple(Value(v.type) for v in kernel.outputs)
    node = Node(kernel.op, inputs, outputs, kernel.attrs, {}, kernel.body, "k" if kernel.op == FUSED else None)
    return Graph("kernel", inputs, (node,), outputs)


def workload_of(graph: Graph) -> str:
    """A stable hash of a kernel graph's IR text (as ``passes.tuning_db.workload_key``)."""
    return hashlib.sha256(print_graph(graph).encode()).hexdigest()[:24]


# ------------------------------------------------------------------------------------- sources


def network_graph(name: str, options: Mapping[str, Any]) -> Graph:
    """The zoo network ``name`` built with ``options``, imported and canonicalized."""
    from ..benchmarks import zoo
    from ..frontends.torch import import_torch
    from ..passes import run_passes

    module, inputs = zoo.build(name, **options)
    graph, _ = run_passes(import_torch(module, inputs), "canonicalize")
    return graph


UNARY: tuple[tuple[str, dict[str, Any]], ...] = (
    ("nn.relu", {}), ("nn.gelu", {}), ("nn.sigmoid", {}), ("math.tanh", {}), ("nn.silu", {}), ("math.exp", {}),
    ("math.neg", {}), ("math.abs", {}), ("math.erf", {}), ("nn.softplus", {}), ("nn.mish", {}), ("math.sqrt", {}),
    ("nn.hard_swish", {}), ("nn.hard_sigmoid", {}), ("math.floor", {}), ("math.clip", {"min": 0.0, "max": 6.0}),
    ("nn.leaky_relu", {"alpha": 0.1}), ("nn.elu", {"alpha": 1.0}), ("math.sin", {}),
)
BINARY = ("math.add", "math.mul", "math.sub", "math.div", "math.max", "math.min", "math.pow")
"""Elementwise ops random graphs draw from (the zoo networks use only a few of them)."""


NETWORK_PATTERNS = ("batchnorm", "shuffle", "split", "gemm", "attention", "lrn", "residual_norm")
"""Random-graph families shaped after op patterns of common networks that the first families lack
(held-out evaluation showed every network's own patterns predicted badly when no other source had
them: a batch norm that survives canonicalize (pre-activation, after a concatenation), channel
shuffles and splits, fully connected layers as ``nn.gemm`` with large weights, attention scores with
a scale and a mask, local response normalization, residual adds before a layer norm). Their shapes
and mixes are random; nothing is taken from a benchmark network."""


def _random_graph(rng: np.random.Generator, index: int) -> Graph:
    """A small random graph: an anchor with an epilogue, an elementwise chain, a reduction or a reshape."""
    kinds = ["matmul", "conv", "dwconv", "elementwise", "reduce", "injective", "pool", "bmm", "activation",
             "concat", "embedding", "mask", *NETWORK_PATTERNS]
    kind = kinds[index % len(kinds)]
    dtype = DType.f32 if rng.random() < 0.8 else DType(rng.choice(["f16", "bf16"]))
    b = GraphBuilder(f"synthetic{index}")

    def weight(shape: Sequence[int]) -> Value:
        return b.const((rng.standard_normal(tuple(shape)) * 0.1).astype(dtype.numpy))

    def unary(y: Value) -> Value:
        op, attrs = UNARY[int(rng.integers(len(UNARY)))]
        return b.op1(op, y, **attrs)

    def epilogue(y: Value, channel_axis: int) -> Value:
        if rng.random() < 0.7:
            shape = [1] * len(y.type.shape)
            shape[channel_axis] = int(y.type.shape[channel_axis])  # type: ignore[call-overload]
            y = b.op1("math.add", y, weight(shape))
        for _ in range(int(rng.integers(0, 3))):
            y = unary(y)
        return y

    if kind == "matmul":
        m, k, n = (int(rng.choice(c)) for c in ([1, 2, 8, 16, 32, 64, 128, 256],
                                                [64, 128, 256, 384, 512, 768, 1024, 2048, 3072],
                                                [32, 64, 96, 128, 256, 512, 768, 1024, 2304, 3072]))
        while m > 1 and 2 * m * k * n > 4e8:
            m //= 2  # keep kernels small enough to time in milliseconds
        x = b.input("x", TensorType((m, k), dtype))
        y = epilogue(b.op1("nn.matmul", x, weight((k, n))), 1)
    elif kind == "bmm":
        heads, seq, d = (int(rng.choice(c)) for c in ([1, 4, 8, 12], [8, 16, 32, 64, 128], [32, 64]))
        q = b.input("q", TensorType((1, heads, seq, d), dtype))
        kt = b.input("k", TensorType((1, heads, d, seq), dtype))
        y = b.op1("nn.matmul", q, kt)
        if rng.random() < 0.5:
            y = b.op1("nn.softmax", b.op1("math.mul", y, b.const(np.array(0.125, dtype.numpy))), axis=-1)
    elif kind in ("conv", "dwconv"):
        c = int(rng.choice([8, 16, 24, 32, 48, 64, 96, 128, 256]))
        h = int(rng.choice([7, 14, 28, 56]))
        ksize, stride = int(rng.choice([1, 3, 3, 5])), int(rng.choice([1, 1, 2]))
        groups = c if kind == "dwconv" else 1
        oc = c if kind == "dwconv" else int(rng.choice([8, 16, 32, 64, 128, 256]))
        while h > 7 and 2 * oc * (c // groups) * ksize * ksize * (h // stride) ** 2 > 5e7:
            h //= 2  # keep kernels small enough to time in milliseconds
        x = b.input("x", TensorType((1, c, h, h), dtype))
        pad = ksize // 2
        y = b.op1("nn.conv2d", x, weight((oc, c // groups, ksize, ksize)), strides=[stride, stride],
                  pads=[pad] * 4, groups=groups)
        y = epilogue(y, 1)
    elif kind in ("elementwise", "activation"):
        if kind == "activation":  # a CNN feature map, [1, C, H, W]
            c, h = int(rng.choice([16, 24, 32, 64, 96, 144, 192, 256, 384, 576, 960, 1280])), int(
                rng.choice([1, 2, 4, 7, 8, 14, 16, 28, 32, 56, 64]))
            shape: tuple[int, ...] = (1, c, h, h)
        else:
            shape = tuple(int(rng.choice([1, 3, 7, 16, 32, 64, 128, 256, 768])) for _ in range(int(rng.integers(1, 5))))
        while math.prod(shape) > 1 << 21:  # at most 2M elements: quick to time
            shape = (*shape[:-1], max(1, shape[-1] // 2)) if shape[-1] > 1 else (max(1, shape[0] // 2), *shape[1:])
        x = b.input("x", TensorType(shape, dtype))
        y = x
        for _ in range(int(rng.integers(1, 5))):
            if rng.random() < 0.6:
                y = unary(y)
                continue
            op = str(rng.choice(BINARY))
            if op == "math.pow":
                y = b.op1(op, y, b.const(np.array(float(rng.choice([2.0, 3.0, 0.5])), dtype.numpy)))
            else:
                y = b.op1(op, y, x if rng.random() < 0.5 else weight(shape[-1:]))
    elif kind == "reduce":
        rows, cols = int(rng.choice([1, 4, 16, 64, 128, 512])), int(rng.choice([16, 64, 128, 384, 768, 1024]))
        x = b.input("x", TensorType((rows, cols), dtype))
        op = str(rng.choice(["nn.softmax", "nn.layer_norm", "reduce.sum", "reduce.mean", "reduce.max"]))
        if op == "nn.layer_norm":
            y = b.op1(op, x, weight((cols,)), weight((cols,)), axis=-1)
        elif op == "nn.softmax":
            y = b.op1(op, b.op1("math.mul", x, b.const(np.array(0.125, dtype.numpy))), axis=-1)
        else:
            y = b.op1(op, x, axes=[-1], keepdims=True)
    elif kind == "injective":
        d = [int(rng.choice([2, 4, 8, 12, 16, 32, 64])) for _ in range(3)]
        x = b.input("x", TensorType(tuple(d), dtype))
        perm = [int(p) for p in rng.permutation(3)]
        y = b.op1("tensor.transpose", b.op1("math.add", x, x), perm=perm)
        y = b.op1("tensor.reshape", y, shape=[d[perm[0]], d[perm[1]] * d[perm[2]]])
    elif kind == "concat":  # channel concatenation and shuffles (DenseNet, Inception, ShuffleNet)
        h = int(rng.choice([2, 4, 7, 8, 14, 16, 28, 32]))
        parts = [b.input(f"x{i}", TensorType((1, int(rng.choice([16, 32, 58, 64, 116, 128, 232])), h, h), dtype))
                 for i in range(int(rng.integers(2, 5)))]
        y = b.op1("tensor.concat", *parts, axis=1)
        if rng.random() < 0.5:
            y = b.op1("nn.relu", y)
    elif kind == "embedding":  # a token embedding lookup with position terms (BERT, GPT-2)
        # Mostly small tables: every planned graph keeps its constants in memory.
        vocab = int(rng.choice([512, 2048, 8192, 30522], p=[0.3, 0.3, 0.3, 0.1]))
        dim, seq = int(rng.choice([256, 768])), int(rng.choice([8, 16, 64, 128]))
        ids = b.input("ids", TensorType((1, seq), DType.i64))
        y = b.op1("tensor.gather", weight((vocab, dim)), ids, axis=0)
        for _ in range(int(rng.integers(0, 3))):
            y = b.op1("math.add", y, weight((1, seq, dim)))
    elif kind == "mask":  # an attention mask built from integer ids
        seq = int(rng.choice([8, 16, 64, 128, 512]))
        ids = b.input("ids", TensorType((1, seq), DType.i64))
        y = b.op1("tensor.unsqueeze", b.op1("tensor.unsqueeze", ids, axes=[1]), axes=[2])
        y = b.op1("tensor.cast", y, to=DType.f32)
        y = b.op1("math.mul", b.op1("math.sub", b.const(np.array(1.0, np.float32)), y),
                  b.const(np.array(-10000.0, np.float32)))
    elif kind in NETWORK_PATTERNS:
        return _network_pattern(kind, b, rng, dtype, weight)
    else:
        c, h = int(rng.choice([16, 32, 64, 128, 256])), int(rng.choice([7, 14, 28, 56]))
        x = b.input("x", TensorType((1, c, h, h), dtype))
        op = str(rng.choice(["nn.max_pool2d", "nn.avg_pool2d", "nn.global_avg_pool"]))
        if op == "nn.global_avg_pool":
            y = b.op1(op, b.op1("nn.relu", x))
        else:
            y = b.op1(op, b.op1("nn.relu", x), kernel=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    return b.build([y])


def _network_pattern(kind: str, b: GraphBuilder, rng: np.random.Generator, dtype: DType,
                     weight: Any) -> Graph:
    """One graph of the ``NETWORK_PATTERNS`` family ``kind``."""
    h = int(rng.choice([1, 2, 4, 7, 8, 14, 16, 28, 32]))

    def feature_maps(choices: Sequence[int], count: int) -> list[Value]:
        return [b.input(f"x{i}", TensorType((1, int(rng.choice(choices)), h, h), dtype)) for i in range(count)]

    def maybe(p: float) -> bool:
        return bool(rng.random() < p)

    if kind == "batchnorm":  # (concat ->) batch norm with constant statistics (-> relu) (-> global pool)
        parts = feature_maps([16, 32, 64, 96, 128, 256, 512], int(rng.choice([1, 1, 2, 3, 5, 8, 12])))
        y = b.op1("tensor.concat", *parts, axis=1) if len(parts) > 1 else parts[0]
        c = int(y.type.shape[1])  # type: ignore[call-overload]
        var = np.abs(rng.standard_normal(c)).astype(dtype.numpy) + np.asarray(0.1, dtype.numpy)
        y = b.op1("nn.batch_norm", y, weight((c,)), weight((c,)), weight((c,)), b.const(var))
        if maybe(0.7):
            y = b.op1("nn.relu", y)
        if maybe(0.15):
            y = b.op1("nn.global_avg_pool", y)
    elif kind == "shuffle":  # (relu on one part ->) concat -> reshape to groups -> swap -> reshape back
        c = int(rng.choice([24, 58, 116, 176, 232, 464]))
        parts = [b.input(f"x{i}", TensorType((1, c, h, h), dtype)) for i in range(2)]
        if maybe(0.4):
            parts[1] = b.op1("nn.relu", parts[1])
        y = b.op1("tensor.concat", *parts, axis=1)
        c = int(y.type.shape[1])  # type: ignore[call-overload]
        groups = int(rng.choice([2, 2, 4]))
        y = b.op1("tensor.reshape", y, shape=[1, groups, c // groups, h, h])
        y = b.op1("tensor.transpose", y, perm=[0, 2, 1, 3, 4])
        y = b.op1("tensor.reshape", y, shape=[1, c, h, h])
        if maybe(0.2):
            y = b.op1("nn.global_avg_pool", y)
    elif kind == "split":  # a channel split (CNN) or a fused QKV projection's split (transformer)
        if maybe(0.5):
            c = int(rng.choice([48, 116, 232, 464]))
            x = b.input("x", TensorType((1, 2 * c, h, h), dtype))
            return b.build(b.op("tensor.split", [x], {"axis": 1, "sizes": [c, c]}))
        seq, d = int(rng.choice([8, 16, 32, 64, 128])), int(rng.choice([256, 512, 768]))
        x = b.input("x", TensorType((1, seq, 3 * d), dtype))
        return b.build(b.op("tensor.split", [x], {"axis": 2, "sizes": [d, d, d]}))
    elif kind == "gemm":  # a fully connected layer as ONNX writes it: x @ w^T + bias (-> relu)
        m = int(rng.choice([1, 1, 1, 2, 4, 16]))
        k = int(rng.choice([256, 512, 768, 1024, 1280, 2048, 4096, 9216]))
        n = int(rng.choice([10, 100, 256, 512, 1000, 1024, 2048, 4096]))
        while k * n > 1 << 24:  # at most 64 MB of f32 weights: every planned graph keeps them in memory
            n //= 2
        x = b.input("x", TensorType((m, k), dtype))
        y = b.op1("nn.gemm", x, weight((n, k)), weight((n,)), trans_b=True)
        if maybe(0.5):
            y = b.op1("nn.relu", y)
    elif kind == "attention":  # q @ k^T / sqrt(d) + additive mask, or masked by a boolean causal mask
        heads, seq, d = (int(rng.choice(c)) for c in ([1, 4, 8, 12], [8, 16, 32, 64, 128], [32, 64]))
        q = b.input("q", TensorType((1, heads, seq, d), dtype))
        kt = b.input("k", TensorType((1, heads, d, seq), dtype))
        y = b.op1("math.div", b.op1("nn.matmul", q, kt), b.const(np.array(math.sqrt(d), dtype.numpy)))
        if maybe(0.5):
            y = b.op1("math.add", y, b.input("mask", TensorType((1, 1, 1, seq), dtype)))
        else:
            causal = b.input("causal", TensorType((1, 1, seq, seq), DType.bool))
            y = b.op1("tensor.where", causal, y, b.const(np.array(np.finfo(dtype.numpy).min
                                                                   if dtype != DType.bf16 else -1e38, dtype.numpy)))
        if maybe(0.3):
            y = b.op1("nn.softmax", y, axis=-1)
    elif kind == "lrn":  # local response normalization across channels (AlexNet, GoogLeNet)
        (x,) = feature_maps([64, 96, 192, 256], 1)
        y = b.op1("nn.lrn", b.op1("nn.relu", x) if maybe(0.3) else x, size=5, bias=float(rng.choice([1.0, 2.0])))
    else:  # residual_norm: bias add and residual add, then a layer norm (BERT, GPT-2)
        seq, d = int(rng.choice([8, 16, 32, 64, 128])), int(rng.choice([256, 512, 768, 1024]))
        x = b.input("x", TensorType((1, seq, d), dtype))
        y = b.op1("math.add", x, weight((d,)))
        if maybe(0.7):
            y = b.op1("math.add", b.input("residual", TensorType((1, seq, d), dtype)), y)
        y = b.op1("nn.layer_norm", y, weight((d,)), weight((d,)), axis=-1, epsilon=float(rng.choice([1e-5, 1e-12])))
    return b.build([y])


def synthetic_graphs(count: int, seed: int) -> list[Graph]:
    """``count`` random graphs (``seed`` makes them reproducible); ones that fail type checks are skipped."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        try:
            out.append(_random_graph(rng, i))
        except (TypeError, ValueError):  # a random shape an op rejects: draw the next one
            continue
    return out


# ---------------------------------------------------------------------------------- partitions


class RandomPolicy:
    """A fusion policy that takes each legal merge with probability ``p`` (random kernel boundaries)."""

    def __init__(self, rng: np.random.Generator, p: float = 0.5) -> None:
        self.rng, self.p = rng, p

    def decide(self, candidate: Any) -> tuple[bool, str, Mapping[str, float]]:
        """Accept at random."""
        return bool(self.rng.random() < self.p), "random grouping for data collection", {}


def partitions(graph: Graph, rng: np.random.Generator) -> Iterator[tuple[str, Graph]]:
    """The graph partitioned by the ``fuse`` rule, op by op, and with random groupings."""
    from ..passes import PassContext
    from ..passes.fuse import Fuse

    class RandomFuse(Fuse):
        policy = RandomPolicy(rng)  # type: ignore[assignment]

    yield "rule", Fuse().run(graph, PassContext())
    yield "unfused", graph
    yield "random", RandomFuse().run(graph, PassContext())


def kernels_of(graph: Graph) -> list[Node]:
    """The kernels of a partitioned graph: every node but constants."""
    return [n for n in graph.nodes if n.op != CONST]


# ------------------------------------------------------------------------------------ schedules

_TILES: dict[str, tuple[Sequence[int], Sequence[int]]] = {
    "matmul": ((1, 2, 3, 4, 6, 8), (8, 16, 32, 48, 64)),
    "conv": ((8, 16, 32, 64), (1, 2, 4, 7, 8, 14, 16, 28)),
    "dwconv": ((), (4, 7, 8, 14, 16, 28, 32)),
}


def random_schedule(kernel: Node, rng: np.random.Generator, lanes: int = 16) -> dict[str, Any]:
    """A random ``sched`` value for ``kernel``: a tile fitting its anchor, vector width, threads, unroll."""
    kind, anchor = anchor_of(body_nodes(kernel))
    out: dict[str, Any] = {}
    tiles = _TILES.get(kind or "")
    if tiles is not None and rng.random() < 0.8:
        problem = problem_size(kind, anchor)
        rows, cols = tiles
        col_limit = problem.get("n" if kind == "matmul" else "w", 1)
        row_limit = problem.get("m" if kind == "matmul" else "n", 1)
        col = int(rng.choice([c for c in cols if c <= max(col_limit, 1)] or [cols[0]]))
        if rows:
            # At most ~28 accumulator registers: bigger tiles spill and take LLVM minutes to compile.
            fitting = [r for r in rows if r <= max(row_limit, 1) and (r * col if kind == "matmul" else r // lanes
                                                                     * col * lanes) <= 28 * lanes]
            out["tile"] = (int(rng.choice(fitting or [rows[0]])), col)
        else:
            out["tile"] = (col,)
    if rng.random() < 0.5:
        out["vec"] = int(rng.choice([4, 8, 16, 32]))
    if rng.random() < 0.6:
        out["par"] = int(rng.choice([1, 2]))
    if tiles is None and rng.random() < 0.3:
        # Explicit unrolling of an anchor's outer loops multiplies its (already unrolled) tile.
        out["unroll"] = int(rng.choice([4, 16, 64]))
    if kind in ("conv", "matmul") and rng.random() < 0.15:
        out["pack"] = False
    return out


def schedule_variants(kernel: Node, rng: np.random.Generator, count: int,
                      constants: Mapping[Value, Any] | None = None) -> list[dict[str, Any]]:
    """The default schedule and up to ``count`` distinct others for ``kernel``.

    Most are drawn from the schedule search's own candidates (``passes.search_space``), which the
    model will be asked to rank; one comes from the wider ``random_schedule``, for knob values the
    search does not try yet.
    """
    from ..passes.search_space import candidates

    space = candidates(kernel, constants=constants)
    picks = [space[int(i)] for i in rng.choice(len(space), size=min(count, len(space)), replace=False)] \
        if space else []
    out: list[dict[str, Any]] = [{}]
    for s in [*picks, random_schedule(kernel, rng)]:
        s = {k: tuple(v) if isinstance(v, list) else v for k, v in s.items()}
        if s not in out:
            out.append(s)
    return out


def schedules_for(kernel: Node, rng: np.random.Generator, variants: int,
                  constants: Mapping[Value, Any] | None = None) -> list[dict[str, Any]]:
    """More schedules for kernels whose anchor has a tile to choose, fewer for the rest."""
    kind, _ = anchor_of(body_nodes(kernel))
    return schedule_variants(kernel, rng, variants if kind in _TILES else max(1, variants // 2), constants)


# -------------------------------------------------------------------------------------- planning


def plan_graph(model: str, graph: Graph, rng: np.random.Generator, variants: int,
               origins: Sequence[str] = ("rule", "unfused", "random")) -> list[KernelJob]:
    """Jobs for every distinct kernel of ``graph``'s partitions, each with its schedule variants."""
    consts = graph.constants()
    seen: dict[str, tuple[str, Node, str]] = {}
    weights: dict[str, int] = {}
    for origin, part in partitions(graph, rng):
        if origin not in origins:
            continue
        for node in kernels_of(part):
            if not all(v.type.is_static for v in node.inputs):
                continue
            kg = kernel_graph(node)
            key = workload_of(kg)
            if key not in seen:
                seen[key] = (origin, node, print_graph(kg))
                weights[key] = 0
            if seen[key][0] == origin:
                weights[key] += 1
    jobs = []
    for key, (origin, node, ir) in seen.items():
        for sched in schedules_for(node, rng, variants, consts):
            jobs.append(KernelJob(model, origin, node, sched, weights[key], key, ir, consts))
    return jobs


def interleave(groups: Sequence[Sequence[KernelJob]], rng: np.random.Generator) -> list[KernelJob]:
    """All jobs in an order whose every prefix spreads over the networks (a budget may stop anywhere)."""
    keyed: list[tuple[float, int, KernelJob]] = []
    for g in groups:
        order = rng.permutation(len(g))
        # A job's place is its relative position in its shuffled group: every group advances in
        # proportion to its size, so a prefix samples all networks alike.
        for rank, i in enumerate(order):
            keyed.append(((rank + rng.random()) / len(g), len(keyed), g[int(i)]))
    return [job for _, _, job in sorted(keyed, key=lambda t: (t[0], t[1]))]
