"""Approximations outside the thoracic cavity: the thyroid (iodine-rich tissue either side of the trachea above
the lung apices), the breasts (tissue in front of the chest wall where the anterior outline has a cleft between
two mounds) and the abdominal cavity below the diaphragm."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from . import masks
from .grid import Grid


def find_thyroid(grid: Grid, trachea: np.ndarray, lungs: np.ndarray, body: np.ndarray, bone: np.ndarray,
                 contrast: bool, params: dict) -> np.ndarray:
    out = np.zeros(trachea.shape, bool)
    if not trachea.any():
        return out
    sx, sy, sz = grid.coarse_spacing
    lung_z = np.flatnonzero(lungs.any(axis=(0, 1)))
    k_lo = int(lung_z[-1] - round(params["below_apex_mm"] / sz)) if lung_z.size else 0
    tz = np.flatnonzero(trachea.any(axis=(0, 1)))
    ks = [k for k in tz if k >= k_lo]
    if not ks:
        return out
    lo, hi = params["hu_contrast"] if contrast else params["hu"]
    sm = ndi.gaussian_filter(grid.coarse[:, :, min(ks):max(ks) + 1], 1.0)
    reach = params["reach_mm"]
    for n, k in enumerate(range(min(ks), max(ks) + 1)):
        t = trachea[:, :, k]
        if not t.any():
            continue
        near = ndi.distance_transform_edt(~t, sampling=(sx, sy)) <= reach
        ci, cj = ndi.center_of_mass(t)
        ys = np.arange(t.shape[1])[None, :]
        near &= ys >= cj - 5.0 / sy  # beside and in front of the trachea
        out[:, :, k] = near & (sm[:, :, n] > lo) & (sm[:, :, n] < hi) & body[:, :, k] & ~bone[:, :, k]
    out = ndi.binary_opening(out, masks.ball(1.5 * min(sx, sy), grid.coarse_spacing))
    out = masks.remove_small(out, max(1, int(params["min_lobe_ml"] / grid.coarse_voxel_ml)))
    if out.sum() * grid.coarse_voxel_ml < params["min_ml"]:
        return np.zeros(trachea.shape, bool)
    return out


def find_breasts(grid: Grid, body: np.ndarray, lungs: np.ndarray, params: dict) -> np.ndarray:
    """Slices whose anterior outline has a midline cleft deeper than ``cleft_mm`` between two mounds."""
    out = np.zeros(body.shape, bool)
    sx, sy, sz = grid.coarse_spacing
    lung_z = np.flatnonzero(lungs.any(axis=(0, 1)))
    if lung_z.size == 0:
        return out
    hits = []
    for k in range(lung_z[0], lung_z[-1] + 1):
        b = body[:, :, k]
        if b.sum() < 100:
            continue
        hull = masks.convex_hull_2d(b)
        defect = hull & ~b
        xs = np.flatnonzero(b.any(axis=1))
        mid = int(round((xs[0] + xs[-1]) / 2))
        col = b[mid]
        front = np.flatnonzero(col)
        if front.size == 0:
            continue
        depth = defect[mid, front[-1]:].sum() * sy
        if depth >= params["cleft_mm"]:
            hits.append((k, front[-1]))
    if len(hits) * sz < params["min_height_mm"]:
        return out
    for k, y_cleft in hits:
        b = body[:, :, k] & ~lungs[:, :, k]
        m = np.zeros_like(b)
        m[:, y_cleft:] = b[:, y_cleft:]
        out[:, :, k] = m
    return out


def abdominal_cavity(grid: Grid, body: np.ndarray, under: np.ndarray, bone: np.ndarray, spine_axis,
                     params: dict) -> np.ndarray:
    """Below the diaphragm: inside the rib cage's outline where there are ribs, else inside the muscular
    wall (the body less ``wall_mm``), in front of the vertebral bodies."""
    out = np.zeros(body.shape, bool)
    sx, sy, sz = grid.coarse_spacing
    ks = np.flatnonzero((under & body).any(axis=(0, 1)))
    if ks.size == 0:
        return out
    wall = int(round(params["wall_mm"] / min(sx, sy)))
    ys = np.arange(body.shape[1])[None, :]
    for k in ks:
        b = body[:, :, k]
        inner = ndi.binary_erosion(b, iterations=wall)
        cage = bone[:, :, k]
        if cage.sum() > 20:
            inner &= masks.convex_hull_2d(cage)
        if np.isfinite(spine_axis[k, 1]):
            inner &= ys > spine_axis[k, 1]
        out[:, :, k] = inner & under[:, :, k] & ~cage
    return out
