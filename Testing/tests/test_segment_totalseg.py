"""TotalSegmentator adapter: clear errors when the package or weights are missing, and reading its outputs
(multi-label NIfTI with/without embedded names, folder of per-class files) written here in its formats."""

import importlib.util
import json
import os

import nibabel as nib
import numpy as np
import pytest

from MedRegionCTLib.anatomy import FIRST_EXTRA_INDEX, LabelTable, region_masks
from MedRegionCTLib.errors import InputError, MissingDependencyError
from MedRegionCTLib.segment import get_segmenter
from MedRegionCTLib.segment.totalsegmentator import (
    TotalSegmentatorSegmenter,
    embedded_label_names,
    merge_task_outputs,
    missing_weights,
    native_classes,
    read_totalsegmentator_output,
    totalsegmentator_weights_dir,
)
from MedRegionCTLib.volume import Volume

IDX = LabelTable.default().index
AFFINE = np.array([[-1.5, 0, 0, 90.0], [0, -1.5, 0, 80.0], [0, 0, 2.0, -30.0], [0, 0, 0, 1]])


def ts_save_multilabel(array, affine, label_map, path):
    """Save like TotalSegmentator's nifti_ext_header.save_multilabel_nifti (v2): the label names go into a
    NIfTI header extension (code 0) holding a CaretExtension XML LabelTable."""
    img = nib.Nifti1Image(array.astype(np.uint8), affine)
    colors = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255],
              [255, 128, 0], [255, 0, 128], [128, 255, 128], [0, 128, 255], [128, 128, 128], [185, 170, 155]]
    xmlpre = ('<?xml version="1.0" encoding="UTF-8"?> <CaretExtension>  <Date><![CDATA[2013-07-14T05:45:09]]>'
              '</Date>   <VolumeInformation Index="0">   <LabelTable>')
    body = ""
    for label_id, label_name in label_map.items():
        rgb = colors[label_id % len(colors)]
        body += (f'<Label Key="{label_id}" Red="{rgb[0] / 255}" Green="{rgb[1] / 255}" Blue="{rgb[2] / 255}" '
                 f'Alpha="1"><![CDATA[{label_name}]]></Label>\n')
    xmlpost = ('  </LabelTable>  <StudyMetaDataLinkSet>  </StudyMetaDataLinkSet>  '
               '<VolumeType><![CDATA[Label]]></VolumeType>   </VolumeInformation></CaretExtension>')
    xml = xmlpre + "\n" + body + "\n" + xmlpost + "\n              "
    img.header.extensions.append(nib.nifti1.Nifti1Extension(0, bytes(xml, "utf-8")))
    nib.save(img, str(path))


def _blocks(shape=(20, 18, 12)):
    """A label array in TotalSegmentator 'total' indices: liver, heart, aorta, left upper lobe."""
    a = np.zeros(shape, dtype=np.uint8)
    a[2:8, 2:8, 2:6] = 5        # liver
    a[10:16, 3:9, 4:9] = 51     # heart
    a[10:12, 10:14, 1:11] = 52  # aorta
    a[2:9, 10:17, 6:11] = 10    # lung_upper_lobe_left
    return a


# --- missing package / weights (real: the package is not installed in this environment) -----------------
@pytest.mark.skipif(importlib.util.find_spec("totalsegmentator") is not None,
                    reason="TotalSegmentator is installed here; the missing-package path cannot be exercised")
def test_missing_package_is_one_clear_error():
    segmenter = get_segmenter("totalsegmentator", fast=True)
    with pytest.raises(MissingDependencyError) as info:
        segmenter.segment(Volume(np.zeros((4, 4, 4), np.int16), np.eye(4)))
    message = str(info.value)
    assert "\n" not in message
    assert "pip install TotalSegmentator" in message and "--method builtin" in message


def test_weights_folder_follows_totalsegmentator_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "home"))
    assert totalsegmentator_weights_dir() == tmp_path / "home" / "nnunet" / "results"
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "w"))
    assert totalsegmentator_weights_dir() == tmp_path / "w"


def test_missing_weights_error_names_datasets_and_command(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(weights))
    segmenter = TotalSegmentatorSegmenter(fast=True, tasks=["trunk_cavities"])
    with pytest.raises(MissingDependencyError) as info:
        segmenter.check_weights()
    message = str(info.value)
    assert "\n" not in message and str(weights) in message
    assert "Dataset297" in message and "Dataset343" in message and "Dataset291" not in message
    assert "totalseg_download_weights -t total_fast" in message
    assert "totalseg_download_weights -t trunk_cavities" in message
    # put the fast 'total' weights in place: only trunk_cavities is still missing
    (weights / "Dataset297_TotalSegmentator_total_3mm_1559subj").mkdir()
    assert missing_weights(["total", "trunk_cavities"], fast=True) == {"trunk_cavities": [343]}
    (weights / "Dataset343_trunk_cavities").mkdir()
    segmenter.check_weights()  # all there: no error
    # full resolution needs the five 1.5 mm parts
    assert missing_weights(["total"], fast=False) == {"total": [291, 292, 293, 294, 295]}


def test_alternative_and_crop_weights(tmp_path):
    # lung_vessels: the current model (117) or the legacy one (258), plus the 6 mm crop model (298)
    assert missing_weights(["lung_vessels"], weights_dir=tmp_path) == {"lung_vessels": [117, 298]}
    (tmp_path / "Dataset258_lung_vessels_248subj").mkdir()
    (tmp_path / "Dataset298_TotalSegmentator_total_6mm_1559subj").mkdir()
    assert missing_weights(["lung_vessels"], weights_dir=tmp_path) == {}


def test_licensed_task_without_licence_is_refused(tmp_path, monkeypatch):
    weights = tmp_path / "w"
    for name in ("Dataset297_x", "Dataset301_heart_highres_1559subj", "Dataset298_y"):
        (weights / name).mkdir(parents=True)
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(weights))
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "home"))
    segmenter = TotalSegmentatorSegmenter(fast=True, tasks=["heartchambers_highres"])
    with pytest.raises(MissingDependencyError, match="totalseg_set_license"):
        segmenter.check_weights()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "config.json").write_text(json.dumps({"license_number": "aca_123456789012345"}))
    segmenter.check_weights()


def test_bad_options_are_input_errors():
    with pytest.raises(InputError, match="unknown TotalSegmentator task 'lungs'"):
        TotalSegmentatorSegmenter(tasks=["lungs"])
    with pytest.raises(InputError, match="device"):
        TotalSegmentatorSegmenter(device="tpu")
    segmenter = TotalSegmentatorSegmenter(tasks=["lung_vessels", "total", "lung_vessels"])
    assert segmenter.tasks == ["total", "lung_vessels"]


# --- reading outputs --------------------------------------------------------------------------------------
def test_multilabel_with_embedded_names(tmp_path):
    array = _blocks()
    path = tmp_path / "seg.nii.gz"
    ts_save_multilabel(array, AFFINE, native_classes("total"), path)  # TS writes every class of the task
    assert embedded_label_names(path)[117] == "costal_cartilages"
    labels = read_totalsegmentator_output(path)
    assert labels.names == {5: "liver", 10: "lung_upper_lobe_left", 51: "heart", 52: "aorta"}
    assert np.array_equal(labels.array, array)
    assert np.allclose(labels.affine, AFFINE)
    assert labels.meta["names_from"] == "nifti header extension"
    assert "spleen" in labels.meta["not_found"] and "liver" not in labels.meta["not_found"]
    assert len(labels.meta["not_found"]) == 113


def test_multilabel_with_embedded_names_of_another_task_and_foreign_names(tmp_path):
    # trunk_cavities numbers its classes 1-4; names decide the project index, not the file's numbers
    array = np.zeros((10, 10, 6), np.uint8)
    array[1:4, 1:4, 1:3] = 4
    array[5:8, 5:8, 1:3] = 3
    array[0, 0, 0] = 7  # a value the header does not name
    path = tmp_path / "trunk.nii.gz"
    ts_save_multilabel(array, AFFINE, {1: "abdominal_cavity", 2: "thoracic_cavity", 3: "pericardium",
                                       4: "mediastinum"}, path)
    labels = read_totalsegmentator_output(path)
    assert labels.names[IDX("mediastinum")] == "mediastinum"
    assert (labels.array == IDX("mediastinum")).sum() == 18
    assert (labels.array == IDX("pericardium")).sum() == 18
    assert labels.meta["unnamed_values"] == [7]
    assert labels.meta["unknown_names"] == ["label_7"] and labels.array[0, 0, 0] == FIRST_EXTRA_INDEX
    assert set(labels.meta["not_found"]) == {"abdominal_cavity", "thoracic_cavity"}


def test_multilabel_without_names_uses_task_indices(tmp_path):
    array = _blocks()
    path = tmp_path / "plain.nii.gz"
    nib.save(nib.Nifti1Image(array, AFFINE), str(path))
    assert embedded_label_names(path) is None
    total = read_totalsegmentator_output(path)
    assert total.names == {5: "liver", 10: "lung_upper_lobe_left", 51: "heart", 52: "aorta"}
    assert "TotalSegmentator task 'total'" in total.meta["names_from"]
    # the same file read as lung_nodules output: 1 = lung, 2 = lung_nodules in that task
    nodules = np.zeros((8, 8, 8), np.uint8)
    nodules[1:7, 1:7, 1:7] = 1
    nodules[3:5, 3:5, 3:5] = 2
    path2 = tmp_path / "nodules.nii.gz"
    nib.save(nib.Nifti1Image(nodules, AFFINE), str(path2))
    read = read_totalsegmentator_output(path2, task="lung_nodules")
    assert (read.array == IDX("lung_nodules")).sum() == 8
    assert read.meta["unknown_names"] == []  # both classes of the task have project indices
    assert (read.array == IDX("lung")).sum() == 6**3 - 8


def test_folder_of_per_class_files(tmp_path):
    folder = tmp_path / "segmentations"
    folder.mkdir()
    array = _blocks()
    for value, name in ((5, "liver"), (51, "heart"), (52, "aorta"), (10, "lung_upper_lobe_left")):
        nib.save(nib.Nifti1Image((array == value).astype(np.uint8), AFFINE), str(folder / f"{name}.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros(array.shape, np.uint8), AFFINE), str(folder / "spleen.nii.gz"))
    # a sub-part overlapping the aorta (listed after known classes: the aorta keeps its voxels)
    lumen = np.zeros(array.shape, np.uint8)
    lumen[10:12, 10:14, 1:11] = 1
    lumen[12, 10, 1] = 1
    nib.save(nib.Nifti1Image(lumen, AFFINE), str(folder / "aorta_true_lumen.nii.gz"))
    # a derived heart file a user renames through the mapping, a multi-label file with names, and junk
    nib.save(nib.Nifti1Image((array == 51).astype(np.uint8), AFFINE), str(folder / "heart_DERIVED.nii.gz"))
    vessels = np.zeros(array.shape, np.uint8)
    vessels[0, 0, :3] = 2
    ts_save_multilabel(vessels, AFFINE, {1: "celiac_trunk", 2: "superior_mesenteric_artery"},
                       folder / "T710_renal.nii.gz")
    nib.save(nib.Nifti1Image(np.full(array.shape, 3, np.uint8), AFFINE), str(folder / "mystery.nii.gz"))
    nib.save(nib.Nifti1Image(np.full(array.shape, -1000, np.int16), AFFINE), str(folder / "scan.nii.gz"))
    labels = read_totalsegmentator_output(folder, mapping={"heart_DERIVED": "heart"})
    assert (labels.array == IDX("liver")).sum() == (array == 5).sum()
    assert (labels.array == IDX("heart")).sum() == (array == 51).sum()
    assert (labels.array == IDX("aorta")).sum() == (array == 52).sum()
    lumen_index = [i for i, n in labels.names.items() if n == "aorta_true_lumen"]
    assert lumen_index and lumen_index[0] >= FIRST_EXTRA_INDEX and (labels.array == lumen_index[0]).sum() == 1
    assert labels.meta["overlap_voxels_kept_by_earlier_class"]["aorta_true_lumen"] == 80
    assert "superior_mesenteric_artery" in labels.names.values()
    assert "celiac_trunk" in labels.meta["not_found"] and "spleen" in labels.meta["not_found"]
    skipped = labels.meta["skipped_files"]
    assert skipped.pop("mystery.nii.gz") == "several labels and no label names in its header"
    assert "negative values" in skipped.pop("scan.nii.gz") and not skipped  # a CT in the folder is no label
    masks = region_masks(labels, "radgenome10")
    assert np.array_equal(masks["heart"], labels.array == IDX("heart"))
    assert np.array_equal(masks["abdomen"], np.isin(labels.array, [IDX("liver"), labels.index_of(
        "superior_mesenteric_artery")]))


def test_folder_with_mixed_grids_is_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), AFFINE), str(tmp_path / "liver.nii.gz"))
    nib.save(nib.Nifti1Image(np.ones((5, 4, 4), np.uint8), AFFINE), str(tmp_path / "heart.nii.gz"))
    with pytest.raises(InputError, match="different grid"):
        read_totalsegmentator_output(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no NIfTI files"):
        read_totalsegmentator_output(empty)


def test_merge_extra_task_fills_or_overwrites():
    base_array = np.zeros((6, 6, 6), np.uint16)
    base_array[:3] = IDX("lung_lower_lobe_left")
    from MedRegionCTLib.volume import LabelMap

    base = LabelMap(base_array, AFFINE, {IDX("lung_lower_lobe_left"): "lung_lower_lobe_left"},
                    {"source": "total", "not_found": ["heart", "mediastinum"]})
    extra_array = np.zeros((6, 6, 6), np.uint16)
    extra_array[2:4, :, :] = IDX("mediastinum")          # overlaps the lobe on slice 2: only fills
    extra_array[0, 0, 0] = IDX("lung_nodules")            # inside the lobe: a finding replaces it
    names = {IDX("mediastinum"): "mediastinum", IDX("lung_nodules"): "lung_nodules"}
    extra = LabelMap(extra_array, AFFINE, names, {"source": "extra", "not_found": ["pericardium"]})
    merged = merge_task_outputs(base, extra, overwrite=["lung_nodules"])
    assert merged.array[0, 0, 0] == IDX("lung_nodules")
    assert (merged.array[2] == IDX("lung_lower_lobe_left")).all()
    assert (merged.array[3] == IDX("mediastinum")).all()
    assert merged.meta["voxels_kept_by_earlier_task"] == {"mediastinum": 36}
    assert merged.meta["not_found"] == ["heart", "pericardium"]  # mediastinum was found by the extra task
    assert merged.meta["merged"] == ["total", "extra"]


# --- the run path, against a stand-in with the real package's signature (the real package runs end to end in
# test_segment_totalseg_e2e.py, in an environment of its own) ----------------------------------------------------
FAKE_API = '''
import json, os
from pathlib import Path
import nibabel as nib
import numpy as np

CALLS = Path(os.environ["FAKE_TS_LOG"])

def totalsegmentator(input, output=None, ml=False, nr_thr_resamp=1, nr_thr_saving=6, fast=False, nora_tag="None",
                     preview=False, task="total", roi_subset=None, statistics=False, radiomics=False,
                     crop_path=None, body_seg=False, force_split=False, output_type="nifti", quiet=False,
                     verbose=False, test=0, skip_saving=False, device="gpu", license_number=None,
                     statistics_exclude_masks_at_border=True, no_derived_masks=False, v1_order=False,
                     fastest=False, roi_subset_robust=None, stats_aggregation="mean", remove_small_blobs=False,
                     statistics_normalized_intensities=False, robust_crop=False,
                     higher_order_resampling_LEGACY=False, higher_order_resampling=False, save_probabilities=None,
                     debug=False, report=None, statistics_extra=False, save_lowres=False, resampling_order=1,
                     plans="nnUNetPlans", model_size="big"):
    """TotalSegmentator 2.18.0's python_api.totalsegmentator signature, exactly (no **kwargs: an argument it
    does not take fails here as it would there). Writes what it writes with ml=True: the task's labels + names
    in the header."""
    with CALLS.open("a") as f:
        f.write(json.dumps({"task": task, "fast": fast, "device": device, "ml": ml,
                            "weights": os.environ.get("TOTALSEG_WEIGHTS_PATH")}) + "\\n")
    ct = nib.load(input)
    hu = np.asanyarray(ct.dataobj)
    seg = np.zeros(hu.shape, np.uint8)
    if task == "total":
        names = {5: "liver", 51: "heart"}
        seg[hu == 60] = 5
        seg[hu == 40] = 51
    else:  # trunk_cavities: mediastinum (4) over the heart and the space around it
        names = {1: "abdominal_cavity", 2: "thoracic_cavity", 3: "pericardium", 4: "mediastinum"}
        seg[(hu == 40) | (hu == 10)] = 4
    xml = ('<?xml version="1.0" encoding="UTF-8"?> <CaretExtension><VolumeInformation Index="0"><LabelTable>'
           + "".join(f'<Label Key="{k}"><![CDATA[{v}]]></Label>' for k, v in names.items())
           + '</LabelTable></VolumeInformation></CaretExtension>')
    img = nib.Nifti1Image(seg, ct.affine)
    img.header.extensions.append(nib.nifti1.Nifti1Extension(0, xml.encode()))
    nib.save(img, output)
    return img
'''
FAKE_MAP = '''
class_map = {"total": {5: "liver", 51: "heart"}, "trunk_cavities": {4: "mediastinum"},
             "lung_nodules": {2: "lung_nodules"}}
'''
FAKE_CONFIG = '''
import json, os
from pathlib import Path

def get_weights_dir():
    return Path(os.environ["TOTALSEG_WEIGHTS_PATH"])

def setup_totalseg():
    return {}

def set_config_key(key, value):
    path = Path(os.environ["FAKE_TS_LOG"]).with_name("config.json")
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    path.write_text(json.dumps(data))
'''


@pytest.fixture
def fake_totalsegmentator(tmp_path, monkeypatch):
    """A minimal stand-in package with TotalSegmentator's python_api/config entry points (the real one is
    not installed here); it lets the adapter's run path be exercised end to end."""
    import sys

    package = tmp_path / "fake_site" / "totalsegmentator"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "python_api.py").write_text(FAKE_API)
    (package / "config.py").write_text(FAKE_CONFIG)
    (package / "map_to_binary.py").write_text(FAKE_MAP)
    monkeypatch.syspath_prepend(str(tmp_path / "fake_site"))
    monkeypatch.setenv("FAKE_TS_LOG", str(tmp_path / "calls.jsonl"))
    yield tmp_path
    for name in [m for m in sys.modules if m == "totalsegmentator" or m.startswith("totalsegmentator.")]:
        del sys.modules[name]


def test_run_path_merges_tasks_on_the_ct_grid(fake_totalsegmentator, monkeypatch):
    tmp = fake_totalsegmentator
    weights = tmp / "weights"
    for name in ("Dataset297_total_3mm", "Dataset343_trunk_cavities"):
        (weights / name).mkdir(parents=True)
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", "/somewhere/else")
    hu = np.zeros((12, 10, 8), np.int16)
    hu[1:4, 1:4, 1:4] = 60   # liver
    hu[6:9, 2:6, 2:6] = 40   # heart
    hu[6:9, 6:9, 2:6] = 10   # mediastinal fat
    affine = AFFINE.copy()
    affine[:3, 3] += 1e-7  # finer than float32: the result must still carry the CT's exact affine
    segmenter = get_segmenter("totalsegmentator", fast=True, device="cuda", tasks=["trunk_cavities"],
                              weights_dir=weights)
    seen = []
    labels = segmenter.segment(Volume(hu, affine), progress=lambda f, m: seen.append((f, m)))
    assert np.array_equal(labels.affine, affine)
    assert (labels.array == IDX("liver")).sum() == 27 and (labels.array == IDX("heart")).sum() == 48
    # trunk_cavities' mediastinum only fills voxels 'total' left empty: the heart stays heart
    assert (labels.array == IDX("mediastinum")).sum() == 36
    assert labels.meta["voxels_kept_by_earlier_task"] == {"mediastinum": 48}
    assert labels.meta["tasks"] == ["total", "trunk_cavities"]
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1][0] == 1.0
    calls = [json.loads(line) for line in (tmp / "calls.jsonl").read_text().splitlines()]
    assert [c["task"] for c in calls] == ["total", "trunk_cavities"]
    assert [c["fast"] for c in calls] == [True, False]  # extra tasks have no fast model
    assert {c["device"] for c in calls} == {"gpu"} and all(c["ml"] for c in calls)
    assert {c["weights"] for c in calls} == {str(weights)}
    assert os.environ["TOTALSEG_WEIGHTS_PATH"] == "/somewhere/else"  # restored after the run
    assert json.loads((tmp / "config.json").read_text()) == {"send_usage_stats": False}


def test_run_path_refuses_to_download_missing_weights(fake_totalsegmentator, monkeypatch):
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(fake_totalsegmentator / "empty"))
    segmenter = get_segmenter("totalsegmentator")
    with pytest.raises(MissingDependencyError, match="Dataset291"):
        segmenter.segment(Volume(np.zeros((4, 4, 4), np.int16), AFFINE))
    assert not (fake_totalsegmentator / "calls.jsonl").exists()  # TotalSegmentator was never called


def test_auto_picks_totalsegmentator_only_with_its_weights(fake_totalsegmentator, monkeypatch):
    from MedRegionCTLib.segment.totalsegmentator import best_method

    weights = fake_totalsegmentator / "weights"
    weights.mkdir()
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(weights))
    method, options, reason = best_method(fast=True)
    assert method == "builtin" and options == {} and "Dataset297" in reason and str(weights) in reason
    segmenter = get_segmenter("auto", fast=True)
    assert segmenter.name == "builtin" and segmenter.selection["reason"] == reason
    (weights / "Dataset297_TotalSegmentator_total_3mm_1559subj").mkdir()
    method, options, reason = best_method(fast=True)
    assert method == "totalsegmentator" and options == {"fast": True, "tasks": []}
    assert reason.startswith("best engine available") and "with" not in reason.split("(in")[0]
    # lesion tasks the installed version knows, once their weights are there (pleural_pericard_effusion is not in
    # this installation's class_map, so it is never asked for)
    for name in ("Dataset913_lung_nodules", "Dataset298_TotalSegmentator_total_6mm_1559subj",
                 "Dataset315_thoraxCT"):
        (weights / name).mkdir()
    method, options, reason = best_method(fast=True)
    assert options["tasks"] == ["lung_nodules"] and reason.endswith("with lung_nodules")
    segmenter = get_segmenter("auto", fast=True, device="cuda")
    assert segmenter.name == "totalsegmentator" and segmenter.tasks == ["total", "lung_nodules"]
    assert segmenter.device == "gpu" and segmenter.selection["requested"] == "auto"


@pytest.mark.skipif(importlib.util.find_spec("totalsegmentator") is not None,
                    reason="TotalSegmentator is installed here; the not-installed reason cannot be exercised")
def test_auto_without_totalsegmentator_is_the_builtin_segmenter_with_the_reason_in_the_report():
    from MedRegionCTLib.phantom import make_phantom
    from MedRegionCTLib.pipeline import analyze

    segmenter = get_segmenter("auto")
    assert segmenter.name == "builtin" and "TotalSegmentator package is not installed" in segmenter.selection["reason"]
    assert get_segmenter("builtin").selection == {"engine": "builtin", "requested": "builtin",
                                                  "reason": "chosen by the user"}
    ph = make_phantom("tiny", seed=2, findings="none")
    report = analyze(ph.volume).report
    assert report.provenance.segmenter == "builtin"
    assert report.provenance.scope["segmentation"] == segmenter.selection
    given = analyze(ph.volume, labelmap=ph.labels).report.provenance.scope["segmentation"]
    assert given["engine"] == "given label map" and given["reason"] == "a label map was given"
