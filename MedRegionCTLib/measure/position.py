"""Where something lies, in patient terms: side, zone (upper/middle/lower), anterior/posterior and lobe.

All positions are RAS millimetres (``+x`` towards the patient's right, ``+y`` anterior, ``+z`` superior),
so the answer never depends on the file's axis order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

LOBE_WORDS = {
    "lung_upper_lobe_right": "right upper lobe",
    "lung_middle_lobe_right": "right middle lobe",
    "lung_lower_lobe_right": "right lower lobe",
    "lung_upper_lobe_left": "left upper lobe",
    "lung_lower_lobe_left": "left lower lobe",
}


@dataclass
class Frame:
    """Reference positions of one CT: the midline (x) and the lungs' superior-inferior and
    anterior-posterior ranges (RAS mm), from which zones are thirds."""

    midline_x: float
    z_range: tuple[float, float]
    y_range: tuple[float, float]
    midline_from: str = "spine"  # "spine", "trachea" (no spine labelled) or "field of view" (neither)


def side_of_x(x_min: float, x_max: float, midline_x: float, margin_mm: float = 10.0) -> str:
    """``midline`` when centred on the midline (within ``margin_mm``) and under 100 mm wide; ``right`` or
    ``left`` when on one side (RAS +x is the patient's right); ``bilateral`` when reaching well into both."""
    centre = (x_min + x_max) / 2.0
    if abs(centre - midline_x) <= margin_mm and x_max - x_min < 100.0:
        return "midline"
    if x_min >= midline_x - margin_mm:
        return "right"
    if x_max <= midline_x + margin_mm:
        return "left"
    if min(x_max - midline_x, midline_x - x_min) > 3 * margin_mm:
        return "bilateral"
    return "right" if centre > midline_x else "left"


def zone_of(z: float, frame: Frame) -> str:
    lo, hi = frame.z_range
    if hi <= lo:
        return "middle"
    t = (z - lo) / (hi - lo)
    return "lower" if t < 1 / 3 else ("middle" if t < 2 / 3 else "upper")


def ap_of(y: float, frame: Frame) -> str:
    lo, hi = frame.y_range
    if hi <= lo:
        return "central"
    t = (y - lo) / (hi - lo)
    return "posterior" if t < 0.4 else ("anterior" if t > 0.6 else "central")


def describe_position(bbox_min, bbox_max, centroid, frame: Frame) -> dict:
    """Side, zone and anterior/posterior position of an object from its RAS box and centroid."""
    return {
        "side": side_of_x(float(bbox_min[0]), float(bbox_max[0]), frame.midline_x),
        "zone": zone_of(float(centroid[2]), frame),
        "anteroposterior": ap_of(float(centroid[1]), frame),
    }


def lobe_of(mask: np.ndarray, crop, labels: np.ndarray, lobe_index: dict[str, int], margin: int = 2):
    """The lobe holding most of ``mask`` or, when the mask replaced lobe voxels (a labelled nodule), most
    of the shell ``margin`` voxels around it. Returns (lobe name or None, share of the winning lobe)."""
    if not lobe_index:
        return None, 0.0
    grown = tuple(slice(max(s.start - margin - 1, 0), s.stop + margin + 1) for s in crop)
    sub = mask[grown]
    lab = labels[grown]
    for region in (sub, ndimage.binary_dilation(sub, iterations=margin) & ~sub):
        values = lab[region]
        counts = {name: int(np.count_nonzero(values == idx)) for name, idx in lobe_index.items()}
        total = sum(counts.values())
        if total:
            best = max(counts, key=counts.get)
            return best, counts[best] / total
    return None, 0.0
