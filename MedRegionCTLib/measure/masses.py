"""Masses: large solid lesions inside the lung field, wherever they sit -- in the middle of aerated lung, against the
mediastinum, the hilum, the chest wall or the diaphragm.

The nodule search (:func:`.lesions.find_nodules`) looks for round things the lung surrounds; a tumour that
touches the mediastinum or the chest wall is not surrounded, and merges with collapsed lung, vessels and its own
spicules. Here the solid part of the lung field (smoothed attenuation above ``solid_min_hu``) is opened with a
ball of ``open_radius_mm`` so that vessels, septa, spicules and thin bands of atelectasis fall away and only
tissue at least a ball wide is left; each piece of at least ``min_volume_ml`` that is not a tube (elongation at
most ``max_elongation``: vessels are long and thin, masses are not) is a mass candidate. Its margins are given
back where the opening rounded them: the solid voxels within ``margin_mm`` of the opened core that are connected
to it (the reporting rules read this mask); a reported mass is measured on those within ``measure_margin_mm``,
nearer to it than to any other candidate. Whether it is a mass or consolidation is then decided on air bronchograms
(:func:`.lesions.assess_consolidation`).

What each candidate touches is read from the labels around it: the mediastinum (mediastinal organs), the hilum
(the main bronchi or the lung vessels at the lung root), the chest wall (pleural-based: body wall, ribs, pleura)
or the diaphragm (abdominal organs under it). Parameters: ``clinical_thresholds.json`` ``lesion_detection`` ->
``masses``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..progress import check_cancel
from .lesions import Lesion, _elongation, _grow, _opened, _spacing
from .shape import crop_of

# what a mass abuts, by the classes next to it (TotalSegmentator names; first match wins per class)
TOUCH_GROUPS = {
    "mediastinum": ("heart", "aorta", "mediastinum", "esophagus", "trachea", "superior_vena_cava",
                    "pulmonary_artery", "pulmonary_vein", "brachiocephalic_trunk", "brachiocephalic_vein_left",
                    "brachiocephalic_vein_right", "atrial_appendage_left", "thymus", "pericardium"),
    "hilum": ("lung_airways", "lung_trachea_bronchia"),
    "chest wall": ("body_trunc", "lung_pleural", "sternum", "costal_cartilages", "subcutaneous_fat", "torso_fat",
                   "skeletal_muscle", "autochthon_left", "autochthon_right"),
    "diaphragm": ("abdominal_cavity", "liver", "spleen", "stomach", "kidney_left", "kidney_right"),
}
RIB_OR_SPINE = ("rib_", "vertebrae_")


def find_masses(hu: np.ndarray, lung: np.ndarray, affine, params: dict, cancel=None) -> list[Lesion]:
    """Mass candidates in ``lung`` (the lung field: aerated lung and the disease inside it, on the CT grid)."""
    p = params["masses"]
    spacing = _spacing(affine)
    box = crop_of(lung)
    if box is None:
        return []
    box = _grow(box, (1, 1, 1), lung.shape)
    # the mean over a 3x3 in-plane window takes the noise down (a voxel of aerated lung at -850 HU and one of
    # tissue at +40 HU stay apart; a thin vessel's partial volume falls below the threshold)
    smooth = ndimage.uniform_filter(hu[box].astype(np.float32), size=(3, 3, 1) if spacing[2] > 1.5 * spacing[0]
                                    else 3)
    solid = lung[box] & (smooth > p["solid_min_hu"])
    del smooth
    check_cancel(cancel)
    opened = _opened(solid, spacing, p["open_radius_mm"])
    if opened is None:
        return []
    obox, core = opened
    comps, n = ndimage.label(core)
    found: list[Lesion] = []
    voxel_ml = float(np.prod(spacing)) / 1000.0
    pieces = []
    for i, sl in enumerate(ndimage.find_objects(comps), start=1):
        if sl is not None:
            pieces.append((comps[sl] == i, tuple(slice(o.start + s.start, o.start + s.stop)
                                                 for o, s in zip(obox, sl, strict=True))))
    compact = list(_compact(pieces, spacing, p, voxel_ml, cancel))
    # every core, on one grid: a margin given back never crosses into a neighbour's nearer half
    owner = np.zeros(solid.shape, dtype=np.int32)
    for n, (piece, at) in enumerate(compact, start=1):
        owner[at][piece] = n
    for n, (piece, at) in enumerate(compact, start=1):
        mask, full = _given_back(piece, at, solid, None, n, spacing, p["margin_mm"], box)
        les = Lesion("mass", full, mask, {"elongation": _elongation(piece, spacing),
                                          "core_volume_ml": float(piece.sum() * voxel_ml)})
        # The rules on what a candidate is read the margin they were set on; the lesion as reported is measured
        # on what the openings took off (up to a ball's width where a tumour infiltrates the lung around it;
        # a lesion that aerated lung bounds gains nothing), never past the half-way line to another candidate
        wide, wide_at = _given_back(piece, at, solid, owner, n, spacing, p["measure_margin_mm"], box)
        les.attributes["measured_mask"] = (wide_at, wide)
        found.append(les)
    return found


def _given_back(piece, at, solid, owner, n: int, spacing, margin_mm: float, box):
    """The core ``piece`` (at ``at`` on the box grid) with the solid voxels within ``margin_mm`` of it that connect
    to it and, given ``owner`` (every core labelled on the box grid), lie nearer to it than to any other core.
    Returns ``(mask, slices on the CT grid)``."""
    margin = tuple(int(np.ceil(margin_mm / s)) + 1 for s in spacing)
    win = _grow(at, margin, solid.shape)
    seed = np.zeros(tuple(w.stop - w.start for w in win), dtype=bool)
    seed[tuple(slice(a.start - w.start, a.stop - w.start) for a, w in zip(at, win, strict=True))] = piece
    dist = ndimage.distance_transform_edt(~seed, sampling=spacing)
    near = dist <= margin_mm
    if owner is not None:
        # a core up to twice the margin away can claim the voxels half-way
        reach = _grow(win, margin, solid.shape)
        others = (owner[reach] > 0) & (owner[reach] != n)
        if others.any():
            inner = tuple(slice(w.start - r.start, w.stop - r.start) for w, r in zip(win, reach, strict=True))
            near &= dist < ndimage.distance_transform_edt(~others, sampling=spacing)[inner]  # a tie is neither's
    grown = near & solid[win]
    labels, _ = ndimage.label(grown)
    keep = np.unique(labels[seed & grown])
    mask = np.isin(labels, keep[keep > 0]) | seed
    sub = crop_of(mask)
    full = tuple(slice(b.start + w.start + s.start, b.start + w.start + s.stop)
                 for b, w, s in zip(box, win, sub, strict=True))
    return mask[sub], full


def heart_contact_share(lesion: Lesion, labels: np.ndarray, heart: int, mediastinum: int | None, affine,
                        wall_mm: float, reach_mm: float = 3.0) -> float:
    """Share of the lesion's surroundings on the heart: the heart's label, or the mediastinum's within ``wall_mm``
    of it (on a contrast CT the heart's mask is the blood pool; the myocardium, the atrial appendage and the
    pericardium around it fall to the mediastinum)."""
    shell, win = _shell(lesion, labels.shape, affine, reach_mm)
    spacing = _spacing(affine)
    pad = tuple(int(np.ceil(wall_mm / s)) + 1 for s in spacing)
    outer = _grow(win, pad, labels.shape)
    inner = tuple(slice(w.start - o.start, w.stop - o.start) for w, o in zip(win, outer, strict=True))
    on_heart = labels[outer] == heart
    near = on_heart[inner]
    if mediastinum is not None and on_heart.any():
        near = near | ((labels[win] == mediastinum)
                       & (ndimage.distance_transform_edt(~on_heart, sampling=spacing)[inner] <= wall_mm))
    return float(np.count_nonzero(near[shell])) / max(int(np.count_nonzero(shell)), 1)


def _shell(lesion: Lesion, shape, affine, reach_mm: float):
    """(boolean shell within ``reach_mm`` outside the lesion, the window it is on)."""
    spacing = _spacing(affine)
    pad = tuple(int(np.ceil(reach_mm / s)) + 1 for s in spacing)
    win = _grow(lesion.crop, pad, shape)
    inner = tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(lesion.crop, win, strict=True))
    mask = np.zeros(tuple(w.stop - w.start for w in win), dtype=bool)
    mask[inner] = lesion.mask
    return (ndimage.distance_transform_edt(~mask, sampling=spacing) <= reach_mm) & ~mask, win


def touching(lesion: Lesion, labels: np.ndarray, names: dict[int, str], lung_values, affine,
             reach_mm: float = 3.0, diaphragm_mm: float = 10.0) -> list[str]:
    """What the lesion abuts, from the labels within ``reach_mm`` outside it and outside the lung field
    (``lung_values``: label values of the lung field's classes); the abdominal organs count within
    ``diaphragm_mm`` (the diaphragm's muscle lies between them and the lung). Sorted as in
    :data:`TOUCH_GROUPS`."""
    out = set()
    for reach, groups in ((reach_mm, [g for g in TOUCH_GROUPS if g != "diaphragm"]), (diaphragm_mm, ["diaphragm"])):
        shell, win = _shell(lesion, labels.shape, affine, reach)
        values = labels[win][shell]
        values = values[~np.isin(values, list(lung_values))]
        if values.size == 0:
            continue
        counts = np.bincount(values.astype(np.int64))
        share: dict[str, float] = {}
        for value in np.flatnonzero(counts):
            name = names.get(int(value), "")
            group = next((g for g in groups if name in TOUCH_GROUPS[g]), None)
            if group is None and name.startswith(RIB_OR_SPINE) and "chest wall" in groups:
                group = "chest wall"
            if group is not None:
                share[group] = share.get(group, 0.0) + counts[value] / float(values.size)
        out |= {g for g, v in share.items() if v >= 0.05}
    return [g for g in TOUCH_GROUPS if g in out]


def _compact(pieces, spacing, p: dict, voxel_ml: float, cancel=None):
    """``(mask, slices)`` of the compact pieces: a piece that is elongated (a mass merged with collapsed lung or a
    thick vessel) is opened with the larger radii of ``split_radii_mm`` until compact parts come loose; a tube
    (the aorta, a pulmonary artery) has none and is dropped."""
    todo = [(m, at, 0) for m, at in pieces]
    radii = p["split_radii_mm"]
    while todo:
        check_cancel(cancel)
        mask, at, level = todo.pop()
        if mask.sum() * voxel_ml < p["min_volume_ml"]:
            continue
        if _elongation(mask, spacing) <= p["max_elongation"]:
            yield mask, at
            continue
        if level >= len(radii):
            continue
        opened = _opened(mask, spacing, radii[level])
        if opened is None:
            continue
        obox, core = opened
        comps, _ = ndimage.label(core)
        for i, sl in enumerate(ndimage.find_objects(comps), start=1):
            if sl is not None:
                sub = tuple(slice(a.start + o.start + s.start, a.start + o.start + s.stop)
                            for a, o, s in zip(at, obox, sl, strict=True))
                todo.append((comps[sl] == i, sub, level + 1))



def continues_up_and_down(lesion: Lesion, hu: np.ndarray, lung: np.ndarray, affine, si_axis: int, probe_mm: float,
                          share: float = 0.5) -> bool:
    """Whether soft tissue outside the lung field goes on above and below the lesion, over at least ``share`` of
    its axial footprint, ``probe_mm`` beyond its top and its bottom: a vein or artery running through the edge
    of the lung field (the superior vena cava beside the right lung), not a lesion of the lung."""
    spacing = _spacing(affine)
    step = max(1, int(round(probe_mm / spacing[si_axis])))
    foot = lesion.mask.any(axis=si_axis)
    if foot.sum() < 4:
        return False
    lo, hi = lesion.crop[si_axis].start - step, lesion.crop[si_axis].stop - 1 + step
    if lo < 0 or hi >= hu.shape[si_axis]:
        return False
    for k in (lo, hi):
        box = list(lesion.crop)
        box[si_axis] = k
        values = np.asarray(hu[tuple(box)], dtype=np.float32)[foot]
        outside = ~np.asarray(lung[tuple(box)])[foot]
        soft = (values > -30) & (values < 250) & outside
        if soft.mean() < share:
            return False
    return True
