"""The main job of ``make run``: compile the bundled example and report what graphopt did.

It imports ``examples/tiny_resnet.onnx``, prints the model summary before and after the default
pass pipeline, compiles it, checks the compiled model's output against onnxruntime on the same
input, and times both (median of 20 runs, same process).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

import graphopt
from graphopt.ir.analysis import summarize

MODEL = Path(__file__).with_name("tiny_resnet.onnx")


def median_ms(fn: Callable[[], object], runs: int = 20) -> float:
    """Median wall time of ``fn`` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> int:
    """Compile, check and time the bundled model; return a process exit status."""
    import onnxruntime as ort

    print(f"== {MODEL.name}: as imported")
    print(summarize(graphopt.import_onnx(MODEL)).to_text())

    compiled = graphopt.compile(MODEL)
    print(f"\n== after graphopt.compile (passes: {graphopt.api.DEFAULT_PASSES})")
    print(summarize(compiled.graph).to_text())
    print()
    print(compiled.report().to_text())

    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])
    ours = compiled(x)
    (theirs,) = session.run(None, {"image": x})
    err = float(np.max(np.abs(ours - theirs)) / (np.max(np.abs(theirs)) + 1e-12))
    ok = np.allclose(ours, theirs, rtol=1e-3, atol=1e-4)
    print(f"\noutput vs onnxruntime: max relative error {err:.2e} ({'OK' if ok else 'MISMATCH'})")

    t_ours = median_ms(lambda: compiled(x))
    t_ort = median_ms(lambda: session.run(None, {"image": x}))
    print(f"latency, median of 20 (batch 1): graphopt[{compiled.report().backend}] {t_ours:.2f} ms, "
          f"onnxruntime {t_ort:.2f} ms -> speedup {t_ort / t_ours:.2f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
