"""Odd real inputs (needs MEDREGIONCT_REALDATA): 03 (abdomen and pelvis) handled as not a chest CT; the thin slabs
11 (lungmask's test slices), 07 (2 slices at the carina, CIP lobe labels) and 10 (3 slices at the thoraco-abdominal
junction) segmented slice by slice and reported within the slab; 08 (2 abdominal slices) not a chest CT."""

from __future__ import annotations

import json

import numpy as np
import pytest
from realdata_paths import require

from MedRegionCTLib.cli.main import main
from MedRegionCTLib.errors import NotChestCTError
from MedRegionCTLib.pipeline import analyze
from MedRegionCTLib.segment.builtin import BuiltinSegmenter
from MedRegionCTLib.volume import read_labelmap, read_volume

pytestmark = pytest.mark.realdata

ROOT = require("realct")
ABDOMEN = ROOT / "03_totalseg_example_ct_abdomen_pelvis_NONCHEST" / "ct.nii.gz"


def test_03_abdomen_pelvis_is_not_a_chest_ct(tmp_path, capsys):
    assert main(["report", str(ABDOMEN), "--out", str(tmp_path / "stop"), "--method", "builtin", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not look like a chest CT" in err and "--allow-non-chest" in err
    assert not (tmp_path / "stop").exists()
    out = tmp_path / "allowed"
    assert main(["report", str(ABDOMEN), "--out", str(out), "--allow-non-chest", "--method", "builtin", "--no-progress",
                 "--formats", "json,md"]) == 0
    report = json.loads((out / "report.json").read_text())
    scope = report["provenance"]["scope"]
    assert scope["chest_ct"] is False and scope["limitations"][0].startswith("Not a chest CT")
    assert any("does not look like a chest CT" in n for n in scope["notes"])
    regions = {r["key"]: r for r in report["regions"]}
    for key in ("lung", "pleura"):
        assert regions[key]["status"] == "not_assessed" and regions[key]["findings"] == []
        assert [s["kind"] for s in regions[key]["sentences"]] == ["limitation"]  # no lung volume, no "no effusion"
        assert regions[key]["paragraph"].startswith("Not assessed: the scan does not look like a chest CT")
    labels = json.loads((out / "labels.json").read_text())
    assert labels["chest_ct"] is False and labels["notes"] == scope["notes"]
    assert "Not a chest CT" in (out / "report.md").read_text().split("## Impression")[0]


def test_11_lung_counts_within_10_percent_of_lungmask():
    expected = json.loads((ROOT / "11_lungmask_test_chest_slices/expected_lungmask_counts.json").read_text())
    counts = expected["model_R231_label_counts_sorted_by_label"]
    lm = BuiltinSegmenter().segment(read_volume(ROOT / "11_lungmask_test_chest_slices/dicom"))
    right, left = int(lm.mask("lung_right").sum()), int(lm.mask("lung_left").sum())
    assert abs(right - counts["1_right_lung"]) / counts["1_right_lung"] < 0.10, right
    assert abs(left - counts["2_left_lung"]) / counts["2_left_lung"] < 0.10, left
    assert lm.meta["chest_ct"] is True


def test_07_lungs_on_both_slices_against_the_cip_lobe_labels():
    folder = ROOT / "07_cip_copdgene_crop_lobes"
    lm = BuiltinSegmenter().segment(read_volume(folder / "ct_2slices.nrrd"))
    ref = read_labelmap(folder / "lobe_segmentation_2slices_DERIVED.nii.gz")
    assert ref.same_grid(lm)
    truth = {"right": np.isin(ref.array, [4, 5, 6]), "left": np.isin(ref.array, [7, 8])}  # CIP lobe codes
    for side, mask in truth.items():
        ours = lm.mask(f"lung_{side}")
        for k in range(2):
            a, b = ours[:, :, k], mask[:, :, k]
            assert a.any(), f"no {side} lung on slice {k}"
            assert 2.0 * (a & b).sum() / (a.sum() + b.sum()) > 0.9
        assert abs(int(ours.sum()) - int(mask.sum())) / mask.sum() < 0.10


def test_thin_slabs_are_reported_within_the_slab():
    analysis = analyze(ROOT / "10_dcmqi_ct_3slices_heart_liver_spine/ct_DERIVED_from_dicom.nii.gz", segmenter="builtin")
    scope = analysis.report.provenance.scope
    assert scope["coverage"]["thin_slab"] and scope["coverage"]["slices"] == 3
    assert scope["limitations"][0].startswith("Thin slab: 3 axial slice(s) covering 3.0 mm")
    assert "appears on 3 of 3 slice(s)" in analysis.report.region("lung").paragraph
    for region in analysis.report.regions:
        assert "No " not in region.paragraph, region.paragraph
    with pytest.raises(NotChestCTError, match="no lungs in the field of view"):
        analyze(ROOT / "08_cip_copdgene_2slices_dicom/dicom", segmenter="builtin")
