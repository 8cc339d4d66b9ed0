"""The tuning database: round trip, best record wins, foreign and corrupted records are skipped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from graphopt.ir import DType, GraphBuilder, TensorType
from graphopt.passes.tuning_db import TuningDatabase, TuningRecord, workload_key


def kernel(n: int) -> object:
    b = GraphBuilder("k")
    x = b.input("x", TensorType((n, 8), DType.f32))
    w = b.const(np.ones((8, 4), np.float32), "w")
    return b.build([b.op1("nn.relu", b.op1("nn.matmul", x, w))])


def test_workload_key_depends_on_shapes_not_weights() -> None:
    assert workload_key(kernel(4)) == workload_key(kernel(4))
    assert workload_key(kernel(4)) != workload_key(kernel(5))


def test_best_record_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "db.jsonl"
    db = TuningDatabase(path, target="llvm-test")
    key = workload_key(kernel(4))
    db.add(TuningRecord(key, "llvm-test", {"tile": [8, 8]}, 12.0))
    db.add(TuningRecord(key, "llvm-test", {"tile": [16, 8]}, 9.5))
    again = TuningDatabase(path, target="llvm-test")
    rec = again.lookup(key)
    assert rec is not None and rec.latency_us == 9.5 and rec.schedule == {"tile": [16, 8]}
    assert len(again) == 1 and again.skipped == {}


def test_corrupted_and_foreign_records_are_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "db.jsonl"
    db = TuningDatabase(path, target="llvm-test")
    key = workload_key(kernel(4))
    db.add(TuningRecord(key, "llvm-test", {"tile": [8, 8]}, 12.0))
    db.add(TuningRecord(key, "cuda", {"tile": [1, 1]}, 1.0))
    db.add(TuningRecord(key, "llvm-test", {"tile": [2, 2]}, 2.0, versions={"graphopt": "0.0.1"}))
    lines = path.read_text().splitlines()
    tampered = json.loads(lines[0])
    tampered["latency_us"] = 0.5  # edited by hand: the checksum no longer matches
    path.write_text("\n".join(lines + [json.dumps(tampered), "{not json"]) + "\n")
    with pytest.warns(UserWarning, match="skipped records"):
        again = TuningDatabase(path, target="llvm-test")
    assert again.skipped == {"bad checksum": 1, "other target": 1, "other versions": 1, "unreadable": 1}
    rec = again.lookup(key)
    assert rec is not None and rec.latency_us == 12.0
