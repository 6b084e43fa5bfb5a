"""Region recognition: does the model name the right region in "The region i is X:" (Reg2RG's alignment)?

Reg2RG (``evaluation/region_pred_acc.py``) reads ``The region (\\d+) is (\\w+)`` from the ground-truth and the
predicted whole report. Per sample, accuracy = fraction of ground-truth slots whose predicted name matches; per
region name, TP when matched, FN when missed, FP on the predicted name when it is a different known region.
Precision/recall/F1 carry Reg2RG's ``+1e-5`` in the denominators so that the figures compare.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

# \w+ as in Reg2RG: multi-word regions are recognised by their first word ("trachea and bronchie" -> "trachea").
REGION_PREFIX = re.compile(r"The region (\d+) is (\w+)")


def parse_region_prefixes(text: str) -> dict[int, str]:
    """Slot number -> region word for every "The region i is X" in ``text`` (a later repeat of a slot wins)."""
    return {int(num): name for num, name in REGION_PREFIX.findall(text or "")}


def region_recognition(references: Sequence[str], predictions: Sequence[str],
                       region_names: Sequence[str] | None = None, eps: float = 1e-5) -> dict | None:
    """Per-sample accuracy (mean, std) and per-region precision/recall/F1; None when no reference has a prefix."""
    gt = [parse_region_prefixes(r) for r in references]
    pred = [parse_region_prefixes(p) for p in predictions]
    if not any(gt):
        return None
    names = list(region_names) if region_names else sorted({n for g in gt for n in g.values()})
    tp = dict.fromkeys(names, 0)
    fp = dict.fromkeys(names, 0)
    fn = dict.fromkeys(names, 0)
    accuracies = []
    for g, p in zip(gt, pred, strict=True):
        if not g:
            continue  # Reg2RG divides by zero here; a sample without slots has nothing to recognise
        accuracies.append(sum(p.get(slot) == name for slot, name in g.items()) / len(g))
        for slot, name in g.items():
            guess = p.get(slot)
            tp.setdefault(name, 0)
            fn.setdefault(name, 0)
            if guess == name:
                tp[name] += 1
            else:
                fn[name] += 1
                if guess is not None and guess in tp:
                    fp[guess] = fp.get(guess, 0) + 1
    per_region = {}
    for name in tp:
        precision = tp[name] / (tp[name] + fp.get(name, 0) + eps)
        recall = tp[name] / (tp[name] + fn[name] + eps)
        f1 = 2 * precision * recall / (precision + recall + eps)
        per_region[name] = {"precision": precision, "recall": recall, "f1": f1, "tp": tp[name],
                            "fp": fp.get(name, 0), "fn": fn[name]}
    return {"n_samples": len(accuracies), "accuracy_mean": float(np.mean(accuracies)),
            "accuracy_std": float(np.std(accuracies)), "per_region": per_region}
