"""Left and right lungs: low-attenuation components inside the body that look like lung parenchyma (not bowel
gas), the trachea and main bronchi taken out, split at the anterior/posterior junction lines where they touch,
and closed over the vessels they contain."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from . import masks
from .grid import Grid, bounding_box


@dataclass
class Lungs:
    left: np.ndarray    # coarse, vessels included
    right: np.ndarray
    notes: list = field(default_factory=list)

    @property
    def both(self) -> np.ndarray:
        return self.left | self.right

    def volume_ml(self, grid: Grid) -> tuple[float, float]:
        return float(self.left.sum() * grid.coarse_voxel_ml), float(self.right.sum() * grid.coarse_voxel_ml)


def find_lungs(grid: Grid, body: np.ndarray, central_airway: np.ndarray, midline_x: float, params: dict) -> Lungs:
    """``central_airway``: coarse trachea + main bronchi to leave out; ``midline_x``: coarse axis-0 midline."""
    air = (grid.coarse < params["hu_max"]) & body
    if central_airway.any():
        air &= ~ndi.binary_dilation(central_airway, iterations=1)
    labels, n = masks.label(air)
    sizes = masks.component_sizes(labels, n)
    min_vox = params["min_component_ml"] / grid.coarse_voxel_ml
    candidates = []
    for idx in np.flatnonzero(sizes >= min_vox):
        if idx == 0:
            continue
        med = float(np.median(grid.coarse[labels == idx]))
        # bowel gas is nearly pure air; lung holds vessels and septa (median well above -950 HU)
        if params["median_hu_min"] < med < params["median_hu_max"]:
            candidates.append(int(idx))
    notes: list = []
    if not candidates:
        empty = np.zeros(grid.coarse_shape, bool)
        return Lungs(empty, empty.copy(), ["no lungs in the field of view: this does not look like a chest CT"])
    largest = max(sizes[i] for i in candidates)
    keep = [i for i in candidates if sizes[i] >= params["min_fraction_of_largest"] * largest]
    lut = np.zeros(n + 1, bool)
    lut[keep] = True
    lung = lut[labels]
    del labels
    left, right = _split_sides(grid, lung, midline_x)
    left = _close(grid, left, body & ~central_airway, params)
    right = _close(grid, right, body & ~central_airway & ~left, params)
    return Lungs(left, right, notes)


def _split_sides(grid: Grid, lung: np.ndarray, midline_x: float):
    """Each component to the side of its centroid; a component spanning both sides is cut by a watershed
    between two markers found by eroding it until it falls apart."""
    labels, n = masks.label(lung)
    left = np.zeros(lung.shape, bool)
    right = np.zeros(lung.shape, bool)
    xs = np.arange(lung.shape[0])[:, None, None]
    for idx in range(1, n + 1):
        comp = labels == idx
        count = comp.sum()
        left_share = float((comp & (xs < midline_x)).sum()) / count
        if 0.15 < left_share < 0.85 and count > 0:
            a, b = _cut_two(grid, comp)
            if a is not None:
                left |= a
                right |= b
                continue
        if left_share >= 0.5:
            left |= comp
        else:
            right |= comp
    return left, right


def _cut_two(grid: Grid, comp: np.ndarray):
    box = bounding_box(comp, pad=1)
    sub = comp[box]
    total = sub.sum()
    structure = np.zeros((3, 3, 1), bool)
    structure[1, :, 0] = structure[:, 1, 0] = True  # in-plane erosion: junction lines are thin in x
    eroded = sub
    for _ in range(12):
        eroded = ndi.binary_erosion(eroded, structure)
        lab, n = masks.label(eroded)
        if n < 2:
            continue
        sizes = masks.component_sizes(lab, n)
        sizes[0] = 0
        order = np.argsort(sizes)[::-1]
        if sizes[order[1]] < 0.1 * total * (eroded.sum() / total):
            continue
        markers = np.zeros(sub.shape, np.int32)
        markers[lab == order[0]] = 1
        markers[lab == order[1]] = 2
        # the junction line is denser than the lung on either side: flood on the smoothed HU
        elevation = ndi.gaussian_filter(grid.coarse[box], 1.0)
        ws = watershed(elevation, markers, mask=sub)
        ca = ndi.center_of_mass(ws == 1)[0]
        cb = ndi.center_of_mass(ws == 2)[0]
        a = np.zeros(comp.shape, bool)
        b = np.zeros(comp.shape, bool)
        first, second = (1, 2) if ca < cb else (2, 1)
        a[box] = ws == first   # smaller axis-0 index: the patient's left
        b[box] = ws == second
        return a, b
    return None, None


def _close(grid: Grid, lung: np.ndarray, allowed: np.ndarray, params: dict) -> np.ndarray:
    """Close over the vessels and airway walls inside the lung (whole-lung masks include them)."""
    if not lung.any():
        return lung
    box = bounding_box(lung, pad=1)
    pad = int(np.ceil(params["close_mm"] / grid.coarse_spacing.min())) + 1
    box = tuple(slice(max(0, s.start - pad), min(n, s.stop + pad)) for s, n in zip(box, lung.shape))
    sub = lung[box]
    closed = ndi.binary_closing(np.pad(sub, pad), masks.ball(params["close_mm"], grid.coarse_spacing))
    closed = closed[pad:-pad, pad:-pad, pad:-pad]
    closed = masks.fill_holes_axial(closed) & allowed[box] | sub
    out = np.zeros(lung.shape, bool)
    out[box] = closed
    return out
