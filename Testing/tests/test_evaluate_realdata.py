"""Reg2RG's published per-region NLG figures, recomputed (needs MEDREGIONCT_REALDATA; the full run over all ten
regions is Testing/realdata/reproduce_reg2rg_nlg.py, ~30 s). Here: the two small regions, breast and thyroid."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from realdata_paths import require

pytestmark = pytest.mark.realdata

DATA = require("reg2rg_results", "nlg_evaluation_results_all_regions.csv")
pytest.importorskip("nltk")
pytest.importorskip("rouge_score")

from MedRegionCTLib.errors import MissingDependencyError  # noqa: E402
from MedRegionCTLib.evaluate import evaluate_reports, read_pairs  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "reproduce_reg2rg_nlg", Path(__file__).resolve().parents[1] / "realdata" / "reproduce_reg2rg_nlg.py")
reproduce = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reproduce)


@pytest.mark.parametrize("region", ["breast", "thyroid"])
def test_region_matches_published_figures(region):
    published = reproduce.read_published(DATA / "nlg_evaluation_results_all_regions.csv")[region]
    pairs = read_pairs(DATA / f"{region}_reports.csv")
    try:
        result = evaluate_reports(pairs.references, pairs.predictions, per_sample=False)
    except MissingDependencyError as error:
        pytest.skip(str(error))
    for name in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-1", "ROUGE-2", "ROUGE-L", "CIDEr"):
        # published to 4 decimals
        assert result["mean"][name] == pytest.approx(published[name], abs=6e-5), name
    for n in range(1, 5):
        assert result["corpus"][f"BLEU-{n}"] == pytest.approx(published[f"Overall_BLEU-{n}"], abs=6e-5)
