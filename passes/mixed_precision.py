"""``mixed-precision``: per layer int8, bf16 or f32, chosen by an integer linear program (HAWQ-V3).

For each layer (conv / matmul / gemm with a constant weight, see ``passes/quant/layers.py``):

* **sensitivity** is measured: the graph with only that layer lowered to a precision runs on the
  calibration samples (interpreter), and the layer's cost is the outputs' relative error
  ``||y_p - y|| / ||y||`` (mean over samples) against the f32 graph;
* **latency** is measured with the backend's timing hook when the pass context has one (the TVM
  backend): the layer alone in each precision, fused as ``fuse`` would fuse it, each distinct
  workload built once (the shipped cost model has never seen an integer kernel, so it is not asked
  about them). Without a hook it comes from ``ctx.cost_model``, else from a roofline estimate of
  this CPU: int8 runs about 4x the f32 multiply-add rate with VNNI (measured GEMM peaks: 722
  GOP/s int8, 199 GFLOP/s f32 on 2 cores);
* **boundary cost**: converting a layer's activation (quantizing it to u8, or casting it to bf16)
  is free when ``fuse`` folds it into the producer's epilogue (a static quantization or a cast of
  a value with one reader), and otherwise a kernel of its own (a dynamic quantization; a value
  that several ops read, e.g. a residual branch). That kernel is priced once per activation, and
  shared by every layer that reads the same converted value (Q, K and V of one attention block).

The ILP picks one precision per layer, and which activations are converted (a layer's low
precision requires its activation's conversion), minimizing the summed latency subject to the
summed sensitivity staying within the budget. Sensitivities do not add up exactly, so the result
is then checked on the samples: the output error (or, with a user ``metric``, its drop against
f32) must be within ``max-drop``; if not, the budget is halved and the ILP solved again, down to
all-f32, which always qualifies. Finally the **speed check**: the whole model's time with the plan
(its layers and conversions, plus every other op, estimated by roofline scaled to the measured f32
layers) must beat all-f32 by ``MODEL_MIN_GAIN``, more than the timing noise of a busy machine;
otherwise the pass keeps all-f32 and says so, with the numbers. Every layer's choice, predicted
gain and sensitivity are recorded as decisions (and listed in the compile report).

Kernels timed alone miss what only the whole model shows (kernel calls, caches shared between
kernels), which decides on small models; so ``graphopt.compile(quantize="auto")`` on TVM also
builds the all-f32 model and times both end to end (``end_to_end_check``), keeping the mixed one
only when it is ``END_TO_END_MIN_GAIN`` faster.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..ir.graph import CONST, FUSED, Graph, GraphBuilder, Node, Value
from ..ir.interpreter import run_graph, run_node
from ..ir.types import TensorType
from .base import Decision, PassContext, register_pass
from .quant import CalibrationSet, Layer, LayerPlan, find_layers, fold_qdq, insert_bf16, insert_qdq
from .quant.layers import value_names
from .quantize import Quantize, QuantizeError, note_float_ops, refuse_quantized

PRECISIONS = ("int8", "bf16", "f32")
F32_FLOPS = 199e9  # measured f32 GEMM peak of this machine (2 cores, AVX-512 FMA)
INT8_OPS = 722e9  # measured u8 x i8 GEMM peak with VNNI (vpdpbusd)
BANDWIDTH = 20e9  # bytes/s the kernels stream from memory (a conservative two-core figure)
KERNEL_US = 2.0  # fixed cost of one more kernel call (a conversion of its own), which kernel timings leave out
MAX_ROUNDS = 12  # budget halvings before falling back to all-f32
MIN_GAIN = 0.05  # a precision must be predicted this much faster than f32 (relative) to be considered
MODEL_MIN_GAIN = 0.10  # the plan must beat all-f32 by this share of the model's time: less is within the
# error of the prediction and the timing noise of a busy machine, and not worth the risk of a slower model
MEASURE_SECONDS = 60.0  # measuring layers stops here; the rest is predicted, scaled to what was measured
MEASURE_SAMPLES = 3  # timings of each kernel; the fastest counts (a slow one says more about the neighbours)
CONVERSIONS = ("q.quantize", "q.dynamic_quantize", "tensor.cast")  # ops that convert a layer's activation
LAYER_OPS = ("nn.conv2d", "nn.matmul", "nn.gemm", "q.conv2d_int8", "q.matmul_int8")  # a kernel with one is the layer's

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
    """One layer's row of the report (and of the ILP)."""

    layer: str
    choice: str
    sensitivity: dict[str, float]
    latency_us: dict[str, float]  # the layer's own kernels per precision, without converting its activation
    boundary: dict[str, str] = field(default_factory=dict)  # precision -> the activation conversion it needs
    share_us: dict[str, float] = field(default_factory=dict)  # precision -> its share of that conversion

    def total_us(self, precision: str) -> float:
        """The layer's time in ``precision`` with its share of converting its activation."""
        return self.latency_us[precision] + self.share_us.get(precision, 0.0)

    @property
    def gain_us(self) -> float:
        """Predicted time saved against f32 (the activation's conversion included)."""
        return self.latency_us["f32"] - self.total_us(self.choice)

    def to_json(self) -> dict[str, Any]:
        """A plain dict for reports."""
        return {"layer": self.layer, "choice": self.choice, "predicted_gain_us": self.gain_us,
                "sensitivity": dict(self.sensitivity), "latency_us": {p: self.total_us(p) for p in self.latency_us}}


@dataclass(frozen=True)
class SpeedCheck:
    """The whole model's predicted time with a plan against all-f32."""

    f32_us: float
    plan_us: float
    others_us: float  # the ops that are not layers, the same in both
    source: str  # where the layer times came from
    measure_s: float = 0.0  # seconds spent building and timing layer kernels

    @property
    def gain(self) -> float:
        """Share of the all-f32 time the plan saves."""
        return 1.0 - self.plan_us / self.f32_us if self.f32_us > 0 else 0.0

    @property
    def passed(self) -> bool:
        """True when the plan is faster by more than ``MODEL_MIN_GAIN``."""
        return self.gain >= MODEL_MIN_GAIN

    def numbers(self) -> dict[str, float]:
        """The figures, for the report."""
        return {"predicted_f32_us": self.f32_us, "predicted_plan_us": self.plan_us, "others_us": self.others_us,
                "gain": self.gain, "margin": MODEL_MIN_GAIN, "measure_s": self.measure_s}


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
        latency = _Latency(graph, plans, ctx)
        table = self._measure(layers, plans, evaluate, latency)
        choices, result, check, speed = self._solve(graph, layers, plans, table, evaluate, latency)
        for row, la in zip(choices, layers):
            numbers = {f"sensitivity_{p}": s for p, s in row.sensitivity.items()}
            numbers.update({f"latency_{p}_us": row.total_us(p) for p in row.latency_us})
            numbers.update({f"boundary_{p}_us": latency.boundary_us[k] for p, k in row.boundary.items()})
            numbers["gain_us"] = row.gain_us
            sens = ", ".join(f"{p} {v:.2e}" for p, v in row.sensitivity.items() if p != "f32") or \
                "not measured (no precision predicted faster than f32)"
            conv = ""
            if row.choice in row.boundary:
                key = row.boundary[row.choice]
                conv = f" (incl. {row.share_us[row.choice]:.1f} us share of {key}: {latency.boundary_us[key]:.1f} us)"
            why = (f"{row.choice}: {latency.source} {row.total_us(row.choice):.1f} us{conv} vs f32 "
                   f"{row.latency_us['f32']:.1f} us (gain {row.gain_us:.1f} us); sensitivity (output error alone) {sens}"
                   + (f"; {plans[la.node].describe()}" if row.choice == "int8" else ""))
            ctx.decisions.append(Decision(self.name, la.name, row.choice != "f32", why, numbers))
        what = f"{self.metric} drop" if self.metric is not None else "output relative error"
        ctx.decisions.append(Decision(self.name, "accuracy budget", check <= self.max_drop,
                                      f"{what} {check:.3g} on {len(samples)} samples (budget {self.max_drop:g})",
                                      {"measured": check, "budget": self.max_drop}))
        if speed is not None:
            verdict = "kept" if speed.passed else "rejected: all layers stay f32"
            ctx.decisions.append(Decision(
                self.name, "speed check", speed.passed,
                f"mixed plan {verdict}: model {speed.plan_us:.0f} us vs all-f32 {speed.f32_us:.0f} us "
                f"({100 * speed.gain:.1f}% faster, needs {100 * MODEL_MIN_GAIN:.0f}%; layers {speed.source}, "
                f"other ops and kernel calls {speed.others_us:.0f} us)", speed.numbers()))
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
                 latency: _Latency) -> list[LayerChoice]:
        """Each layer's latency in every precision, and its measured sensitivity in those predicted
        faster than f32 with their share of the activation's conversion (the others are never
        chosen, so they are not run)."""
        order = sorted(self.precisions, key=lambda p: p != "f32")  # f32 first: the others are judged against it
        times = {(la.node, p): latency.layer_us(la, p) for la in layers for p in order}
        bounds = {la.node: {p: k for p in self.precisions if (k := latency.boundary_key(la, p))} for la in layers}
        sharers: dict[str, int] = {}
        for keys in bounds.values():
            for k in keys.values():
                sharers[k] = sharers.get(k, 0) + 1
        rows, variants = [], []
        for la in layers:
            lat = {p: times[la.node, p] for p in self.precisions}
            share = {p: latency.boundary_us[k] / sharers[k] for p, k in bounds[la.node].items()}
            worth = [p for p in self.precisions
                     if p != "f32" and lat[p] + share.get(p, 0.0) < (1 - MIN_GAIN) * lat["f32"]]
            rows.append(LayerChoice(la.name, "f32", {"f32": 0.0}, lat, bounds[la.node], share))
            for p in worth:
                variants.append((len(rows) - 1, p, apply_precisions(evaluate.graph, {la.node: p}, plans, [la])))
        for (i, p, _), err in zip(variants, evaluate.errors([g for _, _, g in variants])):
            rows[i].sensitivity[p] = err
        return rows

    def _solve(self, graph: Graph, layers: list[Layer], plans: Mapping[Node, LayerPlan], table: list[LayerChoice],
               evaluate: _Evaluator, latency: _Latency) -> tuple[list[LayerChoice], Graph, float, SpeedCheck | None]:
        budget = self.max_drop if self.metric is None else sum(max(r.sensitivity.values()) for r in table) + 1.0
        all_f32 = [_with_choice(r, "f32") for r in table]
        for _ in range(MAX_ROUNDS):
            picks = solve_ilp(table, budget, latency.boundary_us)
            if all(p == "f32" for p in picks):
                break
            result = apply_precisions(graph, dict(zip((la.node for la in layers), picks)), plans, layers)
            check = evaluate.drop(result)
            if check <= self.max_drop:
                speed = latency.speed_check(graph, layers, table, picks)
                if not speed.passed:
                    return all_f32, graph, 0.0, speed
                return [_with_choice(r, p) for r, p in zip(table, picks)], result, check, speed
            budget = min(budget, sum(r.sensitivity[p] for r, p in zip(table, picks))) / 2
        return all_f32, graph, 0.0, None


def _with_choice(row: LayerChoice, choice: str) -> LayerChoice:
    return LayerChoice(row.layer, choice, row.sensitivity, row.latency_us, row.boundary, row.share_us)


def solve_ilp(table: Sequence[LayerChoice], budget: float, boundary_us: Mapping[str, float] | None = None) -> list[str]:
    """One precision per layer minimizing summed latency with summed sensitivity <= ``budget``.

    A layer's low precision needs its activation converted (``row.boundary``); each conversion in
    ``boundary_us`` is one more 0/1 variable, paid once however many layers use it.
    """
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    options = []
    converted: dict[str, Any] = {}
    for row in table:
        # A precision not clearly faster than f32 is never worth its error (estimates are rough).
        ps = [p for p in row.latency_us if p == "f32" or p in row.sensitivity
              and row.latency_us[p] < (1 - MIN_GAIN) * row.latency_us["f32"]]
        xs = {p: h.addBinary(obj=row.latency_us[p]) for p in ps}
        h.addConstr(sum(xs.values()) == 1)
        for p, x in xs.items():
            key = row.boundary.get(p)
            if key is not None and boundary_us and boundary_us.get(key, 0.0) > 0:
                if key not in converted:
                    converted[key] = h.addBinary(obj=boundary_us[key])
                h.addConstr(x - converted[key] <= 0)
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


class _Latency:
    """Each layer's time per precision and each activation conversion's time, in microseconds.

    Measured with ``ctx.measure`` when the context has it (for ``MEASURE_SECONDS`` at most; then
    predicted and scaled by the measured / predicted ratio so far), else predicted by
    ``ctx.cost_model``, else by the roofline.
    """

    def __init__(self, graph: Graph, plans: Mapping[Node, LayerPlan], ctx: PassContext) -> None:
        self.ctx = ctx
        self.plans = plans
        self.consts = set(graph.constants())
        self.shared = _shared_activations(graph)
        self.names = value_names(graph)
        self.boundary_us: dict[str, float] = {}
        self.measured: dict[str, float] = {}  # kernel workload key -> microseconds
        self.spent = 0.0
        self.ratio: dict[str, list[float]] = {}  # precision -> [measured us, predicted us] of the same kernels
        self.failed = 0
        self._f32: dict[Node, tuple[float, float]] = {}  # layer -> (its f32 time, predicted), asked first
        self.source = "measured" if ctx.measure is not None else \
            "predicted (cost model)" if ctx.cost_model is not None else "predicted (roofline)"

    def boundary_key(self, layer: Layer, precision: str) -> str | None:
        """The activation conversion ``layer`` needs in ``precision`` when it is a kernel of its own
        (None when it is free: f32, or folded into the producer's epilogue)."""
        plan = self.plans[layer.node]
        dynamic = precision == "int8" and plan.activation != "static"
        if precision == "f32" or not (dynamic or layer.activation in self.shared):
            return None
        what = "cast to bf16" if precision == "bf16" else \
            f"quantize ({plan.activation})" if dynamic else f"quantize (static [{plan.lo:.4g}, {plan.hi:.4g}])"
        return f"{what} of %{self.names[layer.activation]}"

    def layer_us(self, layer: Layer, precision: str) -> float:
        """The layer's own kernels in ``precision``; the conversion of its activation, when it is a
        kernel of its own, goes to ``boundary_us`` under ``boundary_key``."""
        mini = _variant_graph(layer, precision, self.plans[layer.node], self.consts)
        convert = [n for n in mini.nodes if n.op in CONVERSIONS and n.inputs[0] is mini.inputs[0]]
        rest = [n for n in mini.nodes if n.op != CONST and n not in convert]
        key = self.boundary_key(layer, precision)
        # A conversion of its own is one more kernel call (the roofline of a dynamic one counts it).
        roofline = self.ctx.cost_model is None or self.ctx.measure is not None
        call = 0.0 if roofline and any(n.op == "q.dynamic_quantize" for n in convert) else KERNEL_US
        predicted = self._predict(rest), self._predict(convert) + call
        # A precision predicted no faster than f32 is not built and timed (bf16 convolutions are
        # slow to build and to run where the CPU has no bf16 dot products); its prediction stays.
        base = self._f32.get(layer.node)
        hopeless = precision != "f32" and base is not None and predicted[0] >= base[1]
        got = self._measured(mini) if self.ctx.measure is not None and not hopeless else None
        if got is not None:
            # A conversion of its own is one more kernel call, which the kernel's timing leaves out.
            own, conv = got[0], got[1] + (KERNEL_US if convert else 0.0)
            ratio = self.ratio.setdefault(precision, [0.0, 0.0])
            ratio[0] += own
            ratio[1] += predicted[0]
        elif hopeless and base is not None:
            # As much slower than this layer's f32 time as predicted.
            scale = base[0] / base[1] if base[1] > 0 else 1.0
            own, conv = predicted[0] * scale, predicted[1] * scale
        else:
            scale = self._scale(precision)
            own, conv = predicted[0] * scale, predicted[1] * scale
        if precision == "f32":
            self._f32[layer.node] = (own, predicted[0])
        if key is not None and key not in self.boundary_us:
            self.boundary_us[key] = conv
        return own

    def _predict(self, nodes: Sequence[Node]) -> float:
        if not nodes:
            return 0.0
        if self.ctx.cost_model is not None and self.ctx.measure is None:
            # (When measuring, predictions only fill gaps, scaled to measurements: the roofline
            # knows integer kernels, the shipped cost model has never seen one.)
            mean, _, _ = self.ctx.cost_model.predict([(n, {}) for n in nodes], self.ctx.target)
            return float(np.sum(mean))
        return sum(_roofline_us(n) for n in nodes)

    def _scale(self, precision: str) -> float:
        measured, predicted = self.ratio.get(precision, (0.0, 0.0))
        return measured / predicted if measured > 0 and predicted > 0 else 1.0

    def _measured(self, mini: Graph) -> tuple[float, float] | None:
        """(the layer's kernels, its activation's conversion) of ``mini`` fused as ``fuse`` would,
        timed with the backend's hook; None when out of time or a kernel cannot be built."""
        from .fuse import Fuse
        from .schedule import kernel_workload
        from .tuning_db import workload_key

        if self.spent > MEASURE_SECONDS:
            return None
        start = time.perf_counter()
        try:
            fused = Fuse().run(mini, PassContext(target=self.ctx.target))
            consts = fused.constants()
            own = conv = 0.0
            for node in fused.nodes:
                if node.op == CONST:
                    continue
                alone = kernel_workload(node, consts)
                key = workload_key(alone)
                if key not in self.measured:
                    assert self.ctx.measure is not None
                    kernel = alone.nodes[-1]
                    self.measured[key] = 1e6 * min(float(self.ctx.measure(kernel, {})) for _ in range(MEASURE_SAMPLES))
                ops = {n.op for n in node.body.nodes} if node.op == FUSED and node.body is not None else {node.op}
                if mini.inputs[0] in node.inputs and not ops & set(LAYER_OPS):
                    conv += self.measured[key]
                else:
                    own += self.measured[key]
            return own, conv
        except Exception:  # noqa: BLE001 - a kernel the backend cannot build: predict this layer instead
            self.failed += 1
            return None
        finally:
            self.spent += time.perf_counter() - start

    def speed_check(self, graph: Graph, layers: Sequence[Layer], table: Sequence[LayerChoice],
                    picks: Sequence[str]) -> SpeedCheck:
        """The model's time with ``picks`` against all-f32. The ops that are not layers take the
        same time in both; they are estimated by roofline, scaled by how the f32 layers' times
        compare with their roofline (so a slow machine does not make the plan look better), plus
        one kernel call (``KERNEL_US``) per layer."""
        layer_nodes = {la.node for la in layers}
        f32_layers = sum(r.latency_us["f32"] for r in table)
        roof_layers = sum(_roofline_us(la.node) for la in layers)
        scale = f32_layers / roof_layers if roof_layers > 0 else 1.0
        others = scale * sum(_roofline_us(n) for n in graph.nodes if n.op != CONST and n not in layer_nodes)
        # Calling each layer's kernel costs the same in both; it keeps the shares honest on small models.
        others += KERNEL_US * len(layers)
        conversions = {r.boundary[p] for r, p in zip(table, picks) if p in r.boundary}
        plan = sum(r.latency_us[p] for r, p in zip(table, picks)) + sum(self.boundary_us[k] for k in conversions)
        source = self.source
        if self.failed:
            source += f" ({self.failed} predicted: their kernels did not build)"
        elif self.ctx.measure is not None and self.spent > MEASURE_SECONDS:
            source += f" (until {MEASURE_SECONDS:.0f} s were spent, then predicted and scaled)"
        return SpeedCheck(f32_layers + others, plan + others, others, source, self.spent)


def _variant_graph(layer: Layer, precision: str, plan: LayerPlan, consts: set[Value]) -> Graph:
    """``layer`` alone in ``precision`` (weights' values do not change the time, so zeros stand in
    for them); its activation is the graph's first input."""
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
    return apply_precisions(mini, {target: precision}, {target: plan}, [mini_layer]) if precision != "f32" else mini


def _static(t: TensorType) -> TensorType:
    return t.with_shape(tuple(d if isinstance(d, int) else 1 for d in t.shape))


def _roofline_us(node: Node) -> float:
    """max(compute, memory) time of one node on this CPU (symbolic dims bound to 1), in microseconds."""
    from ..ir.opdef import get_op

    opdef = get_op(node.op)
    ins, outs = [_static(v.type) for v in node.inputs], [_static(v.type) for v in node.outputs]
    try:
        flops = opdef.flops(ins, outs, node.attrs)
        nbytes = opdef.bytes(ins, outs, node.attrs)
    except Exception:  # noqa: BLE001 - an op without cost counts (a fused body, a custom op) costs nothing here
        return 0.0
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


# ------------------------------------------------------------------------------------ end to end

END_TO_END_MIN_GAIN = 0.05  # measured end to end, interleaved: the mixed model must be this much faster
END_TO_END_ROUNDS = 20


def end_to_end_check(graph: Graph, exe: Any, build_f32: Callable[[], tuple[Graph, Any]],
                     sample: Sequence[np.ndarray], ctx: PassContext) -> tuple[Graph, Any]:
    """``quantize="auto"`` on a backend that runs for real: the built mixed model and the all-f32
    one (``build_f32()``, each an executable with ``run(inputs)``) are timed end to end on
    ``sample``, interleaved, and all-f32 is kept unless the mixed one is ``END_TO_END_MIN_GAIN``
    faster. Kernel timings in isolation miss what only the whole model shows (kernel calls, caches
    shared between kernels); on a 20 us model they decide. The verdict goes into ``ctx.decisions``.
    """
    chosen = [d for d in ctx.decisions if d.pass_name == MixedPrecision.name and "gain_us" in d.numbers]
    if not any(d.accepted for d in chosen):
        return graph, exe
    f32_graph, f32_exe = build_f32()
    runs: list[list[float]] = [[], []]
    pair = [exe, f32_exe]
    for e in pair:
        e.run(sample)
    for r in range(END_TO_END_ROUNDS):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            start = time.perf_counter()
            pair[i].run(sample)
            runs[i].append(time.perf_counter() - start)
    mixed_ms, f32_ms = (1e3 * float(np.median(t)) for t in runs)
    keep = mixed_ms < (1 - END_TO_END_MIN_GAIN) * f32_ms
    verdict = "mixed plan kept" if keep else \
        f"not {100 * END_TO_END_MIN_GAIN:.0f}% faster: all layers stay f32"
    ctx.decisions.append(Decision(
        MixedPrecision.name, "end-to-end check", keep,
        f"mixed model {mixed_ms:.3f} ms vs all-f32 {f32_ms:.3f} ms (whole model, median of "
        f"{END_TO_END_ROUNDS} interleaved runs); {verdict}",
        {"mixed_ms": mixed_ms, "f32_ms": f32_ms, "margin": END_TO_END_MIN_GAIN}))
    return (graph, exe) if keep else (f32_graph, f32_exe)
