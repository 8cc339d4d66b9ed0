"""A cache of compiled TVM builds, so compiling the same model again skips LLVM.

LLVM code generation is most of a warm compile (the tuning database already skips the search):
DenseNet-121's 136 distinct kernels take about 24 s to generate. A build is keyed by everything
that decides its machine code: the IR text after the passes (kernels, schedules and memory plan
are all annotations in it), the constants' bytes, the host target and the TVM and graphopt
versions. It is kept with ``TVMExecutable.save`` under ``<cache>/builds/<key>/`` and opened with
``TVMExecutable.load``. Only builds that took at least ``MIN_BUILD_SECONDS`` are kept (writing a
library costs seconds too, and small models build faster than that), and only the
``KEEP_BUILDS`` most recently used: each holds the model's weights. ``GRAPHOPT_BUILD_CACHE=0``
turns it off (the test suite does, so that a test's build never comes from another test).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import warnings
from pathlib import Path

from ... import __version__
from ...ir.graph import Graph
from ...ir.printer import print_graph_with_constants
from ...passes.tuning_db import cache_dir
from . import TVM_FFI_VERSION, TVM_VERSION
from .executable import MANIFEST, TVMExecutable
from .target import host_target

MIN_BUILD_SECONDS = 5.0
KEEP_BUILDS = 8


def build_key(graph: Graph) -> str:
    """A hash of what decides the compiled code of ``graph`` on this machine."""
    text, constants = print_graph_with_constants(graph)
    h = hashlib.sha256()
    for part in (text, str(host_target().target), TVM_VERSION, TVM_FFI_VERSION, __version__):
        h.update(part.encode() + b"\0")
    for name in sorted(constants):
        data = constants[name]
        h.update(f"{name}:{data.dtype}:{data.shape}".encode())
        h.update(memoryview(data).cast("B") if data.flags.c_contiguous else data.tobytes())
    return h.hexdigest()[:32]


def build_cached(graph: Graph) -> TVMExecutable:
    """``graph`` compiled for the host CPU: from the cache when an equal build was kept, else built
    (and kept when it was slow to build). A cached build that fails to open is rebuilt, with a warning."""
    if any(not v.type.is_static for v in graph.inputs) or os.environ.get("GRAPHOPT_BUILD_CACHE") == "0":
        return TVMExecutable(graph)  # a dynamic graph builds per input shape at run time
    folder = cache_dir() / "builds" / build_key(graph)
    if (folder / MANIFEST).exists():
        try:
            exe = TVMExecutable.load(folder, graph)
            folder.touch()  # most recently used
            return exe
        except Exception as e:  # noqa: BLE001 - a damaged or stale entry: rebuild it
            warnings.warn(f"build cache {folder}: cannot open ({type(e).__name__}: {e}); rebuilding",
                          stacklevel=2)
            shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    exe = TVMExecutable(graph)
    if time.perf_counter() - start >= MIN_BUILD_SECONDS:
        _keep(exe, folder)
    return exe


def _keep(exe: TVMExecutable, folder: Path) -> None:
    # Written beside and renamed, so a reader never sees a half-written entry.
    partial = folder.with_name(folder.name + ".partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        exe.save(partial)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    except OSError as e:  # a full disk or a read-only cache must not fail the compile
        warnings.warn(f"build cache {folder}: not kept ({e})", stacklevel=3)
        shutil.rmtree(partial, ignore_errors=True)
        return
    entries = sorted((p for p in folder.parent.iterdir() if p.is_dir() and not p.name.endswith(".partial")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP_BUILDS:]:
        shutil.rmtree(old, ignore_errors=True)
