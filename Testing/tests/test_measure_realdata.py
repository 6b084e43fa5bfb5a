"""measure() against TotalSegmentator's own outputs on real CTs (needs MEDREGIONCT_REALDATA).

- realct/02: TotalSegmentator's ``--statistics`` (volume mm3, mean HU per class) of its fast model's label
  map: ours must agree within 0.5 %.
- realct/01: TotalSegmentator's aorta and pulmonary-artery reports (diameters at landmarks, cm): ours are
  printed beside them and must be in the same range (different definitions: see the comments).
"""

import json

import numpy as np
import pytest
from realdata_paths import require

from MedRegionCTLib.anatomy import patient_axes
from MedRegionCTLib.measure import clinical, measure
from MedRegionCTLib.segment import get_segmenter
from MedRegionCTLib.volume import read_labelmap, read_volume

pytestmark = pytest.mark.realdata

ROOT = require("realct")


def test_volume_and_mean_hu_match_totalsegmentator_statistics():
    case = ROOT / "02_totalseg_example_ct_sm_upper_abdomen_lung_bases"
    volume = read_volume(case / "ct.nii.gz")
    labels = get_segmenter(f"labels:{case / 'seg_total_fast_ml_model_output.nii.gz'}").segment(volume)
    result = measure(volume, labels)
    reference = json.loads((case / "statistics_fast_reference.json").read_text())
    compared = 0
    for name, ref in reference.items():
        if ref["volume"] == 0:
            assert name not in result.structures
            continue
        ours = result.structures[name]
        assert ours["volume_ml"] * 1000.0 == pytest.approx(ref["volume"], rel=0.005), name
        assert ours["hu_mean"] == pytest.approx(ref["intensity"], rel=0.005, abs=0.01), name
        compared += 1
    assert compared >= 20


def _mask(crop: str, name: str):
    labels = read_labelmap(ROOT / "01_totalseg_chest_cta_crop" / crop / "seg_model_output" / f"{name}.nii.gz")
    return labels.array > 0, patient_axes(labels.affine), np.asarray(labels.spacing)


def _report(crop: str, file: str) -> dict:
    data = json.loads((ROOT / "01_totalseg_chest_cta_crop" / crop / file).read_text())
    return {v["name"]: v for v in data["landmarks"].values()}


def test_aorta_and_pulmonary_diameters_near_totalsegmentator_reports(capsys):
    aorta, axes, spacing = _mask("aorta_crop", "aorta")
    asc, desc = clinical.aorta_diameters(aorta, spacing, axes)
    ts = _report("aorta_crop", "aorta_report_reference.json")
    ts_asc = 10 * max(ts[n]["diameter"] for n in ("mid asc. aorta", "distal asc. aorta"))
    ts_desc = 10 * max(ts[n]["diameter"] for n in ("proximal desc. aorta", "mid desc. aorta"))
    pa_mask, _, pa_spacing = _mask("pulmonary_crop", "pulmonary_artery")
    pa = clinical.pulmonary_artery_diameter(pa_mask, pa_spacing)
    tp = _report("pulmonary_crop", "pulmonary_report_reference.json")
    with capsys.disabled():
        print(f"\n  ascending aorta: ours {asc['value']:.1f} mm, TotalSegmentator {ts_asc:.0f} mm (max diameter)")
        print(f"  descending aorta: ours {desc['value']:.1f} mm, TotalSegmentator {ts_desc:.0f} mm")
        mpa = tp["proximal MPA"]
        print(f"  main pulmonary artery: ours {pa['value']:.1f} mm, TotalSegmentator proximal MPA "
              f"{10 * mpa['diameter']:.0f} mm (perpendicular {10 * mpa['diameter_pd']:.0f})")
    # Ours is the short axis of the axial section (aorta) and the largest inscribed ball (pulmonary artery);
    # TotalSegmentator's is the longest chord of a centreline-perpendicular section: ours is not larger
    # than it by more than a voxel and lies within 5 mm (aorta) / 10 mm (pulmonary trunk, an oval tube).
    assert ts_asc - 5 <= asc["value"] <= ts_asc + 1.5
    assert ts_desc - 5 <= desc["value"] <= ts_desc + 1.5
    assert 10 * tp["proximal MPA"]["diameter"] - 10 <= pa["value"] <= 10 * tp["proximal MPA"]["diameter"] + 1.5


def test_right_upper_lobe_mass_found_on_real_thorax():
    """realct/09 (full-resolution thorax with a right-upper-lobe mass), segmented by the built-in segmenter."""
    from MedRegionCTLib.errors import MissingDependencyError

    try:
        segmenter = get_segmenter("builtin")
    except MissingDependencyError as error:
        pytest.skip(f"built-in segmenter unavailable: {error}")
    volume = read_volume(ROOT / "09_itkelastix_thorax_ct_fullres" / "ct_DERIVED_from_dicom.nii.gz")
    result = measure(volume, segmenter.segment(volume), regions=False)
    masses = [les for les in result.lesions if les["kind"] in ("mass", "nodule") and les["max_diameter_mm"] >= 20]
    assert masses, [les["sentence"] for les in result.lesions]
    best = max(masses, key=lambda les: les["volume_ml"])
    assert best["lobe"] == "lung_upper_lobe_right"
    assert best["side"] == "right"
    assert best["sentence"].endswith("is identified in the right upper lobe.")
    # no fluid collection of litres: the search stays inside the thoracic cage
    assert all(les["volume_ml"] < 1000 for les in result.lesions if les["kind"] == "pleural_effusion")
