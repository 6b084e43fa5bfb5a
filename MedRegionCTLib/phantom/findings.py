"""Planted findings: the spec language, placement inside the anatomy, and their truth records.

Spec: comma-separated items, each ``kind[:arg[:arg...]]``::

    nodule:<lobe>:<diameter mm>[:solid|subsolid|part-solid]   e.g. nodule:RUL:8:solid
    mass:<lobe>:<diameter mm>[:<where>][:spiculated]          e.g. mass:LUL:35, mass:RLL:60:diaphragm:spiculated
    pleural_effusion:<left|right>:<volume mL>[:atelectasis]   e.g. pleural_effusion:right:300:atelectasis
    pericardial_effusion[:<thickness mm>]
    cardiomegaly[:<linear scale of the heart>]
    dilated_aorta[:<ascending diameter mm>]
    emphysema[:upper|lower|diffuse]
    consolidation:<lobe>

Lobes: RUL, RML, RLL, LUL, LLL. ``none`` plants nothing; ``default`` and ``all`` are the sets below.

A mass is lobulated; ``<where>`` puts it against what real tumours touch -- ``mediastinum``, ``hilum``,
``chest_wall`` or ``diaphragm`` -- with the part beyond the lung cut off flat against the pleura (default: within
aerated lung); ``spiculated`` adds spicules. ``atelectasis`` gives an effusion the band of compressed, airless
lung that lies against it (passive atelectasis).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .chest import Anatomy, AnatomyOptions
from .shapes import Difference, HalfSpace, Intersection, Offset, Sphere, Tube, Union

LOBES = {
    "RUL": "lung_upper_lobe_right",
    "RML": "lung_middle_lobe_right",
    "RLL": "lung_lower_lobe_right",
    "LUL": "lung_upper_lobe_left",
    "LLL": "lung_lower_lobe_left",
}
KINDS = ("nodule", "mass", "pleural_effusion", "pericardial_effusion", "cardiomegaly", "dilated_aorta",
         "emphysema", "consolidation")
MASS_PLACES = ("mediastinum", "hilum", "chest_wall", "diaphragm")
# the disease of real chests: masses against the mediastinum, hilum, chest wall and diaphragm, an effusion with
# the collapsed lung beside it
DISEASE_SPEC = ("mass:RLL:55:diaphragm:spiculated,mass:LUL:45:mediastinum,mass:RUL:40:chest_wall:spiculated,"
                "pleural_effusion:left:250:atelectasis")
PRESET_SPECS = {
    "none": "",
    "default": "nodule:RUL:9:solid,nodule:LLL:14:subsolid,mass:LUL:38,pleural_effusion:right:300,"
               "emphysema:upper,dilated_aorta:46",
    "all": "nodule:RUL:8:solid,nodule:RML:12:part-solid,nodule:LLL:15:subsolid,mass:LUL:40,"
           "pleural_effusion:right:350,pericardial_effusion:9,cardiomegaly:1.25,dilated_aorta:47,"
           "emphysema:upper,consolidation:RLL",
    "disease": DISEASE_SPEC,
}
_SYNTAX = ("use kind[:args] items separated by commas, e.g. 'nodule:RUL:8:solid,pleural_effusion:right:300' "
           f"(kinds: {', '.join(KINDS)}; lobes: {', '.join(LOBES)}), or one of: {', '.join(PRESET_SPECS)}")


@dataclass
class FindingSpec:
    kind: str
    lobe: str | None = None
    side: str | None = None
    size: float | None = None  # diameter (nodule, mass, aorta), mL (pleural effusion), mm (pericardial), scale
    subtype: str | None = None
    place: str | None = None  # mass: what it rests against (MASS_PLACES); None: within aerated lung
    spiculated: bool = False
    atelectasis: bool = False  # pleural effusion: with compressive atelectasis of the lung next to it


def _number(token: str, item: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise InputError(f"finding '{item}': '{token}' is not a number; {_SYNTAX}.") from None
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"finding '{item}': size must be a positive number; {_SYNTAX}.")
    return value


def _lobe(token: str, item: str) -> str:
    code = token.upper()
    if code not in LOBES:
        raise InputError(f"finding '{item}': unknown lobe '{token}'; use one of {', '.join(LOBES)}.")
    return LOBES[code]


def parse_findings(spec) -> list[FindingSpec]:
    """Parse a findings spec string (or pass through a list of FindingSpec)."""
    if spec is None:
        return []
    if isinstance(spec, list | tuple):
        return [s if isinstance(s, FindingSpec) else FindingSpec(**s) for s in spec]
    text = str(spec).strip()
    if text.lower() in PRESET_SPECS:
        text = PRESET_SPECS[text.lower()]
    out: list[FindingSpec] = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        kind, *args = item.split(":")
        kind = kind.strip().lower().replace("-", "_")
        if kind not in KINDS:
            raise InputError(f"unknown finding kind '{kind}'; {_SYNTAX}.")
        try:
            if kind in ("nodule", "mass"):
                if len(args) < 2:
                    raise InputError(f"finding '{item}' needs a lobe and a diameter; {_SYNTAX}.")
                lobe, size = _lobe(args[0], item), _number(args[1], item)
                extra = [a.lower() for a in args[2:]]
                subtype = next((a for a in extra if a in ("solid", "subsolid", "part-solid")), "solid")
                place = next((a for a in extra if a in MASS_PLACES), None)
                known = ("solid", "subsolid", "part-solid", "spiculated", *MASS_PLACES)
                unknown = [a for a in extra if a not in known]
                if unknown:
                    raise InputError(f"finding '{item}': unknown option '{unknown[0]}'; a nodule type (solid, "
                                     f"subsolid, part-solid), a place ({', '.join(MASS_PLACES)}) or spiculated.")
                if kind == "nodule" and (place or "spiculated" in extra):
                    raise InputError(f"finding '{item}': places and spicules are for masses (30 mm or more).")
                if kind == "mass" and size < 30:
                    raise InputError(f"finding '{item}': a mass is 30 mm or more; use nodule for smaller lesions.")
                if kind == "nodule" and not 3 <= size < 30:
                    raise InputError(f"finding '{item}': nodule diameter must be 3 to 29 mm; use mass above 30 mm.")
                out.append(FindingSpec(kind, lobe=lobe, size=size, subtype=subtype,
                                       side="right" if lobe.endswith("right") else "left", place=place,
                                       spiculated="spiculated" in extra))
            elif kind == "pleural_effusion":
                if len(args) < 2 or args[0].lower() not in ("left", "right"):
                    raise InputError(f"finding '{item}' needs a side (left/right) and a volume in mL; {_SYNTAX}.")
                if len(args) > 2 and args[2].lower() != "atelectasis":
                    raise InputError(f"finding '{item}': the only effusion option is 'atelectasis'.")
                out.append(FindingSpec(kind, side=args[0].lower(), size=_number(args[1], item),
                                       atelectasis=len(args) > 2))
            elif kind == "consolidation":
                if not args:
                    raise InputError(f"finding '{item}' needs a lobe; {_SYNTAX}.")
                lobe = _lobe(args[0], item)
                out.append(FindingSpec(kind, lobe=lobe, side="right" if lobe.endswith("right") else "left"))
            elif kind == "emphysema":
                where = args[0].lower() if args else "upper"
                if where not in ("upper", "lower", "diffuse"):
                    raise InputError(f"finding '{item}': emphysema distribution must be upper, lower or diffuse.")
                out.append(FindingSpec(kind, subtype=where))
            else:
                defaults = {"pericardial_effusion": 10.0, "cardiomegaly": 1.25, "dilated_aorta": 46.0}
                out.append(FindingSpec(kind, size=_number(args[0], item) if args else defaults[kind]))
        except InputError:
            raise
    return out


def anatomy_options_for(specs: list[FindingSpec], base: AnatomyOptions) -> AnatomyOptions:
    """Findings that change normal anatomy (heart size, aorta calibre, pericardial fluid)."""
    opts = AnatomyOptions(**vars(base))
    for fid, spec in enumerate(specs, start=1):
        if spec.kind == "cardiomegaly":
            if not 1.0 < spec.size <= 1.6:
                raise InputError("cardiomegaly scale must be above 1.0 and at most 1.6 (linear heart enlargement).")
            opts.heart_scale = spec.size
        elif spec.kind == "dilated_aorta":
            if not 38 <= spec.size <= 70:
                raise InputError("dilated_aorta diameter must be 38 to 70 mm (normal ascending aorta is ~32 mm).")
            opts.ascending_aorta_diameter_mm = spec.size
        elif spec.kind == "pericardial_effusion":
            if not 2 <= spec.size <= 40:
                raise InputError("pericardial_effusion thickness must be 2 to 40 mm.")
            opts.pericardial_effusion_mm = spec.size
            opts.pericardial_effusion_finding = fid
    return opts


def _place(rng, shape, clearance, avoid, tries=20000) -> np.ndarray:
    """A random point at least ``clearance`` mm inside ``shape`` and clear of the ``avoid`` shapes."""
    lo, hi = shape.bbox()
    pts = rng.uniform(lo, hi, size=(tries, 3))
    d = shape.sdf(pts[:, 0], pts[:, 1], pts[:, 2])
    ok = d < -clearance
    for other, margin in avoid:
        ok &= other.sdf(pts[:, 0], pts[:, 1], pts[:, 2]) > margin
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        raise InputError("cannot place the requested finding: not enough room in that lobe; "
                         "use a smaller size or another lobe.")
    return pts[idx[0]]


def _solve_effusion(lung, target_ml: float) -> tuple[HalfSpace, float]:
    """A dependent (posterior-inferior) layer of the pleural space with the requested volume."""
    from scipy.stats import qmc

    normal = np.array([0.0, np.cos(np.radians(25)), np.sin(np.radians(25))])
    lo, hi = lung.bbox()
    pts = qmc.scale(qmc.Sobol(3, seed=7).random(2**15), lo, hi)
    inside = lung.sdf(pts[:, 0], pts[:, 1], pts[:, 2]) < 0
    proj = pts[inside] @ normal
    box_ml = float(np.prod(hi - lo)) / 1000.0
    per_point = box_ml / len(pts)
    total = inside.sum() * per_point
    if target_ml >= 0.8 * total:
        raise InputError(f"pleural effusion of {target_ml:g} mL does not fit a {total:.0f} mL hemithorax; "
                         "use a smaller volume.")
    offset = float(np.quantile(proj, target_ml / total))
    return HalfSpace(normal, offset, limits=lung.bbox()), offset


def plant_findings(an: Anatomy, specs: list[FindingSpec], rng: np.random.Generator, hu: dict) -> list[dict]:
    """Add the findings' structures to ``an`` and return their truth records (volumes filled in later)."""
    records: list[dict] = []
    placed: list[tuple] = []  # (shape, margin) that later lesions keep clear of
    lung_of = {"right": an.shapes["lung_right"], "left": an.shapes["lung_left"]}
    airway_clear = [(an.shapes["bronchi"], 6.0)]
    order = sorted(enumerate(specs, start=1),
                   key=lambda t: ["pleural_effusion", "consolidation", "mass", "nodule", "emphysema"].index(t[1].kind)
                   if t[1].kind in ("pleural_effusion", "consolidation", "mass", "nodule", "emphysema") else -1)
    for fid, spec in order:
        rec: dict = {"id": fid, "kind": spec.kind}
        if spec.kind == "pleural_effusion":
            lung = lung_of[spec.side]
            half, _ = _solve_effusion(lung, spec.size)
            shape = Intersection(lung, half)
            an.add(shape, hu["fluid"], "pleural_effusion", name="pleural effusion", finding=fid)
            placed.append((shape, 8.0))
            rec.update(region="pleura", side=spec.side, requested_volume_ml=spec.size, mean_hu=hu["fluid"],
                       location="dependent (posterior-inferior) pleural space")
            if spec.atelectasis:  # the lung pressed against the fluid is airless: still lung, at soft-tissue HU
                band = Intersection(lung, Offset(half, ATELECTASIS_MM), Difference(lung, half))
                lobes = {n for n in LOBES.values() if n.endswith(spec.side)}
                an.add(band, hu["atelectasis"], name="compressive atelectasis", only_within=lobes)
                placed.append((band, 6.0))
                rec.update(atelectasis_thickness_mm=ATELECTASIS_MM, atelectasis_hu=hu["atelectasis"])
        elif spec.kind == "consolidation":
            lobe = an.shapes[spec.lobe]
            center = _place(rng, lobe, 22.0, placed + airway_clear)
            blob = Intersection(lobe, Union(*[Sphere(center + rng.normal(0, 7, 3), r) for r in (20, 16, 14)]))
            an.add(blob, hu["consolidation"], name="consolidation", finding=fid, only_within={spec.lobe})
            an.add(Tube([center + (0, 0, 14), center, center + rng.normal(0, 8, 3)], 1.8), hu["air"],
                   name="air bronchogram", only_within={spec.lobe})
            placed.append((blob, 10.0))
            rec.update(region="lung", side=spec.side, lobe=spec.lobe, center_ras=[round(float(v), 1) for v in center],
                       mean_hu=hu["consolidation"])
        elif spec.kind in ("nodule", "mass"):
            lobe = an.shapes[spec.lobe]
            radius = spec.size / 2.0
            if spec.place:
                center = _place_against(rng, an, lobe, lung_of[spec.side], spec.place, radius, placed)
            else:
                center = _place(rng, lobe, radius + 6.0, placed + airway_clear)
            if spec.kind == "mass":  # lobulated: a core and three lobules; two opposite ones set the diameter
                r1 = 0.22 * spec.size
                u = rng.normal(size=3)
                u /= np.linalg.norm(u)
                v = np.cross(u, rng.normal(size=3))
                v /= np.linalg.norm(v)
                spheres = [Sphere(center, 0.36 * spec.size),
                           Sphere(center + u * (radius - r1), r1), Sphere(center - u * (radius - r1), r1),
                           Sphere(center + v * (radius - r1) * 0.8, r1 * 0.9)]
                shape = Union(*spheres)
                diameter = max(np.linalg.norm(a.center - b.center) + a.radius + b.radius
                               for a in spheres for b in spheres)
                lesion_hu = hu["soft_tissue_nodule"]
            else:
                shape = Sphere(center, radius)
                diameter = spec.size
                lesion_hu = hu["soft_tissue_nodule"] if spec.subtype == "solid" else hu["ground_glass"]
            if spec.place:  # what lies beyond the lung is cut off flat against the pleura
                shape = Intersection(shape, lung_of[spec.side])
                diameter = _diameter(shape)  # of the mass itself: spicules are not measured
            if spec.spiculated:
                shape = Union(shape, *_spicules(rng, center, radius))
                if spec.place:
                    shape = Intersection(shape, lung_of[spec.side])
            an.add(shape, lesion_hu, "lung_nodules", name=spec.kind, finding=fid)
            if spec.subtype == "part-solid":
                an.add(Sphere(center, radius * 0.45), hu["soft_tissue_nodule"], name="solid component", finding=fid)
            placed.append((shape, 10.0))
            rec.update(region="lung", side=spec.side, lobe=spec.lobe, subtype=spec.subtype if spec.kind == "nodule"
                       else "solid", center_ras=[round(float(v), 1) for v in center],
                       diameter_mm=round(float(diameter), 2), mean_hu=lesion_hu)
            if spec.place:
                rec["touches"] = spec.place.replace("_", " ")
            if spec.spiculated:
                rec["spiculated"] = True  # diameter_mm: the mass without its spicules
            if spec.kind == "nodule":
                rec["exact_volume_ml"] = round(4.0 / 3.0 * np.pi * radius**3 / 1000.0, 4)
        elif spec.kind == "emphysema":
            lobes = {"upper": ["lung_upper_lobe_right", "lung_upper_lobe_left"],
                     "lower": ["lung_lower_lobe_right", "lung_lower_lobe_left"],
                     "diffuse": list(LOBES.values())}[spec.subtype]
            for lobe_name in lobes:
                lobe = an.shapes[lobe_name]
                lo, hi = lobe.bbox()
                probe = rng.uniform(lo, hi, size=(4096, 3))
                lobe_mm3 = float(np.mean(lobe.sdf(*probe.T) < 0)) * float(np.prod(hi - lo))
                target = 0.10 * lobe_mm3  # holes filling ~10% of the lobe (they overlap a little)
                volume = 0.0
                while volume < target:
                    r = rng.uniform(2.5, 7.0)
                    c = _place(rng, lobe, r + 1.0, placed, tries=400)
                    an.add(Sphere(c, r), hu["emphysema"], name="emphysema", finding=fid, only_within={lobe_name})
                    volume += 4.0 / 3.0 * np.pi * r**3
            rec.update(region="lung", side="bilateral", lobes=lobes, distribution=spec.subtype,
                       mean_hu=hu["emphysema"], threshold_hu=-950)
        elif spec.kind == "pericardial_effusion":
            rec.update(region="heart", thickness_mm=spec.size, mean_hu=hu["fluid"])
        elif spec.kind == "cardiomegaly":
            rec.update(region="heart", heart_scale=spec.size)
        elif spec.kind == "dilated_aorta":
            rec.update(region="mediastinum", ascending_aorta_diameter_mm=spec.size)
        records.append(rec)
    return sorted(records, key=lambda r: r["id"])


ATELECTASIS_MM = 12.0  # thickness of the airless lung band against an effusion (passive atelectasis)


def _outward(shape, pts: np.ndarray, h: float = 1.0) -> np.ndarray:
    """Unit outward normals of ``shape`` at ``pts`` (finite differences of its signed distance)."""
    grad = np.stack([(shape.sdf(*(pts + e).T) - shape.sdf(*(pts - e).T)) / (2 * h)
                     for e in np.eye(3) * h], axis=1)
    return grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-9)


def _place_against(rng, an: Anatomy, lobe, lung, place: str, radius: float, avoid, tries: int = 40000) -> np.ndarray:
    """A mass centre in ``lobe`` from which the mass reaches out of the lung through the surface that faces
    ``place``: the centre lies 0.45-0.7 radii inside the lung surface (the mass is cut flat there), and that
    surface faces the mediastinum (medially, in front of the spine), the chest wall (laterally or behind), the
    diaphragm (downwards) or, for the hilum, lies within a radius of the main bronchi."""
    lo, hi = lobe.bbox()
    pts = rng.uniform(lo, hi, size=(tries, 3))
    ok = lobe.sdf(*pts.T) < 0
    d = lung.sdf(*pts.T)
    ok &= (d < -0.45 * radius) & (d > -0.7 * radius)
    for other, margin in avoid:
        ok &= other.sdf(*pts.T) > margin
    pts = pts[ok]
    if len(pts):
        n = _outward(lung, pts)
        medial = -np.sign(pts[:, 0])  # +x is the patient's right: medial points towards x = 0
        if place == "mediastinum":
            keep = n[:, 0] * medial > 0.8
        elif place == "chest_wall":
            keep = (n[:, 0] * -medial > 0.6) | (n[:, 1] < -0.7)
        elif place == "diaphragm":
            keep = n[:, 2] < -0.75
        else:  # hilum: at the lung root, against the main bronchi
            keep = (an.shapes["bronchi"].sdf(*pts.T) < radius + 4.0) & (n[:, 0] * medial > 0.3)
        pts = pts[keep]
    if not len(pts):
        raise InputError(f"cannot place a {2 * radius:g} mm mass against the {place.replace('_', ' ')} in that lobe; "
                         "use a smaller size, another lobe or another place.")
    return pts[0]


def _spicules(rng, center: np.ndarray, radius: float, count: int = 10) -> list:
    """Thin strands radiating from a mass (spiculation): 1.2 mm thick at the surface, tapering over 6-12 mm."""
    out = []
    for _ in range(count):
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        start = center + u * radius * 0.9
        out.append(Tube([start, start + u * rng.uniform(6.0, 12.0)], [1.2, 0.4]))
    return out


def _diameter(shape, points: int = 2**16) -> float:
    """Largest distance between two points of ``shape`` (quasi-random points inside, their convex hull)."""
    from scipy.spatial import ConvexHull
    from scipy.spatial.distance import pdist
    from scipy.stats import qmc

    lo, hi = shape.bbox()
    pts = qmc.scale(qmc.Sobol(3, seed=11).random(points), lo, hi)
    inside = pts[shape.sdf(*pts.T) < 0]
    hull = inside[ConvexHull(inside).vertices]
    # the sampled hull lies up to one sample spacing inside the surface
    spacing = float(np.prod(np.asarray(hi) - np.asarray(lo)) / points) ** (1 / 3)
    return float(pdist(hull).max()) + spacing
