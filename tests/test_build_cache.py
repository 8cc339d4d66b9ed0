"""The TVM build cache: a second compile of the same model opens the kept build instead of running LLVM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from models import make_model

import graphopt
from graphopt.backends.tvm import build_cache
from graphopt.backends.tvm.executable import TVMExecutable
from graphopt.ir import DType, Graph, GraphBuilder, TensorType
from graphopt.ir.interpreter import run_graph
from graphopt.ir.parser import parse_ir
from graphopt.ir.printer import print_graph_with_constants

pytest.importorskip("tvm")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRAPHOPT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("GRAPHOPT_BUILD_CACHE", "1")  # conftest turns it off for every other test
    monkeypatch.setattr(build_cache, "MIN_BUILD_SECONDS", 0.0)  # keep even the quick builds of small models
    return tmp_path / "builds"


def _compile(name: str) -> tuple[graphopt.CompiledModel, list[np.ndarray]]:
    module, inputs = make_model(name)
    return graphopt.compile(module, inputs, backend="tvm", tune="none"), [t.numpy() for t in inputs]


def test_second_compile_opens_the_kept_build(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, xs = _compile("resnet")
    assert len(list(cache.iterdir())) == 1
    built = []
    real_init = TVMExecutable.__init__

    def counting_init(self: TVMExecutable, *args: object, **kwargs: object) -> None:
        built.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(TVMExecutable, "__init__", counting_init)
    second, _ = _compile("resnet")
    assert not built  # nothing was compiled: the build came from the cache
    want = run_graph(second.graph, xs)
    for got in (first(*xs), second(*xs)):
        np.testing.assert_allclose(got, want[0], rtol=1e-4, atol=1e-5)
    # A build opened from the cache saves as an artifact like a fresh one.
    artifact = second.save(cache.parent / "resnet.gopt")
    np.testing.assert_allclose(graphopt.load(artifact)(*xs), want[0], rtol=1e-4, atol=1e-5)
    text, consts = print_graph_with_constants(second.graph)
    assert parse_ir(text, consts).to_text() == text


def test_the_key_covers_the_weights(cache: Path) -> None:
    def graph(weight: float) -> Graph:
        b = GraphBuilder("affine")
        x = b.input("x", TensorType((4, 8), DType.f32))
        return b.build([b.op1("math.mul", x, b.const(np.full((4, 8), weight, np.float32), "w"))])

    assert build_cache.build_key(graph(1.0)) == build_cache.build_key(graph(1.0))
    assert build_cache.build_key(graph(1.0)) != build_cache.build_key(graph(2.0))


def test_damaged_entry_is_rebuilt_with_a_warning(cache: Path) -> None:
    _, xs = _compile("mlp")
    (entry,) = cache.iterdir()
    for lib in entry.glob("*.so"):
        lib.write_bytes(b"not a library")
    with pytest.warns(UserWarning, match="cannot open.*rebuilding"):
        m, _ = _compile("mlp")
    np.testing.assert_allclose(m(*xs), run_graph(m.graph, xs)[0], rtol=1e-4, atol=1e-5)


def test_only_the_most_recent_builds_are_kept(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_cache, "KEEP_BUILDS", 2)
    for name in ("mlp", "resnet", "mobilenet_v2"):
        _compile(name)
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2
