"""The offline CT-RATE labeler and consistency checker on synthetic sentences written for these tests."""

from __future__ import annotations

import re

import pytest

from MedRegionCTLib.data import load_json
from MedRegionCTLib.errors import InputError
from MedRegionCTLib.report import check_consistency, label_names, label_report, label_sentence, split_sentences

CTRATE_18 = ["Medical material", "Arterial wall calcification", "Cardiomegaly", "Pericardial effusion",
             "Coronary artery wall calcification", "Hiatal hernia", "Lymphadenopathy", "Emphysema", "Atelectasis",
             "Lung nodule", "Lung opacity", "Pulmonary fibrotic sequela", "Pleural effusion",
             "Mosaic attenuation pattern", "Peribronchial thickening", "Consolidation", "Bronchiectasis",
             "Interlobular septal thickening"]


def test_data_file_holds_the_18_labels_with_compilable_patterns():
    assert label_names() == CTRATE_18
    table = load_json("ctrate_labels.json")
    for spec in table["labels"].values():
        assert spec["patterns"]
        for key in ("patterns", "normal_patterns", "exclude", "exclude_unless"):
            for pattern in spec.get(key, []):
                re.compile(pattern)
    thresholds = load_json("clinical_thresholds.json")["measures"]
    for check in table["consistency"]["checks"]:
        assert check["label"] in CTRATE_18
        assert check.get("rule") == "count" or check["measure"] in thresholds


def test_sentence_splitter_keeps_decimals_and_splits_sentences():
    text = "A 4.6 mm nodule is seen in the right upper lobe. No effusion.  Heart size is normal."
    assert split_sentences(text) == ["A 4.6 mm nodule is seen in the right upper lobe.", "No effusion.",
                                     "Heart size is normal."]
    assert split_sentences("") == []
    with pytest.raises(InputError):
        split_sentences(None)


@pytest.mark.parametrize("sentence, expected", [
    ("Bilateral pleural effusion is present.", {"Pleural effusion": "present"}),
    ("There is a small left pleural effusion.", {"Pleural effusion": "present"}),
    ("No pleural effusion.", {"Pleural effusion": "negated"}),
    ("No pleural or pericardial effusion was seen.",
     {"Pleural effusion": "negated", "Pericardial effusion": "negated"}),
    ("Pericardial effusion-thickening is not seen.", {"Pericardial effusion": "negated"}),
    ("The lungs are free of consolidation.", {"Consolidation": "negated"}),
    ("Absence of emphysema.", {"Emphysema": "negated"}),
    ("There is no evidence of bronchiectasis or mosaic attenuation.",
     {"Bronchiectasis": "negated", "Mosaic attenuation pattern": "negated"}),
    ("Hiatal hernia was ruled out.", {"Hiatal hernia": "negated"}),
    ("Pathologically enlarged lymph nodes were not detected in the mediastinum.", {"Lymphadenopathy": "negated"}),
    ("The cardiac silhouette is within normal limits.", {"Cardiomegaly": "negated"}),
    ("Heart size is normal.", {"Cardiomegaly": "negated"}),
    ("The heart is mildly enlarged.", {"Cardiomegaly": "present"}),
    ("Without atelectasis, the lung bases are clear.", {"Atelectasis": "negated"}),
    ("Subsegmental atelectasis in the right base, but no consolidation.",
     {"Atelectasis": "present", "Consolidation": "negated"}),
    ("No consolidation; a 5 mm nodule is seen in the left lower lobe.",
     {"Consolidation": "negated", "Lung nodule": "present"}),
    ("No mass, nodule or ground-glass opacity was identified in either lung.",
     {"Lung nodule": "negated", "Lung opacity": "negated"}),
    ("Emphysema is seen in the upper lobes and bronchiectasis was not observed.",
     {"Emphysema": "present", "Bronchiectasis": "negated"}),
    ("An early consolidation cannot be ruled out in the left lower lobe.", {"Consolidation": "uncertain"}),
    ("Findings suspicious for interlobular septal thickening in the lung bases.",
     {"Interlobular septal thickening": "uncertain"}),
    ("No change in the size of the right upper lobe nodule.", {"Lung nodule": "present"}),
    ("A 12 mm nodule in the left thyroid lobe.", {}),
    ("Calcified plaques in the coronary arteries.", {"Coronary artery wall calcification": "present"}),
    ("Atherosclerotic calcification of the aortic arch.", {"Arterial wall calcification": "present"}),
    ("A pacemaker lead terminates in the right ventricle.", {"Medical material": "present"}),
    ("Peribronchial wall thickening and traction changes with honeycombing in the lower lobes.",
     {"Peribronchial thickening": "present", "Pulmonary fibrotic sequela": "present"}),
    ("The trachea and both main bronchi are patent.", {}),
    ("Small mediastinal lymph nodes that do not reach pathological size.", {"Lymphadenopathy": "negated"}),
    ("Hilar lymph nodes, which cannot reach pathological dimensions, are seen.", {"Lymphadenopathy": "negated"}),
    ("Mural calcification of the gallbladder.", {}),
    ("A thin rim of effusion is present in the pericardial recess.", {"Pericardial effusion": "present"}),
    ("Pericardial effusion - no thickening was seen.", {"Pericardial effusion": "negated"}),
    ("Neither pericardial nor pleural effusion.", {"Pericardial effusion": "negated", "Pleural effusion": "negated"}),
    ("Pericardial, pleural fluid is absent.", {"Pericardial effusion": "negated", "Pleural effusion": "negated"}),
])
def test_label_sentence(sentence, expected):
    assert label_sentence(sentence) == expected


def test_label_report_aggregates_over_sentences():
    paragraph = ("No pleural effusion on the right. A small pleural effusion is seen on the left. "
                 "Pericardial effusion was not detected. Possible small hiatal hernia.")
    out = label_report(paragraph)
    assert set(out) == set(CTRATE_18)
    assert out["Pleural effusion"]["present"] is True and not out["Pleural effusion"]["uncertain"]
    assert len(out["Pleural effusion"]["sentences"]) == 2
    assert out["Pericardial effusion"]["present"] is False
    assert out["Hiatal hernia"] == {"present": True, "uncertain": True,
                                    "sentences": ["Possible small hiatal hernia."]}
    assert out["Emphysema"] == {"present": None, "uncertain": False, "sentences": []}


def test_consistency_flags_normal_heart_with_high_ctr():
    flags = check_consistency("Heart size is normal. No pericardial effusion.", {"cardiothoracic_ratio": 0.62})
    assert [f["label"] for f in flags] == ["Cardiomegaly"]
    flag = flags[0]
    assert flag["text_says"] == "absent" and flag["measurement_says"] == "abnormal"
    assert flag["threshold"] == load_json("clinical_thresholds.json")["measures"]["cardiothoracic_ratio"]["threshold"]
    assert "0.62" in flag["message"] and flag["sentences"] == ["Heart size is normal."]


def test_consistency_uses_threshold_and_both_directions():
    assert check_consistency("Heart size is normal.", {"cardiothoracic_ratio": 0.48}) == []
    flags = check_consistency("Cardiomegaly.", {"cardiothoracic_ratio": 0.45})
    assert flags and flags[0]["text_says"] == "present" and flags[0]["measurement_says"] == "normal"
    # exactly at the threshold is normal: CTR > 0.5 is the criterion
    assert check_consistency("Heart size is normal.", {"cardiothoracic_ratio": 0.5}) == []


def test_consistency_effusion_emphysema_nodules():
    text = ("No pleural effusion. No pericardial effusion. There is no emphysema. "
            "No nodule was detected in either lung.")
    measurements = {"pleural_effusion_volume_ml": 250.0, "pericardial_fluid_volume_ml": 20.0,
                    "laa_950_percent": 14.0, "nodule_count": 2}
    flagged = {f["label"] for f in check_consistency(text, measurements)}
    assert flagged == {"Pleural effusion", "Emphysema", "Lung nodule"}
    agreeing = {"pleural_effusion_volume_ml": 0.0, "pericardial_fluid_volume_ml": 20.0,
                "laa_950_percent": 1.0, "nodule_count": 0}
    assert check_consistency(text, agreeing) == []


def test_consistency_skips_unmentioned_uncertain_and_missing():
    assert check_consistency("The trachea is patent.", {"cardiothoracic_ratio": 0.7}) == []
    assert check_consistency("Possible mild emphysema.", {"laa_950_percent": 0.5}) == []
    assert check_consistency("Heart size is normal.", {"cardiothoracic_ratio": None}) == []


def test_consistency_rejects_bad_measurements():
    with pytest.raises(InputError, match="dict"):
        check_consistency("Heart size is normal.", [0.6])
    with pytest.raises(InputError, match="cardiothoracic_ratio"):
        check_consistency("Heart size is normal.", {"cardiothoracic_ratio": "big"})
