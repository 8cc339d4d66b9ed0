"""Fit a trained cost model to a new device from a handful of measurements (HELP: "as few as 10").

Two steps, both on ln latency, both kept in the adapted model's files:

1. a per-device linear correction ``ln t' = scale * ln t + shift``, fitted by ridge regression
   pulled towards the identity (with 10 samples an unregularized slope overreacts to noise);
2. a few more boosting rounds of shallow trees on what the correction leaves (kept as a third,
   ``residual`` booster), so that kernels the new device treats differently (say, parallel ones on
   a device with fewer threads) move relative to the others.

The interval moves with the point prediction. ``evaluate_adaptation`` shows the effect on one
held-out measurement condition: samples drawn from it, metrics on the rest of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import metrics
from .model import PARAMS, CostModel

RIDGE = 2.0  # pull of the slope towards 1 and the shift towards 0, in units of samples
ROUNDS = 8
TREE_PARAMS: dict[str, Any] = {"max_depth": 2, "eta": 0.3, "min_child_weight": 1.0, "lambda": 2.0,
                               "subsample": 1.0, "colsample_bytree": 1.0}


def linear_correction(pred_log: np.ndarray, logy: np.ndarray, ridge: float = RIDGE) -> tuple[float, float]:
    """(scale, shift) minimizing sum((scale*p + shift - y)^2) + ridge*((scale-1)^2 + shift^2)."""
    p, y = np.asarray(pred_log, float), np.asarray(logy, float)
    a = np.array([[p @ p + ridge, p.sum()], [p.sum(), len(p) + ridge]])
    b = np.array([p @ y + ridge, y.sum()])
    scale, shift = np.linalg.solve(a, b)
    return float(scale), float(shift)


def adapt(model: CostModel, x: np.ndarray, latency_us: np.ndarray, *, device: str | None = None,
          rounds: int = ROUNDS, seed: int = 0) -> CostModel:
    """A copy of ``model`` fitted to the device that measured ``latency_us`` for feature rows ``x``."""
    import xgboost as xgb

    logy = np.log(np.asarray(latency_us, float))
    x = np.asarray(x, np.float32)
    base = model.trained_log(x)
    scale, shift = linear_correction(base, logy)
    residual = None
    if rounds > 0 and len(logy) >= 4:
        # A few shallow trees on what the linear correction leaves: continued boosting, kept as a
        # booster of its own so the trained point prediction (and the interval around it) stays.
        params = {**PARAMS, **TREE_PARAMS, "objective": "reg:squarederror", "base_score": 0.0, "seed": seed}
        residual = xgb.train(params, xgb.DMatrix(x, logy - (scale * base + shift)), rounds)
    meta = {**model.meta, "correction": {"scale": scale, "shift": shift},
            "adapted": {"from_device": model.meta.get("device"), "samples": len(logy), "rounds": rounds},
            "device": device or model.meta.get("device")}
    return CostModel(model.point, model.interval, meta, residual)


def evaluate_adaptation(model: CostModel, x: np.ndarray, latency_us: np.ndarray, groups: Sequence[str],
                        samples: int, *, seed: int = 0, weights: Sequence[float] | None = None) -> dict[str, Any]:
    """Adapt on ``samples`` random rows of a new condition, report metrics on the others before and after."""
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
    before = metrics.evaluate(y, *model.predict_features(x[rest]), g, w)
    after = metrics.evaluate(y, *adapted.predict_features(x[rest]), g, w)
    return {"samples": samples, "evaluated": len(rest), "before": before, "after": after,
            "correction": adapted.meta["correction"], "model": adapted}
