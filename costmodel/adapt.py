"""Fit a trained cost model to a new device from a handful of measurements (HELP: "as few as 10").

Two steps, both on ln latency, both kept in the adapted model's files:

1. a per-device correction ``ln t' = scale * ln t + shift``. With few samples only the shift is
   fitted, as the median residual: a new device is most often uniformly faster or slower, a median
   shrugs off a sample that another process slowed down, and a slope fitted to ten noisy points
   swings wildly. From ``SLOPE_SAMPLES`` samples on, the slope is fitted too (ridge towards 1);
2. a few rounds of shallow, strongly regularized trees on what the correction leaves (kept as a
   third, ``residual`` booster), so that kernels the new device treats differently (compute-bound
   ones on a narrower vector unit, parallel ones with fewer threads) move relative to the others.

Leave-one-out error on the samples decides how much of this is kept (nothing, the shift, or both):
a device close to the trained one keeps the model unchanged. The interval moves with the point
prediction. ``evaluate_adaptation`` shows the effect on one held-out measurement condition:
samples drawn from it, metrics on the rest of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import metrics
from .model import PARAMS, CostModel

SLOPE_SAMPLES = 30
RIDGE = 2.0  # pull of the slope towards 1, in units of samples (ln-latency spreads are a few units)
ROUNDS = 4
TREE_PARAMS: dict[str, Any] = {"max_depth": 2, "eta": 0.3, "min_child_weight": 1.0, "lambda": 10.0,
                               "subsample": 1.0, "colsample_bytree": 1.0}


def linear_correction(pred_log: np.ndarray, logy: np.ndarray, ridge: float = RIDGE) -> tuple[float, float]:
    """(scale, shift) minimizing sum((scale*p + shift - y)^2) + ridge*(scale-1)^2 (the shift is free)."""
    p, y = np.asarray(pred_log, float), np.asarray(logy, float)
    a = np.array([[p @ p + ridge, p.sum()], [p.sum(), len(p)]])
    b = np.array([p @ y + ridge, y.sum()])
    scale, shift = np.linalg.solve(a, b)
    return float(scale), float(shift)


def correction(pred_log: np.ndarray, logy: np.ndarray) -> tuple[float, float]:
    """(scale, shift): the median residual for few samples, a ridge line from ``SLOPE_SAMPLES`` on."""
    if len(logy) >= SLOPE_SAMPLES:
        return linear_correction(pred_log, logy)
    return 1.0, float(np.median(np.asarray(logy, float) - np.asarray(pred_log, float)))


def _fit(x: np.ndarray, base: np.ndarray, logy: np.ndarray, method: str, rounds: int,
         seed: int) -> tuple[float, float, Any]:
    """(scale, shift, residual booster or None) of one adaptation ``method`` on these samples."""
    if method == "none":
        return 1.0, 0.0, None
    scale, shift = correction(base, logy)
    if method == "shift":
        return scale, shift, None
    import xgboost as xgb

    params = {**PARAMS, **TREE_PARAMS, "objective": "reg:squarederror", "base_score": 0.0, "seed": seed,
              "nthread": 1}
    return scale, shift, xgb.train(params, xgb.DMatrix(x, logy - (scale * base + shift)), rounds)


def _apply(x: np.ndarray, base: np.ndarray, fit: tuple[float, float, Any]) -> np.ndarray:
    scale, shift, trees = fit
    out = scale * base + shift
    return out + trees.inplace_predict(x) if trees is not None else out


METHODS = ("none", "shift", "shift+trees")


def choose_method(x: np.ndarray, base: np.ndarray, logy: np.ndarray, rounds: int, seed: int) -> dict[str, float]:
    """Leave-one-out mean |ln error| of each method on the samples (lower is better)."""
    errors: dict[str, float] = {}
    n = len(logy)
    for method in METHODS:
        if method == "shift+trees" and (rounds <= 0 or n < 4):
            continue
        err = []
        for i in range(n):
            keep = np.arange(n) != i
            fit = _fit(x[keep], base[keep], logy[keep], method, rounds, seed)
            err.append(abs(float(_apply(x[i:i + 1], base[i:i + 1], fit)[0]) - logy[i]))
        errors[method] = float(np.mean(err))
    return errors


def adapt(model: CostModel, x: np.ndarray, latency_us: np.ndarray, *, device: str | None = None,
          rounds: int = ROUNDS, seed: int = 0) -> CostModel:
    """A copy of ``model`` fitted to the device that measured ``latency_us`` for feature rows ``x``.

    Which correction is kept (none, a shift, a shift and residual trees) is chosen by leave-one-out
    error on the samples: a device that differs little from the trained one gains nothing from a
    correction fitted to ten noisy points, and then keeps the model as it is.
    """
    logy = np.log(np.asarray(latency_us, float))
    x = np.asarray(x, np.float32)
    base = model.trained_log(x)
    errors = choose_method(x, base, logy, rounds, seed)
    method = min(errors, key=lambda m: (errors[m], METHODS.index(m)))
    scale, shift, residual = _fit(x, base, logy, method, rounds, seed)
    meta = {**model.meta, "correction": {"scale": scale, "shift": shift},
            "adapted": {"from_device": model.meta.get("device"), "samples": len(logy), "method": method,
                        "loo_abs_ln_error": errors, "rounds": rounds if residual is not None else 0},
            "device": device or model.meta.get("device")}
    return CostModel(model.point, model.interval, meta, residual)


def evaluate_adaptation(model: CostModel, x: np.ndarray, latency_us: np.ndarray, groups: Sequence[str],
                        samples: int, *, seed: int = 0, weights: Sequence[float] | None = None,
                        candidate_set: Sequence[bool] | None = None) -> dict[str, Any]:
    """Adapt on ``samples`` random rows of a new condition, report metrics on the others before and after
    (``candidate_set``: the rows of full schedule-search candidate sets, as ``metrics.evaluate`` takes)."""
    rng = np.random.default_rng(seed)
    n = len(latency_us)
    if samples >= n:
        raise ValueError(f"asked for {samples} adaptation samples but the new device has only {n} measurements")
    pick = rng.choice(n, size=samples, replace=False)
    rest = np.setdiff1d(np.arange(n), pick)
    adapted = adapt(model, x[pick], latency_us[pick], seed=seed)
    y = np.asarray(latency_us, float)[rest]
    g = [groups[i] for i in rest]
    w = [weights[i] for i in rest] if weights is not None else None
    c = [candidate_set[i] for i in rest] if candidate_set is not None else None
    before = metrics.evaluate(y, *model.predict_features(x[rest]), g, w, c)
    after = metrics.evaluate(y, *adapted.predict_features(x[rest]), g, w, c)
    return {"samples": samples, "evaluated": len(rest), "before": before, "after": after,
            "correction": adapted.meta["correction"], "model": adapted}
