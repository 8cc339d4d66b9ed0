"""``fuse``: partition the graph into kernels, each a ``fused`` node.

Legality comes from each op's fusion kind (as in TVM's OpPatternKind):

* a kernel has at most one *anchor*: an out-fusable op (conv, matmul, gemm, pool) or a reduction,
  and the anchor comes first unless only elementwise/injective ops precede a reduction;
* elementwise and broadcast ops fuse after anything (epilogues: bias, activation, residual add);
* injective ops (reshape, transpose, slice …) fuse only into kernels without an anchor;
* opaque ops and multi-result ops stay alone;
* a value may be folded into a kernel only if the kernel's next op is its sole reader and it is
  not a graph output (so kernels have one result and no value is computed twice).

Whether a *legal* merge is taken is asked of a ``FusionPolicy``; ``RulePolicy`` (the first
version) takes every legal merge. When the pass context has a cost model, ``CostModelPolicy``
decides instead: it merges when the predicted time of the fused kernel beats the predicted times
of the two kernels apart, and measures (or keeps the rule) where the intervals are too wide to
tell.

Beyond the rule, the cost model may also fuse a *prologue*: a kernel with no anchor (reshape,
transpose, elementwise ops) whose only reader is a matmul or gemm joins that anchor's kernel, so
the intermediate is never written (``model_only_reason``; ``Candidate.model_only``). The rule
never takes these, so without a cost model the kernels are the first version's. The model never
saw such kernels, so it fuses one only when measured faster by more than ``MEASURED_NOISE``
(a prediction can only reject it). Convolution, pooling and concat prologues are forbidden: the
backend recomputes them inside the anchor's reduction loop (see ``PROLOGUE_ANCHORS``).

Every accepted and rejected candidate is recorded as a ``Decision`` with its reason and
predicted times, and with a cost model every kernel gets a ``cost=…us±…`` annotation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from ..costmodel.kernels import kernel_graph
from ..ir.annotations import Cost
from ..ir.graph import CONST, Graph, GraphBuilder, Node, Value
from ..ir.opdef import FusionKind, get_op
from ..ir.printer import Printer
from .base import CostPredictor, Decision, KernelMeasurer, PassContext, register_pass
from .schedule import kernel_ops, kernel_workload
from .tuning_db import TuningDatabase, TuningRecord, cache_dir, workload_key

SMALL_CONST = 1  # scalar constants are copied into kernel bodies; bigger ones stay operands (weights)
UNMODELLED_PREFIXES = ("q.",)
"""Ops the shipped model never saw measured (its data has no int8 kernels: DATASET_CARD.md); merges
involving them follow the rule, since its predictions there are guesses and measuring them one
candidate at a time on a busy machine let noise split int8 convolutions from their requantization."""
MEASURED_NOISE = 0.10
"""Relative difference between two timings of the same kernel that one run's noise explains."""
KERNEL_TIMES_FILE = "kernel_times-2.jsonl"
"""Default-schedule kernel timings that settled fusion decisions, in graphopt's cache folder. Kept
apart from the tuning database, whose records mean "searched": these must not stop a search.
("-2": the first version's file held one sample per kernel, and load had doubled some of them;
it also timed kernels with their weights as plain inputs, unpacked, up to 15x slower than built.)"""
MEASURE_ROUNDS = 3
"""Times each side of an undecided merge is timed, in turns; its fastest time counts. On a shared
machine a 2-thread kernel that finds a core busy runs about twice as long (seen: conv+relu timed at
207 us beside 109 us for the conv alone, both 107 us when re-timed). Interference only ever adds
time, so the minimum over turns spread in time is the kernel's own, and turns give both sides the
same conditions."""
CONFIRM_ROUNDS = 6
"""More turns for the sides of a legal merge whose first ``MEASURE_ROUNDS`` say it is slower by more
than ``MEASURED_NOISE``, before the merge is declined. On a busy machine three turns can all find a
core taken: mobilenet_v2 at 64 px declined conv+residual-add merges measured 23.2 us fused against
21.1 us apart, which timed alone for 15 turns were 0.97-1.03x (the add is 0.1 us of work). A
loss that survives the extra turns is the kernel's own."""
KERNEL_CALL_US = 0.2
"""What one more kernel costs the Relax VM beyond its own run time; kernel measurements leave it out.
Measured with ``python -m graphopt.benchmarks.kernel_call``: a chain of 10 or 40 ops on an f32[1,16]
runs 0.16-0.47 us slower per extra kernel than the same ops fused into one (four runs, 2026-12-03)."""


@dataclass
class Group:
    """A kernel being grown: its member nodes in order."""

    members: list[Node] = field(default_factory=list)

    @property
    def output(self) -> Value:
        """The value the kernel returns: its last member's result."""
        return self.members[-1].outputs[0]

    @property
    def anchor(self) -> Node | None:
        """The out-fusable or reduction member, if any."""
        for n in self.members:
            if _kind(n) in (FusionKind.OUT_FUSABLE, FusionKind.REDUCTION):
                return n
        return None

    def describe(self) -> str:
        """``nn.conv2d+math.add+nn.relu``."""
        return "+".join(n.op for n in self.members)


@dataclass(frozen=True)
class Candidate:
    """A proposed merge: append ``node`` to the kernel ``group``.

    ``model_only`` marks a merge the rule forbids but the cost model may take (a prologue:
    ``model_only_reason``); ``RulePolicy`` declines those, so the rule's kernels never change.
    """

    group: Group
    node: Node
    model_only: bool = False


class FusionPolicy(Protocol):
    """Decides whether a legal merge is taken; returns (accept, reason, numbers)."""

    def decide(self, candidate: Candidate) -> tuple[bool, str, Mapping[str, float]]:
        """Accept or reject ``candidate``, saying why (with predicted times when it has them)."""
        ...


class RulePolicy:
    """The first version's rule: every legal merge is taken (it saves a round trip to memory)."""

    def decide(self, candidate: Candidate) -> tuple[bool, str, Mapping[str, float]]:
        """Accept every legal candidate; decline the merges only the cost model may take."""
        if candidate.model_only:
            return False, "rule: an anchor op's inputs are not fused into it (only the cost model fuses prologues)", {}
        return True, "rule: a legal merge saves writing and re-reading the intermediate", {}


class CostModelPolicy:
    """Merges when the cost model predicts the fused kernel faster than the two kernels apart.

    The unfused side is the kernel grown so far plus the candidate op as a kernel of its own. When
    the model prefers not to merge but the 80 % intervals of the two sides overlap, the prediction
    cannot decide: the policy measures both sides if it has a timing hook, and otherwise keeps the
    rule (merge), saying so. A merge the model prefers needs no such check: it is what the rule does.
    """

    def __init__(self, model: CostPredictor, target: str, constants: Mapping[Value, Node],
                 measure: KernelMeasurer | None = None, measure_limit: int = 8) -> None:
        self.model = model
        self.target = target
        self.constants = constants
        self._weights = {v: n.value for v, n in constants.items()}  # what measuring builds into kernels
        self.measure = measure
        self.measure_limit = measure_limit  # undecided candidates measured per run; then the rule decides
        self._times: dict[str, float] = {}  # microseconds by workload key: repeated layers are timed once
        self._db: TuningDatabase | None = None  # earlier compiles' timings, opened on the first measurement

    def _alone(self, members: list[Node]) -> Node:
        return members[0] if len(members) == 1 else _kernel(Group(list(members)), "candidate", self.constants)

    def decide(self, candidate: Candidate) -> tuple[bool, str, Mapping[str, float]]:
        """Compare the predicted fused time with the predicted unfused sum."""
        members = candidate.group.members
        unmodelled = sorted({n.op for n in (*members, candidate.node) if n.op.startswith(UNMODELLED_PREFIXES)})
        if unmodelled and candidate.model_only:
            return False, f"rule (the cost model has no measurements of {', '.join(unmodelled)})", {}
        if unmodelled:
            return True, f"rule (the cost model has no measurements of {', '.join(unmodelled)})", {}
        fused = _kernel(Group([*members, candidate.node]), "candidate", self.constants)
        sides = [(fused, {}), (self._alone(members), {}), (candidate.node, {})]
        try:
            mean, low, high = (list(map(float, a)) for a in self.model.predict(sides, self.target))
        except Exception as e:  # noqa: BLE001 - a model that cannot predict these kernels must not stop fusion
            return not candidate.model_only, f"rule (the cost model could not predict: {type(e).__name__}: {e})", {}
        call = KERNEL_CALL_US  # apart, the VM calls two kernels
        numbers = {"fused_us": mean[0], "fused_low_us": low[0], "fused_high_us": high[0],
                   "unfused_us": mean[1] + mean[2] + call, "unfused_low_us": low[1] + low[2] + call,
                   "unfused_high_us": high[1] + high[2] + call}
        predicted = (f"predicted fused {mean[0]:.3g}us [{low[0]:.3g}, {high[0]:.3g}] vs apart "
                     f"{numbers['unfused_us']:.3g}us [{numbers['unfused_low_us']:.3g}, {numbers['unfused_high_us']:.3g}]")
        if candidate.model_only:
            return self._decide_model_only(sides, predicted, numbers, low[0])
        if mean[0] <= numbers["unfused_us"]:
            return True, "cost model: " + predicted, numbers
        if low[0] > numbers["unfused_high_us"]:
            return False, "cost model: " + predicted, numbers
        if self.measure is None or self.measure_limit <= 0:
            why = "nothing to measure with" if self.measure is None else "measuring limit reached"
            return True, f"rule (prediction undecided, {why}): {predicted}", numbers
        # A tie within measurement noise keeps the rule's answer (fuse): declining needs a clear loss.
        def clear_loss(fused: float, apart: float) -> bool:
            return fused > apart * (1 + MEASURED_NOISE)

        timed = self._measure_sides(sides, numbers, clear_loss)
        if timed is None:
            return True, f"rule (prediction undecided, the kernels could not be measured): {predicted}", numbers
        fused, apart, numbers = timed
        return not clear_loss(fused, apart), (
            f"measured (prediction undecided): fused {fused:.3g}us vs apart {apart:.3g}us; {predicted}"), numbers

    def _decide_model_only(self, sides: list[tuple[Node, dict]], predicted: str, numbers: dict[str, float],
                           fused_low: float) -> tuple[bool, str, Mapping[str, float]]:
        """A prologue merge, which the rule never takes: the opposite bias of a legal merge.

        The model never saw such kernels measured, so a "faster" prediction alone proves
        nothing: reject when even the fused kernel's low bound is slower than the two kernels
        apart at their high bounds, otherwise measure both sides and fuse only when the fused
        kernel is faster by more than ``MEASURED_NOISE``. Without a measurer (or past the
        measuring limit, which legal undecided merges share) keep the rule's answer: apart.
        """
        if fused_low > numbers["unfused_high_us"]:
            return False, "cost model (prologue): " + predicted, numbers
        # Past the limit, a candidate whose sides this run already timed (a repeated layer) is still free.
        known = all(workload_key(kernel_graph(k)) in self._times for k, _ in sides)
        if self.measure is None or (self.measure_limit <= 0 and not known):
            why = "nothing to measure with" if self.measure is None else "measuring limit reached"
            return False, f"rule (a prologue is fused only when measured faster; {why}): {predicted}", numbers
        # The mirror of a legal decline: fusing needs a clear gain.
        def clear_gain(fused: float, apart: float) -> bool:
            return fused * (1 + MEASURED_NOISE) < apart

        timed = self._measure_sides(sides, numbers, clear_gain)
        if timed is None:
            return False, f"rule (a prologue is fused only when measured faster; the kernels could not be measured): {predicted}", numbers
        fused, apart, numbers = timed
        return clear_gain(fused, apart), (
            f"measured (prologue): fused {fused:.3g}us vs apart {apart:.3g}us; {predicted}"), numbers

    def _measure_sides(self, sides: list[tuple[Node, dict]], numbers: Mapping[str, float],
                       overturns: Callable[[float, float], bool]
                       ) -> tuple[float, float, dict[str, float]] | None:
        """Measured fused and apart microseconds of a candidate's sides (fused, then the two kernels;
        apart includes the VM's second kernel call), with ``numbers`` plus both; None when a side
        cannot be timed. When the first turns say ``overturns(fused, apart)`` (the measurement would
        overturn the rule's answer) the new sides get ``CONFIRM_ROUNDS`` more turns first."""
        measured = self._measure([side for side, _ in sides],
                                 confirm=lambda t: overturns(t[0], t[1] + t[2] + KERNEL_CALL_US))
        if measured is None:
            return None
        apart = measured[1] + measured[2] + KERNEL_CALL_US
        return measured[0], apart, {**numbers, "measured_fused_us": measured[0], "measured_unfused_us": apart}

    def _measure(self, kernels: list[Node],
                 confirm: Callable[[list[float]], bool] | None = None) -> list[float] | None:
        """Microseconds of each kernel with the default schedule (the fastest of ``MEASURE_ROUNDS``
        turns): from this run, from earlier compiles (``KERNEL_TIMES_FILE`` beside the tuning
        database, so a warm compile measures nothing), or measured now and remembered; None when
        one cannot be timed. When ``confirm`` holds for the times, the kernels new to this call get
        ``CONFIRM_ROUNDS`` more turns before anything is remembered (known ones keep their times)."""
        assert self.measure is not None
        if self._db is None:
            self._db = TuningDatabase(cache_dir() / KERNEL_TIMES_FILE, target=self.target)
        keys = [workload_key(kernel_graph(k)) for k in kernels]
        # A candidate with a kernel new to this run counts against the limit whether its timing is
        # remembered or not, so a warm compile settles exactly the candidates the cold one did and
        # makes the same kernels (which is what lets the build cache find them); repeated layers
        # are free.
        if not all(k in self._times for k in keys):
            self.measure_limit -= 1
        for key in keys:
            record = self._db.lookup(key)
            if record is not None:
                self._times.setdefault(key, record.latency_us)
        # New sides are timed in turns. A known side keeps its time: a warm compile replays these
        # decisions from the remembered times, so a time must not change once a decision used it.
        fresh = {key: kernel for key, kernel in zip(keys, kernels) if key not in self._times}
        try:
            # One node per kernel for every turn: the measurer keeps builds by node, so turns do not rebuild.
            built = {key: self._as_built(kernel) for key, kernel in fresh.items()}
            self._turns(built, MEASURE_ROUNDS)
            if built and confirm is not None and confirm([self._times[k] for k in keys]):
                self._turns(built, CONFIRM_ROUNDS)
        except Exception:  # noqa: BLE001 - a kernel the backend cannot time (symbolic shapes, lowering): keep the rule
            for key in fresh:
                self._times.pop(key, None)
            return None
        for key, kernel in fresh.items():
            self._db.add(TuningRecord(key, self.target, {}, self._times[key], kernel=kernel_ops(kernel)))
        return [self._times[k] for k in keys]

    def _turns(self, built: Mapping[str, Node], rounds: int) -> None:
        """Time every kernel of ``built`` ``rounds`` times in turns, keeping each one's fastest."""
        assert self.measure is not None
        for _ in range(rounds):
            for key, kernel in built.items():
                us = self.measure(kernel, {}) * 1e6
                self._times[key] = min(us, self._times.get(key, us))

    def _as_built(self, kernel: Node) -> Node:
        """``kernel`` with its weights' data in its body, as the backend builds it (the weights
        packed at compile time); timed with the weights as plain inputs, a convolution can run
        many times slower than it will in the model."""
        return kernel_workload(kernel, self._weights).nodes[-1]

    def annotate(self, graph: Graph) -> Graph:
        """``graph`` with a ``cost`` annotation (predicted mean ± half the interval) on every static kernel."""
        kernels = [n for n in graph.nodes if n.op != CONST and all(v.type.is_static for v in (*n.inputs, *n.outputs))]
        if not kernels:
            return graph
        try:
            mean, low, high = self.model.predict([(n, {}) for n in kernels], self.target)
        except Exception:  # noqa: BLE001 - decide() already recorded why the model could not predict
            return graph
        cost = {id(n): Cost(round(float(m), 3), round(float(h - lo) / 2, 3))
                for n, m, lo, h in zip(kernels, mean, low, high)}
        nodes = tuple(n.with_annotations(cost=cost[id(n)]) if id(n) in cost else n for n in graph.nodes)
        return Graph(graph.name, graph.inputs, nodes, graph.outputs)


def _kind(node: Node) -> FusionKind:
    return get_op(node.op).fusion if node.op != CONST else FusionKind.OPAQUE


def illegal_reason(group: Group, node: Node, users: Mapping[Value, list[Node]], outputs: set[Value],
                   max_size: int) -> str | None:
    """Why ``node`` cannot join ``group`` (None when it legally can)."""
    last = group.members[-1]
    if len(last.outputs) != 1:
        return f"{last.op} has {len(last.outputs)} results"
    out = group.output
    readers = users.get(out, [])
    if out in outputs:
        return "the kernel's result is a graph output"
    if len(readers) != 1:
        return f"the kernel's result has {len(readers)} readers"
    if len(node.outputs) != 1:
        return f"{node.op} has {len(node.outputs)} results"
    if len(group.members) >= max_size:
        return f"the kernel already has {max_size} ops (max-size)"
    kind = _kind(node)
    if kind in (FusionKind.ELEMENTWISE, FusionKind.BROADCAST):
        return None
    if kind == FusionKind.OPAQUE:
        return f"{node.op} is opaque"
    if kind == FusionKind.OUT_FUSABLE:
        return f"{node.op} is an anchor op; its inputs are not fused into it"
    anchor = group.anchor
    if anchor is not None:
        return f"{node.op} ({kind.name.lower()}) cannot follow {anchor.op} in one kernel"
    return None  # injective or reduction after elementwise/injective ops only


PROLOGUE_KINDS = (FusionKind.ELEMENTWISE, FusionKind.BROADCAST, FusionKind.INJECTIVE)
PROLOGUE_ANCHORS: Mapping[str, tuple[int, ...]] = {
    "nn.matmul": (0, 1),
    "nn.gemm": (0,),
}
"""Anchor ops that may take a prologue, and which of their operands it may compute. The TVM
backend inlines a prologue into the anchor's operand reads and keeps the matmul schedule.

Convolution and pooling take none: inlined into a convolution's reduction loop, a prologue is
recomputed for every output-channel block, and a concat adds a select to every multiply-add
(measured on densenet121 and squeezenet1_1 at 64 px: concat+BN+ReLU -> 1x1 conv 0.05-0.9x the
two kernels apart, concat -> conv 0.7-1.3x; the whole densenet 3x slower)."""
PROLOGUE_FORBIDDEN_OPS = ("tensor.concat",)
"""Prologue ops that put a select chain into the anchor's inner loop (see ``PROLOGUE_ANCHORS``)."""


def model_only_reason(group: Group, node: Node, users: Mapping[Value, list[Node]], outputs: set[Value],
                      max_size: int) -> str | None:
    """Why ``node`` cannot take ``group`` as its prologue (None when it may).

    A prologue merge is beyond the rule (``illegal_reason`` forbids it: the first version's
    legality) and only a cost model may take it, after measuring (``CostModelPolicy``): the
    kernel ``group`` has no anchor (only elementwise, broadcast and injective ops: a concat, a
    batch norm, a reshape or transpose), its result is read only by ``node``, an anchor of
    ``PROLOGUE_ANCHORS``, as an operand the prologue may compute. The fused kernel computes the
    prologue where the anchor reads it, so the intermediate is never written to memory.
    """
    last = group.members[-1]
    if len(last.outputs) != 1 or len(node.outputs) != 1:
        return "multi-result op"
    out = group.output
    if out in outputs:
        return "the kernel's result is a graph output"
    if len(users.get(out, [])) != 1:
        return f"the kernel's result has {len(users.get(out, []))} readers"
    if len(group.members) >= max_size:
        return f"the kernel already has {max_size} ops (max-size)"
    operands = PROLOGUE_ANCHORS.get(node.op)
    if operands is None:
        return f"{node.op} takes no prologue"
    if any(_kind(n) not in PROLOGUE_KINDS for n in group.members):
        return f"kernel {group.describe()} is not elementwise/injective"
    forbidden = sorted({n.op for n in group.members if n.op in PROLOGUE_FORBIDDEN_OPS})
    if forbidden:
        return f"{', '.join(forbidden)} is not fused into an anchor"
    if node.inputs.index(out) not in operands:  # read once: it has one reader
        return f"{node.op} operand {node.inputs.index(out)} takes no prologue"
    return None


@register_pass
@dataclass(frozen=True)
class Fuse:
    """Group nodes into kernels by fusion kind; record each candidate merge and why."""

    name: ClassVar[str] = "fuse"
    max_size: int = 16
    measure_limit: int = 8  # with a cost model: undecided merges settled by measuring, per run
    policy: ClassVar[FusionPolicy] = RulePolicy()

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        """Return the graph with every multi-op kernel wrapped in a ``fused`` node."""
        users = graph.users()
        outputs = set(graph.outputs)
        # Decisions name values as the input graph prints them, so they can be found in a dump.
        printer = Printer()
        printer.print(graph)
        names = printer.names
        group_of: dict[Value, Group] = {}
        groups: list[Group] = []
        accepted = rejected = 0
        policy = self.policy
        if ctx.cost_model is not None:
            consts = {n.output: n for n in graph.nodes if n.op == CONST}
            policy = CostModelPolicy(ctx.cost_model, ctx.target, consts, ctx.measure, self.measure_limit)
        for node in graph.nodes:
            if node.op == CONST:
                continue
            chosen = None
            for v in node.inputs:
                group = group_of.get(v)
                if group is None or group is chosen:
                    continue
                subject = (f"{node.op} %{names[node.outputs[0]]} into kernel {group.describe()} "
                           f"(ending %{names[group.members[-1].outputs[0]]})")
                reason = illegal_reason(group, node, users, outputs, self.max_size)
                model_only = reason is not None and model_only_reason(group, node, users, outputs, self.max_size) is None
                if reason is not None and not model_only:
                    ctx.decisions.append(Decision(self.name, subject, False, "illegal: " + reason))
                    rejected += 1
                    continue
                ok, why, numbers = policy.decide(Candidate(group, node, model_only))
                ctx.decisions.append(Decision(self.name, subject, ok, why, numbers))
                if ok:
                    chosen = group
                    accepted += 1
                    break
                rejected += 1
            if chosen is None:
                chosen = Group()
                groups.append(chosen)
            chosen.members.append(node)
            for v in node.outputs:
                group_of[v] = chosen
        ctx.record(self.name, {"kernels": sum(len(g.members) > 1 for g in groups), "merged": accepted,
                               "rejected": rejected})
        out = _emit(graph, groups)
        return policy.annotate(out) if isinstance(policy, CostModelPolicy) else out


def _emit(graph: Graph, groups: list[Group]) -> Graph:
    last_of = {id(g.members[-1]): g for g in groups}
    member_ids = {id(n) for g in groups for n in g.members}
    consts = {n.output: n for n in graph.nodes if n.op == CONST}
    b = GraphBuilder(graph.name)
    for v in graph.inputs:
        b.add_input(v)
    kernel_id = 0
    emitted: list[Node] = []
    for node in graph.nodes:
        if node.op == CONST or id(node) not in member_ids or id(node) in last_of and len(last_of[id(node)].members) == 1:
            emitted.append(node)
        elif id(node) in last_of:
            emitted.append(_kernel(last_of[id(node)], f"k{kernel_id}", consts))
            kernel_id += 1
    # Small constants were copied into kernel bodies; drop the outer ones nobody reads any more.
    read = {v for n in emitted for v in n.inputs} | set(graph.outputs)
    for node in emitted:
        if node.op != CONST or node.output in read:
            b.add(node)
    return b.build(graph.outputs)


def _kernel(group: Group, kernel_name: str, consts: Mapping[Value, Node]) -> Node:
    inside = {v for n in group.members for v in n.outputs}
    body = GraphBuilder(kernel_name)
    mapping: dict[Value, Value] = {}
    operands: list[Value] = []
    for node in group.members:
        for v in node.inputs:
            if v in inside or v in mapping:
                continue
            const = consts.get(v)
            if const is not None and const.value.size <= SMALL_CONST:
                # Unnamed: the same scalar may be copied into many kernels, and names are graph-wide.
                mapping[v] = body.add(Node(CONST, (), (Value(v.type),), const.attrs)).output
            else:
                mapping[v] = body.add_input(Value(v.type, v.name))
                operands.append(v)
    for node in group.members:
        outs = tuple(Value(v.type) for v in node.outputs)
        mapping.update(zip(node.outputs, outs))
        body.add(Node(node.op, tuple(mapping[v] for v in node.inputs), outs, node.attrs, node.annotations))
    sub = body.build([mapping[group.output]])
    # The kernel returns the original result value, so later readers need no remapping.
    return Node("fused", tuple(operands), (group.output,), {}, {}, sub, kernel_name)
