"""graphopt's ONNX optimizer against onnxslim on the model zoo: node counts and numerical agreement.

    python -m graphopt.benchmarks.optimize_vs_onnxslim                 # every zoo model
    python -m graphopt.benchmarks.optimize_vs_onnxslim resnet50 bert_base --json out.json

For each model: export it to ONNX (cached in ``--cache``), run ``graphopt optimize`` (the CLI,
in-process) and ``onnxslim.slim`` on the same file, count the nodes of all three, run all three in
onnxruntime on the same random inputs and report the largest relative error against the original;
then run ``graphopt.compile(path)`` (the reference interpreter: slow on big models, timed) against
the original's onnxruntime output. A model that fails at any step gets its error in its row and the
run goes on. Relative error of an output is ``max|got - want| / max|want|``; a model's is the worst
over its outputs.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from . import zoo

DEFAULT_CACHE = "~/.cache/graphopt/zoo"
DEFAULT_RTOL = 1e-3
ORT_MAX_IR_VERSION = 10  # what onnxruntime 1.31 reads safely (it rejects onnx 1.23's default 14)

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
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every step ran and graphopt's results agree with the original within ``rtol``."""
        errs = [self.err_graphopt_ort] + ([] if "compile" in self.skipped else [self.err_graphopt_compile])
        return not self.errors and all(e is not None and e <= self.rtol for e in errs)

    def to_json(self) -> dict[str, Any]:
        """A plain dict with ``ok`` included."""
        return {**asdict(self), "ok": self.ok}


class StepError(Exception):
    """A benchmark step failed; the message is what goes in the table."""


def _describe_exception(e: BaseException) -> str:
    """``Type: message`` plus the innermost graphopt frame, so a failure points at a line of code."""
    where = ""
    for frame in reversed(traceback.extract_tb(e.__traceback__)):
        if "/benchmarks/" not in frame.filename and ("graphopt" in frame.filename or "/work/" in frame.filename):
            where = f" [at {Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno}]"
            break
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg[:400]}{where}" if not isinstance(e, StepError) else msg


def _step(row: Row, name: str, fn: Callable[[], T]) -> T | None:
    """Run one step, timing it; on failure record the error under ``name`` and return None."""
    start = time.perf_counter()
    try:
        return fn()
    except Exception as e:  # a benchmark reports failures, it does not stop at them
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
        diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
        if not np.all(np.isfinite(diff)):
            return float("inf")
        scale = float(np.max(np.abs(w))) if w.size else 0.0
        worst = max(worst, float(np.max(diff)) / max(scale, 1e-30) if diff.size else 0.0)
    return worst


def _node_count(path: Path) -> int:
    import onnx

    # The graph structure is all we need: skip loading the weights of big models.
    return len(onnx.load(str(path), load_external_data=False).graph.node)


def _graphopt_optimize(src: Path, dst: Path, passes: str | None) -> Path:
    """``graphopt optimize SRC -o DST`` through the CLI entry point, in this process."""
    from graphopt import cli

    argv = ["optimize", str(src), "-o", str(dst), "--debug"] + (["--passes", passes] if passes else [])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)  # --debug: internal errors propagate with their traceback
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
    # Run the graph as written: ORT's own optimizer would blur what each tool did.
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


def bench_model(name: str, cache: Path, *, seed: int = 1, threads: int = 1, rtol: float = DEFAULT_RTOL,
                passes: str | None = None, compile_: bool = True) -> Row:
    """Every step for one zoo model; failures land in ``Row.errors``."""
    row = Row(name, rtol=rtol, skipped=[] if compile_ else ["compile"])
    out_dir = cache / "optimized"
    out_dir.mkdir(parents=True, exist_ok=True)
    src = _step(row, "export", lambda: zoo.export(name, cache))
    if src is None:
        return row
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
    if row.nodes_graphopt is not None:
        row.err_graphopt_ort = _step(row, "ort graphopt", lambda: rel_error(_ort_run(go_path, feeds, threads), want))
    if row.nodes_onnxslim is not None:
        row.err_onnxslim_ort = _step(row, "ort onnxslim", lambda: rel_error(_ort_run(slim_path, feeds, threads), want))
    if compile_:
        row.err_graphopt_compile = _step(
            row, "graphopt.compile", lambda: rel_error(_graphopt_compile_run(src, feeds, row), want))
    return row


def _fmt_err(e: float | None) -> str:
    return "—" if e is None else f"{e:.1e}"


def _fmt_nodes(n: int | None) -> str:
    return "—" if n is None else str(n)


def markdown_table(rows: Sequence[Row]) -> str:
    """The results table, then a timing table, as Markdown."""
    head = ["model", "nodes original", "graphopt", "onnxslim", "max rel err graphopt ORT",
            "max rel err onnxslim ORT", "max rel err graphopt.compile", "ok", "errors"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        errors = "; ".join(f"{k}: {v}" for k, v in r.errors.items()).replace("|", "\\|")
        compile_err = "skipped" if "compile" in r.skipped else _fmt_err(r.err_graphopt_compile)
        lines.append("| " + " | ".join([
            r.model, _fmt_nodes(r.nodes_original), _fmt_nodes(r.nodes_graphopt), _fmt_nodes(r.nodes_onnxslim),
            _fmt_err(r.err_graphopt_ort), _fmt_err(r.err_onnxslim_ort), compile_err,
            "yes" if r.ok else "NO", errors[:300]]) + " |")
    steps = ["export", "graphopt optimize", "onnxslim", "ort original", "compile.build", "compile.run"]
    lines += ["", "| model | " + " | ".join(f"{s} (s)" for s in steps) + " |", "|" + "---|" * (len(steps) + 1)]
    for r in rows:
        lines.append(f"| {r.model} | " + " | ".join(
            f"{r.seconds[s]:.2f}" if s in r.seconds else "—" for s in steps) + " |")
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import onnxslim
    import torch

    import graphopt

    return {"python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "onnxslim": onnxslim.__version__,
            "graphopt": graphopt.__version__, "machine": platform.machine()}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; exit status 1 if any model is not ok."""
    p = argparse.ArgumentParser(prog="python -m graphopt.benchmarks.optimize_vs_onnxslim",
                                description=(__doc__ or "").splitlines()[0])
    p.add_argument("models", nargs="*", help=f"zoo models (default: all: {', '.join(zoo.MODELS)})")
    p.add_argument("--cache", default=DEFAULT_CACHE, help=f"folder for exported models (default {DEFAULT_CACHE})")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime and torch threads (default 1)")
    p.add_argument("--seed", type=int, default=1, help="seed of the random inputs (default 1)")
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL, help=f"relative error for ok (default {DEFAULT_RTOL})")
    p.add_argument("--passes", help="pipeline for graphopt optimize (default: the CLI's)")
    p.add_argument("--no-compile", action="store_true", help="skip graphopt.compile (the slow interpreter run)")
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
        row = bench_model(name, cache, seed=args.seed, threads=args.threads, rtol=args.rtol, passes=args.passes,
                          compile_=not args.no_compile)
        rows.append(row)
        print(f"{name}: {'ok' if row.ok else 'NOT ok'} in {time.perf_counter() - start:.1f} s "
              f"({', '.join(f'{k} {v:.1f}s' for k, v in row.seconds.items())})", file=sys.stderr, flush=True)
        gc.collect()  # big models: drop the sessions and graphs before the next one
    print(markdown_table(rows))
    if args.json:
        payload = {"versions": _versions(), "threads": args.threads, "seed": args.seed, "rtol": args.rtol,
                   "passes": args.passes, "rows": [r.to_json() for r in rows]}
        Path(args.json).write_text(json.dumps(payload, indent=1))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
