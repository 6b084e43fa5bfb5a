"""Geometric region rules for regions no segmentation class covers (pleura, mediastinum).

Every rule works on boolean masks on the label-map grid and takes its distances in millimetres from the
affine, so the same parameters hold for 0.6 mm and 5 mm voxels. Rules are registered by name in
:data:`RULES`; region schemas (JSON) call them as ``{"rule": name, "params": {...}}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from .geometry import PatientAxes


@dataclass
class RuleInput:
    """What a rule may look at: the grid, the masks its parameters name, and the CT if there is one.

    A rule reads its masks and never changes them (the evaluator may share them between terms).
    """

    shape: tuple[int, int, int]
    axes: PatientAxes
    masks: dict[str, np.ndarray]  # parameter name -> boolean mask (terms already evaluated)
    hu: np.ndarray | None  # the CT on the same grid, or None
    # Parameter name -> whether its term holds a voxel anywhere on the whole label map. Given when the grid is
    # a box cut from the label map (see RULE_BOXES): a mask can be empty inside the box but not outside it.
    nonempty: dict[str, bool] = field(default_factory=dict)
    # Mask parameters computed only when asked for, for a box of this grid (see mask()).
    deferred: dict[str, Callable[[tuple[slice, ...]], np.ndarray]] = field(default_factory=dict)

    def mask(self, name: str, box: tuple[slice, ...] | None = None) -> np.ndarray | None:
        """The mask parameter ``name`` (inside ``box`` when given); None when the rule was not given it."""
        if name in self.masks:
            return self.masks[name] if box is None else self.masks[name][box]
        if name in self.deferred:
            return self.deferred[name](tuple(slice(0, n) for n in self.shape) if box is None else box)
        return None

    def has(self, name: str) -> bool:
        """Whether the mask parameter ``name`` holds a voxel (on the whole label map)."""
        if name in self.nonempty:
            return self.nonempty[name]
        mask = self.mask(name)
        return mask is not None and bool(mask.any())


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
    box = _bbox(candidate, (0, 0, 0))  # nothing outside the candidate's box can change
    if box is None:
        return candidate
    inside = candidate[box]
    minus = inp.mask("minus", box)
    if minus is not None:
        inside &= ~minus
    if min_hu is not None and inp.hu is not None:
        inside &= inp.hu[box] >= min_hu  # drop air: outside the body, airway or bowel lumen
    return candidate


# --- shell -----------------------------------------------------------------------------------------------
SHELL_MM = 4.0  # default shell thickness


def _shell_pad(spacing, thickness_mm: float) -> tuple[int, ...]:
    return tuple(int(np.ceil(thickness_mm / s)) + 1 for s in spacing)


def _or_shifted(dst: np.ndarray, src: np.ndarray, step: int, axis: int, count: int) -> None:
    """``dst[v] |= src[v + step along axis]`` (nothing where ``v + step`` falls off the grid) on masks packed
    eight voxels to a byte along the last axis (``np.packbits``, big-endian bits); ``count``: voxels along it."""
    n = src.shape[axis]
    if axis != src.ndim - 1:
        if abs(step) >= n:
            return
        to, frm = [slice(None)] * src.ndim, [slice(None)] * src.ndim
        to[axis], frm[axis] = ((slice(0, n - step), slice(step, n)) if step >= 0
                               else (slice(-step, n), slice(0, n + step)))
        view = dst[tuple(to)]
        np.bitwise_or(view, src[tuple(frm)], out=view)
        return
    # Along the packed axis: voxel v + step sits in byte (v + step) // 8, so whole bytes move by q and the
    # bits by r, the bits that cross a byte boundary coming from the neighbouring byte.
    q, r = divmod(abs(step), 8)
    if q >= n:
        return
    pieces = []
    if step >= 0:
        pieces.append((slice(0, n - q), src[..., q:] << r if r else src[..., q:]))
        if r and q + 1 < n:
            pieces.append((slice(0, n - q - 1), src[..., q + 1:] >> (8 - r)))
    else:
        pieces.append((slice(q, n), src[..., :n - q] >> r if r else src[..., :n - q]))
        if r and q + 1 < n:
            pieces.append((slice(q + 1, n), src[..., :n - q - 1] << (8 - r)))
    for to, bits in pieces:
        view = dst[..., to]
        np.bitwise_or(view, bits, out=view)
    if count % 8:  # bits past the last voxel stay clear
        dst[..., -1] &= np.uint8((0xFF << (8 - count % 8)) & 0xFF)


def _reach(spacing, distance_mm: float) -> tuple[int, int, int, dict[int, np.ndarray]]:
    """The voxel offsets within ``distance_mm``: (through-plane axis, in-plane axes, half-widths).

    ``widths[dz][i]`` is the largest ``|j|`` such that offset ``(i, j, dz)`` (first in-plane axis, second
    in-plane axis, through-plane axis: the coarsest) is within reach, -1 where none is. An offset's squared
    length is computed as an exact 2D distance map per slice (scipy's ``distance_transform_edt``: sqrt of the
    sum of squared in-plane millimetres, squared again, in float32) plus the through-plane part would give it,
    so the dilation below draws the same line as comparing those maps with ``distance_mm``.
    """
    through = int(np.argmax(spacing))
    p0, p1 = (a for a in range(3) if a != through)
    s0, s1, st = spacing[p0], spacing[p1], spacing[through]
    a = np.arange(int(distance_mm // s0) + 2, dtype=np.float64) * s0
    b = np.arange(int(distance_mm // s1) + 2, dtype=np.float64) * s1
    plane = (np.sqrt(a[:, None] * a[:, None] + b[None, :] * b[None, :]) ** 2).astype(np.float32)
    widths = {}
    for dz in range(int(distance_mm // st) + 1):
        ok = plane <= distance_mm ** 2 if dz == 0 else plane + (dz * st) ** 2 <= distance_mm ** 2
        # Lengths grow with |j| (every step of the sum rounds monotonically), so the offsets within reach
        # along j are a run from 0: its length minus one is the half-width.
        widths[dz] = np.cumprod(ok, axis=1).sum(axis=1) - 1
    return through, p0, p1, widths


def _within_distance(mask: np.ndarray, spacing, distance_mm: float) -> np.ndarray:
    """Voxels within ``distance_mm`` (Euclidean, in mm) of ``mask``, the mask included. Exact.

    A dilation by every voxel offset within reach (:func:`_reach`), done as runs: the mask widened along one
    in-plane axis by each half-width once, those shifted along the other in-plane axis into one 2D disk per
    through-plane step, the disks shifted along the through-plane axis. About fifty passes of OR on the masks
    packed eight voxels to a byte: no distance map.
    """
    through, p0, p1, widths = _reach(spacing, distance_mm)
    count = mask.shape[-1]
    packed = np.packbits(np.asarray(mask, dtype=bool), axis=-1)
    wanted = sorted({int(w) for ws in widths.values() for w in ws if w >= 0})
    disks = {dz: np.zeros(packed.shape, dtype=np.uint8) for dz in widths}
    runs = packed.copy()
    for w in range(wanted[-1] + 1 if wanted else 0):
        if w:
            _or_shifted(runs, packed, w, p1, count)
            _or_shifted(runs, packed, -w, p1, count)
        for dz, ws in widths.items():
            for i in np.flatnonzero(ws == w):
                _or_shifted(disks[dz], runs, int(i), p0, count)
                if i:
                    _or_shifted(disks[dz], runs, -int(i), p0, count)
    out = disks.pop(0)
    for dz, disk in disks.items():
        _or_shifted(out, disk, dz, through, count)
        _or_shifted(out, disk, -dz, through, count)
    return np.unpackbits(out, axis=-1, count=count).view(bool)


def _shell_box(boxes: dict, shape, axes: PatientAxes, thickness_mm: float = SHELL_MM, **_) -> tuple | None:
    around = boxes.get("around")
    if around is None:
        return None
    pad = _shell_pad(axes.spacing, thickness_mm)
    return tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(around, pad, shape, strict=True))


def shell_around(inp: RuleInput, thickness_mm: float = SHELL_MM, min_hu: float | None = None) -> np.ndarray:
    """A shell ``thickness_mm`` thick just outside the ``around`` mask (e.g. the pleura around the lungs).

    Restricted to ``within`` when that mask is not empty (e.g. TotalSegmentator's thoracic cavity),
    minus ``minus``, and without voxels below ``min_hu`` when the CT is given.
    """
    around = inp.masks["around"]
    out = np.zeros(inp.shape, dtype=bool)
    spacing = inp.axes.spacing
    box = _bbox(around, _shell_pad(spacing, thickness_mm))
    if box is None:
        return out
    inner = around[box]
    out[box] = _within_distance(inner, spacing, thickness_mm) & ~inner
    within = inp.masks.get("within")
    if within is not None and inp.has("within"):
        out &= within
    return _finish(out, inp, min_hu)


# --- between the lungs -----------------------------------------------------------------------------------
def _hull_rows(mask: np.ndarray, origin=(0, 0)):
    """Where the filled convex hull of a 2D mask crosses its rows: ``(top, lo, hi)``, the hull holding on row
    ``top + k`` the columns strictly between ``lo[k]`` and ``hi[k]``.

    The hull is that of the mask's pixel squares, from only the first and last pixel of each row. ``origin``
    is the position of ``mask[0, 0]`` in a larger grid whose row and column numbers are used throughout, so a
    mask cut from a grid gives exactly the hull of the uncut one.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    first = np.argmax(mask[rows], axis=1) + origin[1]
    last = mask.shape[1] - 1 - np.argmax(mask[rows, ::-1], axis=1) + origin[1]
    rows = rows + origin[0]
    top, n = rows.min(), rows.max() - rows.min() + 1
    r = np.concatenate([rows - 0.5, rows + 0.5, rows - 0.5, rows + 0.5])
    c = np.concatenate([first - 0.5, first - 0.5, last + 0.5, last + 0.5])
    try:
        vertices = ConvexHull(np.column_stack([r, c])).vertices
    except QhullError:  # all points on a line: the hull is the mask's bounding box
        return top, np.full(n, first.min() - 0.5), np.full(n, last.max() + 0.5)
    r0, c0 = r[vertices], c[vertices]
    r1, c1 = np.roll(r0, -1), np.roll(c0, -1)
    span = np.arange(top, top + n, dtype=float)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (span - r0) / (r1 - r0)
    crosses = (r1 != r0) & (t >= 0) & (t <= 1)
    at = c0 + t * (c1 - c0)
    return top, np.where(crosses, at, np.inf).min(axis=1), np.where(crosses, at, -np.inf).max(axis=1)


def _fill_hull(hull_rows, shape, origin=(0, 0)) -> np.ndarray:
    """The hull of :func:`_hull_rows` inside the window of ``shape`` at ``origin`` (pixel centres strictly
    inside; the mask's own pixels are not added)."""
    top, lo, hi = hull_rows
    out = np.zeros(shape, dtype=bool)
    start, stop = max(top, origin[0]), min(top + len(lo), origin[0] + shape[0])
    if start < stop:
        cols = np.arange(origin[1], origin[1] + shape[1])
        k = slice(start - top, stop - top)
        # Centres exactly on the hull's border stay out (as in skimage), hence the small margin.
        out[start - origin[0]:stop - origin[0]] = (cols > lo[k, None] + 1e-9) & (cols < hi[k, None] - 1e-9)
    return out


def _convex_hull_2d(mask: np.ndarray) -> np.ndarray:
    """Filled convex hull of a 2D mask (pixels whose centres lie in the hull of the mask's pixel squares).

    Uses only the first and last pixel of each row, and fills the hull row by row from where its edges
    cross each row: a few vectorised operations instead of a point-in-polygon test of every pixel.
    """
    return _fill_hull(_hull_rows(mask), mask.shape) | mask


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


def _mean_index(mask: np.ndarray, axis: int, offset: int) -> float:
    """Mean index along ``axis`` (plus ``offset``) of the mask's pixels, as ``np.argwhere(...).mean()`` gives
    it (integer sums are exact in float64, so summing per index first changes nothing)."""
    counts = np.count_nonzero(mask, axis=1 - axis).astype(np.int64)
    n = int(counts.sum())
    total = int(counts @ np.arange(offset, offset + counts.size, dtype=np.int64))
    return float(np.float64(total) / n)


def _between_box(boxes: dict, shape, axes: PatientAxes, **_) -> tuple | None:
    left, right = boxes.get("left"), boxes.get("right")
    if left is None or right is None:
        return None
    return tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(left, right, strict=True))


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
    si_axis = inp.axes.si[0]
    lr_axis = inp.axes.lr[0]
    ap_axis, ap_sign = inp.axes.ap
    plane_axes = [a for a in range(3) if a != si_axis]
    lr_in_plane, ap_in_plane = plane_axes.index(lr_axis), plane_axes.index(ap_axis)
    # A coordinate that grows towards the front, whatever the index direction.
    forward = np.arange(left.shape[ap_axis]) * ap_sign

    def front_back(name):
        """Per axial slice, which front-back positions the mask ``name`` holds (None: no such parameter)."""
        mask = inp.masks.get(name)
        if mask is None:
            return None
        seen = mask[box].any(axis=lr_axis)  # the slice and front-back axes remain, in index order
        return seen.T if si_axis > ap_axis else seen

    posterior, anterior = front_back("posterior_limit"), front_back("anterior_limit")
    hu = inp.hu[box] if inp.hu is not None and bone_hu is not None else None
    hu = None if hu is None else np.moveaxis(hu, si_axis, 0)  # a view: slices read only where needed
    # Both lungs as two bits of one byte, axial slices first and contiguous (in-plane axes keep their order):
    # one reordering copy for both.
    bits = np.ascontiguousarray(np.moveaxis(left.view(np.uint8) | (right.view(np.uint8) << 1), si_axis, 0))
    sub = np.moveaxis(out[box], si_axis, 0)  # a view: slices written in place
    for at in range(bits.shape[0]):
        s2 = bits[at]
        union = s2 != 0
        rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
        if rows.size == 0:
            continue
        # Everything below happens inside the lungs' box on this slice (the hull cannot leave it).
        r0, c0 = int(rows[0]), int(cols[0])
        window = (slice(r0, int(rows[-1]) + 1), slice(c0, int(cols[-1]) + 1))
        s2, union = s2[window], union[window]
        l2, r2 = (s2 & 1).view(bool), (s2 & 2) != 0
        if not l2.any() or not r2.any():
            continue
        origin = (r0, c0)
        hull_rows = _hull_rows(union, origin)
        # Medial to both lungs: between their centroids along the left-right axis.
        lo, hi = sorted((_mean_index(l2, lr_in_plane, origin[lr_in_plane]),
                         _mean_index(r2, lr_in_plane, origin[lr_in_plane])))
        fwd = forward[origin[ap_in_plane]:origin[ap_in_plane] + union.shape[ap_in_plane]]
        keep_ap = np.ones(fwd.size, dtype=bool)
        seen = posterior[at] if posterior is not None else None
        if (seen is None or not seen.any()) and hu is not None:
            hull = _fill_hull(hull_rows, union.shape, origin) | union
            blob = _spine_from_hu(hu[at][window], hull, union, ap_in_plane, fwd, bone_hu)
            if blob is not None:
                keep_ap &= fwd > fwd[np.flatnonzero(blob.any(axis=1 - ap_in_plane))].max()
        elif seen is not None and seen.any():  # keep what lies in front of the vertebral bodies' anterior edge
            keep_ap &= fwd > forward[np.flatnonzero(seen)].max()
        if anterior is not None and anterior[at].any():  # and behind the sternum's posterior edge
            keep_ap &= fwd < forward[np.flatnonzero(anterior[at])].min()
        lr_coords = np.arange(origin[lr_in_plane], origin[lr_in_plane] + union.shape[lr_in_plane])
        keep_lr = (lr_coords > lo) & (lr_coords < hi)
        # The candidate lies in the rectangle both stripes leave: work there only.
        ranges = [None, None]
        for axis, keep in ((lr_in_plane, keep_lr), (ap_in_plane, keep_ap)):
            hits = np.flatnonzero(keep)
            ranges[axis] = (int(hits[0]), int(hits[-1]) + 1) if hits.size else None
        if ranges[0] is None or ranges[1] is None:
            continue
        rect = tuple(slice(a, b) for a, b in ranges)
        cand = _fill_hull(hull_rows, (rect[0].stop - rect[0].start, rect[1].stop - rect[1].start),
                          (r0 + rect[0].start, c0 + rect[1].start)) & ~union[rect]
        cand &= np.expand_dims(keep_lr[rect[lr_in_plane]], axis=1 - lr_in_plane)
        cand &= np.expand_dims(keep_ap[rect[ap_in_plane]], axis=1 - ap_in_plane)
        sub[at, r0 + rect[0].start:r0 + rect[0].stop, c0 + rect[1].start:c0 + rect[1].stop] = cand
    return _finish(out, inp, min_hu)


# name -> (function, names of the parameters that are masks (terms), names of numeric parameters)
RULES: dict[str, tuple[Callable[..., np.ndarray], tuple[str, ...], tuple[str, ...]]] = {
    "shell_around": (shell_around, ("around", "within", "minus"), ("thickness_mm", "min_hu")),
    "between_lungs": (between_lungs, ("left", "right", "anterior_limit", "posterior_limit", "minus"),
                      ("min_hu", "bone_hu")),
}

# name -> (names of the mask parameters whose boxes bound the rule, function of those boxes (None: empty),
# the grid shape, the axes and the numeric parameters -> the box, names of the mask parameters the rule asks
# for through RuleInput.mask only, which may come deferred). A rule listed here gives the same mask when run
# on that box cut from the grid (``RuleInput.nonempty`` telling what lies outside): the evaluator in
# :mod:`.regions` computes it there only.
RULE_BOXES: dict[str, tuple[tuple[str, ...], Callable[..., tuple | None], tuple[str, ...]]] = {
    "shell_around": (("around",), _shell_box, ("minus",)),
    "between_lungs": (("left", "right"), _between_box, ("minus",)),
}
