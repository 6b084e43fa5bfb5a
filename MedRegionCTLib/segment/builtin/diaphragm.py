"""The diaphragm as a height map: where a lung rests on an abdominal organ (soft tissue under its floor, not
fat or fluid), its floor is the diaphragm; normalised convolution of those heights carries the surface under the
heart and out to the body wall. Everything in the body below it is abdomen.

A mass resting on the diaphragm lifts the lung's floor above it, and has the attenuation of an organ: floors
lifted well above a smooth dome (a quadratic surface fitted to each side's floors, refitted without them) are
left out, so the mass stays in the chest. Consolidated or collapsed lung at the base lifts the floor too; it
keeps air in its bronchi, so a floor with air bubbles under it is left out as well, and so is a floor with
fluid under it (the airless lung pressed on an effusion)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .grid import Grid


def diaphragm_height(grid: Grid, lungs: np.ndarray, body: np.ndarray, params: dict,
                     exclude_columns: np.ndarray | None = None) -> np.ndarray | None:
    """Per (x, y) coarse column the coarse z (float) of the diaphragm's upper surface, or None when no lung
    rests on the diaphragm in the field of view. ``exclude_columns`` (x, y) are not used as floor points (the
    lung over the heart rests on the heart, not on the diaphragm)."""
    if not lungs.any():
        return None
    nx, ny, nz = lungs.shape
    has = lungs.any(axis=2)
    low = np.argmax(lungs, axis=2)  # lowest lung voxel per column
    usable = has & (low >= 2)
    if exclude_columns is not None:
        usable &= ~exclude_columns
    xs, ys = np.nonzero(usable)
    if xs.size < 20:
        return None
    zs = low[xs, ys]
    # under the floor (4-6 mm down): an abdominal organ, not fat, fluid or the edge of the image
    k_under = np.maximum(zs - max(1, int(round(5.0 / grid.coarse_spacing[2]))), 0)
    hu_under = grid.coarse[xs, ys, k_under]
    ok = body[xs, ys, k_under] & ~lungs[xs, ys, k_under] & (hu_under > params["organ_hu_min"]) \
        & (hu_under < params["organ_hu_max"])
    lung_z = np.flatnonzero(lungs.any(axis=(0, 1)))
    ok &= zs <= lung_z[0] + 0.6 * (lung_z[-1] - lung_z[0])  # the lower part of the lungs
    if np.isfinite(params.get("dome_outlier_mm", np.inf)):
        # airless lung (consolidation, collapse) still holds air in its bronchi: a floor with air bubbles under
        # it rests on diseased lung, not on the diaphragm (kept when that would leave too few floors: bowel gas)
        bubbly = _air_below(grid, xs, ys, zs, params["air_below_mm"], params["air_below_hu"],
                            params["fluid_below_hu"])
        if (ok & ~bubbly).sum() >= 0.5 * ok.sum():
            ok &= ~bubbly
    xs, ys, zs = xs[ok], ys[ok], zs[ok].astype(np.float64) - 0.5
    keep = _on_dome(grid, xs, ys, zs, params.get("dome_outlier_mm", np.inf))
    xs, ys, zs = xs[keep], ys[keep], zs[keep]
    if xs.size < 20:
        return None
    known = np.full((nx, ny), np.nan)
    order = np.argsort(-zs)  # where a column crosses the lung twice, its lowest floor wins
    known[xs[order], ys[order]] = zs[order]
    if np.isfinite(params.get("dome_outlier_mm", np.inf)) and params.get("joint_dome"):
        # where the floor was lifted (fluid, airless lung, a mass) there is no floor point: the dome fitted to
        # both sides' good floors (one shape, one height per side) says where the diaphragm lies there
        dome = _joint_dome(grid, xs, ys, zs, (nx, ny))
        lifted = has & np.isnan(known) & (low - dome > params["dome_outlier_mm"] / grid.coarse_spacing[2])
        known[lifted] = dome[lifted]
    w = np.isfinite(known).astype(np.float64)
    v = np.nan_to_num(known)
    # normalised convolution carries the dome under the heart and over floors lifted by fluid
    sigma = params["spread_mm"] / grid.coarse_spacing[:2]
    wf = ndi.gaussian_filter(w, sigma)
    fill = ndi.gaussian_filter(v * w, sigma) / np.maximum(wf, 1e-9)
    far = wf < 1e-4
    if far.any():  # beyond the filter's reach: the nearest known height
        _, idx = ndi.distance_transform_edt(w == 0, return_indices=True)
        fill[far] = v[tuple(idx)][far]
    surf = np.where(w > 0, v, fill)
    surf = ndi.gaussian_filter(surf, 6.0 / grid.coarse_spacing[:2])
    # (no clamping to the lung floor: a lung floor lifted by an effusion is not the diaphragm)
    if np.isfinite(params.get("dome_outlier_mm", np.inf)) and params.get("organ_run_mm", 0) > 0:
        # the dome carried from the floors it has cannot know how far the diaphragm falls behind a recess full
        # of fluid: under the lung, the diaphragm is no higher than where a solid organ begins
        surf = np.minimum(surf, _organ_top(grid, lungs, has, low, params))
    return np.clip(surf, -1, nz)


def _organ_top(grid: Grid, lungs: np.ndarray, has: np.ndarray, low: np.ndarray, params: dict) -> np.ndarray:
    """Per column under the lung, the slice where the first run of organ attenuation at least ``organ_run_mm``
    long begins below the lung's floor (no fluid, no air in it); +inf where there is none or no lung."""
    nx, ny, nz = lungs.shape
    run = max(2, int(round(params["organ_run_mm"] / grid.coarse_spacing[2])))
    # behind the lung, fluid can fill whole columns: they take the floor of the nearest lung column
    dist, (ix, iy) = ndi.distance_transform_edt(~has, sampling=grid.coarse_spacing[:2], return_indices=True)
    near = dist <= params["organ_reach_mm"]
    low = low[ix, iy]
    has = near
    smooth = ndi.uniform_filter(grid.coarse, size=(3, 3, 1))
    organ = (smooth > params["organ_hu_min"]) & (smooth < params["organ_hu_max"])
    # length of the organ run starting at each voxel and going down (towards lower z)
    length = np.zeros(organ.shape, np.int16)
    for k in range(nz):
        length[:, :, k] = np.where(organ[:, :, k], (length[:, :, k - 1] + 1) if k else 1, 0)
    starts = length >= run  # a run of `run` voxels ends here going up: its top is at k
    ks = np.arange(nz)[None, None, :]
    below_floor = ks < low[:, :, None]
    cand = np.where(starts & below_floor & has[:, :, None], ks, -1)
    top = cand.max(axis=2).astype(np.float64)
    out = np.full((nx, ny), np.inf)
    found = top >= 0
    out[found] = top[found] + 0.5
    return out


def _air_below(grid: Grid, xs, ys, zs, reach_mm: float, air_hu: float, fluid_hu) -> np.ndarray:
    """Whether the column under each floor point holds air (below ``air_hu``) or fluid (``fluid_hu``, 3x3 in-plane
    mean) within ``reach_mm``, past the voxel just under the floor: collapsed lung over an effusion, or
    consolidated lung with aerated bronchi, not an organ under the diaphragm."""
    steps = max(2, int(round(reach_mm / grid.coarse_spacing[2])))
    lo, hi = fluid_hu
    out = np.zeros(xs.size, bool)
    for d in range(2, steps + 1):
        k = zs - d
        inside = k >= 0
        if not inside.any():
            continue
        kk = k[inside]
        values = grid.coarse[xs[inside], ys[inside], kk]
        smooth = np.stack([grid.coarse[np.clip(xs[inside] + dx, 0, grid.coarse_shape[0] - 1),
                                       np.clip(ys[inside] + dy, 0, grid.coarse_shape[1] - 1), kk]
                           for dx in (-1, 0, 1) for dy in (-1, 0, 1)]).mean(axis=0)
        out[inside] |= values < air_hu
        if lo < hi:
            out[inside] |= (smooth >= lo) & (smooth <= hi)
    return out


def _on_dome(grid: Grid, xs, ys, zs, outlier_mm: float) -> np.ndarray:
    """Floor points that lie on a smooth dome: per side (split at the floors' middle in x) a quadratic surface
    z(x, y) is fitted, and points more than ``outlier_mm`` above it are dropped and the surface refitted."""
    keep = np.ones(xs.size, bool)
    if not np.isfinite(outlier_mm) or xs.size < 20:
        return keep
    sx, sy, sz = grid.coarse_spacing
    mid = (xs.min() + xs.max()) / 2.0
    for side in (xs < mid, xs >= mid):
        idx = np.flatnonzero(side)
        if idx.size < 20:
            continue
        x, y, z = xs[idx] * sx, ys[idx] * sy, zs[idx] * sz
        design = np.column_stack([np.ones_like(x), x, y, x * x, y * y, x * y])
        inlier = np.ones(idx.size, bool)
        for _ in range(8):
            coef, *_ = np.linalg.lstsq(design[inlier], z[inlier], rcond=None)
            now = z - design @ coef <= outlier_mm
            if (now == inlier).all() or now.sum() < 10:
                break
            inlier = now
        keep[idx] = inlier
    return keep


def _joint_dome(grid: Grid, xs, ys, zs, shape) -> np.ndarray:
    """A quadratic dome z(x, y) (coarse slices) over the whole grid, fitted to both sides' floor points with
    one shape and one height per side (split at the points' middle in x): where one side has no posterior
    floor (an effusion fills its recess), the other side's slope stands in."""
    sx, sy, _ = grid.coarse_spacing
    mid = (xs.min() + xs.max()) / 2.0

    def design(x, y, right):
        x, y = x * sx, y * sy
        return np.column_stack([np.ones_like(x), right.astype(np.float64), x, y, x * x, y * y, x * y])

    coef, *_ = np.linalg.lstsq(design(xs.astype(np.float64), ys.astype(np.float64), xs >= mid), zs, rcond=None)
    gx, gy = np.meshgrid(np.arange(shape[0], dtype=np.float64), np.arange(shape[1], dtype=np.float64),
                         indexing="ij")
    return (design(gx.ravel(), gy.ravel(), gx.ravel() >= mid) @ coef).reshape(shape)


def below(height: np.ndarray | None, shape) -> np.ndarray:
    """Mask of voxels under the diaphragm surface."""
    if height is None:
        return np.zeros(shape, bool)
    ks = np.arange(shape[2])[None, None, :]
    return ks < height[:, :, None]
