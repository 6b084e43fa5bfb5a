"""Pleural fluid a segmenter labelled (``pleural_effusion``): one collection per side, as lesion candidates."""

from __future__ import annotations

import numpy as np

from .lesions import Lesion
from .shape import crop_of


def effusions_from_label(labels: np.ndarray, value: int, affine, midline_x: float, crop=None) -> list[Lesion]:
    """The ``value`` voxels split at the midline (world RAS x; > midline: the patient's right), one candidate per
    side holding all of that side's fluid."""
    crop = crop if crop is not None else crop_of(labels == value)
    if crop is None:
        return []
    sub = labels[crop] == value
    ijk = np.argwhere(sub) + [s.start for s in crop]
    x = ijk @ np.asarray(affine)[0, :3] + np.asarray(affine)[0, 3]
    out = []
    for side, pick in (("right", x > midline_x), ("left", x <= midline_x)):
        if not pick.any():
            continue
        pts = ijk[pick]
        lo, hi = pts.min(axis=0), pts.max(axis=0) + 1
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        mask = np.zeros(tuple(int(b - a) for a, b in zip(lo, hi)), dtype=bool)
        mask[tuple((pts - lo).T)] = True
        out.append(Lesion("pleural_effusion", box, mask, {"found_by": "segmenter label", "side": side}))
    return out
