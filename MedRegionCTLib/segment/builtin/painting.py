"""Writing the found structures into the full-resolution label image, in an order where later paint wins:
body, cavities, mediastinal organs, pleura, lungs, airways, bones. Edges are refined on the full-resolution HU
where an intensity edge exists (body, lungs, airway lumen, bones); soft-tissue organs get smooth outlines."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ...data import totalsegmentator_class_indices
from . import masks
from .bones import bone_condition, solid_vertebrae
from .grid import Grid, bounding_box


class Painter:
    """The full-resolution label image in canonical order; later paint wins."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.labels = np.zeros(grid.shape, np.uint16)
        self.index = totalsegmentator_class_indices()

    def paint(self, name: str, fine_slices, mask: np.ndarray, only_where=None) -> None:
        if mask.size == 0 or not mask.any():
            return
        view = self.labels[fine_slices]
        if only_where is not None:
            mask = mask & only_where(view)
        view[mask] = self.index[name]

    def paint_smooth(self, name: str, coarse_mask: np.ndarray, condition=None, only_where=None) -> None:
        """A coarse mask interpolated to a smooth full-resolution outline (optionally gated by HU)."""
        if not coarse_mask.any():
            return
        fine, frac = self.grid.upsample(coarse_mask)
        mask = frac >= 0.5
        del frac
        if condition is not None:
            mask &= condition(self.grid.hu[fine])
        self.paint(name, fine, mask, only_where)

    def only(self, *names):
        """A filter for ``only_where``: voxels currently holding one of ``names``."""
        allowed = np.array(sorted(self.index[n] for n in names), np.uint16)
        return lambda view: np.isin(view, allowed)


def paint_body(paint: Painter, grid: Grid, found, p: dict) -> None:
    """Body, abdominal cavity, mediastinum and its organs, thyroid, breasts."""
    body, med = found.body, found.med
    fine, m = grid.refine_fast(body.trunk, lambda hu: hu > p["body"]["hu_min"])
    paint.paint("body_trunc", fine, m)
    del m
    if body.extremities.any():
        fine, m = grid.refine_fast(body.extremities, lambda hu: hu > p["body"]["hu_min"])
        paint.paint("body_extremities", fine, m, only_where=lambda v: v == 0)
    in_body = paint.only("body_trunc")
    soft_min = p["mediastinum"]["soft_hu_min"]
    fat_max = p["mediastinum"]["fat_hu_min"]
    paint.paint_smooth("abdominal_cavity", found.abdomen, only_where=in_body)
    paint.paint_smooth("mediastinum", med.space, only_where=in_body)
    paint.paint_smooth("breast", found.breasts, only_where=in_body)
    in_soft = paint.only("body_trunc", "mediastinum", "abdominal_cavity", "breast")
    paint.paint_smooth("thyroid_gland", found.thyroid, only_where=in_soft)

    def tissue(hu):  # not fat: the organ's outline on the full-resolution grid
        return hu > soft_min

    paint.paint_smooth("heart", med.heart, tissue, only_where=in_soft)
    paint.paint_smooth("aorta", med.aorta, tissue, only_where=paint.only("body_trunc", "mediastinum",
                                                                        "abdominal_cavity", "heart"))
    paint.paint_smooth("esophagus", med.esophagus, lambda hu: (hu > soft_min) | (hu < fat_max), only_where=in_soft)


def paint_lungs(paint: Painter, grid: Grid, found, p: dict) -> None:
    """Pleural shell, pleural fluid, then each lung field (aerated lung and the disease inside it) split into its
    lobes (or zones)."""
    lung_fine = {}
    for side, lung in (("left", found.lungs.left), ("right", found.lungs.right)):
        fine, m = grid.refine_fast(lung, lambda hu: hu < p["lungs"]["hu_max"])
        if found.pleural is not None:
            disease = found.pleural.field[side] & ~lung
            if disease.any():  # non-aerated parts of the lung field: smooth outlines, no air edge to follow
                fine, m = _union_fine(grid, (fine, m), grid.upsample(disease))
        lung_fine[side] = (fine, m)
    _paint_pleura(paint, grid, lung_fine, p["pleura"])
    if found.pleural is not None:
        fluid = found.pleural.effusion["left"] | found.pleural.effusion["right"]
        lo, hi = p["pleural_space"]["fluid_edge_hu"]

        def fluid_edge(hu):  # the fluid's own edge, partial volume with the lung included (3-voxel mean)
            smooth = ndi.uniform_filter(hu.astype(np.float32), size=(3, 3, 1))
            return (smooth > lo) & (smooth < hi)

        if fluid.any():
            fine, m = grid.refine_fast(fluid, fluid_edge, grow=int(p["pleural_space"]["fluid_edge_grow_voxels"]))
            paint.paint("pleural_effusion", fine, m, only_where=paint.only("body_trunc", "mediastinum",
                                                                             "lung_pleural"))
    for side, (fine, m) in lung_fine.items():
        if m.any():
            _paint_lobes(paint, grid, found.lobes, side, fine, m)


def _union_fine(grid: Grid, a, b):
    """Union of two (fine slices, boolean crop) pairs; ``b`` may be a float fraction (threshold 0.5)."""
    (fa, ma), (fb, mb) = a, b
    if mb.dtype != bool:
        mb = mb >= 0.5
    if ma.size == 0 or not ma.any():
        return fb, mb
    if mb.size == 0 or not mb.any():
        return fa, ma
    box = tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(fa, fb))
    out = np.zeros(tuple(s.stop - s.start for s in box), bool)
    for f, m in ((fa, ma), (fb, mb)):
        out[tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(f, box))] |= m
    return box, out


def paint_airways_and_bones(paint: Painter, grid: Grid, found, p: dict) -> None:
    air, skeleton, blood = found.air, found.skeleton, found.blood
    edge = p["airways"]["lumen_edge_hu"]
    wall = masks.ball(p["airways"]["wall_mm"], grid.spacing)
    for name, coarse in (("trachea", air.trachea), ("lung_airways", air.bronchus_left | air.bronchus_right)):
        if coarse.any():
            fine, m = grid.refine_fast(coarse, lambda hu: hu < edge)
            paint.paint(name, fine, ndi.binary_dilation(m, wall))  # the wall belongs to the airway
    if not skeleton.bone.any():
        return
    grown = ndi.binary_dilation(skeleton.bone)
    box = bounding_box(grown, pad=1)
    fine, m = grid.refine_fast(skeleton.bone, bone_condition(p["bones"]), box=box)
    keep_out = grid.nearest(ndi.binary_dilation(blood), box)[1] if blood.any() else None
    if keep_out is not None:  # contrast-filled blood next to a bone is not bone
        m &= ~keep_out
    # every voxel near a bone takes the part of its nearest coarse bone voxel (edges included)
    filled = np.zeros_like(skeleton.parts)
    filled[box] = parts = skeleton.parts[box]
    # (only within a coarse voxel of the bone: refine_fast looks no farther)
    rim = grown[box] & (parts == 0)
    if rim.any():
        filled[box][rim] = masks.nearest_label(parts, rim)
    _, part = grid.nearest(filled, box)
    lut = np.zeros(len(skeleton.names) + 1, np.uint16)
    lut[1:] = [paint.index[n] for n in skeleton.names]
    view = paint.labels[fine]
    view[m] = lut[part[m]]
    del m, part
    # the vertebrae as whole bones: marrow inside the cortex, the spinal canal left out
    fx, fy, fz = grid.factors
    ks = np.minimum(np.arange(fine[2].start, fine[2].stop) // fz, skeleton.parts.shape[2] - 1)

    def to_fine(xy):  # coarse (x, y, ...) per coarse slice -> fine crop coordinates per fine slice
        out = np.array(xy[ks], float)
        out[:, 0] = out[:, 0] * fx + (fx - 1) / 2.0 - fine[0].start
        out[:, 1:] = out[:, 1:] * fy + (fy - 1) / 2.0 - fine[1].start
        return out

    canal = to_fine(skeleton.canal) if skeleton.canal is not None else None
    column = to_fine(skeleton.spine_axis) if skeleton.spine_axis is not None else None
    solid_vertebrae(view, grid.hu[fine], [paint.index[n] for n in skeleton.names if n.startswith("vertebrae")],
                    column, canal, grid.spacing, p["bones"], paint.only("body_trunc", "mediastinum",
                                                                         "abdominal_cavity"), keep_out)


def _paint_lobes(paint: Painter, grid: Grid, lobes, side: str, fine, m) -> None:
    names = lobes.lobe_names(side)
    idx = np.argwhere(m)
    x = grid.fine_mm(0, idx[:, 0] + fine[0].start)
    y = grid.fine_mm(1, idx[:, 1] + fine[1].start)
    z = grid.fine_mm(2, idx[:, 2] + fine[2].start)
    which = lobes.assign(side, x, y, z)
    table = np.array([paint.index[n] for n in names], np.uint16)
    paint.labels[fine][idx[:, 0], idx[:, 1], idx[:, 2]] = table[which]


def _paint_pleura(paint: Painter, grid: Grid, lung_fine: dict, params: dict) -> None:
    """A thin shell just outside each lung (the pleural space), at least one voxel thick, inside the body."""
    t = max(params["thickness_mm"], float(grid.spacing.min()))
    allowed = paint.only("body_trunc", "mediastinum")
    pad = int(np.ceil(t / grid.spacing.min())) + 1
    for fine, m in lung_fine.values():
        if not m.any():
            continue
        fine_p = tuple(slice(max(0, s.start - pad), min(n, s.stop + pad)) for s, n in zip(fine, grid.shape))
        big = np.zeros(tuple(s.stop - s.start for s in fine_p), bool)
        big[tuple(slice(s.start - q.start, s.stop - q.start) for s, q in zip(fine, fine_p))] = m
        shell = ndi.binary_dilation(big, masks.ball(t, grid.spacing)) & ~big
        paint.paint("lung_pleural", fine_p, shell, only_where=allowed)
