"""NRRD (and MetaImage) reading through SimpleITK: LPS -> RAS geometry, values at known world points."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import SimpleITK as sitk

from MedRegionCTLib.errors import NotCTError, VolumeReadError
from MedRegionCTLib.volume import read_labelmap, read_volume


def _rotation_lps(angle_deg: float) -> np.ndarray:
    """Rotation about the LPS z axis, then a small tilt about x (an oblique acquisition)."""
    a, t = np.radians(angle_deg), np.radians(12.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    return rz @ rx


def _write_itk(path, array_ijk: np.ndarray, spacing, origin_lps, direction_lps) -> sitk.Image:
    # SimpleITK's numpy order is [k, j, i].
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_ijk.transpose(2, 1, 0)))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(v) for v in origin_lps])
    image.SetDirection([float(v) for v in np.asarray(direction_lps).ravel()])
    sitk.WriteImage(image, str(path))
    return image


def _ct(shape, seed=0):
    rng = np.random.default_rng(seed)
    array = rng.integers(-1000, 1200, size=shape).astype(np.int16)
    array[:, :, 0] = -1000
    return array


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_itk_file_geometry_is_converted_to_ras(tmp_path, suffix):
    array = _ct((9, 7, 5))
    spacing, origin = (0.7, 0.9, 2.0), (-12.5, 40.0, -210.0)
    direction = _rotation_lps(25.0)
    image = _write_itk(tmp_path / f"ct{suffix}", array, spacing, origin, direction)
    vol = read_volume(tmp_path / f"ct{suffix}")
    assert vol.meta["format"] == ("nrrd" if suffix == ".nrrd" else "metaimage")
    np.testing.assert_array_equal(vol.array, array)
    np.testing.assert_allclose(vol.spacing, spacing, atol=1e-6)
    assert vol.is_oblique
    # Every test voxel: ITK's own index -> LPS point, turned into RAS, must map back to the same voxel.
    for ijk in [(0, 0, 0), (8, 6, 4), (3, 5, 1), (7, 0, 3)]:
        x, y, z = image.TransformIndexToPhysicalPoint(ijk)
        ras = np.array([-x, -y, z])
        np.testing.assert_allclose(vol.index_to_world(ijk), ras, atol=1e-6)
        found = np.round(vol.world_to_index(ras)).astype(int)
        assert vol.array[tuple(found)] == array[ijk]


def test_nrrd_axis_aligned_lps_reads_as_lps_code(tmp_path):
    array = _ct((6, 5, 4), seed=1)
    _write_itk(tmp_path / "lps.nrrd", array, (1.0, 1.0, 3.0), (100.0, 50.0, -20.0), np.eye(3))
    vol = read_volume(tmp_path / "lps.nrrd")
    assert vol.orientation == "LPS"
    np.testing.assert_allclose(vol.origin, (-100.0, -50.0, -20.0))
    assert vol.axis_directions()[0] == "right to left"


def test_nrrd_array_is_a_view_kept_alive(tmp_path):
    array = _ct((20, 18, 6), seed=2)
    _write_itk(tmp_path / "view.nrrd", array, (1, 1, 1), (0, 0, 0), np.eye(3))
    vol = read_volume(tmp_path / "view.nrrd")
    assert not vol.array.flags.owndata  # the ITK buffer itself, transposed, not a copy
    gc.collect()
    junk = [np.full(20 * 18 * 6, 7, dtype=np.int16) for _ in range(50)]  # reuse freed memory if any
    np.testing.assert_array_equal(vol.array, array)
    vol.array[0, 0, 0] = 123  # writable
    assert vol.array[0, 0, 0] == 123
    del junk


def _raw_nrrd(path, array_ijk: np.ndarray, extra_lines=()):
    """A minimal NRRD written by hand (no space field unless given in ``extra_lines``)."""
    types = {np.dtype(np.int16): "short", np.dtype(np.uint16): "ushort", np.dtype(np.uint8): "uchar"}
    header = ["NRRD0004", f"type: {types[array_ijk.dtype]}", "dimension: 3",
              "sizes: " + " ".join(str(n) for n in array_ijk.shape), "endian: little", "encoding: raw",
              *extra_lines, "", ""]
    path.write_bytes("\n".join(header).encode() + array_ijk.astype(array_ijk.dtype.newbyteorder("<"))
                     .tobytes(order="F"))


def test_nrrd_without_space_uses_itk_defaults_and_says_so(tmp_path):
    array = _ct((5, 4, 3), seed=3)
    _raw_nrrd(tmp_path / "nospace.nrrd", array)
    vol = read_volume(tmp_path / "nospace.nrrd")
    np.testing.assert_array_equal(vol.array, array)
    assert vol.spacing == (1.0, 1.0, 1.0)
    assert vol.meta["nrrd_space"] == "none"
    assert "no 'space'" in vol.meta["geometry_note"]


def test_seg_nrrd_names_and_uint16_labels(tmp_path):
    labels = np.zeros((5, 4, 3), dtype=np.uint16)
    labels[1:3, 1:3, 1] = 5
    labels[4, 3, 2] = 9
    _raw_nrrd(tmp_path / "case.seg.nrrd", labels,
              ["space: left-posterior-superior", "space directions: (1,0,0) (0,1,0) (0,0,2)",
               "space origin: (0,0,0)", "Segment0_Name:=liver", "Segment0_LabelValue:=5",
               "Segment1_Name:=spleen", "Segment1_LabelValue:=9"])
    lm = read_labelmap(tmp_path / "case.seg.nrrd")
    assert lm.names == {5: "liver", 9: "spleen"}
    assert lm.present() == {5: "liver", 9: "spleen"}
    assert lm.meta["names_from"] == "seg.nrrd header"


def test_nrrd_bad_inputs(tmp_path):
    _write_itk(tmp_path / "flat.nrrd", _ct((6, 6, 1)), (1, 1, 1), (0, 0, 0), np.eye(3))
    with pytest.raises(VolumeReadError, match="single slice"):
        read_volume(tmp_path / "flat.nrrd")
    image = sitk.GetImageFromArray(_ct((4, 6, 6)).transpose(2, 1, 0).copy()[..., :2].copy(), isVector=True)
    sitk.WriteImage(image, str(tmp_path / "vector.nrrd"))
    with pytest.raises(VolumeReadError, match="values per voxel"):
        read_volume(tmp_path / "vector.nrrd")
    _write_itk(tmp_path / "good.nrrd", _ct((30, 30, 8)), (1, 1, 1), (0, 0, 0), np.eye(3))
    data = (tmp_path / "good.nrrd").read_bytes()
    (tmp_path / "cut.nrrd").write_bytes(data[: len(data) // 2])
    with pytest.raises(VolumeReadError, match="truncated or corrupt"):
        read_volume(tmp_path / "cut.nrrd")
    rng = np.random.default_rng(0)
    _write_itk(tmp_path / "mr.nrrd", rng.integers(0, 700, (6, 6, 4)).astype(np.uint16), (1, 1, 1), (0, 0, 0),
               np.eye(3))
    with pytest.raises(NotCTError, match="--no-ct-check"):
        read_volume(tmp_path / "mr.nrrd")
    assert read_volume(tmp_path / "mr.nrrd", check_ct=False).array.dtype == np.int16


def test_nrrd_in_ras_space_is_honoured(tmp_path):
    array = _ct((4, 5, 3), seed=4)
    _raw_nrrd(tmp_path / "ras.nrrd", array, ["space: right-anterior-superior",
                                              "space directions: (2,0,0) (0,1.5,0) (0,0,3)",
                                              "space origin: (10,20,30)"])
    vol = read_volume(tmp_path / "ras.nrrd")
    assert vol.orientation == "RAS"
    np.testing.assert_allclose(vol.affine, [[2, 0, 0, 10], [0, 1.5, 0, 20], [0, 0, 3, 30], [0, 0, 0, 1]])
    np.testing.assert_array_equal(vol.array, array)
