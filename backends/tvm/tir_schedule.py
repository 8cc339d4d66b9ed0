"""Default TIR loop schedules for one kernel, with ``tvm.s_tir.Schedule``.

Every kernel first gets its injective steps inlined into their consumers. A kernel with an anchor
then gets a register-tiled loop nest for it: an accumulator tile in local memory, the innermost
tile dimension vectorized, the next unrolled, the outer loops fused and run in parallel.

* matmul: tile (rows x cols) of C, k innermost; column panels outermost so a packed B panel
  stays in cache; the epilogue (bias, activation, residual) is folded into the tile's write-back.
* conv2d: output computed NCHW[x]c (channel block = vector), tile (channel block x width block),
  reduction over (c, kh, kw) inside; the epilogue unpacks to NCHW one output row at a time.
* depthwise conv2d: a row vectorized along the width, the channel's padded plane computed just
  before its rows (the op is memory-bound), the epilogue per output row. A column-strided one
  reads a phase split of the plane (column ``q * stride + p`` at ``[p, q]``), so a row of taps is
  one contiguous vector load.
* rows (softmax, layer norm over the last axis): one parallel loop over rows; under it every step
  of the row is a vectorized loop, reductions through ``rfactor`` (a vector of partial results).

Every other block gets the generic schedule: outer loops fused and parallel when the block has
enough work, the innermost loop vectorized (small window reductions put it inside the window).
A block whose value is a chain of selects on one axis (a concat) gets that loop partitioned at the
switch points, so each piece copies one input with no per-element select.
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
from .lower.elementwise import MANY_USES_MARK
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
    """Inline every injective block into its consumers, except kept pads, outputs, and blocks read
    by an op that uses its element many times (``MANY_USES``: inlined there, the block's whole
    expression would be copied at every use)."""
    for block in _blocks(sch):
        name = _name(sch, block)
        if "_keep" in name or "anchor" in name or not _is_spatial(sch, block):
            continue
        if any(MANY_USES_MARK in _name(sch, c) for c in sch.get_consumers(block)):
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
    if _partition_selects(sch, block, loops, work, sched, lanes):
        return
    inner = loops[-1]
    extent = _extent(sch, inner)
    if _vectorize_inner(sch, inner, lanes):
        # The loops above the vector loop (with the split's outer part) may run in parallel.
        outer = list(sch.get_loops(block)[:-1]) if extent > lanes and extent % lanes == 0 else list(loops[:-1])
    else:
        # Left out of the parallel loop, a plain innermost loop is one LLVM can still vectorize.
        outer = list(loops[:-1]) if len(loops) > 1 else list(loops)
    _parallelize(sch, outer, work, sched, block)


MAX_PARTS = 64  # pieces a loop is partitioned into at most (each is a loop nest of its own)


def _select_bounds(sch: Schedule, block) -> tuple[int, list[int]] | None:
    """The block iter var that a chain of selects splits (a concat's), and where it switches.

    Matches conditions ``K <= v`` / ``v < K`` (and the mirrored forms) directly under an
    ``if_then_else``, as ``topi.concatenate`` writes them; None when there is no such chain.
    """
    stmt = sch.get(block)
    index = {iv.var: k for k, iv in enumerate(stmt.iter_vars)}
    cuts: dict[int, set[int]] = {}

    def bound(cond) -> tuple[int, int] | None:
        a, b = getattr(cond, "a", None), getattr(cond, "b", None)
        if isinstance(cond, (tir.LE, tir.GT)) and isinstance(a, tir.IntImm) and b in index:
            return index[b], int(a.value) + (1 if isinstance(cond, tir.GT) else 0)
        if isinstance(cond, (tir.LT, tir.GE)) and a in index and isinstance(b, tir.IntImm):
            return index[a], int(b.value)
        return None

    def visit(node) -> None:
        cond = None
        if isinstance(node, tvm.ir.expr.Call) and str(getattr(node.op, "name", "")).endswith("if_then_else"):
            cond = node.args[0]
        elif isinstance(node, tir.Select):
            cond = node.condition
        found = bound(cond) if cond is not None else None
        if found is not None:
            cuts.setdefault(found[0], set()).add(found[1])
        for child in _children(node):
            visit(child)

    visit(stmt.body)
    if len(cuts) != 1:
        return None
    ((axis, points),) = cuts.items()
    extent = int(stmt.iter_vars[axis].dom.extent)
    inside = sorted(p for p in points if 0 < p < extent)
    return (axis, inside) if inside and len(inside) < MAX_PARTS else None


def _partition_selects(sch: Schedule, block, loops: list, work: int, sched: KernelSchedule, lanes: int) -> bool:
    """Split the loop a concat's select chain depends on at its switch points; True when done.

    Each piece then reads one input with no select per element (LLVM can vectorize it). The
    split loop goes just above the innermost one so the loops above it stay one parallel loop.
    """
    if len(loops) < 3:
        return False
    found = _select_bounds(sch, block)
    if found is None:
        return False
    axis, points = found
    # The block iter var must be bound to one loop of its own (no fused or split bindings).
    loop_vars = [sch.get(lp).loop_var for lp in loops]
    realize_values = _block_bindings(sch, block)
    value = realize_values[axis]
    if not isinstance(value, tir.Var) or not any(value.same_as(v) for v in loop_vars):
        return False
    target_loop = loops[next(k for k, v in enumerate(loop_vars) if value.same_as(v))]
    if any(target_loop.same_as(lp) for lp in loops[-1:]):
        return False
    others = [lp for lp in loops[:-1] if not lp.same_as(target_loop)]
    sch.reorder(*others, target_loop, loops[-1])
    sizes = [b - a for a, b in zip([0, *points], points)]
    pieces = sch.loop_partition(target_loop, [*sizes, None])
    for piece in pieces:
        for child in sch.get_child_blocks(piece):
            inner = sch.get_loops(child)[-1]
            _vectorize_inner(sch, inner, lanes)
    _parallelize(sch, others, work, sched, block=None)
    return True


def _block_bindings(sch: Schedule, block) -> list:
    """The values bound to ``block``'s iter vars (the block sits right under its innermost loop)."""
    realize = sch.get(sch.get_loops(block)[-1]).body
    return list(realize.iter_values) if hasattr(realize, "iter_values") else []


def _children(node) -> list:
    """The sub-expressions of a TIR expression or store (enough for element-wise block bodies)."""
    if isinstance(node, tvm.ir.expr.Call):
        return list(node.args)
    if isinstance(node, tir.Select):
        return [node.condition, node.true_value, node.false_value]
    out = [getattr(node, f) for f in ("value", "a", "b") if hasattr(node, f)]
    return out + list(getattr(node, "indices", ()))


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
    elif block is not None:
        _annotate_unroll(sch, sch.get_loops(block)[0], sched)
    elif outer:
        _annotate_unroll(sch, outer[0], sched)


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
    # A strided row reads a phase split of the padded plane, itself made from the padded plane.
    pending = [p for p in sch.get_producers(block) if "pad_keep" in _name(sch, p)]
    while pending:
        producer = pending.pop()
        sch.compute_at(producer, outer)
        pending += [p for p in sch.get_producers(producer) if "pad_keep" in _name(sch, p)]
    _annotate_unroll(sch, outer, sched)
    return f"depthwise conv2d tile=[{owb}]", _tile_blocks(sch, outer)


def _rows(sch: Schedule, anchor: Anchor, sched: KernelSchedule, target: HostTarget) -> tuple[str, set[str]]:
    """A row-wise op along the last axis (softmax, layer norm): one row at a time, all of its steps.

    The rows run in one parallel loop; under it each step of the row (its reductions, the kept
    row buffers, the result and any epilogue) is a vectorized loop. A reduction is vectorized by
    ``rfactor``: ``lanes`` partial results in one vector, then one short reduction of them.
    """
    block = sch.get_sblock(anchor.block)
    loops = sch.get_loops(block)
    if len(loops) < 2:
        raise ValueError("a row op needs rows")
    work = math.prod(_extent(sch, lp) for lp in loops)
    lanes = sched.vec or target.lanes(_bits(sch, block))
    # rfactor first: it wants the reduction alone at the top of its loop nest.
    partials = []
    for b in _blocks(sch):
        if _name(sch, b) != anchor.block and not _is_spatial(sch, b):
            rf = _rfactor_lanes(sch, b, lanes)
            if rf is not None:
                partials.append(_name(sch, rf))
    block = sch.get_sblock(anchor.block)
    loops = sch.get_loops(block)
    outer = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
    for c in sch.get_consumers(block):  # an epilogue, also written per row
        sch.reverse_compute_at(c, outer)
    # Every block before the result (program order is a topological order), last first so each
    # one's consumers are already under ``outer``.
    names = [_name(sch, b) for b in _blocks(sch)]
    for name in reversed(names[:names.index(anchor.block)]):
        sch.compute_at(sch.get_sblock(name), outer)
    for b in sch.get_child_blocks(outer):
        name = _name(sch, b)
        if name in partials:
            # The long loop over vectors outside, the lanes (a spatial axis of this block) inside.
            _reduce_loops_outside(sch, b, 1)  # below ``outer``, the only loop above the row
            sch.vectorize(sch.get_loops(b)[-1])
            init = sch.decompose_reduction(b, sch.get_loops(b)[-2])
            sch.vectorize(sch.get_loops(init)[-1])
        elif _is_spatial(sch, b) and len(sch.get_loops(b)) > 1:  # a per-row scalar has no loop
            _vectorize_inner(sch, sch.get_loops(b)[-1], lanes)
    if _wants_parallel(work, sched):
        sch.parallel(outer)
    _annotate_unroll(sch, outer, sched)
    return "rows", _tile_blocks(sch, outer)


def _reduce_loops_outside(sch: Schedule, block, depth: int) -> None:
    """Reorder the loops of ``block`` below the first ``depth``: reduction loops first, spatial after."""
    loops = sch.get_loops(block)[depth:]
    stmt = sch.get(block)
    bindings = _block_bindings(sch, block)
    reduce_vars = [v for iv, v in zip(stmt.iter_vars, bindings) if int(iv.iter_type) != _DATA_PAR]
    first = [lp for lp in loops if any(_uses(v, sch.get(lp).loop_var) for v in reduce_vars)]
    rest = [lp for lp in loops if not any(lp.same_as(f) for f in first)]
    if first and rest:
        sch.reorder(*first, *rest)


def _uses(expr, var) -> bool:
    """True when ``expr`` mentions ``var``."""
    if isinstance(expr, tir.Var):
        return expr.same_as(var)
    return any(_uses(c, var) for c in _children(expr))


def _rfactor_lanes(sch: Schedule, block, lanes: int):  # returns an SBlockRV or None
    """Split ``block``'s innermost reduction by ``lanes`` and rfactor it; the partial block, or None."""
    inner = sch.get_loops(block)[-1]
    extent = _extent(sch, inner)
    if extent < 2 * lanes or extent % lanes:
        return None
    _, ri = sch.split(inner, [None, lanes])
    return sch.rfactor(ri, 0)


_ANCHORS: dict[str, Callable[[Schedule, Anchor, KernelSchedule, HostTarget], tuple[str, set[str]]]] = {
    "matmul": _matmul,
    "conv2d": _conv2d,
    "dwconv2d": _dwconv2d,
    "rows": _rows,
}
