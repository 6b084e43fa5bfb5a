"""Report layer: the Report document, the reporter interface, the offline CT-RATE abnormality labeler and
report/measurement consistency checker."""

from .document import (
    ASSESSED,
    NOT_ASSESSED,
    OUTSIDE_FIELD_OF_VIEW,
    REPORT_FORMAT,
    REPORT_VERSION,
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
    "ASSESSED", "NOT_ASSESSED", "OUTSIDE_FIELD_OF_VIEW", "REPORT_FORMAT", "REPORT_VERSION", "Evidence", "Finding",
    "Provenance", "RegionReport", "Report", "ReportCase", "Reporter", "Sentence", "check_consistency", "label_names",
    "label_report", "label_sentence", "split_sentences",
]
