"""Skeleton: a hysteresis threshold (dense seeds, grown a little into partial-volume edges), then the spine,
sternum, ribs and shoulder girdle told apart by position, vertebral levels from the intervertebral discs counted
from the carina (the T4/T5 disc), ribs numbered by the vertebra their head sits against."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from . import masks
from .grid import Grid

VERTEBRAE = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)] + ["S1"]


@dataclass
class Skeleton:
    bone: np.ndarray                      # coarse bone mask (all bones)
    parts: np.ndarray                     # coarse int16: 0 none, else index into ``names``
    names: list = field(default_factory=list)
    spine_axis: np.ndarray | None = None  # per coarse slice (x, y_front, y_back) of the vertebral column, NaN if absent
    levels: str = ""                      # how vertebral levels were anchored
    notes: list = field(default_factory=list)
    canal: np.ndarray | None = None       # per coarse slice (x, y) of the spinal canal's centre, NaN if not found

    def part(self, name: str) -> np.ndarray:
        return self.parts == (self.names.index(name) + 1) if name in self.names else np.zeros(self.parts.shape, bool)



def _body_center(body_slice: np.ndarray) -> tuple[float, float] | None:
    """Centre of the body's bounding box on one axial slice (voxel units), or None when the slice is empty."""
    bx = np.flatnonzero(body_slice.any(axis=1))
    if bx.size == 0:
        return None
    by = np.flatnonzero(body_slice.any(axis=0))
    return (bx[0] + bx[-1]) / 2.0, (by[0] + by[-1]) / 2.0

def bone_condition(params: dict):
    """The full-resolution bone test: above ``edge_hu``, and on the bone's edge above the half-maximum between
    the bone and what surrounds it (a partial-volume voxel belongs to the bone when the bone fills over half of
    it, whatever the bone's density)."""
    base = params["edge_hu"]

    def cond(hu):
        v = np.asarray(hu)
        core = v > base
        lo = ndi.minimum_filter(v, 3)
        edge = core & (lo < base)
        hi = ndi.maximum_filter(v, 3)
        return core & (~edge | (2 * v.astype(np.int32) > hi.astype(np.int32) + lo))
    return cond


def _lumen_like(grid: Grid, strong: np.ndarray, lab: np.ndarray, n: int, params: dict,
                blood_hu: float) -> np.ndarray:
    """Per piece of ``lab`` (1..n): True where a thick piece holds the blood pool's density inside (its median
    within ``lumen_blood_window_hu`` of ``blood_hu``) and is no denser at its edge than inside -- a lumen or a
    heart chamber full of iodine outside the blood pool, not a bone, whose cortex runs all round it denser
    than its marrow (a vessel's calcium is spotty: the edge's median, not its densest part). Thin pieces
    (ribs, a cortex without marrow) have no inside and are never lumen-like. Only asked where the spinal
    canal is nowhere in the field of view: on a coarse grid the block means make thick compact bone (a
    scapula's neck) look as dense inside as at its edge, and with the column found the pool holds the blood."""
    reach = max(1, int(round(params["lumen_core_mm"] / float(grid.coarse_spacing.min()))))
    core = ndi.binary_erosion(strong, iterations=reach)
    out = np.zeros(n, bool)
    if not core.any():
        return out
    edge = strong & ~ndi.binary_erosion(strong)
    idx = np.arange(1, n + 1)
    core_n = np.asarray(ndi.sum(core, lab, index=idx))
    has_core = np.flatnonzero(core_n * grid.coarse_voxel_ml >= params["lumen_core_min_ml"]) + 1
    boxes = ndi.find_objects(lab)
    for i in has_core:
        box = boxes[i - 1]
        own = lab[box] == i
        inside = float(np.median(grid.coarse[box][core[box] & own]))
        rim = float(np.median(grid.coarse_max[box][edge[box] & own]))
        out[i - 1] = rim < inside + params["cortex_over_marrow_hu"] and \
            abs(inside - blood_hu) <= params["lumen_blood_window_hu"]
    return out


def find_bone(grid: Grid, body: np.ndarray, exclude: np.ndarray, params: dict,
              canal: np.ndarray | None = None) -> np.ndarray:
    """Coarse bone: dense voxels plus their partial-volume rim; ``exclude`` holds contrast-filled blood;
    ``canal`` (from :func:`spinal_canal`) tells the spinal canal from the fatty marrow of a vertebral body,
    both pale holes ringed by bone."""
    strong = (grid.coarse > params["hu_min"]) & body & ~exclude
    strong = masks.remove_small(strong, max(2, int(params["min_component_ml"] / grid.coarse_voxel_ml)))
    if exclude.any():
        # with contrast, vessels outside the pool are as dense as marrow: a bone piece has cortex somewhere
        lab, n = masks.label(strong)
        peak = ndi.maximum(grid.coarse_max, lab, index=np.arange(1, n + 1))
        # calcium in a vessel's wall (or a dense streak in its lumen) lies wrapped in the blood pool
        rim = ndi.binary_dilation(strong) & ~strong
        with np.errstate(invalid="ignore", divide="ignore"):  # a piece without a rim has no share
            wrapped = ndi.mean(exclude[rim], lab[rim], index=np.arange(1, n + 1))
        keep = np.zeros(n + 1, bool)
        # with iodine in the blood, soft tissue enhances into the marrow's range: a bone has cortex
        keep[1:] = (np.asarray(peak) > params["cortical_hu"]) & \
            ~(np.nan_to_num(np.asarray(wrapped, float)) > params["wrapped_in_blood"])
        if canal is None or not np.isfinite(canal[:, 0]).any():  # no column to tell the blood by its place
            keep[1:] &= ~_lumen_like(grid, strong, lab, n, params, float(np.median(grid.coarse[exclude])))
        strong = keep[lab]
    weak = (grid.coarse > params["edge_hu"]) & body & ~exclude
    bone = strong | (weak & ndi.binary_dilation(strong))
    # marrow paler than the threshold inside a cortical ring (osteoporotic vertebrae), not the spinal canal
    filled = masks.fill_holes_axial(bone)
    holes = filled & ~bone & ~exclude  # a calcified vessel wall rings blood, not marrow
    if holes.any():
        lab, n = masks.label(holes)
        means = np.asarray(ndi.mean(grid.coarse, lab, index=np.arange(1, n + 1)))
        keep = np.zeros(n + 1, bool)
        keep[1:] = means > params["marrow_hu"]
        if canal is not None and np.isfinite(canal[:, 0]).any():
            # with the canal known, paler (fatty) marrow is bone too; the canal's own hole is not
            ks = np.flatnonzero(np.isfinite(canal[:, 0]))
            spinal = np.unique(lab[np.rint(canal[ks, 0]).astype(int), np.rint(canal[ks, 1]).astype(int), ks])
            keep[1:] |= means > params["fatty_marrow_hu"]
            keep[spinal] = False
        bone |= keep[lab]
    return bone


def split_skeleton(grid: Grid, bone: np.ndarray, body: np.ndarray, lungs: np.ndarray, extremities: np.ndarray,
                   carina, params: dict, axis: np.ndarray | None = None,
                   canal: np.ndarray | None = None) -> Skeleton:
    names: list[str] = []
    parts = np.zeros(bone.shape, np.int16)

    def put(name, m):
        if not m.any():
            return
        if name not in names:
            names.append(name)
        parts[m & (parts == 0)] = names.index(name) + 1

    sx, sy, sz = grid.coarse_spacing
    nx, ny, nz = bone.shape
    notes = []
    if axis is None:
        axis = spine_axis(grid, bone, body)
    xs = np.arange(nx)[:, None]
    ys = np.arange(ny)[None, :]
    spine = np.zeros(bone.shape, bool)
    sternum = np.zeros(bone.shape, bool)
    half_w = params["spine_half_width_mm"] / sx
    for k in range(nz):
        b = bone[:, :, k]
        if not b.any():
            continue
        center = _body_center(body[:, :, k])
        if center is None:
            continue
        mid, y_mid = center
        if np.isfinite(axis[k, 0]):
            x0, y_front, y_back = axis[k]
            zone = (np.abs(xs - x0) <= half_w) & (ys <= y_front + 5.0 / sy) & (ys >= y_back - 10.0 / sy)
            spine[:, :, k] = b & zone
            if canal is not None and np.isfinite(canal[k, 0]):
                spine[:, :, k] = _ringing_the_canal(spine[:, :, k], canal[k], (sx, sy), params)
            mid = x0
        front = (np.abs(xs - mid) <= params["sternum_half_width_mm"] / sx) & (ys > y_mid)
        sternum[:, :, k] = b & front & ~spine[:, :, k]
    # the sternum is the anterior midline bone in front of the lungs' front edge, not a rib end crossing it
    sternum = _anterior_to_lungs(sternum, lungs)
    rest = bone & ~spine & ~sternum
    # a calcified aorta (its wall dense, its lumen filled in as marrow) runs beside the column as an upright tube
    vessel = _upright_tubes(rest, axis, grid.coarse_spacing, params)
    if vessel.any():
        bone = bone & ~vessel
        rest &= ~vessel
    # the shoulder girdle and arms lie outside the rib cage: farther from the lungs than a rib can be
    near_lung = masks.within_mm(lungs, params["rib_max_from_lung_mm"], grid.coarse_spacing)
    arm = rest & ndi.binary_dilation(extremities, iterations=2)
    ribs = rest & near_lung & ~arm
    other = rest & ~ribs & ~arm
    # below the lungs (and beside a tumour or fluid) a rib is far from any lung: what is not outside the cage
    # of ribs is rib
    k_low = None if carina is None else int(carina[2] - round(params["scapula_lowest_below_carina_mm"] / sz))
    girdle, cage_ribs = _outside_the_cage(grid, other, rest & ~arm, body, axis, params, ribs=ribs, k_low=k_low)
    ribs |= cage_ribs
    other = girdle
    if carina is not None and other.any():
        # the scapula ends above the 8th rib; bone far from the lung lower down is rib over pleural fluid
        k_low = int(carina[2] - round(params["scapula_lowest_below_carina_mm"] / sz))
        lab, n = masks.label(other, connectivity=3)
        for i, box in enumerate(ndi.find_objects(lab), start=1):
            if box is not None and np.argwhere(lab[box] == i)[:, 2].mean() + box[2].start < k_low:
                piece = np.zeros(bone.shape, bool)
                piece[box] = lab[box] == i
                ribs |= piece
                other &= ~piece
    rib_pieces = list(_rib_pieces(ribs, axis, params["spine_half_width_mm"] / sx, params["rib_min_reach_mm"] / sx))
    heads = [p[2] for p in rib_pieces if p[3]]
    levels, how = _vertebral_levels(grid, axis, carina, heads, spine, float(lungs.sum()) * grid.coarse_voxel_ml,
                                    rib_pieces, params)
    # no shoulder girdle below the 9th thoracic level (the scapula's lowest angle lies at T7-T8) nor a clavicle
    # below the 4th: bone outside the cage lower down is rib (a costal cartilage ahead of another)
    girdle_floor = {name: _level_bottom(levels, level) for name, level in (("scapula", "T9"), ("clavicula", "T4"))}
    girdle_names = list(_girdle(grid, other | arm, body, axis, arm, carina, girdle_floor, params))
    for name, m in girdle_names:
        if name == "rib":
            rib_pieces += list(_rib_pieces(m, axis, params["spine_half_width_mm"] / sx,
                                           params["rib_min_reach_mm"] / sx))
    for name, m in _label_vertebrae(spine, levels):
        put(f"vertebrae_{name}", m)
    put("sternum", sternum)
    for side, m, head_k, _ in rib_pieces:
        number = _rib_number(head_k, levels)
        if number is not None:
            put(f"rib_{side}_{number}", m)
    for name, m in girdle_names:
        if name != "rib":
            put(name, m)
    if not levels and (spine.any() or ribs.any()):
        notes.append("vertebral levels could not be anchored (no carina, no first or last rib with room "
                     "around it): vertebrae and ribs left unlabelled")
        bone = bone & ~spine & ~ribs
    leftover = bone & (parts == 0)
    if leftover.any():
        # spine voxels without a level and small unclassified pieces join their nearest labelled neighbour
        if (parts > 0).any():
            parts[leftover] = masks.nearest_label(parts, leftover)
        else:
            notes.append("bones found but not told apart")
    return Skeleton(bone, parts, names, axis, how, notes, canal)


def _upright_tubes(rest: np.ndarray, axis: np.ndarray | None, spacing, params: dict) -> np.ndarray:
    """Pieces of ``rest`` (bone off the column and the sternum) that are a calcified aorta, not bone: over at
    least ``tube_min_height_mm`` every axial section is ``tube_diameter_mm`` across (the aorta is 15-35 mm) and,
    on most of them, its centre lies within ``tube_reach_mm`` of the column's x and in front of the vertebral
    body, at most ``tube_front_mm`` ahead of it (the aorta runs down against the column's front; a rib's head
    sits beside the body, not in front of it, and the costal cartilages meet far in front)."""
    out = np.zeros(rest.shape, bool)
    if axis is None:
        return out
    sx, sy, sz = spacing
    lab, _ = masks.label(rest, connectivity=3)
    lo_d, hi_d = params["tube_diameter_mm"]
    for j, box in enumerate(ndi.find_objects(lab), start=1):
        if box is None or (box[2].stop - box[2].start) * sz < params["tube_min_height_mm"]:
            continue
        piece = lab[box] == j
        placed = []
        for k in range(piece.shape[2]):
            xy = np.argwhere(piece[:, :, k])
            extent = max((np.ptp(xy[:, 0]) + 1) * sx, (np.ptp(xy[:, 1]) + 1) * sy) if xy.size else 0.0
            x0, y_front = axis[box[2].start + k, :2]
            if not lo_d <= extent <= hi_d or not np.isfinite(x0 + y_front):
                placed.append(False)
                continue
            cx, cy = xy[:, 0].mean() + box[0].start, xy[:, 1].mean() + box[1].start
            ahead = (cy - y_front) * sy
            placed.append(abs(cx - x0) * sx <= params["tube_reach_mm"] and 0.0 <= ahead <= params["tube_front_mm"])
        if np.mean(placed) >= 0.8:
            out[box] |= piece
    return out


def spine_midline(grid: Grid, body: np.ndarray, params: dict) -> float | None:
    """Coarse x of the vertebral column, for scans without a carina (a field of view cut to one side or to the
    lower chest): the x where the bone in the back half of the body gathers, slice after slice (the column is in
    every slice; ribs spread out). None without enough bone. The side of a point is then its x against this, in
    the canonical grid the affine defines -- never the middle of the image or of the cut body."""
    bone = find_bone(grid, body, np.zeros(body.shape, bool), params)
    ys = np.flatnonzero(body.any(axis=(0, 2)))
    if not bone.any() or ys.size == 0:
        return None
    back = bone[:, : int((ys[0] + ys[-1]) / 2), :]  # canonical y grows anteriorly
    per_slice = back.any(axis=1)  # (x, z): where posterior bone is, slice by slice
    if per_slice.any(axis=0).sum() < 3:
        return None
    width = max(1, int(round(params["spine_half_width_mm"] / grid.coarse_spacing[0])))
    profile = ndi.uniform_filter1d(per_slice.sum(axis=1).astype(np.float64), size=width)
    return float(np.argmax(profile))


def spine_axis(grid: Grid, bone: np.ndarray, body: np.ndarray) -> np.ndarray:
    """Per slice: x of the vertebral column and the y of its front (vertebral body) and back (spinous process).

    The column is the bone on the midline behind the body's centre; its x comes from the bone there.
    """
    sx, sy, sz = grid.coarse_spacing
    nx, ny, nz = bone.shape
    axis = np.full((nz, 3), np.nan)
    for k in range(nz):
        center = _body_center(body[:, :, k])
        if center is None:
            continue
        mid, y_mid = center
        half = max(1, int(round(12.0 / sx)))
        lo, hi = int(max(0, mid - half)), int(min(nx, mid + half + 1))
        strip = bone[lo:hi, : int(y_mid), k]
        if strip.sum() < 20.0 / (sx * sy):
            continue
        yy = np.flatnonzero(strip.any(axis=0))
        # the vertebral body: the most anterior run of bone behind the body's centre
        runs = np.split(yy, np.flatnonzero(np.diff(yy) > max(1, int(6.0 / sy))) + 1)
        front_run = runs[-1]
        xcols = np.flatnonzero(strip[:, front_run].any(axis=1)) + lo
        axis[k] = (xcols.mean(), front_run[-1], yy[0])
    # smooth along z and bridge the discs (no bone in the midline strip at a disc's level)
    good = np.isfinite(axis[:, 0])
    if good.sum() >= 3:
        ks = np.arange(nz)
        first, last = np.flatnonzero(good)[[0, -1]]
        for c in range(3):
            filled = np.interp(ks, ks[good], axis[good, c])
            filled = ndi.median_filter(filled, size=max(3, int(round(12.0 / sz)) | 1), mode="nearest")
            axis[first:last + 1, c] = filled[first:last + 1]
    return axis


def spinal_canal(grid: Grid, body: np.ndarray, params: dict) -> np.ndarray:
    """Per coarse slice the (x, y) centre of the spinal canal, NaN where it is not found: the vertebral
    foramen is a hole of soft-tissue density (cord and fluid) closed all round by bone, of a canal's size,
    near the body's midline in its back half; the holes found are chained along the column (the ring is open
    between the laminae: gaps are bridged). Iodinated blood is as dense as bone, but no vessel encloses a
    canal: this finds the column by its shape and place alone."""
    nx, ny, nz = body.shape
    sx, sy, sz = grid.coarse_spacing
    out = np.full((nz, 2), np.nan)
    sm = ndi.gaussian_filter(grid.coarse, 0.7)
    lo_hu, hi_hu = params["canal_hu"]
    found = {}
    open_rings = {}
    for k in range(nz):
        centre = _body_center(body[:, :, k])
        if centre is None:
            continue
        mid, y_mid = centre
        # only the back half of the body near the midline is searched
        half = (params["canal_off_midline_mm"] + 40.0) / sx
        xa, xb, yb = max(int(mid - half), 0), min(int(mid + half) + 1, nx), min(int(y_mid) + 1, ny)
        if xb - xa < 3 or yb < 3:
            continue
        win = (slice(xa, xb), slice(0, yb), k)
        # the thin laminae at the back of the ring show best unsmoothed, in each block's densest voxel
        bright = (sm[win] > params["canal_wall_hu"]) | (grid.coarse_max[win] > params["canal_wall_hu"])
        bright = ndi.binary_closing(bright, iterations=1) | bright  # a one-voxel gap between lamina and pedicle
        # a field of view that cuts the back closes the ring along the image's edge
        edge = np.zeros(bright.shape, bool)
        edge[:, 0] = True
        edge[0, :] |= xa == 0
        edge[-1, :] |= xb == nx
        edge &= body[win]
        holes = ndi.binary_fill_holes(bright | edge) & ~bright & ~edge & body[win]
        lab, _ = ndi.label(holes)
        best = None
        for i, box, piece, c in _canal_sized_pieces(lab, (sx, sy), xa, mid, y_mid, params):
            hu = float(np.median(sm[win][box][piece]))
            if not lo_hu <= hu <= hi_hu:
                continue
            big = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
            own = lab[big] == i
            ring = ndi.binary_dilation(own) & ~own
            closed = bright[big][ring].mean()
            if closed < params["canal_ring_bone"]:
                continue  # closed by the image's edge more than by bone
            if best is None or closed > best[2] + 0.05 or (closed > best[2] - 0.05 and c[1] < best[1]):
                best = (c[0], c[1], closed)  # ringed by bone all round, and behind the vertebral body
        if best is not None:
            found[k] = np.array(best[:2])
        else:
            open_rings[k] = (win, bright, xa, mid, y_mid)
    body_k = np.flatnonzero(body.any(axis=(0, 1)))
    # a short slab holds less column: most of it will do
    needed = min(params["canal_min_length_mm"], 0.75 * (body_k[-1] - body_k[0]) * sz) if body_k.size else np.inf
    chain = _canal_chain(found, (sx, sy, sz), needed, params)
    uncovered = _beyond_the_chain(chain, open_rings, body_k, sz, params)
    if uncovered:
        # thick slices blur the thin laminae, and an osteopenic spine's are faint: where the closed rings make
        # no column, a ring open at the back but still mostly bone round it marks the canal too
        for k in uncovered:
            win, bright, xa, mid, y_mid = open_rings[k]
            best = _canal_by_rays(sm[win], bright, body[win], (sx, sy), xa, mid, y_mid, params)
            if best is not None:
                found[k] = np.array(best[:2])
        chain = _canal_chain(found, (sx, sy, sz), needed, params)
    if chain is None:
        return out
    ks, pts, best = chain
    kk = ks[best]
    span = np.arange(kk[0], kk[-1] + 1)
    for c in range(2):
        out[span, c] = np.interp(span, kk, pts[best, c])
    # a little way on past the last hole found, where the body goes on (the column runs on straight)
    reach = int(round(params["canal_extend_mm"] / sz))
    for end, direction in ((kk[0], -1), (kk[-1], +1)):
        for k in range(end + direction, end + direction * (reach + 1), direction):
            if not 0 <= k < nz or _body_center(body[:, :, k]) is None:
                break
            out[k] = out[end]
    return out


def _beyond_the_chain(chain, open_rings: dict, body_k: np.ndarray, sz: float, params: dict) -> list:
    """The slices without a closed ring to search for an open one: all of them without a chain; with one, those
    more than ``canal_extend_mm`` beyond its ends where the body goes on (the column runs on there unfound)."""
    if chain is None:
        return sorted(open_rings)
    ks, _, best = chain
    reach = params["canal_extend_mm"] / sz
    first, last = ks[best[0]], ks[best[-1]]
    if body_k.size == 0 or (first - body_k[0] <= reach and body_k[-1] - last <= reach):
        return []
    return [k for k in sorted(open_rings) if k < first or k > last]


def _canal_chain(found: dict, spacing, needed_mm: float, params: dict):
    """The longest chain of canal centres (slice -> (x, y)) that moves smoothly from slice to slice (a stray
    hole starts a chain of its own and does not break the column's), if it spans ``needed_mm``: (slices,
    centres, indices of the chain), else None."""
    if len(found) < 3:
        return None
    sx, sy, sz = spacing
    ks = np.array(sorted(found))
    pts = np.array([found[k] for k in ks])
    on_column = _without_stray_holes(ks, pts, spacing, params)
    if on_column.sum() >= 3:
        ks, pts = ks[on_column], pts[on_column]
    # the longest chain whose centre moves smoothly from slice to slice (a stray hole starts a chain of its
    # own and does not break the column's)
    step = params["canal_step_mm"]
    chains: list[list[int]] = []
    for a in range(len(ks)):
        fits = []
        for c in chains:
            gap = (ks[a] - ks[c[-1]]) * sz
            move = np.hypot(*((pts[a] - pts[c[-1]]) * [sx, sy]))
            if gap <= params["canal_gap_mm"] and move <= step * max(1.0, gap / sz):
                fits.append(c)
        if fits:
            max(fits, key=len).append(a)
        else:
            chains.append([a])
    best = max(chains, key=lambda c: (len(c), ks[c[-1]] - ks[c[0]]))
    best = _joined_chains(best, chains, ks, pts, spacing, params)
    if (ks[best[-1]] - ks[best[0]]) * sz < needed_mm:
        return None
    return ks, pts, best


def _joined_chains(best: list, chains: list, ks: np.ndarray, pts: np.ndarray, spacing, params: dict) -> list:
    """The column's chain joined, above and below, by the chains of at least ``canal_join_min_holes`` holes that
    go on from its ends across a longer gap (up to ``canal_join_gap_mm``) where its course leads: where the laminae
    of an osteopenic spine are too faint to close the ring over a few vertebrae (realct_pathology/lung1001: no
    closed ring over 36 mm of T8-T9, and the column below went unlabelled, its vertebrae named rib)."""
    sx, sy, sz = spacing
    while True:
        lo, hi = ks[best[0]], ks[best[-1]]
        joins = []
        for c in chains:
            if len(c) < params["canal_join_min_holes"]:
                continue
            if ks[c[-1]] < lo:
                a, b = c[-1], best[0]
            elif ks[c[0]] > hi:
                a, b = best[-1], c[0]
            else:
                continue
            gap = ks[b] - ks[a]
            # the column runs on as it ran: the other chain's near end lies where the chain's own course
            # (its last canal_neighbour_mm) leads, not beside it (a rib head's ring 20-40 mm to the side)
            end = best[0] if b == best[0] else best[-1]
            near = [i for i in best if abs(ks[i] - ks[end]) * sz <= params["canal_neighbour_mm"]]
            other_end = a if b == best[0] else b
            if len(near) >= 2 and np.ptp(ks[near]) > 0:
                slope = np.polyfit(ks[near], pts[near], 1)
                expected = slope[0] * ks[other_end] + slope[1]
            else:
                expected = pts[end]
            off = np.hypot(*((pts[other_end] - expected) * [sx, sy]))
            if gap * sz <= params["canal_join_gap_mm"] and off <= params["canal_stray_mm"]:
                joins.append(c)
        if not joins:
            return best
        best = sorted(best + max(joins, key=len), key=lambda i: ks[i])


def _canal_sized_pieces(lab: np.ndarray, spacing, xa: int, mid: float, y_mid: float, params: dict):
    """The labelled pieces of one slice's search window (its x starts at ``xa``) that could be the canal: of a
    canal's area, their centre near the midline ``mid`` and in the back half (y at most ``y_mid``). Yields
    (label, box, piece, centre (x, y) on the slice)."""
    sx, sy = spacing
    lo_a, hi_a = params["canal_area_mm2"]
    for i, box in enumerate(ndi.find_objects(lab), start=1):
        if box is None:
            continue
        piece = lab[box] == i
        if not lo_a <= piece.sum() * sx * sy <= hi_a:
            continue
        c = np.argwhere(piece).mean(axis=0) + [box[0].start + xa, box[1].start]
        if abs(c[0] - mid) * sx > params["canal_off_midline_mm"] or c[1] > y_mid:
            continue
        yield i, box, piece, c


def _canal_by_rays(sm: np.ndarray, bright: np.ndarray, body: np.ndarray, spacing, xa: int, mid: float,
                   y_mid: float, params: dict):
    """The spinal canal on one slice where its bony ring is not closed (partial volume of thick slices): pixels
    of the canal's density from which most rays (``canal_rays_hit`` of 16) meet bone within ``canal_ray_mm``;
    the piece of a canal's size nearest the midline at the back. Returns (x, y, enclosure) or None."""
    sx, sy = spacing
    lo_hu, hi_hu = params["canal_hu"]
    cand = (sm >= lo_hu) & (sm <= hi_hu) & ~bright & body
    if not cand.any():
        return None
    hits = np.zeros(sm.shape, np.int16)
    reach = params["canal_ray_mm"]
    for a in np.arange(16) * (np.pi / 8):
        dx, dy = np.cos(a) / sx, np.sin(a) / sy
        step = 1.0 / max(abs(dx), abs(dy))  # one pixel at a time along the longer axis
        seen = np.zeros(sm.shape, bool)
        for t in np.arange(step, reach + 1e-6, step):
            ox, oy = int(round(t * dx)), int(round(t * dy))
            src = bright[max(ox, 0):bright.shape[0] + min(ox, 0), max(oy, 0):bright.shape[1] + min(oy, 0)]
            seen[max(-ox, 0):bright.shape[0] - max(ox, 0), max(-oy, 0):bright.shape[1] - max(oy, 0)] |= src
        hits += seen
    enclosed = cand & (hits >= params["canal_rays_hit"])
    lab, _ = ndi.label(enclosed)
    best = None
    for _, box, piece, c in _canal_sized_pieces(lab, (sx, sy), xa, mid, y_mid, params):
        score = float(hits[box][piece].mean()) / 16.0
        if best is None or abs(c[0] - mid) < abs(best[0] - mid):
            best = (c[0], c[1], score)
    return best


def _without_stray_holes(ks: np.ndarray, pts: np.ndarray, spacing, params: dict) -> np.ndarray:
    """Which holes lie on the column: within ``canal_stray_mm`` of the median of all holes found within
    ``canal_neighbour_mm`` above and below (at least three of them). The gaps between a rib's head, its neck and
    the vertebra are bony rings too, 20-30 mm to the side; chained across the slices where the canal was not
    found, one of them would pull the column sideways over several vertebrae. The canal's own centre wanders
    a few millimetres front to back as its ring opens and closes (and pale marrow inside an old vertebral body
    is a hole 15-20 mm ahead of it, realct/04), so the tolerance is wider than a step between slices."""
    sx, sy, sz = spacing
    keep = np.ones(len(ks), bool)
    for a in range(len(ks)):
        near = np.abs(ks - ks[a]) * sz <= params["canal_neighbour_mm"]
        if near.sum() >= 3:
            centre = np.median(pts[near], axis=0)
            keep[a] = np.hypot(*((pts[a] - centre) * [sx, sy])) <= params["canal_stray_mm"]
    return keep


def canal_spine_axis(grid: Grid, canal: np.ndarray, body: np.ndarray, params: dict) -> np.ndarray:
    """:func:`spine_axis` from the spinal canal: x of the canal, the front of the vertebral body (the front edge
    of the dense tissue in front of the canal that is mirrored across the canal's x -- a vertebral body is
    symmetric, the aorta beside it is not) and the back of the spinous process."""
    sx, sy, sz = grid.coarse_spacing
    nx, ny, nz = body.shape
    axis = np.full((nz, 3), np.nan)
    sm = ndi.gaussian_filter(grid.coarse, 0.7)
    reach = int(params["vertebral_body_depth_mm"] / sy)
    half = int(params["vertebral_body_half_width_mm"] / sx)
    for k in np.flatnonzero(np.isfinite(canal[:, 0])):
        cx, cy = canal[k]
        i0 = int(round(cx))
        dense = sm[:, :, k] > params["vertebral_body_hu"]
        lo, hi = max(i0 - half, 0), min(i0 + half + 1, nx)
        width = min(i0 - lo, hi - 1 - i0)
        if width < 2:
            continue
        win = dense[i0 - width:i0 + width + 1]
        sym = win & win[::-1]
        col = sym[width - max(1, int(8.0 / sx)):width + max(1, int(8.0 / sx)) + 1].any(axis=0)
        # a lumen of iodinated blood in front of the body (the aorta lying against it) is no marrow: long runs
        # denser than any marrow along the midline end the body
        strip = sm[max(i0 - 2, 0):i0 + 3, :, k].mean(axis=0)
        lumen = strip > params["vertebral_marrow_max_hu"]
        long_run = ndi.binary_opening(lumen, structure=np.ones(max(2, int(round(8.0 / sy))), bool))
        ahead = np.flatnonzero(long_run[int(cy) + 1:]) + int(cy) + 1
        stop = min(cy + reach, ahead[0] - 1 if ahead.size else np.inf)
        ys = np.flatnonzero(col)
        front_zone = ys[(ys > cy) & (ys <= stop)]
        if front_zone.size == 0:
            continue
        # the front edge of the run of dense tissue that starts at the canal
        runs = np.split(front_zone, np.flatnonzero(np.diff(front_zone) > max(1, int(4.0 / sy))) + 1)
        y_front = runs[0][-1]
        if (y_front - cy) * sy < params["vertebral_front_min_mm"]:
            # the back cortex of an osteopenic body whose marrow is no denser than soft tissue, not its front
            # (realct_pathology/lung1001's lower thoracic spine, read 38 mm back on three slices in a row, and
            # the oesophagus found inside the body): the front is taken from the slices round it
            y_front = np.nan
        behind = ys[ys < cy]
        y_back = behind[0] if behind.size else cy - 20.0 / sy
        axis[k] = (cx, y_front, y_back)
    good = np.isfinite(axis[:, 0])
    if good.sum() >= 3:
        ks = np.arange(nz)
        first, last = np.flatnonzero(good)[[0, -1]]
        for c in range(3):
            known = np.isfinite(axis[:, c])
            if not known.any():
                continue
            filled = np.interp(ks, ks[known], axis[known, c])
            if c == 1:
                filled = _shallower_side(axis[:, c], filled)
            filled = ndi.median_filter(filled, size=max(3, int(round(12.0 / sz)) | 1), mode="nearest")
            axis[first:last + 1, c] = filled[first:last + 1]
    return axis


def _shallower_side(values: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """``filled`` with each run of unknown ``values`` set to the lower of the known values on its two sides:
    the vertebral body's front is carried over a disc or a misread slice no farther forward than it is on either
    side (farther, it took in a calcified aortic wall against the body: realct/04)."""
    out = filled.copy()
    known = np.flatnonzero(np.isfinite(values))
    for a, b in zip(known[:-1], known[1:]):
        if b - a > 1:
            out[a + 1:b] = min(values[a], values[b])
    return out


def column_mask(grid: Grid, axis: np.ndarray, params: dict) -> np.ndarray:
    """The vertebral column's tissue on each slice where :func:`canal_spine_axis` placed it: dense tissue
    within the column's box (``vertebral_body_half_width_mm`` either side of the canal, from the spinous
    process to the front of the body) that has its mirror image across the canal -- a vessel beside the
    column has none."""
    sx, sy, _ = grid.coarse_spacing
    nx, ny, nz = grid.coarse_shape
    out = np.zeros(grid.coarse_shape, bool)
    sm = ndi.gaussian_filter(grid.coarse, 0.7)
    half = int(params["vertebral_body_half_width_mm"] / sx)
    for k in np.flatnonzero(np.isfinite(axis[:, 0])):
        x0, y_front, y_back = axis[k]
        i0 = int(round(x0))
        w = min(half, i0, nx - 1 - i0)
        if w < 2:
            continue
        j0, j1 = max(int(np.floor(y_back - 10.0 / sy)), 0), min(int(np.ceil(y_front)) + 1, ny)
        dense = sm[i0 - w:i0 + w + 1, j0:j1, k] > params["vertebral_body_hu"]
        out[i0 - w:i0 + w + 1, j0:j1, k] = dense & dense[::-1]
    return ndi.binary_dilation(out)


def _ringing_the_canal(spine: np.ndarray, canal_k, spacing, params: dict) -> np.ndarray:
    """The pieces of one slice's column box that belong to the vertebra: those reaching within
    ``spine_piece_from_canal_mm`` of the canal's centre (body, pedicles, arch and the processes joined to them).
    A rib's head apart from it, a calcified aorta or a lump of contrast in front of it is left to the rest."""
    lab, n = ndi.label(spine)
    if n == 0:
        return spine
    xs = (np.arange(spine.shape[0]) - canal_k[0]) * spacing[0]
    ys = (np.arange(spine.shape[1]) - canal_k[1]) * spacing[1]
    dist = np.hypot(xs[:, None], ys[None, :])
    near = np.asarray(ndi.minimum(dist, lab, index=np.arange(1, n + 1)))
    keep = np.zeros(n + 1, bool)
    keep[1:] = near <= params["spine_piece_from_canal_mm"]
    return keep[lab]


def _anterior_to_lungs(sternum: np.ndarray, lungs: np.ndarray) -> np.ndarray:
    keep = np.zeros_like(sternum)
    for k in np.flatnonzero(sternum.any(axis=(0, 1))):
        lung_y = np.flatnonzero(lungs[:, :, k].any(axis=0))
        if lung_y.size == 0:
            keep[:, :, k] = sternum[:, :, k]
            continue
        # anterior to the middle of the lungs' anterior-posterior span
        cut = int((lung_y[0] + lung_y[-1]) / 2)
        keep[:, cut:, k] = sternum[:, cut:, k]
    return masks.remove_small(keep, 4)


def _discs(grid: Grid, axis) -> tuple[list, float]:
    """Intervertebral discs: dips of the vertebral body's HU profile along the column; and the level height
    (slices) -- the median disc spacing, or 24 mm when fewer than three discs show."""
    sx, sy, sz = grid.coarse_spacing
    nz = axis.shape[0]
    good = np.flatnonzero(np.isfinite(axis[:, 0]))
    default = 24.0 / sz
    if good.size < max(3, int(40.0 / sz)):
        return [], default
    profile = np.full(nz, np.nan)
    r = max(1, int(round(6.0 / sx)))
    for k in good:
        x0, y_front, _ = axis[k]
        i0, j0 = int(round(x0)), int(round(y_front - 14.0 / sy))  # the middle of the vertebral body
        patch = grid.coarse[max(0, i0 - r):i0 + r + 1, max(0, j0 - r):j0 + r + 1, k]
        if patch.size:
            profile[k] = float(patch.mean())
    prof = np.interp(np.arange(nz), good, profile[good])
    dip = ndi.median_filter(prof, size=max(3, int(round(30.0 / sz)) | 1), mode="nearest") - prof
    min_gap = max(2, int(round(15.0 / sz)))
    discs: list[int] = []
    for k in range(good[0] + 1, good[-1]):
        window = dip[max(0, k - min_gap // 2):k + min_gap // 2 + 1]
        if dip[k] >= 35.0 and dip[k] == window.max() and (not discs or k - discs[-1] >= min_gap):
            discs.append(k)
    if len(discs) < 3:
        return [], default
    gaps = np.diff(discs) * sz
    pitch = float(np.median(gaps))
    # dips missed or doubled (vessels lying against the column disturb its profile) make uneven spacings:
    # trust only an even run of an adult level height
    even = np.mean(np.abs(gaps - pitch) <= 0.25 * pitch)
    lo, hi = params_level_height_mm()
    if even < 0.6 or not lo <= pitch <= hi:
        return [], default
    return discs, pitch / sz


def params_level_height_mm() -> tuple[float, float]:
    """The range of adult vertebral level heights (body and disc) a disc spacing is believed in."""
    return 18.0, 32.0


def _vertebral_levels(grid: Grid, axis, carina, rib_heads, spine, lung_ml: float = 0.0, rib_pieces=(),
                      params: dict | None = None):
    """(name, k_lo, k_hi) per vertebra, numbered from an anchor: the carina at the T4/T5 disc, else the last
    rib's head at T12, else the first rib's head at T1 (each only with room around it in the field of view).
    Else, in a cage of ribs (``cage_min_ribs`` pieces a side) with next to no lung (under
    ``below_lungs_max_ml``: the slab lies below the lung bases, where only the 11th and 12th ribs meet the
    column, a level above or below T12 at most): the lowest rib head at T12, or without a head in view the
    middle of the column in view."""
    discs, pitch = _discs(grid, axis)
    good = np.flatnonzero(np.isfinite(axis[:, 0]))
    if good.size == 0 or not spine.any():
        return [], ""
    lo_k, hi_k = int(good[0]), int(good[-1])
    p = params or {}
    ribs_a_side = min(sum(r[0] == side for r in rib_pieces) for side in ("left", "right")) if rib_pieces else 0
    below_lungs = lung_ml < p.get("below_lungs_max_ml", 0.0) and ribs_a_side >= p.get("cage_min_ribs", 99)
    anchor = None
    if carina is not None:
        anchor, below, how = float(carina[2]), "T5", "carina at the T4/T5 disc"
    elif rib_heads and min(rib_heads) - lo_k >= pitch:
        anchor, below, how = min(rib_heads) - 0.5 * pitch, "L1", "lowest rib at T12"
    elif rib_heads and hi_k - max(rib_heads) >= pitch and not below_lungs:
        anchor, below, how = max(rib_heads) + 0.5 * pitch, "T1", "highest rib at T1"
    elif below_lungs and rib_heads:
        anchor, below, how = min(rib_heads) - 0.5 * pitch, "L1", "lowest rib head below the lungs at T12"
    elif below_lungs:
        anchor, below, how = (lo_k + hi_k) / 2.0 - 0.5 * pitch, "L1", \
            "below the lungs in a cage of ribs: the column in view centred on T12 (within a level)"
    if anchor is None:
        return [], ""
    if discs:
        d = np.asarray(discs, float)
        j = int(np.argmin(np.abs(d - anchor)))
        if abs(d[j] - anchor) <= 0.6 * pitch:
            anchor = float(d[j])
    else:
        how += "; discs not resolved, adult level height assumed"
    first = VERTEBRAE.index(below)
    heights = p.get("level_height_mm", {})
    scale = 1.0 / grid.coarse_spacing[2]  # slices per mm of the adult heights
    if discs and heights:
        # the disc spacing measured is that of the levels whose discs showed: the others are scaled from it
        planes = _disc_planes(anchor, discs, pitch, lo_k, hi_k, first)
        shown = [VERTEBRAE[first + n] for n, k in planes.items()
                 if 0 <= first + n < len(VERTEBRAE) and any(abs(d - k) < 0.5 for d in discs)]
        if shown:
            scale = pitch / float(np.median([heights[v] for v in shown]))
    planes = _disc_planes(anchor, discs, pitch, lo_k, hi_k, first, scale, heights)
    levels = []
    for n in sorted(planes):
        if n + 1 in planes and 0 <= first + n < len(VERTEBRAE):
            levels.append((VERTEBRAE[first + n], planes[n + 1], planes[n]))
    return levels, how


def _disc_planes(anchor: float, discs, pitch: float, lo_k: int, hi_k: int, first: int,
                 scale: float | None = None, heights: dict | None = None) -> dict:
    """Disc planes (coarse slices) numbered downwards from the anchor disc (0): each the disc found near where
    the level's height puts it, else that place. The height is ``pitch`` for every level (``scale`` None), or
    each level's adult height (``heights``, mm) times ``scale`` (slices per mm): the levels grow taller down
    the column, from about 19 mm at T1 to 35 mm in the lumbar spine, so one thoracic pitch counted on into the
    lumbar spine names a vertebra two levels too low over 250 mm."""
    planes = {0: anchor}
    for step in (1, -1):
        n, k = 0, anchor
        while lo_k - pitch <= k <= hi_k + pitch:
            # the level below a plane numbered n is first + n; going down it spans from plane n to n + 1
            level = first + n if step > 0 else first + n - 1
            height = pitch
            if scale is not None and heights and 0 <= level < len(VERTEBRAE):
                height = heights[VERTEBRAE[level]] * scale
            guess = k - step * height
            near = [p for p in discs if abs(p - guess) <= 0.35 * height]
            k = float(near[0]) if near else guess
            n += step
            planes[n] = k
            if not 0 <= first + n < len(VERTEBRAE):
                break
    return planes


def _level_bottom(levels, name: str) -> float | None:
    """The coarse slice of the lower end plane of vertebra ``name``, counted on from the levels in view when it
    lies beyond them (None without levels)."""
    if not levels:
        return None
    for n, lo, _ in levels:
        if n == name:
            return float(lo)
    ends = [(VERTEBRAE.index(n), lo, hi) for n, lo, hi in (levels[0], levels[-1])]  # count on from the nearer end
    i, lo, hi = min(ends, key=lambda e: abs(e[0] - VERTEBRAE.index(name)))
    return float(lo + (i - VERTEBRAE.index(name)) * (hi - lo))


def _label_vertebrae(spine: np.ndarray, levels):
    ks = np.arange(spine.shape[2])
    for name, k_lo, k_hi in levels:
        sel = (ks >= k_lo) & (ks < k_hi)
        if not sel.any():
            continue
        m = np.zeros_like(spine)
        m[:, :, sel] = spine[:, :, sel]
        if m.any():
            yield name, m


def _rib_pieces(ribs: np.ndarray, axis, half_width: float, reach: float = 0.0):
    """(side, mask, head slice, at the column) per rib component; the head is its point nearest the column's
    axis, at the column when it lies against the side of the spine's box (``half_width`` coarse voxels either
    side of the axis) and the piece reaches ``reach`` coarse voxels out: a rib cut by the field of view or by
    the slab's ends shows no head."""
    lab, n = masks.label(ribs, connectivity=3)
    if n == 0:
        return
    nz = ribs.shape[2]
    mids = axis[:, 0]
    fallback = float(np.nanmean(mids)) if np.isfinite(mids).any() else ribs.shape[0] / 2.0
    for i, box in enumerate(ndi.find_objects(lab), start=1):
        if box is None:
            continue
        comp = lab[box] == i
        pts = np.argwhere(comp) + [b.start for b in box]
        mid = np.where(np.isfinite(mids[pts[:, 2]]), mids[np.clip(pts[:, 2], 0, nz - 1)], fallback)
        side = "left" if np.median(pts[:, 0] - mid) < 0 else "right"  # canonical RAS: left = smaller x
        j = np.argmin(np.abs(pts[:, 0] - mid) + 0.5 * (pts[:, 1] - pts[:, 1].min()))
        head = pts[j]
        k = int(head[2])
        # a rib's head lies beside the column (its part inside the spine's box is labelled with the spine); a
        # rib runs on far out to the side: a lumbar transverse process or a calcified aorta does not
        off = np.abs(pts[:, 0] - mid)
        at_column = bool(np.isfinite(axis[k, 0]) and 0.5 * half_width <= abs(head[0] - axis[k, 0]) <= half_width + 3
                         and head[1] <= axis[k, 1] + 3 and off.max() >= reach)
        m = np.zeros(ribs.shape, bool)
        m[box] = comp
        yield side, m, k, at_column


def _rib_number(head_k: int, levels) -> int | None:
    """The thoracic level whose vertebra the rib head sits against (nearest level when between)."""
    thoracic = [(name, lo, hi) for name, lo, hi in levels if name.startswith("T")]
    if not thoracic:
        return None
    for name, lo, hi in thoracic:
        if lo <= head_k < hi:
            return int(name[1:])
    dist = [(min(abs(head_k - lo), abs(head_k - hi)), int(name[1:])) for name, lo, hi in thoracic]
    best = min(dist)
    return best[1] if best[0] <= 1.5 * (thoracic[0][2] - thoracic[0][1]) else None


def _cage_centre(body_slice: np.ndarray, axis_k) -> tuple[float, float] | None:
    """Centre of the rib cage on one slice: the column's x where it is placed, the body's middle front to back."""
    c = _body_center(body_slice)
    if c is None:
        return None
    return (float(axis_k[0]) if np.isfinite(axis_k[0]) else c[0]), c[1]


def _outside_the_cage(grid: Grid, bone: np.ndarray, cage: np.ndarray, body: np.ndarray, axis, params: dict,
                      ribs: np.ndarray | None = None, k_low: int | None = None):
    """Split the pieces of ``bone`` into those outside the rib cage (shoulder girdle, arms) and ribs, by anatomy:
    seen from the cage's centre, the ribs are the innermost bone of the body's wall (``cage``: all bone but the
    column, the sternum and the arms, within ``cage_wall_mm`` of the skin) in each direction; the scapula, the
    clavicle and the humerus lie outside a rib, with muscle between (``cage_gap_mm``). Directions are pooled
    over a few degrees and slices, so a rib crossing the slice nearby counts. A piece is outside when over
    ``cage_mixed_share[1]`` of it is, inside when under ``cage_mixed_share[0]``; in between it is split voxel
    by voxel, and what of it is not outside stays rib only where it continues a rib (touches ``ribs``, the bone
    already named rib beside the lung) or lies wholly below ``k_low`` (the scapula's lowest slice, from the
    carina; None: no limit): where no rib crosses a direction nearby, the scapula is itself the innermost bone
    there, and its pieces, taken for rib, pulled the pleural cage out over the shoulder muscles
    (realct_pathology/lung1016's apex)."""
    sx, sy, sz = grid.coarse_spacing
    nbins = 72
    spread = 2  # bins (5 degrees each) either side
    w = max(1, int(round(params["cage_slab_mm"] / sz)))
    nz = bone.shape[2]
    outside = np.zeros(bone.shape, bool)
    per_slice = {}
    for k in np.flatnonzero(bone.any(axis=(0, 1))):
        centre = _cage_centre(body[:, :, k], axis[k])
        if centre is None:
            continue
        per_slice[k] = centre
    # the cage is the body's wall: bone deep inside it (contrast in the bowel, a calcified aorta, a gallstone)
    # is not what a rib lies under
    wall = np.zeros(cage.shape, bool)
    for k in np.flatnonzero(cage.any(axis=(0, 1))):
        depth = ndi.distance_transform_edt(body[:, :, k], sampling=(sx, sy))
        wall[:, :, k] = cage[:, :, k] & (depth <= params["cage_wall_mm"])
    for k, centre in per_slice.items():
        inner = np.full(nbins, np.inf)
        for j in range(max(0, k - w), min(nz, k + w + 1)):
            pts = np.argwhere(wall[:, :, j])
            if pts.size == 0:
                continue
            dx, dy = (pts[:, 0] - centre[0]) * sx, (pts[:, 1] - centre[1]) * sy
            b = ((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * nbins).astype(int) % nbins
            np.minimum.at(inner, b, np.hypot(dx, dy))
        pooled = np.min([np.roll(inner, d) for d in range(-spread, spread + 1)], axis=0)
        pts = np.argwhere(bone[:, :, k])
        if pts.size == 0:
            continue
        dx, dy = (pts[:, 0] - centre[0]) * sx, (pts[:, 1] - centre[1]) * sy
        b = ((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * nbins).astype(int) % nbins
        far = np.hypot(dx, dy) > pooled[b] + params["cage_gap_mm"]
        outside[pts[far, 0], pts[far, 1], k] = True
    # piece by piece where a piece is mostly one or the other; where it is both (a scapula touching a rib at
    # 2 mm, realct/09), voxel by voxel
    girdle = np.zeros(bone.shape, bool)
    lab, n = masks.label(bone, connectivity=3)
    if n:
        share = np.asarray(ndi.mean(outside, lab, index=np.arange(1, n + 1)))
        lo, hi = params["cage_mixed_share"]
        whole, mixed = np.zeros(n + 1, bool), np.zeros(n + 1, bool)
        whole[1:] = share > hi
        mixed[1:] = (share > lo) & (share <= hi)
        girdle = whole[lab] | (mixed[lab] & outside)
        inner = mixed[lab] & ~outside
        if inner.any():
            touching = ribs if ribs is not None else np.zeros(bone.shape, bool)
            ilab, m = masks.label(inner, connectivity=3)
            if m:
                near = ndi.binary_dilation(touching, structure=np.ones((3, 3, 3), bool)) & inner
                goes_on = np.zeros(m + 1, bool)
                goes_on[np.unique(ilab[near])] = True
                goes_on[0] = True
                # or lies below the scapula's lowest reach (unknown without a carina): a lower rib, far from the
                # lungs under their bases (realct/04)
                for j, box in enumerate(ndi.find_objects(ilab), start=1):
                    if box is not None and not goes_on[j]:
                        goes_on[j] = k_low is None or box[2].stop <= k_low
                girdle |= ~goes_on[ilab]
    return girdle, bone & ~girdle


def _girdle(grid: Grid, other: np.ndarray, body: np.ndarray, axis, arm: np.ndarray, carina, floor: dict,
            params: dict):
    """Bone outside the rib cage named by anatomy: the humerus in the arm or beside the cage, the clavicle in
    front (above the carina, or the T4 level), the scapula behind (above ``scapula_lowest_below_carina_mm``
    below the carina, or the T9 level). ``floor``: the lowest coarse slice each may reach where the vertebral
    levels are known. What fits none of them (a costal cartilage ahead of another, low in the cage) is named
    "rib"."""
    if not other.any():
        return
    sx, sy, sz = grid.coarse_spacing
    lab, n = masks.label(other, connectivity=3)
    for i, box in enumerate(ndi.find_objects(lab), start=1):
        if box is None:
            continue
        local = lab[box] == i
        pts = np.argwhere(local) + [b.start for b in box]
        comp = np.zeros(other.shape, bool)
        comp[box] = local
        # each voxel seen from its own slice's cage centre: right or left, in front or behind, beside
        dx, dy = np.zeros(len(pts)), np.zeros(len(pts))
        for k in np.unique(pts[:, 2]):
            centre = _cage_centre(body[:, :, k], axis[k])
            if centre is None:
                continue
            at = pts[:, 2] == k
            dx[at], dy[at] = (pts[at, 0] - centre[0]) * sx, (pts[at, 1] - centre[1]) * sy
        side = "left" if np.median(dx) < 0 else "right"  # canonical RAS: left = smaller x
        mx, my = float(np.median(dx)), float(np.median(dy))
        kc = float(pts[:, 2].mean())
        if (local & arm[box]).sum() > 0.5 * local.sum() or abs(my) < params["humerus_beside_ratio"] * abs(mx):
            yield f"humerus_{side}", comp
        elif my > 0:
            low = carina[2] if carina is not None else floor.get("clavicula")
            yield (f"clavicula_{side}" if low is None or kc >= low else "rib"), comp
        else:
            low = carina[2] - params["scapula_lowest_below_carina_mm"] / sz if carina is not None \
                else floor.get("scapula")
            yield (f"scapula_{side}" if low is None or kc >= low else "rib"), comp


def solid_vertebrae(labels: np.ndarray, hu: np.ndarray, vertebra_values, column: np.ndarray | None,
                    canal_xy: np.ndarray | None, spacing, params: dict, may_take, keep_out=None) -> None:
    """Make each painted vertebra a whole bone, slice by slice on the full-resolution grid (in place).

    Painting follows the bone's density, so a vertebra comes out as its cortical shell, and on thick slices
    (where partial volume hides a thin cortex) as little more than its posterior arch: the cancellous marrow
    (50-250 HU; fatty in the old) is paler than the bone threshold. A vertebra is the whole bone: from the
    painted bone each section grows through tissue denser than ``vertebra_grow_hu`` up to ``vertebra_grow_mm``,
    inside the column's box (``column``: fine (x, y_front, y_back) per slice, NaN where the column is not
    placed; ``spine_half_width_mm`` either side), outside ``keep_out`` (contrast-filled blood), not past the
    body's painted front cortex, only in pieces that start at the canal (marrow lies behind the cortex; a vessel
    or a crus lying against the body is reached only through it) and only where its mirror image across the
    canal's plane grew too. The section is then closed over small gaps (``vertebra_close_mm``) and its holes
    filled -- but not the spinal canal's (the hole that holds ``canal_xy``, fine (x, y) per slice) nor, where
    the canal is not placed, a hole paler than marrow. Added voxels take the level of the nearest painted
    vertebra voxel; only voxels where ``may_take(labels)`` holds change."""
    values = np.asarray(sorted(vertebra_values), labels.dtype)
    if values.size == 0:
        return
    sx, sy = float(spacing[0]), float(spacing[1])
    disk = masks.ball(params["vertebra_close_mm"], (sx, sy))
    steps = max(1, int(round(params["vertebra_grow_mm"] / min(sx, sy))))
    half_w = params["spine_half_width_mm"] / sx
    pad = disk.shape[0] // 2 + 2
    nx, ny, nz = labels.shape
    discs = _disc_sections(hu, column, canal_xy, spacing, params)
    for k in range(nz):
        sl = labels[:, :, k]
        spine = np.isin(sl, values)
        if not spine.any():
            continue
        xs, ys = np.flatnonzero(spine.any(axis=1)), np.flatnonzero(spine.any(axis=0))
        known = canal_xy is not None and np.isfinite(canal_xy[k, 0])
        grow = steps if known and column is not None and np.isfinite(column[k, 0]) else 0
        x0, x1 = max(xs[0] - pad - grow, 0), min(xs[-1] + pad + grow + 1, nx)
        y0, y1 = max(ys[0] - pad - grow, 0), min(ys[-1] + pad + grow + 1, ny)
        s = spine[x0:x1, y0:y1]
        if known:
            s = _off_the_vertebra(sl[x0:x1, y0:y1], s, canal_xy[k], (x0, y0), (sx, sy), params)
        if discs[k]:  # a disc's section keeps only its bone (the endplates' rim, the arch)
            _clear_disc(sl[x0:x1, y0:y1], s, hu[x0:x1, y0:y1, k], canal_xy[k], (x0, y0), (sx, sy), params,
                        may_take)
            continue
        free = may_take(sl[x0:x1, y0:y1])
        if keep_out is not None:
            free &= ~keep_out[x0:x1, y0:y1, k]
        region = s
        if grow:
            region = _grow_marrow(s, hu[x0:x1, y0:y1, k], free, column[k], canal_xy[k], (x0, y0), (sx, sy),
                                  half_w, grow, params)
        closed = region | ndi.binary_closing(region, disk)
        filled = ndi.binary_fill_holes(closed)
        holes, n = ndi.label(filled & ~closed)
        if n:
            keep = np.zeros(n + 1, bool)
            med = ndi.median(hu[x0:x1, y0:y1, k], holes, index=np.arange(1, n + 1))
            # with the canal placed, fatty marrow is bone too; without it only marrow denser than the canal
            keep[1:] = np.asarray(med) > params["fatty_marrow_hu" if known else "marrow_hu"]
            if known:
                cx, cy = int(round(canal_xy[k, 0])) - x0, int(round(canal_xy[k, 1])) - y0
                if 0 <= cx < holes.shape[0] and 0 <= cy < holes.shape[1]:
                    keep[holes[cx, cy]] = False
            closed |= keep[holes]
        if known:
            closed |= _body_hull(closed, hu[x0:x1, y0:y1, k], free, canal_xy[k], (x0, y0), (sx, sy), params)
        # what the smoothing and the closing added on the outer edge and is paler than marrow is soft tissue
        rim = closed & ~s & ndi.binary_dilation(~closed) & (hu[x0:x1, y0:y1, k] < params["vertebra_grow_hu"])
        add = closed & ~s & free & ~rim
        crop = sl[x0:x1, y0:y1]
        if add.any():
            _, (ix, iy) = ndi.distance_transform_edt(~s, return_indices=True)
            crop[add] = crop[ix[add], iy[add]]


def _disc_sections(hu: np.ndarray, column: np.ndarray | None, canal_xy: np.ndarray | None, spacing,
                   params: dict) -> np.ndarray:
    """Per full-resolution slice: does it cut an intervertebral disc? The middle of the vertebral body is read
    slice by slice (the densest of patches ``disc_patch_mm`` across, at ``disc_patch_offsets_mm`` from the
    canal's plane, halfway between the canal's front wall and the body's front); a disc is no denser than
    ``disc_max_hu`` there, in a run of such slices at most ``disc_max_mm`` long whose median is
    ``disc_edge_hu`` paler than the slices bounding it (the inner one at the scan's end) and ``disc_dip_hu``
    paler than the paler of the densest sections within ``disc_reference_mm`` above and below: it lies
    between the dense endplates of two bodies and across the body's whole width (a focal lytic lesion leaves
    marrow beside it and stays vertebra). Where a fatty or osteoporotic body is as pale as its discs the run
    is long, or not sharply bounded, and nothing is taken for disc."""
    nz = hu.shape[2]
    out = np.zeros(nz, bool)
    if column is None or canal_xy is None:
        return out
    sx, sy, sz = (float(v) for v in spacing)
    rx, ry = (max(1, int(round(params["disc_patch_mm"] / 2 / s))) for s in (sx, sy))
    middle = np.full(nz, np.nan)
    for k in range(nz):
        if not (np.isfinite(column[k, 0]) and np.isfinite(canal_xy[k, 0])):
            continue
        back = canal_xy[k, 1] + params["vertebra_hull_from_canal_mm"] / sy
        j = int(round((back + column[k, 1]) / 2))
        if column[k, 1] - back < 2 * ry or not 0 <= j < hu.shape[1]:
            continue
        reads = [np.median(hu[max(0, i - rx):i + rx + 1, max(0, j - ry):j + ry + 1, k])
                 for i in (int(round(column[k, 0] + mm / sx)) for mm in params["disc_patch_offsets_mm"])
                 if 0 <= i < hu.shape[0]]
        if reads:
            middle[k] = float(max(reads))
    # a run of pale sections longer than a disc is marrow (a fatty or osteoporotic body, or a disc and the
    # marrow beside it); a run an unread slice cuts has no known length (at the scan's end only its inner side
    # bounds it)
    w = max(1, int(round(params["disc_reference_mm"] / sz)))
    known = np.isfinite(middle)
    runs, n = ndi.label(known & (np.where(known, middle, np.inf) <= params["disc_max_hu"]))
    for i in range(1, n + 1):
        ks = np.flatnonzero(runs == i)
        lo, hi = ks[0], ks[-1]
        sides = [(middle[lo - 1], middle[max(0, lo - w):lo]) if lo > 0 else None,
                 (middle[hi + 1], middle[hi + 1:hi + 1 + w]) if hi < nz - 1 else None]
        bounds = [b for b in sides if b is not None]
        if not bounds or any(not np.isfinite(edge) for edge, _ in bounds) or ks.size * sz > params["disc_max_mm"]:
            continue
        pale = float(np.median(middle[ks]))
        densest = min(np.nanmax(near) for _, near in bounds)
        # and sharply bounded: pale marrow swings by a few tens of HU from slice to slice
        edge = min(edge for edge, _ in bounds)
        out[ks] = densest - pale >= params["disc_dip_hu"] and edge - pale >= params["disc_edge_hu"]
    return out


def _clear_disc(crop: np.ndarray, s: np.ndarray, hu: np.ndarray, canal_k, origin, spacing, params: dict,
                may_take) -> None:
    """On a disc's section, what the coarse painting gave the vertebra in front of the canal's front wall and is
    paler than bone (the disc) takes the label of the nearest voxel ``may_take`` allows (the soft tissue round
    the column), in place."""
    if not np.isfinite(canal_k[0]):
        return
    gy = (np.arange(s.shape[1]) + origin[1] - canal_k[1]) * spacing[1]
    disc = s & (gy[None, :] >= params["vertebra_hull_from_canal_mm"]) & ~bone_condition(params)(hu)
    soft = may_take(crop)
    if disc.any() and soft.any():
        crop[disc] = masks.nearest_label(np.where(soft, crop, 0), disc)


def _off_the_vertebra(crop: np.ndarray, s: np.ndarray, canal_k, origin, spacing, params: dict) -> np.ndarray:
    """One section of the painted column (``s``, in ``crop`` of the label slice at ``origin``) less the pieces
    that come nowhere near the canal (``spine_piece_from_canal_mm``), as :func:`_ringing_the_canal` does on the
    coarse grid: a calcified aortic wall joined to the body at 2 mm is apart from it at full resolution, and
    its ring, filled as marrow, made the aorta a vertebra (realct/04). Those pieces take the label of the
    nearest voxel that is not vertebra (in place); returns the section kept."""
    lab, n = ndi.label(s, structure=np.ones((3, 3), bool))
    if n < 2:
        return s
    xs = (np.arange(s.shape[0]) + origin[0] - canal_k[0]) * spacing[0]
    ys = (np.arange(s.shape[1]) + origin[1] - canal_k[1]) * spacing[1]
    dist = np.broadcast_to(np.hypot(xs[:, None], ys[None, :]), s.shape)
    near = np.asarray(ndi.minimum(dist, lab, index=np.arange(1, n + 1)))
    keep = np.zeros(n + 1, bool)
    keep[0] = True
    keep[1:] = near <= params["spine_piece_from_canal_mm"]
    drop = ~keep[lab]
    if not drop.any():
        return s
    _, (ix, iy) = ndi.distance_transform_edt(s, return_indices=True)
    crop[drop] = crop[ix[drop], iy[drop]]
    return s & ~drop


def _body_hull(closed: np.ndarray, hu: np.ndarray, free: np.ndarray, canal_k, origin, spacing,
               params: dict) -> np.ndarray:
    """The vertebral body's section made convex, as a body is: where fatty or osteoporotic marrow is paler
    than ``vertebra_grow_hu`` and the cortex is open on a slice, the marrow is a bay, not a hole, and neither
    growing nor hole filling takes it (realct/04, an old patient with a calcified aorta). The body is the
    largest piece ``vertebra_hull_from_canal_mm`` or more ahead of the canal's centre (the canal's front
    wall); its hull adds what is free, denser than fatty marrow, and within ``vertebral_body_half_width_mm``
    of the canal's plane."""
    sx, sy = spacing
    gx = (np.arange(closed.shape[0]) + origin[0] - canal_k[0]) * sx
    gy = (np.arange(closed.shape[1]) + origin[1] - canal_k[1]) * sy
    zone = (np.abs(gx)[:, None] <= params["vertebral_body_half_width_mm"]) & \
        (gy[None, :] >= params["vertebra_hull_from_canal_mm"])
    lab, n = ndi.label(closed & zone)
    if n == 0:
        return np.zeros_like(closed)
    body = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    if body.sum() < 3:
        return np.zeros_like(closed)
    hull = masks.convex_hull_2d(body)
    return hull & zone & free & ~closed & (hu > params["fatty_marrow_hu"])


def _grow_marrow(s: np.ndarray, hu: np.ndarray, free: np.ndarray, column_k, canal_k, origin, spacing,
                 half_w: float, steps: int, params: dict) -> np.ndarray:
    """One section of the column (``s``, painted bone, in a crop at ``origin``) grown into its marrow; see
    :func:`solid_vertebrae`."""
    sx, sy = spacing
    x0, y0 = origin
    cx, y_front, y_back = column_k
    gx = np.arange(x0, x0 + s.shape[0])[:, None]
    gy = np.arange(y0, y0 + s.shape[1])[None, :]
    box = (np.abs(gx - cx) <= half_w) & (gy <= y_front + 5.0 / sy) & (gy >= y_back - 10.0 / sy)
    # the body's front cortex, where painted, is its front: nothing grows past it (column by column; a column
    # with no front cortex painted takes its neighbour's, within a few millimetres)
    ahead = s & (gy > canal_k[1] + params["vertebra_marrow_from_canal_mm"] / sy)
    has = ahead.any(axis=1)
    if has.any():
        front = ahead.shape[1] - 1 - np.argmax(ahead[:, ::-1], axis=1) + y0
        gap, (near,) = ndi.distance_transform_edt(~has, return_indices=True)
        limit = np.where(gap * sx <= params["vertebra_close_mm"] * 3, front[near], np.inf)
        box &= gy <= limit[:, None]
    level = hu.astype(np.float32)
    if params["vertebra_grow_smooth"]:
        level = ndi.gaussian_filter(level, 0.7)
    dense = level > params["vertebra_grow_hu"]
    grown = ndi.binary_dilation(s, iterations=steps, mask=(dense & box & free) | s) & ~s
    # marrow starts at the canal (the body's back wall is the canal's front)
    pieces, n = ndi.label(grown)
    if n:
        dist = np.hypot((gx - canal_k[0]) * sx, (gy - canal_k[1]) * sy)
        near_canal = np.asarray(ndi.minimum(np.broadcast_to(dist, s.shape), pieces, index=np.arange(1, n + 1)))
        ok = np.zeros(n + 1, bool)
        ok[1:] = near_canal <= params["vertebra_marrow_from_canal_mm"]
        grown = ok[pieces]
    # a vertebra is symmetric about the canal's plane; the aorta or a crus lying against it is not
    mx = np.rint(2 * cx - np.arange(x0, x0 + s.shape[0])).astype(int) - x0
    inside = (mx >= 0) & (mx < s.shape[0])
    mirror = np.zeros_like(grown)
    mirror[inside] = (grown | s)[mx[inside]]
    return s | (grown & mirror)
