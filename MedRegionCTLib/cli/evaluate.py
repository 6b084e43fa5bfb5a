"""`medregionct evaluate`: score generated reports against ground truth as Reg2RG did; print a table, write JSON."""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub) -> None:
    from ..evaluate.csvio import GT_COLUMN, PRED_COLUMN
    from ..evaluate.report import ALL_METRICS

    p = sub.add_parser(
        "evaluate", help="NLG metrics (BLEU-1..4, METEOR, ROUGE, CIDEr-D), region recognition and clinical efficacy",
        description="Score predicted reports against ground truth exactly as Reg2RG did (Hugging Face evaluate's "
                    "smoothed 13a BLEU, nltk METEOR, rouge-score ROUGE; mean ± std over samples) plus corpus "
                    "figures, CIDEr-D, region recognition from 'The region i is X' prefixes and clinical efficacy "
                    "on the 18 CT-RATE labels (micro/macro precision, recall, F1). Offline: METEOR reads WordNet "
                    "from --wordnet, MEDREGIONCT_WORDNET, NLTK_DATA or /usr/share/wordnet.")
    p.add_argument("pred_csv", metavar="PRED_CSV", help="CSV with one row per report pair")
    p.add_argument("--gt-column", default=GT_COLUMN, metavar="C", help=f"ground-truth column (default {GT_COLUMN})")
    p.add_argument("--pred-column", default=PRED_COLUMN, metavar="C",
                   help=f"prediction column (default {PRED_COLUMN})")
    p.add_argument("--out", default=None, metavar="JSON", help="write every figure (and per-sample scores) here")
    p.add_argument("--metrics", default=",".join(ALL_METRICS), metavar="LIST",
                   help=f"comma-separated subset of {','.join(ALL_METRICS)} (default: all)")
    p.add_argument("--wordnet", default=None, metavar="DIR", help="WordNet 3.0 'dict' folder or nltk data folder")
    p.add_argument("--classifier", default=None, metavar="DIR",
                   help="clinical efficacy with this local RadBERT-class classifier folder (Hugging Face sequence "
                        "classifier with 18 CT-RATE outputs) instead of the offline rule-based labeler")
    p.add_argument("--no-clinical", action="store_true", help="skip clinical efficacy (18 CT-RATE labels)")
    p.add_argument("--per-label", action="store_true", help="also print clinical efficacy for each label")
    p.add_argument("--json", action="store_true", help="print the JSON summary (without per-sample scores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..atomic import write_json
    from ..evaluate.csvio import read_pairs
    from ..evaluate.report import evaluate_reports, format_table
    from ..progress import TqdmProgress

    pairs = read_pairs(args.pred_csv, args.gt_column, args.pred_column)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    with TqdmProgress("evaluate", disable=True if args.no_progress else None) as progress:
        result = evaluate_reports(pairs.references, pairs.predictions, metrics=metrics, ids=pairs.ids,
                                  wordnet_path=args.wordnet, clinical=not args.no_clinical,
                                  classifier=args.classifier, progress=progress)
    result["input"] = {"csv": str(Path(args.pred_csv)), "gt_column": args.gt_column, "pred_column": args.pred_column}
    if args.out:
        write_json(args.out, result)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "per_sample"}, indent=1))
    else:
        print(format_table(result))
        if args.per_label and result.get("clinical_efficacy"):
            from ..evaluate.clinical import format_clinical

            print(format_clinical(result["clinical_efficacy"]))
        if args.out:
            print(f"wrote {args.out}")
    return 0
