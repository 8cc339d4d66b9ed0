"""``graphopt.compile`` / ``CompiledModel`` / ``graphopt.load``: glue between frontends, passes and
backends. No compiler logic lives here."""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import __version__
from .backends import Executable, build
from .frontends.detect import import_model
from .ir.analysis import format_bytes, format_count, summarize
from .ir.graph import Graph
from .ir.parser import parse_ir
from .ir.printer import print_graph_with_constants
from .passes import PassContext, PassError, parse_pipeline, run_passes
from .passes.base import CostPredictor
from .passes.quantize import quantization_report, with_quantization
from .passes.schedule import parse_tune
from .passes.schedule_order import MemoryBudgetError, pareto_points
from .passes.tuning_db import cache_dir

DEFAULT_PASSES = "canonicalize"
TVM_PASSES = "canonicalize,fuse,schedule{{tune={tune}}},plan-memory"  # kernels for TVM, each with a searched
# schedule, run inside graphopt's memory plan (the backend executes it: docs/memory.md)
DEFAULT_TUNE = "fast"
COST_MODEL_PASSES = frozenset({"fuse", "schedule"})  # passes that consult ctx.cost_model
ARTIFACT_FORMAT = 1


@dataclass
class CompileReport:
    """What compilation did: where the model came from, each pass, the backend and its fallbacks."""

    source: str
    passes: list[dict[str, Any]] = field(default_factory=list)
    nodes_before: int = 0
    nodes_after: int = 0
    flops: int = 0
    peak_activation_bytes: int = 0
    backend: str = ""
    backend_notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    memory: dict[str, Any] = field(default_factory=dict)  # peak-memory budget and the order Pareto points
    quantization: list[dict[str, Any]] = field(default_factory=list)  # per layer: precision and why

    def to_json(self) -> dict[str, Any]:
        """A plain dict (``--json``)."""
        return dict(self.__dict__)

    def to_text(self) -> str:
        """The report as a short readable block."""
        lines = [f"compiled {self.source} in {self.seconds:.2f} s",
                 f"  nodes {self.nodes_before} -> {self.nodes_after}, {format_count(self.flops)}FLOP per run, "
                 f"peak activations {format_bytes(self.peak_activation_bytes)}"]
        for p in self.passes:
            lines.append(f"  pass {p['name']:<14} {p['seconds'] * 1e3:8.1f} ms  {p.get('summary', '')}".rstrip())
        lines.append(f"  backend {self.backend}")
        lines += [f"    {note}" for note in self.backend_notes]
        if self.quantization:
            lines.append("  quantization (layer: choice, why):")
            lines += [f"    {'+' if q['quantized'] else '-'} {q['layer']}: {q['reason']}" for q in self.quantization]
        if self.memory:
            lines.append(f"  peak memory budget {format_bytes(self.memory['budget_bytes'])}; orders (peak, predicted time):")
            lines += [f"    {p['order']:<24} {format_bytes(p['peak_bytes']):>10} {p['predicted_us']:>12,.1f} us"
                      f"{'  <- chosen' if p['chosen'] else ''}" for p in self.memory["pareto"]]
        return "\n".join(lines)


class CompiledModel:
    """A compiled graph: call it on numpy arrays or torch tensors (positional, graph-input order)."""

    def __init__(self, graph: Graph, executable: Executable, report: CompileReport) -> None:
        self.graph = graph
        self._exe = executable
        self._report = report

    def __call__(self, *args: Any) -> Any:
        torch_out = any(type(a).__module__.startswith("torch") for a in args)
        arrays = [_to_numpy(a) for a in args]
        outs = self._exe.run(arrays)
        if torch_out:
            import torch

            outs = [torch.from_numpy(np.ascontiguousarray(o)) for o in outs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def report(self) -> CompileReport:
        """The compile report (``print(m.report().to_text())``)."""
        return self._report

    def save(self, path: str | Path) -> Path:
        """Write a ``.gopt`` artifact (IR text, constants, metadata) that ``graphopt.load`` reads."""
        path = Path(path)
        text, consts = print_graph_with_constants(self.graph)
        buf = io.BytesIO()
        np.savez(buf, **consts)
        meta = {"format": ARTIFACT_FORMAT, "graphopt": __version__, "backend": self._exe.name,
                "report": self._report.to_json()}
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("graph.gir", text)
            z.writestr("constants.npz", buf.getvalue())
            z.writestr("meta.json", json.dumps(meta, indent=1))
            saver = getattr(self._exe, "save", None)
            if saver is not None:  # compiled code travels with the graph, so load() need not rebuild
                with tempfile.TemporaryDirectory() as tmp:
                    for f in sorted(Path(saver(tmp)).iterdir()):
                        z.write(f, f"backend/{f.name}")
        return path


def compile(
    model: Any,
    example_inputs: Sequence[Any] | None = None,
    *,
    target: str = "cpu",
    backend: str = "auto",
    passes: str | None = None,
    tune: str | float | None = None,
    dump_ir: str | Path | None = None,
    dynamic_batch: bool = False,
    peak_memory_budget: int | None = None,
    quantize: str | None = None,
    calibration: Any = None,
    max_accuracy_drop: float | None = None,
    metric: Any = None,
) -> CompiledModel:
    """Compile ``model`` (nn.Module, ExportedProgram, ONNX path or ModelProto, or Graph).

    ``passes`` is a pipeline spec (default ``"canonicalize,fuse,schedule,plan-memory"`` when TVM
    builds the model, which then runs inside graphopt's memory plan; ``"canonicalize"`` otherwise);
    ``dump_ir`` writes one numbered IR file per pass into that folder. ``tune`` (``"none"``,
    ``"fast"``, ``"full"`` or seconds; default ``"fast"``) is how hard the ``schedule`` pass
    searches kernel schedules that the tuning database does not have yet.
    ``peak_memory_budget`` (bytes) appends ``reorder{budget=...}``: the fastest execution order
    found within the budget; the report lists the Pareto points, and a budget below the lower bound
    raises ValueError.

    ``quantize="int8"`` quantizes every conv / matmul / gemm with constant weights to int8 (integer
    kernels; activations static from ``calibration`` samples when given, else dynamic);
    ``quantize="auto"`` picks int8 / bf16 / f32 per layer within ``max_accuracy_drop`` (default
    0.01) of ``metric(outputs per sample) -> score`` when given, else of the outputs' relative
    error, measured on (the first 16 of) the ``calibration`` samples; on TVM the result is timed end
    to end against all-f32, which is kept unless the mixed model is clearly faster. See
    ``docs/quantization.md``.
    """
    if target != "cpu":
        raise ValueError(f"unknown target '{target}' (available: cpu)")
    start = time.perf_counter()
    tune_text = _tune_option(tune)
    graph = import_model(model, example_inputs, dynamic_batch=dynamic_batch)
    before = summarize(graph).nodes
    tvm = builds_with_tvm(backend)
    pipeline = passes if passes is not None else TVM_PASSES.format(tune=tune_text) if tvm else DEFAULT_PASSES
    if passes is not None and tune is not None and "schedule" not in {p.name for p in parse_pipeline(passes)}:
        pipeline = ",".join(filter(None, [passes, f"schedule{{tune={tune_text}}}"]))
    ctx = pass_context(pipeline, tvm)
    if peak_memory_budget is not None:
        pipeline = ",".join(filter(None, [pipeline, f"reorder{{budget={int(peak_memory_budget)}}}"]))
        if "plan-memory" in {p.name for p in parse_pipeline(pipeline)}:  # a reorder drops the plan: plan again
            pipeline += ",plan-memory"
    imported, f32_pipeline = graph, pipeline
    if quantize is not None:
        pipeline = with_quantization(parse_pipeline(pipeline), graph, quantize, calibration, max_accuracy_drop, metric)
    try:
        graph, pass_log = run_passes(graph, pipeline, dump_ir=dump_ir, ctx=ctx)
    except PassError as e:
        if isinstance(e.__cause__, MemoryBudgetError):
            raise e.__cause__ from None
        raise
    exe = build(graph, backend)
    if quantize == "auto" and tvm:  # never slower than all-f32, measured end to end (docs/quantization.md)
        from .passes.mixed_precision import end_to_end_check
        from .passes.quant import CalibrationSet

        def build_f32() -> tuple[Graph, Executable]:
            g, _ = run_passes(imported, f32_pipeline, ctx=pass_context(f32_pipeline, tvm))
            return g, build(g, backend)

        sample = list(CalibrationSet.of(calibration, imported).samples[0])
        graph, exe = end_to_end_check(graph, exe, build_f32, sample, ctx)
    s = summarize(graph)
    report = CompileReport(
        source=_describe(model), passes=pass_log, nodes_before=before, nodes_after=s.nodes, flops=s.flops,
        peak_activation_bytes=s.peak_activation_bytes, backend=exe.name, backend_notes=exe.describe(),
        seconds=time.perf_counter() - start,
        memory={"budget_bytes": int(peak_memory_budget), "pareto": pareto_points(ctx)}
        if peak_memory_budget is not None else {},
        quantization=quantization_report(ctx) if quantize is not None else [],
    )
    return CompiledModel(graph, exe, report)


def pass_context(pipeline: str, tvm: bool) -> PassContext:
    """The context ``compile`` runs ``pipeline`` in: for TVM the host target and its kernel timing
    hook, and the default cost model when a pass of the pipeline consults one.

    ``graphopt explain`` uses it too, so it shows the decisions compilation actually makes.
    """
    ctx = tvm_pass_context() if tvm else PassContext()
    ctx.cost_model = _cost_model(pipeline)
    return ctx


def _cost_model(pipeline: str) -> CostPredictor | None:
    """The default cost model when a pass of ``pipeline`` consults one (importing XGBoost takes a
    second or two); None, with a warning that passes fall back to measuring, when it cannot load."""
    if not {p.name for p in parse_pipeline(pipeline)} & COST_MODEL_PASSES:
        return None
    from .costmodel import default_model_or_none

    return default_model_or_none()


def _tune_option(tune: str | float | None) -> str:
    """``tune`` as the ``schedule`` pass spells it; ValueError for anything else."""
    text = DEFAULT_TUNE if tune is None else str(tune)
    parse_tune(text)
    return text


def builds_with_tvm(backend: str) -> bool:
    """True when ``backend`` will build with TVM (``auto`` does when TVM imports)."""
    if backend != "auto":
        return backend == "tvm"
    from .backends.tvm import TVMUnavailableError, require_tvm

    try:
        require_tvm()
    except TVMUnavailableError:
        return False
    return True


def tvm_pass_context() -> PassContext:
    """A pass context with the TVM backend's host target and kernel timing hook (``schedule`` uses both)."""
    from .backends.tvm.measure import TVMKernelMeasurer
    from .backends.tvm.target import host_target

    # One run per repeat: tuning builds dominate, and a median of 5 is steady enough to rank.
    measure = TVMKernelMeasurer(number=1, repeat=5, min_repeat_ms=1)
    return PassContext(target=str(host_target().target), measure=measure)


def load(path: str | Path) -> CompiledModel:
    """Open a ``.gopt`` artifact written by ``CompiledModel.save`` (no recompilation)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("meta.json"))
            text = z.read("graph.gir").decode()
            with np.load(io.BytesIO(z.read("constants.npz")), allow_pickle=False) as npz:
                consts = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, KeyError) as e:
        raise ValueError(f"{path}: not a graphopt artifact ({e})") from None
    if meta.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"{path}: artifact format {meta.get('format')} is not {ARTIFACT_FORMAT}; recompile it")
    graph = parse_ir(text, consts)
    report = CompileReport(**meta["report"])
    return CompiledModel(graph, _load_executable(path, graph, meta["backend"]), report)


def _load_executable(path: Path, graph: Graph, backend: str) -> Executable:
    """The artifact's saved backend build, unpacked into the cache (keyed by content), or a rebuild."""
    with zipfile.ZipFile(path) as z:
        members = [n for n in z.namelist() if n.startswith("backend/")]
        if backend != "tvm" or not members:
            return build(graph, backend)
        digest = hashlib.sha256(b"".join(z.getinfo(n).filename.encode() + str(z.getinfo(n).CRC).encode()
                                         for n in members)).hexdigest()[:16]
        folder = cache_dir() / "artifacts" / digest
        if not (folder / "manifest.json").exists():
            z.extractall(folder.parent / f".{digest}.tmp", members)
            (folder.parent / f".{digest}.tmp" / "backend").rename(folder)
    from .backends.tvm import require_tvm

    require_tvm()
    from .backends.tvm.executable import TVMExecutable

    return TVMExecutable.load(folder, graph)


def _to_numpy(x: Any) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _describe(model: Any) -> str:
    if isinstance(model, (str, Path)):
        return str(model)
    if isinstance(model, Graph):
        return f"graph @{model.name}"
    return type(model).__name__
