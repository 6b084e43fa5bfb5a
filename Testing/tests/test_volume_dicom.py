"""DICOM series reading, on series these tests write with pydicom (known geometry and pixel values).

Every pixel of a written series holds ``hu_at(p)`` of its own LPS position ``p`` (from the DICOM geometry
rules), so checking that each voxel of the read volume holds ``hu_at`` of the position its affine gives
catches any flip, transpose, mis-sorted slice or wrong rescale.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, RLELossless, generate_uid

from MedRegionCTLib.errors import NotCTError, VolumeReadError
from MedRegionCTLib.volume import read_volume
from MedRegionCTLib.volume.dicom_series import read_dicom_series

ROWS, COLS = 12, 14


def hu_at(lps: np.ndarray) -> np.ndarray:
    """The test image: a linear ramp through air and soft tissue, different along every patient axis."""
    x, y, z = lps[..., 0], lps[..., 1], lps[..., 2]
    return np.rint(-500 + 9.0 * x - 5.0 * y + 23.0 * z)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def write_series(folder, *, n=6, iop=(1, 0, 0, 0, 1, 0), spacing=(0.8, 0.7), step=2.5,
                 origin=(-5.0, 3.0, -8.0), slope=1.0, intercept=-1024.0, unsigned=True, modality="CT",
                 series_uid=None, series_number=3, names=None, shear=(0.0, 0.0, 0.0), hu=hu_at, skip=(),
                 image_type=("ORIGINAL", "PRIMARY", "AXIAL")):
    """Write ``n`` slices; returns the list of files. ``names(k)`` gives slice k's file name."""
    folder.mkdir(parents=True, exist_ok=True)
    row_dir, col_dir = _unit(iop[:3]), _unit(iop[3:])
    normal = np.cross(row_dir, col_dir)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    rr, cc = np.meshgrid(np.arange(ROWS), np.arange(COLS), indexing="ij")
    files = []
    for k in range(n):
        if k in skip:
            continue
        ipp = np.asarray(origin) + k * step * normal + k * np.asarray(shear)
        lps = ipp + cc[..., None] * spacing[1] * row_dir + rr[..., None] * spacing[0] * col_dir
        values = hu(lps)
        stored = np.rint((values - intercept) / slope)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.PatientName = "Doe^Jane"
        ds.PatientID = "PID-12345"
        ds.StudyDate = "20240102"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = f"test {series_number}"
        ds.InstanceNumber = k + 1
        ds.Modality = modality
        ds.ImageType = list(image_type)
        ds.Manufacturer = "TestCo"
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate([row_dir, col_dir])]
        ds.PixelSpacing = [spacing[0], spacing[1]]
        ds.SliceThickness = step
        ds.Rows, ds.Columns = ROWS, COLS
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0 if unsigned else 1
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        ds.PixelData = stored.astype(np.uint16 if unsigned else np.int16).tobytes()
        name = names(k) if names else f"IMG{k + 1:04d}.dcm"
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def assert_matches_hu(vol, hu=hu_at):
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in vol.shape], indexing="ij"), axis=-1)
    ras = vol.index_to_world(ijk)
    lps = ras * np.array([-1.0, -1.0, 1.0])
    np.testing.assert_array_equal(vol.array, hu(lps))


def _digest(folder) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_axial_series(tmp_path):
    write_series(tmp_path / "s", n=6)
    before = _digest(tmp_path / "s")
    vol = read_volume(tmp_path / "s")
    assert vol.shape == (COLS, ROWS, 6)  # i runs along the columns (first IOP vector)
    assert vol.orientation == "LPS" and vol.array.dtype == np.int16
    np.testing.assert_allclose(vol.spacing, (0.7, 0.8, 2.5), atol=1e-6)
    np.testing.assert_allclose(vol.origin, (5.0, -3.0, -8.0), atol=1e-6)  # LPS (-5, 3, -8) in RAS
    assert_matches_hu(vol)
    meta = vol.meta
    assert meta["format"] == "dicom" and meta["modality"] == "CT" and meta["n_slices"] == 6
    assert meta["rescale"] == {"slope": [1.0], "intercept": [-1024.0]}
    assert meta["transfer_syntax"] == "Explicit VR Little Endian"
    text = json.dumps(meta)
    for secret in ("Doe", "PID-12345", "20240102", "1.2.826.0.1.3680043"):
        assert secret not in text
    assert _digest(tmp_path / "s") == before  # reading changed nothing on disk


def test_oblique_shuffled_reversed_names_without_extension_and_slope(tmp_path):
    folder = tmp_path / "obl"
    a, t = np.radians(30), np.radians(15)
    row_dir = [np.cos(a), np.sin(a), 0.0]
    col_dir = [-np.sin(a) * np.cos(t), np.cos(a) * np.cos(t), np.sin(t)]
    order = list(range(7))
    random.Random(4).shuffle(order)
    write_series(folder, n=7, iop=(*row_dir, *col_dir), slope=0.5, intercept=-1024.0,
                 names=lambda k: f"x{order[k]:02d}{'abc'[k % 3]}")  # no extension, random order
    (folder / "README.txt").write_text("not dicom")
    (folder / ".DS_Store").write_bytes(b"\0\1\2")
    vol = read_volume(folder)
    assert vol.is_oblique
    assert vol.meta["rescale"]["slope"] == [0.5]
    assert_matches_hu(vol)
    np.testing.assert_allclose(np.abs(np.linalg.det(vol.affine[:3, :3])), 0.7 * 0.8 * 2.5, rtol=1e-6)


def test_reversed_slice_order_gives_same_volume(tmp_path):
    write_series(tmp_path / "a", n=5)
    write_series(tmp_path / "b", n=5, names=lambda k: f"IMG{5 - k:04d}.dcm")  # file order reversed
    va, vb = read_volume(tmp_path / "a"), read_volume(tmp_path / "b")
    np.testing.assert_array_equal(va.array, vb.array)
    np.testing.assert_allclose(va.affine, vb.affine)
    assert_matches_hu(vb)


def test_slices_descending_along_normal(tmp_path):
    # Positions go down as the instance numbers go up.
    write_series(tmp_path / "d", n=5, step=-3.0, origin=(-5.0, 3.0, 8.0))
    vol = read_volume(tmp_path / "d")
    assert vol.orientation == "LPS"  # sorted along the normal, so k still runs inferior -> superior
    assert_matches_hu(vol)


def test_gantry_tilt_gives_sheared_but_exact_geometry(tmp_path):
    write_series(tmp_path / "tilt", n=5, shear=(0.0, 0.6, 0.0))
    vol = read_volume(tmp_path / "tilt")
    assert vol.meta["gantry_tilt_deg"] > 5
    assert_matches_hu(vol)


def test_single_file_path_reads_its_series(tmp_path):
    files = write_series(tmp_path / "s", n=4)
    write_series(tmp_path / "s", n=4, series_number=9, names=lambda k: f"other{k}.dcm")
    vol = read_volume(files[2])
    assert vol.shape == (COLS, ROWS, 4) and vol.meta["series_number"] == 3


def test_two_series_error_and_selection(tmp_path):
    folder = tmp_path / "two"
    write_series(folder, n=4, series_number=3)
    uid = generate_uid()
    write_series(folder, n=5, series_number=7, series_uid=uid, names=lambda k: f"B{k}.dcm",
                 hu=lambda p: hu_at(p) + 100)
    with pytest.raises(VolumeReadError, match="2 DICOM series") as info:
        read_volume(folder)
    message = str(info.value)
    assert "#3" in message and "#7" in message and "series=" in message and "\n" not in message
    assert read_volume(folder, series=3).shape[2] == 4
    assert read_volume(folder, series="7").shape[2] == 5
    assert read_volume(folder, series=uid).shape[2] == 5
    with pytest.raises(VolumeReadError, match="not in"):
        read_volume(folder, series=42)


def test_missing_slice_is_a_gap(tmp_path):
    write_series(tmp_path / "gap", n=8, skip=(4,))
    with pytest.raises(VolumeReadError, match="gap"):
        read_volume(tmp_path / "gap")


def test_uneven_spacing(tmp_path):
    folder = tmp_path / "uneven"
    write_series(folder, n=4, step=2.0)
    write_series(folder, n=1, origin=(-5.0, 3.0, -8.0 + 2.0 * 3 + 1.2), series_uid=pydicom.dcmread(
        next(folder.iterdir())).SeriesInstanceUID, names=lambda k: "extra.dcm")
    with pytest.raises(VolumeReadError, match="uneven slice spacing"):
        read_volume(folder)


def test_duplicate_positions(tmp_path):
    files = write_series(tmp_path / "dup", n=4)
    ds = pydicom.dcmread(files[1])
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(tmp_path / "dup" / "copy.dcm")
    with pytest.raises(VolumeReadError, match="duplicate slice position"):
        read_volume(tmp_path / "dup")


def test_two_and_three_slice_series_are_volumes(tmp_path):
    for n in (2, 3):
        vol = read_volume(write_series(tmp_path / f"n{n}", n=n)[0].parent)
        assert vol.shape[2] == n
        assert_matches_hu(vol)


def test_single_slice_and_empty_folder(tmp_path):
    write_series(tmp_path / "one", n=1)
    with pytest.raises(VolumeReadError, match="single slice"):
        read_volume(tmp_path / "one")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    with pytest.raises(VolumeReadError, match="no DICOM images"):
        read_volume(tmp_path / "empty")


def test_mr_series_is_not_ct(tmp_path):
    write_series(tmp_path / "mr", n=3, modality="MR", intercept=0.0, hu=lambda p: np.abs(hu_at(p)))
    with pytest.raises(NotCTError, match="check_ct=False"):
        read_volume(tmp_path / "mr")
    assert read_volume(tmp_path / "mr", check_ct=False).meta["modality"] == "MR"


def test_ct_without_rescale_intercept_is_flagged(tmp_path):
    # Stored values of air and soft tissue (about 24 and 1064) with the -1024 intercept lost.
    write_series(tmp_path / "raw", n=3, intercept=0.0, hu=lambda p: np.where(hu_at(p) < -650, 24, 1064))
    with pytest.raises(NotCTError, match="rescale intercept"):
        read_volume(tmp_path / "raw")


def test_localizer_in_series_is_skipped(tmp_path):
    folder = tmp_path / "loc"
    files = write_series(folder, n=4)
    uid = pydicom.dcmread(files[0]).SeriesInstanceUID
    write_series(folder, n=1, iop=(1, 0, 0, 0, 0, -1), series_uid=uid, image_type=("ORIGINAL", "PRIMARY",
                 "LOCALIZER"), names=lambda k: "scout.dcm")
    vol = read_volume(folder)
    assert vol.shape[2] == 4 and vol.meta["localizers_skipped"] == 1


def test_compressed_series_pydicom_and_gdcm_agree(tmp_path):
    folder = tmp_path / "rle"
    files = write_series(folder, n=4, unsigned=False, intercept=-1024.0)
    for path in files:
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless)
        ds.save_as(path)
    assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == RLELossless
    vol = read_volume(folder)
    assert vol.meta["transfer_syntax"] == "RLE Lossless"
    assert_matches_hu(vol)
    # GDCM applies the rescale itself: the SimpleITK path must not apply it a second time.
    array, affine, meta = read_dicom_series(folder, decoder="simpleitk")
    assert meta["decoder"] == "simpleitk"
    np.testing.assert_array_equal(array, vol.array)
    np.testing.assert_allclose(affine, vol.affine)


def test_nested_folder_and_copy_is_read(tmp_path):
    write_series(tmp_path / "study" / "series1", n=3)
    vol = read_volume(tmp_path / "study")
    assert vol.shape[2] == 3
    shutil.copytree(tmp_path / "study", tmp_path / "copy")
    np.testing.assert_array_equal(read_volume(tmp_path / "copy").array, vol.array)


def test_truncated_slice_file(tmp_path):
    files = write_series(tmp_path / "cut", n=4)
    files[2].write_bytes(files[2].read_bytes()[:-100])
    with pytest.raises(VolumeReadError, match="IMG0003.dcm is truncated or corrupt") as info:
        read_volume(tmp_path / "cut")
    assert "\n" not in str(info.value)


def test_folder_of_nifti_files_gets_a_hint(tmp_path):
    (tmp_path / "ct.nii.gz").write_bytes(b"")
    with pytest.raises(VolumeReadError, match="give one of those files"):
        read_volume(tmp_path)


def test_progress_and_cancel(tmp_path):
    from MedRegionCTLib.errors import CancelledError
    from MedRegionCTLib.progress import CancelToken

    write_series(tmp_path / "p", n=10)
    seen = []
    read_volume(tmp_path / "p", progress=lambda f, m: seen.append(f))
    assert seen[0] == 0 and seen[-1] == 1.0 and seen == sorted(seen)
    token = CancelToken()
    token.set()
    with pytest.raises(CancelledError):
        read_volume(tmp_path / "p", cancel=token)
