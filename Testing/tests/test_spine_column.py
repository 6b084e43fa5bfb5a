"""The vertebral column on its whole length: the canal's chain joined across vertebrae whose rings do not close
(an osteopenic spine), and levels counted with heights that grow down the column."""

import numpy as np
import pytest

from MedRegionCTLib.segment.builtin import BuiltinSegmenter
from MedRegionCTLib.segment.builtin.bones import (
    VERTEBRAE,
    _canal_chain,
    _disc_planes,
    _disc_sections,
    _shallower_side,
)

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


def _column_stack(marrow, endplate, disc, lesion=None, spacing=(1.0, 1.0, 2.0), start_mm=0.0):
    """A straight column on 2 mm slices: bodies 20 mm high between 6 mm discs, each body's top and bottom
    slice an endplate; the canal's centre at y 25, the body's front at y 70 (crop coordinates, 1 mm pixels)."""
    nz = 60
    hu = np.full((80, 90, nz), 40, np.int16)
    kinds = []
    for k in range(nz):
        phase = (start_mm + k * spacing[2]) % 26.0
        kind = "disc" if phase >= 20.0 else ("endplate" if phase < 2.0 or phase >= 18.0 else "marrow")
        kinds.append(kind)
        hu[20:61, 33:71, k] = {"disc": disc, "endplate": endplate, "marrow": marrow}[kind]
    if lesion is not None:  # a lytic lesion 10 mm across and 8 mm high in the middle of a body
        k0, hu_lesion = lesion
        hu[35:46, 45:56, k0:k0 + 4] = hu_lesion
    column = np.tile([40.0, 70.0, 10.0], (nz, 1))
    canal = np.tile([40.0, 25.0], (nz, 1))
    return hu, column, canal, spacing, np.array(kinds)


def test_discs_are_found_between_dense_endplates(bones):
    hu, column, canal, spacing, kinds = _column_stack(marrow=160, endplate=300, disc=80)
    found = _disc_sections(hu, column, canal, spacing, bones)
    assert found.any()
    assert np.array_equal(found, kinds == "disc")


def test_a_pale_marrow_or_a_focal_lesion_is_no_disc(bones):
    # fatty marrow as pale as the disc and pale endplates: one long pale run, nothing taken for disc
    hu, column, canal, spacing, _ = _column_stack(marrow=50, endplate=120, disc=80)
    assert not _disc_sections(hu, column, canal, spacing, bones).any()
    # osteoporotic marrow paler than the disc between sclerotic endplates: the 16 mm of marrow is no disc
    hu, column, canal, spacing, kinds = _column_stack(marrow=50, endplate=160, disc=80)
    found = _disc_sections(hu, column, canal, spacing, bones)
    assert found.any() and np.array_equal(found, kinds == "disc")
    # a lytic lesion in the middle of a body leaves dense marrow beside it
    hu, column, canal, spacing, kinds = _column_stack(marrow=200, endplate=300, disc=80, lesion=(3, 40))
    found = _disc_sections(hu, column, canal, spacing, bones)
    assert not found[3:7].any() and np.array_equal(found, kinds == "disc")


def test_a_pale_slice_of_marrow_is_no_disc(bones):
    # fatty marrow at 130 HU with one slice at 105 in a body's middle (1.5 mm slices of an old patient's CTA):
    # far paler than the endplates, but not sharply bounded
    hu, column, canal, spacing, kinds = _column_stack(marrow=130, endplate=300, disc=80)
    hu[20:61, 33:71, 5] = 105
    found = _disc_sections(hu, column, canal, spacing, bones)
    assert not found[5] and np.array_equal(found, kinds == "disc")


def test_a_disc_at_the_scan_s_end_is_bounded_by_its_inner_side(bones):
    hu, column, canal, spacing, kinds = _column_stack(marrow=160, endplate=300, disc=80, start_mm=22.0)
    assert kinds[0] == "disc"
    found = _disc_sections(hu, column, canal, spacing, bones)
    assert found[0] and np.array_equal(found, kinds == "disc")
