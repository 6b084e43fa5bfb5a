"""`medregionct evaluate` on a CSV written to disk: the table, the JSON figures, and one-line errors."""

from __future__ import annotations

import csv
import json
import math

import pytest

pytest.importorskip("nltk")
pytest.importorskip("rouge_score")

from test_evaluate_meteor import make_wordnet  # noqa: E402  (Testing/tests is on sys.path under pytest)

from MedRegionCTLib.cli.main import main  # noqa: E402
from MedRegionCTLib.evaluate import evaluate_reports, sample_bleu  # noqa: E402

ROWS = [
    ("valid_1_a_1.nii.gz", "The region 1 is lung: the cat sat on the mat",
     "The region 1 is lung: the cat is on the mat"),
    ("valid_2_a_1.nii.gz", "The region 1 is heart: Heart size is normal.",
     "The region 1 is pleura: Heart size is normal."),
]


def write_csv(path, rows=ROWS, header=("AccNum", "GT_combined_report", "Pred_combined_report")):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_evaluate_command_writes_every_figure(tmp_path, capsys):
    wordnet = make_wordnet(tmp_path / "dict")
    csv_path = write_csv(tmp_path / "lung_reports.csv")
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(csv_path), "--out", str(out), "--wordnet", str(wordnet), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "BLEU-4" in printed and "METEOR" in printed and "region recognition accuracy: 0.5000" in printed
    result = json.loads(out.read_text())
    assert result["n_samples"] == 2
    assert result["per_sample"]["ids"] == ["valid_1_a_1.nii.gz", "valid_2_a_1.nii.gz"]
    expected = [sample_bleu(p, g, 2) for _, g, p in ROWS]
    assert result["per_sample"]["BLEU-2"] == pytest.approx(expected)
    assert result["mean"]["BLEU-2"] == pytest.approx(sum(expected) / 2)
    assert result["std"]["BLEU-2"] == pytest.approx(abs(expected[0] - expected[1]) / 2)
    assert set(result["mean"]) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-1", "ROUGE-2",
                                   "ROUGE-L", "CIDEr"}
    assert result["corpus"]["METEOR"] == pytest.approx(result["mean"]["METEOR"])
    assert result["region_recognition"]["accuracy_mean"] == pytest.approx(0.5)
    # "Heart size is normal." negates Cardiomegaly on both sides; no label is affirmed anywhere
    assert result["clinical_efficacy"]["micro"]["support"] == 0
    assert "clinical efficacy" in printed and "micro" in printed
    assert result["settings"]["meteor"]["wordnet"] == str(wordnet)


def test_metric_subset_and_other_columns(tmp_path):
    csv_path = write_csv(tmp_path / "r.csv", rows=[("x", "a b c d", "a c b d e")], header=("id", "truth", "model"))
    out = tmp_path / "m.json"
    assert main(["evaluate", str(csv_path), "--gt-column", "truth", "--pred-column", "model", "--metrics",
                 "ROUGE-L,BLEU-1", "--out", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert set(result["mean"]) == {"BLEU-1", "ROUGE-L"}
    # prediction "a c b d e" vs truth "a b c d": LCS 3, P = 3/5, R = 3/4
    assert result["mean"]["ROUGE-L"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    # 5 tokens vs 4 -> BP 1; 4 unigram matches of 5, smoothed
    assert result["mean"]["BLEU-1"] == pytest.approx(5 / 6)
    assert result["region_recognition"] is None


def test_missing_column_is_a_one_line_error(tmp_path, capsys):
    csv_path = write_csv(tmp_path / "bad.csv", header=("AccNum", "GT", "Pred"))
    assert main(["evaluate", str(csv_path), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "GT_combined_report" in err and "--gt-column" in err


def test_missing_file_and_unknown_metric(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "none.csv")]) == 1
    assert "not found" in capsys.readouterr().err
    csv_path = write_csv(tmp_path / "r.csv")
    assert main(["evaluate", str(csv_path), "--metrics", "BLEU-9", "--no-progress"]) == 1
    assert "unknown metric BLEU-9" in capsys.readouterr().err


def test_evaluate_reports_std_is_population_std():
    result = evaluate_reports(["a b", "a b", "c d"], ["a b", "x y", "c d"], metrics=["ROUGE-1"])
    values = result["per_sample"]["ROUGE-1"]
    assert values == [1.0, 0.0, 1.0]
    assert result["std"]["ROUGE-1"] == pytest.approx(math.sqrt(2 / 9))
