"""Execution orders that minimize peak activation memory.

The cost of an order is the most bytes live while one node runs (its operands, its results and
everything computed earlier and still needed), exactly ``max(live_bytes_per_step(...))`` of the
graph in that order. Constants take no memory and never affect it.

* ``exact_order``: memoized search over the sets of nodes already run (downsets of the DAG) with
  branch and bound; optimal, meant for graphs of up to about 40 compute nodes, under a state and
  time budget (the result says whether it finished).
* heuristics for any size: the original order, least-peak-memory-first, most-memory-freed-first,
  BFS and TorchInductor's size-sorted DFS, each then improved by ``local_search`` (moves of the
  nodes around the peak step to the ends of their legal windows).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ...ir.graph import CONST, Graph, Node, Value


@dataclass(frozen=True)
class OrderProblem:
    """The compute nodes of a graph as a DAG, with what each allocates and frees."""

    nodes: tuple[Node, ...]
    preds: tuple[frozenset[int], ...]
    succs: tuple[frozenset[int], ...]
    reads: tuple[tuple[int, ...], ...]  # distinct value ids each node reads
    writes: tuple[tuple[int, ...], ...]  # value ids each node defines
    size: tuple[int, ...]  # bytes per value id
    readers: tuple[int, ...]  # how many distinct nodes read each value id
    pinned: tuple[bool, ...]  # graph outputs: never freed
    initial: int  # bytes live before the first node: the graph inputs
    unused_inputs: int  # inputs nobody reads: live during the first node only

    @property
    def n(self) -> int:
        """Number of compute nodes."""
        return len(self.nodes)


def build_problem(graph: Graph, bindings: Mapping[str, int] | None = None) -> OrderProblem:
    """The ordering problem of ``graph``'s non-constant nodes."""
    binds = dict(bindings or {})
    nodes = tuple(n for n in graph.nodes if n.op != CONST)
    consts = {n.output for n in graph.nodes if n.op == CONST}
    ids: dict[Value, int] = {}
    sizes: list[int] = []

    def vid(v: Value) -> int:
        if v not in ids:
            ids[v] = len(sizes)
            sizes.append(v.type.nbytes(binds))
        return ids[v]

    for v in graph.inputs:
        vid(v)
    producer: dict[Value, int] = {}
    writes = []
    for i, node in enumerate(nodes):
        writes.append(tuple(vid(v) for v in node.outputs))
        producer.update((v, i) for v in node.outputs)
    reads, preds = [], []
    readers = [0] * len(sizes)
    for node in nodes:
        distinct = list(dict.fromkeys(v for v in node.inputs if v not in consts))
        reads.append(tuple(vid(v) for v in distinct))
        for v in distinct:
            readers[ids[v]] += 1
        preds.append(frozenset(producer[v] for v in distinct if v in producer))
    succs: list[set[int]] = [set() for _ in nodes]
    for i, ps in enumerate(preds):
        for p in ps:
            succs[p].add(i)
    pinned = [False] * len(sizes)
    for v in graph.outputs:
        if v in ids:
            pinned[ids[v]] = True
    unused = sum(sizes[ids[v]] for v in graph.inputs if readers[ids[v]] == 0 and not pinned[ids[v]])
    return OrderProblem(nodes, tuple(preds), tuple(frozenset(s) for s in succs), tuple(reads), tuple(writes),
                        tuple(sizes), tuple(readers), tuple(pinned),
                        sum(sizes[ids[v]] for v in graph.inputs), unused)


def profile(p: OrderProblem, order: Sequence[int]) -> list[int]:
    """Bytes live while each node of ``order`` runs."""
    left = list(p.readers)
    resident = p.initial
    out = []
    for k, u in enumerate(order):
        resident += sum(p.size[v] for v in p.writes[u])
        out.append(resident)
        if k == 0:
            resident -= p.unused_inputs
        for v in p.reads[u]:
            left[v] -= 1
            if left[v] == 0 and not p.pinned[v]:
                resident -= p.size[v]
        for v in p.writes[u]:
            if p.readers[v] == 0 and not p.pinned[v]:
                resident -= p.size[v]
    return out


def peak(p: OrderProblem, order: Sequence[int]) -> int:
    """The most bytes live at once in ``order`` (the inputs alone for an empty graph)."""
    return max(profile(p, order), default=p.initial)


def is_topological(p: OrderProblem, order: Sequence[int]) -> bool:
    """True when ``order`` runs every node once, after all its predecessors."""
    pos = {u: k for k, u in enumerate(order)}
    return len(pos) == p.n == len(order) and all(pos[q] < pos[u] for u in range(p.n) for q in p.preds[u])


def lower_bound(p: OrderProblem) -> int:
    """A peak no order can go below.

    While node u runs, every order holds u's operands and results, and also every value made
    before u in *all* orders (by an ancestor of u, or a graph input) that is read after u in all
    orders (by a descendant of u) or returned by the graph.
    """
    anc = [0] * p.n
    for u in _topo(p):
        for q in p.preds[u]:
            anc[u] |= anc[q] | 1 << q
    desc = [0] * p.n
    for u in reversed(_topo(p)):
        for s in p.succs[u]:
            desc[u] |= desc[s] | 1 << s
    producer = {v: u for u in range(p.n) for v in p.writes[u]}
    reader_mask = [0] * len(p.size)
    for u in range(p.n):
        for v in p.reads[u]:
            reader_mask[v] |= 1 << u
    best = p.initial if p.n else 0
    for u in range(p.n):
        need = sum(p.size[v] for v in p.reads[u]) + sum(p.size[v] for v in p.writes[u])
        mine = set(p.reads[u]) | set(p.writes[u])
        for v, size in enumerate(p.size):
            if v in mine or not size:
                continue
            made_before = v not in producer or anc[u] >> producer[v] & 1
            read_after = p.pinned[v] or reader_mask[v] & desc[u]
            if made_before and read_after:
                need += size
        best = max(best, need)
    return best


def _topo(p: OrderProblem) -> list[int]:
    return bfs(p)


# ------------------------------------------------------------------------------------- heuristics


def _greedy(p: OrderProblem, key: Callable[[int, int, int], tuple[float, ...]]) -> list[int]:
    # Run the ready node with the smallest key(node, bytes live while it runs, bytes live after it).
    indeg = [len(ps) for ps in p.preds]
    ready = {u for u in range(p.n) if indeg[u] == 0}
    left = list(p.readers)
    resident = p.initial
    order: list[int] = []
    while ready:
        best, best_key = -1, None
        for u in ready:
            alloc = sum(p.size[v] for v in p.writes[u])
            freed = sum(p.size[v] for v in p.reads[u] if left[v] == 1 and not p.pinned[v])
            freed += sum(p.size[v] for v in p.writes[u] if p.readers[v] == 0 and not p.pinned[v])
            k = key(u, resident + alloc, resident + alloc - freed)
            if best_key is None or k < best_key:
                best, best_key = u, k
        ready.remove(best)
        order.append(best)
        resident += sum(p.size[v] for v in p.writes[best])
        if len(order) == 1:
            resident -= p.unused_inputs
        for v in p.reads[best]:
            left[v] -= 1
            if left[v] == 0 and not p.pinned[v]:
                resident -= p.size[v]
        for v in p.writes[best]:
            if p.readers[v] == 0 and not p.pinned[v]:
                resident -= p.size[v]
        for s in p.succs[best]:
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.add(s)
    return order


def lpmf(p: OrderProblem) -> list[int]:
    """Least peak memory first: the ready node that adds the least while it runs (ties: frees most)."""
    return _greedy(p, lambda u, during, after: (during, after, u))


def free_first(p: OrderProblem) -> list[int]:
    """The ready node that leaves the least memory live after it runs."""
    return _greedy(p, lambda u, during, after: (after, during, u))


def bfs(p: OrderProblem) -> list[int]:
    """Kahn's algorithm, first-ready first-run (level by level)."""
    indeg = [len(ps) for ps in p.preds]
    queue = deque(u for u in range(p.n) if indeg[u] == 0)
    order = []
    while queue:
        u = queue.popleft()
        order.append(u)
        for s in sorted(p.succs[u]):
            indeg[s] -= 1
            if indeg[s] == 0:
                queue.append(s)
    return order


def dfs(p: OrderProblem) -> list[int]:
    """TorchInductor's ``topological_sort_dfs``: smallest nodes first, each after its predecessors."""
    weight = [sum(p.size[v] for v in p.writes[u]) + sum(p.size[v] for v in p.reads[u]) for u in range(p.n)]
    seen = [False] * p.n
    order: list[int] = []
    for root in sorted(range(p.n), key=lambda u: (weight[u], u)):
        stack = [(root, False)]
        while stack:  # iterative post-order: predecessors (smallest first) before the node
            u, expanded = stack.pop()
            if expanded:
                order.append(u)
                continue
            if seen[u]:
                continue
            seen[u] = True
            stack.append((u, True))
            for q in sorted(p.preds[u], key=lambda q: (weight[q], q), reverse=True):
                if not seen[q]:
                    stack.append((q, False))
    return order


HEURISTICS: dict[str, Callable[[OrderProblem], list[int]]] = {
    "lpmf": lpmf, "free-first": free_first, "bfs": bfs, "dfs": dfs,
}
"""The order heuristics by name (the original order is always a candidate as well)."""


def local_search(p: OrderProblem, order: Sequence[int], deadline: float, max_rounds: int = 200) -> list[int]:
    """Improve ``order``'s (peak, total live bytes) by moving nodes around the peak step."""
    current = list(order)
    prof = profile(p, current)
    score = (max(prof, default=0), sum(prof))
    for _ in range(max_rounds):
        if time.perf_counter() > deadline or not current:
            break
        at = max(range(len(prof)), key=prof.__getitem__)
        best: tuple[tuple[int, int], list[int]] | None = None
        for cand in _moves(p, current, at):
            if time.perf_counter() > deadline:
                break
            cp = profile(p, cand)
            s = (max(cp), sum(cp))
            if s < score and (best is None or s < best[0]):
                best = (s, cand)
        if best is None:
            break
        score, current = best
        prof = profile(p, current)
    return current


def _moves(p: OrderProblem, order: list[int], at: int) -> list[list[int]]:
    # Candidates that can lower the peak: delay a node that runs before the peak step and whose
    # results are still live there, to after it; advance a node after the peak that reads a value
    # live there, to before it (so that value may die sooner). Each goes to its window's far end
    # or just across the peak.
    pos = {u: k for k, u in enumerate(order)}
    last_read: dict[int, int] = {}
    for k, u in enumerate(order):
        for v in p.reads[u]:
            last_read[v] = k
    out = []
    for k, u in enumerate(order):
        if k < at and not any(p.pinned[v] or last_read.get(v, -1) >= at for v in p.writes[u]):
            continue
        if k > at and not any(last_read.get(v, -1) >= at for v in p.reads[u]):
            continue
        lo = max((pos[q] for q in p.preds[u]), default=-1) + 1
        hi = min((pos[s] for s in p.succs[u]), default=len(order)) - 1
        for target in sorted({lo, hi, at, at + 1}):
            target = min(max(target, lo), hi)
            if target == k or (k < at and target < at) or (k > at and target > at):
                continue
            cand = order[:k] + order[k + 1:]
            cand.insert(target, u)
            out.append(cand)
    return out


# ------------------------------------------------------------------------------------------ exact


@dataclass(frozen=True)
class ExactResult:
    """The outcome of ``exact_order``: a better order, a proof that none exists, or a budget stop."""

    order: list[int] | None  # an order beating ``upper`` (None when there is none or the budget ran out)
    proven: bool  # True when the search finished: ``order`` (or the caller's, if None) is optimal
    states: int


def exact_order(p: OrderProblem, upper: int, deadline: float, max_states: int = 2_000_000) -> ExactResult:
    """Search for an order with peak below ``upper`` (the peak of an order the caller already has)."""
    n = p.n
    pred_mask = [sum(1 << q for q in p.preds[u]) for u in range(n)]
    # memo[mask]: (value, exact). Exact: the least peak of the nodes not in ``mask`` once those in it
    # have run; otherwise a lower bound on it, at least the cap the search was asked to beat.
    memo: dict[int, tuple[int, bool]] = {}
    choice: dict[int, int] = {}
    full = (1 << n) - 1
    left = list(p.readers)
    states = [0]

    class Budget(Exception):
        pass

    def after(mask: int, u: int, resident: int) -> int:
        r = resident + sum(p.size[v] for v in p.writes[u])
        if mask == 0:
            r -= p.unused_inputs
        r -= sum(p.size[v] for v in p.reads[u] if left[v] == 1 and not p.pinned[v])
        r -= sum(p.size[v] for v in p.writes[u] if p.readers[v] == 0 and not p.pinned[v])
        return r

    def solve(mask: int, resident: int, cap: int) -> int:
        if mask == full:
            return 0
        hit = memo.get(mask)
        if hit is not None and (hit[1] or hit[0] >= cap):
            return hit[0]
        states[0] += 1
        if states[0] > max_states or (states[0] & 255 == 0 and time.perf_counter() > deadline):
            raise Budget
        ready = [u for u in range(n) if not mask >> u & 1 and pred_mask[u] & mask == pred_mask[u]]
        during = {u: resident + sum(p.size[v] for v in p.writes[u]) for u in ready}
        best, best_u, bound = cap, -1, None
        for u in sorted(ready, key=lambda u: (during[u], u)):
            m = during[u]
            if m >= best:
                bound = m if bound is None else min(bound, m)
                continue
            nxt = after(mask, u, resident)
            for v in p.reads[u]:
                left[v] -= 1
            val = max(m, solve(mask | 1 << u, nxt, best))
            for v in p.reads[u]:
                left[v] += 1
            if val < best:
                best, best_u = val, u
            else:
                bound = val if bound is None else min(bound, val)
        if best_u >= 0:
            memo[mask] = (best, True)
            choice[mask] = best_u
            return best
        lb = max(bound if bound is not None else cap, cap)
        memo[mask] = (lb, False)
        return lb

    try:
        value = solve(0, p.initial, upper)
    except Budget:
        return ExactResult(None, False, states[0])
    if n == 0 or value >= upper:
        return ExactResult(None, True, states[0])
    order, mask = [], 0
    while mask != full:
        u = choice[mask]
        order.append(u)
        mask |= 1 << u
    return ExactResult(order, True, states[0])
