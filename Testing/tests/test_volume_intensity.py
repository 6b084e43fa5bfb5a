"""Stored values -> int16 HU for every storage type, and the CT plausibility check."""

from __future__ import annotations

import numpy as np
import pytest

from MedRegionCTLib.errors import NotCTError
from MedRegionCTLib.volume.intensity import check_ct_values, scale_to_hu


@pytest.mark.parametrize("dtype, slope, inter, lo, hi", [
    (np.int16, 1, 0, -1024, 3071),
    (np.uint16, 1, -1024, 0, 4095),
    (np.uint16, 1, -32768, 30000, 65535),  # values above 32767 stored unsigned: wrap-around path
    (np.int16, 2, -1000, -500, 2000),
    (np.uint8, 4, -1024, 0, 255),
    (np.int8, 1, 0, -100, 100),
    (np.int32, 1, 0, -1024, 3071),
    (np.uint32, 1, -1024, 0, 4095),
    (np.uint16, 0.5, -1024, 0, 8000),
    (np.float32, 1, 0, -1024, 3071),
    (np.float64, 0.25, -1000, 0, 9000),
])
def test_scale_to_hu_matches_float_reference(dtype, slope, inter, lo, hi):
    rng = np.random.default_rng(0)
    raw = rng.integers(lo, hi + 1, size=(9, 8, 7)).astype(dtype)
    if np.dtype(dtype).kind == "f":
        raw += np.asarray(0.4, dtype=dtype)
    raw = np.asfortranarray(raw)
    expected = np.rint(raw.astype(np.float64) * slope + inter)
    out = scale_to_hu(raw.copy(order="F"), slope, inter, what="x")
    assert out.dtype == np.int16 and out.shape == raw.shape
    np.testing.assert_array_equal(out, expected)


def test_scale_to_hu_nan_and_overflow():
    data = np.zeros((4, 4, 4), dtype=np.float32)
    data[1, 1, 1] = np.nan
    with pytest.raises(NotCTError, match="NaN"):
        scale_to_hu(data.copy(), what="x")
    assert scale_to_hu(data.copy(), what="x", check_ct=False).dtype == np.float32
    big = np.full((4, 4, 4), 60000, dtype=np.uint16)
    with pytest.raises(NotCTError, match="outside any Hounsfield-unit range"):
        scale_to_hu(big.copy(), what="x")


def test_check_ct_values():
    ct = np.full((30, 30, 10), 40, dtype=np.int16)
    ct[:3] = -1000
    ct[5:8, :, :] = -3024  # padding outside the scan circle is fine
    assert check_ct_values(ct, "x")["air_fraction"] > 0.05
    with pytest.raises(NotCTError, match="MR series"):
        check_ct_values(ct, "x", modality="MR")
    with pytest.raises(NotCTError, match="no voxel of air"):
        check_ct_values(np.full((10, 10, 10), 0.5, dtype=np.float32), "x")
