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


def shifted_trachea(shift_mm: float, shifted_from_mm: float = 10.0, shifted_to_mm: float = 45.0,
                    larynx: bool = False) -> np.ndarray:
    """A round trachea 18 mm across, 120 mm long, on x = 40 (the midline below), its stretch between
    ``shifted_from_mm`` and ``shifted_to_mm`` above its lower end ``shift_mm`` towards +x; with ``larynx`` a
    60 mm wide air space over its top 10 mm (the larynx and the piriform recesses widen its box)."""
    nz = int(120.0 / SPACING[2])
    xs, ys = np.mgrid[:120, :60]
    out = np.zeros((120, 60, nz), bool)
    for k in range(nz):
        height = k * SPACING[2]
        cx = 40 + (shift_mm if shifted_from_mm <= height <= shifted_to_mm else 0.0)
        out[:, :, k] = ((xs - cx) / 9.0) ** 2 + ((ys - 30) / 9.0) ** 2 <= 1.0
        if larynx and height > 110.0:
            out[40:100, 25:35, k] = True
    return out


def test_a_stretch_of_trachea_pushed_aside_is_displaced_and_a_wide_box_is_not():
    # RAS index axes: +x is the patient's right; the spine's midline at x = 40 mm
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    axes = patient_axes(affine)
    pushed = trachea_diameters(shifted_trachea(18.0), SPACING, axes, affine, 40.0)
    assert pushed["side"] == "right" and abs(pushed["offset_mm"] - 18.0) <= 1.0
    assert trachea_diameters(shifted_trachea(-18.0), SPACING, axes, affine, 40.0)["side"] == "left"
    # a few millimetres to the right at the arch is normal
    assert trachea_diameters(shifted_trachea(8.0), SPACING, axes, affine, 40.0)["side"] == "midline"
    # the larynx widens the box to the right; the tube itself stays on the midline
    wide = trachea_diameters(shifted_trachea(0.0, larynx=True), SPACING, axes, affine, 40.0)
    assert wide["side"] == "midline"
    # a focal push held only over 6 mm is not a displacement
    short = trachea_diameters(shifted_trachea(18.0, 20.0, 26.0), SPACING, axes, affine, 40.0)
    assert short["side"] == "midline"
