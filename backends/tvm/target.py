"""The LLVM target for the host CPU: model (``mcpu``), vector features (``mattr``) and core count."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import tvm
from tvm.target import codegen

from ..host import cpu_flags

# /proc/cpuinfo flag -> LLVM feature. Only features that change the code TVM emits for our kernels.
_FEATURES = {
    "sse4_2": "+sse4.2", "avx": "+avx", "avx2": "+avx2", "fma": "+fma", "f16c": "+f16c",
    "avx512f": "+avx512f", "avx512bw": "+avx512bw", "avx512vl": "+avx512vl", "avx512dq": "+avx512dq",
    "avx512cd": "+avx512cd", "avx512_vnni": "+avx512vnni", "avx512vnni": "+avx512vnni",
    "avx512_bf16": "+avx512bf16", "avx512_fp16": "+avx512fp16", "avx_vnni": "+avxvnni",
}


@dataclass(frozen=True)
class HostTarget:
    """The compile target and what the kernels' default schedules need to know about it."""

    target: tvm.target.Target
    mcpu: str
    mattr: tuple[str, ...]
    cores: int
    vector_bits: int
    threads: int  # TVM runtime threads that run parallel loops

    def lanes(self, dtype_bits: int = 32) -> int:
        """Elements of ``dtype_bits`` in one native vector register."""
        return max(1, self.vector_bits // dtype_bits)

    def describe(self) -> str:
        """One line: the target as the report shows it."""
        features = ",".join(a.lstrip("+") for a in self.mattr if "avx512" in a or a in ("+avx2", "+fma")) or "none"
        threads = f"{self.threads} threads"
        if self.threads < self.cores and "TVM_NUM_THREADS" not in os.environ:
            threads += f" of {self.cores} cores (TVM's thread pool was started before graphopt sized it)"
        return f"llvm -mcpu={self.mcpu} ({features}), {self.vector_bits}-bit vectors, {threads}"


def size_thread_pool(cores: int) -> int:
    """Give TVM's thread pool one thread per core (unless TVM_NUM_THREADS says otherwise); the count."""
    # On x86 TVM halves the hardware thread count, assuming SMT; on 2 unshared cores that leaves
    # one idle. The pool reads the variable once, when it starts (on the first parallel loop).
    os.environ.setdefault("TVM_NUM_THREADS", str(cores))
    return int(tvm.get_global_func("runtime.NumThreads")())


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@functools.cache
def host_target() -> HostTarget:
    """The LLVM target of this machine, with its CPU model and vector features detected."""
    triple = codegen.llvm_get_system_triple()
    cpu = codegen.llvm_get_system_cpu()
    flags = cpu_flags()
    mattr = tuple(sorted({feat for flag, feat in _FEATURES.items() if flag in flags}))
    spec: dict[str, object] = {"kind": "llvm", "num-cores": _cores()}
    if cpu and cpu != "generic" and codegen.llvm_is_valid_cpu(cpu, triple):
        spec["mcpu"] = cpu
    else:
        cpu = "generic"
    if mattr:
        spec["mattr"] = list(mattr)
    target = tvm.target.Target(spec)
    bits = codegen.llvm_get_vector_width(target)
    if bits <= 0:  # LLVM could not tell: fall back on the flags
        bits = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    cores = int(spec["num-cores"])  # type: ignore[call-overload]
    return HostTarget(target, cpu, mattr, cores, bits, size_thread_pool(cores))
