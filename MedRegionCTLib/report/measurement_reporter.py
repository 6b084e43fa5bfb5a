"""The measurement reporter: the default, fully offline report engine.

It writes each region's paragraph from the measurements alone (structures, regions, derived clinical measures
with their thresholds, lesion candidates with their confidence), with the sentence templates of
``data/report_phrases.json``. It states only what a measurement supports: a normal statement needs the
measurement that shows it normal ("No pleural effusion is seen" needs the pleural-fluid search to have run),
an abnormal one a measurement beyond its threshold or a lesion candidate at or above the reporting
confidence. Numbers carry their units; regions whose mask is empty are reported as outside the field of view
(the scan does not reach them) or not assessed.

Every sentence carries its evidence (masks and measurement paths into ``measurements.json``; lesions as
``lesions/<list index>``) and the ids of the findings it states. After writing, the text is checked with
the report labeler: it must name exactly the CT-RATE labels of its findings and agree with the
measurements (``check_consistency``); ``strict=True`` turns a disagreement into an error, otherwise a
warning.

Topics land in regions through the schema (``RegionSchema.region_of(anchor class)``), so the same table
writes RadGenome-10 and MedRegion-6 reports: in RadGenome-10 the aorta and pulmonary artery are described
under 'mediastinum', pleural effusion under 'pleura', pericardial effusion under 'heart'; in MedRegion-6
they go to 'heart and great vessels' and 'lung parenchyma'.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..anatomy import patient_axes
from ..data import load_json
from ..errors import InputError, MedRegionCTError
from ..measure.assessability import assessable
from ..measure.clinical import thresholds as clinical_thresholds
from ..measure.lesions import detection_params
from ..measure.position import LOBE_WORDS
from ..progress import Steps, check_cancel
from .document import (
    ASSESSED,
    FINDING_SENTENCE,
    LIMITATION_SENTENCE,
    MEASUREMENT_SENTENCE,
    NEGATIVE_SENTENCE,
    NOT_ASSESSED,
    OUTSIDE_FIELD_OF_VIEW,
    Evidence,
    Finding,
    RegionReport,
    Sentence,
)
from .labeler import check_consistency, label_report
from .reporter import ReportCase

LUNG_CLASSES = tuple(LOBE_WORDS) + ("lung", "lung_left", "lung_right")
NODULE_KINDS = ("nodule", "mass")
# CT-RATE abnormality label of each finding kind (None: no CT-RATE label exists for it)
CTRATE_LABEL = {
    "nodule": "Lung nodule", "mass": "Lung nodule", "pleural_effusion": "Pleural effusion",
    "pericardial_effusion": "Pericardial effusion", "cardiomegaly": "Cardiomegaly", "emphysema": "Emphysema",
    "consolidation": "Consolidation",
}


class ReportConsistencyError(MedRegionCTError):
    """The reporter's own text disagrees with its findings or with the measurements (a phrase-table bug)."""


def phrases() -> dict:
    return load_json("report_phrases.json")


def _num(value, digits: int = 1) -> str:
    """A number for the text: fixed ``digits`` decimals, no '-0.0'."""
    text = f"{float(value):.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _f(value) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


@dataclass
class _Item:
    """One sentence of a region's paragraph, with the findings it states."""

    sentence: Sentence
    findings: list[Finding] = field(default_factory=list)
    abnormal: bool = False


class MeasurementReporter:
    """Offline reporter: region paragraphs from measurements (see the module docstring).

    ``min_confidence``: lesion candidates below it are not stated (default: the measure layer's reporting
    threshold, ``lesion_detection.min_report_confidence``). ``strict``: raise
    :class:`ReportConsistencyError` when the labeler disagrees with the written findings or the measurements.
    """

    name = "measurement"

    def __init__(self, min_confidence: float | None = None, strict: bool = False):
        if min_confidence is not None and not 0.0 <= float(min_confidence) <= 1.0:
            raise InputError(f"min_confidence must be between 0 and 1, got {min_confidence!r}; "
                             "leave it out to use the measure layer's reporting threshold.")
        self.min_confidence = float(min_confidence) if min_confidence is not None else float(
            detection_params()["min_report_confidence"])
        self.strict = bool(strict)

    def settings(self) -> dict:
        return {"min_confidence": self.min_confidence, "strict": self.strict,
                "phrases_version": phrases().get("version")}

    def write(self, case: ReportCase, progress=None, cancel=None) -> list[RegionReport]:
        steps = Steps(progress, total=3, cancel=cancel, what="the measurement report")
        writer = _Writer(case, self.min_confidence)
        statuses = writer.statuses()
        steps.advance("region status")
        buckets = writer.topics(statuses, cancel)
        steps.advance("findings and sentences")
        out = writer.assemble(statuses, buckets)
        problems = self_check(out, consistency_measures(case.measurements, self.min_confidence))
        if problems:
            message = "measurement reporter text disagrees with its findings: " + "; ".join(problems)
            if self.strict:
                raise ReportConsistencyError(message + " (fix data/report_phrases.json).")
            warnings.warn(message, stacklevel=2)
        steps.advance("report written")
        return out


# --- self check ------------------------------------------------------------------------------------------------
def consistency_measures(measurements, min_confidence: float | None = None) -> dict:
    """The measurements ``labeler.check_consistency`` compares report text with, from ``Measurements``."""
    c = measurements.clinical or {}
    if min_confidence is None:
        min_confidence = float(detection_params()["min_report_confidence"])
    searched = _lesions_searched(measurements)
    out: dict = {"cardiothoracic_ratio": _f(c.get("cardiothoracic_ratio", {}).get("value")),
                 "laa_950_percent": _f(c.get("laa_950_percent", {}).get("value"))}
    lobes = [v for v in ((c.get("laa_950_percent") or {}).get("lobes") or {}).values() if _f(v) is not None]
    if lobes:  # emphysema is judged per lobe when lobes were measured (the reporter's own rule)
        out["laa_950_percent_lobe"] = max(float(v) for v in lobes)
        out["laa_950_percent"] = None
    if "pericardial_fluid_volume_ml" in c:
        out["pericardial_fluid_volume_ml"] = _f(c["pericardial_fluid_volume_ml"].get("value"))
    if "pleural_effusion_volume_ml" in c or searched:
        out["pleural_effusion_volume_ml"] = sum(p["volume"] for p in _effusion_sides(measurements,
                                                                                     min_confidence).values())
    if searched:
        out["nodule_count"] = sum(1 for les in measurements.lesions
                                  if les["kind"] in NODULE_KINDS and les.get("confidence", 1.0) >= min_confidence)
    return {k: v for k, v in out.items() if v is not None}


def self_check(regions: list[RegionReport], measures: dict) -> list[str]:
    """Problems of a written report: per region, CT-RATE labels the text affirms that are not among its
    findings' labels (or the reverse), and statements ``check_consistency`` flags against ``measures``."""
    problems = []
    for r in regions:
        # a limitation ("... cannot be excluded: ...") states no finding; the labeler would read it as uncertain
        text = " ".join(s.text.strip() for s in r.sentences if s.kind != LIMITATION_SENTENCE and s.text.strip())
        if not text:
            continue
        labels = label_report(text)
        said = {name for name, e in labels.items() if e["present"]}
        found = {f.label for f in r.findings if f.label}
        if said != found:
            problems.append(f"region {r.key!r}: text labels {sorted(said)} but findings {sorted(found)}")
        for flag in check_consistency(text, measures):
            problems.append(f"region {r.key!r}: {flag['message']}")
    return problems


def _lesions_searched(measurements) -> bool:
    """Whether the measure layer ran its lesion search (``measure(..., lesions=True)``)."""
    return bool((measurements.meta or {}).get("lesion_search", True))


# --- the writer -------------------------------------------------------------------------------------------------
class _Writer:
    def __init__(self, case: ReportCase, min_confidence: float):
        if case.measurements is None:
            raise InputError("the measurement reporter needs the case's measurements; run measure() first.")
        self.case = case
        self.m = case.measurements
        self.min_conf = min_confidence
        self.table = phrases()
        self.topic_phrases = self.table["topics"]
        self.words = self.table["words"]
        self.next_id = 1
        self.schema_keys = [r.key for r in case.regions]
        self.masks = {r.key: r for r in case.regions}
        self.thresholds = clinical_thresholds()["measures"]

    # -- status ------------------------------------------------------------------------------------------------
    def _z_ranges(self):
        """(scan z range, lung z range or None) in RAS mm."""
        vol = self.case.volume
        affine = np.asarray(vol.affine, dtype=np.float64)
        shape = np.asarray(vol.shape) - 1
        corners = np.array([[a, b, c] for a in (0, shape[0]) for b in (0, shape[1]) for c in (0, shape[2])])
        z = corners @ affine[2, :3] + affine[2, 3]
        scan = (float(z.min()), float(z.max()))
        has_lungs = any(n in self.m.structures for n in LUNG_CLASSES)
        lung = (self.m.meta or {}).get("lung_z_range_mm") if has_lungs else None
        return scan, (tuple(float(v) for v in lung) if lung else None)

    def statuses(self) -> dict[str, str]:
        scan, lung = self._z_ranges()
        out = {}
        for r in self.case.regions:
            if r.mask.any():
                out[r.key] = ASSESSED
                continue
            fov = self.table["regions"].get(r.key, {}).get("fov", {})
            level = fov.get("level")
            reach = float(fov.get("reach_mm", 0.0))
            in_range = None  # unknown
            if lung is not None and level:
                if level == "above_lungs":
                    in_range = scan[1] >= lung[1] + reach
                elif level == "below_lungs":
                    in_range = scan[0] <= lung[0] - reach
                else:
                    in_range = scan[0] <= lung[1] and scan[1] >= lung[0]
            out[r.key] = OUTSIDE_FIELD_OF_VIEW if in_range is False else NOT_ASSESSED
        return out

    def status_item(self, key: str, status: str) -> _Item:
        spec = self.table["regions"].get(key)
        name = self.masks[key].region.name
        subject = spec["subject"] if spec else f"the {name.lower()}"
        plural = bool(spec and spec.get("plural"))
        be_now, be_past = ("are", "were") if plural else ("is", "was")
        status_phrases = self.table["status"]
        if status == OUTSIDE_FIELD_OF_VIEW:
            text = status_phrases["outside_field_of_view"].format(subject=subject, be=be_now)
        else:
            text = status_phrases["not_segmented"].format(subject=subject, be=be_past)
        return _Item(Sentence(_cap(text), Evidence(masks=[f"region:{key}"])))

    # -- topics ------------------------------------------------------------------------------------------------
    def region_for(self, anchor: str) -> str | None:
        keys = [k for k in self.case.schema.region_of(anchor) if k in self.schema_keys]
        return keys[0] if keys else None

    def topics(self, statuses: dict[str, str], cancel) -> dict[str, list[_Item]]:
        buckets: dict[str, list[_Item]] = {k: [] for k in self.schema_keys}
        for topic, fn in _TOPICS:
            check_cancel(cancel, "the measurement report")
            key = self.region_for(self.topic_phrases[topic]["anchor"])
            if key is None or statuses.get(key) != ASSESSED:
                continue
            for item in fn(self, self.topic_phrases[topic], key):
                buckets[key].append(item)
        return buckets

    def finding(self, **kw) -> Finding:
        f = Finding(id=self.next_id, label=CTRATE_LABEL.get(kw["kind"]), **kw)
        self.next_id += 1
        return f

    def item(self, text: str, masks, paths, findings=(), kind: str = "") -> _Item:
        findings = list(findings)
        kind = kind or (FINDING_SENTENCE if findings else MEASUREMENT_SENTENCE)
        return _Item(Sentence(_cap(text), Evidence(masks=list(masks), measurements=list(paths)),
                              [f.id for f in findings], kind), findings, bool(findings))

    # -- what the data can support -------------------------------------------------------------------------
    def assessable(self, side: str) -> tuple[bool, str]:
        """Whether a negative statement about ``side``'s lung or pleural space is supported (whole side in view,
        quality checks passed; :func:`measure.assessability.assessable`), and if not, why."""
        return assessable(self.m.meta or {}, side)

    def absence(self, ph: dict, key: str, paths: list, negative, limitation_side, limitation_both):
        """The absence sentence(s) of a lung topic: one negative for both lungs when both are assessable, else a
        negative for the side that is and a limitation (what could not be assessed, and why) for the other."""
        ok = {s: self.assessable(s) for s in ("right", "left")}
        if all(v[0] for v in ok.values()):
            yield self.item(negative(None), [f"region:{key}"], paths, kind=NEGATIVE_SENTENCE)
            return
        if not any(v[0] for v in ok.values()) and ok["right"][1] == ok["left"][1]:
            yield self.item(limitation_both(ok["right"][1]), [f"region:{key}"], paths, kind=LIMITATION_SENTENCE)
            return
        for side in ("right", "left"):
            if ok[side][0]:
                yield self.item(negative(side), [f"region:{key}"], paths, kind=NEGATIVE_SENTENCE)
            else:
                yield self.item(limitation_side(side, ok[side][1]), [f"region:{key}"], paths,
                                kind=LIMITATION_SENTENCE)

    def fluid_floor_ml(self) -> str:
        """What an absence of pleural fluid is stated down to: the reporting threshold, raised to the smallest
        fluid the segmenter reports and to the size its search was checked to find, where it says."""
        meta = (self.case.labelmap.meta or {}) if self.case.labelmap is not None else {}
        floors = [self.thresholds["pleural_effusion_volume_ml"]["threshold"]]
        floors += [meta[k] for k in ("pleural_fluid_min_ml", "pleural_fluid_absence_floor_ml") if k in meta]
        return _num(max(floors), 0)

    def lesion_provenance(self, les: dict) -> list[str]:
        """How a lung lesion was found and placed, where that limits it (the lobe of a zone model)."""
        words = self.table["provenance_phrases"]
        out = []
        method = ((self.case.labelmap.meta or {}) if self.case.labelmap is not None else {}).get("lobes")
        if les.get("lobe") and method == "zones":
            out.append(words["lobe_by_zones"])
        elif les.get("lobe") and method == "fissures+zones":
            out.append(words["lobe_partly_zones"])
        if les.get("found_by"):
            out.append(words["found_by"].format(search=les["found_by"]))
        if les.get("told_from_consolidation"):
            out.append(words["told_apart"].format(how=les["told_from_consolidation"]))
        return out

    def clinical(self, name: str) -> dict:
        return (self.m.clinical or {}).get(name) or {}

    # -- assemble ----------------------------------------------------------------------------------------------
    def assemble(self, statuses: dict[str, str], buckets: dict[str, list[_Item]]) -> list[RegionReport]:
        out = []
        for r in self.case.regions:
            key, status = r.key, statuses[r.key]
            items = buckets.get(key, [])
            if status != ASSESSED:
                items = [self.status_item(key, status)]
            elif not items:
                items = [self.fallback(key)]
            # abnormal statements first (most important first, as radiologists order them), then the rest
            items = [i for i in items if i.abnormal] + [i for i in items if not i.abnormal]
            findings = [f for i in items for f in i.findings]
            region_m = (self.m.regions or {}).get(key)
            evidence = Evidence(masks=[f"region:{key}"], measurements=[f"regions/{key}"] if region_m else [])
            headline = self.headline(key, region_m, findings, items)
            out.append(RegionReport(key=key, name=r.region.name, status=status, sentences=[i.sentence for i in items],
                                    findings=findings, measurements=headline, evidence=evidence))
        return out

    def fallback(self, key: str) -> _Item:
        spec = self.table["regions"].get(key)
        subject = spec["subject"] if spec else f"the {self.masks[key].region.name.lower()}"
        plural = bool(spec and spec.get("plural"))
        a = (self.m.regions or {}).get(key, {})
        text = self.table["status"]["no_description"].format(
            subject=subject, be="are" if plural else "is", it="them" if plural else "it",
            volume_ml=_num(a.get("volume_ml", float(self.masks[key].mask.sum()) * self.case.volume.voxel_volume_ml), 0),
            hu_mean=_num(a.get("hu_mean", 0.0), 0))
        return self.item(text, [f"region:{key}"], [f"regions/{key}/volume_ml", f"regions/{key}/hu_mean"] if a else [])

    def headline(self, key: str, region_m: dict | None, findings: list[Finding], items: list[_Item]) -> dict:
        """Headline numbers for display (units in the keys): the region's volume and mean HU, every number
        a sentence rests on (from its evidence paths) and the size of every finding."""
        out: dict = {}
        if region_m:
            out["volume_ml"] = round(float(region_m["volume_ml"]), 1)
            out["hu_mean"] = round(float(region_m.get("hu_mean", 0.0)), 1)
        for item in items:
            for path in item.sentence.evidence.measurements:
                parts = path.split("/")
                if parts[0] == "clinical" and len(parts) == 2:
                    m = self.clinical(parts[1])
                    if _f(m.get("value")) is not None:
                        out[parts[1]] = round(float(m["value"]), 3)
                    elif parts[1] == "lung_volume_ml":
                        for side in ("right", "left"):
                            if _f(m.get(side)) is not None:
                                out[f"lung_volume_{side}_ml"] = round(float(m[side]), 1)
                elif parts[0] == "structures" and len(parts) == 3:
                    value = _f((self.m.structures.get(parts[1]) or {}).get(parts[2]))
                    if value is not None:
                        out[f"{parts[1]}_{parts[2]}"] = round(value, 3)
        for f in findings:
            if f.kind in NODULE_KINDS + ("consolidation", "pleural_effusion"):
                for k, v in f.size.items():
                    out[f"{f.kind}_{f.id}_{k}"] = v
        return out


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


# --- topic writers: each yields _Items for one region -----------------------------------------------------------
def _nodules(w: _Writer, ph: dict, key: str):
    if not _lesions_searched(w.m):
        return
    lesions = [(i, les) for i, les in enumerate(w.m.lesions)
               if les["kind"] in NODULE_KINDS and les.get("confidence", 1.0) >= w.min_conf]
    lesions.sort(key=lambda t: -float(t[1].get("max_diameter_mm", 0.0)))
    for index, les in lesions:
        side = les.get("side") if les.get("side") in ("left", "right") else None
        location = _lung_location(w, les)
        subtype = les.get("subtype") or ""
        size = {"max_diameter_mm": round(float(les["max_diameter_mm"]), 1),
                "volume_ml": round(float(les["volume_ml"]), 3)}
        for k in ("axial_long_axis_mm", "axial_short_axis_mm"):
            if _f(les.get(k)) is not None:
                size[k] = round(float(les[k]), 1)
        values = {k: les[k] for k in ("subtype", "size_category") if les.get(k)}
        for k in ("hu_mean", "solid_fraction", "distance_to_hilar_vessels_mm"):
            if _f(les.get(k)) is not None:
                values[k] = round(float(les[k]), 3)
        for k in ("touches", "told_from_consolidation", "found_by"):
            if les.get(k):
                values[k] = les[k]
        evidence = Evidence(masks=[f"lesion:{les['id']}"], measurements=[f"lesions/{index}"])
        f = w.finding(kind=les["kind"], location=location, side=side, size=size, values=values,
                      confidence=float(les.get("confidence", 1.0)), evidence=evidence,
                      provenance=w.lesion_provenance(les))
        touches = [w.words["touches"][t] for t in les.get("touches") or [] if t in w.words["touches"]]
        text = ph[les["kind"]].format(
            subtype=ph["subtypes"].get(subtype, ""), diameter_mm=_num(les["max_diameter_mm"]),
            volume_ml=_num(les["volume_ml"], 2 if les["volume_ml"] < 1 else 1), location=location,
            long_mm=_num(les.get("axial_long_axis_mm") or les["max_diameter_mm"]),
            short_mm=_num(les.get("axial_short_axis_mm") or les["max_diameter_mm"]),
            touches=ph["touches"].format(touches=_join(touches)) if touches else "")
        yield w.item(text, evidence.masks + [f"region:{key}"], evidence.measurements, [f])
    spacing = np.asarray(w.case.volume.spacing, dtype=float)
    params = detection_params()
    # the smallest nodule the search can find on this grid (measure.lesions.find_nodules)
    min_mm = 2.0 * max(params["min_nodule_diameter_mm"] / 2.0, params["min_radius_voxels"] * float(spacing.max()))
    min_text = f"{min_mm:g}" if min_mm == int(min_mm) else _num(min_mm)
    yield from w.absence(ph, key, ["lesions"], lambda side: ph[("no_other" if lesions else "none") + (
        "_side" if side else "")].format(min_mm=min_text, side=side),
        lambda side, reason: ph["cannot_exclude_side"].format(side=side, reason=reason),
        lambda reason: ph["cannot_exclude_both"].format(reason=reason))


def _emphysema(w: _Writer, ph: dict, key: str):
    m = w.clinical("laa_950_percent")
    value = _f(m.get("value"))
    if value is None:
        return
    threshold = float(m.get("threshold", w.thresholds["laa_950_percent"]["threshold"]))
    path = "clinical/laa_950_percent"
    lung_masks = [f"structure:{n}" for n in LOBE_WORDS if n in w.m.structures] or [f"region:{key}"]
    lobes = {n: float(v) for n, v in (m.get("lobes") or {}).items() if n in LOBE_WORDS and _f(v) is not None}
    if lobes:  # per lobe: emphysema confined to some lobes can stay under the whole-lung threshold
        affected = [(n, lobes[n]) for n in LOBE_WORDS if n in lobes and _lobe_abnormal(w, m, lobes[n])]
        abnormal = bool(affected)
    else:
        affected, abnormal = [], bool(m.get("abnormal"))
    if not abnormal:
        blocked = [f"{s} lung: {why}" for s, (ok, why) in ((s, w.assessable(s)) for s in ("right", "left")) if not ok]
        if blocked:  # the LAA% of the lung in view is a measurement, not an absence
            reason = "; ".join(blocked)
            text = ph["measured_only"].format(percent=_num(value), max_percent=_num(max(lobes.values())),
                                              reason=reason) if lobes else \
                ph["measured_only_whole"].format(percent=_num(value), reason=reason)
            yield w.item(text, lung_masks, [path], kind=LIMITATION_SENTENCE)
        elif lobes:
            yield w.item(ph["absent_lobes"].format(percent=_num(value), max_percent=_num(max(lobes.values()))),
                         lung_masks, [path], kind=NEGATIVE_SENTENCE)
        else:
            yield w.item(ph["absent"].format(percent=_num(value)), lung_masks, [path], kind=NEGATIVE_SENTENCE)
        return
    right, left = _f(m.get("right")), _f(m.get("left"))
    values = {"laa_950_percent": round(value, 2), "threshold_percent": threshold}
    if right is not None:
        values["laa_950_percent_right"] = round(right, 2)
    if left is not None:
        values["laa_950_percent_left"] = round(left, 2)
    if affected:
        sides = {"right" if n.endswith("right") else "left" for n, _ in affected}
        side = sides.pop() if len(sides) == 1 else "bilateral"
        location = _join([f"the {LOBE_WORDS[n]}" for n, _ in affected])
        lobe_threshold = float(_lobe_criterion(w, m)["threshold"])
        detail = _join([ph["lobe_percent"].format(lobe=LOBE_WORDS[n], percent=_num(v)) for n, v in affected])
        text = ph["present_lobes"].format(location=location, detail=detail, threshold=f"{lobe_threshold:g}",
                                          percent=_num(value))
        values["lobe_threshold_percent"] = lobe_threshold
        for n, v in affected:
            values[f"laa_950_percent_{n}"] = round(v, 2)
        where = location.replace("the ", "")
    else:
        sides = [s for s, v in (("right", right), ("left", left)) if v is not None and v > threshold]
        side = "bilateral" if len(sides) != 1 else sides[0]
        detail = ph["side_detail"].format(right=_num(right or 0.0), left=_num(left or 0.0))
        location = w.words["emphysema_location"][side]
        text = ph["present"].format(location=location, percent=_num(value), detail=detail)
        where = location.removeprefix("the ")
    evidence = Evidence(masks=lung_masks, measurements=[path])
    f = w.finding(kind="emphysema", location=where, side=side, values=values, evidence=evidence)
    yield w.item(text, lung_masks, [path], [f])


def _lobe_criterion(w: _Writer, m: dict) -> dict:
    """The lobar LAA-950 threshold spec: the measurement's own, else the thresholds table's."""
    return m.get("lobe_criterion") or w.thresholds["laa_950_percent_lobe"]


def _lobe_abnormal(w: _Writer, m: dict, value: float) -> bool:
    spec = _lobe_criterion(w, m)
    t = float(spec["threshold"])
    return value >= t if spec.get("inclusive") else value > t


def _consolidation(w: _Writer, ph: dict, key: str):
    if not _lesions_searched(w.m):
        return
    lesions = [(i, les) for i, les in enumerate(w.m.lesions)
               if les["kind"] == "consolidation" and les.get("confidence", 1.0) >= w.min_conf]
    lesions.sort(key=lambda t: -float(t[1].get("volume_ml", 0.0)))
    for index, les in lesions:
        location = _lung_location(w, les)
        side = les.get("side") if les.get("side") in ("left", "right") else None
        size = {"volume_ml": round(float(les["volume_ml"]), 1),
                "max_diameter_mm": round(float(les["max_diameter_mm"]), 1)}
        values = {}
        for k in ("hu_mean", "air_bronchograms", "air_bronchogram_length_mm", "distance_to_hilar_vessels_mm"):
            if _f(les.get(k)) is not None:
                values[k] = round(float(les[k]), 3)
        evidence = Evidence(masks=[f"lesion:{les['id']}"], measurements=[f"lesions/{index}"])
        f = w.finding(kind="consolidation", location=location, side=side, size=size, values=values,
                      confidence=float(les.get("confidence", 1.0)), evidence=evidence,
                      provenance=w.lesion_provenance(les))
        text = ph["present"].format(volume_ml=_num(les["volume_ml"], 0), location=location,
                                    signs=ph["air_bronchograms"] if les.get("air_bronchograms") else "")
        yield w.item(text, evidence.masks + [f"region:{key}"], evidence.measurements, [f])


def _lung_location(w: _Writer, les: dict) -> str:
    """Where a lung lesion lies, in words: its lobe, else its side and zone, else both lungs."""
    lobe = les.get("lobe")
    side = les.get("side") if les.get("side") in ("left", "right") else None
    if lobe in LOBE_WORDS:
        return LOBE_WORDS[lobe]
    if side:
        zone = les.get("zone")
        return w.words["zone_location"].format(zone=zone, side=side) if zone else w.words["lung_side"][side]
    return w.words["lung_side"]["bilateral"]


def _lung_volumes(w: _Writer, ph: dict, key: str):
    lv = w.clinical("lung_volume_ml")
    right, left = _f(lv.get("right")), _f(lv.get("left"))
    if right and left:
        yield w.item(ph["both"].format(right_ml=_num(right, 0), left_ml=_num(left, 0)),
                     [f"structure:{n}" for n in LOBE_WORDS if n in w.m.structures] or [f"region:{key}"],
                     ["clinical/lung_volume_ml"])


def _pleural_effusion(w: _Writer, ph: dict, key: str):
    seg = w.clinical("pleural_effusion_volume_ml")
    searched = _lesions_searched(w.m)
    if not seg and not searched:
        return
    threshold = float(w.thresholds["pleural_effusion_volume_ml"]["threshold"])
    per_side = _effusion_sides(w.m, w.min_conf)
    present = [s for s in ("right", "left") if per_side[s]["volume"] >= threshold]
    total = sum(p["volume"] for p in per_side.values())
    if not present and total >= threshold:
        present = ["bilateral"]
        per_side["bilateral"] = {"volume": total, "lesions": per_side["right"]["lesions"] + per_side["left"]["lesions"],
                                 "segmented_ml": _f(seg.get("value")) if seg else None,
                                 "lesion_ml": per_side["right"]["lesion_ml"] + per_side["left"]["lesion_ml"]}
    for side in present:
        p = per_side[side]
        masks = [f"lesion:{les['id']}" for _, les in p["lesions"]]
        paths = [f"lesions/{i}" for i, _ in p["lesions"]]
        if p["segmented_ml"] is not None:
            masks.insert(0, "structure:pleural_effusion")
            paths.insert(0, "clinical/pleural_effusion_volume_ml")
        values = {}
        if p["segmented_ml"] is not None:
            values["segmented_volume_ml"] = round(p["segmented_ml"], 1)
        if p["lesions"]:
            values["intensity_volume_ml"] = round(p["lesion_ml"], 1)
            values["fluid_hu"] = round(float(np.median([les.get("fluid_hu", 0.0) for _, les in p["lesions"]])), 1)
        confidence = max((float(les.get("confidence", 1.0)) for _, les in p["lesions"]), default=1.0) \
            if p["segmented_ml"] is None else 1.0
        location = "both pleural spaces" if side == "bilateral" else f"{side} pleural space"
        f = w.finding(kind="pleural_effusion", location=location, side=side,
                      size={"volume_ml": round(p["volume"], 1)}, values=values, confidence=confidence,
                      evidence=Evidence(masks=list(masks), measurements=list(paths)))
        template = ph["present_bilateral"] if side == "bilateral" else ph["present"]
        yield w.item(template.format(side=side, volume_ml=_num(p["volume"], 0)), masks + [f"region:{key}"], paths, [f])
    paths = (["clinical/pleural_effusion_volume_ml"] if seg else []) + (["lesions"] if searched else [])
    if "bilateral" in present:
        return
    unseen = [s for s in ("right", "left") if s not in present]
    ok = {s: w.assessable(s) for s in unseen}
    if len(unseen) == 2 and all(v[0] for v in ok.values()):
        yield w.item(ph["absent"].format(min_ml=w.fluid_floor_ml()), [f"region:{key}"], paths,
                     kind=NEGATIVE_SENTENCE)
        return
    for side in unseen:
        if ok[side][0]:
            yield w.item(ph["absent_side"].format(side=side, min_ml=w.fluid_floor_ml()), [f"region:{key}"], paths,
                         kind=NEGATIVE_SENTENCE)
        else:
            yield w.item(ph["cannot_exclude_side"].format(side=side, reason=ok[side][1]), [f"region:{key}"], paths,
                         kind=LIMITATION_SENTENCE)


def _effusion_sides(measurements, min_conf: float) -> dict[str, dict]:
    """Pleural fluid per side: the segmented pleural-effusion class (when the segmenter labels it) and the
    intensity search's collections; a side's volume is the larger of the two, so neither source is lost."""
    seg = (measurements.clinical or {}).get("pleural_effusion_volume_ml") or {}
    lesions = [(i, les) for i, les in enumerate(measurements.lesions)
               if les["kind"] == "pleural_effusion" and les.get("confidence", 1.0) >= min_conf] \
        if _lesions_searched(measurements) else []
    out = {}
    for side in ("right", "left"):
        own = [(i, les) for i, les in lesions if les.get("side") == side]
        lesion_ml = sum(float(les["volume_ml"]) for _, les in own)
        seg_ml = _f(seg.get(f"{side}_ml")) if seg else None
        out[side] = {"volume": max(seg_ml or 0.0, lesion_ml), "lesions": own, "segmented_ml": seg_ml,
                     "lesion_ml": lesion_ml}
    return out


def _cardiomegaly(w: _Writer, ph: dict, key: str):
    m = w.clinical("cardiothoracic_ratio")
    ratio = _f(m.get("value"))
    heart = [f"structure:{n}" for n in w.m.structures if n == "heart" or n.startswith(("heart_", "atrial_"))]
    masks = heart + [n for n in (f"structure:{x}" for x in LOBE_WORDS if x in w.m.structures)]
    path = ["clinical/cardiothoracic_ratio"]
    if ratio is None:
        if m.get("not_assessed") and heart:  # the field of view cuts the thorax or the heart
            yield w.item(ph["not_assessed"].format(reason=m["not_assessed"]), masks, path)
        return

    def at(key):  # the axial slice a width was taken on
        return ph["slice_at"].format(z_mm=_num(m[key], 0)) if _f(m.get(key)) is not None else ""

    fields = dict(ratio=_num(ratio, 2), heart_mm=_num(m.get("heart_width_mm", 0.0), 0),
                  thorax_mm=_num(m.get("thorax_width_mm", 0.0), 0), threshold=f"{float(m['threshold']):.2f}",
                  heart_at=at("heart_slice_z_mm"), thorax_at=at("thorax_slice_z_mm"))
    if m.get("abnormal"):
        f = w.finding(kind="cardiomegaly", location="heart", side=None,
                      size={k: round(float(m[k]), 1) for k in ("heart_width_mm", "thorax_width_mm") if _f(m.get(k))},
                      values={"cardiothoracic_ratio": round(ratio, 3), "threshold": float(m["threshold"])},
                      evidence=Evidence(masks=list(masks), measurements=list(path)),
                      provenance=[m["method"]] if m.get("method") else [])
        yield w.item(ph["present"].format(**fields), masks, path, [f])
    else:
        yield w.item(ph["absent"].format(**fields), masks, path)


def _pericardial_effusion(w: _Writer, ph: dict, key: str):
    m = w.clinical("pericardial_fluid_volume_ml")
    volume = _f(m.get("value"))
    if volume is None:
        return  # not segmented: nothing measures the pericardial fluid
    masks, path = ["structure:pericardial_effusion"], ["clinical/pericardial_fluid_volume_ml"]
    if m.get("abnormal"):
        f = w.finding(kind="pericardial_effusion", location="pericardial space", side=None,
                      size={"volume_ml": round(volume, 1)}, values={"threshold_ml": float(m["threshold"])},
                      evidence=Evidence(masks=list(masks), measurements=list(path)))
        yield w.item(ph["present"].format(volume_ml=_num(volume, 0)), masks, path, [f])
    else:
        yield w.item(ph["absent"].format(volume_ml=_num(volume, 0)), masks, path)


def _aorta(w: _Writer, ph: dict, key: str):
    normal, masks = [], ["structure:aorta"]
    normal_paths, dilated, unmeasured = [], False, []
    for name, segment in ph["segments"].items():
        m = w.clinical(name)
        value = _f(m.get("value"))
        if value is None:
            if m.get("not_assessed"):
                unmeasured.append((name, segment, m["not_assessed"]))
            continue
        path = [f"clinical/{name}"]
        if m.get("abnormal"):
            dilated = True
            f = w.finding(kind=f"dilated_{segment}_aorta", location=f"{segment} aorta", side=None,
                          size={"diameter_mm": round(value, 1)}, values={"threshold_mm": float(m["threshold"])},
                          evidence=Evidence(masks=list(masks), measurements=list(path)),
                          provenance=list(m.get("provenance", [])))
            yield w.item(ph["dilated"].format(segment=segment, diameter_mm=_num(value),
                                              threshold=f"{float(m['threshold']):g}"), masks, path, [f])
        else:
            normal.append((segment, _num(value)))
            normal_paths += path
    if normal and (dilated or unmeasured):
        # "the thoracic aorta is normal" would contradict the dilated segment or speak for one not measured
        for segment, value in normal:
            yield w.item(ph["normal_segment"].format(segment=segment, diameter_mm=value), masks, normal_paths)
    elif normal:
        detail = ", ".join(ph["detail"].format(segment=s_, diameter_mm=v) for s_, v in normal)
        yield w.item(ph["normal"].format(detail=detail), masks, normal_paths)
    if "aorta" in w.m.structures:  # a traced aorta whose calibre could not be taken: say why, per segment
        for name, segment, why in unmeasured:
            why = "; ".join(n.removesuffix(", not measured") for n in why.split("; "))
            yield w.item(ph["not_assessed"].format(segment=segment, why=why), masks, [f"clinical/{name}"])


def _pulmonary_artery(w: _Writer, ph: dict, key: str):
    m = w.clinical("main_pulmonary_artery_diameter_mm")
    value = _f(m.get("value"))
    if value is None:
        return
    r = w.clinical("pa_to_aorta_ratio")
    ratio = _f(r.get("value"))
    masks, path = ["structure:pulmonary_artery"], ["clinical/main_pulmonary_artery_diameter_mm"]
    ratio_text = ph["ratio_text"].format(ratio=_num(ratio, 2)) if ratio is not None and not r.get("abnormal") else ""
    if ratio_text:
        path = path + ["clinical/pa_to_aorta_ratio"]
    if m.get("abnormal"):
        f = w.finding(kind="dilated_pulmonary_artery", location="main pulmonary artery", side=None,
                      size={"diameter_mm": round(value, 1)}, values={"threshold_mm": float(m["threshold"])},
                      evidence=Evidence(masks=list(masks), measurements=list(path)),
                      provenance=list(m.get("provenance", [])))
        yield w.item(ph["dilated"].format(diameter_mm=_num(value), threshold=f"{float(m['threshold']):g}",
                                          ratio_text=ratio_text), masks, path, [f])
    else:
        yield w.item(ph["normal"].format(diameter_mm=_num(value), ratio_text=ratio_text), masks, path)
    if ratio is not None and r.get("abnormal"):
        rpath = ["clinical/pa_to_aorta_ratio"]
        rmasks = masks + ["structure:aorta"]
        f = w.finding(kind="increased_pa_to_aorta_ratio", location="main pulmonary artery", side=None,
                      values={"pa_to_aorta_ratio": round(ratio, 3), "threshold": float(r["threshold"])},
                      evidence=Evidence(masks=list(rmasks), measurements=list(rpath)))
        yield w.item(ph["ratio_high"].format(ratio=_num(ratio, 2), threshold=f"{float(r['threshold']):g}"),
                     rmasks, rpath, [f])


def _trachea(w: _Writer, ph: dict, key: str):
    m = w.clinical("trachea_diameter_mm")
    value = _f(m.get("value"))
    structure = w.m.structures.get("trachea")
    if structure is not None and value is None and m.get("not_assessed"):
        yield w.item(ph["not_assessed"].format(why=m["not_assessed"]), ["structure:trachea"],
                     ["clinical/trachea_diameter_mm"])
        return
    if value is None or structure is None:
        return
    side = m.get("side", structure.get("side"))  # the tube's own course when measured, else its box
    if (w.m.meta or {}).get("midline_from", "spine") != "spine":
        side = None  # no spine in view: the trachea's place has nothing to be judged against
    # a displaced trachea gets its own sentence (below); the calibre sentence then leaves the position out
    position = ph["positions"]["midline" if side == "midline" else "other"]
    masks, path = ["structure:trachea"], ["clinical/trachea_diameter_mm", "structures/trachea/side"]
    sagittal = _f(m.get("sagittal_diameter_mm"))
    if m.get("abnormal"):
        f = w.finding(kind="tracheomegaly", location="trachea", side=None,
                      size={"coronal_diameter_mm": round(value, 1)} | (
                          {"sagittal_diameter_mm": round(sagittal, 1)} if sagittal else {}),
                      values={"threshold_mm": float(m["threshold"])},
                      evidence=Evidence(masks=list(masks), measurements=list(path)))
        yield w.item(ph["widened"].format(position=position, coronal_mm=_num(value),
                                          threshold=f"{float(m['threshold']):g}"), masks, path, [f])
    else:
        yield w.item(ph["normal"].format(position=position, coronal_mm=_num(value),
                                         sagittal_mm=_num(sagittal if sagittal is not None else value)), masks, path)
    if side in ("left", "right"):
        where = ["clinical/trachea_diameter_mm"] if "side" in m else ["structures/trachea/side"]
        values = {"centroid_x_mm": round(float(structure["centroid_ras"][0]), 1),
                  "midline_x_mm": round(float((w.m.meta or {}).get("midline_x_mm", 0.0)), 1)}
        if "offset_mm" in m:
            values["offset_mm"] = round(float(m["offset_mm"]), 1)
        f = w.finding(kind="tracheal_deviation", location="trachea", side=side, values=values,
                      evidence=Evidence(masks=list(masks), measurements=list(where)))
        yield w.item(ph["deviated"].format(side=side), masks, where, [f])


def _structure_fields(a: dict) -> dict:
    return {"volume_ml": _num(a["volume_ml"], 1 if a["volume_ml"] < 100 else 0),
            "hu_mean": _num(a.get("hu_mean", 0.0), 0),
            "long_mm": _num(a.get("axial_long_axis_mm", 0.0), 0),
            "short_mm": _num(a.get("axial_short_axis_mm", 0.0), 0)}


def _esophagus(w: _Writer, ph: dict, key: str):
    a = w.m.structures.get("esophagus")
    if a:
        yield w.item(ph["described"].format(**_structure_fields(a)), ["structure:esophagus"],
                     ["structures/esophagus/axial_long_axis_mm", "structures/esophagus/axial_short_axis_mm",
                      "structures/esophagus/volume_ml"])


def _abdomen(w: _Writer, ph: dict, key: str):
    names = w.words["organs"]
    organs = [n for n in names if n in w.m.structures and key in w.case.schema.region_of(n)]
    if not organs:
        return
    listed = [ph["organ"].format(name=names[n], volume_ml=_num(w.m.structures[n]["volume_ml"], 0)) for n in organs]
    masks = [f"structure:{n}" for n in organs]
    yield w.item(ph["organs"].format(organs=_join(listed)), masks, [f"structures/{n}/volume_ml" for n in organs])
    si = patient_axes(w.case.volume.affine).si[0]
    last = w.case.volume.shape[si] - 1
    cut = [n for n in organs if w.m.structures[n]["bbox_index"][si][0] <= 0
           or w.m.structures[n]["bbox_index"][si][1] >= last]
    if cut:
        yield w.item(ph["partial"], [f"structure:{n}" for n in cut], [f"structures/{n}/bbox_index" for n in cut])


def _bone(w: _Writer, ph: dict, key: str):
    v = w.clinical("vertebral_levels")
    levels = v.get("levels") or []
    if not levels:
        return
    masks = [f"structure:vertebrae_{lv}" for lv in levels]
    yield w.item(ph["range"].format(first=levels[0], last=levels[-1]), masks, ["clinical/vertebral_levels"])
    cut = [lv for lv in levels if lv in (v.get("cut_by_field_of_view") or [])]
    if cut:
        text = ph["cut"].format(levels=_join(cut) + (" vertebrae" if len(cut) > 1 else " vertebra"),
                                be="are" if len(cut) > 1 else "is")
        yield w.item(text, [f"structure:vertebrae_{lv}" for lv in cut], ["clinical/vertebral_levels"])


def _thyroid(w: _Writer, ph: dict, key: str):
    a = w.m.structures.get("thyroid_gland")
    if a:
        yield w.item(ph["described"].format(**_structure_fields(a)), ["structure:thyroid_gland"],
                     ["structures/thyroid_gland/volume_ml", "structures/thyroid_gland/hu_mean"])


def _breast(w: _Writer, ph: dict, key: str):
    a = w.m.structures.get("breast")
    if a:
        yield w.item(ph["described"].format(**_structure_fields(a)), ["structure:breast"],
                     ["structures/breast/volume_ml"])


# topic name (a key of report_phrases.json "topics") -> writer, in the order sentences appear in a region
_TOPICS = (
    ("nodules", _nodules), ("consolidation", _consolidation), ("emphysema", _emphysema),
    ("lung_volumes", _lung_volumes),
    ("pleural_effusion", _pleural_effusion),
    ("cardiomegaly", _cardiomegaly), ("pericardial_effusion", _pericardial_effusion),
    ("aorta", _aorta), ("pulmonary_artery", _pulmonary_artery),
    ("trachea", _trachea), ("esophagus", _esophagus), ("abdomen", _abdomen), ("bone", _bone),
    ("thyroid", _thyroid), ("breast", _breast),
)
