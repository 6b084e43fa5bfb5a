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
    """(n, 3) indices of the first and last mask voxel of every index line along one axis.

    Every mask voxel lies between the two ends of its line, so these points have the same convex hull
    as the whole mask; the axis is the one that leaves the fewest lines.
    """
    lines = [np.count_nonzero(mask.any(axis=a)) for a in range(3)]
    axis = int(np.argmin(lines))
    m = np.moveaxis(mask, axis, -1)
    present = m.any(axis=-1)
    first = np.argmax(m, axis=-1)
    last = m.shape[-1] - 1 - np.argmax(m[..., ::-1], axis=-1)
    ab = np.argwhere(present)
    pts = np.concatenate([np.column_stack([ab, first[present]]), np.column_stack([ab, last[present]])])
    order = [0, 1]
    order.insert(axis, 2)  # put the line axis back in its place
    return pts[:, order]


_FACES = np.array([[s * (a == 0), s * (a == 1), s * (a == 2)] for a in range(3) for s in (-0.5, 0.5)],
                  dtype=np.float64)


def _hull_vertices(points: np.ndarray) -> np.ndarray:
    if len(points) < 5:
        return points
    try:
        hull = ConvexHull(points)
    except QhullError:  # flat or degenerate set: every point is a candidate
        return points
    return points[hull.vertices]


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
    verts = _hull_vertices(extreme_voxels(mask_crop).astype(np.float64))
    out = []
    for offsets in (_CORNERS, _FACES):
        points = _hull_vertices((verts[:, None, :] + offsets[None, :, :]).reshape(-1, 3))
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


def axial_axes(mask_crop: np.ndarray, linear: np.ndarray, si_axis: int) -> dict:
    """Long and short axis (mm) on the axial slice of largest area (RECIST-style: short axis measured
    perpendicular to the long axis) and that slice's index within the crop."""
    other = [a for a in range(3) if a != si_axis]
    areas = mask_crop.sum(axis=tuple(other))
    k = int(np.argmax(areas))
    plane = np.take(mask_crop, k, axis=si_axis)
    pixels = np.argwhere(plane)
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
    if not sub.any():
        return None
    affine = np.asarray(affine, dtype=np.float64)
    linear = affine[:3, :3]
    count = int(np.count_nonzero(sub))
    voxel_ml = abs(float(np.linalg.det(linear))) / 1000.0
    offset = np.array([s.start for s in crop], dtype=np.float64)
    # centroid from per-axis marginal sums (no argwhere of large masks)
    centroid_idx = np.array([
        float((np.arange(sub.shape[a]) * sub.sum(axis=tuple(b for b in range(3) if b != a))).sum()) / count
        for a in range(3)]) + offset
    centroid = centroid_idx @ linear.T + affine[:3, 3]
    lo = offset - 0.5
    hi = offset + np.array(sub.shape) - 0.5
    box_corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    box_world = box_corners @ linear.T + affine[:3, 3]
    axes = axial_axes(sub, linear, si_axis)
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
