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
sys.path.insert(0, str(MODEL.parent))  # build_example.py beside this file defines the torch model


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
    passes = ",".join(p["name"] for p in compiled.report().passes)
    print(f"\n== after graphopt.compile (passes: {passes})")
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

    import torch

    from build_example import make_model

    torch.set_num_threads(2)
    module, xt = make_model(), torch.from_numpy(x)
    with torch.inference_mode():
        eager = module(xt).numpy()
        ok = ok and np.allclose(ours, eager, rtol=1e-3, atol=1e-4)
        times = {"torch eager": median_ms(lambda: module(xt))}
    times["onnxruntime"] = median_ms(lambda: session.run(None, {"image": x}))
    t_ours = median_ms(lambda: compiled(x))
    print(f"\nlatency, batch 1, 2 threads, median of 20 runs in this process "
          f"(a benchmark, not a test: see benchmarks/ for the full protocol):")
    print(f"  graphopt [{compiled.report().backend}]  {t_ours:8.3f} ms")
    for name, t in times.items():
        print(f"  {name:<18} {t:8.3f} ms   graphopt speedup {t / t_ours:5.2f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
