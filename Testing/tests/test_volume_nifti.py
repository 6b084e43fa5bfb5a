"""NIfTI reading/writing of the volume layer, on files these tests write with known geometry."""

from __future__ import annotations

import gzip
import hashlib
import json

import nibabel as nib
import numpy as np
import pytest

from MedRegionCTLib.errors import InputError, NotCTError, VolumeReadError
from MedRegionCTLib.volume import LabelMap, Volume, read_labelmap, read_volume, write_nifti


def _ct_like(shape, seed=0) -> np.ndarray:
    """Int16 HU with air, soft tissue and bone and no symmetry (so any flip or transpose shows)."""
    rng = np.random.default_rng(seed)
    array = rng.integers(-1000, 1500, size=shape).astype(np.int16)
    array[0, :, :] = -1000
    return array


def _rotation(ax, ay, az) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _affine(signs, spacing=(0.8, 0.9, 2.5), origin=(-40.0, 25.0, -300.0), rotation=None) -> np.ndarray:
    affine = np.eye(4)
    direction = np.diag(np.asarray(signs, dtype=float)) if rotation is None else rotation
    affine[:3, :3] = direction * np.asarray(spacing)
    affine[:3, 3] = origin
    return affine


def _write_scaled_nifti(path, raw: np.ndarray, affine, slope, inter):
    """A NIfTI with exactly these stored values and scl_slope/scl_inter (nibabel would rescale on save)."""
    header = nib.Nifti1Header()
    header.set_data_shape(raw.shape)
    header.set_data_dtype(raw.dtype)
    header.set_sform(affine, code=1)
    header.set_qform(affine, code=1)
    header["scl_slope"] = slope
    header["scl_inter"] = inter
    header["vox_offset"] = 352
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as handle:
        header.write_to(handle)
        handle.write(b"\0" * max(0, 352 - handle.tell()))  # write_to already adds the extension flag
        handle.write(raw.tobytes(order="F"))


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("signs, code", [((1, 1, 1), "RAS"), ((-1, -1, 1), "LPS"), ((-1, 1, 1), "LAS"),
                                         ((1, -1, -1), "RPI")])
def test_nifti_keeps_voxel_order_and_affine(tmp_path, signs, code):
    array = _ct_like((12, 10, 6))
    affine = _affine(signs)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(array, affine), path)
    vol = read_volume(path)
    assert vol.orientation == code
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, array)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-5)
    # The voxel holding a known value sits at the expected world position.
    ijk = np.array([7, 2, 4])
    world = affine[:3, :3] @ ijk + affine[:3, 3]
    np.testing.assert_allclose(vol.world_to_index(world), ijk, atol=1e-4)
    assert vol.meta["format"] == "nifti" and vol.meta["source"] == str(path)


def test_nifti_oblique_affine(tmp_path):
    affine = _affine((1, 1, 1), rotation=_rotation(0.3, -0.2, 0.5))
    array = _ct_like((9, 8, 7), seed=3)
    path = tmp_path / "oblique.nii"
    nib.save(nib.Nifti1Image(array, affine), path)
    vol = read_volume(path)
    assert vol.is_oblique
    np.testing.assert_allclose(vol.affine, affine, atol=1e-5)
    np.testing.assert_allclose(vol.spacing, (0.8, 0.9, 2.5), atol=1e-5)
    np.testing.assert_array_equal(vol.array, array)


def test_nifti_uint16_with_intercept_becomes_int16_hu(tmp_path):
    hu = _ct_like((10, 9, 5), seed=1)
    raw = (hu.astype(np.int32) + 1024).astype(np.uint16)
    path = tmp_path / "stored_uint16.nii"
    affine = _affine((-1, -1, 1))
    _write_scaled_nifti(path, raw, affine, 1.0, -1024.0)
    before = _sha(path)
    vol = read_volume(path)
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, hu)
    assert vol.meta["rescale"] == {"slope": 1.0, "intercept": -1024.0}
    vol.array[:] = 0  # the array is ours: changing it must not reach the file
    assert _sha(path) == before


def test_nifti_float_slope_is_applied_and_rounded(tmp_path):
    hu = _ct_like((8, 8, 4), seed=2)
    raw = ((hu.astype(np.int32) + 1024) * 2).astype(np.uint16)  # slope 0.5
    path = tmp_path / "half.nii.gz"
    _write_scaled_nifti(path, raw, _affine((1, 1, 1)), 0.5, -1024.0)
    vol = read_volume(path)
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, hu)


def test_nifti_float_data_is_rounded_to_int16(tmp_path):
    hu = _ct_like((8, 7, 3), seed=4).astype(np.float32) + 0.3
    path = tmp_path / "float.nii.gz"
    nib.save(nib.Nifti1Image(hu, _affine((1, 1, 1))), path)
    vol = read_volume(path)
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, np.rint(hu).astype(np.int16))


def test_nifti_4d_with_one_volume_is_accepted(tmp_path):
    array = _ct_like((6, 5, 4))
    path = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(array[..., None], _affine((1, 1, 1))), path)
    vol = read_volume(path)
    assert vol.shape == (6, 5, 4)
    np.testing.assert_array_equal(vol.array, array)


@pytest.mark.parametrize("shape, words", [((16, 16), "2D image"), ((16, 16, 1), "single slice"),
                                          ((8, 8, 8, 3), "4D image")])
def test_nifti_wrong_dimensions(tmp_path, shape, words):
    path = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.full(shape, -1000, dtype=np.int16), np.eye(4)), path)
    with pytest.raises(VolumeReadError, match=words) as info:
        read_volume(path)
    assert "\n" not in str(info.value)


def test_truncated_nifti_gz(tmp_path):
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(_ct_like((40, 40, 20)), np.eye(4)), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VolumeReadError, match="truncated or corrupt") as info:
        read_volume(path)
    assert "\n" not in str(info.value)


def test_corrupt_nifti_header(tmp_path):
    path = tmp_path / "junk.nii"
    path.write_bytes(b"not a nifti file at all" * 10)
    with pytest.raises(VolumeReadError, match="NIfTI"):
        read_volume(path)


def test_missing_path_and_unsupported_extension(tmp_path):
    with pytest.raises(VolumeReadError, match="does not exist"):
        read_volume(tmp_path / "nope.nii.gz")
    png = tmp_path / "slice.png"
    png.write_bytes(b"\x89PNG\r\n")
    with pytest.raises(VolumeReadError, match="unsupported file type '.png'") as info:
        read_volume(png)
    assert "NIfTI" in str(info.value) and "DICOM" in str(info.value)


def test_mr_like_values_are_not_ct(tmp_path):
    rng = np.random.default_rng(5)
    mr = rng.integers(0, 900, size=(10, 10, 6)).astype(np.int16)
    path = tmp_path / "mr.nii.gz"
    nib.save(nib.Nifti1Image(mr, np.eye(4)), path)
    with pytest.raises(NotCTError, match="check_ct=False") as info:
        read_volume(path)
    assert "--no-ct-check" in str(info.value)
    vol = read_volume(path, check_ct=False)
    np.testing.assert_array_equal(vol.array, mr)


def test_raw_ct_without_intercept_is_flagged(tmp_path):
    hu = _ct_like((10, 10, 6), seed=6)
    raw = (hu.astype(np.int32) + 1024).clip(0, 4095).astype(np.int16)  # 0..4095, rescale lost
    path = tmp_path / "raw.nii.gz"
    nib.save(nib.Nifti1Image(raw, np.eye(4)), path)
    with pytest.raises(NotCTError, match="rescale intercept"):
        read_volume(path)


def test_values_beyond_int16_are_not_hu(tmp_path):
    data = _ct_like((6, 6, 4)).astype(np.float32)
    data[2, 2, 2] = 1e6
    path = tmp_path / "huge.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(NotCTError, match="check_ct=False"):
        read_volume(path)
    vol = read_volume(path, check_ct=False)
    assert vol.array.dtype == np.float32 and vol.array.max() == pytest.approx(1e6)


def test_volume_round_trip(tmp_path):
    affine = _affine((-1, 1, 1), rotation=_rotation(0.1, 0.0, 0.2))
    vol = Volume(_ct_like((11, 7, 5), seed=7), affine, {"x": 1})
    out = write_nifti(vol, tmp_path / "sub" / "rt.nii.gz")
    assert out.exists() and list(out.parent.iterdir()) == [out]  # no temporary file left behind
    back = read_volume(out)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, affine, atol=1e-5)
    with gzip.open(out) as handle:
        assert handle.read(4)  # gzip really used for .nii.gz
    plain = write_nifti(vol, tmp_path / "rt.nii")
    assert plain.read_bytes()[344:348] == b"n+1\0"


def test_write_failure_leaves_no_partial_file(tmp_path):
    vol = Volume(_ct_like((6, 6, 4)), np.eye(4))
    target = tmp_path / "keep.nii.gz"
    write_nifti(vol, target)
    before = _sha(target)
    broken = LabelMap(np.array([[[-1, 0], [0, 0]], [[0, 0], [0, 0]]], dtype=np.int16), np.eye(4))
    with pytest.raises(InputError, match="negative"):
        write_nifti(broken, target)
    assert _sha(target) == before and sorted(p.name for p in tmp_path.iterdir()) == ["keep.nii.gz"]
    with pytest.raises(InputError, match=r"\.nii\.gz"):
        write_nifti(vol, tmp_path / "out.nrrd")


@pytest.mark.parametrize("top, dtype", [(7, np.uint8), (300, np.uint16), (70000, np.uint32)])
def test_labelmap_smallest_dtype_and_names_round_trip(tmp_path, top, dtype):
    array = np.zeros((5, 4, 3), dtype=np.int64)
    array[1, 1, 1] = top
    array[2, 2, 2] = 1
    labels = LabelMap(array, _affine((-1, -1, 1)), {1: "spleen", top: "other"})
    path = write_nifti(labels, tmp_path / "seg.nii.gz")
    assert nib.load(path).get_data_dtype() == dtype
    assert json.loads((tmp_path / "seg.json").read_text()) == {"1": "spleen", str(top): "other"}
    back = read_labelmap(path)
    assert back.array.dtype == dtype
    np.testing.assert_array_equal(back.array, array)
    assert back.names == {1: "spleen", top: "other"}
    np.testing.assert_allclose(back.affine, labels.affine, atol=1e-5)
    assert read_labelmap(path, names={1: "x"}).names == {1: "x"}


def test_read_labelmap_rejects_probability_maps_and_skips_ct_check(tmp_path):
    prob = np.linspace(0, 1, 60, dtype=np.float32).reshape(5, 4, 3)
    path = tmp_path / "prob.nii.gz"
    nib.save(nib.Nifti1Image(prob, np.eye(4)), path)
    with pytest.raises(InputError, match="not a label map"):
        read_labelmap(path)
    whole = np.zeros((5, 4, 3), dtype=np.float32)
    whole[2:, :, 1] = 3.0
    nib.save(nib.Nifti1Image(whole, np.eye(4)), tmp_path / "floatlabels.nii.gz")
    labels = read_labelmap(tmp_path / "floatlabels.nii.gz")  # labels have no air: no CT check here
    assert labels.array.dtype == np.uint8 and labels.present() == {3: "label_3"}


def test_bad_sidecar_names(tmp_path):
    path = write_nifti(LabelMap(np.ones((3, 3, 2), dtype=np.uint8), np.eye(4)), tmp_path / "m.nii.gz")
    (tmp_path / "m.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="m.json"):
        read_labelmap(path)


def test_big_endian_nifti(tmp_path):
    hu = _ct_like((7, 6, 4), seed=8)
    raw = (hu.astype(np.int32) + 1024).astype(">u2")
    header = nib.Nifti1Header(endianness=">")
    header.set_data_shape(raw.shape)
    header.set_data_dtype(raw.dtype)
    header.set_sform(np.eye(4), code=1)
    header["scl_slope"], header["scl_inter"] = 1.0, -1024.0
    with gzip.open(tmp_path / "be.nii.gz", "wb") as handle:
        header.write_to(handle)
        handle.write(raw.tobytes(order="F"))
    vol = read_volume(tmp_path / "be.nii.gz")
    assert vol.array.dtype == np.int16 and vol.array.dtype.isnative
    np.testing.assert_array_equal(vol.array, hu)
    with pytest.raises(InputError, match="negative"):  # scaled values are HU, not labels
        read_labelmap(tmp_path / "be.nii.gz")
