"""Agreement of the offline CT-RATE labeler with hand labels on RadGenome-ChestCT ground-truth sentences.

The hand labels (``ctrate_hand_labels.json`` next to this script) hold references only: region csv, AccNum and
sentence index. This script re-reads the paragraphs from Reg2RG's ``<region>_reports.csv`` (column
GT_combined_report, reference data folder, not in the repository), splits them with the labeler's splitter,
labels each referenced sentence and prints sentence-level exact agreement (present and negated sets both equal),
per-label precision/recall for 'present vs not' and for 'negated vs not', and the confusion counts.

    python Testing/realdata/check_labeler.py [DATA_DIR] [--set tuning|heldout|heldout2] [--show-disagreements]

DATA_DIR defaults to $MEDREGIONCT_REALDATA/reg2rg_results, else ../shared/data/reg2rg_results.
Shows the sentence text of disagreements only with --show-disagreements (on screen, never written to a file).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from MedRegionCTLib.report import label_names, label_sentence, split_sentences
from MedRegionCTLib.report.labeler import NEGATED

HAND_LABELS = Path(__file__).resolve().with_name("ctrate_hand_labels.json")


def default_dir() -> Path:
    base = os.environ.get("MEDREGIONCT_REALDATA")
    if base:
        return Path(base) / "reg2rg_results"
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "reg2rg_results"


def _paragraphs(path: Path) -> dict[str, str]:
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["AccNum"]: row["GT_combined_report"] for row in csv.DictReader(handle)}


def evaluate(data_dir: Path, hand_labels: Path = HAND_LABELS, subset: str | None = None) -> dict:
    """Compare labeler and hand labels (all, or only set ``subset``); returns counts, per-label figures and the
    disagreements."""
    items = json.loads(hand_labels.read_text(encoding="utf-8"))["sentences"]
    if subset:
        items = [item for item in items if item.get("set") == subset]
    tables: dict[str, dict[str, str]] = {}
    names = label_names()
    counts = {kind: {name: {"tp": 0, "fp": 0, "fn": 0, "tn": 0} for name in names} for kind in ("present", "negated")}
    exact, disagreements = 0, []
    for item in items:
        if item["csv"] not in tables:
            tables[item["csv"]] = _paragraphs(data_dir / item["csv"])
        sentence = split_sentences(tables[item["csv"]][item["AccNum"]])[item["sentence"]]
        states = label_sentence(sentence)
        predicted = {"present": {n for n, s in states.items() if s != NEGATED},
                     "negated": {n for n, s in states.items() if s == NEGATED}}
        truth = {"present": set(item["present"]), "negated": set(item["negated"])}
        for kind in ("present", "negated"):
            for name in names:
                p, t = name in predicted[kind], name in truth[kind]
                counts[kind][name]["tp" if p and t else "fp" if p else "fn" if t else "tn"] += 1
        if predicted == truth:
            exact += 1
        else:
            disagreements.append({**item, "text": sentence,
                                  "predicted": {k: sorted(v) for k, v in predicted.items()}})
    return {"n": len(items), "exact": exact, "agreement": exact / len(items) if items else 0.0,
            "counts": counts, "disagreements": disagreements}


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "  -  "


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=default_dir())
    parser.add_argument("--show-disagreements", action="store_true")
    parser.add_argument("--set", dest="subset", choices=["tuning", "heldout", "heldout2"], default=None,
                        help="score only the sentences used while writing the patterns, or only the held-out ones")
    args = parser.parse_args(argv)
    result = evaluate(args.data_dir, subset=args.subset)
    print(f"sentences: {result['n']}  exact agreement (present and negated sets): "
          f"{result['exact']}/{result['n']} = {result['agreement']:.3f}")
    for kind in ("present", "negated"):
        print(f"\n{kind} vs not{'':22s}  TP  FP  FN   TN  precision recall")
        total = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
        for name, c in result["counts"][kind].items():
            for key in total:
                total[key] += c[key]
            if c["tp"] + c["fp"] + c["fn"] == 0:
                continue
            print(f"  {name:36s} {c['tp']:3d} {c['fp']:3d} {c['fn']:3d} {c['tn']:4d}   "
                  f"{_ratio(c['tp'], c['tp'] + c['fp'])}  {_ratio(c['tp'], c['tp'] + c['fn'])}")
        print(f"  {'micro average':36s} {total['tp']:3d} {total['fp']:3d} {total['fn']:3d} {total['tn']:4d}   "
              f"{_ratio(total['tp'], total['tp'] + total['fp'])}  {_ratio(total['tp'], total['tp'] + total['fn'])}")
    print(f"\ndisagreements: {len(result['disagreements'])}")
    for d in result["disagreements"]:
        where = f"{d['csv']} {d['AccNum']} #{d['sentence']}"
        print(f"  {where}: hand present={d['present']} negated={d['negated']}; labeler {d['predicted']}")
        if args.show_disagreements:
            print(f"    {d['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
