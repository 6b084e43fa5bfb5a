"""The diaphragm as a height map: where a lung rests on an abdominal organ (soft tissue under its floor, not
fat or fluid), its floor is the diaphragm; normalised convolution of those heights carries the surface under the
heart and out to the body wall. Everything in the body below it is abdomen.

A mass resting on the diaphragm lifts the lung's floor above it, and has the attenuation of an organ: floors
lifted well above a smooth dome (a quadratic surface fitted to each side's floors, refitted without them) are
left out, so the mass stays in the chest. Consolidated or collapsed lung at the base lifts the floor too; it
keeps air in its bronchi, so a floor with air bubbles under it is left out as well."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .grid import Grid


def diaphragm_height(grid: Grid, lungs: np.ndarray, body: np.ndarray, params: dict,
                     exclude_columns: np.ndarray | None = None,
                     fat_pad_columns: np.ndarray | None = None,
                     blood: np.ndarray | None = None) -> np.ndarray | None:
    """Per (x, y) coarse column the coarse z (float) of the diaphragm's upper surface, or None when no lung
    rests on the diaphragm in the field of view. ``exclude_columns`` (x, y) are not used as floor points (the
    lung over the heart rests on the heart, not on the diaphragm). In ``fat_pad_columns`` a floor resting on
    fat is carried down through the fat to the organ under it (the cardiophrenic fat pad over the liver). A
    floor with contrast-filled blood (``blood``: the pool of the heart's chambers) within ``blood_under_mm``
    under it rests on the heart, whose enhanced wall is as dense as an organ (realct_pathology/lung1028: the
    lung lying on the front of the heart made a floor there, and the heart was cut in half by it)."""
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
    if fat_pad_columns is not None:
        pad = fat_pad_columns[xs, ys]
        zs[pad] = _through_fat(grid, lungs, xs[pad], ys[pad], zs[pad], params)
    # under the floor (4-6 mm down): an abdominal organ, not fat, fluid or the edge of the image
    k_under = np.maximum(zs - max(1, int(round(5.0 / grid.coarse_spacing[2]))), 0)
    hu_under = grid.coarse[xs, ys, k_under]
    ok = body[xs, ys, k_under] & ~lungs[xs, ys, k_under] & (hu_under > params["organ_hu_min"]) \
        & (hu_under < params["organ_hu_max"])
    if blood is not None and blood.any():
        reach = max(1, int(round(params["blood_under_mm"] / grid.coarse_spacing[2])))
        for d in range(1, reach + 1):
            k = zs - d
            inside = k >= 0
            ok[inside] &= ~blood[xs[inside], ys[inside], k[inside]]
    lung_z = np.flatnonzero(lungs.any(axis=(0, 1)))
    ok &= zs <= lung_z[0] + 0.6 * (lung_z[-1] - lung_z[0])  # the lower part of the lungs
    if np.isfinite(params.get("dome_outlier_mm", np.inf)):
        # airless lung (consolidation, collapse) still holds air in its bronchi: a floor with air bubbles under
        # it rests on diseased lung, not on the diaphragm (kept when that would leave too few floors: bowel gas)
        bubbly = _air_below(grid, xs, ys, zs, params["air_below_mm"], params["air_below_hu"])
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
    return np.clip(surf, -1, nz)


def _air_below(grid: Grid, xs, ys, zs, reach_mm: float, air_hu: float) -> np.ndarray:
    """Whether the column under each floor point holds air (below ``air_hu``) within ``reach_mm``, past the
    voxel just under the floor: consolidated or collapsed lung with aerated bronchi, not an organ."""
    steps = max(2, int(round(reach_mm / grid.coarse_spacing[2])))
    out = np.zeros(xs.size, bool)
    for d in range(2, steps + 1):
        k = zs - d
        inside = k >= 0
        out[inside] |= grid.coarse[xs[inside], ys[inside], k[inside]] < air_hu
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


def _through_fat(grid: Grid, lungs, xs, ys, zs, params: dict) -> np.ndarray:
    """Floors resting on a fat pad (the cardiophrenic fat over the liver dome) moved down to the organ under
    the fat, when an organ follows within ``fat_reach_mm``; other floors unchanged."""
    reach = int(round(params.get("fat_reach_mm", 0.0) / grid.coarse_spacing[2]))
    if reach < 1 or xs.size == 0:
        return zs
    depth = np.arange(1, reach + 1)
    ks = zs[:, None] - depth[None, :]
    inside = ks >= 0
    hu = grid.coarse[xs[:, None], ys[:, None], np.maximum(ks, 0)]
    hu = np.where(inside & ~lungs[xs[:, None], ys[:, None], np.maximum(ks, 0)], hu, np.nan)
    fat = (hu > params["fat_hu"][0]) & (hu < params["fat_hu"][1])
    organ = (hu > params["organ_hu_min"]) & (hu < params["organ_hu_max"])
    first_organ = np.where(organ.any(axis=1), np.argmax(organ, axis=1), reach)
    # only fat (partial-volume edges aside) between the floor and the organ
    fat_before = np.cumsum(~fat, axis=1)
    clean = np.take_along_axis(fat_before, np.maximum(first_organ - 1, 0)[:, None], axis=1)[:, 0] <= 1
    starts_fat = fat[:, 0] | fat[:, min(1, reach - 1)]
    move = starts_fat & (first_organ < reach) & clean
    return np.where(move, zs - first_organ, zs)


def below(height: np.ndarray | None, shape) -> np.ndarray:
    """Mask of voxels under the diaphragm surface."""
    if height is None:
        return np.zeros(shape, bool)
    ks = np.arange(shape[2])[None, None, :]
    return ks < height[:, :, None]
