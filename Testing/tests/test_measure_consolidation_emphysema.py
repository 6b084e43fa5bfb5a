"""Lobar emphysema (LAA-950 per lobe) and consolidation told from a mass by its air bronchograms, from the
measure layer to the measurement reporter's text, on phantoms with planted findings (2 mm grid)."""

from __future__ import annotations

import numpy as np
import pytest

from MedRegionCTLib.measure import measure
from MedRegionCTLib.measure.lesions import Lesion, air_bronchograms, detection_params
from MedRegionCTLib.phantom import make_phantom
from MedRegionCTLib.pipeline import analyze
from MedRegionCTLib.report import check_consistency, label_report
from MedRegionCTLib.report.measurement_reporter import consistency_measures

TRUTH_POINTS = 2**12
UPPER = {"lung_upper_lobe_right", "lung_upper_lobe_left"}
LOBES = ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right", "lung_upper_lobe_left",
         "lung_lower_lobe_left")


def _present(text: str) -> set[str]:
    return {name for name, entry in label_report(text).items() if entry["present"]}


def _analyze(findings: str, seed: int):
    ph = make_phantom("small", seed=seed, findings=findings, truth_points=TRUTH_POINTS)
    return ph, analyze(ph.volume, labelmap=ph.labels, reporter_options={"strict": True})


@pytest.fixture(scope="module")
def emphysema():
    return _analyze("emphysema:upper", 1)


@pytest.fixture(scope="module")
def consolidation():
    return _analyze("consolidation:RLL", 0)


def test_upper_lobe_emphysema_is_reported_per_lobe(emphysema):
    ph, a = emphysema
    laa = a.measurements.clinical["laa_950_percent"]
    # the case the lobar measure is for: the whole lung stays under its 6% threshold
    assert laa["abnormal"] is False and laa["value"] < laa["threshold"]
    assert set(laa["lobes"]) == set(LOBES)
    threshold = laa["lobe_criterion"]["threshold"]
    assert set(laa["lobes_abnormal"]) == UPPER
    for name in UPPER:
        assert laa["lobes"][name] >= threshold + 1.0  # planted holes fill ~10% of the lobe
    for name in set(LOBES) - UPPER:
        assert laa["lobes"][name] < 1.0
    lung = a.report.region("lung")
    [finding] = [f for f in a.report.findings if f.kind == "emphysema"]
    assert finding.label == "Emphysema" and finding.side == "bilateral"
    assert finding.location == "right upper lobe and left upper lobe"
    sentence = next(s for s in lung.sentences if finding.id in s.findings)
    for name, words in (("lung_upper_lobe_right", "right upper lobe"), ("lung_upper_lobe_left", "left upper lobe")):
        assert f"{laa['lobes'][name]:.1f}% of the {words}" in sentence.text
    assert "lower lobe" not in sentence.text and "middle lobe" not in sentence.text
    # the labeler agrees with the planted truth, region by region, and with the measurements
    assert [f["kind"] for f in ph.truth["findings"]] == ["emphysema"]
    assert _present(lung.paragraph) == {"Emphysema"}
    assert _present(a.report.text()) == {"Emphysema"}
    assert len(a.report.findings) == 1
    measures = consistency_measures(a.measurements)
    assert measures["laa_950_percent_lobe"] == pytest.approx(max(laa["lobes"].values()))
    assert check_consistency(a.report.text(), measures) == []
    # the attribute sentences (model prompt) carry the lobar numbers too
    assert any("right upper lobe" in s and "lobar threshold" in s for s in a.measurements.sentences["lung"])


def test_lobar_consistency_check():
    text = "Emphysema is present in the right upper lobe."
    assert check_consistency(text, {"laa_950_percent_lobe": 7.5}) == []
    [flag] = check_consistency(text, {"laa_950_percent_lobe": 1.0})
    assert flag["label"] == "Emphysema" and flag["measurement_says"] == "normal"
    assert check_consistency("Lung densitometry shows no emphysema.", {"laa_950_percent_lobe": 7.5})


def test_consolidation_with_air_bronchograms(consolidation):
    ph, a = consolidation
    [truth] = ph.truth["findings"]
    lesion = next(les for les in a.measurements.lesions if les["kind"] == "consolidation")
    assert lesion["lobe"] == truth["lobe"] == "lung_lower_lobe_right" and lesion["side"] == "right"
    assert lesion["air_bronchograms"] >= 1 and lesion["air_bronchogram_length_mm"] >= 6.0
    assert lesion["confidence"] >= 0.5 and "size_category" not in lesion and "subtype" not in lesion
    assert lesion["volume_ml"] == pytest.approx(truth["volume_ml"], rel=0.2)
    assert lesion["sentence"].startswith("Consolidation with a diameter of")
    assert lesion["sentence"] in a.measurements.sentences["lung"]
    lung = a.report.region("lung")
    [finding] = a.report.findings
    assert finding.kind == "consolidation" and finding.label == "Consolidation"
    assert finding.location == "right lower lobe" and finding.side == "right"
    assert finding.size["volume_ml"] == pytest.approx(truth["volume_ml"], rel=0.2)
    sentence = next(s for s in lung.sentences if finding.id in s.findings)
    assert sentence.text == (f"Consolidation of about {finding.size['volume_ml']:.0f} mL is seen in the right lower "
                             "lobe, with air bronchograms.")
    assert sentence.evidence.masks[0] == f"lesion:{lesion['id']}"
    # the labeler finds consolidation, and no nodule or mass
    assert _present(lung.paragraph) == {"Consolidation"}
    assert _present(a.report.text()) == {"Consolidation"}
    assert "No pulmonary nodule or mass" in lung.paragraph


def test_nodules_and_masses_stay_what_they_are():
    ph = make_phantom("small", seed=0, findings="mass:RLL:45,nodule:LUL:24:solid,nodule:RUL:22:part-solid",
                      truth_points=TRUTH_POINTS)
    result = measure(ph.volume, ph.labels, regions=False)
    found = {(les["kind"], les["lobe"]) for les in result.lesions}
    assert found == {("mass", "lung_lower_lobe_right"), ("nodule", "lung_upper_lobe_left"),
                     ("nodule", "lung_upper_lobe_right")}
    # all large enough to be assessed, and no enclosed air in any
    assert all(les["air_bronchograms"] == 0 for les in result.lesions)


def test_finding_free_phantom_has_no_emphysema_or_consolidation():
    ph, a = _analyze("none", 0)
    laa = a.measurements.clinical["laa_950_percent"]
    assert laa["lobes_abnormal"] == [] and max(laa["lobes"].values()) < 1.0
    assert a.measurements.lesions == [] and a.report.findings == []
    assert _present(a.report.text()) == set()
    assert "shows no emphysema" in a.report.region("lung").paragraph


def _ball_with(inside: str) -> tuple[Lesion, np.ndarray, np.ndarray]:
    """A 40 mm soft-tissue ball in -860 HU lung on a 1 mm grid, with an air tube or a round cavity inside."""
    n = 60
    z, y, x = np.mgrid[:n, :n, :n].astype(float)
    hu = np.full((n, n, n), -860.0)
    ball = (x - 30) ** 2 + (y - 30) ** 2 + (z - 30) ** 2 <= 20**2
    hu[ball] = 40.0
    if inside == "tube":
        hole = ((y - 30) ** 2 + (z - 30) ** 2 <= 2.0**2) & (x > 18) & (x < 42)
    else:
        hole = (x - 30) ** 2 + (y - 30) ** 2 + (z - 30) ** 2 <= 6.0**2
    hu[hole] = -1000.0
    mask = ball & ~hole
    crop = tuple(slice(8, 53) for _ in range(3))
    return Lesion("mass", crop, mask[crop], {"max_diameter_mm": 40.0}), hu.astype(np.int16), np.eye(4)


def test_air_bronchogram_is_a_tube_not_a_cavity():
    params = detection_params()
    lesion, hu, affine = _ball_with("tube")
    signs = air_bronchograms(lesion, hu, affine, params)
    assert signs["tubes"] == 1 and signs["tube_length_mm"] == pytest.approx(23.0, abs=3.0)
    assert signs["tube_max_width_mm"] <= 6.0
    lesion, hu, affine = _ball_with("cavity")
    signs = air_bronchograms(lesion, hu, affine, params)
    assert signs["air_voxels"] > 0 and signs["tubes"] == 0  # round air: a cavity, not a bronchus


@pytest.mark.slow
def test_standard_phantom_consolidation_emphysema_and_mass():
    ph = make_phantom("standard", seed=0, findings="emphysema:upper,consolidation:RLL,mass:LUL:40")
    a = analyze(ph.volume, labelmap=ph.labels, reporter_options={"strict": True})
    kinds = {(f.kind, f.location) for f in a.report.findings}
    assert kinds == {("consolidation", "right lower lobe"), ("mass", "left upper lobe"),
                     ("emphysema", "right upper lobe and left upper lobe")}
    assert _present(a.report.text()) == {"Consolidation", "Lung nodule", "Emphysema"}
    laa = a.measurements.clinical["laa_950_percent"]
    assert set(laa["lobes_abnormal"]) == UPPER
    assert all(laa["lobes"][n] < 1.0 for n in set(LOBES) - UPPER)
