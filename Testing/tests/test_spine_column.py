"""The vertebral column on its whole length: the canal's chain joined across vertebrae whose rings do not close
(an osteopenic spine), and levels counted with heights that grow down the column."""

import numpy as np
import pytest

from MedRegionCTLib.segment.builtin import BuiltinSegmenter
from MedRegionCTLib.segment.builtin.bones import VERTEBRAE, _canal_chain, _disc_planes, _shallower_side

SPACING = (2.0, 2.0, 3.0)


@pytest.fixture(scope="module")
def bones():
    return BuiltinSegmenter().params["bones"]


def _holes(ks, x=60.0, y=40.0, drift_per_slice=0.2):
    return {int(k): np.array([x, y + drift_per_slice * k]) for k in ks}


def test_the_chain_is_joined_across_a_stretch_of_open_rings(bones):
    # closed rings on the lower 30 mm and the upper 90 mm; 45 mm between without any (faint laminae)
    found = _holes(list(range(0, 10)) + list(range(25, 55)))
    assert (25 - 9) * SPACING[2] > bones["canal_gap_mm"]  # farther apart than one chain bridges
    ks, _, best = _canal_chain(found, SPACING, 40.0, bones)
    assert ks[best[0]] == 0 and ks[best[-1]] == 54


def test_a_stray_run_of_holes_beside_the_column_is_not_joined(bones):
    # three holes 40 mm to the side (the gaps between a rib's head and the vertebra) below the column
    found = _holes(range(25, 55))
    found.update({k: np.array([80.0, 40.0]) for k in (2, 4, 6)})
    ks, _, best = _canal_chain(found, SPACING, 40.0, bones)
    assert ks[best[0]] == 25


def test_a_lone_hole_beyond_the_gap_is_not_joined(bones):
    found = _holes([0] + list(range(25, 55)))
    ks, _, best = _canal_chain(found, SPACING, 40.0, bones)
    assert ks[best[0]] == 25


def _level_at(planes, first, k):
    for n in sorted(planes):
        if n + 1 in planes and planes[n + 1] <= k <= planes[n]:
            return VERTEBRAE[first + n]
    return None


def test_levels_grow_taller_down_the_column(bones):
    # the carina (T4/T5 disc) on slice 100 of 3 mm slices, no disc resolved: 250 mm below it lies the upper
    # lumbar spine (T5-T12 about 190 mm, L1 35 mm), not L3-L4 as a 24 mm pitch would count
    sz = SPACING[2]
    first = VERTEBRAE.index("T5")
    below = 100 - 250.0 / sz
    planes = _disc_planes(100.0, [], 24.0 / sz, 0, 100, first, 1.0 / sz, bones["level_height_mm"])
    assert _level_at(planes, first, below) == "L2"
    uniform = _disc_planes(100.0, [], 24.0 / sz, 0, 100, first)
    assert _level_at(uniform, first, below) == "L3"
    # the upper thoracic levels are shorter than the pitch: T1's top (plane -4) is T1-T4's 78 mm above the carina
    planes = _disc_planes(100.0, [], 24.0 / sz, 0, 160, first, 1.0 / sz, bones["level_height_mm"])
    assert planes[-4] == pytest.approx(100 + 78.0 / sz)


def test_a_front_carried_over_a_gap_goes_no_farther_forward_than_either_side():
    # slices 2-3 misread (an osteopenic body's back cortex) or a disc: the front is carried at the lower side's
    # value, not interpolated towards the higher one (that took a calcified aortic wall into the body on realct/04)
    values = np.array([98.0, 98.0, np.nan, np.nan, 94.0, 94.0])
    filled = np.interp(np.arange(6), np.flatnonzero(np.isfinite(values)), values[np.isfinite(values)])
    out = _shallower_side(values, filled)
    assert out.tolist() == [98.0, 98.0, 94.0, 94.0, 94.0, 94.0]
