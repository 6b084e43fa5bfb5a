"""The fast paths of the measurements give what the plain computations give (random masks, exact equality):
the opening by two local distance transforms, distance transforms on windows, hole filling by labelling,
the thoracic cage from column spans, the Feret diameters from pruned hull candidates, HU statistics from a
histogram."""

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist

from MedRegionCTLib.measure import hu_statistics
from MedRegionCTLib.measure.lesions import (
    _holes,
    _LocalEDT,
    _opened,
    _thoracic_cage_by_slices,
    thoracic_cage,
)
from MedRegionCTLib.measure.shape import axial_axes, extreme_voxels, feret_diameters, hull_candidates

SPACINGS = [(0.75, 0.75, 1.25), (1.0, 1.0, 1.0), (2.0, 2.0, 2.5)]


def _blobs(rng, shape, n_balls=4, tubes=True):
    """Balls and thin tubes: what the nodule search sees."""
    grid = np.indices(shape).astype(float)
    out = np.zeros(shape, dtype=bool)
    for _ in range(n_balls):
        c = rng.uniform(0, shape)
        r = rng.uniform(1.0, 5.0)
        out |= ((grid - c[:, None, None, None]) ** 2).sum(0) <= r * r
    if tubes:
        for _ in range(3):
            a = int(rng.integers(0, 3))
            c = rng.uniform(0, shape)
            others = [b for b in range(3) if b != a]
            out |= ((grid[others[0]] - c[others[0]]) ** 2 + (grid[others[1]] - c[others[1]]) ** 2) <= 1.5
    return out


@pytest.mark.parametrize("spacing", SPACINGS)
def test_opening_and_local_distances_match_whole_array_transforms(spacing):
    rng = np.random.default_rng(7)
    for _ in range(6):
        part = _blobs(rng, (30, 26, 22))
        r = 2.5
        edt = ndimage.distance_transform_edt(part, sampling=spacing)
        core = edt >= r
        expected = (ndimage.distance_transform_edt(~core, sampling=spacing) <= r + 1e-6) & part if core.any() \
            else None
        got = _opened(part, spacing, r)
        if expected is None:
            assert got is None
            continue
        box, opened = got
        full = np.zeros_like(part)
        full[box] = opened
        assert np.array_equal(full, expected)
        local = _LocalEDT(part, spacing, 2.0)
        for win in ((slice(3, 12), slice(5, 20), slice(0, 9)), (slice(10, 30), slice(0, 26), slice(4, 22))):
            where = part[win]
            assert np.array_equal(local.on(win, where)[where], edt[win][where])
            assert np.array_equal(local.on(win), edt[win])


def test_holes_match_binary_fill_holes():
    rng = np.random.default_rng(3)
    for _ in range(20):
        mask = ~_blobs(rng, (18, 16, 14), n_balls=3, tubes=False)
        mask[rng.random(mask.shape) < 0.05] = False
        assert np.array_equal(mask | _holes(mask), ndimage.binary_fill_holes(mask))


@pytest.mark.parametrize("si_axis", [0, 1, 2])
def test_thoracic_cage_spans_match_slice_by_slice_masks(si_axis):
    rng = np.random.default_rng(si_axis)
    for k in range(40):
        cage = rng.random(tuple(rng.integers(3, 40, 3))) < rng.uniform(0.005, 0.2)
        margin = int(rng.integers(0, 6))
        assert np.array_equal(thoracic_cage(cage, si_axis, margin), _thoracic_cage_by_slices(cage, si_axis, margin)), k


def _feret_reference(mask, linear):
    """Hull of every voxel's corners and of every voxel's face centres, farthest pair by pdist."""
    idx = np.argwhere(mask).astype(float)
    corners = np.array([[a, b, c] for a in (-0.5, 0.5) for b in (-0.5, 0.5) for c in (-0.5, 0.5)])
    faces = np.array([[s * (a == 0), s * (a == 1), s * (a == 2)] for a in range(3) for s in (-0.5, 0.5)])
    out = []
    for offsets in (corners, faces):
        pts = (idx[:, None] + offsets[None]).reshape(-1, 3)
        pts = pts[ConvexHull(pts).vertices] @ linear.T
        out.append(float(pdist(pts).max()))
    return tuple(out)


def test_feret_from_pruned_candidates_matches_full_hulls():
    rng = np.random.default_rng(11)
    linears = [np.diag([0.75, 0.75, 1.25]), np.array([[0.7, 0.1, 0.0], [0.0, -0.8, 0.2], [0.1, 0.0, 1.5]])]
    for k in range(25):
        mask = _blobs(rng, tuple(rng.integers(6, 24, 3)), n_balls=int(rng.integers(1, 4)), tubes=bool(k % 2))
        if np.count_nonzero(mask) < 4:
            continue
        pts = extreme_voxels(mask)
        assert mask[tuple(pts.T)].all()
        kept = hull_candidates(mask, pts)
        assert len(kept) <= len(pts)
        for linear in linears:
            got = feret_diameters(mask, linear)
            want = _feret_reference(mask, linear)
            assert got[0] == pytest.approx(want[0], rel=1e-12) and got[1] == pytest.approx(want[1], rel=1e-12)


def test_axial_long_axis_from_row_ends():
    rng = np.random.default_rng(5)
    for _ in range(20):
        mask = _blobs(rng, (20, 18, 9), n_balls=3, tubes=False)
        if not mask.any():
            continue
        a = axial_axes(mask, np.diag([0.7, 0.7, 2.0]), 2)
        plane = mask[:, :, a["slice_in_crop"]]
        corners = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
        pts = (np.argwhere(plane)[:, None] + corners[None]).reshape(-1, 2) * 0.7
        assert a["long_axis_mm"] == pytest.approx(float(pdist(pts).max()), rel=1e-12)
        assert a["slice_area_mm2"] == pytest.approx(np.count_nonzero(plane) * 0.49)


def test_hu_statistics_from_histogram_equal_numpy():
    rng = np.random.default_rng(2)
    for _ in range(30):
        values = rng.normal(rng.uniform(-900, 200), rng.uniform(1, 300), int(rng.integers(1, 20000)))
        values = np.clip(values, -1024, 3071).astype(np.int16)
        s = hu_statistics(values)
        v = values.astype(np.float64)
        assert s["hu_mean"] == float(v.mean())
        assert s["hu_sd"] == float(v.std())
        assert (s["hu_min"], s["hu_max"]) == (float(v.min()), float(v.max()))
        for p, q in zip((5, 25, 50, 75, 95), np.percentile(v, (5, 25, 50, 75, 95)), strict=True):
            assert s[f"hu_p{p}"] == float(q)
