"""Report layer: the offline CT-RATE abnormality labeler and report/measurement consistency checker."""

from .labeler import check_consistency, label_names, label_report, label_sentence, split_sentences

__all__ = ["check_consistency", "label_names", "label_report", "label_sentence", "split_sentences"]
