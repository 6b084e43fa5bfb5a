"""measure() against TotalSegmentator's own outputs on real CTs (needs MEDREGIONCT_REALDATA).

- realct/02: TotalSegmentator's ``--statistics`` (volume mm3, mean HU per class) of its fast model's label
  map: ours must agree within 0.5 %.
- realct/01: TotalSegmentator's aorta and pulmonary-artery reports (diameters at landmarks, cm): ours, by the
  same definition at the same landmarks, within 3 mm.
"""

import json

import pytest
from realdata_paths import require

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
    return labels.array > 0, labels.affine


def _report(crop: str, file: str) -> dict:
    data = json.loads((ROOT / "01_totalseg_chest_cta_crop" / crop / file).read_text())
    return {v["name"]: v for v in data["landmarks"].values()}


def test_aorta_and_pulmonary_diameters_near_totalsegmentator_reports(capsys):
    """Both measured as TotalSegmentator does (largest diameter on a plane perpendicular to the centreline) at
    its landmarks (placed from its branch, junction and T12 masks; the pulmonary artery's from the trunk's
    shape): within 3 mm."""
    aorta, affine = _mask("aorta_crop", "aorta")
    for lumen in ("aorta_true_lumen", "aorta_false_lumen"):  # the dissection's lumens, as TotalSegmentator's report
        aorta |= _mask("aorta_crop", lumen)[0]
    ct = read_volume(ROOT / "01_totalseg_chest_cta_crop/aorta_crop/ct.nii.gz")
    places = {n: _mask("aorta_crop", n)[0] for n in ("brachiocephalic_trunk", "subclavian_artery_left",
                                                      "sinotubular_junction", "vertebrae_T12")}
    asc, desc, record = clinical.aorta_diameters(aorta, affine, places, ct.array)
    ts = _report("aorta_crop", "aorta_report_reference.json")
    pa_mask, pa_affine = _mask("pulmonary_crop", "pulmonary_artery")
    pa_ct = read_volume(ROOT / "01_totalseg_chest_cta_crop/pulmonary_crop/ct.nii.gz")
    pa, _ = clinical.pulmonary_artery_diameter(pa_mask, pa_affine, None, pa_ct.array)
    tp = _report("pulmonary_crop", "pulmonary_report_reference.json")
    with capsys.disabled():
        for key in ("sinotubular_junction", "mid_ascending_aorta", "distal_ascending_aorta"):
            lm = record["landmarks"][key]
            print(f"\n  {lm['name']}: ours {lm['diameter_mm']:.1f} mm, "
                  f"TotalSegmentator {10 * ts[lm['name']]['diameter']:.0f}")
        print(f"  ascending aorta (judged): {asc['value']:.1f} mm at {asc['landmark']}; "
              f"descending {desc['value']:.1f} mm")
        print(f"  main pulmonary artery: ours {pa['value']:.1f} mm, TotalSegmentator bifurcation "
              f"{10 * tp['bifurcation']['diameter']:.0f} mm")
    for key in ("sinotubular_junction", "mid_ascending_aorta", "distal_ascending_aorta"):
        lm = record["landmarks"][key]
        assert lm["diameter_mm"] == pytest.approx(10 * ts[lm["name"]]["diameter"], abs=3.0), key
    assert pa["value"] == pytest.approx(10 * tp["bifurcation"]["diameter"], abs=3.0)


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
