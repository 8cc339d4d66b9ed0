"""The machine's fp32 peaks that every benchmark report quotes: measured GEMM and theoretical FMA.

    python -m graphopt.benchmarks.peak [--threads N] [--size 2048]

The measured peak is a large square torch matmul (MKL/oneDNN), the best a tuned library reaches on
this machine: the honest yardstick for a compiler's kernels. numpy is not used because the
environment presets ``OPENBLAS_CORETYPE``, which pins OpenBLAS to slower kernels. The theoretical
peak is FMA units x fp32 lanes x 2 flops x clock x cores, read from ``/proc/cpuinfo`` (and
``lscpu`` or cpufreq for the clock); ``derivation`` spells out each factor and where it came from.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

GEMM_SIZE = 2048
GEMM_RUNS = 5


@dataclass(frozen=True)
class CpuInfo:
    """What the peak formula needs to know about the CPU."""

    model: str
    vendor: str
    family: int | None
    cores: int
    flags: frozenset[str]
    mhz: float | None
    mhz_source: str


@dataclass(frozen=True)
class Peaks:
    """Measured fp32 GEMM peak and theoretical FMA peak for ``threads`` cores, with provenance."""

    cpu: str
    threads: int
    measured_gflops: float
    measured_runs_gflops: list[float]
    gemm_size: int
    theoretical_gflops: float | None
    derivation: str

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the JSON report."""
        return asdict(self)

    def to_text(self) -> str:
        """Two lines for the head of a report."""
        n = self.gemm_size
        theo = (f"{self.theoretical_gflops:.0f} GFLOP/s" if self.theoretical_gflops is not None
                else "unknown")
        best = max(self.measured_runs_gflops, default=0.0)
        return (f"measured fp32 GEMM peak {self.measured_gflops:.1f} GFLOP/s "
                f"(torch matmul {n}x{n}x{n}, median of {len(self.measured_runs_gflops)}, "
                f"best {best:.1f}, {self.threads} threads)\n"
                f"theoretical fp32 FMA peak {theo} = {self.derivation}")


def cpu_info() -> CpuInfo:
    """Model, vendor, family, flags and clock of CPU 0, read from /proc/cpuinfo, lscpu, cpufreq."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break  # the first processor's block is enough: the machine is homogeneous
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    family = fields.get("cpu family")
    mhz, source = _max_mhz()
    if mhz is None and fields.get("cpu MHz"):
        # Under a hypervisor this is the nominal clock: boost is invisible, so the real peak of a
        # turbo-capable CPU is higher than the formula says.
        mhz = float(fields["cpu MHz"])
        source = "/proc/cpuinfo 'cpu MHz': nominal clock, no max clock exposed, boost may be higher"
    return CpuInfo(
        model=fields.get("model name", "unknown CPU"), vendor=fields.get("vendor_id", ""),
        family=int(family) if family and family.isdigit() else None,
        cores=len(os.sched_getaffinity(0)), flags=frozenset(fields.get("flags", "").split()),
        mhz=mhz, mhz_source=source)


def _max_mhz() -> tuple[float | None, str]:
    """The maximum clock from cpufreq or lscpu; (None, '') where neither exposes one (VMs)."""
    freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if freq.exists():
        return int(freq.read_text()) / 1000, str(freq)
    if shutil.which("lscpu"):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        m = re.search(r"^CPU max MHz:\s*([\d.]+)", out, re.MULTILINE)
        if m:
            return float(m.group(1)), "lscpu 'CPU max MHz'"
    return None, ""


def fma_flops_per_cycle(info: CpuInfo) -> tuple[int, str]:
    """fp32 flops per cycle per core from the SIMD flags (0 if unknown) and why."""
    if "fma" not in info.flags:
        return 0, "no FMA flag"
    if "avx512f" in info.flags:
        if info.vendor == "AuthenticAMD" and info.family == 25:
            # Zen 4 runs 512-bit ops on 256-bit FMA pipes, two passes each: AVX2 throughput.
            return 2 * 8 * 2, "2 FMA units x 8 fp32 lanes (Zen 4: AVX-512 on 256-bit pipes) x 2"
        return 2 * 16 * 2, "2 FMA units x 16 fp32 lanes (AVX-512) x 2"
    return 2 * 8 * 2, "2 FMA units x 8 fp32 lanes (AVX2) x 2"


def theoretical_peak(threads: int, info: CpuInfo | None = None) -> tuple[float | None, str]:
    """The FMA peak in GFLOP/s on ``threads`` cores, and the formula with each factor's source."""
    info = info or cpu_info()
    per_cycle, why = fma_flops_per_cycle(info)
    cores = min(threads, info.cores)
    if not per_cycle or info.mhz is None:
        return None, f"{why}; clock {'unknown' if info.mhz is None else f'{info.mhz:.0f} MHz'}"
    ghz = info.mhz / 1000
    return (per_cycle * ghz * cores,
            f"{why} flops x {ghz:.2f} GHz ({info.mhz_source}) x {cores} cores")


def measure_gemm_peak(threads: int, size: int = GEMM_SIZE, runs: int = GEMM_RUNS) -> list[float]:
    """GFLOP/s of ``runs`` timed ``size``-cubed fp32 torch matmuls on ``threads`` threads."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=g)
        b = torch.randn(size, size, generator=g)
        out = torch.empty(size, size)
        for _ in range(2):  # first calls pick kernels and fault in pages
            torch.matmul(a, b, out=out)
        rates = []
        for _ in range(runs):
            start = time.perf_counter()
            torch.matmul(a, b, out=out)
            rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
        return rates
    finally:
        torch.set_num_threads(previous)


def measure_peaks(threads: int, size: int = GEMM_SIZE, runs: int = GEMM_RUNS) -> Peaks:
    """Both peaks for ``threads`` cores (the measured one is the median of ``runs`` matmuls)."""
    info = cpu_info()
    rates = measure_gemm_peak(threads, size, runs)
    theoretical, derivation = theoretical_peak(threads, info)
    return Peaks(cpu=info.model, threads=threads, measured_gflops=statistics.median(rates),
                 measured_runs_gflops=rates, gemm_size=size, theoretical_gflops=theoretical,
                 derivation=derivation)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m graphopt.benchmarks.peak``: print both peaks."""
    p = argparse.ArgumentParser(prog="python -m graphopt.benchmarks.peak",
                                description=(__doc__ or "").splitlines()[0])
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="cores to use (default: all this process may run on)")
    p.add_argument("--size", type=int, default=GEMM_SIZE, help="matmul size N (N x N x N)")
    p.add_argument("--runs", type=int, default=GEMM_RUNS, help="timed matmuls (median reported)")
    args = p.parse_args(argv)
    peaks = measure_peaks(args.threads, args.size, args.runs)
    print(f"{peaks.cpu}\n{peaks.to_text()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
