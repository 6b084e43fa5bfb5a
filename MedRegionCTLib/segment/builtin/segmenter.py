"""The built-in segmenter: classical image analysis only (no weights, CPU), the library's default.

Steps (coarse ~2 mm grid for the decisions, full resolution for the edges): body and table, trachea and main
bronchi, lungs, contrast blood pool, bones, diaphragm, mediastinum (aorta, oesophagus, heart), thyroid, breasts,
abdominal cavity, lobes; then painting (:mod:`.painting`) and the way back to the input grid."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ...data import load_json
from ...progress import ProgressCallback, Steps
from ...threads import run_all
from ...volume import LabelMap, Volume
from . import masks
from .airways import Airways, find_airways
from .body import Body, find_body, split_arms
from .bones import (
    Skeleton,
    canal_spine_axis,
    column_mask,
    find_bone,
    spinal_canal,
    spine_axis,
    spine_midline,
    split_skeleton,
)
from .diaphragm import below, diaphragm_height
from .grid import Grid, bounding_box
from .lobes import LobeModel, bases_model, fissure_model, zone_model
from .lungs import Lungs, find_lungs
from .mediastinum import Mediastinum, bridge_under_heart, contrast_blood, find_mediastinum, heart_footprint, redo_heart
from .neck_and_wall import abdominal_cavity, find_breasts, find_thyroid
from .painting import Painter, paint_airways_and_bones, paint_body, paint_lungs
from .pleural import PleuralSpace, pleural_spaces
from .thin_slab import is_thin_slab, segment_thin_slab

# what the segmenter looks for; the ones it cannot find go to meta["not_found"]
LOOKED_FOR = ["body_trunc", "lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right",
              "lung_middle_lobe_right", "lung_lower_lobe_right", "trachea", "lung_airways", "heart", "aorta",
              "esophagus", "mediastinum", "lung_pleural", "thyroid_gland", "breast", "sternum", "abdominal_cavity"]
BONE_PREFIXES = ("vertebrae", "rib_", "sternum", "clavicula", "scapula", "humerus")


@dataclass
class Found:
    """Everything the coarse steps found (coarse canonical masks), ready to paint."""

    body: Body
    air: Airways
    lungs: Lungs
    chest: bool
    blood: np.ndarray
    skeleton: Skeleton
    med: Mediastinum
    thyroid: np.ndarray
    breasts: np.ndarray
    abdomen: np.ndarray
    lobes: LobeModel
    pleural: PleuralSpace | None = None  # lung fields with their disease, pleural fluid (chest CTs only)
    notes: list = field(default_factory=list)
    dome_mm: dict = field(default_factory=dict)  # side -> height (RAS z, mm) of the fitted diaphragm dome


class BuiltinSegmenter:
    """Segment a chest CT into TotalSegmentator classes with thresholds, connected components, morphology,
    distance transforms and region growing (see the package docstring for the classes)."""

    name = "builtin"

    def __init__(self, coarse_mm: float | None = None):
        self.params = load_json("builtin_segmenter.json")
        if coarse_mm is not None:
            self.params["coarse_mm"] = float(coarse_mm)

    def segment(self, volume: Volume, progress: ProgressCallback | None = None, cancel=None) -> LabelMap:
        if is_thin_slab(volume):  # too few slices for the 3D steps: lungs slice by slice
            return segment_thin_slab(volume, self.params, LOOKED_FOR, progress, cancel)
        steps = Steps(progress, total=10, cancel=cancel, what="built-in segmentation")
        steps.report(0.0, "preparing the working grids")
        grid = Grid(volume, self.params["coarse_mm"])
        found = self._find(grid, steps)
        paint = Painter(grid)
        steps.advance("painting the body and mediastinum")
        paint_body(paint, grid, found, self.params)
        steps.advance("painting the lungs")
        paint_lungs(paint, grid, found, self.params)
        steps.advance("painting airways and bones")
        paint_airways_and_bones(paint, grid, found, self.params)
        steps.advance("finishing")
        array = grid.to_input(paint.labels)
        del paint.labels
        index_to_name = {v: k for k, v in paint.index.items()}
        names = {int(i): index_to_name[int(i)] for i in np.unique(array) if i}
        produced = set(names.values())
        left_ml, right_ml = found.lungs.volume_ml(grid)
        meta = {
            "source": "builtin",
            "segmenter": self.name,
            "lobes": found.lobes.method,
            "not_found": [c for c in LOOKED_FOR if c not in produced],
            "notes": found.notes + found.lobes.notes,
            "chest_ct": bool(found.chest),
            "contrast": bool(found.med.contrast),
            "lung_volume_ml": {"left": round(left_ml, 1), "right": round(right_ml, 1)},
            "vertebral_levels": found.skeleton.levels,
            "bone_classes": sorted(n for n in produced if n.startswith(BONE_PREFIXES)),
            "working_spacing_mm": [round(float(s), 3) for s in grid.coarse_spacing],
        }
        if found.dome_mm:
            meta["diaphragm_dome_mm"] = found.dome_mm
        if found.pleural is not None:
            v = grid.coarse_voxel_ml
            meta["lung_field_ml"] = {s: round(float(found.pleural.field[s].sum() * v), 1) for s in ("left", "right")}
            meta["pleural_fluid_ml"] = {s: round(float(found.pleural.effusion[s].sum() * v), 1)
                                        for s in ("left", "right")}
            meta["pleural_fluid_min_ml"] = float(self.params["pleural_space"]["effusion_side_min_ml"])
        # what an absence of fluid may be stated down to: the size the search was checked to find
        meta["pleural_fluid_absence_floor_ml"] = float(self.params["pleural_space"]["absence_floor_ml"])
        steps.report(1.0, "done")
        return LabelMap(array, volume.affine.copy(), names, meta)

    def _find(self, grid: Grid, steps: Steps) -> Found:
        p = self.params
        notes: list[str] = []
        empty = np.zeros(grid.coarse_shape, bool)

        steps.advance("body")
        body = find_body(grid, p["body"])
        if not body.trunk.any():
            notes.append("no body found: the image holds no tissue denser than air")
        if body.touches_edge:
            notes.append("the body is cut by the field of view (partial field of view)")

        steps.advance("airways")
        air = find_airways(grid, body.trunk, p["airways"])
        central = air.trachea | air.bronchus_left | air.bronchus_right
        if air.carina is not None:
            midline = float(air.carina[0])
        else:  # no carina (a cropped field of view): the spine, in the affine's own patient axes
            midline = spine_midline(grid, body.trunk, p["bones"])
            if midline is None:
                xs = np.flatnonzero(body.trunk.any(axis=(1, 2)))
                midline = (xs[0] + xs[-1]) / 2.0 if xs.size else grid.coarse_shape[0] / 2.0
                notes.append("no carina and no spine found: the sides are split at the middle of the body")

        steps.advance("lungs")
        lungs = find_lungs(grid, body.trunk & ~body.outside_air, central, midline, p["lungs"])
        notes += lungs.notes
        trunk, arms = split_arms(grid, body.trunk, lungs.both, p["body"])
        if arms.any():
            body.trunk, body.extremities = trunk, body.extremities | arms
            notes.append("arms beside the trunk in the field of view (labelled body_extremities)")
        lung_ml = sum(lungs.volume_ml(grid))
        chest = lung_ml >= p["lungs"]["chest_min_ml"]
        if chest:
            notes += air.notes
        else:  # no chest organs are looked for outside a chest: an air tube here is not a trachea
            air = Airways(empty, empty, empty, empty)
            if lung_ml > 0:
                notes.append(f"only {lung_ml:.0f} mL of lung in the field of view (lung bases or apices): "
                             "this does not look like a chest CT")

        steps.advance("bones")
        blood = empty
        # the vertebral column from its canal (shape and place, whatever the blood's density)
        canal = spinal_canal(grid, body.trunk, p["bones"])
        axis = canal_spine_axis(grid, canal, body.trunk, p["bones"]) if np.isfinite(canal[:, 0]).any() else None
        if chest:  # iodine first: contrast-filled blood is as dense as bone marrow
            if axis is None:
                # no canal on any slice (a field of view that leaves the spine out, a cardiac crop): the column
                # is looked for in bone outside the blood pool, as iodinated blood is as dense as bone
                pool = contrast_blood(grid, lungs.both, body.trunk, p["mediastinum"])
                axis = spine_axis(grid, find_bone(grid, body.trunk, pool, p["bones"]), body.trunk)
            column = column_mask(grid, axis, p["bones"]) if np.isfinite(canal[:, 0]).any() else None
            blood = contrast_blood(grid, lungs.both, body.trunk, p["mediastinum"], axis, column)
        bone = find_bone(grid, body.trunk | body.extremities, blood, p["bones"], canal)
        skeleton = split_skeleton(grid, bone, body.trunk, lungs.both, body.extremities, air.carina, p["bones"],
                                  axis=axis, canal=canal)
        notes += skeleton.notes

        steps.advance("diaphragm and mediastinum")
        # first the plain lung floors (a mass on the diaphragm is cut off with the abdomen here, so it cannot
        # join the first heart); the dome is fitted without lifted floors once the heart is known
        plain = dict(p["diaphragm"], dome_outlier_mm=float("inf"))
        height = diaphragm_height(grid, lungs.both, body.trunk, plain)
        under = below(height, grid.coarse_shape)
        med = Mediastinum(empty, empty, empty, empty)
        if chest:
            med = find_mediastinum(grid, lungs.both, body.trunk, skeleton.bone, skeleton.spine_axis, air.carina,
                                   air.tree, under, p["mediastinum"], blood)
        if med.heart.any() and height is not None:
            # the lung over the heart rests on the heart: fit the diaphragm again without those floors (with
            # contrast, nor those over the chambers' blood: a heart cut by the first surface misses some)
            foot, sheet = heart_footprint(grid, med.heart, lungs.both, p["mediastinum"])
            height = diaphragm_height(grid, lungs.both, body.trunk, p["diaphragm"], exclude_columns=foot,
                                      fat_pad_columns=sheet, blood=_chambers(blood, med))
            if height is not None:
                height = bridge_under_heart(height, foot)
            under = below(height, grid.coarse_shape)
            med = redo_heart(grid, med, lungs.both, body.trunk, skeleton.bone, skeleton.spine_axis, air.carina,
                             air.tree, under, p["mediastinum"], fence=_heart_fence(med.heart))
        elif height is not None:
            height = diaphragm_height(grid, lungs.both, body.trunk, p["diaphragm"])
            under = below(height, grid.coarse_shape)
        notes += med.notes
        med.heart = heart_body(grid, med.heart, p["mediastinum"])
        if chest and float(grid.spacing[:2].max()) > p["pleural_space"]["max_in_plane_mm"]:
            notes.append(f"pixels of {float(grid.spacing[:2].max()):.1f} mm: the lung field is the aerated lung "
                         "only (no pleural cavity is rebuilt on so coarse a grid)")
        def pleural_space():
            if not chest or float(grid.spacing[:2].max()) > p["pleural_space"]["max_in_plane_mm"]:
                return None
            organs = med.heart | med.aorta | med.esophagus | ndi.binary_dilation(air.tree, iterations=1)
            return pleural_spaces(grid, lungs, skeleton, body.trunk, organs, under, med.contrast, blood,
                                  p["pleural_space"])

        def the_rest():  # thyroid, breasts, abdomen and lobes: none of them waits for the pleural spaces
            thyroid = find_thyroid(grid, air.trachea, lungs.both, body.trunk, skeleton.bone, med.contrast,
                                   p["thyroid"])
            breasts = find_breasts(grid, body.trunk, lungs.both, p["breast"]) if chest else empty
            abdomen = empty
            if height is not None:
                abdomen = abdominal_cavity(grid, body.trunk, under, skeleton.bone, skeleton.spine_axis,
                                           p["abdomen"])
            lobes = bases_model()
            if chest:
                lobes = zone_model(grid, lungs.left, lungs.right, air.carina)
                lobes = fissure_model(grid, lungs.left, lungs.right, lobes, p["fissures"])
            return thyroid, breasts, abdomen, lobes

        pleural, (thyroid, breasts, abdomen, lobes) = run_all([pleural_space, the_rest])
        if pleural is not None:
            notes += pleural.notes
            taken = pleural.field["left"] | pleural.field["right"] | pleural.effusion["left"] | \
                pleural.effusion["right"]
            med.space &= ~taken
        found = Found(body, air, lungs, chest, blood, skeleton, med, thyroid, breasts, abdomen, lobes, pleural, notes)
        if chest and height is not None:
            # the dome is not read over the heart (nor, with contrast, over its chambers' blood)
            over_heart = med.heart.any(axis=2)
            chambers = _chambers(blood, med)
            if chambers is not None:
                over_heart |= chambers.any(axis=2)
            found.dome_mm = _dome_heights(grid, height, lungs, p["diaphragm"]["dome_rest_mm"], over_heart)
        return found


def _chambers(blood: np.ndarray, med: Mediastinum) -> np.ndarray | None:
    """On a contrast CT, the blood pool joined to the heart found (its chambers' blood); None without contrast."""
    return masks.keep_touching(blood, med.heart, connectivity=3) if med.contrast else None


def _dome_heights(grid: Grid, height: np.ndarray, lungs, rest_mm: float, over_heart=None) -> dict:
    """Per side, the world RAS z (mm) of the diaphragm dome: the highest point of the fitted surface where that
    lung rests on it (its floor within ``rest_mm`` of the surface) outside the medial third of the lung's width.
    Medially the lung rests on the heart, the aorta and the crura (contrast-filled blood counts as an organ
    under the floor), and over the heart the surface is only carried across: neither says where the dome is;
    nor is it read over ``over_heart`` (the heart's columns and, with contrast, its chambers' blood:
    realct_pathology/lung1016's left dome was read 39 mm above the right over the heart once the lung lying
    on the chambers no longer made floors). (Its median over the footprint above the lowest quarter would mix in
    the recesses.)"""
    feet = {side: getattr(lungs, side).any(axis=2) for side in ("left", "right")}
    centre_x = {side: np.nonzero(foot)[0].mean() for side, foot in feet.items() if foot.sum() >= 20}
    out = {}
    for side, foot in feet.items():
        if side not in centre_x:
            continue
        lung = getattr(lungs, side)
        floor = np.argmax(lung, axis=2)
        part = foot & (np.abs(floor - height) <= rest_mm / grid.coarse_spacing[2])
        if over_heart is not None:
            part &= ~over_heart
        other = [x for s, x in centre_x.items() if s != side]
        if other:
            xs = np.nonzero(foot)[0]
            lo, hi = xs.min(), xs.max()
            third = (hi - lo) / 3.0
            column_x = np.arange(foot.shape[0])[:, None]
            medial = column_x > hi - third if other[0] > centre_x[side] else column_x < lo + third
            part &= ~medial
        if part.sum() >= 20:
            foot = part
        k = float(np.percentile(height[foot], 90))
        centre = np.argwhere(foot).mean(axis=0)
        # canonical grid: z index grows superiorly; coarse slice k lies at fine index k * factor
        world = grid.affine @ np.array([centre[0] * grid.factors[0], centre[1] * grid.factors[1],
                                        (k + 0.5) * grid.factors[2] - 0.5, 1.0])
        out[side] = round(float(world[2]), 1)
    return out


def heart_body(grid: Grid, heart: np.ndarray, params: dict) -> np.ndarray:
    """The heart without a mass it swallowed: the heart is one compact body about 10 cm across; a tumour at the
    hilum joins it through the narrow roots of the great vessels. An opening with a ball of ``heart_body_mm``
    (on distance transforms) parts them; the largest piece is the heart, and its rim within ``heart_rim_mm``
    (atrial appendage, vessel roots, the apex) is given back."""
    box = bounding_box(heart, pad=2)
    if box is None:
        return heart
    sub = heart[box]
    sp = grid.coarse_spacing
    r = params["heart_body_mm"]
    core = ndi.distance_transform_edt(sub, sampling=sp) >= r
    if not core.any():
        return heart
    body = ndi.distance_transform_edt(~core, sampling=sp) <= r
    body = masks.largest_component(body & sub)
    keep = masks.keep_touching(sub & (ndi.distance_transform_edt(~body, sampling=sp) <= params["heart_rim_mm"]), body)
    # only a large piece is something else (a mass); the apex, an appendage or a vessel root stays heart
    rest, n = masks.label(sub & ~keep)
    if n:
        small = masks.component_sizes(rest, n) * grid.coarse_voxel_ml < params["heart_release_min_ml"]
        small[0] = False
        keep |= small[rest]
    out = np.zeros(heart.shape, bool)
    out[box] = keep
    return out


def _heart_fence(heart: np.ndarray) -> np.ndarray:
    """Where a redone heart may not go: to the patient's right of the first heart's centre, outside its footprint
    grown by 10 mm. The heart reaches down to the refitted diaphragm, but a mass in the right lower lobe that
    touches it does not become heart; to the left (the apex) it may grow."""
    if not heart.any():
        return np.zeros(heart.shape, bool)
    foot = ndi.binary_dilation(heart.any(axis=2), iterations=5)
    centre_x = float(np.argwhere(heart.any(axis=2))[:, 0].mean())
    foot |= np.arange(heart.shape[0])[:, None] < centre_x  # canonical x grows to the patient's right
    return np.broadcast_to(~foot[:, :, None], heart.shape)
