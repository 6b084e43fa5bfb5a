"""BLEU as HF `evaluate` computes it (13a tokens, TensorFlow NMT compute_bleu, add-one smoothing), by hand."""

from __future__ import annotations

import math

import pytest

from MedRegionCTLib.evaluate import bleu, compute_bleu, sample_bleu, tokenize_13a

REF = "the cat sat on the mat"
HYP = "the cat is on the mat"


def test_13a_tokenizer_splits_punctuation_not_hyphens_or_decimals():
    assert tokenize_13a("Effusion-thickening (adenoma?) is 4.6 mm, 3-4 cm.") == [
        "Effusion-thickening", "(", "adenoma", "?", ")", "is", "4.6", "mm", ",", "3", "-", "4", "cm", "."]
    assert tokenize_13a("A &amp; B&lt;C") == ["A", "&", "B", "<", "C"]
    assert tokenize_13a("Liver") != tokenize_13a("liver")  # case-sensitive, as HF bleu


def test_smoothed_sentence_bleu_by_hand():
    # equal lengths -> BP = exp(1 - 1/1) = 1. Matches/possible: 1-grams 5/6, 2-grams 3/5 (the cat, on the,
    # the mat), 3-grams 1/4 (on the mat), 4-grams 0/3. Smoothing adds one to every order, BLEU-1 included.
    p = [6 / 7, 4 / 6, 2 / 5, 1 / 4]
    for n in range(1, 5):
        expected = math.exp(sum(math.log(x) for x in p[:n]) / n)
        assert sample_bleu(HYP, REF, n) == pytest.approx(expected, rel=1e-12)


def test_unsmoothed_zero_when_an_order_has_no_match():
    assert bleu([HYP], [REF], max_order=4, smooth=False)["bleu"] == 0.0
    assert bleu([HYP], [REF], max_order=1, smooth=False)["bleu"] == pytest.approx(5 / 6)


def test_brevity_penalty():
    # 2 of 6 tokens, both match: p1 = (2+1)/(2+1) = 1, BP = exp(1 - 6/2)
    result = bleu(["the cat"], [REF], max_order=1, smooth=True)
    assert result["brevity_penalty"] == pytest.approx(math.exp(-2))
    assert result["bleu"] == pytest.approx(math.exp(-2))
    assert result["length_ratio"] == pytest.approx(2 / 6)


def test_corpus_bleu_pools_counts_over_samples():
    # sample 1: 6 tokens, unigram matches 5; sample 2: "a b" vs "a c d": 1 match of 2, ref length 3.
    result = compute_bleu([[REF.split()], [["a", "c", "d"]]], [HYP.split(), ["a", "b"]], max_order=1)
    assert result["precisions"] == [pytest.approx(6 / 8)]
    assert result["translation_length"] == 8 and result["reference_length"] == 9
    assert result["bleu"] == pytest.approx(6 / 8 * math.exp(1 - 9 / 8))


def test_multiple_references_clip_by_max_count_and_use_shortest_length():
    # hyp "the the the": clipped by the max count over refs (2 in ref B); reference length = shortest (3)
    result = compute_bleu([[["the", "cat", "sat"], ["the", "the", "mat", "on"]]], [["the", "the", "the"]],
                          max_order=1)
    assert result["precisions"] == [pytest.approx(2 / 3)]
    assert result["reference_length"] == 3
    assert result["brevity_penalty"] == 1.0


def test_empty_prediction_scores_zero_instead_of_dividing_by_zero():
    assert sample_bleu("", REF, 4) == 0.0


def test_identical_text_scores_one():
    assert sample_bleu(REF, REF, 4) == pytest.approx(1.0)
