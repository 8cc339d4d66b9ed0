"""How good a cost model is: error, ranking, search usefulness and calibration of its intervals.

* ``mape``: mean absolute percentage error of the point prediction.
* ``kendall_tau``: rank correlation (tau-b) of predictions with measurements over all kernels.
* ``pairwise_accuracy``: share of pairs ordered correctly, counted within tasks (one kernel's
  schedules, as TenSet counts it) or over all pairs when no tasks are given.
* ``top_k_score``: TenSet's search score. Per task the model picks its k best-predicted schedules;
  the score is sum(w * best measured latency) / sum(w * best latency among the k picks), w being
  how often the task occurs in its network. 1.0 means the model always finds the best schedule.
  Only tasks with more than k measured schedules count (with k or fewer the pick is trivial).
* ``search_score``: a search that measures only the best-predicted 20 % of each kernel's schedule
  candidates, as a share of the best latency that measuring all of them finds. ``evaluate`` counts
  only the schedule search's own full candidate sets when it is told which records those are: a
  kernel's other records are random schedules the search never proposes, and the best of them
  says nothing about how well the search finds the best of its own candidates.
* ``coverage``: share of measurements inside the predicted [low, high] interval.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np


def mape(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean of |pred - y| / y."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    return float(np.mean(np.abs(pred - y) / y))


def kendall_tau(y: np.ndarray, pred: np.ndarray) -> float:
    """Kendall's tau-b between measured and predicted values (ties counted as in scipy)."""
    from scipy.stats import kendalltau

    if len(y) < 2:
        return float("nan")
    return float(kendalltau(y, pred).statistic)


def _tasks(groups: Sequence[str] | None, n: int) -> list[np.ndarray]:
    if groups is None:
        return [np.arange(n)]
    index: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        index[g].append(i)
    return [np.array(v) for v in index.values()]


def pairwise_accuracy(y: np.ndarray, pred: np.ndarray, groups: Sequence[str] | None = None) -> float:
    """Share of pairs (with different measurements) that the prediction orders the same way."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    right = total = 0
    for idx in _tasks(groups, len(y)):
        if len(idx) < 2:
            continue
        dy = np.sign(y[idx, None] - y[None, idx])
        dp = np.sign(pred[idx, None] - pred[None, idx])
        upper = np.triu(np.ones((len(idx), len(idx)), bool), k=1) & (dy != 0)
        right += int(np.sum((dy == dp) & upper))
        total += int(np.sum(upper))
    return right / total if total else float("nan")


def top_k_score(y: np.ndarray, pred: np.ndarray, groups: Sequence[str], k: int,
                weights: Sequence[float] | None = None) -> float:
    """TenSet's top-k score over tasks with more than k measured schedules (1.0 is perfect).

    Tasks with k or fewer schedules are left out: picking k of them always finds the best.
    """
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, float)
    best = picked = 0.0
    for idx in _tasks(groups, len(y)):
        if len(idx) <= k:
            continue
        order = idx[np.argsort(pred[idx], kind="stable")]
        best += w[idx[0]] * y[idx].min()
        picked += w[idx[0]] * y[order[:k]].min()
    return best / picked if picked else float("nan")


def search_score(y: np.ndarray, pred: np.ndarray, groups: Sequence[str], fraction: float = 0.2,
                 min_candidates: int = 10) -> dict[str, float]:
    """A model-guided search that measures only the best-predicted ``fraction`` of each task's
    candidates, against measuring them all: the mean and worst ratio best / found over tasks with at
    least ``min_candidates`` measured candidates, and how many tasks reach 95 %."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    ratios = []
    for idx in _tasks(groups, len(y)):
        if len(idx) < min_candidates:
            continue
        k = max(1, int(np.ceil(fraction * len(idx))))
        picked = idx[np.argsort(pred[idx], kind="stable")[:k]]
        ratios.append(y[idx].min() / y[picked].min())
    if not ratios:
        return {"tasks": 0}
    r = np.array(ratios)
    return {"tasks": len(r), "fraction_measured": fraction, "mean": float(r.mean()), "worst": float(r.min()),
            "tasks_at_95pct": float(np.mean(r >= 0.95))}


def coverage(y: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """Share of measurements with low <= y <= high."""
    y = np.asarray(y, float)
    return float(np.mean((y >= np.asarray(low)) & (y <= np.asarray(high))))


def evaluate(y: np.ndarray, mean: np.ndarray, low: np.ndarray, high: np.ndarray, groups: Sequence[str] | None = None,
             weights: Sequence[float] | None = None, candidate_set: Sequence[bool] | None = None) -> dict[str, Any]:
    """Every metric above as a dict (ranking metrics need ``groups``: one task per kernel).

    ``candidate_set`` marks the records of full schedule-search candidate sets; when given, only
    they count for ``search_20pct`` (all records with enough schedules per task otherwise).
    """
    out: dict[str, Any] = {"n": len(y), "mape": mape(y, mean), "kendall_tau": kendall_tau(y, mean),
                           "coverage": coverage(y, low, high)}
    if groups is not None:
        out["pairwise_accuracy"] = pairwise_accuracy(y, mean, groups)
        out["top1_score"] = top_k_score(y, mean, groups, 1, weights)
        out["top5_score"] = top_k_score(y, mean, groups, 5, weights)
        sizes = [len(t) for t in _tasks(groups, len(y))]
        out["tasks"] = sum(n >= 2 for n in sizes)
        out["tasks_over_5"] = sum(n > 5 for n in sizes)
        if candidate_set is None:
            out["search_20pct"] = search_score(y, mean, groups)
        else:
            keep = np.flatnonzero(np.asarray(candidate_set, bool))
            out["search_20pct"] = search_score(np.asarray(y, float)[keep], np.asarray(mean, float)[keep],
                                               [groups[i] for i in keep])
    return out
