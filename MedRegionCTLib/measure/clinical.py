"""Derived clinical measures (cardiothoracic ratio, aortic and pulmonary-artery diameters, trachea, lung
volumes, emphysema index of the lungs and of each lobe, fluid volumes, vertebral levels), each judged
against the threshold and literature source in ``data/clinical_thresholds.json``.

Vessel calibres are measured on planes perpendicular to the centreline at named landmarks (:mod:`.vessels`);
the cardiothoracic ratio on axial slices, stating the slices it used.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
from scipy import ndimage

from ..data import load_json
from .intensity import fraction_below
from .vessels import aorta_landmarks, landmark_table, pulmonary_landmarks

_VERTEBRA_ORDER = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)] + \
    [f"L{i}" for i in range(1, 7)] + ["S1"]


@lru_cache(maxsize=1)
def thresholds() -> dict:
    return load_json("clinical_thresholds.json")


def judge(name: str, value: float | None) -> dict:
    """``{value, unit, threshold, abnormal, finding, source}`` for one measure."""
    spec = thresholds()["measures"][name]
    out = {"value": value, "unit": spec["unit"], "threshold": spec["threshold"], "direction": spec["direction"],
           "finding": spec["finding"], "source": spec["source"], "abnormal": None}
    if value is not None:
        t = spec["threshold"]
        out["abnormal"] = bool(value >= t if spec.get("inclusive") else value > t)
    return out


def nodule_category(diameter_mm: float) -> str:
    spec = thresholds()["nodule_size_categories"]
    for cat in spec["categories"]:
        below = cat["below_mm"]
        if below is None or diameter_mm < below or (cat.get("inclusive_upper") and diameter_mm <= below):
            return cat["name"]
    return spec["categories"][-1]["name"]


CTR_EDGE_MARGIN_MM = 15.0


def _slice_widths(mask: np.ndarray, axes) -> np.ndarray:
    """Right-left extent (mm) of ``mask`` on every axial slice (0 where the slice holds none of it)."""
    lr, si = axes.lr[0], axes.si[0]
    ap = axes.ap[0]
    proj = mask.any(axis=ap)
    order = [a for a in range(3) if a != ap]
    proj = proj if order.index(lr) == 0 else proj.T  # rows: lr, cols: si
    present = proj.any(axis=0)
    first = np.argmax(proj, axis=0)
    last = proj.shape[0] - 1 - np.argmax(proj[::-1], axis=0)
    del si
    return np.where(present, (last - first + 1) * axes.spacing[lr], 0.0)


def _widest(widths: np.ndarray) -> int:
    """The slice of the largest width (the middle one of a run of equal maxima)."""
    best = np.flatnonzero(widths >= widths.max() - 1e-6)
    return int(best[len(best) // 2])


def _touches(mask: np.ndarray, axis: int, which=(0, -1)) -> bool:
    return any(np.take(mask, i, axis=axis).any() for i in which)


def cardiothoracic_ratio(heart: np.ndarray, lungs: np.ndarray, axes, affine=None) -> dict:
    """Maximum transverse cardiac diameter over maximum inner thoracic diameter (lung to lung, the heart in
    between), each on its own axial slice, as in Danzer's definition carried to axial CT. The slices used are
    given (index along the CT's head-foot axis and their height in mm). Not assessed (value None, with the
    reason) when the field of view cuts the thorax at the sides, or below it near its widest level, or cuts
    the heart (at the sides, or above or below near its widest level), or when the heart segmented is too
    small to be the whole heart (``assessability.heart_min_ml``)."""
    out = judge("cardiothoracic_ratio", None)
    out["method"] = ("maximum transverse cardiac diameter over maximum inner thoracic diameter on axial images "
                     "(right-left extents of the heart and of the lungs with the heart)")
    if not heart.any() or not lungs.any():
        return out
    lr, ap, si = axes.lr[0], axes.ap[0], axes.si[0]
    thorax = lungs | heart
    hw, tw = _slice_widths(heart, axes), _slice_widths(thorax, axes)
    kh, kt = _widest(hw), _widest(tw)
    n_si, sp_si = heart.shape[si], axes.spacing[si]
    low_end = 0 if axes.si[1] > 0 else n_si - 1  # the slice at the patient's feet
    high_end = n_si - 1 - low_end
    margin = CTR_EDGE_MARGIN_MM / sp_si  # a widest slice this near a cut edge may not be the widest there is
    reasons = []
    heart_ml = float(heart.sum()) * float(np.prod(axes.spacing)) / 1000.0
    floor_ml = thresholds()["assessability"]["heart_min_ml"]
    if heart_ml < floor_ml:
        reasons.append(f"the heart segmented holds only {heart_ml:.0f} mL, less than a whole adult heart "
                       f"({floor_ml:.0f} mL or more): it was not found whole")
    if _touches(lungs, lr):
        reasons.append("the field of view cuts the thorax at its sides")
    if _touches(lungs, si, (low_end,)) and abs(kt - low_end) < margin:
        reasons.append("the field of view cuts the thorax below its widest level")
    if _touches(heart, lr) or _touches(heart, ap):
        reasons.append("the field of view cuts the heart")
    elif any(_touches(heart, si, (end,)) and abs(kh - end) < margin for end in (low_end, high_end)):
        reasons.append("the field of view cuts the heart near its widest level")
    out.update(heart_width_mm=float(hw[kh]), thorax_width_mm=float(tw[kt]), heart_slice_index=kh,
               thorax_slice_index=kt)
    if affine is not None:
        z = np.asarray(affine, float)[2, si] * np.array([kh, kt]) + np.asarray(affine, float)[2, 3]
        out.update(heart_slice_z_mm=round(float(z[0]), 1), thorax_slice_z_mm=round(float(z[1]), 1))
    if reasons:
        out["not_assessed"] = "; ".join(reasons)
        return out
    ratio = judge("cardiothoracic_ratio", hw[kh] / tw[kt] if tw[kt] else None)
    out.update(value=ratio["value"], abnormal=ratio["abnormal"])
    return out


def calibre(section) -> float:
    """A vessel's calibre on a section perpendicular to its centreline: the largest diameter, or the width
    across it when the section is elongated beyond ``round_ratio`` (a true section of the aorta or pulmonary
    trunk is round; an elongated one holds a neighbour the mask merged with, or a branch's origin)."""
    ratio = landmark_table()["round_ratio"]
    return float(section.diameter_pd_mm if section.diameter_mm > ratio * section.diameter_pd_mm
                 else section.diameter_mm)


def _landmark_measure(name: str, landmarks: dict, keys, notes) -> dict:
    """The largest diameter among ``keys`` landmarks, judged as ``name``."""
    measured = [(k, landmarks[k]) for k in keys if k in landmarks and landmarks[k].section is not None]
    if not measured:
        out = judge(name, None)
        if notes:
            out["not_assessed"] = "; ".join(notes)
        return out
    key, lm = max(measured, key=lambda t: calibre(t[1].section))
    out = judge(name, calibre(lm.section))
    out.update(diameter_max_mm=round(float(lm.section.diameter_mm), 1),
               diameter_pd_mm=round(float(lm.section.diameter_pd_mm), 1), landmark=key, landmark_name=lm.name,
               method="largest diameter on a plane perpendicular to the centreline, outer wall to outer wall",
               landmarks_measured=[k for k, _ in measured])
    provenance = [f"{landmarks[k].name}: placed by {landmarks[k].placed_by}" for k, _ in measured]
    if calibre(lm.section) < lm.section.diameter_mm:
        provenance.append(f"{lm.name}: the section is elongated (largest diameter {lm.section.diameter_mm:.1f} mm) "
                          "by a neighbouring structure in the mask; the width across it is the calibre")
    if any("shape" in landmarks[k].placed_by or "labelled" in landmarks[k].placed_by for k, _ in measured):
        provenance.append("landmarks placed from the vessel's shape (no branch or junction masks): approximate")
    if lm.section.cut_by_field_of_view:
        provenance.append("the measured section touches the edge of the field of view")
    out["provenance"] = provenance
    return out


def aorta_diameters(aorta: np.ndarray, affine, structures: dict | None = None, hu=None) -> tuple[dict, dict, dict]:
    """Ascending and descending thoracic aorta diameters from the landmarks of :mod:`.vessels` (ascending:
    sinotubular junction, mid and distal ascending aorta -- never the root, sinuses or outflow tract;
    descending: proximal and mid descending aorta); and every landmark's record."""
    _, landmarks, notes = aorta_landmarks(aorta, affine, structures, hu)
    table = landmark_table()

    def about(part):  # the trace's notes on this limb, or on neither limb in particular
        return [n for n in notes if part in n or not any(p in n for p in ("ascending", "descending"))]

    asc = _landmark_measure("ascending_aorta_diameter_mm", landmarks, table["ascending"], about("ascending"))
    desc = _landmark_measure("descending_aorta_diameter_mm", landmarks, table["descending"], about("descending"))
    record = {"landmarks": {k: lm.to_json() for k, lm in landmarks.items()}, "notes": notes,
              "definitions": "TotalSegmentator aorta report landmarks (data/vessel_landmarks.json)"}
    return asc, desc, record


def pulmonary_artery_diameter(pa: np.ndarray, affine, structures: dict | None = None, hu=None) -> tuple[dict, dict]:
    """Main pulmonary artery before its bifurcation (TotalSegmentator's bifurcation landmark), on the plane
    perpendicular to the trunk's centreline; and the landmark's record."""
    _, landmarks, notes = pulmonary_landmarks(pa, affine, structures, hu)
    out = _landmark_measure("main_pulmonary_artery_diameter_mm", landmarks, ["main_pulmonary_artery"], notes)
    return out, {"landmarks": {k: lm.to_json() for k, lm in landmarks.items()}, "notes": notes}


def trachea_diameters(trachea: np.ndarray, spacing, axes, affine=None, midline_x: float | None = None) -> dict:
    """Median coronal (right-left) and sagittal (anterior-posterior) diameters over the trachea's slices
    above its lowest ``carina_zone_mm`` (where it widens into the carina), on slices where its section is one
    piece. Under ``min_length_mm`` of such trachea in the field of view (a crop round the heart) the calibre
    is not judged: the value is None and ``not_assessed`` says why. With the crop's ``affine`` and the
    spine's ``midline_x`` (RAS mm), ``offset_mm`` is the largest right-left offset of the section's centre from
    it (+ right) held over ``deviation_window_mm`` of those slices, and ``side`` the side it lies on beyond
    ``deviation_mm``, else "midline": the tube's own course, not its bounding box (which the larynx or the
    carina's flare widen)."""
    spec = thresholds()["measures"]["trachea_diameter_mm"]
    si, up = axes.si
    other = [a for a in range(3) if a != si]
    lr_col, ap_col = other.index(axes.lr[0]), other.index(axes.ap[0])
    sp = np.array([spacing[a] for a in other])
    stack = np.moveaxis(trachea, si, 0)
    if up < 0:
        stack = stack[::-1]  # lowest slice first
    present = np.flatnonzero(stack.reshape(stack.shape[0], -1).any(axis=1))
    coronal, sagittal, offsets = [], [], []
    start = int(present[0] + np.ceil(spec["carina_zone_mm"] / float(spacing[si]))) if present.size else 0
    for k in present[present >= start]:
        plane = stack[k]
        if np.count_nonzero(plane) * float(np.prod(sp)) < 30.0 or ndimage.label(plane)[1] != 1:
            continue  # a sliver at the field of view's edge; or a bronchus, an air pocket beside it
        cols = np.argwhere(plane)
        coronal.append((np.ptp(cols[:, lr_col]) + 1) * sp[lr_col])
        sagittal.append((np.ptp(cols[:, ap_col]) + 1) * sp[ap_col])
        if affine is not None and midline_x is not None:
            index = np.empty(3)
            index[si] = k if up > 0 else stack.shape[0] - 1 - k
            index[other] = cols.mean(axis=0)
            offsets.append(float((np.asarray(affine)[:3, :3] @ index + np.asarray(affine)[:3, 3])[0]) - midline_x)
    if len(coronal) * float(spacing[si]) < spec["min_length_mm"]:
        out = judge("trachea_diameter_mm", None)
        out["not_assessed"] = (f"only {len(coronal) * float(spacing[si]):.0f} mm of the trachea above the carina "
                               "is in the field of view")
        return out
    out = judge("trachea_diameter_mm", float(np.median(coronal)))
    out["sagittal_diameter_mm"] = float(np.median(sagittal))
    if offsets:
        # the largest offset held over window_mm of trachea: a mass pushes a stretch of it aside, not all of it
        run = max(1, int(round(spec["deviation_window_mm"] / float(spacing[si]))))
        held = [float(np.median(offsets[i:i + run])) for i in range(max(1, len(offsets) - run + 1))]
        offset = max(held, key=abs)
        out["offset_mm"] = offset
        out["side"] = "midline" if abs(offset) <= spec["deviation_mm"] else ("right" if offset > 0 else "left")
    return out


def emphysema_index(hu_values: np.ndarray) -> dict:
    return judge("laa_950_percent", 100.0 * fraction_below(hu_values, -950) if hu_values.size else None)


def lobar_emphysema_index(values_by_lobe: dict[str, np.ndarray]) -> dict:
    """LAA-950 of each lobe (% of the lobe's voxels below -950 HU), judged against the lobar threshold
    (``laa_950_percent_lobe``): upper-lobe predominant emphysema can fill a good share of the upper lobes
    and still stay under the whole-lung threshold. Returns ``{"lobes": {lobe: percent}, "lobes_abnormal":
    [lobes beyond the threshold], "lobe_criterion": the threshold's spec}``."""
    lobes = {n: 100.0 * fraction_below(v, -950) for n, v in values_by_lobe.items() if v.size}
    criterion = {k: v for k, v in thresholds()["measures"]["laa_950_percent_lobe"].items()}
    abnormal = [n for n, v in lobes.items() if judge("laa_950_percent_lobe", v)["abnormal"]]
    return {"lobes": lobes, "lobes_abnormal": abnormal, "lobe_criterion": criterion}


def vertebral_levels(present: dict[str, tuple], shape, si_axis: int) -> dict:
    """Vertebrae in the label map, cranial to caudal, and which ones the field of view cuts."""
    names = []
    for name in present:
        m = re.fullmatch(r"vertebrae_([CTLS]\d+)", name)
        if m and m.group(1) in _VERTEBRA_ORDER:
            names.append(m.group(1))
    names.sort(key=_VERTEBRA_ORDER.index)
    cut = [n for n in names if present[f"vertebrae_{n}"][si_axis].start == 0
           or present[f"vertebrae_{n}"][si_axis].stop == shape[si_axis]]
    return {"levels": names, "range": f"{names[0]}-{names[-1]}" if names else None, "cut_by_field_of_view": cut}
