"""Working grids for the built-in segmenter.

The CT is turned to the canonical RAS index order (axis 0 runs towards the patient's right, axis 1 towards
anterior, axis 2 towards superior) by permuting and flipping axes only, so the way back is exact. Coarse steps
run on a block-averaged copy at about 2 mm; boundaries are refined on the full-resolution grid where Dice needs it.
"""

from __future__ import annotations

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform
from scipy import ndimage as ndi

from ...volume import Volume

_RAS = axcodes2ornt("RAS")


class Grid:
    """The CT in canonical RAS index order at full resolution (``hu``) and block-averaged (``coarse``)."""

    def __init__(self, volume: Volume, coarse_mm: float = 2.0):
        self.input_shape = volume.shape
        self.input_affine = volume.affine
        self._ornt = io_orientation(volume.affine)
        self.hu = apply_orientation(volume.array, self._ornt)  # views: flips and a transpose, no copy
        self.affine = volume.affine @ inv_ornt_aff(self._ornt, volume.shape)
        self.spacing = np.linalg.norm(self.affine[:3, :3], axis=0)
        self.shape = tuple(int(s) for s in self.hu.shape)
        self.factors = tuple(int(max(1, round(coarse_mm / s))) for s in self.spacing)
        self.coarse_spacing = self.spacing * np.asarray(self.factors)
        self.coarse, self.coarse_max = block_mean(self.hu, self.factors, with_max=True)
        self.coarse_shape = self.coarse.shape

    # --- geometry -------------------------------------------------------------------------------------
    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    @property
    def coarse_voxel_ml(self) -> float:
        return float(np.prod(self.coarse_spacing)) / 1000.0

    def coarse_mm(self, axis: int, index) -> np.ndarray:
        """Canonical-grid millimetres (from the first fine voxel centre) of coarse indices along ``axis``."""
        f = self.factors[axis]
        return (np.asarray(index, dtype=np.float64) * f + (f - 1) / 2.0) * self.spacing[axis]

    def fine_mm(self, axis: int, index) -> np.ndarray:
        return np.asarray(index, dtype=np.float64) * self.spacing[axis]

    def to_input(self, canonical: np.ndarray) -> np.ndarray:
        """An array on the canonical grid put back into the input volume's index order (exact)."""
        back = ornt_transform(_RAS, self._ornt)
        return np.ascontiguousarray(apply_orientation(canonical, back))

    def fine_slices(self, coarse_slices) -> tuple[slice, ...]:
        """The full-resolution region covered by a box of coarse voxels."""
        return tuple(slice(s.start * f, min(s.stop * f, n)) for s, f, n in zip(coarse_slices, self.factors, self.shape))

    # --- coarse -> fine -------------------------------------------------------------------------------
    def upsample(self, coarse_mask: np.ndarray, box=None) -> tuple[tuple[slice, ...], np.ndarray]:
        """Linearly interpolated fraction (float32) of a coarse mask on the fine grid, inside ``box``.

        ``box`` is a tuple of coarse slices (default: the mask's bounding box grown by one voxel). Returns the
        fine slices and the fraction array there; threshold it at 0.5 for a smooth full-resolution mask.
        """
        if box is None:
            box = bounding_box(coarse_mask, pad=1)
            if box is None:
                return tuple(slice(0, 0) for _ in range(3)), np.zeros((0, 0, 0), np.float32)
        crop = np.asarray(coarse_mask[box], dtype=np.float32)
        if all(f == 1 for f in self.factors):
            frac = crop
        else:
            frac = ndi.zoom(crop, self.factors, order=1, grid_mode=True, mode="nearest")
        fine = self.fine_slices(box)
        frac = frac[tuple(slice(0, s.stop - s.start) for s in fine)]
        return fine, frac

    def nearest(self, coarse_mask: np.ndarray, box) -> tuple[tuple[slice, ...], np.ndarray]:
        """Nearest-neighbour copy of a coarse mask on the fine grid inside the coarse ``box``."""
        fine = self.fine_slices(box)
        idx = [np.arange(s.start, s.stop) // f - b.start for s, f, b in zip(fine, self.factors, box)]
        return fine, np.asarray(coarse_mask[box])[np.ix_(*idx)]

    def refine_fast(self, coarse_mask: np.ndarray, condition, grow: int = 1, box=None):
        """Full-resolution mask: the coarse mask's core, plus voxels of a band ``grow`` coarse voxels either side
        of its edge that pass ``condition(hu_crop)`` (for masks whose edge is an intensity edge). The condition
        runs slab by slab. Returns (fine slices, boolean crop)."""
        if not coarse_mask.any():
            return tuple(slice(0, 0) for _ in range(3)), np.zeros((0, 0, 0), bool)
        outer = ndi.binary_dilation(coarse_mask, iterations=grow) if grow else coarse_mask
        inner = ndi.binary_erosion(coarse_mask, iterations=grow) if grow else coarse_mask
        if box is None:
            box = bounding_box(outer, pad=1)
        fine, near_out = self.nearest(outer, box)
        _, result = self.nearest(inner, box)
        near_out &= ~result
        hu = self.hu[fine]
        nz = hu.shape[2]
        step, halo = 24, 2  # slabs bound the float copies a condition may make; the halo feeds its filters
        for k0 in range(0, nz, step):
            k1 = min(nz, k0 + step)
            if not near_out[:, :, k0:k1].any():
                continue
            a0, a1 = max(0, k0 - halo), min(nz, k1 + halo)
            c = condition(hu[:, :, a0:a1])[:, :, k0 - a0:k1 - a0]
            near_out[:, :, k0:k1] &= c
        result |= near_out
        return fine, result


def block_mean(a: np.ndarray, factors, with_max: bool = False):
    """Mean over non-overlapping blocks of ``factors`` voxels (edge blocks padded by repetition), float32;
    with ``with_max`` also the block maxima (dense cortex survives there when the mean blurs it)."""
    if all(f == 1 for f in factors):
        mean = np.asarray(a, dtype=np.float32)
        return (mean, mean) if with_max else mean
    fx, fy, fz = factors
    nx, ny, nz = a.shape
    cx, cy, cz = -(-nx // fx), -(-ny // fy), -(-nz // fz)
    out = np.empty((cx, cy, cz), np.float32)
    peak = np.empty((cx, cy, cz), np.float32) if with_max else None
    integer = np.issubdtype(a.dtype, np.integer)
    step = 8  # coarse slices per slab: the copies stay small
    for k0 in range(0, cz, step):
        k1 = min(cz, k0 + step)
        slab = a[:, :, k0 * fz:min(k1 * fz, nz)]
        pad = ((0, cx * fx - nx), (0, cy * fy - ny), (0, (k1 - k0) * fz - slab.shape[2]))
        if any(p[1] for p in pad):
            slab = np.pad(slab, pad, mode="edge")
        nk = k1 - k0
        # sum one axis at a time over contiguous runs (much faster than one mean over three strided axes)
        acc = np.int64 if integer else np.float64
        total = slab.reshape(cx, fx, cy * fy * nk * fz).sum(axis=1, dtype=acc)
        total = total.reshape(cx, cy, fy, nk * fz).sum(axis=2)
        total = total.reshape(cx, cy, nk, fz).sum(axis=3)
        out[:, :, k0:k1] = total / float(fx * fy * fz)
        if with_max:
            m = slab.reshape(cx, fx, cy * fy * nk * fz).max(axis=1)
            m = m.reshape(cx, cy, fy, nk * fz).max(axis=2)
            peak[:, :, k0:k1] = m.reshape(cx, cy, nk, fz).max(axis=3)
    return (out, peak) if with_max else out


def bounding_box(mask: np.ndarray, pad=0):
    """Tuple of slices around the True voxels (grown by ``pad`` voxels: one number, or one per axis), or None for
    an empty mask."""
    if not mask.any():
        return None
    pads = [pad] * mask.ndim if np.isscalar(pad) else list(pad)
    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        out.append(slice(max(0, int(hit[0]) - pads[axis]), min(mask.shape[axis], int(hit[-1]) + 1 + pads[axis])))
    return tuple(out)
