"""Real TotalSegmentator outputs (realct/01-04 of the shared reference data) read through the adapter and
mapped onto regions. Skipped unless MEDREGIONCT_REALDATA points at the shared data folder."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from MedRegionCTLib.anatomy import build_regions, classes_to_regions
from MedRegionCTLib.segment.totalsegmentator import native_classes, read_totalsegmentator_output
from MedRegionCTLib.volume import read_volume

pytestmark = pytest.mark.realdata

ROOT = os.environ.get("MEDREGIONCT_REALDATA")


@pytest.fixture(scope="module")
def realct():
    if not ROOT:
        pytest.skip("MEDREGIONCT_REALDATA is not set (point it at the shared reference data folder)")
    folder = Path(ROOT) / "realct"
    if not folder.is_dir():
        pytest.skip(f"{folder} is missing")
    return folder


def _regions(labels, ct, schema="radgenome10"):
    return {r.key: r for r in build_regions(labels, schema, ct)}


def test_02_lung_bases_total_ml(realct):
    case = realct / "02_totalseg_example_ct_sm_upper_abdomen_lung_bases"
    labels = read_totalsegmentator_output(case / "seg_total_ml_model_output.nii.gz")
    ct = read_volume(case / "ct.nii.gz")
    assert labels.shape == ct.shape and np.allclose(labels.affine, ct.affine, atol=1e-4)
    assert labels.meta["names_from"] == "nifti header extension" and labels.meta["unknown_names"] == []
    total = native_classes("total")
    assert {i: total[i] for i in labels.names} == labels.names  # embedded names are TotalSegmentator's own
    assert {10, 11, 13, 14} <= set(labels.names) and 12 not in labels.names
    mapping = classes_to_regions("radgenome10", labels.names.values())
    for lobe in ("lung_upper_lobe_left", "lung_lower_lobe_left", "lung_middle_lobe_right",
                 "lung_lower_lobe_right"):
        assert mapping[lobe] == ["lung"]
    assert mapping["liver"] == ["abdomen"] and mapping["spleen"] == ["abdomen"]
    assert mapping["rib_left_9"] == ["bone"] and mapping["costal_cartilages"] == ["bone"]
    assert mapping["vertebrae_T12"] == ["bone"] and mapping["aorta"] == ["mediastinum"]
    regions = _regions(labels, ct)
    lobes = np.isin(labels.array, [10, 11, 13, 14])
    assert np.array_equal(regions["lung"].mask, lobes)
    assert regions["abdomen"].mask[labels.array == 5].all()
    assert regions["heart"].empty and regions["thyroid"].empty
    # no pleural class in 'total': the pleura is the 4 mm shell around the lung bases
    assert regions["pleura"].sources == ["rule shell_around(thickness_mm=4, min_hu=-900)"]
    assert not (regions["pleura"].mask & lobes).any()


def test_02_fast_output_matches_totalsegmentator_statistics(realct):
    case = realct / "02_totalseg_example_ct_sm_upper_abdomen_lung_bases"
    labels = read_totalsegmentator_output(case / "seg_total_fast_ml_model_output.nii.gz")
    ct = read_volume(case / "ct.nii.gz")
    stats = json.loads((case / "statistics_fast_reference.json").read_text())
    volumes = labels.volumes_ml()
    for name, ref in stats.items():  # TotalSegmentator's own --statistics: volume in mm3, mean HU
        assert volumes.get(name, 0.0) * 1000 == pytest.approx(ref["volume"], rel=1e-4, abs=1e-3), name
        if name in volumes:
            assert ct.array[labels.mask(name)].mean() == pytest.approx(ref["intensity"], abs=0.01), name


def test_01_chest_cta_per_class_folder(realct):
    case = realct / "01_totalseg_chest_cta_crop" / "aorta_crop"
    labels = read_totalsegmentator_output(case / "seg_model_output",
                                          mapping={"heart_DERIVED_cropped_from_fullgrid": "heart"})
    ct = read_volume(case / "ct.nii.gz")
    assert labels.shape == ct.shape
    names = set(labels.names.values())
    assert {"aorta", "heart", "brachiocephalic_trunk", "subclavian_artery_left", "common_carotid_artery_left",
            "vertebrae_T12"} <= names
    mapping = classes_to_regions("radgenome10", names)
    assert mapping["aorta"] == ["mediastinum"] and mapping["heart"] == ["heart"]
    assert mapping["brachiocephalic_trunk"] == ["mediastinum"] and mapping["vertebrae_T12"] == ["bone"]
    assert mapping["celiac_trunk"] == ["abdomen"]  # from the multi-label T710 file's embedded names
    assert classes_to_regions("medregion6", ["aorta", "heart"]) == {"aorta": ["heart_great_vessels"],
                                                                    "heart": ["heart_great_vessels"]}
    regions = _regions(labels, ct)
    aorta = labels.mask("aorta")
    assert aorta.sum() > 10000 and regions["mediastinum"].mask[aorta].all()
    assert np.array_equal(regions["heart"].mask, labels.mask("heart"))
    assert regions["lung"].empty  # the crop holds no lung labels
    # sub-parts of the aorta from other files do not take voxels from the aorta itself
    assert labels.meta["overlap_voxels_kept_by_earlier_class"]["aorta_true_lumen"] > 0


def test_03_abdomen_pelvis_is_mostly_abdomen_and_bone(realct):
    case = realct / "03_totalseg_example_ct_abdomen_pelvis_NONCHEST"
    labels = read_totalsegmentator_output(case / "seg_total_fast_ml_model_output.nii.gz")
    ct = read_volume(case / "ct.nii.gz")
    regions = _regions(labels, ct)
    ml = {k: r.mask.sum() * ct.voxel_volume_ml for k, r in regions.items()}
    assert ml["abdomen"] > 5 * ml["lung"] and ml["bone"] > ml["lung"]
    assert regions["heart"].empty and regions["trachea and bronchie"].empty
    assert classes_to_regions("radgenome10", ["urinary_bladder", "hip_left"]) == {
        "urinary_bladder": ["abdomen"], "hip_left": ["bone"]}


def test_04_upper_abdomen_from_dicom(realct):
    case = realct / "04_totalseg_example_ct_dicom_upper_abdomen"
    labels = read_totalsegmentator_output(case / "seg_total_fast_ml_model_output.nii.gz")
    ct = read_volume(case / "ct_from_dicom_DERIVED.nii.gz")
    assert labels.shape == ct.shape == (512, 512, 20)
    assert not any(n.startswith("lung_") for n in labels.names.values())
    mapping = classes_to_regions("radgenome10", labels.names.values())
    assert mapping["liver"] == ["abdomen"] and mapping["humerus_left"] == ["bone"]
    assert mapping["rib_right_9"] == ["bone"] and mapping["aorta"] == ["mediastinum"]
    regions = _regions(labels, ct)
    assert regions["lung"].empty and regions["pleura"].empty
    assert regions["abdomen"].mask[labels.mask("liver")].all()


def test_cli_segment_with_real_totalsegmentator_output(realct, tmp_path):
    from MedRegionCTLib.cli.main import main

    case = realct / "02_totalseg_example_ct_sm_upper_abdomen_lung_bases"
    out = tmp_path / "out"
    assert main(["segment", str(case / "ct.nii.gz"), "--out", str(out), "--no-progress",
                 "--method", f"labels:{case / 'seg_total_ml_model_output.nii.gz'}"]) == 0
    info = json.loads((out / "labels.json").read_text())
    assert info["labels"]["5"] == "liver" and info["labels"]["13"] == "lung_middle_lobe_right"
    assert "heart" in info["not_found"] and "lung_upper_lobe_right" in info["not_found"]
    regions = json.loads((out / "regions.json").read_text())["regions"]
    assert regions["lung"]["file"] == "regions/lung.nii.gz" and regions["heart"]["file"] is None
    assert (out / "regions" / "abdomen.nii.gz").is_file()
