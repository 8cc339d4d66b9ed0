"""``TVMExecutable``: the graph compiled by TVM for the host CPU and run by Relax's VirtualMachine.

A graph with symbolic dims (a dynamic batch) is specialized to the concrete input shapes on the
first call with those shapes; one build is kept per shape signature. A static graph is built at
once. Kernels TVM cannot lower or compile run on the reference interpreter through a registered
Python function; ``describe()`` lists each with its reason.

A graph planned by ``plan-memory`` runs inside graphopt's arenas (``module.arena_layout``) when the
plan holds for the build's input shapes; otherwise that build uses TVM's own allocation, and
``describe()`` says which and why.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm import relax

from ...ir.graph import CONST, Graph, Node
from ...ir.interpreter import check_inputs, run_node
from ...ir.types import DType
from . import TVM_FFI_VERSION, TVM_VERSION
from .module import KernelRecord, MemoryUse, arena_layout, build_kernels, build_module, specialize
from .schedule import KernelSchedule
from .target import HostTarget, host_target

Signature = tuple[tuple[int, ...], ...]
MANIFEST = "manifest.json"
SAVE_FORMAT = 1


@dataclass
class _Build:
    """One compiled specialization of the graph."""

    signature: Signature
    executable: Any  # tvm.runtime.Executable (freshly built) or a loaded runtime Module
    vm: relax.VirtualMachine
    records: list[KernelRecord]
    seconds: float
    memory: MemoryUse
    library: Path | None = None  # the shared library a loaded build came from (TVM cannot re-export it)

    def __post_init__(self) -> None:
        self.main = self.vm["main"]  # looked up once: the lookup costs about a microsecond per call


class TVMExecutable:
    """A graph compiled with TVM (Relax VM over TIR kernels), with interpreter fallbacks listed."""

    name = "tvm"

    def __init__(self, graph: Graph, schedules: Mapping[str, KernelSchedule] | None = None) -> None:
        self.graph = graph
        self.target: HostTarget = host_target()
        self._schedules = dict(schedules or {})
        # Fallback functions live in TVM's global registry; a per-executable prefix keeps two
        # executables in one process apart, and is saved so a reloaded library finds them again.
        self._prefix = f"graphopt.fallback.{uuid.uuid4().hex[:12]}"
        self._builds: dict[Signature, _Build] = {}
        self.dynamic = any(not v.type.is_static for v in graph.inputs)
        self._copy_out = _copied_outputs(graph)
        if not self.dynamic:
            self._build(tuple(tuple(int(d) for d in v.type.shape) for v in graph.inputs))  # type: ignore[misc]

    # ------------------------------------------------------------------------------------ running

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Outputs for ``inputs`` given in graph-input order (built first for a new input shape)."""
        arrays = [np.asarray(a) for a in inputs]
        check_inputs(self.graph, arrays)
        signature = tuple(tuple(int(d) for d in a.shape) for a in arrays)
        build = self._builds.get(signature) or self._build(signature)
        outs = build.main(*(_to_tvm(a) for a in arrays))
        return [o.numpy() if copy else _from_tvm(o) for o, copy in zip(outs, self._copy_out)]

    def _build(self, signature: Signature) -> _Build:
        start = time.perf_counter()
        forced: dict[int, str] = {}
        while True:
            mod, kernels, records, memory = self._module(signature, forced)
            try:
                executable = tvm.compile(mod, self.target.target, relax_pipeline="default")
                break
            except Exception as e:
                bad = self._failing_kernels(kernels)
                if not bad:
                    raise RuntimeError(f"TVM could not build graph @{self.graph.name}: {e}") from e
                forced.update(bad)
        self._register_fallbacks(records)
        vm = relax.VirtualMachine(executable, tvm.cpu())
        build = _Build(signature, executable, vm, records, time.perf_counter() - start, memory)
        self._builds[signature] = build
        return build

    def _module(self, signature: Signature, forced: Mapping[int, str]
                ) -> tuple[tvm.IRModule, dict[int, Any], list[KernelRecord], MemoryUse]:
        """The Relax module for inputs of ``signature`` (kernels in ``forced`` on the interpreter)."""
        types = specialize(self.graph, [v.type.with_shape(s) for v, s in zip(self.graph.inputs, signature)])
        layout, why = arena_layout(self.graph, types)
        kernels, records = build_kernels(self.graph, types, self._schedules, self.target, forced)
        mod, notes = build_module(self.graph, types, kernels, self._fallback_name, layout)
        for record in records:
            record.shares = notes.shared.get(record.node_index)
            if record.node_index in notes.views:
                record.schedule = "view: no kernel runs, its result is its operand's bytes in the arena"
        return mod, kernels, records, MemoryUse.of(mod, why, len(notes.views), len(notes.in_place))

    def relax_module(self, signature: Signature | None = None) -> tvm.IRModule:
        """The Relax module the build for ``signature`` (default: the first) compiled, rebuilt for inspection
        (builds keep only the compiled code)."""
        if signature is None:
            signature = next(iter(self._builds))
        forced = {r.node_index: r.fallback for r in self._builds[signature].records if r.fallback is not None}
        return self._module(signature, forced)[0]

    def _failing_kernels(self, kernels: Mapping[int, Any]) -> dict[int, str]:
        bad = {}
        for index, kernel in kernels.items():
            try:
                func = kernel.func.with_attr("global_symbol", kernel.name)
                tvm.compile(tvm.IRModule({kernel.name: func}), self.target.target)
            except Exception as e:  # noqa: BLE001
                bad[index] = f"LLVM build failed: {str(e).strip().splitlines()[-1][:300]}"
        return bad

    def _fallback_name(self, index: int) -> str:
        return f"{self._prefix}.n{index}"

    def _register_fallbacks(self, records: Sequence[KernelRecord]) -> None:
        for record in records:
            if record.fallback is not None:
                node = self.graph.nodes[record.node_index]
                tvm.register_global_func(self._fallback_name(record.node_index), _fallback_fn(node), override=True)

    # ----------------------------------------------------------------------------------- reporting

    def describe(self) -> list[str]:
        """Report lines: the target, each build, each kernel's schedule, and every fallback (loudly)."""
        lines = [f"TVM {TVM_VERSION}, {self.target.describe()}"]
        if self.dynamic:
            dims = sorted({d for v in self.graph.inputs for d in v.type.shape if isinstance(d, str)})
            built = ", ".join(_sig_text(s) for s in self._builds) or "none yet"
            lines.append(f"dynamic dims {', '.join(dims)}: specialized and built once per input-shape signature, "
                         f"on the first call with it (built: {built})")
        for build in self._builds.values():
            falls = [r for r in build.records if r.fallback is not None]
            unique = sum(1 for r in build.records if r.fallback is None and r.shares is None)
            lines.append(f"build for inputs {_sig_text(build.signature)}: {len(build.records)} kernels, "
                         f"{len(build.records) - len(falls)} TIR ({unique} distinct), {len(falls)} on the "
                         f"interpreter ({build.seconds:.2f} s)")
            lines.append(f"  {build.memory.describe()}")
            for r in falls:
                lines.append(f"  FALLBACK {r.name} [{r.ops}] runs on the reference interpreter: {r.fallback}")
            for r in build.records:
                if r.fallback is None:
                    shares = f" (same code as {r.shares})" if r.shares else ""
                    lines.append(f"  {r.name} [{r.ops}]: {r.schedule}{shares}")
        return lines

    def memory(self) -> dict[Signature, MemoryUse]:
        """How each build allocates activations: graphopt's arenas (sizes, tensors) or TVM's own."""
        return {sig: b.memory for sig, b in self._builds.items()}

    def fallbacks(self) -> list[KernelRecord]:
        """Every kernel, over all builds, that runs on the interpreter."""
        return [r for b in self._builds.values() for r in b.records if r.fallback is not None]

    def kernels(self) -> list[KernelRecord]:
        """Every kernel record over all builds (name, ops, schedule or fallback reason)."""
        return [r for b in self._builds.values() for r in b.records]

    # ------------------------------------------------------------------------------ saving, loading

    def save(self, directory: str | Path) -> Path:
        """Write the built libraries and a manifest into ``directory`` (``load`` reads them back)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        builds = []
        for i, build in enumerate(self._builds.values()):
            library = f"kernels{i}.so"
            if build.library is None:
                with _without_scope_logs():
                    build.executable.export_library(str(directory / library))
            elif build.library.exists():
                shutil.copyfile(build.library, directory / library)
            else:
                raise FileNotFoundError(f"{build.library}, which this model was loaded from, is gone "
                                        "(evicted from the build cache?); compile the model again to save it")
            builds.append({"signature": [list(s) for s in build.signature], "library": library,
                           "seconds": build.seconds, "kernels": [r.to_json() for r in build.records],
                           "memory": build.memory.to_json()})
        manifest = {"format": SAVE_FORMAT, "apache-tvm": TVM_VERSION, "apache-tvm-ffi": TVM_FFI_VERSION,
                    "target": str(self.target.target), "fallback_prefix": self._prefix, "builds": builds}
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path, graph: Graph) -> TVMExecutable:
        """Open what ``save`` wrote, for ``graph``, without recompiling (unless built for another CPU)."""
        directory = Path(directory)
        manifest = json.loads((directory / MANIFEST).read_text())
        if manifest.get("format") != SAVE_FORMAT:
            raise ValueError(f"{directory}: TVM build format {manifest.get('format')} is not {SAVE_FORMAT}")
        self = cls.__new__(cls)
        self.graph, self.target, self._schedules = graph, host_target(), {}
        self._prefix, self._builds = manifest["fallback_prefix"], {}
        self.dynamic = any(not v.type.is_static for v in graph.inputs)
        self._copy_out = _copied_outputs(graph)
        built_for = manifest["target"]
        versions = (manifest.get("apache-tvm"), manifest.get("apache-tvm-ffi"))
        if built_for != str(self.target.target) or versions != (TVM_VERSION, TVM_FFI_VERSION):
            # Code for another CPU may use instructions this one lacks: rebuild instead of crashing.
            warnings.warn(f"{directory}: built for {built_for} with TVM {versions[0]}, this is "
                          f"{self.target.target} with TVM {TVM_VERSION}; recompiling", stacklevel=2)
            manifest["builds"] = []
        for entry in manifest["builds"]:
            records = [KernelRecord(**r) for r in entry["kernels"]]
            _check_records(graph, records, directory)
            with _without_scope_logs():
                module = tvm.runtime.load_module(str(directory / entry["library"]))
                self._register_fallbacks(records)  # before the VM: it looks them up when it starts
                vm = relax.VirtualMachine(module, tvm.cpu())
                signature = tuple(tuple(s) for s in entry["signature"])
                memory = MemoryUse.from_json(entry["memory"]) if "memory" in entry else MemoryUse("tvm", "", {}, ())
                self._builds[signature] = _Build(signature, module, vm, records, entry["seconds"], memory,
                                                 directory / entry["library"])
        if not self.dynamic and not self._builds:
            self._build(tuple(tuple(int(d) for d in v.type.shape) for v in graph.inputs))  # type: ignore[misc]
        return self


@contextmanager
def _without_scope_logs() -> Iterator[None]:
    """Run the body with the C++ runtime's stderr captured, passing on all but the VM's
    "Warning: Scope Saving:/Loaded:" lines (TVM 0.27 logs one per function when saving or loading
    an executable; they mean nothing to a user)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            kept = [line for line in text.splitlines(keepends=True)
                    if not line.rstrip().endswith(("Warning: Scope Saving:", "Warning: Scope Loaded:"))]
            sys.stderr.write("".join(kept))


def _check_records(graph: Graph, records: Sequence[KernelRecord], directory: Path) -> None:
    from ...passes.schedule import kernel_ops

    for r in records:
        if r.node_index >= len(graph.nodes) or kernel_ops(graph.nodes[r.node_index]) != r.ops:
            raise ValueError(f"{directory}: kernel {r.name} ({r.ops}) does not match the graph; recompile")


def _copied_outputs(graph: Graph) -> list[bool]:
    """Which outputs must be copied out: constants and inputs, which the VM hands back as they are."""
    made = {v for n in graph.nodes if n.op != CONST for v in n.outputs}
    return [v not in made for v in graph.outputs]


_ALIGN = 64  # TVM's kernels assume (and DLPack import checks) 64-byte aligned data


def _to_tvm(a: np.ndarray) -> Any:
    """``a`` as a TVM tensor, sharing its memory when it is aligned, contiguous and writable."""
    if a.dtype == DType.bf16.numpy:  # DLPack has no bfloat16: copy
        return tvm.runtime.tensor(np.require(a, requirements="C"))
    if not (a.flags.c_contiguous and a.flags.writeable and a.ctypes.data % _ALIGN == 0):
        raw = np.empty(a.nbytes + _ALIGN, np.uint8)
        start = -raw.ctypes.data % _ALIGN
        aligned = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
        aligned[...] = a
        a = aligned
    return tvm.runtime.from_dlpack(a)


def _from_tvm(t: Any) -> np.ndarray:
    """A fresh VM result as numpy without a copy (the array keeps the TVM tensor alive)."""
    if str(t.dtype) == "bfloat16":  # DLPack has no bfloat16: copy
        return t.numpy()
    return np.from_dlpack(t)


def _sig_text(signature: Signature) -> str:
    return ", ".join(f"[{','.join(map(str, s))}]" for s in signature)


def _fallback_fn(node: Node) -> Any:
    """A destination-passing function running ``node`` on the interpreter (called by the VM)."""
    n_in = len(node.inputs)
    dtypes = [v.type.dtype.numpy for v in node.outputs]

    def run(*args: Any) -> None:
        results = run_node(node, [a.numpy() for a in args[:n_in]])
        for dst, value, dtype in zip(args[n_in:], results, dtypes):
            dst.copyfrom(np.require(value, dtype=dtype, requirements="C"))

    return run
