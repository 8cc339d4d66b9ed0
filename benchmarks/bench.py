"""The peer benchmark: graphopt against torch eager, torch.compile (inductor), onnxruntime and TVM's
own Relax build, measured by the protocol of DESIGN §7.

    graphopt bench squeezenet1_1 mobilenet_v2 --runs 20 --json out.json --plot out.png
    python -m graphopt.benchmarks.bench all --systems graphopt,onnxruntime --backend tvm
    graphopt bench model.onnx                  # an ONNX file: the torch systems are skipped
    graphopt bench bert_base:layers=2,seq=64   # zoo builder options after a colon

Protocol, per model: build it (batch ``--batch``, seeded inputs); compute the reference outputs
(torch eager; for an ONNX file, onnxruntime with graph optimizations off); prepare every system
(compile time recorded, never counted as latency; a failure becomes that cell's error and the run
goes on); warm up each system, checking its first output against the reference (rtol 1e-3,
atol 1e-4: a mismatch marks the cell WRONG and keeps it out of every speed claim); then time
``--runs`` calls of each system, interleaved in rounds so drift in the machine's state hits every
system alike (in each round every system in turn makes one untimed call, so no other system's
thread pool still holds the cores, then 5 timed ones; the order rotates each round); check the
last timed output as well. Every system runs with the same thread count (torch, onnxruntime
intra-op, TVM ``num-cores`` and ``TVM_NUM_THREADS``). The report gives median, p10 and p90
latency, speedup against torch eager, achieved GFLOP/s (FLOPs from graphopt's IR summary of the
imported model) and its share of the measured GEMM peak, prepare seconds and the largest relative
output error; a geomean row per system over the models on which every system succeeded; the
machine's peaks (``peak.py``); and the load average before the run, since other processes on the
cores make OpenMP-based systems (torch) stall far more than the others.

The exit status is 1 when any output is WRONG, so CI can run it; an error cell is not a failure
of the benchmark (a peer may not support a model) and is reported in its cell.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .peak import GEMM_SIZE, Peaks, measure_peaks
from .peers import (
    SYSTEMS,
    ModelSpec,
    PeerOptions,
    Prepared,
    SkipSystem,
    System,
    as_numpy_list,
    ort_session,
    select_systems,
)

OK, WRONG, ERROR, SKIPPED = "ok", "WRONG", "error", "skipped"
BASELINE = "torch-eager"
MIN_RUNS = 20  # DESIGN §7: every speed claim is a median of at least 20 runs
ROUND_RUNS = 5  # timed runs of one system in a row before the next system's turn
Log = Callable[[str], None]


def default_threads() -> int:
    """The cores this process may run on (the benchmark's default thread count)."""
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class BenchConfig:
    """How to measure; the defaults are the DESIGN §7 protocol."""

    runs: int = MIN_RUNS
    warmup: int = 3
    threads: int = field(default_factory=default_threads)
    batch: int = 1
    backend: str = "auto"
    rtol: float = 1e-3
    atol: float = 1e-4
    gemm_size: int = GEMM_SIZE


@dataclass
class Cell:
    """One system on one model. Times are in ms; ``speedup`` is torch eager's median over ours."""

    model: str
    system: str
    status: str = OK
    reason: str = ""
    detail: str = ""
    prepare_s: float | None = None
    times_ms: list[float] = field(default_factory=list)
    median_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    speedup: float | None = None
    gflops: float | None = None
    peak_fraction: float | None = None
    max_rel_err: float | None = None

    def fail(self, status: str, reason: str) -> None:
        """Mark the cell; an error or skip wins over WRONG (there is nothing left to time)."""
        if self.status == OK or status in (ERROR, SKIPPED):
            self.status, self.reason = status, reason


@dataclass
class ModelRecord:
    """Facts about one benchmarked model."""

    name: str
    flops: int | None
    inputs: list[str]
    reference: str
    notes: list[str] = field(default_factory=list)


@dataclass
class BenchResult:
    """Everything one benchmark run measured; ``to_json`` is the ``--json`` file."""

    config: BenchConfig
    peaks: Peaks
    systems: list[str]
    system_summaries: dict[str, str] = field(default_factory=dict)
    models: list[ModelRecord] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    geomean: dict[str, dict[str, float | None]] = field(default_factory=dict)
    geomean_models: list[str] = field(default_factory=list)
    geomean_systems: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    load_average: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def cell(self, model: str, system: str) -> Cell:
        """The cell of ``system`` on ``model``."""
        return next(c for c in self.cells if c.model == model and c.system == system)

    @property
    def any_wrong(self) -> bool:
        """Whether some system produced outputs that disagree with the reference."""
        return any(c.status == WRONG for c in self.cells)

    def to_json(self) -> dict[str, Any]:
        """A plain dict: config, machine peaks, versions, models, cells and the geomean rows."""
        return {"config": asdict(self.config), "machine": self.peaks.to_json(),
                "versions": self.versions, "systems": self.systems,
                "system_summaries": self.system_summaries,
                "models": [asdict(m) for m in self.models],
                "cells": [asdict(c) for c in self.cells], "geomean": self.geomean,
                "geomean_models": self.geomean_models, "geomean_systems": self.geomean_systems,
                "load_average": self.load_average, "seconds": self.seconds}


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------

class BenchInputError(ValueError):
    """A model argument names no zoo model and no ONNX file, or has bad options."""


def parse_model_arg(arg: str) -> tuple[str, dict[str, int]]:
    """``bert_base:layers=2,seq=64`` -> (``bert_base``, {layers: 2, seq: 64}); paths unchanged."""
    if arg.endswith(".onnx") or ":" not in arg:
        return arg, {}
    name, _, opts = arg.partition(":")
    options = {}
    for item in filter(None, opts.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not value.lstrip("-").isdigit():
            raise BenchInputError(f"bad model option '{item}' in '{arg}' (expected KEY=INT)")
        options[key] = int(value)
    return name, options


def resolve_models(args: Sequence[str]) -> list[str]:
    """Expand ``all``, drop repeats, and check every name is a zoo model (with options its builder
    takes) or an existing .onnx file."""
    import inspect

    from . import zoo

    out: list[str] = []
    for arg in args:
        for item in (list(zoo.MODELS) if arg == "all" else [arg]):
            name, options = parse_model_arg(item)
            if name.endswith(".onnx"):
                if not Path(name).is_file():
                    raise BenchInputError(f"no such ONNX file: {name}")
            elif name not in zoo.MODELS:
                raise BenchInputError(f"unknown model '{name}': give a zoo model "
                                      f"({', '.join(zoo.MODELS)}), an .onnx file, or 'all'")
            else:
                known = inspect.signature(zoo.MODELS[name]).parameters
                unknown = [k for k in options if k not in known]
                if unknown:
                    raise BenchInputError(f"{name} takes no option {', '.join(unknown)} "
                                          f"(it takes: {', '.join(known) or 'none'})")
            if item not in out:
                out.append(item)
    return out


def load_model(arg: str, batch: int, workdir: Path) -> ModelSpec:
    """Build a zoo model (its inputs repeated to ``batch``) or open an ONNX file (seeded inputs)."""
    name, options = parse_model_arg(arg)
    if name.endswith(".onnx"):
        from ..cli import random_inputs
        from ..frontends.onnx import import_onnx

        graph = import_onnx(name)
        # Symbolic dims (a dynamic batch) take the batch size; fixed ones stay as the file says.
        inputs = tuple(random_inputs(graph, seed=0, symbol_size=batch))
        notes = ["ONNX file: torch systems skipped"]
        if batch > 1 and all(isinstance(d, int) for v in graph.inputs for d in v.type.shape):
            notes.append(f"input shapes are fixed in the file: --batch {batch} does not apply")
        return ModelSpec(Path(name).stem, inputs, onnx_path=Path(name), workdir=workdir,
                         notes=notes)
    from . import zoo

    module, tensors = zoo.build(name, **options)
    if batch > 1:
        tensors = tuple(t.repeat(batch, *[1] * (t.dim() - 1)) for t in tensors)
    label = arg.replace(":", "-").replace(",", "-").replace("=", "")
    return ModelSpec(label, tuple(np.ascontiguousarray(t.numpy()) for t in tensors), module=module,
                     workdir=workdir)


def model_flops(spec: ModelSpec) -> tuple[int | None, str]:
    """FLOPs per run from graphopt's IR summary of the imported model, and where they came from."""
    from ..frontends.detect import import_model
    from ..ir.analysis import summarize

    errors = []
    sources: list[tuple[str, Callable[[], Any]]] = [
        ("ONNX import", lambda: import_model(str(spec.onnx())))]
    if spec.module is not None:
        sources.append(("torch import", lambda: import_model(spec.module, spec.torch_inputs())))
    for what, load in sources:
        try:
            return summarize(load()).flops, what
        except Exception as e:  # noqa: BLE001 - either importer may lack an op; the other may not
            errors.append(f"{what}: {one_line(e)}")
    return None, "; ".join(errors)


def reference_outputs(spec: ModelSpec) -> tuple[list[np.ndarray], str]:
    """The outputs every system is checked against, and what produced them."""
    if spec.module is not None:
        import torch

        with torch.inference_mode():
            return as_numpy_list(spec.module.eval()(*spec.torch_inputs())), "torch eager"
    session = ort_session(spec.onnx(), threads=1, optimize=False)
    feed = {i.name: a for i, a in zip(session.get_inputs(), spec.inputs)}
    return list(session.run(None, feed)), "onnxruntime, graph optimizations off"


def compare(got: Sequence[np.ndarray], want: Sequence[np.ndarray], rtol: float,
            atol: float) -> tuple[float, str | None]:
    """Largest relative error (``max|got-want| / max|want|`` per output), and why it is wrong."""
    if len(got) != len(want):
        return math.inf, f"{len(got)} outputs, expected {len(want)}"
    worst, why = 0.0, None
    for i, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64)
        if g.shape != w.shape:
            return math.inf, f"output {i} has shape {list(g.shape)}, expected {list(w.shape)}"
        if not w.size:
            continue
        diff = np.where(np.isnan(g) & np.isnan(w), 0.0, np.abs(g - w))
        # A NaN where the reference has a number is as wrong as it gets.
        scale = max(float(np.abs(w).max()), 1e-30)
        err = math.inf if np.isnan(diff).any() else float(diff.max()) / scale
        worst = max(worst, err)
        if why is None and not np.allclose(g, w, rtol=rtol, atol=atol, equal_nan=True):
            why = (f"output {i} differs from the reference "
                   f"(max rel err {err:.2e}; rtol {rtol:g}, atol {atol:g})")
    return worst, why


def one_line(e: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line, cut at ``limit`` characters."""
    text = f"{type(e).__name__}: {' '.join(str(e).split())}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------

def _check(cell: Cell, outputs: list[np.ndarray], reference: list[np.ndarray],
           config: BenchConfig) -> None:
    err, why = compare(outputs, reference, config.rtol, config.atol)
    cell.max_rel_err = err if cell.max_rel_err is None else max(cell.max_rel_err, err)
    if why:
        cell.fail(WRONG, why)


def _prepare_all(spec: ModelSpec, systems: Sequence[System], cells: dict[str, Cell],
                 config: BenchConfig, log: Log) -> dict[str, Callable[[], list[np.ndarray]]]:
    opts = PeerOptions(threads=config.threads, backend=config.backend)
    runners = {}
    for system in systems:
        cell = cells[system.name]
        log(f"{spec.name} · {system.name}: prepare")
        start = time.perf_counter()
        try:
            prepared = system.prepare(spec, opts)
        except SkipSystem as e:
            cell.fail(SKIPPED, str(e))
            log(f"{spec.name} · {system.name}: skipped ({e})")
            continue
        except Exception as e:  # noqa: BLE001 - a peer's failure is its cell's, not the run's
            cell.fail(ERROR, f"prepare: {one_line(e)}")
            log(f"{spec.name} · {system.name}: prepare failed: {one_line(e, 160)}")
            continue
        cell.prepare_s = time.perf_counter() - start
        if isinstance(prepared, Prepared):
            runners[system.name], cell.detail = prepared.run, prepared.detail
        else:
            runners[system.name] = prepared
        log(f"{spec.name} · {system.name}: prepared in {cell.prepare_s:.1f} s")
    return runners


def _run_guarded(name: str, run: Callable[[], list[np.ndarray]], cell: Cell,
                 runners: dict[str, Any], log: Log) -> list[np.ndarray] | None:
    """Call ``run``; on an exception mark the cell, drop the system, and return None."""
    try:
        return run()
    except Exception as e:  # noqa: BLE001 - a run that fails is that cell's error; the others go on
        cell.fail(ERROR, f"run: {one_line(e)}")
        log(f"{cell.model} · {name}: run failed: {one_line(e, 160)}")
        del runners[name]
        return None


def _measure(spec: ModelSpec, runners: dict[str, Callable[[], list[np.ndarray]]],
             cells: dict[str, Cell], reference: list[np.ndarray], config: BenchConfig,
             log: Log) -> None:
    for name in list(runners):
        log(f"{spec.name} · {name}: warm-up ({max(config.warmup, 1)} runs, first output checked)")
        first = _run_guarded(name, runners[name], cells[name], runners, log)
        if first is None:
            continue
        _check(cells[name], first, reference, config)
        for _ in range(config.warmup - 1):
            if _run_guarded(name, runners[name], cells[name], runners, log) is None:
                break
    order = list(runners)
    log(f"{spec.name}: timing {', '.join(order) or 'nothing'} x {config.runs} runs, "
        f"interleaved in rounds of {ROUND_RUNS}")
    last: dict[str, list[np.ndarray]] = {}
    for r, first_run in enumerate(range(0, config.runs, ROUND_RUNS)):
        k = r % len(order) if order else 0
        for name in order[k:] + order[:k]:
            # The previous system's thread pool (OpenMP, onnxruntime and TVM workers spin after a
            # call) may still hold the cores: this system's first call after a switch is untimed.
            if name not in runners or _run_guarded(name, runners[name], cells[name], runners,
                                                   log) is None:
                continue
            for _ in range(min(ROUND_RUNS, config.runs - first_run)):
                start = time.perf_counter()
                out = _run_guarded(name, runners[name], cells[name], runners, log)
                elapsed = time.perf_counter() - start
                if out is None:
                    break
                cells[name].times_ms.append(elapsed * 1e3)
                last[name] = out
    for name in runners:
        if name in last:
            _check(cells[name], last[name], reference, config)


def _summarize_cells(cells: dict[str, Cell], flops: int | None, peaks: Peaks) -> None:
    for cell in cells.values():
        if cell.status in (OK, WRONG) and cell.times_ms:
            cell.median_ms = float(np.median(cell.times_ms))
            cell.p10_ms, cell.p90_ms = (float(v) for v in np.percentile(cell.times_ms, [10, 90]))
    base = cells.get(BASELINE)
    for cell in cells.values():
        if cell.status != OK or cell.median_ms is None:
            continue  # WRONG cells keep their times for the record but make no speed claims
        if base is not None and base.status == OK and base.median_ms:
            cell.speedup = base.median_ms / cell.median_ms
        if flops:
            cell.gflops = flops / (cell.median_ms * 1e-3) / 1e9
            if peaks.measured_gflops:
                cell.peak_fraction = cell.gflops / peaks.measured_gflops


def bench_model(spec: ModelSpec, systems: Sequence[System], config: BenchConfig, peaks: Peaks,
                log: Log) -> tuple[ModelRecord, list[Cell]]:
    """Prepare, check and time every system on one model."""
    cells = {s.name: Cell(spec.name, s.name) for s in systems}
    log(f"{spec.name}: reference outputs")
    inputs = [f"{a.dtype}{list(a.shape)}" for a in spec.inputs]
    try:
        reference, ref_name = reference_outputs(spec)
    except Exception as e:  # noqa: BLE001 - nothing can be checked without it: no cell may claim
        for cell in cells.values():
            cell.fail(ERROR, f"reference failed: {one_line(e)}")
        return ModelRecord(spec.name, None, inputs, "none", [f"reference failed: {one_line(e)}"]), \
            list(cells.values())
    log(f"{spec.name}: FLOPs from the graphopt IR")
    flops, flops_source = model_flops(spec)
    notes = list(spec.notes) + [f"FLOPs from {flops_source}" if flops is not None
                                else f"FLOPs unknown ({flops_source})"]
    runners = _prepare_all(spec, systems, cells, config, log)
    _measure(spec, runners, cells, reference, config, log)
    _summarize_cells(cells, flops, peaks)
    return ModelRecord(spec.name, flops, inputs, ref_name, notes), list(cells.values())


def geomeans(result: BenchResult) -> None:
    """Fill the geomean rows: one common model set, so every system's geomean is comparable.

    Systems skipped on some model (torch systems on an ONNX file) are left out of the geomean;
    the models are those on which every remaining system's cell is ok.
    """
    systems = [s for s in result.systems
               if not any(result.cell(m.name, s).status == SKIPPED for m in result.models)]
    models = [m.name for m in result.models
              if systems and all(result.cell(m.name, s).status == OK for s in systems)]
    result.geomean_systems, result.geomean_models = systems, models
    result.geomean = {}
    for s in result.systems:
        cells = [result.cell(m, s) for m in models] if s in systems else []
        result.geomean[s] = {"median_ms": _geomean([c.median_ms for c in cells]),
                             "speedup": _geomean([c.speedup for c in cells]),
                             "gflops": _geomean([c.gflops for c in cells])}


def _geomean(values: Sequence[float | None]) -> float | None:
    if not values or any(v is None or v <= 0 for v in values):
        return None
    return math.exp(sum(math.log(v) for v in values if v is not None) / len(values))


class _Threads:
    """Every system's thread count, set for the duration of a run and restored after."""

    ENV = ("TVM_NUM_THREADS", "OMP_NUM_THREADS")

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def __enter__(self) -> None:
        import torch

        self.torch_threads = torch.get_num_threads()
        self.env = {k: os.environ.get(k) for k in self.ENV}
        torch.set_num_threads(self.threads)
        # TVM's runtime reads TVM_NUM_THREADS when its thread pool starts (the first parallel
        # kernel), so setting it before any system runs sizes that pool for graphopt and tvm-relax.
        for k in self.ENV:
            os.environ[k] = str(self.threads)

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self.torch_threads)
        for k, v in self.env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def versions() -> dict[str, str]:
    """Versions of everything measured, for the report."""
    out = {"python": platform.python_version()}
    for dist in ("graphopt", "torch", "onnxruntime", "apache-tvm", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def stderr_log(message: str) -> None:
    """Progress line on stderr."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run_bench(models: Sequence[str] | Sequence[ModelSpec] | Iterator[ModelSpec],
              systems: Sequence[System], config: BenchConfig = BenchConfig(),
              log: Log = stderr_log, peaks: Peaks | None = None) -> BenchResult:
    """Benchmark ``systems`` on ``models`` (zoo names, .onnx paths, or ready ModelSpecs).

    Models are built one at a time and released after their row, so ``all`` fits in memory.
    """
    start = time.perf_counter()
    # Other processes on the cores stall spinning thread pools (OpenMP, ORT), so the 1-minute load
    # average before this run starts tells a reader whether to trust the timings.
    load_start = os.getloadavg()[0]
    with _Threads(config.threads), tempfile.TemporaryDirectory(prefix="graphopt-bench-") as tmp:
        if peaks is None:
            log(f"machine peaks: {config.gemm_size}^3 fp32 matmul on {config.threads} threads")
            peaks = measure_peaks(config.threads, config.gemm_size)
        result = BenchResult(config, peaks, [s.name for s in systems], versions=versions(),
                             system_summaries={s.name: s.summary for s in systems if s.summary})
        result.load_average["start"] = load_start
        for item in models:
            spec = item if isinstance(item, ModelSpec) else None
            if spec is None:
                log(f"{item}: build")
                spec = load_model(str(item), config.batch, Path(tmp))
            elif spec.workdir is None:
                spec.workdir = Path(tmp)
            record, cells = bench_model(spec, systems, config, peaks, log)
            result.models.append(record)
            result.cells += cells
            del spec, item
            _release_memory()
    geomeans(result)
    result.load_average["end"] = os.getloadavg()[0]
    result.seconds = time.perf_counter() - start
    return result


def _release_memory() -> None:
    """Drop compiled artefacts of the finished model before the next one is built."""
    gc.collect()
    try:
        import torch._dynamo

        torch._dynamo.reset()
    except Exception:  # noqa: BLE001, S110 - torch without dynamo: nothing cached there to drop
        pass


# ---------------------------------------------------------------------------------------------
# Command line (``graphopt bench`` and ``python -m graphopt.benchmarks.bench``)
# ---------------------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``bench`` options (shared by ``graphopt bench`` and ``python -m``)."""
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="zoo model (e.g. resnet50, bert_base, or bert_base:layers=2,seq=64), "
                        ".onnx file, or 'all'")
    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help=f"comma-separated systems to compare (default: {','.join(SYSTEMS)})")
    p.add_argument("--backend", default="auto", help="graphopt backend: auto, tvm or reference")
    p.add_argument("--runs", type=int, default=MIN_RUNS,
                   help=f"timed runs per system (default {MIN_RUNS})")
    p.add_argument("--warmup", type=int, default=3, help="warm-up runs per system (default 3)")
    p.add_argument("--threads", type=int, default=default_threads(),
                   help="threads for every system (default: the cores this process may use)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="write the results as JSON to FILE; without FILE print the JSON on stdout "
                        "instead of the table (put it after the models)")
    p.add_argument("--plot", metavar="FILE.png", help="write a bar chart of speedup vs torch eager")
    p.add_argument("--gemm-size", type=int, default=GEMM_SIZE,
                   help=f"N of the N^3 matmul that measures the GEMM peak (default {GEMM_SIZE})")


def run_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark the parsed arguments describe; 1 if any output is WRONG, 2 on bad input."""
    from .report import to_markdown, write_json, write_plot

    try:
        systems = select_systems([s.strip() for s in args.systems.split(",") if s.strip()])
        models = resolve_models(args.models)
        if min(args.runs, args.threads, args.batch) < 1 or args.warmup < 0:
            raise BenchInputError("--runs, --threads and --batch must be at least 1, "
                                  "--warmup at least 0")
    except ValueError as e:
        print(f"graphopt bench: error: {e}", file=sys.stderr)
        return 2
    if args.runs < MIN_RUNS:
        stderr_log(f"note: {args.runs} runs is below the {MIN_RUNS} that DESIGN §7 asks for "
                   "speed claims")
    config = BenchConfig(runs=args.runs, warmup=args.warmup, threads=args.threads, batch=args.batch,
                         backend=args.backend, gemm_size=args.gemm_size)
    result = run_bench(models, systems, config)
    if args.json and args.json != "-":
        write_json(result, args.json)
        stderr_log(f"wrote {args.json}")
    if args.plot:
        write_plot(result, args.plot)
        stderr_log(f"wrote {args.plot}")
    if args.json == "-":
        print(json.dumps(result.to_json(), indent=1, default=str))
    else:
        print(to_markdown(result))
    return 1 if result.any_wrong else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m graphopt.benchmarks.bench``: same as ``graphopt bench``."""
    p = argparse.ArgumentParser(prog="python -m graphopt.benchmarks.bench",
                                description=(__doc__ or "").splitlines()[0])
    add_arguments(p)
    return run_from_args(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
