"""Geometric region rules for regions no segmentation class covers (pleura, mediastinum).

Every rule works on boolean masks on the label-map grid and takes its distances in millimetres from the
affine, so the same parameters hold for 0.6 mm and 5 mm voxels. Rules are registered by name in
:data:`RULES`; region schemas (JSON) call them as ``{"rule": name, "params": {...}}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from .geometry import PatientAxes


@dataclass
class RuleInput:
    """What a rule may look at: the grid, the masks its parameters name, and the CT if there is one."""

    shape: tuple[int, int, int]
    axes: PatientAxes
    masks: dict[str, np.ndarray]  # parameter name -> boolean mask (terms already evaluated)
    hu: np.ndarray | None  # the CT on the same grid, or None


def _bbox(mask: np.ndarray, pad: tuple[int, int, int]) -> tuple[slice, ...] | None:
    """The slices of the bounding box of ``mask`` grown by ``pad`` voxels per axis (clipped to the grid)."""
    # One projection along the first axis gives the box's other two sides, the first axis' side then
    # comes from inside that box: several times faster than a full-grid projection per axis.
    plane = np.logical_or.reduce(mask, axis=0)
    rows, cols = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
    if rows.size == 0:
        return None
    first = np.flatnonzero(mask[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].any(axis=(1, 2)))
    out = []
    for axis, hits in enumerate((first, rows, cols)):
        start = max(int(hits[0]) - pad[axis], 0)
        out.append(slice(start, min(int(hits[-1]) + pad[axis] + 1, mask.shape[axis])))
    return tuple(out)


def _finish(candidate: np.ndarray, inp: RuleInput, min_hu: float | None) -> np.ndarray:
    minus = inp.masks.get("minus")
    if minus is not None:
        candidate &= ~minus
    if min_hu is not None and inp.hu is not None:
        candidate &= inp.hu >= min_hu  # drop air: outside the body, airway or bowel lumen
    return candidate


# --- shell -----------------------------------------------------------------------------------------------
def _within_distance(mask: np.ndarray, spacing, distance_mm: float) -> np.ndarray:
    """Voxels within ``distance_mm`` (Euclidean, in mm) of ``mask``, the mask included. Exact.

    Squared distances split into in-plane and through-plane parts, so exact 2D distance maps per slice
    (along the coarsest axis) plus a minimum over the few slices within reach give the 3D answer, at
    less than half the time and memory of a 3D distance transform on full-resolution CT.
    """
    axis = int(np.argmax(spacing))
    plane_spacing = [s for a, s in enumerate(spacing) if a != axis]
    # Slices along the first axis of a contiguous copy: each slice is one block of memory.
    stack = np.ascontiguousarray(np.moveaxis(mask, axis, 0))
    squared = np.full(stack.shape, np.inf, dtype=np.float32)
    for k in range(stack.shape[0]):
        if stack[k].any():
            squared[k] = ndimage.distance_transform_edt(~stack[k], sampling=plane_spacing) ** 2
    best = squared.copy()
    n = stack.shape[0]
    for dz in range(1, int(distance_mm // spacing[axis]) + 1):
        through = (dz * spacing[axis]) ** 2
        np.minimum(best[dz:], squared[:n - dz] + through, out=best[dz:])
        np.minimum(best[:n - dz], squared[dz:] + through, out=best[:n - dz])
    return np.moveaxis(best <= distance_mm ** 2, 0, axis)


def shell_around(inp: RuleInput, thickness_mm: float = 4.0, min_hu: float | None = None) -> np.ndarray:
    """A shell ``thickness_mm`` thick just outside the ``around`` mask (e.g. the pleura around the lungs).

    Restricted to ``within`` when that mask is not empty (e.g. TotalSegmentator's thoracic cavity),
    minus ``minus``, and without voxels below ``min_hu`` when the CT is given.
    """
    around = inp.masks["around"]
    out = np.zeros(inp.shape, dtype=bool)
    spacing = inp.axes.spacing
    pad = tuple(int(np.ceil(thickness_mm / s)) + 1 for s in spacing)
    box = _bbox(around, pad)
    if box is None:
        return out
    inner = around[box]
    out[box] = _within_distance(inner, spacing, thickness_mm) & ~inner
    within = inp.masks.get("within")
    if within is not None and within.any():
        out &= within
    return _finish(out, inp, min_hu)


# --- between the lungs -----------------------------------------------------------------------------------
def _convex_hull_2d(mask: np.ndarray) -> np.ndarray:
    """Filled convex hull of a 2D mask (pixels whose centres lie in the hull of the mask's pixel squares).

    Uses only the first and last pixel of each row, and fills the hull row by row from where its edges
    cross each row: a few vectorised operations instead of a point-in-polygon test of every pixel.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    first = np.argmax(mask[rows], axis=1)
    last = mask.shape[1] - 1 - np.argmax(mask[rows, ::-1], axis=1)
    r = np.concatenate([rows - 0.5, rows + 0.5, rows - 0.5, rows + 0.5])
    c = np.concatenate([first - 0.5, first - 0.5, last + 0.5, last + 0.5])
    out = np.zeros(mask.shape, dtype=bool)
    try:
        vertices = ConvexHull(np.column_stack([r, c])).vertices
    except QhullError:  # all points on a line: the hull is the mask's bounding box
        out[rows.min():rows.max() + 1, first.min():last.max() + 1] = True
        return out
    r0, c0 = r[vertices], c[vertices]
    r1, c1 = np.roll(r0, -1), np.roll(c0, -1)
    span = np.arange(rows.min(), rows.max() + 1, dtype=float)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (span - r0) / (r1 - r0)
    crosses = (r1 != r0) & (t >= 0) & (t <= 1)
    at = c0 + t * (c1 - c0)
    lo = np.where(crosses, at, np.inf).min(axis=1)
    hi = np.where(crosses, at, -np.inf).max(axis=1)
    cols = np.arange(mask.shape[1])
    # Centres exactly on the hull's border stay out (as in skimage), hence the small margin.
    out[rows.min():rows.max() + 1] = (cols > lo[:, None] + 1e-9) & (cols < hi[:, None] - 1e-9)
    return out | mask


def _spine_from_hu(hu2: np.ndarray, hull: np.ndarray, union: np.ndarray, ap_in_plane: int,
                   forward: np.ndarray, bone_hu: float) -> np.ndarray | None:
    """The vertebral body on one slice from intensities: the largest bone-dense blob inside the lungs' hull
    that lies behind the lungs' front-back middle. None when there is none."""
    bone = (hu2 >= bone_hu) & hull & ~union
    labels, n = ndimage.label(bone)
    if n == 0:
        return None
    middle = forward[np.argwhere(union)[:, ap_in_plane]].mean()
    sizes = ndimage.sum_labels(bone, labels, index=np.arange(1, n + 1))
    for i in np.argsort(sizes)[::-1]:
        blob = labels == i + 1
        if forward[np.argwhere(blob)[:, ap_in_plane]].mean() < middle:
            return blob
    return None


def between_lungs(inp: RuleInput, min_hu: float | None = None, bone_hu: float | None = None) -> np.ndarray:
    """The space between the two lungs on each axial slice where both are present.

    Per slice: the convex hull of both lungs minus the lungs, kept between the left and right lung centroids
    (medial to both), in front of the vertebral bodies' anterior edge (``posterior_limit``) and behind the
    sternum's posterior edge (``anterior_limit``) where those are labelled. Where no vertebra is labelled on a
    slice and the CT is given, the vertebral body is taken from intensities (``bone_hu`` and above). Slices
    without both lungs give nothing. ``minus`` then removes the heart, airways, bones and organs the schema
    names.
    """
    out = np.zeros(inp.shape, dtype=bool)
    if not inp.masks["left"].any() or not inp.masks["right"].any():
        return out
    box = _bbox(inp.masks["left"] | inp.masks["right"], (0, 0, 0))
    # Work inside the lungs' bounding box: the hull cannot reach outside it.
    left, right = inp.masks["left"][box], inp.masks["right"][box]
    posterior = inp.masks.get("posterior_limit")
    anterior = inp.masks.get("anterior_limit")
    posterior = posterior[box] if posterior is not None else None
    anterior = anterior[box] if anterior is not None else None
    hu = inp.hu[box] if inp.hu is not None and bone_hu is not None else None
    si_axis = inp.axes.si[0]
    lr_axis = inp.axes.lr[0]
    ap_axis, ap_sign = inp.axes.ap
    plane_axes = [a for a in range(3) if a != si_axis]
    lr_in_plane, ap_in_plane = plane_axes.index(lr_axis), plane_axes.index(ap_axis)
    lr_coords = np.arange(left.shape[lr_axis])
    # A coordinate that grows towards the front, whatever the index direction.
    forward = np.arange(left.shape[ap_axis]) * ap_sign

    def stacked(a):  # axial slices first and contiguous (the in-plane axes keep their order)
        return None if a is None else np.ascontiguousarray(np.moveaxis(a, si_axis, 0))

    left, right, posterior, anterior, hu = (stacked(a) for a in (left, right, posterior, anterior, hu))
    sub = np.zeros(left.shape, dtype=bool)
    for at in range(left.shape[0]):
        l2, r2 = left[at], right[at]
        if not l2.any() or not r2.any():
            continue
        union = l2 | r2
        hull = _convex_hull_2d(union)
        cand = hull & ~union
        # Medial to both lungs: between their centroids along the left-right axis.
        lo, hi = sorted((np.argwhere(l2)[:, lr_in_plane].mean(), np.argwhere(r2)[:, lr_in_plane].mean()))
        cand &= np.expand_dims((lr_coords > lo) & (lr_coords < hi), axis=1 - lr_in_plane)
        p2 = posterior[at] if posterior is not None else None
        if (p2 is None or not p2.any()) and hu is not None:
            p2 = _spine_from_hu(hu[at], hull, union, ap_in_plane, forward, bone_hu)
        if p2 is not None and p2.any():  # keep what lies in front of the vertebral bodies' anterior edge
            edge = forward[np.argwhere(p2)[:, ap_in_plane]].max()
            cand &= np.expand_dims(forward > edge, axis=1 - ap_in_plane)
        if anterior is not None:
            a2 = anterior[at]
            if a2.any():  # and behind the sternum's posterior edge
                edge = forward[np.argwhere(a2)[:, ap_in_plane]].min()
                cand &= np.expand_dims(forward < edge, axis=1 - ap_in_plane)
        sub[at] = cand
    out[box] = np.moveaxis(sub, 0, si_axis)
    return _finish(out, inp, min_hu)


# name -> (function, names of the parameters that are masks (terms), names of numeric parameters)
RULES: dict[str, tuple[Callable[..., np.ndarray], tuple[str, ...], tuple[str, ...]]] = {
    "shell_around": (shell_around, ("around", "within", "minus"), ("thickness_mm", "min_hu")),
    "between_lungs": (between_lungs, ("left", "right", "anterior_limit", "posterior_limit", "minus"),
                      ("min_hu", "bone_hu")),
}
