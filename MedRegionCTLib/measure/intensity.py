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
    for p, q in zip(percentiles, np.percentile(v, percentiles), strict=True):
        stats[f"hu_p{p}"] = float(q)
    return stats


def fraction_below(values: np.ndarray, threshold: float) -> float:
    """Share (0-1) of the values strictly below ``threshold`` (e.g. -950 HU for the emphysema index)."""
    return float(np.count_nonzero(values < threshold)) / values.size if values.size else 0.0
