"""Region recognition from "The region i is X:" prefixes (Reg2RG's region_pred_acc.py), by hand."""

from __future__ import annotations

import pytest

from MedRegionCTLib.evaluate import parse_region_prefixes, region_recognition

GT1 = "The region 1 is lung: No nodule. The region 2 is heart: Normal size. The region 3 is trachea and bronchie: Open."
PRED1 = "The region 1 is lung: A nodule. The region 2 is pleura: No effusion. The region 3 is trachea: Open."
GT2 = "The region 1 is heart: Normal."
PRED2 = "The region 1 is heart: Normal."


def test_parse_prefixes_keeps_first_word_like_reg2rg():
    assert parse_region_prefixes(GT1) == {1: "lung", 2: "heart", 3: "trachea"}
    assert parse_region_prefixes("no prefixes here") == {}
    assert parse_region_prefixes("") == {}


def test_recognition_accuracy_and_per_region_counts():
    result = region_recognition([GT1, GT2], [PRED1, PRED2],
                                region_names=["heart", "lung", "pleura", "trachea"])
    # sample 1: 2 of 3 slots right; sample 2: 1 of 1 -> mean 5/6, population std 1/6
    assert result["accuracy_mean"] == pytest.approx(5 / 6)
    assert result["accuracy_std"] == pytest.approx(1 / 6)
    heart = result["per_region"]["heart"]
    assert (heart["tp"], heart["fp"], heart["fn"]) == (1, 0, 1)
    assert heart["recall"] == pytest.approx(1 / 2, abs=1e-4)
    pleura = result["per_region"]["pleura"]
    assert (pleura["tp"], pleura["fp"]) == (0, 1)
    assert pleura["precision"] == 0.0
    assert result["per_region"]["lung"]["f1"] == pytest.approx(1.0, abs=1e-4)


def test_no_prefixes_means_no_recognition_figure():
    assert region_recognition(["The liver is normal."], ["The liver is normal."]) is None
