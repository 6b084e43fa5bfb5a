"""Report + measurements -> DICOM Comprehensive 3D SR, TID 1500 Measurement Report (via highdicom).

One TID 1501 measurement group per region (tracking identifier ``region:<key>``, finding type = the region's
SNOMED CT code) holding the region's volume and mean attenuation, the clinical measures that belong to it
(cardiothoracic ratio, aortic / pulmonary artery / tracheal diameters, lung volumes, LAA-950, fluid volumes)
and its paragraph as a TEXT "Finding"; one group per finding (``finding:<id>``) with its size; the impression as
TEXT items in the report's "Qualitative Evaluations" container. Units are UCUM; concepts are SNOMED CT / DCM
codes where one exists, else codes of the private scheme ``99MRCT``.
"""

from __future__ import annotations

from pathlib import Path

from ...atomic import atomic_write
from ..document import Report
from .dicom_common import MANUFACTURER, import_highdicom, software_version
from .dicom_source import check_source_datasets
from .units import measurement_part

PRIVATE_SCHEME = "99MRCT"
# clinical measure -> (name, finding site, laterality, unit); names/sites: ("SCT"|"DCM"|PRIVATE, code, meaning)
# the category the SEG's segments carry too (DICOM CID 7150 / Slicer's terminology)
_ANATOMICAL_STRUCTURE = ("SCT", "123037004", "Anatomical Structure")
_DIAMETER = ("SCT", "81827009", "Diameter")
_VOLUME = ("SCT", "118565006", "Volume")
CLINICAL_CODES = {
    "cardiothoracic_ratio": ((PRIVATE_SCHEME, "CTR", "Cardiothoracic ratio"), None, "ratio"),
    "ascending_aorta_diameter_mm": (_DIAMETER, ("SCT", "54247002", "Ascending aorta"), "mm"),
    "descending_aorta_diameter_mm": (_DIAMETER, ("SCT", "281130003", "Descending aorta"), "mm"),
    "main_pulmonary_artery_diameter_mm": (_DIAMETER, ("SCT", "81040000", "Pulmonary artery"), "mm"),
    "pa_to_aorta_ratio": ((PRIVATE_SCHEME, "PA-AO", "Pulmonary artery to aorta diameter ratio"), None, "ratio"),
    "trachea_diameter_mm": (_DIAMETER, ("SCT", "44567001", "Trachea"), "mm"),
    "lung_volume_ml": (_VOLUME, ("SCT", "39607008", "Lung"), "ml"),
    "laa_950_percent": ((PRIVATE_SCHEME, "LAA950", "Lung volume fraction below -950 HU"), None, "percent"),
    "pleural_effusion_volume_ml": ((PRIVATE_SCHEME, "PLFLUID", "Segmented pleural fluid volume"), None, "ml"),
    "pericardial_fluid_volume_ml": ((PRIVATE_SCHEME, "PCFLUID", "Segmented pericardial fluid volume"), None,
                                    "ml"),
}
UNITS = {"mm": ("mm", "millimeter"), "ml": ("ml", "milliliter"), "hu": ("[hnsf'U]", "Hounsfield unit"),
         "percent": ("%", "Percent"), "ratio": ("{ratio}", "ratio"), "mm2": ("mm2", "square millimeter")}
FINDING_TYPES = {"nodule": ("SCT", "27925004", "Nodule"), "mass": ("SCT", "4147007", "Mass"),
                 "pleural_effusion": ("SCT", "60046008", "Pleural effusion"),
                 "cardiomegaly": ("SCT", "287272002", "Cardiomegaly")}
SIZE_CODES = {"max_diameter_mm": _DIAMETER, "diameter_mm": _DIAMETER, "volume_ml": _VOLUME,
              "axial_long_axis_mm": ("SCT", "103339001", "Long axis"),
              "axial_short_axis_mm": ("SCT", "103340004", "Short axis")}
_UNIT_SUFFIX = (("_mm2", "mm2"), ("_mm", "mm"), ("_ml", "ml"), ("_hu", "hu"), ("_percent", "percent"),
                ("_ratio", "ratio"))


def _concept(hd, code):
    scheme, value, meaning = code
    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _unit(hd, unit: str):
    value, meaning = UNITS[unit]
    return hd.sr.CodedConcept(value=value, scheme_designator="UCUM", meaning=meaning)


def _number(value):
    if isinstance(value, dict):
        value = value.get("value")
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v == v and abs(v) != float("inf") else None


def _private(key: str):
    words = key.replace("_", " ")
    return (PRIVATE_SCHEME, key.upper()[:16], words[:1].upper() + words[1:])


def _key_unit(key: str):
    for suffix, unit in _UNIT_SUFFIX:
        if key.endswith(suffix):
            return unit
    return None


def _clinical_of_regions(report: Report, clinical: dict) -> dict[str, list[str]]:
    """Region key -> clinical measure names: from the paragraphs' evidence, else from the measured class."""
    out: dict[str, list[str]] = {}
    claimed = set()
    for region in report.regions:
        refs = list(region.evidence.measurements) + [m for s in region.sentences for m in s.evidence.measurements]
        for ref in refs:
            parts = ref.split("/")
            if len(parts) >= 2 and parts[0] == "clinical" and parts[1] in clinical and parts[1] not in claimed:
                out.setdefault(region.key, []).append(parts[1])
                claimed.add(parts[1])
    rest = [k for k in clinical if k not in claimed]
    if rest:
        from ...anatomy import load_schema
        from ...errors import InputError
        from ...measure.measurements import MEASURE_CLASS as owner

        try:
            schema = load_schema(report.provenance.schema or "radgenome10")
        except InputError:
            schema = None
        keys = {r.key for r in report.regions}
        for name in rest:
            cls = owner.get(name)
            regions = schema.region_of(cls) if schema is not None and cls else []
            if regions and regions[0] in keys:
                out.setdefault(regions[0], []).append(name)
    return out


def _clinical_measurements(hd, name: str, entry) -> list:
    from pydicom.sr.codedict import codes

    code = CLINICAL_CODES.get(name)
    unit = code[2] if code else _key_unit(name)
    if unit is None:
        return []
    concept = _concept(hd, code[0] if code else _private(name))
    site = [hd.sr.FindingSite(_concept(hd, code[1]))] if code and code[1] else None
    if name == "lung_volume_ml" and isinstance(entry, dict):
        out = []
        for side, laterality in (("right", codes.SCT.Right), ("left", codes.SCT.Left)):
            v = _number(entry.get(side))
            if v is not None:
                out.append(hd.sr.Measurement(name=concept, value=v, unit=_unit(hd, "ml"), finding_sites=[
                    hd.sr.FindingSite(_concept(hd, code[1]), laterality=laterality)]))
        return out
    v = _number(entry)
    if v is None:
        return []
    return [hd.sr.Measurement(name=concept, value=v, unit=_unit(hd, unit), finding_sites=site)]


def _text(hd, value: str, name=None):
    from pydicom.sr.codedict import codes

    return hd.sr.TextContentItem(name=name or codes.DCM.Finding, value=value,
                                 relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def write_dicom_sr(report: Report, measurements, source_datasets, path, *, series_number: int = 902,
                   series_description: str = "MedRegionCT region report"):
    """Write the report as a DICOM Comprehensive 3D SR (TID 1500) to ``path``; returns the path.

    ``measurements``: ``measure.Measurements`` or its JSON (None: the report's text and findings only).
    ``source_datasets``: the CT series' pydicom headers (:func:`read_dicom_headers`); without them (input not
    DICOM) :class:`InputError` is raised. The SR is marked complete, unverified and not final: a clinician signs
    it off in the PACS.
    """
    datasets = check_source_datasets(source_datasets, "DICOM SR")
    hd = import_highdicom()
    from pydicom.sr.codedict import codes

    region_attrs = measurement_part(measurements, "regions") or {}
    clinical = measurement_part(measurements, "clinical") or {}
    clinical_of = _clinical_of_regions(report, clinical)
    from ...anatomy import load_schema
    from ...errors import InputError

    try:
        terminology = {r.key: r.terminology for r in load_schema(report.provenance.schema or "radgenome10").regions}
    except InputError:  # a report from a schema file not at hand: regions get private codes
        terminology = {}
    algorithm = hd.sr.AlgorithmIdentification(name=f"MedRegionCT {report.provenance.reporter}".strip(),
                                              version=software_version())
    groups = []
    for region in report.regions:
        term = terminology.get(region.key)
        region_code = hd.sr.CodedConcept(term.code, term.scheme, term.meaning) if term else _concept(
            hd, (PRIVATE_SCHEME, region.key.upper()[:16], region.name))
        items = []
        attrs = region_attrs.get(region.key) or {}
        if _number(attrs.get("volume_ml")) is not None:
            items.append(hd.sr.Measurement(name=codes.SCT.Volume, value=_number(attrs["volume_ml"]),
                                           unit=_unit(hd, "ml")))
        if _number(attrs.get("hu_mean")) is not None:
            items.append(hd.sr.Measurement(name=codes.DCM.AttenuationCoefficient, value=_number(attrs["hu_mean"]),
                                           unit=_unit(hd, "hu"), derivation=codes.SCT.Mean))
        for name in clinical_of.get(region.key, []):
            items += _clinical_measurements(hd, name, clinical[name])
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"region:{region.key}"),
            finding_type=region_code, finding_category=_concept(hd, _ANATOMICAL_STRUCTURE), algorithm_id=algorithm,
            measurements=items or None)
        if region.paragraph:
            group[0].ContentSequence.append(_text(hd, region.paragraph))
        groups.append(group)
        for finding in region.findings:
            kind = FINDING_TYPES.get(finding.kind, _private(finding.kind))
            sizes = []
            for key, value in list(finding.size.items()) + list(finding.values.items()):
                v, unit = _number(value), _key_unit(key)
                if v is None or unit is None:
                    continue
                sizes.append(hd.sr.Measurement(name=_concept(hd, SIZE_CODES.get(key, _private(key))), value=v,
                                               unit=_unit(hd, unit)))
            fgroup = hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"finding:{finding.id}"),
                finding_type=_concept(hd, kind), finding_sites=[hd.sr.FindingSite(region_code)],
                algorithm_id=algorithm, measurements=sizes or None)
            said = [s.text for s in region.sentences if finding.id in s.findings]
            text = " ".join(said) or ", ".join(x for x in (finding.kind.replace("_", " "), finding.location,
                                                            finding.side) if x)
            fgroup[0].ContentSequence.append(_text(hd, text))
            groups.append(fgroup)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="MedRegionCT", manufacturer_name=MANUFACTURER,
            model_name=f"MedRegionCTLib {software_version()}"))
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=hd.sr.CodedConcept("24627-2", "LN", "CT Chest"), imaging_measurements=groups)
    qualitative = hd.sr.ContainerContentItem(name=hd.sr.CodedConcept("126010", "DCM", "Qualitative Evaluations"),
                                             relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    qualitative.ContentSequence = hd.sr.ContentSequence(
        [_text(hd, item, codes.DCM.Impression) for item in report.impression]
        or [_text(hd, "No abnormal finding was identified.", codes.DCM.Impression)])
    content[0].ContentSequence.append(qualitative)
    sr = hd.sr.Comprehensive3DSR(
        evidence=datasets, content=content[0], series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        is_final=False, is_verified=False, series_description=series_description[:64])
    return atomic_write(Path(path), lambda tmp: sr.save_as(tmp))
