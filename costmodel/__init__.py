"""The learned cost model (DESIGN §4): kernel features, measured datasets, an XGBoost model with
intervals, its metrics and its adaptation to new devices.

Passes see it only through ``passes.base.CostPredictor``:
``predict(kernels, target) -> (mean, low, high)`` microseconds. ``load_default_model`` returns the
model shipped in ``costmodel/shipped`` (trained on this project's own measurements; see its
``DATASET_CARD.md``); ``GRAPHOPT_COST_MODEL`` points it at another model file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from .features import FEATURE_NAMES, SCHEMA_HASH, kernel_features, target_info
from .model import CostModel, CostModelLoadError

SHIPPED = Path(__file__).parent / "shipped" / "model.json"
"""The default model's sidecar file."""


def default_model_path() -> Path:
    """Where the default model is read from (``$GRAPHOPT_COST_MODEL`` or the shipped one)."""
    return Path(os.environ.get("GRAPHOPT_COST_MODEL") or SHIPPED)


def load_default_model() -> CostModel:
    """The default model; raises ``CostModelLoadError`` saying why it cannot be used."""
    return CostModel.load(default_model_path())


def default_model_or_none() -> CostModel | None:
    """The default model, or None with a warning that passes fall back to measuring."""
    try:
        return load_default_model()
    except CostModelLoadError as e:
        warnings.warn(f"{e}; falling back to measuring kernels (passes that cannot measure use their rules)",
                      stacklevel=2)
        return None


__all__ = ["FEATURE_NAMES", "SCHEMA_HASH", "SHIPPED", "CostModel", "CostModelLoadError", "default_model_or_none",
           "default_model_path", "kernel_features", "load_default_model", "target_info"]
