"""Signed-distance shapes in patient (RAS) millimetres: the phantom's anatomy is built from these.

Every shape returns an approximate signed distance in mm (negative inside) for broadcastable coordinate
arrays ``x, y, z``, and an axis-aligned bounding box so the renderer only evaluates it where it can matter.
The distances are exact at the surface and first-order accurate near it, which is what partial-volume
rendering needs; far from the surface only the sign matters.
"""

from __future__ import annotations

import numpy as np

BBox = tuple[np.ndarray, np.ndarray]


def _box(lo, hi) -> BBox:
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


class Shape:
    def sdf(self, x, y, z) -> np.ndarray:
        raise NotImplementedError

    def bbox(self) -> BBox:
        raise NotImplementedError

    # composition sugar
    def __or__(self, other: Shape) -> Shape:
        return Union(self, other)

    def __and__(self, other: Shape) -> Shape:
        return Intersection(self, other)

    def __sub__(self, other: Shape) -> Shape:
        return Difference(self, other)

    def grown(self, mm: float) -> Shape:
        return Offset(self, mm)


def rotation_matrix(z_deg: float = 0.0, y_deg: float = 0.0, x_deg: float = 0.0) -> np.ndarray:
    """Rotation about x, then y, then z (degrees), as a 3x3 matrix acting on column vectors."""
    ax, ay, az = np.radians([x_deg, y_deg, z_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


class Ellipsoid(Shape):
    """Ellipsoid with semi-axes ``radii`` (mm) along the columns of ``rotation``."""

    def __init__(self, center, radii, rotation=None):
        self.center = np.asarray(center, dtype=np.float64)
        self.radii = np.asarray(radii, dtype=np.float64)
        self.rotation = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)

    def _local(self, x, y, z):
        dx, dy, dz = x - self.center[0], y - self.center[1], z - self.center[2]
        r = self.rotation  # local = R^T (p - c)
        return (r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
                r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
                r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz)

    def sdf(self, x, y, z):
        u, v, w = self._local(x, y, z)
        a, b, c = self.radii
        k0 = np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2)
        k1 = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2 + (w / c**2) ** 2)
        # first-order distance k0 (k0 - 1) / k1 (exact on the surface); guard the centre
        return np.where(k1 > 1e-12, k0 * (k0 - 1.0) / np.maximum(k1, 1e-12), -self.radii.min())

    def bbox(self):
        half = np.sqrt(((self.rotation * self.radii) ** 2).sum(axis=1))
        return _box(self.center - half, self.center + half)

    def exact_volume_ml(self) -> float:
        return float(4.0 / 3.0 * np.pi * np.prod(self.radii)) / 1000.0

    def extent_along(self, axis: int) -> float:
        """Full width of the ellipsoid along a patient axis (0 = x, 1 = y, 2 = z), in mm."""
        return float(2.0 * np.sqrt(((self.rotation[axis] * self.radii) ** 2).sum()))


class Sphere(Ellipsoid):
    def __init__(self, center, radius):
        super().__init__(center, (radius, radius, radius))
        self.radius = float(radius)

    def sdf(self, x, y, z):
        c = self.center
        return np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) - self.radius


class SuperEllipticCylinder(Shape):
    """Cylinder along z with a super-elliptic cross-section |x/a|^n + |y/b|^n <= 1, cut at z0..z1.

    ``a`` and ``b`` may vary linearly between the bottom and the top (``a_top``, ``b_top``).
    """

    def __init__(self, center_xy, a, b, z0, z1, n=2.0, a_top=None, b_top=None):
        self.cx, self.cy = (float(v) for v in center_xy)
        self.a0, self.b0 = float(a), float(b)
        self.a1 = float(a if a_top is None else a_top)
        self.b1 = float(b if b_top is None else b_top)
        self.z0, self.z1, self.n = float(z0), float(z1), float(n)

    def _ab(self, z):
        t = np.clip((z - self.z0) / max(self.z1 - self.z0, 1e-9), 0.0, 1.0)
        return self.a0 + (self.a1 - self.a0) * t, self.b0 + (self.b1 - self.b0) * t

    def sdf(self, x, y, z):
        a, b = self._ab(z)
        n = self.n
        u, v = np.abs(x - self.cx) / a, np.abs(y - self.cy) / b
        f = (u**n + v**n) ** (1.0 / n)
        # radial scaling distance, scaled by the local radius along the ray (good near the surface)
        r = np.sqrt((x - self.cx) ** 2 + (y - self.cy) ** 2)
        radial = np.where(f > 1e-9, r * (1.0 - 1.0 / np.maximum(f, 1e-9)), -np.minimum(a, b))
        cap = np.maximum(self.z0 - z, z - self.z1)
        return np.maximum(radial, cap)

    def bbox(self):
        a, b = max(self.a0, self.a1), max(self.b0, self.b1)
        return _box((self.cx - a, self.cy - b, self.z0), (self.cx + a, self.cy + b, self.z1))


class Tube(Shape):
    """A tube along a polyline, radius interpolated linearly along each segment (rounded joints and ends)."""

    def __init__(self, points, radii):
        self.points = np.asarray(points, dtype=np.float64)
        r = np.broadcast_to(np.asarray(radii, dtype=np.float64), (len(self.points),))
        self.radii = np.array(r)
        if len(self.points) < 2:
            raise ValueError("a tube needs at least two points")

    # Beyond this distance from a segment the tube reports +inf: callers only need exact distances near the
    # surface (partial-volume ramps, offsets of a few mm), and skipping far points makes long tubes cheap.
    CULL_MM = 25.0

    def _segment_sdf(self, x, y, z, p0, p1, r0, r1):
        d = p1 - p0
        t = np.clip(((x - p0[0]) * d[0] + (y - p0[1]) * d[1] + (z - p0[2]) * d[2]) / float(d @ d), 0.0, 1.0)
        dist = np.sqrt((x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (z - p0[2] - t * d[2]) ** 2)
        return dist - (r0 + (r1 - r0) * t)

    def sdf(self, x, y, z):
        x, y, z = np.asarray(x), np.asarray(y), np.asarray(z)
        shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
        separable = len(shape) == 3 and x.shape[1:] == (1, 1) and y.shape[::2] == (1, 1) and z.shape[:2] == (1, 1)
        out = np.full(shape, np.inf, dtype=np.result_type(x, y, z, np.float32))
        if not separable:  # scattered points: drop those far from the whole tube once, then per segment
            reach_all = self.radii.max() + self.CULL_MM
            lo_all, hi_all = self.points.min(axis=0) - reach_all, self.points.max(axis=0) + reach_all
            xf, yf, zf = (np.broadcast_to(c, shape).ravel() for c in (x, y, z))
            sub = np.flatnonzero((xf >= lo_all[0]) & (xf <= hi_all[0]) & (yf >= lo_all[1]) & (yf <= hi_all[1])
                                 & (zf >= lo_all[2]) & (zf <= hi_all[2]))
            xb, yb, zb = xf[sub], yf[sub], zf[sub]
        for p0, p1, r0, r1 in zip(self.points[:-1], self.points[1:], self.radii[:-1], self.radii[1:]):
            reach = max(r0, r1) + self.CULL_MM
            lo, hi = np.minimum(p0, p1) - reach, np.maximum(p0, p1) + reach
            if separable:  # grid axes: evaluate on the sub-block around the segment only
                idx = [np.flatnonzero((c.ravel() >= lo[a]) & (c.ravel() <= hi[a])) for a, c in enumerate((x, y, z))]
                if any(i.size == 0 for i in idx):
                    continue
                sl = tuple(slice(i[0], i[-1] + 1) for i in idx)
                seg = self._segment_sdf(x[sl[0]], y[:, sl[1]], z[:, :, sl[2]], p0, p1, r0, r1)
                np.minimum(out[sl], seg, out=out[sl])
            else:
                near = np.flatnonzero((xb >= lo[0]) & (xb <= hi[0]) & (yb >= lo[1]) & (yb <= hi[1])
                                      & (zb >= lo[2]) & (zb <= hi[2]))
                if near.size == 0:
                    continue
                seg = self._segment_sdf(xb[near], yb[near], zb[near], p0, p1, r0, r1)
                target = sub[near]
                out.flat[target] = np.minimum(out.flat[target], seg)
        return out

    def bbox(self):
        r = self.radii.max()
        return _box(self.points.min(axis=0) - r, self.points.max(axis=0) + r)

    def length_mm(self) -> float:
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum())


class HalfSpace(Shape):
    """Points with ``normal . p <= offset`` (the normal points outwards)."""

    def __init__(self, normal, offset, limits=None):
        n = np.asarray(normal, dtype=np.float64)
        self.normal = n / np.linalg.norm(n)
        self.offset = float(offset)
        self.limits = limits  # a bbox to report; a half-space is unbounded

    def sdf(self, x, y, z):
        n = self.normal
        return n[0] * x + n[1] * y + n[2] * z - self.offset

    def bbox(self):
        if self.limits is None:
            big = 1e5
            return _box((-big,) * 3, (big,) * 3)
        return self.limits


class Box(Shape):
    """Axis-aligned box (exact distance)."""

    def __init__(self, lo, hi):
        self.lo, self.hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)

    def sdf(self, x, y, z):
        c, h = (self.lo + self.hi) / 2, (self.hi - self.lo) / 2
        qx, qy, qz = np.abs(x - c[0]) - h[0], np.abs(y - c[1]) - h[1], np.abs(z - c[2]) - h[2]
        outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2 + np.maximum(qz, 0) ** 2)
        inside = np.minimum(np.maximum(qx, np.maximum(qy, qz)), 0)
        return outside + inside

    def bbox(self):
        return _box(self.lo, self.hi)


class Union(Shape):
    def __init__(self, *shapes: Shape):
        self.shapes = [s for s in shapes if s is not None]

    def sdf(self, x, y, z):
        out = self.shapes[0].sdf(x, y, z)
        for s in self.shapes[1:]:
            out = np.minimum(out, s.sdf(x, y, z))
        return out

    def bbox(self):
        boxes = [s.bbox() for s in self.shapes]
        return _box(np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0))


class Intersection(Shape):
    def __init__(self, *shapes: Shape):
        self.shapes = [s for s in shapes if s is not None]

    def sdf(self, x, y, z):
        out = self.shapes[0].sdf(x, y, z)
        for s in self.shapes[1:]:
            out = np.maximum(out, s.sdf(x, y, z))
        return out

    def bbox(self):
        boxes = [s.bbox() for s in self.shapes]
        return _box(np.max([b[0] for b in boxes], axis=0), np.min([b[1] for b in boxes], axis=0))


class Difference(Shape):
    def __init__(self, base: Shape, *cut: Shape):
        self.base = base
        self.cut = [c for c in cut if c is not None]

    def sdf(self, x, y, z):
        out = self.base.sdf(x, y, z)
        for c in self.cut:
            out = np.maximum(out, -c.sdf(x, y, z))
        return out

    def bbox(self):
        return self.base.bbox()


class Offset(Shape):
    """The shape grown (positive mm) or shrunk (negative mm)."""

    def __init__(self, shape: Shape, mm: float):
        self.shape, self.mm = shape, float(mm)

    def sdf(self, x, y, z):
        return self.shape.sdf(x, y, z) - self.mm

    def bbox(self):
        lo, hi = self.shape.bbox()
        return _box(lo - max(self.mm, 0), hi + max(self.mm, 0))


class Shell(Shape):
    """The layer of ``thickness`` mm just outside (``outside=True``) or inside the shape's surface."""

    def __init__(self, shape: Shape, thickness: float, outside: bool = True):
        self.shape, self.t, self.outside = shape, float(thickness), outside

    def sdf(self, x, y, z):
        d = self.shape.sdf(x, y, z)
        return np.maximum(d - self.t, -d) if self.outside else np.maximum(d, -d - self.t)

    def bbox(self):
        lo, hi = self.shape.bbox()
        grow = self.t if self.outside else 0.0
        return _box(lo - grow, hi + grow)
