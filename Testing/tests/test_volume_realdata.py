"""The volume readers on the real CT sets (needs MEDREGIONCT_REALDATA pointing at the shared data folder).

Geometry against realct/INVENTORY.json (same comparison as Testing/realdata/check_realct.py), DICOM and NRRD
readers voxel for voxel against the NIfTI conversions, and left/right of labelled organs in RAS.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from realdata_paths import require

from MedRegionCTLib.data import totalsegmentator_class_indices
from MedRegionCTLib.volume import read_labelmap, read_volume, reorient, resample_like

pytestmark = pytest.mark.realdata

ROOT = require("realct", "INVENTORY.json")

_spec = importlib.util.spec_from_file_location(
    "check_realct", Path(__file__).resolve().parents[1] / "realdata" / "check_realct.py")
check = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("check_realct", check)  # dataclasses look their module up there
_spec.loader.exec_module(check)
CASES = check.cases(ROOT)


@pytest.mark.parametrize("case", CASES, ids=[c.path for c in CASES])
def test_geometry_matches_inventory(case):
    vol = read_volume(ROOT / case.path)
    info = {**vol.describe(), "format": vol.meta["format"]}
    assert info["format"] == case.kind
    assert check.compare(case, info) == []
    assert vol.array.dtype == np.int16


def test_cli_info_on_jpeg2000_dicom():
    info = check.run_info(ROOT / "04_totalseg_example_ct_dicom_upper_abdomen" / "dicom")
    assert info["format"] == "dicom" and info["shape"] == [512, 512, 20]


@pytest.mark.parametrize("source, reference", [
    ("04_totalseg_example_ct_dicom_upper_abdomen/dicom", "04_totalseg_example_ct_dicom_upper_abdomen/"
                                                         "ct_from_dicom_DERIVED.nii.gz"),
    ("05_cip_copdgene_whole_chest_lowres/dicom", "05_cip_copdgene_whole_chest_lowres/ct_DERIVED.nii.gz"),
    ("05_cip_copdgene_whole_chest_lowres/ct.nrrd", "05_cip_copdgene_whole_chest_lowres/ct_DERIVED.nii.gz"),
    ("07_cip_copdgene_crop_lobes/ct_2slices.nrrd", "07_cip_copdgene_crop_lobes/ct_2slices_DERIVED.nii.gz"),
    ("10_dcmqi_ct_3slices_heart_liver_spine/dicom", "10_dcmqi_ct_3slices_heart_liver_spine/"
                                                    "ct_DERIVED_from_dicom.nii.gz"),
])
def test_same_values_at_same_world_points(source, reference):
    a, b = reorient(read_volume(ROOT / source), "RAS"), reorient(read_volume(ROOT / reference), "RAS")
    assert _same_world_grid(a, b)
    np.testing.assert_array_equal(a.array, b.array)


def test_jpeg2000_decoders_agree():
    from MedRegionCTLib.volume.dicom_series import read_dicom_series

    folder = ROOT / "04_totalseg_example_ct_dicom_upper_abdomen" / "dicom"
    by_pydicom = read_dicom_series(folder, decoder="pydicom")
    by_gdcm = read_dicom_series(folder, decoder="simpleitk")
    np.testing.assert_array_equal(by_pydicom[0], by_gdcm[0])
    assert by_pydicom[2]["transfer_syntax"].startswith("JPEG 2000")


def _same_world_grid(a, b) -> bool:
    """Same voxels in world space (axis order may differ); 1 micrometre slack for header rounding."""
    a, b = reorient(a, "RAS"), reorient(b, "RAS")
    return a.shape == b.shape and np.allclose(a.affine, b.affine, atol=1e-3)


def _centroid_x(labels, mask) -> float:
    ijk = np.argwhere(mask)
    assert len(ijk), "label absent"
    return float(labels.index_to_world(ijk.mean(axis=0))[0])


def _side(name: str) -> int:
    """-1 for a left-sided class (RAS x < 0), +1 for right-sided, 0 otherwise."""
    if name.endswith("_left") or name == "spleen":
        return -1
    if name.endswith("_right") or name == "liver":
        return 1
    return 0


TS_NAMES = {i: n for n, i in totalsegmentator_class_indices().items() if i <= 117}


@pytest.mark.parametrize("ct, seg", [
    ("02_totalseg_example_ct_sm_upper_abdomen_lung_bases/ct.nii.gz",
     "02_totalseg_example_ct_sm_upper_abdomen_lung_bases/seg_total_ml_model_output.nii.gz"),
    ("03_totalseg_example_ct_abdomen_pelvis_NONCHEST/ct.nii.gz",
     "03_totalseg_example_ct_abdomen_pelvis_NONCHEST/seg_total_fast_ml_model_output.nii.gz"),
    ("04_totalseg_example_ct_dicom_upper_abdomen/dicom",
     "04_totalseg_example_ct_dicom_upper_abdomen/seg_total_fast_ml_model_output.nii.gz"),
])
def test_totalsegmentator_labels_are_on_the_right_side(ct, seg):
    vol = read_volume(ROOT / ct)
    labels = read_labelmap(ROOT / seg, names=TS_NAMES)
    # The labels were made on the NIfTI grid; in world space they must sit on our CT grid exactly.
    assert _same_world_grid(labels, vol)
    on_ct = resample_like(labels, vol)
    np.testing.assert_array_equal(np.bincount(on_ct.array.ravel()), np.bincount(labels.array.ravel()))
    present = labels.present()
    checked = {name: _centroid_x(labels, labels.array == i) for i, name in present.items() if _side(name)}
    if "02_" in ct:
        assert {"spleen", "lung_upper_lobe_left"} <= set(checked) and TS_NAMES[1] == "spleen"
        assert TS_NAMES[10] == "lung_upper_lobe_left"
    assert len(checked) >= 4
    for name, x in checked.items():
        assert np.sign(x) == _side(name), f"{name} centroid at RAS x={x:.1f}"
    for name, x in checked.items():  # pairs: the left one always lies to the left of the right one
        twin = name[:-5] + "_right" if name.endswith("_left") else None
        if twin in checked:
            assert x < checked[twin]


def test_cip_lung_thirds_left_and_right():
    folder = ROOT / "05_cip_copdgene_whole_chest_lowres"
    vol = read_volume(folder / "dicom")
    labels = read_labelmap(folder / "lung_labelmap_cip.nrrd")
    assert _same_world_grid(labels, vol)
    region = labels.array & 0xFF  # CIP: value = (type << 8) + region; regions 9-11 left, 12-14 right thirds
    for third in (9, 10, 11):
        assert _centroid_x(labels, region == third) < 0
    for third in (12, 13, 14):
        assert _centroid_x(labels, region == third) > 0
    lung_hu = vol.array[np.isin(region, range(9, 15)) & (labels.array < 256)]
    assert -950 < np.median(lung_hu) < -700  # lung parenchyma read through our DICOM reader
