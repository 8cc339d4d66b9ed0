"""Range observers for calibration: min-max, percentile and entropy (KL divergence, as TensorRT).

An observer sees every calibration batch of one activation (``update``) and then proposes the
real range ``[lo, hi]`` that quantization maps onto the integer grid (``range``). Min-max keeps
every value representable; percentile and entropy clip rare outliers so the common values get a
finer grid. Percentile and entropy keep a bounded random subsample of the values seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

ObserverKind = Literal["minmax", "percentile", "entropy"]
SUBSAMPLE = 1 << 17  # values kept per activation: percentiles near 99.99 still rest on ~13 values


class Observer(Protocol):
    """Accumulates the values of one activation over the calibration set."""

    def update(self, x: np.ndarray) -> None:
        """See one more batch of values."""
        ...

    def range(self) -> tuple[float, float]:
        """The real range to quantize, always containing 0 (so real zero is exact)."""
        ...


@dataclass
class MinMaxObserver:
    """The smallest and largest value seen."""

    lo: float = np.inf
    hi: float = -np.inf

    def update(self, x: np.ndarray) -> None:
        """Widen the range to cover ``x``."""
        if x.size:
            self.lo = min(self.lo, float(np.min(x)))
            self.hi = max(self.hi, float(np.max(x)))

    def range(self) -> tuple[float, float]:
        """``[min(lo, 0), max(hi, 0)]``."""
        if self.lo > self.hi:  # nothing seen
            return 0.0, 0.0
        return min(self.lo, 0.0), max(self.hi, 0.0)


@dataclass
class _Sampled:
    """Exact min/max plus a bounded random subsample of the values (for quantiles and histograms)."""

    seed: int = 0
    minmax: MinMaxObserver = field(default_factory=MinMaxObserver)
    chunks: list[np.ndarray] = field(default_factory=list)
    kept: int = 0

    def update(self, x: np.ndarray) -> None:
        """Keep ``x``'s extremes and a random share of its values."""
        flat = np.asarray(x, np.float32).reshape(-1)
        self.minmax.update(flat)
        rng = np.random.default_rng(self.seed + len(self.chunks))
        take = min(flat.size, SUBSAMPLE // 4)
        self.chunks.append(flat if take == flat.size else rng.choice(flat, take, replace=False))
        self.kept += take
        if self.kept > SUBSAMPLE:
            # Thin everything seen so far evenly, so early batches keep their fair share.
            allv = np.concatenate(self.chunks)
            self.chunks = [rng.choice(allv, SUBSAMPLE // 2, replace=False)]
            self.kept = SUBSAMPLE // 2

    def values(self) -> np.ndarray:
        """The kept values."""
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)


@dataclass
class PercentileObserver(_Sampled):
    """The ``percentile``-th percentile at the top and its mirror at the bottom (e.g. 99.99 / 0.01)."""

    percentile: float = 99.99

    def range(self) -> tuple[float, float]:
        """Clipped range; never wider than min-max."""
        v = self.values()
        if not v.size:
            return 0.0, 0.0
        lo, hi = np.percentile(v, [100.0 - self.percentile, self.percentile])
        mlo, mhi = self.minmax.range()
        return max(min(float(lo), 0.0), mlo), min(max(float(hi), 0.0), mhi)


@dataclass
class EntropyObserver(_Sampled):
    """The clipping threshold whose quantized histogram is closest (KL divergence) to the original."""

    bins: int = 2048

    def range(self) -> tuple[float, float]:
        """One-sided (non-negative data, 256 levels) or symmetric (|x|, 128 levels) threshold search."""
        v = self.values()
        mlo, mhi = self.minmax.range()
        if not v.size or mhi == mlo:
            return mlo, mhi
        if mlo >= 0:
            return 0.0, min(kl_threshold(v, self.bins, 256), mhi)
        t = kl_threshold(np.abs(v), self.bins, 128)
        return max(-t, mlo), min(t, mhi)


def kl_threshold(values: np.ndarray, bins: int, levels: int) -> float:
    """The threshold on non-negative ``values`` minimizing KL(P || Q) with Q quantized to ``levels``."""
    top = float(values.max())
    if top <= 0:
        return 0.0
    hist, edges = np.histogram(values, bins=bins, range=(0.0, top))
    hist = hist.astype(np.float64)
    best_kl, best_i = np.inf, bins
    for i in range(levels, bins + 1, max(1, (bins - levels) // 256)):
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()  # clipped outliers land in the last bin
        # Q: the first i bins merged into ``levels`` groups, each spread back over its non-empty bins.
        group = np.arange(i) * levels // i
        nonzero = hist[:i] > 0
        sums = np.bincount(group, weights=hist[:i], minlength=levels)
        counts = np.bincount(group, weights=nonzero, minlength=levels)
        q = np.where(nonzero, sums[group] / np.maximum(counts[group], 1), 0.0)
        mask = p > 0
        if not mask.any():
            continue
        pn, qn = p / p.sum(), q / max(q.sum(), 1e-30)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = float(np.sum(pn[mask] * np.log(pn[mask] / np.maximum(qn[mask], 1e-12))))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(edges[best_i]) if best_i < len(edges) else top


def make_observer(kind: ObserverKind, percentile: float = 99.99) -> Observer:
    """A fresh observer of ``kind``."""
    if kind == "minmax":
        return MinMaxObserver()
    if kind == "percentile":
        return PercentileObserver(percentile=percentile)
    if kind == "entropy":
        return EntropyObserver()
    raise ValueError(f"unknown observer '{kind}' (known: minmax, percentile, entropy)")
