"""Reproduce Reg2RG's published per-region NLG figures with `MedRegionCTLib.evaluate`.

Reads Reg2RG's per-region outputs (``<region>_reports.csv``) and their ``nlg_evaluation_results_all_regions.csv``
from the reference data folder (not part of the repository), scores every region with our evaluate code and
prints ours vs theirs per region and metric, with the largest absolute difference. Exit status 1 when a
BLEU-1..4 / METEOR / ROUGE-L mean differs by more than the tolerance (0.005).

    python Testing/realdata/reproduce_reg2rg_nlg.py [DATA_DIR] [--all-metrics] [--json OUT]

DATA_DIR defaults to $MEDREGIONCT_REALDATA/reg2rg_results, else ../shared/data/reg2rg_results.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

from MedRegionCTLib.evaluate import evaluate_reports, read_pairs

ACCEPTANCE = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L")
EXTRA = ("ROUGE-1", "ROUGE-2", "CIDEr")
TOLERANCE = 0.005


def default_dir() -> Path:
    if os.environ.get("MEDREGIONCT_REALDATA"):
        return Path(os.environ["MEDREGIONCT_REALDATA"]) / "reg2rg_results"
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "reg2rg_results"


def read_published(path: Path) -> dict[str, dict[str, float]]:
    """region -> figure name -> value ("0.3950±0.2598" cells give the mean; Overall_* cells a number)."""
    out = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            out[row["region"]] = {k: float(v.split("±")[0]) for k, v in row.items() if k != "region"}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=None)
    parser.add_argument("--all-metrics", action="store_true", help="also compare ROUGE-1/2, CIDEr, Overall_*")
    parser.add_argument("--json", type=Path, default=None, help="write ours/theirs/differences here")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or default_dir()
    published_csv = data_dir / "nlg_evaluation_results_all_regions.csv"
    if not published_csv.is_file():
        print(f"no {published_csv.name} in {data_dir}; give the reg2rg_results folder", file=sys.stderr)
        return 2
    published = read_published(published_csv)
    names = list(ACCEPTANCE) + (list(EXTRA) if args.all_metrics else [])
    rows, worst, report = [], {m: 0.0 for m in names}, {}
    overall_worst: dict[str, float] = {}
    for region, theirs in published.items():
        path = data_dir / f"{region.replace(' ', '_')}_reports.csv"
        if not path.is_file():
            path = data_dir / f"{region}_reports.csv"
        pairs = read_pairs(path)
        start = time.perf_counter()
        ours = evaluate_reports(pairs.references, pairs.predictions, per_sample=False,
                                metrics=names if args.all_metrics else ACCEPTANCE)
        seconds = time.perf_counter() - start
        diffs = {m: ours["mean"][m] - theirs[m] for m in names}
        for m in names:
            worst[m] = max(worst[m], abs(diffs[m]))
        if args.all_metrics:
            for m, v in ours["corpus"].items():
                key = f"Overall_{m}"
                if key in theirs:
                    overall_worst[key] = max(overall_worst.get(key, 0.0), abs(v - theirs[key]))
        report[region] = {"n": ours["n_samples"], "ours": ours["mean"], "ours_corpus": ours["corpus"],
                          "theirs": theirs, "diff": diffs, "seconds": seconds}
        rows.append((region, ours["n_samples"], diffs, ours["mean"], theirs, seconds))

    print(f"{'region':<22}{'n':>5}  " + "  ".join(f"{m:>17}" for m in names) + "      s")
    for region, n, diffs, mine, theirs, seconds in rows:
        cells = "  ".join(f"{mine[m]:.4f}/{theirs[m]:.4f}{'*' if abs(diffs[m]) > TOLERANCE else ' '}".rjust(17)
                          for m in names)
        print(f"{region:<22}{n:>5}  {cells}  {seconds:5.1f}")
    print("(cells: ours/theirs; * = beyond tolerance)")
    print("max |ours - theirs| per metric: " + ", ".join(f"{m} {worst[m]:.5f}" for m in names))
    if overall_worst:
        print("max |ours - theirs| corpus: " + ", ".join(f"{k} {v:.5f}" for k, v in overall_worst.items()))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    failed = [m for m in ACCEPTANCE if worst[m] > TOLERANCE]
    print(f"acceptance (BLEU-1..4, METEOR, ROUGE-L within {TOLERANCE}): {'FAIL ' + str(failed) if failed else 'pass'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
