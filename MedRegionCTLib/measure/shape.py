"""Shape attributes of one binary mask: volume, bounding box, centroid, Feret diameter, axial axes.

Everything works on the mask's bounding-box crop and is given in millimetres / millilitres through the
affine (no axis order is assumed). The maximum 3D diameter is exact for the voxelised object: the largest
distance between two points of the convex hull of the mask's boundary surface, found with
``scipy.spatial.ConvexHull`` (the hull of a few thousand vertices instead of all voxel pairs).
"""

from __future__ import annotations

import contextlib

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

_CORNERS = np.array([[a, b, c] for a in (-0.5, 0.5) for b in (-0.5, 0.5) for c in (-0.5, 0.5)])


def local_affine(affine, crop) -> np.ndarray:
    """The affine of a crop (voxel (0,0,0) of the crop = voxel ``crop.start`` of the grid)."""
    aff = np.array(affine, dtype=np.float64)
    aff[:3, 3] = aff[:3, :3] @ np.array([s.start for s in crop], dtype=np.float64) + aff[:3, 3]
    return aff


def crop_of(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Bounding-box slices of ``mask`` (None when it is empty)."""
    if mask.ndim != 3:
        return _crop_by_projections(mask)
    # One projection along the first axis gives the box's other two sides; the first axis' side then
    # comes from the box alone. Several times faster than find_objects or a projection per axis.
    plane = _crop_by_projections(np.logical_or.reduce(mask, axis=0))
    if plane is None:
        return None
    first = _crop_by_projections(mask[(slice(None), *plane)].any(axis=(1, 2)))
    return (first[0], *plane)


def _crop_by_projections(mask: np.ndarray) -> tuple[slice, ...] | None:
    out = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hits.size == 0:
            return None
        out.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(out)


def extreme_voxels(mask: np.ndarray) -> np.ndarray:
    """(n, 3) indices of the first and last mask voxel of every index line along the last axis.

    Every mask voxel lies between the two ends of its line, so these points have the same convex hull
    as the whole mask. Lines along the last axis are contiguous: the first voxel is found by numpy's
    short-circuiting argmax, the last from the bits packed eight to a byte (no reversed copy).
    """
    m = np.ascontiguousarray(mask)
    present = m.any(axis=-1)
    first = np.argmax(m, axis=-1)
    packed = np.packbits(m, axis=-1)  # bit 7 of byte j: element 8 j
    j = packed.shape[-1] - 1 - np.argmax(packed[..., ::-1] != 0, axis=-1)  # last non-zero byte
    last = 8 * j + _LAST_BIT[np.take_along_axis(packed, j[..., None], axis=-1)[..., 0]]
    ab = np.argwhere(present)
    return np.concatenate([np.column_stack([ab, first[present]]), np.column_stack([ab, last[present]])])


# position (0-7, from the high bit) of the last set bit of a byte
_LAST_BIT = np.array([max((i for i in range(8) if (b >> (7 - i)) & 1), default=0) for b in range(256)],
                     dtype=np.int64)


# one of each pair of opposite steps to the 26 neighbours
_HALF_NEIGHBOURS = np.array([o for o in np.ndindex(3, 3, 3) if o > (1, 1, 1)], dtype=np.int64) - 1


def hull_candidates(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The ``points`` (voxel indices of ``mask``) that can be vertices of the mask's convex hull: a voxel
    halfway between two mask voxels (its neighbours one step away on either side, in any of the 13
    directions) is not. Points on the array's border are kept."""
    if len(points) < 64:
        return points
    shape = np.array(mask.shape)
    inner = ((points > 0) & (points < shape - 1)).all(axis=1)
    p = points[inner]
    flat_mask = mask.ravel()  # a copy when the mask is a view of a larger array
    strides = np.array([mask.shape[1] * mask.shape[2], mask.shape[2], 1], dtype=np.int64)
    flat = p @ strides
    between = np.zeros(len(p), dtype=bool)
    for step in _HALF_NEIGHBOURS @ strides:
        between |= flat_mask[flat + step] & flat_mask[flat - step]
    return np.concatenate([points[~inner], p[~between]])


_FACES = np.array([[s * (a == 0), s * (a == 1), s * (a == 2)] for a in range(3) for s in (-0.5, 0.5)],
                  dtype=np.float64)


def _hull_vertices(points: np.ndarray) -> np.ndarray:
    return _hull(points)[0]


def _hull(points: np.ndarray):
    """(hull vertices, their normal-cone tests): for each vertex, whether the outward normals of the facets
    at it reach past each of the planes in :data:`_CONE_TESTS` (some normal n with t . n > 0, t each test
    direction); None when there is no 3D hull (every point is then a candidate)."""
    if len(points) < 5:
        return points, None
    try:
        hull = ConvexHull(points)
    except QhullError:  # flat or degenerate set: every point is a candidate
        return points, None
    reach = hull.equations[:, :3] @ _CONE_TESTS.T > 0  # (facets, tests)
    at = hull.simplices.ravel()
    tests = np.zeros((len(points), len(_CONE_TESTS)), dtype=bool)
    for j in range(len(_CONE_TESTS)):
        tests[:, j] = np.bincount(at, weights=np.repeat(reach[:, j], 3), minlength=len(points)) > 0
    return points[hull.vertices], tests[hull.vertices]


# Directions t for the normal-cone tests: +-x, +-y, +-z, then s*e_a -+ e_b for each axis a, sign s, other
# axis b (a face centre s*e_a/2 maximises d . o over the offsets only where s*d_a > |d_b| for both b).
_CONE_TESTS = np.array(
    [[s * (i == a) for i in range(3)] for s in (1, -1) for a in range(3)]
    + [[s * (i == a) + t * (i == b) for i in range(3)]
       for a in range(3) for s in (1, -1) for b in range(3) if b != a for t in (1, -1)], dtype=np.float64)


def _face_tests(axis: int, sign: int) -> list[int]:
    rows = [i for i, t in enumerate(_CONE_TESTS) if t[axis] == sign and np.count_nonzero(t) == 2]
    return [(0 if sign > 0 else 3) + axis, *rows]


def _offset_candidates(verts: np.ndarray, tests, offsets: np.ndarray) -> np.ndarray:
    """Points v + o (v a hull vertex, o an offset: cube corners or face centres) that can be vertices of
    hull(verts + offsets). v + o is one only if some direction d is normal to the hull at v and has o as
    its unique maximiser among the offsets. d is a positive mix of the facet normals at v, so for every
    plane t . d > 0 that such a d satisfies, some facet normal at v must satisfy it too."""
    if tests is None:
        return (verts[:, None, :] + offsets[None, :, :]).reshape(-1, 3)
    need = np.zeros((len(offsets), len(_CONE_TESTS)), dtype=bool)
    for k, o in enumerate(offsets):
        nonzero = np.flatnonzero(o)
        if len(nonzero) == 1:  # a face centre
            need[k, _face_tests(int(nonzero[0]), int(np.sign(o[nonzero[0]])))] = True
        else:  # a corner: the open orthant of its signs
            for a in nonzero:
                need[k, (0 if o[a] > 0 else 3) + a] = True
    ok = ~(need[None] & ~tests[:, None, :]).any(axis=2)  # (verts, offsets)
    v, k = np.nonzero(ok)
    return verts[v] + offsets[k]


def _max_distance(points_mm: np.ndarray) -> float:
    if len(points_mm) < 2:
        return 0.0
    # pdist is O(n^2) memory in chunks of the condensed matrix; hull vertices are a few thousand at most.
    if len(points_mm) <= 6000:
        return float(pdist(points_mm).max())
    best = 0.0
    for start in range(0, len(points_mm), 2000):
        block = points_mm[start:start + 2000]
        d = np.sqrt(((block[:, None, :] - points_mm[None, :, :]) ** 2).sum(-1))
        best = max(best, float(d.max()))
    return best


def feret_diameters(mask_crop: np.ndarray, linear: np.ndarray) -> tuple[float, float]:
    """Maximum 3D (Feret) diameters in mm of a cropped mask; ``linear`` is the affine's 3x3 part.

    Returns (corners, faces). *corners*: the hull of the voxel cubes' corners, the exact Feret diameter of
    the voxelised object (at most one voxel diagonal above the true diameter). *faces*: the hull of the
    boundary faces' centres, i.e. the vertices of a marching-cubes mesh at level 0.5, which is what
    pyradiomics' ``Maximum3DDiameter`` measures.
    """
    if not mask_crop.any():
        return 0.0, 0.0
    # hull(voxels + cube) = hull(hull vertices of the voxel centres + cube corners), and likewise for the
    # face centres (a boundary face's outer neighbour is outside the mask at every hull vertex).
    # Only voxels that can be hull vertices go to Qhull, and only the corners / face centres that can be
    # vertices of the second hull; when those are few (a superset of the vertices, all inside the hull),
    # the farthest pair is searched among them directly.
    mask_crop = np.ascontiguousarray(mask_crop if mask_crop.dtype == bool else mask_crop != 0)
    verts, tests = _hull(hull_candidates(mask_crop, extreme_voxels(mask_crop)).astype(np.float64))
    out = []
    for offsets in (_CORNERS, _FACES):
        points = _offset_candidates(verts, tests, offsets)
        if tests is None or len(points) > 1.5 * len(verts):
            points = _hull_vertices(points)
        out.append(_max_distance(points @ np.asarray(linear).T))
    return out[0], out[1]


def feret_diameter(mask_crop: np.ndarray, linear: np.ndarray, surface: str = "corners") -> float:
    """One of :func:`feret_diameters`: ``surface="corners"`` or ``"faces"``."""
    if surface not in ("corners", "faces"):
        raise ValueError(f"surface must be 'corners' or 'faces', not {surface!r}")
    corners, faces = feret_diameters(mask_crop, linear)
    return corners if surface == "corners" else faces


def _axes_2d(pixels: np.ndarray, linear2: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Long axis (2D Feret of pixel corners) and the widest extent perpendicular to it, in mm."""
    corners = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    pts = (pixels[:, None, :].astype(np.float64) + corners[None]).reshape(-1, 2) @ linear2.T
    if len(pts) >= 3:
        with contextlib.suppress(QhullError):  # collinear pixels: keep them all
            pts = pts[ConvexHull(pts).vertices]
    diff = pts[:, None, :] - pts[None, :, :]
    dist = np.sqrt((diff ** 2).sum(-1))
    a, b = np.unravel_index(int(np.argmax(dist)), dist.shape)
    long_axis = float(dist[a, b])
    if long_axis == 0:
        return 0.0, 0.0, np.zeros(2)
    direction = diff[a, b] / long_axis
    normal = np.array([-direction[1], direction[0]])
    proj = pts @ normal
    return long_axis, float(proj.max() - proj.min()), direction


def marginal_counts(mask: np.ndarray) -> list[np.ndarray]:
    """Voxel count of ``mask`` on each index plane, per axis (``[sum over axes 1, 2; over 0, 2; over 0, 1]``),
    in two passes over the mask."""
    u = (mask if mask.dtype == bool else mask != 0).view(np.uint8)
    plane = np.add.reduce(u, axis=0, dtype=np.int64)  # (n1, n2)
    if u.flags.c_contiguous:
        first = np.add.reduce(u.reshape(u.shape[0], -1), axis=1, dtype=np.int64)
    else:
        first = np.add.reduce(u, axis=(1, 2), dtype=np.int64)
    return [first, plane.sum(axis=1), plane.sum(axis=0)]


def axial_axes(mask_crop: np.ndarray, linear: np.ndarray, si_axis: int, areas: np.ndarray | None = None) -> dict:
    """Long and short axis (mm) on the axial slice of largest area (RECIST-style: short axis measured
    perpendicular to the long axis) and that slice's index within the crop. ``areas``: the mask's voxel
    count per axial slice, when known."""
    other = [a for a in range(3) if a != si_axis]
    if areas is None:
        areas = mask_crop.sum(axis=tuple(other))
    k = int(np.argmax(areas))
    plane = np.take(mask_crop, k, axis=si_axis)
    pixels = np.argwhere(plane)
    if len(pixels) > 2:
        # the first and last pixel of each row carry the hull (argwhere lists pixels row by row)
        rows = pixels[:, 0]
        ends = np.ones(len(pixels), dtype=bool)
        ends[1:-1] = (rows[1:-1] != rows[:-2]) | (rows[1:-1] != rows[2:])
        pixels = pixels[ends]
    linear2 = np.asarray(linear)[:, other]  # 3x2: in-plane index steps -> mm (world), good for obliques
    # Work in an orthonormal in-plane frame so distances stay Euclidean.
    q, _ = np.linalg.qr(linear2)
    long_axis, short_axis, _ = _axes_2d(pixels, q.T @ linear2)
    return {"long_axis_mm": long_axis, "short_axis_mm": short_axis, "slice_in_crop": k,
            "slice_area_mm2": float(areas[k]) * float(np.linalg.norm(np.cross(linear2[:, 0], linear2[:, 1])))}


def shape_attributes(mask: np.ndarray, affine: np.ndarray, si_axis: int, crop=None,
                     diameter_surface: str = "corners") -> dict | None:
    """Volume, bounding box, extents, centroid, Feret diameter and axial axes of ``mask`` (None if empty)."""
    crop = crop if crop is not None else crop_of(mask)
    if crop is None:
        return None
    sub = mask[crop]
    # centroid from per-axis marginal sums (no argwhere of large masks)
    marginals = marginal_counts(sub)
    count = int(marginals[0].sum())
    if count == 0:
        return None
    affine = np.asarray(affine, dtype=np.float64)
    linear = affine[:3, :3]
    voxel_ml = abs(float(np.linalg.det(linear))) / 1000.0
    offset = np.array([s.start for s in crop], dtype=np.float64)
    centroid_idx = np.array([float((np.arange(sub.shape[a]) * marginals[a]).sum()) / count
                             for a in range(3)]) + offset
    centroid = centroid_idx @ linear.T + affine[:3, 3]
    lo = offset - 0.5
    hi = offset + np.array(sub.shape) - 0.5
    box_corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    box_world = box_corners @ linear.T + affine[:3, 3]
    axes = axial_axes(sub, linear, si_axis, areas=marginals[si_axis])
    diameters = feret_diameters(sub, linear)
    return {
        "voxels": count,
        "volume_ml": count * voxel_ml,
        "centroid_ras": centroid.tolist(),
        "bbox_index": [[int(s.start), int(s.stop - 1)] for s in crop],
        "bbox_ras_min": box_world.min(axis=0).tolist(),
        "bbox_ras_max": box_world.max(axis=0).tolist(),
        "extent_mm": (box_world.max(axis=0) - box_world.min(axis=0)).tolist(),  # R-L, A-P, S-I extents
        "max_diameter_mm": diameters[0] if diameter_surface == "corners" else diameters[1],
        "max_diameter_mesh_mm": diameters[1],
        "axial_long_axis_mm": axes["long_axis_mm"],
        "axial_short_axis_mm": axes["short_axis_mm"],
        "axial_slice_index": int(axes["slice_in_crop"] + offset[si_axis]),
    }
