"""Offline CT-RATE abnormality labeler and report/measurement consistency checker.

Finds the 18 CT-RATE abnormality labels in free report text with regular expressions kept as data
(``data/ctrate_labels.json``), decides for each mention whether it is affirmed, negated ("no pleural effusion",
"... was not observed", "heart size is normal") or uncertain, and compares the affirmed/negated statements
with measurements (``check_consistency``). It is rule-based on purpose: it needs no weights, runs anywhere,
and serves as the offline clinical-efficacy labeler for evaluation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from ..data import load_json
from ..errors import InputError

PRESENT, NEGATED, UNCERTAIN = "present", "negated", "uncertain"

# A sentence ends at . ! ? followed by whitespace and an upper-case letter, digit or bracket; decimals ("4.6 mm")
# and abbreviations followed by lower-case words stay inside the sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])")


def _compile(patterns) -> list[re.Pattern]:
    return [re.compile(p, re.IGNORECASE) for p in patterns]


@dataclass(frozen=True)
class _Label:
    name: str
    patterns: list
    normal_patterns: list
    exclude: list
    exclude_unless: list


@dataclass(frozen=True)
class _Rules:
    labels: list
    pre: list
    post: list
    terminators: list
    positive_verbs: list
    uncertainty: list
    overriders: list
    checks: list = field(default_factory=list)


@cache
def _rules() -> _Rules:
    table = load_json("ctrate_labels.json")
    labels = [_Label(name, _compile(spec["patterns"]), _compile(spec.get("normal_patterns", [])),
                     _compile(spec.get("exclude", [])), _compile(spec.get("exclude_unless", [])))
              for name, spec in table["labels"].items()]
    neg = table["negation"]
    return _Rules(labels, _compile(neg["pre"]), _compile(neg["post"]), _compile(neg["terminators"]),
                  _compile(neg["positive_verbs"]), _compile(table["uncertainty"]),
                  _compile(table["negation_overriders"]), table["consistency"]["checks"])


def label_names() -> list[str]:
    """The 18 CT-RATE abnormality labels, in CT-RATE's column order."""
    return [label.name for label in _rules().labels]


def split_sentences(paragraph: str) -> list[str]:
    """Split a report paragraph into sentences (stripped, empty pieces dropped)."""
    if not isinstance(paragraph, str):
        raise InputError(f"report text must be a string, got {type(paragraph).__name__}; pass the paragraph text")
    return [s.strip() for s in _SENTENCE_END.split(paragraph.strip()) if s.strip()]


def _mask(text: str, patterns: list[re.Pattern]) -> str:
    """Blank the spans of ``patterns`` so that negation cues inside them ("cannot be ruled out") are not seen."""
    for pattern in patterns:
        text = pattern.sub(lambda m: "_" * len(m.group(0)), text)
    return text


def _clause(text: str, start: int, end: int, terminators: list[re.Pattern]) -> tuple[int, int]:
    """The span of the clause around [start, end): negation scope stops at 'but', ';', 'however', ..."""
    left, right = 0, len(text)
    for pattern in terminators:
        for m in pattern.finditer(text):
            if m.end() <= start:
                left = max(left, m.end())
            elif m.start() >= end:
                right = min(right, m.start())
    return left, right


def _mention_state(sentence: str, masked: str, start: int, end: int, rules: _Rules) -> str:
    left, right = _clause(masked, start, end, rules.terminators)
    before, after = masked[left:start], masked[end:right]
    # A cue inside a gapped match ("lymph nodes that do not reach pathological size") negates it too.
    inside = masked[start:end]
    negated = any(p.search(before) or p.search(inside) for p in rules.pre) or any(
        p.search(inside) for p in rules.post)
    if not negated:
        for p in rules.post:
            m = p.search(after)
            # "X, and Y is seen; Z was not observed" -- a positive verb before the cue means the cue is Z's.
            if m and not any(v.search(after[: m.start()]) for v in rules.positive_verbs):
                negated = True
                break
    if negated:
        return NEGATED
    clause = sentence[left:right]
    return UNCERTAIN if any(p.search(clause) for p in rules.uncertainty) else PRESENT


def label_sentence(sentence: str) -> dict[str, str]:
    """Labels mentioned in one sentence -> 'present', 'negated' or 'uncertain' (labels not mentioned are absent).

    An affirmed mention wins over an uncertain one, and both win over a negated one, so that
    "no effusion on the right, small effusion on the left" counts as present.
    """
    rules = _rules()
    masked = _mask(sentence, rules.overriders)
    out: dict[str, str] = {}
    rank = {NEGATED: 0, UNCERTAIN: 1, PRESENT: 2}
    for label in rules.labels:
        if any(p.search(sentence) for p in label.exclude) and not any(p.search(sentence) for p in label.exclude_unless):
            continue
        # A "normal" statement ("heart size is normal") negates the label and any mention it contains.
        normal = [(m.start(), m.end()) for p in label.normal_patterns for m in p.finditer(sentence)]
        states = [NEGATED] * len(normal)
        for pattern in label.patterns:
            for m in pattern.finditer(sentence):
                if any(a < m.end() and m.start() < b for a, b in normal):
                    continue
                states.append(_mention_state(sentence, masked, m.start(), m.end(), rules))
        if states:
            out[label.name] = max(states, key=rank.__getitem__)
    return out


def label_report(paragraph: str) -> dict[str, dict]:
    """Per CT-RATE label: ``{"present": True | False | None, "uncertain": bool, "sentences": [...]}``.

    ``present`` is True when any sentence affirms the finding (uncertain mentions count as present and set
    ``uncertain``), False when it is only mentioned negated, None when the text does not mention it.
    ``sentences`` holds the sentences that mention the label, in order.
    """
    out = {name: {"present": None, "uncertain": False, "sentences": []} for name in label_names()}
    for sentence in split_sentences(paragraph):
        for name, state in label_sentence(sentence).items():
            entry = out[name]
            entry["sentences"].append(sentence)
            if state == NEGATED:
                if entry["present"] is None:
                    entry["present"] = False
            else:
                if not entry["present"]:
                    entry["uncertain"] = state == UNCERTAIN
                elif state == PRESENT:
                    entry["uncertain"] = False
                entry["present"] = True
    return out


def _abnormal(value: float, check: dict, thresholds: dict) -> tuple[bool, float, str]:
    if check.get("rule") == "count":
        threshold = float(check["min_count"])
        return value >= threshold, threshold, check.get("unit", "")
    spec = thresholds[check["measure"]]
    threshold = float(spec["threshold"])
    above = value >= threshold if spec.get("inclusive") else value > threshold
    abnormal = above if spec.get("direction", "above") == "above" else not above
    return abnormal, threshold, spec.get("unit", "")


def check_consistency(paragraph: str, measurements: dict) -> list[dict]:
    """Statements in ``paragraph`` that contradict ``measurements``.

    ``measurements`` maps measure names to numbers: ``cardiothoracic_ratio``, ``pleural_effusion_volume_ml``,
    ``pericardial_fluid_volume_ml``, ``laa_950_percent`` (thresholds from clinical_thresholds.json) and
    ``nodule_count``. Missing or None measurements are not checked; labels the text does not mention and
    uncertain statements are not flagged. Returns one dict per contradiction with the label, measure, value,
    threshold, what the text says, what the measurement says, the sentences and a one-line message.
    """
    if not isinstance(measurements, dict):
        raise InputError("measurements must be a dict of measure name -> number, "
                         "e.g. {'cardiothoracic_ratio': 0.62}")
    thresholds = load_json("clinical_thresholds.json")["measures"]
    labels = label_report(paragraph)
    flags = []
    for check in _rules().checks:
        value = measurements.get(check["measure"])
        if value is None:
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InputError(f"measurement {check['measure']!r} must be a number, got {value!r}; "
                             "pass a float or leave it out") from None
        entry = labels[check["label"]]
        if entry["present"] is None or entry["uncertain"]:
            continue
        abnormal, threshold, unit = _abnormal(value, check, thresholds)
        if entry["present"] == abnormal:
            continue
        text_says = "present" if entry["present"] else "absent"
        measured = "abnormal" if abnormal else "normal"
        flags.append({
            "label": check["label"], "measure": check["measure"], "value": value, "threshold": threshold,
            "unit": unit, "text_says": text_says, "measurement_says": measured, "sentences": entry["sentences"],
            "message": (f"text says {check['label'].lower()} is {text_says}, but {check['measure']} = {value:g} "
                        f"{unit} is {measured} (threshold {threshold:g})").replace("  ", " "),
        })
    return flags
