"""Model preprocessing (numpy only): orientation, body crop, intensities, resampling, region crops, slices."""

from __future__ import annotations

import numpy as np
import pytest

from MedRegionCTLib.errors import InputError
from MedRegionCTLib.model.config import PreprocessConfig
from MedRegionCTLib.model.preprocess import (
    PreparedCase,
    body_box,
    prepare_case,
    resize,
    resize_mask,
    to_canonical,
)

CFG = PreprocessConfig(grid=(16, 16, 8), num_slices=8, slice_size=24, body_margin_mm=0.0)


def _ras_case(shape=(40, 36, 20)):
    """A body block in air with a region in the patient's right-anterior-superior corner of the body."""
    hu = np.full(shape, -1000, dtype=np.int16)
    hu[4:36, 6:30, 2:18] = 40
    region = np.zeros(shape, bool)
    region[24:34, 20:28, 10:16] = True  # RAS: high i = right, high j = anterior, high k = superior
    hu[region] = -800
    other = np.zeros(shape, bool)
    other[6:14, 8:14, 3:8] = True
    affine = np.diag([1.5, 1.5, 2.5, 1.0])
    return {"volume": hu, "affine": affine, "regions": {"roi": region, "other": other}}


def _to_lps(case):
    """The same patient stored in LPS voxel order (axes 0 and 1 flipped)."""
    shape = case["volume"].shape
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3] = shape[0] - 1
    flip[1, 3] = shape[1] - 1
    return {"volume": case["volume"][::-1, ::-1, :].copy(), "affine": case["affine"] @ flip,
            "regions": {k: m[::-1, ::-1, :].copy() for k, m in case["regions"].items()}}


def test_voxel_order_of_the_file_does_not_change_the_model_input():
    ras = prepare_case(_ras_case(), CFG)
    lps = prepare_case(_to_lps(_ras_case()), CFG)
    assert set(ras.arrays) == {"image", "masks", "crops", "slices", "slice_masks"}
    for name in ras.arrays:
        np.testing.assert_allclose(ras.arrays[name], lps.arrays[name], atol=1e-6, err_msg=name)


def test_canonical_orientation_maps_voxels_to_the_same_world_points():
    case = _to_lps(_ras_case())
    array, affine = to_canonical(case["volume"], case["affine"])
    ijk = np.array([3, 5, 7])
    world = affine[:3, :3] @ ijk + affine[:3, 3]
    src = np.linalg.solve(case["affine"][:3, :3], world - case["affine"][:3, 3]).round().astype(int)
    assert array[tuple(ijk)] == case["volume"][tuple(src)]
    assert np.all(np.diag(affine[:3, :3]) > 0)


def test_shapes_and_intensities_follow_the_configuration():
    p = prepare_case(_ras_case(), CFG)
    assert p.keys == ["roi", "other"]
    assert p.arrays["image"].shape == (16, 16, 8)
    assert p.arrays["masks"].shape == p.arrays["crops"].shape == (2, 16, 16, 8)
    assert p.arrays["slices"].shape == (8, 24, 24)
    assert p.arrays["slice_masks"].shape == (2, 8, 24, 24)
    # soft tissue 40 HU -> (40 + 400) / 600 in the 3D image; the 2D window maps [-1000, 200] to [0, 1]
    assert np.isclose(np.median(p.arrays["image"]), 440 / 600, atol=1e-5)
    assert np.isclose(np.median(p.arrays["slices"]), 1040 / 1200, atol=1e-5)
    assert p.arrays["slices"].min() >= 0 and p.arrays["slices"].max() <= 1
    for name in ("masks", "slice_masks"):
        assert p.arrays[name].min() >= 0 and p.arrays[name].max() <= 1


def test_body_crop_ignores_a_separate_table_and_air():
    case = _ras_case()
    hu = case["volume"].copy()
    hu[0:40, 0:2, 0:20] = 200  # a thin "table" along the posterior edge
    box = body_box(hu, (1.5, 1.5, 2.5), CFG)
    assert box == (slice(4, 36), slice(6, 30), slice(2, 18))
    with pytest.raises(InputError, match="no body"):
        body_box(np.full((10, 10, 10), -1000), (1, 1, 1), CFG)


def test_area_resampling_keeps_mask_volume_and_tiny_regions():
    rng = np.random.default_rng(0)
    mask = rng.random((50, 44, 30)) > 0.7
    out = resize_mask(mask, (20, 16, 12))
    scale = (50 * 44 * 30) / (20 * 16 * 12)
    assert np.isclose(out.sum() * scale, mask.sum(), rtol=1e-5)
    dot = np.zeros((64, 64, 40), bool)
    dot[31, 17, 5] = True
    small = resize_mask(dot, (8, 8, 5))
    assert small.max() > 0 and np.isclose(small.sum() * (64 * 64 * 40) / (8 * 8 * 5), 1.0, rtol=1e-5)
    # enlarging interpolates linearly and stays within the input range
    a = rng.normal(size=(5, 6, 7)).astype(np.float32)
    big = resize(a, (10, 12, 14))
    assert big.min() >= a.min() - 1e-6 and big.max() <= a.max() + 1e-6


def test_region_crop_is_the_region_only_at_full_resolution():
    p = prepare_case(_ras_case(), CFG)
    crop = p.arrays["crops"][0]
    # the region is -800 HU everywhere and its box is exactly the mask: the crop is uniform
    assert np.allclose(crop, (-800 + 400) / 600)
    case = _ras_case()
    case["regions"]["roi"][24, 20, 10] = False  # a hole: outside the mask inside the box
    case["volume"][24, 20, 10] = 40
    masked = prepare_case(case, CFG).arrays["crops"][0]
    unmasked = prepare_case(case, PreprocessConfig(**{**CFG.__dict__, "mask_outside_region": False})).arrays["crops"][0]
    assert masked.min() < (-800 + 400) / 600 - 1e-3  # the hole reads as air (hu_min)
    assert unmasked.max() > (-800 + 400) / 600 + 1e-3  # the hole keeps its tissue value


def test_slices_are_shown_the_radiological_way():
    p = prepare_case(_ras_case(), CFG)
    roi = p.arrays["slice_masks"][0]  # (Z, H, W)
    z, row, col = np.unravel_index(np.argmax(roi), roi.shape)
    # the region is superior, anterior (top rows) and on the patient's right (left columns of the image)
    assert z >= 4 and row < 12 and col < 12


def test_empty_regions_are_listed_and_bad_inputs_explained():
    case = _ras_case()
    case["regions"]["nothing"] = np.zeros(case["volume"].shape, bool)
    case["paragraphs"] = {"roi": "A.", "nothing": "B."}
    p = prepare_case(case, CFG)
    assert p.keys == ["roi", "other"] and p.empty == ["nothing"]
    assert p.paragraphs == {"roi": "A."}
    with pytest.raises(InputError, match="every region mask is empty"):
        prepare_case({**case, "regions": {"a": np.zeros(case["volume"].shape, bool)}}, CFG)
    with pytest.raises(InputError, match="resample the mask"):
        prepare_case({**case, "regions": {"a": np.ones((3, 3, 3), bool)}}, CFG)
    with pytest.raises(InputError, match="affine"):
        prepare_case({"volume": case["volume"], "regions": case["regions"]}, CFG)


def test_payload_round_trip():
    p = prepare_case(_ras_case(), CFG, needed=("image", "masks"))
    q = PreparedCase.from_payload(p.to_payload())
    assert q.keys == p.keys and set(q.arrays) == {"image", "masks"}
    np.testing.assert_array_equal(q.arrays["masks"], p.arrays["masks"])
    with pytest.raises(InputError, match="unknown arrays"):
        PreparedCase.from_payload({"keys": [], "arrays": {"weird": np.zeros(1)}})
