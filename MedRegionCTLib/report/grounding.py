"""Grounding: free report text (a trained model, a zero-shot LLM, a remote server) checked against the measurements.

One checker serves every reporter (``pipeline.analyze`` calls :func:`ground` on whatever the engine wrote):

1. The text is sanitised (:func:`sanitise`): control bytes, the model's special tokens and leaked
   "The region i is X:" slot prefixes are removed before anything reads it.
2. The labeler turns each sentence into structured statements (kind, present/absent, side, location, size;
   :func:`.labeler.extract_statements`), and each statement is checked against the measurements
   (:func:`.labeler.check_statement`: presence or absence, normal or abnormal, side, size) and against the region
   it stands in (a pleural effusion belongs to the pleura paragraph, not the bone paragraph).
3. Statements that hold become the region's findings (with the measured finding's evidence when the measurements
   corroborate them, else marked unverified in their provenance); sentences get their kind (finding, negative,
   measurement), so the impression is built from findings.
4. Every contradiction is recorded (``Report.contradictions``). The policy decides what happens to the sentence:
   ``"flag"`` keeps it, marked in the renderers; ``"replace"`` puts the measurement reporter's statement of the
   same topic in its place (or drops it when the topic belongs to another region).

The measured truth is the measurement reporter's own output on the same case (its findings and sentences), so
the replacement text is exactly what the offline reporter would write.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from dataclasses import replace
from functools import cache

from ..data import load_json
from ..errors import InputError
from .document import (
    FINDING_SENTENCE,
    FLAGGED,
    MEASUREMENT_SENTENCE,
    NEGATIVE_SENTENCE,
    REPLACED,
    Contradiction,
    Evidence,
    Finding,
    RegionReport,
    Sentence,
)
from .labeler import NEGATED, PRESENT, UNCERTAIN, Statement, check_statement, extract_statements, split_sentences

POLICIES = ("flag", "replace")
POLICY_ACTION = {"flag": FLAGGED, "replace": REPLACED}
UNVERIFIED_CONFIDENCE = 0.5  # a stated finding nothing measures: kept, but not as sure as a measured one
_NUMBER_WITH_UNIT = re.compile(r"\d(?:\.\d+)?\s*(?:mm|cm|ml|mL|HU|%)")


@cache
def _sanitise_patterns() -> tuple[re.Pattern, re.Pattern]:
    spec = load_json("grounding.json")["sanitise"]
    tokens = re.compile("|".join(f"(?:{p})" for p in spec["special_tokens"]))
    return tokens, re.compile(spec["slot_prefix"])


def sanitise(text: str, special_tokens=()) -> str:
    """Generated text without control bytes, special tokens (``special_tokens`` plus the usual chat/slot tokens of
    ``data/grounding.json``) or "The region i is X:" prefixes; whitespace collapsed. A second slot prefix inside
    the text starts another region's answer that leaked in: the text is cut there."""
    if not isinstance(text, str):
        raise InputError(f"generated text must be a string, got {type(text).__name__}.")
    tokens, slot = _sanitise_patterns()
    for token in sorted((t for t in special_tokens if t), key=len, reverse=True):
        text = text.replace(token, " ")
    text = tokens.sub(" ", text)
    # control and format characters (C0/C1, DEL, zero-width, bidi overrides) and U+FFFD (bytes a tokenizer could not
    # decode) become spaces
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs") or c == "\ufffd" else c for c in text)
    prefixes = list(slot.finditer(text))
    if prefixes:
        first = prefixes[0]
        if text[:first.start()].strip():  # text before the first prefix is the answer; a later prefix ends it
            text = text[:first.start()]
        else:
            end = prefixes[1].start() if len(prefixes) > 1 else len(text)
            text = text[first.end():end]
    return re.sub(r"\s+", " ", text).strip()


def nodule_detection_limit_mm(volume) -> float:
    """The smallest nodule diameter the lesion search can find on this CT's grid (as the measurement reporter
    states it): a stated nodule below it can be neither confirmed nor refuted."""
    import numpy as np

    from ..measure.lesions import detection_params

    params = detection_params()
    spacing = np.asarray(volume.spacing, dtype=float)
    return 2.0 * max(params["min_nodule_diameter_mm"] / 2.0, params["min_radius_voxels"] * float(spacing.max()))


def _topic(kind: str) -> str:
    """Kinds one measured statement speaks for together (a nodule and a mass are both lung nodules)."""
    return "nodule" if kind in ("nodule", "mass") else kind


class _Reference:
    """The measured truth of one case: the measurement reporter's regions, findings and measures."""

    def __init__(self, case, regions: list[RegionReport] | None):
        from .measurement_reporter import MeasurementReporter, consistency_measures

        if regions is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # its own self-check warnings are not this check's business
                regions = MeasurementReporter().write(case)
        self.regions = {r.key: r for r in regions}
        self.findings = [f for r in regions for f in r.findings]
        self.measures = consistency_measures(case.measurements)
        if "nodule_count" in self.measures:
            self.measures["nodule_min_diameter_mm"] = nodule_detection_limit_mm(case.volume)
        self.schema = case.schema
        # (region key, kind) -> the sentences where the measurement reporter speaks of that kind
        self.sentences: dict[tuple[str, str], list[tuple[Sentence, list[Finding]]]] = {}
        for r in regions:
            by_id = {f.id: f for f in r.findings}
            for s in r.sentences:
                for st in extract_statements(s.text):
                    entry = (s, [by_id[i] for i in s.findings if i in by_id])
                    bucket = self.sentences.setdefault((r.key, _topic(st.kind)), [])
                    if all(e[0] is not s for e in bucket):
                        bucket.append(entry)

    def home(self, statement: Statement) -> list[str]:
        anchor = load_json("grounding.json")["kinds"].get(statement.label, {}).get("anchor")
        return self.schema.region_of(anchor) if anchor and self.schema is not None else []

    def corroborating(self, statement: Statement) -> list[Finding]:
        from .labeler import _same_kind

        out = [f for f in self.findings if _same_kind(statement.kind, f.kind)]
        if statement.side in ("left", "right"):
            out = [f for f in out if f.side in (statement.side, "bilateral", None)]
        return out


class _Writer:
    def __init__(self, reference: _Reference, policy: str, special_tokens):
        self.ref = reference
        self.policy = policy
        self.special_tokens = tuple(special_tokens)
        self.next_id = 1
        self.contradictions: list[Contradiction] = []

    def new_finding(self, finding: Finding) -> Finding:
        out = replace(finding, id=self.next_id, evidence=Evidence(list(finding.evidence.masks),
                                                                  list(finding.evidence.measurements)),
                      provenance=list(finding.provenance))
        self.next_id += 1
        return out

    # -- one statement ------------------------------------------------------------------------------------
    def problem(self, region: RegionReport, statement: Statement) -> dict | None:
        home = self.ref.home(statement)
        if statement.state != NEGATED and home and region.key not in home:
            names = ", ".join(home)
            return {"check": "region", "claim": statement.claim, "measured": f"{statement.kind} belongs to the "
                    f"{names} paragraph", "message": f"{statement.kind.replace('_', ' ')} stated under "
                    f"{region.name}; it belongs to {names}"}
        return check_statement(statement, self.ref.measures, self.ref.findings)

    def finding_for(self, region: RegionReport, statement: Statement, reporter: str) -> Finding:
        measured = self.ref.corroborating(statement) if statement.state == PRESENT else []
        provenance = [f"stated in the {reporter} text"]
        evidence = Evidence(masks=[f"region:{region.key}"])
        confidence = UNVERIFIED_CONFIDENCE
        if measured:
            for f in measured:
                evidence.masks += [m for m in f.evidence.masks if m not in evidence.masks]
                evidence.measurements += [m for m in f.evidence.measurements if m not in evidence.measurements]
            provenance.append("corroborated by the measurements")
            confidence = 1.0
        else:
            provenance.append("not verified: nothing in the measurements measures it")
        if statement.state == UNCERTAIN:
            provenance.append("stated as uncertain")
            confidence = min(confidence, UNVERIFIED_CONFIDENCE)
        from .measurement_reporter import CTRATE_LABEL

        finding = Finding(id=0, kind=statement.kind, label=CTRATE_LABEL.get(statement.kind, statement.label),
                          location=statement.location, side=statement.side, size=dict(statement.size),
                          confidence=confidence, evidence=evidence, provenance=provenance)
        return self.new_finding(finding)

    # -- one region ---------------------------------------------------------------------------------------
    def region(self, region: RegionReport, reporter: str) -> RegionReport:
        # a writer that already ties its sentences to findings and measurements (the measurement reporter) is only
        # checked; free text (a model's, an LLM's) is structured here
        structured = bool(region.findings) or any(s.kind or s.findings or s.evidence.measurements
                                                  for s in region.sentences)
        texts = [sanitise(s.text, self.special_tokens) for s in region.sentences]
        if not structured:  # free text: sanitise, then split again (a removed prefix may join sentences)
            texts = split_sentences(" ".join(t for t in texts if t))
        sentences, findings = [], []
        for index, text in enumerate(texts):
            original = region.sentences[index] if structured else None
            statements = extract_statements(text)
            problems = [(st, p) for st in statements if (p := self.problem(region, st)) is not None]
            if problems and self.policy == "replace":
                replacement = self.replacement(region, [st for st, _ in problems] + statements)
                for st, p in problems:
                    self.record(region, None if not replacement else len(sentences), text, st, p, REPLACED)
                for sentence, measured in replacement:
                    new = [self.new_finding(f) for f in measured]
                    findings += new
                    kind = sentence.kind or self.sentence_kind(sentence.text, extract_statements(sentence.text), new)
                    sentences.append(replace(sentence, findings=[f.id for f in new], kind=kind,
                                             evidence=Evidence(list(sentence.evidence.masks),
                                                               list(sentence.evidence.measurements))))
                continue
            for st, p in problems:
                self.record(region, len(sentences), text, st, p, FLAGGED)
            bad = {id(st) for st, _ in problems}
            if structured:
                sentences.append(replace(original, text=text))
                continue
            new = []
            for st in statements:
                if id(st) in bad or st.state == NEGATED:
                    continue
                if any(f.kind == st.kind and f.side == st.side and f.size == st.size for f in findings + new):
                    continue  # the same finding stated twice in one paragraph
                new.append(self.finding_for(region, st, reporter))
            findings += new
            sentences.append(Sentence(text, Evidence(masks=[f"region:{region.key}"]), [f.id for f in new],
                                      self.sentence_kind(text, statements, new)))
        if structured:
            findings = list(region.findings)
        return replace(region, sentences=sentences, findings=findings)

    @staticmethod
    def sentence_kind(text: str, statements: list[Statement], new: list[Finding]) -> str:
        if new:
            return FINDING_SENTENCE
        if statements and all(st.state == NEGATED for st in statements):
            return NEGATIVE_SENTENCE
        return MEASUREMENT_SENTENCE if _NUMBER_WITH_UNIT.search(text) else ""

    def replacement(self, region: RegionReport, statements: list[Statement]):
        out: list[tuple[Sentence, list[Finding]]] = []
        for st in statements:
            for entry in self.ref.sentences.get((region.key, _topic(st.kind)), []):
                if all(e[0] is not entry[0] for e in out):
                    out.append(entry)
        return out

    def record(self, region: RegionReport, sentence: int | None, text: str, statement: Statement, problem: dict,
               action: str) -> None:
        measured = self.ref.corroborating(statement)
        evidence = Evidence(masks=[f"region:{region.key}"],
                            measurements=sorted({m for f in measured for m in f.evidence.measurements}))
        self.contradictions.append(Contradiction(region=region.key, sentence=sentence, text=text,
                                                 claim=problem["claim"], measured=problem["measured"], action=action,
                                                 evidence=evidence))


def ground(case, regions: list[RegionReport], policy: str = "flag", reference: list[RegionReport] | None = None,
           reporter: str = "generated", special_tokens=()) -> tuple[list[RegionReport], list[Contradiction]]:
    """Check ``regions`` (what a reporter wrote for ``case``) against the case's measurements.

    Returns the regions with sanitised text, sentence kinds and findings, and the contradictions found.
    ``policy``: "flag" (keep contradicted sentences, recorded) or "replace" (the measured statement instead).
    ``reference``: the measurement reporter's regions for this case when already written (else written here).
    Regions that already carry structured findings (the measurement reporter's) are only checked.
    """
    if policy not in POLICIES:
        raise InputError(f"grounding policy {policy!r} is unknown; use 'flag' (keep and mark contradicted "
                         "sentences) or 'replace' (put the measured statement in their place).")
    if case.measurements is None:
        raise InputError("grounding needs the case's measurements; run measure() first.")
    writer = _Writer(_Reference(case, reference), policy, special_tokens)
    out = [writer.region(r, reporter) if r.sentences else r for r in regions]
    return out, writer.contradictions
