"""Layer `phantom`: a synthetic anthropomorphic chest CT with exact labels and planted findings.

>>> ph = make_phantom("tiny", seed=1, findings="nodule:RUL:8:solid,pleural_effusion:right:300")
>>> ph.volume            # Volume, int16 HU, LPS-oriented affine
>>> ph.labels            # LabelMap with TotalSegmentator class names and indices
>>> ph.findings_map      # LabelMap: finding id per voxel (truth masks of the planted findings)
>>> ph.truth["findings"] # kind, side, lobe, diameter, volume ... of each planted finding

The same seed, preset and findings always give the same CT, voxel for voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import load_json, totalsegmentator_class_indices
from ..errors import InputError
from ..progress import Steps
from ..volume import LabelMap, Volume
from .chest import AnatomyOptions, build_anatomy, section_diameters, tube_record
from .findings import (
    KINDS,
    LOBES,
    PRESET_SPECS,
    FindingSpec,
    anatomy_options_for,
    parse_findings,
    plant_findings,
)
from .render import Grid, add_noise, integrate_volumes, render

__all__ = ["KINDS", "LOBES", "PRESETS", "PRESET_SPECS", "FindingSpec", "Phantom", "make_phantom", "parse_findings",
           "section_diameters"]

# Field of view: 384 mm wide, from the upper abdomen (z = -215 mm) to the lower neck (z = +160 mm),
# centred on the midline; z = 0 is the carina.
PRESETS = {
    "tiny": {"shape": (96, 90, 94), "spacing": (4.0, 4.0, 4.0)},
    "small": {"shape": (192, 180, 150), "spacing": (2.0, 2.0, 2.5)},
    "standard": {"shape": (512, 512, 300), "spacing": (0.75, 0.75, 1.25)},
}
_FOV_CENTER = (0.0, -2.0, -27.5)
TRUTH_VERSION = 1
_TRUTH_CACHE: dict = {}


@dataclass(eq=False)
class Phantom:
    volume: Volume
    labels: LabelMap
    findings_map: LabelMap
    truth: dict


def phantom_grid(preset: str) -> Grid:
    if preset not in PRESETS:
        raise InputError(f"unknown phantom preset '{preset}'; use one of {', '.join(PRESETS)}.")
    shape, spacing = PRESETS[preset]["shape"], PRESETS[preset]["spacing"]
    # LPS voxel order (i -> patient left, j -> posterior, k -> superior), as most DICOM-derived files
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    half = (np.asarray(shape) - 1) / 2.0 * np.asarray(spacing)
    affine[:3, 3] = np.asarray(_FOV_CENTER) + np.array([half[0], half[1], -half[2]])
    return Grid(shape, affine)


def _side_of(name: str) -> str:
    if name.endswith("_left") or "_left_" in name:
        return "left"
    if name.endswith("_right") or "_right_" in name:
        return "right"
    return "midline"


def make_phantom(preset: str = "standard", seed: int = 0, findings="default", contrast: bool = False,
                 arms: str = "up", breasts: bool = False, progress=None, cancel=None,
                 truth_points: int = 2**17) -> Phantom:
    """Build the phantom CT, its exact label map, the findings map and the truth record."""
    if arms not in ("up", "down"):
        raise InputError(f"arms must be 'up' or 'down', not '{arms}'.")
    grid = phantom_grid(preset)
    tissues = load_json("phantom_tissues.json")
    hu = tissues["hu"]
    specs = parse_findings(findings)
    steps = Steps(progress, total=4, cancel=cancel, what="phantom generation")
    rng = np.random.default_rng(seed)
    opts = anatomy_options_for(specs, AnatomyOptions(contrast=contrast, arms=arms, breasts=breasts))
    anatomy = build_anatomy(rng, hu, opts)
    records = plant_findings(anatomy, specs, rng, hu)
    steps.advance("anatomy built")

    label_index = totalsegmentator_class_indices()
    structures = anatomy.structures
    image, labels, findings_arr = render(
        structures, grid, label_index, cancel=cancel,
        progress=lambda f, m: steps.report(f, m))
    steps.advance("adding noise")
    tex_rng = np.random.default_rng([seed, 1])
    _add_lung_texture(image, labels, anatomy.facts, label_index, tissues["lung_texture_sd_hu"], tex_rng)
    add_noise(image, tissues["noise_sd_hu"][preset], tissues["noise_correlation_voxels"], tex_rng)
    np.clip(image, -1024, 3071, out=image)
    ct = np.rint(image).astype(np.int16)
    del image
    steps.advance("integrating true volumes")

    # Every preset shares one field of view, so the true volumes depend only on what was built.
    key = (int(seed), repr(specs), contrast, arms, breasts, truth_points)
    if key not in _TRUTH_CACHE:
        _TRUTH_CACHE[key] = integrate_volumes(structures, label_index, grid, n_points=truth_points, seed=seed,
                                              cancel=cancel)
        while len(_TRUTH_CACHE) > 32:
            _TRUTH_CACHE.pop(next(iter(_TRUTH_CACHE)))
    volumes, finding_volumes = _TRUTH_CACHE[key]
    present = {int(i) for i in np.unique(labels) if i}
    names = {i: n for n, i in label_index.items() if i in present}
    counts = np.bincount(labels.ravel(), minlength=max(present | {0}) + 1)
    structures_truth = {}
    for index, name in sorted(names.items()):
        structures_truth[name] = {
            "index": index,
            "volume_ml": round(volumes.get(name, 0.0), 3),
            "label_map_volume_ml": round(float(counts[index]) * grid.voxel_ml, 3),
            "side": _side_of(name),
        }
    for rec in records:
        if rec["id"] in finding_volumes:
            rec["volume_ml"] = round(finding_volumes[rec["id"]], 3)
        if rec["kind"] == "emphysema":
            lung_ml = sum(v for n, v in volumes.items() if n.startswith("lung_") and "lobe" in n)
            rec["percent_of_lungs"] = round(100.0 * rec["volume_ml"] / lung_ml, 2)
    body_names = [n for n in names.values() if n not in ("body_extremities",) and not n.startswith("humerus")]
    heart = anatomy.shapes["heart"]
    thorax_width = 2.0 * float(anatomy.shapes["cavity"].radii[0])
    measures = dict(anatomy.facts)
    measures.pop("right_lobes", None)
    measures.pop("left_lobes", None)
    measures.update(
        heart_volume_ml=round(volumes.get("heart", 0.0), 2),
        heart_transverse_width_mm=round(heart.extent_along(0), 2),
        thorax_inner_width_mm=round(thorax_width, 2),
        cardiothoracic_ratio=round(heart.extent_along(0) / thorax_width, 3),
        lung_volume_right_ml=round(sum(volumes.get(n, 0.0) for n in anatomy.facts["right_lobes"]), 2),
        lung_volume_left_ml=round(sum(volumes.get(n, 0.0) for n in anatomy.facts["left_lobes"]), 2),
    )
    truth = {
        "format": "medregionct-phantom-truth",
        "version": TRUTH_VERSION,
        "preset": preset,
        "seed": int(seed),
        "findings_spec": findings if isinstance(findings, str) else None,
        "options": {"contrast": contrast, "arms": arms, "breasts": breasts},
        "grid": {"shape": list(grid.shape), "spacing_mm": [float(s) for s in grid.spacing],
                 "affine": grid.affine.round(6).tolist(), "orientation": "LPS"},
        "volume_method": f"true volumes integrated from the analytic shapes with {truth_points} scrambled Sobol "
                         "points per class inside the field of view; label_map_volume_ml counts voxels",
        "body_volume_ml": round(sum(volumes.get(n, 0.0) for n in body_names), 2),
        "structures": structures_truth,
        "findings": records,
        "measures": measures,
        # the vessels' analytic tubes: phantom.section_diameters(truth["vessels"][name], point, normal) gives the
        # true calibre on any measuring plane
        "vessels": {name: tube_record(t) for name, t in anatomy.tubes.items()},
    }
    meta = {"format": "phantom", "source": f"phantom:{preset}:seed={seed}"}
    volume = Volume(ct, grid.affine.copy(), meta)
    labelmap = LabelMap(labels, grid.affine.copy(), names, {"source": "phantom truth"})
    finding_names = {r["id"]: f"{r['kind']}_{r['id']}" for r in records if r.get("volume_ml")}
    fmap = LabelMap(findings_arr, grid.affine.copy(), finding_names, {"source": "phantom truth"})
    steps.advance("done")
    return Phantom(volume, labelmap, fmap, truth)


def _add_lung_texture(image, labels, facts, label_index, sd, rng) -> None:
    """Low-frequency parenchymal variation, so lung is not a flat -860 HU."""
    from scipy import ndimage

    lobe_ids = [label_index[n] for n in facts["right_lobes"] + facts["left_lobes"]]
    coarse = rng.standard_normal(tuple(max(s // 6, 2) for s in labels.shape), dtype=np.float32)
    coarse = ndimage.gaussian_filter(coarse, 1.0)
    coarse *= sd / max(float(coarse.std()), 1e-6)
    field = ndimage.zoom(coarse, [s / t for s, t in zip(labels.shape, coarse.shape)], order=1, grid_mode=True,
                         mode="nearest")
    lung = np.isin(labels, lobe_ids) & (image < -700)
    image[lung] += field[lung]
