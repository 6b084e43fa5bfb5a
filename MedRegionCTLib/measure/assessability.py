"""What the data can support: how much of each lung (and its pleural space) the scan holds, and explicit quality
checks of the segmentation. A report may say "no nodule", "no effusion" or "no emphysema" for a side only when
that side is :func:`assessable`; otherwise it says what could not be assessed and why.

Coverage, per side, from the lung classes of the label map:
- ``apex_included``: no lung on the scan's most superior slices (the lung ends inside the field of view);
- ``base_included``: no lung on the most inferior slices (the bases and costophrenic recesses are in view);
- ``cut_in_plane``: lung on the image's in-plane border (a field of view narrower than the chest);
- ``complete``: all three hold.

Quality checks (each ``{"passed": bool, "value": ..., "reason": str}``):
- ``lungs_found``: both lungs present, each at least ``min_lung_ml``;
- ``lung_volumes_plausible``: each complete lung between ``lung_ml_range`` (adult lungs, any inspiration);
- ``sides_consistent``: the right lung lies to the patient's right of the left lung and of the midline, in the
  affine's own patient axes (a mirrored file or a side mix-up fails it);
- ``diaphragm_level`` (when the segmenter fitted a diaphragm dome): the right dome stands no more than the
  usual margin above the left (``dome_right_minus_left_mm``); a raised dome on one side means something under
  that lung may have lifted its floor, and no absence of fluid or nodules is claimed on that side;
- ``soft_tissue_explained``: the lung field's non-aerated tissue (smoothed attenuation above ``solid_min_hu``)
  that no reported lesion covers stays under ``max_unexplained_ml`` per side (otherwise something inside the
  lung envelope was not characterised, and an absent finding there cannot be claimed).
Thresholds: ``clinical_thresholds.json`` -> ``assessability``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..anatomy import class_group
from ..data import load_json

SIDES = ("right", "left")


def params() -> dict:
    return load_json("clinical_thresholds.json")["assessability"]


def lung_classes(index_of: dict, side: str) -> list[str]:
    return [n for n in index_of if n in class_group(f"lung_{side}")]


def coverage(arr: np.ndarray, index_of: dict, affine, si_axis: int, margin_slices: int = 1) -> dict:
    """Per side: whether that lung lies wholly inside the field of view (see the module docstring)."""
    out = {}
    for side in SIDES:
        names = lung_classes(index_of, side)
        lut = np.zeros(max(index_of.values(), default=0) + 1, dtype=bool)
        lut[[index_of[n] for n in names]] = True
        mask = lut[arr] if names else np.zeros(arr.shape, bool)
        if not mask.any():
            out[side] = {"in_view": False, "apex_included": False, "base_included": False, "cut_in_plane": False,
                         "complete": False, "reason": f"no {side} lung in the field of view"}
            continue
        along = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != si_axis)))
        n = arr.shape[si_axis]
        # which end of the index axis is superior
        up = np.asarray(affine)[2, si_axis] > 0
        low_end = along[0] <= margin_slices - 1
        high_end = along[-1] >= n - margin_slices
        apex_cut, base_cut = (high_end, low_end) if up else (low_end, high_end)
        in_plane = [a for a in range(3) if a != si_axis]
        cut = any(mask.take(0, axis=a).any() or mask.take(-1, axis=a).any() for a in in_plane)
        reasons = []
        if apex_cut:
            reasons.append("the apex is above the scanned range")
        if base_cut:
            reasons.append("the base is below the scanned range")
        if cut:
            reasons.append("the lung reaches the edge of the image (field of view narrower than the chest)")
        out[side] = {"in_view": True, "apex_included": not apex_cut, "base_included": not base_cut,
                     "cut_in_plane": bool(cut), "complete": not reasons,
                     "reason": "; ".join(reasons) if reasons else ""}
    return out


def quality_checks(arr: np.ndarray, hu: np.ndarray, index_of: dict, affine, voxel_ml: float, midline_x: float,
                   cover: dict, lesions: list[dict], lesion_masks: list, min_confidence: float,
                   segmenter_meta: dict | None = None) -> dict:
    """The explicit segmentation checks (see the module docstring). A check that concerns one side lists the
    sides it fails for in ``sides``; one without ``sides`` concerns both."""
    p = params()
    checks = {}
    dome = (segmenter_meta or {}).get("diaphragm_dome_mm") or {}
    if "left" in dome and "right" in dome:
        # the right dome stands a little higher than the left (the liver); much higher, or the left above it,
        # is a raised hemidiaphragm -- or fluid, collapse or a mass under the lung that lifted its floor
        diff = float(dome["right"]) - float(dome["left"])
        lo, hi = p["dome_right_minus_left_mm"]
        raised = ["right"] if diff > hi else ["left"] if diff < lo else []
        if raised == ["right"]:
            reason = (f"the right diaphragm dome lies {diff:.0f} mm above the left one (usually at most {hi:g}): "
                      "something under the right lung (fluid, collapse, a mass) may have lifted it")
        elif raised:
            reason = (f"the left diaphragm dome lies {-diff:.0f} mm above the right one (it usually lies lower): "
                      "something under the left lung (fluid, collapse, a mass) may have lifted it")
        else:
            reason = ""
        checks["diaphragm_level"] = {"passed": not raised, "value": {"right_minus_left_mm": round(diff, 1)},
                                     "sides": raised, "reason": reason}
    volumes, centres = {}, {}
    side_masks = {}
    for side in SIDES:
        names = lung_classes(index_of, side)
        lut = np.zeros(max(index_of.values(), default=0) + 1, dtype=bool)
        lut[[index_of[n] for n in names]] = True
        mask = lut[arr] if names else np.zeros(arr.shape, bool)
        side_masks[side] = mask
        volumes[side] = float(mask.sum()) * voxel_ml
        if mask.any():
            # world RAS x of the mask's centre (a sample of voxels is plenty)
            idx = np.argwhere(mask)[:: max(1, int(mask.sum() // 20000))]
            centres[side] = float((idx @ np.asarray(affine)[0, :3] + np.asarray(affine)[0, 3]).mean())
    found = [s for s in SIDES if volumes[s] >= p["min_lung_ml"]]
    checks["lungs_found"] = {
        "passed": len(found) == 2, "value": {s: round(volumes[s], 1) for s in SIDES},
        "reason": "" if len(found) == 2 else
        f"{' and '.join(s for s in SIDES if s not in found)} lung not found (under {p['min_lung_ml']:g} mL)"}
    lo, hi = p["lung_ml_range"]
    bad = [s for s in SIDES if cover[s]["complete"] and not lo <= volumes[s] <= hi]
    checks["lung_volumes_plausible"] = {
        "passed": not bad, "value": {s: round(volumes[s], 1) for s in SIDES},
        "reason": "; ".join(f"{s} lung {volumes[s]:.0f} mL is outside {lo:g}-{hi:g} mL" for s in bad)}
    consistent = True
    reason = ""
    if len(centres) == 2:
        consistent = centres["right"] > centres["left"] and centres["right"] > midline_x > centres["left"]
        if not consistent:
            reason = ("the lung labelled right does not lie to the patient's right of the left one and the midline "
                      "in the file's patient axes (mirrored image or side mix-up)")
    checks["sides_consistent"] = {"passed": consistent,
                                  "value": {s: round(c, 1) for s, c in centres.items()}, "reason": reason}
    unexplained = _unexplained(hu, side_masks, lesions, lesion_masks, min_confidence, voxel_ml, p)
    over = [s for s in SIDES if unexplained[s] > p["max_unexplained_ml"]]
    side_reasons = {s: f"{unexplained[s]:.0f} mL of non-aerated tissue in the {s} lung field is not characterised "
                       "by any reported finding" for s in over}
    checks["soft_tissue_explained"] = {
        "passed": not over, "value": {s: round(v, 1) for s, v in unexplained.items()}, "sides": over,
        "reason": "; ".join(side_reasons.values()), "side_reasons": side_reasons}
    return checks


def _unexplained(hu, side_masks, lesions, lesion_masks, min_confidence, voxel_ml, p) -> dict:
    """Per side, mL of solid lung-field tissue (pieces at least ``min_piece_ml``) outside every reported lesion."""
    covered = np.zeros(hu.shape, bool)
    for les, (crop, mask) in zip(lesions, lesion_masks, strict=True):
        if les["kind"] in ("nodule", "mass", "consolidation") and les.get("confidence", 1.0) >= min_confidence:
            covered[crop] |= mask
    out = {}
    for side, mask in side_masks.items():
        if not mask.any():
            out[side] = 0.0
            continue
        box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in np.nonzero(mask))
        smooth = ndimage.uniform_filter(hu[box].astype(np.float32), size=(3, 3, 1))
        solid = mask[box] & (smooth > p["solid_min_hu"]) & ~covered[box]
        solid = ndimage.binary_opening(solid, iterations=2)  # vessels and septa are not tissue to explain
        lab, n = ndimage.label(solid)
        sizes = np.bincount(lab.ravel())[1:] * voxel_ml if n else np.zeros(0)
        out[side] = float(sizes[sizes >= p["min_piece_ml"]].sum())
    return out


def assessable(meta: dict, side: str) -> tuple[bool, str]:
    """Whether a negative statement about ``side``'s lung or pleural space is supported, and if not, why."""
    cover = (meta.get("coverage") or {}).get(side)
    checks = meta.get("quality_checks") or {}
    if cover is None:
        return False, "its coverage was not measured"
    if not cover.get("complete"):
        return False, cover.get("reason") or "it is not wholly in the field of view"
    # a check failed on some sides only gives this side's own reason
    failed = [(c.get("side_reasons") or {}).get(side) or c.get("reason") or name for name, c in checks.items()
              if not c.get("passed", True) and ("sides" not in c or side in c["sides"])]
    if failed:
        return False, "; ".join(failed)
    return True, ""
