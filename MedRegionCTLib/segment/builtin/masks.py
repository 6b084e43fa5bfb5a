"""Small mask operations in millimetres: structuring elements, components, slice-wise hole filling."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


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
            filled = ndi.binary_fill_holes(framed)[1:-1, 1:-1]
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
        else:
            out[:, :, k] = ndi.binary_fill_holes(sl)
    return out


def keep_touching(mask: np.ndarray, seeds: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """Components of ``mask`` that contain at least one seed voxel."""
    labels, n = label(mask, connectivity)
    if n == 0:
        return mask.copy()
    hit = np.zeros(n + 1, bool)
    hit[np.unique(labels[seeds & mask])] = True
    hit[0] = False
    return hit[labels]
