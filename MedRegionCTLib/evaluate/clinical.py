"""Clinical efficacy: the 18 CT-RATE abnormality labels found in ground-truth and predicted reports, compared as
a multi-label classification (precision, recall, F1 per label; micro, macro, weighted and per-sample averages).

Each report is labelled by the offline rule-based labeler (:func:`MedRegionCTLib.report.label_report`; a label
is positive when the report affirms it, uncertain mentions included) or, when the user supplies its weights, by
a RadBERT-class sequence classifier (:class:`ClassifierLabeler`, a local Hugging Face folder). The figures
follow scikit-learn's ``classification_report`` (what Reg2RG and CT-RATE print): a ratio whose denominator is
zero counts as 0, "samples avg" averages the per-report figures over all reports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, MissingDependencyError

AVERAGES = ("micro", "macro", "weighted", "samples")


def label_names() -> list[str]:
    from ..report.labeler import label_names as names

    return names()


def offline_labels(texts: Sequence[str]) -> np.ndarray:
    """(N, 18) boolean matrix: report i affirms label j (the offline labeler; uncertain counts as present)."""
    from ..report.labeler import label_report

    names = label_names()
    out = np.zeros((len(texts), len(names)), dtype=bool)
    for i, text in enumerate(texts):
        labels = label_report(text or "")
        out[i] = [bool(labels[n]["present"]) for n in names]
    return out


def _ratio(num: np.ndarray | float, den: np.ndarray | float):
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _f1(p, r):
    return _ratio(2 * np.asarray(p) * np.asarray(r), np.asarray(p) + np.asarray(r))


def multilabel_scores(truth: np.ndarray, pred: np.ndarray, names: Sequence[str]) -> dict:
    """Precision, recall, F1 and support per label and averaged, as scikit-learn's classification_report."""
    truth = np.asarray(truth, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if truth.shape != pred.shape or truth.ndim != 2 or truth.shape[1] != len(names):
        raise InputError(f"label matrices of shapes {truth.shape} and {pred.shape} do not match {len(names)} "
                         "labels; give one row of labels per report for both sides")
    tp = (truth & pred).sum(0)
    fp = (~truth & pred).sum(0)
    fn = (truth & ~pred).sum(0)
    support = truth.sum(0)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _f1(precision, recall)
    per_label = {name: {"precision": float(precision[j]), "recall": float(recall[j]), "f1": float(f1[j]),
                        "support": int(support[j]), "tp": int(tp[j]), "fp": int(fp[j]), "fn": int(fn[j]),
                        "predicted": int(pred[:, j].sum())}
                 for j, name in enumerate(names)}
    total = int(support.sum())
    mp, mr = float(_ratio(tp.sum(), tp.sum() + fp.sum())), float(_ratio(tp.sum(), tp.sum() + fn.sum()))
    weights = support / total if total else np.zeros_like(precision)
    s_tp = (truth & pred).sum(1)
    s_p = _ratio(s_tp, pred.sum(1))
    s_r = _ratio(s_tp, truth.sum(1))
    averages = {
        "micro": {"precision": mp, "recall": mr, "f1": float(_f1(mp, mr)), "support": total},
        "macro": {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean()),
                  "support": total},
        "weighted": {"precision": float((precision * weights).sum()), "recall": float((recall * weights).sum()),
                     "f1": float((f1 * weights).sum()), "support": total},
        "samples": {"precision": float(s_p.mean()), "recall": float(s_r.mean()),
                    "f1": float(_f1(s_p, s_r).mean()), "support": total},
    }
    return {"n_samples": int(truth.shape[0]), "labels": list(names), "per_label": per_label, **averages}


class ClassifierLabeler:
    """A user-supplied multi-label report classifier (RadBERT-class): a local folder that
    ``transformers.AutoModelForSequenceClassification`` and ``AutoTokenizer`` load, with one output per CT-RATE
    label. Outputs are matched to the 18 labels by the config's ``id2label`` names when they are the CT-RATE
    names, else by position; a label is positive when its sigmoid exceeds ``threshold``.
    """

    def __init__(self, path, threshold: float = 0.5, batch_size: int = 32, max_length: int = 512, device=None):
        path = Path(path)
        if not path.is_dir() or not (path / "config.json").is_file():
            raise InputError(f"report classifier folder {path} not found or has no config.json; give the local "
                             "folder of a Hugging Face sequence classifier (e.g. CT-CLIP's RadBERT labeler) or drop "
                             "--classifier")
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as error:
            raise MissingDependencyError(f"the report classifier needs torch and transformers ({error.name} is "
                                         "missing); pip install 'MedRegionCTLib[train]'") from None
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
        self.model.eval()
        if device is not None:
            self.model.to(device)
        names = label_names()
        n = int(self.model.config.num_labels)
        if n != len(names):
            raise InputError(f"report classifier {path} has {n} outputs, but clinical efficacy needs one per CT-RATE "
                             f"label ({len(names)}); give a classifier trained on the 18 CT-RATE labels")
        id2label = {int(k): str(v) for k, v in (self.model.config.id2label or {}).items()}
        if set(id2label.values()) == set(names):
            self.order = [next(i for i, v in id2label.items() if v == name) for name in names]
        else:
            self.order = list(range(n))
        self.path, self.threshold, self.batch_size, self.max_length = path, threshold, batch_size, max_length

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        torch = self.torch
        rows = []
        device = next(self.model.parameters()).device
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = [t or "" for t in texts[start:start + self.batch_size]]
                enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                                     return_tensors="pt").to(device)
                probs = torch.sigmoid(self.model(**enc).logits.float()).cpu().numpy()
                rows.append(probs[:, self.order] > self.threshold)
        return np.concatenate(rows) if rows else np.zeros((0, len(self.order)), dtype=bool)


def get_labeler(classifier=None) -> tuple[Callable[[Sequence[str]], np.ndarray], str]:
    """(texts -> (N, 18) bool, description): the offline labeler, or a classifier folder / callable."""
    if classifier is None or classifier == "offline":
        return offline_labels, "offline rule-based CT-RATE labeler (report.labeler; uncertain counts as present)"
    if callable(classifier):
        return classifier, getattr(classifier, "description", type(classifier).__name__)
    labeler = ClassifierLabeler(classifier)
    return labeler, f"sequence classifier {labeler.path} (sigmoid > {labeler.threshold:g})"


def clinical_efficacy(references: Sequence[str], predictions: Sequence[str], classifier=None) -> dict:
    """Label both sides with the same labeler and score the predictions' labels against the references'."""
    if len(references) != len(predictions):
        raise InputError(f"{len(references)} references but {len(predictions)} predictions; give one prediction "
                         "per reference")
    labeler, description = get_labeler(classifier)
    names = label_names()
    truth = np.asarray(labeler(list(references)), dtype=bool)
    pred = np.asarray(labeler(list(predictions)), dtype=bool)
    result = multilabel_scores(truth, pred, names)
    result["labeler"] = description
    return result


def format_clinical(result: dict) -> str:
    """Per-label and averaged precision / recall / F1 in classification_report's layout."""
    width = max(len(n) for n in result["labels"] + ["weighted avg"])
    lines = [f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"]
    for name, s in result["per_label"].items():
        lines.append(f"{name:>{width}} {s['precision']:9.4f} {s['recall']:9.4f} {s['f1']:9.4f} {s['support']:9d}")
    lines.append("")
    for avg in AVERAGES:
        s = result[avg]
        lines.append(f"{avg + ' avg':>{width}} {s['precision']:9.4f} {s['recall']:9.4f} {s['f1']:9.4f} "
                     f"{s['support']:9d}")
    return "\n".join(lines)
