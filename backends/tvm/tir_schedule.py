"""Default TIR loop schedules for one kernel, with ``tvm.s_tir.Schedule``.

Every kernel first gets its injective steps inlined into their consumers. A kernel with an anchor
then gets a register-tiled loop nest for it: an accumulator tile in local memory, the innermost
tile dimension vectorized, the next unrolled, the outer loops fused and run in parallel.

* matmul: tile (rows x cols) of C, k innermost; column panels outermost so a packed B panel
  stays in cache; the epilogue (bias, activation, residual) is folded into the tile's write-back.
* conv2d: output computed NCHW[x]c (channel block = vector), tile (channel block x width block),
  reduction over (c, kh, kw) inside; the epilogue unpacks to NCHW one output row at a time.
* depthwise conv2d: a row vectorized along the width, the channel's padded plane computed just
  before its rows (the op is memory-bound), the epilogue per output row.

Every other block gets the generic schedule: outer loops fused and parallel when the block has
enough work, the innermost loop vectorized (small window reductions put it inside the window).
If a step fails the kernel falls back to the generic schedule, then to no schedule at all (still
correct, single-threaded); ``schedule_kernel`` says which one it used.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import tvm
from tvm import tirx as tir
from tvm.s_tir import Schedule

from .lower import Anchor
from .schedule import KernelSchedule
from .target import HostTarget

PARALLEL_WORK = 1 << 19
"""Loop iterations (spatial x reduction) below which a block runs on one thread: waking the thread
pool costs several microseconds (more on a busy machine), more than such a block gains."""

_DATA_PAR = 0  # tir.IterVar.DataPar


def schedule_kernel(func: tir.PrimFunc, anchor: Anchor | None, sched: KernelSchedule,
                    target: HostTarget) -> tuple[tir.PrimFunc, str]:
    """``func`` scheduled, and a short description of the schedule it got."""
    notes = []
    if anchor is not None and anchor.kind in _ANCHORS:
        try:
            sch = Schedule(func)
            _auto_inline(sch)
            desc, handled = _ANCHORS[anchor.kind](sch, anchor, sched, target)
            _generic(sch, sched, target, skip=handled)
            return sch.mod["main"], desc
        except Exception as e:  # noqa: BLE001 - any schedule error leaves a correct fallback
            notes.append(f"{anchor.kind} schedule failed: {_last_line(e)}")
    try:
        sch = Schedule(func)
        _auto_inline(sch)
        _generic(sch, sched, target, skip=set())
        return sch.mod["main"], "; ".join(notes + ["generic"])
    except Exception as e:  # noqa: BLE001
        notes.append(f"generic schedule failed: {_last_line(e)}")
        return func, "; ".join(notes + ["unscheduled"])


def _last_line(e: Exception) -> str:
    # TVM puts the cause of an error on its last line.
    text = str(e).strip().splitlines()
    return (text[-1] if text else type(e).__name__)[:200]


# --------------------------------------------------------------------------------------- helpers


def _blocks(sch: Schedule) -> list:
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def _name(sch: Schedule, block) -> str:
    return sch.get(block).name_hint


def _is_spatial(sch: Schedule, block) -> bool:
    return all(int(iv.iter_type) == _DATA_PAR for iv in sch.get(block).iter_vars)


def _extent(sch: Schedule, loop) -> int:
    return int(sch.get(loop).extent)


def _auto_inline(sch: Schedule) -> None:
    """Inline every injective block into its consumers, except kept pads and outputs."""
    for block in _blocks(sch):
        name = _name(sch, block)
        if "pad_keep" in name or "anchor" in name or not _is_spatial(sch, block):
            continue
        # Outputs and some access patterns cannot be inlined; they stay blocks of their own.
        with contextlib.suppress(Exception):
            sch.compute_inline(block)


def _wants_parallel(work: int, sched: KernelSchedule) -> bool:
    return sched.par != 1 and (sched.par >= 2 or work >= PARALLEL_WORK)


def _vectorize_inner(sch: Schedule, loop, lanes: int) -> bool:
    """Vectorize ``loop`` (split by ``lanes`` when it is a multiple); True when it was."""
    extent = _extent(sch, loop)
    if extent >= lanes and extent % lanes == 0:
        if extent > lanes:
            _, loop = sch.split(loop, [None, lanes])
        sch.vectorize(loop)
        return True
    # A short odd-sized row is one (partial) vector; a longer one is left to LLVM's loop
    # vectorizer, which handles the remainder (and strided loads) better than TVM's.
    if 2 <= extent <= 2 * lanes:
        sch.vectorize(loop)
        return True
    return False


def _annotate_unroll(sch: Schedule, loop, sched: KernelSchedule) -> None:
    if sched.unroll:
        sch.annotate(loop, "pragma_auto_unroll_max_step", sched.unroll)
        sch.annotate(loop, "pragma_unroll_explicit", 1)


def _generic(sch: Schedule, sched: KernelSchedule, target: HostTarget, skip: set[str]) -> None:
    """Parallel outer loops and a vectorized inner loop for every block not in ``skip``."""
    for block in _blocks(sch):
        if _name(sch, block) in skip or not sch.get_loops(block):
            continue
        if _is_spatial(sch, block):
            _generic_spatial(sch, block, sched, target)
        else:
            _generic_reduction(sch, block, sched, target)


def _generic_spatial(sch: Schedule, block, sched: KernelSchedule, target: HostTarget) -> None:
    loops = sch.get_loops(block)
    work = math.prod(_extent(sch, lp) for lp in loops)
    lanes = sched.vec or target.lanes(_bits(sch, block))
    inner = loops[-1]
    extent = _extent(sch, inner)
    if _vectorize_inner(sch, inner, lanes):
        # The loops above the vector loop (with the split's outer part) may run in parallel.
        outer = list(sch.get_loops(block)[:-1]) if extent > lanes and extent % lanes == 0 else list(loops[:-1])
    else:
        # Left out of the parallel loop, a plain innermost loop is one LLVM can still vectorize.
        outer = list(loops[:-1]) if len(loops) > 1 else list(loops)
    _parallelize(sch, outer, work, sched, block)


def _generic_reduction(sch: Schedule, block, sched: KernelSchedule, target: HostTarget) -> None:
    loops = sch.get_loops(block)
    n_spatial = sum(1 for iv in sch.get(block).iter_vars if int(iv.iter_type) == _DATA_PAR)
    spatial, reduce = list(loops[:n_spatial]), list(loops[n_spatial:])
    work = math.prod(_extent(sch, lp) for lp in loops)
    lanes = sched.vec or target.lanes(_bits(sch, block))
    inner = spatial[-1] if spatial else None
    if inner is not None and _extent(sch, inner) >= 4 and math.prod(_extent(sch, r) for r in reduce) <= 1024:
        # A reduction over a few leading or window axes (pooling, reducing a non-last axis):
        # reduce outside, the last output axis inside, so one vector accumulates 16 outputs.
        sch.reorder(*reduce, inner)
        _vectorize_inner(sch, inner, lanes)
        _parallelize(sch, spatial[:-1], work, sched, block)
        # Only now: vectorize and parallel need the block to still be a reduction (with init).
        init = sch.decompose_reduction(block, reduce[0])
        _vectorize_inner(sch, sch.get_loops(init)[-1], lanes)
        return
    _parallelize(sch, spatial, work, sched, block)


def _parallelize(sch: Schedule, outer: list, work: int, sched: KernelSchedule, block) -> None:
    if outer and _wants_parallel(work, sched):
        fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        sch.parallel(fused)
        _annotate_unroll(sch, fused, sched)
    else:
        _annotate_unroll(sch, sch.get_loops(block)[0], sched)


def _bits(sch: Schedule, block) -> int:
    writes = sch.get(block).writes
    if not writes:
        return 32
    return max(8, tvm.DataType(str(writes[0].source.dtype)).bits)


def _epilogue(sch: Schedule, writeback, at_loop, lanes: int) -> None:
    """Fold the consumers of ``writeback`` into it, or compute them per tile at ``at_loop``."""
    consumers = sch.get_consumers(writeback)
    while consumers:
        try:
            sch.reverse_compute_inline(consumers[0])
        except Exception:  # noqa: BLE001 - a non-trivial access (e.g. a reshape) cannot inline
            break
        consumers = sch.get_consumers(writeback)
    for c in consumers:
        sch.reverse_compute_at(c, at_loop)
        _vectorize_inner(sch, sch.get_loops(c)[-1], lanes)


def _tile_blocks(sch: Schedule, outer) -> set[str]:
    return {_name(sch, b) for b in sch.get_child_blocks(outer)}


# --------------------------------------------------------------------------------- anchor schedules


def _matmul(sch: Schedule, anchor: Anchor, sched: KernelSchedule, target: HostTarget) -> tuple[str, set[str]]:
    block = sch.get_sblock(anchor.block)
    *batch, i, j, k = sch.get_loops(block)
    mb, nb = anchor.tile
    work = math.prod(_extent(sch, lp) for lp in (*batch, i, j, k))
    io, ii = sch.split(i, [None, mb])
    jo, ji = sch.split(j, [None, nb])
    # Column panels outermost: one packed B panel stays in cache while all row blocks use it.
    sch.reorder(*batch, jo, io, k, ii, ji)
    acc = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(acc, io)
    lanes = sched.vec or target.lanes()
    _vectorize_inner(sch, sch.get_loops(acc)[-1], lanes)
    _epilogue(sch, acc, io, lanes)
    outer = sch.fuse(*batch, jo, io)
    if _wants_parallel(work, sched):
        sch.parallel(outer)
    sch.unroll(ii)
    sch.vectorize(ji)
    sch.decompose_reduction(block, k)
    _annotate_unroll(sch, outer, sched)
    return f"matmul tile=[{mb},{nb}]", _tile_blocks(sch, outer)


def _conv2d(sch: Schedule, anchor: Anchor, sched: KernelSchedule, target: HostTarget) -> tuple[str, set[str]]:
    block = sch.get_sblock(anchor.block)
    n, ob, i, j, oi, rc, rh, rw = sch.get_loops(block)
    ocb, owb = anchor.tile
    work = math.prod(_extent(sch, lp) for lp in (n, ob, i, j, oi, rc, rh, rw))
    jo, ji = sch.split(j, [None, owb])
    sch.reorder(n, ob, i, jo, rc, rh, rw, ji, oi)
    acc = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(acc, jo)
    lanes = sched.vec or target.lanes()
    wb_loops = sch.get_loops(acc)
    sch.vectorize(wb_loops[-1])
    if len(wb_loops) >= 2 and _extent(sch, wb_loops[-2]) > 1:
        sch.unroll(wb_loops[-2])
    # The unpacked (NCHW) result and its epilogue are written one output row at a time.
    for c in sch.get_consumers(acc):
        sch.reverse_compute_at(c, i)
        _vectorize_inner(sch, sch.get_loops(c)[-1], lanes)
    outer = sch.fuse(n, ob, i)
    if _wants_parallel(work, sched):
        sch.parallel(outer)
    sch.unroll(ji)
    sch.vectorize(oi)
    sch.decompose_reduction(block, rc)
    _annotate_unroll(sch, outer, sched)
    return f"conv2d NCHW{ocb}c tile=[{ocb},{owb}]", _tile_blocks(sch, outer)


def _dwconv2d(sch: Schedule, anchor: Anchor, sched: KernelSchedule, target: HostTarget) -> tuple[str, set[str]]:
    block = sch.get_sblock(anchor.block)
    n, c, i, j, rh, rw = sch.get_loops(block)
    work = math.prod(_extent(sch, lp) for lp in (n, c, i, j, rh, rw))
    lanes = sched.vec or target.lanes()
    (owb,) = anchor.tile  # the lowering rounded the row up to a multiple of it
    jo, ji = sch.split(j, [None, owb])
    sch.reorder(n, c, i, jo, rh, rw, ji)
    acc = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(acc, jo)
    sch.vectorize(sch.get_loops(acc)[-1])
    # The epilogue keeps the row's valid columns, one output row at a time.
    for consumer in sch.get_consumers(acc):
        sch.reverse_compute_at(consumer, i)
        _vectorize_inner(sch, sch.get_loops(consumer)[-1], lanes)
    outer = sch.fuse(n, c)
    if _wants_parallel(work, sched):
        sch.parallel(outer)
    sch.vectorize(ji)
    sch.decompose_reduction(block, rh)
    # The op is memory-bound: pad each channel's plane just before its rows are computed, while
    # it is in cache, instead of in a separate pass over the whole tensor.
    # (Its loops are left to LLVM's vectorizer: vectorizing the bounds check in TVM gains nothing.)
    for producer in sch.get_producers(block):
        if "pad_keep" in _name(sch, producer):
            sch.compute_at(producer, outer)
    _annotate_unroll(sch, outer, sched)
    return f"depthwise conv2d tile=[{owb}]", _tile_blocks(sch, outer)


_ANCHORS: dict[str, Callable[[Schedule, Anchor, KernelSchedule, HostTarget], tuple[str, set[str]]]] = {
    "matmul": _matmul,
    "conv2d": _conv2d,
    "dwconv2d": _dwconv2d,
}
