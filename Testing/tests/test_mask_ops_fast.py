"""The built-in segmenter's faster mask operations give exactly what the library functions they replace give:
the convex hull image (scikit-image), hole filling (SciPy), a distance threshold and the nearest label (a
Euclidean distance transform over the whole grid)."""

import warnings

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import convex_hull_image

from MedRegionCTLib.segment.builtin import masks


def random_masks(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        shape = (int(rng.integers(3, 50)), int(rng.integers(3, 50)))
        if rng.random() < 0.3:  # scattered pixels
            m = rng.random(shape) < rng.uniform(0.01, 0.6)
        else:  # a few rectangles
            m = np.zeros(shape, bool)
            for _ in range(int(rng.integers(1, 6))):
                r, c = int(rng.integers(0, shape[0])), int(rng.integers(0, shape[1]))
                m[r:r + int(rng.integers(1, 8)), c:c + int(rng.integers(1, 8))] = True
        if m.any():
            yield m


def test_convex_hull_2d_equals_scikit_image():
    checked = 0
    for m in random_masks(0, 1500):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-image warns on hulls it cannot build
            expected = convex_hull_image(m)
        assert np.array_equal(masks.convex_hull_2d(m), expected), (m.shape, int(m.sum()))
        checked += 1
    assert checked > 1000
    assert not masks.convex_hull_2d(np.zeros((5, 5), bool)).any()


def test_fill_holes_equals_scipy():
    for m in random_masks(1, 1500):
        assert np.array_equal(masks.fill_holes_2d(m), ndi.binary_fill_holes(m))
    rng = np.random.default_rng(2)
    stack = rng.random((40, 30, 6)) < 0.55
    expected = np.stack([ndi.binary_fill_holes(stack[:, :, k]) for k in range(stack.shape[2])], axis=2)
    assert np.array_equal(masks.fill_holes_axial(stack), expected)


@pytest.mark.parametrize("mm", [1.0, 4.5, 12.0])
def test_within_mm_equals_the_whole_grid_transform(mm):
    rng = np.random.default_rng(3)
    m = np.zeros((60, 50, 30), bool)
    m[20:30, 10:18, 5:9] = True
    m[rng.integers(0, 60, 5), rng.integers(0, 50, 5), rng.integers(0, 30, 5)] = True
    spacing = (0.8, 0.8, 2.5)
    expected = ndi.distance_transform_edt(~m, sampling=spacing) <= mm
    assert np.array_equal(masks.within_mm(m, mm, spacing), expected)
    assert not masks.within_mm(np.zeros((4, 4, 4), bool), mm, spacing).any()


def test_nearest_label_equals_the_whole_grid_transform():
    rng = np.random.default_rng(4)
    parts = np.zeros((50, 40, 30), np.int16)
    parts[5:10, 5:10, 5:10] = 1
    parts[30:36, 20:30, 10:20] = 2
    parts[45:50, 0:5, 25:30] = 3
    where = (rng.random(parts.shape) < 0.05) & (parts == 0)
    _, idx = ndi.distance_transform_edt(parts == 0, return_indices=True)
    expected = parts[tuple(idx)][where]
    # a small pad: most voxels' nearest label lies outside it and is found on the whole grid
    nearest = ndi.distance_transform_edt(parts == 0)[where]
    to_label = np.stack([ndi.distance_transform_edt(parts != g)[where] for g in (1, 2, 3)])
    for pad in (2, 16, 100):
        got = masks.nearest_label(parts, where, pad=pad)
        # equidistant labels may be chosen either way; every voxel gets a label at the nearest distance
        assert np.allclose(to_label[got - 1, np.arange(got.size)], nearest), pad
        assert (got == expected).mean() > 0.99, pad
