"""Body outline: everything denser than air, without the scanner table, holes (lungs, airways) filled."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from . import masks
from .grid import Grid


@dataclass
class Body:
    trunk: np.ndarray        # coarse, filled (lungs and airways inside)
    extremities: np.ndarray  # coarse, arms lying beside the trunk as separate pieces
    touches_edge: bool       # the body is cut by the field of view
    outside_air: np.ndarray | None = None  # pure air let in by closing the body at the image edge


def find_body(grid: Grid, params: dict) -> Body:
    dense = grid.coarse > params["hu_min"]
    # An opening removes the thin shells of the table and the blanket; the trunk is the largest piece left.
    opened = ndi.binary_opening(dense, masks.ball(params["open_mm"], grid.coarse_spacing))
    labels, n = masks.label(opened)
    if n == 0:
        empty = np.zeros(grid.coarse_shape, bool)
        return Body(empty, empty.copy(), False, empty.copy())
    sizes = masks.component_sizes(labels, n)
    sizes[0] = 0
    trunk_id = int(np.argmax(sizes))
    trunk = labels == trunk_id
    # Give back the skin voxels the opening shaved off (only those touching the trunk).
    trunk = ndi.binary_dilation(trunk, masks.ball(params["open_mm"], grid.coarse_spacing)) & dense | trunk
    extremities = _extremities(labels, sizes, trunk_id, trunk, grid, params)
    closed = masks.fill_holes_axial(trunk, bridge_border=False)
    trunk = masks.fill_holes_axial(trunk, bridge_border=True, hu=grid.coarse, air_hu=params["outside_air_hu"])
    # what only the open-edge rules closed, where it is pure air, is the air around the patient, not lung
    outside = trunk & ~closed & (ndi.uniform_filter(grid.coarse, 3) < params["outside_air_hu"])
    edge = trunk[[0, -1], :, :].any() or trunk[:, [0, -1], :].any()
    return Body(trunk, extremities & ~trunk, bool(edge), outside)


def _extremities(labels, sizes, trunk_id, trunk, grid: Grid, params: dict) -> np.ndarray:
    """Separate pieces beside the trunk and as long as it is in z (arms held down)."""
    min_vox = params["min_extremity_ml"] / grid.coarse_voxel_ml
    out = np.zeros(grid.coarse_shape, bool)
    trunk_z = np.flatnonzero(trunk.any(axis=(0, 1)))
    if trunk_z.size == 0:
        return out
    for idx in np.flatnonzero(sizes >= min_vox):
        if idx == trunk_id:
            continue
        piece = labels == idx
        z = np.flatnonzero(piece.any(axis=(0, 1)))
        # the table is flat and runs under the whole trunk; an arm is taller than it is wide
        xs = np.flatnonzero(piece.any(axis=(1, 2)))
        ys = np.flatnonzero(piece.any(axis=(0, 2)))
        width_x = (xs[-1] - xs[0] + 1) * grid.coarse_spacing[0]
        height_y = (ys[-1] - ys[0] + 1) * grid.coarse_spacing[1]
        if height_y >= 0.6 * width_x and z.size >= 3:
            out |= piece
    return out


def split_arms(grid: Grid, trunk: np.ndarray, lungs: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Arms held down and touching the trunk: per axial slice, where the outline has a notch in front of and
    behind the flank beyond the lungs' sideways extent (the armpit folds), the part outside the line joining the
    two notches is arm. Returns (trunk without arms, arms)."""

    arms = np.zeros(trunk.shape, bool)
    if not lungs.any():
        return trunk, arms
    sx, sy = grid.coarse_spacing[:2]
    lung_x = np.flatnonzero(lungs.any(axis=(1, 2)))
    lx0, lx1 = lung_x[0], lung_x[-1]
    depth_min = params["arm_notch_mm"]
    nx, ny = trunk.shape[:2]
    gx, gy = np.mgrid[0:nx, 0:ny]
    for k in range(trunk.shape[2]):
        b = trunk[:, :, k]
        if b.sum() < 50:
            continue
        bx = np.flatnonzero(b.any(axis=1))
        if lx0 <= bx[0] and bx[-1] <= lx1:
            continue  # nothing beside the lungs' extent
        hull = masks.convex_hull_2d(b)
        defect = hull & ~b
        if not defect.any():
            continue
        depth = ndi.distance_transform_edt(hull, sampling=(sx, sy))
        lab, n = ndi.label(defect)
        yc = np.flatnonzero(b.any(axis=0)).mean()
        notches = {"left": [], "right": []}
        for i in range(1, n + 1):
            piece = lab == i
            d = np.where(piece, depth, 0)
            j = np.unravel_index(np.argmax(d), d.shape)
            if d[j] < depth_min:
                continue
            if j[0] < lx0:
                notches["left"].append((d[j], j))
            elif j[0] > lx1:
                notches["right"].append((d[j], j))
        for side, found in notches.items():
            front = [f for f in found if f[1][1] > yc]
            back = [f for f in found if f[1][1] <= yc]
            if not front or not back:
                continue
            (_, a), (_, c) = max(front), max(back)
            # the side of the line a-c away from the lungs is the arm
            cross = (c[0] - a[0]) * (gy - a[1]) - (c[1] - a[1]) * (gx - a[0])
            ref_x = (lx0 + lx1) / 2.0
            ref = (c[0] - a[0]) * (yc - a[1]) - (c[1] - a[1]) * (ref_x - a[0])
            arm = b & (np.sign(cross) != np.sign(ref)) & (gx < lx0 if side == "left" else gx > lx1)
            arms[:, :, k] |= arm
    # a real arm runs through many slices; a notch or two in the flank is not one
    arms = masks.remove_small(arms, int(params["min_extremity_ml"] / grid.coarse_voxel_ml))
    return trunk & ~arms, arms
