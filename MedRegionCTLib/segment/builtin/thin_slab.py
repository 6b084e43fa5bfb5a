"""Lungs of a thin slab (a few axial slices, ``volume.slab``), found slice by slice.

The 3D steps of the built-in segmenter need tens of millimetres of body axis (trachea tracking, lung volumes,
the diaphragm). On a slab each axial slice is segmented on its own: the body outline (the largest piece
denser than -500 HU, holes filled), the lung-like air inside it (median HU of lung, not of bowel gas or the
trachea), split into left and right at the body midline or, where the lungs touch, at the junction line;
closed over vessels and grown to the pleural surface. Labels: ``body_trunc``, ``lung_left``, ``lung_right``
(the lobes cannot be placed without the fissures' 3D course).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from ...data import totalsegmentator_class_indices
from ...progress import Steps
from ...volume import LabelMap, Volume, slab
from . import masks
from .grid import Grid

PRODUCED = ("body_trunc", "lung_left", "lung_right")


def is_thin_slab(volume: Volume) -> bool:
    return slab(volume).thin


def segment_thin_slab(volume: Volume, params: dict, looked_for, progress=None, cancel=None) -> LabelMap:
    """Label map of a thin slab (see the module docstring); ``params``: the built-in segmenter's table."""
    grid = Grid(volume, params["coarse_mm"])
    steps = Steps(progress, total=grid.shape[2], cancel=cancel, what="built-in segmentation (thin slab)")
    spacing = grid.spacing[:2]
    index = totalsegmentator_class_indices()
    labels = np.zeros(grid.shape, np.uint16)
    areas = {"left": [], "right": []}
    for k in range(grid.shape[2]):
        steps.report(0.0, f"slice {k + 1} of {grid.shape[2]} (thin slab)")
        hu = np.asarray(grid.hu[:, :, k], dtype=np.float32)
        body, right, left = slice_lungs(hu, spacing, params)
        plane = labels[:, :, k]
        plane[body] = index["body_trunc"]
        plane[right] = index["lung_right"]
        plane[left] = index["lung_left"]
        pixel_cm2 = float(np.prod(spacing)) / 100.0
        areas["left"].append(round(float(left.sum()) * pixel_cm2, 1))
        areas["right"].append(round(float(right.sum()) * pixel_cm2, 1))
        steps.advance(f"slice {k + 1} done")
    array = grid.to_input(labels)
    names = {index[n]: n for n in PRODUCED if np.any(labels == index[n])}
    coverage = slab(volume)
    largest = max(a + b for a, b in zip(areas["left"], areas["right"], strict=True))
    chest = largest >= float(params["thin_slab"]["chest_min_lung_cm2"])
    notes = [f"thin slab ({coverage.slices} axial slices, {coverage.extent_mm:g} mm): the lungs were segmented "
             "slice by slice; nothing else but the body outline was looked for"]
    if not chest:
        notes.append("no lungs in the slab: this does not look like a chest CT" if largest == 0 else
                     f"only {largest:.0f} cm2 of lung on the largest slice: this does not look like a chest CT")
    voxel_ml = grid.voxel_ml
    meta = {
        "source": "builtin", "segmenter": "builtin", "method": "thin slab, slice by slice",
        "not_found": [c for c in looked_for if c not in names.values()],
        "notes": notes, "chest_ct": bool(chest), "contrast": False,
        "thin_slab": {"slices": coverage.slices, "extent_mm": coverage.extent_mm,
                      "lung_area_cm2_per_slice": areas},
        "lung_volume_ml": {side: round(float(np.count_nonzero(labels == index[f"lung_{side}"])) * voxel_ml, 2)
                           for side in ("left", "right")},
    }
    return LabelMap(array, volume.affine.copy(), names, meta)


def slice_lungs(hu: np.ndarray, spacing, params: dict):
    """Body, right lung and left lung of one axial slice on the canonical grid (axis 0 towards the right)."""
    p_body, p_lungs, p_slab = params["body"], params["lungs"], params["thin_slab"]
    dense = hu > p_body["hu_min"]
    disk = masks.ball(p_body["open_mm"], spacing)
    body = masks.largest_component(ndi.binary_opening(dense, disk))
    empty = np.zeros(hu.shape, bool)
    if not body.any():
        return empty, empty, empty.copy()
    body = ndi.binary_dilation(body, disk) & dense | body  # give back the skin the opening took
    inside = ndi.binary_fill_holes(body)
    air = (hu < p_lungs["hu_max"]) & inside & ~body
    lab, n = masks.label(air)
    sizes = masks.component_sizes(lab, n)
    min_px = p_slab["min_area_mm2"] / float(np.prod(spacing))
    keep = []
    for i in np.flatnonzero(sizes >= min_px):
        if i == 0:
            continue
        median = float(np.median(hu[lab == i]))
        # lung holds vessels and septa; bowel gas and the trachea are nearly pure air
        if p_lungs["median_hu_min"] < median < p_lungs["median_hu_max"]:
            keep.append(int(i))
    if not keep:
        return inside, empty, empty.copy()
    largest = max(sizes[i] for i in keep)
    keep = [i for i in keep if sizes[i] >= p_lungs["min_fraction_of_largest"] * largest]
    lung = np.isin(lab, keep)
    columns = np.flatnonzero(inside.any(axis=1))
    right, left = _sides(lung, hu, (columns[0] + columns[-1]) / 2.0)
    right = _close(right, inside, spacing, p_lungs["close_mm"])
    left = _close(left, inside & ~right, spacing, p_lungs["close_mm"])
    rim = masks.ball(p_slab["rim_mm"], spacing)
    soft = (hu < p_slab["rim_hu_max"]) & inside
    grown_right = ndi.binary_dilation(right, rim) & soft & ~left
    grown_left = ndi.binary_dilation(left, rim) & soft & ~grown_right
    return inside, right | grown_right, left | grown_left


def _sides(lung: np.ndarray, hu: np.ndarray, midline: float):
    """Each lung piece to the side of most of it; a piece spanning both sides is cut at its narrowest point."""
    lab, n = masks.label(lung)
    right = np.zeros(lung.shape, bool)
    left = np.zeros(lung.shape, bool)
    towards_right = np.arange(lung.shape[0])[:, None] > midline
    for i in range(1, n + 1):
        piece = lab == i
        share = float((piece & towards_right).sum()) / float(piece.sum())
        if 0.15 < share < 0.85:
            halves = _cut(piece, hu)
            if halves is not None:
                right |= halves[0]
                left |= halves[1]
                continue
        if share >= 0.5:
            right |= piece
        else:
            left |= piece
    return right, left


def _cut(piece: np.ndarray, hu: np.ndarray):
    """(right part, left part) of a piece holding both lungs: erode until it falls in two large parts, then
    flood the smoothed HU from them (the junction line is denser than the lung either side)."""
    eroded = piece
    total = float(piece.sum())
    for _ in range(20):
        eroded = ndi.binary_erosion(eroded)
        lab, n = masks.label(eroded)
        if n < 2:
            continue
        sizes = masks.component_sizes(lab, n)
        sizes[0] = 0
        first, second = np.argsort(sizes)[::-1][:2]
        if sizes[second] < 0.1 * total * (eroded.sum() / total):
            continue
        markers = np.zeros(piece.shape, np.int32)
        markers[lab == first] = 1
        markers[lab == second] = 2
        flood = watershed(ndi.gaussian_filter(hu, 1.0), markers, mask=piece)
        a, b = flood == 1, flood == 2
        return (a, b) if ndi.center_of_mass(a)[0] > ndi.center_of_mass(b)[0] else (b, a)
    return None


def _close(lung: np.ndarray, allowed: np.ndarray, spacing, radius_mm: float) -> np.ndarray:
    """Close over the vessels inside the lung (whole-lung masks include them)."""
    if not lung.any():
        return lung
    disk = masks.ball(radius_mm, spacing)
    pad = max(disk.shape) // 2 + 1
    closed = ndi.binary_closing(np.pad(lung, pad), disk)[pad:-pad, pad:-pad]
    return ndi.binary_fill_holes(closed) & allowed | lung
