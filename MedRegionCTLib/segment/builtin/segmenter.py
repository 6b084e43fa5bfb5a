"""The built-in segmenter: classical image analysis only (no weights, CPU), the library's default.

Steps (coarse ~2 mm grid for the decisions, full resolution for the edges): body and table, trachea and main
bronchi, lungs, contrast blood pool, bones, diaphragm, mediastinum (aorta, oesophagus, heart), thyroid, breasts,
abdominal cavity, lobes; then painting (:mod:`.painting`) and the way back to the input grid."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...data import load_json
from ...progress import ProgressCallback, Steps
from ...volume import LabelMap, Volume
from .airways import Airways, find_airways
from .body import Body, find_body, split_arms
from .bones import Skeleton, canal_spine_axis, column_mask, find_bone, spinal_canal, spine_axis, split_skeleton
from .diaphragm import below, diaphragm_height
from .grid import Grid
from .lobes import LobeModel, bases_model, fissure_model, zone_model
from .lungs import Lungs, find_lungs
from .mediastinum import Mediastinum, bridge_under_heart, contrast_blood, find_mediastinum, heart_footprint, redo_heart
from .neck_and_wall import abdominal_cavity, find_breasts, find_thyroid
from .painting import Painter, paint_airways_and_bones, paint_body, paint_lungs

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
    notes: list = field(default_factory=list)


class BuiltinSegmenter:
    """Segment a chest CT into TotalSegmentator classes with thresholds, connected components, morphology,
    distance transforms and region growing (see the package docstring for the classes)."""

    name = "builtin"

    def __init__(self, coarse_mm: float | None = None):
        self.params = load_json("builtin_segmenter.json")
        if coarse_mm is not None:
            self.params["coarse_mm"] = float(coarse_mm)

    def segment(self, volume: Volume, progress: ProgressCallback | None = None, cancel=None) -> LabelMap:
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
        else:
            xs = np.flatnonzero(body.trunk.any(axis=(1, 2)))
            midline = (xs[0] + xs[-1]) / 2.0 if xs.size else grid.coarse_shape[0] / 2.0

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
                axis = spine_axis(grid, find_bone(grid, body.trunk, empty, p["bones"]), body.trunk)
            column = column_mask(grid, axis, p["bones"]) if np.isfinite(canal[:, 0]).any() else None
            blood = contrast_blood(grid, lungs.both, body.trunk, p["mediastinum"], axis, column)
        bone = find_bone(grid, body.trunk | body.extremities, blood, p["bones"], canal)
        skeleton = split_skeleton(grid, bone, body.trunk, lungs.both, body.extremities, air.carina, p["bones"],
                                  axis=axis)
        notes += skeleton.notes

        steps.advance("diaphragm and mediastinum")
        height = diaphragm_height(grid, lungs.both, body.trunk, p["diaphragm"])
        under = below(height, grid.coarse_shape)
        med = Mediastinum(empty, empty, empty, empty)
        if chest:
            med = find_mediastinum(grid, lungs.both, body.trunk, skeleton.bone, skeleton.spine_axis, air.carina,
                                   air.tree, under, p["mediastinum"], blood)
        if med.heart.any() and height is not None:
            # the lung over the heart rests on the heart: fit the diaphragm again without those floors
            foot, sheet = heart_footprint(grid, med.heart, lungs.both, p["mediastinum"])
            height = diaphragm_height(grid, lungs.both, body.trunk, p["diaphragm"], exclude_columns=foot,
                                      fat_pad_columns=sheet)
            if height is not None:
                height = bridge_under_heart(height, foot)
            under = below(height, grid.coarse_shape)
            med = redo_heart(grid, med, lungs.both, body.trunk, skeleton.bone, skeleton.spine_axis, air.carina,
                             air.tree, under, p["mediastinum"])
        notes += med.notes
        thyroid = find_thyroid(grid, air.trachea, lungs.both, body.trunk, skeleton.bone, med.contrast, p["thyroid"])
        breasts = find_breasts(grid, body.trunk, lungs.both, p["breast"]) if chest else empty
        abdomen = empty
        if height is not None:
            abdomen = abdominal_cavity(grid, body.trunk, under, skeleton.bone, skeleton.spine_axis, p["abdomen"])
        lobes = bases_model()
        if chest:
            lobes = zone_model(grid, lungs.left, lungs.right, air.carina)
            lobes = fissure_model(grid, lungs.left, lungs.right, lobes, p["fissures"])
        return Found(body, air, lungs, chest, blood, skeleton, med, thyroid, breasts, abdomen, lobes, notes)
