"""Compile time of ``graphopt.compile`` with a cold and a warm cache, per model.

    python -m graphopt.benchmarks.compile_time resnet50 densenet121 bert_base
    python -m graphopt.benchmarks.compile_time squeezenet1_1 --tune fast --json out.json

Cold: a new, empty cache folder (no tuning records, no kept builds, no remembered kernel
timings), so the compile searches schedules with ``--tune`` and builds everything. Warm: the same
compile again in the same process with that folder, as a user's second compile would be. Each
compiled model's output is checked against torch eager (rtol 1e-3). The folder is deleted at the
end; the user's own cache is never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import api
from .bench import compare, load_model, reference_outputs


@dataclass
class CompileTimes:
    """Seconds of one model's cold and warm compile."""

    model: str
    tune: str
    cold_s: float
    warm_s: float
    max_rel_err: float


def time_compiles(arg: str, tune: str = "fast") -> CompileTimes:
    """Compile zoo model ``arg`` twice into a fresh cache folder; check both outputs."""
    previous = os.environ.get("GRAPHOPT_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="graphopt-compile-time-") as folder:
        os.environ["GRAPHOPT_CACHE_DIR"] = folder
        try:
            spec = load_model(arg, 1, Path(folder))
            want, _ = reference_outputs(spec)
            seconds, worst = [], 0.0
            for _ in range(2):
                start = time.perf_counter()
                compiled = api.compile(spec.module, tuple(spec.torch_inputs()), tune=tune)
                seconds.append(time.perf_counter() - start)
                got = compiled(*spec.inputs)
                err, why = compare(list(got) if isinstance(got, (list, tuple)) else [got], want, 1e-3, 1e-4)
                if why is not None:
                    raise AssertionError(f"{spec.name}: {why}")
                worst = max(worst, err)
        finally:
            if previous is None:
                os.environ.pop("GRAPHOPT_CACHE_DIR", None)
            else:
                os.environ["GRAPHOPT_CACHE_DIR"] = previous
    return CompileTimes(spec.name, tune, seconds[0], seconds[1], worst)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: models, then one line each (and ``--json``)."""
    p = argparse.ArgumentParser(prog="python -m graphopt.benchmarks.compile_time", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="zoo models, e.g. resnet50 bert_base:layers=2")
    p.add_argument("--tune", default="fast", help="the cold compile's search effort (default fast)")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)
    rows = []
    print("| model | cold compile (s) | warm compile (s) |\n|---|---:|---:|", flush=True)
    for arg in args.models:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch.export and TVM chatter
            row = time_compiles(arg, args.tune)
        rows.append(row)
        print(f"| {row.model} | {row.cold_s:.1f} | {row.warm_s:.1f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
