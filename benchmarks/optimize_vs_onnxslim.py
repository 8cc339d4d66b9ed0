"""graphopt's ONNX optimizer against onnxslim on the model zoo: node counts and numerical agreement.

    python -m graphopt.benchmarks.optimize_vs_onnxslim                 # every zoo model
    python -m graphopt.benchmarks.optimize_vs_onnxslim resnet50 bert_base --json out.json

For each model: export it to ONNX (cached in ``--cache``), run ``graphopt optimize`` (the CLI,
in-process) and ``onnxslim.slim`` on the same file, count the nodes of all three, run all three in
onnxruntime on the same random inputs and report the largest relative error against the original;
then run ``graphopt.compile(path)`` (the reference interpreter: slow on big models, timed) against
the original's onnxruntime output. A model that fails at any step gets its error in its row and the
run goes on. The relative error of an output is ``max|got - want| / max|want|``; a model's is the
worst over its outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from . import zoo

DEFAULT_CACHE = "~/.cache/graphopt/zoo"
DEFAULT_RTOL = 1e-3
ORT_MAX_IR_VERSION = 10  # onnxruntime 1.31 rejects onnx 1.23's default IR version 14
TIMED_STEPS = ("export", "graphopt optimize", "onnxslim", "ort original", "compile.build",
               "compile.run")

T = TypeVar("T")


@dataclass
class Row:
    """One model's results; ``None`` where a step failed or did not run."""

    model: str
    nodes_original: int | None = None
    nodes_graphopt: int | None = None
    nodes_onnxslim: int | None = None
    err_graphopt_ort: float | None = None
    err_onnxslim_ort: float | None = None
    err_graphopt_compile: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    rtol: float = DEFAULT_RTOL
    compiled: bool = True

    @property
    def ok(self) -> bool:
        """Every step ran and graphopt's outputs agree with the original's within ``rtol``."""
        errs = [self.err_graphopt_ort] + ([self.err_graphopt_compile] if self.compiled else [])
        return not self.errors and all(e is not None and e <= self.rtol for e in errs)

    def to_json(self) -> dict[str, Any]:
        """A plain dict with ``ok`` included."""
        return {**asdict(self), "ok": self.ok}


class StepError(Exception):
    """A benchmark step failed; the message is what goes in the table."""


def _describe_exception(e: BaseException) -> str:
    """``Type: message`` and the innermost graphopt frame outside benchmarks/, to point at code."""
    if isinstance(e, StepError):
        return str(e)
    import graphopt

    root = Path(graphopt.__file__).resolve().parent
    where = ""
    for frame in reversed(traceback.extract_tb(e.__traceback__)):
        path = Path(frame.filename).resolve()
        if path.is_relative_to(root) and not path.is_relative_to(root / "benchmarks"):
            where = f" [at {path.relative_to(root)}:{frame.lineno}]"
            break
    return f"{type(e).__name__}: {' '.join(str(e).split())[:400]}{where}"


def _step(row: Row, name: str, fn: Callable[[], T]) -> T | None:
    """Run one step, timing it; on failure record the error under ``name`` and return None."""
    start = time.perf_counter()
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - a benchmark reports failures, it does not stop at them
        row.errors[name] = _describe_exception(e)
        print(f"  {row.model}: {name} failed: {row.errors[name]}", file=sys.stderr, flush=True)
        return None
    finally:
        row.seconds[name] = round(time.perf_counter() - start, 3)


def rel_error(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> float:
    """Worst ``max|got - want| / max|want|`` over the outputs (compared by position)."""
    if len(got) != len(want):
        raise StepError(f"{len(got)} outputs, the original has {len(want)}")
    worst = 0.0
    for i, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape:
            raise StepError(f"output {i} has shape {list(g.shape)}, the original {list(w.shape)}")
        if not g.size:
            continue
        diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
        if not np.all(np.isfinite(diff)):
            return float("inf")
        worst = max(worst, float(diff.max()) / max(float(np.abs(w).max()), 1e-30))
    return worst


def _node_count(path: Path) -> int:
    import onnx

    return len(onnx.load(str(path)).graph.node)


def _graphopt_optimize(src: Path, dst: Path, passes: str | None) -> Path:
    """``graphopt optimize SRC -o DST`` through the CLI entry point, in this process."""
    from graphopt import cli

    # --debug: an internal error propagates with its traceback, so the row can name the line
    argv = ["optimize", str(src), "-o", str(dst), "--debug"]
    argv += ["--passes", passes] if passes else []
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    if rc != 0:
        raise StepError(f"graphopt optimize exited {rc}: {' '.join(err.getvalue().split())[:400]}")
    if not dst.exists():
        raise StepError("graphopt optimize wrote no output file")
    return dst


def _onnxslim(src: Path, dst: Path) -> Path:
    """``onnxslim.slim`` with its default optimizations; IR version lowered for onnxruntime."""
    import onnx
    import onnxslim

    with contextlib.redirect_stdout(io.StringIO()):
        model = onnxslim.slim(str(src))
    if model is None:
        raise StepError("onnxslim returned no model")
    model.ir_version = min(model.ir_version, ORT_MAX_IR_VERSION)
    onnx.save(model, str(dst))
    return dst


def _ort_run(path: Path, feeds: Sequence[np.ndarray], threads: int) -> list[np.ndarray]:
    """Outputs of onnxruntime on ``path``, inputs given by position."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # Run each graph as written: ORT's own rewrites would blur what each tool did.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    if len(names) != len(feeds):
        raise StepError(f"{path.name} takes {len(names)} inputs, expected {len(feeds)}")
    return list(sess.run(None, dict(zip(names, feeds))))


def _graphopt_compile_run(src: Path, feeds: Sequence[np.ndarray], row: Row) -> list[np.ndarray]:
    """``graphopt.compile(path)`` then one call; compile and run times go in the row."""
    import graphopt

    start = time.perf_counter()
    compiled = graphopt.compile(str(src))
    row.seconds["compile.build"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    outs = compiled(*feeds)
    row.seconds["compile.run"] = round(time.perf_counter() - start, 3)
    return list(outs) if isinstance(outs, tuple) else [outs]


def bench_model(name: str, cache: Path, *, seed: int = 1, threads: int = 1,
                rtol: float = DEFAULT_RTOL, passes: str | None = None,
                compile_: bool = True) -> Row:
    """Every step for one zoo model; failures land in ``Row.errors``."""
    row = Row(name, rtol=rtol, compiled=compile_)
    src = _step(row, "export", lambda: zoo.export(name, cache))
    if src is None:
        return row
    out_dir = cache / "optimized"
    out_dir.mkdir(parents=True, exist_ok=True)
    go_path, slim_path = out_dir / f"{name}.graphopt.onnx", out_dir / f"{name}.onnxslim.onnx"
    for stale in (go_path, slim_path):
        stale.unlink(missing_ok=True)  # never compare against a previous run's output
    row.nodes_original = _node_count(src)
    if _step(row, "graphopt optimize", lambda: _graphopt_optimize(src, go_path, passes)):
        row.nodes_graphopt = _step(row, "graphopt output", lambda: _node_count(go_path))
    if _step(row, "onnxslim", lambda: _onnxslim(src, slim_path)):
        row.nodes_onnxslim = _node_count(slim_path)
    feeds = [t.numpy() for t in zoo.sample_inputs(name, seed=seed)]
    want = _step(row, "ort original", lambda: _ort_run(src, feeds, threads))
    if want is None:
        return row

    def error_of(path: Path) -> float:
        return rel_error(_ort_run(path, feeds, threads), want)

    def compile_error() -> float:
        return rel_error(_graphopt_compile_run(src, feeds, row), want)

    if row.nodes_graphopt is not None:
        row.err_graphopt_ort = _step(row, "ort graphopt", lambda: error_of(go_path))
    if row.nodes_onnxslim is not None:
        row.err_onnxslim_ort = _step(row, "ort onnxslim", lambda: error_of(slim_path))
    if compile_:
        row.err_graphopt_compile = _step(row, "graphopt.compile", compile_error)
    return row


def _fmt(value: float | None, spec: str = "") -> str:
    return "—" if value is None else format(value, spec)


def markdown_table(rows: Sequence[Row]) -> str:
    """The results table, then a timing table, as Markdown."""
    head = ["model", "nodes original", "graphopt", "onnxslim", "max rel err graphopt ORT",
            "max rel err onnxslim ORT", "max rel err graphopt.compile", "ok", "errors"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        errors = "; ".join(f"{k}: {v}" for k, v in r.errors.items()).replace("|", "\\|")
        cells = [r.model, _fmt(r.nodes_original), _fmt(r.nodes_graphopt), _fmt(r.nodes_onnxslim),
                 _fmt(r.err_graphopt_ort, ".1e"), _fmt(r.err_onnxslim_ort, ".1e"),
                 _fmt(r.err_graphopt_compile, ".1e") if r.compiled else "skipped",
                 "yes" if r.ok else "NO", errors[:300]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| model | " + " | ".join(f"{s} (s)" for s in TIMED_STEPS) + " |",
              "|" + "---|" * (len(TIMED_STEPS) + 1)]
    for r in rows:
        times = [_fmt(r.seconds.get(s), ".2f") for s in TIMED_STEPS]
        lines.append(f"| {r.model} | " + " | ".join(times) + " |")
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    import graphopt
    import onnx
    import onnxruntime
    import onnxslim
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "onnxslim": onnxslim.__version__, "graphopt": graphopt.__version__,
            "machine": platform.machine()}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m graphopt.benchmarks.optimize_vs_onnxslim",
                                description=(__doc__ or "").splitlines()[0])
    p.add_argument("models", nargs="*", help=f"zoo models (default: all: {', '.join(zoo.MODELS)})")
    p.add_argument("--cache", default=DEFAULT_CACHE,
                   help=f"folder for the exported models (default {DEFAULT_CACHE})")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime and torch threads (1)")
    p.add_argument("--seed", type=int, default=1, help="seed of the random inputs (1)")
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                   help=f"largest relative error that counts as ok ({DEFAULT_RTOL})")
    p.add_argument("--passes", help="pipeline for graphopt optimize (default: the CLI's)")
    p.add_argument("--no-compile", action="store_true",
                   help="skip graphopt.compile (the slow reference-interpreter run)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print the tables; exit status 1 if any model is not ok."""
    p = _parser()
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    names = args.models or list(zoo.MODELS)
    unknown = [n for n in names if n not in zoo.MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)} (available: {', '.join(zoo.MODELS)})")
    cache = Path(args.cache).expanduser()
    rows = []
    for name in names:
        start = time.perf_counter()
        print(f"{name} ...", file=sys.stderr, flush=True)
        row = bench_model(name, cache, seed=args.seed, threads=args.threads, rtol=args.rtol,
                          passes=args.passes, compile_=not args.no_compile)
        rows.append(row)
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in row.seconds.items())
        print(f"{name}: {'ok' if row.ok else 'NOT ok'} in {time.perf_counter() - start:.1f} s "
              f"({steps})", file=sys.stderr, flush=True)
        gc.collect()  # big models: drop the sessions and graphs before the next one
    print(markdown_table(rows))
    if args.json:
        payload = {"versions": _versions(), "threads": args.threads, "seed": args.seed,
                   "rtol": args.rtol, "passes": args.passes, "rows": [r.to_json() for r in rows]}
        Path(args.json).write_text(json.dumps(payload, indent=1))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
