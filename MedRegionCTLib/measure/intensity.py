"""Hounsfield-unit statistics of the CT inside a mask (mean, standard deviation, percentiles)."""

from __future__ import annotations

import numpy as np

PERCENTILES = (5, 25, 50, 75, 95)


def hu_statistics(values: np.ndarray, percentiles=PERCENTILES) -> dict:
    """Mean, SD (population, as pyradiomics and TotalSegmentator use), min, max and percentiles of HU values."""
    if values.size == 0:
        return {}
    hist = _histogram(values) if np.issubdtype(values.dtype, np.integer) else None
    if hist is None:
        v = values.astype(np.float64, copy=False)
        stats = {"hu_mean": float(v.mean()), "hu_sd": float(v.std()), "hu_min": float(v.min()),
                 "hu_max": float(v.max())}
        q = np.percentile(v, percentiles)
    else:
        lo, counts = hist
        mean = _hist_mean(lo, counts)
        if mean is None:
            mean = float(values.astype(np.float64).mean())
        stats = {"hu_mean": mean, "hu_sd": _std(values, mean), "hu_min": float(lo),
                 "hu_max": float(lo + len(counts) - 1)}
        q = _integer_percentiles(values, percentiles, hist)
    for p, x in zip(percentiles, q, strict=True):
        stats[f"hu_p{p}"] = float(x)
    return stats


def _histogram(values: np.ndarray) -> tuple[int, np.ndarray] | None:
    """(lowest value, count of each value from there to the highest) of integer values; None when the span
    is too wide for a table (CT HU span a few thousand values)."""
    lo, hi = int(values.min()), int(values.max())
    if hi - lo > 1 << 20:
        return None
    return lo, np.bincount(np.subtract(values.ravel(), lo, dtype=np.intp, casting="unsafe"), minlength=hi - lo + 1)


def _hist_mean(lo: int, counts: np.ndarray) -> float | None:
    """The mean of integer values from their histogram, as numpy's float64 mean gives it: numpy's sum of
    whole numbers is exact in any order while below 2**53, so both are the exact sum divided once. None
    beyond that."""
    total = int((np.arange(lo, lo + len(counts), dtype=np.int64) * counts).sum())
    if abs(total) >= 1 << 53 or int(np.abs(np.arange(lo, lo + len(counts))).max()) * int(counts.sum()) >= 1 << 53:
        return None  # a partial sum could round
    return float(total) / int(counts.sum())


def _std(values: np.ndarray, mean: float) -> float:
    """``values.astype(float64).std()`` given its mean: numpy's own steps (deviations, squared in place,
    pairwise sum, divided by n, square root) without the float64 copy and the second mean pass."""
    x = np.subtract(values, mean, dtype=np.float64)
    np.multiply(x, x, out=x)
    return float(np.sqrt(x.sum() / values.size))


def _integer_percentiles(values: np.ndarray, percentiles, hist=None) -> list[float] | None:
    """np.percentile's 'linear' method on integer values from a histogram: a counting pass instead of a
    partition of every value (CT HU span a few thousand values). None when the span is too wide."""
    hist = hist if hist is not None else _histogram(values)
    if hist is None:
        return None
    lo, counts = hist
    cum = np.cumsum(counts)

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
