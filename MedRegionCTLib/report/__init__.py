"""Report layer: the Report document, the reporter interface, the offline CT-RATE abnormality labeler and
report/measurement consistency checker."""

from .document import (
    ASSESSED,
    CONTRADICTION_ACTIONS,
    FINDING_SENTENCE,
    FLAGGED,
    LIMITATION_SENTENCE,
    MEASUREMENT_SENTENCE,
    NEGATIVE_SENTENCE,
    NOT_ASSESSED,
    OUTSIDE_FIELD_OF_VIEW,
    REPLACED,
    REPORT_FORMAT,
    REPORT_VERSION,
    SENTENCE_KINDS,
    Contradiction,
    Evidence,
    Finding,
    Provenance,
    RegionReport,
    Report,
    Sentence,
)
from .labeler import check_consistency, label_names, label_report, label_sentence, split_sentences
from .reporter import ReportCase, Reporter

__all__ = [
    "CONTRADICTION_ACTIONS", "FINDING_SENTENCE", "FLAGGED", "LIMITATION_SENTENCE", "MEASUREMENT_SENTENCE",
    "NEGATIVE_SENTENCE", "REPLACED", "SENTENCE_KINDS", "Contradiction",
    "ASSESSED", "NOT_ASSESSED", "OUTSIDE_FIELD_OF_VIEW", "REPORT_FORMAT", "REPORT_VERSION", "Evidence", "Finding",
    "Provenance", "RegionReport", "Report", "ReportCase", "Reporter", "Sentence", "check_consistency", "label_names",
    "label_report", "label_sentence", "split_sentences",
]
