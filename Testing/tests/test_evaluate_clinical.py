"""Clinical efficacy on the 18 CT-RATE labels: hand-computed multi-label figures, the offline labeler on both
sides, the evaluate hook and a user-supplied sequence classifier (a tiny random BERT written to tmp_path)."""

from __future__ import annotations

import numpy as np
import pytest

from MedRegionCTLib.errors import InputError
from MedRegionCTLib.evaluate import clinical_efficacy, evaluate_reports, format_clinical, multilabel_scores
from MedRegionCTLib.evaluate.clinical import label_names

TRUTH = [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]]
PRED = [[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 1]]


def test_multilabel_scores_match_hand_computed_values():
    r = multilabel_scores(np.array(TRUTH), np.array(PRED), ["a", "b", "c"])
    # a: tp 2 fp 0 fn 0; b: tp 1 fp 0 fn 1; c: tp 0 fp 2 fn 1
    assert r["per_label"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2, "tp": 2, "fp": 0,
                                   "fn": 0, "predicted": 2}
    assert r["per_label"]["b"]["recall"] == pytest.approx(0.5)
    assert r["per_label"]["b"]["f1"] == pytest.approx(2 / 3)
    assert r["per_label"]["c"]["precision"] == 0.0 and r["per_label"]["c"]["f1"] == 0.0
    # micro: tp 3, fp 2, fn 2
    assert (r["micro"]["precision"], r["micro"]["recall"], r["micro"]["f1"]) == pytest.approx((0.6, 0.6, 0.6))
    assert (r["macro"]["precision"], r["macro"]["recall"], r["macro"]["f1"]) == pytest.approx((2 / 3, 0.5, 5 / 9))
    # weighted by support 2, 2, 1
    assert (r["weighted"]["precision"], r["weighted"]["recall"], r["weighted"]["f1"]) == pytest.approx(
        (0.8, 0.6, 0.4 + 0.4 * 2 / 3))
    # per report: (1, .5), (.5, 1), (1, .5), (0, 0)
    assert (r["samples"]["precision"], r["samples"]["recall"], r["samples"]["f1"]) == pytest.approx(
        (0.625, 0.5, 0.5))
    assert r["micro"]["support"] == 5 and r["n_samples"] == 4


def test_clinical_efficacy_labels_both_sides_with_the_offline_labeler():
    refs = ["There is a small left pleural effusion. Heart size is normal.", "Cardiomegaly is observed.",
            "No pleural effusion."]
    preds = ["No pleural effusion.", "Cardiomegaly is observed. Right pleural effusion is observed.",
             "No pleural effusion."]
    r = clinical_efficacy(refs, preds)
    assert r["per_label"]["Pleural effusion"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1,
                                                  "tp": 0, "fp": 1, "fn": 1, "predicted": 1}
    assert r["per_label"]["Cardiomegaly"]["f1"] == 1.0
    assert (r["micro"]["precision"], r["micro"]["recall"], r["micro"]["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert r["macro"]["f1"] == pytest.approx(1 / 18)
    assert r["labels"] == label_names() and len(r["labels"]) == 18
    assert "Cardiomegaly" in format_clinical(r) and "micro avg" in format_clinical(r)
    with pytest.raises(InputError):
        clinical_efficacy(refs, preds[:2])


def test_evaluate_reports_fills_the_clinical_hook():
    result = evaluate_reports(["Cardiomegaly is observed."], ["The heart is enlarged."], metrics=["BLEU-1"])
    assert result["clinical_efficacy"]["micro"]["f1"] == 1.0
    assert evaluate_reports(["a"], ["a"], metrics=["BLEU-1"], clinical=False)["clinical_efficacy"] is None


def _tiny_classifier(folder, num_labels=18, positive="Pleural effusion"):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "no", "pleural", "effusion", "heart", "is", "normal", "."]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = transformers.BertTokenizer(str(folder / "vocab.txt"))
    names = label_names()[::-1][:num_labels]  # reversed: the outputs must be matched by name, not position
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                                     num_labels=num_labels, problem_type="multi_label_classification",
                                     id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    model = transformers.BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.fill_(-10.0)
        if positive in names:
            model.classifier.bias[names.index(positive)] = 10.0
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def test_user_classifier_folder_is_matched_by_label_name(tmp_path):
    from MedRegionCTLib.evaluate.clinical import ClassifierLabeler

    folder = _tiny_classifier(tmp_path / "radbert")
    labels = ClassifierLabeler(folder)(["no pleural effusion .", "heart is normal ."])
    assert labels.shape == (2, 18)
    column = label_names().index("Pleural effusion")
    assert labels[:, column].all() and labels.sum() == 2
    r = clinical_efficacy(["x"], ["y"], classifier=str(folder))
    assert r["per_label"]["Pleural effusion"]["tp"] == 1 and r["micro"]["f1"] == 1.0
    assert str(folder) in r["labeler"]


def test_classifier_errors_are_clear(tmp_path):
    from MedRegionCTLib.evaluate.clinical import ClassifierLabeler

    with pytest.raises(InputError, match="not found"):
        ClassifierLabeler(tmp_path / "missing")
    folder = _tiny_classifier(tmp_path / "five", num_labels=5)
    with pytest.raises(InputError, match="5 outputs"):
        ClassifierLabeler(folder)
