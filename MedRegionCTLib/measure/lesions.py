"""Lesion candidates found from image intensity: lung nodules/masses and pleural effusion.

Nodules and masses: soft-tissue or ground-glass voxels inside the (hole-filled) lungs, opened with a ball of
the smallest reportable radius so that vessels thinner than a nodule drop out (a morphological opening done
exactly with two Euclidean distance transforms), then elongated survivors (vessel segments) rejected.

Pleural effusion: fluid-attenuation voxels outside every labelled organ that touch the lung and lie in the
dependent (posterior) part of the hemithorax.

Each candidate keeps the mask that supports it (bounding-box crop + boolean crop) and a confidence in 0-1.
Parameters come from ``data/clinical_thresholds.json`` (``lesion_detection``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..data import load_json
from ..progress import check_cancel
from .intensity import hu_statistics
from .shape import crop_of, feret_diameter, shape_attributes

# labels that are not organs: fluid may sit inside them
BODY_CLASSES = ("body_trunc", "body", "body_extremities", "thoracic_cavity", "subcutaneous_fat", "torso_fat",
                "lung_pleural", "pleural_effusion")


@dataclass
class Lesion:
    kind: str  # "nodule", "mass", "pleural_effusion"
    crop: tuple
    mask: np.ndarray  # boolean, the crop's shape
    attributes: dict = field(default_factory=dict)
    confidence: float = 0.0


def detection_params() -> dict:
    return load_json("clinical_thresholds.json")["lesion_detection"]


def _spacing(affine) -> np.ndarray:
    return np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)


def _grow(crop, pad, shape):
    return tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(crop, pad, shape, strict=True))


def _elongation(mask: np.ndarray, spacing) -> float:
    """sqrt(largest / smallest principal variance) of the voxel positions in mm (1 for a ball)."""
    pts = np.argwhere(mask) * spacing
    if len(pts) < 4:
        return 1.0
    ev = np.linalg.eigvalsh(np.cov(pts.T))
    return float(np.sqrt(max(ev[-1], 1e-9) / max(ev[0], 1e-9)))


def filled_lungs(lung: np.ndarray) -> np.ndarray:
    """Each lung (connected component) with its enclosed holes filled in 3D, so a lesion the segmenter left
    out of the lung is inside it again. Lungs are filled one by one: together they enclose the mediastinum."""
    comp, n = ndimage.label(lung)
    out = lung.copy()
    for i, sl in enumerate(ndimage.find_objects(comp), start=1):
        if sl is not None:
            out[sl] |= ndimage.binary_fill_holes(comp[sl] == i)
    return out


def find_nodules(hu: np.ndarray, lung: np.ndarray, affine, si_axis: int, params: dict | None = None,
                 cancel=None, allowed=None) -> list[Lesion]:
    """Nodule and mass candidates inside ``lung`` (boolean, on the CT grid).

    ``allowed`` (boolean on the CT grid, or a function of a crop giving it): voxels a lesion may occupy once
    the lung's holes are filled -- the lungs and unlabelled/body voxels, not the mediastinal organs a lung
    may wrap around.
    """
    params = params or detection_params()
    spacing = _spacing(affine)
    lung_crop = crop_of(lung)
    if lung_crop is None:
        return []
    box = _grow(lung_crop, (1, 1, 1), lung.shape)
    inside = filled_lungs(lung[box])
    candidate = inside & (hu[box] > params["nodule_candidate_min_hu"])
    if allowed is not None:
        candidate &= allowed(box) if callable(allowed) else allowed[box]
    # a nodule must be a few voxels across to be told from a vessel junction: on coarse grids the smallest
    # reportable size grows with the voxel
    r_min = max(params["min_nodule_diameter_mm"] / 2.0, params["min_radius_voxels"] * float(spacing.max()))
    min_voxels = (4.0 / 3.0 * np.pi * r_min**3) / float(np.prod(spacing))
    comp, n = ndimage.label(candidate)
    pad = tuple(int(np.ceil(r_min / s)) + 1 for s in spacing)
    found: list[Lesion] = []
    for label_id, sl in enumerate(ndimage.find_objects(comp), start=1):
        check_cancel(cancel)
        if sl is None:
            continue
        region = _grow(sl, pad, comp.shape)
        part = comp[region] == label_id
        if np.count_nonzero(part) < min_voxels:
            continue
        # opening by a ball of radius r_min: erosion = {EDT >= r}, dilation = {distance to eroded <= r}
        edt = ndimage.distance_transform_edt(part, sampling=spacing)
        core = edt >= r_min
        if not core.any():
            continue
        opened = (ndimage.distance_transform_edt(~core, sampling=spacing) <= r_min + 1e-6) & part
        blobs, _ = ndimage.label(opened)
        for b_id, bsl in enumerate(ndimage.find_objects(blobs), start=1):
            if bsl is None:
                continue
            for blob, sub in _compact_parts(blobs[bsl] == b_id, spacing, params):
                lsl = tuple(slice(b.start + q.start, b.start + q.stop) for b, q in zip(bsl, sub, strict=True))
                values = hu[box][region][lsl][blob]
                fat_lo, fat_hi = params["fat_hu"]
                if np.count_nonzero((values >= fat_lo) & (values <= fat_hi)) > params["max_fat_fraction"] * values.size:
                    continue  # hilar or mediastinal fat around vessels, not a lesion
                r_in = float(edt[lsl][blob].max())
                if _thick_neighbour(part, edt, lsl, blob, r_in, spacing) > params["vessel_radius_ratio"] * r_in:
                    continue  # a swelling of a vessel (branch point, crossing): as thick as the vessels around it
                # back to full-grid coordinates: box -> region -> blob box
                full = tuple(slice(b.start + r.start + s0.start, b.stop + r.start + s0.start)
                             for b, r, s0 in zip(lsl, region, box, strict=True))
                found.append(Lesion("nodule", full, blob, {"elongation": _elongation(blob, spacing),
                                                           "inscribed_radius_mm": r_in}))
    return found


def _is_compact(mask: np.ndarray, spacing, params) -> bool:
    """Round enough for a nodule: not elongated, and filling a good share of the ball of its Feret diameter."""
    if _elongation(mask, spacing) > params["vessel_elongation"]:
        return False
    feret = feret_diameter(mask, np.diag(spacing), "faces")
    ball_mm3 = np.pi / 6.0 * feret**3
    return bool(np.count_nonzero(mask) * float(np.prod(spacing)) >= params["min_compactness"] * ball_mm3)


def _compact_parts(blob: np.ndarray, spacing, params):
    """``(mask, slices)`` of the compact parts of a blob: a blob that is not compact (a nodule on a thick
    vessel, a vessel tree) is opened with growing balls until round parts come loose or nothing is left."""
    radii = params["split_radii_mm"]
    todo = [(blob, tuple(slice(0, n) for n in blob.shape), 0)]
    while todo:
        mask, where, level = todo.pop()
        if _is_compact(mask, spacing, params):
            yield mask, where
            continue
        if level >= len(radii):
            continue
        r = radii[level]
        core = ndimage.distance_transform_edt(mask, sampling=spacing) >= r
        if not core.any():
            continue
        opened = (ndimage.distance_transform_edt(~core, sampling=spacing) <= r + 1e-6) & mask
        comps, _ = ndimage.label(opened)
        for c_id, csl in enumerate(ndimage.find_objects(comps), start=1):
            if csl is not None:
                sub = tuple(slice(w.start + c.start, w.start + c.stop) for w, c in zip(where, csl, strict=True))
                todo.append((comps[csl] == c_id, sub, level + 1))


def _thick_neighbour(part, edt, bsl, blob, r_in, spacing) -> float:
    """Largest inscribed radius (mm) of the candidate voxels just outside a blob (its attached vessels)."""
    pad = tuple(int(np.ceil(2.0 * r_in / s)) + 2 for s in spacing)
    win = _grow(bsl, pad, part.shape)
    local_blob = np.zeros(tuple(w.stop - w.start for w in win), dtype=bool)
    inner = tuple(slice(b.start - w.start, b.stop - w.start) for b, w in zip(bsl, win, strict=True))
    local_blob[inner] = blob
    dist = ndimage.distance_transform_edt(~local_blob, sampling=spacing)
    shell = part[win] & (dist > 1.5 * float(max(spacing))) & (dist <= 2.0 * r_in + float(max(spacing)))
    return float(edt[win][shell].max()) if shell.any() else 0.0


def _partial_volume_ml(lesion: Lesion, hu, lung, affine, lesion_hu: float) -> float:
    """Volume counting the voxels of the lesion's border by their lesion fraction, interpolated between the
    surrounding lung's and the lesion's median HU (the thresholded mask misses the blurred rim)."""
    spacing = _spacing(affine)
    win = _grow(lesion.crop, (4, 4, 4), hu.shape)
    inner = tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(lesion.crop, win, strict=True))
    mask = np.zeros(tuple(w.stop - w.start for w in win), dtype=bool)
    mask[inner] = lesion.mask
    lung_w = lung[win] | mask
    core = ndimage.binary_erosion(mask)
    band = ndimage.binary_dilation(mask) & lung_w & ~core
    ring = ndimage.binary_dilation(mask, iterations=4) & ~ndimage.binary_dilation(mask, iterations=2) & lung_w
    values = hu[win]
    lung_hu = float(np.median(values[ring])) if ring.any() else -850.0
    frac = np.clip((values[band] - lung_hu) / max(lesion_hu - lung_hu, 1.0), 0.0, 1.0)
    return (np.count_nonzero(core) + float(frac.sum())) * float(np.prod(spacing)) / 1000.0


def lesion_shape(target) -> tuple:
    return target.grid_shape if callable(target) else target.shape


def distance_to(lesion: Lesion, target, affine, reach_mm: float = 30.0) -> float:
    """Smallest distance (mm) from the lesion to ``target`` voxels (a boolean grid, or a function of a crop
    with a ``grid_shape`` attribute), inf beyond ``reach_mm``."""
    spacing = _spacing(affine)
    pad = tuple(int(np.ceil(reach_mm / s)) for s in spacing)
    win = _grow(lesion.crop, pad, lesion_shape(target))
    t = target(win) if callable(target) else target[win]
    if not t.any():
        return float("inf")
    inner = tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(lesion.crop, win, strict=True))
    dist = ndimage.distance_transform_edt(~t, sampling=spacing)
    return float(dist[inner][lesion.mask].min())


def describe_nodule(lesion: Lesion, hu: np.ndarray, affine, si_axis: int, params: dict, mass_min_mm: float,
                    lung: np.ndarray | None = None):
    """Fill in size, volume, HU and solid/subsolid type, kind (nodule or mass) and confidence."""
    attrs = shape_attributes(np.pad(lesion.mask, 0), _local_affine(affine, lesion.crop), si_axis,
                             crop=tuple(slice(0, n) for n in lesion.mask.shape), diameter_surface="faces")
    values = hu[lesion.crop][lesion.mask]
    attrs.update(hu_statistics(values))
    attrs["mask_volume_ml"] = attrs["volume_ml"]
    if lung is not None:
        attrs["volume_ml"] = _partial_volume_ml(lesion, hu, lung, affine, float(np.median(values)))
    solid_share = float(np.count_nonzero(values > params["solid_min_hu"])) / values.size
    attrs["solid_fraction"] = solid_share
    # the median decides solid (edge voxels are partial-volume ground glass); a solid core makes it part-solid
    if float(np.median(values)) > params["solid_min_hu"]:
        attrs["subtype"] = "solid"
    else:
        attrs["subtype"] = "part-solid" if solid_share >= params["part_solid_min_fraction"] else "subsolid"
    attrs["elongation"] = lesion.attributes.get("elongation", 1.0)
    lesion.kind = "mass" if attrs["max_diameter_mm"] >= mass_min_mm else "nodule"
    lesion.attributes = attrs
    size_term = min(1.0, attrs["max_diameter_mm"] / 10.0)
    round_term = max(0.0, 1.0 - (attrs["elongation"] - 1.0) / (params["vessel_elongation"] - 1.0))
    # Real lesions are solid or ground glass; a blob made mostly of in-between values is partial volume of
    # thin vessels crossing or branching.
    lo, hi = params["transition_hu"]
    attrs["transition_fraction"] = float(np.count_nonzero((values > lo) & (values < hi))) / values.size
    lesion.confidence = round((0.3 + 0.4 * size_term + 0.3 * round_term) * (1.0 - attrs["transition_fraction"]), 3)
    return lesion


def _local_affine(affine, crop) -> np.ndarray:
    """The affine of a crop (voxel (0,0,0) of the crop = voxel ``crop.start`` of the grid)."""
    aff = np.array(affine, dtype=np.float64)
    aff[:3, 3] = aff[:3, :3] @ np.array([s.start for s in crop], dtype=np.float64) + aff[:3, 3]
    return aff


def _fill_convex(eq: np.ndarray, shape) -> np.ndarray:
    """Pixels of a 2D grid inside a convex polygon given by its edge inequalities (one column span per row)."""
    r = np.arange(shape[0], dtype=np.float64)[:, None]
    a, b, d = eq[:, 0][None], eq[:, 1][None], eq[:, 2][None]
    bound = -(a * r + d) / np.where(b == 0, 1.0, b)  # col limit set by each edge on each row
    eps = 1e-9
    hi = np.where(b > 0, bound, np.inf).min(axis=1)
    lo = np.where(b < 0, bound, -np.inf).max(axis=1)
    rows_ok = np.where(b == 0, (a * r + d) <= eps, True).all(axis=1)
    cols = np.arange(shape[1])[None]
    return (cols >= lo[:, None] - eps) & (cols <= hi[:, None] + eps) & rows_ok[:, None]


def thoracic_cage(cage: np.ndarray, si_axis: int, margin_voxels: int) -> np.ndarray:
    """Inside of the rib cage: per axial slice the convex hull of the bones (and lungs) given, shrunk by
    ``margin_voxels`` in the plane so the intercostal muscles on the hull's rim stay outside."""
    from scipy.spatial import ConvexHull, QhullError

    stack = np.ascontiguousarray(np.moveaxis(cage, si_axis, 0))  # slices contiguous: row scans run fast
    out = np.zeros_like(stack)
    for k in range(stack.shape[0]):
        plane = stack[k]
        rows = np.flatnonzero(plane.any(axis=1))
        if rows.size < 2:
            continue
        # the first and last pixel of every row carry the hull (as in shape.extreme_voxels)
        sub = plane[rows]
        first = np.argmax(sub, axis=1)
        last = plane.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1)
        pts = np.concatenate([np.column_stack([rows, first]), np.column_stack([rows, last])]).astype(float)
        try:
            eq = ConvexHull(pts).equations  # inside: a*row + b*col + d <= 0 for every edge
        except QhullError:  # a line of pixels: no area inside
            continue
        out[k] = _fill_convex(eq, plane.shape) | plane
    if margin_voxels > 0:
        flat = np.zeros((1, 3, 3), dtype=bool)
        flat[0] = ndimage.generate_binary_structure(2, 1)
        out = ndimage.binary_erosion(out, structure=flat, iterations=margin_voxels)
    return np.moveaxis(out, 0, si_axis)


def find_pleural_effusions(hu: np.ndarray, labels: np.ndarray, lung: np.ndarray, free_labels: list[int],
                           affine, ap_axis: tuple[int, int], params: dict | None = None,
                           cancel=None, cage=None, si_axis: int = 2) -> list[Lesion]:
    """Fluid collections touching the lungs in the dependent pleural space.

    ``free_labels``: label values that fluid may carry (0 and body-type classes); ``ap_axis`` is
    ``(axis, sign)`` with sign +1 when the index grows anteriorly. ``cage`` (a function of a crop giving
    the rib-cage bones there, optional) keeps the search inside the thoracic cage: without it, unlabelled
    chest-wall and back muscles of fluid-like attenuation would join in.
    """
    params = params or detection_params()
    spacing = _spacing(affine)
    lung_crop = crop_of(lung)
    if lung_crop is None:
        return []
    pad = tuple(int(np.ceil(40.0 / s)) for s in spacing)  # room for fluid beside the lung
    box = _grow(lung_crop, pad, lung.shape)
    check_cancel(cancel)
    # A 3-voxel mean takes the noise down enough to split fluid (0-20 HU) from muscle (40-60 HU).
    smooth = ndimage.uniform_filter(hu[box].astype(np.float32), size=3)
    lo, hi = params["fluid_hu"]
    lut = np.zeros(max(int(labels.max()), max(free_labels)) + 1, dtype=bool)
    lut[list(free_labels)] = True
    free = lut[labels[box]]
    fluid = (smooth >= lo) & (smooth <= hi) & free
    del smooth
    if cage is not None:
        bones = cage(box)
        if bones.any():
            margin = int(np.ceil(params["cage_margin_mm"] / float(min(spacing))))
            fluid &= thoracic_cage(bones | lung[box], si_axis, margin) & ~bones
    lung_box = lung[box]
    shell = ndimage.binary_dilation(lung_box, iterations=2) & ~lung_box
    comp, n = ndimage.label(fluid)
    if n == 0:
        return []
    touching = set(np.unique(comp[shell & (comp > 0)]).tolist()) - {0}
    voxel_ml = float(np.prod(spacing)) / 1000.0
    axis, sign = ap_axis
    lung_ap = _centroid_along(lung_box, axis)
    raw = hu[box]
    found = []
    for label_id, sl in enumerate(ndimage.find_objects(comp), start=1):
        if sl is None or label_id not in touching:
            continue
        check_cancel(cancel)
        part = comp[sl] == label_id
        if np.count_nonzero(part) * voxel_ml < params["effusion_min_volume_ml"]:
            continue
        ap = _centroid_along(part, axis) + sl[axis].start
        if (ap - lung_ap) * sign > 0:
            continue  # anterior to the lungs' centre: not in the dependent pleural space of a supine patient
        # The smoothing and partial volume leave a rim where fluid meets lung; its voxels count by their
        # fluid fraction, interpolated between the lung's and the collection's median HU.
        grown = _grow(sl, (3, 3, 3), comp.shape)
        local = comp[grown] == label_id
        rim_ok = free[grown] & ~lung_box[grown] & (raw[grown] > params["effusion_rim_min_hu"]) & (
            raw[grown] <= hi + 30)
        wide = ndimage.binary_dilation(local, iterations=2, mask=rim_ok | local)
        rim = wide & ~local
        fluid_hu = float(np.median(raw[grown][local]))
        lung_vals = raw[grown][lung_box[grown]]
        lung_hu = float(np.median(lung_vals)) if lung_vals.size else -850.0
        frac = np.clip((raw[grown][rim] - lung_hu) / max(fluid_hu - lung_hu, 1.0), 0.0, 1.0)
        volume_ml = (np.count_nonzero(local) + float(frac.sum())) * voxel_ml
        full = tuple(slice(s.start + b.start, s.stop + b.start) for s, b in zip(grown, box, strict=True))
        contact = np.count_nonzero(shell[grown] & wide) / max(np.count_nonzero(wide), 1)
        found.append(Lesion("pleural_effusion", full, wide,
                            {"volume_ml": volume_ml, "fluid_hu": fluid_hu, "lung_contact_fraction": contact}))
    return found


def _centroid_along(mask: np.ndarray, axis: int) -> float:
    profile = mask.sum(axis=tuple(a for a in range(3) if a != axis)).astype(np.float64)
    total = profile.sum()
    return float((np.arange(len(profile)) * profile).sum() / total) if total else 0.0
