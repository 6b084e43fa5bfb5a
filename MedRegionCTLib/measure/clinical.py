"""Derived clinical measures (cardiothoracic ratio, aortic and pulmonary-artery diameters, trachea, lung
volumes, emphysema index of the lungs and of each lobe, fluid volumes, vertebral levels), each judged
against the threshold and literature source in ``data/clinical_thresholds.json``.

Cross-sectional diameters are measured on axial slices as the minor axis of the section's second moments
(``4 sqrt(smallest eigenvalue)``: exact for a disc, and the true calibre of an obliquely cut tube).
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
from scipy import ndimage

from ..data import load_json
from .intensity import fraction_below

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


def _axial_sections(mask: np.ndarray, spacing, si_axis: int):
    """Per axial slice of ``mask`` (a crop), the 2D connected sections: yields (slice index, props list)
    with props = (area mm2, centroid in-plane (mm, 2), minor axis mm, major axis mm)."""
    other = [a for a in range(3) if a != si_axis]
    sp = np.array([spacing[a] for a in other])
    stack = np.moveaxis(mask, si_axis, 0)
    for k in range(stack.shape[0]):
        plane = stack[k]
        if not plane.any():
            continue
        lab, n = ndimage.label(plane)
        props = []
        for i, sl in enumerate(ndimage.find_objects(lab), start=1):
            pts = (np.argwhere(lab[sl] == i) + [s.start for s in sl]) * sp
            area = len(pts) * float(np.prod(sp))
            if len(pts) < 3:
                continue
            cov = np.cov(pts.T) + np.diag(sp**2 / 12.0)  # + the pixel's own spread (exact disc moments)
            ev = np.linalg.eigvalsh(cov)
            props.append((area, pts.mean(axis=0), 4.0 * np.sqrt(max(ev[0], 0.0)), 4.0 * np.sqrt(ev[1])))
        yield k, props


def _max_lr_width(mask: np.ndarray, axes) -> float:
    """Largest right-left extent (mm) of ``mask`` on any axial slice."""
    lr, si = axes.lr[0], axes.si[0]
    ap = axes.ap[0]
    proj = mask.any(axis=ap)  # (remaining two axes in order)
    order = [a for a in range(3) if a != ap]
    proj = proj if order.index(lr) == 0 else proj.T  # rows: lr, cols: si
    present = proj.any(axis=0)
    if not present.any():
        return 0.0
    first = np.argmax(proj, axis=0)
    last = proj.shape[0] - 1 - np.argmax(proj[::-1], axis=0)
    widths = (last - first + 1)[present]
    del si
    return float(widths.max()) * axes.spacing[lr]


def cardiothoracic_ratio(heart: np.ndarray, lungs: np.ndarray, axes) -> dict:
    """Maximal transverse heart width over the maximal inner thoracic (lung-to-lung) width, axial images."""
    if not heart.any() or not lungs.any():
        return judge("cardiothoracic_ratio", None)
    heart_w = _max_lr_width(heart, axes)
    thorax_w = _max_lr_width(lungs | heart, axes)
    out = judge("cardiothoracic_ratio", heart_w / thorax_w if thorax_w else None)
    out.update(heart_width_mm=heart_w, thorax_width_mm=thorax_w)
    return out


def aorta_diameters(aorta: np.ndarray, spacing, axes) -> tuple[dict, dict]:
    """Ascending and descending thoracic aorta diameters: on slices cutting the aorta twice, the anterior
    section is the ascending and the posterior one the descending aorta; the largest minor axis of each."""
    si, ap = axes.si[0], axes.ap
    other = [a for a in range(3) if a != si]
    ap_col, ap_sign = other.index(ap[0]), ap[1]
    asc, desc = [], []
    for _, props in _axial_sections(aorta, spacing, si):
        big = [p for p in props if p[0] >= 50.0]
        if len(big) != 2:
            continue
        front, back = sorted(big, key=lambda p: -ap_sign * p[1][ap_col])
        asc.append(front[2])
        desc.append(back[2])
    a = judge("ascending_aorta_diameter_mm", max(asc) if asc else None)
    d = judge("descending_aorta_diameter_mm", max(desc) if desc else None)
    a["slices_measured"] = len(asc)
    d["slices_measured"] = len(desc)
    return a, d


def pulmonary_artery_diameter(pa: np.ndarray, spacing) -> dict:
    """Main pulmonary artery: the diameter of the largest ball inside the pulmonary-artery mask (the trunk is
    its widest tube). The distance transform reaches the nearest outside voxel *centre*, half a voxel past
    the border, hence the correction."""
    if not pa.any():
        return judge("main_pulmonary_artery_diameter_mm", None)
    edt = ndimage.distance_transform_edt(np.pad(pa, 1), sampling=spacing)
    return judge("main_pulmonary_artery_diameter_mm", float(2.0 * edt.max() - np.mean(spacing)))


def trachea_diameters(trachea: np.ndarray, spacing, axes) -> dict:
    """Median coronal (right-left) and sagittal (anterior-posterior) diameters over the trachea's slices."""
    si = axes.si[0]
    other = [a for a in range(3) if a != si]
    lr_col, ap_col = other.index(axes.lr[0]), other.index(axes.ap[0])
    sp = np.array([spacing[a] for a in other])
    coronal, sagittal = [], []
    stack = np.moveaxis(trachea, si, 0)
    for k in range(stack.shape[0]):
        plane = stack[k]
        if np.count_nonzero(plane) * float(np.prod(sp)) < 30.0:
            continue
        cols = np.argwhere(plane)
        coronal.append((np.ptp(cols[:, lr_col]) + 1) * sp[lr_col])
        sagittal.append((np.ptp(cols[:, ap_col]) + 1) * sp[ap_col])
    out = judge("trachea_diameter_mm", float(np.median(coronal)) if coronal else None)
    out["sagittal_diameter_mm"] = float(np.median(sagittal)) if sagittal else None
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
