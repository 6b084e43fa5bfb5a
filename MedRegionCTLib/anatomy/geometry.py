"""Patient directions of an image grid, read from its affine (never from an assumed axis order)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PatientAxes:
    """For each patient axis, the index axis closest to it and the sign of travel.

    ``lr = (axis, +1)`` means the index along ``axis`` grows towards the patient's right (RAS +x);
    ``ap`` grows anterior when its sign is +1, ``si`` grows superior when +1.
    """

    lr: tuple[int, int]
    ap: tuple[int, int]
    si: tuple[int, int]
    spacing: tuple[float, float, float]


def patient_axes(affine: np.ndarray) -> PatientAxes:
    aff = np.asarray(affine, dtype=np.float64)
    columns = aff[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    unit = columns / spacing
    # Pair RAS world axes with index axes greedily by the largest direction cosine (like nibabel's
    # io_orientation, without its reflection handling we do not need).
    taken: dict[int, tuple[int, int]] = {}
    free_index = [0, 1, 2]
    for _ in range(3):
        best = None
        for world in range(3):
            if world in taken:
                continue
            for index in free_index:
                value = abs(unit[world, index])
                if best is None or value > best[0]:
                    best = (value, world, index)
        _, world, index = best
        taken[world] = (index, 1 if unit[world, index] > 0 else -1)
        free_index.remove(index)
    return PatientAxes(lr=taken[0], ap=taken[1], si=taken[2], spacing=tuple(float(s) for s in spacing))
