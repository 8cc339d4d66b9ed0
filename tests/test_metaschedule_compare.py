"""The comparison with TVM MetaSchedule's XGBModel (benchmarks/metaschedule_compare.py) on a tiny subset."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from graphopt.benchmarks.metaschedule_compare import (
    GraphoptRanker,
    MetaScheduleRanker,
    build_tasks,
    compare,
    format_table,
)
from graphopt.costmodel import SHIPPED
from graphopt.costmodel.dataset import Dataset, Record


@pytest.fixture(scope="module")
def shipped() -> Dataset:
    return Dataset.load(SHIPPED.parent / "dataset.jsonl.xz").select(threads=1)


@pytest.fixture(scope="module")
def small(shipped: Dataset) -> tuple[str, str]:
    """The two networks with the smallest full candidate sets (a dozen candidates or so)."""
    sizes = Counter(r.model for r in shipped.records if r.origin == "full-space")
    first, second = sorted(sizes, key=lambda m: sizes[m])[:2]
    return first, second


@pytest.fixture(scope="module")
def records(shipped: Dataset, small: tuple[str, str]) -> list[Record]:
    full = [r for r in shipped.records if r.origin == "full-space" and r.model in small]
    # A few dozen kernels to train on: random kernels and rule kernels of a third network.
    other = next(m for m in shipped.models() if m not in small and m != "synthetic")
    extra = ([r for r in shipped.records if r.model == "synthetic"][:40]
             + [r for r in shipped.records if r.model == other and r.origin == "rule"][:30])
    return full + extra


def test_tasks_group_lowered_candidates_by_kernel(records: list[Record], small: tuple[str, str]) -> None:
    tasks, skipped = build_tasks(records)
    assert sum(len(t.records) for t in tasks) + sum(skipped.values()) == len(records)
    full = [t for t in tasks if t.full_space]
    assert sorted(t.model for t in full) == sorted(small)
    for t in full:
        assert len(t.funcs) == len(t.records) >= 10
        # Different schedules of one kernel lower to different TIR: the features can tell them apart.
        assert len({str(f) for f in t.funcs}) > 1


@pytest.mark.slow  # TuneContext imports TVM's tensor intrinsics once: about 20 s
def test_both_models_rank_every_candidate(records: list[Record], small: tuple[str, str]) -> None:
    tasks, _ = build_tasks(records)
    test = next(t for t in tasks if t.model == small[0] and t.full_space)
    train = [t for t in tasks if t.model != small[0]]
    theirs = MetaScheduleRanker()
    theirs.fit(train)
    ours = GraphoptRanker()
    ours.fit([r for t in train for r in t.records], None)
    for ranker in (theirs, ours):
        p = ranker.predict(test)
        assert p.shape == (len(test.records),) and np.all(np.isfinite(p))
    # Predictions come from the trained booster, not XGBModel's random warm-up scores.
    assert np.array_equal(theirs.predict(test), theirs.predict(test))
    assert theirs.fit_s > 0 and theirs.model.data_size == sum(len(t.records) for t in train)


@pytest.mark.slow
def test_compare_scores_both_models_on_the_held_out_kernels(records: list[Record], small: tuple[str, str]) -> None:
    result = compare(records)
    assert [r["network"] for r in result.rows] == sorted(small)
    for row in result.rows:
        for label in ("graphopt", "metaschedule"):
            s = row[label]
            assert 0 < s["search_20pct"] <= 1 and 0 < s["top1"] <= 1 and 0 <= s["pairwise"] <= 1
    for label in ("graphopt", "metaschedule"):
        pooled = result.pooled[label]
        assert pooled["candidates"] == sum(r["candidates"] for r in result.rows)
        assert pooled["search_20pct"]["tasks"] == 2 and 0 < pooled["search_20pct"]["worst"] <= 1
    table = format_table(result)
    assert "pooled" in table and all(name in table for name in small)
