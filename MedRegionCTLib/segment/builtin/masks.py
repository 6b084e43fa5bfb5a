"""Small mask operations in millimetres: structuring elements, components, slice-wise hole filling."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

from .grid import bounding_box


def ball(radius_mm: float, spacing) -> np.ndarray:
    """Ellipsoidal structuring element of ``radius_mm`` on a grid with ``spacing`` (at least one voxel)."""
    r = [max(0, int(np.floor(radius_mm / s))) for s in spacing]
    grids = np.ogrid[tuple(slice(-k, k + 1) for k in r)]
    d2 = sum((g * s) ** 2 for g, s in zip(grids, spacing))
    return d2 <= radius_mm**2 + 1e-6


def label(mask: np.ndarray, connectivity: int = 1):
    structure = ndi.generate_binary_structure(mask.ndim, connectivity)
    return ndi.label(mask, structure=structure)


def component_sizes(labels: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(labels.ravel(), minlength=n + 1)


def largest_component(mask: np.ndarray, connectivity: int = 1) -> np.ndarray:
    labels, n = label(mask, connectivity)
    if n == 0:
        return mask.copy()
    sizes = component_sizes(labels, n)
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def remove_small(mask: np.ndarray, min_voxels: int, connectivity: int = 1) -> np.ndarray:
    labels, n = label(mask, connectivity)
    if n == 0:
        return mask.copy()
    sizes = component_sizes(labels, n)
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


def fill_holes_axial(mask: np.ndarray, bridge_border: bool = False, hu: np.ndarray | None = None,
                     air_hu: float = -970.0) -> np.ndarray:
    """Fill holes slice by slice in the axial plane (axis 2 of the canonical grid).

    With ``bridge_border`` a slice whose mask touches the image edge is closed along that edge between its
    outermost touching points, so a lung cut by a partial field of view still counts as enclosed; with ``hu``
    also any region open to the edge whose median is above ``air_hu`` (lung, not the air around the patient).
    """
    out = np.empty_like(mask, dtype=bool)
    for k in range(mask.shape[2]):
        sl = mask[:, :, k]
        if not sl.any():
            out[:, :, k] = False
            continue
        if bridge_border:
            framed = np.pad(sl, 1)
            for edge, idx in ((sl[0, :], (0, slice(1, -1))), (sl[-1, :], (-1, slice(1, -1))),
                              (sl[:, 0], (slice(1, -1), 0)), (sl[:, -1], (slice(1, -1), -1))):
                hit = np.flatnonzero(edge)
                if hit.size >= 2:
                    line = np.zeros(edge.shape, bool)
                    line[hit[0]:hit[-1] + 1] = True
                    framed[idx] = line
            filled = fill_holes_2d(framed)[1:-1, 1:-1]
            if hu is not None and (~filled).any():
                lab, n = ndi.label(~filled)
                if n:
                    idx = np.arange(1, n + 1)
                    med = np.asarray(ndi.median(hu[:, :, k], lab, index=idx))
                    # a lung cut by the edge meets the edge along a short stretch and the body all around;
                    # the air around the patient runs along the frame
                    rim = np.zeros(sl.shape, bool)
                    rim[[0, -1], :] = True
                    rim[:, [0, -1]] = True
                    edge_len = ndi.sum(rim, lab, index=idx)
                    body_len = ndi.sum(ndi.binary_dilation(filled) & ~filled, lab, index=idx)
                    inside = np.zeros(n + 1, bool)
                    inside[1:] = (med > air_hu) & (np.asarray(edge_len) < 0.8 * np.asarray(body_len))
                    filled |= inside[lab]
            out[:, :, k] = filled
        else:  # on the mask's box grown by a voxel: the same holes, far fewer voxels
            xs, ys = np.flatnonzero(sl.any(axis=1)), np.flatnonzero(sl.any(axis=0))
            box = (slice(max(xs[0] - 1, 0), xs[-1] + 2), slice(max(ys[0] - 1, 0), ys[-1] + 2))
            out[:, :, k] = False
            out[:, :, k][box] = fill_holes_2d(sl[box])
    return out


def fill_holes_2d(mask2d: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes`` in 2D by labelling the background once (its edge-to-edge dilation
    takes as many passes as the holes are deep): background not connected (4-connectivity) to the edge."""
    background, n = ndi.label(~mask2d)
    if n == 0:
        return mask2d.copy()
    outside = np.zeros(n + 1, bool)
    for edge in (background[0, :], background[-1, :], background[:, 0], background[:, -1]):
        outside[edge] = True
    outside[0] = True
    return ~outside[background] | mask2d


def keep_touching(mask: np.ndarray, seeds: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """Components of ``mask`` that contain at least one seed voxel."""
    labels, n = label(mask, connectivity)
    if n == 0:
        return mask.copy()
    hit = np.zeros(n + 1, bool)
    hit[np.unique(labels[seeds & mask])] = True
    hit[0] = False
    return hit[labels]


def within_mm(mask: np.ndarray, mm: float, spacing) -> np.ndarray:
    """Voxels within ``mm`` of ``mask`` (Euclidean, in millimetres), computed on the mask's box grown by that
    distance only (nothing farther out can be that close)."""
    out = np.zeros(mask.shape, bool)
    if not mask.any():
        return out
    box = bounding_box(mask, [int(np.ceil(mm / s)) + 1 for s in spacing])
    out[box] = ndi.distance_transform_edt(~mask[box], sampling=spacing) <= mm
    return out


def nearest_label(parts: np.ndarray, where: np.ndarray, pad: int = 16) -> np.ndarray:
    """The label of the nearest labelled voxel of ``parts`` (0: none) for each voxel of ``where`` (in voxel
    units), looked for in ``where``'s box grown by ``pad`` voxels first (exact for every voxel whose nearest
    label lies within ``pad``), on the whole grid for the rest."""
    box = bounding_box(where, pad)
    dist, idx = ndi.distance_transform_edt(parts[box] == 0, return_indices=True)
    found = parts[box][tuple(idx)][where[box]]
    far = dist[where[box]] > pad
    if far.any():
        _, idx = ndi.distance_transform_edt(parts == 0, return_indices=True)
        found[far] = parts[tuple(i[where] for i in idx)][far]  # where's voxels in the same (C) order
    return found


def convex_hull_2d(mask2d: np.ndarray) -> np.ndarray:
    """The pixels whose centres lie inside or on the convex hull of a 2D mask's pixels (each pixel taken with
    its extent: the middles of its four edges), filled row by row (the hull is convex: one run per row).
    Empty for an empty mask; the mask itself when its pixels span no area."""
    out = np.zeros(mask2d.shape, bool)
    if not mask2d.any():
        return out
    rows = np.flatnonzero(mask2d.any(axis=1))
    cols = np.flatnonzero(mask2d.any(axis=0))
    sub = mask2d[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    # only the first and last pixel of each row and each column can be hull vertices
    r_idx = np.flatnonzero(sub.any(axis=1))
    first_c, last_c = sub[r_idx].argmax(axis=1), sub.shape[1] - 1 - sub[r_idx][:, ::-1].argmax(axis=1)
    c_idx = np.flatnonzero(sub.any(axis=0))
    first_r, last_r = sub[:, c_idx].argmax(axis=0), sub.shape[0] - 1 - sub[::-1, c_idx].argmax(axis=0)
    pts = np.concatenate([np.stack([r_idx, first_c], 1), np.stack([r_idx, last_c], 1),
                          np.stack([first_r, c_idx], 1), np.stack([last_r, c_idx], 1)]).astype(float)
    pts += (rows[0], cols[0])
    pts = (pts[:, None, :] + np.array([[-0.5, 0], [0.5, 0], [0, -0.5], [0, 0.5]])).reshape(-1, 2)
    doubled = np.rint(2 * pts).astype(np.int64)  # repeated points can trouble qhull: drop them (half-pixel grid)
    _, first = np.unique(doubled[:, 0] * (2 * mask2d.shape[1] + 4) + doubled[:, 1], return_index=True)
    pts = pts[first]
    try:
        v = pts[ConvexHull(pts).vertices]
    except QhullError:  # collinear pixels: no area
        return mask2d.copy()
    a, b = v, np.roll(v, -1, axis=0)
    r_lo, r_hi = int(np.ceil(v[:, 0].min() - 1e-9)), int(np.floor(v[:, 0].max() + 1e-9))
    r = np.arange(max(r_lo, 0), min(r_hi, mask2d.shape[0] - 1) + 1, dtype=float)[:, None]
    dr = b[:, 0] - a[:, 0]
    crosses = ((r >= np.minimum(a[:, 0], b[:, 0]) - 1e-9) & (r <= np.maximum(a[:, 0], b[:, 0]) + 1e-9))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(dr != 0, (r - a[:, 0]) / dr, 0.0)
    c_at = a[:, 1] + np.clip(t, 0, 1) * (b[:, 1] - a[:, 1])
    flat = (dr == 0)[None, :] & crosses   # a horizontal edge on this row: both its ends
    lo = np.where(crosses, np.where(flat, np.minimum(a[:, 1], b[:, 1]), c_at), np.inf).min(axis=1)
    hi = np.where(crosses, np.where(flat, np.maximum(a[:, 1], b[:, 1]), c_at), -np.inf).max(axis=1)
    c = np.arange(mask2d.shape[1])[None, :]
    out[r[:, 0].astype(int)] = (c >= lo[:, None] - 1e-9) & (c <= hi[:, None] + 1e-9)
    return out
