"""Mediastinum: the space between the lungs, and in it the aorta (circles tracked slice by slice, the arch as
the thickest path between the tops of the ascending and descending parts), the oesophagus (the soft-tissue tube
in front of the spine) and the heart (the large soft-tissue mass above the diaphragm once those are out)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from skimage.graph import route_through_array

from . import masks
from .grid import Grid, bounding_box


@dataclass
class Mediastinum:
    space: np.ndarray                 # coarse: between the lungs, above the diaphragm, in front of the spine
    heart: np.ndarray
    aorta: np.ndarray
    esophagus: np.ndarray
    contrast: bool = False
    blood_hu: float = float("nan")
    notes: list = field(default_factory=list)


_HULL_CACHE: dict = {}


def lung_hull(lungs: np.ndarray) -> np.ndarray:
    """Per axial slice, the convex hull of the lungs (cached for the array last asked about)."""
    key = id(lungs)
    if _HULL_CACHE.get("key") == key and _HULL_CACHE.get("shape") == lungs.shape:
        return _HULL_CACHE["hull"]
    hull = np.zeros(lungs.shape, bool)
    for k in np.flatnonzero(lungs.any(axis=(0, 1))):
        sl = lungs[:, :, k]
        if sl.sum() >= 4:
            box = bounding_box(sl, pad=1)
            hull[box + (k,)] = masks.convex_hull_2d(sl[box])
    _HULL_CACHE.update(key=key, shape=lungs.shape, hull=hull)
    return hull


def mediastinal_space(grid: Grid, lungs: np.ndarray, body: np.ndarray, bone: np.ndarray, spine_axis,
                      under_diaphragm: np.ndarray) -> np.ndarray:
    """Per slice: inside the convex hull of the lungs, not lung, not bone, in front of the vertebral bodies."""
    ys = np.arange(lungs.shape[1])[None, :]
    space = lung_hull(lungs) & ~lungs & body & ~bone
    for k in range(lungs.shape[2]):
        if np.isfinite(spine_axis[k, 1]):
            space[:, :, k] &= ys > spine_axis[k, 1]
    space &= ~under_diaphragm
    # one connected space; pockets inside a single lung (a mass, a vessel the closing missed) are not in it
    return masks.largest_component(space) if space.any() else space


def contrast_blood(grid: Grid, lungs: np.ndarray, body: np.ndarray, params: dict, spine_axis=None,
                   column: np.ndarray | None = None) -> np.ndarray:
    """Iodinated blood pool between the lungs (heart chambers, aorta, great vessels), empty without contrast.

    Candidates are 140-650 HU voxels (and thick regions denser still: a bolus) inside the lungs' convex hull,
    away from cortical bone (a thin dense shell); the pool is made of
    pieces of at least ``blood_min_ml`` (vertebral bodies, cut apart by their discs, are smaller). With the
    vertebral column found from its canal (``column``: its tissue), it is left out by place, every large
    piece is blood (the descending aorta beside the spine too), and the pool goes on along the vessels below
    and above the lungs, within the column's reach."""
    out = np.zeros(lungs.shape, bool)
    lo, hi = params["blood_hu"][0], params["bolus_hu_max"]  # an arterial bolus runs denser than 650 HU
    sm = ndi.gaussian_filter(grid.coarse, 0.7)
    # a bolus can make a lumen as dense as cortex; cortex is a thin shell, a lumen is thick
    dense = grid.coarse_max > params["cortical_hu"]
    reach = max(1, int(round(params["lumen_min_radius_mm"] / grid.coarse_spacing.min())))
    thick = sm > params["bolus_hu_min"]
    core = ndi.binary_erosion(thick, iterations=reach) if thick.any() else thick
    lumen = ndi.binary_propagation(core, mask=thick | dense) if core.any() else core
    cand = ((sm > lo) & (sm < hi) | lumen) & body
    if not cand.any() or not lungs.any():
        return out
    hull = lung_hull(lungs)
    # cutting out the cortical shell parts a vertebral body from an aorta lying against it
    cortex = ndi.binary_dilation(dense & ~lumen)
    cand &= hull & ~lungs & ~cortex
    column_found = column is not None
    vertebrae = column if column_found else np.zeros(lungs.shape, bool)
    if spine_axis is not None and not column_found:  # nor the vertebral bodies (marrow as dense as blood)
        xs = np.arange(lungs.shape[0])[:, None]
        ys = np.arange(lungs.shape[1])[None, :]
        half = params["vertebral_body_half_width_mm"] / grid.coarse_spacing[0]
        for k in np.flatnonzero(np.isfinite(spine_axis[:, 0])):
            x0, y_front = spine_axis[k, 0], spine_axis[k, 1]
            vertebrae[:, :, k] = (np.abs(xs - x0) <= half) & (ys <= y_front + 1)
    cand &= ~vertebrae
    box = bounding_box(cand, pad=2)
    if box is None:
        return out
    sub = ndi.binary_opening(cand[box], masks.ball(3.0, grid.coarse_spacing))
    cand = np.zeros(lungs.shape, bool)
    cand[box] = sub
    big = masks.remove_small(cand, int(params["blood_min_ml"] / grid.coarse_voxel_ml))
    if not column_found:
        # the pool (heart, ascending aorta) lies in the front half of the chest; a vertebral column whose thin
        # cortex escaped the test above lies at the back
        lab, n = masks.label(big)
        lung_y = np.flatnonzero(lungs.any(axis=(0, 2)))
        y_mid = lung_y[0] + 0.45 * (lung_y[-1] - lung_y[0])
        keep = np.zeros(n + 1, bool)
        for i, box in enumerate(ndi.find_objects(lab), start=1):
            if box is not None:
                keep[i] = np.argwhere(lab[box] == i)[:, 1].mean() + box[1].start > y_mid
        big = keep[lab]
    if big.sum() * grid.coarse_voxel_ml < params["blood_pool_min_ml"]:
        return out
    # give back the rim the opening took, still clear of cortex
    pool = big | (ndi.binary_dilation(big, iterations=2) & ((sm > lo) & (sm < hi) | lumen) & ~cortex & ~lungs)
    if column_found:  # on along the aorta and the great vessels past the lungs, clear of the column
        reach = np.isfinite(spine_axis[:, 0])
        # and between the lungs' outer edges: out to the side the vessels of the arm run beside the scapula
        # and the humerus, whose marrow is as dense as enhanced blood (with the column followed up into the
        # neck, realct_pathology/lung1028's pool ran down the arm into both and took them off the skeleton)
        inner = _between_the_lungs(lungs, int(round(params["pool_side_window_mm"] / grid.coarse_spacing[2])))
        free = ((sm > lo) & (sm < hi) | lumen) & body & ~cortex & ~lungs & ~vertebrae & reach[None, None, :] & inner
        pool = ndi.binary_propagation(pool & free, mask=free) | pool
        # a few voxels on past thin calcium (a dissection's dotted flap, a calcified wall) into the blood beyond
        past = ((sm > lo) & (sm < hi) | lumen) & body & ~(dense & ~lumen) & ~lungs & ~vertebrae & inner
        pool |= ndi.binary_dilation(pool, iterations=params["past_calcium_voxels"], mask=past)
    # what the blood rings (the flap's calcium, the lumen inside it, valve calcium) is no bone
    return masks.fill_holes_axial(pool) & body


def _between_the_lungs(lungs: np.ndarray, window: int = 0) -> np.ndarray:
    """Per slice, x between the lungs' outer edges (left edge of the leftmost lung voxel to the right edge of the
    rightmost); above the apices and below the bases, those of the nearest slice with lung. In the lower half of
    the lungs and below them, the outermost edges over the slices with lung within ``window`` slices: a slice
    there may hold only a sliver of one base, beside which the aorta runs on down to the hiatus (the arm's
    vessels, which the edges are kept for, leave the chest at the apex)."""
    nx, _, nz = lungs.shape
    out = np.zeros(lungs.shape, bool)
    ks = np.flatnonzero(lungs.any(axis=(0, 1)))
    if ks.size == 0:
        return ~out
    xs = np.arange(nx)
    middle = (ks[0] + ks[-1]) / 2.0
    cols = {j: np.flatnonzero(lungs[:, :, j].any(axis=1)) for j in ks}
    for k in range(nz):
        j = ks[np.argmin(np.abs(ks - k))]
        near = ks[np.abs(ks - j) <= window] if k < middle else [j]
        lo = min(cols[i][0] for i in near)
        hi = max(cols[i][-1] for i in near)
        out[:, :, k] = ((xs >= lo) & (xs <= hi))[:, None]
    return out


def soft_tissue(grid: Grid, params: dict, contrast: bool) -> np.ndarray:
    sm = ndi.gaussian_filter(grid.coarse, 0.7)
    hi = params["soft_hu_max_contrast"] if contrast else params["soft_hu_max"]
    return (sm > params["soft_hu_min"]) & (sm < hi)


def find_mediastinum(grid: Grid, lungs: np.ndarray, body: np.ndarray, bone: np.ndarray, spine_axis, carina,
                     airway: np.ndarray, under_diaphragm: np.ndarray, params: dict,
                     blood: np.ndarray | None = None) -> Mediastinum:
    space = mediastinal_space(grid, lungs, body, bone, spine_axis, under_diaphragm)
    empty = np.zeros(lungs.shape, bool)
    if not space.any():
        return Mediastinum(space, empty, empty.copy(), empty.copy(), notes=["no mediastinum between the lungs"])
    contrast = blood is not None and bool(blood.any())
    blood_hu = float(np.median(grid.coarse[blood])) if contrast else float("nan")
    st = soft_tissue(grid, params, contrast) & body & ~bone
    notes = []
    airway_zone = ndi.binary_dilation(airway, masks.ball(4.0, grid.coarse_spacing)) if airway.any() else empty
    if contrast:
        # with iodine the vessels stand out from the soft tissue around them: track the blood itself
        sm = ndi.gaussian_filter(grid.coarse, 0.7)
        lo, hi = params["blood_hu"]
        vessels = (sm > lo) & (sm < hi) & body & ~bone
        tissue_st = st & ~vessels
    else:
        vessels, tissue_st = st, st
    aorta, aorta_notes = find_aorta(grid, vessels & ~airway_zone, space, spine_axis, carina, under_diaphragm,
                                    params)
    notes += aorta_notes
    esophagus = find_esophagus(grid, tissue_st, body, space, spine_axis, aorta, airway_zone, airway,
                               under_diaphragm, params)
    heart = find_heart(grid, st, space, aorta, esophagus, airway_zone, carina, params)
    return Mediastinum(space, heart, aorta, esophagus, contrast, blood_hu, notes)


def heart_footprint(grid: Grid, heart: np.ndarray, lungs: np.ndarray, params: dict):
    """``(foot, sheet)``: the (x, y) columns where a lung rests on the heart, not on the diaphragm (the heart's
    columns, a little wider), and the columns left out of them where the heart mask is only a thin sheet
    right under a lung, outside the heart's upper body -- there the mask spread over the liver dome (under
    its fat pad), and the lung's floor is the diaphragm."""
    has = heart.any(axis=2)
    if not has.any():
        return has, has
    sz = grid.coarse_spacing[2]
    nz = heart.shape[2]
    sheet = int(round(params["heart_sheet_mm"] / sz))
    top = nz - 1 - np.argmax(heart[:, :, ::-1], axis=2)
    bottom = np.argmax(heart, axis=2)
    thin = top - bottom + 1 < sheet
    ks = np.arange(nz)[None, None, :]
    lung_over = (lungs & (ks > top[:, :, None]) & (ks <= top[:, :, None] + sheet)).any(axis=2)
    lowest = int(np.flatnonzero(heart.any(axis=(0, 1)))[0])
    upper_body = heart[:, :, lowest + sheet:].any(axis=2)
    sheet = has & thin & lung_over & ~upper_body
    return ndi.binary_dilation(has & ~sheet, iterations=2), sheet


def bridge_under_heart(height: np.ndarray, foot: np.ndarray) -> np.ndarray:
    """The diaphragm under the heart no lower than the straight line joining its heights on either side of the
    heart's columns, row by row from front to back (the central tendon spans the cardiophrenic angles; the
    spread fill alone sags towards the low posterior recesses and lets the heart mask into the liver)."""
    out = height.copy()
    nx = height.shape[0]
    for j in np.flatnonzero(foot.any(axis=0)):
        col = foot[:, j]
        edges = np.flatnonzero(np.diff(np.concatenate(([False], col, [False])).astype(np.int8)))
        for a, b in zip(edges[::2], edges[1::2]):  # foot columns a .. b-1 in this row
            left = height[a - 1, j] if a > 0 else None
            right = height[b, j] if b < nx else None
            if left is None and right is None:
                continue
            left = right if left is None else left
            right = left if right is None else right
            line = np.linspace(left, right, b - a + 2)[1:-1]
            out[a:b, j] = np.maximum(out[a:b, j], line)
    return out


def redo_heart(grid: Grid, med: Mediastinum, lungs, body, bone, spine_axis, carina, airway, under_diaphragm,
               params: dict, fence: np.ndarray | None = None) -> Mediastinum:
    """The space and heart again under a corrected diaphragm (aorta and oesophagus kept); the heart stays out of
    ``fence`` where given."""
    space = mediastinal_space(grid, lungs, body, bone, spine_axis, under_diaphragm)
    st = soft_tissue(grid, params, med.contrast) & body & ~bone
    if fence is not None:
        st &= ~fence
    airway_zone = ndi.binary_dilation(airway, masks.ball(4.0, grid.coarse_spacing)) if airway.any() else \
        np.zeros(lungs.shape, bool)
    heart = find_heart(grid, st, space, med.aorta, med.esophagus, airway_zone, carina, params)
    return Mediastinum(space, heart, med.aorta, med.esophagus, med.contrast, med.blood_hu, med.notes)


# --- aorta --------------------------------------------------------------------------------------------
def _edt2(mask2d, spacing2):
    return ndi.distance_transform_edt(mask2d, sampling=spacing2)


def _circle_in(st_k, spacing2, window, r_min, r_max):
    """Centre (i, j) and radius (mm) of the largest inscribed circle of ``st_k`` inside ``window``."""
    if not (st_k & window).any():
        return None
    box = bounding_box(window[:, :, None], pad=int(np.ceil(r_max / spacing2.min())) + 2)[:2]
    d = _edt2(st_k[box], spacing2)
    d[~window[box]] = 0
    i, j = np.unravel_index(np.argmax(d), d.shape)
    r = d[i, j] - 0.5 * spacing2.mean()  # the EDT reaches the first outside voxel centre
    if not r_min <= r <= r_max:
        return None
    return i + box[0].start, j + box[1].start, float(r)


def _disk(shape2, spacing2, c, r):
    xs = (np.arange(shape2[0]) - c[0]) * spacing2[0]
    ys = (np.arange(shape2[1]) - c[1]) * spacing2[1]
    return xs[:, None] ** 2 + ys[None, :] ** 2 <= r * r


def _track(grid, st, start_k, start, direction, r_ref, stop_k, params, grow_limit=1.35):
    """Follow a circle from slice ``start_k`` in ``direction`` (+1 up, -1 down) while it stays round and near."""
    sp2 = grid.coarse_spacing[:2]
    nx, ny, nz = st.shape
    out = []
    c = start
    k = start_k + direction
    step_mm = params["track_step_mm"]
    while 0 <= k < nz and (stop_k is None or (k <= stop_k if direction > 0 else k >= stop_k)):
        window = _disk((nx, ny), sp2, c[:2], step_mm)
        hit = _circle_in(st[:, :, k], sp2, window, 0.55 * r_ref, grow_limit * r_ref)
        if hit is None:
            break
        out.append((k, hit))
        c = hit
        r_ref = 0.7 * r_ref + 0.3 * hit[2]
        k += direction
    return out


def find_aorta(grid: Grid, st, space, spine_axis, carina, under_diaphragm, params):
    sx, sy, sz = grid.coarse_spacing
    sp2 = grid.coarse_spacing[:2]
    nx, ny, nz = st.shape
    notes = []
    aorta = np.zeros(st.shape, bool)
    zs = np.flatnonzero(space.any(axis=(0, 1)))
    if zs.size == 0:
        return aorta, ["aorta not found"]
    xs = np.arange(nx)[:, None]
    ys = np.arange(ny)[None, :]
    r_lo, r_hi = params["aorta_radius_mm"]
    # the vertical tracks stop below the arch (the arch is traced as a path between their tops): followed
    # upwards they run on into the supra-aortic branches and the neck veins
    top_k = int(carina[2] + round(params["track_top_above_carina_mm"] / sz)) if carina is not None else None
    # descending aorta: left of and in front of the vertebral bodies, from mid-chest
    desc = []
    k0 = int(carina[2] - round(40.0 / sz)) if carina is not None else int(zs[len(zs) // 2])
    k0 = int(np.clip(k0, zs[0], zs[-1]))
    for k in sorted(range(zs[0], zs[-1] + 1), key=lambda kk: abs(kk - k0))[: max(3, int(60 / sz))]:
        if not np.isfinite(spine_axis[k, 0]):
            continue
        x0, y_front = spine_axis[k, 0], spine_axis[k, 1]
        # beside the vertebral body, against its front: the left atrium further forward (as large and, with
        # iodine, as dense) is no descending aorta
        window = ((xs - x0) * sx >= -60) & ((xs - x0) * sx <= 15) & ((ys - y_front) * sy >= -20) \
            & ((ys - y_front) * sy <= params["descending_max_ahead_mm"])
        hit = _circle_in(st[:, :, k], sp2, window & (space[:, :, k] | under_diaphragm[:, :, k]), r_lo, r_hi)
        if hit is not None and hit[0] < x0:
            desc = [(k, hit)]
            break
    tracks = []
    if desc:
        k, hit = desc[0]
        up = _track(grid, st, k, hit, +1, hit[2], top_k, params)
        down = _track(grid, st, k, hit, -1, hit[2], None, params)
        tracks.append(down[::-1] + desc + up)
    else:
        notes.append("descending aorta not found")
    # ascending aorta: to the right of and in front of the carina, below the arch
    asc = []
    if carina is not None:
        cx, cy, ck = carina
        k1 = int(ck - round(15.0 / sz))
        # near 15 mm below the carina first; then up to the carina's level, above an enlarged heart
        for k in (k1, k1 - 1, k1 + 1, k1 - 2, k1 + 2, *range(k1 + 3, int(ck) + 1)):
            if not 0 <= k < nz:
                continue
            window = ((xs - cx) * sx >= -12) & ((xs - cx) * sx <= 55) & ((ys - cy) * sy >= 5) \
                & ((ys - cy) * sy <= 80)
            hit = _circle_in(st[:, :, k], sp2, window & space[:, :, k], params["ascending_min_radius_mm"],
                             params["ascending_max_radius_mm"])
            if hit is not None:
                up = _track(grid, st, k, hit, +1, hit[2], top_k, params)
                if hit[2] > r_hi and len(up) * sz < params["ascending_wide_tube_mm"]:
                    continue  # wider than a normal aorta and not a tube going up: a heart chamber
                down = _track(grid, st, k, hit, -1, hit[2], None, params)
                asc = down[::-1] + [(k, hit)] + up
                break
    if asc:
        tracks.append(asc)
    elif carina is not None:
        notes.append("ascending aorta not found")
    centres, radii = [], []
    for track in tracks:
        r = np.array([h[2] for _, h in track])
        cap = 1.15 * float(np.median(r))
        centres += [(h[0], h[1], k) for k, h in track]
        radii += list(np.minimum(r, cap))
    if desc and asc:
        gap = np.subtract(centres[len(tracks[0]) - 1], centres[-1]) * grid.coarse_spacing
        if np.linalg.norm(gap) > 1.5 * max(radii[len(tracks[0]) - 1], radii[-1]):
            arch = _arch(grid, st, tracks[0], asc)
            if arch is None:
                notes.append("aortic arch not traced")
            else:
                centres += arch[0]
                radii += arch[1]
    if centres:
        aorta = _balls(st.shape, grid.coarse_spacing, np.asarray(centres), np.asarray(radii))
    return aorta, notes


def _balls(shape, spacing, centres, radii):
    """Union of balls (mm radii) around coarse voxel centres: a tube when the centres follow a vessel."""
    out = np.zeros(shape, bool)
    pad = int(np.ceil(radii.max() / min(spacing))) + 1
    lo = np.maximum(centres.min(axis=0).astype(int) - pad, 0)
    hi = np.minimum(centres.max(axis=0).astype(int) + pad + 1, shape)
    seeds = np.zeros(tuple(hi - lo), bool)
    rad = np.zeros(tuple(hi - lo), np.float32)
    c = np.round(centres).astype(int) - lo
    order = np.argsort(radii)  # the larger radius wins where two centres share a voxel
    seeds[tuple(c[order].T)] = True
    rad[tuple(c[order].T)] = radii[order]
    dist, idx = ndi.distance_transform_edt(~seeds, sampling=spacing, return_indices=True)
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = dist <= rad[tuple(idx)]
    return out


def _arch(grid, st, desc_track, asc_track):
    """The thickest soft-tissue path between the tops of the descending and ascending aorta, as balls."""
    (kd, (id_, jd, rd)), (ka, (ia, ja, ra)) = desc_track[-1], asc_track[-1]
    sp = grid.coarse_spacing
    pad = (int(60 / sp[0]), int(60 / sp[1]))
    x0, x1 = max(0, min(id_, ia) - pad[0]), min(st.shape[0], max(id_, ia) + pad[0] + 1)
    y0, y1 = max(0, min(jd, ja) - pad[1]), min(st.shape[1], max(jd, ja) + pad[1] + 1)
    z0, z1 = max(0, min(kd, ka) - 2), min(st.shape[2], max(kd, ka) + int(70 / sp[2]) + 1)
    sub = st[x0:x1, y0:y1, z0:z1]
    d = ndi.distance_transform_edt(sub, sampling=sp)
    cost = 1.0 / (d + 0.5) ** 3
    cost[~sub] = 1e3
    start = (id_ - x0, jd - y0, kd - z0)
    end = (ia - x0, ja - y0, ka - z0)
    path, total = route_through_array(cost, start, end, fully_connected=True, geometric=True)
    path = np.asarray(path)
    r_cap = 1.15 * max(rd, ra)
    radii = np.minimum(d[tuple(path.T)] - 0.5 * sp.mean(), r_cap)
    if np.median(radii) < 0.5 * min(rd, ra):
        return None  # the path squeezes through thin tissue: not the arch
    pts = [(int(i + x0), int(j + y0), int(k + z0)) for i, j, k in path]
    return pts, list(np.maximum(radii, 0.5 * min(rd, ra)))


# --- oesophagus ---------------------------------------------------------------------------------------
def find_esophagus(grid, st, body, space, spine_axis, aorta, airway_zone, airway, under_diaphragm, params):
    sx, sy, sz = grid.coarse_spacing
    sp2 = grid.coarse_spacing[:2]
    nx, ny, nz = st.shape
    out = np.zeros(st.shape, bool)
    xs = np.arange(nx)[:, None]
    ys = np.arange(ny)[None, :]
    # its lumen may hold air: anything but fat counts as oesophagus tissue, small holes filled
    not_fat = st | ((ndi.gaussian_filter(grid.coarse, 0.7) < params["fat_hu_min"]) & body & ~airway)
    tissue = masks.fill_holes_axial(not_fat & space) & ~airway_zone
    tissue &= ~ndi.binary_dilation(aorta, iterations=1)
    zs = np.flatnonzero(space.any(axis=(0, 1)))
    found = {}
    r_lo, r_hi = params["esophagus_radius_mm"]
    for k in zs:
        if not np.isfinite(spine_axis[k, 0]):
            continue
        x0, y_front = spine_axis[k, 0], spine_axis[k, 1]
        window = ((xs - x0) * sx >= -30) & ((xs - x0) * sx <= 22) & ((ys - y_front) * sy >= 0) \
            & ((ys - y_front) * sy <= 40) & space[:, :, k]
        hit = _circle_in(tissue[:, :, k], sp2, window, r_lo, 2.0 * r_hi)
        if hit is not None:
            found[k] = hit
    if len(found) < max(3, int(30 / sz)):
        return out
    ks = np.array(sorted(found))
    cx = ndi.median_filter(np.array([found[k][0] for k in ks], float), size=5, mode="nearest")
    cy = ndi.median_filter(np.array([found[k][1] for k in ks], float), size=5, mode="nearest")
    r = np.clip(ndi.median_filter(np.array([found[k][2] for k in ks]), size=7, mode="nearest"), r_lo, r_hi)
    # keep the longest run of slices whose centre moves smoothly
    jumps = np.flatnonzero((np.abs(np.diff(cx)) * sx > 8) | (np.abs(np.diff(cy)) * sy > 8) | (np.diff(ks) > 3))
    runs = np.split(np.arange(len(ks)), jumps + 1)
    best = max(runs, key=len)
    pad = 0.5 * sp2.mean()  # the outline is drawn a little wide; the fine grid trims it to non-fat tissue
    for n in best:
        out[:, :, ks[n]] = _disk((nx, ny), sp2, (cx[n], cy[n]), r[n] + pad)
    # above the thoracic inlet it runs on behind the trachea: keep the offset it had at the top
    top = ks[best[-1]]
    tz = [k for k in ks[best[-5:]] if airway[:, :, k].any()]
    if tz:
        off = np.mean([np.subtract((cx[np.searchsorted(ks, k)], cy[np.searchsorted(ks, k)]),
                                   ndi.center_of_mass(airway[:, :, k])) for k in tz], axis=0)
        r_top = float(np.median(r[best[-5:]]))
        for k in range(top + 1, nz):
            if not airway[:, :, k].any():
                break
            c = np.add(ndi.center_of_mass(airway[:, :, k]), off)
            back = np.flatnonzero(airway[:, :, k].any(axis=0))[0]  # the airway's back wall (y grows forwards)
            if np.isfinite(spine_axis[k, 1]) and back > spine_axis[k, 1]:
                # in the neck the larynx and trachea move forward off the spine: the oesophagus stays in the
                # gap between them and the vertebral bodies (on realct_pathology/lung1001 the offset carried
                # up from the chest put it inside C6-C7)
                c = (c[0], 0.5 * (back + spine_axis[k, 1]))
            out[:, :, k] = _disk((nx, ny), sp2, c, r_top + pad) & body[:, :, k]
    # the oesophagus lies in front of the vertebral bodies all along
    for k in np.flatnonzero(np.isfinite(spine_axis[:, 1]) & out.any(axis=(0, 1))):
        out[:, : int(np.floor(spine_axis[k, 1])) + 1, k] = False
    out &= ~airway_zone & body
    return out


# --- heart --------------------------------------------------------------------------------------------
def find_heart(grid, st, space, aorta, esophagus, airway_zone, carina, params):
    sx, sy, sz = grid.coarse_spacing
    cand = st & space & ~ndi.binary_dilation(aorta, iterations=1) & ~esophagus & ~airway_zone
    if carina is not None:
        top = int(carina[2] - round(params["heart_below_carina_mm"] / sz))
        cand[:, :, max(top, 0):] = False
    # detach vessels and thin bridges; the heart is the biggest thing left
    box = bounding_box(cand, pad=2)
    if box is None:
        return np.zeros(st.shape, bool)
    opened = np.zeros(st.shape, bool)
    opened[box] = ndi.binary_opening(cand[box], masks.ball(params["heart_open_mm"], grid.coarse_spacing))
    if not opened.any():
        return np.zeros(st.shape, bool)
    heart = masks.largest_component(opened)
    if heart.sum() * grid.coarse_voxel_ml < params["heart_min_ml"]:
        return np.zeros(st.shape, bool)
    grown = np.zeros(st.shape, bool)
    grown[box] = ndi.binary_dilation(heart[box], masks.ball(params["heart_open_mm"] * 0.5, grid.coarse_spacing))
    heart = grown & cand | heart
    return masks.fill_holes_axial(heart) & space
