"""Rasterise the ordered structures onto a voxel grid, and integrate their true volumes.

Image: painter's algorithm with partial-volume edges -- each shape covers a voxel by a fraction estimated from
its signed distance (a one-voxel linear ramp) and is alpha-blended over what lies beneath. Labels: the last
labelled shape whose surface encloses the voxel centre. Both are computed slab by slab, each shape only inside
its bounding box, so memory stays at a few slabs.

Truth volumes are integrated from the shape definitions, independently of the grid: quasi-random (Sobol)
points in each class's bounding box get the same painter's label, so the label map can be checked against them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.stats import qmc

from ..progress import check_cancel
from .chest import Structure

AIR_HU = -1000.0


class Grid:
    """An axis-aligned voxel grid (affine with a diagonal 3x3 part; flips allowed)."""

    def __init__(self, shape, affine):
        self.shape = tuple(int(s) for s in shape)
        self.affine = np.asarray(affine, dtype=np.float64)
        diag = np.diag(self.affine[:3, :3])
        if not np.allclose(self.affine[:3, :3], np.diag(diag)):
            raise ValueError("the phantom renders on axis-aligned grids only")
        self.step = diag
        self.axes = [self.affine[a, 3] + self.step[a] * np.arange(n) for a, n in enumerate(self.shape)]
        self.spacing = np.abs(diag)
        self.voxel_ml = float(np.prod(self.spacing)) / 1000.0
        # the physical extent of the grid (voxel faces), as an RAS box
        edges = [np.sort([ax[0] - self.step[a] / 2, ax[-1] + self.step[a] / 2]) for a, ax in enumerate(self.axes)]
        self.lo = np.array([e[0] for e in edges])
        self.hi = np.array([e[1] for e in edges])

    def index_range(self, axis: int, lo: float, hi: float, margin: int = 1) -> tuple[int, int]:
        """Index range [a, b) of voxel centres on ``axis`` within [lo, hi] mm, widened by ``margin`` voxels."""
        coords = self.axes[axis]
        pad = margin * self.spacing[axis]
        sel = np.flatnonzero((coords >= lo - pad) & (coords <= hi + pad))
        if sel.size == 0:
            return 0, 0
        return int(sel[0]), int(sel[-1]) + 1


def _coverage(d: np.ndarray, ramp_mm: float) -> np.ndarray:
    return np.clip(0.5 - d / ramp_mm, 0.0, 1.0, dtype=np.float32)


def render(structures: list[Structure], grid: Grid, label_index: dict[str, int], slab: int = 24,
           progress=None, cancel=None):
    """Return (image float32 HU without noise, labels uint16, findings uint16) on ``grid``."""
    nx, ny, nz = grid.shape
    image = np.full(grid.shape, AIR_HU, dtype=np.float32)
    labels = np.zeros(grid.shape, dtype=np.uint16)
    findings = np.zeros(grid.shape, dtype=np.uint16)
    ramp = float(np.cbrt(np.prod(grid.spacing)))
    boxes = [s.shape.bbox() for s in structures]
    within_idx = [None if s.only_within is None else np.array(sorted(label_index[n] for n in s.only_within))
                  for s in structures]
    for k0 in range(0, nz, slab):
        check_cancel(cancel, "phantom rendering")
        k1 = min(k0 + slab, nz)
        zlo, zhi = sorted((grid.axes[2][k0], grid.axes[2][k1 - 1]))
        for s, (lo, hi), within in zip(structures, boxes, within_idx):
            if hi[2] < zlo - ramp or lo[2] > zhi + ramp:
                continue
            i0, i1 = grid.index_range(0, lo[0], hi[0])
            j0, j1 = grid.index_range(1, lo[1], hi[1])
            a, b = grid.index_range(2, max(lo[2], zlo), min(hi[2], zhi), margin=0)
            a, b = max(a, k0), min(max(b, a), k1)
            if i1 <= i0 or j1 <= j0 or b <= a:
                continue
            x = grid.axes[0][i0:i1, None, None]
            y = grid.axes[1][None, j0:j1, None]
            z = grid.axes[2][None, None, a:b]
            d = np.broadcast_to(s.shape.sdf(x, y, z), (i1 - i0, j1 - j0, b - a)).astype(np.float32, copy=False)
            block = (slice(i0, i1), slice(j0, j1), slice(a, b))
            allowed = None if within is None else np.isin(labels[block], within)
            if s.hu is not None:
                c = _coverage(d, ramp)
                if allowed is not None:
                    c *= allowed
                img = image[block]
                img += c * (np.float32(s.hu) - img)
            inside = d < 0
            if allowed is not None:
                inside &= allowed
            if s.label is not None:
                labels[block][inside] = label_index[s.label]
            if s.finding is not None:
                findings[block][inside] = s.finding
        if progress is not None:
            progress(k1 / nz, "rendering anatomy")
    return image, labels, findings


def add_noise(image: np.ndarray, sd: float, correlation_voxels: float, rng: np.random.Generator) -> None:
    """Add correlated Gaussian noise of standard deviation ``sd`` HU in place (slab-wise to bound memory)."""
    if sd <= 0:
        return
    s = correlation_voxels
    nz = image.shape[2]
    step = 32
    for k0 in range(0, nz, step):
        k1 = min(k0 + step, nz)
        pad0, pad1 = max(k0 - 4, 0), min(k1 + 4, nz)
        noise = rng.standard_normal((image.shape[0], image.shape[1], pad1 - pad0), dtype=np.float32)
        if s > 0:
            noise = ndimage.gaussian_filter(noise, s, mode="wrap")
            noise /= noise.std()  # smoothing lowers the SD; restore the requested one
        image[:, :, k0:k1] += sd * noise[:, :, k0 - pad0:k1 - pad0]


def replay(structures: list[Structure], label_index: dict[str, int], pts: np.ndarray, boxes=None):
    """Label and finding id at arbitrary RAS points (N, 3) by the same painter's rule as :func:`render`."""
    boxes = boxes or [s.shape.bbox() for s in structures]
    order = np.argsort(pts[:, 0], kind="stable")
    sorted_pts = pts[order]
    xs = sorted_pts[:, 0]
    labels = np.zeros(len(pts), dtype=np.int32)
    findings = np.zeros(len(pts), dtype=np.int32)
    within_ids = {}
    for s, (lo, hi) in zip(structures, boxes):
        if s.label is None and s.finding is None:
            continue
        a, b = np.searchsorted(xs, lo[0], "left"), np.searchsorted(xs, hi[0], "right")
        if b <= a:
            continue
        cand = sorted_pts[a:b]
        sel = a + np.flatnonzero((cand[:, 1] >= lo[1]) & (cand[:, 1] <= hi[1])
                                 & (cand[:, 2] >= lo[2]) & (cand[:, 2] <= hi[2]))
        if sel.size == 0:
            continue
        if s.only_within is not None:
            ids = within_ids.setdefault(s.only_within, [label_index[n] for n in s.only_within])
            sel = sel[np.isin(labels[sel], ids)]
            if sel.size == 0:
                continue
        p = sorted_pts[sel]
        inside = sel[s.shape.sdf(p[:, 0], p[:, 1], p[:, 2]) < 0]
        if s.label is not None:
            labels[inside] = label_index[s.label]
        if s.finding is not None:
            findings[inside] = s.finding
    out_labels = np.empty_like(labels)
    out_findings = np.empty_like(findings)
    out_labels[order] = labels
    out_findings[order] = findings
    return out_labels, out_findings


def integrate_volumes(structures: list[Structure], label_index: dict[str, int], grid: Grid,
                      n_points: int = 2**17, seed: int = 0, cancel=None) -> tuple[dict[str, float], dict[int, float]]:
    """True volume (mL) of every label class and every finding inside the grid's field of view."""
    boxes = [s.shape.bbox() for s in structures]
    tables: dict[tuple, list] = {}
    for s, (lo, hi) in zip(structures, boxes):
        for key in (("label", s.label), ("finding", s.finding)):
            if key[1] is None:
                continue
            if key in tables:
                tables[key] = [np.minimum(tables[key][0], lo), np.maximum(tables[key][1], hi)]
            else:
                tables[key] = [lo.copy(), hi.copy()]
    cells_per_axis = 8
    unit = qmc.Sobol(3, scramble=True, seed=seed).random(n_points)
    volumes: dict[str, float] = {}
    finding_volumes: dict[int, float] = {}
    for (kind, key), (lo, hi) in tables.items():
        check_cancel(cancel, "phantom truth integration")
        lo, hi = np.maximum(lo, grid.lo), np.minimum(hi, grid.hi)
        value = 0.0
        own = [s for s in structures if (s.label if kind == "label" else s.finding) == key]
        if np.all(hi > lo):
            # Split the box into cells and keep those the class's own shapes may reach (signed distances are
            # lower bounds of the true distance, with a safety factor), then sample only there.
            size = (hi - lo) / cells_per_axis
            centers = lo + (np.stack(np.meshgrid(*[np.arange(cells_per_axis)] * 3, indexing="ij"), -1)
                            .reshape(-1, 3) + 0.5) * size
            reach = 1.5 * np.linalg.norm(size) / 2 + 2.0
            dmin = np.full(len(centers), np.inf)
            for s in own:
                dmin = np.minimum(dmin, s.shape.sdf(centers[:, 0], centers[:, 1], centers[:, 2]))
            kept = centers[dmin < reach]
            per_cell = max(n_points // max(len(kept), 1), 64)
            pts = (kept[:, None, :] - size / 2 + unit[None, :per_cell, :] * size).reshape(-1, 3)
            candidate = np.zeros(len(pts), dtype=bool)
            for s in own:
                candidate |= s.shape.sdf(pts[:, 0], pts[:, 1], pts[:, 2]) < 0
            cand_pts = pts[candidate]
            hits = 0
            if len(cand_pts):
                # only structures reaching into this box can change labels inside it; a class's volume depends
                # on labelled structures alone
                near = [i for i, (blo, bhi) in enumerate(boxes) if np.all(bhi >= lo) and np.all(blo <= hi)
                        and (kind == "finding" or structures[i].label is not None)]
                lab, fnd = replay([structures[i] for i in near], label_index, cand_pts, [boxes[i] for i in near])
                hits = int(np.count_nonzero(lab == label_index[key]) if kind == "label"
                           else np.count_nonzero(fnd == key))
            value = hits / per_cell * float(np.prod(size)) / 1000.0
        if kind == "label":
            volumes[key] = value
        else:
            finding_volumes[key] = value
    return volumes, finding_volumes
