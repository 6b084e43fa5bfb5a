"""What a scan allows the report to say: is it a chest CT, how much of the body axis it covers, how its grid
was prepared. The result is ``Provenance.scope`` (the report header) and the ``chest_ct``/``notes`` of
labels.json; :func:`limit_reports` removes the statements a scan cannot support, whatever reporter wrote them.

- Not a chest CT (no lungs, or only lung bases or apices): the lung and pleura regions are not assessed and
  say why. :func:`require_chest` stops the main job here unless the caller allowed other body parts.
- Thin slab (fewer than 10 axial slices or under 30 mm, ``data/input_checks.json``): only statements of
  findings seen in the slab are kept, each marked as seen on a slab; every region says what the slab shows of
  it (cross-section) and that nothing outside the slab, no volume and no absence is assessed.
"""

from __future__ import annotations

import numpy as np

from ..data import load_json
from ..errors import NotChestCTError
from ..report.document import (
    FINDING_SENTENCE,
    LIMITATION_SENTENCE,
    NOT_ASSESSED,
    OUTSIDE_FIELD_OF_VIEW,
    Evidence,
    RegionReport,
    Sentence,
)
from ..volume import slab

LUNG_CLASSES = ("lung", "lung_left", "lung_right", "lung_upper_lobe_left", "lung_lower_lobe_left",
                "lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right")
# classes whose regions hold the lung and pleura statements (what a scan without a chest must not state)
CHEST_ONLY_CLASSES = LUNG_CLASSES + ("lung_pleural", "pleural_effusion", "lung_nodules")


def phrases() -> dict:
    return load_json("input_checks.json")["phrases"]


def _lung_voxels(labelmap) -> np.ndarray:
    ids = [i for i, name in labelmap.names.items() if name in LUNG_CLASSES]
    return np.isin(labelmap.array, ids) if ids else np.zeros(labelmap.shape, bool)


def chest_ct(labelmap) -> tuple[bool, str]:
    """Whether the segmentation shows a chest CT, and the reason in words.

    The segmenter's own verdict (``meta["chest_ct"]``, the built-in segmenter's) wins; otherwise a label map
    with at least the built-in segmenter's minimum lung volume is a chest CT (on a thin slab: a minimum lung
    cross-section on one slice).
    """
    lungs = _lung_voxels(labelmap)
    coverage = slab(labelmap)
    if coverage.thin:
        axis = labelmap.axis_of("superior-inferior")
        spacing = labelmap.spacing
        in_plane = float(np.prod([s for a, s in enumerate(spacing) if a != axis])) / 100.0  # cm2
        other = tuple(a for a in range(3) if a != axis)
        area = float(lungs.sum(axis=other).max()) * in_plane if lungs.any() else 0.0
        verdict = area >= float(load_json("builtin_segmenter.json")["thin_slab"]["chest_min_lung_cm2"])
        amount = f"{area:.0f} cm2 of lung in the largest slice"
    else:
        ml = float(lungs.sum()) * labelmap.voxel_volume_ml
        verdict = ml >= float(load_json("builtin_segmenter.json")["lungs"]["chest_min_ml"])
        amount = f"{ml:.0f} mL of lung"
    if "chest_ct" in labelmap.meta:
        verdict = bool(labelmap.meta["chest_ct"])
    reason = f"{amount} in the field of view" if lungs.any() else "no lungs in the field of view"
    return verdict, reason


def scan_scope(labelmap, volume=None) -> dict:
    """``Provenance.scope`` of a segmented scan: chest_ct, notes, coverage and limitations (sentences)."""
    words = phrases()
    chest, reason = chest_ct(labelmap)
    coverage = slab(labelmap)
    notes = [str(n) for n in labelmap.meta.get("notes", [])]
    limitations = []
    if not chest:
        limitations.append(words["not_chest"].format(reason=reason))
    if coverage.thin:
        limitations.append(words["thin_slab"].format(slices=coverage.slices, extent=coverage.extent_mm,
                                                     low=coverage.z_range_mm[0], high=coverage.z_range_mm[1]))
    geometry = dict((volume.meta if volume is not None else {}).get("orthogonalized") or {})
    if geometry:
        limitations.append(words["orthogonalized"].format(degrees=geometry["shear_deg"], shift=geometry["shift_mm"]))
    scope = {"chest_ct": chest, "chest_ct_reason": reason, "notes": notes,
             "coverage": {"slices": coverage.slices, "extent_mm": coverage.extent_mm,
                          "z_range_mm": list(coverage.z_range_mm), "thin_slab": coverage.thin},
             "limitations": limitations}
    if geometry:
        scope["geometry"] = {"orthogonalized": geometry}
    return scope


def require_chest(scope: dict, what: str = "the CT") -> None:
    """Raise :class:`NotChestCTError` when ``scope`` says the scan is not a chest CT."""
    if not scope["chest_ct"]:
        raise NotChestCTError(f"{what} does not look like a chest CT ({scope['chest_ct_reason']}); MedRegionCT "
                              "reports on chest CTs. Pass --allow-non-chest (allow_non_chest=True in Python) to "
                              "report on it anyway, without lung or pleura statements.")


def _chest_regions(schema) -> set[str]:
    return {key for name in CHEST_ONLY_CLASSES for key in schema.region_of(name)}


def _limitation(text: str, key: str) -> Sentence:
    return Sentence(text, Evidence(masks=[f"region:{key}"]), kind=LIMITATION_SENTENCE)


def _states_finding(sentence: Sentence) -> bool:
    return bool(sentence.findings) or sentence.kind == FINDING_SENTENCE


def _cross_section_cm2(mask: np.ndarray, labelmap) -> tuple[float, int]:
    axis = labelmap.axis_of("superior-inferior")
    other = tuple(a for a in range(3) if a != axis)
    per_slice = mask.sum(axis=other)
    in_plane = float(np.prod([s for a, s in enumerate(labelmap.spacing) if a != axis])) / 100.0
    return float(per_slice.max()) * in_plane, int(np.count_nonzero(per_slice))


def limit_reports(reports: list[RegionReport], scope: dict, schema, regions, labelmap) -> list[RegionReport]:
    """The region reports with every statement the scan cannot support taken out (see the module docstring).

    ``regions``: the schema's ``RegionMask`` list (to tell what a thin slab shows of each region).
    """
    words = phrases()
    masks = {r.key: r.mask for r in regions}
    chest_regions = set() if scope["chest_ct"] else _chest_regions(schema)
    thin = scope["coverage"]["thin_slab"]
    slices = scope["coverage"]["slices"]
    out = []
    for report in reports:
        key = report.key
        if key in chest_regions:
            text = words["region_not_chest"].format(reason=scope["chest_ct_reason"])
            out.append(RegionReport(key, report.name, status=NOT_ASSESSED, sentences=[_limitation(text, key)],
                                    evidence=report.evidence))
            continue
        if not thin:
            out.append(report)
            continue
        kept = [s for s in report.sentences if _states_finding(s)]
        ids = {i for s in kept for i in s.findings}
        findings = [f for f in report.findings if f.id in ids]
        for f in findings:
            f.provenance = [*f.provenance, words["finding_on_slab"].format(slices=slices)]
        mask = masks.get(key)
        if mask is not None and mask.any():
            area, present = _cross_section_cm2(mask, labelmap)
            text = words["region_on_slab"].format(name=report.name, present=present, slices=slices,
                                                  area=f"{area:.1f}")
            status = report.status if kept else NOT_ASSESSED
        elif report.status == OUTSIDE_FIELD_OF_VIEW:
            text, status = words["region_off_slab"].format(name=report.name), OUTSIDE_FIELD_OF_VIEW
        else:
            text, status = words["region_not_found_on_slab"].format(name=report.name), NOT_ASSESSED
        out.append(RegionReport(key, report.name, status=status, sentences=[*kept, _limitation(text, key)],
                                findings=findings, measurements={} if not kept else report.measurements,
                                evidence=report.evidence))
    return out
