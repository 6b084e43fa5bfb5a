"""Natural-language metrics for generated reports, computed the way Reg2RG computed them.

Reg2RG (``evaluation/hf_nlg_evaluation_region.py``) scored each (ground truth, prediction) pair on its own with
the Hugging Face ``evaluate`` metrics and reported mean ± population std over samples, plus "Overall" corpus
figures. This module reproduces those metrics without fetching metric scripts:

- BLEU-n: HF ``bleu`` = sacreBLEU's ``13a`` tokenizer (case-sensitive) + TensorFlow NMT ``compute_bleu`` with
  ``smooth=True`` (add-one on *every* n-gram order, BLEU-1 included), one call per n with ``max_order=n``;
- METEOR: HF ``meteor`` = nltk ``single_meteor_score`` (alpha 0.9, beta 3, gamma 0.5; lower-cased, Porter
  stemmer, WordNet synonyms) on ``nltk.word_tokenize`` tokens;
- ROUGE-1/2/L: HF ``rouge`` = Google's ``rouge-score`` F-measure, no stemmer, its own lower-casing tokenizer;
- CIDEr-D: pycocoevalcap's ``Cider`` (the CIDEr-D variant: n=4, sigma=6, clipped tf-idf, x10), document
  frequencies over the references of the evaluated corpus, whitespace tokens (Reg2RG passed raw strings).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

from ..errors import MissingDependencyError

# --- BLEU ---------------------------------------------------------------------------------------------------

# sacreBLEU 13a (mteval-v13a.pl) rules, as vendored in HF evaluate's tokenizer_13a.py.
_13A_RULES = (
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # punctuation and symbols
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period/comma unless preceded by a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # period/comma unless followed by a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # dash preceded by a digit
)


@lru_cache(maxsize=2**16)
def _tokenize_13a_cached(line: str) -> tuple[str, ...]:
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    for pattern, replacement in _13A_RULES:
        line = pattern.sub(replacement, line)
    return tuple(line.split())


def tokenize_13a(line: str) -> list[str]:
    """sacreBLEU's 13a tokenisation (no lower-casing), returning the tokens."""
    return list(_tokenize_13a_cached(line))


def _ngrams(tokens: Sequence[str], max_order: int) -> Counter:
    counts: Counter = Counter()
    for order in range(1, max_order + 1):
        for i in range(len(tokens) - order + 1):
            counts[tuple(tokens[i:i + order])] += 1
    return counts


def compute_bleu(references: Sequence[Sequence[Sequence[str]]], translations: Sequence[Sequence[str]],
                 max_order: int = 4, smooth: bool = False) -> dict:
    """Corpus BLEU of tokenised translations against lists of tokenised references (TensorFlow NMT algorithm).

    Returns ``bleu, precisions, brevity_penalty, length_ratio, translation_length, reference_length``.
    An empty corpus translation (length 0) scores 0; the NMT code divides by zero there.
    """
    matches = [0] * max_order
    possible = [0] * max_order
    reference_length = translation_length = 0
    for refs, translation in zip(references, translations, strict=True):
        reference_length += min(len(r) for r in refs)
        translation_length += len(translation)
        merged: Counter = Counter()
        for ref in refs:
            merged |= _ngrams(ref, max_order)
        overlap = _ngrams(translation, max_order) & merged
        for ngram, count in overlap.items():
            matches[len(ngram) - 1] += count
        for order in range(1, max_order + 1):
            if len(translation) - order + 1 > 0:
                possible[order - 1] += len(translation) - order + 1
    if smooth:
        precisions = [(m + 1.0) / (p + 1.0) for m, p in zip(matches, possible)]
    else:
        precisions = [m / p if p > 0 else 0.0 for m, p in zip(matches, possible)]
    geo_mean = math.exp(sum(math.log(p) / max_order for p in precisions)) if min(precisions) > 0 else 0.0
    ratio = translation_length / reference_length if reference_length else 0.0
    if ratio > 1.0:
        bp = 1.0
    elif ratio > 0.0:
        bp = math.exp(1.0 - 1.0 / ratio)
    else:
        bp = 0.0
    return {"bleu": geo_mean * bp, "precisions": precisions, "brevity_penalty": bp, "length_ratio": ratio,
            "translation_length": translation_length, "reference_length": reference_length}


def bleu(predictions: Sequence[str], references: Sequence[str | Sequence[str]], max_order: int = 4,
         smooth: bool = True) -> dict:
    """HF ``evaluate`` BLEU (13a tokens) of predictions against references (one string or a list per sample)."""
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    return compute_bleu([[tokenize_13a(r) for r in rs] for rs in refs], [tokenize_13a(p) for p in predictions],
                        max_order=max_order, smooth=smooth)


def sample_bleu(prediction: str, reference: str, max_order: int) -> float:
    """Reg2RG's per-sample BLEU-n: smoothed BLEU of one pair with ``max_order=n``."""
    return bleu([prediction], [reference], max_order=max_order, smooth=True)["bleu"]


# --- METEOR -------------------------------------------------------------------------------------------------

def _nltk():
    try:
        import nltk  # noqa: F401
    except ImportError as error:
        raise MissingDependencyError(
            "METEOR needs nltk: `pip install 'MedRegionCTLib[train]'` (or `pip install nltk`)") from error


@lru_cache(maxsize=1)
def _word_tokenizer():
    _nltk()
    from nltk.tokenize.destructive import NLTKWordTokenizer

    return NLTKWordTokenizer()


def meteor_tokenize(text: str) -> list[str]:
    """``nltk.word_tokenize`` (Punkt sentences, then the improved Treebank tokenizer), with offline Punkt."""
    from .wordnet import sentence_splitter

    split, _ = sentence_splitter()
    tokenizer = _word_tokenizer()
    return [token for sentence in split(text) for token in tokenizer.tokenize(sentence)]


def meteor(prediction: str, reference: str, wordnet=None, alpha: float = 0.9, beta: float = 3.0,
           gamma: float = 0.5) -> float:
    """HF ``evaluate`` METEOR of one pair (nltk ``single_meteor_score``); ``wordnet`` from :func:`load_wordnet`."""
    _nltk()
    from nltk.translate.meteor_score import single_meteor_score

    from .wordnet import load_wordnet

    wordnet = wordnet if wordnet is not None else load_wordnet()
    return float(single_meteor_score(meteor_tokenize(reference), meteor_tokenize(prediction), wordnet=wordnet,
                                     alpha=alpha, beta=beta, gamma=gamma))


# --- ROUGE --------------------------------------------------------------------------------------------------

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@lru_cache(maxsize=1)
def _rouge_scorer():
    try:
        from rouge_score import rouge_scorer
    except ImportError as error:
        raise MissingDependencyError(
            "ROUGE needs rouge-score: `pip install 'MedRegionCTLib[train]'` (or `pip install rouge-score`)"
        ) from error
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """HF ``evaluate`` ROUGE-1/2/L F-measures of one pair (rouge-score, no stemmer)."""
    scores = _rouge_scorer().score(reference, prediction)
    return {name: float(scores[name].fmeasure) for name in ROUGE_TYPES}


# --- CIDEr-D ------------------------------------------------------------------------------------------------

def cider_d(predictions: Sequence[str], references: Sequence[str | Sequence[str]], n: int = 4,
            sigma: float = 6.0) -> tuple[float, list[float]]:
    """pycocoevalcap's CIDEr(-D): (corpus score = mean, per-sample scores); idf from this corpus' references.

    Kept bug-for-bug with pycocoevalcap so figures compare: the Gaussian length penalty uses the *bigram*
    count as "length", and n-grams unseen in the references get document frequency 1.
    """
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    if len(refs) != len(predictions):
        raise ValueError("predictions and references differ in length")
    if not refs:
        return 0.0, []
    ref_counts = [[_ngrams(r.split(), n) for r in rs] for rs in refs]
    test_counts = [_ngrams(p.split(), n) for p in predictions]
    document_frequency: Counter = Counter()
    for counts in ref_counts:
        for ngram in {g for c in counts for g in c}:
            document_frequency[ngram] += 1
    log_corpus = math.log(float(len(refs)))

    def vector(counts: Counter):
        vec: list[dict] = [{} for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for ngram, tf in counts.items():
            order = len(ngram) - 1
            weight = float(tf) * (log_corpus - math.log(max(1.0, document_frequency[ngram])))
            vec[order][ngram] = weight
            norm[order] += weight * weight
            if order == 1:
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    scores = []
    for test, ref_list in zip(test_counts, ref_counts):
        vec, norm, length = vector(test)
        total = [0.0] * n
        for ref in ref_list:
            vec_r, norm_r, length_r = vector(ref)
            penalty = math.exp(-((length - length_r) ** 2) / (2 * sigma ** 2))
            for order in range(n):
                val = sum(min(w, vec_r[order].get(g, 0.0)) * vec_r[order].get(g, 0.0)
                          for g, w in vec[order].items())
                if norm[order] != 0 and norm_r[order] != 0:
                    val /= norm[order] * norm_r[order]
                total[order] += val * penalty
        scores.append(sum(total) / n / len(ref_list) * 10.0)
    return sum(scores) / len(scores), scores
