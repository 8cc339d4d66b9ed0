"""``canonicalize``: constant folding, CSE, rewrite rules and DCE, repeated to a fixed point.

One sweep visits the nodes in order and, for each one, (a) folds it into a constant if all its
operands are constants, (b) applies the first rule of ``rules.py`` that matches (algebraic and
layout identities, batch-norm folding), (c) reuses an earlier identical node or constant (CSE),
else keeps it; then (d) drops nodes that no output needs. Sweeps repeat until nothing changes or
``max-iterations`` is reached. Graph inputs are never touched and graph outputs keep their names
where the value they now return can carry it. Fused bodies are left as they are. What fired is
counted in ``ctx.stats["canonicalize"]``; a fold skipped for size is a ``Decision`` in ``ctx``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir.graph import CONST, FUSED, Graph, Node, Value, fresh_name, remap
from ..ir.interpreter import run_node
from ..ir.opdef import get_op
from ..ir.types import TensorType
from .base import Decision, PassContext, register_pass
from .patterns import Data, New, Rule, index_rules
from .rules import FOLDS, IDENTITIES


@register_pass
@dataclass(frozen=True)
class Canonicalize:
    """Simplify a graph without changing what it computes (see the module docstring)."""

    name: ClassVar[str] = "canonicalize"
    fold_constants: bool = True
    cse: bool = True
    identities: bool = True  # the IDENTITIES rules
    fold_batch_norm: bool = True  # the FOLDS rules
    max_iterations: int = 10
    max_fold_size: int = 1_000_000  # elements; a fold may exceed it only if it does not grow the data

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError(f"max-iterations must be at least 1, got {self.max_iterations}")
        if self.max_fold_size < 0:
            raise ValueError(f"max-fold-size must not be negative, got {self.max_fold_size}")

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        """The simplified graph; counts per rule, fold, CSE and DCE go to ``ctx``."""
        rule_sets = [rs for on, rs in ((self.identities, IDENTITIES), (self.fold_batch_norm, FOLDS)) if on]
        rules = index_rules(*rule_sets)
        stats: Counter[str] = Counter()
        digests: dict[int, tuple[np.ndarray, bytes]] = {}
        result, decisions = graph, []
        for _ in range(self.max_iterations):
            stats["iterations"] += 1
            sweep = _Sweep(self, result, rules, stats, digests)
            result, decisions = sweep.run(), sweep.decisions  # the last sweep's describe the result
            if not sweep.changed:
                break
        ctx.record(self.name, stats)
        ctx.decisions.extend(decisions)
        return _restore_output_names(graph, result)


class _Sweep:
    """One forward pass over the nodes that builds the simplified node list."""

    def __init__(
        self,
        opts: Canonicalize,
        graph: Graph,
        rules: Mapping[str, tuple[Rule, ...]],
        stats: Counter[str],
        digests: dict[int, tuple[np.ndarray, bytes]],
    ) -> None:
        self.opts, self.graph, self.rules, self.stats, self.digests = opts, graph, rules, stats, digests
        self.nodes: list[Node] = []
        self.mapping: dict[Value, Value] = {}
        self.producers: dict[Value, Node] = {}
        self.consts: dict[Hashable, Value] = {}
        self.exprs: dict[Hashable, Node] = {}
        self.changed = False
        self.decisions: list[Decision] = []
        # Live use counts of the graph being built; rewrites move uses from a value to its replacement.
        self.uses: Counter[Value] = Counter(v for n in graph.nodes for v in n.inputs)
        self.uses.update(graph.outputs)
        self.names = {v.name for v in graph.inputs if v.name} | {
            v.name for n in graph.walk() for v in n.outputs if v.name
        }

    # -- the view that patterns match against

    def producer(self, value: Value) -> Node | None:
        """The emitted node that defines ``value``."""
        return self.producers.get(value)

    def use_count(self, value: Value) -> int:
        """How many operands and graph outputs read ``value`` now."""
        return self.uses[value]

    # -- the sweep

    def run(self) -> Graph:
        """The graph after one sweep and DCE."""
        for node in self.graph.nodes:
            node = remap(node, self.mapping)
            for old, new in zip(node.outputs, self.visit(node)):
                if new is not old:
                    self.mapping[old] = new
                    self.uses[new] += self.uses.pop(old, 0)
        outputs = tuple(self.mapping.get(v, v) for v in self.graph.outputs)
        live, kept = set(outputs), []
        for node in reversed(self.nodes):
            if any(v in live for v in node.outputs):
                kept.append(node)
                live.update(node.inputs)
        if len(kept) != len(self.nodes):
            self.stats["dce"] += len(self.nodes) - len(kept)
            self.changed = True
        return Graph(self.graph.name, self.graph.inputs, tuple(reversed(kept)), outputs)

    def visit(self, node: Node) -> tuple[Value, ...]:
        """Emit ``node`` or what it simplifies to; return the values that stand for its results."""
        if node.op == CONST:
            return (self.visit_const(node),)
        if self.opts.fold_constants:
            folded = self.fold(node)
            if folded is not None:
                return folded
        if node.op != FUSED and len(node.outputs) == 1:
            for rule in self.rules.get(node.op, ()):
                rewrite, _ = rule.apply(node, self)
                value = None if rewrite is None else self.materialize(rewrite, node.output.type)
                if value is not None:
                    self.note(f"rule:{rule.name}")
                    self.drop(node)
                    return (value,)
        if self.opts.cse and node.op != FUSED:
            key = (node.op, node.inputs, _freeze(node.attrs), _freeze(node.annotations))
            same = self.exprs.get(key)
            if same is not None:
                self.note("cse")
                self.drop(node)
                return same.outputs
            self.exprs[key] = node
        self.emit(node)
        return node.outputs

    def visit_const(self, node: Node) -> Value:
        """Emit a constant, or return an earlier one with the same dtype, shape and data."""
        data = node.value
        if not self.opts.cse:
            self.emit(node)
            return node.output
        key = (data.dtype.str, data.shape, self.digest(data))
        same = self.consts.get(key)
        if same is not None and np.array_equal(self.producers[same].value, data):
            self.note("cse")
            return same
        self.consts[key] = node.output
        self.emit(node)
        return node.output

    def fold(self, node: Node) -> tuple[Value, ...] | None:
        """Constants for the results of a node whose operands are all constants (None if not folded)."""
        args = [self.producers.get(v) for v in node.inputs]
        if not args or any(a is None or a.op != CONST for a in args):
            return None
        if not all(v.type.is_static for v in node.outputs):
            return None
        size_in = sum(a.value.size for a in args if a is not None)
        size_out = sum(v.type.numel() for v in node.outputs)
        if size_out > self.opts.max_fold_size and size_out > size_in:
            self.stats["fold-skipped-too-big"] += 1
            self.decisions.append(Decision(
                "canonicalize", f"fold {node.op} -> {', '.join(str(v.type) for v in node.outputs)}", False,
                f"the constant would have {size_out} elements, made from {size_in} "
                f"(max-fold-size={self.opts.max_fold_size})",
                {"elements": float(size_out), "input_elements": float(size_in)},
            ))
            return None
        arrays = run_node(node, [a.value for a in args if a is not None])
        self.note("fold")
        self.drop(node)
        out = []
        for v, arr in zip(node.outputs, arrays):
            arr = np.asarray(arr)
            if tuple(arr.shape) != v.type.shape:
                raise ValueError(f"{node.op} computed shape {list(arr.shape)} but its type is {v.type}")
            # A folded value keeps its name: the node it replaces is gone from this graph.
            out.append(self.visit_const(_const_node(arr.astype(v.type.dtype.numpy, copy=False), v.name)))
        return tuple(out)

    def materialize(self, rewrite: Value | New, want: TensorType) -> Value | None:
        """The value of a rule's rewrite, built only if its type is exactly ``want``."""
        if isinstance(rewrite, Value):
            return rewrite if rewrite.type == want else None
        try:
            if _infer(rewrite) != want:
                return None
        except (TypeError, ValueError):
            return None  # a rewrite that does not type-check simply does not apply
        return self.build(rewrite)

    def build(self, item: Value | New | Data) -> Value:
        """Emit the nodes of a rewrite tree (each simplified in turn) and return its value."""
        if isinstance(item, Value):
            return item
        if isinstance(item, Data):
            return self.visit_const(_const_node(item.array, self.fresh_name(item.hint)))
        inputs = tuple(self.build(i) for i in item.inputs)
        opdef = get_op(item.op)
        attrs = opdef.normalize_attrs(item.attrs)
        types = opdef.infer([v.type for v in inputs], attrs)
        node = Node(item.op, inputs, tuple(Value(t) for t in types), attrs)
        self.uses.update(inputs)
        return self.visit(node)[0]

    def emit(self, node: Node) -> None:
        """Keep ``node`` in the new graph."""
        self.nodes.append(node)
        for v in node.outputs:
            self.producers[v] = node

    def drop(self, node: Node) -> None:
        """Forget the uses of a node that will not be emitted."""
        self.uses.subtract(node.inputs)

    def note(self, what: str) -> None:
        """Count a change."""
        self.stats[what] += 1
        self.changed = True

    def fresh_name(self, hint: str | None) -> str | None:
        """``hint`` or ``hint_N``, unused by any value of the graph (None stays anonymous)."""
        return None if hint is None else fresh_name(hint, self.names)

    def digest(self, data: np.ndarray) -> bytes:
        """A hash of a constant's bytes."""
        # Constants are read-only, so hashing each array once per pass run is enough.
        cached = self.digests.get(id(data))
        if cached is None or cached[0] is not data:
            raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
            cached = (data, hashlib.blake2b(raw, digest_size=16).digest())
            self.digests[id(data)] = cached
        return cached[1]


def _const_node(data: np.ndarray, name: str | None) -> Node:
    data = np.array(data, copy=True)
    data.flags.writeable = False
    return Node(CONST, (), (Value(TensorType.of(data), name),), {"value": data})


def _infer(item: Value | New | Data) -> TensorType:
    """The type a rewrite tree would have, without building it."""
    if isinstance(item, Value):
        return item.type
    if isinstance(item, Data):
        return TensorType.of(item.array)
    opdef = get_op(item.op)
    opdef.check_arity(len(item.inputs))
    types = opdef.infer([_infer(i) for i in item.inputs], opdef.normalize_attrs(item.attrs))
    if len(types) != 1:
        raise ValueError(f"a rewrite must build a one-result op, {item.op} has {len(types)}")
    return types[0]


def _freeze(x: Any) -> Hashable:
    """A hashable key for an attribute or annotation value (mappings, lists and arrays included)."""
    if isinstance(x, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, tuple(_freeze(v) for v in x))
    if isinstance(x, np.ndarray):
        return (x.dtype.str, x.shape, x.tobytes())
    if isinstance(x, float):
        return ("float", repr(x))  # -0.0 and 0.0 differ as attributes; nan equals itself
    return (type(x).__name__, x)


def _restore_output_names(before: Graph, after: Graph) -> Graph:
    """``after`` with each named output of ``before`` carried by the value now returned in its place.

    A value keeps its own name when it is a graph input or already an output of ``before`` in
    its own right; then the output's old name is lost, since one value has one name.
    """
    keep = set(before.inputs) | set(before.outputs)
    taken = {v.name for v in after.inputs} | {v.name for n in after.walk() for v in n.outputs}
    renames: dict[Value, str] = {}
    for old, new in zip(before.outputs, after.outputs):
        if old is new or old.name is None or new.name == old.name or new in keep or new in renames:
            continue
        if old.name in taken:
            continue
        renames[new] = old.name
        taken.add(old.name)
    if not renames:
        return after
    mapping: dict[Value, Value] = {}
    nodes = []
    for node in after.nodes:
        node = remap(node, mapping)
        if any(v in renames for v in node.outputs):
            outs = tuple(Value(v.type, renames.get(v, v.name)) for v in node.outputs)
            mapping.update(zip(node.outputs, outs))
            node = Node(node.op, node.inputs, outs, node.attrs, node.annotations, node.body, node.kernel_name)
        nodes.append(node)
    return Graph(after.name, after.inputs, tuple(nodes), tuple(mapping.get(v, v) for v in after.outputs))
