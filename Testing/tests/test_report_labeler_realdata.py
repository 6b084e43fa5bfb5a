"""The offline CT-RATE labeler against hand labels of RadGenome-ChestCT ground-truth sentences (needs
MEDREGIONCT_REALDATA; the full printout is Testing/realdata/check_labeler.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from realdata_paths import require

pytestmark = pytest.mark.realdata

DATA = require("reg2rg_results", "lung_reports.csv")

_spec = importlib.util.spec_from_file_location(
    "check_labeler", Path(__file__).resolve().parents[1] / "realdata" / "check_labeler.py")
check_labeler = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_labeler)


@pytest.mark.parametrize("subset", [None, "heldout", "heldout2"])
def test_labeler_agrees_with_hand_labels(subset):
    result = check_labeler.evaluate(DATA, subset=subset)
    assert result["n"] >= (120 if subset is None else 50)
    assert result["agreement"] >= 0.9, result["disagreements"]
    for kind in ("present", "negated"):
        tp = sum(c["tp"] for c in result["counts"][kind].values())
        fp = sum(c["fp"] for c in result["counts"][kind].values())
        fn = sum(c["fn"] for c in result["counts"][kind].values())
        assert tp / (tp + fp) >= 0.9 and tp / (tp + fn) >= 0.9, kind
