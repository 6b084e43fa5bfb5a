"""The Report document: one paragraph per region, its findings, the evidence behind each sentence, provenance.

A report is plain data (dataclasses of strings, numbers, lists and dicts) with a versioned JSON form; the
round trip ``Report.from_json(report.to_json())`` is lossless. The JSON Schema of that form ships as
``data/report_schema.json`` for readers outside Python.

Evidence names what supports a sentence or finding, so every statement can be traced back:

- masks: ``"region:<key>"``, ``"structure:<class name>"`` or ``"lesion:<id>"`` (ids of ``Measurements.lesions``);
- measurements: paths into ``measurements.json``, e.g. ``"clinical/cardiothoracic_ratio"``,
  ``"structures/heart/volume_ml"``, ``"lesions/2"``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..atomic import write_json
from ..errors import InputError

REPORT_FORMAT = "medregionct-report"
REPORT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 2 added sentence kinds, finding provenance, contradictions and the scope header

# Region status: what the paragraph could be based on.
ASSESSED = "assessed"
OUTSIDE_FIELD_OF_VIEW = "outside_field_of_view"  # the region is not in the scanned range
NOT_ASSESSED = "not_assessed"  # in range, but the segmentation or reporter could not describe it
STATUSES = (ASSESSED, OUTSIDE_FIELD_OF_VIEW, NOT_ASSESSED)

# Sentence kinds: what a sentence claims, so a reader (and the consistency check) knows which need evidence.
FINDING_SENTENCE = "finding"  # states an abnormality (carries finding ids)
NEGATIVE_SENTENCE = "negative"  # states an absence ("No pleural effusion."): needs full coverage and passed checks
MEASUREMENT_SENTENCE = "measurement"  # a measured normal value ("The heart is normal in size (CTR 0.45).")
LIMITATION_SENTENCE = "limitation"  # says what could not be assessed, and why
SENTENCE_KINDS = ("", FINDING_SENTENCE, NEGATIVE_SENTENCE, MEASUREMENT_SENTENCE, LIMITATION_SENTENCE)

# What happened to a contradicted sentence (report-versus-measurement check).
FLAGGED = "flagged"  # kept, marked as contradicting the measurements
REPLACED = "replaced"  # replaced by the measured statement
CONTRADICTION_ACTIONS = (FLAGGED, REPLACED)


@dataclass
class Evidence:
    masks: list[str] = field(default_factory=list)
    measurements: list[str] = field(default_factory=list)


@dataclass
class Finding:
    """One abnormality (or a measured normal value worth structuring) stated in a region's paragraph."""

    id: int
    kind: str  # nodule, mass, pleural_effusion, cardiomegaly, emphysema, ... (measure layer's vocabulary)
    label: str | None = None  # the CT-RATE abnormality label it corresponds to, if any ("Lung nodule")
    location: str = ""  # in patient terms: "right upper lobe", "left hemithorax"
    side: str | None = None  # left | right | bilateral | midline
    size: dict = field(default_factory=dict)  # {"max_diameter_mm": 18.0, "volume_ml": 3.2}
    values: dict = field(default_factory=dict)  # other measured values, units in the keys
    confidence: float = 1.0
    evidence: Evidence = field(default_factory=Evidence)
    # How the finding was derived where that limits it ("lobe assigned by geometric zones: no fissure found").
    provenance: list[str] = field(default_factory=list)


@dataclass
class Sentence:
    text: str
    evidence: Evidence = field(default_factory=Evidence)
    findings: list[int] = field(default_factory=list)  # ids of the findings it states
    kind: str = ""  # one of SENTENCE_KINDS; "" when the writer did not say (free text of a model)


@dataclass
class Contradiction:
    """A statement of the report that the measurements contradict (one checker for every reporter)."""

    region: str  # the region key of the paragraph holding the statement
    sentence: int | None  # index into that region's sentences; None when it concerns the paragraph as a whole
    text: str  # the statement as written (before any replacement)
    claim: str  # what the statement asserts, structured: "<kind> present|absent [side] [size]"
    measured: str  # what the measurements say instead
    action: str = FLAGGED  # one of CONTRADICTION_ACTIONS
    evidence: Evidence = field(default_factory=Evidence)


@dataclass
class RegionReport:
    key: str  # the schema's region key ("lung", "trachea and bronchie")
    name: str  # display name ("Lung")
    status: str = ASSESSED
    sentences: list[Sentence] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    measurements: dict = field(default_factory=dict)  # headline numbers for display, units in the keys
    evidence: Evidence = field(default_factory=Evidence)  # what the paragraph as a whole rests on

    @property
    def paragraph(self) -> str:
        return " ".join(s.text.strip() for s in self.sentences if s.text.strip())

    @property
    def abnormal(self) -> bool:
        return bool(self.findings)


@dataclass
class Provenance:
    segmenter: str = ""
    reporter: str = ""
    schema: str = ""
    versions: dict = field(default_factory=dict)  # package -> version
    settings: dict = field(default_factory=dict)  # options that shaped the result
    timings_s: dict = field(default_factory=dict)  # step -> seconds
    input: dict = field(default_factory=dict)  # shape, spacing, orientation, source kind; never identifiers
    created: str = ""  # ISO 8601 UTC
    # What the scan and the chain allow the report to say, shown in its header: "chest_ct", "notes", "coverage"
    # (the scanned range, thin slab), "limitations" (sentences about the scan), "segmentation" (engine, reason),
    # "lung_coverage" (per side: apex/base in view, cut in plane), "quality_checks", "lobes", "segmenter_limits".
    scope: dict = field(default_factory=dict)


@dataclass
class Report:
    regions: list[RegionReport] = field(default_factory=list)
    provenance: Provenance = field(default_factory=Provenance)
    impression: list[str] = field(default_factory=list)  # the abnormal findings in one list, most important first
    contradictions: list[Contradiction] = field(default_factory=list)

    # --- access -------------------------------------------------------------------------------------------
    def region(self, key: str) -> RegionReport:
        for r in self.regions:
            if r.key == key:
                return r
        raise KeyError(f"the report has no region {key!r}; regions: {', '.join(r.key for r in self.regions)}")

    @property
    def paragraphs(self) -> dict[str, str]:
        return {r.key: r.paragraph for r in self.regions}

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.regions for f in r.findings]

    def text(self) -> str:
        """The whole report as plain text: one 'Name: paragraph' line per region."""
        return "\n".join(f"{r.name}: {r.paragraph}" for r in self.regions)

    # --- JSON -----------------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        data = asdict(self)
        for region, obj in zip(data["regions"], self.regions, strict=True):
            region["paragraph"] = obj.paragraph  # for readers of the file; rebuilt from sentences on load
        return {"format": REPORT_FORMAT, "version": REPORT_VERSION, **data}

    @classmethod
    def from_json(cls, data: dict) -> Report:
        if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
            raise InputError(f"not a MedRegionCT report (expected \"format\": \"{REPORT_FORMAT}\"); give a "
                             "report.json written by `medregionct report`.")
        version = data.get("version")
        if version not in READABLE_VERSIONS:
            raise InputError(f"report format version {version!r} is not supported (this MedRegionCT reads version "
                             f"{REPORT_VERSION}); upgrade MedRegionCTLib or regenerate the report.")
        try:
            regions = [_region(r) for r in data.get("regions", [])]
            provenance = _build(Provenance, data.get("provenance", {}))
            impression = [str(s) for s in data.get("impression", [])]
            contradictions = [_contradiction(c) for c in data.get("contradictions", [])]
        except (TypeError, KeyError, ValueError) as exc:
            raise InputError(f"report.json is malformed ({exc}); regenerate it with `medregionct report`.") from exc
        return cls(regions=regions, provenance=provenance, impression=impression, contradictions=contradictions)

    def save(self, path) -> Path:
        return write_json(path, self.to_json())

    @classmethod
    def load(cls, path) -> Report:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise InputError(f"{path}: no such report file; check the path.") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not valid JSON ({exc}); regenerate the report.") from exc
        return cls.from_json(data)


def _build(cls, data: dict):
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} must be an object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}")
    return cls(**data)


def _evidence(data) -> Evidence:
    return _build(Evidence, data or {})


def _finding(data: dict) -> Finding:
    data = dict(data)
    data["evidence"] = _evidence(data.get("evidence"))
    return _build(Finding, data)


def _sentence(data: dict) -> Sentence:
    data = dict(data)
    data["evidence"] = _evidence(data.get("evidence"))
    return _build(Sentence, data)


def _contradiction(data: dict) -> Contradiction:
    data = dict(data)
    data["evidence"] = _evidence(data.get("evidence"))
    if data.get("action", FLAGGED) not in CONTRADICTION_ACTIONS:
        raise ValueError(f"contradiction action {data['action']!r} is not one of {CONTRADICTION_ACTIONS}")
    return _build(Contradiction, data)


def _sentence_kind_checked(sentence: Sentence) -> Sentence:
    if sentence.kind not in SENTENCE_KINDS:
        raise ValueError(f"sentence kind {sentence.kind!r} is not one of {SENTENCE_KINDS}")
    return sentence


def _region(data: dict) -> RegionReport:
    data = dict(data)
    paragraph = data.pop("paragraph", None)
    data["sentences"] = [_sentence_kind_checked(_sentence(s)) for s in data.get("sentences", [])]
    data["findings"] = [_finding(f) for f in data.get("findings", [])]
    data["evidence"] = _evidence(data.get("evidence"))
    if data.get("status", ASSESSED) not in STATUSES:
        raise ValueError(f"region status {data['status']!r} is not one of {STATUSES}")
    region = _build(RegionReport, data)
    if paragraph is not None and paragraph != region.paragraph:
        raise ValueError(f"region {region.key!r}: 'paragraph' differs from its sentences")
    return region
