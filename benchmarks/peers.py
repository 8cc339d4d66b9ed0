"""The systems the benchmark compares, one small adapter each: ``prepare(spec, opts) -> Prepared``.

A ``Runner`` (``Prepared.run``) takes no arguments (it holds the model's inputs, already in its
system's own format, so converting inputs is never timed) and returns the outputs as numpy
arrays. Everything a system does before its first timed call (compiling, building, exporting, the
JIT's first call) belongs in ``prepare`` and is reported as its prepare time, never as latency.

| system | what runs |
|---|---|
| graphopt | ``graphopt.compile(model, inputs, backend=...)`` |
| torch-eager | the module in eval mode under ``torch.inference_mode`` |
| torch-inductor | ``torch.compile(module)`` (default mode); compiled by a first call in prepare |
| onnxruntime | ORT_ENABLE_ALL, CPUExecutionProvider, intra-op threads = the thread count |
| tvm-relax | ONNX -> ``relax.frontend.onnx.from_onnx`` -> ``tvm.compile`` with TVM's default
  Relax pipeline for ``llvm`` (host ``mcpu``, ``num-cores`` = the thread count) -> Relax VM |
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn

Runner = Callable[[], list[np.ndarray]]


@dataclass(frozen=True)
class Prepared:
    """A system ready to run one model, and a short note on how it was built (for the report)."""

    run: Runner
    detail: str = ""


@dataclass(frozen=True)
class PeerOptions:
    """Settings every adapter honours: the thread count and graphopt's backend."""

    threads: int = 1
    backend: str = "auto"


@dataclass
class ModelSpec:
    """One model to benchmark: numpy inputs, the torch module (None for an ONNX file), its ONNX.

    ``onnx`` exports the module on first use (into ``workdir``) so systems that need no ONNX never
    pay for the export.
    """

    name: str
    inputs: tuple[np.ndarray, ...]
    module: nn.Module | None = None
    onnx_path: Path | None = None
    workdir: Path | None = None
    notes: list[str] = field(default_factory=list)

    def torch_inputs(self) -> tuple[Any, ...]:
        """The inputs as torch tensors (sharing memory with the numpy arrays)."""
        import torch

        return tuple(torch.from_numpy(a) for a in self.inputs)

    def onnx(self) -> Path:
        """The model as an ONNX file, exported from the module the first time it is asked for."""
        if self.onnx_path is None:
            if self.module is None or self.workdir is None:
                raise ValueError(f"{self.name}: no ONNX file and no module to export one from")
            from .onnx_export import export_onnx

            path = self.workdir / f"{self.name}.onnx"
            export_onnx(self.module, self.torch_inputs(), path)
            self.onnx_path = path
        return self.onnx_path

    def onnx_input_names(self) -> list[str]:
        """The ONNX graph's input names in order (initializers listed as inputs left out)."""
        import onnx

        model = onnx.load(str(self.onnx()), load_external_data=False)
        inits = {i.name for i in model.graph.initializer}
        return [i.name for i in model.graph.input if i.name not in inits]


class SkipSystem(Exception):
    """The system does not apply to this model (e.g. torch systems on an ONNX file)."""


@dataclass(frozen=True)
class System:
    """A named peer: ``prepare(spec, options)`` returns Prepared (or a bare Runner) or raises."""

    name: str
    prepare: Callable[[ModelSpec, PeerOptions], Prepared | Runner]
    summary: str = ""


def as_numpy_list(out: Any) -> list[np.ndarray]:
    """Flatten a model's output (tensor, array, TVM tensor, or nested tuple/list) into arrays."""
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in as_numpy_list(o)]
    if isinstance(out, np.ndarray):
        return [out]
    if hasattr(out, "detach"):  # torch.Tensor
        return [out.detach().cpu().numpy()]
    if hasattr(out, "numpy"):  # tvm.runtime.Tensor
        return [out.numpy()]
    if hasattr(out, "__len__") and hasattr(out, "__getitem__"):  # tvm Array of results
        return [a for i in range(len(out)) for a in as_numpy_list(out[i])]
    return [np.asarray(out)]


def _module(spec: ModelSpec) -> nn.Module:
    if spec.module is None:
        raise SkipSystem("needs a torch module; the model was given as ONNX")
    return spec.module.eval()


def prepare_graphopt(spec: ModelSpec, opts: PeerOptions) -> Prepared:
    """graphopt.compile on the module (or the ONNX file) with the chosen backend."""
    import graphopt

    if spec.module is not None:
        compiled = graphopt.compile(spec.module, spec.torch_inputs(), backend=opts.backend)
    else:
        compiled = graphopt.compile(str(spec.onnx()), backend=opts.backend)
    inputs = spec.inputs
    report = compiled.report()
    # The backend's own lines say where each part ran; fallbacks must show up in the report.
    detail = "; ".join([f"backend {report.backend}", *report.backend_notes])
    return Prepared(lambda: as_numpy_list(compiled(*inputs)), detail)


def prepare_torch_eager(spec: ModelSpec, opts: PeerOptions) -> Prepared:
    """The module itself, in eval mode under inference_mode."""
    import torch

    module, inputs = _module(spec), spec.torch_inputs()

    def run() -> list[np.ndarray]:
        with torch.inference_mode():
            return as_numpy_list(module(*inputs))
    return Prepared(run)


def prepare_torch_inductor(spec: ModelSpec, opts: PeerOptions) -> Prepared:
    """``torch.compile(module)`` in its default mode; the first (compiling) call happens here."""
    import torch

    module, inputs = _module(spec), spec.torch_inputs()
    torch._dynamo.reset()  # a fresh cache per model, so earlier models never count toward limits
    compiled = torch.compile(module)

    def run() -> list[np.ndarray]:
        with torch.inference_mode():
            return as_numpy_list(compiled(*inputs))
    run()
    return Prepared(run, "prepare includes the compiling first call (inductor caches on disk)")


def ort_session(path: Path, threads: int, optimize: bool = True) -> Any:
    """An onnxruntime CPU session: all graph optimizations (or none), ``threads`` intra-op."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # warnings about unused initializers are noise here
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def prepare_onnxruntime(spec: ModelSpec, opts: PeerOptions) -> Prepared:
    """onnxruntime with ORT_ENABLE_ALL on the model's ONNX export."""
    import onnxruntime as ort

    session = ort_session(spec.onnx(), opts.threads)
    feed = {i.name: a for i, a in zip(session.get_inputs(), spec.inputs)}
    return Prepared(lambda: list(session.run(None, feed)), f"onnxruntime {ort.__version__}")


def tvm_host_target(threads: int) -> Any:
    """TVM's llvm target for this CPU: ``mcpu`` detected by LLVM, ``num-cores`` = ``threads``."""
    import tvm

    mcpu = tvm.target.codegen.llvm_get_system_cpu()
    return tvm.target.Target({"kind": "llvm", "num-cores": threads, "mcpu": mcpu})


def prepare_tvm_relax(spec: ModelSpec, opts: PeerOptions) -> Prepared:
    """TVM's own path: ONNX importer, default Relax pipeline for the host, Relax VM."""
    import onnx
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(onnx.load(str(spec.onnx())), keep_params_in_input=False)
    target = tvm_host_target(opts.threads)
    executable = tvm.compile(mod, target, relax_pipeline=relax.get_default_pipeline(target))
    dev = tvm.cpu()
    vm = relax.VirtualMachine(executable, dev)
    inputs = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in spec.inputs]
    main = vm["main"]
    return Prepared(lambda: as_numpy_list(main(*inputs)), f"tvm {tvm.__version__}, target {target}")


SYSTEMS: dict[str, System] = {s.name: s for s in (
    System("graphopt", prepare_graphopt, "graphopt.compile(module, inputs, backend=...)"),
    System("torch-eager", prepare_torch_eager, "the module in eval mode under inference_mode"),
    System("torch-inductor", prepare_torch_inductor,
           "torch.compile(module), default mode; compile time in prepare"),
    System("onnxruntime", prepare_onnxruntime,
           "ORT_ENABLE_ALL, CPUExecutionProvider, intra-op threads = thread count"),
    System("tvm-relax", prepare_tvm_relax,
           "ONNX -> relax from_onnx -> tvm.compile with relax.get_default_pipeline (untuned: "
           "the default CPU pipeline applies no schedules) -> Relax VM"),
)}
"""Every built-in system by name, in the order reports list them."""


def select_systems(names: Sequence[str]) -> list[System]:
    """The systems named (comma-separated names already split), in the order given."""
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system(s) {', '.join(unknown)} "
                         f"(available: {', '.join(SYSTEMS)})")
    return [SYSTEMS[n] for n in names]
