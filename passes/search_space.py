"""Candidate kernel schedules: what the ``schedule`` pass may try for one kernel.

A kernel (a ``fused`` node or a single op node, with static types) is classified by its anchor op:

* ``matmul`` (``nn.matmul``, ``nn.gemm``, batched matmul): register tile (rows x cols) of the
  output, cols a multiple of the vector width;
* ``conv2d``: output-channel block x output-width block;
* ``dwconv2d`` (depthwise conv): output-width block;
* ``qmatmul`` / ``qconv2d`` (the int8 kernels ``q.matmul_int8`` / ``q.conv2d_int8`` and their
  ``q.*_integer`` forms): the same tiles in 16-lane ``vpdpbusd`` vectors (columns / channels a
  multiple of 16, padded, so a block need not divide them), ``vec`` fixed at 16 (the instruction's
  width), and ``unroll`` is how many 4-deep steps of the reduction are unrolled (it must divide them);
* ``elementwise`` / ``reduction`` / ``generic`` (several anchors): no tile.

Every kind also varies ``vec`` (8 or 16), ``par`` (1 or 2 threads), ``unroll`` (0, 4, 16) and, when
the anchor reads constant weights, ``pack`` (weights repacked into the tile's layout). Schedules are
plain ``sched`` annotation values (``{"tile": (8, 32), "vec": 16, "par": 2}``), with fields left out
when they are the backend default (unroll 0, pack on); ``{}`` is the backend's own default.

Illegal combinations are pruned: a tile must divide its dimension (or, for a convolution's width,
waste at most ``MAX_WASTE`` of the row), and a register tile must fit the vector register file.
Candidates come out ordered: base knobs first (tiles by a register-use heuristic), then variants
with more knobs changed, so a search that measures them in order tries the likely ones first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from ..ir.analysis import node_flops
from ..ir.graph import CONST, FUSED, Node, Value
from ..ir.opdef import FusionKind, get_op

VECS = (16, 8)
PARS = (2, 1)
UNROLLS = (0, 4, 16)
MAX_ACCUMULATORS = 28  # of the 32 vector registers of AVX-512 (16 of AVX2), keep some for operands
GOOD_ACCUMULATORS = 16  # enough independent FMAs to hide their latency, registers left for operands
MAX_WASTE = 0.15  # a convolution row widened to whole width blocks may compute this much extra
PARALLEL_WORK = 1 << 19  # below this many FLOPs the base candidates run on one thread
SERIAL_MAX_WORK = 1 << 24  # above this many FLOPs one thread never wins: par=1 is not tried
MATMUL_OPS = ("nn.matmul", "nn.gemm")
QMATMUL_OPS = ("q.matmul_int8", "q.matmul_integer")
QCONV_OPS = ("q.conv2d_int8", "q.conv_integer")
INT_LANES = 16  # i32 lanes of one vpdpbusd: the int8 kernels' column (channel) block unit
INT_DEPTH = 4  # u8 x i8 products per lane of one vpdpbusd: the reduction step
INTEGER_KINDS = ("qmatmul", "qconv2d")

Sched = dict[str, Any]


@dataclass(frozen=True)
class KernelInfo:
    """What the search space needs to know about a kernel: its kind, sizes and constant weights."""

    kind: str  # matmul | conv2d | dwconv2d | qmatmul | qconv2d | elementwise | reduction | generic
    dims: Mapping[str, int] = field(default_factory=dict)  # m, n / og, ow / wo; int8 kinds add kb (steps of 4)
    packable: bool = False  # the anchor reads constant weights the backend can repack
    flops: int = 0

    @property
    def tiled(self) -> bool:
        """True for kinds whose schedules carry a register tile."""
        return self.kind in ("matmul", "conv2d", "dwconv2d", *INTEGER_KINDS)


def target_lanes(target: str) -> int:
    """f32 lanes of the widest vector unit named in a target description (16 with AVX-512)."""
    return 16 if "avx512f" in target else 8


def _body(kernel: Node) -> tuple[Sequence[Node], set[Value]]:
    """The kernel's op nodes and the values that are constants inside it."""
    nodes = kernel.body.nodes if kernel.op == FUSED and kernel.body is not None else (kernel,)
    consts = {n.output for n in nodes if n.op == CONST}
    return [n for n in nodes if n.op != CONST], consts


def analyze(kernel: Node, constants: Mapping[Value, Any] | None = None) -> KernelInfo:
    """Classify ``kernel`` (static types) and read the sizes its tiles are chosen from."""
    ops, consts = _body(kernel)
    if constants:
        # A weight passed to a fused kernel is read through the body input standing for it.
        inner = kernel.body.inputs if kernel.op == FUSED and kernel.body is not None else kernel.inputs
        consts |= {bv for bv, v in zip(inner, kernel.inputs) if v in constants}
    flops = node_flops(kernel)
    anchors = [n for n in ops if n.op in MATMUL_OPS + QMATMUL_OPS + QCONV_OPS or n.op == "nn.conv2d"]
    if len(anchors) > 1:
        return KernelInfo("generic", flops=flops)
    if not anchors:
        reduces = any(get_op(n.op).fusion == FusionKind.REDUCTION for n in ops)
        return KernelInfo("reduction" if reduces else "elementwise", flops=flops)
    anchor = anchors[0]
    out = [int(d) for d in anchor.outputs[0].type.shape]
    packable = len(anchor.inputs) > 1 and anchor.inputs[1] in consts
    if anchor.op in QMATMUL_OPS + QCONV_OPS:
        return _integer_info(anchor, out, packable, flops)
    if anchor.op in MATMUL_OPS:
        m = out[-2] if len(out) >= 2 else 1
        n = out[-1] if out else 1
        b_rank = anchor.inputs[1].type.rank
        # The backend packs only a 2-D constant B (batched B is read in place).
        return KernelInfo("matmul", {"m": m, "n": n}, packable and b_rank == 2, flops)
    oc, cg = int(anchor.inputs[1].type.shape[0]), int(anchor.inputs[1].type.shape[1])
    groups = int(anchor.attrs.get("groups", 1))
    if cg == 1 and groups > 1:
        return KernelInfo("dwconv2d", {"wo": out[3]}, False, flops)
    return KernelInfo("conv2d", {"og": oc // groups, "ow": out[3]}, packable, flops)


def _integer_info(anchor: Node, out: Sequence[int], packable: bool, flops: int) -> KernelInfo:
    """An int8 kernel: rows (all of a matmul's leading dims, flattened) or output width, columns or
    channels, and the reduction's 4-deep steps (the lowering pads K or C to a multiple of 4)."""
    w = [int(d) for d in anchor.inputs[1].type.shape]
    if anchor.op in QMATMUL_OPS:
        k = w[0]
        return KernelInfo("qmatmul", {"m": math.prod(out[:-1]) if len(out) > 1 else 1, "n": out[-1],
                                      "kb": -(-k // INT_DEPTH)}, packable, flops)
    return KernelInfo("qconv2d", {"og": w[0], "ow": out[3], "kb": -(-w[1] // INT_DEPTH)}, packable, flops)


def annotation(tile: tuple[int, ...] = (), vec: int = 0, par: int = 0, unroll: int = 0,
               pack: bool = True) -> Sched:
    """A ``sched`` annotation value with backend defaults left out."""
    out: Sched = {}
    if tile:
        out["tile"] = tuple(tile)
    for key, value in (("vec", vec), ("par", par), ("unroll", unroll)):
        if value:
            out[key] = value
    if not pack:
        out["pack"] = False
    return out


# ----------------------------------------------------------------------------------------- tiles


def matmul_tiles(m: int, n: int, vec: int, lanes: int) -> list[tuple[int, int]]:
    """Legal (rows, cols) tiles of an ``m x n`` output, best-looking first."""
    if n < vec:
        cols_opts = [n]  # a narrow output is one partial vector
    else:
        cols_opts = [c for c in range(vec, 4 * max(lanes, vec) + 1, vec) if n % c == 0]
    # Few rows (batch-1 layers) are one block of all of them; rows that no block divides (a prime
    # sequence length) may end in a partial block, tried after the dividing ones.
    rows_opts = {r for r in (8, 6, 4, 3, 2, 1) if r <= m and m % r == 0} | ({m} if m <= 8 else set())
    if max(rows_opts) < 4:
        rows_opts |= {r for r in (8, 6, 4) if r <= m}
    tiles = [(r, c) for r in rows_opts for c in cols_opts
             if r * math.ceil(c / lanes) <= MAX_ACCUMULATORS]
    # A partial row block costs a bounds check, like 8 accumulators too few or too many.
    return sorted(tiles, key=lambda t: (abs(t[0] * math.ceil(t[1] / lanes) - GOOD_ACCUMULATORS)
                                        + 8 * (m % t[0] > 0), -t[1], -t[0]))


def width_blocks(width: int, limit: int) -> list[int]:
    """Row blocks for an output row of ``width``, at most ``limit`` columns: divisors of the row,
    and only where too few divide it, blocks that widen the row by at most ``MAX_WASTE``."""
    if width <= limit:
        return [width] + [d for d in range(width - 1, 1, -1) if width % d == 0 and d >= width // 4]
    exact = [d for d in range(limit, 1, -1) if width % d == 0 and d >= limit // 4]
    if len(exact) >= 2:
        return exact
    near = [d for d in range(limit, max(2, limit // 3) - 1, -1) if 0 < (-width % d) / width <= MAX_WASTE]
    return exact + sorted(near, key=lambda d: -width % d)


def conv_tiles(og: int, ow: int, vec: int, lanes: int) -> list[tuple[int, int]]:
    """Legal (out-channel block, width block) tiles of a convolution, best-looking first."""
    if og < vec:
        oc_opts = [og]
    else:
        # A block must divide the channels (of one group): no padded channels are computed.
        oc_opts = [c for c in range(vec, 4 * max(lanes, vec) + 1, vec) if og % c == 0]
    tiles = []
    for ocb in oc_opts:
        vectors = max(1, math.ceil(ocb / lanes))
        blocks = width_blocks(ow, max(1, MAX_ACCUMULATORS // vectors))
        # The few width blocks nearest a good register count, for each channel block.
        blocks = sorted(blocks, key=lambda b: (-ow % b > 0, abs(vectors * b - GOOD_ACCUMULATORS)))[:4]
        tiles += [(ocb, owb) for owb in blocks]
    return sorted(tiles, key=lambda t: (-ow % t[1] > 0, abs(math.ceil(t[0] / lanes) * t[1] - GOOD_ACCUMULATORS),
                                        -t[0]))


def dwconv_tiles(wo: int) -> list[tuple[int]]:
    """Legal width blocks of a depthwise convolution."""
    if wo < 8:
        return [(wo,)]
    return [(b,) for b in (16, 8, 32, 4) if b <= wo and (-wo % b) / wo <= 0.25]


def _padding_ok(size: int, block: int) -> bool:
    """A block that pads ``size`` up to a multiple of it computes at most ``MAX_WASTE`` extra."""
    return (-size % block) / size <= MAX_WASTE


def qmatmul_tiles(m: int, n: int) -> list[tuple[int, int]]:
    """Legal (rows, cols) tiles of an int8 matmul (cols in 16-lane vectors), best-looking first."""
    vectors = [v for v in (1, 2, 3, 4) if v == 1 or v * INT_LANES <= n and _padding_ok(n, v * INT_LANES)]
    rows = [r for r in range(1, 9) if r <= m and _padding_ok(m, r)] if m > 1 else [1]
    # Registers: rows x vectors accumulators, one weight vector per column vector and the broadcast.
    tiles = [(r, v * INT_LANES) for r in rows for v in vectors if r * v + v + 1 <= 32 and r * v <= MAX_ACCUMULATORS]
    return sorted(tiles, key=lambda t: (abs(t[0] * t[1] // INT_LANES - GOOD_ACCUMULATORS), -t[1], -t[0]))


def qconv_tiles(og: int, ow: int) -> list[tuple[int, int]]:
    """Legal (out-channel block, width block) tiles of an int8 convolution, best-looking first."""
    tiles = []
    for v in (1, 2, 4):
        if v > 1 and (v * INT_LANES > og or not _padding_ok(og, v * INT_LANES)):
            continue
        limit = min(MAX_ACCUMULATORS // v, (32 - v - 1) // v)
        blocks = sorted(width_blocks(ow, limit), key=lambda b: (-ow % b > 0, abs(v * b - GOOD_ACCUMULATORS)))[:4]
        tiles += [(v * INT_LANES, b) for b in blocks]
    return sorted(tiles, key=lambda t: (-ow % t[1] > 0, abs(t[0] // INT_LANES * t[1] - GOOD_ACCUMULATORS), -t[0]))


def tiles_for(info: KernelInfo, vec: int, lanes: int) -> list[tuple[int, ...]]:
    """The legal tiles of ``info``'s kind for vector width ``vec`` (``[()]`` when it has none)."""
    if info.kind == "qmatmul":
        return list(qmatmul_tiles(info.dims["m"], info.dims["n"]))
    if info.kind == "qconv2d":
        return list(qconv_tiles(info.dims["og"], info.dims["ow"]))
    if info.kind == "matmul":
        return list(matmul_tiles(info.dims["m"], info.dims["n"], vec, lanes))
    if info.kind == "conv2d":
        return list(conv_tiles(info.dims["og"], info.dims["ow"], vec, lanes))
    if info.kind == "dwconv2d":
        return list(dwconv_tiles(info.dims["wo"]))
    return [()]


# ------------------------------------------------------------------------------------ candidates


def base_par(info: KernelInfo) -> int:
    """Threads the base candidates use: one for small kernels (waking the pool costs more)."""
    return 2 if info.flops >= PARALLEL_WORK else 1


def candidates(kernel: Node, lanes: int = 16, constants: Mapping[Value, Any] | None = None) -> list[Sched]:
    """Every legal schedule of ``kernel`` except the default ``{}``, likely-best first."""
    info = analyze(kernel, constants)
    return space(info, lanes)


def space(info: KernelInfo, lanes: int = 16) -> list[Sched]:
    """Every legal schedule for a kernel described by ``info``, likely-best first."""
    par0 = base_par(info)
    pars = PARS if info.flops < SERIAL_MAX_WORK else (2,)
    packs = (True, False) if info.packable else (True,)
    scored: list[tuple[tuple[int, int], Sched]] = []
    seen: set[tuple] = set()
    for vec in _vecs(info):
        for rank, tile in enumerate(tiles_for(info, vec, lanes)):
            for par, unroll, pack in product(pars, _unrolls(info), packs):
                sched = annotation(tile, vec, par, unroll, pack)
                key = _key(sched)
                if key in seen:
                    continue
                seen.add(key)
                # Knobs away from the base (vec 16, base threads, no unroll, packed) sort later.
                changed = (vec != VECS[0]) + (par != par0) + (unroll != 0) + (not pack)
                scored.append(((changed, rank), sched))
    scored.sort(key=lambda item: item[0])
    return [s for _, s in scored]


def _vecs(info: KernelInfo) -> tuple[int, ...]:
    # The int8 kernels compute in 16-lane vpdpbusd vectors whatever ``vec`` says.
    return VECS[:1] if info.kind in INTEGER_KINDS else VECS


def _unrolls(info: KernelInfo) -> tuple[int, ...]:
    # An int8 kernel unrolls whole steps of its reduction: the factor must divide them.
    if info.kind in INTEGER_KINDS:
        return tuple(u for u in UNROLLS if u == 0 or u < info.dims["kb"] and info.dims["kb"] % u == 0)
    return UNROLLS


def is_base(sched: Mapping[str, Any], info: KernelInfo) -> bool:
    """True when ``sched`` varies only the tile (the first stage of a search)."""
    return (sched.get("vec", 0) == VECS[0] and sched.get("par", 0) == base_par(info)
            and not sched.get("unroll", 0) and sched.get("pack", True))


def is_legal(sched: Mapping[str, Any], info: KernelInfo, lanes: int = 16) -> bool:
    """True when ``sched`` is in the legal space of ``info`` (``{}``, the default, always is)."""
    if not sched:
        return True
    vec = sched.get("vec", 0)
    pars = PARS if info.flops < SERIAL_MAX_WORK else (2,)
    if vec not in _vecs(info) or sched.get("par", 0) not in pars or sched.get("unroll", 0) not in _unrolls(info):
        return False
    if not sched.get("pack", True) and not info.packable:
        return False
    return tuple(sched.get("tile", ())) in tiles_for(info, vec, lanes)


def _key(sched: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in sched.items()))


def same_tile(sched: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """True when both schedules use the same tile (refinements of a measured tile share it)."""
    return tuple(sched.get("tile", ())) == tuple(other.get("tile", ()))
