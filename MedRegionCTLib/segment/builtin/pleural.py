"""The lung field with its disease, and the pleural fluid beside it.

Air alone finds only the aerated lung: a tumour, consolidation or atelectasis touching the mediastinum, the hilum,
the chest wall or the diaphragm is not air, and fluid in the pleural space is not lung either. Both lie inside the
*pleural cavity* of their side, which is built here from what bounds it:

- the thoracic cage: per axial slice the convex hull of that side's ribs, the vertebral bodies and the sternum,
  shrunk by the thickness of the chest wall inside the bones, and kept within a band along the rib arc (the
  chord of the hull through the mediastinum is not chest wall);
- the aerated lung itself: per slice its convex hull, kept within a short reach of the air (a tumour indents the
  lung; the lung wraps around it), which bridges the places where the lung meets the mediastinum;
- the mediastinal organs found (heart, aorta, oesophagus, airways), the bones, and the diaphragm below.

Inside a cavity, what is not aerated lung is sorted by its attenuation (a 3x3 in-plane mean, which takes the
noise down enough to tell fluid from soft tissue): fat stays out; soft tissue and ground glass touching the lung
join the lung field (masses, consolidation, atelectasis); fluid-range voxels (about -20 to +25 HU) form pleural
effusion when they gather in the dependent pleural space -- the lowest part of the cavity -- and are not enclosed
by soft tissue (a tumour's necrotic core is not an effusion). Contrast-filled blood is never lung field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
from scipy import ndimage as ndi

from ...threads import run_all
from . import masks
from .grid import Grid, bounding_box


@dataclass
class PleuralSpace:
    """Coarse canonical masks per side: the lung field (aerated lung and the disease inside the lung envelope),
    the pleural fluid, and the cavity they were looked for in."""

    field: dict       # side -> lung field
    effusion: dict    # side -> pleural fluid
    cavity: dict      # side -> pleural cavity
    notes: list = field(default_factory=list)

    def added_ml(self, grid: Grid, lungs) -> dict:
        """mL of non-aerated tissue each lung field holds beyond the aerated lung."""
        return {s: float((self.field[s] & ~getattr(lungs, s)).sum() * grid.coarse_voxel_ml) for s in self.field}


def slice_hull(mask2d: np.ndarray) -> np.ndarray:
    """Convex hull of a 2D mask (the mask itself when it is a line or smaller)."""
    if mask2d.sum() < 3:
        return mask2d.copy()
    return masks.convex_hull_2d(mask2d)  # it works on the mask's box and keeps collinear pixels as they are


def _bones(skeleton, side: str) -> tuple[np.ndarray, np.ndarray]:
    """That side's ribs; and the vertebral bodies with the sternum (the cage's midline pillars)."""
    ribs = np.zeros(skeleton.parts.shape, bool)
    pillars = np.zeros(skeleton.parts.shape, bool)
    for i, name in enumerate(skeleton.names, start=1):
        if name.startswith(f"rib_{side}"):
            ribs |= skeleton.parts == i
        elif name.startswith("vertebrae") or name == "sternum":
            pillars |= skeleton.parts == i
    return ribs, pillars


def rib_cortex(grid: Grid, lung: np.ndarray, pillars: np.ndarray, blood: np.ndarray, side: str,
               midline_x: np.ndarray, params: dict, axis: np.ndarray | None = None) -> np.ndarray:
    """Ribs by their cortex, whatever the bone labels say: pieces of cortical bone (block maximum above
    ``cortex_hu``) on this side, away from the vertebral bodies and the sternum, that come within
    ``rib_reach_mm`` of the lung somewhere. A rib runs on past a tumour or an effusion that keeps it from the
    lung in some slices; the scapula and the arm bones never come that close."""
    cortex = grid.coarse_max > params["cortex_hu"]
    cortex &= ~ndi.binary_dilation(pillars | blood, iterations=2)
    xs = np.arange(lung.shape[0])[:, None, None]
    lateral = xs > midline_x[None, None, :] if side == "right" else xs < midline_x[None, None, :]
    cortex &= lateral
    if axis is not None:
        # the laminae and the spinous process (behind the vertebral body, near the midline) lie in the back
        # muscles, not against the pleura: taken for ribs, they would pull the cage over the paraspinal muscles
        cortex &= ~_posterior_elements(grid, pillars, axis, params)
    if not cortex.any() or not lung.any():
        return np.zeros(lung.shape, bool)
    near = masks.within_mm(lung, params["rib_reach_mm"], grid.coarse_spacing)
    lab, n = masks.label(cortex, connectivity=3)
    if n == 0:
        return np.zeros(lung.shape, bool)
    total = np.bincount(lab.ravel(), minlength=n + 1)
    close = np.bincount(lab[near], minlength=n + 1)
    keep = close >= params["rib_near_fraction"] * total
    keep[0] = False
    return keep[lab]


def _body_back(pillars_k: np.ndarray, axis_k, max_depth: float, sy: float) -> float:
    """y of the back of the vertebral body on one slice (y runs forward): the back end of the run of bone that
    starts at the body's front along the spine's x (the spinal canal behind it breaks the run); the front less
    ``max_depth`` voxels where the run is longer (no canal found in the labels)."""
    x0, y_front = int(round(axis_k[0])), axis_k[1]
    limit = y_front - max_depth
    col = pillars_k[max(x0 - 1, 0):x0 + 2].any(axis=0)
    col[int(y_front) + 2:] = False
    ys = np.flatnonzero(col)
    if ys.size == 0:
        return limit
    runs = np.split(ys, np.flatnonzero(np.diff(ys) > max(1, int(round(3.0 / sy)))) + 1)
    return max(float(runs[-1][0]), limit)


def _posterior_elements(grid: Grid, pillars: np.ndarray, axis: np.ndarray, params: dict) -> np.ndarray:
    """Per slice, behind the back of the vertebral body and within ``posterior_elements_half_width_mm`` of the
    spine's x: where the laminae and the spinous process lie."""
    sx, sy, _ = grid.coarse_spacing
    out = np.zeros(pillars.shape, bool)
    xs = np.arange(pillars.shape[0])[:, None]
    ys = np.arange(pillars.shape[1])[None, :]
    half = params["posterior_elements_half_width_mm"] / sx
    depth = params["vertebral_body_depth_mm"] / sy
    for k in np.flatnonzero(np.isfinite(axis[:, 0]) & np.isfinite(axis[:, 1])):
        back = _body_back(pillars[:, :, k], axis[k], depth, sy)
        out[:, :, k] = (np.abs(xs - axis[k, 0]) <= half) & (ys < back)
    return out


def _distance_to(mask: np.ndarray, spacing) -> np.ndarray:
    """mm to the nearest voxel of ``mask`` (infinite everywhere when it is empty)."""
    if not mask.any():
        return np.full(mask.shape, np.inf)
    return ndi.distance_transform_edt(~mask, sampling=spacing)


def pleural_cavity(grid: Grid, lung: np.ndarray, skeleton, side: str, body: np.ndarray, keep_out: np.ndarray,
                   midline_x: np.ndarray, params: dict, blood: np.ndarray | None = None) -> np.ndarray:
    """The pleural cavity of one side (coarse): where that lung and what replaces or surrounds it can lie.

    ``keep_out``: the mediastinal organs, bones and everything under the diaphragm; ``midline_x``: per slice the
    coarse x of the midline (the vertebral column)."""
    sx, sy, _ = grid.coarse_spacing
    nx, ny, nz = lung.shape
    ribs, pillars = _bones(skeleton, side)
    axis = skeleton.spine_axis
    ribs = ribs | rib_cortex(grid, lung, pillars, blood if blood is not None else np.zeros(lung.shape, bool), side,
                             midline_x, params, axis)
    if axis is not None:
        # whatever a piece of bone is named, behind the vertebral body near the midline it lies in the back muscles
        ribs &= ~_posterior_elements(grid, pillars, axis, params)
    xs = np.arange(nx)[:, None]
    ys = np.arange(ny)[None, :]
    wall = max(1, int(round(params["chest_wall_mm"] / sx)))
    band_mm = params["wall_band_mm"]
    reach_mm = params["lung_hull_reach_mm"]
    body_depth = params["vertebral_body_depth_mm"] / sy
    cavity = np.zeros(lung.shape, bool)
    lung_slices = lung.any(axis=(0, 1))
    # the cavity is looked for only where this lung is in the slice or next to it (not above the apex)
    near_lung_slice = ndi.binary_dilation(lung_slices, iterations=2)
    for k in range(nz):
        lung_k = lung[:, :, k]
        ribs_k = ribs[:, :, k]
        if not near_lung_slice[k]:
            continue
        parts = np.zeros((nx, ny), bool)
        if ribs_k.sum() >= 3:
            pill = pillars[:, :, k]
            if axis is not None and np.isfinite(axis[k, 1]):  # the vertebral body, not the spinous process
                back = _body_back(pill, axis[k], body_depth, sy)
                pill = pill & (ys >= back)
            hull = slice_hull(ribs_k | pill)
            lateral = xs > midline_x[k] if side == "right" else xs < midline_x[k]
            # the cage: the hull shrunk to the inside of the chest wall, within a band along the rib arc only
            # (distance to the hull's outside on this side: the chord through the mediastinum does not count)
            outside = ~hull & lateral
            if outside.any():
                near_arc = ndi.distance_transform_edt(~outside, sampling=(sx, sy)) <= band_mm + params["chest_wall_mm"]
                parts |= ndi.binary_erosion(hull, iterations=wall) & near_arc & lateral
        if lung_k.sum() * sx * sy >= params["hull_min_area_mm2"]:
            # the lung wraps around what replaced it: its hull, within a short reach of the air (not at the
            # apex, where the thin cap of lung arches over the vessels to the arm)
            hull = slice_hull(lung_k)
            near = ndi.distance_transform_edt(~lung_k, sampling=(sx, sy)) <= reach_mm
            parts |= hull & near
        cavity[:, :, k] = parts & body[:, :, k]
    return (cavity & ~keep_out) | lung


def sort_cavity(grid: Grid, lung: np.ndarray, cavity: np.ndarray, under: np.ndarray, contrast: bool,
                params: dict) -> tuple[np.ndarray, np.ndarray]:
    """(lung field, pleural fluid) of one side from its aerated lung and cavity."""
    smooth = ndi.uniform_filter(grid.coarse, size=(3, 3, 1))
    free = cavity & ~lung
    fluid_lo, fluid_hi = params["fluid_hu"]
    soft_hi = params["soft_hu_max_contrast"] if contrast else params["soft_hu_max"]
    fluid = free & (smooth >= fluid_lo) & (smooth <= fluid_hi)
    soft = free & (smooth > fluid_hi) & (smooth <= soft_hi)
    glass = free & (smooth >= params["ground_glass_hu"][0]) & (smooth < params["ground_glass_hu"][1])
    near_lung = ndi.binary_dilation(lung, iterations=1)
    solid = np.zeros(lung.shape, bool)
    box = bounding_box(soft, pad=2)
    if box is not None:
        # slivers of chest wall and vessel walls thinner than the ball fall away
        solid[box] = ndi.binary_opening(soft[box], masks.ball(params["solid_open_mm"], grid.coarse_spacing))
        solid = masks.keep_touching(solid, near_lung)
    effusion = _effusion(grid, fluid, solid, lung, cavity, under, params)
    # fluid-range voxels enclosed by soft tissue (a necrotic core) belong to the lesion around them
    core = fluid & ~effusion
    if core.any() and solid.any():
        held = ndi.binary_dilation(solid, iterations=2) & core
        solid |= masks.keep_touching(core, held)
    field_ = lung | solid | (glass & near_lung)
    return field_, effusion


def _effusion(grid: Grid, fluid: np.ndarray, solid: np.ndarray, lung: np.ndarray, cavity: np.ndarray,
              under: np.ndarray, params: dict) -> np.ndarray:
    """Fluid collections in the dependent pleural space: pieces of fluid-range voxels (at least
    ``effusion_min_ml``) that lie behind the lung's middle, against the lung, reach down into the lower half of
    the lung field, and touch the lung and the chest wall more than soft tissue (else a lesion's necrotic
    core)."""
    out = np.zeros(fluid.shape, bool)
    if not fluid.any() or not cavity.any():
        return out
    sx, sy, sz = grid.coarse_spacing
    lab, n = masks.label(fluid)
    if n == 0:
        return out
    sizes = masks.component_sizes(lab, n)
    min_vox = params["effusion_min_ml"] / grid.coarse_voxel_ml
    cav_z = np.flatnonzero(cavity.any(axis=(0, 1)))
    lung_y = np.flatnonzero(lung.any(axis=(0, 2)))
    y_mid = (lung_y[0] + lung_y[-1]) / 2.0 if lung_y.size else fluid.shape[1] / 2.0
    field_z = np.flatnonzero((lung | solid).any(axis=(0, 1)))
    low_half = (field_z[0] + field_z[-1]) / 2.0 if field_z.size else cav_z[-1]
    beside_lung = ndi.binary_dilation(lung | solid, iterations=2)
    wall = cavity & ~ndi.binary_erosion(cavity, iterations=1)
    for i, box in enumerate(ndi.find_objects(lab), start=1):
        if box is None or sizes[i] < min_vox:
            continue
        comp = lab[box] == i
        pts = np.argwhere(comp) + [b.start for b in box]
        if pts[:, 1].mean() > y_mid:
            continue  # in front of the lung's middle: not dependent in a supine patient
        if pts[:, 2].min() > low_half:
            continue  # free fluid runs down to the base: a collection confined to the upper half is something else
        if not beside_lung[box][comp].any():
            continue  # pleural fluid lies against the lung
        grown = ndi.binary_dilation(comp, iterations=1)
        big = tuple(slice(max(0, b.start - 1), min(n, b.stop + 1)) for b, n in zip(box, fluid.shape))
        inner = tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, big))
        shell = np.zeros(tuple(g.stop - g.start for g in big), bool)
        shell[inner] = grown
        shell = ndi.binary_dilation(shell, iterations=1)
        touch_lung_wall = int((shell & (lung[big] | wall[big] | ~cavity[big])).sum())
        touch_solid = int((shell & solid[big]).sum())
        if touch_solid > touch_lung_wall:
            continue  # held by soft tissue more than by lung and chest wall: a lesion's core, not pleural fluid
        out[box] |= comp
    return out


def _pillars(skeleton) -> np.ndarray:
    """The vertebrae and the sternum."""
    out = np.zeros(skeleton.parts.shape, bool)
    for i, name in enumerate(skeleton.names, start=1):
        if name.startswith("vertebrae") or name == "sternum":
            out |= skeleton.parts == i
    return out


def _central_mediastinum(grid: Grid, organs: np.ndarray, pillars: np.ndarray, axis, params: dict) -> np.ndarray:
    """Per slice the convex hull of the mediastinal organs found and the front of the spine and the sternum,
    grown by ``mediastinum_margin_mm`` but not behind the front of the vertebral bodies: the great veins, lymph
    nodes and vessel roots lie there, and nothing that belongs to a lung. (A lung's own hull reaches into this
    space where the lung wraps around the mediastinum; the paravertebral gutters, where tumours and fluid lie,
    stay open.)"""
    out = np.zeros(organs.shape, bool)
    grow = params["mediastinum_margin_mm"]
    sx, sy, _ = grid.coarse_spacing
    ny = organs.shape[1]
    for k in np.flatnonzero((organs | pillars).any(axis=(0, 1))):
        front = axis[k, 1] if axis is not None and np.isfinite(axis[k, 1]) else -1
        ahead = np.arange(ny)[None, :] >= front
        core = organs[:, :, k] | (pillars[:, :, k] & ahead)
        if core.sum() < 3:
            continue
        hull = slice_hull(core)
        box = bounding_box(hull, pad=int(np.ceil(grow / min(sx, sy))) + 1)
        out[box + (k,)] = (ndi.distance_transform_edt(~hull[box], sampling=(sx, sy)) <= grow) & ahead[0, box[1]][None]
    return out


def _bone_and_marrow(grid: Grid, skeleton, params: dict) -> np.ndarray:
    """The bones with the marrow their cortex encloses (slice by slice), and the vertebral bodies whole: marrow
    (100-300 HU) has the attenuation of enhancing soft tissue and is never lung field."""
    out = masks.fill_holes_axial(skeleton.bone)
    axis = skeleton.spine_axis
    if axis is None:
        return out
    sx, sy, _ = grid.coarse_spacing
    nx, ny, _ = out.shape
    xs = np.arange(nx)[:, None]
    ys = np.arange(ny)[None, :]
    half = params["vertebral_body_half_width_mm"] / sx
    for k in np.flatnonzero(np.isfinite(axis[:, 0])):
        x0, y_front, y_back = axis[k]
        out[:, :, k] |= (np.abs(xs - x0) <= half) & (ys <= y_front + 1) & (ys >= y_back)
    return out


def pleural_spaces(grid: Grid, lungs, skeleton, body: np.ndarray, organs: np.ndarray, under: np.ndarray,
                   contrast: bool, blood: np.ndarray, params: dict) -> PleuralSpace:
    """Both sides' cavities, lung fields and pleural fluid. ``organs``: mediastinal organs (heart, aorta,
    oesophagus, airways); ``under``: below the diaphragm; ``blood``: contrast-filled blood (never lung field)."""
    nx = lungs.left.shape[0]
    axis = skeleton.spine_axis
    if axis is not None and np.isfinite(axis[:, 0]).any():
        midline = np.where(np.isfinite(axis[:, 0]), axis[:, 0], np.nanmedian(axis[:, 0]))
    else:
        both = lungs.left | lungs.right
        xs = np.flatnonzero(both.any(axis=(1, 2)))
        midline = np.full(both.shape[2], (xs[0] + xs[-1]) / 2.0 if xs.size else nx / 2.0)
    bone = _bone_and_marrow(grid, skeleton, params)
    keep_out = organs | bone | blood
    if params["mediastinum_margin_mm"] >= 0:
        keep_out |= _central_mediastinum(grid, organs, _pillars(skeleton), axis, params)
    sides = ("left", "right")
    outside = keep_out | under
    # the two sides are independent until their cavities meet: one thread each
    cavity = dict(zip(sides, run_all([partial(pleural_cavity, grid, getattr(lungs, side), skeleton, side, body,
                                              outside, midline, params, blood) for side in sides])))
    # a voxel both cavities claim goes to the nearer lung
    both = cavity["left"] & cavity["right"]
    if both.any():
        # on both's box grown by reach: a distance within reach is exact there, and where one lung is within
        # reach the nearer one is known; only voxels farther than reach from both need the whole grid
        reach = max(params["lung_hull_reach_mm"], params["wall_band_mm"] + params["chest_wall_mm"])
        box = bounding_box(both, [int(np.ceil(reach / s)) + 1 for s in grid.coarse_spacing])
        dl, dr = (_distance_to(getattr(lungs, side)[box], grid.coarse_spacing) for side in ("left", "right"))
        if ((dl > reach) & (dr > reach) & both[box]).any():
            box = (slice(None),) * 3
            dl, dr = (_distance_to(getattr(lungs, side), grid.coarse_spacing) for side in ("left", "right"))
        cavity["left"][box] &= ~(both[box] & (dr < dl))
        cavity["right"][box] &= ~(both[box] & (dl <= dr))
    sorted_ = run_all([partial(sort_cavity, grid, getattr(lungs, side), cavity[side], under, contrast, params)
                       for side in sides])
    field_ = {side: f for side, (f, _) in zip(sides, sorted_)}
    effusion = {side: e for side, (_, e) in zip(sides, sorted_)}
    for side in ("left", "right"):  # a side's fluid counts from effusion_side_min_ml in all
        if effusion[side].sum() * grid.coarse_voxel_ml < params["effusion_side_min_ml"]:
            effusion[side] = np.zeros(effusion[side].shape, bool)
    notes = []
    added = {s: float((field_[s] & ~getattr(lungs, s)).sum() * grid.coarse_voxel_ml) for s in field_}
    for s, ml in added.items():
        if ml >= params["note_min_ml"]:
            notes.append(f"{s} lung field holds {ml:.0f} mL of non-aerated tissue (mass, consolidation or "
                         "atelectasis) inside the lung envelope")
    return PleuralSpace(field_, effusion, cavity, notes)
