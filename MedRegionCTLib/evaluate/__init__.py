"""Evaluation of generated reports: NLG metrics as Reg2RG computed them, region recognition, clinical efficacy.

Import-light: nltk and rouge-score (the ``train`` extra) load only when METEOR/ROUGE run; WordNet is read offline
(see :mod:`.wordnet`).
"""

from __future__ import annotations

from .clinical import clinical_efficacy, format_clinical, multilabel_scores
from .csvio import GT_COLUMN, PRED_COLUMN, ReportPairs, read_pairs
from .nlg import bleu, cider_d, compute_bleu, meteor, rouge, sample_bleu, tokenize_13a
from .regions import parse_region_prefixes, region_recognition
from .report import ALL_METRICS, evaluate_reports, format_table

__all__ = [
    "ALL_METRICS", "GT_COLUMN", "PRED_COLUMN", "ReportPairs", "bleu", "cider_d", "clinical_efficacy", "compute_bleu",
    "evaluate_reports", "format_clinical", "format_table", "meteor", "multilabel_scores", "parse_region_prefixes",
    "read_pairs", "region_recognition", "rouge", "sample_bleu", "tokenize_13a",
]
