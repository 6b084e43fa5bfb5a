"""Shape and intensity attributes on synthetic masks with analytic truth (sphere, ellipsoid, oblique grid)."""

import numpy as np
import pytest

from MedRegionCTLib.anatomy import patient_axes
from MedRegionCTLib.measure import hu_statistics, judge, nodule_category, shape_attributes
from MedRegionCTLib.measure.position import side_of_x
from MedRegionCTLib.measure.shape import extreme_voxels, feret_diameter


def _ball(shape, centre, radius, spacing):
    grid = [(np.arange(n) - c) * s for n, c, s in zip(shape, centre, spacing, strict=True)]
    x, y, z = np.meshgrid(*grid, indexing="ij")
    return (x / radius[0]) ** 2 + (y / radius[1]) ** 2 + (z / radius[2]) ** 2 <= 1.0


@pytest.mark.parametrize("spacing", [(0.75, 0.75, 1.25), (2.0, 2.0, 2.5)])
def test_sphere_volume_diameter_centroid(spacing):
    shape = (90, 90, 60)
    centre = (44.3, 40.7, 29.1)
    r = 20.0
    mask = _ball(shape, centre, (r, r, r), spacing)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = (10.0, -5.0, 3.0)
    a = shape_attributes(mask, affine, si_axis=2)
    true_ml = 4.0 / 3.0 * np.pi * r**3 / 1000.0
    assert a["volume_ml"] == pytest.approx(true_ml, rel=0.02)
    diagonal = float(np.linalg.norm(spacing))
    assert 2 * r <= a["max_diameter_mm"] <= 2 * r + diagonal
    faces = feret_diameter(mask, affine[:3, :3], "faces")
    assert 2 * r - max(spacing) <= faces <= a["max_diameter_mm"]
    expected_centre = np.asarray(centre) @ affine[:3, :3].T + affine[:3, 3]
    assert np.allclose(a["centroid_ras"], expected_centre, atol=0.5 * max(spacing))
    assert a["axial_long_axis_mm"] == pytest.approx(2 * r, abs=diagonal)
    assert a["axial_short_axis_mm"] == pytest.approx(2 * r, abs=diagonal)
    for ext in a["extent_mm"]:
        assert ext == pytest.approx(2 * r, abs=2 * max(spacing))


def test_feret_matches_brute_force_on_random_blob():
    rng = np.random.default_rng(3)
    mask = rng.random((9, 8, 7)) > 0.6
    linear = np.array([[0.7, 0.1, 0.0], [0.0, -0.8, 0.2], [0.1, 0.0, 1.5]])
    idx = np.argwhere(mask).astype(float)
    corners = np.array([[a, b, c] for a in (-0.5, 0.5) for b in (-0.5, 0.5) for c in (-0.5, 0.5)])
    pts = (idx[:, None] + corners[None]).reshape(-1, 3) @ linear.T
    brute = max(np.linalg.norm(pts - p, axis=1).max() for p in pts)
    assert feret_diameter(mask, linear, "corners") == pytest.approx(brute, rel=1e-9)
    # the line ends carry the hull: every voxel lies between two of them
    ends = extreme_voxels(mask)
    assert mask[tuple(ends.T)].all()


def test_ellipsoid_axial_axes_and_orientation_independence():
    spacing = (1.0, 1.0, 1.0)
    mask = _ball((80, 60, 40), (40, 30, 20), (30.0, 12.0, 8.0), spacing)
    ras = np.eye(4)
    a = shape_attributes(mask, ras, si_axis=2)
    assert a["axial_long_axis_mm"] == pytest.approx(60.0, abs=1.5)
    assert a["axial_short_axis_mm"] == pytest.approx(24.0, abs=1.5)
    # the same object stored with flipped and permuted axes measures the same
    flipped = np.transpose(mask[::-1, :, ::-1], (2, 0, 1))
    aff = np.zeros((4, 4))
    aff[3, 3] = 1
    aff[0, 1] = -1.0  # i (old x, reversed) -> new axis 1
    aff[1, 2] = 1.0
    aff[2, 0] = -1.0
    axes = patient_axes(aff)
    b = shape_attributes(flipped, aff, si_axis=axes.si[0])
    for key in ("volume_ml", "max_diameter_mm", "axial_long_axis_mm", "axial_short_axis_mm"):
        assert b[key] == pytest.approx(a[key], rel=1e-6)
    assert sorted(b["extent_mm"]) == pytest.approx(sorted(a["extent_mm"]))


def test_hu_statistics_and_thresholds():
    values = np.arange(-100, 101, dtype=np.int16)
    s = hu_statistics(values)
    assert s["hu_mean"] == pytest.approx(0.0)
    assert s["hu_p50"] == pytest.approx(0.0)
    assert s["hu_p5"] == pytest.approx(-90.0)
    assert s["hu_sd"] == pytest.approx(values.std())
    assert judge("ascending_aorta_diameter_mm", 40.0)["abnormal"] is True  # >= 40 mm (Hiratzka 2010)
    assert judge("ascending_aorta_diameter_mm", 39.9)["abnormal"] is False
    assert judge("cardiothoracic_ratio", 0.5)["abnormal"] is False  # > 0.5
    assert "Hiratzka" in judge("ascending_aorta_diameter_mm", 41.0)["source"]
    assert nodule_category(5.0) == "< 6 mm"
    assert nodule_category(8.0) == "6-8 mm"
    assert nodule_category(12.0) == "> 8 mm"
    assert nodule_category(35.0).startswith("mass")


def test_side_words():
    assert side_of_x(20, 60, 0) == "right"  # RAS +x is the patient's right
    assert side_of_x(-60, -20, 0) == "left"
    assert side_of_x(-10, 10, 0) == "midline"
    assert side_of_x(-150, 140, 0) == "bilateral"


def test_measure_without_chest_anatomy_and_grid_check():
    """A label map with one abdominal organ: organ attributes, no clinical values, no lesions, no crash."""
    from MedRegionCTLib.errors import InputError
    from MedRegionCTLib.measure import measure
    from MedRegionCTLib.volume import LabelMap, Volume

    rng = np.random.default_rng(0)
    hu = rng.normal(50, 10, (40, 40, 30)).astype(np.int16)
    affine = np.diag([-1.5, -1.5, 2.0, 1.0])
    labels = (_ball((40, 40, 30), (20, 20, 15), (10.0, 12.0, 14.0), (1.5, 1.5, 2.0))).astype(np.uint8) * 5
    result = measure(Volume(hu, affine), LabelMap(labels, affine, {5: "liver"}))
    liver = result.structures["liver"]
    assert liver["volume_ml"] == pytest.approx(4 / 3 * np.pi * 10 * 12 * 14 / 1000, rel=0.03)
    assert liver["hu_mean"] == pytest.approx(50, abs=1.5)
    assert result.clinical["cardiothoracic_ratio"]["value"] is None
    assert result.lesions == []
    assert "abdomen" in result.regions
    rows = result.to_rows()
    assert {r["kind"] for r in rows} == {"structure", "region"}
    with pytest.raises(InputError, match="different grids"):
        measure(Volume(hu, affine), LabelMap(labels[:, :, :20], affine, {5: "liver"}))
