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


@dataclass(frozen=True)
class Mention:
    """One mention of a CT-RATE label in a sentence: its state and where it is (character span, and the span of
    the clause that scopes its negation)."""

    label: str
    state: str
    start: int
    end: int
    clause: tuple[int, int]


def label_mentions(sentence: str) -> list[Mention]:
    """Every mention of a CT-RATE label in one sentence, in label order then text order."""
    rules = _rules()
    masked = _mask(sentence, rules.overriders)
    out: list[Mention] = []
    for label in rules.labels:
        if any(p.search(sentence) for p in label.exclude) and not any(p.search(sentence) for p in label.exclude_unless):
            continue
        # A "normal" statement ("heart size is normal") negates the label and any mention it contains.
        normal = [(m.start(), m.end()) for p in label.normal_patterns for m in p.finditer(sentence)]
        found = [Mention(label.name, NEGATED, a, b, _clause(masked, a, b, rules.terminators)) for a, b in normal]
        for pattern in label.patterns:
            for m in pattern.finditer(sentence):
                if any(a < m.end() and m.start() < b for a, b in normal):
                    continue
                state = _mention_state(sentence, masked, m.start(), m.end(), rules)
                found.append(Mention(label.name, state, m.start(), m.end(),
                                     _clause(masked, m.start(), m.end(), rules.terminators)))
        out += sorted(found, key=lambda m: m.start)
    return out


def label_sentence(sentence: str) -> dict[str, str]:
    """Labels mentioned in one sentence -> 'present', 'negated' or 'uncertain' (labels not mentioned are absent).

    An affirmed mention wins over an uncertain one, and both win over a negated one, so that
    "no effusion on the right, small effusion on the left" counts as present.
    """
    rank = {NEGATED: 0, UNCERTAIN: 1, PRESENT: 2}
    out: dict[str, str] = {}
    for mention in label_mentions(sentence):
        if mention.label not in out or rank[mention.state] > rank[out[mention.label]]:
            out[mention.label] = mention.state
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


def check_consistency(paragraph: str, measurements: dict, findings=None) -> list[dict]:
    """Statements in ``paragraph`` that contradict ``measurements``.

    ``measurements`` maps measure names to numbers: ``cardiothoracic_ratio``, ``pleural_effusion_volume_ml``,
    ``pericardial_fluid_volume_ml``, ``laa_950_percent`` (thresholds from clinical_thresholds.json) and
    ``nodule_count``. Missing or None measurements are not checked; labels the text does not mention and
    uncertain statements are not flagged. Returns one dict per contradiction with the label, measure, value,
    threshold, what the text says, what the measurement says, the sentences and a one-line message;
    ``"check"`` is ``"presence"`` (present or absent, normal or abnormal).

    ``findings`` (the measured findings: ``Finding`` objects or dicts with kind, side and size) adds a check
    of every statement on its own (:func:`check_statement`): a finding put on the wrong side (``"side"``), a
    stated size the measurement does not bear out (``"size"``), and an absence stated for one side where the
    measurements find it (``"presence"``, caught per sentence, which the paragraph-level check above cannot).
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
                        f"{unit} is {measured} (threshold {threshold:g})").replace("  ", " "), "check": "presence",
        })
    if findings is not None:
        flagged = {f["label"] for f in flags}
        for statement in extract_statements(paragraph):
            problem = check_statement(statement, measurements, findings)
            if problem is None or (problem["check"] == "presence" and statement.label in flagged):
                continue
            flags.append({"label": statement.label, "check": problem["check"], "claim": problem["claim"],
                          "text_says": statement.claim, "measurement_says": problem["measured"],
                          "sentences": [statement.text], "message": problem["message"]})
    return flags


# --- structured statements: text -> findings (kind, side, location, size) ------------------------------------
@dataclass
class Statement:
    """What one mention of an abnormality in free text asserts: the finding kind, present or absent (or
    uncertain), and the side, location and size stated in its clause."""

    sentence: int  # index of the sentence in the paragraph
    text: str  # the sentence
    label: str  # CT-RATE label
    kind: str  # finding kind (measure layer vocabulary)
    state: str  # present | negated | uncertain
    side: str | None = None  # left | right | bilateral
    location: str = ""
    size: dict = field(default_factory=dict)  # {"max_diameter_mm": ..} or {"volume_ml": ..}, as stated
    other: bool = False  # "no other nodule": an absence besides the ones stated, not an absence as such

    @property
    def claim(self) -> str:
        """``"<kind> present|absent [side] [size]"``: the structured claim recorded with a contradiction."""
        parts = [self.kind, "absent" if self.state == NEGATED else "present"]
        if self.side:
            parts.append(self.side)
        parts += [f"{k}={v:g}" for k, v in self.size.items()]
        return " ".join(parts)


@cache
def _grounding_table() -> dict:
    table = load_json("grounding.json")
    flags = re.IGNORECASE
    return {
        "kinds": table["kinds"],
        "mass": re.compile(table["mass_pattern"], flags),
        "sides": {side: [re.compile(p, flags) for p in pats] for side, pats in table["sides"].items()},
        "locations": [re.compile(p, flags) for p in table["locations"]],
        "sizes": {name: re.compile(p, flags) for name, p in table["sizes"].items()},
        "tolerance": table["tolerance"],
    }


def grounding_table() -> dict:
    """The compiled grounding table (``data/grounding.json``)."""
    return _grounding_table()


def _nearest(spans: list[tuple[int, int, object]], start: int, end: int):
    if not spans:
        return None
    return min(spans, key=lambda s: abs((s[0] + s[1]) / 2 - (start + end) / 2))[2]


def _side(clause: str, offset: int, start: int, end: int, table: dict) -> str | None:
    spans = [(m.start() + offset, m.end() + offset, side) for side, pats in table["sides"].items()
             for p in pats for m in p.finditer(clause)]
    if any(side == "bilateral" for _, _, side in spans):
        return "bilateral"
    sides = {side for _, _, side in spans}
    if len(sides) > 1:  # "right ... and left ..." in one clause: both
        return _nearest(spans, start, end) if "both" not in clause.lower() else "bilateral"
    return sides.pop() if sides else None


def _size(clause: str, offset: int, start: int, end: int, table: dict) -> dict:
    out = {}
    spans = []
    for m in table["sizes"]["diameter_mm"].finditer(clause):
        value = float(m.group(1)) * (10.0 if m.group(2).lower().startswith(("cm", "centi")) else 1.0)
        spans.append((m.start() + offset, m.end() + offset, ("max_diameter_mm", value)))
    for m in table["sizes"]["volume_ml"].finditer(clause):
        unit = m.group(2).lower()
        value = float(m.group(1)) * (1000.0 if unit == "l" or unit.startswith("lit") else 1.0)
        spans.append((m.start() + offset, m.end() + offset, ("volume_ml", value)))
    for key in ("max_diameter_mm", "volume_ml"):
        best = _nearest([s for s in spans if s[2][0] == key], start, end)
        if best is not None:
            out[key] = round(best[1], 1)
    return out


def extract_statements(paragraph: str) -> list[Statement]:
    """The abnormality statements of a paragraph: one per label and clause (the mention that decides the clause's
    state, as :func:`label_sentence` does for a sentence), with side, location and size read from that clause
    (from the sentence when the clause names no place or size)."""
    table = _grounding_table()
    rank = {NEGATED: 0, UNCERTAIN: 1, PRESENT: 2}
    out: list[Statement] = []
    for index, sentence in enumerate(split_sentences(paragraph)):
        best: dict[tuple, Mention] = {}  # one statement per label and clause
        for mention in label_mentions(sentence):
            key = (mention.label, mention.clause)
            if key not in best or rank[mention.state] > rank[best[key].state]:
                best[key] = mention
        for mention in sorted(best.values(), key=lambda m: m.start):
            a, b = mention.clause
            clause = sentence[a:b]
            side = _side(clause, a, mention.start, mention.end, table)
            size = _size(clause, a, mention.start, mention.end, table)
            locations = [(m.start() + a, m.end() + a, m.group(0).lower()) for p in table["locations"]
                         for m in p.finditer(clause)]
            if side is None and not locations:  # the clause names no place: the sentence may
                side = _side(sentence, 0, mention.start, mention.end, table)
                locations = [(m.start(), m.end(), m.group(0).lower()) for p in table["locations"]
                             for m in p.finditer(sentence)]
            if not size and len(best) == 1:  # a size elsewhere in the sentence belongs to its only statement
                size = _size(sentence, 0, mention.start, mention.end, table)
            if mention.state == NEGATED:
                size = {}  # "no nodule larger than 5 mm": the number bounds an absence, it is no finding's size
            other = bool(_OTHER.search(sentence[a:mention.start]))
            spec = table["kinds"].get(mention.label, {})
            kind = spec.get("kind", mention.label.lower().replace(" ", "_"))
            if kind == "nodule" and table["mass"].search(clause):
                kind = "mass"
            out.append(Statement(index, sentence, mention.label, kind, mention.state, side,
                                 _nearest(locations, mention.start, mention.end) or "", size, other))
    return out


_OTHER = re.compile(r"\b(?:other|further|additional|another|more|new)\b", re.IGNORECASE)


# --- statement checks against measured findings ------------------------------------------------------------------
LUNG_NODULE_KINDS = ("nodule", "mass")


def _same_kind(kind: str, other: str) -> bool:
    return kind == other or (kind in LUNG_NODULE_KINDS and other in LUNG_NODULE_KINDS)


def _sides_of(findings) -> set[str]:
    out = set()
    for f in findings:
        side = getattr(f, "side", None) if not isinstance(f, dict) else f.get("side")
        if side == "bilateral":
            out |= {"left", "right"}
        elif side in ("left", "right"):
            out.add(side)
    return out


def _get(f, name):
    return f.get(name) if isinstance(f, dict) else getattr(f, name, None)


def _size_agrees(stated: float, measured: float, spec: dict) -> bool:
    return abs(stated - measured) <= max(float(spec["absolute"]), float(spec["relative"]) * abs(measured))


def check_statement(statement: Statement, measurements: dict, findings=None) -> dict | None:
    """The contradiction between one statement and the measurements, or None.

    ``measurements``: as for :func:`check_consistency` (presence by measure: ``cardiothoracic_ratio``,
    ``pleural_effusion_volume_ml``, ... and ``nodule_count``), plus optionally ``nodule_min_diameter_mm``, the
    smallest nodule the lesion search can find (a stated nodule below it cannot be refuted). ``findings``: the
    measured findings (``Finding`` objects or dicts with kind, side, size) for side and size checks; None when
    the measurements hold no finding list (then only presence is checked). Uncertain statements and labels
    nothing measures are never contradicted. Returns ``{"check": presence|side|size, "claim", "measured",
    "message"}``.
    """
    if statement.state == UNCERTAIN:
        return None
    thresholds = load_json("clinical_thresholds.json")["measures"]
    present = statement.state == PRESENT
    # presence: the label's measures, as check_consistency judges them
    measured_abnormal = None
    evidence = []
    for check in _rules().checks:
        if check["label"] != statement.label or measurements.get(check["measure"]) is None:
            continue
        value = float(measurements[check["measure"]])
        abnormal, threshold, unit = _abnormal(value, check, thresholds)
        evidence.append(f"{check['measure']} = {value:g} {unit}".strip() + f" (threshold {threshold:g})")
        measured_abnormal = bool(measured_abnormal) or abnormal
    same = [f for f in (findings or []) if _same_kind(statement.kind, str(_get(f, "kind")))] \
        if statement.kind in LUNG_NODULE_KINDS + ("pleural_effusion", "pericardial_effusion", "cardiomegaly",
                                                  "emphysema", "consolidation") else []
    if measured_abnormal is None and findings is not None and same:
        measured_abnormal = True
    if measured_abnormal is None:
        return None  # nothing measures this label
    limit = measurements.get("nodule_min_diameter_mm")
    stated_mm = statement.size.get("max_diameter_mm")
    below_limit = (statement.kind in LUNG_NODULE_KINDS and limit is not None and stated_mm is not None
                   and stated_mm < float(limit))
    measured_text = "; ".join(evidence) if evidence else "measured findings"
    if present and not measured_abnormal:
        if below_limit:
            return None  # smaller than anything the lesion search can find: not refuted
        return {"check": "presence", "claim": statement.claim, "measured": f"{statement.label.lower()} absent "
                f"({measured_text})", "message": f"text says {statement.kind.replace('_', ' ')} is present, but "
                f"the measurements find none ({measured_text})"}
    sides = _sides_of(same)
    if not present:
        if not measured_abnormal or statement.other:  # "no other nodule" after the stated ones: no absence claim
            return None
        if statement.side in ("left", "right") and sides and statement.side not in sides:
            return None  # "no effusion on the left" while the measured effusion is on the right: agrees
        where = f" on the {statement.side}" if statement.side in ("left", "right") else ""
        return {"check": "presence", "claim": statement.claim,
                "measured": f"{statement.label.lower()} present{(' ' + '/'.join(sorted(sides))) if sides else ''} "
                            f"({measured_text})",
                "message": f"text says there is no {statement.kind.replace('_', ' ')}{where}, but the measurements "
                           f"find one ({measured_text})"}
    if findings is None or not same:
        return None
    if statement.side and sides:
        wanted = {"left", "right"} if statement.side == "bilateral" else {statement.side}
        if not wanted <= sides:
            return {"check": "side", "claim": statement.claim, "measured": f"{statement.kind} on the "
                    f"{' and '.join(sorted(sides))}", "message": f"text puts the {statement.kind.replace('_', ' ')} "
                    f"on the {statement.side}, but it is measured on the {' and '.join(sorted(sides))}"}
    tolerance = _grounding_table()["tolerance"]
    candidates = [f for f in same if statement.side in (None, "bilateral") or _get(f, "side") in
                  (statement.side, "bilateral", None)] or same
    for key in ("max_diameter_mm", "volume_ml"):
        stated = statement.size.get(key)
        values = [float((_get(f, "size") or {})[key]) for f in candidates if key in (_get(f, "size") or {})]
        if stated is None or not values:
            continue
        if not any(_size_agrees(stated, v, tolerance[key]) for v in values):
            unit = "mm" if key.endswith("_mm") else "mL"
            shown = ", ".join(f"{v:g} {unit}" for v in values)
            return {"check": "size", "claim": statement.claim, "measured": f"{statement.kind} {key}={shown}",
                    "message": f"text gives the {statement.kind.replace('_', ' ')} {stated:g} {unit}, but it "
                               f"measures {shown}"}
    return None
