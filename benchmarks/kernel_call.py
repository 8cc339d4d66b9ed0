"""What one more kernel costs on the TVM backend: a chain of N elementwise ops, one kernel each vs fused.

    python -m graphopt.benchmarks.kernel_call
    python -m graphopt.benchmarks.kernel_call --shape 1,64,16,16 --lengths 10 40 --runs 2000

Both graphs run the same ops on the same input through ``TVMExecutable.run``; the only differences
are the Relax VM's calls into N PrimFuncs instead of one, and each intermediate written and read
back. On the smallest tensor the second part is nearly nothing, so ``(apart - fused) / (N - 1)`` is
the VM's cost of one kernel call (``passes.fuse.KERNEL_CALL_US``); on bigger tensors it adds the
memory round trip a fusion saves. Calls are timed interleaved and the medians compared, since the
machine may be shared.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

from ..backends import build
from ..ir import DType, Graph, GraphBuilder, TensorType
from ..passes import PassContext, run_passes

WARMUP = 50  # calls of each variant before timing: thread pools and caches settle


def chain(length: int, shape: tuple[int, ...]) -> Graph:
    """``length`` alternating neg/relu ops on one f32 input: every op is its own kernel unfused."""
    b = GraphBuilder("chain")
    x = b.input("x", TensorType(shape, DType.f32))
    for i in range(length):
        x = b.op1("nn.relu" if i % 2 else "math.neg", x)
    return b.build([x])


def per_call_us(length: int, shape: tuple[int, ...], runs: int) -> tuple[float, float, float]:
    """Median microseconds of the chain apart and fused, and the difference per extra kernel."""
    apart_graph = chain(length, shape)
    fused_graph, _ = run_passes(apart_graph, "fuse", ctx=PassContext())
    apart, fused = build(apart_graph, "tvm"), build(fused_graph, "tvm")
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(apart.run([x])[0], fused.run([x])[0])
    times: dict[str, list[float]] = {"apart": [], "fused": []}
    for i in range(runs + WARMUP):
        for name, exe in ((("apart", apart), ("fused", fused)) if i % 2 else (("fused", fused), ("apart", apart))):
            start = time.perf_counter()
            exe.run([x])
            if i >= WARMUP:
                times[name].append(time.perf_counter() - start)
    a, f = (float(np.median(times[k])) * 1e6 for k in ("apart", "fused"))
    return a, f, (a - f) / max(length - 1, 1)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: one line per chain length."""
    p = argparse.ArgumentParser(prog="python -m graphopt.benchmarks.kernel_call", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="1,16", help="tensor shape, comma-separated (default 1,16)")
    p.add_argument("--lengths", type=int, nargs="+", default=[10, 40], help="chain lengths (default 10 40)")
    p.add_argument("--runs", type=int, default=2000, help="timed calls of each variant (default 2000)")
    args = p.parse_args(argv)
    shape = tuple(int(d) for d in args.shape.split(","))
    print("| shape | kernels apart | us apart | us fused | us per extra kernel |\n|---|---:|---:|---:|---:|")
    for n in args.lengths:
        a, f, per = per_call_us(n, shape, args.runs)
        print(f"| {list(shape)} | {n} | {a:.2f} | {f:.2f} | {per:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
