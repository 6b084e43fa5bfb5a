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
    fat_bounded: float = float("nan")  # share of the outline that borders fat (NaN without the CT)


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
    radius = edt_world(sm)
    # the path wanders within a wide lumen: its direction is taken over a stretch as long as the vessel is wide
    tang = np.gradient(sm, axis=0)
    tang = ndimage.gaussian_filter1d(tang, max(4.0, float(np.median(radius))) / step_mm, axis=0, mode="nearest")
    tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
    return Centerline(sm, tang, radius, step_mm)


def vessel_centerline(mask: np.ndarray, affine: np.ndarray, proximal=None, distal=None,
                      work_mm: float = 1.5, step_mm: float = 1.0,
                      lowest_ends: bool = False) -> tuple[Centerline | None, dict]:
    """Centreline of a tubular mask between its two ends farthest apart along the tube (with
    ``lowest_ends``: between its lowest point and the lowest point far along the tube from it, as for the
    thoracic aorta whose mask may hold the stumps of its branches; or towards the world points ``proximal`` /
    ``distal`` when given), ordered from the end nearest ``proximal`` (default: the more anterior end).
    Returns the centreline and a dict of working data (grid, affine, distance map)."""
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

    if proximal is not None and distal is not None:
        a, b = nearest_voxel(proximal), nearest_voxel(distal)
    elif lowest_ends:
        # the distal end is the vessel's lowest point; the other end the lowest of the points far along the
        # tube from it (branches that ran into the mask end high, in the neck)
        vox = np.argwhere(work)
        z = (vox @ aff[:3, :3].T + aff[:3, 3])[:, 2]
        a = tuple(vox[np.argmin(z)]) if distal is None else nearest_voxel(distal)
        d1 = _geodesic(work, sp, a)
        far = d1[tuple(vox.T)] > 0.5 * np.nanmax(np.where(np.isfinite(d1), d1, np.nan))
        b = tuple(vox[far][np.argmin(z[far])]) if proximal is None else nearest_voxel(proximal)
    else:
        seed = np.unravel_index(np.argmax(edt), edt.shape)
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

    With the CT (``hu``, same grid) and ``wall`` the outline follows the vessel's outer wall wherever fat
    surrounds it: along each ray from the centre it ends where the tissue turns to fat (half-way between the
    two), from half the radius on -- short of the edge of a mask that spread into the fat; and, around a lumen
    brighter than soft tissue (iodine), up to ``wall["mm"]`` past the mask's edge, through the wall a mask of
    the lumen leaves out. Where no fat follows (against a neighbouring organ) the mask's edge stands. Vessel
    calibres are measured outer wall to outer wall."""
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
    piece = ndimage.binary_fill_holes(lab == keep)
    if piece[[0, -1], :].any() or piece[:, [0, -1]].any():
        return None  # wider than the plane's window: not a vessel section
    touches_edge = bool((ndimage.binary_dilation(piece) & outside).any())
    near = ndimage.binary_dilation(piece, iterations=2)
    own = np.where(piece, 1.0, np.where(near, frac, 0.0))
    plane_hu = None
    if hu is not None and wall:
        plane_hu = ndimage.map_coordinates(np.asarray(hu[box], np.float32), coords, order=1, mode="nearest")
    outline, fat_share = _ray_outline(own, plane_hu, np.argwhere(piece).mean(axis=0), step_mm, wall)
    pts = (outline - mid) * step_mm
    x, y = pts[:, 0], pts[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    diameter, width = _feret(pts)
    return Section(diameter, width, area, point.tolist(), n.tolist(), touches_edge, fat_share)


def _ray_outline(own: np.ndarray, plane_hu, centre, step_mm: float, wall: dict | None, rays: int = 120):
    """Outline points (plane pixels) along ``rays`` rays from ``centre``: the first drop of ``own`` below one
    half, moved to the fat when ``plane_hu`` is given (see :func:`cross_section`); and the share of rays
    that met fat."""
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
    met = np.zeros(rays, bool)
    if plane_hu is not None:
        h = ndimage.map_coordinates(ndimage.gaussian_filter(plane_hu, 1.0), np.moveaxis(pos, -1, 0), order=1,
                                    mode="nearest")
        inner = np.median(h[np.arange(rays), np.maximum(first // 2, 0)])
        # a lumen brighter than soft tissue (iodine) has a wall outside it, up to wall["mm"] thick, and a mask
        # drawn from the lumen's brightness may stop short of the lumen's blurred edge: the outline may grow to
        # the fat within wall["mm"] of where the lumen ends, at most wall["contrast_mm"] past the mask. Unenhanced
        # blood and wall look alike and a mask of them holds the wall, but one traced on a coarse grid may stop
        # up to a voxel short of it: the outline may grow wall["unenhanced_mm"] to the fat.
        enhanced = inner > wall["contrast_lumen_hu"]
        fat = h < wall["fat_hu"]
        fat &= np.concatenate([fat[:, 1:], fat[:, -1:]], axis=1)  # two samples running: not a noise dip
        lo = int(0.5 * np.median(r) / fine)

        def samples(mm):
            return int(round(mm / step_mm / fine))

        bordering = samples(wall["mm"])
        if enhanced:
            cap = np.minimum(first + samples(wall["contrast_mm"]), len(radii) - 1)
            past_mask = np.arange(len(radii))[None, :] >= first[:, None]
            dim = (h < wall["contrast_lumen_hu"]) & past_mask
            lumen_end = np.where(dim.any(axis=1), np.argmax(dim, axis=1), len(radii) - 1)
            grow_to = np.minimum(lumen_end + bordering, cap)
        else:
            grow_to = np.minimum(first + samples(wall["unenhanced_mm"]), len(radii) - 1)
        reach = np.minimum(np.maximum(grow_to, first + bordering), len(radii) - 1)
        blur = int(round(1.0 / step_mm / fine))
        at_mask = r.copy()
        moved = np.zeros(rays, bool)
        for k in range(rays):
            hits = np.flatnonzero(fat[k, lo:reach[k] + 1])
            if not hits.size:
                continue  # no fat within reach: a neighbouring organ, the mask's edge stands
            j = lo + hits[0]
            past = h[k, first[k]:j]
            rises = (past >= wall["max_hu"]) & (past - np.minimum.accumulate(past) >= wall["rise_hu"]) if past.size \
                else np.zeros(0, bool)
            if rises.any():
                continue  # the attenuation rises again to dense tissue past the mask: another vessel or bone
            met[k] = j <= first[k] + bordering
            if j > grow_to[k]:
                continue  # fat beyond what the mask may have missed: the edge stands
            # the edge is half-way between the tissue just inside and the fat (lung beyond a thin fat rim
            # counts as fat: its air would pull the edge outwards)
            level = 0.5 * (h[k, max(j - blur, 0):j].max() + max(h[k, j:j + blur + 1].min(), wall["fat_floor_hu"]))
            back = np.flatnonzero(h[k, :j + 1] >= level)
            e = int(back[-1]) if back.size else j - 1
            a, b = h[k, e], h[k, e + 1]
            s = np.clip((a - level) / max(a - b, 1e-6), 0.0, 1.0)
            r[k] = radii[e] + s * fine
            moved[k] = True
        if moved.any():
            # a mask short of the wall is short all round; a ray that grows much further than the others
            # crossed a thin neighbour (a vein, the oesophagus) to the fat behind it
            limit = max(float(np.median(r[moved] - at_mask[moved])), 0.0) + wall["growth_spread_mm"] / step_mm
            r = np.minimum(r, at_mask + limit)
    r = ndimage.median_filter(r, size=5, mode="wrap")  # one stray ray does not make a diameter
    share = float(met.mean()) if plane_hu is not None else float("nan")
    return centre[None, :] + r[:, None] * dirs, share


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
    limbs are the last long run of the centreline heading up before its highest point and the first long run
    heading down after it (within ``limb_angle_deg`` of vertical)."""
    c = np.cos(np.radians(table["limb_angle_deg"]))
    need = table["limb_min_mm"] / line.step_mm
    tz = line.tangents[:, 2]
    top = int(np.argmax(line.points[:, 2]))
    up = [r for r in _runs(tz > c) if r[1] - r[0] >= need and r[1] - 1 <= top]
    down = [r for r in _runs(tz < -c) if r[1] - r[0] >= need and r[0] >= top]
    asc_end = up[-1][1] - 1 if up else None
    desc_start = down[0][0] if down else None
    return asc_end, desc_start


def _equivalent_diameters(mask, affine, line: Centerline, indices, table, hu=None) -> np.ndarray:
    out = []
    for i in indices:
        s = cross_section(mask, affine, line.points[i], line.tangents[i], table["section_half_width_mm"], 1.0,
                          hu, table["wall"] if hu is not None else None)
        out.append(2.0 * np.sqrt(s.area_mm2 / np.pi) if s else np.nan)
    return np.asarray(out)


def _leaves_heart(mask, affine, line: Centerline, first: int, asc_end: int, hu, table) -> int | None:
    """The first point of the ascending aorta whose outline borders fat over at least ``fat_share`` of its
    round for ``fat_run_mm`` running (the root and the sinuses lie within the heart, the tubular aorta in the
    mediastinal fat), at least ``tubular_min_mm`` below the top of the ascending limb; None if none."""
    stride = max(1, int(round(2.0 / line.step_mm)))
    stop = asc_end - int(round(table["tubular_min_mm"] / line.step_mm))
    need = max(1, int(round(table["fat_run_mm"] / (stride * line.step_mm))))
    run = 0
    for i in range(first, stop + 1, stride):
        s = cross_section(mask, affine, line.points[i], line.tangents[i], table["section_half_width_mm"], 1.0, hu,
                          table["wall"])
        run = run + 1 if s is not None and s.fat_bounded >= table["fat_share"] else 0
        if run >= need:
            return i - (need - 1) * stride
    return None


def _sinotubular_by_shape(mask, affine, line: Centerline, asc_end: int, table, hu=None) -> tuple[int, str]:
    """The sinotubular junction from the vessel's shape: where the aorta leaves the heart into the mediastinal
    fat (with the CT; the root and sinuses lie within the heart); else where the sinus bulge above the root
    has narrowed back to the tubular calibre; else the first point (the mask starts above the root)."""
    stride = max(1, int(round(2.0 / line.step_mm)))
    # within a radius of the mask's end the plane cuts the end cap, not the vessel
    first = int(round(float(line.radius[: max(2, int(10.0 / line.step_mm))].max()) / line.step_mm))
    if hu is not None:  # the root lies inside the heart; the tubular aorta leaves it into the fat
        j = _leaves_heart(mask, affine, line, first, asc_end, hu, table)
        if j is not None:
            # the junction is the waist above the sinuses: where the aorta leaves the heart a plane square
            # to it may still graze the heart's top or the sinus bulge
            stop = min(j + int(round(table["waist_search_mm"] / line.step_mm)),
                       asc_end - int(round(table["tubular_min_mm"] / line.step_mm)))
            idx = np.arange(j, max(stop, j) + 1, stride)
            d = _equivalent_diameters(mask, affine, line, idx, table, hu)
            if np.isfinite(d).any():
                j = int(idx[np.nanargmin(d)])
            return j, "the calibre waist where the aorta leaves the heart into the mediastinal fat"
    reach = first + int(round((table["sinus_search_mm"] + 20.0) / line.step_mm))
    idx = np.arange(first, min(asc_end, reach) + 1, stride)
    if idx.size < 4:
        return first, "the aorta's first point (its root is not in the mask)"
    d = _equivalent_diameters(mask, affine, line, idx, table)
    tubular = np.nanmedian(_equivalent_diameters(mask, affine, line, np.arange(idx[-1], asc_end + 1, stride),
                                                 table)) if asc_end > idx[-1] else np.nanmedian(d[-3:])
    sinus_zone = idx <= first + table["sinus_search_mm"] / line.step_mm
    k = int(np.nanargmax(np.where(sinus_zone, d, -np.inf)))
    if not np.isfinite(d[k]) or d[k] < 1.08 * tubular:
        return first, "the aorta's first point (no sinus bulge in the mask)"
    back = np.flatnonzero((np.arange(idx.size) > k) & (d <= 1.04 * tubular))
    j = idx[back[0]] if back.size else idx[-1]
    return int(j), "the calibre waist above the sinuses"


def _drop_uneven(mask, affine, line: Centerline, idx: dict, table: dict, notes: list) -> None:
    """Leave out the ascending or descending landmarks where the traced vessel's calibre swings along that
    stretch (coefficient of variation above ``uneven_cv``): a mask merged with the heart or another vessel
    there, no tube to measure; or where it runs narrower than any adult aorta (median equivalent diameter
    under ``narrowest_mm``): the trace followed another vessel."""
    for part, keys in (("ascending", table["ascending"]), ("descending", table["descending"])):
        placed = [idx[k][0] for k in keys if k in idx]
        if not placed:
            continue
        lo, hi = min(placed), max(placed)
        if part == "descending":
            hi = min(len(line) - 1, hi + int(round(40.0 / line.step_mm)))
        if hi - lo < 10:
            continue
        d = _equivalent_diameters(mask, affine, line, np.linspace(lo, hi, 8).round().astype(int), table)
        d = d[np.isfinite(d)]
        if d.size >= 3 and np.std(d) > table["uneven_cv"] * np.mean(d):
            for k in keys:
                idx.pop(k, None)
            notes.append(f"the {part} aorta's traced calibre swings along its course ({d.min():.0f}-{d.max():.0f}"
                         " mm): the mask holds more than the aorta there, not measured")
        elif d.size >= 3 and np.median(d) < table["narrowest_mm"][part]:
            for k in keys:
                idx.pop(k, None)
            notes.append(f"the vessel traced as the {part} aorta is {np.median(d):.0f} mm across, narrower than an "
                         "adult aorta: the trace probably followed another vessel, not measured")
    if not any(k in idx for k in (*table["ascending"], *table["descending"])):
        idx.pop("mid_aortic_arch", None)  # placed between the two limbs: nothing to place it by


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
    line, _ = vessel_centerline(aorta, affine, lowest_ends=True)
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
            idx["sinotubular_junction"] = _sinotubular_by_shape(aorta, affine, line, a, table, hu)
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
    _drop_uneven(aorta, affine, line, idx, table, notes)
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


def _path_line(work, edt, aff, start, end, step_mm) -> Centerline | None:
    sp = np.linalg.norm(aff[:3, :3], axis=0)
    path = _centred_path(work, edt, sp, start, end)
    inv = np.linalg.inv(aff)

    def edt_world(points):
        ijk = (points @ inv[:3, :3].T + inv[:3, 3]).T
        return ndimage.map_coordinates(edt, ijk, order=1, mode="nearest")

    return _resample(path, aff, edt_world, step_mm, smooth_mm=3.0)


def pulmonary_landmarks(pa: np.ndarray, affine: np.ndarray, structures: dict | None = None,
                        hu: np.ndarray | None = None):
    """Centreline of the pulmonary trunk and its landmark "main pulmonary artery before the bifurcation"
    (dict key -> :class:`Landmark`), with notes. The trunk starts at the mask's most anterior point (the
    pulmonary valve); the two branch tips are the point farthest along the tube from it and the point
    farthest from that first path; the bifurcation is where the two paths part. TotalSegmentator's
    ``pul_bifurcation`` mask, when labelled, places the landmark instead."""
    table = landmark_table()
    spec = table["pulmonary"]["main_pulmonary_artery"]
    structures = structures or {}
    if pa.sum() < 20:
        return None, {}, ["the pulmonary artery is too small to trace"]
    work, aff = _working_mask(pa, affine, 1.5)
    sp = np.linalg.norm(aff[:3, :3], axis=0)
    edt = ndimage.distance_transform_edt(work, sampling=sp)
    vox = np.argwhere(work)
    world = vox @ aff[:3, :3].T + aff[:3, 3]
    root = tuple(vox[np.argmax(world[:, 1])])
    d_root = _geodesic(work, sp, root)
    tip1 = np.unravel_index(np.argmax(np.where(np.isfinite(d_root), d_root, -1)), work.shape)
    line1 = _path_line(work, edt, aff, root, tip1, 1.0)
    if line1 is None:
        return None, {}, ["the pulmonary artery is too short to trace"]
    inv = np.linalg.inv(aff)
    ijk1 = np.rint(line1.points @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    ijk1 = np.clip(ijk1, 0, np.asarray(work.shape) - 1)
    starts = [tuple(p) for p in ijk1 if work[tuple(p)]]
    mcp = MCP_Geometric(np.where(work, 1.0, np.inf), sampling=tuple(sp))
    d_path, _ = mcp.find_costs(starts)
    far = np.where(np.isfinite(d_path), d_path, -1)
    tip2 = np.unravel_index(np.argmax(far), work.shape)
    notes = []
    split = None
    if far[tip2] >= 15.0:  # a second branch at least 15 mm long
        line2 = _path_line(work, edt, aff, root, tip2, 1.0)
        if line2 is not None:
            gap = np.min(np.linalg.norm(line1.points[:, None, :] - line2.points[None, :, :], axis=-1), axis=1)
            apart = np.flatnonzero(gap > np.maximum(0.5 * line1.radius, 2.0))
            split = int(apart[0]) if apart.size else None
    c = _center(structures["pul_bifurcation"], affine) if structures.get("pul_bifurcation") is not None else None
    if c is not None:
        i, how = line1.nearest(c), "pulmonary bifurcation mask"
    elif split is not None:
        back = max(spec["before_branching_mm"], float(line1.radius[split]))
        i, how = line1.offset(split, -back), "before the branching point (trunk's shape)"
    else:
        return line1, {}, ["the pulmonary bifurcation is not in the field of view or not traced"]
    lm = Landmark("main_pulmonary_artery", spec["name"], int(i), how)

    def cut(j):
        return cross_section(pa, affine, line1.points[j], line1.tangents[j], table["section_half_width_mm"],
                             table["section_step_mm"], hu, table["wall"])

    lm.section = cut(i)
    if c is None:  # back along the trunk until the plane clears the branches' origins (a round section)
        stop = line1.offset(i, -spec["search_back_mm"])
        while i > stop and (lm.section is None or lm.section.diameter_mm > spec["round_ratio"] *
                            lm.section.diameter_pd_mm):
            i -= 1
            lm.section = cut(i)
        lm.index = int(i)
    if lm.section is None:
        lm.notes.append("no closed vessel section at this point")
    return line1, {"main_pulmonary_artery": lm}, notes
