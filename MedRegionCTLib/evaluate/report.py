"""All evaluation figures for one set of (ground truth, prediction) report pairs, as one JSON-ready dict."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from ..progress import check_cancel
from . import nlg
from .clinical import clinical_efficacy
from .regions import region_recognition

PER_SAMPLE_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-1", "ROUGE-2", "ROUGE-L", "CIDEr")
ALL_METRICS = PER_SAMPLE_METRICS


def evaluate_reports(references: Sequence[str], predictions: Sequence[str], *, metrics: Sequence[str] = ALL_METRICS,
                     wordnet_path: str | None = None, ids: Sequence[str] | None = None, per_sample: bool = True,
                     clinical: bool = True, classifier=None, progress=None, cancel=None) -> dict:
    """Reg2RG's evaluation of report pairs: per-sample scores, their mean and population std, corpus figures.

    ``corpus`` holds Reg2RG's "Overall_*" figures: BLEU-n on the whole corpus (smoothed, as Reg2RG called it),
    METEOR as HF's mean over samples, ROUGE as the plain mean (HF's bootstrap "mid" estimates this mean),
    CIDEr-D as pycocoevalcap's corpus score.

    ``clinical_efficacy`` (when ``clinical``): the 18 CT-RATE labels of both sides, scored as a multi-label
    classification (:func:`.clinical.clinical_efficacy`) with the offline labeler, or with ``classifier`` (the
    local folder of a RadBERT-class sequence classifier, or a callable texts -> (N, 18) booleans).
    """
    if len(references) != len(predictions):
        raise InputError(f"{len(references)} references but {len(predictions)} predictions; give one prediction "
                         "per reference")
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown:
        raise InputError(f"unknown metric {', '.join(unknown)}; choose from {', '.join(ALL_METRICS)}")
    if not references:
        raise InputError("no report pairs to evaluate")
    refs = [r or "" for r in references]
    preds = [p or "" for p in predictions]
    n = len(refs)
    scores: dict[str, list[float]] = {}
    settings: dict = {"bleu": "HF evaluate bleu: 13a tokens, case-sensitive, smooth=True, max_order=n",
                      "rouge": "rouge-score F-measure, no stemmer", "std": "population (numpy ddof=0)"}
    wordnet = None
    if "METEOR" in metrics:
        from .wordnet import find_wordnet, load_wordnet, sentence_splitter

        wordnet = load_wordnet(str(wordnet_path) if wordnet_path else None)
        settings["meteor"] = {"wordnet": str(find_wordnet(wordnet_path)), "wordnet_version": wordnet.get_version(),
                              "sentence_splitter": sentence_splitter()[1], "alpha": 0.9, "beta": 3.0, "gamma": 0.5}
    bleu_orders = [k for k in range(1, 5) if f"BLEU-{k}" in metrics]
    want_rouge = [m for m in ("ROUGE-1", "ROUGE-2", "ROUGE-L") if m in metrics]
    for name in metrics:
        if name != "CIDEr":
            scores[name] = []
    step = max(1, n // 100)
    for i, (ref, pred) in enumerate(zip(refs, preds)):
        if i % step == 0:
            check_cancel(cancel, "the evaluation")
            if progress is not None:
                progress(0.95 * i / n, f"scoring sample {i + 1}/{n}")
        for k in bleu_orders:
            scores[f"BLEU-{k}"].append(nlg.sample_bleu(pred, ref, k))
        if wordnet is not None:
            scores["METEOR"].append(nlg.meteor(pred, ref, wordnet=wordnet))
        if want_rouge:
            r = nlg.rouge(pred, ref)
            for name, key in (("ROUGE-1", "rouge1"), ("ROUGE-2", "rouge2"), ("ROUGE-L", "rougeL")):
                if name in scores:
                    scores[name].append(r[key])
    corpus: dict[str, float] = {}
    if "CIDEr" in metrics:
        corpus["CIDEr"], scores["CIDEr"] = nlg.cider_d(preds, refs)
        settings["cider"] = "pycocoevalcap CIDEr-D (n=4, sigma=6), whitespace tokens, idf over these references"
    for k in bleu_orders:
        corpus[f"BLEU-{k}"] = nlg.bleu(preds, refs, max_order=k, smooth=True)["bleu"]
    for name in ("METEOR", "ROUGE-1", "ROUGE-2", "ROUGE-L"):
        if name in scores:
            corpus[name] = float(np.mean(scores[name]))
    ordered = [m for m in ALL_METRICS if m in scores]
    result = {
        "n_samples": n,
        "mean": {m: float(np.mean(scores[m])) for m in ordered},
        "std": {m: float(np.std(scores[m])) for m in ordered},
        "corpus": {m: corpus[m] for m in ALL_METRICS if m in corpus},
        "settings": settings,
        "clinical_efficacy": clinical_efficacy(refs, preds, classifier) if clinical else None,
        "region_recognition": region_recognition(refs, preds),
    }
    if per_sample:
        result["per_sample"] = {"ids": list(ids) if ids is not None else [str(i) for i in range(n)],
                                **{m: scores[m] for m in ordered}}
    if progress is not None:
        progress(1.0, "evaluation done")
    return result


def format_table(result: dict) -> str:
    """A plain-text table: metric, mean ± std over samples, corpus figure."""
    lines = [f"{'metric':<10} {'mean ± std (per sample)':>26} {'corpus':>8}"]
    for name, mean in result["mean"].items():
        corpus = result["corpus"].get(name)
        corpus_text = f"{corpus:8.4f}" if corpus is not None else f"{'':8}"
        lines.append(f"{name:<10} {mean:>15.4f} ± {result['std'][name]:<8.4f} {corpus_text}")
    lines.append(f"samples: {result['n_samples']}")
    rec = result.get("region_recognition")
    if rec:
        lines.append(f"region recognition accuracy: {rec['accuracy_mean']:.4f} ± {rec['accuracy_std']:.4f} "
                     f"({rec['n_samples']} reports)")
    ce = result.get("clinical_efficacy")
    if ce is None:
        lines.append("clinical efficacy: not computed")
    else:
        lines.append(f"clinical efficacy (18 CT-RATE labels; {ce['labeler']}):")
        lines.append(f"{'':<10} {'precision':>9} {'recall':>9} {'F1':>9} {'support':>8}")
        for avg in ("micro", "macro"):
            s = ce[avg]
            lines.append(f"{avg:<10} {s['precision']:9.4f} {s['recall']:9.4f} {s['f1']:9.4f} {s['support']:8d}")
    return "\n".join(lines)
