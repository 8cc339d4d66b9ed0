"""Post-training quantization on a real task, with no download: scikit-learn's digits.

Trains a small CNN on the 8x8 digit images bundled with scikit-learn (a few seconds on a CPU),
then compiles it three ways with graphopt and prints test accuracy and latency (batch 1, median
of 200 calls) for each:

* ``fp32``: the float model;
* ``int8``: every conv / linear layer int8 (activations calibrated on 64 training images);
* ``auto``: int8 / bf16 / f32 per layer, fastest within 1 point of fp32 accuracy (measured on
  the calibration images, the same ILP as HAWQ-V3).

The network is tiny (about 1.2 MFLOP per image): its latency is mostly the cost of calling the
compiled model, so the int8 kernels' speed shows on bigger models (``benchmarks/quant_bench.py``);
here the point is the accuracy.

    python -m graphopt.examples.digits            # or: python examples/digits.py [--epochs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..passes.quant import INTEGER_KERNELS

CALIBRATION_IMAGES = 64
SEED = 0


@dataclass
class Result:
    """One compiled variant: test accuracy, batch-1 latency and how its layers ended up."""

    name: str
    accuracy: float
    latency_ms: float
    layers: str


def load_digits_split(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train and test images (N, 1, 8, 8) scaled to [0, 1], with labels; 80 / 20 split."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def make_cnn() -> Any:
    """Three 3x3 convolutions and a linear classifier (about 34k parameters)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 4 * 4, 10),
    )


def train(x: np.ndarray, y: np.ndarray, epochs: int = 10, seed: int = SEED) -> Any:
    """The CNN trained with Adam on (x, y), in eval mode."""
    import torch

    torch.manual_seed(seed)
    model = make_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt), generator=gen).split(128):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return model.eval()


def accuracy(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Share of images (fed one at a time, batch 1) whose top class is the label."""
    hits = sum(int(np.argmax(run(x[i:i + 1])) == y[i]) for i in range(len(x)))
    return hits / len(x)


def median_ms(fn: Callable[[], object], runs: int = 200) -> float:
    """Median wall time of ``fn`` in milliseconds, after warm-up calls."""
    for _ in range(10):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def layer_summary(compiled: Any) -> str:
    """``int8 x3, f32 x1`` style counts of the compiled graph's layers by precision."""
    counts: dict[str, int] = {}
    for node in compiled.graph.walk():
        if node.op in INTEGER_KERNELS:
            kind = "int8"
        elif node.op in ("nn.conv2d", "nn.gemm", "nn.matmul"):
            kind = str(node.outputs[0].type.dtype)
        else:
            continue
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{k} x{n}" for k, n in sorted(counts.items()))


def run_example(epochs: int = 10, backend: str = "auto", out: Callable[[str], None] = print) -> list[Result]:
    """Train, compile fp32 / int8 / auto, and return accuracy and latency of each."""
    import torch

    import graphopt

    torch.set_num_threads(2)
    x_train, y_train, x_test, y_test = load_digits_split()
    start = time.perf_counter()
    model = train(x_train, y_train, epochs)
    with torch.no_grad():
        torch_acc = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    out(f"trained on {len(x_train)} digits in {time.perf_counter() - start:.1f} s; torch test accuracy "
        f"{torch_acc:.2%} on {len(x_test)} digits")
    example = (torch.from_numpy(x_test[:1]),)
    calib_x, calib_y = x_train[:CALIBRATION_IMAGES], y_train[:CALIBRATION_IMAGES]
    calibration = [calib_x[i:i + 1] for i in range(len(calib_x))]

    def calib_accuracy(outputs: Sequence[list[np.ndarray]]) -> float:
        return float(np.mean([np.argmax(o[0]) == label for o, label in zip(outputs, calib_y)]))

    variants: dict[str, dict[str, Any]] = {
        "fp32": {},
        "int8": {"quantize": "int8", "calibration": calibration},
        "auto": {"quantize": "auto", "calibration": calibration, "max_accuracy_drop": 0.01,
                 "metric": calib_accuracy},
    }
    results = []
    for name, options in variants.items():
        start = time.perf_counter()
        compiled = graphopt.compile(model, example, backend=backend, **options)
        seconds = time.perf_counter() - start
        acc = accuracy(compiled, x_test, y_test)
        ms = median_ms(lambda model=compiled, sample=x_test[:1]: model(sample))
        results.append(Result(name, acc, ms, layer_summary(compiled)))
        out(f"{name:>5}: accuracy {acc:.2%}  latency {ms * 1e3:7.1f} us  ({results[-1].layers}; compiled in "
            f"{seconds:.1f} s on {compiled.report().backend})")
        for row in compiled.report().quantization:
            if row["layer"] in ("speed check", "end-to-end check"):  # auto's verdicts against all-f32
                out(f"       {row['layer']}: {row['reason']}")
    base = results[0]
    for r in results[1:]:
        out(f"{r.name:>5} vs fp32: accuracy {100 * (r.accuracy - base.accuracy):+.2f} points, "
            f"{base.latency_ms / r.latency_ms:.2f}x the speed")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    p.add_argument("--backend", default="auto", help="graphopt backend (auto, tvm, reference)")
    args = p.parse_args(argv)
    run_example(args.epochs, args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
