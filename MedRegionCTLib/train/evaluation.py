"""Evaluation of a model on held-out cases: generate every region's paragraph, then score the whole reports
(region paragraphs joined in region order) with the NLG metrics and clinical efficacy, and the region names
with region recognition."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..atomic import atomic_write, write_json
from ..evaluate.report import evaluate_reports


def available_metrics(metrics) -> list[str]:
    """``metrics`` without METEOR when no WordNet is installed (it is then reported as skipped)."""
    metrics = list(metrics)
    if "METEOR" in metrics:
        from ..errors import MissingDependencyError
        from ..evaluate.wordnet import find_wordnet

        try:
            find_wordnet()
        except MissingDependencyError:
            metrics.remove("METEOR")
    return metrics


def generate_and_score(model, cases, metrics, settings=None, classifier=None, progress=None, cancel=None) -> dict:
    """Generate reports for prepared ``cases`` (with ground-truth paragraphs) and score them.

    Returns the evaluate_reports() result (whole reports) plus ``region_names`` (fraction of regions whose
    generated name is the region's name), ``per_region`` (one row per case and region) and ``rows``.
    """
    reports = model.generate_reports(cases, settings=settings, progress=progress, cancel=cancel)
    refs, preds, ids, per_region = [], [], [], []
    named = total = 0
    for index, (case, report) in enumerate(zip(cases, reports)):
        keys = [k for k in case.keys if k in case.paragraphs]
        gt = " ".join(case.paragraphs[k] for k in keys)
        pred = " ".join(report.get(k, {}).get("paragraph", "") for k in keys).strip()
        refs.append(gt)
        preds.append(pred)
        ids.append(getattr(case, "case_id", str(index)))
        for k in keys:
            got = report.get(k, {})
            total += 1
            named += got.get("name") == case.name_of(k)
            per_region.append({"id": ids[-1], "region": k, "gt": case.paragraphs[k],
                               "pred": got.get("paragraph", ""), "pred_name": got.get("name", "")})
    used = available_metrics(metrics)
    result = evaluate_reports(refs, preds, metrics=used, ids=ids, classifier=classifier)
    result["skipped_metrics"] = [m for m in metrics if m not in used]
    result["region_names"] = {"correct": named, "total": total, "accuracy": named / total if total else None}
    exact = sum(r["gt"] == r["pred"] for r in per_region)
    result["exact_paragraphs"] = {"correct": exact, "total": len(per_region)}
    result["per_region"] = per_region
    result["rows"] = list(zip(ids, refs, preds))
    return result


def summary(result: dict) -> dict[str, float]:
    """The headline figures of one evaluation (flat, for the CSV log)."""
    out = {f"{name}": value for name, value in result["mean"].items()}
    ce = result.get("clinical_efficacy")
    if ce:
        for avg in ("micro", "macro"):
            for key in ("precision", "recall", "f1"):
                out[f"CE_{avg}_{key}"] = ce[avg][key]
    out["region_name_accuracy"] = result["region_names"]["accuracy"]
    out["exact_paragraphs"] = result["exact_paragraphs"]["correct"] / max(result["exact_paragraphs"]["total"], 1)
    return out


def write_evaluation(folder, step: int, result: dict) -> dict[str, Path]:
    """``step_N_predictions.csv`` (AccNum, GT_combined_report, Pred_combined_report: `medregionct evaluate`
    reads it) and ``step_N_metrics.json`` (every figure, per region rows) under ``folder``."""
    folder = Path(folder)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["AccNum", "GT_combined_report", "Pred_combined_report"])
    writer.writerows(result["rows"])
    text = buffer.getvalue()

    def _write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)

    csv_path = atomic_write(folder / f"step_{step:06d}_predictions.csv", _write)
    figures = {k: v for k, v in result.items() if k not in ("rows",)}
    json_path = write_json(folder / f"step_{step:06d}_metrics.json", {"step": step, **figures})
    return {"predictions": csv_path, "metrics": json_path}
