"""Post-training int8 quantization: ``calibrate``, ``quantize`` and ``fold-qdq``.

    canonicalize,calibrate{data=calib.npz,observer=percentile},quantize,fuse

* ``calibrate`` runs the interpreter on user samples and annotates each layer (conv / matmul /
  gemm with a constant weight) with the range of its activation: ``qrange=[lo, hi]``, chosen by a
  min-max, percentile or entropy (KL) observer. From Python, ``Calibrate(samples=...)`` takes the
  samples in memory (``graphopt.compile(..., calibration=...)`` does this).
* ``quantize`` quantizes each layer's weight once (symmetric int8, per output channel) and its
  activation at run time: static per-tensor u8 from ``qrange``, or dynamic (per tensor, or per row
  for matmuls: the default for them, as transformer activations vary a lot from token to token).
  It writes the QDQ form (``q.quantize`` -> ``q.dequantize`` -> float op) and, unless
  ``fold=false``, folds it into the integer kernels ``q.conv2d_int8`` / ``q.matmul_int8``. With
  ``requant=fixed`` (the default) a kernel whose f32 result only feeds the next layer's static
  quantization (through a ReLU at most) then runs integer-only: ``q.conv_integer`` /
  ``q.matmul_integer`` and ``q.requantize`` with a dyadic multiplier (``passes/quant/requant.py``);
  ``requant=float`` keeps the f32 epilogue.
  Anything without an integer kernel stays f32 and is listed as a decision; a graph that already
  has ``q.*`` ops is refused.
* ``fold-qdq`` folds an existing QDQ graph (e.g. an imported ONNX QDQ model) into integer kernels
  without quantizing anything new.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ..ir.graph import CONST, Graph, Node
from .base import Decision, PassContext, register_pass
from .quant import (
    QRANGE,
    CalibrationSet,
    Layer,
    LayerPlan,
    ObserverKind,
    find_layers,
    fold_qdq,
    insert_qdq,
    is_quantized,
    observe,
)
from .quant.fold import FoldNote
from .quant.requant import requantize_fixed

# Ops that only move or reshape data lose nothing by staying float; the report does not list them.
_DATA_MOVEMENT = ("tensor.", "q.")


class QuantizeError(ValueError):
    """A graph or option the quantization passes refuse (already quantized, no samples)."""


@register_pass
@dataclass(frozen=True)
class Calibrate:
    """Annotate every layer with its activation's calibrated range (``qrange``)."""

    name: ClassVar[str] = "calibrate"
    data: str = ""  # an .npz file of samples (see passes/quant/calibrate.py); or set ``samples``
    observer: ObserverKind = "minmax"
    percentile: float = 99.99  # of the percentile observer
    samples: CalibrationSet | None = field(default=None, compare=False)

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        """The graph with ``qrange`` annotations on its layers."""
        samples = self.samples
        if samples is None:
            if not self.data:
                raise QuantizeError("calibrate needs samples: data=FILE.npz, or calibration= in graphopt.compile")
            samples = CalibrationSet.of(self.data, graph)
        layers, _ = find_layers(graph)
        ranges = observe(graph, samples, {layer.activation for layer in layers}, self.observer, self.percentile)
        annotated: dict[Node, Node] = {}
        for layer in layers:
            lo, hi = ranges[layer.activation]
            annotated[layer.node] = layer.node.with_annotations(**{QRANGE: (float(lo), float(hi))})
            ctx.decisions.append(Decision(self.name, layer.name, True, f"{self.observer} range of the activation "
                                          f"over {len(samples)} samples", {"lo": lo, "hi": hi}))
        ctx.record(self.name, {"samples": len(samples), "layers": len(layers)})
        nodes = tuple(annotated.get(n, n) for n in graph.nodes)
        return Graph(graph.name, graph.inputs, nodes, graph.outputs)


@register_pass
@dataclass(frozen=True)
class Quantize:
    """Quantize every layer to int8 (see the module docstring); ``skip`` names layers kept f32."""

    name: ClassVar[str] = "quantize"
    activations: Literal["static", "dynamic"] = "static"  # of convolutions (static needs calibrate)
    matmul_activations: Literal["static", "dynamic", "dynamic-row"] = "dynamic-row"
    per_channel: bool = True
    fold: bool = True
    requant: Literal["fixed", "float"] = "fixed"  # integer-only requantization between static layers
    skip: tuple[str, ...] = ()  # layer result names (as the IR prints them, without %) to keep f32

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        """The quantized graph (QDQ form, folded into integer kernels unless ``fold=false``)."""
        refuse_quantized(graph, self.name)
        layers, skipped = find_layers(graph)
        for subject, reason in skipped:
            ctx.decisions.append(Decision(self.name, subject, False, f"stays f32: {reason}"))
        chosen = [la for la in layers if la.name.split("%", 1)[1] not in self.skip]
        for la in layers:
            if la not in chosen:
                ctx.decisions.append(Decision(self.name, la.name, False, "stays f32: listed in skip"))
        plans = {la.node: self.plan(la) for la in chosen}
        result = insert_qdq(graph, plans, {la.node: la for la in chosen})
        if self.fold:
            result, notes = fold_qdq(result)
            _record_folds(ctx, self.name, notes, only_rejected=True)
            if self.requant == "fixed":
                result, fixed = requantize_fixed(result)
                ctx.record(self.name, {"integer-only requantizations": sum(n.accepted for n in fixed)})
        for la in chosen:
            ctx.decisions.append(Decision(self.name, la.name, True, f"int8: {plans[la.node].describe()}",
                                          {"macs": float(la.macs)}))
        note_float_ops(ctx, self.name, result)
        ctx.record(self.name, {"int8 layers": len(chosen), "f32 layers": len(layers) - len(chosen) + len(skipped)})
        return result

    def plan(self, layer: Layer) -> LayerPlan:
        """How ``layer`` is quantized, from the options and its calibrated range (if any)."""
        wanted = self.activations if layer.kind == "conv2d" else self.matmul_activations
        rng = layer.node.annotations.get(QRANGE)
        if wanted == "static":
            if isinstance(rng, tuple) and len(rng) == 2:
                return LayerPlan("static", float(rng[0]), float(rng[1]), self.per_channel)
            wanted = "dynamic" if layer.kind == "conv2d" else "dynamic-row"
            note = "no calibrated range: run calibrate, or pass calibration= to graphopt.compile"
            return LayerPlan(wanted, per_channel=self.per_channel, note=note)
        if layer.kind == "conv2d" and wanted == "dynamic-row":
            wanted = "dynamic"  # a convolution's activation has one scale
        return LayerPlan(wanted, per_channel=self.per_channel)


@register_pass
@dataclass(frozen=True)
class FoldQDQ:
    """Fold QDQ layers (from ``quantize{fold=false}`` or an ONNX QDQ model) into integer kernels."""

    name: ClassVar[str] = "fold-qdq"
    # ``float`` keeps the numbers of the QDQ graph exactly; ``fixed`` then requantizes integer-only.
    requant: Literal["fixed", "float"] = "float"

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        """The graph with each foldable layer running as an integer kernel."""
        result, notes = fold_qdq(graph)
        _record_folds(ctx, self.name, notes, only_rejected=False)
        ctx.record(self.name, {"folded": sum(n.accepted for n in notes),
                               "left": sum(not n.accepted for n in notes)})
        if self.requant == "fixed":
            result, fixed = requantize_fixed(result)
            ctx.record(self.name, {"integer-only requantizations": sum(n.accepted for n in fixed)})
        return result


def refuse_quantized(graph: Graph, pass_name: str) -> None:
    """Raise QuantizeError when ``graph`` already has q.* ops: quantizing twice compounds the error."""
    ops = is_quantized(graph)
    if ops:
        raise QuantizeError(f"the model is already quantized (it has {', '.join(ops)}); {pass_name} refuses to "
                            f"quantize it again. Compile it without quantizing, or use the fold-qdq pass to run "
                            f"its QDQ layers as integer kernels")


def _record_folds(ctx: PassContext, pass_name: str, notes: list[FoldNote], only_rejected: bool) -> None:
    for note in notes:
        if note.accepted and only_rejected:
            continue
        reason = note.reason if note.accepted else f"stays f32 (QDQ simulated in float): {note.reason}"
        ctx.decisions.append(Decision(pass_name, note.subject, note.accepted, reason))


def note_float_ops(ctx: PassContext, pass_name: str, graph: Graph) -> None:
    """One decision listing the compute ops that stay f32 because no integer kernel exists for them."""
    counts = Counter(n.op for n in graph.nodes if n.op != CONST and not n.op.startswith(_DATA_MOVEMENT)
                     and any(v.type.dtype.is_float for v in n.outputs))
    if counts:
        ops = ", ".join(f"{op} x{c}" for op, c in sorted(counts.items()))
        ctx.decisions.append(Decision(pass_name, "other ops", False,
                                      f"stay f32, no integer kernels for them: {ops}"))


def with_quantization(passes: list, graph: Graph, mode: str, calibration: object = None,
                      max_accuracy_drop: float | None = None, metric: object = None, *,
                      qdq_only: bool = False, observer: ObserverKind = "minmax") -> list:
    """``passes`` with the quantization passes of ``mode`` ("int8" or "auto") inserted after the
    leading ``canonicalize`` passes (which fold batch norms into the weights first) and followed by
    a ``fuse`` when the pipeline has none, so the integer kernels get their epilogues; the
    ``calibration`` samples are checked against ``graph``'s inputs.

    ``qdq_only`` (for ONNX export) stops at the QDQ form, with per-tensor activations (static when
    calibrated, else dynamic) that onnxruntime maps onto its integer kernels, and adds no ``fuse``.
    """
    from .mixed_precision import AccuracyMetric, MixedPrecision

    if mode not in ("int8", "auto"):
        raise ValueError(f"quantize must be None, 'int8' or 'auto', got {mode!r}")
    refuse_quantized(graph, "quantize")
    samples = CalibrationSet.of(calibration, graph) if calibration is not None else None
    quant: list = [Calibrate(samples=samples, observer=observer)] if samples is not None else []
    if mode == "int8":
        if max_accuracy_drop is not None or metric is not None:
            raise ValueError("max_accuracy_drop= and metric= apply to quantize='auto' only")
        if qdq_only:
            act = "static" if samples is not None else "dynamic"
            quant.append(Quantize(activations=act, matmul_activations=act, fold=False))
            return passes + quant
        quant.append(Quantize())
    else:
        if samples is None:
            raise QuantizeError("quantize='auto' needs calibration= samples to measure each layer's sensitivity")
        wrapped = metric if metric is None or isinstance(metric, AccuracyMetric) else AccuracyMetric(metric)
        quant.append(MixedPrecision(max_drop=0.01 if max_accuracy_drop is None else float(max_accuracy_drop),
                                    samples=samples, metric=wrapped))
    names = [p.name for p in passes]
    at = next((i for i, n in enumerate(names) if n != "canonicalize"), len(passes))
    fuse = [] if "fuse" in names else [_fuse()]
    return passes[:at] + quant + fuse + passes[at:]


def _fuse() -> object:
    from .fuse import Fuse

    return Fuse()


def quantization_report(ctx: PassContext) -> list[dict[str, object]]:
    """One row per layer decision of the quantization passes (for the compile report)."""
    rows = []
    for d in ctx.decisions:
        if d.pass_name in ("quantize", "mixed-precision", "fold-qdq") and d.subject != "other ops":
            rows.append({"pass": d.pass_name, "layer": d.subject, "quantized": d.accepted, "reason": d.reason,
                         **{k: float(v) for k, v in d.numbers.items()}})
    return rows
