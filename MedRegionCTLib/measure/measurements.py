"""``measure(volume, labelmap)``: attributes of every structure, region and lesion candidate, the derived
clinical measures and their sentences, as one :class:`Measurements` with ``to_json`` and ``to_rows``."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
from scipy import ndimage

from ..anatomy import build_regions, class_group, load_schema, patient_axes, side_of
from ..errors import InputError
from ..progress import Steps, check_cancel
from ..threads import in_background
from . import clinical as clin
from .assessability import coverage, quality_checks
from .intensity import PERCENTILES, hu_statistics
from .lesions import (
    BODY_CLASSES,
    air_bronchograms,
    describe_nodule,
    detection_params,
    distance_to,
    find_nodules,
    find_pleural_effusions,
)
from .masses import continues_up_and_down, find_masses, heart_contact_share, touching
from .pleural_fluid import effusions_from_label
from .position import Frame, describe_position, lobe_of
from .sentences import clinical_sentences, lesion_sentence, structure_sentence
from .shape import local_affine, shape_attributes

# mediastinal vessels at the lung roots (candidates touching them are hilar vessel lumps)
HILAR_CLASSES = ("pulmonary_artery", "pulmonary_vein", "heart", "atrial_appendage_left", "aorta",
                 "superior_vena_cava", "brachiocephalic_vein_left", "brachiocephalic_vein_right")
LOBES = ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right", "lung_upper_lobe_left",
         "lung_lower_lobe_left")
# The vessels' own classes (TotalSegmentator's dissection lumens belong to the aorta) and the classes that
# place their landmarks; the box around a vessel is grown by VESSEL_PAD voxels for its sections.
AORTA_CLASSES = {"aorta": ("aorta", "aorta_true_lumen", "aorta_false_lumen"),
                 "landmarks": ("brachiocephalic_trunk", "subclavian_artery_left", "sinotubular_junction",
                               "vertebrae_T12")}
PULMONARY_CLASSES = {"pulmonary_artery": ("pulmonary_artery",), "landmarks": ("pul_bifurcation",)}
VESSEL_PAD = 12
# Which schema region a clinical measure belongs to: the class it is measured on.
MEASURE_CLASS = {
    "cardiothoracic_ratio": "heart", "ascending_aorta_diameter_mm": "aorta",
    "descending_aorta_diameter_mm": "aorta", "main_pulmonary_artery_diameter_mm": "pulmonary_artery",
    "pa_to_aorta_ratio": "pulmonary_artery", "trachea_diameter_mm": "trachea",
    "lung_volume_ml": "lung_upper_lobe_right", "laa_950_percent": "lung_upper_lobe_right",
    "pleural_effusion_volume_ml": "pleural_effusion", "pericardial_fluid_volume_ml": "pericardial_effusion",
    "vertebral_levels": "vertebrae_T5",
}


@dataclass
class Measurements:
    structures: dict = field(default_factory=dict)
    regions: dict = field(default_factory=dict)
    clinical: dict = field(default_factory=dict)
    lesions: list = field(default_factory=list)
    sentences: dict = field(default_factory=dict)  # region key -> sentences
    lesion_masks: list = field(default_factory=list)  # (crop slices, boolean crop) per lesion, same order
    meta: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """Plain JSON types only (numpy scalars converted)."""
        return _plain({"format": "medregionct-measurements", "version": 1, "meta": self.meta,
                       "structures": self.structures, "regions": self.regions, "clinical": self.clinical,
                       "lesions": self.lesions, "sentences": self.sentences})

    def to_rows(self) -> list[dict]:
        """One flat row per structure, region and lesion; units in the column names."""
        rows = []
        for kind, items in (("structure", self.structures.items()), ("region", self.regions.items()),
                            ("lesion", ((f"{les['kind']}_{les['id']}", les) for les in self.lesions))):
            for name, a in items:
                row = {"kind": kind, "name": name}
                for key, value in a.items():
                    if key in ("centroid_ras", "bbox_ras_min", "bbox_ras_max"):
                        for axis, v in zip("ras", value, strict=True):
                            row[f"{key.replace('_ras', '')}_{axis}_mm"] = round(v, 2)
                    elif key == "extent_mm":
                        for axis, v in zip(("rl", "ap", "si"), value, strict=True):
                            row[f"extent_{axis}_mm"] = round(v, 2)
                    elif key in ("bbox_index", "sentence", "classes", "sources"):
                        continue
                    elif isinstance(value, float):
                        row[key if _has_unit(key) else f"{key}_hu" if key.startswith("hu_") else key] = round(
                            value, 4)
                    elif isinstance(value, int | str | bool | np.integer | np.bool_) or value is None:
                        row[key] = _plain(value)
                rows.append(row)
        return rows


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _has_unit(key: str) -> bool:
    return key.endswith(("_ml", "_mm", "_mm2", "_hu", "_percent")) or key.startswith("hu_") or key in (
        "confidence", "solid_fraction", "elongation", "lobe_share", "lung_contact_fraction")


def _attributes(sub: np.ndarray, crop, affine, si_axis: int, hu: np.ndarray, frame: Frame,
                surface: str = "corners") -> dict | None:
    a = shape_attributes(sub, local_affine(affine, crop), si_axis, crop=tuple(slice(0, n) for n in sub.shape),
                         diameter_surface=surface)
    if a is None:
        return None
    a["bbox_index"] = [[lo + s.start, hi + s.start] for (lo, hi), s in zip(a["bbox_index"], crop, strict=True)]
    a["axial_slice_index"] += crop[si_axis].start
    a.update(hu_statistics(hu[crop][sub], PERCENTILES))
    a.update(describe_position(a["bbox_ras_min"], a["bbox_ras_max"], a["centroid_ras"], frame))
    return a


def _frame(labelmap, objects, index_of, affine) -> Frame:
    """Midline from the spine (or trachea), zones from the lungs' extent (or the whole image)."""
    arr = labelmap.array
    spine_names = [n for n in index_of if n == "spinal_cord" or n.startswith("vertebrae_T")]
    mid_names = spine_names or [n for n in index_of if n == "trachea"]
    lung_names = [n for n in index_of if n in LOBES or n in ("lung", "lung_left", "lung_right")]

    def box_world(names):
        lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
        for n in names:
            sl = objects[index_of[n] - 1]
            idx = np.array([[sl[0].start, sl[1].start, sl[2].start], [sl[0].stop - 1, sl[1].stop - 1, sl[2].stop - 1]])
            pts = np.array([[idx[a][0], idx[b][1], idx[c][2]] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
            w = pts @ affine[:3, :3].T + affine[:3, 3]
            lo, hi = np.minimum(lo, w.min(0)), np.maximum(hi, w.max(0))
        return lo, hi

    if lung_names:
        lo, hi = box_world(lung_names)
    else:
        shape = np.array(arr.shape) - 1
        pts = np.array([[a, b, c] for a in (0, shape[0]) for b in (0, shape[1]) for c in (0, shape[2])])
        w = pts @ affine[:3, :3].T + affine[:3, 3]
        lo, hi = w.min(0), w.max(0)
    if mid_names:
        # x centre of the midline structures' voxels
        xs = []
        for n in mid_names:
            sl = objects[index_of[n] - 1]
            sub = arr[sl] == index_of[n]
            c = np.argwhere(sub).mean(axis=0) + [s.start for s in sl] if sub.sum() < 2_000_000 else \
                np.array([(s.start + s.stop - 1) / 2 for s in sl])
            xs.append(float((c @ affine[:3, :3].T + affine[:3, 3])[0]))
        mid = float(np.median(xs))
    else:
        mid = float((lo[0] + hi[0]) / 2)
    source = "spine" if spine_names else ("trachea" if mid_names else "field of view")
    return Frame(mid, (float(lo[2]), float(hi[2])), (float(lo[1]), float(hi[1])), source)


def measure(volume, labelmap, schema="radgenome10", progress=None, cancel=None, lesions: bool = True,
            regions: bool = True, built_regions=None) -> Measurements:
    """Measure every class of ``labelmap`` and every region of ``schema`` on ``volume`` (same grid).

    ``built_regions``: the regions already built from ``labelmap`` (``anatomy.build_regions(labelmap, schema,
    volume)``, a list of ``RegionMask``), measured instead of building them again.
    """
    if not volume.same_grid(labelmap):
        raise InputError("the CT and the label map are on different grids; give the label map on the CT's "
                         "grid (segment this CT, or resample the labels onto it).")
    if built_regions is not None and any(tuple(r.mask.shape) != tuple(volume.shape) for r in built_regions):
        raise InputError("built_regions are not on the CT's grid; build them from this label map "
                         "(anatomy.build_regions(labelmap, schema, volume)) or leave built_regions out.")
    schema = load_schema(schema)
    steps = Steps(progress, total=5, cancel=cancel, what="measurement")
    hu = volume.array
    arr = labelmap.array
    affine = np.asarray(volume.affine, dtype=np.float64)
    axes = patient_axes(affine)
    si = axes.si[0]
    spacing = np.asarray(volume.spacing)
    objects = ndimage.find_objects(arr)  # [] when there is no label
    index_of = {labelmap.names.get(i + 1, f"label_{i + 1}"): i + 1 for i, sl in enumerate(objects) if sl is not None}
    crops = {n: objects[i - 1] for n, i in index_of.items()}
    frame = _frame(labelmap, objects, index_of, affine)
    lobe_index = {n: index_of[n] for n in LOBES if n in index_of}
    out = Measurements(meta={"schema": schema.name, "shape": list(volume.shape), "spacing_mm": spacing.tolist(),
                             "orientation": volume.orientation, "midline_x_mm": frame.midline_x,
                             "midline_from": frame.midline_from,
                             "lung_z_range_mm": list(frame.z_range), "percentiles": list(PERCENTILES),
                             "lesion_search": bool(lesions)})

    # --- lesion candidates, on another core while the structures are measured -------------------------
    lesion_search = None
    if lesions:
        # a segmenter that looked for pleural fluid (and labels what it found) is trusted when it found none
        fluid_segmented = "pleural_fluid_ml" in (labelmap.meta or {})
        lesion_search = in_background(partial(_lesions, out, hu, arr, index_of, lobe_index, affine, axes, frame,
                                              cancel, objects, fluid_segmented))

    # --- structures ---------------------------------------------------------------------------------
    for name, idx in sorted(index_of.items(), key=lambda t: t[1]):
        check_cancel(cancel, "measurement")
        crop = crops[name]
        sub = arr[crop] == idx
        a = _attributes(sub, crop, affine, si, hu, frame)
        if a is None:
            continue
        a["label"] = idx
        named_side = side_of(name)
        if named_side in ("left", "right"):
            a["side"] = named_side
        if name in class_group("lung_lesions") or name == "pleural_effusion":
            lobe, share = lobe_of(_full(sub, crop, arr.shape), crop, arr, lobe_index)
            a["lobe"], a["lobe_share"] = lobe, share
        out.structures[name] = a
    steps.advance("structures measured")

    # --- regions ------------------------------------------------------------------------------------
    if regions:
        if built_regions is None:
            built_regions = build_regions(labelmap, schema, volume, objects=objects)
        for r in built_regions:
            check_cancel(cancel, "measurement")
            crop = r.crop()  # known from build_regions
            if crop is None:
                continue
            a = _attributes(r.mask[crop], crop, affine, si, hu, frame)
            a["name"] = r.region.name
            a["classes"] = r.classes
            out.regions[r.key] = a
    steps.advance("regions measured")

    # --- clinical measures --------------------------------------------------------------------------
    counts = {n: out.structures[n]["voxels"] if n in out.structures else 0 for n in index_of}
    out.clinical = _clinical(arr, hu, index_of, crops, axes, spacing, volume.voxel_volume_ml, frame, affine,
                             counts)
    steps.advance("clinical measures")

    if lesion_search is not None:
        lesion_search.result()
    # what the data can support: coverage of each lung and the segmentation's quality checks
    out.meta["coverage"] = coverage(arr, index_of, affine, si)
    out.meta["quality_checks"] = quality_checks(
        arr, hu, index_of, affine, volume.voxel_volume_ml, frame.midline_x, out.meta["coverage"], out.lesions,
        out.lesion_masks, detection_params()["min_report_confidence"], labelmap.meta) if lesions else {}
    steps.advance("lesions")

    # --- sentences, grouped by region ---------------------------------------------------------------
    sentences: dict[str, list[str]] = {}

    def add(class_name: str, text: str) -> None:
        keys = schema.region_of(class_name) or ["other"]
        sentences.setdefault(keys[0], []).append(text)

    for key, text in clinical_sentences(out.clinical).items():
        add(MEASURE_CLASS[key], text)
    for les in out.lesions:
        add("lung_nodules" if les["kind"] in ("nodule", "mass", "consolidation") else "pleural_effusion",
            les["sentence"])
    for name in ("heart", "liver", "spleen", "thyroid_gland", "esophagus"):
        if name in out.structures:
            add(name, structure_sentence(name, out.structures[name]))
    out.sentences = sentences
    steps.advance("done")
    return out


def _full(sub, crop, shape) -> np.ndarray:
    full = np.zeros(shape, dtype=bool)
    full[crop] = sub
    return full


def _lut(arr, index_of, names) -> np.ndarray:
    """Boolean lookup table label -> member of ``names`` (one table pass per mask, no np.isin)."""
    lut = np.zeros(max(index_of.values(), default=0) + 1, dtype=bool)
    lut[[index_of[n] for n in names if n in index_of]] = True
    return lut


def _union(arr, index_of, names, box=None, crops=None) -> np.ndarray:
    lut = _lut(arr, index_of, names)
    if box is not None or crops is None:
        return lut[arr if box is None else arr[box]]
    # Look up only inside the union of the classes' bounding boxes: nothing outside can be True.
    boxes = [crops[n] for n in names if n in crops]
    out = np.zeros(arr.shape, dtype=bool)
    if boxes:
        box = tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3))
        out[box] = lut[arr[box]]
    return out


def _clinical(arr, hu, index_of, crops, axes, spacing, voxel_ml, frame, affine, counts=None) -> dict:
    """The derived clinical measures; ``counts``: voxels of each class, when already counted."""
    c: dict = {}
    heart_names = class_group("heart").select(index_of)
    heart_names = [n for n in heart_names if n not in ("pericardium", "pericardial_effusion")]
    lung_right = [n for n in index_of if n in class_group("lung_right")]
    lung_left = [n for n in index_of if n in class_group("lung_left")]
    right = _union(arr, index_of, lung_right, crops=crops)
    lungs = right | _union(arr, index_of, lung_left, crops=crops)
    c["cardiothoracic_ratio"] = clin.cardiothoracic_ratio(_union(arr, index_of, heart_names, crops=crops), lungs,
                                                          axes, affine)
    if "aorta" in index_of:
        crop, aff, hu_crop, masks = _vessel_crop(arr, hu, index_of, crops, affine, "aorta", AORTA_CLASSES)
        asc, desc, c["aorta_landmarks"] = clin.aorta_diameters(masks.pop("aorta"), aff, masks, hu_crop)
    else:
        asc, desc = clin.judge("ascending_aorta_diameter_mm", None), clin.judge("descending_aorta_diameter_mm", None)
    c["ascending_aorta_diameter_mm"], c["descending_aorta_diameter_mm"] = asc, desc
    if "pulmonary_artery" in index_of:
        crop, aff, hu_crop, masks = _vessel_crop(arr, hu, index_of, crops, affine, "pulmonary_artery",
                                                 PULMONARY_CLASSES)
        pa, c["pulmonary_artery_landmarks"] = clin.pulmonary_artery_diameter(masks.pop("pulmonary_artery"), aff,
                                                                             masks, hu_crop)
    else:
        pa = clin.judge("main_pulmonary_artery_diameter_mm", None)
    c["main_pulmonary_artery_diameter_mm"] = pa
    ratio = pa["value"] / asc["value"] if pa["value"] and asc["value"] else None
    c["pa_to_aorta_ratio"] = clin.judge("pa_to_aorta_ratio", ratio)
    if "trachea" in index_of:
        crop = crops["trachea"]
        midline = frame.midline_x if frame.midline_from == "spine" else None
        c["trachea_diameter_mm"] = clin.trachea_diameters(arr[crop] == index_of["trachea"], spacing, axes,
                                                          local_affine(affine, crop), midline)
    else:
        c["trachea_diameter_mm"] = clin.judge("trachea_diameter_mm", None)
    if counts is None:
        counts = {n: int(np.count_nonzero(arr[crops[n]] == i)) for n, i in index_of.items()}
    c["lung_volume_ml"] = {"right": sum(counts[n] for n in lung_right) * voxel_ml,
                           "left": sum(counts[n] for n in lung_left) * voxel_ml, "unit": "mL"}
    # lung voxels in the lungs' box only (the same values in the same order as over the whole grid)
    boxes = [crops[n] for n in lung_right + lung_left]
    box = tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3)) \
        if boxes else tuple(slice(0, 0) for _ in range(3))
    hu_box, lungs_box, right_box = hu[box], lungs[box], right[box]
    c["laa_950_percent"] = clin.emphysema_index(hu_box[lungs_box])
    for side, mask in (("right", right_box), ("left", lungs_box & ~right_box)):
        c["laa_950_percent"][side] = clin.emphysema_index(hu_box[mask])["value"]
    lobes = [n for n in LOBES if n in index_of]
    if lobes:  # per lobe: upper-lobe emphysema can stay under the whole-lung threshold
        c["laa_950_percent"].update(clin.lobar_emphysema_index(
            {n: hu[crops[n]][arr[crops[n]] == index_of[n]] for n in lobes}))
    if "pleural_effusion" in index_of:
        crop = crops["pleural_effusion"]
        sub = arr[crop] == index_of["pleural_effusion"]
        ijk = np.argwhere(sub) + [sl.start for sl in crop]
        x = ijk @ affine[0, :3] + affine[0, 3]  # RAS x of every fluid voxel (+x: patient's right)
        m = clin.judge("pleural_effusion_volume_ml", counts["pleural_effusion"] * voxel_ml)
        m["right_ml"] = float(np.count_nonzero(x > frame.midline_x)) * voxel_ml
        m["left_ml"] = float(np.count_nonzero(x <= frame.midline_x)) * voxel_ml
        c["pleural_effusion_volume_ml"] = m
    if "pericardial_effusion" in index_of:
        c["pericardial_fluid_volume_ml"] = clin.judge("pericardial_fluid_volume_ml",
                                                      counts["pericardial_effusion"] * voxel_ml)
    c["vertebral_levels"] = clin.vertebral_levels(crops, arr.shape, axes.si[0])
    return c


def _vessel_crop(arr, hu, index_of, crops, affine, vessel: str, classes):
    """The vessel's box (grown by ``VESSEL_PAD`` voxels): its mask (the union of ``classes[vessel]``), the
    masks of the structures that place its landmarks, the CT and the box's affine."""
    box = tuple(slice(max(s.start - VESSEL_PAD, 0), min(s.stop + VESSEL_PAD, n))
                for s, n in zip(crops[vessel], arr.shape))
    sub = arr[box]
    masks = {vessel: _lut(sub, index_of, classes[vessel])[sub]}
    for name in classes["landmarks"]:
        if name in index_of:
            masks[name] = sub == index_of[name]
    return box, local_affine(affine, box), hu[box], masks


def _lesions(out, hu, arr, index_of, lobe_index, affine, axes, frame, cancel, objects=None,
             fluid_segmented: bool = False) -> None:
    params = detection_params()
    si = axes.si[0]
    lung_names = [n for n in index_of if n in class_group("lungs") or n in class_group("lung_lesions")]
    crops = {n: objects[i - 1] for n, i in index_of.items()} if objects is not None else None
    lung = _union(arr, index_of, lung_names, crops=crops)
    free = [0] + [index_of[n] for n in BODY_CLASSES if n in index_of]
    body_lut = _lut(arr, index_of, [n for n in BODY_CLASSES if n in index_of])
    body_lut[0] = True

    def allowed(box):
        return lung[box] | body_lut[arr[box]]

    hilar_lut = _lut(arr, index_of, [n for n in index_of if n in HILAR_CLASSES])

    def hilar(box):
        return hilar_lut[arr[box]]

    hilar.grid_shape = arr.shape

    mass_min = clin.thresholds()["nodule_size_categories"]["mass_min_diameter_mm"]
    names = {i: n for n, i in index_of.items()}
    field_values = [index_of[n] for n in lung_names]
    masses = find_masses(hu, lung, affine, params, cancel=cancel)
    nodules = find_nodules(hu, lung, affine, si, params, cancel=cancel, allowed=allowed)
    # One lesion found by both searches is kept once: by the nodule search when the lung surrounds it (its mask
    # keeps the partial-volume rim the mass search's threshold cuts off), by the mass search when it rests on
    # the mediastinum, the hilum, the chest wall or the diaphragm.
    def nodule_view(m) -> bool:
        inner = [n for n in nodules if _inside(n, m) and n.mask.sum() >= 0.5 * m.mask.sum()]
        # consolidation, too, is seen better by the nodule search: its mask keeps the aerated bronchi's walls
        return bool(inner) and (not touching(m, arr, names, field_values, affine) or any(
            air_bronchograms(n, hu, affine, params)["tubes"] for n in inner))

    masses = [m for m in masses if not nodule_view(m)]
    nodules = [n for n in nodules if not any(_inside(n, m) for m in masses)]
    def describe(les, search: str) -> bool:
        """Fill in the lesion's attributes; False (and recorded as unreported) below the reporting confidence."""
        measured = les.attributes.pop("measured_mask", None)
        if not judge(les, search):
            return False
        if measured is not None:  # reported: measured on the margins its opening took off
            judged_kind, judged = les.kind, les.attributes
            les.crop, les.mask = measured
            confidence = les.confidence
            fill_in(les, search)
            les.confidence = confidence
            # what it is stays what the rules judged (a wider margin may take in a neighbour's bronchus)
            if "consolidation" in (judged_kind, les.kind):
                les.kind = judged_kind
                for key in ("air_bronchograms", "air_bronchogram_length_mm", "told_from_consolidation"):
                    if key in judged:
                        les.attributes[key] = judged[key]
        return True

    def fill_in(les, search: str) -> None:
        describe_nodule(les, hu, affine, si, params, mass_min, lung)
        a = les.attributes
        a["bbox_index"] = [[lo + s.start, hi + s.start] for (lo, hi), s in zip(a["bbox_index"], les.crop, strict=True)]
        a["axial_slice_index"] += les.crop[si].start
        a.update(describe_position(a["bbox_ras_min"], a["bbox_ras_max"], a["centroid_ras"], frame))
        lobe, share = lobe_of(_full(les.mask, les.crop, arr.shape), les.crop, arr, lobe_index)
        a["lobe"], a["lobe_share"] = lobe, share
        if lobe:
            a["side"] = "right" if lobe.endswith("right") else "left"
        if les.kind != "consolidation":
            a["size_category"] = clin.nodule_category(a["max_diameter_mm"])
        a["found_by"] = search
        a["touches"] = touching(les, arr, names, field_values, affine)
        a["told_from_consolidation"] = _told_apart(les)
        # Where the hilar vessels enter the lung they form lumps no intensity rule tells from a nodule: a
        # candidate of the nodule search touching the mediastinal vessels keeps a low confidence and is not
        # reported (the mass search has its own rules for the hilum and the mediastinum, below).
        a["distance_to_hilar_vessels_mm"] = distance_to(les, hilar, affine)

    def judge(les, search: str) -> bool:
        """Fill in the lesion's attributes and apply the reporting rules; False (and recorded as unreported) below
        the reporting confidence."""
        fill_in(les, search)
        a = les.attributes
        # (on a coarse grid the vessels' masks are coarse too: the reach is at least hilar_distance_voxels)
        near_vessels = a["distance_to_hilar_vessels_mm"] <= max(params["hilar_distance_mm"], params[
            "hilar_distance_voxels"] * float(np.max(axes.spacing)))
        if near_vessels and (search == "nodule search" or a["max_diameter_mm"] < mass_min):
            les.confidence = round(les.confidence * 0.4, 3)
        # The pulmonary arteries and veins at the lung root are as thick as a small mass and, without contrast,
        # as dense; next to the mediastinum, close to the midline, lie the great veins and the nodes (the
        # superior vena cava, the azygos arch). A candidate there is reported only when larger than any of them
        # (what is not reported stays unexplained tissue, so no absence is claimed on that side either).
        mp = params["masses"]
        hilar_lump = "hilum" in a["touches"] and a["max_diameter_mm"] < mp["hilar_mass_min_mm"]
        off_midline = abs(a["centroid_ras"][0] - frame.midline_x)
        central = "mediastinum" in a["touches"] and (off_midline < mp["midline_mm"] or (
            off_midline < mp["mediastinal_reach_mm"] and a["max_diameter_mm"] < mp["mediastinal_mass_min_mm"]))
        # against the heart lie the atrial appendage, the pericardial fat pads and whatever of the heart its
        # mask missed: a candidate resting on it is reported only from the mediastinal size
        cardiac = "heart" in index_of and a["max_diameter_mm"] < mp["mediastinal_mass_min_mm"] and heart_contact_share(
            les, arr, index_of["heart"], index_of.get("mediastinum"), affine, mp["heart_wall_mm"]) >= mp[
            "heart_contact_share"]
        # the superior vena cava, the azygos vein and the descending aorta run up and down beside the mediastinum:
        # a piece much taller than it is wide, near the midline, is one of them
        vertical = off_midline < mp["vertical_vessel_reach_mm"] and a["extent_mm"][2] >= mp[
            "vertical_vessel_ratio"] * max(a.get("axial_long_axis_mm") or 0.0, 1e-6)
        # a small lump at the lung's medial edge next to unlabelled soft tissue is a mediastinal vessel or node
        # (the great veins are not labelled); subpleural nodules against the ribs lie farther out
        medial_edge = a["max_diameter_mm"] < mass_min and off_midline < mp[
            "mediastinal_mass_min_mm"] and bool(a["touches"])
        # the great veins run up and down through the lung field's edge: soft tissue above and below the
        # candidate, outside the lung, where a lung lesion has lung (or the diaphragm under it only)
        tube = off_midline < mp["vertical_vessel_reach_mm"] and continues_up_and_down(
            les, hu, lung, affine, si, mp["vertical_vessel_probe_mm"])
        if hilar_lump or central or cardiac or vertical or medial_edge or tube:
            les.confidence = round(les.confidence * 0.4, 3)
        if les.confidence < params["min_report_confidence"]:
            out.meta.setdefault("unreported_candidates", []).append(
                {"kind": les.kind, "centroid_ras": a["centroid_ras"], "max_diameter_mm": a["max_diameter_mm"],
                 "confidence": les.confidence, "distance_to_hilar_vessels_mm": a["distance_to_hilar_vessels_mm"],
                 "touches": a["touches"]})
            return False
        return True

    found = [les for les in masses if describe(les, "mass search")]
    found += [les for les in nodules if describe(les, "nodule search")]
    cage = [i for n, i in index_of.items() if n in class_group("chest_wall_bones") or n in class_group("vertebrae")]
    if "pleural_effusion" in index_of:  # the segmenter found the fluid: measure what it found, side by side
        effusions = effusions_from_label(arr, index_of["pleural_effusion"], affine, frame.midline_x,
                                         crops["pleural_effusion"] if crops else None)
    elif fluid_segmented:
        effusions = []
    else:
        effusions = find_pleural_effusions(hu, arr, lung, free, affine, axes.ap, params, cancel=cancel, cage=cage,
                                           si_axis=si)
    for les in effusions:
        a = _attributes(les.mask, les.crop, affine, si, hu, frame)
        labelled = les.attributes.get("found_by") == "segmenter label"
        if labelled:  # the segmenter split it at the midline and found it in the dependent pleural space
            a["side"] = les.attributes["side"]
        elif a["side"] not in ("left", "right") or a["zone"] == "upper":
            # fluid lies in one hemithorax and gathers low; what straddles the midline or sits at the apex
            # is soft tissue of the neck or mediastinum with fluid-like partial-volume values
            out.meta.setdefault("unreported_candidates", []).append(
                {"kind": les.kind, "centroid_ras": a["centroid_ras"],
                 "volume_ml": les.attributes.get("volume_ml", a["volume_ml"]), "side": a["side"], "zone": a["zone"]})
            continue
        a["volume_ml"] = les.attributes.get("volume_ml", a["volume_ml"])  # partial-volume corrected when searched
        a["fluid_hu"] = les.attributes.get("fluid_hu", a.get("hu_median", a.get("hu_mean")))
        a["lung_contact_fraction"] = les.attributes.get("lung_contact_fraction")
        a["found_by"] = les.attributes.get("found_by", "fluid search")
        les.attributes = a
        les.confidence = round(min(1.0, 0.5 + a["volume_ml"] / 200.0) * (0.7 + 0.3 * (abs(a["fluid_hu"]) < 20)), 3)
        found.append(les)
    for i, les in enumerate(found, start=1):
        a = dict(les.attributes)
        record = {"id": i, "kind": les.kind, "confidence": les.confidence, "source": "image intensity", **a}
        record["sentence"] = lesion_sentence(record)
        out.lesions.append(record)
        out.lesion_masks.append((les.crop, les.mask))


def _inside(lesion, mass) -> bool:
    """Whether the centre voxel of ``lesion``'s mask lies in ``mass``'s mask."""
    centre = np.argwhere(lesion.mask).mean(axis=0).round().astype(int) + [s.start for s in lesion.crop]
    local = centre - [s.start for s in mass.crop]
    if (local < 0).any() or (local >= mass.mask.shape).any():
        return False
    return bool(mass.mask[tuple(local)])


def _told_apart(lesion) -> str:
    """How a nodule or mass was told from consolidation (the air-bronchogram test of lesions.assess_consolidation)."""
    a = lesion.attributes
    if "air_bronchograms" not in a:
        return "too small to hold an air bronchogram"
    if lesion.kind == "consolidation":
        return (f"{a['air_bronchograms']} air bronchogram(s) inside ({a['air_bronchogram_length_mm']:.0f} mm of "
                "aerated bronchus)")
    return "no air bronchogram inside"
