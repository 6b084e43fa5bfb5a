"""The tracheal calibre is read above the carina's widening, on one-piece sections, and only where enough of
the trachea is in view (clinical.trachea_diameters)."""

import numpy as np

from MedRegionCTLib.anatomy import patient_axes
from MedRegionCTLib.measure.clinical import trachea_diameters

SPACING = (1.0, 1.0, 2.0)


def trachea(length_mm: float, lowest_first: bool = True) -> np.ndarray:
    """A round trachea 18 mm across, widening to 34 mm over its lowest 8 mm (the carina), with a bronchus-sized
    air piece beside its upper half."""
    nz = int(length_mm / SPACING[2])
    xs, ys = np.mgrid[:80, :60]
    out = np.zeros((80, 60, nz), bool)
    for k in range(nz):
        height = k * SPACING[2]
        width = 34.0 if height < 8.0 else 18.0
        out[:, :, k] = ((xs - 40) / (width / 2)) ** 2 + ((ys - 30) / 9.0) ** 2 <= 1.0
        if height > length_mm / 2:
            out[70:75, 28:32, k] = True
    return out if lowest_first else out[:, :, ::-1]


def test_calibre_is_read_above_the_carina_on_one_piece_sections():
    for lowest_first in (True, False):
        affine = np.diag([1.0, 1.0, 2.0 if lowest_first else -2.0, 1.0])
        got = trachea_diameters(trachea(80.0, lowest_first), SPACING, patient_axes(affine))
        assert abs(got["value"] - 19.0) <= 1.0  # 18 mm round, to the voxel; not the carina's 34, not 45 wide
        assert got["abnormal"] is False


def test_a_trachea_mostly_at_the_carina_is_not_judged():
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    got = trachea_diameters(trachea(22.0), SPACING, patient_axes(affine))
    assert got["value"] is None and got["abnormal"] is None
    assert "mm of the trachea above the carina" in got["not_assessed"]
