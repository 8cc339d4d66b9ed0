"""Training on a dataset and honest evaluation: each network's kernels are predicted by a model that
never saw that network (leave-one-network-out), as ``graphopt costmodel eval`` reports."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import metrics
from .dataset import Dataset, DatasetError
from .kernels import SYNTHETIC
from .model import CostModel


def train(ds: Dataset, *, seed: int = 0) -> CostModel:
    """A model trained on every record of ``ds`` (calibration folds split by network)."""
    x, y = ds.arrays()
    summary = ds.summary()
    extra = {"trained_on": {k: summary[k] for k in ("records", "kernels", "by_model", "by_threads")}}
    # Calibration folds hold out whole networks; random kernels belong to none, so each is its own group.
    groups = [r.model if r.model != SYNTHETIC else f"{SYNTHETIC}/{r.workload}" for r in ds.records]
    return CostModel.fit(x, y, groups=groups, seed=seed, device=ds.device, extra=extra)


def _metrics(ds: Dataset, mean: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict[str, Any]:
    y = np.array([r.latency_us for r in ds.records])
    return metrics.evaluate(y, mean, low, high, ds.groups(), [r.weight for r in ds.records], ds.candidate_set())


def evaluate_model(model: CostModel, ds: Dataset) -> dict[str, Any]:
    """Metrics of ``model`` on every record of ``ds`` (not held out unless ``ds`` is new to it)."""
    x, _ = ds.arrays()
    return _metrics(ds, *model.predict_features(x))


def cross_validate(ds: Dataset, *, holdout: Sequence[str] | None = None, seed: int = 0,
                   also: Dataset | None = None, progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Leave-one-network-out: per held-out network and pooled over all of them.

    Random ("synthetic") kernels are always training data; they belong to no network. ``also``
    (other devices' records, as ``costmodel train --also`` uses them) is training data too, except
    its records of the held-out network: the model never saw that network on any device.
    """
    networks = list(holdout) if holdout else [m for m in ds.models() if m != SYNTHETIC]
    unknown = [m for m in networks if m not in ds.models()]
    if unknown:
        raise DatasetError(f"no records of {', '.join(unknown)} (the dataset has {', '.join(ds.models())})")
    if not networks:
        raise DatasetError("the dataset has no network to hold out (only random kernels)")
    per: dict[str, Any] = {}
    pooled = Dataset(None, ds.device, ds.schema)
    preds: list[np.ndarray] = []
    for name in networks:
        progress(f"holding out {name}")
        test = ds.select(models=[name])
        training = ds.select(exclude_models=[name])
        if also is not None:
            training = training.merged(also.select(exclude_models=[name]))
        model = train(training, seed=seed)
        x, _ = test.arrays()
        mean, low, high = model.predict_features(x)
        per[name] = _metrics(test, mean, low, high)
        pooled.records += test.records
        preds.append(np.stack([mean, low, high]))
    mean, low, high = np.concatenate(preds, axis=1)
    return {"split": "leave one network out", "held_out": networks, "pooled": _metrics(pooled, mean, low, high),
            "per_network": per}
