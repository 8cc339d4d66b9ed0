"""The TVM backend: each kernel becomes a TIR PrimFunc, the graph a Relax function run by the VM.

A kernel is one ``fused`` node's body or one standalone op node. ``lower`` turns its ops into TE
compute, ``kernel`` assembles and schedules the PrimFunc (``KernelSchedule`` holds the knobs a
schedule search fills in), ``module`` builds the Relax IRModule in graphopt's node order, and
``executable`` compiles it with LLVM for the host CPU and runs it. A kernel TVM cannot lower or
build runs on the reference interpreter instead and is listed in ``describe()``. ``measure`` holds
the timing hook a schedule search uses (``passes.base.KernelMeasurer``).

TVM is imported only when a build starts; ``require_tvm`` gives one clear error when it is missing
or of another version.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import TYPE_CHECKING

from .schedule import KernelSchedule

if TYPE_CHECKING:
    from ...ir.graph import Graph
    from .executable import TVMExecutable

TVM_VERSION = "0.27.0.post1"
TVM_FFI_VERSION = "0.1.14.post1"
INSTALL_HINT = f"pip install 'apache-tvm=={TVM_VERSION}' 'apache-tvm-ffi=={TVM_FFI_VERSION}'"


class TVMUnavailableError(ImportError):
    """TVM is missing or is not the version this backend was written against."""


def _installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def require_tvm() -> None:
    """Import TVM, or raise TVMUnavailableError naming the packages and versions to install."""
    tvm_v, ffi_v = _installed("apache-tvm"), _installed("apache-tvm-ffi")
    # TVM's API moves between releases and apache-tvm-ffi 0.1.15 segfaults, so only the pinned
    # pair is accepted (any local build suffix of the same release is fine).
    if tvm_v is None or ffi_v is None or not tvm_v.startswith(TVM_VERSION.split(".post")[0]) \
            or not ffi_v.startswith(TVM_FFI_VERSION.split(".post")[0]):
        found = f"found apache-tvm {tvm_v or 'not installed'}, apache-tvm-ffi {ffi_v or 'not installed'}"
        raise TVMUnavailableError(
            f"the tvm backend needs apache-tvm=={TVM_VERSION} with apache-tvm-ffi=={TVM_FFI_VERSION} "
            f"({found}); install them with: {INSTALL_HINT}")
    try:
        import tvm  # noqa: F401
        from tvm import relax, te  # noqa: F401
    except Exception as e:  # a broken install fails in many ways; all of them mean the same to a user
        raise TVMUnavailableError(
            f"apache-tvm {tvm_v} is installed but does not import ({type(e).__name__}: {e}); "
            f"reinstall it with: {INSTALL_HINT}") from e


def build_tvm(graph: Graph, schedules: Mapping[str, KernelSchedule] | None = None) -> TVMExecutable:
    """Compile ``graph`` with TVM for the host CPU (``schedules`` by kernel name override defaults).

    Without ``schedules`` (the schedules are then the graph's own ``sched`` annotations) a build
    kept in the build cache is reused (``build_cache``).
    """
    require_tvm()
    from .executable import TVMExecutable

    if schedules is None:
        from .build_cache import build_cached

        return build_cached(graph)
    return TVMExecutable(graph, schedules)


__all__ = ["TVM_FFI_VERSION", "TVM_VERSION", "KernelSchedule", "TVMUnavailableError", "build_tvm", "require_tvm"]
