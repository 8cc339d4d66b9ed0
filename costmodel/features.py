"""Features of a kernel: a fused group (or one op) with its schedule on a target -> a float vector.

The vector has a fixed length and layout (``FEATURE_NAMES``) in five blocks:

* **structure**: op counts by fusion kind, hashed op-name counts, the anchor's kind;
* **work**: FLOPs, bytes moved (kernel operands and results) and what the ops would move unfused,
  arithmetic intensity, the anchor's problem size (M, N, K, window, groups), output shape;
* **dtypes** of the result and operands;
* **schedule**: every ``KernelSchedule`` knob, plus the register tile the backend builds (its
  default when the schedule names none): how well it fits the problem, the vector LLVM makes of it,
  register pressure, and the panels its reduction streams against the caches;
* **target**: vector width, cores, runtime threads, cache sizes, ISA features, and the working set
  relative to the caches;

then hashed uni- and bi-gram counts of the kernel body's IR text (``graphopt.ir.printer``), which
catch what the hand-made features miss (the seed paper treats compiler IR as text).
``SCHEMA_HASH`` names this definition: a dataset made with another one is never mixed in.
Everything is computed from types and attributes only, so symbolic dims count as 1.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.host import cpu_flags
from ..backends.tvm.exponents import pow_spelling
from ..backends.tvm.schedule import KernelSchedule, conv_tile, dwconv_tile, matmul_tile
from ..ir.analysis import node_flops
from ..ir.graph import CONST, FUSED, Graph, Node, Value
from ..ir.opdef import FusionKind, get_op
from ..ir.printer import print_graph
from ..ir.types import DType, TensorType

SCHEMA_VERSION = 7  # bump when a feature's computation changes (names alone are hashed anyway)
OP_BUCKETS = 24
TOKEN_BUCKETS = 64
ANCHORS = ("conv", "dwconv", "matmul", "pool", "reduce")
_NAME = re.compile(r"[%@][A-Za-z0-9_.]+")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*|\d+|[^\sA-Za-z0-9_]")
_DTYPES = tuple(DType)
_ISA = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16")
# Elementwise ops by what their element costs on a CPU: a libm-style polynomial, a divider, or one
# ALU instruction. FLOP counts alone do not say it (tanh counts 4). A batch norm that survives
# canonicalize has constant statistics in an inference graph, and the TVM backend folds them into a
# per-channel scale and shift at compile time: a multiply-add, not a square root and a division.
TRANSCENDENTAL = frozenset({"math.exp", "math.log", "math.tanh", "math.erf", "math.pow", "math.sin", "math.cos",
                            "nn.sigmoid", "nn.gelu", "nn.silu", "nn.softplus", "nn.mish", "nn.elu", "nn.selu",
                            "nn.softmax", "nn.log_softmax", "nn.lrn"})
DIVIDING = frozenset({"math.div", "math.sqrt", "math.rsqrt", "math.reciprocal", "math.mod", "nn.layer_norm",
                      "reduce.mean", "nn.avg_pool2d", "nn.global_avg_pool"})


@dataclass(frozen=True)
class TargetInfo:
    """What the features say about the machine a kernel runs on."""

    name: str
    vector_bits: int
    cores: int
    threads: int
    l1d_kb: int
    l2_kb: int
    l3_kb: int
    isa: tuple[str, ...]


def _cache_kb(level: int, default: int) -> int:
    # Linux lists each cache under /sys; sizes read like "48K" or "32768K".
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if int((index / "level").read_text()) == level and (index / "type").read_text().strip() != "Instruction":
                size = (index / "size").read_text().strip()
                return int(size[:-1]) * (1024 if size.endswith("M") else 1) if size[-1] in "KM" else int(size) // 1024
        except (OSError, ValueError):
            continue
    return default


def _cores() -> int:
    # Not sched_getaffinity: TVM's thread pool pins the calling thread, so with TVM_NUM_THREADS=1
    # the process would describe this machine as a one-core device.
    return os.cpu_count() or 1


@functools.cache
def _host(threads: int) -> TargetInfo:
    flags = cpu_flags()
    bits = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    return TargetInfo("llvm", bits, _cores(), threads, _cache_kb(1, 32), _cache_kb(2, 512), _cache_kb(3, 8192),
                      tuple(f for f in _ISA if f in flags))


def host_threads() -> int:
    """The thread count TVM's runtime uses in this process (``TVM_NUM_THREADS``, else one per core)."""
    value = os.environ.get("TVM_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else _cores()


def _parse_target(target: str) -> dict[str, Any]:
    """A target description as a dict: TVM's JSON form, or ``llvm -mcpu=x -mattr=+a,+b``."""
    text = target.strip()
    if text.startswith("{"):
        try:
            spec = json.loads(text)
        except ValueError:
            return {}
        return spec if isinstance(spec, dict) else {}
    words = text.split()
    spec: dict[str, Any] = {"kind": words[0] if words else "llvm"}
    for w in words[1:]:
        key, _, value = w.lstrip("-").partition("=")
        spec[key] = value.split(",") if key == "mattr" else value
    return spec


def target_kind(target: str) -> str:
    """The kind of a target description: ``llvm -mcpu=...``, TVM's JSON form or a bare word."""
    return str(_parse_target(target).get("kind", ""))


# LLVM feature (``-mattr``) -> /proc/cpuinfo flag, for the ISA features the vector names.
_MATTR = {"+avx2": "avx2", "+fma": "fma", "+avx512f": "avx512f", "+avx512vnni": "avx512_vnni",
          "+avx512bf16": "avx512_bf16"}


def target_info(target: str = "llvm", threads: int | None = None) -> TargetInfo:
    """The descriptors of ``target``: this host's, read from /sys and /proc, with the vector ISA the
    target description names in ``mattr`` when it names one (a build for an older ISA level)."""
    spec = _parse_target(target)
    if spec.get("kind") not in ("llvm", "cpu"):
        raise ValueError(f"the cost model knows CPU targets only ('llvm'), not {target!r}")
    host = _host(threads if threads is not None else host_threads())
    mattr = spec.get("mattr")
    if not isinstance(mattr, list) or not mattr:
        return host
    isa = tuple(flag for feat, flag in _MATTR.items() if feat in mattr and flag in host.isa)
    bits = 512 if "avx512f" in isa else 256 if "avx2" in isa else 128
    return replace(host, vector_bits=bits, isa=tuple(f for f in _ISA if f in isa))


# ----------------------------------------------------------------------------------------- names


def _names() -> list[str]:
    names = ["n_ops", "n_operands", "n_body_consts"]
    names += [f"kind_{k.name.lower()}" for k in FusionKind]
    names += [f"op_hash_{i}" for i in range(OP_BUCKETS)]
    names += [f"anchor_{a}" for a in ANCHORS]
    names += ["log_transcendental_elems", "log_dividing_elems", "log_simple_elems", "log_moved_elems",
              "n_transpose", "n_transpose_inner"]
    names += ["log_flops", "log_anchor_flops", "log_other_flops", "log_bytes_io", "log_bytes_unfused",
              "log_bytes_weights", "log_intensity", "log_out_numel", "log_max_in_numel", "out_rank"]
    names += [f"log_out_dim_{i}" for i in range(4)]
    names += ["out_inner_mod_lanes", "log_a_batch", "log_a_m", "log_a_n", "log_a_k", "log_a_w", "a_kh", "a_kw",
              "a_stride", "log_a_groups"]
    names += [f"out_{d.value}" for d in _DTYPES] + ["in_max_bits", "in_min_bits"]
    names += ["s_default", "s_tile_len", "log_s_tile0", "log_s_tile1", "log_s_vec", "s_par", "s_par_auto",
              "log_s_unroll", "s_pack", "tile_waste_m", "tile_waste_n", "log_tiles", "tile_accumulators",
              "tile_vec_rem", "tile_vec_scalar", "tile_vec_widened", "tile_reg_pressure", "tile_fma_per_load",
              "log_panel_over_l1", "log_panel_over_l2", "log_reread_over_l2", "log_reread_bytes"]
    names += ["t_vector_bits", "t_cores", "t_threads", "log_t_l1d", "log_t_l2", "log_t_l3"]
    names += [f"t_{f}" for f in _ISA]
    names += ["log_io_over_l1", "log_io_over_l2", "log_io_over_l3", "log_flops_per_lane"]
    names += [f"tok_{i}" for i in range(TOKEN_BUCKETS)]
    return names


FEATURE_NAMES: tuple[str, ...] = tuple(_names())
"""The name of each position of the feature vector."""

SCHEMA_HASH: str = hashlib.sha256(json.dumps({
    "version": SCHEMA_VERSION, "names": FEATURE_NAMES, "token": _TOKEN.pattern, "name": _NAME.pattern,
    "op_buckets": OP_BUCKETS, "ngrams": [1, 2], "hash": "crc32", "transcendental": sorted(TRANSCENDENTAL),
    "dividing": sorted(DIVIDING),
}).encode()).hexdigest()[:16]
"""A hash of the feature definition: names, order, op classes, tokenizer and hashing."""


# -------------------------------------------------------------------------------------- features


def _scalar_constants(kernel: Node) -> dict[Value, float]:
    """The one-element constants of a fused kernel's body, by the value they define."""
    if kernel.op != FUSED or kernel.body is None:
        return {}
    return {v: float(np.asarray(data).reshape(-1)[0]) for v, data in kernel.body.constants().items() if data.size == 1}


def _element_cost(n: Node, scalars: Mapping[Value, float]) -> str | None:
    """What one output element of ``n`` costs: ``transcendental``, ``dividing``, ``simple`` or
    ``moved`` (None for anchors and reductions, which other features describe).

    A power by a constant is what the backend spells it as (``pow_spelling``): multiplies, a square
    root, or libm's pow; LRN divides by such a power of its window sum. An exponent the kernel does
    not hold (a lone ``math.pow`` whose exponent is an operand) counts as libm's pow.
    """
    exponent = None
    if n.op == "math.pow" and len(n.inputs) > 1:
        exponent = scalars.get(n.inputs[1])
    elif n.op == "nn.lrn":
        exponent = float(n.attrs.get("beta", 0.75))
    if exponent is not None:
        spelling = pow_spelling(exponent)
        if spelling == "multiply":
            return "simple" if exponent > 0 else "dividing"
        return "dividing" if spelling == "sqrt" else "transcendental"
    if n.op in TRANSCENDENTAL:
        return "transcendental"
    if n.op in DIVIDING:
        return "dividing"
    fusion = get_op(n.op).fusion
    if fusion in (FusionKind.ELEMENTWISE, FusionKind.BROADCAST):
        return "simple"
    return "moved" if fusion == FusionKind.INJECTIVE else None


def body_nodes(kernel: Node) -> list[Node]:
    """The ops a kernel runs (a fused node's body without its constants, or the node itself)."""
    if kernel.op == FUSED:
        assert kernel.body is not None
        return [n for n in kernel.body.nodes if n.op != CONST]
    return [kernel]


def canonical_kernel(kernel: Node) -> Node:
    """``kernel`` with weights held as body constants turned into operands, as ``fuse`` builds kernels.

    The schedule pass moves a kernel's weights into its body; the fuse pass passes them in. Both
    describe the same kernel, so both must give the same features.
    """
    if kernel.op != FUSED or kernel.body is None:
        return kernel
    body = kernel.body
    weights = [n for n in body.nodes if n.op == CONST and n.value.size > 1]
    if not weights:
        return kernel
    inputs = body.inputs + tuple(n.output for n in weights)
    nodes = tuple(n for n in body.nodes if not (n.op == CONST and n.value.size > 1))
    operands = kernel.inputs + tuple(Value(n.output.type) for n in weights)
    return Node(FUSED, operands, kernel.outputs, kernel.attrs, kernel.annotations,
                Graph(body.name, inputs, nodes, body.outputs), kernel.kernel_name)


def kernel_body(kernel: Node) -> Graph:
    """The graph a kernel runs: its body, or a one-node graph around a single op."""
    if kernel.op == FUSED:
        assert kernel.body is not None
        return kernel.body
    inputs = tuple(Value(v.type, f"in{i}") for i, v in enumerate(kernel.inputs))
    outputs = tuple(Value(v.type) for v in kernel.outputs)
    node = Node(kernel.op, inputs, outputs, kernel.attrs)
    return Graph("kernel", inputs, (node,), outputs)


def _log2(x: float) -> float:
    return math.log2(x) if x > 0 else 0.0


def static_dims(t: TensorType) -> list[int]:
    """The shape with symbolic dims as 1."""
    return [d if isinstance(d, int) else 1 for d in t.shape]


def _bucket(text: str, buckets: int) -> int:
    # crc32, not hash(): Python salts str hashes per process, and features must not change between runs.
    return zlib.crc32(text.encode()) % buckets


def anchor_of(nodes: Sequence[Node]) -> tuple[str | None, Node | None]:
    """The kernel's anchor kind (one of ``ANCHORS``) and node, or (None, None)."""
    for n in nodes:
        if n.op == "nn.conv2d":
            groups = int(n.attrs.get("groups", 1))
            cin = static_dims(n.inputs[0].type)[1]
            return ("dwconv" if groups > 1 and groups == cin else "conv"), n
        if n.op in ("nn.matmul", "nn.gemm"):
            return "matmul", n
        if n.op in ("nn.max_pool2d", "nn.avg_pool2d", "nn.global_avg_pool", "nn.global_max_pool"):
            return "pool", n
        if get_op(n.op).fusion == FusionKind.REDUCTION:
            return "reduce", n
    return None, None


def problem_size(kind: str | None, node: Node | None) -> dict[str, float]:
    """The anchor's size as batch x M x N x K (+ window, stride, groups), whatever its op."""
    if kind is None or node is None:
        return {}
    out = static_dims(node.outputs[0].type)
    ins = [static_dims(v.type) for v in node.inputs]
    if kind in ("conv", "dwconv"):
        n = ins[0][0]
        oc, cg, kh, kw = ins[1]
        ho, wo = out[2], out[3]
        return {"batch": n, "m": ho * wo, "n": oc, "k": cg * kh * kw, "w": wo, "kh": kh, "kw": kw,
                "stride": int(node.attrs.get("strides", (1, 1))[0]), "groups": int(node.attrs.get("groups", 1)),
                "in_elems": cg * ins[0][2] * ins[0][3]}
    if kind == "matmul":
        a, b = ins[0], ins[1]
        if node.op == "nn.gemm":
            m, k = a[::-1] if node.attrs.get("trans_a") else a
            n = b[0] if node.attrs.get("trans_b") else b[1]
            return {"batch": 1, "m": m, "n": n, "k": k, "w": n}
        k = a[-1]
        n = b[-1] if len(b) > 1 else 1
        m = a[-2] if len(a) > 1 else 1
        batch = max(1, math.prod(out) // max(1, m * n))
        return {"batch": batch, "m": m, "n": n, "k": k, "w": n}
    x = ins[0]
    if kind == "pool":
        kernel = tuple(node.attrs.get("kernel", x[2:4]))
        strides = tuple(node.attrs.get("strides", (1, 1)))
        return {"batch": x[0], "m": math.prod(out[2:]), "n": x[1], "k": math.prod(kernel), "w": out[-1],
                "kh": kernel[0], "kw": kernel[-1], "stride": strides[0]}
    numel_in, numel_out = math.prod(x), max(1, math.prod(out))
    return {"batch": 1, "m": numel_out, "n": 1, "k": max(1, numel_in // numel_out), "w": out[-1] if out else 1}


def _tokens(body: Graph) -> list[str]:
    text = print_graph(body)
    # Value names and numbers vary between otherwise equal kernels; keep the op and type words
    # and the magnitude of numbers (a shape of 768 and of 1024 read alike). The first line is the
    # signature, which names the kernel's operands.
    text = _NAME.sub(lambda m: m.group(0)[0], text.split("\n", 1)[1] if "\n" in text else text)
    words = []
    for tok in _TOKEN.findall(text):
        if tok.isdigit():
            words.append(f"#{int(math.log2(int(tok) + 1))}")
        else:
            words.append(tok)
    return words


def _token_counts(body: Graph) -> np.ndarray:
    counts = np.zeros(TOKEN_BUCKETS)
    words = [w for w in _tokens(body) if w not in ("%", "@", "=", ",", ":")]
    for gram in words + [a + " " + b for a, b in itertools.pairwise(words)]:
        counts[_bucket(gram, TOKEN_BUCKETS)] += 1
    return np.log1p(counts)


def _pow2_ceil(n: int) -> int:
    return 2 ** math.ceil(math.log2(max(n, 1)))


def _register_tile(kind: str | None, problem: Mapping[str, float], schedule: Mapping[str, Any],
                   lanes: int) -> tuple[int, int] | None:
    """The anchor's register tile as (vectorized axis, other axis) extents, as the backend builds it.

    A schedule without a tile gets the lowering's default (``backends.tvm.schedule``), so default
    kernels are described by the loops they run, not by zeros.
    """
    if kind not in ("matmul", "conv", "dwconv"):
        return None
    chosen = KernelSchedule(tile=tuple(int(t) for t in schedule.get("tile", ())))
    n, w = int(problem.get("n", 1)), int(problem.get("w", 1))
    if kind == "matmul":
        rows, cols = matmul_tile(int(problem.get("m", 1)), n, lanes, chosen)
        return cols, rows
    groups = max(1, int(problem.get("groups", 1)))
    if kind == "dwconv":
        return dwconv_tile(w, lanes, chosen), 1
    return conv_tile(max(1, n // groups), w, lanes, chosen, groups)


def _schedule(f: dict[str, float], schedule: Mapping[str, Any], kind: str | None, problem: Mapping[str, float],
              lanes: int, target: TargetInfo, itemsize: int) -> None:
    tile = tuple(int(t) for t in schedule.get("tile", ()))
    vec, par, unroll = int(schedule.get("vec", 0)), int(schedule.get("par", 0)), int(schedule.get("unroll", 0))
    f["s_default"] = float(not tile and not vec and not par and not unroll and schedule.get("pack", True))
    f["s_tile_len"] = len(tile)
    f["log_s_tile0"] = _log2(tile[0]) if tile else 0.0
    f["log_s_tile1"] = _log2(tile[1]) if len(tile) > 1 else 0.0
    f["log_s_vec"] = _log2(vec + 1)
    f["s_par"] = min(par, 8)
    f["s_par_auto"] = float(par == 0)
    f["log_s_unroll"] = _log2(unroll + 1)
    f["s_pack"] = float(bool(schedule.get("pack", True)))
    register_tile = _register_tile(kind, problem, schedule, max(1, target.vector_bits // 32))
    if register_tile is None:
        return
    # The tile's vectorized axis (matmul: columns of N; conv: the channel block; depthwise conv: the
    # width block) and its other axis (matmul rows, conv width block): ``tile_waste_n`` and
    # ``tile_waste_m``. Whole tiles are computed, so a tile that does not divide the problem pads.
    vector_axis, other_axis = register_tile
    vector_dim, other_dim = {"matmul": ("n", "m"), "conv": ("n", "w"), "dwconv": ("w", None)}[kind or ""]
    dim_v = max(int(problem.get(vector_dim, 1)), 1)
    dim_o = max(int(problem.get(other_dim, 1)), 1) if other_dim else 1
    groups = max(1, int(problem.get("groups", 1))) if kind == "conv" else 1
    dim_v //= groups  # a conv's channel blocks stay inside one group
    t_v, t_o = min(vector_axis, dim_v), min(other_axis, dim_o)
    f["tile_waste_m"] = math.ceil(dim_o / t_o) * t_o / dim_o - 1
    f["tile_waste_n"] = math.ceil(dim_v / t_v) * t_v / dim_v - 1
    blocks_v = math.ceil(dim_v / t_v) * groups
    f["log_tiles"] = _log2(math.ceil(dim_o / t_o) * blocks_v * problem.get("batch", 1))
    f["tile_accumulators"] = t_v * t_o / lanes
    # The backend vectorizes the vector axis by its rule (``tir_schedule._vectorize_inner``): whole
    # vectors of ``vec`` (default: the target's lanes) when the axis is a multiple of them, one
    # odd-width vector up to twice that width, scalar code beyond it.
    width = vec or lanes
    f["tile_vec_rem"] = (vector_axis % width) / width
    f["tile_vec_scalar"] = float(not (vector_axis >= width and vector_axis % width == 0
                                      or 2 <= vector_axis <= 2 * width))
    # The tile's inner loop becomes one LLVM vector of the whole axis, and LLVM widens a vector whose
    # length is not a power of two to the next one: a block of 24 or 48 channels computes (and
    # shuffles) 32 or 64 lanes.
    f["tile_vec_widened"] = _pow2_ceil(vector_axis) / max(vector_axis, 1) - 1
    # The micro-kernel: per reduction step it loads ceil(t_v / lanes) native vectors of the streamed
    # operand (conv weights, matmul B; LLVM splits the tile's vector into registers whatever ``vec``
    # says) and broadcasts t_o scalars into t_o x that many accumulators. Past the register file (16
    # vectors with AVX2, 32 with AVX-512) the accumulators spill. (The widened vector is what the
    # registers hold.) A convolution's unpacked (OIHW) weights are a channel block read at a stride:
    # one scalar load per channel, not per vector.
    vectors = math.ceil(_pow2_ceil(t_v) / lanes)
    accumulators = vectors * t_o
    registers = 32 if "avx512f" in target.isa else 16
    f["tile_reg_pressure"] = (accumulators + vectors + 1) / registers
    weight_loads = t_v if kind == "conv" and not schedule.get("pack", True) else vectors
    f["tile_fma_per_load"] = accumulators / (weight_loads + t_o)
    # The panel the tile's reduction reads and every tile of the same block reuses (conv: the weight
    # block of k x channel block; matmul: a packed B panel of K x cols), against the caches; and the
    # other operand, re-read once per block of the vector axis (conv: the input; matmul: A).
    if kind == "dwconv":
        return
    k = max(int(problem.get("k", 1)), 1)
    panel = k * t_v * itemsize
    f["log_panel_over_l1"] = math.log2(panel / (target.l1d_kb * 1024))
    f["log_panel_over_l2"] = math.log2(panel / (target.l2_kb * 1024))
    # (one group's input plane for a convolution, all of A for a matmul)
    reread = (problem.get("in_elems", 1) if kind == "conv" else dim_o * k) * itemsize * problem.get("batch", 1)
    f["log_reread_over_l2"] = math.log2(max(reread, 1) / (target.l2_kb * 1024))
    f["log_reread_bytes"] = _log2(reread * math.ceil(dim_v / t_v))


_SUBSET_READERS = ("tensor.gather", "tensor.slice")  # read only part of their first operand


def _touched(value: Value, readers: Sequence[Node]) -> int:
    """Bytes of ``value`` its readers touch: an embedding table read by a gather costs the gathered rows."""
    full = value.type.nbytes()
    if readers and all(r.op in _SUBSET_READERS and r.inputs[0] is value for r in readers):
        return min(full, sum(r.outputs[0].type.nbytes() for r in readers))
    return full


def _bytes_moved(kernel: Node, nodes: Sequence[Node]) -> tuple[int, int]:
    """Bytes the kernel reads and writes, and what its ops would move as separate kernels."""
    readers: dict[Value, list[Node]] = {}
    for n in nodes:
        for v in n.inputs:
            readers.setdefault(v, []).append(n)
    inner = kernel.body.inputs if kernel.body is not None else kernel.inputs
    io = sum(_touched(v, readers.get(v, [])) for v in inner) + sum(v.type.nbytes() for v in kernel.outputs)
    unfused = 0
    for n in nodes:
        unfused += sum(_touched(v, [n]) for v in n.inputs) + sum(v.type.nbytes() for v in n.outputs)
    return io, unfused


def kernel_features(kernel: Node, schedule: Mapping[str, Any], target: TargetInfo) -> np.ndarray:
    """The feature vector (``FEATURE_NAMES`` order) of ``kernel`` built with ``schedule`` on ``target``."""
    kernel = canonical_kernel(kernel)
    nodes = body_nodes(kernel)
    f: dict[str, float] = dict.fromkeys(FEATURE_NAMES, 0.0)
    f["n_ops"] = len(nodes)
    f["n_operands"] = len(kernel.inputs)
    f["n_body_consts"] = len(kernel.body.nodes) - len(nodes) if kernel.body is not None else 0
    for n in nodes:
        f[f"kind_{get_op(n.op).fusion.name.lower()}"] += 1
        f[f"op_hash_{_bucket(n.op, OP_BUCKETS)}"] += 1
    kind, anchor = anchor_of(nodes)
    if kind is not None:
        f[f"anchor_{kind}"] = 1.0
    elems = {"transcendental": 0, "dividing": 0, "simple": 0, "moved": 0}
    scalars = _scalar_constants(kernel)
    for n in nodes:
        numel = math.prod(static_dims(n.outputs[0].type)) if n.outputs else 0
        cost = _element_cost(n, scalars)
        if cost is not None:
            elems[cost] += numel
        if n.op == "tensor.transpose":
            f["n_transpose"] += 1
            # Moving the innermost axis turns contiguous reads or writes into strided ones.
            perm = tuple(n.attrs.get("perm", ()))
            f["n_transpose_inner"] += float(bool(perm) and perm[-1] != len(perm) - 1)
    for key, count in elems.items():
        f[f"log_{key}_elems"] = math.log2(count + 1)
    flops = sum(node_flops(n) for n in nodes)
    anchor_flops = node_flops(anchor) if anchor is not None else 0
    io, unfused = _bytes_moved(kernel, nodes)
    f["log_flops"] = math.log2(flops + 1)
    f["log_anchor_flops"] = math.log2(anchor_flops + 1)
    f["log_other_flops"] = math.log2(max(flops - anchor_flops, 0) + 1)
    f["log_bytes_io"] = math.log2(io + 1)
    f["log_bytes_unfused"] = math.log2(unfused + 1)
    if anchor is not None and len(anchor.inputs) > 1 and kind in ("conv", "dwconv", "matmul"):
        f["log_bytes_weights"] = math.log2(anchor.inputs[1].type.nbytes() + 1)
    f["log_intensity"] = math.log2((flops + 1) / (io + 1))
    out_t = kernel.outputs[0].type
    out = static_dims(out_t)
    f["log_out_numel"] = math.log2(math.prod(out) + 1)
    f["log_max_in_numel"] = math.log2(max((math.prod(static_dims(v.type)) for v in kernel.inputs), default=0) + 1)
    f["out_rank"] = len(out)
    # The last three dims, and all leading ones as one: rank-5 shuffles read like rank-4 maps.
    for i, d in enumerate(reversed(out[-3:])):
        f[f"log_out_dim_{3 - i}"] = _log2(d)
    f["log_out_dim_0"] = _log2(math.prod(out[:-3])) if len(out) > 3 else 0.0
    lanes = max(1, target.vector_bits // max(8, out_t.dtype.itemsize * 8))
    f["out_inner_mod_lanes"] = (out[-1] % lanes) / lanes if out else 0.0
    problem = problem_size(kind, anchor)
    for key in ("batch", "m", "n", "k", "w"):
        f[f"log_a_{key}"] = _log2(problem.get(key, 0))
    f["a_kh"], f["a_kw"], f["a_stride"] = problem.get("kh", 0), problem.get("kw", 0), problem.get("stride", 0)
    f["log_a_groups"] = _log2(problem.get("groups", 0))
    f[f"out_{out_t.dtype.value}"] = 1.0
    bits = [v.type.dtype.itemsize * 8 for v in kernel.inputs] or [0]
    f["in_max_bits"], f["in_min_bits"] = max(bits), min(bits)
    _schedule(f, schedule, kind, problem, lanes, target, out_t.dtype.itemsize)
    f["t_vector_bits"], f["t_cores"], f["t_threads"] = target.vector_bits, target.cores, target.threads
    f["log_t_l1d"], f["log_t_l2"], f["log_t_l3"] = _log2(target.l1d_kb), _log2(target.l2_kb), _log2(target.l3_kb)
    for flag in _ISA:
        f[f"t_{flag}"] = float(flag in target.isa)
    f["log_io_over_l1"] = math.log2((io + 1) / (target.l1d_kb * 1024))
    f["log_io_over_l2"] = math.log2((io + 1) / (target.l2_kb * 1024))
    f["log_io_over_l3"] = math.log2((io + 1) / (target.l3_kb * 1024))
    f["log_flops_per_lane"] = math.log2((flops + 1) / (lanes * max(1, target.threads)))
    vec = np.fromiter((f[n] for n in FEATURE_NAMES[:-TOKEN_BUCKETS]), float, len(FEATURE_NAMES) - TOKEN_BUCKETS)
    return np.concatenate([vec, _token_counts(kernel_body(kernel))]).astype(np.float32)


def features_matrix(kernels: Sequence[tuple[Node, Mapping[str, Any]]], target: TargetInfo) -> np.ndarray:
    """One row of ``kernel_features`` per (kernel, schedule)."""
    if not kernels:
        return np.zeros((0, len(FEATURE_NAMES)), np.float32)
    return np.stack([kernel_features(k, s, target) for k, s in kernels])
