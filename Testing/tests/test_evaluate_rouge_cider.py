"""ROUGE (rouge-score, as HF `evaluate` calls it) and CIDEr-D (pycocoevalcap's algorithm), by hand."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("rouge_score")

from MedRegionCTLib.evaluate import cider_d, rouge  # noqa: E402


def test_rouge_by_hand():
    # 5 shared unigrams of 6 each side; bigrams 3 of 5; LCS "the cat on the mat" = 5
    scores = rouge("the cat is on the mat", "The cat sat on the mat.")
    assert scores["rouge1"] == pytest.approx(5 / 6)
    assert scores["rouge2"] == pytest.approx(3 / 5)
    assert scores["rougeL"] == pytest.approx(5 / 6)


def test_rouge_l_uses_longest_common_subsequence():
    # LCS of "a b c d" and "a c b d e" has length 3: P = 3/4, R = 3/5
    p, r = 3 / 4, 3 / 5
    assert rouge("a b c d", "a c b d e")["rougeL"] == pytest.approx(2 * p * r / (p + r))


def test_rouge_empty_prediction_is_zero():
    assert rouge("", "the heart is normal") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_cider_exact_match_and_no_overlap():
    # corpus of 2: every n-gram of "a b" occurs in 1 of 2 references -> weight log 2. Sample 1 matches on
    # orders 1 and 2 (cosine 1), orders 3-4 are empty: mean (1+1+0+0)/4 x 10 = 5. Sample 2 shares nothing.
    corpus, per_sample = cider_d(["a b", "x y"], ["a b", "c d"])
    assert per_sample == [pytest.approx(5.0), pytest.approx(0.0)]
    assert corpus == pytest.approx(2.5)


def test_cider_idf_ignores_words_in_every_reference():
    # "a" is in both references: idf log(2/2) = 0, so predicting just "a" earns nothing
    _, per_sample = cider_d(["a b", "a"], ["a b", "a c"])
    assert per_sample[0] == pytest.approx(5.0)
    assert per_sample[1] == pytest.approx(0.0)


def test_cider_length_penalty_counts_bigrams_like_pycocoevalcap():
    # pred "a b x y z": 5 unigrams (all weight log 2), 4 bigrams; reference "a b": 2 unigrams, 1 bigram.
    # order 1: cosine 2/sqrt(5*2); order 2: 1/(2*1); Gaussian penalty on the bigram counts: exp(-3^2/(2*6^2))
    _, per_sample = cider_d(["a b x y z", "c d"], ["a b", "c d"])
    expected = (2 / math.sqrt(10) + 0.5) / 4 * math.exp(-9 / 72) * 10
    assert per_sample[0] == pytest.approx(expected)
    assert per_sample[1] == pytest.approx(5.0)
