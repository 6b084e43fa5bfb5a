"""The Report document: lossless JSON round trip, the published JSON Schema, clear errors on bad files."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from MedRegionCTLib.data import load_json
from MedRegionCTLib.errors import InputError
from MedRegionCTLib.report import (
    NEGATIVE_SENTENCE,
    NOT_ASSESSED,
    OUTSIDE_FIELD_OF_VIEW,
    Contradiction,
    Evidence,
    Finding,
    Provenance,
    RegionReport,
    Report,
    Sentence,
)


def sample_report() -> Report:
    nodule = Finding(1, "nodule", "Lung nodule", "right upper lobe", "right",
                     {"max_diameter_mm": 18.0, "volume_ml": 3.2}, {"hu_mean": 35.5}, 0.87,
                     Evidence(["lesion:1"], ["lesions/1"]),
                     provenance=["lobe assigned by geometric zones: no fissure found"])
    lung = RegionReport("lung", "Lung", sentences=[
        Sentence("A nodule with a diameter of 18.0 mm and a volume of 3.2 mL is identified in the right upper "
                 "lobe.", Evidence(["lesion:1"], ["lesions/1/max_diameter_mm", "lesions/1/volume_ml"]), [1]),
        Sentence("No pleural effusion.", Evidence(["region:pleura"]), kind=NEGATIVE_SENTENCE)],
        findings=[nodule], measurements={"volume_ml": 5120.4, "laa_950_percent": 1.2},
        evidence=Evidence(["region:lung"], ["regions/lung"]))
    breast = RegionReport("breast", "Breast", status=OUTSIDE_FIELD_OF_VIEW,
                          sentences=[Sentence("The breasts are not included in the field of view.")])
    thyroid = RegionReport("thyroid", "Thyroid", status=NOT_ASSESSED)
    contradiction = Contradiction("lung", 1, "No pleural effusion.", "pleural_effusion absent",
                                  "right pleural fluid 300 mL", evidence=Evidence(measurements=["effusions/0"]))
    return Report(regions=[lung, breast, thyroid], impression=[lung.sentences[0].text], provenance=Provenance(
        segmenter="builtin", reporter="measurement", schema="radgenome10", versions={"MedRegionCTLib": "0.1.0"},
        settings={"lesions": True}, timings_s={"total": 12.5}, input={"shape": [512, 512, 300]},
        created="2026-11-23T12:00:00+00:00", scope={"chest_ct": True, "limitations": ["lobes by zones"]}),
        contradictions=[contradiction])


def test_round_trip_is_lossless_through_a_file(tmp_path):
    report = sample_report()
    path = report.save(tmp_path / "r" / "report.json")
    again = Report.load(path)
    assert again == report
    assert again.to_json() == report.to_json()
    assert json.loads(path.read_text())["regions"][0]["paragraph"] == report.region("lung").paragraph


def test_written_report_follows_the_published_schema():
    schema = load_json("report_schema.json")
    jsonschema.Draft202012Validator.check_schema(schema)
    data = sample_report().to_json()
    jsonschema.validate(data, schema)
    broken = copy.deepcopy(data)
    broken["regions"][0]["status"] = "fine"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_accessors():
    report = sample_report()
    assert report.region("lung").abnormal and not report.region("thyroid").abnormal
    assert [f.id for f in report.findings] == [1]
    assert report.paragraphs["thyroid"] == ""
    assert report.text().splitlines()[1] == "Breast: The breasts are not included in the field of view."
    with pytest.raises(KeyError, match="regions: lung, breast, thyroid"):
        report.region("liver")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format="something-else"), "not a MedRegionCT report"),
    (lambda d: d.update(version=99), "version 99 is not supported"),
    (lambda d: d["regions"][0].update(colour="red"), "unknown RegionReport fields"),
    (lambda d: d["regions"][0].update(paragraph="Edited by hand."), "differs from its sentences"),
    (lambda d: d["regions"][0].update(status="fine"), "status 'fine'"),
    (lambda d: d["regions"][0]["findings"][0].update(evidence=[1, 2]), "Evidence must be an object"),
    (lambda d: d["regions"][0]["sentences"][1].update(kind="rumour"), "sentence kind 'rumour'"),
    (lambda d: d["contradictions"][0].update(action="ignored"), "contradiction action 'ignored'"),
])
def test_bad_report_json_is_one_clear_input_error(change, message):
    data = sample_report().to_json()
    change(data)
    with pytest.raises(InputError, match=message) as info:
        Report.from_json(data)
    assert "\n" not in str(info.value)


def test_load_missing_or_invalid_file(tmp_path):
    with pytest.raises(InputError, match="no such report file"):
        Report.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        Report.load(tmp_path / "bad.json")


def test_version_1_files_still_read():
    """Version 2 only added fields with defaults: a version-1 file reads with those defaults."""
    data = sample_report().to_json()
    data["version"] = 1
    del data["contradictions"]
    del data["provenance"]["scope"]
    for region in data["regions"]:
        for sentence in region["sentences"]:
            del sentence["kind"]
        for finding in region["findings"]:
            del finding["provenance"]
    report = Report.from_json(data)
    assert report.contradictions == [] and report.provenance.scope == {}
    assert report.region("lung").findings[0].provenance == []
