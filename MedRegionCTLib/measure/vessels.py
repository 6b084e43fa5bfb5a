"""Vessel calibres on planes perpendicular to the centreline, at named landmarks.

The landmarks follow TotalSegmentator's aorta and pulmonary-artery reports (definitions, offsets and their
source in ``data/vessel_landmarks.json``): the aortic sinotubular junction, mid and distal ascending aorta,
mid arch, proximal, mid and T12 descending aorta, and the main pulmonary artery before its bifurcation.
Where the label map carries the structures a landmark is defined by (the brachiocephalic trunk, the left
subclavian artery, the sinotubular junction, T12), they place it; otherwise it is placed from the vessel's
own shape (arch top, calibre waist, branching point), and the landmark says so.

At each landmark the mask is cut by the plane through the centreline point, perpendicular to the
centreline; in that section ``diameter_mm`` is the largest diameter (maximum Feret) and
``diameter_pd_mm`` the width perpendicular to it, as TotalSegmentator reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage.graph import MCP_Geometric

from ..data import load_json


@lru_cache(maxsize=1)
def landmark_table() -> dict:
    return load_json("vessel_landmarks.json")


@dataclass
class Centerline:
    """Points (n, 3) in world millimetres every ``step_mm`` along the vessel, from proximal to distal, with
    unit tangents and the distance to the wall (mm) at each point."""

    points: np.ndarray
    tangents: np.ndarray
    radius: np.ndarray
    step_mm: float

    def __len__(self) -> int:
        return len(self.points)

    def nearest(self, point) -> int:
        return int(np.argmin(np.linalg.norm(self.points - np.asarray(point, float), axis=1)))

    def offset(self, index: int, mm: float) -> int:
        """The index ``mm`` further along (negative: back towards the proximal end), clipped to the line."""
        return int(np.clip(round(index + mm / self.step_mm), 0, len(self) - 1))


@dataclass
class Section:
    diameter_mm: float       # largest diameter in the plane
    diameter_pd_mm: float    # width perpendicular to it
    area_mm2: float
    point: list              # centre of the plane (world mm)
    normal: list
    cut_by_field_of_view: bool = False


@dataclass
class Landmark:
    key: str
    name: str                # TotalSegmentator's name
    index: int               # centreline index
    placed_by: str           # what placed it (a structure, or the vessel's shape)
    section: Section | None = None
    notes: list = field(default_factory=list)

    def to_json(self) -> dict:
        out = {"name": self.name, "placed_by": self.placed_by, "centreline_index": self.index, "notes": self.notes}
        if self.section is not None:
            s = self.section
            out.update(diameter_mm=round(s.diameter_mm, 1), diameter_pd_mm=round(s.diameter_pd_mm, 1),
                       area_mm2=round(s.area_mm2, 1), point_ras=[round(v, 1) for v in s.point],
                       normal_ras=[round(v, 3) for v in s.normal], cut_by_field_of_view=s.cut_by_field_of_view)
        return out


# --- centreline ----------------------------------------------------------------------------------------
def _working_mask(mask: np.ndarray, affine: np.ndarray, work_mm: float):
    """The mask's crop, block-averaged to about ``work_mm`` (partial-volume fraction >= 0.5), holes filled,
    largest component; with the affine of the working grid."""
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 2, 0), min(s.stop + 2, n)) for s, n in zip(box, mask.shape))
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    f = np.maximum(1, np.round(work_mm / spacing)).astype(int)
    sub = mask[box].astype(np.float32)
    if (f > 1).any():
        pad = [(0, (-n) % k) for n, k in zip(sub.shape, f)]
        sub = np.pad(sub, pad)
        shp = [n // k for n, k in zip(sub.shape, f)]
        sub = sub.reshape(shp[0], f[0], shp[1], f[1], shp[2], f[2]).mean(axis=(1, 3, 5))
    work = ndimage.binary_fill_holes(sub >= 0.5)
    lab, n = ndimage.label(work)
    if n > 1:
        work = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    aff = np.array(affine, float)
    aff[:3, 3] = affine[:3, :3] @ (np.array([s.start for s in box]) + (f - 1) / 2.0) + affine[:3, 3]
    aff[:3, :3] = affine[:3, :3] * f
    return work, aff


def _geodesic(work: np.ndarray, spacing, start):
    cost = np.where(work, 1.0, np.inf)
    mcp = MCP_Geometric(cost, sampling=tuple(spacing))
    dist, _ = mcp.find_costs([tuple(start)])
    return dist


def _centred_path(work, edt, spacing, start, end) -> np.ndarray:
    """Voxel path from ``start`` to ``end`` that keeps to the middle of the tube (cost 1/r^2)."""
    cost = np.where(work, 1.0 / (edt + 0.5) ** 2, np.inf)
    mcp = MCP_Geometric(cost, sampling=tuple(spacing))
    mcp.find_costs([tuple(start)], [tuple(end)])
    return np.asarray(mcp.traceback(tuple(end)), float)


def _resample(points_ijk: np.ndarray, affine, edt_world, step_mm: float, smooth_mm: float) -> Centerline | None:
    pts = points_ijk @ affine[:3, :3].T + affine[:3, 3]
    if len(pts) < 3:
        return None
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate(([0.0], np.cumsum(seg)))
    if s[-1] < 3 * step_mm:
        return None
    # even spacing first, then smoothing along the line (the voxel path zigzags)
    t = np.arange(0.0, s[-1] + 1e-9, step_mm)
    even = np.stack([np.interp(t, s, pts[:, a]) for a in range(3)], axis=1)
    sm = ndimage.gaussian_filter1d(even, smooth_mm / step_mm, axis=0, mode="nearest")
    tang = np.gradient(sm, axis=0)
    tang = ndimage.gaussian_filter1d(tang, 4.0 / step_mm, axis=0, mode="nearest")
    tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
    return Centerline(sm, tang, edt_world(sm), step_mm)


def vessel_centerline(mask: np.ndarray, affine: np.ndarray, proximal=None, distal=None,
                      work_mm: float = 1.5, step_mm: float = 1.0) -> tuple[Centerline | None, dict]:
    """Centreline of a tubular mask between its two ends farthest apart along the tube (or towards the
    world points ``proximal`` / ``distal`` when given), ordered from the end nearest ``proximal`` (default:
    the more anterior end). Returns the centreline and a dict of working data (grid, affine, distance map)."""
    if mask.sum() < 20:
        return None, {}
    work, aff = _working_mask(mask, affine, work_mm)
    sp = np.linalg.norm(aff[:3, :3], axis=0)
    edt = ndimage.distance_transform_edt(work, sampling=sp)
    inv = np.linalg.inv(aff)

    def to_ijk(p):
        return np.rint(inv[:3, :3] @ np.asarray(p, float) + inv[:3, 3]).astype(int)

    def nearest_voxel(p):
        idx = np.argwhere(work)
        return tuple(idx[np.argmin(np.linalg.norm((idx - to_ijk(p)) * sp, axis=1))])

    seed = np.unravel_index(np.argmax(edt), edt.shape)
    if proximal is not None and distal is not None:
        a, b = nearest_voxel(proximal), nearest_voxel(distal)
    else:
        d0 = _geodesic(work, sp, seed)
        a = np.unravel_index(np.argmax(np.where(np.isfinite(d0), d0, -1)), d0.shape)
        if distal is not None:
            a = nearest_voxel(distal)
        d1 = _geodesic(work, sp, a)
        b = np.unravel_index(np.argmax(np.where(np.isfinite(d1), d1, -1)), d1.shape)
        if proximal is not None:
            b = nearest_voxel(proximal)
    path = _centred_path(work, edt, sp, a, b)

    def edt_world(points):
        ijk = (points @ inv[:3, :3].T + inv[:3, 3]).T
        return ndimage.map_coordinates(edt, ijk, order=1, mode="nearest")

    line = _resample(path, aff, edt_world, step_mm, smooth_mm=3.0)
    if line is None:
        return None, {}
    if proximal is None:  # the proximal end (aortic root, pulmonary valve) is the anterior one
        ras_y = line.points[:, 1]
        if ras_y[0] < ras_y[-1]:
            line = Centerline(line.points[::-1].copy(), -line.tangents[::-1], line.radius[::-1].copy(), step_mm)
    elif np.linalg.norm(line.points[-1] - proximal) < np.linalg.norm(line.points[0] - proximal):
        line = Centerline(line.points[::-1].copy(), -line.tangents[::-1], line.radius[::-1].copy(), step_mm)
    return line, {"work": work, "affine": aff, "edt": edt, "edt_world": edt_world}


# --- cross-sections ------------------------------------------------------------------------------------
def _basis(normal):
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    helper = np.array([1.0, 0, 0]) if abs(n[0]) < 0.9 else np.array([0, 1.0, 0])
    u = np.cross(n, helper)
    u /= np.linalg.norm(u)
    return n, u, np.cross(n, u)


def cross_section(mask: np.ndarray, affine: np.ndarray, point, normal, half_mm: float = 45.0,
                  step_mm: float = 0.5, hu: np.ndarray | None = None, wall: dict | None = None) -> Section | None:
    """The section of ``mask`` by the plane through ``point`` (world mm) perpendicular to ``normal``: the
    connected piece at the point (or nearest to it), its largest diameter, the width perpendicular to that,
    and its area. The mask is interpolated linearly and cut at one half (its partial-volume edge).

    With the CT (``hu``, same grid) and ``wall`` (``{"mm": .., "fat_hu": ..}``) the outline is carried out to
    the vessel's outer wall where a mask of the lumen stops short of it: along each ray from the centre, past
    the mask's edge, to where the tissue turns to fat within ``wall["mm"]`` (left at the mask's edge where no
    fat follows, against a neighbouring organ). Vessel calibres are measured outer wall to outer wall."""
    point = np.asarray(point, float)
    n, u, v = _basis(normal)
    inv = np.linalg.inv(affine)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    # only the mask's crop around the point is interpolated
    c = inv[:3, :3] @ point + inv[:3, 3]
    reach = np.ceil(half_mm / spacing).astype(int) + 2
    lo = np.maximum(np.floor(c).astype(int) - reach, 0)
    hi = np.minimum(np.ceil(c).astype(int) + reach + 1, mask.shape)
    if np.any(hi <= lo):
        return None
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    ticks = np.arange(-half_mm, half_mm + 1e-9, step_mm)
    grid = point[None, None, :] + ticks[:, None, None] * u + ticks[None, :, None] * v
    ijk = np.tensordot(grid, inv[:3, :3].T, axes=1) + inv[:3, 3] - lo
    coords = np.moveaxis(ijk, -1, 0)
    frac = ndimage.map_coordinates(mask[box].astype(np.float32), coords, order=1, mode="constant", cval=0.0)
    outside = np.any((ijk + lo < -0.5) | (ijk + lo > np.asarray(mask.shape) - 0.5), axis=-1)
    lab, count = ndimage.label(frac >= 0.5)
    if count == 0:
        return None
    mid = len(ticks) // 2
    if lab[mid, mid]:
        keep = lab[mid, mid]
    else:
        d = ndimage.distance_transform_edt(lab == 0, return_indices=True)[1]
        keep = lab[d[0][mid, mid], d[1][mid, mid]]
    piece = lab == keep
    if piece[[0, -1], :].any() or piece[:, [0, -1]].any():
        return None  # wider than the plane's window: not a vessel section
    touches_edge = bool((ndimage.binary_dilation(piece) & outside).any())
    near = ndimage.binary_dilation(piece, iterations=2)
    own = np.where(near, frac, 0.0)
    plane_hu = None
    if hu is not None and wall:
        plane_hu = ndimage.map_coordinates(np.asarray(hu[box], np.float32), coords, order=1, mode="nearest")
    outline = _ray_outline(own, plane_hu, np.argwhere(piece).mean(axis=0), step_mm, wall)
    pts = (outline - mid) * step_mm
    x, y = pts[:, 0], pts[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    diameter, width = _feret(pts)
    return Section(diameter, width, area, point.tolist(), n.tolist(), touches_edge)


def _ray_outline(own: np.ndarray, plane_hu, centre, step_mm: float, wall: dict | None, rays: int = 120):
    """Outline points (plane pixels) along ``rays`` rays from ``centre``: the first drop of ``own`` below one
    half, carried out to the outer wall when ``plane_hu`` is given."""
    fine = 0.25
    radii = np.arange(0.0, max(own.shape) / 2.0 + 1.0, fine)
    ang = np.linspace(0.0, 2 * np.pi, rays, endpoint=False)
    dirs = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    pos = centre[None, None, :] + radii[None, :, None] * dirs[:, None, :]  # rays x radii x 2
    f = ndimage.map_coordinates(own, np.moveaxis(pos, -1, 0), order=1, mode="constant", cval=0.0)
    below = f < 0.5
    first = np.where(below.any(axis=1), np.argmax(below, axis=1), len(radii) - 1)
    # sub-sample edge: interpolate between the last inside and the first outside sample
    i0 = np.maximum(first - 1, 0)
    f0, f1 = f[np.arange(rays), i0], f[np.arange(rays), first]
    t = np.clip((f0 - 0.5) / np.maximum(f0 - f1, 1e-6), 0.0, 1.0)
    r = radii[i0] + t * (radii[first] - radii[i0])
    if plane_hu is not None:
        h = ndimage.map_coordinates(plane_hu, np.moveaxis(pos, -1, 0), order=1, mode="nearest")
        reach = int(round(wall["mm"] / step_mm / fine))
        for k in range(rays):
            seg = h[k, first[k]:first[k] + reach + 1]
            fat = np.flatnonzero(seg < wall["fat_hu"])
            # a wall is soft tissue between the lumen and the fat; a dense neighbour (another vessel) is not
            if fat.size and fat[0] > 0 and seg[:fat[0]].max() < wall["max_hu"]:
                j = first[k] + fat[0]
                a, b = h[k, j - 1], h[k, j]
                s = np.clip((a - wall["fat_hu"]) / max(a - b, 1e-6), 0.0, 1.0)
                r[k] = max(r[k], radii[j - 1] + s * fine)
    r = ndimage.median_filter(r, size=5, mode="wrap")  # one stray ray does not make a diameter
    return centre[None, :] + r[:, None] * dirs


def _feret(pts: np.ndarray) -> tuple[float, float]:
    """Largest diameter of 2D points and the extent perpendicular to it."""
    try:
        hull = pts[ConvexHull(pts).vertices]
    except (QhullError, ValueError):
        hull = pts
    d = hull[:, None, :] - hull[None, :, :]
    dist = np.linalg.norm(d, axis=-1)
    i, j = np.unravel_index(np.argmax(dist), dist.shape)
    axis = d[i, j] / max(dist[i, j], 1e-9)
    perp = np.array([-axis[1], axis[0]])
    proj = hull @ perp
    return float(dist[i, j]), float(proj.max() - proj.min())


# --- landmarks -----------------------------------------------------------------------------------------
def _center(mask: np.ndarray, affine) -> np.ndarray | None:
    idx = np.argwhere(mask)
    if idx.size == 0:
        return None
    return affine[:3, :3] @ idx.mean(axis=0) + affine[:3, 3]


def _contact(branch: np.ndarray, vessel: np.ndarray) -> np.ndarray:
    """Voxel indices of ``vessel`` touching ``branch`` (computed in the branch's box)."""
    box = ndimage.find_objects(branch.astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
    touch = ndimage.binary_dilation(branch[box]) & vessel[box]
    return np.argwhere(touch) + [s.start for s in box]


def _origins(brachio, subclavian, vessel, affine):
    """TotalSegmentator's origin points of the brachiocephalic trunk and the left subclavian artery: the two
    points of their contacts with the aorta farthest apart (world mm), or None."""
    if brachio is None or subclavian is None or not brachio.any() or not subclavian.any():
        return None
    cb, cs = _contact(brachio, vessel), _contact(subclavian, vessel)
    if len(cb) == 0 or len(cs) == 0:
        return None
    d = np.linalg.norm((cb[:, None, :] - cs[None, :, :]).astype(float), axis=-1)
    i, j = np.unravel_index(np.argmax(d), d.shape)
    return affine[:3, :3] @ cb[i] + affine[:3, 3], affine[:3, :3] @ cs[j] + affine[:3, 3]


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of the runs of True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.astype(np.int8), [0]))))
    return list(zip(edges[::2], edges[1::2]))


def _limbs(line: Centerline, table: dict):
    """(end of the ascending limb, start of the descending limb) as centreline indices, either None: the
    limbs are the first long runs of the centreline heading up, then down (within ``limb_angle_deg`` of
    vertical)."""
    c = np.cos(np.radians(table["limb_angle_deg"]))
    need = table["limb_min_mm"] / line.step_mm
    tz = line.tangents[:, 2]
    up = [r for r in _runs(tz > c) if r[1] - r[0] >= need]
    asc_end = up[0][1] - 1 if up else None
    after = asc_end if asc_end is not None else 0
    down = [r for r in _runs(tz < -c) if r[1] - r[0] >= need and r[0] >= after]
    desc_start = down[0][0] if down else None
    return asc_end, desc_start


def _equivalent_diameters(mask, affine, line: Centerline, indices, table) -> np.ndarray:
    out = []
    for i in indices:
        s = cross_section(mask, affine, line.points[i], line.tangents[i], table["section_half_width_mm"], 1.0)
        out.append(2.0 * np.sqrt(s.area_mm2 / np.pi) if s else np.nan)
    return np.asarray(out)


def _sinotubular_by_shape(mask, affine, line: Centerline, asc_end: int, table) -> tuple[int, str]:
    """The sinotubular junction from the calibre along the ascending aorta: where the sinus bulge above the
    root has narrowed back to the tubular calibre; the first point when no bulge shows (the mask starts above
    the root)."""
    stride = max(1, int(round(2.0 / line.step_mm)))
    reach = int(round((table["sinus_search_mm"] + 20.0) / line.step_mm))
    idx = np.arange(0, min(asc_end, reach) + 1, stride)
    if idx.size < 4:
        return 0, "the aorta's first point (its root is not in the mask)"
    d = _equivalent_diameters(mask, affine, line, idx, table)
    tubular = np.nanmedian(_equivalent_diameters(mask, affine, line, np.arange(idx[-1], asc_end + 1, stride),
                                                 table)) if asc_end > idx[-1] else np.nanmedian(d[-3:])
    sinus_zone = idx <= table["sinus_search_mm"] / line.step_mm
    k = int(np.nanargmax(np.where(sinus_zone, d, -np.inf)))
    if not np.isfinite(d[k]) or d[k] < 1.08 * tubular:
        return 0, "the aorta's first point (no sinus bulge in the mask)"
    back = np.flatnonzero((np.arange(idx.size) > k) & (d <= 1.04 * tubular))
    j = idx[back[0]] if back.size else idx[-1]
    return int(j), "the calibre waist above the sinuses"


def aorta_landmarks(aorta: np.ndarray, affine: np.ndarray, structures: dict | None = None,
                    hu: np.ndarray | None = None):
    """Centreline and landmarks of the thoracic aorta (dict key -> :class:`Landmark`), with notes on what
    could not be placed. ``structures``: boolean masks on the same grid by TotalSegmentator name (those the
    landmark table names: brachiocephalic_trunk, subclavian_artery_left, sinotubular_junction,
    vertebrae_T12), each optional."""
    table = landmark_table()
    defs = table["aorta"]
    structures = structures or {}
    notes: list[str] = []
    line, _ = vessel_centerline(aorta, affine)
    if line is None:
        return None, {}, ["the aorta is too small to trace"]
    idx: dict[str, tuple[int, str]] = {}
    origins = _origins(structures.get("brachiocephalic_trunk"), structures.get("subclavian_artery_left"), aorta,
                       affine)
    asc_end, desc_start = _limbs(line, table)
    if origins is not None:
        ib, isub = line.nearest(origins[0]), line.nearest(origins[1])
        if ib < isub:
            idx["distal_ascending_aorta"] = (line.offset(ib, defs["distal_ascending_aorta"]["offset_mm"]),
                                             "brachiocephalic trunk origin")
            idx["proximal_descending_aorta"] = (line.offset(isub, defs["proximal_descending_aorta"]["offset_mm"]),
                                                "left subclavian artery origin")
    if "distal_ascending_aorta" not in idx and asc_end is not None and desc_start is not None:
        idx["distal_ascending_aorta"] = (asc_end, "top of the ascending limb (arch shape)")
        idx["proximal_descending_aorta"] = (desc_start, "start of the descending limb (arch shape)")
    elif "distal_ascending_aorta" not in idx:
        notes.append("the aortic arch is not in the field of view or not traced: arch landmarks not placed")
        if desc_start is not None and asc_end is None:
            idx["proximal_descending_aorta"] = (desc_start, "first point of the descending aorta in view")
    if "distal_ascending_aorta" in idx:
        a, b = idx["distal_ascending_aorta"][0], idx["proximal_descending_aorta"][0]
        idx["mid_aortic_arch"] = ((a + b) // 2, "midway between the arch landmarks")
        stj_mask = structures.get("sinotubular_junction")
        c = _center(stj_mask, affine) if stj_mask is not None else None
        if c is not None:
            idx["sinotubular_junction"] = (int(np.argmin(np.linalg.norm(line.points[:a + 1] - c, axis=1))),
                                           "sinotubular junction mask")
        else:
            idx["sinotubular_junction"] = _sinotubular_by_shape(aorta, affine, line, a, table)
        s = idx["sinotubular_junction"][0]
        if a - s >= 4:
            idx["mid_ascending_aorta"] = ((s + a) // 2, "midway between the sinotubular junction and the arch")
        else:
            del idx["sinotubular_junction"]
            notes.append("the ascending aorta is too short in the mask to place its landmarks")
    if "proximal_descending_aorta" in idx:
        p = idx["proximal_descending_aorta"][0]
        t12 = structures.get("vertebrae_T12")
        c = _center(t12, affine) if t12 is not None else None
        if c is not None and p < len(line) - 1:
            j = p + int(np.argmin(np.abs(line.points[p:, 2] - c[2])))
            idx["descending_aorta_t12"] = (j, "T12 vertebra")
            end, how = j, "midway between the proximal descending aorta and T12"
        else:
            cap = p + int(round(110.0 / line.step_mm))
            end = min(len(line) - 1, cap)
            how = ("110 mm down the descending aorta (T12 not labelled)" if end == cap else
                   "midway down the descending aorta in view (T12 not labelled)")
            end = end if end == cap else p + 2 * ((end - p) // 2)
        if end - p >= 4:
            idx["mid_descending_aorta"] = ((p + end) // 2, how)
    out = {}
    for key, spec in defs.items():
        if key not in idx:
            continue
        i, how = idx[key]
        lm = Landmark(key, spec["name"], int(i), how)
        lm.section = cross_section(aorta, affine, line.points[i], line.tangents[i], table["section_half_width_mm"],
                                   table["section_step_mm"], hu, table["wall"])
        if lm.section is None:
            lm.notes.append("no closed vessel section at this point")
        out[key] = lm
    return line, out, notes
