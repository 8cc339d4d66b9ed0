"""int8 benchmark: graphopt fp32 / int8 / auto against onnxruntime fp32 / quantize_dynamic /
quantize_static, on the same models, in the same process.

    python -m graphopt.benchmarks.quant_bench resnet50:image_size=224 bert_base:layers=4,seq=128
    python -m graphopt.benchmarks.quant_bench bert_base:layers=4 --systems graphopt-fp32,graphopt-int8 --json out.json

Protocol (DESIGN §7): batch 1, the same thread count for every system, warm-up, then ``--runs``
timed calls per system interleaved in rounds of 5 (each round starts with an untimed call, the
order rotating), median with p10 / p90. Every system's output is compared with torch eager fp32:
cosine similarity and relative error are reported, never hidden. Calibration uses ``--samples``
fresh inputs of the zoo model (other seeds than the timed input), the same for graphopt and
onnxruntime's static quantization. Speedups are against graphopt fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..passes.quant import INTEGER_KERNELS
from .bench import load_model, parse_model_arg
from .peers import ModelSpec, as_numpy_list, ort_session

ROUND = 5
BASE = "graphopt-fp32"
Runner = Callable[[], list[np.ndarray]]


@dataclass
class Row:
    """One system on one model."""

    model: str
    system: str
    median_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    speedup: float | None = None  # graphopt fp32 median / this median
    cosine: float | None = None  # of the outputs with torch fp32
    rel_err: float | None = None
    prepare_s: float | None = None
    note: str = ""
    times_ms: list[float] = field(default_factory=list)


def calibration_samples(arg: str, n: int) -> list[tuple[np.ndarray, ...]]:
    """``n`` inputs of the zoo model ``arg`` drawn with seeds other than the benchmark input's."""
    from . import zoo

    name, options = parse_model_arg(arg)
    return [tuple(t.numpy() for t in zoo.sample_inputs(name, seed=100 + i, **options)) for i in range(n)]


def _graphopt(spec: ModelSpec, samples: list[tuple[np.ndarray, ...]], **options: Any) -> tuple[Runner, str]:
    import graphopt

    compiled = graphopt.compile(spec.module, spec.torch_inputs(), backend="tvm", **options)
    counts = compiled.graph.op_counts()
    falls = [n for n in compiled.report().backend_notes if "FALLBACK" in n]
    note = f"int8 layers {sum(counts.get(op, 0) for op in INTEGER_KERNELS)}"
    if falls:
        note += f"; {len(falls)} fallbacks"
    for row in compiled.report().quantization:
        if row["layer"] == "speed check":  # auto: the plan against all-f32 as the pass predicted it
            verdict = "plan kept" if row["quantized"] else "fell back to all-f32"
            note += f"; speed check: {verdict}, predicted {100 * float(row['gain']):.1f}% faster"
        if row["layer"] == "end-to-end check":  # auto: both models timed whole at compile time
            verdict = "plan kept" if row["quantized"] else "fell back to all-f32"
            note += f"; end to end: {verdict} ({float(row['mixed_ms']):.1f} vs {float(row['f32_ms']):.1f} ms)"
    inputs = spec.inputs
    return (lambda: as_numpy_list(compiled(*inputs))), note


def _ort(path: Path, spec: ModelSpec, threads: int) -> Runner:
    session = ort_session(path, threads)
    feed = {i.name: a for i, a in zip(session.get_inputs(), spec.inputs)}
    return lambda: list(session.run(None, feed))


class _Reader:
    """onnxruntime's calibration data reader over our samples."""

    def __init__(self, names: list[str], samples: list[tuple[np.ndarray, ...]]) -> None:
        self.feeds = iter([dict(zip(names, s)) for s in samples])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def _preprocessed(spec: ModelSpec, workdir: Path) -> Path:
    """onnxruntime's recommended pre-processing (shape inference, optimization) before quantizing."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = workdir / f"{spec.name}.pre.onnx"
    try:
        quant_pre_process(str(spec.onnx()), str(out))
        return out
    except Exception:  # noqa: BLE001 - it is optional; quantizing the plain export still works
        return spec.onnx()


def prepare(system: str, spec: ModelSpec, samples: list[tuple[np.ndarray, ...]], threads: int,
            workdir: Path) -> tuple[Runner, str]:
    """A runner for ``system`` on ``spec`` and a note on how it was built."""
    if system == "graphopt-fp32":
        return _graphopt(spec, samples)
    if system == "graphopt-int8":
        return _graphopt(spec, samples, quantize="int8", calibration=samples)
    if system == "graphopt-auto":
        return _graphopt(spec, samples, quantize="auto", calibration=samples)
    if system == "ort-fp32":
        return _ort(spec.onnx(), spec, threads), "ORT_ENABLE_ALL"
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    source = _preprocessed(spec, workdir)
    out = workdir / f"{spec.name}.{system}.onnx"
    if system == "ort-dynamic":
        quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8)
        return _ort(out, spec, threads), "quantize_dynamic, QInt8 weights"
    if system == "ort-static":
        reader = _Reader(spec.onnx_input_names(), samples)
        quantize_static(str(source), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,  # type: ignore[arg-type]
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return _ort(out, spec, threads), "quantize_static QDQ, per-channel QInt8 weights, QUInt8 activations"
    raise ValueError(f"unknown system '{system}'")


SYSTEMS = ("graphopt-fp32", "graphopt-int8", "graphopt-auto", "ort-fp32", "ort-dynamic", "ort-static")


def _compare(got: list[np.ndarray], want: list[np.ndarray]) -> tuple[float, float]:
    g = np.concatenate([a.astype(np.float64).ravel() for a in got])
    w = np.concatenate([a.astype(np.float64).ravel() for a in want])
    cos = float(g @ w / max(np.linalg.norm(g) * np.linalg.norm(w), 1e-300))
    return cos, float(np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-300))


def bench_one(arg: str, systems: Sequence[str], runs: int, threads: int, n_samples: int,
              log: Callable[[str], None]) -> list[Row]:
    """Prepare, check and time every system on one model."""
    import torch

    workdir = Path(tempfile.mkdtemp(prefix="quant_bench_"))
    spec = load_model(arg, 1, workdir)
    with torch.inference_mode():
        reference = as_numpy_list(spec.module.eval()(*spec.torch_inputs()))  # type: ignore[union-attr]
    samples = calibration_samples(arg, n_samples)
    rows = {s: Row(spec.name, s) for s in systems}
    runners: dict[str, Runner] = {}
    for s in systems:
        log(f"{spec.name} · {s}: prepare")
        start = time.perf_counter()
        try:
            runners[s], rows[s].note = prepare(s, spec, samples, threads, workdir)
        except Exception as e:  # noqa: BLE001 - one system failing is that row's result
            rows[s].note = f"prepare failed: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
            log(f"{spec.name} · {s}: {rows[s].note}")
            continue
        rows[s].prepare_s = time.perf_counter() - start
        for _ in range(3):
            out = runners[s]()
        rows[s].cosine, rows[s].rel_err = _compare(out, reference)
    order = list(runners)
    for r, first in enumerate(range(0, runs, ROUND)):
        k = r % max(len(order), 1)
        for s in order[k:] + order[:k]:
            runners[s]()  # untimed: the previous system's threads may still hold the cores
            for _ in range(min(ROUND, runs - first)):
                start = time.perf_counter()
                runners[s]()
                rows[s].times_ms.append((time.perf_counter() - start) * 1e3)
    for row in rows.values():
        if row.times_ms:
            row.median_ms = float(np.median(row.times_ms))
            row.p10_ms, row.p90_ms = (float(v) for v in np.percentile(row.times_ms, [10, 90]))
    base = rows.get(BASE)
    for row in rows.values():
        if base is not None and base.median_ms and row.median_ms:
            row.speedup = base.median_ms / row.median_ms
    return list(rows.values())


def table(rows: Sequence[Row]) -> str:
    """The results as a text table."""
    head = f"{'model':<28} {'system':<14} {'median ms':>10} {'p10':>8} {'p90':>8} {'vs fp32':>8} {'cosine':>9} " \
           f"{'rel err':>8}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        def num(v: float | None, fmt: str) -> str:
            return format(v, fmt) if v is not None else "-"

        lines.append(f"{r.model:<28} {r.system:<14} {num(r.median_ms, '10.2f')} {num(r.p10_ms, '8.2f')} "
                     f"{num(r.p90_ms, '8.2f')} {num(r.speedup, '7.2f') + 'x' if r.speedup else '-':>8} "
                     f"{num(r.cosine, '9.5f')} {num(r.rel_err, '8.4f')}  {r.note}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m graphopt.benchmarks.quant_bench", description=(__doc__ or "").split("\n")[0])
    p.add_argument("models", nargs="+", help="zoo models with options, e.g. resnet50:image_size=224 bert_base:layers=4")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated (default: {','.join(SYSTEMS)})")
    p.add_argument("--runs", type=int, default=20, help="timed runs per system (at least 20 for claims)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="threads for every system")
    p.add_argument("--samples", type=int, default=8, help="calibration samples")
    p.add_argument("--json", metavar="FILE", help="also write the rows (with every timing) as JSON")
    args = p.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown systems {sorted(unknown)} (known: {', '.join(SYSTEMS)})")
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    rows: list[Row] = []
    load = os.getloadavg()
    for model in args.models:
        rows += bench_one(model, systems, args.runs, args.threads, args.samples,
                          lambda m: print(m, file=sys.stderr, flush=True))
    print(f"threads {args.threads}, {args.runs} runs, load average before {load[0]:.2f}")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "runs": args.runs, "load_before": load,
                                               "rows": [asdict(r) for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
