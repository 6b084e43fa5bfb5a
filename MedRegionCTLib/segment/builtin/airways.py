"""Trachea and main bronchi: find the trachea in an axial slice, grow the airway tree with a rising threshold
that stops before it leaks into the lung (Hu et al., IEEE TMI 2001), then follow it slice by slice: the trachea
ends where it splits (the carina), each main bronchus where it splits again or after an adult length."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from . import masks
from .grid import Grid

_STRUCT2 = ndi.generate_binary_structure(2, 1)


@dataclass
class Airways:
    tree: np.ndarray                # coarse: the grown airway lumen (trachea, bronchi and what followed)
    trachea: np.ndarray             # coarse lumen
    bronchus_left: np.ndarray
    bronchus_right: np.ndarray
    carina: tuple | None = None     # coarse index of the carina
    threshold_hu: float | None = None
    notes: list = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.trachea.any())


def find_airways(grid: Grid, body: np.ndarray, params: dict) -> Airways:
    empty = np.zeros(grid.coarse_shape, bool)
    seed = _trachea_seed(grid, body, params)
    if seed is None:
        return Airways(empty, empty, empty.copy(), empty.copy(), notes=["no trachea found in the field of view"])
    tree, threshold = _grow(grid, body, seed, params)
    notes = []
    trachea, left, right, carina = _split_tree(grid, tree, seed, params)
    beyond = _past_occlusion(grid, body, tree, params) if carina is None else None
    if beyond is not None:  # a thin plug (mucus, partial volume at the carina): carry on below it
        more, _ = _grow(grid, body, beyond, params)
        if more.sum() * grid.coarse_voxel_ml <= params["max_beyond_ml"]:
            tree = tree | more | _bridge(tree, more, _end_slice(grid, tree))
            notes.append("the airway lumen is interrupted above the carina; followed it past the gap")
            trachea, left, right, carina = _split_tree(grid, tree, seed, params)
    return Airways(tree, trachea, left, right, carina, threshold, notes)


def _past_occlusion(grid: Grid, body: np.ndarray, tree: np.ndarray, params: dict):
    """Air just below the blind lower end of a tube that never divided, or None."""
    k_end = _end_slice(grid, tree)
    if k_end is None or k_end == 0:
        return None  # nothing, or the tube runs out of the field of view
    end = tree[:, :, k_end]
    gap = max(1, int(np.ceil(params["bridge_mm"] / grid.coarse_spacing[2])))
    reach = ndi.binary_dilation(end, iterations=2)
    air = (grid.coarse < params["seed_hu_max"]) & body
    for k in range(k_end - 1, max(-1, k_end - 1 - gap), -1):
        hit = air[:, :, k] & reach
        if hit.sum() >= 2:
            seed = np.zeros(grid.coarse_shape, bool)
            seed[:, :, k] = hit
            return seed
    return None


def _end_slice(grid: Grid, tree: np.ndarray):
    """Lowest slice where the tube still has a real cross-section (partial-volume crumbs below it ignored)."""
    area = tree.sum(axis=(0, 1)) * grid.coarse_spacing[0] * grid.coarse_spacing[1]
    z = np.flatnonzero(area >= 10.0)
    return int(z[0]) if z.size else None


def _bridge(tree: np.ndarray, more: np.ndarray, k_end: int) -> np.ndarray:
    """Fill the slices between the tube's end and what was found below it, inside the tube's outline."""
    out = np.zeros_like(tree)
    z_more = np.flatnonzero(more.any(axis=(0, 1)))
    if z_more.size == 0:
        return out
    k_top = int(z_more[z_more < k_end].max()) if (z_more < k_end).any() else k_end
    for k in range(k_top + 1, k_end):
        out[:, :, k] = tree[:, :, k_end] | more[:, :, k_top]
    return out


def _trachea_seed(grid: Grid, body: np.ndarray, params: dict) -> np.ndarray | None:
    """A 3D seed: the trachea's cross-section in the highest slice where a round, midline air tube starts."""
    sx, sy, sz = grid.coarse_spacing
    area_lo, area_hi = params["seed_area_mm2"]
    air = (grid.coarse < params["seed_hu_max"]) & body
    nz = grid.coarse_shape[2]
    need = max(2, int(round(15.0 / sz)))  # the tube must go on for 15 mm
    previous = []  # candidates of the slice above, with how many slices each has persisted
    best = None
    for k in range(nz - 1, -1, -1):
        sl = air[:, :, k]
        body_x = np.flatnonzero(body[:, :, k].any(axis=1))
        if body_x.size == 0 or not sl.any():
            previous = []
            continue
        mid, width = (body_x[0] + body_x[-1]) / 2.0, (body_x[-1] - body_x[0] + 1)
        lab, n = ndi.label(sl, _STRUCT2)
        current = []
        if n:
            for obj, sl_box in enumerate(ndi.find_objects(lab), start=1):
                comp = lab[sl_box] == obj
                area = comp.sum() * sx * sy
                if not area_lo <= area <= area_hi:
                    continue
                wx = (sl_box[0].stop - sl_box[0].start) * sx
                wy = (sl_box[1].stop - sl_box[1].start) * sy
                if max(wx, wy) > 2.5 * min(wx, wy) or comp.sum() < 0.45 * comp.size:
                    continue
                cx = (sl_box[0].start + sl_box[0].stop - 1) / 2.0
                if abs(cx - mid) > 0.15 * width:
                    continue
                full = np.zeros(sl.shape, bool)
                full[sl_box] = comp
                runs = 1 + max((r for m, r in previous if (m & full).sum() >= 0.3 * min(m.sum(), full.sum())),
                               default=0)
                current.append((full, runs))
                if runs >= need and best is None:
                    best = (k + runs - 1, full)
        previous = current
        if best is not None:
            break
    if best is None:
        return None
    k_top, _ = best
    # take the top slice's cross-section of the tube (the candidate there overlapping the found one)
    seed = np.zeros(grid.coarse_shape, bool)
    lab, _ = ndi.label(air[:, :, k_top], _STRUCT2)
    hit = np.unique(lab[best[1]])
    hit = hit[hit > 0]
    seed[:, :, k_top] = np.isin(lab, hit) if hit.size else best[1]
    return seed


def _grow(grid: Grid, body: np.ndarray, seed: np.ndarray, params: dict):
    """Rising-threshold region growing from the seed; stop before the volume explodes into the lung."""
    chosen, chosen_t, last_vol = None, None, None
    # start where the seed itself is fully inside (low-resolution scans blur the lumen above -980 HU)
    t = max(params["grow_hu_start"], float(np.percentile(grid.coarse[seed], 90)) + 1.0)
    max_vox = 400.0 / grid.coarse_voxel_ml  # no adult airway tree lumen seen on CT is 0.4 L
    while t <= params["grow_hu_stop"]:
        region = masks.keep_touching((grid.coarse < t) & body | seed, seed)
        vol = int(region.sum())
        if chosen is not None and (vol > params["explosion_ratio"] * last_vol or vol > max_vox):
            break
        chosen, chosen_t, last_vol = region, t, max(vol, 1)
        t += params["grow_hu_step"]
    return chosen, float(chosen_t)


def _split_tree(grid: Grid, tree: np.ndarray, seed: np.ndarray, params: dict):
    """Walk down the tree slice by slice: one tube (trachea) until it splits in two (main bronchi)."""
    sx, sy, sz = grid.coarse_spacing
    min_area = 10.0 / (sx * sy)  # a branch cross-section of at least 10 mm^2
    trachea = np.zeros_like(tree)
    left = np.zeros_like(tree)
    right = np.zeros_like(tree)
    k_top = int(np.flatnonzero(seed.any(axis=(0, 1)))[-1])
    # everything of the tree at and above the seed slice is trachea (larynx side)
    trachea[:, :, k_top:] = tree[:, :, k_top:]
    current = tree[:, :, k_top] & ndi.binary_dilation(seed[:, :, k_top], iterations=2)
    carina = None
    areas = []
    branches = []  # (mask in slice, side, length so far mm, centroid)
    k = k_top - 1
    while k >= 0 and carina is None:
        lab, n = ndi.label(tree[:, :, k], _STRUCT2)
        near = np.unique(lab[ndi.binary_dilation(current, iterations=1)])
        areas.append(float(current.sum()))
        # a branch is at least 15 % of the trachea's usual cross-section (partial-volume crumbs are not)
        big = max(min_area, 0.15 * float(np.median(areas)))
        parts = [lab == i for i in near if i > 0 and (lab == i).sum() >= big]
        if not parts:
            break
        if len(parts) == 1:
            trachea[:, :, k] |= parts[0]
            current = parts[0]
            k -= 1
            continue
        # the carina: two (or more) tubes; keep the two largest as main bronchi
        parts.sort(key=lambda m: -m.sum())
        a, b = parts[0], parts[1]
        ca, cb = ndi.center_of_mass(a), ndi.center_of_mass(b)
        if abs(ca[0] - cb[0]) * sx < abs(ca[1] - cb[1]) * sy:
            # one in front of the other: the glottis between the vocal folds or a fold in the lumen, not the
            # carina, whose main bronchi part to the sides (realct_pathology/lung1002: the larynx split front and
            # back at the top of the scan was taken for the carina, 100 mm too high, and both "main bronchi"
            # followed the one trachea below it)
            union = np.logical_or.reduce(parts)
            trachea[:, :, k] |= union
            current = union
            k -= 1
            continue
        cc = ndi.center_of_mass(current)
        carina = (int(round(cc[0])), int(round(cc[1])), k + 1)
        # canonical RAS: the patient's left has the smaller axis-0 index
        for m, c in sorted(((a, ca), (b, cb)), key=lambda mc: mc[1][0]):
            branches.append([m, "left" if c[0] < cc[0] else "right", 0.0, c])
        if branches[0][1] == branches[1][1]:
            branches[0][1], branches[1][1] = "left", "right"
    trachea_area = max(float(trachea[:, :, carina[2]:k_top].sum(axis=(0, 1)).mean()), 1.0) if branches else 1.0
    for branch in branches:
        m, side, length, c = branch
        target = left if side == "left" else right
        kk = carina[2] - 1
        while kk >= 0 and m.any():
            target[:, :, kk] |= m
            lab, n = ndi.label(tree[:, :, kk - 1] if kk > 0 else np.zeros_like(m), _STRUCT2)
            near = np.unique(lab[ndi.binary_dilation(m, iterations=1)])
            parts = [lab == i for i in near if i > 0 and (lab == i).sum() >= min_area]
            if len(parts) != 1:
                break  # it divides (lobar bronchi) or ends
            nxt = parts[0]
            if nxt.sum() > 2.5 * trachea_area:
                break  # the cross-section balloons: the lumen opens into the lung
            c2 = ndi.center_of_mass(nxt)
            length += float(np.sqrt(((c2[0] - c[0]) * sx) ** 2 + ((c2[1] - c[1]) * sy) ** 2 + sz**2))
            if length > params["bronchus_max_mm"]:
                break
            m, c = nxt, c2
            kk -= 1
    return trachea, left, right, carina
