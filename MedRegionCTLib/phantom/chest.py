"""The phantom's normal anatomy as an ordered list of shapes (painter's order: later structures win).

Coordinates are patient RAS millimetres: +x towards the patient's right, +y anterior, +z superior, with the
origin on the midline at the level of the carina. Sizes follow typical adult values (lung height ~28 cm,
heart ~650 mL, ascending aorta 32 mm, pulmonary trunk 26 mm, trachea 20 mm).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

from .shapes import (
    Box,
    Difference,
    Ellipsoid,
    HalfSpace,
    Intersection,
    Offset,
    Shape,
    Shell,
    SuperEllipticCylinder,
    Tube,
    Union,
    rotation_matrix,
)


@dataclass
class Structure:
    """One painted shape.

    ``label`` is a TotalSegmentator class name, or None for intensity-only detail; ``hu`` None paints the
    label only. ``only_within`` restricts the painting to voxels whose current label is in that set (how
    lobes, vessels and fissures stay inside the lungs without re-evaluating the lung shape).
    """

    shape: Shape
    hu: float | None
    label: str | None = None
    finding: int | None = None  # id of the planted finding this shape belongs to
    name: str = ""
    only_within: frozenset | None = None


@dataclass
class AnatomyOptions:
    contrast: bool = False
    arms: str = "up"  # "up": out of the field of view; "down": at the sides (partly cut by the field of view)
    breasts: bool = False
    heart_scale: float = 1.0  # cardiomegaly > 1
    ascending_aorta_diameter_mm: float = 32.0
    aortic_wall_mm: float = 2.0  # an adult aorta's wall is about 2 mm thick; seen only with iodine in the lumen
    pericardial_effusion_mm: float = 0.0
    pericardial_effusion_finding: int | None = None


@dataclass
class Anatomy:
    """The structures plus the named shapes findings and truth need."""

    structures: list[Structure] = field(default_factory=list)
    shapes: dict[str, Shape] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)
    tubes: dict = field(default_factory=dict)  # vessel name -> Tube or list of Tubes (the truth's calibres)

    def add(self, shape: Shape, hu: float | None, label: str | None = None, name: str = "", finding=None,
            only_within=None) -> Structure:
        s = Structure(shape, None if hu is None else float(hu), label, finding, name or (label or ""),
                      None if only_within is None else frozenset(only_within))
        self.structures.append(s)
        return s


VERTEBRA_PITCH_MM = 24.0


def vertebra_center_z(name: str) -> float:
    """Centre height of a vertebral body: the T4/T5 disc sits at the carina (z = 0)."""
    region, number = name[0], int(name[1:])
    order = {"C": number - 8, "T": number - 1, "L": number + 11}[region]  # T1 -> 0, C7 -> -1, L1 -> 12
    return 12.0 + (3 - order) * VERTEBRA_PITCH_MM


def build_anatomy(rng: np.random.Generator, hu: dict, opts: AnatomyOptions) -> Anatomy:
    an = Anatomy()
    blood = hu["blood_contrast"] if opts.contrast else hu["blood"]
    myocardium = hu["myocardium_contrast"] if opts.contrast else hu["myocardium"]
    jitter = 1.0 + rng.uniform(-0.03, 0.03, size=3)  # per-subject body habitus (lateral, AP, height)

    def j(p):  # scale a point by the subject's habitus, about the carina
        return (p[0] * jitter[0], p[1] * jitter[1], p[2] * jitter[2])

    # --- body wall ------------------------------------------------------------------------------
    torso = SuperEllipticCylinder((0, -10), 170 * jitter[0], 135 * jitter[1], -260, 135 * jitter[2], n=2.5,
                                  a_top=168 * jitter[0], b_top=112 * jitter[1])
    neck = SuperEllipticCylinder((0, -18), 60, 58, 100, 400, n=2.2)
    cavity = Ellipsoid(j((0, -8, -90)), (145 * jitter[0], 100 * jitter[1], 230 * jitter[2]))
    body_parts = [torso, neck]
    breasts = []
    if opts.breasts:
        for side in (1, -1):
            b = Intersection(Ellipsoid(j((85 * side, 92, -55)), (62, 52, 58)),
                             HalfSpace((0, -1, 0), -75))
            breasts.append(b)
        body_parts += breasts
    body = Union(*body_parts)
    an.shapes.update(body=body, torso=torso, cavity=cavity)

    # scanner table under the patient: foam core between two carbon plates
    table_top = -150 * jitter[1] - 2
    an.add(Box((-260, table_top - 14, -400), (260, table_top, 400)), hu["table_foam"], name="table foam")
    an.add(Box((-260, table_top - 2, -400), (260, table_top, 400)), hu["table"], name="table plate")
    an.add(Box((-260, table_top - 16, -400), (260, table_top - 14, 400)), hu["table"], name="table plate")

    an.add(body, hu["fat"], "body_trunc")
    for b in breasts:
        an.add(b, hu["breast"], "breast")
        an.add(Intersection(Offset(b, -14), Ellipsoid(b.shapes[0].center - (0, 8, 0), (40, 30, 38))),
               hu["breast_gland"], name="glandular tissue")
    an.add(Difference(Offset(torso, -14), Offset(torso, -40)), hu["muscle"], name="chest wall muscle")
    an.add(Offset(neck, -8), hu["muscle"], name="neck muscle")
    an.add(cavity, hu["mediastinal_fat"], name="inner fat")
    for side, name in ((1, "autochthon_right"), (-1, "autochthon_left")):
        an.add(SuperEllipticCylinder((28 * side, -118 * jitter[1]), 22, 17, -260, 120), hu["muscle"], name)

    if opts.arms == "down":
        for side, suffix in ((1, "right"), (-1, "left")):
            # beside the torso with a thin gap; the field of view cuts their lateral part, as in real scans
            arm = SuperEllipticCylinder((211 * side * jitter[0], -20), 36, 42, -260, 150)
            an.add(Difference(arm, torso), hu["fat"], "body_extremities")
            an.add(Difference(Offset(arm, -6), torso), hu["muscle"], name="arm muscle")
            an.add(Tube([(203 * side * jitter[0], -22, 150), (205 * side * jitter[0], -25, -200)], 10),
                   hu["cortical_bone"], f"humerus_{suffix}")

    # --- diaphragm and upper abdomen --------------------------------------------------------------
    dome_r = Ellipsoid(j((65, -5, -235)), (115, 115, 100))
    dome_l = Ellipsoid(j((-65, -5, -245)), (110, 110, 100))
    abdomen = Intersection(Union(dome_r, dome_l), cavity)
    an.shapes.update(dome_right=dome_r, dome_left=dome_l, abdomen=abdomen)
    liver = Intersection(Offset(dome_r, -3), Ellipsoid(j((45, 0, -215)), (120, 100, 85)), cavity)
    an.add(liver, hu["liver_contrast"] if opts.contrast else hu["liver"], "liver")
    spleen = Intersection(Offset(dome_l, -3), Ellipsoid(j((-95, -55, -178)), (24, 46, 50),
                                                        rotation_matrix(z_deg=-30)))
    an.add(spleen, hu["spleen_contrast"] if opts.contrast else hu["spleen"], "spleen")
    stomach = Intersection(Offset(dome_l, -3), Ellipsoid(j((-48, 22, -185)), (50, 42, 45)))
    an.add(stomach, hu["stomach_wall"], "stomach")
    an.add(Intersection(Offset(stomach, -3), HalfSpace((0, 0, -1), 168 * jitter[2])), hu["air"],
           name="gastric air")

    # --- heart and great vessels (built first: the lungs are carved around them) -------------------
    hs = opts.heart_scale
    heart = Ellipsoid(j((-25, 35, -85)), (62 * hs, 48 * hs, 50 * hs), rotation_matrix(z_deg=-35.6, y_deg=-26.7))
    an.shapes["heart"] = heart
    # root (in the heart), sinotubular junction, then the tubular ascending aorta straight up to the arch
    r_asc = opts.ascending_aorta_diameter_mm / 2.0
    aorta_pts = [j(p) for p in [(2, 20, -45), (10, 21, -27), (22, 18, 20), (10, 15, 45), (-12, 5, 52),
                                (-30, -20, 42), (-30, -45, 15), (-27, -50, -60), (-17, -49, -150),
                                (-10, -42, -270)]]  # the abdominal aorta runs in front of the spine
    # a smooth curve through the points: a measuring plane across a kink would cut the tube obliquely
    aorta = Tube(*smooth_polyline(aorta_pts, [15, r_asc, r_asc, 14, 13.5, 12.5, 12, 12, 11.5, 11], 6.0))
    # the superior vena cava comes down beside the ascending aorta and drains into the right atrium
    svc = Tube([j((48, 12, 75)), j((48, 15, -30)), j((22, 25, -55))], 9.5)
    brachiocephalic = Tube([j((5, 14, 50)), j((15, 6, 92))], 6.5)
    carotid_l = Tube([j((-8, 4, 52)), j((-22, -12, 150))], 4.5)
    subclavian_l = Tube([j((-20, -5, 50)), j((-38, -12, 95)), j((-70, -10, 105))], 5.0)
    # a dilated ascending aorta pushes the pulmonary trunk and its bifurcation to the left, the right
    # pulmonary artery behind it back
    dx = max(0.0, r_asc - 16.0)
    fork = j((-12 - dx, 22, 8))
    pa_trunk = Tube([j((-22 - dx, 55, -45)), j((-22 - dx, 42, -10)), fork], 13.0)
    pa_right = Tube([fork, j((2, 2 - 1.5 * dx, 0)), j((22, -8 - 1.5 * dx, -8)), j((48, -12, -15))], 10.0)
    pa_left = Tube([fork, j((-30, 5, 12)), j((-52, -15, 0))], 9.5)
    pulmonary = Union(pa_trunk, pa_right, pa_left)
    trachea = Tube([j((0, -8, 170)), j((0, -14, 80)), j((0, -22, 0))], 10.0)
    trachea_lumen = Tube([j((0, -8, 171)), j((0, -14, 80)), j((0, -22, 0))], 8.0)
    bronchus_r_pts = [j((0, -22, 0)), j((25, -24, -16)), j((48, -26, -30))]
    bronchus_l_pts = [j((0, -22, 0)), j((-30, -27, -22)), j((-55, -30, -40))]
    bronchi = Union(Tube(bronchus_r_pts, 7.5), Tube(bronchus_l_pts, 6.5))
    bronchi_lumen = Union(Tube(bronchus_r_pts, 5.8), Tube(bronchus_l_pts, 5.0))
    esophagus_pts = [j(p) for p in [(-3, -40, 171), (-4, -44, 40), (-6, -46, -20), (-10, -36, -100),
                                    (-22, -20, -140), (-40, 5, -168)]]
    esophagus = Tube(esophagus_pts, 8.5)
    vertebral_column = SuperEllipticCylinder((0, -75 * jitter[1]), 20, 16, -400, 400)
    an.shapes.update(aorta=aorta, pulmonary_artery=pulmonary, trachea=trachea, bronchi=bronchi,
                     esophagus=esophagus, pa_trunk=pa_trunk, svc=svc)
    an.tubes.update(aorta=aorta, pulmonary_artery=[pa_trunk, pa_right, pa_left])
    an.facts.update(ascending_aorta_diameter_mm=2 * r_asc, descending_aorta_diameter_mm=24.0,
                    pulmonary_trunk_diameter_mm=26.0, trachea_outer_diameter_mm=20.0,
                    trachea_lumen_diameter_mm=16.0)

    # --- lungs -----------------------------------------------------------------------------------
    # The full lung shape (used to place findings) is the ellipsoid inside the rib cage, above the diaphragm,
    # minus the mediastinum. For rendering, the mediastinal carving is painted as separate local shapes that
    # relabel lung voxels only: the same result, without evaluating every mediastinal tube over both lungs.
    carve = [Offset(heart, 4 + opts.pericardial_effusion_mm), Offset(aorta, 3), Offset(svc, 3),
             Offset(pulmonary, 3), Offset(trachea, 2), Offset(bronchi, 2), Offset(esophagus, 3),
             Offset(vertebral_column, 3)]
    column = SuperEllipticCylinder((0, -10), 22, 115, -400, 400)
    mediastinum = Union(column, *carve)
    lungs, coarse = {}, {}
    for side, center, radii in ((1, (78, -8, -25), (75, 100, 150)), (-1, (-80, -10, -30), (72, 98, 148))):
        ell = Ellipsoid(j(center), radii)
        coarse[side] = Difference(Intersection(ell, cavity), dome_r, dome_l, column)
        lungs[side] = Difference(coarse[side], *carve)
    an.shapes.update(lung_right=lungs[1], lung_left=lungs[-1], mediastinum=mediastinum)

    # fissures: oblique planes z + k*y = z0 (upper lobe above), horizontal plane z = zh on the right
    k = 0.85
    oblique_r = -25 * jitter[2]
    oblique_l = -32 * jitter[2]
    horizontal = -10 * jitter[2]
    above_r = HalfSpace((0, -k, -1), -oblique_r, limits=lungs[1].bbox())
    below_r = HalfSpace((0, k, 1), oblique_r, limits=lungs[1].bbox())
    above_l = HalfSpace((0, -k, -1), -oblique_l, limits=lungs[-1].bbox())
    below_l = HalfSpace((0, k, 1), oblique_l, limits=lungs[-1].bbox())
    # the horizontal fissure dips slightly anteriorly (z = zh - 0.14 y), as it usually does
    upper_r = HalfSpace((0, -0.14, -1), -horizontal, limits=lungs[1].bbox())
    middle_r = HalfSpace((0, 0.14, 1), horizontal, limits=lungs[1].bbox())
    lobes = {
        "lung_upper_lobe_right": Intersection(lungs[1], above_r, upper_r),
        "lung_middle_lobe_right": Intersection(lungs[1], above_r, middle_r),
        "lung_lower_lobe_right": Intersection(lungs[1], below_r),
        "lung_upper_lobe_left": Intersection(lungs[-1], above_l),
        "lung_lower_lobe_left": Intersection(lungs[-1], below_l),
    }
    an.shapes.update(lobes)
    right_lobes = frozenset(n for n in lobes if n.endswith("_right"))
    left_lobes = frozenset(n for n in lobes if n.endswith("_left"))
    an.facts.update(right_lobes=sorted(right_lobes), left_lobes=sorted(left_lobes))
    an.add(coarse[1], hu["lung"], "lung_lower_lobe_right")
    an.add(coarse[-1], hu["lung"], "lung_lower_lobe_left")
    for shape in carve:
        an.add(shape, hu["mediastinal_fat"], "body_trunc", name="mediastinal fat", only_within=right_lobes | left_lobes)
    an.add(above_r, None, "lung_upper_lobe_right", only_within={"lung_lower_lobe_right"})
    an.add(middle_r, None, "lung_middle_lobe_right", only_within={"lung_upper_lobe_right"})
    an.add(above_l, None, "lung_upper_lobe_left", only_within={"lung_lower_lobe_left"})
    # fissures as thin denser sheets (what lets a segmenter find the lobes)
    sheet = 0.6
    for normal, offset, lung_side, within in (((0, k, 1), oblique_r, lungs[1], right_lobes),
                                              ((0, 0.14, 1), horizontal, lungs[1], {"lung_upper_lobe_right",
                                                                                  "lung_middle_lobe_right"}),
                                              ((0, k, 1), oblique_l, lungs[-1], left_lobes)):
        slab = Intersection(HalfSpace(normal, offset + sheet, limits=lung_side.bbox()),
                            HalfSpace(-np.asarray(normal), -offset + sheet))
        an.add(slab, hu["fissure"], name="fissure", only_within=within)
    _add_lung_vessels(an, rng, {1: (lungs[1], right_lobes), -1: (lungs[-1], left_lobes)}, blood)

    # --- mediastinal organs ------------------------------------------------------------------------
    if opts.pericardial_effusion_mm > 0:  # fluid around the heart, painted before the heart itself
        effusion = Shell(heart, opts.pericardial_effusion_mm, outside=True)
        an.shapes["pericardial_effusion"] = effusion
        an.add(effusion, hu["fluid"], "pericardial_effusion", finding=opts.pericardial_effusion_finding)
    an.add(heart, myocardium, "heart")
    if opts.contrast:  # blood pool inside the chambers
        an.add(Offset(heart, -11 * hs), blood, name="cardiac blood pool")
    an.add(svc, blood, "superior_vena_cava")
    if opts.contrast:  # iodine fills the lumen; the wall around it stays soft tissue, as on a CT angiogram
        an.add(aorta, hu["aortic_wall"], "aorta")
        an.add(Offset(aorta, -opts.aortic_wall_mm), blood, name="aortic lumen")
    else:
        an.add(aorta, blood, "aorta")
    an.add(brachiocephalic, blood, "brachiocephalic_trunk")
    an.add(carotid_l, blood, "common_carotid_artery_left")
    an.add(subclavian_l, blood, "subclavian_artery_left")
    an.add(pulmonary, blood, "pulmonary_artery")
    an.add(esophagus, hu["esophagus"], "esophagus")
    an.add(Tube(esophagus_pts[:4], 2.0), hu["air"] + 150, name="esophageal air")
    # walls first, then the lumens, so no wall is painted across the carina and the airway stays open
    an.add(trachea, hu["airway_wall"], "trachea")
    an.add(bronchi, hu["airway_wall"], "lung_airways")
    an.add(trachea_lumen, hu["air"], name="tracheal lumen")
    an.add(bronchi_lumen, hu["air"], name="bronchial lumen")
    thyroid = Union(Ellipsoid(j((21, -2, 128)), (9, 10, 22)), Ellipsoid(j((-21, -2, 128)), (9, 10, 22)),
                    Ellipsoid(j((0, 6, 114)), (14, 4, 7)))
    an.add(thyroid, hu["thyroid"], "thyroid_gland")

    # --- skeleton ---------------------------------------------------------------------------------
    _add_spine(an, hu, jitter)
    _add_ribs_and_sternum(an, hu, cavity, jitter)
    return an


def _add_lung_vessels(an: Anatomy, rng, lungs, blood: float) -> None:
    """A few generations of pulmonary vessels from each hilum, kept inside the lung (they stay lobe-labelled)."""
    for side, hilum in ((1, (46, -12, -18)), (-1, (-50, -14, -22))):
        lung, lobe_names = lungs[side]
        lo, hi = lung.bbox()
        targets = []
        while len(targets) < 16:
            p = rng.uniform(lo, hi)
            if lung.sdf(*p) < -18:
                targets.append(p)
        for t in targets:
            mid = np.asarray(hilum) + 0.5 * (t - np.asarray(hilum)) + rng.normal(0, 6, 3)
            an.add(Tube([hilum, mid, t], [5.0, 3.2, 1.4]), blood, name="lung vessel", only_within=lobe_names)
            for _ in range(2):
                tip = t + rng.normal(0, 18, 3)
                if lung.sdf(*tip) < -6:
                    an.add(Tube([mid, tip], [2.2, 1.0]), blood, name="lung vessel", only_within=lobe_names)


SPINE_TILT_DEG = 10.0  # endplates tilt with the thoracic kyphosis (also keeps slice quantisation unbiased)


def _level_slab(zc: float, half: float, y_ref: float) -> Shape:
    """The slab of one vertebral level: between two parallel planes tilted about the left-right axis."""
    t = np.radians(SPINE_TILT_DEG)
    normal = np.array([0.0, -np.sin(t), np.cos(t)])
    offset = normal[1] * y_ref + normal[2] * zc
    return Intersection(HalfSpace(normal, offset + half), HalfSpace(-normal, -(offset - half)))


def _add_spine(an: Anatomy, hu: dict, jitter) -> None:
    yb = -75 * jitter[1]
    canal_y = yb - 25
    cord = SuperEllipticCylinder((0, canal_y), 9, 8, -400, 400)
    pitch = VERTEBRA_PITCH_MM * jitter[2]
    for region, numbers in (("C", range(5, 8)), ("T", range(1, 13)), ("L", range(1, 3))):
        for n in numbers:
            name = f"{region}{n}"
            zc = vertebra_center_z(name) * jitter[2]
            half = 9.5 * jitter[2]
            cervical = region == "C"
            body = Intersection(SuperEllipticCylinder((0, yb), 15 if cervical else 20, 12 if cervical else 16,
                                                      zc - 2 * half, zc + 2 * half, n=2.2),
                                _level_slab(zc, half, yb))
            posterior = Union(Difference(SuperEllipticCylinder((0, canal_y), 17, 16, zc - 2 * half, zc + 2 * half),
                                         cord),
                              Box((-4, canal_y - 38, zc - 2 * half), (4, canal_y - 12, zc + 2 * half)),
                              Box((-38, canal_y - 4, zc - 2 * half), (38, canal_y + 6, zc + 2 * half)))
            vertebra = Union(body, Intersection(posterior, _level_slab(zc - 1.5, half - 1.5, yb)))
            an.add(vertebra, hu["cancellous_bone"], f"vertebrae_{name}")
            an.add(Shell(body, 1.6, outside=False), hu["cortical_bone"], name="vertebral cortex")
            disc = Intersection(SuperEllipticCylinder((0, yb), 19, 15, zc, zc + pitch),
                                _level_slab(zc + pitch / 2, pitch / 2 - half, yb))
            an.add(disc, hu["disc"], name="intervertebral disc")
    an.add(cord, hu["spinal_canal"], "spinal_cord")


def _add_ribs_and_sternum(an: Anatomy, hu: dict, cavity: Ellipsoid, jitter) -> None:
    cx, cy, cz = cavity.center
    ra, rb, rc = cavity.radii

    def ring(z):  # cavity half-widths at height z
        f = np.sqrt(max(1.0 - ((z - cz) / rc) ** 2, 0.05))
        return ra * f, rb * f

    def front_y(z):
        return cy + ring(z)[1]

    # sternum: manubrium, body and xiphoid as boxes following the anterior cavity wall
    parts = []
    for z0 in np.arange(-115, 105, 10.0):
        z0s = z0 * jitter[2]
        half_w = 24 if z0 >= 60 else (14 if z0 >= -90 else 8)
        y0 = front_y(z0s + 5) + 2
        parts.append(Box((-half_w, y0, z0s), (half_w, y0 + 12, z0s + 10.0 * jitter[2])))
    # the manubrium's top and the xiphoid's tip are oblique, not axial planes
    top = HalfSpace((0, np.sin(np.radians(35)), np.cos(np.radians(35))), 95 * jitter[2] * np.cos(np.radians(35))
                    + np.sin(np.radians(35)) * (front_y(95 * jitter[2]) + 8))
    bottom = HalfSpace((0, -np.sin(np.radians(30)), -np.cos(np.radians(30))),
                       -(-105 * jitter[2] * np.cos(np.radians(30)) + np.sin(np.radians(30)) * (front_y(-105) + 8)))
    sternum = Intersection(Union(*parts), top, bottom)
    an.add(sternum, hu["cancellous_bone"] + 150, "sternum")
    an.add(Shell(sternum, 1.5, outside=False), hu["cortical_bone"], name="sternal cortex")

    drops = {1: 25, 2: 42, 11: 40, 12: 35}
    for n in range(1, 13):
        z_head = vertebra_center_z(f"T{n}") * jitter[2]
        drop = drops.get(n, 58.0)
        phi_end = 2.45 if n <= 7 else (2.25 if n <= 10 else 1.85)
        radius = 5.0 if n <= 2 else (4.0 if n >= 11 else 4.6)
        for side, suffix in ((1, "right"), (-1, "left")):
            pts = [(38.0 * side, -96.0 * jitter[1], z_head)]
            for phi in np.linspace(0.35, phi_end, 12):
                z = z_head - drop * ((phi - 0.35) / (np.pi - 0.35)) ** 1.4
                a, b = ring(z)
                pts.append((side * (a + 6.5) * np.sin(phi), cy - (b + 6.5) * np.cos(phi), z))
            an.add(Tube(pts, radius), hu["cortical_bone"] - 250, f"rib_{suffix}_{n}")
            an.add(Tube(pts[1:], radius - 1.8), hu["cancellous_bone"], name="rib marrow")
            if n <= 10:
                end = np.asarray(pts[-1])
                target_z = min(end[2], 90.0) if n <= 7 else -85.0 * jitter[2] + (n - 8) * 5
                target = (side * 16.0, front_y(target_z) + 7, target_z)
                an.add(Tube([end, target], radius - 0.8), hu["cartilage"], "costal_cartilages")

    for side, suffix in ((1, "right"), (-1, "left")):
        y_top = front_y(96 * jitter[2])
        clav = Tube([(side * 20, y_top + 8, 98 * jitter[2]), (side * 75, y_top + 2, 116 * jitter[2]),
                     (side * 135, y_top - 40, 122 * jitter[2])], 7.0)
        an.add(clav, hu["cortical_bone"] - 150, f"clavicula_{suffix}")
        # the blade lies on the posterior chest wall, its lateral edge curving forwards
        scap = Ellipsoid((side * 100 * jitter[0], -105 * jitter[1], 55 * jitter[2]), (45, 5, 60),
                         rotation_matrix(z_deg=30 * side))
        an.add(scap, hu["cortical_bone"] - 150, f"scapula_{suffix}")


def smooth_polyline(points, radii, step_mm: float):
    """Points every ~``step_mm`` on the Catmull-Rom curve through ``points`` (radii interpolated linearly):
    the curve passes through every control point with a continuous tangent."""
    p = np.asarray(points, float)
    r = np.asarray(radii, float)
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out_p, out_r = [], []
    for i in range(len(p) - 1):
        p0, p1, p2, p3 = ext[i:i + 4]
        n = max(1, int(np.ceil(np.linalg.norm(p2 - p1) / step_mm)))
        t = np.arange(n)[:, None] / n
        out_p.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                            + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3))
        out_r.append(r[i] + (r[i + 1] - r[i]) * t[:, 0])
    return np.vstack(out_p + [p[-1:]]), np.concatenate(out_r + [r[-1:]])


def tube_record(tubes) -> list[dict]:
    """JSON form of a vessel's tubes: their polylines and radii (mm)."""
    tubes = tubes if isinstance(tubes, list | tuple) else [tubes]
    return [{"points": np.round(t.points, 3).tolist(), "radii": np.round(t.radii, 3).tolist()} for t in tubes]


def section_diameters(record: list[dict], point, normal, half_mm: float = 45.0, step_mm: float = 0.2):
    """The true section of a vessel (its tubes from :func:`tube_record`) by the plane through ``point``
    perpendicular to ``normal``: (largest diameter, width perpendicular to it) in mm, or None when the plane
    misses the vessel at the point -- what a measured section at that plane should give."""
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    helper = np.array([1.0, 0, 0]) if abs(n[0]) < 0.9 else np.array([0, 1.0, 0])
    u = np.cross(n, helper)
    u /= np.linalg.norm(u)
    v = np.cross(n, u)
    t = np.arange(-half_mm, half_mm + 1e-9, step_mm)
    pts = np.asarray(point, float) + t[:, None, None] * u + t[None, :, None] * v
    x, y, z = pts[..., 0].ravel(), pts[..., 1].ravel(), pts[..., 2].ravel()
    d = np.min([Tube(r["points"], r["radii"]).sdf(x, y, z) for r in record], axis=0).reshape(len(t), len(t))
    lab, _ = ndimage.label(d < 0)
    mid = len(t) // 2
    if lab[mid, mid] == 0:
        return None
    xy = np.argwhere(lab == lab[mid, mid]) * step_mm
    hull = xy[ConvexHull(xy).vertices]
    diff = hull[:, None, :] - hull[None, :, :]
    dist = np.linalg.norm(diff, axis=-1)
    i, j = np.unravel_index(np.argmax(dist), dist.shape)
    axis = diff[i, j] / dist[i, j]
    proj = hull @ np.array([-axis[1], axis[0]])
    return float(dist[i, j]) + step_mm, float(proj.max() - proj.min()) + step_mm
