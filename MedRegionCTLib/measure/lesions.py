"""Lesion candidates found from image intensity: lung nodules/masses and pleural effusion.

Nodules and masses: soft-tissue or ground-glass voxels inside the (hole-filled) lungs, opened with a ball of
the smallest reportable radius so that vessels thinner than a nodule drop out (a morphological opening done
exactly with two Euclidean distance transforms), then elongated survivors (vessel segments) rejected.

Pleural effusion: fluid-attenuation voxels outside every labelled organ that touch the lung and lie in the
dependent (posterior) part of the hemithorax.

A large candidate that encloses air bronchograms (air-filled tubes) is consolidation, not a mass
(:func:`assess_consolidation`).

Each candidate keeps the mask that supports it (bounding-box crop + boolean crop) and a confidence in 0-1.
Parameters come from ``data/clinical_thresholds.json`` (``lesion_detection``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from ..data import load_json
from ..progress import check_cancel
from .intensity import hu_statistics
from .shape import crop_of, feret_diameter, local_affine, shape_attributes

# labels that are not organs: fluid may sit inside them
BODY_CLASSES = ("body_trunc", "body", "body_extremities", "thoracic_cavity", "subcutaneous_fat", "torso_fat",
                "lung_pleural", "pleural_effusion")


@dataclass
class Lesion:
    kind: str  # "nodule", "mass", "consolidation", "pleural_effusion"
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
            out[sl] |= _holes(comp[sl] == i)
    return out


def _holes(mask: np.ndarray) -> np.ndarray:
    """What ``binary_fill_holes`` adds to ``mask``: the background components (6-connected) that touch no
    side of the array. One labelling pass instead of a dilation grown until it stops."""
    back, n = ndimage.label(~mask)
    if n == 0:
        return np.zeros_like(mask)
    outer = np.zeros(n + 1, dtype=bool)
    for axis in range(mask.ndim):
        for end in (0, -1):
            outer[np.take(back, end, axis=axis)] = True
    outer[0] = True  # the mask itself
    return ~outer[back]


def _steps_below(r: float, s: float) -> int:
    """The largest number of voxel steps ``j`` of size ``s`` with ``j * s < r``."""
    j = max(int(np.ceil(r / s)) - 1, 0)
    while (j + 1) * s < r:
        j += 1
    while j > 0 and j * s >= r:
        j -= 1
    return j


def _core_candidates(part: np.ndarray, spacing, r: float) -> np.ndarray:
    """A superset of ``distance_transform_edt(part, sampling=spacing) >= r``, cheaply: voxels whose nearest
    background along each axis is at least ``r`` away (the array's outside counts as foreground, as in the
    distance transform)."""
    out = part
    for axis, s in enumerate(spacing):
        j = _steps_below(r, float(s))
        if j > 0:
            eroded = ndimage.minimum_filter1d(part.view(np.uint8), 2 * j + 1, axis=axis, mode="constant", cval=1)
            out = out & eroded.view(bool)
    return out


class _LocalEDT:
    """``distance_transform_edt(mask, sampling=spacing)`` on windows of ``mask`` only, each value exact.

    A window's distances are computed on the window grown by a margin; a value is exact when it does not
    exceed the distance to the grown box's outside (no nearer background can lie beyond it). The margin
    doubles until every value in the window is exact or the box is the whole array.
    """

    def __init__(self, mask: np.ndarray, spacing, start_mm: float):
        self.mask = mask
        self.spacing = np.asarray(spacing, dtype=np.float64)
        self.start_mm = start_mm
        self.full = None

    def on(self, win, where: np.ndarray | None = None) -> np.ndarray:
        """Distances on the window ``win``; with ``where`` (boolean, the window's shape) only the values
        there are guaranteed (the rest may be too large)."""
        if self.full is not None:
            return self.full[win]
        reach = self.start_mm
        while True:
            pad = tuple(int(np.ceil(reach / s)) + 1 for s in self.spacing)
            box = _grow(win, pad, self.mask.shape)
            if all(b.start == 0 and b.stop == n for b, n in zip(box, self.mask.shape, strict=True)):
                self.full = ndimage.distance_transform_edt(self.mask, sampling=self.spacing)
                return self.full[win]
            sub = self.mask[box]
            if not sub.all():
                dist = ndimage.distance_transform_edt(sub, sampling=self.spacing)
                inner = tuple(slice(w.start - b.start, w.stop - b.start) for w, b in zip(win, box, strict=True))
                ok = dist[inner] <= self._room(win, box)
                if (ok if where is None else ok[where]).all():
                    return dist[inner]
            reach *= 2.0

    def _room(self, win, box) -> np.ndarray:
        """Distance (mm) from each window voxel to the nearest voxel outside ``box`` (inf across the array's
        own edges: nothing lies beyond them)."""
        room = np.full(tuple(w.stop - w.start for w in win), np.inf)
        for axis, (w, b, n, s) in enumerate(zip(win, box, self.mask.shape, self.spacing, strict=True)):
            idx = np.arange(w.start, w.stop)
            lo = (idx - b.start + 1) * s if b.start > 0 else np.full(idx.size, np.inf)
            hi = (b.stop - idx) * s if b.stop < n else np.full(idx.size, np.inf)
            shape = [1, 1, 1]
            shape[axis] = idx.size
            room = np.minimum(room, np.minimum(lo, hi).reshape(shape))
        return room


def _opened(part: np.ndarray, spacing, r: float):
    """Morphological opening of ``part`` by a ball of radius ``r`` mm, done exactly with two Euclidean
    distance transforms (erosion = {EDT >= r}, dilation = {distance to eroded <= r}), each on the part of
    the array that can hold an answer. Returns (box, opened mask on that box) or None when the erosion is
    empty."""
    candidates = _core_candidates(part, spacing, r)
    around = crop_of(candidates)
    if around is None:
        return None
    # A voxel's background nearer than r lies within the axis steps counted in _core_candidates.
    box = _grow(around, tuple(_steps_below(r, float(s)) + 1 for s in spacing), part.shape)
    sub = part[box]
    if sub.all():  # no background in reach: the distance transform needs the whole array
        box = tuple(slice(0, n) for n in part.shape)
        sub, cand = part, candidates
    else:
        cand = candidates[box]
    core = (ndimage.distance_transform_edt(sub, sampling=spacing) >= r) & cand
    core_box = crop_of(core)
    if core_box is None:
        return None
    core_box = tuple(slice(b.start + c.start, b.start + c.stop) for b, c in zip(box, core_box, strict=True))
    core_full = np.zeros(part.shape, dtype=bool)
    core_full[box] = core
    # every voxel within r of the erosion lies within its box grown by r
    out_box = _grow(core_box, tuple(int(np.ceil((r + 1e-6) / s)) + 1 for s in spacing), part.shape)
    near = ndimage.distance_transform_edt(~core_full[out_box], sampling=spacing) <= r + 1e-6
    return out_box, near & part[out_box]


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
    del inside
    if allowed is not None:
        candidate &= allowed(box) if callable(allowed) else allowed[box]
    # a nodule must be a few voxels across to be told from a vessel junction: on coarse grids the smallest
    # reportable size grows with the voxel
    r_min = max(params["min_nodule_diameter_mm"] / 2.0, params["min_radius_voxels"] * float(spacing.max()))
    min_voxels = (4.0 / 3.0 * np.pi * r_min**3) / float(np.prod(spacing))
    comp, n = ndimage.label(candidate)
    sizes = np.bincount(comp[candidate], minlength=n + 1)
    del candidate
    pad = tuple(int(np.ceil(r_min / s)) + 1 for s in spacing)
    hu_box = hu[box]
    found: list[Lesion] = []
    # only components of a nodule's volume or more (the thin vessels leave tens of thousands of bits)
    big = (np.flatnonzero(~(sizes[1:] < min_voxels)) + 1).tolist()
    objects = ndimage.find_objects(comp) if big else []
    for label_id in big:
        check_cancel(cancel)
        sl = objects[label_id - 1]
        region = _grow(sl, pad, comp.shape)
        part = comp[region] == label_id
        # opening by a ball of radius r_min (vessels thinner than the smallest nodule drop out)
        opened = _opened(part, spacing, r_min)
        if opened is None:
            continue
        obox, opened = opened
        edt = _LocalEDT(part, spacing, 2.0 * r_min)
        blobs, _ = ndimage.label(opened)
        for b_id, bsl in enumerate(ndimage.find_objects(blobs), start=1):
            if bsl is None:
                continue
            for blob, sub in _compact_parts(blobs[bsl] == b_id, spacing, params):
                # blob box in the region's coordinates: opened box -> blob box -> compact part
                lsl = tuple(slice(o.start + b.start + q.start, o.start + b.start + q.stop)
                            for o, b, q in zip(obox, bsl, sub, strict=True))
                values = hu_box[region][lsl][blob]
                fat_lo, fat_hi = params["fat_hu"]
                if np.count_nonzero((values >= fat_lo) & (values <= fat_hi)) > params["max_fat_fraction"] * values.size:
                    continue  # hilar or mediastinal fat around vessels, not a lesion
                r_in = float(edt.on(lsl, blob)[blob].max())
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
        opened = _opened(mask, spacing, radii[level])
        if opened is None:
            continue
        obox, opened = opened
        comps, _ = ndimage.label(opened)
        for c_id, csl in enumerate(ndimage.find_objects(comps), start=1):
            if csl is not None:
                sub = tuple(slice(w.start + o.start + c.start, w.start + o.start + c.stop)
                            for w, o, c in zip(where, obox, csl, strict=True))
                todo.append((comps[csl] == c_id, sub, level + 1))


def _thick_neighbour(part, edt: _LocalEDT, bsl, blob, r_in, spacing) -> float:
    """Largest inscribed radius (mm) of the candidate voxels just outside a blob (its attached vessels);
    ``edt``: the distance transform of ``part``."""
    pad = tuple(int(np.ceil(2.0 * r_in / s)) + 2 for s in spacing)
    win = _grow(bsl, pad, part.shape)
    local_blob = np.zeros(tuple(w.stop - w.start for w in win), dtype=bool)
    inner = tuple(slice(b.start - w.start, b.stop - w.start) for b, w in zip(bsl, win, strict=True))
    local_blob[inner] = blob
    dist = ndimage.distance_transform_edt(~local_blob, sampling=spacing)
    shell = part[win] & (dist > 1.5 * float(max(spacing))) & (dist <= 2.0 * r_in + float(max(spacing)))
    return float(edt.on(win, shell)[shell].max()) if shell.any() else 0.0


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
    """Fill in size, volume, HU and solid/subsolid type, kind (nodule, mass, or consolidation when it holds
    air bronchograms: :func:`assess_consolidation`) and confidence."""
    attrs = shape_attributes(np.pad(lesion.mask, 0), local_affine(affine, lesion.crop), si_axis,
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
    if "consolidation" in params:
        assess_consolidation(lesion, hu, affine, params)
    return lesion


def _closed(mask: np.ndarray, spacing, r: float) -> np.ndarray:
    """Morphological closing of ``mask`` by a ball of radius ``r`` mm, exactly, as the complement of the
    opening of the complement (the conventions of :func:`_opened`); the mask is padded so nothing is lost
    at the array's edges."""
    pad = [(int(np.ceil(r / s)) + 2,) * 2 for s in spacing]
    m = np.pad(mask, pad)
    near = ndimage.distance_transform_edt(~m, sampling=spacing) < r  # outside the erosion of the complement
    closed = ndimage.distance_transform_edt(near, sampling=spacing) > r
    return closed[tuple(slice(p, p + n) for (p, _), n in zip(pad, mask.shape, strict=True))]


def air_bronchograms(lesion: Lesion, hu: np.ndarray, affine, params: dict) -> dict:
    """Air bronchograms of a candidate: air-filled tubes enclosed by it.

    Enclosed: inside the candidate's closing by a ball of ``closing_radius_mm`` (which fills tunnels
    narrower than the ball) or in a hole the closing shuts in, and at least ``min_depth_mm`` inside the
    closed candidate's surface (a bronchus the candidate merely touches lies at its surface). Air: enclosed
    voxels below ``lucent_max_hu`` form the lumen (a few-millimetre bronchus on a coarse grid reads well
    above -1000 HU through partial volume), and a lumen counts only when some voxel of it is below
    ``air_max_hu`` (more air than aerated lung, about -850 HU, holds). A tube: a connected lumen at least
    ``min_length_mm`` long, ``min_length_to_width`` times longer than wide (a cavity is round) and at most
    ``max_width_mm`` wide. Returns ``{air_voxels, tubes, tube_length_mm, tube_max_width_mm}``.
    """
    p = params["consolidation"]
    spacing = _spacing(affine)
    r = float(p["closing_radius_mm"])
    win = _grow(lesion.crop, tuple(int(np.ceil(r / s)) + 1 for s in spacing), hu.shape)
    inner = tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(lesion.crop, win, strict=True))
    mask = np.zeros(tuple(w.stop - w.start for w in win), dtype=bool)
    mask[inner] = lesion.mask
    closed = _closed(mask, spacing, r)
    closed |= _holes(closed)  # and every cavity it closes in (round: not a tube, see below)
    depth = ndimage.distance_transform_edt(np.pad(closed, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    values = hu[win]
    lucent = closed & ~mask & (values < p["lucent_max_hu"]) & (depth >= p["min_depth_mm"])
    out = {"air_voxels": int(np.count_nonzero(lucent & (values < p["air_max_hu"]))), "tubes": 0,
           "tube_length_mm": 0.0, "tube_max_width_mm": 0.0}
    if not out["air_voxels"]:
        return out
    comps, n = ndimage.label(lucent, structure=np.ones((3, 3, 3), dtype=bool))
    for i, sl in enumerate(ndimage.find_objects(comps), start=1):
        part = comps[sl] == i
        if not (values[sl][part] < p["air_max_hu"]).any():
            continue  # partial volume of something denser, not an air-filled lumen
        pts = np.argwhere(part) * spacing
        if len(pts) >= 2:
            ev, vec = np.linalg.eigh(np.cov(pts.T))
            along = pts @ vec[:, -1]
            # extent along the main axis, voxel centres to voxel faces
            length = float(np.ptp(along)) + float(np.abs(vec[:, -1]) @ spacing)
        else:
            length = float(spacing.min())
        width = 2.0 * float(ndimage.distance_transform_edt(np.pad(part, 1), sampling=spacing).max())
        if length >= p["min_length_mm"] and length >= p["min_length_to_width"] * width and width <= p["max_width_mm"]:
            out["tubes"] += 1
            out["tube_length_mm"] += length
            out["tube_max_width_mm"] = max(out["tube_max_width_mm"], width)
    return out


def assess_consolidation(lesion: Lesion, hu: np.ndarray, affine, params: dict) -> Lesion:
    """Call a nodule/mass candidate ``consolidation`` when it holds air bronchograms (:func:`air_bronchograms`):
    an airspace filling that leaves the bronchi aerated, the sign that tells consolidation from a mass
    (Hansell DM et al., Fleischner glossary, Radiology 2008;246:697-722). Only candidates of at least
    ``min_diameter_mm`` are assessed (a bronchus cannot run inside a small nodule and be seen). Attributes
    ``air_bronchograms`` and ``air_bronchogram_length_mm`` are added either way."""
    p = params["consolidation"]
    a = lesion.attributes
    if a.get("max_diameter_mm", 0.0) < p["min_diameter_mm"]:
        return lesion
    signs = air_bronchograms(lesion, hu, affine, params)
    a["air_bronchograms"] = signs["tubes"]
    a["air_bronchogram_length_mm"] = round(signs["tube_length_mm"], 2)
    if signs["tubes"] >= 1:
        lesion.kind = "consolidation"
        a.pop("subtype", None)
        # confidence grows with the length of aerated bronchus seen inside
        term = min(1.0, signs["tube_length_mm"] / (2.0 * p["min_length_mm"]))
        lesion.confidence = round(max(lesion.confidence, 0.6 + 0.4 * term), 3)
    return lesion


def _fill_convex(eq: np.ndarray, shape) -> np.ndarray:
    """Pixels of a 2D grid inside a convex polygon given by its edge inequalities (one column span per row)."""
    lo, hi = _convex_spans(eq, np.arange(shape[0]), shape[1])
    cols = np.arange(shape[1])[None]
    return (cols >= lo[:, None]) & (cols <= hi[:, None])


def thoracic_cage(cage: np.ndarray, si_axis: int, margin_voxels: int) -> np.ndarray:
    """Inside of the rib cage: per axial slice the convex hull of the bones (and lungs) given, shrunk by
    ``margin_voxels`` in the plane so the intercostal muscles on the hull's rim stay outside."""
    spans = _CageSpans.of(cage, si_axis, margin_voxels)
    if spans is None:
        return _thoracic_cage_by_slices(cage, si_axis, margin_voxels)
    return spans.paint(tuple(slice(0, n) for n in cage.shape))


class _CageSpans:
    """:func:`thoracic_cage` as one column span per (slice, row): each slice's hull, shrunk, is convex, so
    each of its rows is one span. Painted in the array's own layout (no transposed copy), and only on the
    box asked for."""

    def __init__(self, lo, hi, si_axis, rows_axis, cols_axis):
        self.lo, self.hi = lo, hi  # (slices, rows); lo > hi: empty
        self.si_axis, self.rows_axis, self.cols_axis = si_axis, rows_axis, cols_axis

    @classmethod
    def of(cls, cage: np.ndarray, si_axis: int, margin_voxels: int):
        """The spans, or None when a slice's own pixels stick out of its hull's spans (rounding)."""
        rows_axis, cols_axis = [a for a in range(3) if a != si_axis]
        n_cols = cage.shape[cols_axis]
        present = cage.any(axis=cols_axis)  # (rows, slices) or (slices, rows): the array's axis order
        first = np.argmax(cage, axis=cols_axis)
        last = n_cols - 1 - np.argmax(np.flip(cage, axis=cols_axis), axis=cols_axis)
        if rows_axis < si_axis:  # -> (slices, rows)
            present, first, last = present.T, first.T, last.T
        n_slices, n_rows = present.shape
        lo = np.zeros((n_slices, n_rows), dtype=np.int64)
        hi = np.full((n_slices, n_rows), -1, dtype=np.int64)
        for k in range(n_slices):
            rows = np.flatnonzero(present[k])
            if rows.size < 2:
                continue
            # the first and last pixel of every row carry the hull (as in shape.extreme_voxels)
            pts = np.concatenate([np.column_stack([rows, first[k, rows]]),
                                  np.column_stack([rows, last[k, rows]])]).astype(float)
            try:
                eq = ConvexHull(pts).equations  # inside: a*row + b*col + d <= 0 for every edge
            except QhullError:  # a line of pixels: no area inside
                continue
            # only the rows the hull spans can hold pixels
            top, bottom = int(rows[0]), int(rows[-1]) + 1
            lo[k, top:bottom], hi[k, top:bottom] = _convex_spans(eq, np.arange(top, bottom), n_cols)
            # the slice's own pixels lie inside its hull (the hull rows are unions with them)
            if (first[k, rows] < lo[k, rows]).any() or (last[k, rows] > hi[k, rows]).any():
                return None
        if margin_voxels > 0:
            lo, hi = _shrink_spans(lo, hi, margin_voxels)
        return cls(lo, hi, si_axis, rows_axis, cols_axis)

    def bbox(self):
        """Bounding box (slices on the array's axes) of the painted voxels, or None."""
        full = self.lo <= self.hi
        if not full.any():
            return None
        ks, rs = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
        out = [None, None, None]
        out[self.si_axis] = slice(int(ks[0]), int(ks[-1]) + 1)
        out[self.rows_axis] = slice(int(rs[0]), int(rs[-1]) + 1)
        out[self.cols_axis] = slice(int(self.lo[full].min()), int(self.hi[full].max()) + 1)
        return tuple(out)

    def paint(self, box) -> np.ndarray:
        """The cage's inside on ``box`` (slices of the array): voxel (slice k, row r, col c) is inside when
        lo[k, r] <= c <= hi[k, r]."""
        lo = self.lo[box[self.si_axis], box[self.rows_axis]]
        hi = self.hi[box[self.si_axis], box[self.rows_axis]]
        if self.rows_axis < self.si_axis:
            lo, hi = lo.T, hi.T
        c = box[self.cols_axis]
        shape = [1, 1, 1]
        shape[self.cols_axis] = c.stop - c.start
        cols = np.arange(c.start, c.stop, dtype=np.int64).reshape(shape)
        return (cols >= np.expand_dims(lo, self.cols_axis)) & (cols <= np.expand_dims(hi, self.cols_axis))


def _convex_spans(eq: np.ndarray, rows: np.ndarray, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last column, on each of ``rows``, inside a convex polygon given by its edge inequalities,
    clipped to the grid (lo > hi: none)."""
    r = rows.astype(np.float64)[:, None]
    a, b, d = eq[:, 0][None], eq[:, 1][None], eq[:, 2][None]
    bound = -(a * r + d) / np.where(b == 0, 1.0, b)  # col limit set by each edge on each row
    eps = 1e-9
    hi = np.where(b > 0, bound, np.inf).min(axis=1)
    lo = np.where(b < 0, bound, -np.inf).max(axis=1)
    rows_ok = np.where(b == 0, (a * r + d) <= eps, True).all(axis=1)
    # integer col c satisfies c >= lo - eps and c <= hi + eps
    lo_i = np.clip(np.ceil(lo - eps), 0, n_cols).astype(np.int64)
    hi_i = np.clip(np.floor(hi + eps), -1, n_cols - 1).astype(np.int64)
    hi_i[~rows_ok] = -1
    lo_i[~rows_ok] = 0
    return lo_i, hi_i


def _shrink_spans(lo: np.ndarray, hi: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Erode (slices, rows) column spans of convex pixel sets by m iterations of the 4-neighbour cross, the
    image's outside counting as background. The iterated cross is the diamond of radius m, and a convex
    set holds the diamond around a pixel exactly when it holds the diamond's four tips."""
    n_rows = lo.shape[1]
    new_lo = np.full_like(lo, 0)
    new_hi = np.full_like(hi, -1)
    if n_rows > 2 * m:
        inner = slice(m, n_rows - m)
        new_lo[:, inner] = np.maximum(np.maximum(lo[:, inner] + m, lo[:, :n_rows - 2 * m]), lo[:, 2 * m:])
        new_hi[:, inner] = np.minimum(np.minimum(hi[:, inner] - m, hi[:, :n_rows - 2 * m]), hi[:, 2 * m:])
    return new_lo, new_hi  # an empty span anywhere among the three leaves lo > hi


def _thoracic_cage_by_slices(cage: np.ndarray, si_axis: int, margin_voxels: int) -> np.ndarray:
    stack = np.ascontiguousarray(np.moveaxis(cage, si_axis, 0))  # slices contiguous: row scans run fast
    out = np.zeros_like(stack)
    for k in range(stack.shape[0]):
        plane = stack[k]
        rows = np.flatnonzero(plane.any(axis=1))
        if rows.size < 2:
            continue
        sub = plane[rows]
        first = np.argmax(sub, axis=1)
        last = plane.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1)
        pts = np.concatenate([np.column_stack([rows, first]), np.column_stack([rows, last])]).astype(float)
        try:
            eq = ConvexHull(pts).equations
        except QhullError:
            continue
        out[k] = _fill_convex(eq, plane.shape) | plane
    if margin_voxels > 0:
        flat = np.zeros((1, 3, 3), dtype=bool)
        flat[0] = ndimage.generate_binary_structure(2, 1)
        out = ndimage.binary_erosion(out, structure=flat, iterations=margin_voxels)
    return np.moveaxis(out, 0, si_axis)


def _dilate_cross(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``binary_dilation(mask, iterations=...)`` with the 6-neighbour cross (outside: background), by
    shifted ORs."""
    out = mask
    for _ in range(iterations):
        grown = out.copy()
        for axis in range(out.ndim):
            n = out.shape[axis]
            if n < 2:
                continue
            a = [slice(None)] * out.ndim
            b = [slice(None)] * out.ndim
            a[axis], b[axis] = slice(1, None), slice(None, n - 1)
            grown[tuple(a)] |= out[tuple(b)]
            grown[tuple(b)] |= out[tuple(a)]
        out = grown
    return out


def _shell(lung: np.ndarray, win, width: int = 2) -> np.ndarray:
    """``(binary_dilation(lung, iterations=width) & ~lung)[win]``, computed on the window only."""
    big = _grow(win, (width,) * lung.ndim, lung.shape)
    inner = tuple(slice(w.start - b.start, w.stop - b.start) for w, b in zip(win, big, strict=True))
    return _dilate_cross(lung[big], width)[inner] & ~lung[win]


def find_pleural_effusions(hu: np.ndarray, labels: np.ndarray, lung: np.ndarray, free_labels: list[int],
                           affine, ap_axis: tuple[int, int], params: dict | None = None,
                           cancel=None, cage=None, si_axis: int = 2) -> list[Lesion]:
    """Fluid collections touching the lungs in the dependent pleural space.

    ``free_labels``: label values that fluid may carry (0 and body-type classes); ``ap_axis`` is
    ``(axis, sign)`` with sign +1 when the index grows anteriorly. ``cage`` (the label values of the rib-cage
    bones, or a function of a crop giving the bones there; optional) keeps the search inside the thoracic
    cage: without it, unlabelled chest-wall and back muscles of fluid-like attenuation would join in.
    """
    params = params or detection_params()
    spacing = _spacing(affine)
    lung_crop = crop_of(lung)
    if lung_crop is None:
        return []
    pad = tuple(int(np.ceil(40.0 / s)) for s in spacing)  # room for fluid beside the lung
    box = _grow(lung_crop, pad, lung.shape)
    check_cancel(cancel)
    lo, hi = params["fluid_hu"]
    # one label lookup gives both the voxels fluid may occupy (bit 1) and the rib-cage bones (bit 2)
    bone_values = [] if cage is None or callable(cage) else [int(v) for v in cage]
    lut = np.zeros(max(int(labels.max()), *free_labels, *bone_values) + 1, dtype=np.uint8)
    lut[list(free_labels)] |= 1
    lut[bone_values] |= 2
    code = lut[labels[box]]
    free = (code & 1).view(bool)
    bones = (code >= 2) if bone_values else cage(box) if callable(cage) else None
    del code
    lung_box = lung[box]
    # Fluid: free voxels inside the cage whose 3-voxel mean lies in the fluid range (the mean takes the noise
    # down enough to split fluid, 0-20 HU, from muscle, 40-60 HU). All on the box around the cage's inside.
    where = tuple(slice(0, n) for n in free.shape)
    if bones is not None and bones.any():
        margin = int(np.ceil(params["cage_margin_mm"] / float(min(spacing))))
        spans = _CageSpans.of(bones | lung_box, si_axis, margin)
        if spans is None:
            inside = free & _thoracic_cage_by_slices(bones | lung_box, si_axis, margin)
            where = crop_of(inside)
            if where is None:
                return []
            inside = inside[where]
        else:
            where = spans.bbox()
            if where is None:
                return []
            inside = free[where] & spans.paint(where)
        if callable(cage) or (lut == 3).any():  # bone voxels that are free too: take them out
            inside &= ~bones[where]
    else:
        inside = free
    del bones
    sub = _grow(where, (1, 1, 1), free.shape)
    inner = tuple(slice(w.start - s.start, w.stop - s.start) for w, s in zip(where, sub, strict=True))
    raw = hu[box]
    # (int16 in, float32 out: the same passes as on a float32 copy, without the copy)
    smooth = ndimage.uniform_filter(raw[sub], size=3, output=np.float32)
    fluid = np.zeros(smooth.shape, dtype=bool)
    inner_smooth = smooth[inner]
    in_range = np.greater_equal(inner_smooth, lo)
    in_range &= np.less_equal(inner_smooth, hi)
    in_range &= inside
    fluid[inner] = in_range
    del smooth, inner_smooth, inside, in_range
    comp, n = ndimage.label(fluid)
    if n == 0:
        return []
    sizes = np.bincount(comp[fluid], minlength=n + 1)
    del fluid
    voxel_ml = float(np.prod(spacing)) / 1000.0
    axis, sign = ap_axis
    lung_ap = _centroid_along(lung_box, axis)
    found = []
    # large enough collections only (noise leaves thousands of specks): their boxes one by one when few
    big = (np.flatnonzero(~(sizes[1:] * voxel_ml < params["effusion_min_volume_ml"])) + 1).tolist()
    if len(big) <= 8:
        objects = [crop_of(comp == i) for i in big]
    else:
        every = ndimage.find_objects(comp)
        objects = [every[i - 1] for i in big]
    for label_id, sl in zip(big, objects, strict=True):
        check_cancel(cancel)
        sl = tuple(slice(s.start + w.start, s.stop + w.start) for s, w in zip(sl, sub, strict=True))  # -> box
        grown = _grow(sl, (3, 3, 3), free.shape)
        local = _window(comp, sub, grown) == label_id
        # it must touch the lung: a voxel within two steps of the lung, outside it
        inner = tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(sl, grown, strict=True))
        if not (_shell(lung_box, sl) & local[inner]).any():
            continue
        ap = _centroid_along(local[inner], axis) + sl[axis].start
        if (ap - lung_ap) * sign > 0:
            continue  # anterior to the lungs' centre: not in the dependent pleural space of a supine patient
        # The smoothing and partial volume leave a rim where fluid meets lung; its voxels count by their
        # fluid fraction, interpolated between the lung's and the collection's median HU.
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
        contact = np.count_nonzero(_shell(lung_box, grown) & wide) / max(np.count_nonzero(wide), 1)
        found.append(Lesion("pleural_effusion", full, wide,
                            {"volume_ml": volume_ml, "fluid_hu": fluid_hu, "lung_contact_fraction": contact}))
    return found


def _window(array: np.ndarray, where, win) -> np.ndarray:
    """``win`` (slices of a larger grid) of ``array``, which covers ``where`` of that grid; zero outside."""
    out = np.zeros(tuple(w.stop - w.start for w in win), dtype=array.dtype)
    both = tuple(slice(max(w.start, a.start), min(w.stop, a.stop)) for w, a in zip(win, where, strict=True))
    if all(b.start < b.stop for b in both):
        out[tuple(slice(b.start - w.start, b.stop - w.start) for b, w in zip(both, win, strict=True))] = \
            array[tuple(slice(b.start - a.start, b.stop - a.start) for b, a in zip(both, where, strict=True))]
    return out


def _centroid_along(mask: np.ndarray, axis: int) -> float:
    profile = mask.sum(axis=tuple(a for a in range(3) if a != axis)).astype(np.float64)
    total = profile.sum()
    return float((np.arange(len(profile)) * profile).sum() / total) if total else 0.0
