"""Grounding of free report text: sanitising, statements (kind, side, location, size), the statement checks, and
the whole check through pipeline.analyze on phantoms with planted findings (flag and replace policies, the
contradictions in report.json, Markdown, HTML and the Slicer text helper)."""

from __future__ import annotations

import json

import pytest

from MedRegionCTLib.errors import InputError
from MedRegionCTLib.phantom import make_phantom
from MedRegionCTLib.pipeline import analyze
from MedRegionCTLib.pipeline.outputs import write_all
from MedRegionCTLib.report import Report, check_consistency
from MedRegionCTLib.report.document import Finding
from MedRegionCTLib.report.grounding import ground, sanitise
from MedRegionCTLib.report.labeler import extract_statements
from MedRegionCTLib.report.render.html import to_html
from MedRegionCTLib.report.render.markdown import to_markdown
from MedRegionCTLib.report.reporter import reports_from_paragraphs
from MedRegionCTLib.slicer_mrml.texts import contradiction_lines, report_text

FINDINGS = "pleural_effusion:right:300,cardiomegaly:1.4"


class ScriptedReporter:
    """A reporter whose free text is given (what a language model might write): the input of the check."""

    name = "scripted"

    def __init__(self, paragraphs: dict[str, str]):
        self.paragraphs = paragraphs

    def settings(self) -> dict:
        return {}

    def write(self, case, progress=None, cancel=None):
        return reports_from_paragraphs(case, self.paragraphs)


# The tiny model's failures named in the issue: a 300 mL effusion called absent, an effusion in the bone
# paragraph, a normal heart for a CTR of 0.54, a nodule that is not there, control bytes and a slot prefix.
WRONG = {
    "pleura": "The region 7 is pleura: No pleural effusion\x07 is seen.<|eot_id|>",
    "bone": "Moderate pleural effusion. No lytic lesion was detected in the bone structures.",
    "heart": "Heart size is normal. No pericardial effusion is seen.",
    "lung": "A 20 mm nodule is seen in the left upper lobe. Both lungs are otherwise clear.",
}
RIGHT = {
    "pleura": "A right pleural effusion of about 280 mL is seen. No pleural effusion on the left.",
    "heart": "The heart is enlarged.",
    "lung": "Both lungs are clear. No nodule was detected.",
}


@pytest.fixture(scope="module")
def phantom():
    return make_phantom("tiny", seed=1, findings=FINDINGS, truth_points=2**12)


def test_sanitise_removes_control_bytes_special_tokens_and_slot_prefixes():
    text = "The region 2 is lung: A 12 mm nodule\x00 is seen<region_patch> in the\u200b right lung.</s><|eot_id|>"
    assert sanitise(text) == "A 12 mm nodule is seen in the right lung."
    # another region's answer that leaked in is cut off, the model's own tokens are removed
    assert sanitise("The heart is normal. The region 3 is lung: Clear.") == "The heart is normal."
    assert sanitise("Clear [MYTOK] lungs.", special_tokens=["[MYTOK]"]) == "Clear lungs."
    with pytest.raises(InputError):
        sanitise(None)


def test_statements_carry_kind_state_side_location_and_size():
    got = [(s.kind, s.state, s.side, s.location, s.size) for s in extract_statements(
        "A 1.2 cm solid nodule is seen in the right upper lobe; no nodule in the left lung. "
        "A lobulated nodular mass of 35 mm in the left upper lobe. Bilateral pleural effusions of 150 mL. "
        "There is no pleural effusion, pericardial effusion or pneumothorax.")]
    assert ("nodule", "present", "right", "right upper lobe", {"max_diameter_mm": 12.0}) in got
    assert ("nodule", "negated", "left", "left lung", {}) in got
    assert ("mass", "present", "left", "left upper lobe", {"max_diameter_mm": 35.0}) in got
    assert ("pleural_effusion", "present", "bilateral", "", {"volume_ml": 150.0}) in got
    assert ("pericardial_effusion", "negated", None, "", {}) in got


def test_check_consistency_with_findings_checks_side_and_size():
    measured = [Finding(id=1, kind="pleural_effusion", side="right", size={"volume_ml": 300.0}),
                Finding(id=2, kind="nodule", side="left", size={"max_diameter_mm": 14.0})]
    measures = {"pleural_effusion_volume_ml": 300.0, "nodule_count": 1}
    flags = check_consistency("A left pleural effusion is seen. A 30 mm nodule in the left lower lobe.", measures,
                              findings=measured)
    assert {(f["label"], f["check"]) for f in flags} == {("Pleural effusion", "side"), ("Lung nodule", "size")}
    # agreeing text (sizes within the tolerance) gives nothing; without findings only presence is checked
    assert check_consistency("A right pleural effusion of 280 mL. A 15 mm nodule in the left lung.", measures,
                             findings=measured) == []
    assert check_consistency("A left pleural effusion is seen.", measures) == []
    # an absence stated for the side that has the effusion is caught per sentence
    flags = check_consistency("No effusion on the right. Left pleural effusion.", measures, findings=measured)
    assert ("Pleural effusion", "presence") in {(f["label"], f["check"]) for f in flags}


def test_no_other_finding_is_not_an_absence_claim():
    measured = [Finding(id=1, kind="nodule", side="right", size={"max_diameter_mm": 14.0})]
    text = "A 14 mm nodule is seen in the right upper lobe. No other pulmonary nodule or mass is seen."
    assert check_consistency(text, {"nodule_count": 1}, findings=measured) == []
    flags = check_consistency("No pulmonary nodule or mass is seen.", {"nodule_count": 1}, findings=measured)
    assert [f["check"] for f in flags] == ["presence"]


def test_a_nodule_below_the_search_limit_is_not_refuted():
    measures = {"nodule_count": 0, "nodule_min_diameter_mm": 12.0}
    assert check_consistency("A 5 mm nodule in the right lung.", measures, findings=[]) != []  # label level
    from MedRegionCTLib.report.labeler import check_statement

    small, large = extract_statements("A 5 mm nodule in the right lung. A 20 mm nodule in the left lung.")
    assert check_statement(small, measures, []) is None
    assert check_statement(large, measures, [])["check"] == "presence"


@pytest.mark.parametrize("policy", ["flag", "replace"])
def test_wrong_text_is_caught_and_recorded(phantom, policy, tmp_path):
    a = analyze(phantom.volume, labelmap=phantom.labels, reporter=ScriptedReporter(WRONG), grounding=policy)
    report = a.report
    found = {(c.region, c.claim.split()[0], c.claim.split()[1]) for c in report.contradictions}
    assert found == {("pleura", "pleural_effusion", "absent"), ("bone", "pleural_effusion", "present"),
                     ("heart", "cardiomegaly", "absent"), ("lung", "nodule", "present")}
    assert {c.action for c in report.contradictions} == {"flagged" if policy == "flag" else "replaced"}
    assert report.provenance.settings["grounding"] == policy
    pleura = report.region("pleura")
    assert "\x07" not in pleura.paragraph and "<|" not in pleura.paragraph and "region 7" not in pleura.paragraph
    if policy == "flag":
        assert pleura.paragraph == "No pleural effusion is seen."
        assert report.impression == []  # contradicted claims are not findings
        assert report.region("bone").findings == []
    else:
        # the measured statements stand in their place, with their findings: the impression is built from them
        assert pleura.paragraph.startswith("A right pleural effusion of about 297 mL")
        assert [f.kind for f in pleura.findings] == ["pleural_effusion"] and pleura.findings[0].side == "right"
        assert report.region("heart").paragraph.startswith("The heart is enlarged")
        assert "pleural effusion" not in report.region("bone").paragraph.lower()
        assert any("pleural effusion" in i for i in report.impression)
        assert any("heart is enlarged" in i for i in report.impression)
    # recorded in report.json and shown in Markdown, HTML and the Slicer text
    write_all(tmp_path, a, formats={"json", "md"})
    saved = json.loads((tmp_path / "report.json").read_text())
    assert len(saved["contradictions"]) == 4 and Report.from_json(saved) == report
    md = to_markdown(report)
    assert "## Contradicted by the measurements" in md and md.count("| pleura |") + md.count("| Pleura |") >= 1
    html = to_html(report)
    assert 'id="contradictions"' in html and html.count("<tr>") >= 5
    assert ('class="contradicted"' in html) == (policy == "flag")
    lines = contradiction_lines(report)
    assert len(lines) == 4 and all(line in report_text(report) for line in lines)


def test_right_text_gets_structured_findings_and_no_contradiction(phantom):
    report = analyze(phantom.volume, labelmap=phantom.labels, reporter=ScriptedReporter(RIGHT)).report
    assert report.contradictions == []
    pleura, heart = report.region("pleura"), report.region("heart")
    effusion = pleura.findings[0]
    assert (effusion.kind, effusion.side, effusion.size) == ("pleural_effusion", "right", {"volume_ml": 280.0})
    assert effusion.confidence == 1.0 and "corroborated by the measurements" in effusion.provenance
    assert "clinical/pleural_effusion_volume_ml" in effusion.evidence.measurements
    assert [s.kind for s in pleura.sentences] == ["finding", "negative"]
    assert heart.findings[0].kind == "cardiomegaly" and heart.sentences[0].findings == [heart.findings[0].id]
    assert report.impression == ["The heart is enlarged.", "A right pleural effusion of about 280 mL is seen."]
    assert len({f.id for f in report.findings}) == len(report.findings)


def test_unverifiable_findings_are_kept_but_marked(phantom):
    text = {"lung": "Mild bronchiectasis is seen in the right lower lobe."}
    report = analyze(phantom.volume, labelmap=phantom.labels, reporter=ScriptedReporter(text)).report
    finding = report.region("lung").findings[0]
    assert finding.kind == "bronchiectasis" and finding.confidence == 0.5
    assert any(p.startswith("not verified") for p in finding.provenance)


def test_the_measurement_reporter_passes_its_own_check_unchanged(phantom):
    from MedRegionCTLib.report import ReportCase
    from MedRegionCTLib.report.measurement_reporter import MeasurementReporter

    a = analyze(phantom.volume, labelmap=phantom.labels)
    assert a.report.contradictions == []
    assert any(f.kind == "pleural_effusion" for f in a.report.findings)
    # the check leaves the offline reporter's sentences, evidence and findings exactly as it wrote them
    case = ReportCase(a.volume, a.labelmap, a.schema, a.regions, a.measurements)
    assert a.report.regions == MeasurementReporter().write(case)


def test_unknown_policy_is_refused(phantom):
    with pytest.raises(InputError, match="grounding"):
        analyze(phantom.volume, labelmap=phantom.labels, grounding="ignore")
    from MedRegionCTLib.report import ReportCase

    a = analyze(phantom.volume, labelmap=phantom.labels)
    case = ReportCase(a.volume, a.labelmap, a.schema, a.regions, a.measurements)
    with pytest.raises(InputError, match="policy"):
        ground(case, a.report.regions, policy="maybe")
