"""Clinical efficacy of Reg2RG's published RadGenome-ChestCT predictions with the offline labeler, against the
figures Reg2RG computed with its RadBERT classifier (needs MEDREGIONCT_REALDATA; ~15 s of CPU).

The region paragraphs of each CT (one CSV per region) are joined into its whole report, on both sides. Measured
(2026-11): micro P 0.481 / R 0.170 / F1 0.251 against RadBERT's 0.423 / 0.181 / 0.253; macro F1 0.166 against
0.185. The labelers differ (rules versus a trained classifier), so only the micro F1 is held close."""

from __future__ import annotations

import csv
import re
from collections import defaultdict

import pytest
from realdata_paths import require

pytestmark = pytest.mark.realdata

DATA = require("reg2rg_results", "test_classification_report.txt")

from MedRegionCTLib.evaluate import clinical_efficacy  # noqa: E402


def _published(path) -> dict[str, tuple[float, float, float]]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*(micro avg|macro avg)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+\d+", line)
        if m:
            out[m.group(1).split()[0]] = tuple(float(v) for v in m.groups()[1:])
    return out


def test_offline_labeler_clinical_efficacy_is_close_to_reg2rg_radbert_figures():
    gt, pred = defaultdict(list), defaultdict(list)
    for path in sorted(DATA.glob("*_reports.csv")):
        with path.open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                gt[row["AccNum"]].append(row["GT_combined_report"] or "")
                pred[row["AccNum"]].append(row["Pred_combined_report"] or "")
    ids = sorted(gt)
    assert len(ids) == 1564
    result = clinical_efficacy([" ".join(gt[i]) for i in ids], [" ".join(pred[i]) for i in ids])
    published = _published(DATA / "test_classification_report.txt")
    assert published["micro"][2] == pytest.approx(0.2529, abs=1e-4)
    assert result["micro"]["f1"] == pytest.approx(published["micro"][2], abs=0.02)
    assert result["micro"]["recall"] == pytest.approx(published["micro"][1], abs=0.03)
    assert result["macro"]["f1"] == pytest.approx(published["macro"][2], abs=0.04)
