"""Hounsfield-unit statistics of the CT inside a mask (mean, standard deviation, percentiles)."""

from __future__ import annotations

import numpy as np

PERCENTILES = (5, 25, 50, 75, 95)


def hu_statistics(values: np.ndarray, percentiles=PERCENTILES) -> dict:
    """Mean, SD (population, as pyradiomics and TotalSegmentator use), min, max and percentiles of HU values."""
    if values.size == 0:
        return {}
    v = values.astype(np.float64, copy=False)
    stats = {"hu_mean": float(v.mean()), "hu_sd": float(v.std()), "hu_min": float(v.min()),
             "hu_max": float(v.max())}
    q = _integer_percentiles(values, percentiles) if np.issubdtype(values.dtype, np.integer) else None
    if q is None:
        q = np.percentile(v, percentiles)
    for p, x in zip(percentiles, q, strict=True):
        stats[f"hu_p{p}"] = float(x)
    return stats


def _integer_percentiles(values: np.ndarray, percentiles) -> list[float] | None:
    """np.percentile's 'linear' method on integer values from a histogram: a counting pass instead of a
    partition of every value (CT HU span a few thousand values). None when the span is too wide."""
    lo, hi = int(values.min()), int(values.max())
    if hi - lo > 1 << 20:
        return None
    cum = np.cumsum(np.bincount((values.ravel() - lo).astype(np.intp, copy=False), minlength=hi - lo + 1))

    def order(k: int) -> float:  # the k-th smallest value (0-based)
        return float(lo + int(np.searchsorted(cum, k, side="right")))

    n, out = values.size, []
    for p in percentiles:
        index = (n - 1) * (float(p) / 100.0)  # the same operations, in the same order, as numpy
        k = int(np.floor(index))
        t = index - k
        a, b = order(k), order(min(k + 1, n - 1))
        # numpy's _lerp: from the nearer end, so the result matches np.percentile to the last bit
        out.append(b - (b - a) * (1.0 - t) if t >= 0.5 else a + (b - a) * t)
    return out


def fraction_below(values: np.ndarray, threshold: float) -> float:
    """Share (0-1) of the values strictly below ``threshold`` (e.g. -950 HU for the emphysema index)."""
    return float(np.count_nonzero(values < threshold)) / values.size if values.size else 0.0
