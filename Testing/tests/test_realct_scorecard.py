"""The real-CT scorecard under the realdata marker: the main job on every real diseased chest (and the normal real
CTs the scorecard lists), scored against the hand-read tumour references and the expert effusion masks, held at
the figures reached so that nothing regresses. Runs Testing/benchmarks/realct_scorecard.py's own scorer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from realdata_paths import require

pytestmark = pytest.mark.realdata

DATA = require("realct_pathology", "lung1001/ct.nii.gz").parent
_SPEC = importlib.util.spec_from_file_location(
    "realct_scorecard", Path(__file__).resolve().parents[1] / "benchmarks" / "realct_scorecard.py")
scorecard = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(scorecard)
REFERENCE = scorecard.load_reference()

# What the chain reaches today (see the closing note of issue 13): every required row must be "found" or "ok",
# but for the rows named here (none now: lung1001's perihilar mass, measured on the tissue its opening took off,
# came within 20% of the reference).
KNOWN_SHORT: dict[str, set[str]] = {}

@pytest.mark.parametrize("name", list(REFERENCE["cases"]))
def test_case_meets_its_references(name):
    case = REFERENCE["cases"][name]
    ct = DATA / case["ct"]
    if not ct.exists():
        pytest.skip(f"{ct} not found")
    result = scorecard.run_case(ct)
    truth = scorecard.effusion_truth(DATA / case["effusion_mask"]) if case.get("effusion_mask") else None
    rows = scorecard.score_tumours(case.get("tumours", []), result)
    rows += scorecard.score_effusions(truth, case.get("no_effusion", False), result)
    rows += scorecard.score_abstention(case, result)
    failed = [r for r in rows if r.get("required", True) and r["status"] not in ("found", "ok")]
    allowed = KNOWN_SHORT.get(name, set())
    assert {r["finding"] for r in failed} <= allowed, failed
    # whatever else is found, nothing is stated false: no invented effusion, no unsupported absence
    assert not [r for r in rows if r["status"] == "false"], rows
