"""``mixed-precision``: per layer int8, bf16 or f32, chosen by an integer linear program (HAWQ-V3).

For each layer (conv / matmul / gemm with a constant weight, see ``passes/quant/layers.py``):

* **sensitivity** is measured: the graph with only that layer lowered to a precision runs on the
  calibration samples (interpreter), and the layer's cost is the outputs' relative error
  ``||y_p - y|| / ||y||`` (mean over samples) against the f32 graph;
* **latency** comes from ``ctx.cost_model`` when the API set one, else from a roofline estimate
  of this CPU: int8 runs about 4x the f32 multiply-add rate with VNNI (measured GEMM peaks: 722
  GOP/s int8, 199 GFLOP/s f32 on 2 cores), plus the cost of quantizing the activation.

The ILP picks one precision per layer, minimizing the summed latency, subject to the summed
sensitivity staying within the budget. Sensitivities do not add up exactly, so the result is then
checked on the samples: the output error (or, with a user ``metric``, its drop against f32) must
be within ``max-drop``; if not, the budget is halved and the ILP solved again, down to all-f32,
which always qualifies. A layer is never put in a precision predicted to be slower than f32, so
the result is never predicted slower than all-f32. Every layer's choice, predicted gain and
sensitivity are recorded as decisions (and listed in the compile report).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..ir.graph import Graph, GraphBuilder, Node, Value
from ..ir.interpreter import run_graph, run_node
from ..ir.types import TensorType
from .base import Decision, PassContext, register_pass
from .quant import CalibrationSet, Layer, LayerPlan, find_layers, fold_qdq, insert_bf16, insert_qdq
from .quantize import Quantize, QuantizeError, note_float_ops, refuse_quantized

PRECISIONS = ("int8", "bf16", "f32")
F32_FLOPS = 199e9  # measured f32 GEMM peak of this machine (2 cores, AVX-512 FMA)
INT8_OPS = 722e9  # measured u8 x i8 GEMM peak with VNNI (vpdpbusd)
BANDWIDTH = 20e9  # bytes/s the kernels stream from memory (a conservative two-core figure)
KERNEL_US = 2.0  # fixed cost of one more kernel call (a dynamic quantization step)
MAX_ROUNDS = 12  # budget halvings before falling back to all-f32
MIN_GAIN = 0.05  # a precision must be predicted this much faster than f32 (relative) to be considered

Outputs = list[np.ndarray]


class AccuracyMetric:
    """A user metric over the model's outputs on every calibration sample; higher is better."""

    def __init__(self, fn: Callable[[list[Outputs]], float], name: str = "metric") -> None:
        self.fn = fn
        self.name = name

    def __call__(self, outputs: list[Outputs]) -> float:
        return float(self.fn(outputs))

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class LayerChoice:
    """One layer's row of the report."""

    layer: str
    choice: str
    sensitivity: dict[str, float]
    latency_us: dict[str, float]

    @property
    def gain_us(self) -> float:
        """Predicted time saved against f32."""
        return self.latency_us["f32"] - self.latency_us[self.choice]

    def to_json(self) -> dict[str, Any]:
        """A plain dict for reports."""
        return {"layer": self.layer, "choice": self.choice, "predicted_gain_us": self.gain_us,
                "sensitivity": dict(self.sensitivity), "latency_us": dict(self.latency_us)}


@register_pass
@dataclass(frozen=True)
class MixedPrecision:
    """Choose int8 / bf16 / f32 per layer under an accuracy budget (see the module docstring)."""

    name: ClassVar[str] = "mixed-precision"
    max_drop: float = 0.01  # metric drop with ``metric``, else the outputs' relative error
    precisions: tuple[str, ...] = PRECISIONS
    max_samples: int = 16  # calibration samples used to measure sensitivity and check the budget
    data: str = ""  # an .npz file of samples; or set ``samples``
    samples: CalibrationSet | None = field(default=None, compare=False)
    metric: AccuracyMetric | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        unknown = set(self.precisions) - set(PRECISIONS)
        if unknown or "f32" not in self.precisions:
            raise ValueError(f"precisions must be among {PRECISIONS} and include f32, got {list(self.precisions)}")
        if self.max_drop < 0:
            raise ValueError(f"max-drop must not be negative, got {self.max_drop}")

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        """The graph with each layer in its chosen precision."""
        refuse_quantized(graph, self.name)
        samples = self._samples(graph)
        layers, skipped = find_layers(graph)
        for subject, reason in skipped:
            ctx.decisions.append(Decision(self.name, subject, False, f"stays f32: {reason}"))
        if not layers:
            return graph
        quant = Quantize()
        plans = {la.node: quant.plan(la) for la in layers}
        evaluate = _Evaluator(graph, samples, self.metric)
        table = self._measure(layers, plans, evaluate, ctx)
        choices, result, check = self._solve(graph, layers, plans, table, evaluate)
        for row, la in zip(choices, layers):
            numbers = {f"sensitivity_{p}": s for p, s in row.sensitivity.items()}
            numbers.update({f"latency_{p}_us": t for p, t in row.latency_us.items()})
            numbers["gain_us"] = row.gain_us
            sens = ", ".join(f"{p} {v:.2e}" for p, v in row.sensitivity.items() if p != "f32") or \
                "not measured (no precision predicted faster than f32)"
            why = (f"{row.choice}: predicted {row.latency_us[row.choice]:.1f} us vs f32 {row.latency_us['f32']:.1f} us "
                   f"(gain {row.gain_us:.1f} us); sensitivity (output error alone) {sens}"
                   + (f"; {plans[la.node].describe()}" if row.choice == "int8" else ""))
            ctx.decisions.append(Decision(self.name, la.name, row.choice != "f32", why, numbers))
        what = f"{self.metric} drop" if self.metric is not None else "output relative error"
        ctx.decisions.append(Decision(self.name, "accuracy budget", check <= self.max_drop,
                                      f"{what} {check:.3g} on {len(samples)} samples (budget {self.max_drop:g})",
                                      {"measured": check, "budget": self.max_drop}))
        note_float_ops(ctx, self.name, result)
        counts = {p: sum(r.choice == p for r in choices) for p in PRECISIONS}
        ctx.record(self.name, {f"{p} layers": n for p, n in counts.items()})
        return result

    def _samples(self, graph: Graph) -> CalibrationSet:
        if self.samples is not None:
            return self.samples.head(self.max_samples)
        if self.data:
            return CalibrationSet.of(Path(self.data), graph).head(self.max_samples)
        raise QuantizeError("mixed precision needs samples to measure sensitivity: data=FILE.npz, or "
                            "calibration= in graphopt.compile")

    def _measure(self, layers: list[Layer], plans: Mapping[Node, LayerPlan], evaluate: _Evaluator,
                 ctx: PassContext) -> list[LayerChoice]:
        """Each layer's predicted latency in every precision, and its measured sensitivity in those
        predicted faster than f32 (the others are never chosen, so they are not run)."""
        consts = set(evaluate.graph.constants())
        shared = _shared_activations(evaluate.graph)
        rows, variants = [], []
        for la in layers:
            lat = {p: _latency(la, p, plans[la.node], ctx, consts) for p in self.precisions}
            if la.activation in shared:
                # The producer's epilogue cannot convert the activation (others read it as f32):
                # a static quantization or a cast is a kernel of its own (a dynamic one always is).
                lat.update({p: t + KERNEL_US for p, t in lat.items()
                            if p == "bf16" or p == "int8" and plans[la.node].activation == "static"})
            worth = [p for p in self.precisions if p != "f32" and lat[p] < (1 - MIN_GAIN) * lat["f32"]]
            rows.append(LayerChoice(la.name, "f32", {"f32": 0.0}, lat))
            for p in worth:
                variants.append((len(rows) - 1, p, apply_precisions(evaluate.graph, {la.node: p}, plans, [la])))
        for (i, p, _), err in zip(variants, evaluate.errors([g for _, _, g in variants])):
            rows[i].sensitivity[p] = err
        return rows

    def _solve(self, graph: Graph, layers: list[Layer], plans: Mapping[Node, LayerPlan], table: list[LayerChoice],
               evaluate: _Evaluator) -> tuple[list[LayerChoice], Graph, float]:
        budget = self.max_drop if self.metric is None else sum(max(r.sensitivity.values()) for r in table) + 1.0
        for _ in range(MAX_ROUNDS):
            picks = solve_ilp(table, budget)
            if all(p == "f32" for p in picks):
                break
            result = apply_precisions(graph, dict(zip((la.node for la in layers), picks)), plans, layers)
            check = evaluate.drop(result)
            if check <= self.max_drop:
                return [_with_choice(r, p) for r, p in zip(table, picks)], result, check
            budget = min(budget, sum(r.sensitivity[p] for r, p in zip(table, picks))) / 2
        return [_with_choice(r, "f32") for r in table], graph, 0.0


def _with_choice(row: LayerChoice, choice: str) -> LayerChoice:
    return LayerChoice(row.layer, choice, row.sensitivity, row.latency_us)


def solve_ilp(table: Sequence[LayerChoice], budget: float) -> list[str]:
    """One precision per layer minimizing summed latency with summed sensitivity <= ``budget``."""
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    options = []
    for row in table:
        # A precision not clearly faster than f32 is never worth its error (estimates are rough).
        ps = [p for p in row.latency_us if p == "f32" or p in row.sensitivity
              and row.latency_us[p] < (1 - MIN_GAIN) * row.latency_us["f32"]]
        xs = {p: h.addBinary(obj=row.latency_us[p]) for p in ps}
        h.addConstr(sum(xs.values()) == 1)
        options.append(xs)
    terms = [row.sensitivity[p] * x for row, xs in zip(table, options) for p, x in xs.items() if row.sensitivity[p]]
    if terms:
        h.addConstr(sum(terms) <= budget)
    h.minimize()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return ["f32"] * len(table)
    return [max(xs, key=lambda p: h.val(xs[p])) for xs in options]


def apply_precisions(graph: Graph, choices: Mapping[Node, str], plans: Mapping[Node, LayerPlan],
                     layers: Sequence[Layer]) -> Graph:
    """``graph`` with each layer of ``choices`` in that precision (int8 folded into integer kernels)."""
    bf16 = {n for n, p in choices.items() if p == "bf16"}
    int8 = {n: plans[n] for n, p in choices.items() if p == "int8"}
    result = insert_bf16(graph, bf16) if bf16 else graph
    if int8:
        result = insert_qdq(result, int8, {la.node: la for la in layers if la.node in int8})
        result, _ = fold_qdq(result)
    return result


class _Evaluator:
    """Runs graphs on the samples and compares them with the f32 graph's outputs."""

    def __init__(self, graph: Graph, samples: CalibrationSet, metric: AccuracyMetric | None) -> None:
        self.graph = graph
        self.samples = samples
        self.metric = metric
        self.reference = self.outputs(graph)
        self.reference_score = metric(self.reference) if metric is not None else 0.0

    def outputs(self, graph: Graph) -> list[Outputs]:
        """Outputs of ``graph`` on every sample."""
        return [run_graph(graph, list(s)) for s in self.samples.samples]

    def errors(self, graphs: Sequence[Graph]) -> list[float]:
        """Mean relative output error of each of ``graphs`` against f32.

        Each graph differs from the f32 one in a single layer, so only what that layer changes is
        run again: the f32 values of one sample are kept and every node whose operands are all
        unchanged f32 values is skipped.
        """
        totals = [0.0] * len(graphs)
        for sample, want in zip(self.samples.samples, self.reference):
            base = _all_values(self.graph, sample)
            for i, g in enumerate(graphs):
                totals[i] += _relative_error(_rerun(g, base), want)
        return [t / len(self.samples) for t in totals]

    def drop(self, graph: Graph) -> float:
        """The metric's drop against f32 (with a metric), else the relative output error."""
        outs = self.outputs(graph)
        if self.metric is None:
            return float(np.mean([_relative_error(o, w) for o, w in zip(outs, self.reference)]))
        return self.reference_score - self.metric(outs)


def _all_values(graph: Graph, sample: Sequence[np.ndarray]) -> dict[Value, np.ndarray]:
    env: dict[Value, np.ndarray] = dict(zip(graph.inputs, sample))
    for node in graph.nodes:
        env.update(zip(node.outputs, run_node(node, [env[v] for v in node.inputs])))
    return env


def _rerun(graph: Graph, base: Mapping[Value, np.ndarray]) -> Outputs:
    """``graph``'s outputs, reusing ``base``'s value of every node whose inputs did not change."""
    env: dict[Value, np.ndarray] = {}
    changed: set[Value] = set()
    for node in graph.nodes:
        if all(v in base for v in node.outputs) and not any(v in changed or v not in base for v in node.inputs):
            continue
        outs = run_node(node, [env[v] if v in env else base[v] for v in node.inputs])
        env.update(zip(node.outputs, outs))
        changed.update(node.outputs)
    return [env[v] if v in env else base[v] for v in graph.outputs]


def _relative_error(got: Outputs, want: Outputs) -> float:
    """||got - want|| / ||want|| over the float outputs together."""
    num = sum(float(np.sum(np.square(g.astype(np.float64) - w.astype(np.float64))))
              for g, w in zip(got, want) if w.dtype.kind == "f")
    den = sum(float(np.sum(np.square(w.astype(np.float64)))) for w in want if w.dtype.kind == "f")
    return math.sqrt(num) / max(math.sqrt(den), 1e-30)


# ----------------------------------------------------------------------------------------- latency


def _shared_activations(graph: Graph) -> set[Value]:
    """Values that are graph inputs or have several readers: ``fuse`` cannot fold their conversion
    into the kernel that produces them."""
    users = graph.users()
    return set(graph.inputs) | {v for v, readers in users.items() if len(readers) > 1}


def _latency(layer: Layer, precision: str, plan: LayerPlan, ctx: PassContext, consts: set[Value]) -> float:
    """Predicted microseconds of ``layer`` in ``precision`` (its kernels plus quantizing its input)."""
    nodes = _variant(layer, precision, plan, consts)
    if ctx.cost_model is not None:
        mean, _, _ = ctx.cost_model.predict([(n, {}) for n in nodes], ctx.target)
        return float(np.sum(mean))
    return sum(_roofline_us(n) for n in nodes)


def _variant(layer: Layer, precision: str, plan: LayerPlan, consts: set[Value]) -> list[Node]:
    """The compute nodes ``layer`` becomes in ``precision``, built alone (weights' values do not
    change the time, so zeros stand in for them)."""
    b = GraphBuilder("layer")
    node = layer.node
    args = []
    for i, v in enumerate(node.inputs):
        if v not in consts:
            args.append(b.input(f"x{i}", _static(v.type)))
        else:
            args.append(b.const(np.zeros([int(d) for d in _static(v.type).shape], v.type.dtype.numpy), f"c{i}"))
    (out,) = b.op(node.op, args, node.attrs)
    mini = b.build([out])
    target = mini.nodes[-1]
    mini_layer = Layer(target, layer.name, target.inputs[1], layer.weight_axis, layer.macs)
    varied = apply_precisions(mini, {target: precision}, {target: plan}, [mini_layer]) if precision != "f32" else mini
    return [n for n in varied.nodes if n.op != "const"]


def _static(t: TensorType) -> TensorType:
    return t.with_shape(tuple(d if isinstance(d, int) else 1 for d in t.shape))


def _roofline_us(node: Node) -> float:
    """max(compute, memory) time of one node on this CPU, in microseconds."""
    from ..ir.opdef import get_op

    opdef = get_op(node.op)
    ins, outs = [v.type for v in node.inputs], [v.type for v in node.outputs]
    flops = opdef.flops(ins, outs, node.attrs)
    nbytes = opdef.bytes(ins, outs, node.attrs)
    integer = node.op in ("q.matmul_int8", "q.conv2d_int8") and _has_vnni()
    rate = INT8_OPS if integer else F32_FLOPS
    compute = flops / rate if opdef.fusion.name == "OUT_FUSABLE" else 0.0
    extra = KERNEL_US if node.op == "q.dynamic_quantize" else 0.0
    return max(compute, nbytes / BANDWIDTH) * 1e6 + extra


def _has_vnni() -> bool:
    """Whether this CPU has AVX-512 VNNI (without it the int8 kernels run at the f32 rate)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in text or "avx512vnni" in text
