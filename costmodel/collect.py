"""``graphopt costmodel collect``: measure kernels with the TVM backend and append them to a dataset.

Kernels come from ``kernels`` (zoo networks at a few sizes, three partitions each, random graphs;
each with schedule variants). They are built with the TVM backend's public kernel builder
(``backends.tvm.kernel.build_kernel``, the code the compiler runs) and timed with TVM's
``time_evaluator``, a batch of kernels per compiled library (one LLVM invocation per batch, which
compiles a kernel in about two thirds of the time of one library per kernel). ``--rpc HOST:PORT:KEY`` sends each
batch's library to a device registered under KEY with a TVM RPC tracker and times it there, so a
fleet of machines of one kind fills one dataset (``--rpc HOST:PORT`` reaches one RPC server without
a tracker; TVM's tracker needs the ``tornado`` package).

Collection is resumable (jobs already in the dataset are skipped), bounded by ``budget_s`` of wall
time, and shows a progress bar. This module is a driver: it imports the backend lazily and nothing
in ``passes`` imports it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import Dataset, Record, device_fingerprint, record_key, versions
from .features import kernel_features, target_info
from .kernels import (
    FULL_SPACE,
    NETWORK_OPTIONS,
    SYNTHETIC,
    KernelJob,
    interleave,
    network_graph,
    plan_graph,
    synthetic_graphs,
)

BATCH = 12


@dataclass
class Timing:
    """How each kernel is timed: ``repeat`` means of ``number`` runs lasting at least ``min_repeat_ms``."""

    number: int = 1
    repeat: int = 5
    min_repeat_ms: int = 1


@dataclass
class CollectReport:
    """What a collection run did, for the CLI's text and ``--json``."""

    dataset: str
    device: str
    threads: int
    planned: int = 0
    skipped_existing: int = 0
    measured: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    rejected: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    stopped_by_budget: bool = False
    records_total: int = 0

    def to_json(self) -> dict[str, Any]:
        """A plain dict."""
        out = dict(self.__dict__)
        out["failed"] = dict(self.failed)
        return out

    def to_text(self) -> str:
        """A few readable lines."""
        lines = [(f"measured {self.measured} kernels in {self.seconds:.0f} s on {self.device} "
                 f"({self.threads} threads) -> {self.dataset} ({self.records_total} records)"),
                 f"  planned {self.planned}, already in the dataset {self.skipped_existing}"
                 + (", stopped by the time budget" if self.stopped_by_budget else "")]
        if self.failed:
            lines.append("  failed: " + ", ".join(f"{n} {why}" for why, n in self.failed.most_common(5)))
        if self.rejected:
            lines.append("  rejected records: " + ", ".join(f"{n} {why}" for why, n in self.rejected.items()))
        return "\n".join(lines)


# ------------------------------------------------------------------------------------ measuring


def _data(shape: Sequence[Any], dtype: str, rng: np.random.Generator) -> np.ndarray:
    dims = tuple(int(d) for d in shape)
    if dtype.startswith(("float", "bfloat")):
        return rng.standard_normal(dims).astype(dtype)
    return np.zeros(dims, dtype)  # zeros are valid indices and divisors


def _last_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return f"{type(e).__name__}: {(lines or [''])[-1][:100]}"


class Runner:
    """Builds a batch of kernels into one library and times each kernel on a device."""

    def __init__(self, timing: Timing, seed: int = 0, isa: str | None = None) -> None:
        from ..backends.tvm import require_tvm

        require_tvm()
        from ..backends.tvm.target import host_target

        self.timing = timing
        self.target = host_target() if isa is None else isa_target(isa)
        self.rng = np.random.default_rng(seed)

    def describe(self, threads: int) -> Any:
        """The ``TargetInfo`` records of this runner get (the ISA level it compiles for)."""
        return target_info(str(self.target.target), threads)

    def _build(self, job: KernelJob, name: str) -> Any:
        from ..backends.tvm.measure import lower_alone

        built = lower_alone(job.kernel, job.schedule, job.constants, self.target, name)
        return built.func.with_attr("global_symbol", name)

    def measure(self, jobs: Sequence[KernelJob]) -> list[tuple[float, ...] | str]:
        """Per job: the repeat times in microseconds, or why it could not be measured."""
        import tvm

        funcs: dict[str, Any] = {}
        results: list[tuple[float, ...] | str] = [""] * len(jobs)
        for i, job in enumerate(jobs):
            try:
                funcs[f"k{i}"] = self._build(job, f"k{i}")
            except Exception as e:  # noqa: BLE001 - an op TVM cannot lower or schedule: count it, go on
                results[i] = "build: " + _last_line(e)
        if not funcs:
            return results
        try:
            lib_of = dict.fromkeys(funcs, self._load(tvm.compile(tvm.IRModule(funcs), self.target.target)))
        except Exception:  # noqa: BLE001 - one bad kernel fails the batch: compile the others alone
            lib_of = {}
            for name, func in funcs.items():
                try:
                    lib_of[name] = self._load(tvm.compile(tvm.IRModule({name: func}), self.target.target))
                except Exception as e:  # noqa: BLE001
                    results[int(name[1:])] = "compile: " + _last_line(e)
        timers: dict[str, Any] = {}
        for name, lib in lib_of.items():
            try:
                timers[name] = self._timer(lib, name, funcs[name])
            except Exception as e:  # noqa: BLE001 - no memory for its buffers, or the remote refused it
                results[int(name[1:])] = "run: " + _last_line(e)
        # Repeats go round the batch rather than kernel by kernel: the load of other processes comes
        # in phases, and each kernel's minimum then comes from several of them, not from one.
        times: dict[str, list[float]] = {name: [] for name in timers}
        for _ in range(self.timing.repeat):
            for name, timer in list(timers.items()):
                try:
                    times[name] += timer()
                except Exception as e:  # noqa: BLE001 - a kernel that traps at run time
                    results[int(name[1:])] = "run: " + _last_line(e)
                    del timers[name]
        for name in timers:
            results[int(name[1:])] = tuple(times[name])
        return results

    def _timer(self, lib: Any, name: str, func: Any) -> Callable[[], list[float]]:
        """A function timing one repeat of kernel ``name`` (microseconds), its buffers allocated once."""
        import tvm

        dev = self.device()
        args = [tvm.runtime.tensor(_data(p.shape, str(p.dtype), self.rng), dev) for p in func.params]
        t = self.timing
        evaluator = lib.time_evaluator(name, dev, number=t.number, repeat=1, min_repeat_ms=t.min_repeat_ms)
        return lambda: [float(s) * 1e6 for s in evaluator(*args).results]

    def _load(self, lib: Any) -> Any:
        return lib.jit()

    def device(self) -> Any:
        """The device kernels run on."""
        import tvm

        return tvm.cpu()

    def threads(self) -> int:
        """Threads of the runtime that runs parallel loops."""
        import tvm

        return int(tvm.get_global_func("runtime.NumThreads")())

    def fingerprint(self) -> str:
        """The device fingerprint records get (an older ISA level makes another device)."""
        return device_fingerprint(self.describe(self.threads()))


class RPCRunner(Runner):
    """Times kernels on a remote device: one a TVM RPC tracker hands out under a key (``HOST:PORT:KEY``),
    or one RPC server reached directly (``HOST:PORT``)."""

    def __init__(self, address: str, timing: Timing, seed: int = 0, isa: str | None = None,
                 session_timeout: int = 600) -> None:
        super().__init__(timing, seed, isa)
        host, port, key = parse_rpc(address)
        from tvm import rpc

        if key is None:
            self.name = f"{host}:{port}"
            self.session = rpc.connect(host, port, session_timeout=session_timeout)
        else:
            self.name = key
            self.session = rpc.connect_tracker(host, port).request(key, priority=1, session_timeout=session_timeout)
        self._dir = tempfile.TemporaryDirectory(prefix="graphopt-rpc-")
        self._count = 0

    def _load(self, lib: Any) -> Any:
        # The remote loads a shared library it was sent; names differ so a session may hold many.
        self._count += 1
        path = Path(self._dir.name) / f"batch{self._count}.so"
        lib.export_library(str(path))
        self.session.upload(str(path))
        return self.session.load_module(path.name)

    def device(self) -> Any:
        """The remote CPU."""
        return self.session.cpu(0)

    def threads(self) -> int:
        """Threads of the remote runtime."""
        return int(self.session.get_function("runtime.NumThreads")())

    def fingerprint(self) -> str:
        """``rpc:KEY``: every device a tracker lists under one key is one kind of device (``rpc:HOST:PORT``
        for a server reached directly)."""
        return f"rpc:{self.name}"


ISA_LEVELS = {"avx2": ("haswell", ("+avx", "+avx2", "+fma", "+f16c", "+sse4.2"), 256),
              "sse4": ("x86-64-v2", ("+sse4.2",), 128)}
"""Older vector ISA levels this machine can emulate as "new devices" (``collect --isa``)."""


def isa_target(level: str) -> Any:
    """The host target restricted to an older ISA ``level`` (e.g. AVX2 on an AVX-512 machine)."""
    import tvm

    from ..backends.tvm.target import HostTarget, host_target

    if level not in ISA_LEVELS:
        raise ValueError(f"unknown ISA level {level!r} (available: {', '.join(ISA_LEVELS)})")
    mcpu, mattr, bits = ISA_LEVELS[level]
    host = host_target()
    target = tvm.target.Target({"kind": "llvm", "num-cores": host.cores, "mcpu": mcpu, "mattr": list(mattr)})
    return HostTarget(target, mcpu, mattr, host.cores, bits, host.threads)


def parse_rpc(address: str) -> tuple[str, int, str | None]:
    """``HOST:PORT:KEY`` (a tracker) or ``HOST:PORT`` (one server) -> (host, port, key or None)."""
    parts = address.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].isdigit() or (len(parts) == 3 and not parts[2]):
        raise ValueError(f"--rpc takes HOST:PORT:KEY (a TVM RPC tracker and a device key) or HOST:PORT "
                         f"(one RPC server), not {address!r}")
    return parts[0], int(parts[1]), parts[2] if len(parts) == 3 else None


def set_threads(threads: int | None) -> None:
    """Run TVM's parallel loops on ``threads`` threads; must happen before the first one runs."""
    if threads is None:
        return
    os.environ["TVM_NUM_THREADS"] = str(threads)
    import tvm

    actual = int(tvm.get_global_func("runtime.NumThreads")())
    if actual != threads:
        raise RuntimeError(f"TVM's thread pool already runs {actual} threads in this process; "
                           f"collect with --threads {threads} in a fresh process")


# ----------------------------------------------------------------------------------- collecting


def plan(models: Sequence[str], *, synthetic: int, variants: int, seed: int, full_space: int = 0,
         progress: Callable[[str], None] = lambda s: None) -> list[KernelJob]:
    """Every job, interleaved across networks (deterministic for a seed, so a rerun resumes).

    With ``full_space`` that many tiled kernels per network get every candidate of the schedule
    search measured, first, so a search guided by the model can be compared with measuring them all.
    """
    rng = np.random.default_rng(seed)
    pick = np.random.default_rng(seed + 1)  # its own stream, so the rest of the plan does not change
    groups, full = [], []
    for name in models:
        if name not in NETWORK_OPTIONS:
            raise ValueError(f"unknown network '{name}' (available: {', '.join(NETWORK_OPTIONS)}, {SYNTHETIC})")
        jobs: list[KernelJob] = []
        for options in NETWORK_OPTIONS[name]:
            progress(f"importing {name} {options}")
            jobs += plan_graph(name, network_graph(name, options), rng, variants)
        groups.append(_dedupe(jobs))
        full += full_space_jobs(groups[-1], full_space, pick)
    if synthetic:
        jobs = []
        for g in synthetic_graphs(synthetic, seed):
            jobs += plan_graph(SYNTHETIC, g, rng, variants, origins=("rule", "unfused"))
        groups.append(_dedupe(jobs))
    return _dedupe(full + interleave(groups, rng))


def full_space_jobs(jobs: Sequence[KernelJob], count: int, rng: np.random.Generator,
                    sizes: tuple[int, int] = (10, 160)) -> list[KernelJob]:
    """Jobs measuring every schedule candidate of ``count`` kernels among ``jobs`` (spaces of ``sizes``)."""
    from ..passes.search_space import candidates

    if count <= 0:
        return []
    kernels = {j.workload: j for j in jobs if j.origin == "rule"}
    spaces = {w: candidates(j.kernel, constants=j.constants) for w, j in kernels.items()}
    fitting = sorted(w for w, space in spaces.items() if sizes[0] <= len(space) <= sizes[1])
    chosen = [fitting[int(i)] for i in rng.choice(len(fitting), size=min(count, len(fitting)), replace=False)] \
        if fitting else []
    out = []
    for w in chosen:
        j = kernels[w]
        for sched in [{}, *spaces[w]]:
            out.append(KernelJob(j.model, FULL_SPACE, j.kernel, {k: tuple(v) if isinstance(v, list) else v
                                                                  for k, v in sched.items()},
                                 j.weight, j.workload, j.ir, j.constants))
    return out


def _dedupe(jobs: Sequence[KernelJob]) -> list[KernelJob]:
    seen, out = set(), []
    for j in jobs:
        key = record_key(j.model, j.workload, j.schedule, 0)
        if key not in seen:
            seen.add(key)
            out.append(j)
    return out


def collect(dataset_path: str | Path, *, models: Sequence[str] | None = None, synthetic: int = 300,
            variants: int = 4, full_space: int = 0, budget_s: float = 900.0, rpc: str | None = None,
            isa: str | None = None, timing: Timing | None = None, seed: int = 0, ops: Sequence[str] | None = None,
            progress: bool = True) -> CollectReport:
    """Measure planned kernels until done or out of ``budget_s`` seconds; append to the dataset.

    Kernels are built and timed in batches; the next one is not started when it would end past the
    budget if it took as long as the last one.

    ``isa`` compiles for an older vector ISA level of this CPU (``avx2``): another device. ``ops``
    keeps only kernels containing one of these ops (re-measuring them after their lowering changed).
    """
    from tqdm import tqdm

    start = time.perf_counter()
    timing = timing or Timing()
    runner: Runner = RPCRunner(rpc, timing, seed, isa) if rpc else Runner(timing, seed, isa)
    device, threads = runner.fingerprint(), runner.threads()
    path = Path(dataset_path)
    ds = Dataset.load(path, device=device, quiet=True) if path.exists() else Dataset(path, device)
    if ds.device is None:
        ds.device = device
    report = CollectReport(str(path), device, threads, rejected=dict(ds.rejected))
    if ds.device != device:
        raise ValueError(f"{path} holds measurements of {ds.device!r}, this run measures {device!r}; "
                         "use another dataset file per device")
    bar = tqdm(total=None, disable=not progress, unit="kernel", dynamic_ncols=True)
    jobs = plan(list(models if models is not None else NETWORK_OPTIONS), synthetic=synthetic, variants=variants,
                seed=seed, full_space=full_space, progress=bar.set_description)
    if ops is not None:
        jobs = [j for j in jobs if set(ops) & set(j.ops.split("+"))]
    done = ds.keys()
    todo = [j for j in jobs if record_key(j.model, j.workload, j.schedule, threads) not in done]
    report.planned, report.skipped_existing = len(jobs), len(jobs) - len(todo)
    bar.reset(total=len(todo))
    bar.set_description("measuring")
    target = runner.describe(threads)
    meta = versions()
    last_batch_s = 0.0
    for i in range(0, len(todo), BATCH):
        # A batch is built and timed as a whole: stop before one that would likely end past the budget.
        if time.perf_counter() - start + last_batch_s > budget_s:
            report.stopped_by_budget = True
            break
        batch_start = time.perf_counter()
        batch = todo[i:i + BATCH]
        records = []
        for job, result in zip(batch, runner.measure(batch)):
            if isinstance(result, str):
                report.failed[result] += 1
                continue
            records.append(Record(
                model=job.model, kernel=job.ops, workload=job.workload, schedule=job.schedule, threads=threads,
                latency_us=min(result), repeats_us=result,
                features=tuple(float(x) for x in kernel_features(job.kernel, job.schedule, target)),
                weight=job.weight, origin=job.origin, ir=job.ir, device=device, versions=meta,
                target=asdict(target)))
        report.measured += ds.append(records)
        last_batch_s = time.perf_counter() - batch_start
        bar.update(len(batch))
        bar.set_postfix(records=len(ds))
    bar.close()
    report.rejected = dict(ds.rejected)
    report.records_total = len(ds)
    report.seconds = time.perf_counter() - start
    return report
